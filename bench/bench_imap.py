"""IMAP throughput: ours vs native Dovecot 2.3 vs pymap, same machine, same run.

Each server gets the same N deterministic messages of about 4 KB in alice's INBOX
(rendered by the store's `Synthetic` generator): ours through `server.deliver`,
Dovecot as maildir files on tmpfs, pymap through pipelined APPENDs. Every server
runs in its own process(es); one fast raw-socket client (bench/imapload.py) measures:

  start       process start -> greeting (median of 3 fresh starts, empty mailbox)
  login/s     connect + greeting + LOGIN + LOGOUT, sequentially, for a few seconds
  envelope    UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE): messages/s
  body        UID FETCH 1:* BODY.PEEK[]: messages/s and MB/s (bytes on the wire)
  rss         ours only: RSS after SELECT + UID FETCH 1:* (FLAGS) of a 1,000,000-message
              synthetic INBOX

Fetch figures are medians of --repeats runs after one warm-up run. Ratios are vs
Dovecot in its default (high-security) login mode.

Usage: .venv/bin/python bench/bench_imap.py [--count 10000] [--repeats 5] [--no-pymap]
       (needs Dovecot installed; pymap from `pip install -e '.[bench]'`)
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailharness.servers.dovecot import DovecotConfig, DovecotProcess, SSLMode
from mailharness.servers.imap.store.messages import Synthetic

from bench.imapload import IMAPLoad, IMAPLoadError, login_logout

if TYPE_CHECKING:
    from mailharness.server import MailConfig

LOGIN = b"alice@example.test"
PASSWORD = b"alice-password"
PYMAP_LOGIN, PYMAP_PASSWORD = b"demouser", b"demopass"
SEED = 7
SIZE = 4096
START_TIMEOUT = 15.0


def corpus(count: int, size: int = SIZE, seed: int = SEED) -> list[bytes]:
    return list(iter_corpus(count, size, seed))


def iter_corpus(count: int, size: int = SIZE, seed: int = SEED) -> Iterator[bytes]:
    """The corpus one message at a time: a server fed from it never holds the bench's
    own copy of the whole corpus (which its memory figure would otherwise count)."""
    synth = Synthetic(seed, size, LOGIN.decode())
    return (synth.render(key) for key in range(1, count + 1))


# --- our server, in its own process ------------------------------------------------------
def plaintext_imap_config() -> MailConfig:
    """One plain IMAP listener taking LOGIN in the clear, as the Dovecot ours is compared
    with is configured (ssl = no): the server every IMAP bench measures."""
    from mailharness.server import MailConfig
    from mailharness.servers.imap import IMAPSettings
    from mailharness.servers.listeners import Security

    return MailConfig(
        smtp=None,
        imap=IMAPSettings(plaintext_auth_requires_tls=False),
        imap_listeners=(Security.NONE,),
    )


def serve_ours(count: int, synthetic: int) -> None:
    """Child mode: serve IMAP (plain) with a seeded INBOX; print one JSON line; run until EOF."""
    serve_messages(iter_corpus(count), synthetic)


def serve_messages(messages: Iterable[bytes], synthetic: int = 0) -> None:
    """Serve plain IMAP with `messages` (then `synthetic` generated ones) in alice's INBOX,
    print one JSON line (port, pid) and run until stdin closes: the child every IMAP
    bench starts, so each measures the same server."""
    from mailharness.server import MailServer

    server = MailServer(plaintext_imap_config()).start()
    try:
        if synthetic:
            server.store.add_synthetic(LOGIN.decode(), "INBOX", synthetic, seed=SEED, size=SIZE)
        for raw in messages:
            server.deliver(LOGIN.decode(), raw)
        port = server.imap.none.port
        print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
        sys.stdin.read()  # the parent closes our stdin to stop us
    finally:
        server.stop()


@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    address: tuple[str, int]
    start_seconds: float
    extra: dict[str, object] = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _read_greeting(
    address: tuple[str, int], deadline: float, poll: bool, expect: bytes = b"* OK"
) -> None:
    """Connect and read the greeting (`expect`: how it starts; IMAP's by default);
    `poll` retries refused connects (a server that binds itself)."""
    delay = 0.002
    while True:
        try:
            with socket.create_connection(address, timeout=START_TIMEOUT) as sock:
                data = b""
                while b"\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionResetError("closed before greeting")
                    data += chunk
                if not data.startswith(expect):
                    raise RuntimeError(f"unexpected greeting {data!r}")
                return
        except (ConnectionRefusedError, ConnectionResetError):
            if not poll or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def start_ours(count: int, synthetic: int = 0) -> Spawned:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "serve-ours",
            "--count",
            str(count),
            "--synthetic",
            str(synthetic),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 600)
    line = proc.stdout.readline() if ready else b""
    if not line:
        proc.kill()
        raise RuntimeError(f"our server did not start (exit {proc.wait()})")
    facts = json.loads(line)
    address = ("127.0.0.1", int(facts["port"]))
    _read_greeting(address, time.monotonic() + START_TIMEOUT, poll=False)
    return Spawned(proc, address, time.perf_counter() - started, facts)


def start_pymap() -> Spawned:
    exe = shutil.which(
        "pymap",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    if exe is None:
        raise RuntimeError("pymap is not installed: pip install -e '.[bench]'")
    with socket.socket() as probe:  # pymap binds itself: pick a free port and poll
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [exe, "--host", "127.0.0.1", "--port", str(port), "--no-tls", "dict", "--demo-data"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = ("127.0.0.1", port)
    _read_greeting(address, time.monotonic() + START_TIMEOUT, poll=True)
    return Spawned(proc, address, time.perf_counter() - started)


# --- measurements ------------------------------------------------------------------------
def logins_per_second(
    address: tuple[str, int], login: bytes, password: bytes, seconds: float
) -> float:
    rates = []
    for _ in range(3):
        done = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / 3:
            login_logout(address, login, password)
            done += 1
        rates.append(done / elapsed)
    return statistics.median(rates)


@dataclass
class FetchFigures:
    messages: int
    seconds: float
    megabytes: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.seconds


def fetch(conn: IMAPLoad, command: bytes, repeats: int) -> FetchFigures:
    conn.command(command)  # warm-up: caches, indexes, rendered envelopes
    runs = [conn.command(command) for _ in range(repeats)]
    seconds = statistics.median(r.seconds for r in runs)
    last = runs[-1]
    return FetchFigures(last.fetches, seconds, last.bytes / 1e6)


def rss_mib(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@dataclass
class Row:
    name: str
    start_ms: float | None = None
    logins: float | None = None
    envelope: FetchFigures | None = None
    body: FetchFigures | None = None
    errors: list[str] = field(default_factory=list)


def measure_mailbox(
    row: Row, address: tuple[str, int], login: bytes, password: bytes, args: argparse.Namespace
) -> None:
    try:
        row.logins = logins_per_second(address, login, password, args.login_seconds)
    except (OSError, IMAPLoadError) as exc:
        row.errors.append(f"login/logout: {exc!r}")
    try:
        conn = IMAPLoad.connect(address)
        conn.command(b"LOGIN " + login + b" " + password)
        conn.command(b"SELECT INBOX")
        row.envelope = fetch(conn, b"UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)", args.repeats)
        row.body = fetch(conn, b"UID FETCH 1:* BODY.PEEK[]", args.repeats)
        conn.close()
    except (OSError, IMAPLoadError) as exc:
        row.errors.append(f"fetch: {exc!r}")


def median_start(start: Callable[[], float], times: int = 3) -> float:
    return statistics.median(start() for _ in range(times)) * 1000


@contextmanager
def dovecot(count: int, *, high_performance: bool = False) -> Iterator[DovecotProcess]:
    config = DovecotConfig(ssl=SSLMode.NO, imaps=False, high_performance=high_performance)
    with DovecotProcess(config) as process:
        if count:
            process.deliver_many(LOGIN.decode(), corpus(count))
        yield process


def dovecot_start_seconds(high_performance: bool = False) -> float:
    with dovecot(0, high_performance=high_performance) as process:
        return process.startup_seconds


def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []

    row = Row("Dovecot 2.3 (native)")
    row.start_ms = median_start(dovecot_start_seconds)
    with dovecot(args.count) as process:
        address = process.endpoint("none").address
        measure_mailbox(row, address, LOGIN, PASSWORD, args)
    rows.append(row)

    row = Row("Dovecot, high-performance login")
    row.start_ms = median_start(lambda: dovecot_start_seconds(True))
    with dovecot(0, high_performance=True) as process:
        row.logins = logins_per_second(
            process.endpoint("none").address, LOGIN, PASSWORD, args.login_seconds
        )
    rows.append(row)

    row = Row("ours (mailharness)")

    def ours_start() -> float:
        spawned = start_ours(0)
        spawned.stop()
        return spawned.start_seconds

    row.start_ms = median_start(ours_start)
    spawned = start_ours(args.count)
    try:
        measure_mailbox(row, spawned.address, LOGIN, PASSWORD, args)
    finally:
        spawned.stop()
    rows.append(row)

    if not args.no_pymap:
        row = Row("pymap (dict backend)")

        def pymap_start() -> float:
            spawned = start_pymap()
            spawned.stop()
            return spawned.start_seconds

        row.start_ms = median_start(pymap_start)
        spawned = start_pymap()
        try:
            conn = IMAPLoad.connect(spawned.address)
            conn.command(b"LOGIN " + PYMAP_LOGIN + b" " + PYMAP_PASSWORD)
            loaded = time.perf_counter()
            conn.append(b"INBOX", corpus(args.count), literal_plus=False)
            print(
                f"pymap: {args.count} messages APPENDed in {time.perf_counter() - loaded:.1f}s",
                file=sys.stderr,
            )
            conn.close()
            measure_mailbox(row, spawned.address, PYMAP_LOGIN, PYMAP_PASSWORD, args)
        finally:
            spawned.stop()
        rows.append(row)
    return rows


def measure_rss(count: int) -> tuple[float, float, float] | str:
    """Ours with `count` synthetic messages: (RSS idle, RSS after FETCH FLAGS, peak) MiB."""
    spawned = start_ours(0, synthetic=count)
    try:
        pid = int(str(spawned.extra["pid"]))
        idle = rss_mib(pid)[0]
        conn = IMAPLoad.connect(spawned.address)
        conn.command(b"LOGIN " + LOGIN + b" " + PASSWORD)
        conn.command(b"SELECT INBOX")
        result = conn.command(b"UID FETCH 1:* (FLAGS)")
        if result.fetches != count:
            return f"UID FETCH 1:* (FLAGS) returned {result.fetches} of {count} messages"
        after, peak = rss_mib(pid)
        conn.close()
        return idle, after, peak
    except (OSError, IMAPLoadError) as exc:
        return f"{exc!r}"
    finally:
        spawned.stop()


def fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None, reference: float | None, *, lower_is_better: bool = False) -> str:
    if value is None or reference is None or value == 0 or reference == 0:
        return ""
    r = reference / value if lower_is_better else value / reference
    return f" ({r:.2f}x)"


def report(
    rows: list[Row], rss: tuple[float, float, float] | str, count: int, rss_count: int
) -> str:
    ref = rows[0]
    lines = [
        "| server | start → greeting ms | login+logout /s | messages fetched"
        " | ENVELOPE fetch msg/s | BODY.PEEK[] msg/s | BODY.PEEK[] MB/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        env = row.envelope.per_second if row.envelope else None
        body = row.body.per_second if row.body else None
        mbs = row.body.mb_per_second if row.body else None
        ref_env = ref.envelope.per_second if ref.envelope else None
        ref_body = ref.body.per_second if ref.body else None
        ref_mbs = ref.body.mb_per_second if ref.body else None
        start = ratio(row.start_ms, ref.start_ms, lower_is_better=True)
        fetched = "/".join(str(f.messages) for f in (row.envelope, row.body) if f) or "—"
        lines.append(
            f"| {row.name} | {fmt(row.start_ms, 1)}{start}"
            f" | {fmt(row.logins)}{ratio(row.logins, ref.logins)} | {fetched}"
            f" | {fmt(env)}{ratio(env, ref_env)}"
            f" | {fmt(body)}{ratio(body, ref_body)}"
            f" | {fmt(mbs, 1)}{ratio(mbs, ref_mbs)} |"
        )
    lines.append("")
    lines.append(
        f"Messages in INBOX: {count} (pymap: plus its demo messages); ratios in parentheses "
        "are vs Dovecot (default mode), higher is better."
    )
    for row in rows:
        for error in row.errors:
            lines.append(f"FAILED {row.name}: {error}")
    if isinstance(rss, str):
        lines.append(f"RSS of ours, {rss_count:,}-message synthetic INBOX: FAILED: {rss}")
    else:
        idle, after, peak = rss
        lines.append(
            f"RSS of ours, {rss_count:,}-message synthetic INBOX: "
            f"{idle:.0f} MiB seeded, {after:.0f} MiB after SELECT + UID FETCH 1:* (FLAGS), "
            f"peak (VmHWM) {peak:.0f} MiB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode")
    child = sub.add_parser("serve-ours")
    child.add_argument("--count", type=int, default=0)
    child.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--login-seconds", type=float, default=3.0)
    parser.add_argument("--rss-count", type=int, default=1_000_000)
    parser.add_argument("--no-pymap", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "serve-ours":
        serve_ours(args.count, args.synthetic)
        return 0
    rows = run(args)
    rss = measure_rss(args.rss_count) if args.rss_count else "skipped (--rss-count 0)"
    print(report(rows, rss, args.count, args.rss_count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
