"""The probe: real stdlib clients over loopback against served scenarios."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from mailharness.cases import client_cases
from mailharness.catalog import CATALOG
from mailharness.certs import MailCA
from mailharness.cli import main
from mailharness.diagnosis import Diagnosis
from mailharness.probe import ProbeSettings, parse_listener, probe, probe_case
from mailharness.scenarios import Family, Scenario
from mailharness.server import MailServer
from mailharness.servers.errors import ConfigError
from mailharness.servers.listeners import Security

STATIC = [s for s in CATALOG.values() if not s.dynamic]
# The version scan and certificate facts cost a handshake each: scanned where they matter.
SCANNED = (Family.TLS, Family.CERT)


@pytest.mark.parametrize("scenario", STATIC, ids=lambda s: s.name)
def test_probe_diagnosis_is_the_catalogs_expected_code(scenario: Scenario, mail_ca: MailCA) -> None:
    """Every case: the probe, given the case's client settings, says the expected code."""
    server = scenario.serve(ca=mail_ca)
    try:
        wrong = []
        for case in client_cases(scenario, server):
            report = probe_case(case, scan=scenario.family in SCANNED)
            if report.diagnosis is not case.expected.diagnosis:
                wrong.append(f"{case.id}: {report.diagnosis.value} ({report.outcome})")
    finally:
        server.stop()
    assert not wrong, f"expected per case from the catalog; the probe said: {wrong}"


