"""`MailServer`: the one object a test holds for a running set of mail listeners.

It owns the listeners, the users, the CA, the captured mail and the
transcripts, and has a sync face (an event loop in a background thread) and an
async face (the caller's own loop, for pytest-asyncio tests):

    with MailServer(MailConfig()) as server:               # sync
        smtplib.SMTP(*server.smtp.starttls.address)...
        server.wait_for_messages(1)

    async with MailServer(MailConfig()) as server:         # async
        ...
        await server.messages.wait_async(1)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from mailharness.certs import CertVariant, MailCA
from mailharness.lifecycle import LoopFactory, LoopThread
from mailharness.servers.accounts import DEFAULT_USERS, AccountChange, Accounts, User
from mailharness.servers.errors import ConfigError, ServerStartError, choice_error
from mailharness.servers.faults.toxics import Fault, TLSVersion
from mailharness.servers.imap import IMAPServer, IMAPSettings
from mailharness.servers.imap.store import MailStore, RawMessage, StoredMessage
from mailharness.servers.imap.store.messages import to_message_bytes
from mailharness.servers.listeners import (
    DEFAULT_HOST,
    Endpoint,
    Security,
    bind_loopback,
    require_loopback,
)
from mailharness.servers.settle import unsettled
from mailharness.servers.smtp.capture import MAX_MESSAGES, CapturedMessage, MessageLog
from mailharness.servers.smtp.settings import SMTPSettings
from mailharness.servers.transcript import MAX_TRANSCRIPTS, TranscriptLog

if TYPE_CHECKING:
    from mailharness.servers.dovecot.backend import DovecotBackend
    from mailharness.servers.dovecot.config import DovecotConfig
    from mailharness.servers.faults import FaultFront
    from mailharness.servers.smtp.server import SMTPServer

_S = TypeVar("_S", "IMAPServer", "SMTPServer")
ALL_SECURITIES = (Security.NONE, Security.STARTTLS, Security.IMPLICIT)
# The listeners a real server has: IMAP 143 (STARTTLS) and 993, SMTP 587 and 465, as
# Dovecot and Postfix ship them. A plaintext-only listener is opt-in (`plaintext-only`).
DEFAULT_SECURITIES = (Security.STARTTLS, Security.IMPLICIT)
PROTOCOLS = ("imap", "smtp")
LISTENER_NAMES = tuple(f"{p}/{s.value}" for p in PROTOCOLS for s in ALL_SECURITIES)
# "fake": our IMAP and SMTP servers; "dovecot": a native Dovecot process (IMAP and
# submission); "docker": Dovecot in a container (servers.dovecot.container).
BACKENDS = ("fake", "dovecot", "docker")
NOT_APPLICABLE = "not applicable:"
# The relay behind Dovecot's submission must advertise SIZE; Dovecot enforces the real limit.
RELAY_SIZE_LIMIT = 2**31
# How long a verdict waits for connections whose clients are still sending.
SETTLE_TIMEOUT = 2.0


#: The `mail_server_factory` fixture: `factory(config=None, **fields) -> MailServer`.
MailServerFactory = Callable[..., "MailServer"]


class NotApplicable(ConfigError):
    """This backend cannot serve this config; the message starts `not applicable:`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MailConfig:
    """What to serve. Frozen; vary it with `dataclasses.replace`.

    `smtp=None` / `imap=None` serves no SMTP / IMAP at all. Strings are
    accepted where enums are expected (`cert="expired"`,
    `smtp_listeners=("starttls",)`), and a wrong one names the field and the
    allowed values.
    """

    host: str = DEFAULT_HOST
    users: tuple[User, ...] = DEFAULT_USERS
    # Strings are accepted where enums are expected; after construction they are enums.
    cert: CertVariant | str = CertVariant.TRUSTED
    smtp: SMTPSettings | None = field(default_factory=SMTPSettings)
    smtp_listeners: tuple[Security | str, ...] = DEFAULT_SECURITIES
    imap: IMAPSettings | None = field(default_factory=IMAPSettings)
    imap_listeners: tuple[Security | str, ...] = DEFAULT_SECURITIES
    # Network/TLS faults before listeners, by listener name ("imap/implicit"), protocol
    # ("smtp") or "*". A listener named here, even with no faults, is served through a
    # FaultFront, so its faults can be switched during the test: server.faults("imap").
    faults: dict[str, tuple[Fault, ...]] = field(default_factory=dict)
    # Who serves the mail: see BACKENDS. Faults (fronts) work before any of them.
    backend: str = "fake"
    # Captured SMTP messages kept in `server.messages` (the newest; None keeps all) and
    # transcripts kept (oldest forgotten first): a `serve` running for days stays flat.
    # Waits count every arrival, kept or not; `server.transcripts.dropped` counts the
    # forgotten transcripts.
    max_messages: int | None = MAX_MESSAGES
    max_transcripts: int = MAX_TRANSCRIPTS

    def __post_init__(self) -> None:
        require_loopback(self.host)
        if self.max_transcripts < 1:
            raise ConfigError(f"max_transcripts={self.max_transcripts!r}: expected >= 1")
        if self.max_messages is not None and (
            not isinstance(self.max_messages, int) or self.max_messages < 1
        ):
            raise ConfigError(f"max_messages={self.max_messages!r}: expected >= 1 or None")
        if self.backend not in BACKENDS:
            raise choice_error("backend", self.backend, BACKENDS)
        object.__setattr__(self, "users", tuple(self.users))
        if self.smtp is not None and not isinstance(self.smtp, SMTPSettings):
            raise ConfigError(f"smtp={self.smtp!r}: expected SMTPSettings or None")
        if self.imap is not None and not isinstance(self.imap, IMAPSettings):
            raise ConfigError(f"imap={self.imap!r}: expected IMAPSettings or None")
        object.__setattr__(self, "cert", CertVariant.parse(self.cert))
        for name in ("smtp_listeners", "imap_listeners"):
            object.__setattr__(self, name, _parse_listeners(name, getattr(self, name)))
        allowed = (*LISTENER_NAMES, *PROTOCOLS, "*")
        for selector, faults in self.faults.items():
            if selector not in allowed:
                raise choice_error("faults key", selector, allowed)
            for fault in faults:
                if isinstance(fault, TLSVersion) and selector.endswith("/none"):
                    raise ConfigError(
                        f"faults[{selector!r}]: a plaintext listener cannot pin a TLS version"
                    )

    def securities(self, protocol: str) -> tuple[Security, ...]:
        """The listeners of one protocol, as `Security` values (the fields also take strings)."""
        return tuple(Security.parse(s) for s in getattr(self, f"{protocol}_listeners"))

    def faults_for(self, protocol: str, security: Security) -> tuple[Fault, ...] | None:
        """The faults before one listener, or None when it is served directly."""
        found: list[Fault] = []
        named = False
        for selector in ("*", protocol, f"{protocol}/{security.value}"):
            if selector in self.faults:
                named = True
                found.extend(self.faults[selector])
        return tuple(found) if named else None


