"""Property tests (hypothesis) over the IMAP parser, the IMAP command layer and the
SMTP handlers: hostile bytes get a protocol error, never a server bug. Examples are
bounded so the suite stays fast; fuzz/ has the coverage-guided (atheris) runs."""

from __future__ import annotations

import contextlib
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailharness import MailServer

from fuzz import targets

#: Pieces of IMAP that reach deep into the parser and handlers.
IMAP_WORDS = [
    b"FETCH",
    b"UID",
    b"SEARCH",
    b"STORE",
    b"COPY",
    b"MOVE",
    b"SORT",
    b"THREAD",
    b"EXPUNGE",
    b"BODY[",
    b"BODY.PEEK[",
    b"]",
    b"<",
    b">",
    b"1",
    b"1:*",
    b"*",
    b"4294967296",
    b"0",
    b"(",
    b")",
    b'"',
    b"{3}\r\nabc",
    b"{2+}\r\nab",
    b"\\Seen",
    b"ENVELOPE",
    b"BODYSTRUCTURE",
    b"HEADER.FIELDS",
    b"TEXT",
    b"MIME",
    b"CHANGEDSINCE",
    b"MODSEQ",
    b"LARGER",
    b"OR",
    b"NOT",
    b"CHARSET",
    b"UTF-8",
    b"ALL",
    b"RETURN",
    b"(MIN MAX)",
    b"INBOX",
    b"NIL",
    b" ",
    b"9" * 30,
]
imap_lines = st.lists(
    st.lists(st.sampled_from(IMAP_WORDS) | st.binary(max_size=8), max_size=12).map(b" ".join),
    min_size=1,
    max_size=4,
).map(lambda lines: b"".join(b"t%d %s\r\n" % (i, line) for i, line in enumerate(lines)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | imap_lines, st.booleans())
def test_fuzz_imap_parser_never_raises(data: bytes, prelogin: bool) -> None:
    targets.parse(data, prelogin=prelogin)


@settings(max_examples=150, deadline=None)
@given(imap_lines)
def test_fuzz_imap_commands_never_serverbug(data: bytes) -> None:
    targets.session(data)


SMTP_WORDS = [
    b"EHLO x",
    b"HELO x",
    b"MAIL FROM:<a@example.test>",
    b"RCPT TO:<bob@example.test>",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"VRFY x",
    b"AUTH PLAIN",
    b"AUTH LOGIN",
    b"AUTH XOAUTH2",
    b"AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wYXNzd29yZA==",
    b"*",
    b"STARTTLS",
    b"BDAT 3",
    b"MAIL FROM:<> SIZE=99999999999",
    b"RCPT TO:<\x00>",
    b".",
    b"Subject: x",
    b"",
]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(SMTP_WORDS) | st.binary(max_size=40), max_size=10))
def test_fuzz_smtp_handlers_never_record_errors(
    smtp_server: MailServer, lines: list[bytes]
) -> None:
    # 465: past TLS, so every handler (AUTH included) is reachable.
    raw = socket.create_connection(smtp_server.smtp.implicit.address, timeout=10)
    with smtp_server.ca.client_context().wrap_socket(raw, server_hostname="localhost") as sock:
        reader = sock.makefile("rb")
        reader.readline()
        # A server that said goodbye (502 after too many unknown commands, 421) closes
        # with our lines unread: the kernel then resets, which is the client's lot.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(b"".join(line.replace(b"\n", b"") + b"\r\n" for line in lines))
            sock.sendall(b"\r\n.\r\nQUIT\r\n")
            while reader.readline():  # until the server closes after QUIT (or a 421)
                pass
        reader.close()
    assert smtp_server.errors == []
