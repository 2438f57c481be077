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
import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any, TypeVar

from mailharness.backends import Bind, DovecotMailBackend, LiveServers, Shared, make_backend
from mailharness.certs import CertVariant, MailCA
from mailharness.lifecycle import LoopFactory, LoopThread
from mailharness.schedule import (
    FAKE_ONLY,
    ScheduledEvent,
    ScheduleRunner,
    check_schedule,
    flapped_selectors,
)
from mailharness.servers.accounts import DEFAULT_USERS, Accounts, User
from mailharness.servers.errors import ConfigError, ServerStartError, choice_error
from mailharness.servers.faults.toxics import Fault, TLSVersion
from mailharness.servers.imap import IMAPServer, IMAPSettings
from mailharness.servers.imap.store import MailStore, RawMessage, StoredMessage
from mailharness.servers.listeners import (
    DEFAULT_HOST,
    Endpoint,
    Security,
    bind_loopback,
    require_loopback,
)
from mailharness.servers.records import record
from mailharness.servers.settle import unsettled
from mailharness.servers.smtp.capture import MAX_MESSAGES, CapturedMessage, MessageLog
from mailharness.servers.smtp.settings import SMTPSettings
from mailharness.servers.transcript import MAX_TRANSCRIPTS, TranscriptLog

if TYPE_CHECKING:
    from mailharness.servers.dovecot.backend import DovecotBackend
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
# How long a verdict waits for connections whose clients are still sending.
SETTLE_TIMEOUT = 2.0


#: The `mail_server_factory` fixture: `factory(config=None, **fields) -> MailServer`.
MailServerFactory = Callable[..., "MailServer"]


class NotApplicable(ConfigError):
    """This backend cannot serve this config; the message starts `not applicable:`."""


@record
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
    # What the scenario does over time (flapping, maintenance windows, mid-session
    # shutdowns, mailbox churn): run by MailServer from start to stop; see harness.schedule.
    schedule: tuple[ScheduledEvent, ...] = ()

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
        object.__setattr__(self, "schedule", check_schedule(self.schedule))
        for selector in flapped_selectors(self.schedule):
            if selector not in allowed:
                raise choice_error("Flap.listeners", selector, allowed)
        # A TLS-ending fault with no cert of its own serves the scenario's certificate.
        object.__setattr__(
            self,
            "faults",
            {
                selector: tuple(
                    dataclasses.replace(f, cert=CertVariant.parse(self.cert).value)
                    if isinstance(f, TLSVersion) and f.cert is None
                    else f
                    for f in faults
                )
                for selector, faults in self.faults.items()
            },
        )
        for selector, faults in self.faults.items():
            if selector not in allowed:
                raise choice_error("faults key", selector, allowed)
            for fault in faults:
                if isinstance(fault, TLSVersion) and selector.endswith("/none"):
                    raise ConfigError(
                        f"faults[{selector!r}]: a 'none' listener (plaintext) "
                        "cannot pin a TLS version"
                    )

    def securities(self, protocol: str) -> tuple[Security, ...]:
        """The listeners of one protocol, as `Security` values (the fields also take strings)."""
        return tuple(Security.parse(s) for s in getattr(self, f"{protocol}_listeners"))

    def faults_for(self, protocol: str, security: Security) -> tuple[Fault, ...] | None:
        """The faults before one listener, or None when it is served directly."""
        found: list[Fault] = []
        named = False
        flapped = flapped_selectors(self.schedule)
        for selector in ("*", protocol, f"{protocol}/{security.value}"):
            if selector in self.faults:
                named = True
                found.extend(self.faults[selector])
            named = named or selector in flapped
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


