"""What the load clients (bench/smtpload.py, bench/loginload.py) share: one asyncio
Protocol per connection that reads CRLF lines and takes one step per reply, and the
loop they run on. They must cost far less than any server they measure: no streams, no
parsing beyond what a step needs, uvloop when installed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, cast


class LineClient(asyncio.Protocol):
    """One connection: each line goes to `line()`, which writes the next command and
    moves `step` on; `fail()` or a close before `final_step` ends it with `error` set,
    and `done` is resolved when the connection is gone either way."""

    final_step = "done"

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.buffer = b""
        self.step = "greeting"
        self.transport: asyncio.Transport | None = None
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but act as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.error is None:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            self.line(line)

    def line(self, line: bytes) -> None:
        raise NotImplementedError

    def fail(self, text: str) -> None:
        self.error = text
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.step != self.final_step and self.error is None:
            self.error = f"connection lost in {self.step}: {exc!r}"
        if not self.done.done():
            self.done.set_result(None)


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (the client must not be the bottleneck), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def run_and_report(measure: Coroutine[Any, Any, dict[str, Any]]) -> int:
    """Run a load client's measurement on `new_loop()`, print its result as one JSON
    line (what bench_peers reads), and exit non-zero if it met errors."""
    loop = new_loop()
    try:
        result = loop.run_until_complete(measure)
    finally:
        loop.close()
    print(json.dumps(result))
    return 0 if not result["errors"] else 1
