"""The matrix: the probe and connectors in two languages against the catalog."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest
from mailharness.catalog import CATALOG
from mailharness.cli import main
from mailharness.diagnosis import Diagnosis
from mailharness.matrix import CodeMapping, command_for, run_matrix, select_scenarios
from mailharness.scenarios import Family
from mailharness.servers.errors import ConfigError

from tests.helpers import require_backend

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "connector" / "inbox_connector.py"
CURL_CONNECTOR = ROOT / "examples" / "curl-connector"
# The Python example connector: options first, then `--` (a host may start with '-').
PYTHON_CONNECTOR = (
    f"{sys.executable} {EXAMPLE} --ca {{ca_path}} --timeout {{timeout}} "
    "{insecure?--insecure} {legacy_tls?--legacy-tls} {xoauth2?--xoauth2} "
    "{source_address?--source-address} {source_address} "
    "-- {protocol} {host} {port} {security} {user} {password}"
)
# The same connector with a known bug: it accepts any certificate.
BUGGY_CONNECTOR = PYTHON_CONNECTOR.replace("{insecure?--insecure}", "--insecure")
CERT_CODES = {d.value for d in Diagnosis if d.value.startswith("CERT_")}


def test_matrix_of_the_probe_passes_every_case_on_the_fake() -> None:
    scenarios, skipped = select_scenarios()
    assert not skipped
    result = run_matrix(scenarios, jobs=2)
    assert not result.failed, result.table()
    assert len(result.rows) == sum(len(s.expect) for s in scenarios)
    assert result.exit_code == 0


def test_matrix_of_the_probe_passes_on_dovecot_where_it_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_backend("dovecot")
    junit = tmp_path / "dovecot.xml"
    assert main(["matrix", "--backend", "dovecot", "-n", "2", "--junit", str(junit)]) == 0
    out = capsys.readouterr().out
    scenarios, skipped = select_scenarios(backend="dovecot")
    assert f"0 failed, {len(skipped)} scenarios skipped (dovecot" in out
    suite = ElementTree.parse(junit).getroot()
    assert suite.get("tests") == str(sum(len(s.expect) for s in scenarios))
    assert suite.get("skipped") == str(len(skipped)) and suite.get("failures") == "0"


def test_example_connector_through_the_matrix() -> None:
    """The Python example, as a subprocess (the whole catalog: examples/connector's suite)."""
    names = ("healthy", "wrong-host", "cert-expired", "tls10-only", "ip-not-allowed")
    chosen = [CATALOG[name] for name in (*names, "auth-xoauth2")]
    result = run_matrix(chosen, connector=PYTHON_CONNECTOR, jobs=2, require_code=True)
    assert not result.failed, result.table()


def test_a_connector_that_accepts_any_certificate_fails_exactly_the_certificate_rows() -> None:
    others = ["healthy", "tls10-only", "auth-bad-password"]
    chosen = [*CATALOG.family(Family.CERT), *(CATALOG[name] for name in others)]
    result = run_matrix(chosen, connector=BUGGY_CONNECTOR, jobs=2, require_code=True)
    failed = {(r.scenario, r.case) for r in result.failed}
    cert_rows = {(r.scenario, r.case) for r in result.rows if r.expected in CERT_CODES}
    assert len(cert_rows) == 28
    assert failed == cert_rows
    assert all(r.observed == "OK" for r in result.failed)
    assert result.exit_code == 1


CURL_CASES = [
    "healthy/imap-implicit",
    "healthy/smtp-starttls",
    "refused",
    "wrong-host",
    "firewall-drop",
    "plaintext-on-tls-port",
    "tls1",
    "sslv3",
    "starttls-missing",
    "starttls-only",
    "implicit-tls-only",
    "cert-expired",
    "cert-self-signed",
    "cert-wrong-host",
    "cert-unknown-ca",
    "auth-bad-password/",
    "auth-password-changed",
    "auth-xoauth2/imap",
]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by install-system-deps")
def test_a_shell_connector_with_curl_and_a_mapping_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Language-neutral: a POSIX sh + curl connector, its own words mapped by a file."""
    report = tmp_path / "curl.json"
    argv = ["matrix", "--connector", str(CURL_CONNECTOR / "check.sh"), "--require-code"]
    argv += ["--mapping", str(CURL_CONNECTOR / "mapping.toml"), "-n", "2", "--json", str(report)]
    for pattern in CURL_CASES:
        argv += ["-k", pattern]
    assert main(argv) == 0, capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["failed"] == 0 and data["passed"] >= 90
    observed = {row["observed"] for row in data["rows"]}
    assert {"OK", "CERT_EXPIRED", "TLS_VERSION_TOO_OLD", "DNS_FAILED", "AUTH_FAILED"} <= observed


def test_cli_reports_table_json_junit_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = {k: tmp_path / f"report.{k}" for k in ("json", "xml", "html")}
    argv = ["matrix", "--family", "cert", "-k", "expired", "-k", "not insecure"]
    argv += ["--connector", BUGGY_CONNECTOR, "-n", "2"]
    argv += [
        "--json",
        str(paths["json"]),
        "--junit",
        str(paths["xml"]),
        "--html",
        str(paths["html"]),
    ]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "SCENARIO" in out and "0 passed, 4 failed" in out
    data = json.loads(paths["json"].read_text())
    assert [r["case"] for r in data["rows"]] == [
        "imap-implicit",
        "imap-starttls",
        "smtp-implicit",
        "smtp-starttls",
    ]
    suite = ElementTree.parse(paths["xml"]).getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "4"
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("message") == "expected CERT_EXPIRED, observed OK"
    assert "<script" not in paths["html"].read_text() and "http" not in paths["html"].read_text()
    assert main(["matrix", "-k", "cert-expired/imap-implicit-insecure", "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["scenario"], r["observed"]) for r in rows] == [("cert-expired", "OK")]


class _Table(HTMLParser):
    """The rows of the report's results table, as a browser rendered them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append((dict(attrs).get("class") or "", []))
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is installed by install-system-deps"
)
def test_html_report_in_headless_chromium(tmp_path: Path) -> None:
    chosen = [CATALOG["healthy"], CATALOG["cert-self-signed"]]
    result = run_matrix(chosen, connector=BUGGY_CONNECTOR, require_code=True)
    page = tmp_path / "report.html"
    page.write_text(result.html())
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    table = _Table()
    table.feed(dom)
    assert len(table.rows) == len(result.rows) == 14
    failed = [cells for cls, cells in table.rows if cls == "fail"]
    assert [c[:5] for c in failed] == [
        ["cert-self-signed", case, "CERT_UNTRUSTED", "OK", "FAIL"]
        for case in ("imap-implicit", "imap-starttls", "smtp-implicit", "smtp-starttls")
    ]
    assert all(cells[4] == "pass" for cls, cells in table.rows if cls == "pass")
    assert "10 passed, 4 failed" in dom


