"""`mailharness serve`, run as a user runs it: a separate process, real signals."""

from __future__ import annotations

import imaplib
import json
import os
import signal
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.leakcheck import assert_stopped_listening, listening_sockets

SERVE = [sys.executable, "-m", "mailharness.cli", "serve"]


@pytest.fixture
def serve_json() -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    process = subprocess.Popen(
        [*SERVE, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # readiness: the first line is printed once serving
        assert line, process.stderr.read() if process.stderr else ""
        yield process, json.loads(line)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def test_serve_json_then_send_then_sigint(
    serve_json: tuple[subprocess.Popen[str], dict[str, object]],
) -> None:
    process, facts = serve_json
    assert facts["scenario"] == "healthy"
    assert facts["pid"] == process.pid
    endpoints = facts["endpoints"]
    assert isinstance(endpoints, list)
    assert {(e["protocol"], e["security"]) for e in endpoints} == {
        (protocol, security)
        for protocol in ("imap", "smtp")
        for security in ("starttls", "implicit")
    }
    assert all(e["host"] == "127.0.0.1" for e in endpoints)
    users = facts["users"]
    assert isinstance(users, list)
    alice, bob = users
    ca_path = Path(str(facts["ca_path"]))
    assert ca_path.is_file()

    starttls = next(e for e in endpoints if e["protocol"] == "smtp" and e["security"] == "starttls")
    context = ssl.create_default_context(cafile=str(ca_path))
    with smtplib.SMTP("localhost", starttls["port"], timeout=5) as client:
        client.starttls(context=context)
        client.login(alice["login"], alice["password"])
        client.sendmail(alice["address"], [bob["address"]], b"Subject: cli\r\n\r\nhi\r\n")

    imaps = next(e for e in endpoints if e["protocol"] == "imap" and e["security"] == "implicit")
    with imaplib.IMAP4_SSL("localhost", imaps["port"], ssl_context=context, timeout=5) as imap:
        imap.login(bob["login"], bob["password"])
        assert imap.select("INBOX") == ("OK", [b"1"])
        typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and b"Subject: cli" in data[0][1]

    listening = listening_sockets(e["port"] for e in endpoints)
    process.send_signal(signal.SIGINT)
    assert process.wait(15) == 0
    assert_stopped_listening(listening)
    assert not ca_path.exists(), "the private cert dir must be removed at exit"


def test_serve_stops_on_sigterm(
    serve_json: tuple[subprocess.Popen[str], dict[str, object]],
) -> None:
    process, _ = serve_json
    process.terminate()
    assert process.wait(15) == 0
    assert not Path(f"/proc/{process.pid}").exists()


def test_serve_human_summary_lists_listeners_users_and_ca() -> None:
    process = subprocess.Popen(SERVE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops."):
                break
        text = "".join(lines)
        assert "serving scenario 'healthy'" in text
        assert "SMTP  starttls  127.0.0.1:" in text
        assert "user alice@example.test  password: alice-password" in text
        assert "CA certificate to trust: " in text
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        if process.stdout:
            process.stdout.close()


def test_unknown_scenario_names_the_allowed_ones() -> None:
    result = subprocess.run(
        [*SERVE, "--scenario", "healty"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "scenario='healty': no such scenario (did you mean 'healthy'?)" in result.stderr


def test_certs_dir_is_kept_for_qa(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    process = subprocess.Popen(
        [*SERVE, "--json", "--certs-dir", str(certs)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        facts = json.loads(process.stdout.readline())
        assert facts["ca_path"] == os.fspath(certs / "ca.pem")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        if process.stdout:
            process.stdout.close()
    assert (certs / "ca.pem").is_file()


def test_serve_a_catalog_scenario_pins_tls_versions() -> None:
    process = subprocess.Popen(
        [*SERVE, "--scenario", "tls10-only", "--json"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        facts = json.loads(process.stdout.readline())
        assert facts["scenario"] == "tls10-only"
        imaps = next(
            e for e in facts["endpoints"] if e["protocol"] == "imap" and e["security"] == "implicit"
        )
        context = ssl.create_default_context(cafile=facts["ca_path"])
        with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
            imaplib.IMAP4_SSL("localhost", imaps["port"], ssl_context=context, timeout=5)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        if process.stdout:
            process.stdout.close()


def test_scenarios_lists_the_catalog() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailharness.cli", "scenarios", "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    names = {row["name"] for row in rows}
    assert {"healthy", "sslv3-only", "cert-expired", "quota-full", "ip-not-allowed"} <= names
    assert all(row["client_sees"] for row in rows)
    table = subprocess.run(
        [sys.executable, "-m", "mailharness.cli", "scenarios", "--family", "cert"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "cert-expired" in table and "certificate has expired" in table
    assert "tls10-only" not in table


def test_serve_uvloop_sends_and_fetches_as_asyncio_does() -> None:
    """`serve --uvloop` (uvloop when installed, else asyncio): the same replies."""
    process = subprocess.Popen(
        [*SERVE, "--scenario", "plaintext-only", "--uvloop", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        facts = json.loads(process.stdout.readline())
        ports = {e["protocol"]: e["port"] for e in facts["endpoints"]}
        with smtplib.SMTP("localhost", ports["smtp"], timeout=5) as client:
            client.login("alice@example.test", "alice-password")
            refused = client.sendmail(
                "alice@example.test", ["bob@example.test"], b"Subject: fast\r\n\r\nhi\r\n"
            )
            assert refused == {}
        with imaplib.IMAP4("localhost", ports["imap"], timeout=5) as imap:
            imap.login("bob@example.test", "bob-password")
            assert imap.select("INBOX") == ("OK", [b"1"])
            typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK" and b"Subject: fast" in data[0][1]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        if process.stdout:
            process.stdout.close()
