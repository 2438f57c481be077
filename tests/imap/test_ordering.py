"""SORT, THREAD, ESORT and address SEARCH over the wire, as Dovecot 2.3 answers them.

Wire cases are ported from imaptest's scripted groups (sort-*, esort, thread*,
search-addresses), whose expected replies are Dovecot's; unit cases pin the rules
underneath (RFC 5256 base subject, the casemap comparator, Dovecot's address parser).
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from mailharness.servers.imap.addresses import parse_addresses, write_addresses
from mailharness.servers.imap.casemap import casemap
from mailharness.servers.imap.ordering import SortError, base_subject, parse_sort_return

from tests.imap.conftest import RunningIMAP
from tests.ordering_corpus import untagged

ALICE = ("alice@example.test", "alice-password")
BASE = datetime(2008, 2, 22, 15, 6, 23, tzinfo=UTC)


@pytest.fixture
def client(imap: RunningIMAP) -> Iterator[imaplib.IMAP4]:
    conn = imaplib.IMAP4(*imap.none.address)
    conn.login(*ALICE)
    yield conn
    conn.logout()


def load(client: imaplib.IMAP4, *messages: str | tuple[int, str]) -> None:
    """Append messages (optionally ``(seconds after BASE, text)``) and select INBOX."""
    for message in messages:
        offset, text = message if isinstance(message, tuple) else (0, message)
        when = imaplib.Time2Internaldate(BASE + timedelta(seconds=offset))
        raw = text.replace("\n", "\r\n").encode() + b"\r\n\r\nbody\r\n"
        assert client.append("INBOX", "", when, raw)[0] == "OK"
    assert client.select("INBOX")[0] == "OK"


def reply(client: imaplib.IMAP4, command: str) -> bytes:
    """The one untagged reply of a command that must succeed."""
    lines = untagged(client, command)
    assert lines[-1] == b"OK", lines
    assert len(lines) == 2, lines
    return lines[0]


# --------------------------------------------------------------------------- capabilities


def test_ordering_capabilities_are_advertised(client: imaplib.IMAP4) -> None:
    caps = client.capability()[1][0].split()
    for cap in (b"THREAD=REFERENCES", b"THREAD=REFS", b"THREAD=ORDEREDSUBJECT"):
        assert cap in caps
    assert b"ESORT" in caps and b"I18NLEVEL=1" in caps and b"SORT=DISPLAY" in caps


# --------------------------------------------------------------------------- base subject


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Re: lunch", "LUNCH", True),
        ("re [x]:  lunch  ", "LUNCH", True),
        ("[team] RE: Lunch (fwd)", "LUNCH", True),
        ("Fwd: [fwd: lunch]", "LUNCH", True),
        ("FW:FWD: Re: report", "REPORT", True),
        ("report (FWD) (fwd)", "REPORT", True),
        ("[only a blob]", "[ONLY A BLOB]", False),
        ("[a][b] c", "C", False),
        ("Re:", "", True),
        ("\tReport\n\tcontinued", "REPORT CONTINUED", False),
        ("Re [x] : y", "Y", True),  # one space, then a blob, before the colon
        ("Re x: y", "RE X: Y", False),
        ("Ré: été", "RÉ: ÉTÉ", False),
    ],
)
def test_base_subject_follows_rfc_5256(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (casemap(base), reply)


def test_casemap_is_dovecots_titlecase_and_one_decomposition() -> None:
    assert casemap("abc") == "ABC"
    assert casemap("caf\u00e9") == "CAFE\u0301"  # so "cafe" is found in it
    assert casemap("stra\u00dfe") == "STRA\u00dfE"  # no "SS": the simple mapping
    assert casemap("\ufb01ne") == "fiNE"  # decomposed after titlecasing
    assert casemap("\u01c6") == casemap("\u01c4") == "\u01c5"  # titlecase, never decomposed
    assert casemap("\u212b") == "\u00c5"  # one decomposition level only
    assert casemap("\u03c2\u03c3") == "\u03a3\u03a3"


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("value", "parsed"),
    [  # Dovecot 2.3.19's ENVELOPE of each
        (b"<>", [(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
        (b"d", [(None, None, b"d", b"MISSING_DOMAIN")]),
        (b"a b c", [(b"a b c", None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
        (b"a@b (c) (d)", [(b"d", None, b"a", b"b")]),
        (b'"q" a@b', [(b"q a", None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
        (b"<@>", [(None, b"INVALID_ROUTE", b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
        (b"<<<>>>,,,;;;::: @@@", [(None, None, b"MISSING_MAILBOX", b"SYNTAX_ERROR")]),
        (b"<user (c)@ (c) domain.org>", [(None, None, b"user", b"domain.org")]),
        (
            b"g: a@b, (c) d <e@f>;, h@i",
            [
                (None, None, b"g", None),
                (None, None, b"a", b"b"),
                (b"d", None, b"e", b"f"),
                (None, None, None, None),
                (None, None, b"h", b"i"),
            ],
        ),
        (b"empty:;", [(None, None, b"empty", None), (None, None, None, None)]),
    ],
)
def test_addresses_parse_as_dovecot(value: bytes, parsed: list[object]) -> None:
    assert parse_addresses(value) == parsed


def test_addresses_written_back_as_dovecot_searches_them() -> None:
    written = write_addresses(parse_addresses(b'g: a@b, Real <c@d>;, x@y (X Y), "" <e@f>'))
    assert written == b'g: <a@b>, Real <c@d>;, "X Y" <x@y>, <e@f>'
    assert write_addresses(parse_addresses(b"empty:;")) == b"empty:;"


# --------------------------------------------------------------------------- SORT


SORT_ADDRESSES = (
    (
        0,
        "From: user2@domain2.org\nTo: foo bar <user2@domain2.org>\nCc: user2@domain2.org (foo bar)",
    ),
    (3600, "From: user2@domain1.org\nTo: user2@domain1.org\nCc: user2: blah@domain1.org;"),
    (7200, "From: user1@domain1.org\nTo: user1@domain1.org\nCc: user1@domain1.org"),
)


@pytest.mark.parametrize(
    ("program", "expected"),
    [  # imaptest sort-addresses: the local part decides; a group by its name
        ("FROM", b"3 1 2"),
        ("CC", b"3 1 2"),
        ("REVERSE CC", b"1 2 3"),
        ("CC REVERSE ARRIVAL", b"3 2 1"),
        ("REVERSE REVERSE TO", b"3 1 2"),
    ],
)
def test_sort_by_address(client: imaplib.IMAP4, program: str, expected: bytes) -> None:
    load(client, *SORT_ADDRESSES)
    assert reply(client, f"SORT ({program}) US-ASCII ALL") == b"* SORT " + expected


def test_sort_displayto_uses_name_else_address_and_group_name(client: imaplib.IMAP4) -> None:
    # imaptest sort-display-to (RFC 5957)
    load(
        client,
        "To: foo bar <a@b.c>",
        "To: b@c.d",
        "To: d",
        "To: =?iso-8859-1?q?foo_aar?= <e@f.g>",
        "To: =?iso-8859-1?q?foo_car?= <f@g.h>",
        "To: a: xx@xx.org, yy@yy.org;",
        "To: z: aa@aa.org, bb@bb.org;",
        "To: empty:;",
    )
    assert reply(client, "SORT (DISPLAYTO) US-ASCII ALL") == b"* SORT 6 2 3 8 4 1 5 7"
    assert reply(client, "SORT (REVERSE DISPLAYTO) US-ASCII ALL") == b"* SORT 7 5 1 4 8 3 2 6"


def test_sort_subject_then_size_and_ties_by_sequence(client: imaplib.IMAP4) -> None:
    load(
        client,
        "Subject: Re: b\nX-Pad: 1234567890",
        "Subject: a",
        "Subject: [list] b",
        "Subject: B (fwd)",
    )
    assert reply(client, "SORT (SUBJECT) UTF-8 ALL") == b"* SORT 2 1 3 4"
    assert reply(client, "SORT (SUBJECT REVERSE SIZE) UTF-8 ALL") == b"* SORT 2 1 3 4"
    assert reply(client, "SORT (REVERSE SUBJECT) UTF-8 ALL") == b"* SORT 1 3 4 2"


def test_sort_date_falls_back_to_arrival(client: imaplib.IMAP4) -> None:
    load(
        client,
        (30, "Date: Fri, 22 Feb 2008 15:06:25 +0000"),
        (20, "Date: broken"),  # arrival 15:06:43
        (10, "Subject: no date"),  # arrival 15:06:33
        (0, "Date: Fri, 22 Feb 2008 17:06:24 +0200"),  # 15:06:24 UTC
    )
    assert reply(client, "SORT (DATE) UTF-8 ALL") == b"* SORT 4 1 3 2"
    assert reply(client, "SORT (ARRIVAL) UTF-8 ALL") == b"* SORT 4 3 2 1"


@pytest.mark.parametrize(
    ("program", "text"),
    [
        ("()", "Empty sort program."),
        ("(SUBJECT REVERSE)", "Sort list ends with REVERSE."),
        ("(SUBJECTS)", "Unknown sort argument: SUBJECTS"),
    ],
)
def test_bad_sort_programs(
    client: imaplib.IMAP4, imap: RunningIMAP, program: str, text: str
) -> None:
    load(client, "Subject: x")
    tag = client._new_tag()  # type: ignore[attr-defined]
    client.send(tag + f" SORT {program} UTF-8 ALL\r\n".encode())
    assert client.readline() == tag + b" BAD Error in IMAP command SORT: " + text.encode() + b"\r\n"
    imap.errors.clear()  # the BAD was the point


# --------------------------------------------------------------------------- ESORT


def test_esort_return_options(client: imaplib.IMAP4) -> None:
    # imaptest esort and sort-partial: MIN/MAX are the first and last in sort order.
    load(client, (4, "Subject: c"), (3, "Subject: a"), (1, "Subject: e"), (2, "Subject: b"))
    tagged = b'(TAG "%s")'

    def esort(command: str) -> bytes:
        tag = client._new_tag()  # type: ignore[attr-defined]
        client.send(tag + b" " + command.encode() + b"\r\n")
        line = client.readline()
        assert client.readline().startswith(tag + b" OK")
        return line.rstrip(b"\r\n").replace(tagged % tag, b"(TAG)")

    assert esort("SORT RETURN (MIN MAX COUNT) (SUBJECT) UTF-8 ALL") == (
        b"* ESEARCH (TAG) MIN 2 MAX 3 COUNT 4"
    )
    assert esort("SORT RETURN () (ARRIVAL) UTF-8 ALL") == b"* ESEARCH (TAG) ALL 3:4,2,1"
    assert esort("SORT RETURN (PARTIAL 3:2) (REVERSE ARRIVAL) UTF-8 ALL") == (
        b"* ESEARCH (TAG) PARTIAL (2:3 2,4)"
    )
    assert esort("UID SORT RETURN (COUNT MIN) (SUBJECT) UTF-8 SUBJECT zzz") == (
        b"* ESEARCH (TAG) UID COUNT 0"
    )
    assert esort("SORT RETURN (PARTIAL 5:9) (ARRIVAL) UTF-8 ALL") == (
        b"* ESEARCH (TAG) PARTIAL (5:9 NIL)"
    )


@pytest.mark.parametrize(
    ("options", "text"),
    [
        (["PARTIAL", "1"], "PARTIAL range broken."),
        (["PARTIAL", "1:*"], "PARTIAL range broken."),
        (["PARTIAL"], "PARTIAL range missing."),
        (["ALL", "PARTIAL", "1:2"], "PARTIAL conflicts with ALL"),
        (["PARTIAL", "1:2", "PARTIAL", "3:4"], "PARTIAL can be used only once."),
        (["SOME"], "Unknown SEARCH return option"),
    ],
)
def test_bad_sort_return_options(options: list[str], text: str) -> None:
    with pytest.raises(SortError, match=text.replace("*", r"\*").replace(".", r"\.")):
        parse_sort_return(options)


# --------------------------------------------------------------------------- THREAD


def test_thread_loop_is_broken_as_dovecot_does(client: imaplib.IMAP4) -> None:
    # imaptest thread: b references a and c, c references b.
    load(
        client,
        (7200, "Message-ID: <a@b>"),
        (0, "Message-Id: <b@b>\nReferences: <a@b> <c@b>"),
        (3602, "Message-Id: <c@b>\nReferences: <b@b>"),
    )
    assert reply(client, "THREAD REFERENCES US-ASCII ALL") == b"* THREAD (3 2)(1)"
    client.store("1", "+FLAGS", "\\Deleted")
    client.expunge()
    assert reply(client, "THREAD REFERENCES US-ASCII ALL") == b"* THREAD (2 1)"


def test_thread_duplicate_message_id_and_subject_merge(client: imaplib.IMAP4) -> None:
    # imaptest thread3 and thread4: a reply by subject joins its original.
    load(client, "Message-Id: <a@b>\nSubject: foo", (1, "Message-Id: <a@b>\nSubject: Re: foo"))
    assert reply(client, "THREAD REFERENCES US-ASCII ALL") == b"* THREAD (1 2)"


def test_thread_dummy_parent_keeps_siblings_together(client: imaplib.IMAP4) -> None:
    # imaptest thread6: two replies to a missing message.
    load(client, "References: <a@b>", (1, "References: <a@b>"))
    assert reply(client, "THREAD REFERENCES US-ASCII ALL") == b"* THREAD ((1)(2))"
    assert reply(client, "THREAD REFS US-ASCII ALL") == b"* THREAD ((1)(2))"


def test_thread_children_sorted_by_date_and_duplicates(client: imaplib.IMAP4) -> None:
    # imaptest thread7
    load(
        client,
        "Message-Id: <a@b>",
        "Message-Id: <b@b>\nReferences: <a@b>",
        "Message-Id: <c@b>\nReferences: <b@b>",
        "Message-Id: <b@b>\nReferences: <a@b>",
    )
    assert reply(client, "THREAD REFERENCES US-ASCII ALL") == b"* THREAD (1 (2 3)(4))"
    assert reply(client, "UID THREAD REFERENCES US-ASCII ALL") == b"* THREAD (1 (2 3)(4))"
    client.store("2", "+FLAGS", "\\Deleted")
    client.expunge()
    assert reply(client, "THREAD REFERENCES US-ASCII ALL") == b"* THREAD (1 3 2)"


def test_thread_refs_orders_threads_by_latest_message(client: imaplib.IMAP4) -> None:
    load(
        client,
        (0, "Message-Id: <a@x>\nSubject: a"),
        (10, "Message-Id: <b@x>\nSubject: b"),
        (20, "Message-Id: <c@x>\nSubject: Re: a\nIn-Reply-To: <a@x>"),
    )
    assert reply(client, "THREAD REFERENCES US-ASCII ALL") == b"* THREAD (1 3)(2)"
    assert reply(client, "THREAD REFS US-ASCII ALL") == b"* THREAD (2)(1 3)"


def test_thread_orderedsubject(client: imaplib.IMAP4) -> None:
    # imaptest thread-orderedsubject2: threads by first message's sent date (else arrival:
    # 5 to 8 arrive at 20:00:30 to 20:00:27 UTC, after 1 to 4 were sent).
    arrived = 17647  # seconds from BASE to 20:00:30 UTC
    load(
        client,
        (arrived + 3571, "Subject: a\nDate: Fri, 22 Feb 2008 22:00:10 +0200"),
        (arrived + 3572, "Date: Fri, 22 Feb 2008 22:00:09 +0200\nSubject: b"),
        (arrived + 3573, "Date: Fri, 22 Feb 2008 22:00:08 +0200\nSubject: a"),
        (arrived + 3574, "Date: Fri, 22 Feb 2008 22:00:07 +0200\nSubject: b"),
        (arrived, "Subject: a"),
        (arrived - 1, "Subject: b"),
        (arrived - 2, "Subject: a"),
        (arrived - 3, "Subject: b"),
    )
    assert reply(client, "THREAD ORDEREDSUBJECT US-ASCII ALL") == (
        b"* THREAD (4 (2)(8)(6))(3 (1)(7)(5))"
    )


def test_unknown_thread_algorithm(client: imaplib.IMAP4, imap: RunningIMAP) -> None:
    load(client, "Subject: x")
    assert untagged(client, "THREAD SIDEWAYS US-ASCII ALL") == [b"BAD"]
    imap.errors.clear()  # the BAD was the point


# --------------------------------------------------------------------------- SEARCH


SEARCH_ADDRESSES = (
    "From: user-from@domain.org\nTo: user-to@domain.org",
    "From: RealFrom <user-from@domain.org>\nTo: RealTo <user-to@domain.org>",
    "From: <user-from (comment)@ (comment) domain.org>\nTo: <user-to@domain.org>",
    "From: user-from@domain.org (RealFrom)\nTo: user-to@domain.org (RealTo)",
    "From: user-from1@domain.org, user-from2@domain.org",
    "From: RealFrom <user-from@domain.org>\n"
    "To: groupname: groupuser1@domain.org, groupuser2@domain.org;,\n"
    "  groupname2: groupuser3@domain.org;",
    "From: RealFrom <user-from@domain.org>\nTo: groupname:;",
)


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # imaptest search-addresses
        ("FROM user-from@domain.org", b"1 2 3 4 6 7"),
        ("FROM realfrom", b"2 4 6 7"),
        ("FROM ealfro", b"2 4 6 7"),
        ("TO realto", b"2 4"),
        ("FROM user-from2", b"5"),
        ("TO groupname", b"6 7"),
        ("TO groupname2", b"6"),
        ("TO groupuser3", b"6"),
        ('TO "groupname:;"', b"7"),
        ('HEADER TO ""', b"1 2 3 4 6 7"),
    ],
)
def test_search_addresses_see_comments_and_groups(
    client: imaplib.IMAP4, key: str, expected: bytes
) -> None:
    load(client, *SEARCH_ADDRESSES)
    assert reply(client, f"SEARCH {key}") == b"* SEARCH " + expected


def test_search_uses_the_casemap_comparator(client: imaplib.IMAP4) -> None:
    load(client, "Subject: Stra\u00dfe", "Subject: caf\u00e9")
    for needle, expected in (("strasse", b""), ("cafe", b" 2"), ("STRA\u00dfE", b" 1")):
        data = needle.encode()
        command = f"SEARCH CHARSET UTF-8 SUBJECT {{{len(data)}+}}\r\n{needle}"
        assert reply(client, command) == b"* SEARCH" + expected
