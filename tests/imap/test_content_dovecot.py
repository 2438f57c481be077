"""BINARY, SNIPPET and PREVIEW of the fake, byte for byte against native Dovecot 2.3.

The same messages are appended to our server and to a real Dovecot over raw
sockets, and every FETCH answer (decoded parts, sizes, literal8 markers,
previews, the UNKNOWN-CTE / PARSE failures) must be identical. Skips where
Dovecot is not installed, fails in CI (tests.helpers.require_executable).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from mailharness.certs import MailCA
from mailharness.servers.dovecot import DovecotConfig, DovecotProcess
from mailharness.servers.listeners import Endpoint

from tests.helpers import require_executable
from tests.imap.conftest import MakeIMAP

_HEAD = b"From: a@example.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def _multipart(boundary: bytes, subtype: bytes, *parts: bytes) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return (
        _HEAD
        + b"Content-Type: multipart/"
        + subtype
        + b'; boundary="'
        + boundary
        + b'"\r\n\r\nprologue\r\n'
        + body
        + b"--"
        + boundary
        + b"--\r\nepilogue\r\n"
    )


def _leaf(ctype: bytes, cte: bytes | None, body: bytes) -> bytes:
    head = b"Content-Type: " + ctype + b"\r\n"
    if cte is not None:
        head += b"Content-Transfer-Encoding: " + cte + b"\r\n"
    return head + b"\r\n" + body


#: Messages chosen for the decisions Dovecot makes: which part previews, how
#: white space and quotes fold, what decodes and how, what fails.
CORPUS: list[bytes] = [
    _HEAD + b"\r\nPlain   text\twith  spaces\r\nand lines.\r\n",
    _HEAD + b"\r\n> quoted only\r\n> more quote\r\n",
    _HEAD + b'\r\n> quoted first\r\nthen text "with" \\slashes\\ "x" "y"\r\n',
    _HEAD + b"\r\n" + b"word " * 80 + b"\r\n",
    _HEAD + b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 cr=E8me =\r\nbr=FBl=E9e\r\n",
    _HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><style>p {color: red}</style><title>T</title></head><body>"
    b"<p>Hello&nbsp;<b>world</b> &amp; &lt;friends&gt;</p><!-- hidden -->"
    b"<script>var x = 1;</script><div>Bye&#33; &#x263A;</div></body></html>\r\n",
    _multipart(
        b"alt",
        b"alternative",
        _leaf(b"text/html", None, b"<p>the html</p>"),
        _leaf(b"text/plain", b"base64", b"dGhlIHBsYWluIHRleHQ=\r\n"),
    ),
    _multipart(
        b"mix",
        b"mixed",
        _leaf(b"application/pdf", b"base64", b"JVBERi0xLjQK\r\n"),
        _leaf(b"text/plain; charset=utf-8", b"quoted-printable", b"caf=C3=A9  =\r\nend  \r\nx"),
        _leaf(
            b"message/rfc822",
            None,
            b"Subject: in\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n",
        ),
        _leaf(b"text/plain", b"8bit", b"nul \x00 byte and 8-bit \xc3\xa9"),
    ),
    _multipart(
        b"bad",
        b"mixed",
        _leaf(b"text/plain", b"base64", b"aGVsbG8gd29ybGQ=\r\n"),
        _leaf(b"text/plain", b"x-uuencode", b"begin 644 x\r\n"),
        _leaf(b"text/plain", b"base64", b"!!!!\r\n"),
        _leaf(b"text/plain", b"quoted-printable", b"a=ZZb\r\n"),
    ),
    _HEAD + b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n",
    _HEAD + b"\r\n",
]

#: FETCH items asked of every message.
ITEMS = (
    b"PREVIEW",
    b"SNIPPET",
    b"PREVIEW (FUZZY)",
    b"BINARY.SIZE[]",
    b"BINARY.PEEK[]",
    b"BINARY.PEEK[1]",
    b"BINARY.SIZE[1]",
    b"BINARY.PEEK[2]",
    b"BINARY.PEEK[3]",
    b"BINARY.PEEK[4]",
    b"BINARY.PEEK[2]<2.5>",
    b"BINARY.PEEK[4.1]",
)

_TIMING = re.compile(rb" \(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)")
_STAMP = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]")


class _Wire:
    """A raw IMAP client: literals sent with their own ``{n}``, replies kept verbatim."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.sock = socket.create_connection(endpoint.address, timeout=30)
        self.buf = b""
        self.count = 0
        self._line()
        self.run(b"LOGIN alice@example.test alice-password")

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def run(self, text: bytes, literal: bytes | None = None) -> bytes:
        """Send one command (``text`` then an optional literal); its whole answer."""
        self.count += 1
        tag = b"d%d" % self.count
        if literal is not None:
            self.sock.sendall(tag + b" " + text + b" {%d}\r\n" % len(literal))
            assert self._line().startswith(b"+")
            self.sock.sendall(literal + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        pattern = re.compile(rb"(?:^|\r\n)" + tag + rb" [A-Z]+[^\r\n]*\r\n")
        while True:
            match = pattern.search(self.buf)
            if match is not None:
                out, self.buf = self.buf[: match.end()], self.buf[match.end() :]
                return _STAMP.sub(b"[stamp]", _TIMING.sub(b"", out))
            data = self.sock.recv(65536)
            if not data:
                out, self.buf = self.buf, b""
                return _STAMP.sub(b"[stamp]", out) + b"<closed>"
            self.buf += data

    def close(self) -> None:
        self.sock.close()


def answers(endpoint: Endpoint) -> Iterator[tuple[int, bytes, bytes]]:
    """(message number, item, answer without its tag) for every message and item."""
    setup = _Wire(endpoint)
    setup.run(b"CREATE content")
    for message in CORPUS:
        assert b" OK " in setup.run(b"APPEND content", message)
    setup.close()
    for number in range(1, len(CORPUS) + 1):
        for item in ITEMS:
            # A fresh session per FETCH: Dovecot disconnects after some failures.
            wire = _Wire(endpoint)
            wire.run(b"SELECT content")
            reply = wire.run(b"FETCH %d (%s)" % (number, item))
            wire.close()
            yield number, item, re.sub(rb"(?m)^d\d+ ", b"", reply)


@pytest.fixture(scope="module")
def dovecot(mail_ca: MailCA) -> Iterator[DovecotProcess]:
    require_executable("dovecot")
    with DovecotProcess(DovecotConfig(cert=mail_ca.server_cert())) as process:
        yield process


def test_binary_and_preview_answers_match_dovecot(
    dovecot: DovecotProcess, make_imap: MakeIMAP
) -> None:
    ours = list(answers(make_imap().none))
    theirs = list(answers(dovecot.endpoint("starttls")))
    differences = [
        f"message {n} {item.decode()}:\n  ours:    {a!r}\n  dovecot: {b!r}"
        for (n, item, a), (_, _, b) in zip(ours, theirs, strict=True)
        if a != b
    ]
    assert not differences, "\n".join(differences)


def _nested(levels: int, rfc822_every_other: bool = False) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nx"
    for i in range(levels):
        boundary = b"b%d" % i
        if rfc822_every_other and i % 2:
            head = b"Content-Type: message/rfc822\r\n\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            inner = head + inner
        else:
            inner = (
                b"Content-Type: multipart/mixed; boundary="
                + boundary
                + b"\r\n\r\n--"
                + boundary
                + b"\r\n"
                + inner
                + b"\r\n--"
                + boundary
                + b"--\r\n"
            )
    return b"From: a@example.test\r\nMIME-Version: 1.0\r\n" + inner


def _many_parts(count: int) -> bytes:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\np%d\r\n" % i for i in range(count))
    return (
        b"From: a@example.test\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"
    )


#: Over Dovecot's nesting (100) and part (10,000) limits: parsed, never refused.
LIMITS = [_nested(120), _nested(120, rfc822_every_other=True), _many_parts(10_005)]


def _limit_answers(endpoint: Endpoint) -> list[bytes]:
    wire = _Wire(endpoint)
    wire.run(b"CREATE limits")
    for message in LIMITS:
        assert b" OK " in wire.run(b"APPEND limits", message)
    wire.run(b"SELECT limits")
    out = [
        wire.run(b"FETCH %d (BODYSTRUCTURE BODY.PEEK[10000] BINARY.SIZE[1.1.1.1])" % n)
        for n in range(1, len(LIMITS) + 1)
    ]
    wire.close()
    return out


def test_mime_nesting_and_part_limits_match_dovecot(
    dovecot: DovecotProcess, make_imap: MakeIMAP
) -> None:
    """Past 100 levels a part is a leaf (application/octet-stream); past 10,000 parts
    no more boundaries are looked for: the same BODYSTRUCTURE as Dovecot's."""
    ours = _limit_answers(make_imap().none)
    theirs = _limit_answers(dovecot.endpoint("starttls"))
    for number, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1):
        assert a == b, f"message {number}:\n ours:    {a[-600:]!r}\n dovecot: {b[-600:]!r}"


