"""Server responses as values, and their wire form.

Tagged, untagged and continuation responses are distinct types so a caller
cannot send a tagged completion where an untagged one belongs. Bulk data
(thousands of FETCH lines) bypasses these and is joined as bytes directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailharness.servers.records import lazy_dataclass

__all__ = ["Continuation", "Status", "Tagged", "Untagged", "UntaggedStatus"]

CRLF = b"\r\n"


class Status(enum.Enum):
    OK = "OK"
    NO = "NO"
    BAD = "BAD"
    BYE = "BYE"
    PREAUTH = "PREAUTH"


def _status_line(status: Status, code: str | None, text: str) -> bytes:
    """``surrogateescape``: a reply may quote the client's own non-UTF-8 bytes (an
    unknown THREAD algorithm ``\x80``), which come back as they were sent (found by
    fuzzing: plain ``.encode()`` raised and the client got ``NO [SERVERBUG]``)."""
    word = status._value_  # as .value, without the enum property's Python-level lookup
    head = word if code is None else f"{word} [{code}]"
    line = f"{head} {text}" if text else head
    return line.encode("utf-8", "surrogateescape")


@lazy_dataclass(frozen=True, slots=True)
class Tagged:
    """Completion of one command: ``a1 OK [CODE] text``."""

    tag: str
    status: Status
    text: str
    code: str | None = None

    def __post_init__(self) -> None:
        if self.status in (Status.BYE, Status.PREAUTH):
            raise ValueError(f"status={self.status.value}: a tagged response is OK, NO or BAD")

    def to_bytes(self) -> bytes:
        return self.tag.encode() + b" " + _status_line(self.status, self.code, self.text) + CRLF


@dataclass(frozen=True, slots=True)
class UntaggedStatus:
    """``* OK/NO/BAD/BYE/PREAUTH [CODE] text``."""

    status: Status
    text: str
    code: str | None = None

    def to_bytes(self) -> bytes:
        return b"* " + _status_line(self.status, self.code, self.text) + CRLF


@lazy_dataclass(frozen=True, slots=True)
class Untagged:
    """Untagged data such as ``3 EXISTS`` or ``CAPABILITY ...`` (no ``* `` nor CRLF)."""

    data: bytes

    def to_bytes(self) -> bytes:
        return b"* " + self.data + CRLF


@lazy_dataclass(frozen=True, slots=True)
class Continuation:
    """``+ text``: go on sending (a literal, a SASL response, or IDLE's DONE)."""

    text: str = ""

    def to_bytes(self) -> bytes:
        return b"+ " + self.text.encode() + CRLF
