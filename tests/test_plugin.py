"""The pytest plugin, tested the way pytest tests plugins: with pytester."""

from __future__ import annotations

import threading

import pytest
from mailharness import MailServer

SEND_AND_FAIL = """
import smtplib

def test_sends_then_fails(smtp_server):
    with smtplib.SMTP(*smtp_server.smtp.starttls.address, timeout=5) as c:
        c.starttls(context=smtp_server.ca.client_context())
        c.login("alice@example.test", "alice-password")
    assert False, "deliberate"

def test_passes(smtp_server):
    with smtplib.SMTP(*smtp_server.smtp.starttls.address, timeout=5) as c:
        c.starttls(context=smtp_server.ca.client_context())
        c.noop()
"""


def test_transcripts_shown_for_failing_test_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SEND_AND_FAIL)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Captured mail transcripts call*",
            "*S: 220 localhost ESMTP mailharness",
            "*C: AUTH PLAIN ****",
            "*S: 235 2.7.0 Authentication successful",
        ]
    )
    section = result.stdout.str().split("Captured mail transcripts call")[1]
    assert "alice-password" not in section.split("short test summary")[0]
    assert result.stdout.str().count("Captured mail transcripts") == 1


def test_transcripts_never(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SEND_AND_FAIL)
    result = pytester.runpytest_subprocess("--mail-transcripts=never")
    result.assert_outcomes(passed=1, failed=1)
    assert "Captured mail transcripts" not in result.stdout.str()


def test_transcripts_always_via_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmail_transcripts = always\n")
    pytester.makepyfile(SEND_AND_FAIL)
    result = pytester.runpytest_subprocess("-rA")
    result.assert_outcomes(passed=1, failed=1)
    assert result.stdout.str().count("Captured mail transcripts call") == 2


def test_bad_transcript_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--mail-transcripts=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--mail-transcripts='sometimes': expected one of 'on-failure', 'always', 'never'*"]
    )


def test_report_header_names_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess()
    result.stdout.fnmatch_lines(["mailharness: transcripts=on-failure"])


def test_factory_rejects_unknown_field_by_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_x(mail_server_factory):
            mail_server_factory(certificate="expired")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*ConfigError: field='certificate': expected one of 'host', 'users', 'cert'*"]
    )


def test_server_errors_fail_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_x(smtp_server):
            smtp_server.errors.append("first problem")
            smtp_server.errors.append("second problem")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the mail server recorded 2 error(s) of its own (a harness bug):*",
            "*first problem",
            "*second problem",
        ]
    )


def test_factory_servers_stop_even_when_the_test_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket, threading
        PORTS = []

        def test_fails(mail_server_factory):
            server = mail_server_factory()
            PORTS.extend(e.port for e in server.endpoints())
            raise RuntimeError("boom")

        def test_ports_closed_and_threads_gone():
            assert PORTS
            for port in PORTS:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    continue
                raise AssertionError(f"port {port} still open")
            assert [t.name for t in threading.enumerate() if t.name == "mailharness-server"] == [
                "mailharness-server"  # the session-wide smtp_server's thread is not started here
            ][:0]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)


def test_stop_leaves_no_thread_behind() -> None:
    before = {t.ident for t in threading.enumerate()}
    with MailServer():
        pass
    assert {t.ident for t in threading.enumerate()} == before


CLIENT_MISTAKES = """
import imaplib, smtplib, ssl
import pytest

@pytest.mark.parametrize("attempt", range(20))
def test_refuses_expired_certificate(mail_server_factory, attempt):
    server = mail_server_factory(cert="expired")
    with smtplib.SMTP(*server.smtp.starttls.address, timeout=5) as client:
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=server.ca.client_context())

def test_implicit_tls_against_a_plain_port(imap_server):
    with pytest.raises(ssl.SSLError, match="WRONG_VERSION_NUMBER"):
        imaplib.IMAP4_SSL(*imap_server.imap.starttls.address, timeout=5)
"""


def test_client_mistakes_fail_nothing_by_default(pytester: pytest.Pytester) -> None:
    """A refused handshake or a protocol violation is the scenario working, not a bug."""
    pytester.makepyfile(CLIENT_MISTAKES)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-rA")
    result.assert_outcomes(passed=21)
    result.stdout.fnmatch_lines(
        ["*mail client errors*", "*SMTP STARTTLS handshake failed: *certificate*"]
    )


def test_strict_mode_fails_on_client_mistakes_every_time(pytester: pytest.Pytester) -> None:
    """Settled before the verdict: the handshake failure is judged in its own test, always."""
    pytester.makepyfile(CLIENT_MISTAKES)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--mail-strict")
    result.assert_outcomes(passed=21, errors=21)
    errors = result.stdout.str().split("short test summary info")[0]
    assert errors.count("--mail-strict: clients made") == 21
