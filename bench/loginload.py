"""A lean IMAP login load client: connect, LOGIN, LOGOUT, close, on N connections at once.

The serial logins figure (bench/imapload.py, one connection after another) measures
latency: the server's and the client's work alternate, so it says little about what a
server can take. A load test opens connections side by side; this client keeps
`--connections` of them in flight (one asyncio Protocol each, uvloop when installed, no
pipelining: each command waits for its reply), and the server's CPU becomes the limit.
The same client measures every IMAP server of `make bench-peers`.

    python bench/loginload.py 127.0.0.1 1143 --connections 8 --seconds 3 \
        --user alice@example.test --password alice-password

prints one JSON line: {"logins": n, "seconds": s, "per_second": r, "errors": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from lineclient import LineClient, run_and_report


class _Login(LineClient):
    """Greeting -> `a LOGIN` -> `b LOGOUT` -> the server closes (or we do, after its OK)."""

    def __init__(self, login: bytes, done: asyncio.Future[None]) -> None:
        super().__init__(done)
        self.login = login

    def line(self, line: bytes) -> None:
        assert self.transport is not None
        step = self.step
        if step == "greeting":
            if not line.startswith(b"* OK"):
                self.fail(f"greeting: {line!r}")
                return
            self.transport.write(b"a LOGIN " + self.login + b"\r\n")
            self.step = "login"
        elif step == "login" and line.startswith(b"a "):
            if not line.startswith(b"a OK"):
                self.fail(f"LOGIN: {line!r}")
                return
            self.transport.write(b"b LOGOUT\r\n")
            self.step = "logout"
        elif step == "logout" and line.startswith(b"b "):
            self.step = "done"
            self.transport.close()


async def run(
    host: str, port: int, login: bytes, connections: int, seconds: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    stop_at = started + seconds
    logins = 0
    errors: list[str] = []

    async def one_connection_after_another() -> None:
        nonlocal logins
        while time.perf_counter() < stop_at and not errors:
            done: asyncio.Future[None] = loop.create_future()
            client = _Login(login, done)
            await loop.create_connection(lambda client=client: client, host, port)  # type: ignore[misc]
            await done
            if client.error is not None:
                errors.append(client.error)
            else:
                logins += 1

    workers = (one_connection_after_another() for _ in range(connections))
    await asyncio.wait_for(asyncio.gather(*workers), seconds + 30)
    elapsed = time.perf_counter() - started
    return {
        "logins": logins,
        "seconds": elapsed,
        "per_second": logins / elapsed,
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args(argv)
    login = f"{args.user} {args.password}".encode()
    return run_and_report(run(args.host, args.port, login, args.connections, args.seconds))


if __name__ == "__main__":
    sys.exit(main())
