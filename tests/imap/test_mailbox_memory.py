"""Memory of the IMAP server under hostile mailbox names, measured in its own process.

One 64 KiB ``CREATE`` of 32,000 levels once cost 1.2 GB (every level became a
mailbox, each with its full name). Now such a name is refused, and the deepest
names allowed (127 levels, 4 KiB) cost memory linear in their length: the
hierarchy is a trie, not a set of prefix strings, and LIST streams its reply.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from tests.helpers import ServerProcess, imap_server_process, needs_proc_status

IO_TIMEOUT = 60.0

pytestmark = needs_proc_status


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with imap_server_process() as running:
        yield running


def _tagged(reader: BinaryIO, tag: bytes) -> bytes:
    while True:
        line = reader.readline()
        assert line, "closed by the server"
        if line.startswith(tag + b" "):
            return line


def test_hostile_and_deep_mailbox_names_keep_memory_bounded(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"L LOGIN alice@example.test alice-password\r\n")
        assert _tagged(reader, b"L").startswith(b"L OK")
        before, _ = server.memory_mib()
        hostile = b"/".join([b"a"] * 32000)
        for i in range(50):
            sock.sendall(b"h%d CREATE {%d+}\r\n%s\r\n" % (i, len(hostile), hostile))
            assert _tagged(reader, b"h%d" % i).startswith(b"h%d NO" % i)
        refused, _ = server.memory_mib()
        for i in range(300):  # the deepest, longest names allowed: 127 levels, ~4 KiB
            name = b"/".join([b"%03d" % i + b"d" * 28] * 127)
            sock.sendall(b"c%d CREATE %s\r\n" % (i, name))
            assert _tagged(reader, b"c%d" % i).startswith(b"c%d OK" % i)
        sock.sendall(b'l LIST "" *\r\n')
        assert _tagged(reader, b"l").startswith(b"l OK")
        deep, _ = server.memory_mib()
    assert refused - before < 20, (before, refused)
    # 300 names of 4 KiB: 1.2 MB of text, +16 MiB measured. Kept as 38,100 prefix
    # strings, or a LIST reply (76 MB) built whole, they took +96 MiB.
    assert deep - before < 40, (before, deep)
