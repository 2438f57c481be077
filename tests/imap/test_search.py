"""Tests of servers.imap.search: every RFC 3501 key, errors and needs_raw."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from mailharness.servers.imap.search import SearchError, Token, compile_search, parse_search_date

PST = timezone(timedelta(hours=-8))


@dataclass
class Msg:
    seq: int
    uid: int
    flags: frozenset[str] = frozenset()
    internaldate: datetime = datetime(1994, 2, 7, 21, 52, 25, tzinfo=PST)
    size: int = 100
    modseq: int = 1
    body: bytes = b"Subject: hello\r\n\r\nbody\r\n"
    raw_reads: list[int] = field(default_factory=list)

    @property
    def raw(self) -> bytes:
        self.raw_reads.append(1)
        return self.body


MAIL = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.COM>\r\n"
    b"Subject: =?UTF-8?Q?Caf=C3=A9?= afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu\r\n"
    b"Cc: Team <team@example.org>\r\n"
    b"Bcc: secret@example.org\r\n"
    b"X-Priority: 1\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow? cr=E8me\r\n"
)


def run(tokens: list[Token], msg: Msg, charset: str = "US-ASCII") -> bool:
    return compile_search(tokens, charset).matches(msg, max_seq=10, max_uid=100)


@pytest.mark.parametrize(
    ("tokens", "flags", "expected"),
    [
        (["ALL"], set(), True),
        (["ANSWERED"], {"\\Answered"}, True),
        (["UNANSWERED"], {"\\Answered"}, False),
        (["DELETED"], {"\\Deleted"}, True),
        (["UNDELETED"], set(), True),
        (["DRAFT"], set(), False),
        (["UNDRAFT"], {"\\Draft"}, False),
        (["FLAGGED"], {"\\flagged"}, True),  # flag names compare case-insensitively
        (["UNFLAGGED"], {"\\Flagged"}, False),
        (["SEEN"], {"\\Seen"}, True),
        (["UNSEEN"], {"\\Seen"}, False),
        (["RECENT"], {"\\Recent"}, True),
        (["NEW"], {"\\Recent"}, True),
        (["NEW"], {"\\Recent", "\\Seen"}, False),
        (["OLD"], {"\\Recent"}, False),
        (["OLD"], set(), True),
        (["KEYWORD", "$Forwarded"], {"$forwarded"}, True),
        (["KEYWORD", "$Junk"], set(), False),
        (["UNKEYWORD", "$Junk"], set(), True),
        (["seen", "flagged"], {"\\Seen"}, False),
        (["NOT", "SEEN"], {"\\Seen"}, False),
        (["OR", "SEEN", "FLAGGED"], {"\\Flagged"}, True),
        (["OR", "SEEN", "FLAGGED"], set(), False),
        ([["SEEN", "FLAGGED"]], {"\\Seen", "\\Flagged"}, True),
        (["NOT", ["SEEN", "FLAGGED"]], {"\\Seen"}, True),
        (["OR", ["SEEN", "DRAFT"], "NOT", "ALL"], {"\\Seen"}, False),
    ],
)
def test_flag_keys(tokens: list[Token], flags: set[str], expected: bool) -> None:
    msg = Msg(1, 1, flags=frozenset(flags))
    assert run(tokens, msg) is expected
    assert not compile_search(tokens).needs_raw
    assert msg.raw_reads == []


def test_numbers_size_modseq() -> None:
    msg = Msg(seq=3, uid=42, size=2000, modseq=620162338)
    assert run(["LARGER", "1999"], msg)
    assert not run(["LARGER", "2000"], msg)
    assert run(["SMALLER", "2001"], msg)
    assert not run(["SMALLER", "2000"], msg)
    assert run(["2:4"], msg) and not run(["4:*"], msg)
    assert run(["UID", "40:45"], msg) and not run(["UID", "1,2"], msg)
    assert run(["UID", "*"], Msg(seq=10, uid=100))
    assert run(["*"], Msg(seq=10, uid=100))
    assert run(["MODSEQ", "620162338"], msg) and not run(["MODSEQ", "620162339"], msg)
    assert run(["MODSEQ", b"/flags/\\draft", "all", "620162000"], msg)
    assert run(["NOT", "5:*", "UID", "42"], msg)
    assert msg.raw_reads == []


@pytest.mark.parametrize(
    ("key", "when", "expected"),
    [
        ("BEFORE", "8-Feb-1994", True),
        ("BEFORE", "7-Feb-1994", False),
        ("ON", "7-Feb-1994", True),  # 21:52 -0800 is 8 Feb in UTC; own zone counts
        ("ON", "8-feb-1994", False),
        ("SINCE", "7-Feb-1994", True),
        ("SINCE", "8-Feb-1994", False),
    ],
)
def test_internal_date_keys(key: str, when: str, expected: bool) -> None:
    assert run([key, when], Msg(1, 1)) is expected
    assert run([key, when.encode()], Msg(1, 1)) is expected  # quoted date
    assert not compile_search([key, when]).needs_raw


@pytest.mark.parametrize(
    ("key", "when", "expected"),
    [
        ("SENTBEFORE", "8-Feb-1994", True),
        ("SENTBEFORE", "7-Feb-1994", False),
        ("SENTON", "7-Feb-1994", True),
        ("SENTSINCE", "7-Feb-1994", True),
        ("SENTSINCE", "08-Feb-1994", False),
    ],
)
def test_sent_date_keys(key: str, when: str, expected: bool) -> None:
    msg = Msg(1, 1, body=MAIL)
    assert run([key, when], msg) is expected
    assert compile_search([key, when]).needs_raw


def test_missing_date_header_counts_as_epoch() -> None:
    msg = Msg(1, 1, body=b"Subject: x\r\n\r\n")
    assert run(["SENTBEFORE", "1-Jan-1971"], msg)
    assert not run(["SENTSINCE", "1-Jan-1971"], msg)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["FROM", b"FOOBAR"], True),
        (["FROM", "blurdybloop.com"], True),
        (["FROM", b"Fred Foobar"], True),
        (["FROM", b"mooch"], False),
        (["TO", b"mooch@"], True),
        (["CC", b"team"], True),
        (["BCC", b"secret"], True),
        (["SUBJECT", "CAFÉ".encode()], True),  # encoded word decoded, case folded
        (["SUBJECT", b"evening"], False),
        (["SUBJECT", b""], True),
        (["HEADER", b"x-priority", b"1"], True),
        (["HEADER", "X-PRIORITY", b""], True),
        (["HEADER", b"X-Missing", b""], False),
        (["BODY", b"3:30 TOMORROW"], True),
        (["BODY", "crème".encode()], True),  # quoted-printable Latin-1 decoded
        (["BODY", b"afternoon"], False),  # subject is not body
        (["TEXT", b"afternoon"], True),
        (["TEXT", b"hello joe"], True),
        (["TEXT", b"nowhere"], False),
        (["NOT", "BODY", b"nowhere"], True),
    ],
)
def test_string_keys(tokens: list[Token], expected: bool) -> None:
    msg = Msg(1, 1, body=MAIL)
    assert run(tokens, msg, charset="UTF-8") is expected
    assert compile_search(tokens, "UTF-8").needs_raw


def test_raw_read_once_per_message() -> None:
    msg = Msg(1, 1, body=MAIL)
    assert run(["FROM", b"fred", "TO", b"mooch", "SUBJECT", b"meeting", "BODY", b"joe"], msg)
    assert len(msg.raw_reads) <= 2  # headers once, text once


def test_raw_not_read_when_short_circuited() -> None:
    msg = Msg(1, 1, body=MAIL)
    assert not run(["SEEN", "BODY", b"joe"], msg)
    assert msg.raw_reads == []


def test_charsets() -> None:
    assert compile_search(["ALL"], "utf-8").matches(Msg(1, 1), max_seq=1, max_uid=1)
    with pytest.raises(SearchError) as info:
        compile_search(["ALL"], "ISO-8859-1")
    assert info.value.code == "BADCHARSET"
    assert "ISO-8859-1" in str(info.value)
    with pytest.raises(SearchError) as info:
        compile_search(["CHARSET", "KOI8-R", "ALL"])
    assert info.value.code == "BADCHARSET"
    prog = compile_search(["CHARSET", "UTF-8", "SUBJECT", "café".encode()])
    assert prog.matches(Msg(1, 1, body=MAIL), max_seq=1, max_uid=1)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ([], "no search keys"),
        (["FOO"], "unknown search key 'FOO'"),
        (["FROM"], "FROM: missing argument"),
        (["HEADER", b"x"], "HEADER: missing argument"),
        (["LARGER", "ten"], "LARGER: expected a number"),
        (["SINCE", "1994-02-01"], "SINCE: invalid date"),
        (["ON", "31-Feb-1994"], "ON: invalid date"),
        (["UID", "1:x"], "UID: invalid sequence set"),
        (["0"], "invalid sequence set"),
        (["OR", "SEEN"], "missing argument"),
        (["NOT"], "missing argument"),
        ([[]], "empty parenthesised list"),
        (["FROM", ["x"]], "expected a string"),
        (["CHARSET"], "missing charset"),
    ],
)
def test_errors_name_the_key(tokens: list[Token], message: str) -> None:
    with pytest.raises(SearchError, match=message) as info:
        compile_search(tokens)
    assert info.value.code is None


def test_deep_nesting_refused() -> None:
    tokens: list[Token] = ["ALL"]
    for _ in range(150):
        tokens = [tokens]
    with pytest.raises(SearchError, match="nested deeper"):
        compile_search(tokens)
    with pytest.raises(SearchError, match="nested deeper"):
        compile_search(["NOT"] * 150 + ["ALL"])


def test_parse_search_date() -> None:
    assert parse_search_date("1-Feb-1994").isoformat() == "1994-02-01"
    assert parse_search_date("01-FEB-1994").isoformat() == "1994-02-01"
    with pytest.raises(ValueError, match="expected d-Mon-yyyy"):
        parse_search_date("1-Foo-1994")


def test_program_over_a_mailbox() -> None:
    msgs = [
        Msg(i, i * 10, flags=frozenset({"\\Seen"} if i % 2 else set()), size=i * 100)
        for i in range(1, 11)
    ]
    prog = compile_search(["UNSEEN", "OR", "LARGER", "800", "UID", "20:40"])
    hits = [m.seq for m in msgs if prog.matches(m, max_seq=10, max_uid=100)]
    assert hits == [2, 4, 10]
