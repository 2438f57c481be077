"""Who serves the mail behind `MailServer`'s listeners: our fakes or a real Dovecot.

`MailServer` keeps what every backend shares (users, captured mail, transcripts,
errors, the CA, the fault fronts that may stand before any listener) in a
`Shared`, and hands the rest to one `MailBackend`:

    backend = make_backend(shared)
    endpoints = await backend.start(listen)    # {"imap": (...), "smtp": (...)}
    backend.deliver("alice", raw)              # a UID, on either backend
    await backend.stop()

`FakeMailBackend` runs our IMAP and SMTP servers; `DovecotMailBackend` runs Dovecot
(a native process or a container) for IMAP and submission, with one of our SMTP
servers as the MTA that submission relays to. Only the fake can change its
behaviour while it runs (`live_servers()`, the capability `MailServer` checks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mailharness.certs import MailCA
from mailharness.servers.accounts import AccountChange, Accounts
from mailharness.servers.errors import ConfigError
from mailharness.servers.imap import IMAPServer
from mailharness.servers.imap.store import MailStore, RawMessage, StoredMessage
from mailharness.servers.imap.store.messages import to_message_bytes
from mailharness.servers.listeners import Endpoint, Security
from mailharness.servers.records import record
from mailharness.servers.smtp.capture import MessageLog
from mailharness.servers.smtp.settings import SMTPSettings
from mailharness.servers.transcript import TranscriptLog

if TYPE_CHECKING:
    from mailharness.server import MailConfig
    from mailharness.servers.dovecot.backend import DovecotBackend
    from mailharness.servers.dovecot.config import DovecotConfig
    from mailharness.servers.smtp.server import SMTPServer

# The relay behind Dovecot's submission must advertise SIZE; Dovecot enforces the real limit.
RELAY_SIZE_LIMIT = 2**31

#: One listener of one protocol: `bind(security, tls_terminated, port) -> Endpoint`
#: (port 0: an ephemeral one).
Bind = Callable[[Security, bool, int], Awaitable[Endpoint]]
#: `MailServer._listen`: binds a protocol's listeners, each behind a fault front if the
#: config names one: `listen(protocol, bind, securities) -> endpoints`.
Listen = Callable[[str, Bind, tuple[Security, ...]], Awaitable[tuple[Endpoint, ...]]]
#: `MailServer._bind`: one of our servers on a new loopback socket with the config's cert.
BindServer = Callable[["IMAPServer | SMTPServer", Security, bool, int], Awaitable[Endpoint]]


@record
class Shared:
    """What `MailServer` owns and every backend serves from; it outlives a backend's run."""

    config: MailConfig
    users: Accounts
    store: MailStore
    transcripts: TranscriptLog
    messages: MessageLog
    # One error list per running server: every backend's servers append to these.
    errors: list[str]
    client_errors: list[str]
    clock: Callable[[], float]
    ca: MailCA
    bind: BindServer
    # Listeners opened but not for clients, (what it is, endpoint): `MailServer.internal`.
    internal: list[tuple[str, Endpoint]]


@record(frozen=False, kw_only=False)
class LiveServers:
    """Our own servers behind the listeners: settings a test may switch while they run."""

    imap: IMAPServer | None = None
    smtp: SMTPServer | None = None


class MailBackend(ABC):
    """Serves the mail: starts listeners, holds mailboxes and quotas, resets, stops."""

    #: Why its behaviour cannot change while it runs; None when it can.
    fixed_reason: str | None = None

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    @abstractmethod
    async def start(self, listen: Listen) -> dict[str, tuple[Endpoint, ...]]:
        """Serve; returns each served protocol's endpoints once all accept."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop whatever runs; also after a `start` that failed half-way."""

    @abstractmethod
    async def close_connections(self) -> None:
        """End every open session (a reset between tests)."""

    @abstractmethod
    def reset_state(self) -> None:
        """Back to the config: settings, mail and quotas (also when not running)."""

    @abstractmethod
    def transports(self) -> list[asyncio.BaseTransport | None]:
        """The open connections of our own servers, for `MailServer.asettle`."""

    @abstractmethod
    def deliver(self, login: str, message: RawMessage, mailbox: str = "INBOX") -> int:
        """Put a message in a mailbox; returns its UID."""

    @abstractmethod
    def set_quota(self, login: str, storage_bytes: int | None, messages: int | None) -> None:
        """Limit a user's mailbox; None = no limit."""

    @abstractmethod
    def wait_for_appends(
        self, login: str, count: int, timeout: float, mailbox: str
    ) -> list[StoredMessage]:
        """Block until `mailbox` of `login` holds `count` messages."""

    @abstractmethod
    def _deliver_accepted(self, login: str, data: bytes) -> None:
        """File mail the SMTP side accepted for a local user in their INBOX."""

    @abstractmethod
    def _over_quota(self, login: str) -> bool:
        """Is the user's mailbox at or over its quota?"""

    def live_servers(self) -> LiveServers | None:
        """Capability query: our servers to switch at run time, or None when the
        behaviour is fixed at start (`fixed_reason` says why)."""
        return None

    def deliver_to_recipient(self, recipient: str, data: bytes) -> None:
        """SMTP mail to a local user's address lands in that user's INBOX, as on a real server."""
        user = self.shared.users.by_address(recipient)
        if user is not None:
            self._deliver_accepted(user.login, data)

    def recipient_over_quota(self, recipient: str) -> bool:
        """Is `recipient` a local user whose mailbox is full (so RCPT gets 552/452)?"""
        user = self.shared.users.by_address(recipient)
        return user is not None and self._over_quota(user.login)


