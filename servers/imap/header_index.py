"""The header index behind SEARCH SUBJECT / FROM / TO / CC / BCC / HEADER.

Testing each message's decoded headers one by one costs about 20 µs a message
(split the header, decode every field, casemap), 200 ms for 10,000 messages,
where Dovecot answers in 15-20 ms. So each field a SEARCH asks about gets a
column, built the first time it is asked for: per message, the field's texts as
SEARCH compares them (decoded, stripped, casemapped; addresses parsed and written
back as Dovecot matches them), joined by a separator no text can hold. A search
is then one substring test per message.

Why it stays correct: a message's bytes never change under its UID, so a column
row is valid for as long as the UID exists. Flag changes touch no row; appended
messages get theirs when the next search looks (UIDs only grow); expunged ones
keep a row that nothing asks for (the searched UIDs come from the session's view,
and the messages are read from the store afterwards, which skips the gone ones)
until the column is rebuilt; renumbering (new UIDVALIDITY) and DELETE drop the
index (`Mailbox.derived`). A renamed mailbox keeps its UIDs, so its index stays.
Synthetic messages (a formula per UID, 4 bytes each) get no rows: their fields are
made from the formula per search, a chunk at a time, so memory stays flat for a
million of them.

Results equal the per-message test's (`search._header_contains`,
`search._address_contains`); tests/imap/test_header_index.py checks both.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Literal, NamedTuple

from mailharness.servers.imap.addresses import parse_addresses, write_addresses
from mailharness.servers.imap.casemap import casemap
from mailharness.servers.imap.message import (
    _fields,
    _normalize,
    _split_message,
    decode_header_text,
)
from mailharness.servers.imap.store import Mailbox, StoredMessage
from mailharness.servers.imap.store.messages import Synthetic

__all__ = [
    "SEPARATOR",
    "IndexTerm",
    "field_values",
    "keep_order",
    "matching_positions",
    "sort_keys",
    "sorted_order",
]

#: Between two texts of one message (a field given twice): a lone surrogate, which
#: no decoded header and no client string holds, so no needle matches across it.
SEPARATOR = "\ud800"

#: Messages read from the store per lock (as SEARCH reads them).
BATCH = 512
#: Synthetic messages whose fields are made at a time (bounds the temporary texts).
SYNTHETIC_CHUNK = 1 << 15
#: A column is rebuilt once it holds this many more rows than the mailbox has messages.
STALE_ROWS = 1024

Kind = Literal["text", "address"]


class IndexTerm(NamedTuple):
    """One ``key needle`` of a SEARCH that the index answers.

    ``kind`` ``"text"``: some field ``name`` holds ``needle`` (SUBJECT, HEADER, and
    FROM/TO/CC/BCC with an empty string); ``"address"``: some field's address list,
    as Dovecot writes it back, holds it (FROM/TO/CC/BCC). ``needle`` is casemapped.
    """

    kind: Kind
    name: str
    needle: str


# --------------------------------------------------------------------------- field values


def field_values(head: bytes, name: str) -> list[bytes]:
    """Every field ``name`` (lower case) of a CRLF header block, unfolded, as `message._fields`
    gives them (``[f.value for f in _fields(head) if f.name == name]``), without splitting
    the other fields: one ``find`` on the lower-cased block per occurrence."""
    want = name.encode("latin-1", "replace")
    if not _plain_name(name):
        return [f.value for f in _fields(head) if f.name == name and name]
    low = b"\r\n" + head.lower()  # bytes.lower is ASCII-only, as the names compare
    key = b"\r\n" + want
    size = len(low)
    out: list[bytes] = []
    at = low.find(key)
    while at >= 0:
        pos = at + len(key)
        # The line's text before its first colon, right-stripped, must be the name.
        while pos < size and low[pos] in _STRIPPED and low[pos : pos + 2] != b"\r\n":
            pos += 1
        if pos < size and low[pos] == 0x3A:  # ":" (offsets in `low` are 2 past `head`'s)
            end = head.find(b"\r\n", pos - 1)
            if end < 0:
                end = len(head)
            pieces = [head[pos - 1 : end]]
            while head[end + 2 : end + 3] in (b" ", b"\t"):  # folded lines
                stop = head.find(b"\r\n", end + 2)
                if stop < 0:
                    stop = len(head)
                pieces.append(head[end + 2 : stop])
                end = stop
            out.append(b"".join(pieces).lstrip(b" \t"))
            at = low.find(key, end + 2)
        else:
            at = low.find(key, at + 2)
    return out


#: What ``bytes.rstrip()`` strips (a CR LF pair ends the line instead).
_STRIPPED = frozenset(b" \t\r\n\x0b\x0c")


def _plain_name(name: str) -> bool:
    """A name the fast path reads exactly: ASCII, no blank first, no colon, no line end."""
    return (
        bool(name)
        and name.isascii()
        and name[0] not in " \t"
        and not any(c in name for c in ":\r\n")
        and name == name.lower()
    )


def _head(raw: bytes) -> bytes:
    """`message._split_message(_normalize(raw))[0]`, normalizing only when it changes the head."""
    end = raw.find(b"\r\n\r\n")
    if end > 0:
        head = raw[: end + 4]
        if head.count(b"\n") == head.count(b"\r\n"):  # CRLF throughout: nothing to normalize
            return head
    return _split_message(_normalize(raw))[0]


def _text(value: bytes) -> str:
    """A field value as SEARCH compares it (`message.decoded_headers`, casemapped)."""
    if value.isascii() and b"=?" not in value:
        return value.decode("ascii").strip().upper()
    return casemap(decode_header_text(value.replace(b"\r\n", b"")).strip())


@lru_cache(maxsize=4096)
def _address_text(value: bytes) -> str:
    """An address field as SEARCH FROM/TO/CC/BCC compares it (`message.address_texts`)."""
    return casemap(decode_header_text(write_addresses(parse_addresses(value))))


def _row(values: list[bytes], kind: Kind) -> str | None:
    if not values:
        return None
    convert = _text if kind == "text" else _address_text
    if len(values) == 1:
        return convert(values[0])
    return SEPARATOR.join(map(convert, values))


def _message_row(msg: StoredMessage, kind: Kind, name: str) -> str | None:
    head = msg.synthetic_header
    return _row(field_values(_head(msg.raw) if head is None else head, name), kind)


# --------------------------------------------------------------------------- columns


class _Column:
    """One field's texts for the stored (non-synthetic-range) messages, by ascending UID."""

    __slots__ = ("kind", "last", "name", "texts", "uids")

    def __init__(self, kind: Kind, name: str) -> None:
        self.kind = kind
        self.name = name
        self.uids: array[int] = array("I")
        self.texts: list[str | None] = []
        self.last = 0  # every stored message up to this UID has its row

    def extend(self, box: Mailbox, span: tuple[int, int] | None) -> None:
        """Add rows for the messages that arrived since the last search (caller holds the lock)."""
        new = box.uids_after(self.last)
        if not new:
            return
        newest = new[-1]
        if span is not None:
            lo, hi = bisect_left(new, span[0]), bisect_right(new, span[1])
            new = new[:lo] + new[hi:]
        kind, name = self.kind, self.name
        for start in range(0, len(new), BATCH):
            for msg in box.get_many(new[start : start + BATCH]):
                self.uids.append(msg.uid)
                self.texts.append(_message_row(msg, kind, name))
        self.last = newest

    def hits(self, needle: str) -> list[int]:
        """UIDs of the rows that hold ``needle`` (or that have the field, for ``""``)."""
        rows = zip(self.uids, self.texts, strict=True)
        if not needle:
            return [u for u, t in rows if t is not None]
        return [u for u, t in rows if t is not None and needle in t]