def test_connector_placeholders_and_dropped_arguments() -> None:
    values = {"host": "127.0.0.1", "port": "993", "insecure": "", "source_address": ""}
    template = "check {host} {port} {insecure?--insecure} {source_address?--from} {source_address}"
    assert command_for(template, values) == ["check", "127.0.0.1", "993"]
    values |= {"insecure": "1", "source_address": "127.0.0.2"}
    assert command_for(template, values)[3:] == ["--insecure", "--from", "127.0.0.2"]
    with pytest.raises(ConfigError, match=r"unknown placeholder \{hots\}"):
        command_for("check {hots}", values)


def test_verdict_from_printed_words_or_exit_code(tmp_path: Path) -> None:
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text(
        '[codes]\nBAD_CERT = "CERT_UNTRUSTED"\n[exit_codes]\n3 = "AUTH_FAILED"\n'
    )
    mapping = CodeMapping.load(mapping_file)
    assert mapping.verdict("checking...\nBAD_CERT: self-signed\n", 1) == "CERT_UNTRUSTED"
    assert mapping.verdict("CERT_EXPIRED certificate has expired", 1) == "CERT_EXPIRED"
    assert mapping.verdict("", 3) == "AUTH_FAILED"
    assert mapping.verdict("it broke", 1) == "exit 1"
    assert mapping.verdict("", 0) == "OK"
    mapping_file.write_text('[codes]\nBAD = "NOT_A_CODE"\n')
    with pytest.raises(ConfigError, match="not a diagnosis code"):
        CodeMapping.load(mapping_file)
