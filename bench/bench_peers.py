"""Ours against the peers a user would pick, side by side, interleaved rounds, one command.

Installed by `scripts/bench-peers` (that is, `make bench-peers`) into bench/.peers
(gitignored), from the package registries: nodemailer's smtp-server, maildev and
hoodiecrow-imap (npm), pymap (its own venv), aiosmtpd's Controller + Sink and ours
(the bench venv, with uvloop), Dovecot native (Debian's package, maildir on tmpfs).

Figures, the same client for every server:
  start     process start -> IMAP greeting bytes received (fresh process each time)
  logins/s  connect + greeting + LOGIN + LOGOUT: one connection after another
            (bench/imapload.py), the latency of a login; and 8 in flight at once
            (bench/loginload.py: asyncio Protocol client on uvloop), what a server can
            take under load, with its CPU time per login in that run
  smtp 1/8  1 KiB messages/s on 1 and on 8 connections (bench/smtpload.py: asyncio
            Protocol client on uvloop, no pipelining, EHLO once, then MAIL/RCPT/DATA),
            and the server's CPU time per message in those runs (/proc schedstat of its
            process tree): the figure a busy machine distorts least
  10k       on an INBOX of 10,000 messages of 4 KiB (bench_imap.corpus, seed 7): ms for
            UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE), UID FETCH 1:* BODY.PEEK[],
            UID SEARCH SUBJECT and UID SEARCH HEADER, after one warm-up of each; ours,
            Dovecot and hoodiecrow (pymap's dict backend takes seconds per FETCH:
            bench/bench_imap.py measures it)

Every round measures every contender once, in an order rotated per round, so a burst of
load from elsewhere hits them all; the tables give medians over rounds and the median of
the per-round ratios ours / best peer (>1 means ours leads; for start, the peer's time
over ours). `--write` regenerates the results section of docs/benchmarks.md and the
chart docs/bench-peers.png.

Usage: bench/.peers/venv/bin/python bench/bench_peers.py [--rounds 5] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_imap import _read_greeting as _poll_greeting  # noqa: E402
from bench.bench_imap import corpus, start_ours  # noqa: E402
from bench.bench_startup import _child_env, _read_greeting  # noqa: E402
from bench.imapload import IMAPLoad, login_logout  # noqa: E402

PEERS = ROOT / "bench" / ".peers"
NODE_MODULES = PEERS / "node" / "node_modules"
PYMAP = PEERS / "pymap-venv" / "bin" / "pymap"
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "bench-peers.png"
BEGIN, END = "<!-- bench-peers:begin -->", "<!-- bench-peers:end -->"
LOGIN, PASSWORD = b"alice@example.test", b"alice-password"
# Logins in flight at once for the load figure (the SMTP one uses 8 connections too).
LOGIN_CONNECTIONS = 8
TIMEOUT = 30.0
# Plaintext, as every peer here is run: ours without SMTP for the IMAP figures (as Dovecot's
# config), without IMAP and AUTH for the SMTP ones (as the sinks).
IMAP_ONLY = 'base = "plaintext-only"\n[smtp]\nenabled = false\n'
SMTP_ONLY = 'base = "plaintext-only"\n[imap]\nenabled = false\n[smtp]\nauth_required = false\n'


@dataclass
class Spawned:
    """A server in its own process (or Dovecot's process tree)."""

    name: str
    address: tuple[str, int]
    stop: Callable[[], None]
    login: tuple[bytes, bytes] = (LOGIN, PASSWORD)
    pid: int | None = None  # the server's process, for its CPU time (with its children)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, its threads and its children, now: schedstat (nanoseconds)
    of the live ones, plus what the children that ended had used (`cutime` + `cstime`,
    clock ticks). Dovecot runs each login in a process that ends with it; a child's time
    moves from the first sum to the second when it is reaped, so differences stay right."""
    total = 0.0
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0]) / 1e9
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    return total


def _node_env() -> dict[str, str]:
    return {**_child_env(), "NODE_PATH": str(NODE_MODULES)}


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _spawn_json(
    name: str, command: list[str], env: dict[str, str], pick: Callable[[dict], int]
) -> Spawned:
    """Start a server that prints one JSON line with its port once it listens."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _terminate(proc)
        raise RuntimeError(f"{name}: exited before printing its port: {command}")
    address = ("127.0.0.1", pick(json.loads(line)))
    return Spawned(name, address, lambda: _terminate(proc), pid=proc.pid)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _endpoint(protocol: str) -> Callable[[dict], int]:
    return lambda facts: next(
        int(e["port"]) for e in facts["endpoints"] if e["protocol"] == protocol
    )


class Contenders:
    """How to start each server; scratch files live in one temp dir."""

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="bench-peers-", dir=_tmpfs()))
        (self.scratch / "imap-only.toml").write_text(IMAP_ONLY)
        (self.scratch / "smtp-only.toml").write_text(SMTP_ONLY)
        self.mailharness = str(Path(sys.executable).with_name("mailharness"))

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    # --- IMAP -------------------------------------------------------------------------
    def ours_imap(self, *extra: str) -> Spawned:
        command = [self.mailharness, "serve", "--json", "--quiet", *extra, "--scenario"]
        command.append(str(self.scratch / "imap-only.toml"))
        return _spawn_json("ours", command, _child_env(), _endpoint("imap"))

    def hoodiecrow(self) -> Spawned:
        command = ["node", str(ROOT / "bench" / "peers" / "hoodiecrow.js")]
        return _spawn_json("hoodiecrow-imap", command, _node_env(), lambda f: int(f["port"]))

    def pymap(self) -> Spawned:
        port = _free_port()
        command = [str(PYMAP), "--host", "127.0.0.1", "--port", str(port), "--no-tls"]
        proc = subprocess.Popen(
            [*command, "dict", "--demo-data"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        address = ("127.0.0.1", port)
        _poll_greeting(address, time.monotonic() + TIMEOUT, poll=True)
        login = (b"demouser", b"demopass")
        return Spawned("pymap", address, lambda: _terminate(proc), login=login, pid=proc.pid)

    def dovecot(self) -> Spawned:
        from mailharness.servers.dovecot import DovecotConfig, DovecotProcess, SSLMode

        process = DovecotProcess(DovecotConfig(ssl=SSLMode.NO, imaps=False)).start()
        address = process.endpoint("none").address
        return Spawned("Dovecot 2.3", address, process.stop, pid=process.pid)

    # --- a 10k INBOX ------------------------------------------------------------------
    def ours_mailbox(self, count: int) -> Spawned:
        spawned = start_ours(count)
        return Spawned("ours", spawned.address, spawned.stop, pid=spawned.proc.pid)

    def dovecot_mailbox(self, count: int) -> Spawned:
        from mailharness.servers.dovecot import DovecotConfig, DovecotProcess, SSLMode

        # Room for the idle-connections figure: one imap process per connection.
        config = DovecotConfig(
            ssl=SSLMode.NO,
            imaps=False,
            mail_max_userip_connections=IDLE_CONNECTIONS + 10,
            extra=("service imap {", f"  process_limit = {IDLE_CONNECTIONS + 10}", "}"),
        )
        process = DovecotProcess(config).start()
        try:
            process.deliver_many(LOGIN.decode(), corpus(count))
        except BaseException:
            process.stop()
            raise
        return Spawned(
            "Dovecot 2.3", process.endpoint("none").address, process.stop, pid=process.pid
        )

    def hoodiecrow_mailbox(self, count: int) -> Spawned:
        messages = self.scratch / "messages.json"
        messages.write_text(json.dumps([m.decode("latin-1") for m in corpus(count)]))
        command = ["node", str(ROOT / "bench" / "peers" / "hoodiecrow.js")]
        env = {**_node_env(), "HOODIECROW_MESSAGES": str(messages)}
        return _spawn_json("hoodiecrow-imap", command, env, lambda f: int(f["port"]))

    # --- SMTP -------------------------------------------------------------------------
    def ours_smtp(self, *extra: str) -> Spawned:
        command = [self.mailharness, "serve", "--json", "--quiet", *extra, "--scenario"]
        command.append(str(self.scratch / "smtp-only.toml"))
        return _spawn_json("ours", command, _child_env(), _endpoint("smtp"))

    def smtp_server(self) -> Spawned:
        command = ["node", str(ROOT / "bench" / "peers" / "smtp-server.js")]
        return _spawn_json("smtp-server", command, _node_env(), lambda f: int(f["port"]))

    def maildev(self) -> Spawned:
        port = _free_port()
        maildir = tempfile.mkdtemp(prefix="maildev-", dir=self.scratch)
        command = [
            "node",
            str(NODE_MODULES / "maildev" / "bin" / "maildev"),
            *("--smtp", str(port), "--ip", "127.0.0.1", "--mail-directory", maildir),
            "--disable-web",
            "--silent",
        ]
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=_node_env()
        )
        address = ("127.0.0.1", port)
        _poll_greeting(address, time.monotonic() + TIMEOUT, poll=True, expect=b"220")
        return Spawned("maildev", address, lambda: _terminate(proc), pid=proc.pid)

    def aiosmtpd(self) -> Spawned:
        command = [sys.executable, str(ROOT / "bench" / "peers" / "aiosmtpd_sink.py")]
        return _spawn_json(
            "aiosmtpd Controller + Sink", command, _child_env(), lambda f: int(f["port"])
        )


def _tmpfs() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


# --- measurements ------------------------------------------------------------------------
def start_seconds(start: Callable[[], Spawned], greeting_read: bool) -> float:
    """Spawn -> greeting; `greeting_read`: the start function has read it already."""
    began = time.perf_counter()
    spawned = start()
    try:
        if not greeting_read:
            _read_greeting(spawned.address)
        return time.perf_counter() - began
    finally:
        spawned.stop()


def dovecot_start_seconds() -> float:
    from mailharness.servers.dovecot import DovecotConfig, DovecotProcess, SSLMode

    with DovecotProcess(DovecotConfig(ssl=SSLMode.NO, imaps=False)) as process:
        return float(process.startup_seconds)


def logins_per_second(server: Spawned, seconds: float) -> float:
    done = 0
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        login_logout(server.address, *server.login)
        done += 1
    return done / elapsed


def _load_client(
    script: str, server: Spawned, *args: str, seconds: float, counts: str
) -> tuple[float, float]:
    """Run one of the load clients (bench/smtpload.py, bench/loginload.py) against a
    server: its rate per second, and the server's CPU time per item (µs; `counts` names
    the items in the client's JSON), which a loaded machine distorts far less than the
    rate (it still grows with cache misses)."""
    assert server.pid is not None
    cpu_before = cpu_seconds(server.pid)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / script),
            server.address[0],
            str(server.address[1]),
            *args,
            *("--seconds", str(seconds)),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    if facts["errors"]:
        raise RuntimeError(f"{server.name}: {facts['errors'][:3]}")
    used = cpu_seconds(server.pid) - cpu_before
    return float(facts["per_second"]), used / max(1, facts[counts]) * 1e6


