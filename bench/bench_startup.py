"""Start-up: process start -> IMAP greeting, `mailharness serve` vs `dovecot -F`, side by side.

Each round starts every contender once, in turn (interleaved, so a burst of load on a
shared machine hits all of them), and the figure is the median over rounds:

  ours, IMAP only        `mailharness serve --scenario imap-only.toml --json` (plaintext-only
                         without SMTP, as Dovecot's row is configured): spawn -> the JSON
                         line (the port) -> connect -> greeting bytes received
  ours, plaintext-only   the same for the `plaintext-only` scenario (IMAP and SMTP)
  ours, healthy          the same with the default scenario (STARTTLS + implicit TLS,
                         certificates made at start); greeting read on the STARTTLS port
  Dovecot 2.3            `DovecotProcess` (dovecot -F, plaintext, sockets handed over by
                         LISTEN_FDS): spawn -> greeting bytes received
  in-process MailServer  `MailServer(plaintext IMAP only).start()` in this process
                         (imports already paid): the cost a fixture pays per fresh server

Ratios are Dovecot's time over ours (higher is better; 1.0x = as fast as Dovecot), and
the per-round ratios are printed so the spread is visible.

Usage: .venv/bin/python bench/bench_startup.py [--rounds 15] [--json] [--baseline DIR]

`--baseline DIR` adds the same two plaintext rows for another installed copy, interleaved
with ours (DIR holds its `mailharness` script, e.g. a venv's bin/ with an older checkout
installed): a before/after in one run, which a loaded machine's drift cannot skew.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TIMEOUT = 30.0


def _read_greeting(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionResetError(f"closed before greeting: {data!r}")
            data += chunk
    if not data.startswith(b"* OK"):
        raise RuntimeError(f"unexpected greeting {data!r}")
    return data


def _mailharness(bin_dir: Path | None = None) -> str:
    exe = (bin_dir or Path(sys.executable).parent) / "mailharness"
    if not exe.exists():
        raise SystemExit(f"{exe} not found: install the package into this venv first")
    return str(exe)


def _cpu_seconds(pid: int) -> float:
    """CPU time the process has had so far, all its threads (schedstat: nanoseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


# CPU time of each of our starts until its greeting: on a loaded machine wall-clock
# swings with the neighbours, CPU time much less (it still grows with cache misses).
CPU: dict[str, list[float]] = {}


def _child_env() -> dict[str, str]:
    """A user's environment: Python writes and reads its bytecode caches.

    PYTHONDONTWRITEBYTECODE (set on some CI machines and in this one's shell) would make
    every start recompile the package from source, ~100 ms that no installed copy pays.
    """
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def ours_seconds(
    scenario: str, security: str = "none", bin_dir: Path | None = None, label: str = ""
) -> float:
    """Spawn `mailharness serve`, read its port, read the IMAP greeting; then stop it."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [_mailharness(bin_dir), "serve", "--scenario", scenario, "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=_child_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mailharness serve exited ({proc.wait()}) before its JSON line")
        facts = json.loads(line)
        endpoint = next(
            e for e in facts["endpoints"] if e["protocol"] == "imap" and e["security"] == security
        )
        _read_greeting((endpoint["host"], endpoint["port"]))
        took = time.perf_counter() - started
        CPU.setdefault(label + Path(scenario).stem, []).append(_cpu_seconds(proc.pid) * 1000)
        return took
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dovecot_seconds() -> float:
    from mailharness.servers.dovecot import DovecotConfig, DovecotProcess, SSLMode

    with DovecotProcess(DovecotConfig(ssl=SSLMode.NO, imaps=False)) as process:
        return process.startup_seconds


def in_process_seconds() -> float:
    from mailharness.server import MailConfig, MailServer
    from mailharness.servers.imap import IMAPSettings
    from mailharness.servers.listeners import Security

    config = MailConfig(
        smtp=None,
        imap=IMAPSettings(plaintext_auth_requires_tls=False),
        imap_listeners=(Security.NONE,),
    )
    server = MailServer(config)
    started = time.perf_counter()
    server.start()
    took = time.perf_counter() - started
    server.stop()
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the medians as one JSON line")
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument(
        "--baseline", type=Path, default=None, metavar="DIR", help="another copy's bin dir"
    )
    args = parser.parse_args(argv)
    imap_only = Path(tempfile.mkdtemp(prefix="bench-startup-")) / "imap-only.toml"
    # Dovecot's row serves IMAP alone, in plaintext: this is ours configured the same.
    imap_only.write_text('base = "plaintext-only"\n[smtp]\nenabled = false\n')
    contenders: dict[str, Callable[[], float]] = {
        "ours, IMAP only (as Dovecot's)": lambda: ours_seconds(str(imap_only)),
        "ours, plaintext-only (IMAP+SMTP)": lambda: ours_seconds("plaintext-only"),
        "ours, healthy (TLS listeners)": lambda: ours_seconds("healthy", "starttls"),
        "in-process MailServer.start()": in_process_seconds,
    }
    if args.baseline is not None:
        base = args.baseline
        contenders["baseline, IMAP only"] = lambda: ours_seconds(
            str(imap_only), bin_dir=base, label="baseline "
        )
        contenders["baseline, plaintext-only"] = lambda: ours_seconds(
            "plaintext-only", bin_dir=base, label="baseline "
        )
    if not args.no_dovecot:
        contenders["Dovecot 2.3 (dovecot -F)"] = dovecot_seconds
    # One warm-up of each: page cache, pyc files, Dovecot's binaries.
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            times[name].append(run() * 1000)
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu = {name: statistics.median(values) for name, values in CPU.items()}
    shutil.rmtree(imap_only.parent)
    reference = "Dovecot 2.3 (dovecot -F)"
    if args.json:
        print(json.dumps({"rounds": args.rounds, "median_ms": medians, "cpu_ms": cpu}))
        return 0
    print(f"start -> IMAP greeting, median of {args.rounds} interleaved rounds (ms)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}, cores: {os.cpu_count()}")
    for name, values in times.items():
        spread = f"(min {min(values):.1f}, max {max(values):.1f})"
        line = f"  {name:32} {medians[name]:8.1f} ms  {spread}"
        if reference in times and name != reference:
            ratios = [d / o for d, o in zip(times[reference], values, strict=True)]
            line += f"  Dovecot/ours {medians[reference] / medians[name]:.2f}x"
            line += f"  per round {statistics.median(ratios):.2f}x median"
            line += f" [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(line)
    print("CPU time of ours until the greeting (ms, median; less noisy than wall-clock):")
    for name, value in cpu.items():
        print(f"  {name:32} {value:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
