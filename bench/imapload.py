"""A fast, minimal IMAP client for benchmarks: raw socket, bytes buffer, literals by length.

imaplib parses every line with regular expressions and copies every literal a
few times; on a 40 MB FETCH it is slower than the servers it measures. This
client only finds line ends, skips `{N}` literals by their length (reading them
into a scratch buffer, never accumulating them) and counts FETCH responses, so
one core reads about 1 GB/s and the server is what gets measured.

    conn = IMAPLoad.connect(("127.0.0.1", 143))
    conn.command(b"LOGIN alice pw")
    result = conn.command(b"UID FETCH 1:* BODY.PEEK[]")
    result.fetches, result.bytes, result.seconds
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from dataclasses import dataclass

# Large reads keep the per-call Python overhead negligible at GB/s.
READ_SIZE = 1 << 20


class IMAPLoadError(Exception):
    """The server answered NO/BAD or closed the connection; the message has its line."""


@dataclass(frozen=True, slots=True)
class Result:
    status: bytes  # b"OK", b"NO" or b"BAD"
    line: bytes  # the tagged completion line
    fetches: int  # untagged FETCH responses
    bytes: int  # bytes received for this command
    seconds: float


class IMAPLoad:
    """One connection; `command()` sends one command and reads through its tagged reply."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._buf = bytearray()
        self._pos = 0
        self._scratch = bytearray(READ_SIZE)
        self._tags = (f"b{n}".encode() for n in itertools.count(1))
        self.greeting = self._read_line()

    @classmethod
    def connect(cls, address: tuple[str, int], timeout: float = 60.0) -> IMAPLoad:
        return cls(socket.create_connection(address, timeout=timeout))

    def _fill(self) -> int:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        n = self.sock.recv_into(self._scratch, READ_SIZE)
        if n == 0:
            raise IMAPLoadError("connection closed by the server")
        self._buf += self._scratch[:n]
        return n

    def _read_line(self) -> bytes:
        while True:
            eol = self._buf.find(b"\r\n", self._pos)
            if eol >= 0:
                line = bytes(self._buf[self._pos : eol])
                self._pos = eol + 2
                return line
            self._fill()

    def command(self, command: bytes, *, check: bool = True) -> Result:
        tag = next(self._tags)
        prefix = tag + b" "
        started = time.perf_counter()
        self.sock.sendall(prefix + command + b"\r\n")
        received = 0
        fetches = 0
        buf = self._buf
        while True:
            eol = buf.find(b"\r\n", self._pos)
            if eol < 0:
                received += self._fill()
                buf = self._buf
                continue
            start = self._pos
            if buf.startswith(b"* ", start) and buf.find(b" FETCH ", start, eol) > 0:
                fetches += 1
            elif buf.startswith(prefix, start):
                line = bytes(buf[start:eol])
                self._pos = eol + 2
                status = line.split(b" ", 2)[1]
                result = Result(status, line, fetches, received, time.perf_counter() - started)
                if check and status != b"OK":
                    raise IMAPLoadError(f"{command[:60]!r}: {line!r}")
                return result
            self._pos = eol + 2
            if eol > start and buf[eol - 1] == 0x7D:  # b"}": a literal follows
                opening = buf.rfind(b"{", start, eol)
                size = int(buf[opening + 1 : eol - 1].rstrip(b"+"))
                received += self._skip(size)
                buf = self._buf

    def _skip(self, size: int) -> int:
        """Consume `size` literal bytes; returns how many were read from the socket."""
        have = len(self._buf) - self._pos
        if have >= size:
            self._pos += size
            return 0
        del self._buf[:]
        self._pos = 0
        remaining = size - have
        read = 0
        view = memoryview(self._scratch)
        while remaining:
            n = self.sock.recv_into(view, min(remaining, READ_SIZE))
            if n == 0:
                raise IMAPLoadError("connection closed inside a literal")
            remaining -= n
            read += n
        return read

    def append(self, mailbox: bytes, messages: list[bytes], *, literal_plus: bool) -> None:
        """APPEND each message; pipelined in batches when `literal_plus` (server has LITERAL+)."""
        if not literal_plus:
            for raw in messages:
                tag = next(self._tags)
                self.sock.sendall(tag + b" APPEND " + mailbox + b" {%d}\r\n" % len(raw))
                line = self._read_line()
                if not line.startswith(b"+"):
                    raise IMAPLoadError(f"APPEND: {line!r}")
                self.sock.sendall(raw + b"\r\n")
                self._expect(tag)
            return
        batch = 200
        for first in range(0, len(messages), batch):
            chunk = messages[first : first + batch]
            tags = [next(self._tags) for _ in chunk]
            self.sock.sendall(
                b"".join(
                    t + b" APPEND " + mailbox + b" {%d+}\r\n" % len(raw) + raw + b"\r\n"
                    for t, raw in zip(tags, chunk, strict=True)
                )
            )
            for t in tags:
                self._expect(t)

    def _expect(self, tag: bytes) -> None:
        while True:
            line = self._read_line()
            if line.startswith(tag + b" "):
                if line.split(b" ", 2)[1] != b"OK":
                    raise IMAPLoadError(f"APPEND: {line!r}")
                return

    def close(self) -> None:
        with contextlib.suppress(OSError, IMAPLoadError):
            self.command(b"LOGOUT", check=False)
        self.sock.close()


def login_logout(address: tuple[str, int], login: bytes, password: bytes) -> None:
    """One full connect, greeting, LOGIN, LOGOUT, close cycle."""
    conn = IMAPLoad.connect(address)
    try:
        conn.command(b"LOGIN " + login + b" " + password)
        conn.command(b"LOGOUT")
    finally:
        conn.sock.close()