def smtp_per_second(server: Spawned, connections: int, seconds: float) -> tuple[float, float]:
    """1 KiB messages/s on `connections` at once, and the server's CPU µs per message."""
    return _load_client(
        "smtpload.py", server, "--connections", str(connections), seconds=seconds, counts="messages"
    )


def concurrent_logins_per_second(
    server: Spawned, connections: int, seconds: float
) -> tuple[float, float]:
    """Connect + LOGIN + LOGOUT/s with `connections` in flight, and CPU µs per login."""
    user, password = (part.decode() for part in server.login)
    return _load_client(
        "loginload.py",
        server,
        *("--connections", str(connections), "--user", user, "--password", password),
        seconds=seconds,
        counts="logins",
    )


# The commands of the 10k figures; the SEARCHes match one message (4242).
MAILBOX_COMMANDS = {
    text: text.encode()
    for text in (
        "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)",
        "UID FETCH 1:* BODY.PEEK[]",
        'UID SEARCH SUBJECT "message 4242"',
        'UID SEARCH HEADER Message-ID "<4242.7@"',
    )
}


def _selected(server: Spawned) -> IMAPLoad:
    conn = IMAPLoad.connect(server.address)
    conn.command(b"LOGIN " + b" ".join(server.login))
    conn.command(b"SELECT INBOX")
    return conn