def _parse_listeners(name: str, value: object) -> tuple[Security, ...]:
    if isinstance(value, str | Security) or not isinstance(value, tuple | list):
        raise ConfigError(
            f"{name}={value!r}: expected a tuple of securities, e.g. ('starttls', 'implicit')"
        )
    listeners = tuple(Security.parse(s, name) for s in value)
    if len(set(listeners)) != len(listeners):
        raise ConfigError(f"{name}={value!r}: each security at most once")
    return listeners


@dataclass(frozen=True, slots=True)
class ProtocolEndpoints:
    """The listeners of one protocol, by security: `server.smtp.starttls.port`."""

    protocol: str
    endpoints: tuple[Endpoint, ...] = ()

    def get(self, security: Security | str) -> Endpoint:
        wanted = Security.parse(security)
        for endpoint in self.endpoints:
            if endpoint.security is wanted:
                return endpoint
        available = [e.security.value for e in self.endpoints] or ["none served"]
        raise ConfigError(
            f"{self.protocol} security={wanted.value!r}: this server has no such listener; "
            f"it has: {', '.join(available)}"
        )

    @property
    def plain(self) -> Endpoint:
        return self.get(Security.NONE)

    @property
    def starttls(self) -> Endpoint:
        return self.get(Security.STARTTLS)

    @property
    def implicit(self) -> Endpoint:
        return self.get(Security.IMPLICIT)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self.endpoints)

    def __bool__(self) -> bool:
        return bool(self.endpoints)


