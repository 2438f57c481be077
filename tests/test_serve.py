"""`mailharness serve` as QA runs it: a separate process, fixed addresses, any backend,
real signals, activity on stderr. Readiness is always the `--json` line on stdout."""

from __future__ import annotations

import imaplib
import io
import json
import os
import queue
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from mailharness.serve import Activity

from tests.helpers import require_backend

SERVE = [sys.executable, "-m", "mailharness.cli", "serve", "--json"]
CTL = [sys.executable, "-m", "mailharness.cli", "ctl"]
# A loaded machine may take this long to start a serve (Dovecot) or print a line.
WAIT = 60.0


@dataclass
class Served:
    """A running serve: its first facts, and its stdout/stderr lines as they come."""

    process: subprocess.Popen[str]
    facts: dict[str, Any]
    stdout: queue.Queue[str | None] = field(default_factory=queue.Queue)
    stderr: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def endpoint(self, listener: str) -> tuple[str, int]:
        protocol, security = listener.split("/")
        for e in self.facts["endpoints"]:
            if e["protocol"] == protocol and e["security"] == security:
                return e["host"], e["port"]
        raise AssertionError(f"{listener} not served: {self.facts['endpoints']}")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.facts["ca_path"])

    def next_facts(self) -> dict[str, Any]:
        line = self.stdout.get(timeout=WAIT)
        assert line is not None, "serve exited"
        return json.loads(line)  # type: ignore[no-any-return]

    def stderr_until(self, wanted: str) -> list[str]:
        """stderr lines up to and including the first that contains `wanted`."""
        seen = []
        while True:
            line = self.stderr.get(timeout=WAIT)
            assert line is not None, f"serve exited before {wanted!r}; stderr: {seen}"
            seen.append(line)
            if wanted in line:
                return seen


def _pump(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    process = subprocess.Popen(
        [*SERVE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None and process.stderr is not None
    served = Served(process, {})
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, served.stdout), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, served.stderr), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        line = served.stdout.get(timeout=WAIT)
        if line is None:
            process.wait(WAIT)
            errors = []
            while (item := served.stderr.get(timeout=WAIT)) is not None:
                errors.append(item)
            raise AssertionError(f"serve exited {process.returncode}: {errors}")
        served.facts = json.loads(line)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(WAIT)
        for pump in pumps:
            pump.join(WAIT)
        process.stdout.close()
        process.stderr.close()


def stop(served: Served) -> int:
    served.process.send_signal(signal.SIGTERM)
    return served.process.wait(WAIT)


def imap_login(served: Served, listener: str = "imap/implicit") -> bytes:
    """Log in as alice over TLS with imaplib; the tagged reply's text."""
    host, port = served.endpoint(listener)
    with imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10) as imap:
        typ, data = imap.login("alice@example.test", "alice-password")
        assert typ == "OK"
        return data[0]


def listening_ports(pid: int) -> set[int]:
    """Every TCP port the process listens on (from /proc: its sockets in LISTEN state)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def port_base() -> int:
    """A base below the kernel's ephemeral range, different per test process."""
    return 20000 + (os.getpid() % 800) * 10


# --- 1. addresses ---------------------------------------------------------------------------
def test_port_base_gives_the_same_addresses_every_run() -> None:
    base = port_base()
    runs = []
    for _ in range(2):
        with serve("--port-base", str(base), "--quiet") as served:
            runs.append(
                sorted((e["protocol"], e["security"], e["port"]) for e in served.facts["endpoints"])
            )
            imap_login(served)
            assert stop(served) == 0
    assert (
        runs[0]
        == runs[1]
        == [
            ("imap", "implicit", base + 2),
            ("imap", "starttls", base + 1),
            ("smtp", "implicit", base + 5),
            ("smtp", "starttls", base + 4),
        ]
    )


