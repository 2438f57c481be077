"""SORT (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO, RFC 5267 ESORT) as Dovecot 2.3 does it.

Sort keys are Dovecot's (lib-storage/index/index-sort.c): the base subject of
RFC 5256 §2.1 (`base_subject`), the first address's mailbox (local part; a
group's name for a group), the display name or else ``mailbox@domain``, dates
in whole seconds (the sent date falling back to the arrival date), and every
string key put through the i;unicode-casemap comparator as Dovecot applies it
(`casemap`) and compared as UTF-8 bytes, which is I18NLEVEL=1 (RFC 5255).
Ties fall back to the next criterion and finally to the sequence number, never
reversed.

Memory stays flat per hit, so a SORT of a million messages is cheap: no
message is kept, each criterion's keys go into one compact column while the
mailbox is scanned (times in seconds and sizes in ``array('q')``,
strings as UTF-8 in one ``bytearray``), and hits are ordered as an
``array('I')`` of indices, sorted a chunk at a time and merged.
"""

from __future__ import annotations

import heapq
import re
from array import array
from calendar import timegm
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from email.utils import mktime_tz, parsedate_tz
from functools import lru_cache
from itertools import islice
from operator import ge, le

from mailharness.servers.imap import parser_limits
from mailharness.servers.imap.casemap import casemap
from mailharness.servers.imap.message import Address, addresses, decode_header_text
from mailharness.servers.imap.replies import DOVECOT, Replies
from mailharness.servers.imap.sequence import format_ascending
from mailharness.servers.imap.store import StoredMessage

__all__ = [
    "SORT_KEYS",
    "SortError",
    "SortReturn",
    "Sorter",
    "base_subject",
    "date_key",
    "esearch_line",
    "head_of",
    "header_fields",
    "header_of",
    "parse_sort_return",
    "sent_date",
]

#: Indices sorted at a time before the merge (bounds the temporary key objects).
CHUNK = 1 << 16

_SPACES = re.compile(r"[ \t\r\n]+")


class SortError(ValueError):
    """A wrong sort program or RETURN option; the session answers BAD with the text."""


# --------------------------------------------------------------------------- base subject


def _blob_end(text: str, pos: int, end: int) -> int:
    """After a ``[blob]`` at ``pos`` and one space; -1 when there is none."""
    pos += 1
    while pos < end and text[pos] not in "[]":
        pos += 1
    if pos >= end or text[pos] != "]":
        return -1
    pos += 1
    if pos < end and text[pos] == " ":
        pos += 1
    return pos


