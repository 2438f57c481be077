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
from collections.abc import Callable, Iterable, Sequence
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


def thread_references(hits: Iterable[tuple[int, StoredMessage]]) -> bytes:
    """THREAD REFERENCES output body for the given ``(number, message)`` pairs.

    Each message's headers are read once; only numbers and Message-IDs are kept.
    """
    numbers = array("I")
    by_id: dict[str, int] = {}
    wanted: dict[int, list[str]] = {}  # number -> its references, nearest last
    for number, msg in hits:
        numbers.append(number)
        found = _MSGID.findall(_header(msg, "message-id") or "")
        if found and found[0] not in by_id:
            by_id[found[0]] = number
        refs = _MSGID.findall(_header(msg, "references") or "")
        refs += _MSGID.findall(_header(msg, "in-reply-to") or "")
        if refs:
            wanted[number] = refs
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
    roots: list[int] = []
    for number in numbers:
        parent = parents.get(number)
        if parent is None:
            roots.append(number)
        else:
            children.setdefault(parent, []).append(number)

    def render(node: int) -> str:
        kids = children.get(node, [])
        if not kids:
            return str(node)
        if len(kids) == 1:
            return f"{node} {render(kids[0])}"
        return f"{node} " + "".join(f"({render(k)})" for k in kids)

    return "".join(f"({render(root)})" for root in roots).encode()


def _is_ancestor(parents: dict[int, int], node: int, candidate: int) -> bool:
    """Whether `node` is already above `candidate` (a link would make a loop)."""
    current: int | None = candidate
    while current is not None:
        if current == node:
            return True
        current = parents.get(current)
    return False
