"""Tests of servers.imap.message: ENVELOPE, BODYSTRUCTURE, sections and helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mailharness.servers.imap.message import (
    bodystructure,
    decoded_headers,
    envelope,
    format_internaldate,
    header_value,
    header_values,
    parse_internaldate,
    quote,
    rfc822_size,
    section,
    text_content,
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# RFC 3501 §7.4.2 FETCH response example, rebuilt as a message.
RFC_BODY = b"".join(b"x" * (31 if i < 84 else 30) + b"\r\n" for i in range(92))
RFC_MESSAGE = (
    crlf(
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n"
        "From: Terry Gray <gray@cac.washington.edu>\n"
        "Subject: IMAP4rev1 WG mtg summary and minutes\n"
        "To: imap@cac.washington.edu\n"
        "cc: minutes@CNRI.Reston.VA.US,\n"
        "    John Klensin <KLENSIN@MIT.EDU>\n"
        "Message-Id: <B27397-0100000@cac.washington.edu>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n"
        "Content-Transfer-Encoding: 7BIT\n"
        "\n"
    )
    + RFC_BODY
)


def test_rfc3501_envelope_example() -> None:
    assert envelope(RFC_MESSAGE) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )


def test_rfc3501_body_example() -> None:
    assert len(RFC_BODY) == 3028
    assert bodystructure(RFC_MESSAGE, extensible=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    )
    assert bodystructure(RFC_MESSAGE) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)'
    )


# Dovecot's own test vector (src/lib-imap/test-imap-bodystructure.c), LF line ends.
DOVECOT_MESSAGE = (
    b"From: user@domain.org\n"
    b"Date: Sat, 24 Mar 2007 23:00:00 +0200\n"
    b"Mime-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="foo\n'
    b' bar"\n'
    b"\n"
    b"Root MIME prologue\n"
    b"\n"
    b"--foo bar\n"
    b'Content-Type: text/x-myown; charset=us-ascii; foo="quoted\\"string"\n'
    b"Content-ID: <foo@example.com>\n"
    b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    b"Content-Disposition: inline; foo=bar\n"
    b"Content-Description: hellodescription\n"
    b"Content-Language: en, fi, se\n"
    b"Content-Location: http://example.com/test.txt\n"
    b"\n"
    b"hello\n"
    b"\n"
    b"--foo bar\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"From: sub@domain.org\n"
    b"To: sub-to1@domain.org, sub-to2@domain.org\n"
    b"Date: Sun, 12 Aug 2012 12:34:56 +0300\n"
    b"Subject: submsg\n"
    b'Content-Type: multipart/alternative; boundary="sub1"\n'
    b"\n"
    b"Sub MIME prologue\n"
    b"--sub1\n"
    b"Content-Type: text/html\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"<p>Hello world</p>\n"
    b"\n"
    b"--sub1\n"
    b"Content-Type: text/plain\n"
    b"Content-Transfer-Encoding: ?invalid\n"
    b"\n"
    b"Hello another world\n"
    b"\n"
    b"--sub1--\n"
    b"Sub MIME epilogue\n"
    b"\n"
    b"--foo bar--\n"
    b"Root MIME epilogue\n"
)
SUB_ENVELOPE = (
    b'("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) '
    b'((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) '
    b'((NIL NIL "sub-to1" "domain.org")(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL)'
)


def test_dovecot_bodystructure_vector() -> None:
    assert bodystructure(DOVECOT_MESSAGE) == (
        b'(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") '
        b'"<foo@example.com>" "hellodescription" "7bit" 7 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" '
        b'("inline" ("foo" "bar")) ("en" "fi" "se") "http://example.com/test.txt")'
        b'("message" "rfc822" NIL NIL NIL "7bit" 412 ' + SUB_ENVELOPE + b" "
        b'(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1 NIL NIL NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL) '
        b'"alternative" ("boundary" "sub1") NIL NIL NIL) 21 NIL NIL NIL NIL) '
        b'"mixed" ("boundary" "foo bar") NIL NIL NIL)'
    )


def test_dovecot_body_vector() -> None:
    assert bodystructure(DOVECOT_MESSAGE, extensible=False) == (
        b'(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\\"string") '
        b'"<foo@example.com>" "hellodescription" "7bit" 7 1)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 412 ' + SUB_ENVELOPE + b" "
        b'(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1) "alternative") 21) '
        b'"mixed")'
    )


def test_bare_lf_and_crlf_agree() -> None:
    as_crlf = DOVECOT_MESSAGE.replace(b"\n", b"\r\n")
    assert bodystructure(as_crlf) == bodystructure(DOVECOT_MESSAGE)
    assert envelope(as_crlf) == envelope(DOVECOT_MESSAGE)
    assert section(DOVECOT_MESSAGE, ()) == as_crlf
    assert rfc822_size(DOVECOT_MESSAGE) == rfc822_size(as_crlf) == len(as_crlf)


ALTERNATIVE_WITH_ATTACHMENT = crlf(
    "From: Alice <alice@example.org>\n"
    "To: bob@example.net\n"
    "Subject: report\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="outer"\n'
    "\n"
    "This is a multi-part message in MIME format.\n"
    "--outer\n"
    'Content-Type: multipart/alternative; boundary="inner"\n'
    "\n"
    "--inner\n"
    "Content-Type: text/plain; charset=utf-8; format=flowed\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Caf=C3=A9 report attached\n"
    "--inner\n"
    "Content-Type: text/html; charset=utf-8\n"
    "\n"
    "<p>Caf\xe9 report</p>\n"
    "--inner--\n"
    "\n"
    "--outer\n"
    'Content-Type: application/pdf; name="r.pdf"\n'
    "Content-Transfer-Encoding: base64\n"
    'Content-Disposition: attachment; filename="r.pdf"\n'
    "\n"
    "JVBERi0xLjQK\n"
    "--outer--\n"
)


def test_alternative_with_attachment() -> None:
    got = bodystructure(ALTERNATIVE_WITH_ATTACHMENT)
    assert got.startswith(
        b'((("text" "plain" ("charset" "utf-8" "format" "flowed") NIL NIL "quoted-printable" '
        b"25 0 NIL NIL NIL NIL)"
        b'("text" "html" ("charset" "utf-8") NIL NIL "7bit" 19 0 NIL NIL NIL NIL) '
        b'"alternative" ("boundary" "inner") NIL NIL NIL)'
    )
    assert got.endswith(
        b'("application" "pdf" ("name" "r.pdf") NIL NIL "base64" 12 NIL '
        b'("attachment" ("filename" "r.pdf")) NIL NIL) '
        b'"mixed" ("boundary" "outer") NIL NIL NIL)'
    )
    assert section(ALTERNATIVE_WITH_ATTACHMENT, (1, 1)) == b"Caf=C3=A9 report attached"
    assert section(ALTERNATIVE_WITH_ATTACHMENT, (2,)) == b"JVBERi0xLjQK"
    assert section(ALTERNATIVE_WITH_ATTACHMENT, (1,), "MIME") == (
        b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    )
    text = text_content(ALTERNATIVE_WITH_ATTACHMENT)
    assert "Café report attached" in text
    assert "<p>Café report</p>" in text
    assert "JVBER" not in text


NESTED = crlf(
    "From: a@example.org\n"
    "Subject: nested\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=b1\n"
    "\n"
    "--b1\n"
    "\n"
    "part one\n"
    "--b1\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: inner@example.org\n"
    "Subject: inner\n"
    "Content-Type: multipart/alternative; boundary=b2\n"
    "\n"
    "--b2\n"
    "Content-Type: text/plain\n"
    "\n"
    "inner plain\n"
    "--b2\n"
    "Content-Type: text/html\n"
    "\n"
    "<b>inner html</b>\n"
    "--b2--\n"
    "--b1\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "Subject: simple\n"
    "\n"
    "simple body\n"
    "--b1\n"
    "Content-Type: multipart/digest; boundary=b3\n"
    "\n"
    "--b3\n"
    "\n"
    "Subject: digested\n"
    "\n"
    "digest body\n"
    "--b3--\n"
    "--b1--\n"
)


@pytest.mark.parametrize(
    ("part", "kind", "expected"),
    [
        ((1,), None, b"part one"),
        ((1,), "MIME", b"\r\n"),
        (
            (2,),
            "HEADER",
            crlf(
                "From: inner@example.org\nSubject: inner\n"
                "Content-Type: multipart/alternative; boundary=b2\n\n"
            ),
        ),
        ((2, 1), None, b"inner plain"),
        ((2, 2), None, b"<b>inner html</b>"),
        ((2, 2), "MIME", b"Content-Type: text/html\r\n\r\n"),
        ((2,), "MIME", b"Content-Type: message/rfc822\r\n\r\n"),
        ((3,), "TEXT", b"simple body"),
        ((3, 1), None, b"simple body"),
        ((3, 2), None, b""),
        ((4, 1), "HEADER", b"Subject: digested\r\n\r\n"),
        ((4, 1, 1), None, b"digest body"),
        ((5,), None, b""),
        # Dovecot (imap_msgpart_find): a leaf's part 1 is itself, at the path's end only.
        ((1, 1), None, b"part one"),
        ((1, 1, 1), None, b""),
        ((1,), "HEADER", b""),
        ((0,), None, b""),
        ((), "MIME", b""),
    ],
)
def test_section_numbering(part: tuple[int, ...], kind: str | None, expected: bytes) -> None:
    assert section(NESTED, part, kind) == expected


def test_nested_bodystructure_shape() -> None:
    got = bodystructure(NESTED, extensible=False)
    assert got.startswith(b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 8 0)')
    assert b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 0)' in got
    # a multipart/digest child without Content-Type is message/rfc822
    assert b'("message" "rfc822" NIL NIL NIL "7bit" 32 (NIL "digested" NIL' in got
    assert got.endswith(b' "digest") "mixed")')


def test_section_whole_message_header_and_text() -> None:
    header, text = section(RFC_MESSAGE, (), "HEADER"), section(RFC_MESSAGE, (), "TEXT")
    assert header + text == RFC_MESSAGE
    assert header.endswith(b"\r\n\r\n")
    assert section(RFC_MESSAGE, (1,)) == RFC_BODY  # part 1 of a non-multipart is its body
    assert section(RFC_MESSAGE, (1,), "MIME").startswith(b"Date:")


def test_header_fields_keeps_order_and_folding() -> None:
    got = section(RFC_MESSAGE, (), "HEADER.FIELDS", ("CC", "subject", "X-Absent"))
    assert got == crlf(
        "Subject: IMAP4rev1 WG mtg summary and minutes\n"
        "cc: minutes@CNRI.Reston.VA.US,\n"
        "    John Klensin <KLENSIN@MIT.EDU>\n"
        "\n"
    )
    assert section(RFC_MESSAGE, (), "HEADER.FIELDS", ("X-Absent",)) == b"\r\n"
    not_fields = section(RFC_MESSAGE, (), "header.fields.not", ("cc", "date", "content-type"))
    assert not_fields.startswith(b"From: Terry Gray")
    assert b"cc:" not in not_fields and b"Date:" not in not_fields
    assert b"Content-Transfer-Encoding: 7BIT\r\n\r\n" in not_fields
    assert section(NESTED, (2,), "HEADER.FIELDS", ("subject",)) == b"Subject: inner\r\n\r\n"


def test_section_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="section kind 'BODY'"):
        section(RFC_MESSAGE, (), "BODY")


def test_group_addresses() -> None:
    raw = crlf(
        "From: Pete <pete@silly.example>\n"
        "To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;\n"
        "Cc: Undisclosed recipients:;\n"
        "Bcc: (comment only)\n"
        "\n"
    )
    env = envelope(raw)
    assert (
        b'((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")'
        b'("John" NIL "jdoe" "one.test")(NIL NIL NIL NIL)) '
        b'((NIL NIL "Undisclosed recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)'
    ) in env


def test_address_forms() -> None:
    raw = crlf(
        'From: "Foobar, Fred \\"the\\" one" <foobar@Blurdybloop.COM>\n'
        "Sender: fred@example.com (Fred Example)\n"
        "Reply-To: <@relay1.test,@relay2.test:joe@example.com>, John Q. Public <jqp@x.test>\n"
        "To: <>, nodomain, @nolocal.test\n"
        "\n"
    )
    env = envelope(raw)
    assert b'(("Foobar, Fred \\"the\\" one" NIL "foobar" "Blurdybloop.COM")) ' in env
    assert b'(("Fred Example" NIL "fred" "example.com")) ' in env
    assert (
        b'((NIL "@relay1.test,@relay2.test" "joe" "example.com")'
        b'("John Q. Public" NIL "jqp" "x.test")) '
    ) in env
    # Dovecot 2.3.19 answers exactly this ("<>" is no address: both parts filled in).
    assert (
        b'((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "nodomain" "MISSING_DOMAIN")'
        b'(NIL NIL "MISSING_MAILBOX" "nolocal.test"))'
    ) in env


def test_envelope_defaults_and_absent_headers() -> None:
    assert envelope(b"") == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    raw = crlf("From: a@b.test\nSender:\nSubject:\nIn-Reply-To: <x@y>\n\nbody\n")
    assert envelope(raw) == (
        b'(NIL "" ((NIL NIL "a" "b.test")) ((NIL NIL "a" "b.test")) ((NIL NIL "a" "b.test")) '
        b'NIL NIL NIL "<x@y>" NIL)'
    )


def test_envelope_keeps_encoded_words_and_unfolds() -> None:
    raw = crlf(
        "Subject: =?UTF-8?B?SGVsbG8gd29ybGQ=?=\n"
        "\t continued\n"
        "From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\n"
        "\n"
    )
    env = envelope(raw)
    assert env.startswith(b'(NIL "=?UTF-8?B?SGVsbG8gd29ybGQ=?=\t continued" ')
    assert b'(("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))' in env


def test_envelope_8bit_header_is_literal() -> None:
    raw = "Subject: Grüße\r\n\r\n".encode()
    assert envelope(raw).startswith(b"(NIL {7}\r\nGr\xc3\xbc\xc3\x9fe NIL")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?UTF-8?B?SGVsbG8=?= =?UTF-8?Q?_w=C3=B6rld?=", "Hello wörld"),
        ("=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
        ("plain  text", "plain  text"),
        ("=?x-unknown?Q?abc?=", "abc"),
        ("=?UTF-8?B?not*base64?=", "=?UTF-8?B?not*base64?="),
        ("=?UTF-8?B?bad base64?=", "=?UTF-8?B?bad base64?="),
        ("a =?utf-8?q?b?= c", "a b c"),
    ],
)
def test_header_value_decodes(value: str, expected: str) -> None:
    raw = f"X-Test: {value}\r\n\r\n".encode()
    assert header_value(raw, "x-test") == expected


def test_header_value_absent_first_and_folded() -> None:
    raw = crlf("Received: one\nReceived: two\n  folded\nSubject: s\n\nbody")
    assert header_value(raw, "RECEIVED") == "one"
    assert header_values(raw, "received") == ["one", "two  folded"]
    assert header_value(raw, "to") is None
    assert ("subject", "s") in decoded_headers(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n",
        b"no colon here\r\nSubject: ok\r\n\r\nbody",
        b"Subject: no blank line and no newline",
        b'From: "unterminated\r\nTo: (unterminated comment\r\n\r\n',
        b"From: <<<>>>,,,;;;::: @@@\r\nTo: a:b:c;d;\r\nCc: x:\r\n\r\n",
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\nno boundary",
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n",
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: text; charset\r\nContent-Language: ,,\r\n\r\nx",
        b"Content-Type: text/plain; a*0*=x; a*1=y; =; b=\r\n\r\n\x00\xff",
        b"\xff\xfe: \x00\r\n \r\n\t\r\n",
        b" leading continuation\r\n\r\n",
    ],
)
def test_malformed_messages_do_not_crash(raw: bytes) -> None:
    envelope(raw)
    bodystructure(raw)
    bodystructure(raw, extensible=False)
    text_content(raw)
    for part in ((), (1,), (1, 1), (2,)):
        for kind in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS"):
            section(raw, part, kind, ("subject",))


def test_empty_multipart_gets_placeholder() -> None:
    raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n"
    assert bodystructure(raw, extensible=False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    )


def test_non_mime_message_ignores_content_headers() -> None:
    raw = crlf("Content-Transfer-Encoding: base64\nContent-ID: <x>\n\nhello\n")
    assert bodystructure(raw) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)'
    )


def test_rfc2231_continuations_kept_encoded() -> None:
    raw = crlf(
        "MIME-Version: 1.0\n"
        "Content-Type: application/x-stuff;\n"
        " title*0*=us-ascii'en'This%20is%20even%20more%20;\n"
        ' title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2="isn\'t it!"\n'
        "\n"
    )
    assert bodystructure(raw, extensible=False).startswith(
        b'("application" "x-stuff" ("title*" '
        b"\"us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn't it!\") "
    )


def test_language_and_location() -> None:
    raw = crlf(
        "MIME-Version: 1.0\nContent-Type: text/plain\nContent-Language: de-CH\n"
        "Content-Location: x.txt\nContent-Disposition: INLINE\n\nx"
    )
    assert bodystructure(raw).endswith(b' 1 0 NIL ("INLINE" NIL) ("de-CH") "x.txt")')


def test_text_content_decodes_transfer_and_charset() -> None:
    raw = (
        crlf(
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\n"
            "Content-Transfer-Encoding: base64\n\n"
        )
        + b"Q2Fm6SBjcuhtZQ==\r\n"
    )
    assert text_content(raw) == "Café crème"
    assert "part one" in text_content(NESTED)
    assert "inner html" in text_content(NESTED)
    assert "digest body" in text_content(NESTED)


def test_rfc822_size_counts_crlf() -> None:
    assert rfc822_size(b"a\nb\r\n") == 6
    assert rfc822_size(RFC_MESSAGE) == len(RFC_MESSAGE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"NIL"),
        ("", b'""'),
        ("plain", b'"plain"'),
        ('a "b" \\c', b'"a \\"b\\" \\\\c"'),
        ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        ("é", b"{2}\r\n\xc3\xa9"),
        (b"\x00", b"{1}\r\n\x80"),
        ("x" * 1001, b"{1001}\r\n" + b"x" * 1001),
        ("x" * 1000, b'"' + b"x" * 1000 + b'"'),
    ],
)
def test_quote(value: str | bytes | None, expected: bytes) -> None:
    assert quote(value) == expected


def test_internaldate_format_and_parse() -> None:
    pdt = timezone(timedelta(hours=-7))
    dt = datetime(1996, 7, 17, 2, 44, 25, tzinfo=pdt)
    assert format_internaldate(dt) == "17-Jul-1996 02:44:25 -0700"
    assert parse_internaldate("17-Jul-1996 02:44:25 -0700") == dt
    assert parse_internaldate(" 7-jul-1996 02:44:25 +0530").utcoffset() == timedelta(
        hours=5, minutes=30
    )
    assert format_internaldate(datetime(2024, 2, 7, 1, 2, 3)) == "07-Feb-2024 01:02:03 +0000"
    assert format_internaldate(datetime(2024, 2, 7, tzinfo=UTC)) == "07-Feb-2024 00:00:00 +0000"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "17-Jul-1996",
        "17-Jux-1996 02:44:25 -0700",
        "31-Feb-1996 02:44:25 -0700",
        "17-Jul-1996 25:44:25 -0700",
        "17-Jul-1996 02:44:25 -2400",
        "17-Jul-96 02:44:25 -0700",
    ],
)
def test_parse_internaldate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid date-time"):
        parse_internaldate(text)


@settings(max_examples=150, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-8))])))
def test_internaldate_round_trip(dt: datetime) -> None:
    dt = dt.replace(microsecond=0)
    if dt.year < 1000:
        return
    assert parse_internaldate(format_internaldate(dt)) == dt


header_line = st.sampled_from(
    [
        b"From: ",
        b"To: ",
        b"Subject: ",
        b"Content-Type: ",
        b"MIME-Version: 1.0",
        b" ",
        b"--b",
        b"Content-Type: multipart/mixed; boundary=b",
        b"Content-Type: message/rfc822",
        b"",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(header_line, st.binary(max_size=20)), max_size=12))
def test_random_messages_never_crash(lines: list[bytes]) -> None:
    raw = b"\r\n".join(lines)
    assert envelope(raw).startswith(b"(")
    assert bodystructure(raw).startswith(b"(")
    text_content(raw)
    section(raw, (1, 1), "HEADER")
    section(raw, (1,), "MIME")
    assert section(raw, (), "HEADER") + section(raw, (), "TEXT") == section(raw, ())