@record(kw_only=False)
class ProtocolEndpoints:
    """The listeners of one protocol, by security: `server.smtp.starttls.port`.

    The attributes are the `Security` values: `.none`, `.starttls`, `.implicit`."""

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
    def none(self) -> Endpoint:
        return self.get(Security.NONE)

    @property
    def plain(self) -> Endpoint:
        """Deprecated: `.none`, named like the security value ('none') it serves."""
        warnings.warn(
            "ProtocolEndpoints.plain is deprecated; use .none (security 'none')",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.none

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
        ports: Mapping[str, int] | None = None,
        loop_factory: LoopFactory | None = None,
    ) -> None:
        self.config = config or MailConfig()
        # The event loop `start()` runs the listeners on (asyncio's unless given; `serve`
        # passes uvloop's when it is installed: lifecycle.fastest_loop_factory).
        self.loop_factory = loop_factory
        # Fixed ports by listener name ("imap/implicit": 10993), for a `serve` whose
        # addresses must not change between runs; unnamed listeners get ephemeral ports.
        # A Dovecot listener with a fixed port is served through a (fault-free) front.
        self.ports = dict(ports or {})
        for name, port in self.ports.items():
            if name not in LISTENER_NAMES:
                raise choice_error("ports key", name, LISTENER_NAMES)
            if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
                raise ConfigError(f"ports[{name!r}]={port!r}: expected a port, 0 to 65535")
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
        self._fronts: dict[str, FaultFront] = {}
        self._schedule: ScheduleRunner | None = None
        # Listeners opened but not for clients: (what it is, endpoint); see `describe()`.
        self.internal: list[tuple[str, Endpoint]] = []
        self._thread: LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Last: a CA of our own owns a private temp dir, and nothing above may fail after it.
        self._owns_ca = ca is None
        self.ca = ca if ca is not None else MailCA()
        # Who serves the mail (config.backend); building one cannot fail.
        self._backend = make_backend(
            Shared(
                config=self.config,
                users=self.users,
                store=self.store,
                transcripts=self.transcripts,
                messages=self.messages,
                errors=self.errors,
                client_errors=self.client_errors,
                clock=clock,
                ca=self.ca,
                bind=self._bind,
                internal=self.internal,
            )
        )

    # --- async face -----------------------------------------------------------
    async def astart(self) -> MailServer:
        """Bind every listener and serve on the running loop; returns once all accept."""
        if self._loop is not None:
            raise ServerStartError("MailServer already started")
        self._loop = asyncio.get_running_loop()
        try:
            await self._serve()
            self._apply_quotas()
            self._start_schedule()
        except BaseException:
            await self.astop()
            raise
        return self

    def _apply_quotas(self) -> None:
        """The quotas the users' data sets (`User.quota_bytes`, `User.quota_messages`)."""
        for user in self.config.users:
            if user.quota_bytes is not None or user.quota_messages is not None:
                self.set_quota(user.login, user.quota_bytes, user.quota_messages)

    def _start_schedule(self) -> None:
        schedule = self.config.schedule
        if self.config.backend != "fake" and any(isinstance(e, FAKE_ONLY) for e in schedule):
            raise NotApplicable(
                f"{NOT_APPLICABLE} backend={self.config.backend!r}: this schedule switches the "
                "fake servers' state; Dovecot's is fixed by its config at start"
            )
        if schedule:
            self._schedule = ScheduleRunner(self, schedule)

    async def _serve(self) -> None:
        """The backend binds its listeners through `_listen`, behind fronts where named."""
        endpoints = await self._backend.start(self._listen)
        for protocol in PROTOCOLS:
            if protocol in endpoints:
                setattr(self, protocol, ProtocolEndpoints(protocol, endpoints[protocol]))

    async def _listen(
        self,
        protocol: str,
        bind: Bind,
        securities: tuple[Security, ...],
    ) -> tuple[Endpoint, ...]:
        """Bind each listener; put a FaultFront before those the config names.

        A front that pins a TLS version terminates TLS itself and forwards
        plaintext to an internal plain listener, listed in `internal`, not reported.
        """
        endpoints = []
        internal_plain: Endpoint | None = None
        for security in securities:
            name = f"{protocol}/{security.value}"
            port = self.ports.get(name, 0)
            faults = self.config.faults_for(protocol, security)
            if faults is None and port and self.config.backend != "fake":
                faults = ()  # Dovecot picks its own ports: a front holds the fixed one
            pinned = faults is not None and any(isinstance(f, TLSVersion) for f in faults)
            if not pinned:
                direct = await bind(security, False, 0 if faults is not None else port)
                if faults is None:
                    endpoints.append(direct)
                    continue
                backend = direct
                if self.config.backend == "fake":
                    self.internal.append((f"behind the fault front of {name}", direct))
            else:
                if internal_plain is None:
                    internal_plain = await bind(Security.NONE, True, 0)
                    if self.config.backend == "fake":
                        what = f"plaintext behind the TLS-ending {protocol} fronts"
                        self.internal.append((what, internal_plain))
                backend = internal_plain
            assert faults is not None
            # Imported here: a listener without faults never loads the proxy or TLS stacks.
            from mailharness.servers.faults.front import FaultFront

            front = FaultFront(
                backend,
                faults=faults,
                protocol=protocol,
                host=self.config.host,
                port=port,
                certs=self.ca,
                transcripts=self.transcripts,
            )
            await front.start()
            self._fronts[name] = front
            endpoints.append(Endpoint(protocol, front.host, front.port, security))
        return tuple(endpoints)

    async def _bind(
        self,
        server: SMTPServer | IMAPServer,
        security: Security,
        tls_terminated: bool = False,
        port: int = 0,
    ) -> Endpoint:
        context = (
            None if security is Security.NONE else self.ca.shared_server_context(self.config.cert)
        )
        sock = bind_loopback(self.config.host, port)
        try:
            return await server.add_listener(sock, security, context, tls_terminated=tls_terminated)
        except BaseException:
            sock.close()
            raise

    async def astop(self) -> None:
        if self._schedule is not None:
            await self._schedule.stop()
            self._schedule = None
        for front in self._fronts.values():
            await front.stop()
        self._fronts.clear()
        self.internal.clear()
        await self._backend.stop()
        self._loop = None
        if self._owns_ca:
            self.ca.close()

    async def areset(self) -> None:
        """Forget everything a test did: connections, mail, transcripts, errors, user changes."""
        await self._backend.close_connections()
        for name, front in self._fronts.items():
            front.set(*(self.config.faults_for(*_split(name)) or ()))
        # Let the aborted connections finish their connection_lost callbacks.
        await asyncio.sleep(0)
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
            if not unsettled(self._backend.transports()) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.002)
        for _ in range(3):  # the handlers' own follow-up callbacks (aiosmtpd's tasks)
            await asyncio.sleep(0)

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Sync face of :meth:`asettle` (the pytest fixtures call it before judging)."""
        if self._thread is not None and self._dovecot is None and not len(self.transcripts):
            return  # no connection since the last reset: nothing to settle
        if self._thread is not None:
            self._thread.run(self.asettle(timeout))

    def _clear_state(self) -> None:
        self.messages.clear()
        self.transcripts.clear()
        self.errors.clear()
        self.client_errors.clear()
        self.users.replace_all(self.config.users)
        self._backend.reset_state()
        if self._loop is not None:
            self._apply_quotas()

    async def __aenter__(self) -> MailServer:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # --- sync face ------------------------------------------------------------
    def start(self) -> MailServer:
        """Start in a background loop thread; raises here if any listener fails."""
        if self._thread is not None:
            raise ServerStartError("MailServer already started")
        self._thread = LoopThread(name="mailharness-server", loop_factory=self.loop_factory)
        try:
            self._thread.start(self.astart())
        except BaseException:
            self._thread.stop()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.stop(self.astop())

    def pristine(self) -> bool:
        """Whether a reset would change nothing: no connection since the last one (each
        opens a transcript), no mail, errors, user or settings change. Then `reset()` and
        `settle()` return at once, without a trip to the loop thread: what a test that did
        not use the server costs (the shared fixtures reset before and after every test)."""
        live = self._backend.live_servers()
        if live is None:  # Dovecot: its own state, which no shortcut can see
            return False
        imap, smtp = live.imap, live.smtp
        return (
            self._schedule is None  # a schedule changes the servers by itself
            and not self._fronts
            and not len(self.transcripts)
            and not len(self.messages)
            and not self.errors
            and not self.client_errors
            and (imap is None or imap.settings is self.config.imap)
            and (smtp is None or (smtp.settings is self.config.smtp and not smtp.maintenance))
            and self.store.pristine()
            and self.users.are(self.config.users)
        )

    def reset(self) -> None:
        if self._thread is not None:
            if self.pristine():
                return
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
        imap = self._require(self._live("switch_imap").imap, "imap")
        settings: IMAPSettings = _replace_settings("imap", imap.settings, changes)
        imap.settings = settings
        return settings

    def switch_smtp(self, **changes: Any) -> SMTPSettings:
        """Change SMTP settings during a test: `server.switch_smtp(starttls_broken=True)`."""
        smtp = self._require(self._live("switch_smtp").smtp, "smtp")
        settings: SMTPSettings = _replace_settings("smtp", smtp.settings, changes)
        smtp.settings = settings
        return settings

    def set_maintenance(self, on: bool = True) -> None:
        """An outage for new connections: IMAP `* BYE [UNAVAILABLE] ...`, SMTP `421 4.3.2`."""
        live = self._live("set_maintenance")
        if live.imap is not None:
            self.switch_imap(maintenance=on)
        if live.smtp is not None:
            live.smtp.maintenance = on

    def announce_shutdown(self, timeout: float = 5.0) -> None:
        """`* BYE Server shutting down.` / `421 4.3.2 Shutting down` to every open session."""
        self._live("announce_shutdown")
        if self._thread is None:
            raise ServerStartError("announce_shutdown() needs a server started with start()")
        self._thread.run(self.aannounce_shutdown(), timeout)

    async def aannounce_shutdown(self) -> None:
        """Async face of :meth:`announce_shutdown` (the server's own loop)."""
        live = self._live("announce_shutdown")
        if live.imap is not None:
            await live.imap.announce_shutdown()
        if live.smtp is not None:
            live.smtp.announce_shutdown()

    def _live(self, what: str) -> LiveServers:
        """The servers `what` switches at run time, if the backend has such (its capability)."""
        live = self._backend.live_servers()
        if live is None:
            raise NotApplicable(
                f"{NOT_APPLICABLE} {what}() on backend={self.config.backend!r}: "
                f"{self._backend.fixed_reason}"
            )
        return live

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

    def fronts_matching(self, selector: str) -> list[FaultFront]:
        """The fronts a faults selector ("*", "imap", "imap/starttls") stands before."""
        return [
            front
            for name, front in self._fronts.items()
            if selector in ("*", name, name.split("/")[0])
        ]

    def fronts(self) -> dict[str, FaultFront]:
        """Every fault front, by listener name: where faults can be switched at run time."""
        return dict(self._fronts)

    def deliver(self, user: str, message: RawMessage, mailbox: str = "INBOX") -> int:
        """Put a message in a user's mailbox (by login or address); returns its UID.

        `message` may be bytes, str or an `email.message.Message`.
        """
        account = self.users.get(user) or self.users.by_address(user)
        if account is None:
            known = ", ".join(u.login for u in self.users)
            raise ConfigError(f"user={user!r}: no such user; known: {known}")
        return self._backend.deliver(account.login, message, mailbox)

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
        self._backend.set_quota(account.login, storage_bytes, messages)

    def wait_for_appends(
        self, user: str, count: int = 1, timeout: float = 5.0, mailbox: str = "INBOX"
    ) -> list[StoredMessage]:
        """Block until `mailbox` of `user` holds `count` messages (APPEND, SMTP, COPY...)."""
        account = self.users.get(user) or self.users.by_address(user)
        login = account.login if account is not None else user
        return self._backend.wait_for_appends(login, count, timeout, mailbox)

    @property
    def _dovecot(self) -> DovecotBackend | None:
        """The running Dovecot, if this server runs one (tests check what stop leaves)."""
        backend = self._backend
        return backend.dovecot if isinstance(backend, DovecotMailBackend) else None

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
            # Every other port this server opened (behind fronts, Dovecot's own, its relay).
            "internal_listeners": [{**e.as_dict(), "role": role} for role, e in self.internal],
        }

    def __repr__(self) -> str:
        listeners = ", ".join(f"{e.url}({e.security.value})" for e in self.endpoints())
        label = f" {self.label!r}" if self.label else ""
        return f"<MailServer{label} {listeners or 'not started'}>"


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
