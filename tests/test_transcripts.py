"""Structured transcripts and the assertions connector authors make with them, driven
by real clients (imaplib, smtplib) over plain, STARTTLS and implicit TLS listeners."""

from __future__ import annotations

import base64
import dataclasses
import imaplib
import smtplib
import threading
import time

import pytest
from mailharness import (
    IMAPSettings,
    LoginAttempt,
    MailServer,
    MailServerFactory,
    SMTPSettings,
    TranscriptEvent,
)
from mailharness.servers.imap.server import _Connection
from mailharness.servers.listeners import Security
from mailharness.servers.transcript import MAX_LINES, Transcript

ALICE = ("alice@example.test", "alice-password")
SECRETS = ("alice-password", "alice-token", base64.b64encode(b"alice-password").decode())


@pytest.fixture
def lenient(mail_server_factory: MailServerFactory) -> MailServer:
    """A server that takes credentials in the clear, so a careless connector logs in
    (transcripts are the fake's: the backend is pinned)."""
    return mail_server_factory(
        backend="fake",
        imap_listeners=("none", "starttls", "implicit"),
        smtp_listeners=("none", "starttls", "implicit"),
        imap=IMAPSettings(
            plaintext_auth_requires_tls=False, auth_mechanisms=("PLAIN", "LOGIN", "XOAUTH2")
        ),
        smtp=SMTPSettings(plaintext_auth=True, starttls_required=False),
    )


def _no_secrets(server: MailServer) -> None:
    text = server.transcripts.text()
    assert not any(secret in text for secret in SECRETS), text


# -- IMAP ----------------------------------------------------------------------------


def test_imap_login_before_starttls_is_caught(lenient: MailServer) -> None:
    client = imaplib.IMAP4(*lenient.imap.starttls.address, timeout=5)
    client.login(*ALICE)  # the connector forgot STARTTLS
    client.logout()
    log = lenient.transcripts
    [leak] = log.credentials_sent_before_tls()
    assert leak.direction == "client" and leak.command == "LOGIN" and leak.tls_version is None
    assert leak.text.endswith("LOGIN alice@example.test ****")
    with pytest.raises(AssertionError, match=r"before TLS in imap session .*LOGIN alice@"):
        log.assert_credentials_only_after_tls()
    assert log.logins() == [LoginAttempt("alice@example.test", "LOGIN", None, True)]
    _no_secrets(lenient)


def test_imap_starttls_first_passes_with_tls_version_on_events(lenient: MailServer) -> None:
    client = imaplib.IMAP4(*lenient.imap.starttls.address, timeout=5)
    client.starttls(ssl_context=lenient.ca.client_context())
    client.login(*ALICE)
    client.select("INBOX")
    client.logout()
    log = lenient.transcripts
    log.assert_credentials_only_after_tls()
    assert log.credentials_sent_before_tls() == []
    [transcript] = log.filter(protocol="imap")
    events = transcript.events
    tls_at = next(i for i, e in enumerate(events) if e.text.startswith("TLS established"))
    assert events[tls_at].text == "TLS established (TLSv1.3, STARTTLS)"
    assert all(e.tls_version is None for e in events[:tls_at])
    assert all(e.tls_version == "TLSv1.3" for e in events[tls_at:])
    [starttls] = [e for e in events if e.command == "STARTTLS"]
    assert starttls.direction == "client" and starttls.tag is not None
    [login] = [e for e in events if e.command == "LOGIN"]
    [done] = [e for e in events if e.direction == "server" and e.tag == login.tag]
    assert done.status == "OK"
    assert [e.command for e in events if e.command == "SELECT"] == ["SELECT"]
    assert log.logins() == [LoginAttempt("alice@example.test", "LOGIN", "TLSv1.3", True)]
    assert "C: " in transcript.text() and "alice@example.test" in transcript.text()


def test_imap_implicit_tls_authenticate_plain(lenient: MailServer) -> None:
    context = lenient.ca.client_context()
    client = imaplib.IMAP4_SSL(*lenient.imap.implicit.address, ssl_context=context, timeout=5)
    client.authenticate("PLAIN", lambda _: b"\0alice@example.test\0alice-password")
    client.logout()
    [transcript] = lenient.transcripts.filter(listener="implicit")
    assert transcript.events[0].text == "TLS established (TLSv1.3, implicit)"
    assert all(e.tls_version == "TLSv1.3" for e in transcript.events)
    assert transcript.auth_mechanisms_used() == ["PLAIN"]
    assert "[user=alice@example.test password=****]" in transcript.text()
    transcript.assert_credentials_only_after_tls()
    _no_secrets(lenient)


