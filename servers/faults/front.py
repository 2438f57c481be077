"""`FaultFront`: a TCP proxy on 127.0.0.x that puts network and TLS faults before a backend.

The same front stands before our fake servers or a real Dovecot: it only
needs the backend's address (its *plain* port when the front terminates
TLS). Faults are values (``toxics.py``) switched at run time from any thread:

    front = FaultFront(server.imap.none, certs=server.ca, faults=[TLSVersion(version="tls1.0")])
    endpoint = await front.start()          # bound and accepting before it returns
    front.set(Latency(ms=50))                # from the test thread: applies at once
    front.set(Refuse())                      # the port now refuses connections
    await front.stop()

New connections see a change at once; live faults (latency, bandwidth,
drops) also reach connections already open. A ``Random(seed)`` decides every
``probability``, so a run is reproducible for a given order of connections.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import cast

from mailharness.servers.errors import ConfigError, ServerStartError, choice_error
from mailharness.servers.faults import replies
from mailharness.servers.faults.listener import Listener, ListenerMode
from mailharness.servers.faults.session import Session
from mailharness.servers.faults.tls import CertSource, ContextCache
from mailharness.servers.faults.toxics import (
    FAULT_TYPES,
    PROTOCOL_DENY_MODES,
    SINGLETON_TYPES,
    Allowlist,
    ConnectionCap,
    Fault,
    FirewallDrop,
    Refuse,
    TLSVersion,
)
from mailharness.servers.listeners import DEFAULT_HOST, Endpoint, Security, require_loopback
from mailharness.servers.transcript import TranscriptLog

# Long enough for a loaded CI machine; a listener switch is a few syscalls.
SWITCH_TIMEOUT = 10.0


def check_faults(
    faults: Iterable[object], protocol: replies.Protocol | None, certs: CertSource | None
) -> tuple[Fault, ...]:
    """Validate a fault set as a whole: types, at most one of each singleton, what it needs."""
    items = tuple(faults)
    for fault in items:
        if not isinstance(fault, FAULT_TYPES):
            names = ", ".join(t.__name__ for t in FAULT_TYPES)
            raise ConfigError(f"faults: {fault!r} is not a fault; expected one of {names}")
    kinds = Counter(type(f) for f in items)
    for kind in SINGLETON_TYPES:
        if kinds[kind] > 1:
            raise ConfigError(f"faults: {kinds[kind]} {kind.__name__} values; at most one allowed")
    if kinds[Refuse] and kinds[FirewallDrop]:
        raise ConfigError("faults: Refuse and FirewallDrop together; choose one")
    for fault in items:
        _check_needs(fault, protocol, certs)
    return cast(tuple[Fault, ...], items)


def _check_needs(fault: object, protocol: str | None, certs: CertSource | None) -> None:
    needs_protocol = (
        (isinstance(fault, Allowlist) and fault.mode in PROTOCOL_DENY_MODES)
        or (isinstance(fault, ConnectionCap) and fault.on_excess == "greeting")
        or (isinstance(fault, TLSVersion) and fault.security == "starttls")
    )
    if needs_protocol and protocol is None:
        raise ConfigError(
            f"{fault!r}: the front must know its protocol; pass protocol='imap' or 'smtp'"
        )
    if isinstance(fault, Allowlist) and fault.mode == "rcpt" and protocol != "smtp":
        raise ConfigError(f"{fault!r}: mode='rcpt' is for SMTP; this front is {protocol!r}")
    if isinstance(fault, TLSVersion):
        if certs is None:
            raise ConfigError(f"{fault!r}: the front needs certs=MailCA(...) to terminate TLS")
        certs.server_cert(fault.variant)  # an unknown variant fails here, not at the first client


def _listener_mode(faults: tuple[Fault, ...]) -> ListenerMode:
    if any(isinstance(f, Refuse) for f in faults):
        return ListenerMode.REFUSE
    if any(isinstance(f, FirewallDrop) for f in faults):
        return ListenerMode.DROP
    return ListenerMode.SERVE


class FaultFront:
    """A fault-injecting TCP proxy before one backend address; see the module docstring.

    ``backend``: an ``Endpoint`` (its protocol is used when ``protocol`` is not
    given) or a ``(host, port)`` on loopback. ``protocol``: "imap", "smtp" or
    None (plain TCP: STARTTLS and protocol replies unavailable). ``certs``: a
    ``MailCA`` (or anything with ``server_cert(variant)``) for TLS faults.
    """

    def __init__(
        self,
        backend: Endpoint | tuple[str, int],
        *,
        faults: Iterable[Fault] = (),
        protocol: str | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
        certs: CertSource | None = None,
        seed: int | None = 0,
        transcripts: TranscriptLog | None = None,
    ) -> None:
        if isinstance(backend, Endpoint):
            if protocol is None and backend.protocol in replies.PROTOCOLS:
                protocol = backend.protocol
            backend = backend.address
        self.backend = (require_loopback(backend[0]), int(backend[1]))
        if protocol is not None and protocol not in replies.PROTOCOLS:
            raise choice_error("protocol", protocol, [*replies.PROTOCOLS, "None"])
        self.protocol: replies.Protocol | None = protocol
        self.host = require_loopback(host)
        self._port = port
        self.certs = certs
        self.contexts = ContextCache(certs) if certs is not None else None
        self.transcripts = transcripts
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._faults = check_faults(faults, self.protocol, certs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        self._sessions: dict[asyncio.Task[None], Session] = {}
        self._open: Counter[str] = Counter()

    # --- the fault set: any thread ---------------------------------------------------
    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults in force now (an immutable snapshot)."""
        return self._faults

    def set(self, *faults: Fault) -> None:
        """Replace every fault. Returns once new connections see the change."""
        self._publish(lambda _current: faults)

    def add(self, *faults: Fault) -> None:
        self._publish(lambda current: (*current, *faults))

    def remove(self, *items: Fault | type) -> None:
        """Remove faults equal to an item, or of a type given as an item (``remove(Latency)``)."""

        def without(current: tuple[Fault, ...]) -> tuple[Fault, ...]:
            return tuple(
                f
                for f in current
                if not any(f == i or (isinstance(i, type) and isinstance(f, i)) for i in items)
            )

        self._publish(without)

    def clear(self) -> None:
        self._publish(lambda _current: ())

    def _publish(self, change: Callable[[tuple[Fault, ...]], Iterable[Fault]]) -> None:
        with self._lock:
            self._faults = check_faults(change(self._faults), self.protocol, self.certs)
        self._sync_listener()

    def _sync_listener(self) -> None:
        """Put the port in the state the *current* faults want (idempotent, any thread)."""
        loop = self._loop
        if loop is None or self._listener is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._apply_listener()
            return

        async def apply() -> None:
            self._apply_listener()

        asyncio.run_coroutine_threadsafe(apply(), loop).result(SWITCH_TIMEOUT)

    def _apply_listener(self) -> None:
        if self._listener is not None:
            self._listener.switch(_listener_mode(self._faults))

    # --- lifecycle: the loop's thread ---------------------------------------------------
    async def start(self) -> Endpoint:
        """Bind (and listen, unless refusing) before returning the endpoint to connect to."""
        if self._loop is not None:
            raise ServerStartError("FaultFront already started")
        self._loop = asyncio.get_running_loop()
        self._listener = Listener(self.host, self._accepted)
        try:
            self._listener.open(_listener_mode(self._faults), self._port)
        except BaseException:
            self._listener = None
            self._loop = None
            raise
        return self.endpoint

    async def stop(self) -> None:
        """Close the port and every connection; returns when all of it is gone."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for task, session in list(self._sessions.items()):
            session.abort()
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        self._sessions.clear()
        self._loop = None

    async def __aenter__(self) -> FaultFront:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what callers read --------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._listener is None:
            raise ServerStartError("FaultFront not started: await front.start() first")
        return self._listener.port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def label(self) -> str:
        return f"{self.host}:{self._listener.port if self._listener else '-'}"

    @property
    def endpoint(self) -> Endpoint:
        """Where clients connect, with the security the current TLS fault gives it."""
        pin = next((f for f in self._faults if isinstance(f, TLSVersion)), None)
        security = Security.NONE if pin is None else Security.parse(pin.security)
        return Endpoint(self.protocol or "tcp", self.host, self.port, security)

    @property
    def open_connections(self) -> int:
        return len(self._sessions)

    # --- connections: the loop's thread ----------------------------------------------
    def _accepted(self, sock: socket.socket) -> None:
        try:
            session = Session(self, sock, self._faults, self._rng)
        except OSError:  # the client is already gone (getpeername fails)
            sock.close()
            return
        task = asyncio.get_running_loop().create_task(session.run())
        self._sessions[task] = session
        task.add_done_callback(lambda done: self._sessions.pop(done, None))

    def cap_acquire(self, source: str, cap: ConnectionCap | None) -> bool:
        """Count an admitted connection, or say it is in excess of ``cap``.

        Every admitted connection is counted, cap or not, so a cap switched on
        later counts the connections already open.
        """
        if cap is not None:
            total = sum(self._open.values())
            if cap.max_total is not None and total >= cap.max_total:
                return False
            if cap.per_source is not None and self._open[source] >= cap.per_source:
                return False
        self._open[source] += 1
        return True

    def cap_release(self, source: str) -> None:
        self._open[source] -= 1
        if self._open[source] <= 0:
            del self._open[source]

    def __repr__(self) -> str:
        faults = ", ".join(map(repr, self._faults)) or "no faults"
        return f"<FaultFront {self.label} -> {self.backend[0]}:{self.backend[1]}: {faults}>"