def _alice(server: MailServer, protocol: str, security: Security, **kw: object) -> ProbeSettings:
    endpoint = getattr(server, protocol).get(security)
    values: dict[str, object] = {
        "protocol": protocol,
        "host": endpoint.host,
        "port": endpoint.port,
        "security": security,
        "username": "alice@example.test",
        "password": "alice-password",
        "ca_path": server.ca.ca_path,
        "server_name": "localhost",
        "timeout": 3.0,
        **kw,
    }
    return ProbeSettings(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def served(name: str, ca: MailCA) -> Iterator[MailServer]:
    server = CATALOG[name].serve(ca=ca)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def healthy(mail_ca: MailCA) -> Iterator[MailServer]:
    with served("healthy", mail_ca) as server:
        yield server


def test_report_has_steps_tls_certificate_and_capabilities(healthy: MailServer) -> None:
    report = probe(_alice(healthy, "imap", Security.STARTTLS, write=True))
    assert report.diagnosis is Diagnosis.OK and report.exit_code == 0
    names = [s.name for s in report.steps]
    assert names == [
        "connect",
        "greeting",
        "starttls",
        "login",
        "select",
        "append",
        "delete",
        "logout",
        "scan",
    ]
    assert all(s.ok and s.seconds >= 0 for s in report.steps)
    assert report.tls_version == "TLSv1.3" and report.tls_cipher
    assert report.tls_versions == ("tls1.2", "tls1.3")
    assert "LOGINDISABLED" in report.capabilities_before_tls
    assert "STARTTLS" in report.capabilities_before_tls
    assert report.auth_mechanisms == ("PLAIN", "LOGIN")
    cert = report.certificate
    assert cert is not None
    assert "localhost" in cert.names and "127.0.0.1" in cert.names
    assert cert.default_client == "OK" and not cert.self_signed
    assert cert.key.startswith(("EC", "RSA"))
    # The test message was deleted again.
    assert len(healthy.store.user("alice@example.test")["INBOX"]) == 0
    text = report.human()
    assert "TLS accepted:    tls1.2, tls1.3" in text
    assert "OK: Everything worked." in text


def test_smtp_report_lists_extensions_and_mechanisms(healthy: MailServer) -> None:
    report = probe(_alice(healthy, "smtp", Security.IMPLICIT, write=True, scan=False))
    assert report.ok, report.human()
    assert report.greeting.startswith("220 ")
    assert report.auth_mechanisms == ("LOGIN", "PLAIN", "XOAUTH2")
    assert any(c.startswith("SIZE") for c in report.capabilities)
    assert [s.name for s in report.steps][-2:] == ["send", "quit"]
    assert len(healthy.wait_for_messages(1)) == 1


def test_a_failure_gives_one_code_a_hint_and_the_failing_step(mail_ca: MailCA) -> None:
    with served("cert-expired", mail_ca) as server:
        report = probe(_alice(server, "imap", Security.IMPLICIT))
    assert report.diagnosis is Diagnosis.CERT_EXPIRED and report.exit_code == 1
    assert report.steps[-2].name == "tls" and not report.steps[-2].ok
    assert report.certificate is not None
    assert report.certificate.default_client == "CERT_EXPIRED"
    assert "certificate has expired" in report.certificate.default_client_says
    data = report.as_dict()
    assert data["diagnosis"] == "CERT_EXPIRED" and data["hint"] == Diagnosis.CERT_EXPIRED.hint
    json.dumps(data)


@pytest.mark.parametrize(
    ("name", "versions"),
    [("tls10-only", ("tls1.0",)), ("tls11-only", ("tls1.1",)), ("sslv3-only", ("sslv3",))],
)
def test_scan_finds_legacy_versions(name: str, versions: tuple[str, ...], mail_ca: MailCA) -> None:
    """TLS 1.0/1.1 at OpenSSL security level 0, SSL 3.0 through tlslite-ng."""
    with served(name, mail_ca) as server:
        report = probe(_alice(server, "smtp", Security.IMPLICIT))
    assert report.diagnosis is Diagnosis.TLS_VERSION_TOO_OLD
    assert report.tls_versions == versions


def test_no_password_before_tls_unless_allowed(mail_ca: MailCA) -> None:
    with served("plaintext-only", mail_ca) as server:
        for protocol in ("imap", "smtp"):
            report = probe(_alice(server, protocol, Security.NONE))
            assert report.diagnosis is Diagnosis.PLAINTEXT_BLOCKED, report.human()
        assert server.transcripts.logins() == []
        allowed = probe(_alice(server, "imap", Security.NONE, allow_plaintext=True))
        assert allowed.ok
        assert len(server.transcripts.logins()) == 1


def test_refusal_announced_before_tls_sends_nothing(healthy: MailServer) -> None:
    """LOGINDISABLED / AUTH without mechanisms: PLAINTEXT_REFUSED, and no password sent."""
    for protocol in ("imap", "smtp"):
        endpoint = getattr(healthy, protocol).starttls
        settings = _alice(healthy, protocol, Security.STARTTLS)
        plain = ProbeSettings(
            protocol=protocol,
            host=endpoint.host,
            port=endpoint.port,
            security=Security.NONE,
            username=settings.username,
            password=settings.password,
            allow_plaintext=True,
        )
        assert probe(plain).diagnosis is Diagnosis.PLAINTEXT_REFUSED
    assert healthy.transcripts.logins() == []


def test_parse_listener() -> None:
    assert parse_listener("imap", "127.0.0.1:993") == ("127.0.0.1", 993, Security.IMPLICIT)
    assert parse_listener("smtp", "[::1]:2525/starttls") == ("::1", 2525, Security.STARTTLS)
    with pytest.raises(ConfigError, match="no usual security"):
        parse_listener("imap", "localhost:1143")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_listener("imap", "localhost")


def test_cli_json_and_exit_code(
    healthy: MailServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILHARNESS_PASSWORD", "alice-password")
    imap, smtp = healthy.imap.implicit, healthy.smtp.starttls
    common = ["--user", "alice@example.test", "--ca", str(healthy.ca.ca_path), "--no-scan"]
    argv = ["probe", "--imap", f"{imap.host}:{imap.port}/implicit"]
    argv += ["--smtp", f"{smtp.host}:{smtp.port}/starttls", "--server-name", "localhost"]
    assert main([*argv, *common, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert data["imap"]["diagnosis"] == "OK" and data["smtp"]["tls"]["version"] == "TLSv1.3"
    assert "alice-password" not in json.dumps(data)
    monkeypatch.setenv("MAILHARNESS_PASSWORD", "wrong")
    assert main([*argv, *common]) == 1
    out = capsys.readouterr().out
    assert "AUTH_FAILED: User name or password is wrong" in out
    assert main(["probe"]) == 2
