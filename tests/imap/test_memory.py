"""Memory of our IMAP server with a 1,000,000-message mailbox, measured in its own process.

The server runs in a subprocess so that VmHWM (peak RSS) is the server's alone, not
pytest's. A client on a raw socket selects the synthetic INBOX and reads a ``UID FETCH
1:* (FLAGS)`` (38 MB on the wire), a ``UID SEARCH ALL`` (a 7 MB line), a ``UID SEARCH
SUBJECT`` (through the header index), ``UID SORT`` by ARRIVAL and by SUBJECT and ``UID
THREAD REFERENCES`` to the end; the server must stay under ``PEAK_LIMIT`` all along.
Before FETCH and SEARCH streamed, FETCH peaked at 162 MiB and SEARCH at 515 MiB; before
SORT kept compact keys instead of messages, SORT (ARRIVAL) peaked at 393 MiB; before
THREAD indexed only the Message-IDs that are referenced, it peaked at 212 MiB. THREAD
now orders every root by sent date and merges roots by base subject as Dovecot does (RFC
5256): a date and two 32-bit hashes per message in arrays, about 82 MiB at the peak.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MESSAGES = 1_000_000
LOGIN = b"alice@example.test"
PASSWORD = b"alice-password"
PEAK_LIMIT_MIB = 150
START_TIMEOUT = 60.0
IO_TIMEOUT = 60.0
REPO = Path(__file__).resolve().parents[2]

#: The server process: seed the mailbox, say where it listens, serve until stdin closes.
SERVER = f"""
import json, os, sys
sys.path.insert(0, {str(REPO)!r})
import dataclasses

from mailharness.catalog import PLAINTEXT_ONLY
from mailharness.server import MailServer

# A plaintext port that allows LOGIN, said so explicitly (the defaults refuse it).
server = MailServer(dataclasses.replace(PLAINTEXT_ONLY, smtp=None)).start()
try:
    server.store.add_synthetic({LOGIN.decode()!r}, "INBOX", {MESSAGES})
    print(json.dumps({{"port": server.imap.plain.port, "pid": os.getpid()}}), flush=True)
    sys.stdin.read()
finally:
    server.stop()
"""

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc/<pid>/status"
)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    pid: int

    def memory_mib(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the server process, in MiB."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        assert line, f"server did not start within {START_TIMEOUT}s (exit code {proc.poll()})"
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


class RawClient:
    """Just enough IMAP: send a tagged command, read everything up to its tagged reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.buf = bytearray()
        self.tags = 0
        greeting = self._read_until(b"\r\n")
        assert greeting.startswith(b"* OK"), greeting

    def _read_until(self, end: bytes) -> bytes:
        searched = 0  # the buffer before this holds no `end` (keeps a 38 MB read linear)
        while (at := self.buf.find(end, searched)) < 0:
            searched = max(0, len(self.buf) - len(end) + 1)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"closed by the server; got {bytes(self.buf[-200:])!r}")
            self.buf += chunk
        data = bytes(self.buf[: at + len(end)])
        del self.buf[: at + len(end)]
        return data

    def command(self, text: bytes) -> bytes:
        """All the response bytes, through the tagged OK (asserted)."""
        self.tags += 1
        tag = b"t%d" % self.tags
        self.sock.sendall(tag + b" " + text + b"\r\n")
        self.buf[0:0] = b"\r\n"  # the end of the previous line: the reply may come first
        data = self._read_until(b"\r\n" + tag + b" ")[2 : -len(tag) - 1]
        status = self._read_until(b"\r\n")
        assert status.startswith(b"OK "), (text, status)
        return data

    def close(self) -> None:
        self.sock.close()


def test_million_message_fetch_search_sort_and_thread_stay_under_150_mib(
    server: ServerProcess,
) -> None:
    client = RawClient(server.port)
    try:
        client.command(b"LOGIN " + LOGIN + b" " + PASSWORD)
        selected = client.command(b"SELECT INBOX")
        assert b"* %d EXISTS\r\n" % MESSAGES in selected
        started = time.monotonic()
        fetched = client.command(b"UID FETCH 1:* (FLAGS)")
        fetch_seconds = time.monotonic() - started
        assert fetched.count(b" FETCH (UID ") == MESSAGES
        assert fetched.startswith(b"* 1 FETCH (UID 1 FLAGS ())\r\n")
        assert b"* %d FETCH (UID %d FLAGS ())\r\n" % (MESSAGES, MESSAGES) in fetched
        del fetched
        searched = client.command(b"UID SEARCH ALL")
        assert searched.startswith(b"* SEARCH 1 2 3 ")
        assert searched.endswith(b" %d\r\n" % MESSAGES)
        assert searched.count(b" ") == MESSAGES + 1
        del searched
        started = time.monotonic()
        # The header index makes the synthetic subjects a chunk at a time, keeping none.
        found = client.command(b'UID SEARCH SUBJECT "message 424242 "')
        subject_search_seconds = time.monotonic() - started
        assert found == b"* SEARCH 424242\r\n"
        started = time.monotonic()
        by_arrival = client.command(b"UID SORT (ARRIVAL) US-ASCII ALL")
        arrival_seconds = time.monotonic() - started
        assert by_arrival.startswith(b"* SORT 1 2 3 ")
        assert by_arrival.endswith(b" %d\r\n" % MESSAGES)
        assert by_arrival.count(b" ") == MESSAGES + 1
        del by_arrival
        started = time.monotonic()
        by_subject = client.command(b"UID SORT (SUBJECT) US-ASCII ALL")
        subject_seconds = time.monotonic() - started
        # "synthetic message 1 (seed 0)" < "... 10 (seed 0)" < ... < "... 999999 (seed 0)"
        assert by_subject.startswith(b"* SORT 1 10 100 1000 10000 100000 1000000 100001 ")
        assert by_subject.endswith(b" 999998 999999\r\n")
        assert by_subject.count(b" ") == MESSAGES + 1
        del by_subject
        started = time.monotonic()
        threads = client.command(b"UID THREAD REFERENCES US-ASCII ALL")
        thread_seconds = time.monotonic() - started
        # Synthetic messages reference none: each is a thread of its own.
        assert threads.startswith(b"* THREAD (1)(2)(3)")
        assert (
            threads
            == b"* THREAD " + b"".join(b"(%d)" % n for n in range(1, MESSAGES + 1)) + b"\r\n"
        )
        del threads
        rss, peak = server.memory_mib()
    finally:
        client.close()
    assert peak < PEAK_LIMIT_MIB, (
        f"server peak RSS {peak:.0f} MiB (now {rss:.0f} MiB) with a {MESSAGES:,}-message "
        f"INBOX; UID FETCH 1:* (FLAGS) took {fetch_seconds:.1f}s, UID SEARCH SUBJECT "
        f"{subject_search_seconds:.1f}s, UID SORT (ARRIVAL) "
        f"{arrival_seconds:.1f}s, UID SORT (SUBJECT) {subject_seconds:.1f}s, "
        f"UID THREAD REFERENCES {thread_seconds:.1f}s"
    )
