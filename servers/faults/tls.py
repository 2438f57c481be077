"""TLS termination with a pinned protocol version, on any client channel.

TLS 1.0 to 1.3 use Python's ``ssl`` with ``minimum_version ==
maximum_version``; TLS 1.0/1.1 also need ``@SECLEVEL=0:ALL``, because
OpenSSL 3 refuses their SHA-1 signatures at its default level (the version
names and their conversions: ``servers/tlsversions.py``). SSL 3.0 goes to
tlslite-ng (``sslv3.py``). Both run over a plain channel (``sslobject.py`` says
why not asyncio's TLS).

    channel, version = await start_server_tls(plain, TLSVersion(version="tls1.0"), contexts)
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mailharness.servers.faults.channel import Channel
from mailharness.servers.faults.sslobject import SSLObjectChannel
from mailharness.servers.faults.toxics import TLSVersion
from mailharness.servers.tlsversions import (
    TLSProtocol,
    TLSVersionName,
    limit_versions,
    version_range,
)

if TYPE_CHECKING:
    from mailharness.servers.faults.sslv3 import TlsliteChannel

# A client that connects and says nothing must not hold a task forever.
HANDSHAKE_TIMEOUT = 10.0

_WEAK_KEY_VARIANT = "weak-key"


class CertFiles(Protocol):
    """What a server needs of a certificate (``harness.certs.ServerCert`` has it)."""

    @property
    def chain_pem(self) -> bytes: ...
    @property
    def key_pem(self) -> bytes: ...
    @property
    def cert_path(self) -> Path: ...
    @property
    def key_path(self) -> Path: ...


class CertSource(Protocol):
    """Where certificates come from (``harness.certs.MailCA`` is one)."""

    def server_cert(self, variant: str, /) -> CertFiles: ...


def server_context(version: TLSVersionName, cert: CertFiles, variant: str) -> ssl.SSLContext:
    """A server context that offers exactly ``version`` (not for "sslv3")."""
    low, high = version_range(version)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    limit_versions(ctx, low, high)
    if low.legacy:
        ctx.set_ciphers("@SECLEVEL=0:ALL")
    elif variant == _WEAK_KEY_VARIANT:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # else our own OpenSSL refuses the 1024-bit key
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    return ctx


class ContextCache:
    """One SSLContext per (version, certificate); building one loads files and keys."""

    def __init__(self, certs: CertSource) -> None:
        self.certs = certs
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def context(self, pin: TLSVersion) -> ssl.SSLContext:
        key = (pin.version, pin.variant)
        with self._lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                cert = self.certs.server_cert(pin.variant)
                ctx = server_context(pin.version, cert, pin.variant)
                self._contexts[key] = ctx
        return ctx


async def start_server_tls(
    channel: Channel, pin: TLSVersion, contexts: ContextCache
) -> tuple[Channel, str]:
    """TLS as the server on a plain channel (right after accept, or after STARTTLS).

    Returns the channel to use from now on and the version spoken. Raises
    ``ssl.SSLError``, tlslite's ``TLSError``, ``OSError`` or ``TimeoutError``,
    after the client has been sent the alert if the TLS stack made one.
    """
    tls: TlsliteChannel | SSLObjectChannel
    if pin.version == TLSProtocol.SSLV3.value:
        # tlslite-ng costs ~40 ms to import: only an SSLv3 listener pays for it.
        from mailharness.servers.faults.sslv3 import TlsliteChannel

        cert = contexts.certs.server_cert(pin.variant)
        tls = TlsliteChannel(channel, cert.chain_pem, cert.key_pem)
    else:
        tls = SSLObjectChannel(channel, contexts.context(pin))
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        await tls.handshake()
    return tls, tls.version()