def test_every_listener_opened_is_reported_fronts_included(tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    with serve("--scenario", "tls10-only", "--quiet", "--api", "--state-file", state) as served:
        facts = served.facts
        reported = {e["port"] for e in facts["endpoints"]}
        internal = {e["port"] for e in facts["internal_listeners"]}
        api = int(facts["api"]["url"].rsplit(":", 1)[1])
        assert internal, "a TLS-pinning front forwards to a plain listener: reported as internal"
        assert listening_ports(served.process.pid) == reported | internal | {api}
        assert all(e["role"] for e in facts["internal_listeners"])


def test_port_flag_host_and_toml_serve_table(tmp_path: Path) -> None:
    base = port_base()
    scenario = tmp_path / "acme.toml"
    scenario.write_text(
        'base = "healthy"\ncert = "trusted"\n\n'
        f'[serve]\nhost = "127.0.0.2"\nport_base = {base}\n'
        f'ports = {{ "smtp/starttls" = {base + 9} }}\n\n'
        "[smtp]\nsize_limit = 1000000\n"
    )
    with serve(
        "--scenario", str(scenario), "--port", f"imap/implicit={base + 8}", "--quiet"
    ) as served:
        assert served.facts["scenario"] == "acme"
        assert served.facts["host"] == "127.0.0.2"
        assert served.endpoint("imap/implicit") == ("127.0.0.2", base + 8)  # the flag wins
        assert served.endpoint("smtp/starttls") == ("127.0.0.2", base + 9)  # the file's port
        assert served.endpoint("imap/starttls") == ("127.0.0.2", base + 1)  # the file's base
        assert imap_login(served)


def test_ipv6_loopback(tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    with serve("--host", "::1", "--quiet", "--api", "--state-file", state) as served:
        assert served.endpoint("imap/implicit")[0] == "::1"
        assert imap_login(served)
        assert served.facts["api"]["url"].startswith("http://[::1]:")
        assert api_call(served, "GET", "/status")[1]["host"] == "::1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--host", "10.0.0.1"],
            "host='10.0.0.1': expected a loopback address (127.0.0.0/8 or ::1)",
        ),
        (["--port", "imap/imlicit=1"], "port listener='imap/imlicit': expected one of"),
        (["--port", "imap/implicit"], "--port 'imap/implicit': expected LISTENER=PORT"),
        (["--fronts", "imap/al"], "fronts='imap/al': expected one of"),
    ],
)
def test_bad_addresses_are_refused_with_the_field(args: list[str], message: str) -> None:
    result = subprocess.run(
        [*SERVE, *args], capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_bad_serve_table_names_the_field(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[serve]\nport_bse = 10000\n")
    result = subprocess.run(
        [*SERVE, "--scenario", str(scenario)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    assert "[serve] field='port_bse': expected one of 'host', 'port_base'" in result.stderr


# --- 2. backends ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["dovecot", "docker"])
def test_backend_serves_healthy_over_tls(backend: str) -> None:
    require_backend(backend)
    with serve("--backend", backend, "--quiet") as served:
        assert served.facts["backend"] == backend
        assert served.facts["scenario"] == "healthy"
        assert imap_login(served)
        for listener in ("imap/starttls", "smtp/starttls", "smtp/implicit"):
            served.endpoint(listener)
        roles = {e["role"] for e in served.facts["internal_listeners"]}
        assert "relay: Dovecot's submission relays mail here" in roles


def test_backend_with_fixed_ports_fronts_dovecot(tmp_path: Path) -> None:
    require_backend("dovecot")
    base = port_base()
    state = str(tmp_path / "state.json")
    args = ("--backend", "dovecot", "--port-base", str(base), "--api", "--state-file", state)
    with serve(*args, "--quiet") as served:
        assert served.endpoint("imap/implicit")[1] == base + 2
        assert served.facts["api"]["url"].endswith(f":{base + 6}")
        assert imap_login(served)
        assert (
            api_call(served, "PUT", "/faults/imap/implicit", {"faults": [{"kind": "refuse"}]})[0]
            == 200
        )
        with pytest.raises(ConnectionRefusedError):
            imap_login(served)
        status, body = api_call(served, "PATCH", "/settings/imap", {"backend_maintenance": True})
        assert status == 409 and body["error"].startswith("not applicable:")
        assert {e["role"] for e in served.facts["internal_listeners"]} >= {
            "relay: Dovecot's submission relays mail here"
        }


# --- 3. live control ------------------------------------------------------------------------
def ctl(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTL, "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def api_call(
    served: Served, method: str, path: str, body: object = None, token: str | None = None
) -> tuple[int, Any]:
    api = served.facts["api"]
    request = urllib.request.Request(
        api["url"] + path, data=None if body is None else json.dumps(body).encode(), method=method
    )
    request.add_header("Authorization", f"Bearer {api['token'] if token is None else token}")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_a_fault_switched_by_ctl_changes_the_next_login(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with serve(
        "--api", "--fronts", "imap/implicit", "--state-file", str(state), "--quiet"
    ) as served:
        assert oct(state.stat().st_mode & 0o777) == "0o600"
        assert json.loads(state.read_text())["token"] == served.facts["api"]["token"]
        assert imap_login(served)
        switched = ctl(state, "fault", "imap/implicit", "refuse")
        assert switched.returncode == 0, switched.stderr
        assert json.loads(switched.stdout)["imap/implicit"] == [{"kind": "refuse"}]
        with pytest.raises(ConnectionRefusedError):
            imap_login(served)
        assert ctl(state, "clear", "imap/implicit").returncode == 0
        assert imap_login(served)
        bad = ctl(state, "fault", "imap/implicit", "latency", "ms=fast")
        assert bad.returncode == 1
        assert "faults[0] (latency).ms='fast': expected a number" in bad.stderr
        message = tmp_path / "m.eml"
        message.write_text("Subject: from ctl\n\nhello\n")
        delivered = ctl(state, "deliver", "alice@example.test", str(message))
        assert json.loads(delivered.stdout)["uid"] == 1, delivered.stderr
        host, port = served.endpoint("imap/implicit")
        with imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10) as imap:
            imap.login("alice@example.test", "alice-password")
            assert imap.select("INBOX") == ("OK", [b"1"])
        unfronted = ctl(state, "fault", "smtp/implicit", "refuse")
        assert "serve with --fronts smtp/implicit" in unfronted.stderr
        assert stop(served) == 0
    assert not state.exists(), "the state file goes with the serve"


def test_raw_http_switches_change_the_next_login(tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    with serve("--api", "--state-file", state, "--quiet") as served:
        status, body = api_call(served, "PATCH", "/settings/imap", {"backend_maintenance": True})
        assert status == 200 and body["backend_maintenance"] is True
        with pytest.raises(imaplib.IMAP4.error, match="backend down for maintenance"):
            imap_login(served)
        assert api_call(served, "POST", "/reset")[0] == 200
        assert imap_login(served)

        status, body = api_call(
            served, "PATCH", "/users/alice@example.test", {"password": "new-secret"}
        )
        assert status == 200
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap_login(served)
        api_call(served, "POST", "/reset")
        assert api_call(served, "PUT", "/auth-outage", {"on": True})[0] == 200
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            imap_login(served)
        api_call(served, "PUT", "/auth-outage", {"on": False})
        assert imap_login(served)

        assert api_call(served, "PATCH", "/users/alice@example.test", {"disabled": True})[0] == 200
        with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED|disabled"):
            imap_login(served)
        api_call(served, "PATCH", "/users/alice@example.test", {"disabled": False})
        quota = {"storage_bytes": None, "messages": 0}
        assert api_call(served, "PUT", "/users/alice@example.test/quota", quota)[0] == 200
        host, port = served.endpoint("imap/implicit")
        with imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10) as imap:
            imap.login("alice@example.test", "alice-password")
            typ, data = imap.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")
            assert typ == "NO" and b"OVERQUOTA" in data[0]
        host, port = served.endpoint("smtp/implicit")
        with smtplib.SMTP_SSL(host, port, context=served.context(), timeout=10) as smtp:
            smtp.login("bob@example.test", "bob-password")
            smtp.sendmail(
                "bob@example.test", ["carol@example.test"], b"Subject: kept\r\n\r\nhi\r\n"
            )
        [captured] = api_call(served, "GET", "/messages")[1]
        assert captured["subject"] == "kept" and captured["login"] == "bob@example.test"
        assert "hi" in api_call(served, "GET", "/messages/0")[1]["data"]

        status, body = api_call(served, "PATCH", "/accounts", {"lockout": {"max_failures": "3"}})
        assert (status, body["error"]) == (400, "lockout.max_failures='3': expected an integer")
        rate = {"login_rate": {"count": 1, "per_seconds": 600}}
        assert api_call(served, "PATCH", "/accounts", rate)[1]["login_rate"]["count"] == 1
        assert imap_login(served)
        with pytest.raises(imaplib.IMAP4.error):
            imap_login(served)  # the second login within the window
        api_call(served, "PATCH", "/accounts", {"login_rate": None})

        sessions = api_call(served, "GET", "/sessions")[1]
        assert any(login["succeeded"] for s in sessions for login in s["logins"])
        imap_id = next(x["id"] for x in sessions if x["protocol"] == "imap" and x["logins"])
        transcript = api_call(served, "GET", f"/sessions/{imap_id}")[1]
        assert "LOGIN alice@example.test ****" in transcript["text"]
        seeded = {"message": "Subject: seeded\r\n\r\nhello\r\n"}
        assert api_call(served, "POST", "/mailboxes/bob@example.test", seeded)[1]["uid"] == 1
        mailboxes = api_call(served, "GET", "/mailboxes/bob@example.test")[1]
        inbox = mailboxes["mailboxes"][0]
        assert inbox["name"] == "INBOX" and inbox["messages"][0]["subject"] == "seeded"
        carol = {"address": "carol@example.test", "password": "carol-password"}
        assert api_call(served, "POST", "/users", carol)[0] == 200
        host, port = served.endpoint("imap/implicit")
        with imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10) as imap:
            assert imap.login("carol@example.test", "carol-password")[0] == "OK"


def test_ctl_finds_the_api_by_url_token_or_environment(tmp_path: Path) -> None:
    state = tmp_path / "elsewhere.json"
    with serve("--api", "--quiet", env={"MAILHARNESS_STATE": str(state)}) as served:
        api = served.facts["api"]
        assert api["state_file"] == str(state)
        by_env = subprocess.run(
            [*CTL, "status"], capture_output=True, text=True, timeout=WAIT, check=False,
            env={**os.environ, "MAILHARNESS_STATE": str(state)},
        )  # fmt: skip
        assert by_env.returncode == 0, by_env.stderr
        assert json.loads(by_env.stdout)["pid"] == served.process.pid
        by_url = subprocess.run(
            [*CTL, "--url", api["url"], "--token", api["token"], "maintenance", "on"],
            capture_output=True, text=True, timeout=WAIT, check=False,
        )  # fmt: skip
        assert by_url.returncode == 0, by_url.stderr
        assert json.loads(by_url.stdout) == {"maintenance": True}
        with pytest.raises(imaplib.IMAP4.error, match="maintenance"):
            imap_login(served)
        # --state and a switch's on/off are two arguments, not one.
        by_flag = subprocess.run(
            [*CTL, "--state", str(state), "maintenance", "off"],
            capture_output=True, text=True, timeout=WAIT, check=False,
        )  # fmt: skip
        assert by_flag.returncode == 0, by_flag.stderr
        assert json.loads(by_flag.stdout) == {"maintenance": False}
        imap_login(served)
    missing = ctl(tmp_path / "none.json", "status")
    assert (
        missing.returncode == 2 and "no running `mailharness serve --api` found" in missing.stderr
    )


def test_api_refuses_bad_requests_with_the_field(tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    with serve("--api", "--state-file", state, "--quiet") as served:
        assert api_call(served, "GET", "/status", token="wrong")[0] == 401
        status, body = api_call(served, "PUT", "/maintenance", {"on": "yes"})
        assert (status, body["error"]) == (400, "on='yes': expected true or false")
        status, body = api_call(served, "PATCH", "/settings/smtp", {"send_rate": 30})
        assert (
            status == 400
            and "smtp.send_rate=30: expected an object with count, per_seconds or null"
            in body["error"]
        )
        status, body = api_call(served, "PATCH", "/settings/imap", {"maintenence": True})
        assert (
            status == 400
            and "field='maintenence'" in body["error"]
            and "'maintenance'" in body["error"]
        )
        status, body = api_call(
            served, "PUT", "/faults/imap/implicit", {"faults": [{"kind": "latncy"}]}
        )
        assert status == 400 and "kind='latncy': expected one of" in body["error"]
        assert api_call(served, "GET", "/nowhere")[0] == 404
        status, body = api_call(served, "DELETE", "/faults/imap%2Fimplicit")
        assert (
            status == 409
            and "listener='imap/implicit': not served through a fault front" in body["error"]
        )
        status, body = api_call(
            served, "PATCH", "/settings/smtp", {"send_rate": {"count": 1, "per_seconds": 60}}
        )
        assert status == 200 and body["send_rate"] == {"count": 1, "per_seconds": 60.0}

        with urllib.request.urlopen(
            served.facts["api"]["url"] + "/openapi.json", timeout=WAIT
        ) as reply:
            spec = json.loads(reply.read())
        assert spec["openapi"].startswith("3.")
        assert {
            "/faults/{listener}",
            "/settings/{protocol}",
            "/users/{login}",
            "/sessions/{id}",
        } <= set(spec["paths"])


# --- 4. signals -----------------------------------------------------------------------------
def test_sigusr_does_not_kill_and_sighup_reloads_a_file(tmp_path: Path) -> None:
    scenario = tmp_path / "acme.toml"
    scenario.write_text('base = "healthy"\ncert = "trusted"\n')
    state = str(tmp_path / "state.json")
    with serve("--scenario", str(scenario), "--api", "--state-file", state) as served:
        first = served.facts
        served.process.send_signal(signal.SIGUSR1)
        assert "status: scenario 'acme' up" in served.stderr_until("status:")[-1]
        served.process.send_signal(signal.SIGUSR2)
        served.stderr_until("SIGUSR2 ignored")
        scenario.write_text('base = "healthy"\ncert = "expired"\n')
        served.process.send_signal(signal.SIGHUP)
        second = served.next_facts()
        assert (first["cert"], second["cert"]) == ("trusted", "expired")
        assert second["endpoints"] == first["endpoints"], "a reload keeps the addresses"
        assert second["api"] == first["api"]
        assert api_call(served, "GET", "/status")[1]["cert"] == "expired", "the API follows"
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            imap_login(served)
        scenario.write_text('base = "healthy"\ncert = "expird"\n')
        served.process.send_signal(signal.SIGHUP)
        assert "expird" in served.stderr_until("not reloaded")[-1]
        assert served.process.poll() is None
        served.process.send_signal(signal.SIGINT)
        assert served.process.wait(WAIT) == 0


def test_sighup_on_a_catalog_scenario_resets_it() -> None:
    with serve() as served:
        served.process.send_signal(signal.SIGHUP)
        assert "catalog scenario: state reset and re-applied" in served.stderr_until("SIGHUP")[-1]
        assert imap_login(served)


# --- 5. activity ----------------------------------------------------------------------------
def test_activity_lines_for_each_session_event() -> None:
    with serve("--scenario", "tls12-only") as served:
        assert imap_login(served)
        lines = served.stderr_until("login alice@example.test")
        text = "\n".join(lines)
        assert "connect from 127.0.0.1:" in text
        assert "TLS established (TLSv1.2" in text
        assert "login alice@example.test (LOGIN, TLS ended at the front) ok" in lines[-1]
        host, port = served.endpoint("smtp/implicit")
        with smtplib.SMTP_SSL(host, port, context=served.context(), timeout=10) as smtp:
            smtp.login("alice@example.test", "alice-password")
            smtp.sendmail(
                "alice@example.test", ["bob@example.test"], b"Subject: seen\r\n\r\nhi\r\n"
            )
        captured = served.stderr_until("mail captured")[-1]
        assert "from <alice@example.test> to <bob@example.test>" in captured
        assert "subject 'seen'" in captured


def test_activity_shows_the_faults_applied(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.toml"
    scenario.write_text(
        '[[imap.faults]]\nlistener = "imap/implicit"\nkind = "slow-greeting"\nseconds = 0.01\n'
    )
    with serve("--scenario", str(scenario)) as served:
        assert imap_login(served)
        assert "fault: SlowGreeting(seconds=0.01" in served.stderr_until("fault:")[-1]


def test_activity_shows_wrong_passwords_and_quiet_silences_it() -> None:
    with serve() as served:
        host, port = served.endpoint("imap/implicit")
        with imaplib.IMAP4_SSL(host, port, ssl_context=served.context(), timeout=10) as imap:
            with pytest.raises(imaplib.IMAP4.error):
                imap.login("alice@example.test", "wrong")
        line = served.stderr_until("login alice@example.test")[-1]
        assert "failed: " in line and "AUTHENTICATIONFAILED" in line
    with serve("--quiet") as served:
        assert imap_login(served)
        assert stop(served) == 0
        rest = []
        while (item := served.stderr.get(timeout=WAIT)) is not None:
            rest.append(item)
        assert not [line for line in rest if "login" in line or "connect" in line], rest


# --- 6. certificates ------------------------------------------------------------------------
def test_certs_dir_holds_every_ca_to_trust(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    with serve("--scenario", "cert-unknown-ca", "--certs-dir", str(certs), "--quiet") as served:
        cas = served.facts["cas"]
        assert set(cas) == {"harness", "unknown-ca", "missing-intermediate", "self-signed"}
        assert all(Path(p).parent == certs and Path(p).is_file() for p in cas.values())
        with pytest.raises(ssl.SSLCertVerificationError):
            imap_login(served)
        host, port = served.endpoint("imap/implicit")
        trusting = ssl.create_default_context(cafile=cas["unknown-ca"])
        with imaplib.IMAP4_SSL(host, port, ssl_context=trusting, timeout=10) as imap:
            assert imap.login("alice@example.test", "alice-password")[0] == "OK"
    assert (certs / "unknown-ca.issuer.pem").is_file()


# --- 7. human output ------------------------------------------------------------------------
def test_human_output_states_cert_personality_faults_and_own_expectation(tmp_path: Path) -> None:
    scenario = tmp_path / "acme.toml"
    scenario.write_text(
        'base = "tls12-only"\ncert = "unknown-ca"\npersonality = "outlook"\n'
        '[[imap.faults]]\nlistener = "imap/implicit"\nkind = "latency"\nms = 5\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mailharness.cli", "serve", "--scenario", str(scenario), "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        text = "".join(lines)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
        if process.stdout:
            process.stdout.close()
    assert "serving scenario 'acme'" in text
    assert "based on 'tls12-only'" in text
    assert "certificate: unknown-ca (signed by another CA" in text
    assert "personality: outlook" in text
    assert "imap/implicit: tls-version(version='tls1.2'" in text
    assert "latency(ms=5" in text
    assert "issuer for unknown-ca: " in text
    assert "a correct client sees: not stated by acme.toml" in text


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, message in (
            (["--port", f"imap/implicit={port}"], f"(ports: imap/implicit={port})"),
            (["--api", str(port), "--state-file", str(tmp_path / "s.json")], f"--api port {port}"),
        ):
            result = subprocess.run(
                [*SERVE, *args], capture_output=True, text=True, timeout=WAIT, check=False
            )
            assert result.returncode == 2 and not result.stdout
            assert message in result.stderr and "Address already in use" in result.stderr


class _StuckStream(io.StringIO):
    """A stderr nobody reads: every write waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(WAIT)
        return super().write(text)


def test_activity_never_blocks_the_server_on_a_stuck_stderr() -> None:
    stream = _StuckStream()
    activity = Activity(stream, max_queued=3).start()
    try:
        for n in range(10):  # returns at once although nothing can be written
            activity.line(f"event {n}")
        assert activity.dropped >= 6
    finally:
        stream.release.set()
        activity.stop()
    written = stream.getvalue()
    assert "event 0" in written and "activity lines dropped: stderr was slow" in written


class _CountingStream(io.StringIO):
    """A stderr that counts the writes it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_activity_writes_lines_in_order_and_in_batches() -> None:
    """The writer takes what waits in one write: not a wake-up and a write per line."""
    stream = _CountingStream()
    activity = Activity(stream).start()
    for n in range(200):
        activity.line(f"event {n}")
    activity.stop()
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [f"event {n}" for n in range(200)]
    assert stream.writes < 100  # print() writes the text and its newline: 2 per batch
