"""SEARCH and SORT on a 10,000-message INBOX: ours vs native Dovecot 2.3, same run.

Both servers get the same 10,000 deterministic messages of about 4 KB (the store's
`Synthetic` generator, seed 7; every tenth message also carries an ``X-Foo`` header),
ours through `server.deliver` in its own process, Dovecot as maildir files (on
tmpfs when /dev/shm is there). One raw-socket client (bench/imapload.py) sends each
command once cold (the first time: ours builds its header index, Dovecot its cache
fields), then --repeats times warm; the figure is the warm median, as Dovecot's
index is warm in any real use. Rounds alternate which server goes first.

A second part (--million) serves a 1,000,000-message synthetic INBOX from ours alone
and reports the time of the first ``UID SEARCH SUBJECT`` and the server's peak RSS
(VmHWM, read from /proc).

Usage: .venv/bin/python bench/bench_search.py [--count 10000] [--repeats 7] [--million]
"""

from __future__ import annotations

import argparse
import json
import select
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailharness.servers.dovecot import DovecotConfig, DovecotProcess, SSLMode
from mailharness.servers.imap.store.messages import Synthetic

from bench.bench_imap import rss_mib, serve_messages
from bench.imapload import IMAPLoad

LOGIN = b"alice@example.test"
PASSWORD = b"alice-password"
SEED = 7
SIZE = 4096

#: (label, command): a few hits, no hit, every message, and the sorts that read headers.
COMMANDS = (
    ("SEARCH SUBJECT (1 hit)", b'UID SEARCH SUBJECT "message 4242 "'),
    ("SEARCH SUBJECT (all hit)", b"UID SEARCH SUBJECT synthetic"),
    ("SEARCH HEADER X-Foo (10 hits)", b'UID SEARCH HEADER X-Foo "bar-42"'),
    ("SEARCH HEADER X-Bar (no hit)", b"UID SEARCH HEADER X-Bar y"),
    ("SEARCH FROM", b"UID SEARCH FROM sender42@"),
    ("SEARCH TO", b"UID SEARCH TO alice"),
    ("SORT (SUBJECT)", b"UID SORT (SUBJECT) US-ASCII ALL"),
    ("SORT (FROM)", b"UID SORT (FROM) US-ASCII ALL"),
)


def corpus(count: int) -> list[bytes]:
    synth = Synthetic(SEED, SIZE, LOGIN.decode())
    out = []
    for key in range(1, count + 1):
        raw = synth.render(key)
        if key % 10 == 0:
            raw = b"X-Foo: bar-%d\r\n" % (key // 10 % 100) + raw
        out.append(raw)
    return out


@contextmanager
def ours(count: int, synthetic: int = 0) -> Iterator[tuple[tuple[str, int], int]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve-ours", str(count), str(synthetic)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 600)
        line = proc.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"our server did not start (exit {proc.poll()})")
        facts = json.loads(line)
        yield ("127.0.0.1", int(facts["port"])), int(facts["pid"])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def dovecot(count: int) -> Iterator[tuple[str, int]]:
    config = DovecotConfig(ssl=SSLMode.NO, imaps=False)
    with DovecotProcess(config) as process:
        process.deliver_many(LOGIN.decode(), corpus(count))
        yield process.endpoint("none").address


def measure(address: tuple[str, int], repeats: int) -> dict[str, tuple[float, float, bytes]]:
    """label -> (cold ms, warm median ms, first reply line head)."""
    conn = IMAPLoad.connect(address)
    try:
        conn.command(b"LOGIN " + LOGIN + b" " + PASSWORD)
        conn.command(b"SELECT INBOX")
        out = {}
        for label, command in COMMANDS:
            cold = conn.command(command).seconds
            warm = statistics.median(conn.command(command).seconds for _ in range(repeats))
            out[label] = (cold * 1000, warm * 1000, b"")
        return out
    finally:
        conn.close()


def check_same(address_a: tuple[str, int], address_b: tuple[str, int]) -> list[str]:
    """The untagged replies of both servers to each command, compared byte for byte."""
    problems = []
    for label, command in COMMANDS:
        replies = []
        for address in (address_a, address_b):
            conn = IMAPLoad.connect(address)
            conn.sock.settimeout(60)
            try:
                conn.command(b"LOGIN " + LOGIN + b" " + PASSWORD)
                conn.command(b"SELECT INBOX")
                conn.sock.sendall(b"z " + command + b"\r\n")
                data = b""
                while b"\r\nz " not in data and not data.startswith(b"z "):
                    chunk = conn.sock.recv(1 << 20)
                    if not chunk:
                        break
                    data += chunk
                replies.append(data.split(b"\r\nz ")[0])
            finally:
                conn.close()
        if replies[0] != replies[1]:
            problems.append(f"{label}: replies differ ({replies[0][:80]!r} vs {replies[1][:80]!r})")
    return problems


def run(args: argparse.Namespace) -> str:
    rounds: dict[str, list[dict[str, tuple[float, float, bytes]]]] = {"dovecot": [], "ours": []}
    problems: list[str] = []
    for number in range(args.rounds):
        with dovecot(args.count) as dove, ours(args.count) as (mine, _pid):
            order = [("dovecot", dove), ("ours", mine)]
            if number % 2:
                order.reverse()
            for name, address in order:
                rounds[name].append(measure(address, args.repeats))
            if number == 0:
                problems = check_same(dove, mine)
    lines = [
        f"{args.count:,} messages, {args.rounds} rounds (servers restarted each round, "
        f"order alternating), warm median of {args.repeats} per round, then median of rounds.",
        "",
        "| command | Dovecot cold ms | Dovecot warm ms | ours cold ms | ours warm ms"
        " | ours vs Dovecot (warm) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, _command in COMMANDS:
        dc = statistics.median(r[label][0] for r in rounds["dovecot"])
        dw = statistics.median(r[label][1] for r in rounds["dovecot"])
        oc = statistics.median(r[label][0] for r in rounds["ours"])
        ow = statistics.median(r[label][1] for r in rounds["ours"])
        lines.append(f"| `{label}` | {dc:.1f} | {dw:.1f} | {oc:.1f} | {ow:.1f} | {dw / ow:.2f}x |")
    lines.append("")
    lines.append("Replies identical to Dovecot's: " + ("yes" if not problems else "NO"))
    lines.extend(problems)
    return "\n".join(lines)


def million(count: int) -> str:
    with ours(0, synthetic=count) as (address, pid):
        conn = IMAPLoad.connect(address, timeout=600)
        try:
            conn.command(b"LOGIN " + LOGIN + b" " + PASSWORD)
            conn.command(b"SELECT INBOX")
            seeded = rss_mib(pid)[1]
            first = conn.command(b'UID SEARCH SUBJECT "message 424242 "').seconds
            again = conn.command(b'UID SEARCH SUBJECT "message 424243 "').seconds
            header = conn.command(b"UID SEARCH HEADER X-Foo y").seconds
            peak = rss_mib(pid)[1]
        finally:
            conn.close()
    return (
        f"{count:,}-message synthetic INBOX (ours): first UID SEARCH SUBJECT {first:.2f} s, "
        f"again {again:.2f} s, HEADER X-Foo {header:.2f} s; peak RSS {seeded:.0f} MiB "
        f"after SELECT, {peak:.0f} MiB after the searches"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-ours"]:
        serve_messages(corpus(int(argv[1])), int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--million", action="store_true", help="also the 1,000,000 figure")
    parser.add_argument("--million-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.million_only:
        print(run(args), flush=True)
    if args.million or args.million_only:
        print(million(1_000_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