class MailServer:
    """A running (or startable) set of fake mail listeners; see the module docstring."""

    def __init__(
        self,
        config: MailConfig | None = None,
        *,
        ca: MailCA | None = None,
        label: str = "",
        clock: Callable[[], float] = time.monotonic,
        loop_factory: LoopFactory | None = None,
    ) -> None:
        self.config = config or MailConfig()
        # The event loop `start()` runs the listeners on (asyncio's unless given; `serve`
        # passes uvloop's when it is installed: lifecycle.fastest_loop_factory).
        self.loop_factory = loop_factory
        # The scenario (or purpose) this server serves; shown in reprs and reports.
        self.label = label
        # What lockouts and rate limits count time with: a test may pass a fake clock
        # to prove "recovers when the window passes" without waiting for it.
        self.clock = clock
        self.users = Accounts.of(self.config.users)
        self.users.clock = clock
        self.transcripts = TranscriptLog(max_items=self.config.max_transcripts)
        self.messages = MessageLog(max_items=self.config.max_messages)
        # Faults of the harness itself (a handler exception): fail the test that met them.
        self.errors: list[str] = []
        # What clients did or the scenario provoked (a refused handshake, a protocol
        # violation): in the report, failing nothing unless the user asks (strict mode).
        self.client_errors: list[str] = []
        self.store = MailStore()
        self.smtp = ProtocolEndpoints("smtp")
        self.imap = ProtocolEndpoints("imap")
        self._smtp_server: SMTPServer | None = None
        self._imap_server: IMAPServer | None = None
        self._fronts: dict[str, FaultFront] = {}
        self._thread: LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Dovecot backends: the running Dovecot, the fake SMTP server its submission
        # service relays to, and the subscription that keeps its users in step.
        self._dovecot: DovecotBackend | None = None
        self._relay: SMTPServer | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # Last: a CA of our own owns a private temp dir, and nothing above may fail after it.
        self._owns_ca = ca is None
        self.ca = ca if ca is not None else MailCA()

    # --- async face -----------------------------------------------------------
    async def astart(self) -> MailServer:
        """Bind every listener and serve on the running loop; returns once all accept."""
        if self._loop is not None:
            raise ServerStartError("MailServer already started")
        self._loop = asyncio.get_running_loop()
        try:
            await self._serve()
        except BaseException:
            await self.astop()
            raise
        return self

    async def _serve(self) -> None:
        config = self.config
        if config.backend != "fake":
            await self._serve_dovecot()
            return
        if config.imap is not None:
            imap = IMAPServer(
                accounts=self.users,
                store=self.store,
                transcripts=self.transcripts,
                settings=config.imap,
            )
            imap.errors = self.errors  # one error list per running server
            imap.client_errors = self.client_errors
            self._imap_server = imap
            self.imap = ProtocolEndpoints(
                "imap", await self._listen("imap", self._binder(imap), config.securities("imap"))
            )
        if config.smtp is not None:
            # Imported here: aiosmtpd costs a server without SMTP nothing.
            from mailharness.servers.smtp.server import SMTPServer

            smtp = SMTPServer(
                accounts=self.users,
                transcripts=self.transcripts,
                settings=config.smtp,
                messages=self.messages,
                errors=self.errors,
                client_errors=self.client_errors,
                deliver=self._deliver_local if config.imap is not None else None,
                recipient_full=self._recipient_over_quota if config.imap is not None else None,
                clock=self.clock,
            )
            self._smtp_server = smtp
            self.smtp = ProtocolEndpoints(
                "smtp", await self._listen("smtp", self._binder(smtp), config.securities("smtp"))
            )

    async def _serve_dovecot(self) -> None:
        """Dovecot (IMAP + submission) and the fake SMTP server submission relays to."""
        from mailharness.dovecot_backend import dovecot_config, not_applicable, served_securities

        config = self.config
        reasons = not_applicable(config)
        if reasons:
            raise NotApplicable(
                f"{NOT_APPLICABLE} backend={config.backend!r} cannot serve this config: "
                + "; ".join(reasons)
            )
        relay_port = None
        if config.smtp is not None:
            from mailharness.servers.smtp.server import SMTPServer

            relay = SMTPServer(
                accounts=self.users,
                transcripts=self.transcripts,
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
                messages=self.messages,
                errors=self.errors,
                client_errors=self.client_errors,
                deliver=self._deliver_dovecot,
                recipient_full=self._dovecot_over_quota,
                clock=self.clock,
            )
            self._relay = relay
            relay_port = (await self._bind(relay, Security.NONE)).port
        dovecot = _make_dovecot(config.backend, dovecot_config(config, self.ca, relay_port))
        await _in_thread(dovecot.start)
        self._dovecot = dovecot
        self._unsubscribe = self.users.on_change(self._sync_users)
        for protocol in PROTOCOLS:
            served = served_securities(config, protocol)
            if not served:
                continue
            endpoints = await self._listen(protocol, self._dovecot_binder(protocol), served)
            setattr(self, protocol, ProtocolEndpoints(protocol, endpoints))

    def _binder(
        self, server: SMTPServer | IMAPServer
    ) -> Callable[[Security, bool], Awaitable[Endpoint]]:
        async def bind(security: Security, tls_terminated: bool) -> Endpoint:
            return await self._bind(server, security, tls_terminated)

        return bind

    def _dovecot_binder(self, protocol: str) -> Callable[[Security, bool], Awaitable[Endpoint]]:
        """Dovecot's listener for a security; "none" (a front's plaintext side, or a client
        that never sends STARTTLS) is its plain port, which offers STARTTLS unless ssl = no."""
        dovecot = self._dovecot
        assert dovecot is not None

        async def bind(security: Security, tls_terminated: bool) -> Endpoint:
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

    async def _listen(
        self,
        protocol: str,
        bind: Callable[[Security, bool], Awaitable[Endpoint]],
        securities: tuple[Security, ...],
    ) -> tuple[Endpoint, ...]:
        """Bind each listener; put a FaultFront before those the config names.

        A front that pins a TLS version terminates TLS itself and forwards
        plaintext to an internal plain listener that is never reported.
        """
        endpoints = []
        internal_plain: Endpoint | None = None
        for security in securities:
            faults = self.config.faults_for(protocol, security)
            pinned = faults is not None and any(isinstance(f, TLSVersion) for f in faults)
            if not pinned:
                direct = await bind(security, False)
                if faults is None:
                    endpoints.append(direct)
                    continue
                backend = direct
            else:
                if internal_plain is None:
                    internal_plain = await bind(Security.NONE, True)
                backend = internal_plain
            assert faults is not None
            # Imported here: a listener without faults never loads the proxy or TLS stacks.
            from mailharness.servers.faults.front import FaultFront

            front = FaultFront(
                backend,
                faults=faults,
                protocol=protocol,
                host=self.config.host,
                certs=self.ca,
                transcripts=self.transcripts,
            )
            await front.start()
            self._fronts[f"{protocol}/{security.value}"] = front
            endpoints.append(Endpoint(protocol, front.host, front.port, security))
        return tuple(endpoints)

    async def _bind(
        self, server: SMTPServer | IMAPServer, security: Security, tls_terminated: bool = False
    ) -> Endpoint:
        context = None if security is Security.NONE else self.ca.server_context(self.config.cert)
        sock = bind_loopback(self.config.host)
        try:
            return await server.add_listener(sock, security, context, tls_terminated=tls_terminated)
        except BaseException:
            sock.close()
            raise

    def _deliver_local(self, recipient: str, data: bytes) -> None:
        """SMTP mail to a local user's address lands in that user's INBOX, as on a real server."""
        user = self.users.by_address(recipient)
        if user is not None:
            self.store.deliver(user.login, data)

    def _recipient_over_quota(self, recipient: str) -> bool:
        """Is `recipient` a local user whose mailbox is full (so RCPT gets 552/452)?"""
        user = self.users.by_address(recipient)
        if user is None:
            return False
        mailboxes = self.store.user(user.login)
        size, count = mailboxes.usage()
        storage, messages = mailboxes.quota_storage_limit, mailboxes.quota_message_limit
        return (storage is not None and size >= storage) or (
            messages is not None and count >= messages
        )

    def _deliver_dovecot(self, recipient: str, data: bytes) -> None:
        """Relayed mail to a local user lands in their maildir, as an MTA + LMTP would do."""
        user = self.users.by_address(recipient)
        if user is not None and self._dovecot is not None:
            self._dovecot.deliver(user.login, data)

    def _dovecot_over_quota(self, recipient: str) -> bool:
        """The MTA's quota check at RCPT (Dovecot's quota-status service does this for
        Postfix): is `recipient` a local user at or over their Dovecot quota?"""
        user = self.users.by_address(recipient)
        dovecot = self._dovecot
        if user is None or dovecot is None:
            return False
        quota = dovecot.quota(user.login)
        if quota is None:
            return False
        size, count = dovecot.usage(user.login)
        return (quota.storage_bytes is not None and size >= quota.storage_bytes) or (
            quota.messages is not None and count >= quota.messages
        )

    def _sync_users(self, change: AccountChange) -> None:
        """Run-time account changes reach Dovecot's passwd-files (one auth flush per change)."""
        dovecot = self._dovecot
        if dovecot is None:
            return
        if change.backend_down is not None:
            dovecot.set_passdb_failing(change.backend_down)
        for user in change.removed:
            dovecot.remove_user(user.login, flush=False)
        for user in change.added:
            dovecot.set_user(user, flush=False)
        dovecot.flush_auth()

    async def astop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for front in self._fronts.values():
            await front.stop()
        self._fronts.clear()
        if self._relay is not None:
            await self._relay.stop()
            self._relay = None
        if self._dovecot is not None:
            dovecot, self._dovecot = self._dovecot, None
            await _in_thread(dovecot.stop)
        if self._smtp_server is not None:
            await self._smtp_server.stop()
            self._smtp_server = None
        if self._imap_server is not None:
            await self._imap_server.stop()
            self._imap_server = None
        self._loop = None
        if self._owns_ca:
            self.ca.close()

    async def areset(self) -> None:
        """Forget everything a test did: connections, mail, transcripts, errors, user changes."""
        if self._smtp_server is not None:
            self._smtp_server.close_connections()
        if self._imap_server is not None:
            await self._imap_server.close_sessions()
        if self._relay is not None:
            self._relay.close_connections()
        if self._dovecot is not None:
            self._dovecot.close_sessions()
        for name, front in self._fronts.items():
            front.set(*(self.config.faults_for(*_split(name)) or ()))
        # Let the aborted connections finish their connection_lost callbacks.
        await asyncio.sleep(0)
        self._restore_settings()
        self._clear_state()

    async def asettle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Let every connection handle what its client already sent, then return.

        A client that just refused a certificate and closed has sent its alert and
        FIN; what the server records on reading them belongs to the test that
        ends now. Idle connections (a client that is still connected) are not
        waited for; `timeout` bounds a client that keeps sending.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            transports: list[asyncio.BaseTransport | None] = []
            for server in (self._imap_server, self._smtp_server, self._relay):
                if server is not None:
                    transports.extend(server.transports())
            if not unsettled(transports) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.002)
        for _ in range(3):  # the handlers' own follow-up callbacks (aiosmtpd's tasks)
            await asyncio.sleep(0)

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Sync face of :meth:`asettle` (the pytest fixtures call it before judging)."""
        if self._thread is not None:
            self._thread.run(self.asettle(timeout))

    def _restore_settings(self) -> None:
        if self._imap_server is not None and self.config.imap is not None:
            self._imap_server.settings = self.config.imap
        if self._smtp_server is not None and self.config.smtp is not None:
            self._smtp_server.settings = self.config.smtp
            self._smtp_server.maintenance = False

    def _clear_state(self) -> None:
        self.messages.clear()
        self.transcripts.clear()
        self.errors.clear()
        self.client_errors.clear()
        self.users.replace_all(self.config.users)
        self.store.reset()
        if self._dovecot is not None:
            self._dovecot.reset_users(self.config.users)
            self._dovecot.wipe_mail()

    async def __aenter__(self) -> MailServer:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # --- sync face ------------------------------------------------------------
    def start(self) -> MailServer:
        """Start in a background loop thread; raises here if any listener fails."""
        if self._thread is not None:
            raise ServerStartError("MailServer already started")
        self._thread = LoopThread(name="mailharness-server", loop_factory=self.loop_factory).start()
        try:
            self._thread.run(self.astart())
        except BaseException:
            self._thread.stop()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            thread.run(self.astop())
        finally:
            thread.stop()

    def reset(self) -> None:
        if self._thread is not None:
            self._thread.run(self.areset())
        elif self._loop is not None:
            raise ServerStartError("started with astart(): use `await server.areset()`")
        else:
            self._clear_state()

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests read ------------------------------------------------------
    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Block until `count` messages were accepted; TimeoutError says what did arrive."""
        return self.messages.wait(count, timeout)

    # --- run-time switches (any thread) ------------------------------------------------
    def switch_imap(self, **changes: Any) -> IMAPSettings:
        """Change IMAP settings during a test: `server.switch_imap(backend_maintenance=True)`.

        New connections see the change at once, open ones from their next
        command. `reset()` restores the configured settings.
        """
        self._require_fake("switch_imap")
        imap = self._require(self._imap_server, "imap")
        settings: IMAPSettings = _replace_settings("imap", imap.settings, changes)
        imap.settings = settings
        return settings

    def switch_smtp(self, **changes: Any) -> SMTPSettings:
        """Change SMTP settings during a test: `server.switch_smtp(starttls_broken=True)`."""
        self._require_fake("switch_smtp")
        smtp = self._require(self._smtp_server, "smtp")
        settings: SMTPSettings = _replace_settings("smtp", smtp.settings, changes)
        smtp.settings = settings
        return settings

    def set_maintenance(self, on: bool = True) -> None:
        """An outage for new connections: IMAP `* BYE [UNAVAILABLE] ...`, SMTP `421 4.3.2`."""
        self._require_fake("set_maintenance")
        if self._imap_server is not None:
            self.switch_imap(maintenance=on)
        if self._smtp_server is not None:
            self._smtp_server.maintenance = on

    def announce_shutdown(self, timeout: float = 5.0) -> None:
        """`* BYE Server shutting down.` / `421 4.3.2 Shutting down` to every open session."""
        self._require_fake("announce_shutdown")
        imap, smtp = self._imap_server, self._smtp_server

        async def announce() -> None:
            if imap is not None:
                await imap.announce_shutdown()
            if smtp is not None:
                smtp.announce_shutdown()

        if self._thread is None:
            raise ServerStartError("announce_shutdown() needs a server started with start()")
        self._thread.run(announce(), timeout)

    def _require_fake(self, what: str) -> None:
        if self.config.backend != "fake":
            raise NotApplicable(
                f"{NOT_APPLICABLE} {what}() on backend={self.config.backend!r}: Dovecot's "
                "behaviour is fixed by its config at start"
            )

    @staticmethod
    def _require(server: _S | None, protocol: str) -> _S:
        if server is None:
            raise ConfigError(f"{protocol}: this server does not serve {protocol.upper()}")
        return server

    def faults(self, listener: str) -> FaultFront:
        """The fault front before a listener ("imap/implicit", or "imap" when it has one).

        Switch faults during a test, from any thread: `server.faults("imap/implicit")
        .set(Latency(ms=200))`; new connections see the change at once.
        """
        if listener in self._fronts:
            return self._fronts[listener]
        matches = [name for name in self._fronts if name.split("/")[0] == listener]
        if len(matches) == 1:
            return self._fronts[matches[0]]
        fronted = sorted(self._fronts) or ["none: name listeners in MailConfig(faults=...)"]
        raise ConfigError(
            f"listener={listener!r}: not served through a fault front; fronted: "
            + ", ".join(fronted)
        )

    def deliver(self, user: str, message: RawMessage, mailbox: str = "INBOX") -> int:
        """Put a message in a user's mailbox (by login or address); returns its UID.

        `message` may be bytes, str or an `email.message.Message`.
        """
        account = self.users.get(user) or self.users.by_address(user)
        if account is None:
            known = ", ".join(u.login for u in self.users)
            raise ConfigError(f"user={user!r}: no such user; known: {known}")
        if self._dovecot is not None:
            from mailharness.servers.dovecot.maildir import predict_uid

            path = self._dovecot.deliver(account.login, to_message_bytes(message), mailbox=mailbox)
            return predict_uid(self._dovecot.folder(account.login, mailbox), path)
        return self.store.deliver(account.login, message, mailbox)

    def deliver_many(
        self, user: str, messages: Iterable[RawMessage], mailbox: str = "INBOX"
    ) -> list[int]:
        """Seed many messages, e.g. from a generator; returns their UIDs in order.

        server.deliver_many("alice@example.test", (make(n) for n in range(500)))
        """
        return [self.deliver(user, message, mailbox) for message in messages]

    def set_quota(
        self, user: str, storage_bytes: int | None = None, messages: int | None = None
    ) -> None:
        """Limit a user's mailbox (by login or address): bytes and/or messages, None = no limit.

        At or over the limit, APPEND/COPY get `NO [OVERQUOTA] Quota exceeded (mailbox
        for user is full)` and SMTP RCPT to the user 552 (452 with `quota_temporary`).
        The fake stores it; Dovecot gets a userdb `quota_rule` (quota plugin).
        """
        account = self.users.get(user) or self.users.by_address(user)
        if account is None:
            known = ", ".join(u.login for u in self.users)
            raise ConfigError(f"user={user!r}: no such user; known: {known}")
        if self._dovecot is not None:
            self._dovecot.set_quota(account.login, storage_bytes, messages)
            return
        mailboxes = self.store.user(account.login)
        mailboxes.quota_storage_limit = storage_bytes
        mailboxes.quota_message_limit = messages

    def wait_for_appends(
        self, user: str, count: int = 1, timeout: float = 5.0, mailbox: str = "INBOX"
    ) -> list[StoredMessage]:
        """Block until `mailbox` of `user` holds `count` messages (APPEND, SMTP, COPY...)."""
        account = self.users.get(user) or self.users.by_address(user)
        login = account.login if account is not None else user
        if self._dovecot is not None:
            return self._wait_for_dovecot_appends(login, count, timeout, mailbox)
        return self.store.wait_for_appends(login, count, timeout, mailbox)

    def _wait_for_dovecot_appends(
        self, login: str, count: int, timeout: float, mailbox: str
    ) -> list[StoredMessage]:
        """inotify on the maildir's new/ and cur/ (see servers.dovecot.maildir): woken by
        each rename Dovecot (APPEND, COPY) or our relay's delivery makes."""
        from mailharness.servers.dovecot.maildir import wait_for_messages

        assert self._dovecot is not None
        folder = self._dovecot.folder(login, mailbox)
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

    def endpoints(self) -> list[Endpoint]:
        return [*self.imap, *self.smtp]

    def describe(self) -> dict[str, Any]:
        """The facts a person or a script needs to connect (the `serve --json` object)."""
        return {
            "endpoints": [e.as_dict() for e in self.endpoints()],
            "users": [
                {
                    "address": u.address,
                    "login": u.login,
                    "password": u.password,
                    "app_password": u.app_password,
                    "oauth_token": u.oauth_token,
                }
                for u in self.users
            ],
            "ca_path": os.fspath(self.ca.ca_path),
            "cert": CertVariant.parse(self.config.cert).value,
            "backend": self.config.backend,
        }

    def __repr__(self) -> str:
        listeners = ", ".join(f"{e.url}({e.security.value})" for e in self.endpoints())
        label = f" {self.label!r}" if self.label else ""
        return f"<MailServer{label} {listeners or 'not started'}>"


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


def _split(name: str) -> tuple[str, Security]:
    protocol, security = name.split("/")
    return protocol, Security(security)


def _replace_settings(protocol: str, current: Any, changes: dict[str, Any]) -> Any:
    names = [f.name for f in dataclasses.fields(current)]
    for name in changes:
        if name not in names:
            raise choice_error(f"{protocol} setting", name, names)
    return dataclasses.replace(current, **changes)


def parse_security_list(value: object, field_name: str) -> tuple[Security, ...]:
    """Accept 'starttls,implicit' or a sequence; used by the CLI and config files."""
    if isinstance(value, str):
        items: list[str] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        raise choice_error(field_name, value, [s.value for s in Security])
    return tuple(Security.parse(v, field_name) for v in items)
