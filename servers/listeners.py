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
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from mailharness.servers.errors import ConfigError, forget_traceback, parse_choice

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
        return parse_choice(cls, value, field)


@dataclass(frozen=True, slots=True)
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


class ImplicitTLS(asyncio.Protocol):
    """Accepts a connection, does the TLS handshake with ``loop.start_tls``, then hands
    the TLS transport to the real protocol (``make()``).

    Used instead of ``create_server(ssl=...)`` for implicit TLS (993/465): there a
    failed handshake (a client refusing our certificate) ends inside asyncio, and
    its error's traceback kept the protocol, buffers and frames in a reference cycle
    (~140 KB each, until the collector ran). Here it ends in our ``except``.
    """

    def __init__(self, make: Callable[[], asyncio.Protocol], context: ssl.SSLContext) -> None:
        self._make = make
        self._context = context

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A full Transport (uvloop's act as one without subclassing asyncio's).
        plain = cast(asyncio.Transport, transport)
        plain.pause_reading()  # the ClientHello is for the TLS layer, not for us
        asyncio.get_running_loop().create_task(self._handshake(plain))

    async def _handshake(self, plain: asyncio.Transport) -> None:
        app = self._make()
        try:
            tls = await asyncio.get_running_loop().start_tls(
                plain, app, self._context, server_side=True
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            forget_traceback(exc)
            plain.close()
            return
        if tls is None:  # pragma: no cover - start_tls returns None only on a closed loop
            plain.close()
            return
        app.connection_made(tls)
