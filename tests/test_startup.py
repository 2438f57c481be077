"""Start-up imports only what the listeners need (issue 13: `serve` start -> greeting).

Each check runs in a fresh interpreter: what the test session imported is no evidence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


# What `mailharness serve` of a plaintext scenario must not load before its greeting, and
# the modules it loads only when a client or a flag asks for them.
SERVE_LAZY = (
    *HEAVY,
    "email",
    # tempfile brings random: the certificates' dir is made without it (harness/certs.py
    # `_private_temp_dir`). (shutil, bz2 and lzma come with argparse's help formatter.)
    "tempfile",
    "random",
    "mailharness.ctl",
    "mailharness.control",
    "mailharness.console",
    "mailharness.probe",
    "mailharness.matrix",
    "mailharness.servers.faults.front",
    "mailharness.servers.smtp.session",
    "mailharness.servers.imap.message_commands",
    "mailharness.servers.imap.message",
)

# Runs `mailharness serve` in the main thread (it installs signal handlers); a helper
# thread reads the JSON line, then the IMAP greeting over a raw socket, notes what is
# loaded by then, and stops the serve with SIGTERM.
_SERVE_SCRIPT = """
import io, json, os, signal, socket, sys, threading
lazy = {lazy!r}
class Lines(io.TextIOBase):
    def __init__(self):
        self.lines, self.ready = [], threading.Event()
    def write(self, text):
        self.lines.append(text)
        self.ready.set()
        return len(text)
out, loaded = Lines(), []
def client():
    out.ready.wait(60)
    facts = json.loads("".join(out.lines).splitlines()[0])
    imap = next(e for e in facts["endpoints"] if e["protocol"] == "imap")
    with socket.create_connection((imap["host"], imap["port"]), timeout=30) as sock:
        assert sock.makefile("rb").readline().startswith(b"* OK ")
    loaded.extend(m for m in lazy if m in sys.modules)
    from mailharness.deferred import SERVE_DEFERRED, deferred
    loaded.extend(m for m in SERVE_DEFERRED if not deferred(m))
    import gc
    if not gc.get_freeze_count():  # what serve loaded is frozen: collections skip it
        loaded.append("gc: nothing frozen")
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=client, daemon=True).start()
sys.stdout = out
from mailharness.cli import main
code = main(["serve", "--scenario", {scenario!r}, "--json", "--quiet"])
sys.stdout = sys.__stdout__
import gc
assert gc.get_freeze_count() == 0, "thawed when serve returns"
print(json.dumps([code, loaded]))
"""


@pytest.mark.parametrize("scenario", ["imap-only.toml", "plaintext-only"])
def test_serve_reaches_its_greeting_without_what_a_plaintext_listener_does_not_need(
    scenario: str, tmp_path: Path
) -> None:
    """The CLI path itself (cli -> serve -> catalog -> server), with the CA kept in its
    cache as `serve` does by default: no certificate library, no SMTP engine before an
    SMTP client, no control API, console, probe, fault front or command modules; and
    the standard modules `serve` defers (harness/deferred.py) still not run."""
    if scenario.endswith(".toml"):
        path = tmp_path / scenario
        path.write_text('base = "plaintext-only"\n[smtp]\nenabled = false\n')
        scenario = str(path)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    fill = "from mailharness.certs import MailCA, default_cache_dir\n"
    fill += "with MailCA(cache=default_cache_dir()) as ca:\n    ca.cas()\n"
    subprocess.run([sys.executable, "-c", fill], env=env, check=True, timeout=60)
    script = _SERVE_SCRIPT.format(lazy=SERVE_LAZY, scenario=scenario)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    code, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert (code, loaded) == (0, [])
