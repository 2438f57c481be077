"""The fake SMTP server, driven by real clients over real sockets."""

from __future__ import annotations

import base64
import dataclasses
import smtplib
import socket
import subprocess
from email.message import EmailMessage

import aiosmtplib
import pytest
from mailharness import MailConfig, MailServer, SMTPSettings, User
from mailharness.catalog import PLAINTEXT_ONLY
from mailharness.plugin import MailServerFactory
from mailharness.servers.errors import ConfigError
from mailharness.servers.smtp.replies import DOVECOT as DOVECOT_SMTP

from tests.helpers import require_executable, submission
from tests.leakcheck import assert_stopped_listening, listening_sockets

ALICE = ("alice@example.test", "alice-password")


def _message(subject: str = "hello", to: str = "bob@example.test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = ALICE[0]
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("body line\n")
    return msg


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtplib_plain_listener_with_auth(
    mail_server_factory: MailServerFactory, mechanism: str
) -> None:
    # Plaintext credentials: only a config that says so (the defaults refuse them).
    smtp_server = mail_server_factory(PLAINTEXT_ONLY)
    with smtplib.SMTP(*smtp_server.smtp.none.address, timeout=5) as client:
        client.ehlo()
        assert "starttls" not in client.esmtp_features
        client.user, client.password = ALICE
        code, text = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        client.send_message(_message())
    [captured] = smtp_server.wait_for_messages(1)
    assert captured.mail_from == "alice@example.test"
    assert captured.rcpt_tos == ("bob@example.test",)
    assert captured.login == "alice@example.test"
    assert captured.tls_version is None
    assert captured.message["Subject"] == "hello"
    assert captured.message.get_content() == "body line\n"


def test_smtplib_starttls_listener_with_auth(smtp_server: MailServer) -> None:
    with smtplib.SMTP(*smtp_server.smtp.starttls.address, timeout=5) as client:
        client.ehlo()
        assert "starttls" in client.esmtp_features
        client.starttls(context=smtp_server.ca.client_context())
        client.login(*ALICE)
        client.send_message(_message("via starttls"))
    [captured] = smtp_server.wait_for_messages(1)
    assert captured.subject == "via starttls"
    assert captured.tls_version == "TLSv1.3"
    assert "starttls" in captured.listener


def test_smtplib_implicit_tls_listener_with_auth(smtp_server: MailServer) -> None:
    context = smtp_server.ca.client_context()
    port = smtp_server.smtp.implicit.port
    with smtplib.SMTP_SSL("localhost", port, context=context, timeout=5) as client:
        client.login(*ALICE)
        client.send_message(_message("via implicit"))
    [captured] = smtp_server.wait_for_messages(1)
    assert captured.subject == "via implicit"
    assert captured.tls_version == "TLSv1.3"


def test_wrong_password_is_535(smtp_server: MailServer) -> None:
    with (
        submission(smtp_server, timeout=5) as client,
        pytest.raises(smtplib.SMTPAuthenticationError) as caught,
    ):
        client.login("alice@example.test", "wrong")
    assert caught.value.smtp_code == 535
    assert caught.value.smtp_error == b"5.7.8 Authentication failed."


def test_custom_replies_replace_the_personality_wording(
    mail_server_factory: MailServerFactory,
) -> None:
    """`SMTPSettings(replies=...)` as `IMAPSettings(replies=...)`: any one text, on the wire
    of the greeting, of AUTH (aiosmtpd's path) and of MAIL/RCPT (the fast path)."""
    custom = dataclasses.replace(
        DOVECOT_SMTP,
        banner="ESMTP acme-relay",
        auth_failed="535 5.7.8 Username and Password not accepted.",
        mail_ok="250 2.1.0 Sender OK",
        rcpt_ok="250 2.1.5 Recipient OK",
    )
    settings = SMTPSettings(replies=custom)
    assert settings.texts is custom
    server = mail_server_factory(smtp=settings)
    with socket.create_connection(server.smtp.starttls.address, timeout=5) as raw:
        assert raw.makefile("rb").readline() == b"220 localhost ESMTP acme-relay\r\n"
    with submission(server, timeout=5) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login(ALICE[0], "wrong")
        assert caught.value.smtp_error == b"5.7.8 Username and Password not accepted."
        client.login(*ALICE)
        assert client.mail(ALICE[0]) == (250, b"2.1.0 Sender OK")
        assert client.rcpt("bob@example.test") == (250, b"2.1.5 Recipient OK")
    server.switch_smtp(replies=None)  # the personality's again, for new connections
    with submission(server, timeout=5) as client:
        client.login(*ALICE)
        assert client.mail(ALICE[0]) == (250, b"OK")


def test_replies_must_be_smtp_replies() -> None:
    with pytest.raises(ConfigError, match=r"replies='535 no': expected an SMTPReplies or None"):
        SMTPSettings(replies="535 no")  # type: ignore[arg-type]


def test_unknown_user_is_535(smtp_server: MailServer) -> None:
    with (
        submission(smtp_server, timeout=5) as client,
        pytest.raises(smtplib.SMTPAuthenticationError) as caught,
    ):
        client.login("nobody@example.test", "alice-password")
    assert caught.value.smtp_code == 535


def test_mail_without_auth_is_refused(smtp_server: MailServer) -> None:
    with (
        submission(smtp_server, timeout=5) as client,
        pytest.raises(smtplib.SMTPSenderRefused) as caught,
    ):
        client.send_message(_message())
    assert caught.value.smtp_code == 530
    assert caught.value.smtp_error == b"5.7.0 Authentication required."  # Dovecot's text
    assert len(smtp_server.messages) == 0


def test_auth_optional_when_configured(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(auth_required=False))
    with submission(server, timeout=5) as client:
        client.send_message(_message())
    [captured] = server.wait_for_messages(1)
    assert captured.login is None


def test_xclient_login_names_the_submitter(mail_server_factory: MailServerFactory) -> None:
    """As the relay behind Dovecot's submission: XCLIENT LOGIN= (xtext) fills `login`."""
    server = mail_server_factory(smtp=SMTPSettings(auth_required=False, xclient=True))
    with submission(server, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("xclient")
        assert client.docmd("XCLIENT LOGIN=alice+2Bx@example.test")[0] == 220
        client.ehlo()  # a new session, as after Postfix's XCLIENT
        client.send_message(_message())
    [captured] = server.wait_for_messages(1)
    assert captured.login == "alice+x@example.test"
    # ADDR= is the address allowlists check, as Postfix's smtpd_client_restrictions do.
    listed = mail_server_factory(
        smtp=SMTPSettings(auth_required=False, xclient=True, allowed_networks=("127.0.0.1/32",))
    )
    with submission(listed, timeout=5) as client:
        client.docmd("XCLIENT ADDR=127.0.0.2")
        client.ehlo()
        with pytest.raises(smtplib.SMTPRecipientsRefused, match=r"127\.0\.0\.2"):
            client.send_message(_message())
    plain = mail_server_factory(smtp=SMTPSettings(auth_required=False))
    with submission(plain, timeout=5) as client:
        assert client.docmd("XCLIENT LOGIN=alice@example.test")[0] == 500


def test_app_password_works_beside_the_password(mail_server_factory: MailServerFactory) -> None:
    carol = User(address="carol@example.test", password="carol-pw", app_password="abcdefghijklmnop")
    server = mail_server_factory(users=(carol,))
    for secret in ("carol-pw", "abcdefghijklmnop"):
        with submission(server, timeout=5) as client:
            assert client.login("carol@example.test", secret)[0] == 235


def test_password_changed_at_run_time(smtp_server: MailServer) -> None:
    smtp_server.users.set_password("alice@example.test", "new-password")
    with submission(smtp_server, timeout=5) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(*ALICE)
        assert client.login("alice@example.test", "new-password")[0] == 235


def test_starttls_required_dovecot_submission_replies(
    mail_server_factory: MailServerFactory,
) -> None:
    """As Dovecot's submission service (measured): AUTH advertised with no mechanism."""
    server = mail_server_factory(smtp=SMTPSettings(starttls_required=True))
    with smtplib.SMTP(*server.smtp.starttls.address, timeout=5) as client:
        client.ehlo()
        assert client.esmtp_features["auth"].strip() == ""  # "250-AUTH", no mechanism
        with pytest.raises(smtplib.SMTPException, match="No suitable authentication method"):
            client.login(*ALICE)
        assert client.docmd("AUTH", "PLAIN") == (523, b"5.7.10 Plaintext authentication disabled.")
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail(ALICE[0], ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert (caught.value.smtp_code, caught.value.smtp_error) == (
            530,
            b"5.7.0 Authentication required.",
        )
        client.starttls(context=server.ca.client_context())
        client.ehlo()
        assert "PLAIN" in client.esmtp_features["auth"]
        client.login(*ALICE)
        client.send_message(_message())
    assert len(server.wait_for_messages(1)) == 1


def test_starttls_required_gmail_replies(mail_server_factory: MailServerFactory) -> None:
    """Postfix and Gmail: no AUTH before TLS; every command but EHLO/NOOP/QUIT gets 530."""
    server = mail_server_factory(smtp=SMTPSettings(starttls_required=True, personality="gmail"))
    with smtplib.SMTP(*server.smtp.starttls.address, timeout=5) as client:
        client.ehlo()
        assert "auth" not in client.esmtp_features
        code, text = client.docmd("AUTH", "PLAIN")
        assert code == 530
        assert text.startswith(b"5.7.0 Must issue a STARTTLS command first. ")
        assert text.endswith(b" - gsmtp")
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail(ALICE[0], ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert caught.value.smtp_code == 530
        client.starttls(context=server.ca.client_context())
        client.login(*ALICE)
        client.send_message(_message())
    assert len(server.wait_for_messages(1)) == 1


def test_plaintext_auth_disabled_hides_auth_until_tls(
    mail_server_factory: MailServerFactory,
) -> None:
    # Postfix's smtpd_tls_auth_only: AUTH hidden before TLS, mail otherwise allowed.
    server = mail_server_factory(smtp=SMTPSettings(plaintext_auth=False, starttls_required=False))
    with smtplib.SMTP(*server.smtp.starttls.address, timeout=5) as client:
        client.ehlo()
        assert "auth" not in client.esmtp_features
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.login(*ALICE)
        assert client.docmd("AUTH", "PLAIN") == (523, b"5.7.10 Plaintext authentication disabled.")
        client.starttls(context=server.ca.client_context())
        client.ehlo()
        assert "auth" in client.esmtp_features
        assert client.login(*ALICE)[0] == 235


def _xoauth2(user: str, token: str) -> str:
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


def test_xoauth2_good_token(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=5) as client:
        client.ehlo()
        assert "XOAUTH2" in client.esmtp_features["auth"].split()
        code, _ = client.docmd("AUTH", "XOAUTH2 " + _xoauth2("alice@example.test", "alice-token"))
        assert code == 235


def test_xoauth2_bad_token_gets_gmail_error_challenge_then_535(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=5) as client:
        client.ehlo()
        code, challenge = client.docmd("AUTH", "XOAUTH2 " + _xoauth2("alice@example.test", "bad"))
        assert code == 334
        assert base64.b64decode(challenge) == (
            b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
        )
        assert client.docmd("") == (535, b"5.7.8 Authentication failed.")


def test_size_limit_is_advertised_and_enforced(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(size_limit=1000, auth_required=False))
    with submission(server, timeout=5) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "1000"
        big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 30
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail("a@example.test", ["b@example.test"], big)
        assert (caught.value.smtp_code, caught.value.smtp_error) == (
            552,
            b"5.3.4 Message size exceeds fixed limit",
        )
        # A client that does not declare SIZE learns at the end of DATA.
        client.rset()
        client.mail("a@example.test")
        client.rcpt("b@example.test")
        assert client.data(big) == (552, b"5.3.4 Message size exceeds fixed limit")
    assert len(server.messages) == 0


def test_transcript_masks_every_secret(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=5) as client:
        client.login(*ALICE)  # AUTH PLAIN with initial response
    with submission(smtp_server, timeout=5) as client:
        client.ehlo()
        client.user, client.password = ALICE
        client.auth("LOGIN", client.auth_login)
    text = smtp_server.transcripts.text()
    # Who logged in shows; the password never does.
    assert "AUTH PLAIN [user=alice@example.test password=****]" in text
    assert "AUTH LOGIN [user=alice@example.test]" in text  # smtplib's initial response
    assert "C: ****" in text
    secret = base64.b64encode(ALICE[1].encode()).decode()
    assert ALICE[1] not in text and secret not in text
    assert "S: 235 2.7.0 Authentication successful" in text


def test_transcript_summarises_message_data(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=5) as client:
        client.login(*ALICE)
        client.sendmail(ALICE[0], ["bob@example.test"], b"Subject: s\r\n\r\nsecret body\r\n")
    text = smtp_server.transcripts[0].text()
    assert "secret body" not in text
    assert "[message data: " in text


def test_wait_for_messages_timeout_says_what_arrived(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=5) as client:
        client.login(*ALICE)
        client.send_message(_message())
    with pytest.raises(TimeoutError) as caught:
        smtp_server.wait_for_messages(2, timeout=0.05)
    assert str(caught.value) == (
        "expected 2 message(s) within 0.05s, got 1: alice@example.test -> bob@example.test"
    )


def test_hostile_client_gets_errors_and_server_keeps_serving(smtp_server: MailServer) -> None:
    with socket.create_connection(smtp_server.smtp.starttls.address, timeout=5) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        raw.sendall(b"\x00\xff\xfe garbage\r\n" + b"A" * 5000 + b"\r\nMAIL FROM:<<<>\r\n")
        replies = [reader.readline() for _ in range(3)]
        assert all(r[:1] == b"5" for r in replies), replies
    with submission(smtp_server, timeout=5) as client:
        assert client.login(*ALICE)[0] == 235


def test_state_does_not_leak_between_tests_part_1(smtp_server: MailServer) -> None:
    smtp_server.users.add(User(address="temp@example.test", password="temp-pw"))
    with submission(smtp_server, timeout=5) as client:
        client.login("temp@example.test", "temp-pw")
        client.send_message(_message())
    assert len(smtp_server.messages) == 1


def test_state_does_not_leak_between_tests_part_2(smtp_server: MailServer) -> None:
    assert len(smtp_server.messages) == 0
    assert len(smtp_server.transcripts) == 0
    assert smtp_server.users.get("temp@example.test") is None


def test_swaks_starttls_with_auth(smtp_server: MailServer) -> None:
    swaks = require_executable("swaks")
    endpoint = smtp_server.smtp.starttls
    result = subprocess.run(
        [swaks, "--server", endpoint.host, "--port", str(endpoint.port), "--tls",
         "--tls-verify", "--tls-ca-path", str(smtp_server.ca.ca_path),
         "--auth", "LOGIN", "--auth-user", ALICE[0], "--auth-password", ALICE[1],
         "--from", ALICE[0], "--to", "bob@example.test", "--header", "Subject: from swaks"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  235 2.7.0 Authentication successful" in result.stdout
    [captured] = smtp_server.wait_for_messages(1)
    assert captured.subject == "from swaks"
    assert captured.tls_version is not None


def test_swaks_implicit_tls_with_auth(smtp_server: MailServer) -> None:
    swaks = require_executable("swaks")
    endpoint = smtp_server.smtp.implicit
    result = subprocess.run(
        [swaks, "--server", "localhost", "--port", str(endpoint.port), "--tlsc",
         "--tls-verify", "--tls-ca-path", str(smtp_server.ca.ca_path),
         "--auth", "PLAIN", "--auth-user", ALICE[0], "--auth-password", ALICE[1],
         "--from", ALICE[0], "--to", "bob@example.test", "--header", "Subject: swaks tlsc"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [captured] = smtp_server.wait_for_messages(1)
    assert captured.subject == "swaks tlsc"
    assert captured.login == ALICE[0]


def _curl_send(url: str, *extra: str, ca_path: str) -> subprocess.CompletedProcess[str]:
    curl = require_executable("curl")
    return subprocess.run(
        [curl, "--silent", "--show-error", "--url", url, "--cacert", ca_path,
         "--user", f"{ALICE[0]}:{ALICE[1]}", "--mail-from", ALICE[0],
         "--mail-rcpt", "bob@example.test", "--upload-file", "-", *extra],
        input="From: alice@example.test\r\nSubject: from curl\r\n\r\nhi\r\n",
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_curl_smtp_with_ssl_reqd(smtp_server: MailServer) -> None:
    port = smtp_server.smtp.starttls.port
    result = _curl_send(
        f"smtp://localhost:{port}", "--ssl-reqd", ca_path=str(smtp_server.ca.ca_path)
    )
    assert result.returncode == 0, result.stderr
    [captured] = smtp_server.wait_for_messages(1)
    assert captured.subject == "from curl"
    assert captured.tls_version is not None


def test_curl_ssl_reqd_refuses_server_without_starttls(
    mail_server_factory: MailServerFactory,
) -> None:
    smtp_server = mail_server_factory(PLAINTEXT_ONLY)
    port = smtp_server.smtp.none.port
    result = _curl_send(
        f"smtp://localhost:{port}", "--ssl-reqd", ca_path=str(smtp_server.ca.ca_path)
    )
    assert result.returncode == 64, result.stderr  # CURLE_USE_SSL_FAILED
    assert len(smtp_server.messages) == 0


def test_curl_smtps_with_cacert(smtp_server: MailServer) -> None:
    port = smtp_server.smtp.implicit.port
    result = _curl_send(f"smtps://localhost:{port}", ca_path=str(smtp_server.ca.ca_path))
    assert result.returncode == 0, result.stderr
    [captured] = smtp_server.wait_for_messages(1)
    assert captured.subject == "from curl"


@pytest.mark.asyncio
async def test_async_api_with_aiosmtplib() -> None:
    async with MailServer() as server:
        endpoint = server.smtp.starttls
        await aiosmtplib.send(
            _message("async"),
            hostname="localhost",
            port=endpoint.port,
            start_tls=True,
            tls_context=server.ca.client_context(),
            username=ALICE[0],
            password=ALICE[1],
        )
        [captured] = await server.messages.wait_async(1, timeout=5)
        assert captured.subject == "async"
        listening = listening_sockets(e.port for e in server.endpoints())
    assert_stopped_listening(listening)


def test_captured_messages_are_a_ring_of_the_newest(
    mail_server_factory: MailServerFactory,
) -> None:
    """A long `serve` keeps the newest `max_messages`; waits count every arrival."""
    server = mail_server_factory(max_messages=3)
    with submission(server, timeout=5) as client:
        client.login(*ALICE)
        for number in range(5):
            client.send_message(_message(f"number {number}"))
    kept = server.wait_for_messages(5)
    assert [m.subject for m in kept] == ["number 2", "number 3", "number 4"]
    assert (len(server.messages), server.messages.arrived) == (3, 5)


def test_max_messages_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"max_messages=0: expected >= 1 or None"):
        MailConfig(max_messages=0)
