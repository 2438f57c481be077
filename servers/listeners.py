"""Listening sockets and the endpoints we report for them.

Sockets are bound and listening *before* their port is reported, so a client
can connect the moment it learns the port: no "find a free port" guess, no
race with another xdist worker, and no readiness sleep.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import resource
import socket
import ssl
import weakref
from collections.abc import Callable
from typing import cast

from mailharness.servers.errors import ConfigError, forget_traceback, parse_choice
from mailharness.servers.records import record

DEFAULT_HOST = "127.0.0.1"
# Connections the kernel queues before we accept them. 128 lost 0.3 % of greetings
# under 500 clients looping; Linux clamps this to net.core.somaxconn (4096 by default).
LISTEN_BACKLOG = 4096
#: The share of the open-file limit that one server's connections may use by
#: default, so a flood of idle clients meets a refusal instead of EMFILE.
CONNECTION_SHARE_OF_FDS = 4


def default_connection_cap() -> int:
    """Connections one server accepts when its settings name no cap.

    A quarter of the soft ``RLIMIT_NOFILE`` leaves room for IMAP and SMTP in the
    same process, their files and the test's own clients (Dovecot sizes its
    login processes by ``default_client_limit`` for the same reason).
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft // CONNECTION_SHARE_OF_FDS)


class _AcceptErrorOnce(logging.Filter):
    """Let asyncio's ``socket.accept() out of system resource`` through once.

    asyncio already pauses accepting for a second when accept() fails with
    EMFILE/ENFILE; it logs every failure, which made 1.9 million lines (785 MB
    of stderr) in a 20,000-connection flood. Later ones are only counted.
    """

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self) -> None:
        super().__init__()
        self.suppressed = 0
        self._seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.MESSAGE):
            return True
        if self._seen:
            self.suppressed += 1
            return False
        self._seen = True
        return True


ACCEPT_ERRORS = _AcceptErrorOnce()
logging.getLogger("asyncio").addFilter(ACCEPT_ERRORS)


class Security(enum.Enum):
    """How a listener protects its traffic, as a connector's settings name it."""

    NONE = "none"  # plaintext, no STARTTLS offered
    STARTTLS = "starttls"  # plaintext greeting, STARTTLS offered (143/587-style)
    IMPLICIT = "implicit"  # TLS from the first byte (993/465-style)

    @classmethod
    def parse(cls, value: str | Security, field: str = "security") -> Security:
        try:
            return parse_choice(cls, value, field)
        except ConfigError as error:
            hint = _OTHER_NAMES.get(value.lower()) if isinstance(value, str) else None
            if hint is None:
                raise
            raise ConfigError(f"{error} (did you mean {hint!r}?)") from None


#: What other tools call a security, answered with our one name for it.
_OTHER_NAMES = {"plain": "none", "plaintext": "none", "ssl": "implicit", "ssl/tls": "implicit"}


@record(kw_only=False)
class Endpoint:
    """Where a client connects: what a connector's settings screen asks for."""

    protocol: str  # "imap" or "smtp"
    host: str
    port: int
    security: Security

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """URL in curl's spelling: `imaps://` / `smtps://` for implicit TLS."""
        scheme = self.protocol + ("s" if self.security is Security.IMPLICIT else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def as_dict(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "host": self.host,
            "port": self.port,
            "security": self.security.value,
        }


def require_loopback(host: str) -> str:
    """Refuse any non-loopback address: the harness must never be reachable from outside."""
    if host == "localhost":
        return DEFAULT_HOST
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"host={host!r}: expected a loopback address (127.0.0.0/8 or ::1)"
        ) from None
    if not address.is_loopback:
        raise ConfigError(f"host={host!r}: expected a loopback address (127.0.0.0/8 or ::1)")
    return host


