"""Start-up imports only what the listeners need (issue 13: `serve` start -> greeting).

Each check runs in a fresh interpreter: what the test session imported is no evidence.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tlslite", "trustme", "cryptography", "aiosmtpd", "docker", "imaplib", "smtplib")


def _loaded_after(script: str) -> set[str]:
    code = (
        script
        + f"\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_cli_and_catalog_import_no_tls_smtp_or_client_library() -> None:
    assert _loaded_after("import mailharness.cli, mailharness") == set()


def test_a_plaintext_imap_server_loads_no_tls_or_smtp_engine() -> None:
    script = """
from mailharness.server import MailConfig, MailServer
from mailharness.servers.imap import IMAPSettings
from mailharness.servers.listeners import Security
config = MailConfig(
    smtp=None,
    imap=IMAPSettings(plaintext_auth_requires_tls=False),
    imap_listeners=(Security.NONE,),
)
with MailServer(config) as server:
    server.imap.get(Security.NONE)
"""
    assert _loaded_after(script) == set()


def test_tls_loads_trustme_when_served_and_smtp_loads_aiosmtpd_at_its_first_client() -> None:
    script = """
from mailharness.catalog import scenario
from mailharness.server import MailServer
with MailServer(scenario("healthy").config) as server:
    pass
"""
    assert _loaded_after(script) == {"trustme", "cryptography"}
    # A raw socket reads the greeting: smtplib is one of the modules checked.
    script = """
import socket
from mailharness.catalog import scenario
from mailharness.server import MailServer
with MailServer(scenario("plaintext-only").config) as server:
    with socket.create_connection(server.smtp.none.address, timeout=30) as sock:
        assert sock.makefile("rb").readline().startswith(b"220 ")
"""
    assert _loaded_after(script) == {"aiosmtpd"}


def test_a_pinned_tls_version_loads_tlslite_only_for_sslv3() -> None:
    script = """
from mailharness.catalog import scenario
from mailharness.server import MailServer
with MailServer(scenario("tls10-only").config) as server:
    pass
"""
    assert "tlslite" not in _loaded_after(script)
