"""Helpers for mailharness's own tests (importable; conftest.py holds only hooks)."""

from __future__ import annotations

import contextlib
import gc
import imaplib
import json
import os
import select
import shutil
import smtplib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_executable(name: str) -> str:
    """Path of a client program the test needs; skip without it (fail in CI)."""
    __tracebackhide__ = True
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (the README's test command installs it)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def require_backend(backend: str) -> None:
    """Skip (fail in CI) unless this Dovecot backend can run here: the `dovecot` binary
    for "dovecot", a Docker engine for "docker"."""
    __tracebackhide__ = True
    from mailharness.servers.dovecot import DovecotNotInstalled, find_executable
    from mailharness.servers.dovecot.engine import EngineUnavailable, ensure_engine

    try:
        if backend == "docker":
            ensure_engine()
        else:
            find_executable("dovecot")
    except (DovecotNotInstalled, EngineUnavailable) as error:
        if in_ci():
            pytest.fail(f"backend={backend!r}: {error}", pytrace=False)
        pytest.skip(f"backend={backend!r}: {error}")


#: What a session or a TLS handshake must not leave to the cycle collector. The
#: stdlib's own transport still holds itself through a bound method (CPython 3.11
#: ``_SelectorSocketTransport._read_ready_cb``): ~7 small objects, not ours to break.
OURS = {
    "_Connection",
    "_HarnessSMTP",
    "Envelope",
    "Session",
    "IMAPConnection",
    "SSLProtocol",
    "SSLObject",
    "frame",
    "MemoryBIO",
}


def cycles_after(run: Callable[[], None]) -> dict[str, int]:
    """Types of the objects `run` leaves in reference cycles (gc.DEBUG_SAVEALL)."""
    run()  # warm up: caches and first-use allocations are not leaks
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        found = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    return {name: count for name, count in found.items() if name in OURS}


MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def rss(pid: int) -> tuple[int, int]:
    """A process's resident set now (VmRSS) and at its peak (VmHWM), in bytes, from
    /proc/<pid>/status: no sampling, no timing."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    assert len(fields) == 2, f"no VmRSS/VmHWM in /proc/{pid}/status"
    return fields["VmRSS"], fields["VmHWM"]


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    return rss(pid)[1]


#: For tests that read a process's memory from /proc (Linux).
needs_proc_status = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads VmRSS/VmHWM from /proc/<pid>/status"
)


@dataclass
class ServerProcess:
    """Our IMAP server in a process of its own: its memory is its alone, not pytest's."""

    proc: subprocess.Popen[bytes]
    port: int
    pid: int

    def memory_mib(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the server process, in MiB."""
        now, peak = rss(self.pid)
        return now / MIB, peak / MIB


#: The server process: seed the mailbox, say where it listens, serve until stdin closes.
_IMAP_SERVER = """
import json, os, sys
sys.path.insert(0, {repo!r})
import dataclasses

from mailharness.catalog import PLAINTEXT_ONLY
from mailharness.server import MailServer

# A plaintext port that allows LOGIN, said so explicitly (the defaults refuse it).
server = MailServer(dataclasses.replace(PLAINTEXT_ONLY, smtp=None)).start()
try:
    if {synthetic}:
        server.store.add_synthetic("alice@example.test", "INBOX", {synthetic})
    print(json.dumps({{"port": server.imap.none.port, "pid": os.getpid()}}), flush=True)
    sys.stdin.read()
finally:
    server.stop()
"""


@contextlib.contextmanager
def imap_server_process(*, synthetic: int = 0, timeout: float = 60.0) -> Iterator[ServerProcess]:
    """The fake IMAP server (plaintext LOGIN allowed) in its own process, with
    ``synthetic`` messages in alice's INBOX; stopped (stdin closed) on exit."""
    script = _IMAP_SERVER.format(repo=str(REPO), synthetic=synthetic)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        assert line, f"server did not start within {timeout}s (exit code {proc.poll()})"
        info = json.loads(line)
        yield ServerProcess(proc, int(info["port"]), int(info["pid"]))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def served(scenario: str, **popen: Any) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any]]]:
    """`mailharness serve --json --quiet` in its own process (its memory and fds measured
    alone; stderr carries only what goes wrong): yields the process and the endpoint of
    each protocol by name."""
    command = [
        *(sys.executable, "-m", "mailharness.cli", "serve", "--scenario", scenario),
        *("--json", "--quiet"),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, **popen)
    try:
        assert proc.stdout is not None
        facts = json.loads(proc.stdout.readline())
        yield proc, {e["protocol"]: (e["host"], e["port"]) for e in facts["endpoints"]}
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def submission(server: Any, *, timeout: float = 5) -> smtplib.SMTP:
    """An SMTP client as a correct connector opens one: port 587, then STARTTLS.

    The defaults refuse credentials before TLS (Dovecot's disable_plaintext_auth),
    so tests that log in go through here or use an explicitly plaintext config.
    """
    client = smtplib.SMTP(*server.smtp.starttls.address, timeout=timeout)
    try:
        client.starttls(context=server.ca.client_context())
    except BaseException:
        client.close()
        raise
    return client


def imap_starttls(server: Any, *, timeout: float = 5) -> imaplib.IMAP4:
    """An IMAP client as a correct connector opens one on 143: STARTTLS before LOGIN."""
    client = imaplib.IMAP4(*server.imap.starttls.address, timeout=timeout)
    try:
        client.starttls(ssl_context=server.ca.client_context())
    except BaseException:
        client.shutdown()
        raise
    return client


def observe_states(
    probe: Callable[[], str], wanted: list[str], timeout: float = 20.0, poll: float = 0.02
) -> list[str]:
    """Probe until the states it reports have gone through `wanted` in order.

    For a schedule that switches a server over time (flapping, maintenance windows):
    each call is a real client's attempt. A refused port has nothing to block on, so
    this polls every `poll` seconds; `timeout` bounds the whole wait, and the error
    says what was seen.
    """
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    step = 0
    while time.monotonic() < deadline:
        state = probe()
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == wanted[step]:
            step += 1
            if step == len(wanted):
                return seen
        time.sleep(poll)
    raise AssertionError(f"wanted states {wanted} in order within {timeout} s; saw {seen}")
