"""Message-content extensions over real sockets: BINARY, MULTIAPPEND, CATENATE, URL-PARTIAL,
SNIPPET/PREVIEW, each answered as Dovecot 2.3 answers (see test_content_dovecot for the
byte-for-byte comparison with a real Dovecot)."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator

import pytest

from tests.imap.conftest import RawClient, RunningIMAP

MULTIPART = (
    b"From: a@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\nprologue\r\n'
    b"--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"aGVsbG8Ad29ybGQ=\r\n"
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9llo  =\r\nw\r\n"
    b"--XX\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: in\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n"
    b"--XX--\r\n"
)


class Wire(RawClient):
    """RawClient that reads whole answers, literals included, as one bytes value."""

    count = 0

    def answer(self, text: bytes, *literals: bytes, literal8: bool = False) -> bytes:
        self.count += 1
        tag = b"c%d" % self.count
        pieces = text.split(b"%L")
        assert len(pieces) == len(literals) + 1
        self.send(tag + b" " + pieces[0])
        for literal, rest in zip(literals, pieces[1:], strict=True):
            self.send(b"%s{%d}\r\n" % (b"~" if literal8 else b"", len(literal)))
            line = self.line()
            if not line.startswith(b"+"):
                return line
            self.send(literal + rest)
        self.send(b"\r\n")
        data = b""
        while not re.search(rb"(?:^|\r\n)" + tag + rb" [^\r\n]*\r\n$", data):
            data += self.line()
        return data.replace(tag + b" ", b"TAG ")


@pytest.fixture
def wire(imap: RunningIMAP) -> Iterator[Wire]:
    """Closed at teardown: returned open, its socket lived on in the last test's
    arguments, which pytest drops only after the session's leak check."""
    with Wire(imap.none) as client:
        client.login()
        yield client


def selected(wire: Wire, *messages: bytes) -> Wire:
    for message in messages:
        assert b"TAG OK" in wire.answer(b"APPEND INBOX %L", message)
    assert b"TAG OK" in wire.answer(b"SELECT INBOX")
    return wire


def test_capabilities_name_the_content_extensions(wire: Wire) -> None:
    caps = wire.answer(b"CAPABILITY").split(b"\r\n")[0].split()
    for cap in (b"BINARY", b"MULTIAPPEND", b"CATENATE", b"URL-PARTIAL", b"SNIPPET=FUZZY"):
        assert cap in caps
    assert caps.index(b"PREVIEW=FUZZY") < caps.index(b"PREVIEW")


def test_binary_peek_decodes_base64_as_imapflow_asks(wire: Wire) -> None:
    selected(wire, MULTIPART)
    reply = wire.answer(b"FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])")
    assert reply == (
        b"* 1 FETCH (BINARY[1] ~{11}\r\nhello\x00world BINARY.SIZE[1] 11)\r\n"
        b"TAG OK Fetch completed (0.001 + 0.000 secs).\r\n"
    )
    assert b"\\Seen" not in wire.answer(b"FETCH 1 (FLAGS)")


def test_binary_decodes_quoted_printable_and_partial(wire: Wire) -> None:
    selected(wire, MULTIPART)
    reply = wire.answer(b"FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[2]<1.4>)")
    assert reply.startswith(
        b"* 1 FETCH (BINARY[2] ~{9}\r\nh\xc3\xa9llo  w BINARY[2]<1> ~{4}\r\n\xc3\xa9ll)"
    )


def test_binary_of_attached_message_rewrites_its_encoding_header(wire: Wire) -> None:
    selected(wire, MULTIPART)
    reply = wire.answer(b"FETCH 1 (BINARY.PEEK[3])")
    assert reply.startswith(
        b"* 1 FETCH (BINARY[3] ~{52}\r\nSubject: in\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\nhi)\r\n"
    )


def test_binary_without_peek_sets_seen(wire: Wire) -> None:
    selected(wire, MULTIPART)
    assert b"\\Seen" in wire.answer(b"FETCH 1 (BINARY[1])")


def test_binary_of_missing_part_is_empty(wire: Wire) -> None:
    selected(wire, MULTIPART)
    reply = wire.answer(b"FETCH 1 (BINARY.PEEK[9] BINARY.SIZE[9])")
    assert reply.startswith(b"* 1 FETCH (BINARY[9] {0}\r\n BINARY.SIZE[9] 0)\r\n")


def test_binary_of_unknown_encoding_is_unknown_cte(wire: Wire) -> None:
    message = b"Subject: u\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n"
    selected(wire, message)
    assert wire.answer(b"FETCH 1 (BINARY.PEEK[1] FLAGS)") == (
        b"* 1 FETCH (UID 1)\r\n"
        b"TAG NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding (0.001 + 0.000 secs).\r\n"
    )
    # BODY is not decoded, so it is still served.
    assert wire.answer(b"FETCH 1 (BODY.PEEK[1])").startswith(b"* 1 FETCH (BODY[1] {7}")


