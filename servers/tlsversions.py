"""TLS protocol versions: one vocabulary, and every other spelling converted here.

Ours is the fault's spelling (``TLSVersion(version="tls1.0")``, TOML
``version = "tls1.0"``). The others only meet us at the edges, and go through
`TLSProtocol`:

    ours     OpenSSL (1)   ssl.TLSVersion   wire (tlslite)
    sslv3    SSLv3         SSLv3            (3, 0)
    tls1.0   TLSv1         TLSv1            (3, 1)
    tls1.1   TLSv1.1       TLSv1_1          (3, 2)
    tls1.2   TLSv1.2       TLSv1_2          (3, 3)
    tls1.3   TLSv1.3       TLSv1_3          (3, 4)

(1) what ``SSLSocket.version()`` says and Dovecot's ``ssl_min_protocol`` takes.
A version that was negotiated (transcripts, ``CapturedMessage.tls_version``) is
reported in OpenSSL's spelling, as ``SSLSocket.version()`` gives it. ``"modern"``
names a range, TLS 1.2 and 1.3: what a healthy server offers.

    low, high = version_range("tls1.0")
    limit_versions(ctx, low, high)
"""

from __future__ import annotations

import enum
import ssl
import warnings
from typing import Literal

from mailharness.servers.errors import choice_error

__all__ = [
    "MODERN",
    "TLS_VERSIONS",
    "TLSProtocol",
    "TLSVersionName",
    "limit_versions",
    "version_range",
]


class TLSProtocol(enum.Enum):
    """One protocol version, oldest first; the value is our spelling."""

    SSLV3 = "sslv3"
    TLS1_0 = "tls1.0"
    TLS1_1 = "tls1.1"
    TLS1_2 = "tls1.2"
    TLS1_3 = "tls1.3"

    @property
    def openssl(self) -> str:
        """OpenSSL's name: what ``SSLSocket.version()`` says and Dovecot's settings take."""
        return _OPENSSL[self]

    @property
    def stdlib(self) -> ssl.TLSVersion:
        return ssl.TLSVersion[_OPENSSL[self].replace(".", "_")]

    @property
    def wire(self) -> tuple[int, int]:
        """The record-layer version (3, minor): tlslite's spelling."""
        return (3, _ORDER.index(self))

    @property
    def legacy(self) -> bool:
        """Below TLS 1.2: OpenSSL 3 serves or accepts it only at ``@SECLEVEL=0``."""
        return _ORDER.index(self) < _ORDER.index(TLSProtocol.TLS1_2)

    @classmethod
    def parse(
        cls, value: TLSProtocol | str | ssl.TLSVersion | tuple[int, int], field: str = "version"
    ) -> TLSProtocol:
        """A version from any spelling in the module's table; else a ConfigError naming ours."""
        for protocol in _ORDER:
            if value in (protocol, protocol.value, protocol.openssl, protocol.wire) or (
                isinstance(value, ssl.TLSVersion) and value is protocol.stdlib
            ):
                return protocol
        raise choice_error(field, value, [p.value for p in _ORDER])


_ORDER = tuple(TLSProtocol)
_OPENSSL = {
    TLSProtocol.SSLV3: "SSLv3",
    TLSProtocol.TLS1_0: "TLSv1",
    TLSProtocol.TLS1_1: "TLSv1.1",
    TLSProtocol.TLS1_2: "TLSv1.2",
    TLSProtocol.TLS1_3: "TLSv1.3",
}

#: What a TLSVersion fault pins: one version, or "modern".
TLSVersionName = Literal["sslv3", "tls1.0", "tls1.1", "tls1.2", "tls1.3", "modern"]
TLS_VERSIONS: tuple[TLSVersionName, ...] = (
    "sslv3",
    "tls1.0",
    "tls1.1",
    "tls1.2",
    "tls1.3",
    "modern",
)
MODERN = (TLSProtocol.TLS1_2, TLSProtocol.TLS1_3)


def version_range(name: TLSVersionName | TLSProtocol) -> tuple[TLSProtocol, TLSProtocol]:
    """The lowest and highest version a pin offers (one version, or "modern")."""
    if name == "modern":
        return MODERN
    protocol = TLSProtocol.parse(name)
    return protocol, protocol


def limit_versions(ctx: ssl.SSLContext, low: TLSProtocol, high: TLSProtocol | None = None) -> None:
    """Set a context's version range (``high`` None: no maximum).

    Setting a legacy version raises a DeprecationWarning meant for clients that
    use them by mistake; offering or accepting them is the point here, so it is
    silenced locally.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = low.stdlib
        if high is not None:
            ctx.maximum_version = high.stdlib
