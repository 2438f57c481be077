"""SORT and THREAD (RFC 5256), simplified to what connectors and imapclient use.

Sort keys follow RFC 5256 §2 loosely: base subjects drop ``Re:``/``Fwd:`` and
case, addresses compare by the first mailbox's local part, ties fall back to
sequence order. THREAD=REFERENCES links messages by ``In-Reply-To`` and
``References`` only (no subject merging), which is exact for mail that carries
proper headers and what the tests exercise.

Memory stays flat per hit, so a SORT of a million messages is cheap: no
message is kept, each criterion's keys go into one compact column while the
mailbox is scanned (times as microseconds in ``array('q')``, sizes in
``array('Q')``, strings as UTF-8 in one ``bytearray``), and hits are ordered as
an ``array('I')`` of indices, sorted a chunk at a time and merged.
"""

from __future__ import annotations

import heapq
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses, parsedate_to_datetime
from itertools import islice
from operator import ge, le

from servers.imap.message import header_field
from servers.imap.store import StoredMessage

__all__ = ["SORT_KEYS", "SortError", "Sorter", "thread_references"]

_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv)\s*(\[\d+\])?\s*:\s*)+", re.I)
_MSGID = re.compile(r"<[^>]*>")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: Indices sorted at a time before the merge (bounds the temporary key objects).
CHUNK = 1 << 16
#: THREAD output is given in pieces of about this many bytes.
PIECE = 1 << 16


class SortError(ValueError):
    """An unknown sort criterion; the session answers BAD."""


def _header(msg: StoredMessage, name: str) -> str | None:
    """``header_value(msg.raw, name)``; a synthetic message renders only its header."""
    head = msg.synthetic_header
    return header_field(msg.raw if head is None else head, name)


def _base_subject(msg: StoredMessage) -> str:
    subject = _header(msg, "subject") or ""
    subject = _SUBJECT_PREFIX.sub("", subject)
    return subject.strip().casefold()


def _address(name: str, display: bool) -> Callable[[StoredMessage], str]:
    def key(msg: StoredMessage) -> str:
        value = _header(msg, name) or ""
        pairs = getaddresses([value])
        if not pairs:
            return ""
        real, addr = pairs[0]
        if display and real:
            return real.casefold()
        return addr.split("@", 1)[0].casefold()

    return key


def _micros(when: datetime) -> int:
    """Microseconds since the epoch, ordered as the (UTC if naive) datetimes are."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MICROSECOND


def _date(msg: StoredMessage) -> int:
    value = _header(msg, "date")
    if value:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None:
            return _micros(parsed)
    return _arrival(msg)


def _arrival(msg: StoredMessage) -> int:
    return _micros(msg.internaldate)


def _size(msg: StoredMessage) -> int:
    return msg.size


#: Sort criterion -> (key of a message, whether the key is a string).
SORT_KEYS: dict[str, tuple[Callable[[StoredMessage], int | str], bool]] = {
    "ARRIVAL": (_arrival, False),
    "DATE": (_date, False),
    "SIZE": (_size, False),
    "SUBJECT": (_base_subject, True),
    "FROM": (_address("from", False), True),
    "TO": (_address("to", False), True),
    "CC": (_address("cc", False), True),
    "DISPLAYFROM": (_address("from", True), True),
    "DISPLAYTO": (_address("to", True), True),
}


class _Column:
    """One criterion's keys, one per hit in hit order."""

    def __init__(self, key: Callable[[StoredMessage], int | str], text: bool, reverse: bool):
        self.key = key
        self.text = text
        self.reverse = reverse
        # Integers: the keys themselves. Strings: UTF-8 (code point order is
        # byte order) in `blob`, key i at blob[ends[i - 1]:ends[i]].
        self.values = array("I" if text else "q")
        self.blob = bytearray()

    def add(self, msg: StoredMessage) -> None:
        value = self.key(msg)
        if isinstance(value, str):
            self.blob += value.encode("utf-8", "surrogatepass")
            try:
                self.values.append(len(self.blob))
            except OverflowError:  # over 4 GiB of keys
                self.values = array("Q", self.values)
                self.values.append(len(self.blob))
        else:
            self.values.append(value)

    def getter(self) -> Callable[[int], int | bytearray]:
        values = self.values
        if not self.text:
            return values.__getitem__
        blob = self.blob

        def text(i: int) -> bytearray:
            return blob[values[i - 1] if i else 0 : values[i]]

        return text