def test_binary_of_invalid_base64_is_parse_error(wire: Wire) -> None:
    selected(wire, b"Subject: b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n")
    assert wire.answer(b"FETCH 1 (BINARY.PEEK[1])") == (
        b"* 1 FETCH (UID 1)\r\nTAG NO [PARSE] Invalid data in MIME part (0.001 + 0.000 secs).\r\n"
    )


def test_binary_of_truncated_base64_says_bye_as_dovecot(wire: Wire) -> None:
    selected(wire, b"Subject: b\r\nContent-Transfer-Encoding: base64\r\n\r\naGk\r\n")
    wire.send(b"F FETCH 1 (BINARY.PEEK[1])\r\n")
    assert wire.line() == b"* 1 FETCH (UID 1)\r\n"
    bye = wire.line()
    assert re.fullmatch(
        rb"\* BYE FETCH failed: Internal error occurred\. Refer to server log for more "
        rb"information\. \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]\r\n",
        bye,
    )
    with pytest.raises(EOFError):
        wire.line()


def test_binary_size_fails_for_a_bad_part_anywhere_in_the_message(wire: Wire) -> None:
    message = MULTIPART.replace(
        b"--XX--", b"--XX\r\nContent-Transfer-Encoding: x-y\r\n\r\nz\r\n--XX--"
    )
    selected(wire, message)
    assert b"[UNKNOWN-CTE]" in wire.answer(b"FETCH 1 (BINARY.SIZE[1])")
    assert wire.answer(b"FETCH 1 (BINARY.PEEK[1])").startswith(b"* 1 FETCH (BINARY[1] ~{11}")


def test_append_literal8_stores_binary_parts_as_base64(wire: Wire) -> None:
    message = (
        b"From: a@example.test\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n\n"
    )
    assert b"TAG OK [APPENDUID" in wire.answer(b"APPEND INBOX %L", message, literal8=True)
    wire.answer(b"SELECT INBOX")
    reply = wire.answer(b"FETCH 1 (BODY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1])")
    assert reply.startswith(
        b"* 1 FETCH (BODY[1] {12}\r\nAC3kCg0KCg== BINARY.SIZE[1] 7 "
        b"BINARY[1] ~{7}\r\n\x00-\xe4\n\r\n\n)\r\n"
    )
    assert b"Content-Transfer-Encoding: base64\r\n" in wire.answer(b"FETCH 1 (BODY.PEEK[HEADER])")


def test_multiappend_saves_all_and_reports_a_uid_set(wire: Wire) -> None:
    reply = wire.answer(
        b'APPEND INBOX (\\Seen) "17-Jul-1996 02:44:25 -0700" %L (\\Flagged) %L',
        b"Subject: one\r\n\r\n1\r\n",
        b"Subject: two\r\n\r\n2\r\n",
    )
    assert re.fullmatch(rb"TAG OK \[APPENDUID \d+ 1:2\] Append completed.*\r\n", reply)
    wire.answer(b"SELECT INBOX")
    flags = wire.answer(b"FETCH 1:2 (FLAGS INTERNALDATE)")
    assert b'* 1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE "17-Jul-1996 02:44:25 -0700")' in flags
    assert b"* 2 FETCH (FLAGS (\\Flagged \\Recent) INTERNALDATE" in flags


def test_multiappend_with_a_bad_url_saves_nothing(wire: Wire) -> None:
    reply = wire.answer(
        b'APPEND INBOX %L CATENATE (URL "/INBOX/;uid=99")', b"Subject: one\r\n\r\n1\r\n"
    )
    assert reply == b"TAG NO [BADURL /INBOX/;uid=99] Message not found.\r\n"
    assert b"* 0 EXISTS" in wire.answer(b"SELECT INBOX")


def test_catenate_text_url_section_and_partial(wire: Wire) -> None:
    selected(wire, b"From: a@example.test\r\nSubject: src\r\n\r\nsource body\r\n")
    reply = wire.answer(
        b'APPEND INBOX CATENATE (URL "/INBOX/;uid=1/;section=header" TEXT %L '
        b'URL "imap://alice@localhost/INBOX;UIDVALIDITY=%d/;UID=1/;PARTIAL=7.4")'.replace(
            b"%d", _uidvalidity(wire)
        ),
        b"new\r\n",
    )
    assert b"TAG OK [APPENDUID" in reply
    body = wire.answer(b"FETCH 2 (BODY.PEEK[])")
    assert body.startswith(
        b"* 2 FETCH (BODY[] {47}\r\nFrom: a@example.test\r\nSubject: src\r\n\r\nnew\r\n@exa)"
    )


def _uidvalidity(wire: Wire) -> bytes:
    match = re.search(rb"UIDVALIDITY (\d+)", wire.answer(b"STATUS INBOX (UIDVALIDITY)"))
    assert match is not None
    return match.group(1)