def test_imap_refused_cleartext_login_still_counts_as_sent(
    mail_server_factory: MailServerFactory,
) -> None:
    """Dovecot's LOGINDISABLED refuses, but the password already crossed the wire."""
    server = mail_server_factory(
        backend="fake", imap=IMAPSettings(plaintext_auth_requires_tls=True)
    )
    client = imaplib.IMAP4(*server.imap.starttls.address, timeout=5)
    with pytest.raises(imaplib.IMAP4.error):
        client.login(*ALICE)
    client.logout()
    assert server.transcripts.logins() == [LoginAttempt("alice@example.test", "LOGIN", None, False)]
    assert len(server.transcripts.credentials_sent_before_tls()) == 1


def test_imap_xoauth2_and_sasl_login_show_the_user_only(lenient: MailServer) -> None:
    context = lenient.ca.client_context()
    client = imaplib.IMAP4_SSL(*lenient.imap.implicit.address, ssl_context=context, timeout=5)
    client.authenticate(
        "XOAUTH2", lambda _: b"user=alice@example.test\x01auth=Bearer alice-token\x01\x01"
    )
    client.logout()
    client = imaplib.IMAP4_SSL(*lenient.imap.implicit.address, ssl_context=context, timeout=5)
    answers = iter([b"alice@example.test", b"alice-password"])
    client.authenticate("LOGIN", lambda _: next(answers))
    client.logout()
    log = lenient.transcripts
    assert log.auth_mechanisms_used() == ["XOAUTH2", "LOGIN"]
    assert [(a.login, a.succeeded) for a in log.logins()] == [
        ("alice@example.test", True),
        ("alice@example.test", True),
    ]
    text = log.text()
    assert "C: [user=alice@example.test token=****]" in text  # imaplib sends no SASL-IR
    assert "C: [user=alice@example.test]" in text and "C: ****" in text
    _no_secrets(lenient)


# -- SMTP ----------------------------------------------------------------------------


def test_smtp_auth_before_starttls_is_caught(lenient: MailServer) -> None:
    with smtplib.SMTP(*lenient.smtp.starttls.address, timeout=5) as client:
        client.login(*ALICE)  # AUTH PLAIN in the clear
    log = lenient.transcripts
    [leak] = log.credentials_sent_before_tls(protocol="smtp")
    assert leak.command == "AUTH" and leak.mechanism == "PLAIN"
    assert leak.text == "AUTH PLAIN [user=alice@example.test password=****]"
    with pytest.raises(AssertionError, match="smtp session"):
        log.assert_credentials_only_after_tls(protocol="smtp")
    log.assert_credentials_only_after_tls(protocol="imap")  # no IMAP sessions: nothing sent
    assert log.logins() == [LoginAttempt("alice@example.test", "PLAIN", None, True)]
    _no_secrets(lenient)


def test_smtp_starttls_first_passes(lenient: MailServer) -> None:
    with smtplib.SMTP(*lenient.smtp.starttls.address, timeout=5) as client:
        client.starttls(context=lenient.ca.client_context())
        client.ehlo()
        client.user, client.password = ALICE
        client.auth("LOGIN", client.auth_login, initial_response_ok=False)
    log = lenient.transcripts
    log.assert_credentials_only_after_tls()
    [transcript] = log.filter(protocol="smtp", listener="starttls")
    events = transcript.events
    [ehlo, *_] = [e for e in events if e.command == "EHLO"]
    assert ehlo.tls_version is None
    assert any(e.reply_code == 220 and e.direction == "server" for e in events)
    assert "TLS established (TLSv1.3, STARTTLS)" in transcript.text()
    assert log.logins() == [LoginAttempt("alice@example.test", "LOGIN", "TLSv1.3", True)]
    assert "C: [user=alice@example.test]" in transcript.text()
    _no_secrets(lenient)


def test_smtp_implicit_tls_counts_and_failures(lenient: MailServer) -> None:
    context = lenient.ca.client_context()
    for password in ("wrong", ALICE[1]):
        with smtplib.SMTP_SSL(*lenient.smtp.implicit.address, context=context, timeout=5) as c:
            try:
                c.login(ALICE[0], password)
            except smtplib.SMTPAuthenticationError:
                assert password == "wrong"
    log = lenient.transcripts
    # smtplib tries each mechanism it knows before it gives up.
    assert log.logins(protocol="smtp", listener="implicit") == [
        LoginAttempt("alice@example.test", "PLAIN", "TLSv1.3", False),
        LoginAttempt("alice@example.test", "LOGIN", "TLSv1.3", False),
        LoginAttempt("alice@example.test", "PLAIN", "TLSv1.3", True),
    ]
    assert log.auth_mechanisms_used(protocol="smtp") == ["PLAIN", "LOGIN"]
    assert sum(attempt.succeeded for attempt in log.logins()) == 1
    assert log.logins(protocol="imap") == [] and log.logins(listener="starttls") == []
    log.assert_credentials_only_after_tls()
    assert "wrong" not in log.text()


# -- the log ---------------------------------------------------------------------------