@dataclass
class Figure:
    """One row of the table: a unit, whether higher is better, each contender's rounds."""

    title: str
    unit: str
    higher_is_better: bool
    rounds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.rounds.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.rounds[name])

    def ratios(self) -> list[float]:
        """Per round: ours over the best peer of that round (>1: ours leads)."""
        peers = [n for n in self.rounds if not n.startswith("ours")]
        out = []
        for i, mine in enumerate(self.rounds["ours"]):
            values = [self.rounds[p][i] for p in peers]
            if self.higher_is_better:
                out.append(mine / max(values))
            else:
                out.append(min(values) / mine)
        return out

    def best_peer(self) -> str:
        peers = [n for n in self.rounds if not n.startswith("ours")]
        pick = max if self.higher_is_better else min
        return pick(peers, key=self.median)


def _rotated(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]


def run(args: argparse.Namespace) -> list[Figure]:
    contenders = Contenders()
    figures: list[Figure] = []
    try:
        start = Figure("process start → IMAP greeting", "ms", higher_is_better=False)
        logins = Figure("IMAP connect + LOGIN + LOGOUT, 1 connection", "/s", higher_is_better=True)
        logins8 = Figure(
            f"IMAP connect + LOGIN + LOGOUT, {LOGIN_CONNECTIONS} connections",
            "/s",
            higher_is_better=True,
        )
        login_cpu8 = Figure(
            f"IMAP server CPU per login, {LOGIN_CONNECTIONS} connections",
            "µs",
            higher_is_better=False,
        )
        smtp1 = Figure("SMTP 1 KiB messages, 1 connection", "msg/s", higher_is_better=True)
        smtp8 = Figure("SMTP 1 KiB messages, 8 connections", "msg/s", higher_is_better=True)
        cpu1 = Figure("SMTP server CPU per message, 1 connection", "µs", higher_is_better=False)
        cpu8 = Figure("SMTP server CPU per message, 8 connections", "µs", higher_is_better=False)
        figures = [start, logins, logins8, login_cpu8, smtp1, smtp8, cpu1, cpu8]
        starts: dict[str, Callable[[], float]] = {
            "ours": lambda: start_seconds(contenders.ours_imap, False),
            "Dovecot 2.3": dovecot_start_seconds,
            "hoodiecrow-imap": lambda: start_seconds(contenders.hoodiecrow, False),
            "pymap": lambda: start_seconds(contenders.pymap, True),
        }
        imap_servers = {
            "ours": lambda: contenders.ours_imap("--uvloop"),
            "ours, asyncio loop": contenders.ours_imap,
            "Dovecot 2.3": contenders.dovecot,
            "hoodiecrow-imap": contenders.hoodiecrow,
            "pymap": contenders.pymap,
        }
        smtp_servers = {
            "ours": lambda: contenders.ours_smtp("--uvloop"),
            "ours, asyncio loop": contenders.ours_smtp,
            "smtp-server (Node)": contenders.smtp_server,
            "maildev": contenders.maildev,
            "aiosmtpd Controller + Sink": contenders.aiosmtpd,
        }
        for run_start in starts.values():  # warm-up: page cache, bytecode caches
            run_start()
        with _running(imap_servers) as imap, _running(smtp_servers) as smtp:
            for server in imap.values():  # warm-up
                logins_per_second(server, 0.2)
            for server in smtp.values():
                smtp_per_second(server, 1, 0.3)
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
                for name in _rotated(list(starts), r):
                    start.add(name, starts[name]() * 1000)
                for name in _rotated(list(imap), r):
                    logins.add(name, logins_per_second(imap[name], args.login_seconds))
                for name in _rotated(list(smtp), r):
                    for connections, rate, cpu in ((1, smtp1, cpu1), (8, smtp8, cpu8)):
                        per_second, micros = smtp_per_second(
                            smtp[name], connections, args.smtp_seconds
                        )
                        rate.add(name, per_second)
                        cpu.add(name, micros)
            # Apart from the rounds above: the garbage of thousands of logins under load
            # would otherwise be collected during the next round's one-connection figure.
            for server in imap.values():  # warm-up
                concurrent_logins_per_second(server, LOGIN_CONNECTIONS, 0.2)
            for r in range(args.rounds):
                print(f"logins under load, round {r + 1}/{args.rounds}", file=sys.stderr)
                for name in _rotated(list(imap), r):
                    per_second, micros = concurrent_logins_per_second(
                        imap[name], LOGIN_CONNECTIONS, args.login_seconds
                    )
                    logins8.add(name, per_second)
                    login_cpu8.add(name, micros)
        if args.count:
            figures += mailbox_figures(contenders, args)
    finally:
        contenders.close()
    return figures


