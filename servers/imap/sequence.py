"""IMAP sequence sets (RFC 3501 §9 ``sequence-set``, RFC 9051 §9).

A set is kept as the ranges the client sent, with ``None`` for ``*``; the
value of ``*`` is only known when the set is applied to a mailbox, so every
query takes it as an argument. ``n:m`` means the same as ``m:n``, which also
gives the RFC 3501 §6.4.8 rule for free: ``UID 5:*`` with a largest UID of 3
is ``3:5`` and so still matches the last message.

>>> s = SequenceSet.parse("1:3,7,9:*")
>>> list(s.iter_values(10))
[1, 2, 3, 7, 9, 10]
>>> format_sequence_set([1, 2, 3, 5])
'1:3,5'
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_NUMBER",
    "SequenceSet",
    "SequenceSetError",
    "format_ascending",
    "format_sequence_set",
]

#: Sequence numbers and UIDs are unsigned 32-bit (RFC 3501 §9 ``nz-number``).
MAX_NUMBER = 4_294_967_295

Bound = int | None
"""One end of a range: a number, or ``None`` for ``*``."""


class SequenceSetError(ValueError):
    """The client sent a malformed sequence set; the message quotes the bad text."""


def _parse_number(item: str, whole: str) -> Bound:
    if item == "*":
        return None
    # isdigit() alone would accept non-ASCII digits (Arabic-Indic, superscripts).
    if not item or not item.isascii() or not item.isdigit():
        raise SequenceSetError(f"invalid sequence set {whole!r}: {item!r} is not a number or '*'")
    value = int(item)
    if value == 0 or value > MAX_NUMBER:
        raise SequenceSetError(f"invalid sequence set {whole!r}: {item} is outside 1..{MAX_NUMBER}")
    return value


def _resolve(bound: Bound, star: int) -> int:
    return star if bound is None else bound


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence set; build it with :meth:`parse`.

    ``ranges`` holds ``(first, last)`` pairs as sent (a single number ``n``
    is ``(n, n)``); either end may be ``None`` for ``*`` and ``first`` may be
    larger than ``last``.
    """

    ranges: tuple[tuple[Bound, Bound], ...]

    def __post_init__(self) -> None:
        if not self.ranges:
            raise SequenceSetError("invalid sequence set: it has no ranges")

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Parse ``"1:4,7,9:*"``; raise :class:`SequenceSetError` naming the bad text."""
        if not text:
            raise SequenceSetError("invalid sequence set '': it is empty")
        ranges: list[tuple[Bound, Bound]] = []
        for item in text.split(","):
            first, colon, last = item.partition(":")
            if not item:
                raise SequenceSetError(f"invalid sequence set {text!r}: empty element")
            lo = _parse_number(first, text)
            hi = _parse_number(last, text) if colon else lo
            ranges.append((lo, hi))
        return cls(tuple(ranges))

    def __str__(self) -> str:
        """The set in wire form, e.g. ``1:4,7,9:*``."""

        def one(bound: Bound) -> str:
            return "*" if bound is None else str(bound)

        return ",".join(one(lo) if lo == hi else f"{one(lo)}:{one(hi)}" for lo, hi in self.ranges)

    @property
    def uses_star(self) -> bool:
        """Whether the meaning depends on the mailbox (``*`` appears)."""
        return any(lo is None or hi is None for lo, hi in self.ranges)

    def intervals(self, star: int) -> list[tuple[int, int]]:
        """Ranges with ``*`` resolved, ordered, sorted and merged (touching ones joined)."""
        resolved = sorted(
            (min(a, b), max(a, b))
            for a, b in ((_resolve(lo, star), _resolve(hi, star)) for lo, hi in self.ranges)
        )
        merged: list[tuple[int, int]] = []
        for lo, hi in resolved:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, n: int, star: int) -> bool:
        """Whether ``n`` is in the set, ``star`` being the largest seq/UID (0 if empty)."""
        for lo, hi in self.ranges:
            a = _resolve(lo, star)
            b = _resolve(hi, star)
            if a > b:
                a, b = b, a
            if a <= n <= b:
                return True
        return False

    def iter_values(self, star: int) -> Iterator[int]:
        """Yield the members in ``1..star``, ascending and without repeats.

        Values above ``star`` are dropped: for sequence numbers they do not
        exist, and iterating ``1:4294967295`` must not take forever.
        """
        for lo, hi in self.intervals(star):
            yield from range(max(lo, 1), min(hi, star) + 1)

    def positions(self, sorted_values: Sequence[int]) -> list[tuple[int, int]]:
        """Index ranges ``(start, stop)`` (half-open) of the members of an ascending sequence.

        ``*`` is the last value. The ranges are ascending and disjoint, so a
        ``UID FETCH 1:*`` on a million-message mailbox is one range and two
        bisections, with nothing copied.
        """
        if not sorted_values:
            return []
        star = sorted_values[-1]
        out: list[tuple[int, int]] = []
        for lo, hi in self.intervals(star):
            start = bisect_left(sorted_values, lo)
            stop = bisect_right(sorted_values, hi, lo=start)
            if start < stop:
                out.append((start, stop))
        return out

    def filter_sorted(self, sorted_values: Sequence[int]) -> list[int]:
        """Members of an ascending sequence (such as an ``array('I')`` of UIDs).

        ``*`` is the last value. Each range costs two bisections.
        """
        out: list[int] = []
        for start, stop in self.positions(sorted_values):
            out.extend(sorted_values[start:stop])
        return out


def format_sequence_set(values: Iterable[int]) -> str:
    """Compact wire form of some numbers, as in COPYUID, APPENDUID and ESEARCH.

    Input order and repeats do not matter; an empty input gives ``""``.

    >>> format_sequence_set([5, 3, 1, 2, 3])
    '1:3,5'
    """
    return format_ascending(sorted(set(values)))


def format_ascending(ordered: Sequence[int]) -> str:
    """:func:`format_sequence_set` of numbers already strictly ascending (no copy made).

    Numbers in any other order keep it, joined only where they ascend by one, as
    Dovecot lists ESORT results:

    >>> format_ascending([1, 2, 3, 5])
    '1:3,5'
    >>> format_ascending([3, 4, 2, 1])
    '3:4,2,1'
    """
    parts: list[str] = []
    count = len(ordered)
    i = 0
    while i < count:
        j = i
        while j + 1 < count and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)
