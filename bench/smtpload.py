"""A lean SMTP load client: one asyncio Protocol per connection, no pipelining.

The same client measures every SMTP server (ours, aiosmtpd, nodemailer's smtp-server,
maildev), so it must cost far less than any of them: no streams, no parsing beyond
the reply code, one write per command, uvloop when installed. Each connection says
EHLO once, then sends messages back to back (MAIL, RCPT, DATA, the message, each
waiting for its reply) until the window closes, then QUIT.

    python bench/smtpload.py 127.0.0.1 2525 --connections 8 --seconds 3

prints one JSON line: {"messages": n, "seconds": s, "per_second": r, "errors": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from lineclient import LineClient, run_and_report

SIZE = 1024
FROM = b"sender@example.test"
TO = b"alice@example.test"


def message(size: int = SIZE) -> bytes:
    """A plain message of exactly `size` bytes (CRLF lines, no line starting with '.')."""
    head = (
        b"From: <sender@example.test>\r\nTo: <alice@example.test>\r\n"
        b"Subject: load\r\nMessage-ID: <load@example.test>\r\n\r\n"
    )
    line = b"x" * 76 + b"\r\n"
    body = b""
    while len(head) + len(body) + len(line) <= size:
        body += line
    rest = size - len(head) - len(body)
    if rest >= 3:
        body += b"y" * (rest - 2) + b"\r\n"
    data = head + body
    return data + b" " * (size - len(data)) if len(data) < size else data


class _Client(LineClient):
    """Greeting -> EHLO -> (MAIL -> RCPT -> DATA -> message)* -> QUIT, one reply at a time."""

    final_step = "quit"

    def __init__(self, payload: bytes, stop_at: float, done: asyncio.Future[None]) -> None:
        super().__init__(done)
        self.payload = payload + b".\r\n"
        self.stop_at = stop_at
        self.sent = 0

    def line(self, line: bytes) -> None:
        if len(line) > 3 and line[3:4] == b"-":
            return  # a multi-line reply goes on
        self._reply(line)

    def _reply(self, line: bytes) -> None:
        assert self.transport is not None
        code = line[:3]
        step = self.step
        expected = {"data": b"354", "greeting": b"220", "quit": b"221"}.get(step, b"250")
        if code != expected:
            self.fail(f"{step}: {line!r}")
            return
        write = self.transport.write
        if step == "greeting":
            write(b"EHLO load.example.test\r\n")
            self.step = "ehlo"
        elif step in ("ehlo", "message"):
            if step == "message":
                self.sent += 1
            if time.perf_counter() >= self.stop_at:
                write(b"QUIT\r\n")
                self.step = "quit"
            else:
                write(b"MAIL FROM:<" + FROM + b">\r\n")
                self.step = "mail"
        elif step == "mail":
            write(b"RCPT TO:<" + TO + b">\r\n")
            self.step = "rcpt"
        elif step == "rcpt":
            write(b"DATA\r\n")
            self.step = "data"
        elif step == "data":
            write(self.payload)
            self.step = "message"
        elif step == "quit":
            self.transport.close()


async def run(host: str, port: int, connections: int, seconds: float, size: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    payload = message(size)
    started = time.perf_counter()
    stop_at = started + seconds
    clients: list[_Client] = []
    waits: list[asyncio.Future[None]] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        client = _Client(payload, stop_at, done)
        await loop.create_connection(lambda client=client: client, host, port)  # type: ignore[misc]
        clients.append(client)
        waits.append(done)
    await asyncio.wait_for(asyncio.gather(*waits), seconds + 30)
    elapsed = time.perf_counter() - started
    sent = sum(c.sent for c in clients)
    return {
        "messages": sent,
        "seconds": elapsed,
        "per_second": sent / elapsed,
        "errors": [c.error for c in clients if c.error],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args(argv)
    return run_and_report(run(args.host, args.port, args.connections, args.seconds, args.size))


if __name__ == "__main__":
    sys.exit(main())