class FakeMailBackend(MailBackend):
    """Our IMAP server over `Shared.store` and our SMTP server delivering into it."""

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        self.live = LiveServers()

    def live_servers(self) -> LiveServers:
        return self.live

    async def start(self, listen: Listen) -> dict[str, tuple[Endpoint, ...]]:
        shared, config = self.shared, self.shared.config
        endpoints: dict[str, tuple[Endpoint, ...]] = {}
        if config.imap is not None:
            imap = IMAPServer(
                accounts=shared.users,
                store=shared.store,
                transcripts=shared.transcripts,
                settings=config.imap,
            )
            imap.errors = shared.errors
            imap.client_errors = shared.client_errors
            self.live.imap = imap
            endpoints["imap"] = await listen("imap", self._binder(imap), config.securities("imap"))
        if config.smtp is not None:
            # Imported here: an IMAP-only server does not load the SMTP server module.
            from mailharness.servers.smtp.server import SMTPServer

            smtp = SMTPServer(
                accounts=shared.users,
                transcripts=shared.transcripts,
                settings=config.smtp,
                messages=shared.messages,
                errors=shared.errors,
                client_errors=shared.client_errors,
                deliver=self.deliver_to_recipient if config.imap is not None else None,
                recipient_full=self.recipient_over_quota if config.imap is not None else None,
                clock=shared.clock,
            )
            self.live.smtp = smtp
            endpoints["smtp"] = await listen("smtp", self._binder(smtp), config.securities("smtp"))
        return endpoints

    def _binder(self, server: IMAPServer | SMTPServer) -> Bind:
        return functools.partial(self.shared.bind, server)

    async def stop(self) -> None:
        if self.live.smtp is not None:
            await self.live.smtp.stop()
            self.live.smtp = None
        if self.live.imap is not None:
            await self.live.imap.stop()
            self.live.imap = None

    async def close_connections(self) -> None:
        if self.live.smtp is not None:
            self.live.smtp.close_connections()
        if self.live.imap is not None:
            await self.live.imap.close_sessions()

    def reset_state(self) -> None:
        config = self.shared.config
        if self.live.imap is not None and config.imap is not None:
            self.live.imap.settings = config.imap
        if self.live.smtp is not None and config.smtp is not None:
            self.live.smtp.settings = config.smtp
            self.live.smtp.maintenance = False
        self.shared.store.reset()

    def transports(self) -> list[asyncio.BaseTransport | None]:
        found: list[asyncio.BaseTransport | None] = []
        for server in (self.live.imap, self.live.smtp):
            if server is not None:
                found.extend(server.transports())
        return found

    def deliver(self, login: str, message: RawMessage, mailbox: str = "INBOX") -> int:
        return self.shared.store.deliver(login, message, mailbox)

    def set_quota(self, login: str, storage_bytes: int | None, messages: int | None) -> None:
        mailboxes = self.shared.store.user(login)
        mailboxes.quota_storage_limit = storage_bytes
        mailboxes.quota_message_limit = messages

    def wait_for_appends(
        self, login: str, count: int, timeout: float, mailbox: str
    ) -> list[StoredMessage]:
        return self.shared.store.wait_for_appends(login, count, timeout, mailbox)

    def _deliver_accepted(self, login: str, data: bytes) -> None:
        self.shared.store.deliver(login, data)

    def _over_quota(self, login: str) -> bool:
        mailboxes = self.shared.store.user(login)
        size, count = mailboxes.usage()
        storage, messages = mailboxes.quota_storage_limit, mailboxes.quota_message_limit
        return (storage is not None and size >= storage) or (
            messages is not None and count >= messages
        )