class _Index:
    """A mailbox's columns, for one UIDVALIDITY."""

    __slots__ = ("columns", "orders", "sort_keys", "uidvalidity")

    def __init__(self, uidvalidity: int) -> None:
        self.uidvalidity = uidvalidity
        self.columns: dict[tuple[Kind, str], _Column] = {}
        self.sort_keys: dict[str, dict[int, int | str]] = {}
        #: SORT ... ALL: criteria -> (the UIDs sorted, their order as indexes).
        self.orders: dict[tuple[str, ...], tuple[array[int], array[int]]] = {}


def _index(box: Mailbox) -> _Index:
    index = box.derived
    if not isinstance(index, _Index) or index.uidvalidity != box.uidvalidity:
        index = box.derived = _Index(box.uidvalidity)
    return index


def sort_keys(box: Mailbox, criterion: str) -> dict[int, int | str]:
    """SORT's keys of one criterion for the stored messages, by UID (`ordering.Sorter` fills
    it): valid for as long as the UID exists; emptied once it holds many expunged UIDs."""
    with box.lock:
        keys = _index(box).sort_keys
        found = keys.get(criterion)
        if found is None or len(found) > len(box) + STALE_ROWS:
            found = keys[criterion] = {}
        return found


#: Whole-mailbox SORT orders kept per mailbox (one per criteria list).
MAX_ORDERS = 8


