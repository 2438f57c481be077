"""The SMTP fast path (MAIL, RCPT, DATA and the message answered inline, issue 13) keeps
aiosmtpd's semantics: each test drives a raw socket or smtplib over a real connection and
checks the replies, the captured bytes and the transcript, on the paths the fast path takes
and on those it must hand to aiosmtpd (pipelining, oversize, long lines)."""

from __future__ import annotations

import dataclasses
import smtplib
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from mailharness import MailServer
from mailharness.catalog import PLAINTEXT_ONLY
from mailharness.plugin import MailServerFactory
from mailharness.servers.transcript import MAX_LINES

BODY = b"Subject: fast\r\n\r\nline one\r\n"


def _server(factory: MailServerFactory, **settings: object) -> MailServer:
    assert PLAINTEXT_ONLY.smtp is not None
    smtp = dataclasses.replace(PLAINTEXT_ONLY.smtp, auth_required=False, **settings)
    return factory(PLAINTEXT_ONLY, smtp=smtp, imap=None)


class _Wire:
    """A raw SMTP client: send bytes as given, read whole reply lines."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unread {self.pending!r}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\r\n", 1)
        return line

    def reply(self) -> bytes:
        """One reply, multi-line replies joined (the last line's separator is a space)."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"\n".join(lines)


@contextmanager
def _wire(server: MailServer) -> Iterator[_Wire]:
    with socket.create_connection(server.smtp.none.address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = _Wire(sock)
        assert wire.reply().startswith(b"220 ")
        wire.send(b"EHLO client.test\r\n")
        assert wire.reply().startswith(b"250-")
        yield wire


def _envelope(wire: _Wire) -> None:
    for command in (b"MAIL FROM:<a@example.test>", b"RCPT TO:<alice@example.test>"):
        wire.send(command + b"\r\n")
        assert wire.reply() == b"250 OK"
    wire.send(b"DATA\r\n")
    assert wire.reply() == b"354 End data with <CR><LF>.<CR><LF>"


def _content(server: MailServer, index: int = 0) -> bytes:
    """The captured message without the Received header the server prepends."""
    data = server.messages[index].data
    assert data.startswith(b"Received: ")
    return data.split(b"\r\n", 5)[5]


def test_message_in_small_chunks_with_the_end_split_arrives_whole(
    mail_server_factory: MailServerFactory,
) -> None:
    server = _server(mail_server_factory)
    body = BODY + b"".join(b"line %d\r\n" % i for i in range(200))
    with _wire(server) as wire:
        _envelope(wire)
        stream = body + b".\r\n"
        for start in range(0, len(stream), 7):  # the end marker straddles chunks
            wire.send(stream[start : start + 7])
        assert wire.reply().startswith(b"250 2.0.0 Ok: queued as MH")
    server.wait_for_messages(1)
    assert _content(server) == body


def test_dot_stuffed_lines_arrive_unstuffed(smtp_server: MailServer) -> None:
    text = "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
    config = smtp_server.config
    assert config.smtp is not None
    with smtplib.SMTP(*smtp_server.smtp.starttls.address, timeout=5) as client:
        client.starttls(context=smtp_server.ca.client_context())
        client.login("alice@example.test", "alice-password")
        client.sendmail("alice@example.test", ["bob@example.test"], text)  # smtplib stuffs
    smtp_server.wait_for_messages(1)
    assert _content(smtp_server) == text.encode()


def test_empty_message_is_accepted(mail_server_factory: MailServerFactory) -> None:
    server = _server(mail_server_factory)
    with _wire(server) as wire:
        _envelope(wire)
        wire.send(b".\r\n")
        assert wire.reply().startswith(b"250 2.0.0 Ok: queued as")
    server.wait_for_messages(1)
    assert _content(server) == b""


def test_oversized_message_is_refused_then_the_next_one_is_taken(
    mail_server_factory: MailServerFactory,
) -> None:
    server = _server(mail_server_factory, size_limit=10_000)
    with _wire(server) as wire:
        _envelope(wire)
        wire.send(BODY + (b"x" * 76 + b"\r\n") * 20_000 + b".\r\n")  # 1.5 MB, no SIZE=
        assert wire.reply() == b"552 5.3.4 Message size exceeds fixed limit"
        _envelope(wire)  # the envelope was reset: a new MAIL is not "nested"
        wire.send(BODY + b".\r\n")
        assert wire.reply().startswith(b"250 2.0.0 Ok: queued as")
    server.wait_for_messages(1)
    assert len(server.messages) == 1
    assert _content(server) == BODY


def test_line_over_aiosmtpds_1001_octets_is_refused(mail_server_factory: MailServerFactory) -> None:
    server = _server(mail_server_factory)
    with _wire(server) as wire:
        _envelope(wire)
        # aiosmtpd's line_length_limit, CRLF included (RFC 5321 says 1000; aiosmtpd
        # allows one more, and the fast path answers as aiosmtpd does).
        wire.send(BODY + b"y" * 1000 + b"\r\nshort\r\n.\r\n")
        assert wire.reply() == b"500 Line too long (see RFC5321 4.5.3.1.6)"
        _envelope(wire)
        wire.send(BODY + b"y" * 999 + b"\r\n.\r\n")  # 1001 octets: taken
        assert wire.reply().startswith(b"250 2.0.0 Ok: queued as")
    server.wait_for_messages(1)
    assert len(server.messages) == 1


def test_pipelined_commands_and_a_command_after_the_dot(
    mail_server_factory: MailServerFactory,
) -> None:
    server = _server(mail_server_factory)
    with _wire(server) as wire:
        wire.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [wire.reply() for _ in range(3)] == [
            b"250 OK",
            b"250 OK",
            b"354 End data with <CR><LF>.<CR><LF>",
        ]
        wire.send(BODY + b".\r\nMAIL FROM:<b@example.test>\r\n")
        assert wire.reply().startswith(b"250 2.0.0 Ok: queued as")
        assert wire.reply() == b"250 OK"
        wire.send(b"MAIL FROM:<c@example.test>\r\n")
        assert wire.reply() == b"503 Error: nested MAIL command"
        wire.send(b"RSET\r\nQUIT\r\n")
        assert wire.reply() == b"250 OK"
        assert wire.reply().startswith(b"221 ")
    [captured] = server.wait_for_messages(1)
    assert captured.mail_from == "a@example.test"


def test_smtplib_size_parameter_and_errors_keep_their_replies(
    mail_server_factory: MailServerFactory,
) -> None:
    server = _server(mail_server_factory, size_limit=1000)
    with smtplib.SMTP(*server.smtp.none.address, timeout=5) as client:
        client.ehlo()
        assert client.mail("a@example.test", ["SIZE=999"]) == (250, b"OK")
        assert client.docmd("RCPT", "TO:") == (
            501,
            b"Syntax: RCPT TO: <address> [SP <mail-parameters>]",
        )
        assert client.rcpt("alice@example.test") == (250, b"OK")
        assert client.rset() == (250, b"OK")
        assert client.mail("a@example.test", ["SIZE=1001"]) == (
            552,
            b"5.3.4 Message size exceeds fixed limit",
        )
        assert client.mail("a@example.test", ["BODY=BINARY"])[0] == 501
        assert client.rcpt("alice@example.test") == (503, b"Error: need MAIL command")
        assert client.docmd("DATA") == (503, b"Error: need RCPT command")


def test_transcript_of_a_transaction(mail_server_factory: MailServerFactory) -> None:
    server = _server(mail_server_factory)
    stuffed = BODY + b"..dot\r\n"
    with _wire(server) as wire:
        _envelope(wire)
        wire.send(stuffed + b".\r\n")
        queued = wire.reply().decode()
        wire.send(b"QUIT\r\n")
        wire.reply()
    server.wait_for_messages(1)
    [transcript] = server.transcripts
    lines = [str(event).split(": ", 1)[1] for event in transcript.events]
    assert lines[lines.index("MAIL FROM:<a@example.test>") :][:9] == [
        "MAIL FROM:<a@example.test>",
        "250 OK",
        "RCPT TO:<alice@example.test>",
        "250 OK",
        "DATA",
        "354 End data with <CR><LF>.<CR><LF>",
        f"[message data: {len(stuffed)} bytes]",
        ".",
        queued,
    ]
    verbs = [e.command for e in transcript.events if e.direction == "client" and e.command]
    assert verbs[:4] == ["EHLO", "MAIL", "RCPT", "DATA"]


def test_idle_timer_counts_from_the_last_command(mail_server_factory: MailServerFactory) -> None:
    timeout = 0.6
    server = _server(mail_server_factory, timeout=timeout)
    with _wire(server) as wire:
        time.sleep(timeout / 2)  # the scenario: a client that pauses, then carries on
        wire.send(b"MAIL FROM:<a@example.test>\r\n")
        assert wire.reply() == b"250 OK"
        last_command = time.monotonic()
        wire.sock.settimeout(timeout * 10)
        closing = wire.reply()
        waited = time.monotonic() - last_command
    assert closing.startswith(b"421 4.4.2 ") and closing.endswith(b"Error: timeout exceeded")
    # A timer left at the connection's start would fire timeout/2 after MAIL.
    assert waited >= timeout * 0.9


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_many_messages_on_one_connection(
    mail_server_factory: MailServerFactory, chunk: int
) -> None:
    server = _server(mail_server_factory)
    with _wire(server) as wire:
        for n in range(20):
            _envelope(wire)
            stream = b"Subject: %d\r\n\r\n.x\r\n" % n + b".\r\n"
            for start in range(0, len(stream), chunk):
                wire.send(stream[start : start + chunk])
            assert wire.reply().startswith(b"250 2.0.0 Ok: queued as")
    server.wait_for_messages(20)
    assert [_content(server, n) for n in range(20)] == [
        b"Subject: %d\r\n\r\nx\r\n" % n for n in range(20)
    ]


VARIANTS = [
    b"MAIL FROM:<a@example.test>",
    b"mail from:<A.B@Example.Test>",
    b"MAIL FROM: <a@example.test>",
    b"MAIL FROM:\t<a@example.test> ",
    b"MAIL  FROM:<a@example.test>",
    b"MAIL FROM:<a@example.test> SIZE=10",
    b"MAIL FROM:<a@example.test> BODY=8BITMIME",
    b"MAIL FROM:<a@example.test> FOO=1",
    b"MAIL FROM:<>",
    b"MAIL FROM:<a b@example.test>",
    b'MAIL FROM:<"q"@example.test>',
    b"MAIL FROM:a@example.test",
    b"MAIL TO:<a@example.test>",
]


@pytest.mark.parametrize("line", VARIANTS, ids=[v.decode() for v in VARIANTS])
def test_mail_line_answered_alike_alone_and_behind_a_noop(
    mail_server_factory: MailServerFactory, line: bytes
) -> None:
    """Alone, a line may take the fast path; behind a NOOP in the same chunk it goes to
    aiosmtpd. Both must give the same reply and the same sender."""
    server = _server(mail_server_factory)
    outcomes = []
    for chunk, replies in ((line + b"\r\n", 1), (b"NOOP\r\n" + line + b"\r\n", 2)):
        with _wire(server) as wire:
            wire.send(chunk)
            reply = [wire.reply() for _ in range(replies)][-1]
            sender = None
            if reply.startswith(b"250"):
                before = server.messages.arrived
                wire.send(b"RCPT TO:<alice@example.test>\r\nDATA\r\n")
                assert [wire.reply(), wire.reply()][1].startswith(b"354")
                wire.send(BODY + b".\r\n")
                assert wire.reply().startswith(b"250 2.0.0")
                sender = server.wait_for_messages(before + 1)[-1].mail_from
            outcomes.append((reply, sender))
    assert outcomes[0] == outcomes[1]


def test_a_long_session_keeps_the_transcript_cap_and_counts_every_line(
    mail_server_factory: MailServerFactory,
) -> None:
    """Past MAX_LINES the fast path's lines are counted, not kept: kept + dropped is
    exactly what a short session shows plus nine lines per further message."""
    server = _server(mail_server_factory)

    def session(messages: int) -> None:
        with smtplib.SMTP(*server.smtp.none.address, timeout=5) as client:
            for _ in range(messages):
                client.sendmail("a@example.test", ["b@example.test"], BODY)

    session(1)
    session(300)
    server.settle()  # each session's closing line is written after the client's QUIT
    short, long = list(server.transcripts)
    per_message = 9  # MAIL, 250, RCPT, 250, DATA, 354, [message data], ".", 250
    assert len(short.events) < MAX_LINES and short.dropped == 0
    assert len(long.events) == MAX_LINES
    assert len(long.events) + long.dropped == len(short.events) + per_message * 299
    assert server.messages.arrived == 301