class DovecotMailBackend(MailBackend):
    """Dovecot (IMAP + submission) and the fake SMTP server its submission relays to.

    `config.backend` picks the kind: "dovecot" (a native process) or "docker".
    """

    fixed_reason = "Dovecot's behaviour is fixed by its config at start"

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        # The running Dovecot, the fake SMTP server its submission service relays to,
        # and the subscription that keeps its users in step.
        self.dovecot: DovecotBackend | None = None
        self._relay: SMTPServer | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self, listen: Listen) -> dict[str, tuple[Endpoint, ...]]:
        from mailharness.dovecot_backend import dovecot_config, not_applicable, served_securities
        from mailharness.server import NOT_APPLICABLE, PROTOCOLS, NotApplicable

        shared, config = self.shared, self.shared.config
        reasons = not_applicable(config)
        if reasons:
            raise NotApplicable(
                f"{NOT_APPLICABLE} backend={config.backend!r} cannot serve this config: "
                + "; ".join(reasons)
            )
        relay_port = None
        if config.smtp is not None:
            # Imported here: aiosmtpd costs a server without SMTP nothing.
            from mailharness.servers.smtp.server import SMTPServer

            relay = SMTPServer(
                accounts=shared.users,
                transcripts=shared.transcripts,
                # The MTA behind submission: no AUTH (Dovecot already checked it).
                # It advertises SIZE, since Dovecot passes the client's SIZE= on.
                # No AUTH advertised, or Dovecot adds an AUTH= parameter to MAIL FROM.
                settings=SMTPSettings(
                    auth_required=False,
                    plaintext_auth=False,
                    # Dovecot speaks to it in plaintext on loopback and adds the trace header.
                    starttls_required=False,
                    trace_header=False,
                    size_limit=config.smtp.size_limit or RELAY_SIZE_LIMIT,
                    quota_temporary=config.smtp.quota_temporary,
                    # Dovecot passes who logged in, and from where, by XCLIENT LOGIN= and ADDR=
                    # (submission_relay_trusted); it never sees TLS (its login process ends
                    # it), so tls_version stays None.
                    xclient=True,
                    # Postfix's client restrictions, as the MTA behind Dovecot applies them.
                    allowed_networks=config.smtp.allowed_networks,
                ),
                messages=shared.messages,
                errors=shared.errors,
                client_errors=shared.client_errors,
                deliver=self.deliver_to_recipient,
                recipient_full=self.recipient_over_quota,
                clock=shared.clock,
            )
            self._relay = relay
            relay_endpoint = await shared.bind(relay, Security.NONE, False, 0)
            shared.internal.append(("relay: Dovecot's submission relays mail here", relay_endpoint))
            relay_port = relay_endpoint.port
        dovecot = _make_dovecot(config.backend, dovecot_config(config, shared.ca, relay_port))
        await _in_thread(dovecot.start)
        self.dovecot = dovecot
        self._unsubscribe = shared.users.on_change(self._sync_users)
        endpoints: dict[str, tuple[Endpoint, ...]] = {}
        for protocol in PROTOCOLS:
            served = served_securities(config, protocol)
            if served:
                endpoints[protocol] = await listen(protocol, self._binder(protocol), served)
        reported = {(e.host, e.port) for served in endpoints.values() for e in served}
        noted = {(e.host, e.port) for _, e in shared.internal}
        for endpoint in dovecot.endpoints:
            if endpoint.address not in reported | noted:
                shared.internal.append((f"dovecot {endpoint.protocol} listener", endpoint))
        return endpoints

    def _binder(self, protocol: str) -> Bind:
        """Dovecot's listener for a security; "none" (a front's plaintext side, or a client
        that never sends STARTTLS) is its plain port, which offers STARTTLS unless ssl = no."""
        dovecot = self.dovecot
        assert dovecot is not None

        async def bind(security: Security, tls_terminated: bool, port: int) -> Endpoint:
            # `port` is never set here: `_listen` fronts a Dovecot listener with a fixed port.
            # A TLS-ending front reaches the plain port from Dovecot's own address (see
            # faults.session), which Dovecot counts as secured: nothing to set here.
            if security is Security.NONE:
                plain = [
                    e
                    for e in dovecot.endpoints
                    if e.protocol == protocol and e.security is not Security.IMPLICIT
                ]
                return dataclasses.replace(plain[0], security=Security.NONE)
            return dovecot.endpoint(security, protocol)

        return bind

    def _sync_users(self, change: AccountChange) -> None:
        """Run-time account changes reach Dovecot's passwd-files (one auth flush per change)."""
        dovecot = self.dovecot
        if dovecot is None:
            return
        if change.backend_down is not None:
            dovecot.set_passdb_failing(change.backend_down)
        for user in change.removed:
            dovecot.remove_user(user.login, flush=False)
        for user in change.added:
            dovecot.set_user(user, flush=False)
        dovecot.flush_auth()

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._relay is not None:
            await self._relay.stop()
            self._relay = None
        if self.dovecot is not None:
            dovecot, self.dovecot = self.dovecot, None
            await _in_thread(dovecot.stop)

    async def close_connections(self) -> None:
        if self._relay is not None:
            self._relay.close_connections()
        if self.dovecot is not None:
            self.dovecot.close_sessions()

    def reset_state(self) -> None:
        self.shared.store.reset()
        if self.dovecot is not None:
            self.dovecot.reset_users(self.shared.config.users)
            self.dovecot.wipe_mail()

    def transports(self) -> list[asyncio.BaseTransport | None]:
        return list(self._relay.transports()) if self._relay is not None else []

    def _running(self) -> DovecotBackend:
        if self.dovecot is None:
            raise ConfigError(f"backend={self.shared.config.backend!r}: Dovecot is not running")
        return self.dovecot

    def deliver(self, login: str, message: RawMessage, mailbox: str = "INBOX") -> int:
        from mailharness.servers.dovecot.maildir import predict_uid

        dovecot = self._running()
        path = dovecot.deliver(login, to_message_bytes(message), mailbox=mailbox)
        return predict_uid(dovecot.folder(login, mailbox), path)

    def set_quota(self, login: str, storage_bytes: int | None, messages: int | None) -> None:
        self._running().set_quota(login, storage_bytes, messages)

    def wait_for_appends(
        self, login: str, count: int, timeout: float, mailbox: str
    ) -> list[StoredMessage]:
        """inotify on the maildir's new/ and cur/ (see servers.dovecot.maildir): woken by
        each rename Dovecot (APPEND, COPY) or our relay's delivery makes."""
        from mailharness.servers.dovecot.maildir import wait_for_messages

        folder = self._running().folder(login, mailbox)
        found = wait_for_messages(folder, count, timeout)
        return [
            StoredMessage(
                uid=m.uid if m.uid is not None else index,
                flags=m.flags,
                internaldate=m.received.astimezone(UTC) if m.received else datetime.now(UTC),
                size=m.size,
                modseq=0,
                _raw=m.raw,
            )
            for index, m in enumerate(found, start=1)
        ]

    def _deliver_accepted(self, login: str, data: bytes) -> None:
        """As an MTA + LMTP would: into the user's maildir."""
        if self.dovecot is not None:
            self.dovecot.deliver(login, data)

    def _over_quota(self, login: str) -> bool:
        """The MTA's quota check at RCPT (Dovecot's quota-status service does this for
        Postfix): is the user at or over their Dovecot quota?"""
        dovecot = self.dovecot
        if dovecot is None:
            return False
        quota = dovecot.quota(login)
        if quota is None:
            return False
        size, count = dovecot.usage(login)
        return (quota.storage_bytes is not None and size >= quota.storage_bytes) or (
            quota.messages is not None and count >= quota.messages
        )


def make_backend(shared: Shared) -> MailBackend:
    """The backend `shared.config.backend` names, not started."""
    if shared.config.backend == "fake":
        return FakeMailBackend(shared)
    return DovecotMailBackend(shared)


async def _in_thread(blocking: Callable[[], object]) -> None:
    """Run a blocking call (Dovecot's start or stop) off the loop, in a thread that is
    gone when this returns: the loop's default executor would keep idle threads alive."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dovecot")
    try:
        await asyncio.get_running_loop().run_in_executor(executor, blocking)
    finally:
        executor.shutdown(wait=True)


def _make_dovecot(backend: str, config: DovecotConfig) -> DovecotBackend:
    """A Dovecot of the chosen kind, not started: the container runner for "docker",
    else the native process (both satisfy `DovecotBackend`)."""
    if backend == "docker":
        try:
            from mailharness.servers.dovecot.container import DovecotContainer
        except ImportError as error:
            raise ConfigError(
                f"backend='docker' needs the docker SDK ({error.name!r} is missing): "
                "pip install 'mailharness[docker]'"
            ) from None
        return DovecotContainer(config)
    from mailharness.servers.dovecot.process import DovecotProcess

    return DovecotProcess(config)
