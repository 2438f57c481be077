"""Has a connection's client sent something the server has not handled yet?

At a test's end the client has often just closed its side (after refusing a
certificate, say) and the server has not yet read that: whatever the server
records when it does would land after the test's verdict. `unsettled` tells
such connections apart from idle ones, so a fixture can wait for exactly those
before it judges, and never waits for a connection a test merely left open.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable


def has_unread_input(transport: asyncio.BaseTransport | None) -> bool:
    """True while the kernel holds bytes (or the EOF) this connection has not read."""
    if transport is None or transport.is_closing():
        return False
    wrapped = transport.get_extra_info("socket")
    if wrapped is None:
        return False
    try:
        # asyncio's socket wrapper refuses recv(): peek through a duplicate of the fd.
        with socket.socket(fileno=socket.dup(wrapped.fileno())) as sock:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # a pending reset: the server has yet to see it
    return True  # data, or b"" for the EOF


def unsettled(transports: Iterable[asyncio.BaseTransport | None]) -> bool:
    return any(has_unread_input(t) for t in transports)