def test_events_are_frozen(lenient: MailServer) -> None:
    imaplib.IMAP4(*lenient.imap.none.address, timeout=5).logout()
    event: TranscriptEvent = lenient.transcripts[0].events[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.text = "changed"  # type: ignore[misc]
    assert event.direction == "server" and event.elapsed >= 0


def test_ring_buffer_keeps_the_newest_and_their_helpers(
    mail_server_factory: MailServerFactory,
) -> None:
    server = mail_server_factory(
        backend="fake",
        max_transcripts=2,
        imap_listeners=("none",),
        imap=IMAPSettings(plaintext_auth_requires_tls=False),
    )
    for _ in range(3):
        client = imaplib.IMAP4(*server.imap.none.address, timeout=5)
        client.login(*ALICE)
        client.logout()
    log = server.transcripts
    assert len(log) == 2 and log.dropped == 1
    assert len(log.logins()) == 2
    assert len(log.credentials_sent_before_tls()) == 2


# -- lines are noted as written and parsed when read -------------------------------------


def test_a_line_keeps_its_time_and_tls_version_from_when_it_was_written() -> None:
    transcript = Transcript("imap", "127.0.0.1:1", "test")
    before = time.monotonic()
    transcript.client(b"a STARTTLS", tag="a", command="STARTTLS")
    transcript.server(b"a OK Begin TLS negotiation now.")
    after = time.monotonic()
    transcript.tls("TLSv1.3", "STARTTLS")
    transcript.login("b", "alice@example.test")
    transcript.server(b"b OK Logged in")
    events = transcript.events
    assert [e.tls_version for e in events] == [None, None, "TLSv1.3", "TLSv1.3", "TLSv1.3"]
    assert before <= transcript.started + events[1].elapsed <= after
    assert (events[1].tag, events[1].status) == ("a", "OK")
    assert transcript.logins() == [LoginAttempt("alice@example.test", "LOGIN", "TLSv1.3", True)]


def test_lines_past_the_cap_are_counted_not_kept() -> None:
    transcript = Transcript("smtp", "127.0.0.1:1", "test")
    for number in range(MAX_LINES + 5):
        transcript.client(f"NOOP {number}")
    assert transcript.full and transcript.dropped == 5
    assert len(transcript.events) == MAX_LINES
    assert transcript.events[-1].text == f"NOOP {MAX_LINES - 1}"
    assert transcript.text().endswith("... 5 more lines not kept")


def test_a_write_of_many_lines_keeps_those_that_fit() -> None:
    transcript = Transcript("imap", "127.0.0.1:1", "test")
    for number in range(MAX_LINES - 2):
        transcript.server(f"* {number} EXISTS")
    transcript.server_lines(b"* BYE Logging out\r\nb OK Logout completed.\r\n* extra\r\n")
    transcript.server_lines(b"* another\r\n")
    assert [e.text for e in transcript.events[-2:]] == [
        "* BYE Logging out",
        "b OK Logout completed.",
    ]
    assert transcript.dropped == 2 and len(transcript.events) == MAX_LINES


def test_reading_while_the_server_writes_loses_and_reorders_nothing() -> None:
    """The loop thread writes while a test thread reads: every line once, in order."""
    transcript = Transcript("imap", "127.0.0.1:1", "test")
    count = MAX_LINES // 2
    done = threading.Event()

    def write() -> None:
        for number in range(count):
            transcript.client(f"t{number} NOOP", tag=f"t{number}", command="NOOP")
            transcript.server(f"t{number} OK NOOP completed.")
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while not done.is_set():
        seen = max(seen, len(transcript.events))
    writer.join()
    events = transcript.events
    assert seen <= len(events) == 2 * count
    assert [e.tag for e in events] == [f"t{n}" for n in range(count) for _ in range(2)]
    assert all(e.status == "OK" for e in events[1::2])


def test_the_greeting_is_in_the_log_before_it_is_written(lenient: MailServer) -> None:
    """A test that has the greeting finds the session and its greeting in the log (and
    `settle()`, which waits only when the log has a session, never skips one). Observed
    at the write itself: a transport that records what the log holds when it is called."""
    imap = lenient._backend.live_servers().imap  # the server behind the listeners
    assert imap is not None and lenient._thread is not None
    seen: list[tuple[bytes, str | None]] = []

    class Recording:
        def set_write_buffer_limits(self, high: int, low: int) -> None:
            pass

        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 40000) if name == "peername" else default

        def write(self, data: bytes) -> None:
            newest = list(lenient.transcripts)[-1:]
            seen.append((data, newest[0].events[-1].text if newest else None))

        def close(self) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return 0

    async def connect() -> None:
        conn = _Connection(imap, Security.NONE, None, "test")
        conn.connection_made(Recording())  # type: ignore[arg-type]
        conn.connection_lost(None)

    lenient._thread.run(connect())
    [(greeting, noted)] = seen
    assert greeting.startswith(b"* OK") and noted == greeting.decode().rstrip("\r\n")
