"""Hostile SMTP clients (issue 14): each test is named after the attack, with real
clients over real sockets, and asserts the reply Postfix or Dovecot sends."""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest
from mailharness import MailServer, SMTPSettings
from mailharness.plugin import MailServerFactory

from tests.helpers import cycles_after, peak_rss, served, submission

ALICE = ("alice@example.test", "alice-password")


def test_10000_recipients_capped_at_postfix_limit(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(max_recipients=5))
    with submission(server, timeout=5) as client:
        client.login(*ALICE)
        client.mail(ALICE[0])
        codes = [client.rcpt(f"r{i}@example.test")[0] for i in range(8)]
        assert codes == [250] * 5 + [452] * 3
        assert client.rcpt("r9@example.test") == (452, b"4.5.3 Error: too many recipients")
        assert client.data(b"Subject: capped\r\n\r\nx\r\n")[0] == 250
    [captured] = server.wait_for_messages(1)
    assert len(captured.rcpt_tos) == 5


def test_default_recipient_limit_is_postfixs_1000() -> None:
    assert SMTPSettings().max_recipients == 1000


def test_200_duplicate_recipients_store_one_copy(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=5) as client:
        client.login(*ALICE)
        client.mail(ALICE[0])
        for i in range(200):
            rcpt = "bob@example.test" if i % 2 else "BOB@example.test"
            assert client.rcpt(rcpt)[0] == 250  # Postfix accepts and drops duplicates
        assert client.data(b"Subject: dup\r\n\r\n" + (b"x" * 998 + b"\r\n") * 100)[0] == 250
    [captured] = smtp_server.wait_for_messages(1)
    assert captured.rcpt_tos == ("BOB@example.test",)


def test_second_starttls_inside_tls_is_refused(smtp_server: MailServer) -> None:
    with smtplib.SMTP(*smtp_server.smtp.starttls.address, timeout=5) as client:
        client.starttls(context=smtp_server.ca.client_context())
        client.ehlo()
        assert client.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        assert client.noop()[0] == 250
    assert smtp_server.errors == []


def test_auth_continuation_over_64kib_is_line_too_long(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=5) as client:
        client.ehlo()
        assert client.docmd("AUTH", "PLAIN")[0] == 334
        assert client.docmd("A" * 70_000) == (500, b"5.5.2 Line too long")
        assert client.noop()[0] == 250  # the rest of the long line was not a command
        client.login(*ALICE)
    assert smtp_server.errors == []


def test_xoauth2_response_decoding_to_non_ascii_is_bad_syntax(smtp_server: MailServer) -> None:
    """Found by tests/test_hardening_fuzz.py: a challenge response whose base64 decodes to
    non-ASCII bytes made base64 raise a bare ValueError, recorded as a harness error."""
    with submission(smtp_server, timeout=5) as client:
        client.ehlo()
        assert client.docmd("AUTH", "XOAUTH2")[0] == 334
        assert client.docmd("/w==") == (501, b"5.5.4 Invalid AUTH parameters")  # b"\xff"
        assert client.noop()[0] == 250
    assert smtp_server.errors == []


def test_rejected_certificate_at_starttls_is_a_client_event(smtp_server: MailServer) -> None:
    """The client refuses our certificate (no CA): a transcript event, not a harness error."""
    with smtplib.SMTP(*smtp_server.smtp.starttls.address, timeout=5) as client:
        client.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=ssl.create_default_context())
    with submission(smtp_server, timeout=5) as other:
        assert other.noop()[0] == 250
    assert smtp_server.errors == []


def test_connection_flood_refused_with_postfix_text(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(max_connections=3))
    held = [socket.create_connection(server.smtp.starttls.address, timeout=5) for _ in range(3)]
    try:
        for sock in held:
            assert sock.makefile("rb").readline().startswith(b"220 ")
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            submission(server, timeout=5)
        assert caught.value.smtp_code == 421
        assert b"Error: too many connections from 127.0.0.1" in caught.value.smtp_error
    finally:
        for sock in held:
            sock.close()


def test_sessions_and_refused_handshakes_leave_no_reference_cycles(smtp_server: MailServer) -> None:
    refusing = ssl.create_default_context()  # does not trust the harness CA

    def run() -> None:
        for _ in range(5):
            with socket.create_connection(smtp_server.smtp.implicit.address, timeout=5) as sock:
                with pytest.raises(ssl.SSLError):
                    refusing.wrap_socket(sock, server_hostname="localhost")
            with smtplib.SMTP(*smtp_server.smtp.starttls.address, timeout=5) as client:
                client.ehlo()
                with pytest.raises(ssl.SSLError):
                    client.starttls(context=refusing)
            with submission(smtp_server, timeout=5) as client:
                client.login(*ALICE)
        with submission(smtp_server, timeout=5) as client:
            client.noop()  # the loop has closed every earlier session by now

    assert cycles_after(run) == {}


def test_200_copies_of_one_recipient_with_5mib_data_memory_bounded() -> None:
    """Once stored 200 messages (+1 GB); Postfix delivers a duplicate recipient once."""
    with served("plaintext-only") as (proc, endpoints):
        before = peak_rss(proc.pid)
        body = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 5243  # 5 MiB
        with smtplib.SMTP(*endpoints["smtp"], timeout=60) as client:
            client.login(*ALICE)
            refused = client.sendmail(ALICE[0], ["bob@example.test"] * 200, body)
            assert refused == {}
        assert peak_rss(proc.pid) - before < 100 * 1024 * 1024


def test_recipient_1001_gets_452_by_default(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=30) as client:
        client.login(*ALICE)
        client.mail(ALICE[0])
        rcpts = b"".join(b"RCPT TO:<r%d@example.test>\r\n" % i for i in range(1001))
        assert client.sock is not None
        client.sock.sendall(rcpts)  # pipelined (RFC 2920), as a bulk sender does
        replies = [client.getreply()[0] for _ in range(1001)]
        assert replies == [250] * 1000 + [452]
        client.rset()


def test_transcripts_of_a_long_serve_are_a_ring_buffer(
    mail_server_factory: MailServerFactory,
) -> None:
    server = mail_server_factory(max_transcripts=3)
    for _ in range(5):
        with submission(server, timeout=5) as client:
            client.noop()
    assert len(server.transcripts) <= 3
    assert server.transcripts.dropped >= 2


def test_nothing_is_sent_after_the_goodbye_to_unknown_commands(smtp_server: MailServer) -> None:
    # aiosmtpd closes after "502 ... goodbye" but reads on through what is buffered;
    # Postfix sends nothing more, and a TLS transport already gone failed the write.
    raw = socket.create_connection(smtp_server.smtp.implicit.address, timeout=5)
    with smtp_server.ca.client_context().wrap_socket(raw, server_hostname="localhost") as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"".join(b"BOGUS%d\r\n" % i for i in range(12)) + b"NOOP\r\n" * 3)
        replies = list(iter(reader.readline, b""))
        reader.close()
    assert replies[-1] == b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n"
    [transcript] = smtp_server.transcripts
    server_lines = [e.text for e in transcript.events if e.direction == "server"]
    assert server_lines[-1] == "502 5.5.1 Too many unrecognized commands, goodbye."
    assert sum(line.startswith("502 ") for line in server_lines) == 1
    assert smtp_server.errors == []
