"""Where one IMAP connect + LOGIN + LOGOUT spends its time, ours vs hoodiecrow-imap.

Three measurements behind the logins row of `make bench-peers` (issue 13):

  python   the Python our server runs per login, without sockets: a transport that
           only collects what is written drives the real `_Connection` of
           servers/imap/server.py (greeting, `a LOGIN`, `b LOGOUT`, connection lost)
           on a running server's loop. Best and median of 7 runs, and per phase.
  phases   wall-clock per phase, seen by the bench's own client (bench/imapload.py):
           connect, greeting, LOGIN, LOGOUT, close, for ours (`serve --uvloop`),
           hoodiecrow-imap, and a bare uvloop Protocol that answers the same bytes
           with no logic at all (the floor any Python server on uvloop stands on).
           Rounds of 1 s, contenders interleaved; medians per phase, and the mean
           of a whole login.
  instructions
           the Python of `python` counted in instructions by valgrind (a figure that
           does not move with the machine's load; needs valgrind).

Usage: bench/.peers/venv/bin/python bench/bench_login_path.py [python|phases|instructions]
       [--rounds 4]
(`make bench-peers` installs that venv; `python` also runs from .venv).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

LOGIN = b"a LOGIN alice@example.test alice-password\r\n"
LOGOUT = b"b LOGOUT\r\n"
PHASES = ("connect", "greet", "login", "logout", "close")


class _Collector:
    """The transport a `_Connection` needs, keeping what it writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


def python_cost(count: int, *, timed: bool = True) -> None:
    from bench_imap import plaintext_imap_config
    from mailharness.server import MailServer
    from mailharness.servers.imap.server import _Connection
    from mailharness.servers.listeners import Security

    server = MailServer(plaintext_imap_config()).start()
    try:
        imap = server._backend.live_servers().imap  # the server object behind the listener
        assert imap is not None and server._thread is not None

        async def measure() -> None:
            def once(marks: list[float] | None = None) -> _Collector:
                transport = _Collector()
                clock = time.perf_counter
                start = clock()
                conn = _Connection(imap, Security.NONE, None, "bench")
                conn.connection_made(transport)  # type: ignore[arg-type]
                greeted = clock()
                conn.data_received(LOGIN)
                logged_in = clock()
                conn.data_received(LOGOUT)
                logged_out = clock()
                conn.connection_lost(None)
                if marks is not None:
                    marks += [greeted - start, logged_in - greeted, logged_out - logged_in]
                return transport

            replies = b"".join(once().written)
            assert b"a OK" in replies and b"b OK" in replies, replies
            if not timed:  # run-logins: what `instructions` counts
                for _ in range(count):
                    once()
                return
            for _ in range(2000):
                once()
            runs = []
            for _ in range(7):
                started = time.perf_counter()
                for _ in range(count):
                    once()
                runs.append((time.perf_counter() - started) / count * 1e6)
            marks: list[float] = []
            for _ in range(count):
                once(marks)
            runs.sort()
            print(f"Python per connect + LOGIN + LOGOUT, no sockets ({count} x 7):")
            print(f"  best {runs[0]:.1f} µs, median {runs[3]:.1f} µs")
            for index, phase in enumerate(("greeting", "LOGIN", "LOGOUT")):
                median = statistics.median(marks[index::3]) * 1e6
                print(f"  {phase:9s} {median:5.1f} µs (median)")

        server._thread.run(measure(), timeout=600)
    finally:
        server.stop()


def instructions(low: int = 500, high: int = 2500) -> None:
    """Instructions per login, counted by valgrind: the same figure on every run, where
    timings on a shared 2-core machine move by 10 % (two runs; their difference
    leaves out start-up)."""

    def total(count: int) -> int:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        command += [sys.executable, __file__, "run-logins", "--count", str(count)]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        run = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        found = re.search(r"Collected : (\d+)", run.stderr)
        assert found is not None, run.stderr[-2000:]
        return int(found.group(1))

    per_login = (total(high) - total(low)) / (high - low)
    print(f"instructions per connect + LOGIN + LOGOUT, no sockets (valgrind): {per_login:,.0f}")


GREETING = (
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
    b"AUTH=PLAIN AUTH=LOGIN] Dovecot ready.\r\n"
)


def bare_server() -> None:
    """The floor: a uvloop Protocol that answers the same bytes and does nothing else."""
    import asyncio

    import uvloop

    class Bare(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            transport.write(GREETING)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            tag = data.split(b" ", 1)[0]
            if b" LOGOUT" in data:
                bye = b"* BYE Logging out\r\n" + tag + b" OK Logout completed.\r\n"
                self.transport.write(bye)  # type: ignore[attr-defined]
                self.transport.close()
            else:
                self.transport.write(tag + b" OK Logged in\r\n")  # type: ignore[attr-defined]

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Bare, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    uvloop.run(serve())


def phases(rounds: int) -> None:
    import socket

    import bench_peers as bp

    from bench.imapload import IMAPLoad

    contenders = bp.Contenders()

    def floor() -> bp.Spawned:
        proc = subprocess.Popen(
            [sys.executable, __file__, "bare-server"], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        port = int(proc.stdout.readline())

        def stop() -> None:
            proc.terminate()
            proc.wait()

        return bp.Spawned("bare uvloop Protocol", ("127.0.0.1", port), stop, pid=proc.pid)

    starts = {
        "ours (--uvloop)": lambda: contenders.ours_imap("--uvloop"),
        "hoodiecrow-imap": contenders.hoodiecrow,
        "bare uvloop Protocol": floor,
    }
    times: dict[str, dict[str, list[float]]] = {n: {p: [] for p in PHASES} for n in starts}
    try:
        with bp._running(starts) as running:
            for server in running.values():  # warm-up
                bp.logins_per_second(server, 0.3)
            for round_ in range(rounds):
                for name in bp._rotated(list(running), round_):
                    server, spent = running[name], times[name]
                    end = time.perf_counter() + 1.0
                    while time.perf_counter() < end:
                        marks = [time.perf_counter()]
                        sock = socket.create_connection(server.address, timeout=60.0)
                        marks.append(time.perf_counter())
                        conn = IMAPLoad(sock)  # reads the greeting
                        marks.append(time.perf_counter())
                        conn.command(b"LOGIN " + b" ".join(server.login))
                        marks.append(time.perf_counter())
                        conn.command(b"LOGOUT")
                        marks.append(time.perf_counter())
                        sock.close()
                        marks.append(time.perf_counter())
                        for index, phase in enumerate(PHASES):
                            spent[phase].append((marks[index + 1] - marks[index]) * 1e6)
    finally:
        contenders.close()
    print(f"µs per phase, medians ({rounds} interleaved rounds of 1 s); mean of a whole login")
    print(f"{'server':22s}" + "".join(f"{p:>9s}" for p in PHASES) + "     mean  logins")
    for name, spent in times.items():
        mean = sum(statistics.mean(v) for v in spent.values())
        cells = "".join(f"{statistics.median(spent[p]):9.0f}" for p in PHASES)
        print(f"{name:22s}{cells}{mean:9.0f}{len(spent['connect']):8d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    choices = ("python", "phases", "both", "instructions", "bare-server", "run-logins")
    parser.add_argument("what", nargs="?", choices=choices, default="both")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    if args.what == "bare-server":
        bare_server()
        return 0
    if args.what == "run-logins":
        python_cost(args.count, timed=False)
        return 0
    if args.what == "instructions":
        instructions()
        return 0
    if args.what in ("python", "both"):
        python_cost(args.count)
    if args.what in ("phases", "both"):
        phases(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