def sorted_order(box: Mailbox, criteria: tuple[str, ...], uids: array[int]) -> array[int] | None:
    """The order (indexes into ``uids``) a SORT of every message by ``criteria`` gave for
    exactly these UIDs, or None. Sort keys are fixed per UID (bytes, internal date, size),
    so the same UIDs sort the same way whatever happened to their flags."""
    with box.lock:
        found = _index(box).orders.get(criteria)
    if found is None or found[0] != uids:
        return None
    return found[1]


def keep_order(
    box: Mailbox, criteria: tuple[str, ...], uids: array[int], order: array[int]
) -> None:
    """Remember a whole-mailbox SORT's order; not for synthetic messages (memory stays flat)."""
    if box.synthetic_span() is not None:
        return
    with box.lock:
        orders = _index(box).orders
        if len(orders) >= MAX_ORDERS:
            orders.clear()
        orders[criteria] = (uids[:], order)


# --------------------------------------------------------------------------- searching


def matching_positions(box: Mailbox, uids: Sequence[int], terms: Sequence[IndexTerm]) -> list[int]:
    """Indexes into ``uids`` (a session's view, ascending) of the messages that satisfy every
    term, ascending. Some may have been expunged since the view was made: the caller reads
    the messages from the store, which skips those, as a search without the index does."""
    found: set[int] | None = None
    positions: list[int] = []
    for term in terms:
        positions = _term_positions(box, uids, term)
        found = set(positions) if found is None else found.intersection(positions)
    if len(terms) == 1:
        return positions
    return sorted(found or ())


def _term_positions(box: Mailbox, uids: Sequence[int], term: IndexTerm) -> list[int]:
    with box.lock:
        span = box.synthetic_span()
        index = _index(box)
        column = index.columns.get((term.kind, term.name))
        if column is None or len(column.uids) > len(box) + STALE_ROWS:
            column = index.columns[(term.kind, term.name)] = _Column(term.kind, term.name)
        column.extend(box, None if span is None else (span[1], span[2]))
    out: list[int] = []
    count = len(uids)
    for uid in column.hits(term.needle):
        at = bisect_left(uids, uid)
        if at < count and uids[at] == uid:
            out.append(at)
    if span is not None:
        out.extend(_synthetic_positions(uids, span, term))
        out.sort()
    return out


def _synthetic_positions(
    uids: Sequence[int],
    span: tuple[Synthetic, int, int, array[int] | None],
    term: IndexTerm,
) -> list[int]:
    """Positions of the view's synthetic-range UIDs whose made-up field holds the needle."""
    synth, first, last, keys = span
    make = synth.field(term.name)
    lo, hi = bisect_left(uids, first), bisect_right(uids, last)
    if make is None or lo >= hi:
        return []
    needle = term.needle
    convert: Callable[[bytes], str] = _text if term.kind == "text" else _address_text
    out: list[int] = []
    for start in range(lo, hi, SYNTHETIC_CHUNK):
        stop = min(start + SYNTHETIC_CHUNK, hi)
        chunk = uids[start:stop]
        if keys is None:
            made = [make(u - first + 1) for u in chunk]
        else:
            made = [make(keys[u - first]) for u in chunk]
        if not needle:
            out.extend(range(start, stop))
            continue
        lines = _ascii_hits(made, needle) if term.kind == "text" else None
        if lines is not None:
            out.extend(start + i for i in lines)
            continue
        texts = map(convert, made)
        out.extend(start + i for i, text in enumerate(texts) if needle in text)
    return out


def _ascii_hits(values: list[bytes], needle: str) -> list[int] | None:
    """Indexes of ``values`` whose text (`_text`) holds ``needle``, found in one joined,
    upper-cased block (``find`` at C speed), or None when the shortcut does not apply: a
    needle with a line end or with blanks at its ends (the texts are stripped), a value
    that is not plain ASCII or holds an encoded word or a line end."""
    if not needle.isascii() or "\n" in needle or needle[0].isspace() or needle[-1].isspace():
        return None
    block = b"\n".join(values)
    if not block.isascii() or b"=?" in block or block.count(b"\n") != len(values) - 1:
        return None
    block = block.upper()  # casemap of ASCII text
    want = needle.encode("ascii")
    out: list[int] = []
    line = 0
    seen = 0  # block[:seen] has `line` line ends
    at = block.find(want)
    while at >= 0:
        line += block.count(b"\n", seen, at)
        out.append(line)
        seen = block.find(b"\n", at)
        if seen < 0:
            break
        at = block.find(want, seen)
    return out
