"""Cutting a byte stream into protocol lines, without ever changing the bytes.

IMAP lines may announce a literal (``{123}`` or ``{123+}`` at the end): the
next 123 bytes are data, whatever they contain, so a ``STARTTLS`` or a
``CAPABILITY`` inside a message body is never taken for a command or reply.
SMTP has no literals on the wire; its DATA state is tracked by the gate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line this long without CRLF is not a command we act on: pass it on as data.
MAX_LINE = 64 * 1024
_LITERAL_AT_END = re.compile(rb"~?\{(\d+)(\+?)\}\r?\n\Z")


@dataclass(frozen=True, slots=True)
class Unit:
    """A complete line (with its CRLF) or a piece of literal / oversized data."""

    data: bytes
    is_line: bool


def literal_announced(line: bytes) -> tuple[int, bool] | None:
    """``(size, synchronizing)`` if the IMAP line ends with a literal announcement."""
    match = _LITERAL_AT_END.search(line)
    if match is None:
        return None
    return int(match.group(1)), match.group(2) != b"+"


class LineFramer:
    """Feed bytes, get units; partial lines wait for the rest. ``literals``: IMAP mode."""

    def __init__(self, *, literals: bool) -> None:
        self._literals = literals
        self._buffer = bytearray()
        self._literal_left = 0

    def feed(self, data: bytes) -> list[Unit]:
        self._buffer += data
        units: list[Unit] = []
        while self._buffer:
            if self._literal_left:
                take = min(self._literal_left, len(self._buffer))
                units.append(Unit(bytes(self._buffer[:take]), is_line=False))
                del self._buffer[:take]
                self._literal_left -= take
                continue
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    units.append(Unit(bytes(self._buffer), is_line=False))
                    self._buffer.clear()
                break
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            if self._literals:
                announced = literal_announced(line)
                if announced is not None:
                    self._literal_left = announced[0]
            units.append(Unit(line, is_line=True))
        return units

    def cancel_literal(self) -> None:
        """The announced literal will not come (the command was refused before "+")."""
        self._literal_left = 0

    def discard(self) -> None:
        """Drop what is buffered: bytes pipelined after STARTTLS came in the clear."""
        self._buffer.clear()
        self._literal_left = 0


class LineScanner:
    """Complete lines of a stream for matching only (keeps a bounded partial line)."""

    def __init__(self) -> None:
        self._partial = b""

    def lines(self, data: bytes) -> list[bytes]:
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()[-MAX_LINE:]
        return pieces
