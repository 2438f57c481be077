"""SMTP protocol-level faults: what a real smtplib client sees for each."""

from __future__ import annotations

import smtplib
import socket

import pytest
from mailharness import MailCA, MailConfig, MailServer, SMTPSettings, User
from mailharness.plugin import MailServerFactory
from mailharness.servers.accounts import Lockout
from mailharness.servers.ratelimit import RateLimit

from tests.helpers import submission

ALICE = ("alice@example.test", "alice-password")
MESSAGE = b"Subject: s\r\n\r\nbody\r\n"


def _login_error(server: MailServer, login: str, secret: str) -> smtplib.SMTPResponseException:
    with submission(server, timeout=5) as client:
        with pytest.raises(smtplib.SMTPResponseException) as caught:
            client.login(login, secret)
    return caught.value


TWO_FACTOR = User(
    address="carol@example.test",
    password="carol-pw",
    app_password="abcdefghijklmnop",
    require_app_password=True,
)


def test_app_password_required_gmail_wording(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(users=(TWO_FACTOR,), smtp=SMTPSettings(personality="gmail"))
    error = _login_error(server, "carol@example.test", "carol-pw")
    assert isinstance(error, smtplib.SMTPAuthenticationError)
    assert error.smtp_code == 534
    text = error.smtp_error.decode()
    assert text.startswith(
        "5.7.9 Application-specific password required. For more information, go to\n"
        "5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor "
    )
    assert text.endswith(" - gsmtp")
    with submission(server, timeout=5) as client:
        assert client.login("carol@example.test", "abcdefghijklmnop")[0] == 235


@pytest.mark.parametrize("personality", ["yahoo", "icloud", "dovecot"])
def test_app_password_required_elsewhere_is_a_plain_535(
    mail_server_factory: MailServerFactory, personality: str
) -> None:
    server = mail_server_factory(users=(TWO_FACTOR,), smtp=SMTPSettings(personality=personality))
    error = _login_error(server, "carol@example.test", "carol-pw")
    assert (error.smtp_code, error.smtp_error) == (535, b"5.7.8 Authentication failed.")


def test_outlook_basic_auth_disabled_wording(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(personality="outlook"))
    error = _login_error(server, "alice@example.test", "wrong")
    assert error.smtp_code == 535
    assert error.smtp_error == (
        b"5.7.139 Authentication unsuccessful, basic authentication is disabled. [localhost]"
    )


def test_account_disabled_is_525(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory()
    server.users.update("alice@example.test", disabled=True)
    error = _login_error(server, *ALICE)
    assert (error.smtp_code, error.smtp_error) == (525, b"5.7.13 Login disabled for this user")


def test_imap_disabled_does_not_stop_sending(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory()
    server.users.update("alice@example.test", imap_enabled=False)
    with submission(server, timeout=5) as client:
        assert client.login(*ALICE)[0] == 235


def test_backend_down_is_454(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory()
    server.users.backend_down = True
    error = _login_error(server, *ALICE)
    assert (error.smtp_code, error.smtp_error) == (
        454,
        b"4.7.0 Temporary authentication failure.",
    )


@pytest.mark.parametrize(
    ("personality", "expected"),
    [
        ("gmail", (454, b"4.7.0 Too many login attempts, please try again later.")),
        ("yahoo", (535, b"5.7.0 (#AUTH005) Too many bad auth attempts.")),
    ],
)
def test_lockout_refuses_even_the_right_password(
    mail_server_factory: MailServerFactory, personality: str, expected: tuple[int, bytes]
) -> None:
    server = mail_server_factory(smtp=SMTPSettings(personality=personality))
    server.users.lockout = Lockout(max_failures=2, seconds=60)
    # smtplib's login() tries PLAIN, then LOGIN: two failed attempts in one call.
    assert _login_error(server, "alice@example.test", "wrong").smtp_code == 535
    error = _login_error(server, *ALICE)
    assert (error.smtp_code, error.smtp_error) == expected


def test_login_rate_limit(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory()
    server.users.login_rate = RateLimit(count=2, per_seconds=60)
    for _ in range(2):
        with submission(server, timeout=5) as client:
            assert client.login(*ALICE)[0] == 235
    error = _login_error(server, *ALICE)
    assert (error.smtp_code, error.smtp_error) == (
        454,
        b"4.7.0 Too many login attempts, please try again later.",
    )


def _fill_quota(server: MailServer, login: str) -> None:
    server.deliver(login, b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n")
    server.store.user(login).quota_storage_limit = 100


@pytest.mark.parametrize(
    ("temporary", "code", "text"),
    [
        (False, 552, "5.2.2 <bob@example.test> Quota exceeded (mailbox for user is full)"),
        (True, 452, "4.2.2 <bob@example.test> Quota exceeded (mailbox for user is full)"),
    ],
)
def test_rcpt_to_full_mailbox(
    mail_server_factory: MailServerFactory, temporary: bool, code: int, text: str
) -> None:
    server = mail_server_factory(smtp=SMTPSettings(quota_temporary=temporary))
    _fill_quota(server, "bob@example.test")
    with submission(server, timeout=5) as client:
        client.login(*ALICE)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
    assert caught.value.recipients == {"bob@example.test": (code, text.encode())}


def test_local_delivery_lands_in_inbox(smtp_server: MailServer) -> None:
    with submission(smtp_server, timeout=5) as client:
        client.login(*ALICE)
        client.sendmail(ALICE[0], ["bob@example.test", "else@elsewhere.test"], MESSAGE)
    [stored] = smtp_server.wait_for_appends("bob@example.test", 1)
    assert stored.raw.endswith(b"body\r\n")
    assert len(smtp_server.store.user("alice@example.test").get("INBOX").uids()) == 0


class FakeClock:
    """Time that moves only when the test says so: rate windows without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("personality", "code", "text"),
    [
        ("dovecot", 421, b"4.7.0 Try again later, closing connection."),
        ("gmail", 550, b"5.4.5 Daily user sending quota exceeded."),
        ("outlook", 554, b"5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"),
    ],
)
def test_send_rate_limit_then_recovery(
    mail_ca: MailCA, personality: str, code: int, text: bytes
) -> None:
    clock = FakeClock()
    limit = RateLimit(count=2, per_seconds=60)
    config = MailConfig(smtp=SMTPSettings(personality=personality, send_rate=limit))
    with MailServer(config, ca=mail_ca, clock=clock) as server:
        with submission(server, timeout=5) as client:
            client.login(*ALICE)
            for _ in range(2):
                client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
            with pytest.raises(smtplib.SMTPSenderRefused) as caught:
                client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
        assert (caught.value.smtp_code, caught.value.smtp_error) == (code, text)
        clock.now += 29.9  # not yet: one token takes 30 s to come back
        with submission(server, timeout=5) as client:
            client.login(*ALICE)
            with pytest.raises(smtplib.SMTPSenderRefused):
                client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
        clock.now += 30.1  # the window has passed: the bucket has refilled
        with submission(server, timeout=5) as client:
            client.login(*ALICE)
            client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
            client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
        assert len(server.messages) == 4


def test_maintenance_greeting(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(
        smtp=SMTPSettings(greeting_refusal="421 4.3.2 Service not available")
    )
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        submission(server, timeout=5)
    assert (caught.value.smtp_code, caught.value.smtp_error) == (
        421,
        b"4.3.2 Service not available",
    )


def test_too_many_connections_from_one_ip(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(max_connections_per_ip=1))
    with submission(server, timeout=5) as first:
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            submission(server, timeout=5)
        assert caught.value.smtp_code == 421
        assert (
            caught.value.smtp_error == b"4.7.0 localhost Error: too many connections from 127.0.0.1"
        )
        assert first.noop()[0] == 250


def test_ip_allowlist_at_rcpt(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(
        smtp=SMTPSettings(allowed_networks=("127.0.0.1/32",), auth_required=False)
    )
    with submission(server, timeout=5) as allowed:
        allowed.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
    host, port = server.smtp.starttls.address
    with smtplib.SMTP(host, port, timeout=5, source_address=("127.0.0.2", 0)) as denied:
        denied.starttls(context=server.ca.client_context())
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            denied.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
    assert caught.value.recipients == {
        "bob@example.test": (
            554,
            b"5.7.1 <unknown[127.0.0.2]>: Client host rejected: Access denied",
        )
    }


def test_ip_allowlist_at_greeting(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(
        smtp=SMTPSettings(allowed_networks=("127.0.0.1/32",), reject_unlisted_at="greeting")
    )
    host, port = server.smtp.starttls.address
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        smtplib.SMTP(host, port, timeout=5, source_address=("127.0.0.2", 0))
    assert caught.value.smtp_code == 554
    with socket.create_connection((host, port), timeout=5, source_address=("127.0.0.2", 0)) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"554 5.7.1 <unknown[127.0.0.2]>")
        raw.sendall(b"EHLO x\r\n")
        assert reader.readline() == b"503 5.7.0 Error: access denied for unknown[127.0.0.2]\r\n"
        raw.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"221")


def test_starttls_broken(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(starttls_broken=True))
    with smtplib.SMTP(*server.smtp.starttls.address, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        with pytest.raises(smtplib.SMTPResponseException) as caught:
            client.starttls(context=server.ca.client_context())
    assert (caught.value.smtp_code, caught.value.smtp_error) == (
        454,
        b"4.7.0 TLS not available due to local problem",
    )


def test_starttls_missing(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp_listeners=("none",))
    with smtplib.SMTP(*server.smtp.none.address, timeout=5) as client:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.starttls(context=server.ca.client_context())
        assert client.docmd("STARTTLS") == (502, b"5.5.1 Error: command not implemented")


def test_idle_timeout_sends_421_then_closes(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(timeout=0.2))
    with socket.create_connection(server.smtp.starttls.address, timeout=5) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        assert reader.readline() == b"421 4.4.2 localhost Error: timeout exceeded\r\n"
        assert reader.readline() == b""


def test_unsupported_mechanism_is_504(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory(smtp=SMTPSettings(auth_mechanisms=("XOAUTH2",)))
    with submission(server, timeout=5) as client:
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["XOAUTH2"]
        assert client.docmd("AUTH", "PLAIN") == (504, b"5.5.4 Unrecognized authentication type")


def test_bad_personality_names_the_allowed_ones() -> None:
    from mailharness import ConfigError

    with pytest.raises(
        ConfigError, match=r"personality='gmial': expected one of 'dovecot', 'gmail'"
    ):
        SMTPSettings(personality="gmial")