def pss_mib(pid: int) -> float:
    """Proportional set size of a process and all its descendants (Dovecot's login,
    auth and per-connection imap processes included), MiB: shared pages counted once."""
    total = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                break
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += int(pss_mib(int(child)) * 1024)
    return total / 1024


IDLE_CONNECTIONS = 200


def idle_memory_mib(server: Spawned) -> float:
    """PSS of the server with IDLE_CONNECTIONS more connections logged in and left idle."""
    assert server.pid is not None
    conns: list[IMAPLoad] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            conn = IMAPLoad.connect(server.address)
            conns.append(conn)
            conn.command(b"LOGIN " + b" ".join(server.login))
        return pss_mib(server.pid)
    finally:
        for conn in conns:
            conn.close()


def mailbox_figures(contenders: Contenders, args: argparse.Namespace) -> list[Figure]:
    count = args.count
    figures = {
        title: Figure(f"{count:,} messages: {title}", "ms", higher_is_better=False)
        for title in MAILBOX_COMMANDS
    }
    memory = Figure(
        f"{count:,} messages, {IDLE_CONNECTIONS} idle logged-in IMAP connections: memory (PSS)",
        "MiB",
        higher_is_better=False,
    )
    servers = {
        "ours": lambda: contenders.ours_mailbox(count),
        "Dovecot 2.3": lambda: contenders.dovecot_mailbox(count),
        "hoodiecrow-imap": lambda: contenders.hoodiecrow_mailbox(count),
    }
    with _running(servers) as running:
        conns = {name: _selected(server) for name, server in running.items()}
        try:
            for conn in conns.values():  # warm-up: indexes, caches, parsed messages
                for command in MAILBOX_COMMANDS.values():
                    conn.command(command)
            for r in range(args.rounds):
                print(f"mailbox round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
                for name in _rotated(list(conns), r):
                    for title, command in MAILBOX_COMMANDS.items():
                        seconds = conns[name].command(command).seconds
                        figures[title].add(name, seconds * 1000)
                for name in _rotated(list(conns), r):
                    memory.add(name, idle_memory_mib(running[name]))
        finally:
            for conn in conns.values():
                conn.close()
    return [*figures.values(), memory]


@contextlib.contextmanager
def _running(starts: dict[str, Callable[[], Spawned]]) -> Iterator[dict[str, Spawned]]:
    running: dict[str, Spawned] = {}
    try:
        for name, start in starts.items():
            running[name] = start()
        yield running
    finally:
        for server in running.values():
            server.stop()


# --- report ------------------------------------------------------------------------------
def _versions() -> str:
    def node_version(package: str) -> str:
        try:
            meta = json.loads((NODE_MODULES / package / "package.json").read_text())
        except OSError:
            return "?"
        return str(meta["version"])

    def command(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    from importlib.metadata import version

    pymap = command(
        str(PYMAP.with_name("python")),
        "-c",
        "import importlib.metadata as m; print(m.version('pymap'))",
    )
    dovecot = command("dovecot", "--version").split()[0] if shutil.which("dovecot") else "?"
    return (
        f"Python {platform.python_version()}, Node {command('node', '--version')}, "
        f"Dovecot {dovecot}, "
        f"aiosmtpd {version('aiosmtpd')}, uvloop {_maybe_version('uvloop')}, "
        f"smtp-server {node_version('smtp-server')}, maildev {node_version('maildev')}, "
        f"hoodiecrow-imap {node_version('hoodiecrow-imap')}, pymap {pymap or '?'}"
    )


def _maybe_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _fmt(value: float, unit: str) -> str:
    return f"{value:,.1f}" if unit in ("ms", "MiB") else f"{value:,.0f}"


def report(figures: list[Figure], args: argparse.Namespace, load: float) -> str:
    lines = [
        BEGIN,
        "## Ours vs the peers a user would pick (issue 13)",
        "",
        f"Command: `make bench-peers` (installs the peers into bench/.peers, then runs "
        f"`bench/.peers/venv/bin/python bench/bench_peers.py --rounds {args.rounds} --write`).",
        f"Measured {dt.date.today().isoformat()} on {os.cpu_count()} cores "
        f"({platform.platform()}), load average {load:.1f} at the end; "
        f"{_versions()}.",
        "",
        "Same client for every server (bench/imapload.py for IMAP, one connection after "
        "another; bench/loginload.py for logins on 8 connections at once and bench/smtpload.py "
        "for SMTP: an asyncio Protocol on uvloop, no pipelining); every server plaintext, in its "
        "own process(es); Dovecot's maildir on tmpfs. Each round measures every contender "
        "once in a rotated order; figures are medians over rounds, the ratio is the median "
        "of the per-round ratios ours / best peer (above 1.00x ours leads; for start-up "
        "the peer's time over ours).",
        "",
        "Which of ours: *ours* is `mailharness serve --quiet --uvloop` (uvloop comes with "
        "`pip install 'mailharness[fast]'`) for logins and SMTP, and *ours, asyncio loop* "
        "the same without `--uvloop`; the start-up row is `serve` without uvloop (its import "
        "is not paid); the 10,000-message rows are our server on asyncio's loop, seeded in "
        "its own process (bench/bench_imap.py). What the figures leave out: our servers "
        "also keep a transcript of every session and capture every message (the Node sinks "
        "drop them); memory is PSS of the whole process tree, so Dovecot's maildir on tmpfs "
        "counts only where Dovecot maps it, while ours holds the mailbox in its heap.",
        "",
    ]
    cores = os.cpu_count() or 1
    if load > cores:
        lines += [
            f"**Caveat: the load average was {load:.1f} on {cores} cores** (other work shared "
            "the machine): every contender lost CPU time to it at random, so these figures "
            "and ratios are noise-bound; re-run `make bench-peers` on a quiet machine.",
            "",
        ]
    for figure in figures:
        ratios = figure.ratios()
        better = "higher" if figure.higher_is_better else "lower"
        lines += [
            f"### {figure.title} ({figure.unit}, {better} is better)",
            "",
            "| server | median | rounds |",
            "| --- | ---: | --- |",
        ]
        for name in figure.rounds:
            values = ", ".join(_fmt(v, figure.unit) for v in figure.rounds[name])
            lines.append(f"| {name} | {_fmt(figure.median(name), figure.unit)} | {values} |")
        lines += [
            "",
            f"Ours vs the best peer ({figure.best_peer()} by median): "
            f"**{statistics.median(ratios):.2f}x** (per round: "
            + ", ".join(f"{r:.2f}x" for r in ratios)
            + ").",
            "",
        ]
    lines += [
        f"![ratios ours / best peer]({CHART.name})",
        "",
        "Profiles behind the changes of issue 13 (before = main when the work began): "
        "`flamegraphs/smtp-8conn-{before,after}.svg` (py-spy, the SMTP server under "
        "`bench/smtpload.py --connections 8`; after = the fast path of "
        "servers/smtp/session.py), `profiles/serve-start-{before,after}.txt` and "
        "`profiles/serve-start-importtime-{before,after}.txt` (pyinstrument and `-X "
        "importtime` of one `serve` start to its greeting), `profiles/search-{before,"
        "after}.svg` (SEARCH with the header index); the IMAP login analysis (perf, "
        "bisection) is in the section below. Start-up alone, with CPU time to the "
        "greeting: `python bench/bench_startup.py --rounds 15`.",
        "",
        END,
    ]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        first, _, rest = text.partition("\n## ")
        text = first + "\n" + section + "\n\n## " + rest
    DOC.write_text(text)


def chart(figures: list[Figure]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["\n".join(textwrap.wrap(f.title, 22)) for f in figures]
    medians = [statistics.median(f.ratios()) for f in figures]
    lows = [m - min(f.ratios()) for f, m in zip(figures, medians, strict=True)]
    highs = [max(f.ratios()) - m for f, m in zip(figures, medians, strict=True)]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(figures)), 4.8), dpi=100)
    colors = ["tab:green" if m >= 1 else "tab:red" for m in medians]
    ax.bar(names, medians, yerr=[lows, highs], color=colors, capsize=4)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_ylabel("ours / best peer (median of rounds)")
    ax.set_title("mailharness vs the best peer per figure (above 1 = ours leads)")
    for i, m in enumerate(medians):
        ax.text(i, m, f"{m:.2f}x", ha="center", va="bottom")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(CHART)
    plt.close(fig)


