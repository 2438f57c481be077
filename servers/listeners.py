"""Listening sockets and the endpoints we report for them.

Sockets are bound and listening *before* their port is reported, so a client
can connect the moment it learns the port: no "find a free port" guess, no
race with another xdist worker, and no readiness sleep.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from dataclasses import dataclass

from servers.errors import ConfigError, parse_choice

DEFAULT_HOST = "127.0.0.1"
# Plenty for tests, small enough that a runaway client cannot queue forever.
LISTEN_BACKLOG = 128


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
