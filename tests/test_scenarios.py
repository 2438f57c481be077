"""The scenario model: lookup, TOML files, pytest integration, the generated docs."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Callable
from pathlib import Path

import pytest
from mailharness.catalog import CATALOG, parametrize, scenario
from mailharness.docs import scenarios_markdown
from mailharness.journeys import ClientProfile
from mailharness.server import MailServer
from mailharness.servers.errors import ConfigError

from tests.helpers import imap_starttls

ROOT = Path(__file__).resolve().parents[1]


def test_docs_are_generated_from_the_catalog() -> None:
    current = (ROOT / "docs" / "scenarios.md").read_text()
    assert current == scenarios_markdown(), "run: python -m harness.docs > docs/scenarios.md"


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        CATALOG["cert-expird"]
    assert "scenario='cert-expird': no such scenario (did you mean 'cert-expired'" in str(
        caught.value
    )


def test_unknown_family_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"family='cert1': expected one of 'baseline'"):
        CATALOG.family("cert1")


CUSTOMER = """
name = "acme-legacy"
base = "tls10-only"
personality = "outlook"
cert = "self-signed"
users_mode = "replace"

[smtp]
listeners = ["starttls", "implicit"]
size_limit = 5000

[imap]
failure_delay = 0.0

[[imap.faults]]
listener = "imap/none"
kind = "latency"
ms = 10

[[users]]
address = "qa@acme.test"
password = "qa-password"
"""


def test_toml_customer_setup(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(CUSTOMER)
    chosen = scenario(path)
    assert chosen.name == "acme-legacy"
    assert chosen.personality == "outlook"
    config = chosen.config
    assert config.cert.value == "self-signed"
    assert config.smtp is not None and config.smtp.size_limit == 5000
    assert config.smtp.personality == "outlook"
    assert [s.value for s in config.smtp_listeners] == ["starttls", "implicit"]
    assert [u.login for u in config.users] == ["qa@acme.test"]
    assert "imap/none" in config.faults and "imap/implicit" in config.faults  # base kept
    server = chosen.serve()
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            with smtplib.SMTP(*server.smtp.starttls.address, timeout=5) as client:
                legacy_insecure = ClientProfile(tls="legacy", verify=False).context(None)
                client.starttls(context=legacy_insecure)
                client.login("qa@acme.test", "wrong")
        assert caught.value.smtp_error.startswith(b"5.7.139 Authentication unsuccessful")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('colour = "red"', "field='colour': expected one of 'name', 'base'"),
        ("[smtp]\nsize_limt = 5", "[smtp]: field='size_limt': expected one of"),
        ('[[imap.faults]]\nkind = "lag"', "kind='lag': expected one of 'latency'"),
        ('[[imap.faults]]\nkind = "latency"\nmsec = 3', "(latency): field='msec'"),
        ('base = "tls10-onyl"', "scenario='tls10-onyl': no such scenario"),
        (
            'users_mode = "add"\n[[users]]\naddress = "x@y.test"\npasswd = "p"',
            "users[0]: field='passwd'",
        ),
        ("= broken", "not valid TOML"),
    ],
)
def test_toml_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        scenario(path)
    assert message in str(caught.value)


MARKED = """
import imaplib, ssl, pytest
from mailharness.catalog import parametrize

@pytest.mark.mail_scenario("cert-expired")
def test_marker(imap_server):
    ctx = imap_server.ca.client_context()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        imaplib.IMAP4_SSL("localhost", imap_server.imap.implicit.port, ssl_context=ctx)

@parametrize("tls")
def test_family(mail_scenario):
    assert mail_scenario.label

@pytest.mark.mail_scenario("customer.toml")
def test_toml_marker(mail_scenario):
    assert mail_scenario.label == "customer"
    assert [u.login for u in mail_scenario.users] == ["qa@acme.test"]

def test_plain_fixture_is_healthy(mail_server):
    assert mail_server.label == ""
"""


def test_marker_and_parametrize_in_a_user_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MARKED)
    (pytester.path / "customer.toml").write_text(
        'users_mode = "replace"\n[[users]]\naddress = "qa@acme.test"\npassword = "qa-password"\n'
    )
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    tls_names = [s.name for s in CATALOG.family("tls")]
    result.assert_outcomes(passed=3 + len(tls_names))
    result.stdout.fnmatch_lines([f"*test_family[[]{tls_names[0]}[]] PASSED*"])


def test_parametrize_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError, match="did you mean 'healthy'"):
        parametrize(names=["healty"])


def test_run_time_switch_outage_after_first_sync(mail_server_factory) -> None:  # type: ignore[no-untyped-def]
    """An outage that starts after the first sync, switched on a fronted listener."""
    from mailharness.servers.faults import Refuse

    server = mail_server_factory(faults={"imap/implicit": ()})
    ctx = server.ca.client_context()
    port = server.imap.implicit.port
    with imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx, timeout=5) as first:
        first.login("alice@example.test", "alice-password")
        assert first.select("INBOX")[0] == "OK"
    server.faults("imap/implicit").set(Refuse())
    with pytest.raises(ConnectionRefusedError):
        imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx, timeout=5)
    server.faults("imap").clear()
    with imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx, timeout=5) as again:
        assert again.login("alice@example.test", "alice-password")[0] == "OK"


def test_faults_on_an_unfronted_listener_is_a_clear_error(mail_server: MailServer) -> None:
    with pytest.raises(ConfigError, match="not served through a fault front"):
        mail_server.faults("imap/implicit")


def test_seed_from_a_generator(mail_server: MailServer) -> None:
    def generate(count: int):  # type: ignore[no-untyped-def]
        for n in range(count):
            yield f"Subject: generated {n}\r\n\r\nbody {n}\r\n"

    uids = mail_server.deliver_many("alice@example.test", generate(5))
    assert uids == sorted(uids) and len(set(uids)) == 5
    with imap_starttls(mail_server, timeout=5) as client:
        client.login("alice@example.test", "alice-password")
        assert client.select("INBOX") == ("OK", [b"5"])
        assert client.uid("SEARCH", "SUBJECT", '"generated 4"') == ("OK", [str(uids[4]).encode()])


def test_the_catalog_builds_families_only_as_far_as_a_name_needs() -> None:
    from mailharness.scenarios import Catalog, Family, Scenario

    built: list[str] = []

    def family(*names: str) -> Callable[[], list[Scenario]]:
        def build() -> list[Scenario]:
            built.append(names[0])
            return [
                Scenario(
                    name=n,
                    family=Family.BASELINE,
                    requirement="r",
                    server="s",
                    client_sees="c",
                    fake_only_reason="a test's",
                )
                for n in names
            ]

        return build

    catalog = Catalog(families=[family("a", "b"), family("c"), family("d")])
    assert catalog["b"].name == "b" and built == ["a"]
    assert catalog["c"].name == "c" and built == ["a", "c"]
    assert list(catalog) == ["a", "b", "c", "d"] and built == ["a", "c", "d"]
    with pytest.raises(ConfigError, match="did you mean 'a'"):
        Catalog(families=[family("a")])["aa"]
    twice = Catalog(families=[family("a"), family("a")])
    assert twice["a"].name == "a"
    with pytest.raises(ConfigError, match="'a' is used twice"):
        len(twice)