class Sorter:
    """Collects sort keys hit by hit, then gives the order of the hits."""

    def __init__(self, criteria: Sequence[str]) -> None:
        self.columns: list[_Column] = []
        reverse = False
        for word in criteria:
            upper = word.upper()
            if upper == "REVERSE":
                reverse = True
                continue
            found = SORT_KEYS.get(upper)
            if found is None:
                raise SortError(f"Unknown sort argument: {word}")
            self.columns.append(_Column(*found, reverse))
            reverse = False
        if not self.columns:
            raise SortError("Sort criteria missing")
        self.count = 0

    def add(self, msg: StoredMessage) -> None:
        """Record the keys of the next hit (hits come in sequence order)."""
        for column in self.columns:
            column.add(msg)
        self.count += 1

    def order(self) -> array[int]:
        """Indices of the hits, sorted: criteria in turn, ties in hit order."""
        order: Sequence[int] = range(self.count)
        # As list.sort would: stable sorts from the last criterion to the first.
        for column in reversed(self.columns):
            order = _stable_sort(order, column.getter(), column.reverse)
        return order if isinstance(order, array) else array("I", order)


def _stable_sort(
    order: Sequence[int], key: Callable[[int], int | bytearray], reverse: bool
) -> Sequence[int]:
    """``sorted(order, key=key, reverse=reverse)`` as an array, a chunk at a time."""
    keys = map(key, order)
    if all(map(ge if reverse else le, keys, map(key, islice(order, 1, None)))):
        return order  # already in order (ARRIVAL usually is): nothing to do
    runs = [
        array("I", sorted(order[start : start + CHUNK], key=key, reverse=reverse))
        for start in range(0, len(order), CHUNK)
    ]
    # heapq.merge breaks ties by run order, so the merge is stable too.
    return array("I", heapq.merge(*runs, key=key, reverse=reverse))


def thread_references(
    hits: Iterable[tuple[int, StoredMessage]],
    reread: Callable[[array[int]], Iterable[StoredMessage | None]],
) -> Iterator[bytes]:
    """THREAD REFERENCES output body, in pieces, for the given ``(number, message)`` pairs.

    Two passes keep memory to the messages that take part in threads. The first
    keeps every hit's number and the references of the messages that have any;
    the second reads again, through ``reread(numbers)`` (the hits' messages in
    that order, None for one that has gone), the Message-IDs of the hits, and
    indexes only those that some hit references.
    """
    numbers = array("I")
    referenced: dict[str, str] = {}  # each referenced Message-ID, kept once
    wanted: dict[int, list[str]] = {}  # number -> its references, nearest last
    for number, msg in hits:
        numbers.append(number)
        refs = _ids(msg, "references", "in-reply-to")  # nearest last
        if refs:
            wanted[number] = [referenced.setdefault(ref, ref) for ref in refs]
    by_id: dict[str, int] = {}
    if referenced:
        for number, again in zip(numbers, reread(numbers), strict=True):
            if again is None:
                continue
            found = _ids(again, "message-id")
            if found and found[0] in referenced and found[0] not in by_id:
                by_id[found[0]] = number
    del referenced
    parents: dict[int, int] = {}
    for number, refs in wanted.items():  # in hit order, as dicts keep it
        for ref in reversed(refs):
            parent = by_id.get(ref)
            if (
                parent is not None
                and parent != number
                and not _is_ancestor(parents, number, parent)
            ):
                parents[number] = parent
                break
    del wanted, by_id
    children: dict[int, list[int]] = {}
    for number in numbers:
        parent = parents.get(number)
        if parent is not None:
            children.setdefault(parent, []).append(number)
    out = bytearray()
    for number in numbers:
        if number not in parents:
            out += b"("
            _render(children, number, out)
            out += b")"
            if len(out) >= PIECE:
                yield bytes(out)
                out.clear()
    yield bytes(out)


def _ids(msg: StoredMessage, *names: str) -> list[str]:
    """The ``<...>`` ids in the first field of each of `names` (lower case), in turn."""
    head = msg.synthetic_header
    raw = msg.raw if head is None else head
    low = raw.lower()
    found: list[str] = []
    for name in names:
        # Without the name anywhere, header_field finds no such field: skip it,
        # as a million synthetic messages have no References or In-Reply-To.
        if name.encode() in low:
            found += _MSGID.findall(header_field(raw, name) or "")
    return found


def _render(children: dict[int, list[int]], root: int, out: bytearray) -> None:
    """Appends one thread: ``n`` alone, ``n child...`` or ``n (child...)(child...)``."""
    # Numbers are positive: 0 stands for "(" and -1 for ")".
    stack = [root]
    while stack:
        node = stack.pop()
        if node == 0:
            out += b"("
        elif node < 0:
            out += b")"
        else:
            kids = children.get(node)
            if not kids:
                out += b"%d" % node
                continue
            out += b"%d " % node
            if len(kids) == 1:
                stack.append(kids[0])
            else:
                for kid in reversed(kids):
                    stack += (-1, kid, 0)


def _is_ancestor(parents: dict[int, int], node: int, candidate: int) -> bool:
    """Whether `node` is already above `candidate` (a link would make a loop)."""
    current: int | None = candidate
    while current is not None:
        if current == node:
            return True
        current = parents.get(current)
    return False