def _leader_end(text: str, start: int, end: int) -> int:
    """After a subj-leader's ``*subj-blob subj-refwd`` at ``start``; -1 when there is none."""
    pos = start
    while pos < end and text[pos] == "[":
        pos = _blob_end(text, pos, end)
        if pos < 0:
            return -1
    for word in ("RE", "FWD", "FW"):
        if text.startswith(word, pos, end):
            pos += len(word)
            break
    else:
        return -1
    if pos < end and text[pos] == " ":
        pos += 1
    if pos < end and text[pos] == "[":
        pos = _blob_end(text, pos, end)
        if pos < 0:
            return -1
    if pos < end and text[pos] == ":":
        return pos + 1
    return -1


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 base subject, casemapped, and whether it was a reply or forward.

    ``subject`` is the decoded header text. The steps are Dovecot's
    (lib-imap/imap-base-subject.c): white space runs become one space, the
    comparator applies before matching, so ``Re:`` is matched as ``RE:``; a
    leader allows one space before ``:`` and blobs before ``Re``.
    """
    text = _SPACES.sub(" ", casemap(subject))
    if "[" not in text and ":" not in text and not text.endswith(("(FWD)", " ")):
        return text.lstrip(" "), False  # nothing but a leading space to remove
    start, end = 0, len(text)
    reply = False
    while True:
        # (2) subj-trailer: "(fwd)" / WSP, repeatedly.
        while end > start:
            if text[end - 1] == " ":
                end -= 1
            elif end >= 5 and text.startswith("(FWD)", end - 5, end):
                reply = True
                end -= 5
            else:
                break
        while True:
            found = False
            # (3) subj-leader; a leading space always goes.
            if start < end and text[start] == " ":
                start += 1
                found = True
            after = _leader_end(text, start, end)
            if after >= 0:
                start = after
                reply = found = True
            # (4) a subj-blob, when something is left after it.
            if start < end and text[start] == "[":
                after = _blob_end(text, start, end)
                if 0 <= after < end:
                    start = after
                    found = True
            if not found:  # (5)
                break
        # (6) "[fwd:" ... "]" around the rest: strip and repeat from (2).
        if text.startswith("[FWD:", start, end) and text[end - 1] == "]":
            reply = True
            start += 5
            end -= 1
            continue
        return text[start:end], reply


# --------------------------------------------------------------------------- sort keys


def head_of(msg: StoredMessage) -> bytes:
    """The header block (through the empty line); a synthetic message renders only that."""
    head = msg.synthetic_header
    if head is not None:
        return head
    raw = msg.raw
    if raw.startswith((b"\r\n", b"\n")):
        return raw[: raw.find(b"\n") + 1]
    crlf = raw.find(b"\n\r\n")
    lf = raw.find(b"\n\n", 0, len(raw) if crlf < 0 else crlf)
    if lf >= 0:
        return raw[: lf + 2]
    return raw if crlf < 0 else raw[: crlf + 3]


def header_of(msg: StoredMessage, name: str) -> bytes | None:
    """The first field ``name`` (lower case) as sent, unfolded."""
    key = name.encode()
    return header_fields(head_of(msg), (key,)).get(key)


def header_fields(head: bytes, names: Sequence[bytes]) -> dict[bytes, bytes]:
    """The first field of each lower-case name in ``names``, as sent, unfolded.

    Found by ``bytes.find`` on the lower-cased block, as THREAD reads five fields of a
    million messages; ``head`` is a header block (`head_of`).
    """
    low = b"\n" + head.lower()
    size = len(low)
    found: dict[bytes, bytes] = {}
    for name in names:
        want = _LINE_START.get(name) or _LINE_START.setdefault(name, b"\n" + name)
        at = low.find(want)
        while at >= 0:
            colon = at + len(want)  # in `low`; `head` is one byte behind
            while colon < size and low[colon] in _BLANK:
                colon += 1
            if colon < size and low[colon] == 0x3A:
                end = low.find(b"\n", colon)
                while 0 <= end < size - 1 and low[end + 1] in _BLANK:
                    end = low.find(b"\n", end + 1)  # a folded line
                value = head[colon : len(head) if end < 0 else end - 1]
                if b"\n" in value:
                    value = _FOLD.sub(b"", value)
                if value.endswith(b"\r"):
                    value = value[:-1]
                found[name] = value.lstrip(b" \t")  # trailing blanks stay, as in Dovecot
                break
            at = low.find(want, at + 1)
    return found


_LINE_START: dict[bytes, bytes] = {}
_BLANK = (0x20, 0x09)
_FOLD = re.compile(rb"\r?\n")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _subject(msg: StoredMessage) -> str:
    value = header_of(msg, "subject")
    if value is None:
        return ""
    return base_subject(decode_header_text(value))[0]


def _first_address(value: bytes) -> Address | None:
    # Keyed on what the parser reads, so a cached entry never outlives a limit change.
    return _cached_first_address(value[: parser_limits.current().max_header_bytes])


@lru_cache(maxsize=4096)
def _cached_first_address(value: bytes) -> Address | None:
    found = addresses(value)
    return found[0] if found else None


def _mailbox(name: str) -> Callable[[StoredMessage], str]:
    """The first address's mailbox (a group's name for a group), as Dovecot sorts FROM/TO/CC."""

    def key(msg: StoredMessage) -> str:
        value = header_of(msg, name)
        first = None if value is None else _first_address(value)
        if first is None or first[2] is None:
            return ""
        return casemap(_text(first[2]))

    return key


def _display(name: str) -> Callable[[StoredMessage], str]:
    """RFC 5957: the decoded display name, else ``mailbox@domain`` (a group's name)."""

    def key(msg: StoredMessage) -> str:
        value = header_of(msg, name)
        first = None if value is None else _first_address(value)
        if first is None:
            return ""
        display, _, mailbox, host = first
        if display:
            decoded = decode_header_text(display)
            if decoded:
                return casemap(decoded)
        if mailbox is not None and host is not None:
            return casemap(_text(mailbox + b"@" + host))
        return casemap(_text(mailbox)) if mailbox is not None else ""

    return key


def _seconds(when: datetime) -> int:
    return int(when.timestamp())


_MONTHS = b"janfebmaraprmayjunjulaugsepoctnovdec"
_MONTH = {_MONTHS[at : at + 3]: at // 3 + 1 for at in range(0, len(_MONTHS), 3)}
#: The usual RFC 5322 date, read without email.utils (SORT and THREAD read a million).
_DATE = re.compile(
    rb"[ \t]*(?:[A-Za-z]{3},[ \t]*)?([0-9]{1,2})[ \t]+([A-Za-z]{3})[ \t]+([0-9]{4})[ \t]+"
    rb"([0-9]{2}):([0-9]{2}):([0-9]{2})[ \t]+([+-])([0-9]{2})([0-9]{2})[ \t]*"
)


@lru_cache(maxsize=1024)
def _month_start(year: int, month: int) -> int:
    return timegm((year, month, 1, 0, 0, 0))


def sent_date(value: bytes | None) -> int:
    """A Date field's time in seconds since the epoch; 0 when there is none or it is invalid."""
    if not value:
        return 0
    found = _DATE.fullmatch(value)
    month = _MONTH.get(found[2].lower()) if found else None
    if found and month:
        zone = (int(found[8]) * 60 + int(found[9])) * 60
        seconds = (
            _month_start(int(found[3]), month)
            + (int(found[1]) - 1) * 86400
            + int(found[4]) * 3600
            + int(found[5]) * 60
            + int(found[6])
        )
        return seconds - zone if found[7] == b"+" else seconds + zone
    parsed = parsedate_tz(value.decode("latin-1"))
    if parsed is None:
        return 0
    try:
        return mktime_tz(parsed)
    except (OverflowError, ValueError):
        return 0


def date_key(msg: StoredMessage, value: bytes | None = None) -> int:
    """The sent date in seconds; the arrival date when there is none (or it is 0), as Dovecot.

    ``value`` is the Date field when the caller has read it already."""
    seconds = sent_date(header_of(msg, "date") if value is None else value)
    return seconds or _seconds(msg.internaldate)


def _arrival(msg: StoredMessage) -> int:
    return _seconds(msg.internaldate)


def _size(msg: StoredMessage) -> int:
    return msg.size


#: Sort criterion -> (key of a message, whether the key is a string).
SORT_KEYS: dict[str, tuple[Callable[[StoredMessage], int | str], bool]] = {
    "ARRIVAL": (_arrival, False),
    "DATE": (date_key, False),
    "SIZE": (_size, False),
    "SUBJECT": (_subject, True),
    "FROM": (_mailbox("from"), True),
    "TO": (_mailbox("to"), True),
    "CC": (_mailbox("cc"), True),
    "DISPLAYFROM": (_display("from"), True),
    "DISPLAYTO": (_display("to"), True),
}


#: Criteria whose key is worth keeping: read from the header (ARRIVAL and SIZE are fields).
_MEMOIZED = frozenset(("DATE", "SUBJECT", "FROM", "TO", "CC", "DISPLAYFROM", "DISPLAYTO"))


def _memoized(
    key: Callable[[StoredMessage], int | str], memo: dict[int, int | str]
) -> Callable[[StoredMessage], int | str]:
    """``key``, remembered by UID for stored messages: the bytes (and internal date) of a
    UID never change. Synthetic messages are computed each time, so a million of them
    cost no memory."""

    def remembered(msg: StoredMessage) -> int | str:
        if msg.synthetic:
            return key(msg)
        value = memo.get(msg.uid)
        if value is None:
            value = memo[msg.uid] = key(msg)
        return value

    return remembered


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
    """Collects sort keys hit by hit, then gives the order of the hits.

    The program is read as Dovecot's cmd-sort.c reads it: ``REVERSE`` toggles
    and applies to the next criterion, a repeated criterion is ignored, and a
    program that is empty or ends with ``REVERSE`` is an error.
    """

    def __init__(
        self,
        criteria: Sequence[str],
        replies: Replies = DOVECOT,
        memo: Callable[[str], dict[int, int | str]] | None = None,
    ) -> None:
        """``memo(criterion)``: a dict of that criterion's keys by UID, kept by the caller
        for the mailbox (the header index): a stored message's key is read once."""
        self.columns: list[_Column] = []
        self.names: list[str] = []
        reverse = False
        for word in criteria:
            upper = word.upper()
            if upper == "REVERSE":
                reverse = not reverse
                continue
            found = SORT_KEYS.get(upper)
            if found is None:
                raise SortError(replies.sort_unknown_key.format(key=word))
            if upper not in self.names:
                self.names.append(upper)
                key, text = found
                if memo is not None and upper in _MEMOIZED:
                    key = _memoized(key, memo(upper))
                self.columns.append(_Column(key, text, reverse))
            reverse = False
        if not criteria:
            raise SortError(replies.sort_empty)
        if reverse:
            raise SortError(replies.sort_ends_with_reverse)
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
            order = stable_sort(order, column.getter(), column.reverse)
        return order if isinstance(order, array) else array("I", order)


def stable_sort(
    order: Sequence[int], key: Callable[[int], object], reverse: bool = False
) -> Sequence[int]:
    """``sorted(order, key=key, reverse=reverse)`` as an array, a chunk at a time."""
    keys = map(key, order)
    if all(map(ge if reverse else le, keys, map(key, islice(order, 1, None)))):  # type: ignore[arg-type]
        return order  # already in order (ARRIVAL usually is): nothing to do
    runs = [
        array("I", sorted(order[start : start + CHUNK], key=key, reverse=reverse))  # type: ignore[arg-type]
        for start in range(0, len(order), CHUNK)
    ]
    # heapq.merge breaks ties by run order, so the merge is stable too.
    return array("I", heapq.merge(*runs, key=key, reverse=reverse))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- ESORT


class SortReturn:
    """``SORT RETURN (...)`` options (RFC 5267 ESORT, PARTIAL of RFC 9394), read as Dovecot does."""

    __slots__ = ("options", "partial")

    def __init__(self, options: frozenset[str], partial: tuple[int, int] | None) -> None:
        self.options = options
        self.partial = partial

    def line(self, tag: str, uid: bool, ordered: Sequence[int]) -> bytes:
        """The ``* ESEARCH`` reply for the hits in sorted order."""
        return esearch_line(tag, uid, ordered, self.options, self.partial)


def esearch_line(
    tag: str,
    uid: bool,
    numbers: Sequence[int],
    returns: Collection[str],
    partial: tuple[int, int] | None,
    modseq: int = 0,
) -> bytes:
    """The ``* ESEARCH`` reply of SEARCH RETURN (RFC 4731) and SORT RETURN (RFC 5267).

    ``numbers`` in result order: ascending for SEARCH, sort order for SORT. MIN and
    MAX are the first and last; ALL and PARTIAL list them in that order, joining only
    ascending runs (``3:4,2,1``), as Dovecot. ``returns`` holds the names of MIN, MAX,
    ALL and COUNT asked for; ``modseq`` (0: none) is the highest MODSEQ of the hits.
    """
    escaped = tag.replace("\\", "\\\\").replace('"', '\\"')
    parts = [b'* ESEARCH (TAG "' + escaped.encode() + b'")']
    if uid:
        parts.append(b"UID")
    if numbers:
        if "MIN" in returns:
            parts.append(b"MIN %d" % numbers[0])
        if "MAX" in returns:
            parts.append(b"MAX %d" % numbers[-1])
        if "ALL" in returns:
            parts.append(b"ALL " + format_ascending(numbers).encode())
    if partial is not None:
        low, high = partial
        picked = format_ascending(numbers[low - 1 : high]).encode()
        parts.append(b"PARTIAL (%d:%d %s)" % (low, high, picked or b"NIL"))
    if "COUNT" in returns:
        parts.append(b"COUNT %d" % len(numbers))
    if modseq:
        parts.append(b"MODSEQ %d" % modseq)
    return b" ".join(parts) + b"\r\n"


_PARTIAL = re.compile(r"([0-9]+):([0-9]+)")


def parse_sort_return(options: Sequence[str], replies: Replies = DOVECOT) -> SortReturn:
    """``RETURN (MIN MAX ALL COUNT PARTIAL n:m)``; empty means ALL. Texts are Dovecot's."""
    names: set[str] = set()
    partial: tuple[int, int] | None = None
    words = iter(options)
    for word in words:
        name = word.upper()
        if name in ("MIN", "MAX", "ALL", "COUNT"):
            names.add(name)
        elif name == "PARTIAL":
            if partial is not None:
                raise SortError(replies.partial_twice)
            value = next(words, None)
            if value is None:
                raise SortError(replies.partial_missing)
            found = _PARTIAL.fullmatch(value)
            low, high = (int(found[1]), int(found[2])) if found else (0, 0)
            if not (0 < low < 1 << 32 and 0 < high < 1 << 32):
                raise SortError(replies.partial_broken)
            partial = (min(low, high), max(low, high))
        else:
            raise SortError(replies.search_return_unknown)
    if partial is not None and "ALL" in names:
        raise SortError(replies.partial_with_all)
    if not names and partial is None:
        names.add("ALL")
    return SortReturn(frozenset(names), partial)
