"""docs/scenarios.md, generated from the catalog (a test keeps the file current).

python -m mailharness.docs > docs/scenarios.md
"""

from __future__ import annotations

from mailharness.cases import case_ids, expected_for
from mailharness.catalog import CATALOG
from mailharness.diagnosis import HINTS
from mailharness.scenarios import Expect, Family


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def scenarios_markdown() -> str:
    lines = [
        "# Scenario catalog",
        "",
        "Generated from `harness/catalog.py` by `python -m mailharness.docs`; do not edit by hand.",
        "Serve one with `mailharness serve --scenario NAME`, use one in pytest with",
        '`@pytest.mark.mail_scenario("NAME")`. "checked" scenarios are met by real clients in',
        '`tests/test_catalog.py`; "dynamic" ones (limits and a `schedule` in their data, which',
        "the server acts out itself) by dedicated tests in",
        "`tests/test_catalog_dynamic.py`, and through `mailharness serve` in",
        "`tests/test_serve_dynamic.py`. Scenarios with `dovecot` and `docker` among their",
        "backends meet the same expectations on real Dovecot (`tests/test_differential.py`);",
        "every other static scenario says why Dovecot does not serve it.",
        "",
    ]
    for family in Family:
        members = CATALOG.family(family)
        if not members:
            continue
        lines += [
            f"## {family.value}",
            "",
            "| name | requirement | server | a correct client sees "
            "| personality | backends | test | why not on Dovecot |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in members:
            kind = "dynamic" if s.dynamic else f"checked ({len(s.expect)})"
            lines.append(
                f"| `{s.name}` | {_cell(s.requirement)} | {_cell(s.server)} | "
                f"{_cell(s.client_sees)} | {s.personality} | {', '.join(s.backends)} | {kind} | "
                f"{_cell(s.fake_only_reason)} |"
            )
        lines.append("")
    lines += _cases_markdown() + _codes_markdown()
    return "\n".join(lines)


def _settings(expect: Expect) -> str:
    client = expect.client
    security = (expect.connect_as or expect.security).value
    parts = [f"security `{security}` on the {expect.security.value} listener"]
    secret = {"password": "password", "app_password": "app password"}.get(
        client.secret, client.secret
    )
    if client.mechanism == "xoauth2":
        secret = "wrong token" if client.secret == "wrong" else "OAuth token (XOAUTH2)"
    elif client.secret == "wrong":
        secret = "a wrong password"
    parts.append(secret)
    if not client.verify:
        parts.append("non-secure certificate allowed")
    if client.tls != "default":
        parts.append(f"TLS `{client.tls}`")
    if client.source:
        parts.append(f"from {client.source}")
    if client.timeout != 2.0:
        parts.append(f"timeout {client.timeout:g} s")
    if expect.host:
        parts.append(f"host `{expect.host}`")
    return ", ".join(parts)


def _cases_markdown() -> list[str]:
    lines = [
        "## Client cases",
        "",
        "Each checked scenario's cases: how a connector is set up for it and what it must",
        "report. In pytest, `@mailharness.parametrize_cases()` hands each one to a test as",
        "`mail_case` (a `mailharness.cases.ClientCase`: host, port, security, username, password,",
        "verify_certificate, tls, source_address, timeout, and `expected.diagnosis`); the",
        "`examples/connector` suite shows the pattern. Unless a case says otherwise the client",
        "uses the account password, verifies the certificate against the harness CA, any TLS",
        "from 1.2 up, connects from 127.0.0.1 with a 2 s timeout.",
        "",
        "| scenario | case | the connector is set to | it must report | imaplib/smtplib see |",
        "| --- | --- | --- | --- | --- |",
    ]
    for scenario in CATALOG.values():
        for case_id, expect in zip(case_ids(scenario), scenario.expect, strict=True):
            expected = expected_for(expect)
            lines.append(
                f"| `{scenario.name}` | `{case_id}` | {_cell(_settings(expect))} | "
                f"`{expected.diagnosis.value}` | {_cell(str(expected.python))} |"
            )
    return [*lines, ""]


def _codes_markdown() -> list[str]:
    lines = [
        "## Diagnosis codes",
        "",
        "One stable name per way a connection ends (`mailharness.diagnosis.Diagnosis`), with what",
        "to tell the user.",
        "",
        "| code | hint |",
        "| --- | --- |",
    ]
    lines += [f"| `{code.value}` | {_cell(hint)} |" for code, hint in HINTS.items()]
    return [*lines, ""]


if __name__ == "__main__":
    print(scenarios_markdown(), end="")
