"""Scenario files (TOML): type-checked values, users added or replaced, per-user quota,
certificates faults inherit, and the field reference generated from the model."""

from __future__ import annotations

import imaplib
import ssl
from pathlib import Path

import pytest
from mailharness.catalog import CATALOG, scenario
from mailharness.journeys import ClientProfile
from mailharness.scenario_files import load_toml, reference_markdown
from mailharness.scenarios import Scenario
from mailharness.server import MailServer
from mailharness.servers.errors import ConfigError

from tests.helpers import imap_starttls

ROOT = Path(__file__).resolve().parents[1]


def _load(tmp_path: Path, text: str) -> Scenario:
    path = tmp_path / "customer.toml"
    path.write_text(text)
    return scenario(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return str(caught.value)


# --- one test per mistake QA made (issue 10) --------------------------------------------------
def test_a_string_where_a_number_belongs(tmp_path: Path) -> None:
    message = _error(tmp_path, '[imap]\nmax_userip_connections = "five"')
    assert "[imap] max_userip_connections='five': expected an integer" in message


def test_a_string_where_a_list_belongs(tmp_path: Path) -> None:
    message = _error(tmp_path, '[smtp]\nlisteners = "starttls"')
    assert "[smtp] listeners='starttls': expected a list of one of 'none', 'starttls', " in message


def test_a_number_where_a_rate_table_belongs(tmp_path: Path) -> None:
    message = _error(tmp_path, "[smtp]\nsend_rate = 30")
    assert (
        "[smtp] send_rate=30: expected a table { count = an integer, per_seconds = a number }"
        in message
    )


def test_a_string_where_a_bool_belongs(tmp_path: Path) -> None:
    message = _error(tmp_path, '[imap]\nenabled = "no"')
    assert "[imap] enabled='no': expected true or false" in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[smtp]\nsend_rate = { count = 2 }", "send_rate: per_seconds is required (a number)"),
        ('[smtp]\nsend_rate = { count = "2", per_seconds = 1 }', "send_rate.count='2'"),
        ("cert = 3", "cert=3: expected one of 'trusted'"),
        (
            '[[imap.faults]]\nkind = "latency"\nms = "slow"',
            "(latency).ms='slow': expected a number",
        ),
        ('[[schedule]]\nkind = "flap"\nup_seconds = -1', "up_seconds=-1.0: expected a number"),
        ('[[schedule]]\nkind = "flip"', "kind='flip': expected one of 'flap'"),
        ("[imap]\nidle_timeout = true", "idle_timeout=True: expected a number"),
        ("[imap]\nreplies = 1", "field='replies'"),
    ],
)
def test_every_value_is_checked(tmp_path: Path, text: str, message: str) -> None:
    assert message in _error(tmp_path, text)


# --- users ------------------------------------------------------------------------------------
CAROL = '[[users]]\naddress = "carol@acme.test"\npassword = "carol-password"\n'


def test_users_are_added_to_the_base_ones(tmp_path: Path) -> None:
    chosen = _load(tmp_path, 'users_mode = "add"\n' + CAROL)
    assert [u.login for u in chosen.config.users] == [
        "alice@example.test",
        "bob@example.test",
        "carol@acme.test",
    ]


def test_users_replace_the_base_ones(tmp_path: Path) -> None:
    chosen = _load(tmp_path, 'users_mode = "replace"\n' + CAROL)
    assert [u.login for u in chosen.config.users] == ["carol@acme.test"]


def test_users_without_a_mode_say_which_to_choose(tmp_path: Path) -> None:
    message = _error(tmp_path, CAROL)
    assert 'users_mode = "add"' in message and '"replace"' in message


def test_adding_a_user_the_base_has_is_an_error(tmp_path: Path) -> None:
    text = 'users_mode = "add"\n[[users]]\naddress = "alice@example.test"\npassword = "x"\n'
    assert "'alice@example.test' is already a user of the base" in _error(tmp_path, text)


