"""A leak check at the end of our own test session (issue 14).

Threads, sockets, child processes, Docker containers and temporary directories
started during the session and still there at its end fail the run with a list:
a harness that leaks in its own suite leaks in its users' suites too. Loaded by
``tests/conftest.py``; each xdist worker checks its own process.
"""

from __future__ import annotations

import gc
import os
import socket
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: Seconds a thread or child started by the session gets to finish after the last test.
GRACE = 5.0


def _sockets() -> set[str]:
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(f"fd {fd.name} -> {target}")
    return found


def _hex_address(text: str) -> str:
    """``0100007F:1FA3`` (as /proc/net/tcp writes it) as ``127.0.0.1:8099``."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{'.'.join(str(b) for b in reversed(raw))}:{int(port, 16)}"
    words = [raw[i : i + 4][::-1].hex() for i in range(0, 16, 4)]
    return f"[{':'.join(w[j : j + 4] for w in words for j in (0, 4))}]:{int(port, 16)}"


def _inet_rows(protos: tuple[str, ...]) -> Iterator[tuple[str, list[str]]]:
    """(protocol, fields) of each socket /proc/net lists for `protos`: fields 1 and 2
    the local and remote address in hex, 3 the state, 9 the inode."""
    for proto in protos:
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            yield proto, line.split()


def _socket_table() -> dict[str, str]:
    """Socket inode -> what it is (protocol, addresses, Unix path), from /proc/net."""
    table: dict[str, str] = {}
    for proto, fields in _inet_rows(("tcp", "tcp6", "udp", "udp6")):
        local, remote, inode = _hex_address(fields[1]), _hex_address(fields[2]), fields[9]
        table[inode] = f"{proto} {local} -> {remote} state {fields[3]}"
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        table[fields[6]] = "unix " + (fields[7] if len(fields) > 7 else "(unnamed)")
    return table


def _describe(sockets: set[str]) -> list[str]:
    """Each leaked socket with what /proc/net knows of it and, when traced, where it was made."""
    table = _socket_table()
    described = []
    for entry in sorted(sockets):
        inode = entry.rpartition("[")[2].rstrip("]")
        text = f"socket {entry} ({table.get(inode, 'not in /proc/net')})"
        fd = int(entry.split()[1])
        if fd in _made_at:
            text += "\n    made at:\n" + _made_at[fd]
        described.append(text)
    return described


_TCP_LISTEN = "0A"


def listening_sockets(ports: Iterable[int]) -> dict[int, set[str]]:
    """Port -> inodes of the TCP sockets (v4 and v6, any address) listening on it now.

    To show that a stopped server's ports are closed, compare the sockets, not the port
    numbers: once a port is free, a server of another xdist worker may bind the very
    same number (one did, and a check by connecting read *its* IMAP greeting from the
    port a stopped Dovecot had). See `assert_stopped_listening`.
    """
    wanted = set(ports)
    found: dict[int, set[str]] = {port: set() for port in wanted}
    for _, fields in _inet_rows(("tcp", "tcp6")):
        port = int(fields[1].rpartition(":")[2], 16)
        if port in wanted and fields[3] == _TCP_LISTEN:
            found[port].add(fields[9])
    return found


def assert_stopped_listening(before: dict[int, set[str]]) -> None:
    """Every socket that listened on these ports (`listening_sockets` before the stop) is
    closed, and no socket of this process listens on them: what is there now, if
    anything, is somebody else's."""
    assert all(before.values()), f"nothing was listening to begin with: {before}"
    ours = {entry.rpartition("[")[2].rstrip("]") for entry in _sockets()}
    for port, inodes in listening_sockets(before).items():
        left = inodes & before[port]
        assert not left, f"port {port}: the socket that listened before the stop still does"
        mine = inodes & ours
        assert not mine, f"port {port}: a socket of this process listens on it again"


#: fd -> the stack that made the socket, when MAILHARNESS_TRACE_SOCKETS=1 (to find a leak).
_made_at: dict[int, str] = {}


def _trace_sockets() -> None:
    """Record where each Python-made socket came from; C-made ones (uvloop) are not seen."""
    original_init = socket.socket.__init__

    def init(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _made_at[self.fileno()] = "".join(traceback.format_stack(limit=12)[:-1])

    socket.socket.__init__ = init  # type: ignore[method-assign]


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            continue
    return pids


def _containers() -> set[str]:
    """Our Dovecot containers owned by this process (labelled by servers.dovecot)."""
    try:
        import docker
        from mailharness.servers.dovecot.container import LABEL
    except ImportError:
        return set()
    try:
        client = docker.from_env(timeout=5)
        found = client.containers.list(filters={"label": f"{LABEL}.owner-pid={os.getpid()}"})
    except Exception:  # no engine here: nothing can have leaked there
        return set()
    return {c.name for c in found}


class _TempDirs:
    """Records directories made with ``tempfile.mkdtemp`` (and so ``TemporaryDirectory``)."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self._original: Callable[..., str] = tempfile.mkdtemp

    def install(self) -> None:
        original = self._original

        def mkdtemp(*args: Any, **kwargs: Any) -> str:
            path = original(*args, **kwargs)
            self.made.append(path)
            return path

        tempfile.mkdtemp = mkdtemp

    def uninstall(self) -> None:
        tempfile.mkdtemp = self._original

    def left(self, keep_under: str) -> set[str]:
        return {p for p in self.made if os.path.exists(p) and not p.startswith(keep_under)}


def leaks(
    threads: set[threading.Thread], sockets: set[str], children: set[int], containers: set[str]
) -> list[str]:
    """What the session started and left, after a short grace for things stopping."""
    for thread in set(threading.enumerate()) - threads:
        thread.join(GRACE)
    gc.collect()
    found = [f"thread {t.name!r}" for t in set(threading.enumerate()) - threads if t.is_alive()]
    found += _describe(_sockets() - sockets)
    for pid in _children() - children:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if Path(f"/proc/{pid}").exists():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            found.append(f"child process {pid}: {cmdline.decode(errors='replace')[:200]}")
    found += [f"container {c}" for c in sorted(_containers() - containers)]
    return found


@pytest.fixture(scope="session", autouse=True)
def _session_leak_check(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Set up before any other session fixture, so it is torn down after all of them."""
    if os.environ.get("MAILHARNESS_TRACE_SOCKETS") == "1":
        _trace_sockets()
    threads = set(threading.enumerate())
    sockets, children, containers = _sockets(), _children(), _containers()
    dirs = _TempDirs()
    dirs.install()
    try:
        yield
    finally:
        dirs.uninstall()
    found = leaks(threads, sockets, children, containers)
    found += [f"temp dir {d}" for d in sorted(dirs.left(str(tmp_path_factory.getbasetemp())))]
    if found:
        pytest.fail("the test session left these behind:\n  " + "\n  ".join(found), pytrace=False)
