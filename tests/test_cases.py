"""Client cases and diagnosis codes: what a connector is told to do and must report."""

from __future__ import annotations

import socket

import pytest
from mailharness.cases import ClientCase, case_ids, client_cases
from mailharness.catalog import CATALOG, parametrize_cases
from mailharness.certs import MailCA
from mailharness.diagnosis import HINTS, Diagnosis, diagnose
from mailharness.journeys import Outcome
from mailharness.scenarios import Scenario

STATIC = [s for s in CATALOG.values() if not s.dynamic]

# What a correct connector must report, pinned for a scenario of each kind: a change
# here changes what every user's connector is judged against.
PINNED = {
    "healthy": {
        "imap-implicit": "OK",
        "smtp-starttls": "OK",
        "imap-none-on-starttls-port": "PLAINTEXT_REFUSED",
        "smtp-none-on-starttls-port": "PLAINTEXT_REFUSED",
    },
    "wrong-host": {"imap-implicit": "DNS_FAILED"},
    "refused": {"smtp-implicit": "CONNECTION_REFUSED"},
    "firewall-drop": {"imap-starttls-short-timeout": "CONNECT_TIMEOUT"},
    "reset": {"imap-starttls": "CONNECTION_RESET", "smtp-starttls": "CONNECTION_RESET"},
    "hang-greeting": {"smtp-starttls-short-timeout": "GREETING_TIMEOUT"},
    "plaintext-on-tls-port": {"imap-implicit-on-starttls-port": "TLS_MISMATCH"},
    "sslv3-only": {"imap-implicit": "TLS_VERSION_TOO_OLD"},
    "tls10-only": {"smtp-starttls": "TLS_VERSION_TOO_OLD", "smtp-starttls-legacy-tls": "OK"},
    "starttls-required": {"imap-none-on-starttls-port": "PLAINTEXT_REFUSED"},
    "starttls-required-gmail": {"smtp-none-on-starttls-port": "PLAINTEXT_REFUSED"},
    "starttls-missing": {"imap-starttls-on-none-port": "STARTTLS_UNAVAILABLE"},
    "starttls-broken": {"smtp-starttls": "STARTTLS_FAILED"},
    "cert-self-signed": {"imap-implicit": "CERT_UNTRUSTED", "imap-implicit-insecure": "OK"},
    "cert-expired": {"smtp-starttls": "CERT_EXPIRED"},
    "cert-not-yet-valid": {"smtp-implicit": "CERT_NOT_YET_VALID"},
    "cert-wrong-host": {"imap-starttls": "CERT_HOSTNAME_MISMATCH"},
    "cert-weak-key": {"imap-implicit": "CERT_WEAK_KEY"},
    "auth-bad-password": {"imap-implicit-wrong-password": "AUTH_FAILED"},
    "auth-app-password-required": {"imap-implicit": "APP_PASSWORD_REQUIRED"},
    "auth-imap-disabled": {"imap-implicit": "IMAP_DISABLED"},
    "auth-account-disabled": {"smtp-implicit": "ACCOUNT_DISABLED"},
    "auth-lockout-yahoo": {"imap-implicit": "ACCOUNT_LOCKED"},
    "auth-password-expired": {"imap-implicit": "PASSWORD_EXPIRED"},
    "auth-mechanism-unsupported": {"smtp-implicit": "AUTH_MECHANISM_UNSUPPORTED"},
    "quota-full": {"imap-implicit": "MAILBOX_FULL", "smtp-implicit": "MAILBOX_FULL"},
    "message-too-large": {"smtp-implicit": "MESSAGE_TOO_LARGE"},
    "maintenance": {"imap-implicit": "SERVICE_UNAVAILABLE"},
    "ip-not-allowed-postfix": {"smtp-implicit-from-127.0.0.2": "IP_NOT_ALLOWED"},
    "ip-not-allowed-tcpwrap": {"smtp-starttls-from-127.0.0.2": "CONNECTION_DROPPED"},
}


@pytest.mark.parametrize("scenario", STATIC, ids=lambda s: s.name)
def test_every_case_has_a_known_diagnosis(scenario: Scenario, mail_ca: MailCA) -> None:
    server = scenario.serve(ca=mail_ca)
    try:
        cases = client_cases(scenario, server)
    finally:
        server.stop()
    assert [c.id for c in cases] == case_ids(scenario)
    assert len(set(case_ids(scenario))) == len(cases), "case ids must be unique"
    for case in cases:
        assert case.expected.diagnosis is not Diagnosis.UNKNOWN, f"{scenario.name}/{case.id}"
        assert case.expected.ok == case.expected.python.ok
    pinned = PINNED.get(scenario.name, {})
    codes = {c.id: c.expected.diagnosis.value for c in cases}
    assert {k: codes.get(k) for k in pinned} == pinned


def test_every_code_has_a_hint() -> None:
    assert set(HINTS) == set(Diagnosis)
    assert all(hint.endswith(".") for hint in HINTS.values())


def test_plaintext_refusal_is_told_from_a_missing_mechanism_by_encryption() -> None:
    seen = Outcome("login", "smtplib.SMTPException", "No suitable authentication method found.")
    assert diagnose(seen, secure=False) is Diagnosis.PLAINTEXT_REFUSED
    assert diagnose(seen, secure=True) is Diagnosis.AUTH_MECHANISM_UNSUPPORTED


@parametrize_cases(names=["cert-expired", "auth-bad-password", "ip-not-allowed-postfix"])
def test_a_stdlib_client_meets_each_case(mail_case: ClientCase) -> None:
    seen = mail_case.run_journey()
    assert seen.matches(mail_case.expected.python), f"{mail_case.id}: saw {seen}"
    secure = mail_case.security.value != "none"
    assert diagnose(seen, secure=secure) is mail_case.expected.diagnosis


@parametrize_cases(names=["ip-not-allowed-postfix"], cases=["smtp-implicit-from-127.0.0.2"])
def test_source_address_is_bound_by_the_helpers(mail_case: ClientCase) -> None:
    assert mail_case.source_address == "127.0.0.2"
    with mail_case.connect() as sock:
        assert sock.getsockname()[0] == "127.0.0.2"
    with mail_case.source_bound(), socket.create_connection(mail_case.address, 2) as sock:
        assert sock.getsockname()[0] == "127.0.0.2"
    with socket.create_connection(mail_case.address, 2) as sock:
        assert sock.getsockname()[0] == "127.0.0.1"  # restored after the block


@parametrize_cases(names=["auth-app-password-required"])
def test_case_environment_for_connectors_in_any_language(mail_case: ClientCase) -> None:
    env = mail_case.environment()
    assert env["MAILHARNESS_SCENARIO"] == "auth-app-password-required"
    assert env["MAILHARNESS_PORT"] == str(mail_case.port)
    assert env["MAILHARNESS_EXPECTED"] == mail_case.expected.diagnosis.value
    assert env["MAILHARNESS_PASSWORD"] == mail_case.password
    assert env["MAILHARNESS_VERIFY_CERTIFICATE"] == "1"


def test_parametrize_cases_checks_the_protocol() -> None:
    with pytest.raises(ValueError, match=r"protocol='pop3': expected one of 'imap', 'smtp'"):
        parametrize_cases(protocol="pop3")