def _save(figures: list[Figure], load: float) -> None:
    data = {
        "load": load,
        "figures": [
            {"title": f.title, "unit": f.unit, "higher": f.higher_is_better, "rounds": f.rounds}
            for f in figures
        ],
    }
    (PEERS / "results.json").write_text(json.dumps(data, indent=1))


def _load() -> tuple[list[Figure], float]:
    data = json.loads((PEERS / "results.json").read_text())
    figures = [
        Figure(f["title"], f["unit"], f["higher"], {k: list(v) for k, v in f["rounds"].items()})
        for f in data["figures"]
    ]
    return figures, float(data["load"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--login-seconds", type=float, default=1.0)
    parser.add_argument("--smtp-seconds", type=float, default=2.0)
    parser.add_argument("--count", type=int, default=10_000, help="0: no mailbox figures")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md + chart")
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="measure nothing: render bench/.peers/results.json (the last run) again",
    )
    args = parser.parse_args(argv)
    if args.from_results:
        figures, load = _load()
        args.rounds = len(figures[0].rounds["ours"])
    else:
        if not NODE_MODULES.is_dir() or not PYMAP.exists():
            raise SystemExit("peers missing: run `make bench-peers` (scripts/bench-peers) first")
        figures = run(args)
        load = os.getloadavg()[0]
        _save(figures, load)
    section = report(figures, args, load)
    print(section)
    if args.write:
        write_doc(section)
        chart(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
