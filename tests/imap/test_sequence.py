"""Tests of servers.imap.sequence against the RFC 3501 rules and a naive model."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mailharness.servers.imap.sequence import (
    MAX_NUMBER,
    SequenceSet,
    SequenceSetError,
    format_sequence_set,
)


def test_parse_keeps_ranges_as_sent() -> None:
    s = SequenceSet.parse("1:4,7,9:*,*,3:1")
    assert s.ranges == ((1, 4), (7, 7), (9, None), (None, None), (3, 1))
    assert str(s) == "1:4,7,9:*,*,3:1"
    assert s.uses_star
    assert not SequenceSet.parse("2,3").uses_star


@pytest.mark.parametrize(
    "text",
    [
        "",
        ",",
        "1,",
        ",1",
        "1:",
        ":1",
        "0",
        "1:0",
        "a",
        "1-3",
        " 1",
        "1 ",
        "**",
        "1::2",
        "٣",
        "4294967296",
        "+1",
        "-1",
    ],
)
def test_parse_rejects_and_names_bad_text(text: str) -> None:
    with pytest.raises(SequenceSetError) as info:
        SequenceSet.parse(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_accepts_largest_number() -> None:
    assert SequenceSet.parse(str(MAX_NUMBER)).ranges == ((MAX_NUMBER, MAX_NUMBER),)


def test_empty_ranges_refused() -> None:
    with pytest.raises(SequenceSetError):
        SequenceSet(())


def test_contains_reversed_and_star() -> None:
    s = SequenceSet.parse("3:1,9:*")
    assert [n for n in range(1, 13) if s.contains(n, 12)] == [1, 2, 3, 9, 10, 11, 12]


def test_star_below_range_start_still_matches_largest() -> None:
    # RFC 3501 §6.4.8: "UID 5:*" matches the largest UID even when it is below 5.
    s = SequenceSet.parse("5:*")
    assert s.contains(3, 3)
    assert not s.contains(2, 3)
    assert s.filter_sorted([1, 2, 3]) == [3]


def test_star_alone() -> None:
    s = SequenceSet.parse("*")
    assert list(s.iter_values(7)) == [7]
    assert list(s.iter_values(0)) == []
    assert s.filter_sorted(array("I", [4, 8, 15])) == [15]


def test_iter_values_dedups_sorts_and_clips() -> None:
    s = SequenceSet.parse("9:*,2,1:3,3,20")
    assert list(s.iter_values(10)) == [1, 2, 3, 9, 10]
    assert list(SequenceSet.parse("1:4294967295").iter_values(3)) == [1, 2, 3]


def test_filter_sorted_on_empty_and_array() -> None:
    s = SequenceSet.parse("1:*")
    assert s.filter_sorted([]) == []
    uids = array("I", range(1, 1_000_001))
    assert len(s.filter_sorted(uids)) == 1_000_000
    assert SequenceSet.parse("999999:*,5").filter_sorted(uids) == [5, 999999, 1000000]


def test_intervals_merge_touching() -> None:
    assert SequenceSet.parse("1:3,4,6:5,*").intervals(10) == [(1, 6), (10, 10)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ""),
        ([1], "1"),
        ([1, 2, 3, 5], "1:3,5"),
        ([5, 3, 1, 2, 3], "1:3,5"),
        ([7, 9, 8, 11], "7:9,11"),
        ([MAX_NUMBER], str(MAX_NUMBER)),
    ],
)
def test_format_sequence_set(values: list[int], expected: str) -> None:
    assert format_sequence_set(values) == expected


bounds = st.one_of(st.none(), st.integers(1, 40))
range_lists = st.lists(st.tuples(bounds, bounds), min_size=1, max_size=6)


def _naive(ranges: list[tuple[int | None, int | None]], star: int) -> set[int]:
    out: set[int] = set()
    for lo, hi in ranges:
        a = star if lo is None else lo
        b = star if hi is None else hi
        out.update(range(min(a, b), max(a, b) + 1))
    return out


@settings(max_examples=200, deadline=None)
@given(ranges=range_lists, star=st.integers(0, 45))
def test_model_contains_and_iter(ranges: list[tuple[int | None, int | None]], star: int) -> None:
    s = SequenceSet(tuple(ranges))
    model = _naive(ranges, star)
    assert [n for n in range(0, 50) if s.contains(n, star)] == sorted(n for n in model if n < 50)
    assert list(s.iter_values(star)) == sorted(n for n in model if 1 <= n <= star)
    assert SequenceSet.parse(str(s)) == s


@settings(max_examples=200, deadline=None)
@given(ranges=range_lists, values=st.sets(st.integers(1, 45)))
def test_model_filter_sorted(ranges: list[tuple[int | None, int | None]], values: set[int]) -> None:
    s = SequenceSet(tuple(ranges))
    ordered = sorted(values)
    star = ordered[-1] if ordered else 0
    model = _naive(ranges, star)
    assert s.filter_sorted(ordered) == [v for v in ordered if v in model]
    assert s.filter_sorted(array("I", ordered)) == [v for v in ordered if v in model]


@settings(max_examples=200, deadline=None)
@given(values=st.sets(st.integers(1, 200)))
def test_format_round_trips(values: set[int]) -> None:
    text = format_sequence_set(values)
    if values:
        assert set(SequenceSet.parse(text).iter_values(200)) == values
        assert len(SequenceSet.parse(text).ranges) == len(SequenceSet.parse(text).intervals(200))
    else:
        assert text == ""