def test_quota_is_a_field_of_the_user(tmp_path: Path) -> None:
    """quota-full's full user is data: here bob is the full one, and alice is not."""
    chosen = _load(
        tmp_path,
        'base = "quota-full"\nusers_mode = "replace"\n'
        '[[users]]\naddress = "alice@example.test"\npassword = "alice-password"\n'
        '[[users]]\naddress = "bob@example.test"\npassword = "bob-password"\nquota_bytes = 500\n',
    )
    server = chosen.serve()
    try:
        for login, password, answer in [
            ("bob@example.test", "bob-password", "NO"),
            ("alice@example.test", "alice-password", "OK"),
        ]:
            with imap_starttls(server) as client:
                client.login(login, password)
                typ, data = client.append("INBOX", None, None, b"Subject: q\r\n\r\nq\r\n")
                assert typ == answer, data
                if typ == "NO":
                    assert data[0].startswith(b"[OVERQUOTA] Quota exceeded")
    finally:
        server.stop()


def test_quota_full_catalog_user_is_data() -> None:
    alice = CATALOG["quota-full"].config.users[0]
    assert alice.login == "alice@example.test" and alice.quota_bytes is not None


# --- certificates -----------------------------------------------------------------------------
def test_faults_inherit_the_scenario_certificate(tmp_path: Path) -> None:
    """tls10-only's TLS fault fronts 993; the file's cert is what the front serves."""
    chosen = _load(tmp_path, 'base = "tls10-only"\ncert = "unknown-ca"')
    with MailServer(chosen.config) as server:
        # A TLS 1.0 client that trusts the harness CA, not the unknown one.
        context = ClientProfile(tls="tls1.0-only").context(server.ca.ca_path)
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            imaplib.IMAP4_SSL(*server.imap.implicit.address, ssl_context=context, timeout=5)


def test_a_fault_with_its_own_certificate_keeps_it(tmp_path: Path) -> None:
    chosen = _load(
        tmp_path,
        'cert = "expired"\n[[imap.faults]]\nlistener = "imap/implicit"\nkind = "tls-version"\n'
        'version = "tls1.2"\ncert = "trusted"\n',
    )
    with MailServer(chosen.config) as server:
        with imaplib.IMAP4_SSL(
            *server.imap.implicit.address, ssl_context=server.ca.client_context(), timeout=5
        ) as client:
            assert client.noop()[0] == "OK"


# --- the reference ----------------------------------------------------------------------------
def test_reference_is_generated_from_the_model() -> None:
    current = (ROOT / "docs" / "scenario-files.md").read_text()
    assert current == reference_markdown(), (
        "run: python -m mailharness.scenario_files > docs/scenario-files.md"
    )


def test_reference_gives_every_field_a_meaning() -> None:
    rows = [line for line in reference_markdown().splitlines() if line.startswith("| `")]
    empty = [row for row in rows if row.rstrip().endswith("|  |")]
    assert not empty
    for name in ("allowed_networks", "reject_unlisted_at", "quota_bytes", "users_mode"):
        assert any(row.startswith(f"| `{name}`") for row in rows), name


def test_a_serve_table_is_left_to_serve_and_the_fixtures_load_the_file(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(
        'base = "tls12-only"\n[serve]\nport_base = 10140\n[imap]\ngreeting_delay = 0.01\n'
    )
    loaded = load_toml(path, CATALOG)
    assert loaded.name == "acme"
    assert loaded.config.imap is not None and loaded.config.imap.greeting_delay == 0.01


def test_a_protocol_table_names_the_fields_the_settings_resolve() -> None:
    """`[imap]`/`[smtp]` keys are checked against the annotated names, read without
    resolving the annotations (serve's start, issue 13): the same names, same order."""
    import typing

    from mailharness import values
    from mailharness.server import MailConfig
    from mailharness.servers.imap import IMAPSettings
    from mailharness.servers.smtp import SMTPSettings

    for cls in (IMAPSettings, SMTPSettings, MailConfig):
        assert values.annotated(cls) == list(typing.get_type_hints(cls))
