"""Capture: probe a served scenario, save it, serve the saved file, probe again: same report.

The round trip also guards the scenario file format: capture writes the TOML that
`load_toml` reads, so a change of either side that breaks the other fails here.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailharness.capture import scenario_toml, toml_fields
from mailharness.cases import ClientCase, client_cases
from mailharness.catalog import CATALOG, scenario
from mailharness.certs import MailCA
from mailharness.cli import main
from mailharness.diagnosis import Diagnosis
from mailharness.probe import (
    ProbeReport,
    ProbeSettings,
    _without_volatile,
    probe,
    probe_case,
    settings_for_case,
)
from mailharness.scenarios import Family, Scenario
from mailharness.server import MailServer
from mailharness.servers.listeners import Security

# The auth scenarios whose condition is the server's configuration. The others are
# account states (app password, lockout, disabled...) that only show to the account's
# real password, which capture never writes.
CAPTURABLE_AUTH = (
    "auth-bad-password",
    "auth-bad-password-outlook",
    "auth-password-changed",
    "auth-mechanism-unsupported",
    "auth-xoauth2",
)
ROUND_TRIP = [
    *(s for s in CATALOG.values() if s.family in (Family.TLS, Family.CERT)),
    *(CATALOG[name] for name in CAPTURABLE_AUTH),
    *(CATALOG[name] for name in ("healthy", "refused", "no-imap", "reset", "hang-greeting")),
    CATALOG["maintenance"],
]


@contextlib.contextmanager
def served(chosen: Scenario, ca: MailCA) -> Iterator[MailServer]:
    server = chosen.serve(ca=ca)
    try:
        yield server
    finally:
        server.stop()


def _capture(
    chosen: Scenario, ca: MailCA, directory: Path
) -> tuple[Path, list[ClientCase], list[ProbeReport]]:
    with served(chosen, ca) as server:
        cases = list(client_cases(chosen, server))
        reports = [probe_case(case) for case in cases]
    path = directory / f"{chosen.name}-captured.toml"
    path.write_text(scenario_toml(reports, name=path.stem))
    return path, cases, reports


@pytest.mark.parametrize("chosen", ROUND_TRIP, ids=lambda s: s.name)
def test_round_trip_gives_the_same_report(
    chosen: Scenario, mail_ca: MailCA, tmp_path: Path
) -> None:
    path, cases, first = _capture(chosen, mail_ca, tmp_path)
    differences = {}
    with served(scenario(path), mail_ca) as again:
        for case, expect, before in zip(cases, chosen.expect, first, strict=True):
            # The same client settings, pointed at the saved scenario's listener.
            endpoint = getattr(again, case.protocol).get(expect.security)
            host = case.host if expect.host is not None else endpoint.host
            after = probe(settings_for_case(case, host=host, port=endpoint.port))
            a, b = before.signature(), after.signature()
            if a != b:
                differences[case.id] = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not differences, path.read_text()


def test_the_file_uses_documented_fields_and_never_a_password(
    mail_ca: MailCA, tmp_path: Path
) -> None:
    path, _cases, reports = _capture(CATALOG["auth-bad-password"], mail_ca, tmp_path)
    text = path.read_text()
    data = tomllib.loads(text)
    assert set(data) <= set(toml_fields())
    assert "alice-password" not in text and "not-the-password" not in text
    assert data["users"][0]["address"] == "alice@example.test"
    assert all(r.diagnosis is Diagnosis.AUTH_FAILED for r in reports)
    assert "# server said: b'[AUTHENTICATIONFAILED] Authentication failed.'" in text


def test_capture_names_version_certificate_and_listeners(mail_ca: MailCA, tmp_path: Path) -> None:
    path, _, _ = _capture(CATALOG["tls10-only"], mail_ca, tmp_path)
    data = tomllib.loads(path.read_text())
    assert data["cert"] == "trusted" and data["personality"] == "dovecot"
    assert data["imap"]["listeners"] == ["implicit", "starttls"]
    versions = {(f["listener"], f["version"]) for f in data["imap"]["faults"]}
    assert versions == {("imap/implicit", "tls1.0"), ("imap/starttls", "tls1.0")}
    path, _, _ = _capture(CATALOG["cert-expired"], mail_ca, tmp_path)
    assert tomllib.loads(path.read_text())["cert"] == "expired"
    path, _, _ = _capture(CATALOG["starttls-missing"], mail_ca, tmp_path)
    data = tomllib.loads(path.read_text())
    assert data["imap"]["listeners"] == ["none"] and data["smtp"]["listeners"] == ["none"]


def test_cli_save_scenario_then_serve_it(
    mail_ca: MailCA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILHARNESS_PASSWORD", "alice-password")
    target = tmp_path / "acme.toml"
    with served(CATALOG["starttls-only"], mail_ca) as server:
        imap, smtp = server.imap.implicit, server.smtp.starttls
        argv = ["probe", "--imap", f"{imap.host}:{imap.port}/implicit", "--json"]
        argv += ["--smtp", f"{smtp.host}:{smtp.port}/starttls", "--user", "alice@example.test"]
        argv += ["--ca", str(server.ca.ca_path), "--server-name", "localhost"]
        assert main([*argv, "--save-scenario", str(target)]) == 1  # 993 is refused
    report = json.loads(capsys.readouterr().out)
    assert report["imap"]["diagnosis"] == "CONNECTION_REFUSED"
    assert report["smtp"]["diagnosis"] == "OK"
    saved = scenario(target)
    assert saved.name == "acme"
    with served(saved, mail_ca) as again:
        assert [e.security.value for e in again.imap] == ["implicit"]
        seen = probe(_alice(again, "smtp", Security.STARTTLS))
        assert seen.ok, seen.human()
        refused = probe(_alice(again, "imap", Security.IMPLICIT))
        assert refused.diagnosis is Diagnosis.CONNECTION_REFUSED
    assert "alice-password" not in target.read_text()


def _alice(server: MailServer, protocol: str, security: Security) -> ProbeSettings:
    endpoint = getattr(server, protocol).get(security)
    return ProbeSettings(
        protocol=protocol,
        host=endpoint.host,
        port=endpoint.port,
        security=security,
        username="alice@example.test",
        password="alice-password",
        ca_path=server.ca.ca_path,
        server_name="localhost",
        timeout=3.0,
    )


def test_a_greeting_that_names_the_time_compares_equal_a_second_later() -> None:
    """Exchange's SMTP greeting carries an RFC 5322 date: two probes a second apart
    must still find the same server (this round trip failed when a second turned)."""
    greeting = "220 localhost Microsoft ESMTP MAIL Service ready at Mon, 7 Dec 2026 01:05:35 +0000"
    later = greeting.replace("01:05:35", "01:05:36")
    assert _without_volatile(greeting) == _without_volatile(later)
    assert _without_volatile(greeting).startswith("220 localhost Microsoft ESMTP MAIL Service")