def test_catenate_refusals(wire: Wire, imap: RunningIMAP) -> None:
    selected(wire, b"Subject: src\r\n\r\nbody\r\n")
    assert wire.answer(b'APPEND INBOX CATENATE (URL "/INBOX;uidvalidity=1/;uid=1")') == (
        b"TAG NO [BADURL /INBOX;uidvalidity=1/;uid=1] Invalid UIDVALIDITY.\r\n"
    )
    assert wire.answer(b'APPEND INBOX CATENATE (URL "/Nope/;uid=1")') == (
        b"TAG NO [BADURL /Nope/;uid=1] Mailbox doesn't exist: Nope.\r\n"
    )
    assert wire.answer(b"APPEND INBOX CATENATE ()").startswith(
        b"TAG BAD Error in IMAP command APPEND: Empty CATENATE list"
    )
    assert wire.answer(b'APPEND Nope CATENATE (URL "/INBOX/;uid=1")').startswith(
        b"TAG NO [TRYCREATE]"
    )
    imap.errors.clear()  # the empty CATENATE list is a client error, recorded as such


def test_preview_and_snippet_forms(wire: Wire, imap: RunningIMAP) -> None:
    text = b'Subject: p\r\n\r\n> quoted\r\nHello   "there"\r\n  world\r\n'
    selected(wire, text)
    assert wire.answer(b"FETCH 1 (PREVIEW)").startswith(
        b'* 1 FETCH (PREVIEW "Hello \\"there\\" world")'
    )
    assert wire.answer(b"FETCH 1 SNIPPET").startswith(
        b'* 1 FETCH (SNIPPET (FUZZY "Hello \\"there\\" world"))'
    )
    assert wire.answer(b"FETCH 1 PREVIEW (FUZZY)").startswith(b"* 1 FETCH (PREVIEW (FUZZY ")
    assert wire.answer(b"FETCH 1 (PREVIEW (FOO))").startswith(
        b"TAG BAD Error in IMAP command FETCH: 'FOO' is not a supported PREVIEW modifier"
    )
    imap.errors.clear()  # the BAD modifier is a client error, recorded as such


def test_preview_lazy_is_nil_until_a_plain_preview_computed_it(wire: Wire) -> None:
    selected(wire, b"Subject: p\r\n\r\nlazy text\r\n")
    assert wire.answer(b"FETCH 1 (PREVIEW (LAZY))").startswith(b"* 1 FETCH (PREVIEW NIL)")
    assert wire.answer(b"FETCH 1 (PREVIEW (LAZY))").startswith(b"* 1 FETCH (PREVIEW NIL)")
    assert wire.answer(b"FETCH 1 SNIPPET (LAZY=FUZZY)").startswith(
        b"* 1 FETCH (SNIPPET (FUZZY NIL))"
    )
    assert wire.answer(b"FETCH 1 (PREVIEW)").startswith(b'* 1 FETCH (PREVIEW "lazy text")')
    assert wire.answer(b"FETCH 1 (PREVIEW (LAZY))").startswith(b'* 1 FETCH (PREVIEW "lazy text")')


def test_imaplib_fetches_binary_like_any_client(imap: RunningIMAP) -> None:
    client = imaplib.IMAP4(*imap.none.address)
    try:
        client.login("alice@example.test", "alice-password")
        client.append("INBOX", None, None, MULTIPART)
        client.select("INBOX")
        status, data = client.fetch("1", "(BINARY.PEEK[1])")
        assert status == "OK"
        assert (
            data[0] == (b"1 (BINARY[1] {11}", b"hello\x00world") or data[0][1] == b"hello\x00world"
        )
    finally:
        client.logout()


def test_binary_size_of_header_sections_and_bad_sections(wire: Wire, imap: RunningIMAP) -> None:
    selected(wire, b"Subject: x\r\n\r\nbody\r\n")
    reply = wire.answer(b"FETCH 1 (BINARY.SIZE[HEADER] BINARY.SIZE[1.MIME] BINARY.SIZE[]<0.2>)")
    assert reply.startswith(
        b"* 1 FETCH (BINARY.SIZE[HEADER] 14 BINARY.SIZE[1.MIME] 14 BINARY.SIZE[] 20)"
    )
    assert wire.answer(b"FETCH 1 (BINARY.PEEK[x])").startswith(
        b"TAG BAD Error in IMAP command FETCH: Invalid BINARY[..] section"
    )
    assert wire.answer(b"FETCH 1 (BODY.PEEK[x])").startswith(
        b"TAG BAD Error in IMAP command FETCH: Invalid BODY[..] section"
    )
    imap.errors.clear()  # the two BAD sections are client errors, recorded as such


def test_multiappend_over_quota_saves_none_of_the_messages(wire: Wire, imap: RunningIMAP) -> None:
    imap.store.user("alice@example.test").quota_message_limit = 1
    reply = wire.answer(
        b"APPEND INBOX %L %L", b"Subject: 1\r\n\r\n1\r\n", b"Subject: 2\r\n\r\n2\r\n"
    )
    assert (
        reply
        == b"TAG NO [OVERQUOTA] Quota exceeded (mailbox for user is full) (0.001 + 0.000 secs).\r\n"
    )
    assert b"* 0 EXISTS" in wire.answer(b"SELECT INBOX")
