"""A byte channel: the one interface the proxy pumps read from and write to.

Plain TCP, TLS by Python's ``ssl`` and SSL 3.0 by tlslite-ng look the same
to the pumps, so every fault works the same over any of them. Both TLS
engines run over a plain channel through memory buffers rather than
asyncio's own TLS transport, for two reasons: asyncio aborts a failed
server handshake without sending the TLS alert (a client would see a bare
EOF instead of ``TLSV1_ALERT_PROTOCOL_VERSION``), and a TLS layer reading
from the plain stream can never miss a ClientHello that arrived early.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Protocol

# Big enough to move a FETCH of a few MB quickly, small enough to pace smoothly.
READ_CHUNK = 64 * 1024


class Channel(Protocol):
    """One side of a proxied connection."""

    async def read(self, n: int = READ_CHUNK) -> bytes:
        """Up to ``n`` bytes; ``b""`` at EOF (or when the peer vanished)."""
        ...

    async def write(self, data: bytes) -> None:
        """Write and wait until the transport accepted it (back-pressure)."""
        ...

    async def close(self) -> None:
        """Graceful close: FIN after the buffered bytes."""
        ...

    def abort(self) -> None:
        """Close at once, dropping buffered bytes."""
        ...


class StreamChannel:
    """A channel over asyncio streams: plain TCP, or the layer a TLS channel runs on."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self, n: int = READ_CHUNK) -> bytes:
        try:
            return await self.reader.read(n)
        except OSError:  # ConnectionResetError and friends: the peer is gone
            return b""

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    def abort(self) -> None:
        self.writer.transport.abort()


async def accepted_channel(sock: socket.socket) -> StreamChannel:
    """Wrap a socket from ``accept()`` as a server-side stream (TLS goes on top of it)."""
    reader, writer = await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
    return StreamChannel(reader, writer)


async def connect(
    address: tuple[str, int], timeout: float, source: str | None = None
) -> StreamChannel:
    local_addr = None if source is None else (source, 0)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(*address, local_addr=local_addr), timeout
    )
    return StreamChannel(reader, writer)
