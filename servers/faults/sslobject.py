"""TLS 1.0 to 1.3 by Python's ``ssl`` over memory buffers, on top of a plain channel.

Why not ``asyncio``'s own TLS (``start_tls`` / ``ssl=`` on a transport):
when a server-side handshake fails, asyncio closes the transport without
writing the alert OpenSSL produced, so a client of a TLS 1.0-only port would
read a bare EOF instead of ``[SSL: TLSV1_ALERT_PROTOCOL_VERSION]``. Here
every byte OpenSSL writes, the alert included, goes out before we give up.
"""

from __future__ import annotations

import contextlib
import ssl

from mailharness.servers.faults.channel import READ_CHUNK, Channel


class SSLObjectChannel:
    """A server-side ``ssl.SSLObject`` over ``inner``; call ``handshake()`` first."""

    def __init__(self, inner: Channel, context: ssl.SSLContext) -> None:
        self._inner = inner
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            await self._inner.write(data)

    async def _feed(self) -> None:
        data = await self._inner.read(READ_CHUNK)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def handshake(self) -> None:
        """Raises ``ssl.SSLError`` after the alert (if any) has been sent."""
        try:
            while True:
                try:
                    self._ssl.do_handshake()
                    return
                except ssl.SSLWantReadError:
                    await self._flush()
                    await self._feed()
        finally:
            await self._flush()

    def version(self) -> str:
        return str(self._ssl.version())

    async def read(self, n: int = READ_CHUNK) -> bytes:
        while True:
            try:
                data = self._ssl.read(n)
            except ssl.SSLWantReadError:
                await self._flush()  # e.g. a TLS 1.3 key update answer
                if self._incoming.eof:
                    return b""
                await self._feed()
                continue
            except (ssl.SSLError, OSError):  # close_notify, EOF without it, a broken record
                return b""
            await self._flush()
            return data

    async def write(self, data: bytes) -> None:
        # With memory buffers a write never waits for the peer; TLS 1.0-1.3 has no
        # server-initiated renegotiation here, so it never needs to read either.
        self._ssl.write(data)
        await self._flush()

    async def close(self) -> None:
        with contextlib.suppress(ssl.SSLError):  # SSLWantReadError: the peer's answer
            self._ssl.unwrap()  # queues our close_notify
        with contextlib.suppress(OSError):
            await self._flush()
        await self._inner.close()

    def abort(self) -> None:
        self._inner.abort()
