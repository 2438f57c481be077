"""A stored message, the raw input tests seed with, and synthetic messages made on demand."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Union

from mailharness.servers.records import lazy_dataclass

if TYPE_CHECKING:
    from email.message import Message

MAX_UID = 0xFFFFFFFF  # RFC 3501: UIDs and UIDVALIDITY are 32-bit, non-zero
# Room for a synthetic message's headers with the longest UID and login.
MIN_SYNTHETIC_SIZE = 512
_SYSTEM_FLAGS = {
    f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
}
_RECENT = "\\recent"
NO_FLAGS: frozenset[str] = frozenset()
_EOL = re.compile(rb"\r\n|\r|\n")
_SYNTH_EPOCH_TS = datetime(2020, 1, 1, tzinfo=UTC).timestamp()

# `email.message` is not imported for it (a few ms of every start, issue 13): whoever
# passes a Message has imported it.
RawMessage = Union[bytes, bytearray, memoryview, str, "Message"]


def to_message_bytes(raw: RawMessage) -> bytes:
    """Normalise seed input to the CRLF bytes IMAP serves, so sizes match the wire."""
    if isinstance(raw, str):
        data = raw.encode("utf-8")
    elif isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
    else:
        email_message = sys.modules.get("email.message")  # none loaded: raw is no Message
        if email_message is None or not isinstance(raw, email_message.Message):
            raise TypeError(
                f"raw message: expected bytes, str or email.message.Message, got {raw!r}"
            )
        data = raw.as_bytes(policy=raw.policy.clone(linesep="\r\n"))
    return _EOL.sub(b"\r\n", data)


def normalise_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags are case-insensitive; \\Recent belongs to sessions, never stored."""
    out = set()
    for flag in flags:
        low = flag.lower()
        if low == _RECENT:
            continue
        out.add(_SYSTEM_FLAGS.get(low, flag))
    return frozenset(out)


def aware(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(UTC).replace(microsecond=0)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _date_text(when: datetime) -> str:
    """``email.utils.format_datetime`` of a UTC datetime, without its strftime and lookups."""
    t = when.timetuple()
    return "%s, %02d %s %04d %02d:%02d:%02d +0000" % (  # noqa: UP031 - as email.utils does
        _DAYS[t[6]],
        t[2],
        _MONTHS[t[1] - 1],
        t[0],
        t[3],
        t[4],
        t[5],
    )


class Synthetic:
    """Generates message `key` of a synthetic mailbox from (seed, key) alone."""

    __slots__ = ("_block", "_lines", "seed", "size", "to")

    def __init__(self, seed: int, size: int, to: str) -> None:
        self.seed = seed
        self.size = size
        self.to = to
        longest = len(self.header(MAX_UID))
        if size < max(MIN_SYNTHETIC_SIZE, longest + 16):
            raise ValueError(
                f"size={size!r}: synthetic messages need at least "
                f"{max(MIN_SYNTHETIC_SIZE, longest + 16)} bytes"
            )
        import random  # only for synthetic mailboxes: not on serve's way to its greeting

        rng = random.Random(seed)
        words = ("lorem", "ipsum", "dolor", "sit", "amet", "mail", "harness", "inbox", "sync")
        self._lines = 256
        lines = []
        for _ in range(size // 78 + self._lines + 1):
            text = ""
            while len(text) < 76:
                text += rng.choice(words) + " "
            lines.append(text[:76].encode("ascii") + b"\r\n")
        self._block = b"".join(lines)

    def date(self, key: int) -> datetime:
        return datetime.fromtimestamp(_SYNTH_EPOCH_TS + 60 * key, UTC)

    def header(self, key: int) -> bytes:
        """The header block of message `key`, through its blank line."""
        return (
            f"Date: {_date_text(self.date(min(key, 10**8)))}\r\n"
            f'From: "Sender {key % 1000}" <sender{key % 1000}@example.test>\r\n'
            f"To: {self.to}\r\n"
            f"Subject: Synthetic message {key} (seed {self.seed})\r\n"
            f"Message-ID: <{key}.{self.seed}@synthetic.mailharness.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
        ).encode()

    def field(self, name: str) -> Callable[[int], bytes] | None:
        """Field ``name`` (lower case) of message `key` as `header` writes it (unfolded, after
        the colon's space), from `key` alone; None when no synthetic message has the field.

        The SEARCH header index reads a million of these without rendering headers.
        """
        seed, to = self.seed, self.to.encode()
        if name == "date":
            return lambda key: _date_text(self.date(min(key, 10**8))).encode()
        if name == "from":
            return lambda key: b'"Sender %d" <sender%d@example.test>' % (key % 1000, key % 1000)
        if name == "to":
            return lambda key: to
        if name == "subject":
            return lambda key: b"Synthetic message %d (seed %d)" % (key, seed)
        if name == "message-id":
            return lambda key: b"<%d.%d@synthetic.mailharness.test>" % (key, seed)
        if name == "mime-version":
            return lambda key: b"1.0"
        if name == "content-type":
            return lambda key: b"text/plain; charset=us-ascii"
        return None

    def render(self, key: int) -> bytes:
        header = self.header(key)
        start = (key * 2654435761 % self._lines) * 78
        body = self._block[start : start + self.size - len(header) - 2]
        if body.endswith(b"\r"):
            body = body[:-1] + b"."
        return header + body + b"\r\n"


@lazy_dataclass(slots=True, eq=False)
class StoredMessage:
    """One message as the store keeps it; satisfies `search.MessageView` except `seq`.

    `seq` is per-session, so it lives in the session's view, not here.
    """

    uid: int
    flags: frozenset[str]
    internaldate: datetime
    size: int
    modseq: int
    _raw: bytes | None = field(default=None, repr=False)
    _synthetic: Synthetic | None = field(default=None, repr=False)
    _key: int = field(default=0, repr=False)
    _cache: dict[str, bytes] | None = field(default=None, repr=False)
    #: When the message was saved into this mailbox (RFC 8514 SAVEDATE); None for
    #: synthetic messages, which report their internal date.
    savedate: datetime | None = field(default=None, repr=False)

    @property
    def raw(self) -> bytes:
        """The RFC 822 bytes; synthetic messages are rendered on each call, never kept."""
        if self._raw is not None:
            return self._raw
        assert self._synthetic is not None
        return self._synthetic.render(self._key)

    @property
    def synthetic_header(self) -> bytes | None:
        """A synthetic message's header block (``raw`` up to its body), else None."""
        if self._synthetic is None:
            return None
        return self._synthetic.header(self._key)

    @property
    def cache(self) -> dict[str, bytes]:
        """Session-layer cache of derived bytes (ENVELOPE, BODYSTRUCTURE), made when first used."""
        if self._cache is None:
            self._cache = {}
        return self._cache

    @property
    def synthetic(self) -> bool:
        return self._synthetic is not None

    def _copy(self) -> StoredMessage:
        return StoredMessage(
            0, self.flags, self.internaldate, self.size, 0, self._raw, self._synthetic, self._key
        )