def _appends(endpoint: Endpoint) -> list[bytes]:
    """APPEND forms (literal8, MULTIAPPEND, CATENATE with URL-PARTIAL, refusals) and
    what the mailbox holds after them."""
    wire = _Wire(endpoint)
    wire.run(b"CREATE appends")
    out = []

    def append(text: bytes, *literals: bytes, literal8: bool = False) -> None:
        """One APPEND whose ``%L`` marks take ``literals`` in turn."""
        wire.count += 1
        tag = b"d%d" % wire.count
        pieces = text.split(b"%L")
        wire.sock.sendall(tag + b" " + pieces[0])
        for literal, rest in zip(literals, pieces[1:], strict=True):
            wire.sock.sendall(b"%s{%d}\r\n" % (b"~" if literal8 else b"", len(literal)))
            assert wire._line().startswith(b"+")
            wire.sock.sendall(literal + rest)
        wire.sock.sendall(b"\r\n")
        reply = wire._line()
        while not reply.startswith(tag + b" "):
            reply = wire._line()
        out.append(re.sub(rb"APPENDUID \d+", b"APPENDUID v", _TIMING.sub(b"", reply[len(tag) :])))

    binary_single = (
        b"From: a@example.test\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n\nend"
    )
    binary_multi = _multipart(
        b"m",
        b"mixed",
        _leaf(b"text/plain", None, b"text part"),
        _leaf(b"application/octet-stream", b"binary", b"\x00\x01\x02" * 40),
    )
    append(b"APPEND appends %L", binary_single, literal8=True)
    append(b"APPEND appends %L", binary_multi, literal8=True)
    append(
        b"APPEND appends (\\Seen) %L %L", b"Subject: a\r\n\r\none\r\n", b"Subject: b\r\n\r\ntwo\r\n"
    )
    append(
        b'APPEND appends CATENATE (URL "/appends/;uid=3/;section=header" TEXT %L '
        b'URL "/appends/;uid=4/;partial=3.6" URL "/appends/;uid=2/;section=2")',
        b"middle\r\n",
    )
    append(b'APPEND appends CATENATE (URL "/appends;uidvalidity=1/;uid=1")')
    append(b'APPEND appends CATENATE (URL "/appends/;uid=77")')
    append(b'APPEND appends CATENATE (URL "/nowhere/;uid=1")')
    append(b"APPEND appends CATENATE (TEXT %L TEXT %L)", b"A: b\r\n\r\n", b"x", literal8=True)
    wire.run(b"SELECT appends")
    # FLAGS left out: \Recent is not this comparison's concern.
    out.append(wire.run(b"FETCH 1:* (BODY.PEEK[] BINARY.PEEK[1] BINARY.PEEK[2])"))
    wire.close()
    return out


def test_append_forms_store_what_dovecot_stores(
    dovecot: DovecotProcess, make_imap: MakeIMAP
) -> None:
    ours = _appends(make_imap().none)
    theirs = _appends(dovecot.endpoint("starttls"))
    for number, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1):
        assert a == b, f"step {number}:\n ours:    {a!r}\n dovecot: {b!r}"
