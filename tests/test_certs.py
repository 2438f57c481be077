"""Certificate variants, checked by real TLS handshakes (Python's ssl and openssl s_client)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import smtplib
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from mailharness import CertVariant, ConfigError, MailCA
from mailharness.certs import SERVER_IDENTITIES
from mailharness.plugin import MailServerFactory

from tests.helpers import require_executable

# What a default-verifying Python client sees: SCENARIOS.md, "cert: certificates".
EXPECTED_VERIFY_ERROR = {
    CertVariant.SELF_SIGNED: "certificate verify failed: self-signed certificate",
    CertVariant.UNKNOWN_CA: "certificate verify failed: unable to get local issuer certificate",
    CertVariant.EXPIRED: "certificate verify failed: certificate has expired",
    CertVariant.NOT_YET_VALID: "certificate verify failed: certificate is not yet valid",
    CertVariant.WRONG_HOST: (
        "certificate verify failed: Hostname mismatch, certificate is not valid for 'localhost'."
    ),
    CertVariant.MISSING_INTERMEDIATE: (
        "certificate verify failed: unable to get local issuer certificate"
    ),
    CertVariant.WEAK_KEY: "certificate verify failed: EE certificate key too weak",
}
# openssl's own wording of the same failures.
EXPECTED_OPENSSL_ERROR = {
    CertVariant.SELF_SIGNED: "self-signed certificate",
    CertVariant.UNKNOWN_CA: "unable to get local issuer certificate",
    CertVariant.EXPIRED: "certificate has expired",
    CertVariant.NOT_YET_VALID: "certificate is not yet valid",
    CertVariant.WRONG_HOST: "hostname mismatch",
    CertVariant.MISSING_INTERMEDIATE: "unable to get local issuer certificate",
    CertVariant.WEAK_KEY: "EE certificate key too weak",
}
BAD_VARIANTS = list(EXPECTED_VERIFY_ERROR)


@pytest.mark.parametrize("variant", BAD_VARIANTS, ids=lambda v: v.value)
def test_default_client_refuses_variant_with_exact_error(
    mail_server_factory: MailServerFactory, variant: CertVariant
) -> None:
    server = mail_server_factory(cert=variant)
    port = server.smtp.implicit.port
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        smtplib.SMTP_SSL("localhost", port, context=server.ca.client_context(), timeout=5).close()
    assert EXPECTED_VERIFY_ERROR[variant] in str(caught.value)


@pytest.mark.parametrize("variant", BAD_VARIANTS, ids=lambda v: v.value)
def test_insecure_context_accepts_variant(
    mail_server_factory: MailServerFactory, variant: CertVariant
) -> None:
    server = mail_server_factory(cert=variant)
    port = server.smtp.implicit.port
    context = MailCA.insecure_client_context()
    with smtplib.SMTP_SSL("localhost", port, context=context, timeout=5) as client:
        assert client.noop()[0] == 250
        code, _ = client.login("alice@example.test", "alice-password")
        assert code == 235


def test_trusted_leaf_verifies_by_name_and_by_ip(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory()
    port = server.smtp.implicit.port
    for host in ("localhost", "127.0.0.1"):
        with smtplib.SMTP_SSL(host, port, context=server.ca.client_context(), timeout=5) as c:
            assert c.noop()[0] == 250


@pytest.mark.parametrize(
    "variant", [v for v in CertVariant if v is not CertVariant.WRONG_HOST], ids=lambda v: v.value
)
def test_every_leaf_but_wrong_host_names_every_served_address(
    mail_ca: MailCA, variant: CertVariant
) -> None:
    """A leaf fails only for the reason its variant names: 127.0.0.2 (where Dovecot serves
    `starttls-required`) is as covered as localhost."""
    leaf = x509.load_pem_x509_certificate(mail_ca.server_cert(variant).chain_pem)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = sans.get_values_for_type(x509.DNSName)
    addresses = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert set(names + addresses) == set(SERVER_IDENTITIES)


def _s_client(port: int, ca_path: str) -> subprocess.CompletedProcess[str]:
    openssl = require_executable("openssl")
    return subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-verify_hostname", "localhost", "-verify_return_error", "-CAfile", ca_path,
         "-crlf", "-ign_eof"],
        input="QUIT\n", capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("variant", BAD_VARIANTS, ids=lambda v: v.value)
def test_openssl_s_client_refuses_variant(
    mail_server_factory: MailServerFactory, variant: CertVariant
) -> None:
    server = mail_server_factory(cert=variant)
    result = _s_client(server.smtp.implicit.port, str(server.ca.ca_path))
    assert result.returncode != 0
    assert EXPECTED_OPENSSL_ERROR[variant] in result.stdout + result.stderr


def test_openssl_s_client_accepts_trusted(mail_server_factory: MailServerFactory) -> None:
    server = mail_server_factory()
    result = _s_client(server.smtp.implicit.port, str(server.ca.ca_path))
    assert result.returncode == 0, result.stderr
    assert "Verify return code: 0 (ok)" in result.stdout
    assert "220 localhost ESMTP" in result.stdout
    assert "221 Bye" in result.stdout


def test_private_keys_are_0600_in_a_private_dir() -> None:
    with MailCA() as ca:
        cert = ca.server_cert("trusted")
        assert stat.S_IMODE(cert.key_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(ca.directory.stat().st_mode) == 0o700
        directory = ca.directory
    assert not directory.exists()


def test_the_private_dir_without_tempfile_is_made_as_mkdtemp_makes_it(tmp_path: Path) -> None:
    """`serve` makes the CA's dir before tempfile is imported: in $TMPDIR, 0700, a fresh
    unpredictable name each time; where $TMPDIR is unusable, tempfile picks as ever."""
    script = (
        "import json, os, stat, sys\n"
        "from mailharness.certs import MailCA\n"
        "made = []\n"
        "for _ in range(2):\n"
        "    with MailCA() as ca:\n"
        "        made.append([str(ca.directory), stat.S_IMODE(ca.directory.stat().st_mode)])\n"
        "    assert not ca.directory.exists()\n"
        "print(json.dumps([made, 'tempfile' in sys.modules]))\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    made, imported_tempfile = json.loads(out)
    assert not imported_tempfile
    assert [mode for _, mode in made] == [0o700, 0o700]
    names = [Path(path).name for path, _ in made]
    assert [Path(path).parent for path, _ in made] == [tmp_path, tmp_path]
    assert names[0] != names[1] and all(
        re.fullmatch(r"mailharness-certs-[0-9a-f]{16}", n) for n in names
    )
    env["TMPDIR"] = str(tmp_path / "missing")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    made, imported_tempfile = json.loads(out)
    assert imported_tempfile or Path(made[0][0]).parent == Path("/tmp")
    assert Path(made[0][0]).parent != tmp_path / "missing"


def test_missing_intermediate_sends_the_leaf_alone(mail_ca: MailCA) -> None:
    cert = mail_ca.server_cert("missing-intermediate")
    assert cert.chain_pem.count(b"BEGIN CERTIFICATE") == 1
    assert mail_ca.server_cert("trusted").chain_pem.count(b"BEGIN CERTIFICATE") == 1


def test_unknown_variant_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        CertVariant.parse("self-sigend")
    message = str(caught.value)
    assert message.startswith("cert='self-sigend': expected one of 'trusted', 'self-signed'")
    assert "did you mean 'self-signed'?" in message


def test_export_writes_every_variant(mail_ca: MailCA, tmp_path: object) -> None:
    from pathlib import Path

    target = mail_ca.export(Path(str(tmp_path)) / "certs")
    names = {p.name for p in target.iterdir()}
    assert "ca.pem" in names
    assert {f"{v.value}.crt" for v in CertVariant} <= names
    assert stat.S_IMODE((target / "trusted.key").stat().st_mode) == 0o600


def _handshake(server_ca: MailCA, client_ca: MailCA) -> str:
    """A TLS handshake over a socketpair: the server presents `trusted`, the client verifies."""
    import socket
    import threading

    server_ctx = server_ca.server_context("trusted")
    client_ctx = client_ca.client_context()
    left, right = socket.socketpair()
    with left, right:
        server = threading.Thread(
            target=lambda: server_ctx.wrap_socket(left, server_side=True).close()
        )
        server.start()
        try:
            with client_ctx.wrap_socket(right, server_hostname="localhost") as tls:
                return str(tls.version())
        finally:
            server.join(10)


def test_cert_cache_keeps_the_ca_and_trusted_leaf_private(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "certs"
    with MailCA(cache=cache) as first:
        first_ca = first.ca_path.read_bytes()
        first.server_cert("trusted")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert sorted(p.name for p in cache.iterdir()) == [
        "ca.key", "ca.pem", "trusted.crt", "trusted.key",
    ]  # fmt: skip
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cache.iterdir())
    with MailCA(cache=cache) as second, MailCA() as fresh:
        assert second.ca_path.read_bytes() == first_ca
        assert fresh.ca_pem != first_ca
        # The cached leaf chains to the cached CA, and so does a leaf issued from it later.
        assert _handshake(second, second).startswith("TLS")
        expired = second.server_cert("expired")
        issuer = x509.load_pem_x509_certificate(expired.chain_pem).issuer
        assert issuer == x509.load_pem_x509_certificate(first_ca).subject


def test_a_cached_ca_is_served_without_importing_trustme(tmp_path: Path) -> None:
    cache = tmp_path / "certs"
    with MailCA(cache=cache) as ca:
        ca.server_cert("trusted")  # fills the cache
    script = (
        "import sys\n"
        "from mailharness.certs import MailCA\n"
        f"with MailCA(cache={str(cache)!r}) as ca:\n"
        "    ca.ca_path, ca.server_context('trusted')\n"
        "print(sorted(m for m in ('trustme', 'cryptography') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_a_cert_cache_open_to_others_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "certs"
    with MailCA(cache=cache) as ca:
        original = ca.ca_pem
    cache.chmod(0o755)
    with MailCA(cache=cache) as ca:
        assert ca.ca_pem != original  # not trusted: a new CA, and the cache left as it was
        assert _handshake(ca, ca).startswith("TLS")
    assert (cache / "ca.pem").read_bytes() == original


def test_a_leaf_is_written_beside_its_ca() -> None:
    """The CA is made lazily, but a directory with a leaf always holds the CA to trust
    (servers/dovecot/compose.py copies the directory for QA)."""
    with MailCA() as ca:
        assert list(ca.directory.iterdir()) == []  # nothing made yet: no TLS, no cost
        ca.server_cert("expired")
        assert {p.name for p in ca.directory.iterdir()} == {"ca.pem", "expired.crt", "expired.key"}


def test_a_cert_cache_keeps_every_variant_so_cas_needs_no_trustme(tmp_path: Path) -> None:
    """`serve` publishes every CA (`cas()`), so it asks for every variant even with no TLS
    listener: with a cache that costs neither trustme nor a key (issue 13)."""
    cache = tmp_path / "certs"
    with MailCA(cache=cache) as first:
        made = {name: path.read_bytes() for name, path in first.cas().items()}
        leaves = {v.value: first.server_cert(v).chain_pem.decode() for v in CertVariant}
    assert stat.S_IMODE((cache / "variants.json").stat().st_mode) == 0o600
    script = (
        "import json, sys\n"
        "from mailharness.certs import CertVariant, MailCA\n"
        f"with MailCA(cache={str(cache)!r}) as ca:\n"
        "    cas = {name: path.read_text() for name, path in ca.cas().items()}\n"
        "    leaves = {v.value: ca.server_context(v) and ca.server_cert(v).chain_pem.decode()\n"
        "              for v in CertVariant}\n"
        "loaded = sorted(m for m in ('trustme', 'cryptography') if m in sys.modules)\n"
        "print(json.dumps([cas, leaves, loaded]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    cas, cached_leaves, loaded = json.loads(result.stdout)
    assert loaded == []
    assert cas == {name: pem.decode() for name, pem in made.items()}
    assert cached_leaves == leaves


def test_cached_variants_are_remade_when_old_or_of_another_ca(tmp_path: Path) -> None:
    """`not-yet-valid` must never turn valid in a cache: a week-old set is made again."""
    cache = tmp_path / "certs"
    with MailCA(cache=cache) as first:
        old = first.server_cert("not-yet-valid").chain_pem
    state = json.loads((cache / "variants.json").read_text())
    state["made"] -= 8 * 24 * 3600
    (cache / "variants.json").write_text(json.dumps(state))
    with MailCA(cache=cache) as second:
        renewed = second.server_cert("not-yet-valid").chain_pem
        assert renewed != old
        leaf = x509.load_pem_x509_certificate(renewed)
        assert leaf.not_valid_before_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
        assert leaf.issuer == x509.load_pem_x509_certificate(second.ca_pem).subject
    assert json.loads((cache / "variants.json").read_text())["made"] > state["made"]
    state = json.loads((cache / "variants.json").read_text())
    with MailCA() as other:
        state["ca"] = other.ca_pem.decode()  # as if signed by a CA that lost the race
    (cache / "variants.json").write_text(json.dumps(state))
    with MailCA(cache=cache) as third:
        assert third.server_cert("not-yet-valid").chain_pem != renewed
