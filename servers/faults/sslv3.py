"""SSL 3.0 (and any version tlslite-ng speaks) over an asyncio channel.

OpenSSL 3 cannot serve SSL 3.0, so a pure-Python TLS stack does it.
tlslite-ng's non-blocking API runs on generators that yield 0 ("want to
read") or 1 ("want to write") whenever its socket raises ``EWOULDBLOCK``.
We hand it an in-memory socket instead of a real one: what it sends is
collected and written to the channel, and when it wants to read we await the
channel and feed it. No thread, no second socket, and the pumps see an
ordinary ``Channel``.

Pin with ``versions = [(3, 0)]`` as well as min/max: with min/max alone
tlslite still negotiates TLS 1.2 (ENVIRONMENT.md).
"""

from __future__ import annotations

import errno
import warnings
from collections.abc import Iterator
from typing import Any

with warnings.catch_warnings():
    # tlslite's package imports its asyncore integration, deprecated in 3.11; we use none of it.
    warnings.simplefilter("ignore", DeprecationWarning)
    # Re-exported (`as`): the probe and the tests reach tlslite through here, silenced too.
    from tlslite import HandshakeSettings as HandshakeSettings
    from tlslite import TLSConnection as TLSConnection
    from tlslite import X509CertChain, parsePEMKey
    from tlslite.errors import TLSAbruptCloseError, TLSError

from mailharness.servers.faults.channel import READ_CHUNK, Channel
from mailharness.servers.tlsversions import TLSProtocol

SSL3 = TLSProtocol.SSLV3.wire


class _MemorySocket:
    """The socket tlslite thinks it has: reads from a buffer, writes to a buffer."""

    def __init__(self) -> None:
        self.incoming = bytearray()
        self.outgoing = bytearray()
        self.eof = False

    def recv(self, n: int) -> bytes:
        if self.incoming:
            data = bytes(self.incoming[:n])
            del self.incoming[:n]
            return data
        if self.eof:
            return b""
        raise BlockingIOError(errno.EWOULDBLOCK, "no data buffered yet")

    def send(self, data: bytes) -> int:
        self.outgoing += data
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.outgoing += data

    def close(self) -> None:
        """tlslite closes its socket after a fatal alert; the channel owner closes the real one."""


def settings_for(version: tuple[int, int] = SSL3) -> HandshakeSettings:
    settings = HandshakeSettings()
    settings.minVersion = version
    settings.maxVersion = version
    settings.versions = [version]
    return settings


class TlsliteChannel:
    """A server-side tlslite connection over ``inner``; call ``handshake()`` first."""

    def __init__(self, inner: Channel, chain_pem: bytes, key_pem: bytes) -> None:
        self._inner = inner
        self._sock = _MemorySocket()
        self._tls = TLSConnection(self._sock)
        self._tls.ignoreAbruptClose = True
        self._chain = X509CertChain()
        self._chain.parsePemList(chain_pem.decode())
        self._key = parsePEMKey(key_pem.decode(), private=True)

    async def _drive(self, steps: Iterator[Any]) -> Any:
        """Run a tlslite generator to its result, doing the I/O it asks for."""
        try:
            for step in steps:
                await self._flush()
                if step == 0:
                    data = await self._inner.read(READ_CHUNK)
                    if not data:
                        self._sock.eof = True
                    self._sock.incoming += data
                elif step != 1:
                    return step
            return None
        finally:
            # A fatal alert is queued before tlslite raises: the client must get it.
            await self._flush()

    async def _flush(self) -> None:
        if self._sock.outgoing:
            data = bytes(self._sock.outgoing)
            self._sock.outgoing.clear()
            await self._inner.write(data)

    async def handshake(self, version: tuple[int, int] = SSL3) -> None:
        await self._drive(
            self._tls.handshakeServerAsync(
                certChain=self._chain, privateKey=self._key, settings=settings_for(version)
            )
        )

    def version(self) -> str:
        return TLSProtocol.parse(self._tls.version).openssl

    async def read(self, n: int = READ_CHUNK) -> bytes:
        try:
            data = await self._drive(self._tls.readAsync(max=n))
        except (TLSAbruptCloseError, TLSError, OSError):
            return b""
        return bytes(data or b"")

    async def write(self, data: bytes) -> None:
        # Our socket never blocks, so the generator runs to the end without awaiting:
        # a concurrent read suspended at "want to read" is not disturbed.
        for _step in self._tls.writeAsync(data):
            pass
        await self._flush()

    async def close(self) -> None:
        await self._inner.close()

    def abort(self) -> None:
        self._inner.abort()