def bind_loopback(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """Bind and listen on a loopback address; port 0 lets the kernel pick a free one."""
    host = require_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP; without it Nagle + delayed ACK add 40 ms to every multi-line reply.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listeners:
    """One server's listening sockets, and every connection they accepted until it is gone.

        listeners = Listeners()
        await listeners.serve(sock, make_protocol, tls=context)   # tls=None: plaintext first
        ...
        await listeners.close()    # stop accepting; then say goodbye to the sessions
        await listeners.stop()     # abort what is left, wait until all is gone

    `stop()` aborts what is left because, since Python 3.12.1,
    `asyncio.Server.wait_closed()` waits for every connection the server accepted,
    and some never end on their own: a TLS connection being closed waits for the
    client's close_notify (asyncio's ssl_shutdown_timeout, 30 s) and a client that
    never sends its ClientHello holds a handshake open (ssl_handshake_timeout, 60 s).
    Dovecot too closes its sockets after its BYE without waiting for the client.
    (Python 3.13's `Server.abort_clients()` does this; 3.11 and 3.12 lack it.)
    """

    def __init__(self) -> None:
        self._servers: list[asyncio.Server] = []
        self._sockets: list[socket.socket] = []
        self._closed = False
        # Weak: a connection leaves when it is gone; aborting a closed transport does nothing.
        self._accepted: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()

    async def serve(
        self,
        sock: socket.socket,
        make: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Accept on an already listening socket (see `bind_loopback`), each connection
        for a protocol from `make()`; with `tls`, after an implicit TLS handshake."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Accept(make, tls, self._accepted), sock=sock)
        self._servers.append(server)
        self._sockets.append(sock)

    async def close(self) -> None:
        """Stop accepting; every connection accepted so far is open and in the server's hands.

        Not `Server.close()` at once: a connection asyncio has accepted but not yet
        made a transport for would fail there (`Server._attach` asserts the server is
        open) and leave its socket to the garbage collector. So: no more accepts
        first (the listening socket's reader goes), then two loop iterations, first in
        first out: asyncio's accept task makes the transport at its next step, and
        connection_made comes one iteration later. No wait for time.
        """
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
        for _ in range(2):
            await asyncio.sleep(0)
        for server in self._servers:
            server.close()

    async def stop(self) -> None:
        """Stop accepting, abort every connection still open, return once all are gone."""
        await self.close()
        for transport in list(self._accepted):
            transport.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._sockets.clear()


class _Accept(asyncio.Protocol):
    """Every connection's first protocol: records it for `Listeners.stop`, does the
    implicit TLS handshake if any, then hands the connection to the server's protocol.

    The handshake is ``loop.start_tls``, not ``create_server(ssl=...)``: there a
    failed handshake (a client refusing our certificate) ends inside asyncio, and
    its error's traceback kept the protocol, buffers and frames in a reference cycle
    (~140 KB each, until the collector ran). Here it ends in our ``except``.
    """

    def __init__(
        self,
        make: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext | None,
        accepted: weakref.WeakSet[asyncio.Transport],
    ) -> None:
        self._make = make
        self._tls = tls
        self._accepted = accepted
        # What the TLS layer delivered between the handshake and the hand-off.
        self._early: list[Callable[[asyncio.Protocol], object]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A full Transport (uvloop's act as one without subclassing asyncio's).
        plain = cast(asyncio.Transport, transport)
        self._accepted.add(plain)
        if self._tls is None:
            app = self._make()
            plain.set_protocol(app)
            app.connection_made(plain)
            return
        plain.pause_reading()  # the ClientHello is for the TLS layer, not for us
        asyncio.get_running_loop().create_task(self._handshake(plain, self._tls))

    async def _handshake(self, plain: asyncio.Transport, context: ssl.SSLContext) -> None:
        try:
            tls = await asyncio.get_running_loop().start_tls(plain, self, context, server_side=True)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            forget_traceback(exc)
            plain.close()
            return
        if tls is None:  # the connection was lost as the handshake ended (a stop aborted it)
            plain.close()
            return
        app = self._make()  # only now: a refused handshake makes no session at all
        tls.set_protocol(app)
        app.connection_made(tls)
        early, self._early = self._early, []
        for deliver in early:
            deliver(app)

    # Between the handshake's end and this task's turn the TLS layer may already pass on
    # the client's first bytes or the connection's end; the app gets them after
    # connection_made, in order (aiosmtpd asserts on connection_lost before it).
    def data_received(self, data: bytes) -> None:
        self._early.append(lambda app: app.data_received(data))

    def eof_received(self) -> None:
        self._early.append(lambda app: app.eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._early.append(lambda app: app.connection_lost(exc))
