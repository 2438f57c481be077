"""compose/docker-compose.yml, generated from the catalog: up, connect, down.

The compose file is made from the scenario catalog (servers/dovecot/compose.py); a
test keeps the committed file equal to what the catalog makes. The live tests run a
copy of it in a temp dir (certs and generated configs there too), so the repository's
`certs/` and `compose/generated/` are never touched, with Debian's docker-compose (v1)
and, where installed, the `docker compose` plugin (v2). Services use fixed loopback
ports, so a file lock keeps two test sessions on one machine from running at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import imaplib
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from mailharness.catalog import CATALOG
from mailharness.dovecot_backend import dovecot_config
from mailharness.journeys import ClientProfile
from mailharness.servers.dovecot.compose import (
    COMPOSE_FILE,
    CONTAINER_BASE_DIR,
    LEFT_OUT,
    SERVICES,
    SERVICES_BY_NAME,
    ComposeService,
    ContainerCerts,
    compose_yaml,
    ensure_certs,
    generate,
    render_service,
)
from mailharness.servers.dovecot.engine import EngineInfo
from mailharness.servers.dovecot.image import ensure_image

from tests.helpers import require_executable

ALICE = ("alice@example.test", "alice-password")
# Dovecot greets ~0.2 s after `up -d` returns; plenty of slack for a loaded machine.
READY_TIMEOUT = 30.0


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    fd = os.open(
        Path(tempfile.gettempdir()) / "mailharness-compose-test.lock", os.O_CREAT | os.O_RDWR
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def await_listening(host: str, port: int) -> None:
    """Poll until the container's Dovecot accepts (it starts after `up -d` returns)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while port_free(host, port) is not False:
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {READY_TIMEOUT} s")
        time.sleep(0.05)


@contextlib.contextmanager
def relay_sink(port: int) -> Iterator[list[Envelope]]:
    """An SMTP sink on 127.0.0.1:`port`, the service's relay: yields what it received."""
    received: list[Envelope] = []

    class Keep:
        async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
            received.append(envelope)
            return "250 2.0.0 Ok: kept"

    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield received
    finally:
        controller.stop()


def compose_command(tool: str) -> list[str]:
    """`docker-compose` (v1) or `docker compose` (the v2 plugin), or a not-applicable skip."""
    if tool == "docker-compose":
        return [require_executable("docker-compose")]
    docker = require_executable("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("not applicable: the docker compose plugin (v2) is not installed here")
    return [docker, "compose"]


@contextlib.contextmanager
def compose_up(
    engine: EngineInfo, tmp_path: Path, service: ComposeService, tool: str = "docker-compose"
) -> Iterator[Path]:
    """`up -d` one service from a copy of the compose file; yields the certs dir; `down`."""
    command = compose_command(tool)
    image = ensure_image(engine.client())
    project = f"mailharness-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}"
    workdir = tmp_path / "compose"
    workdir.mkdir()
    shutil.copy(COMPOSE_FILE, workdir / "docker-compose.yml")
    certs = tmp_path / "certs"
    assert ensure_certs(certs)
    generate(workdir / "generated", [service])
    env = {**os.environ, "DOCKER_HOST": engine.docker_host, "MAILHARNESS_DOVECOT_IMAGE": image}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, "-p", project, *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    with machine_lock():
        busy = [p for p in service.ports.values() if not port_free(service.host, p)]
        if busy:
            pytest.fail(f"{service.host} ports {busy} are in use: is {service.name} already up?")
        up = run("up", "-d", service.name)
        try:
            assert up.returncode == 0, up.stderr
            for port in service.ports.values():
                await_listening(service.host, port)
            yield certs
        finally:
            down = run("down", "--volumes", "--remove-orphans")
        assert down.returncode == 0, down.stderr
    client = engine.client()
    try:
        left = client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
    finally:
        client.close()
    assert left == []
    assert all(port_free(service.host, p) for p in service.ports.values())


@pytest.mark.parametrize("tool", ["docker-compose", "docker compose"])
def test_compose_up_connect_over_tls_and_down(
    engine: EngineInfo, tmp_path: Path, tool: str
) -> None:
    service = SERVICES_BY_NAME["dovecot-healthy"]
    with compose_up(engine, tmp_path, service, tool) as certs:
        context = ssl.create_default_context(cafile=certs / "ca.pem")
        host, ports = service.host, service.ports
        with imaplib.IMAP4_SSL(host, ports["imaps"], ssl_context=context, timeout=10) as client:
            assert client.welcome.endswith(b"Dovecot ready.")
            assert client.login(*ALICE)[0] == "OK"
            assert client.select("INBOX") == ("OK", [b"0"])
            client.logout()
        # SMTP too: Dovecot's submission relays to the service's relay port, where QA runs
        # an SMTP sink; here a stock aiosmtpd one.
        relay_port = service.dovecot.submission_relay_port
        assert relay_port is not None
        with relay_sink(relay_port) as received:
            with smtplib.SMTP_SSL(host, ports["submissions"], context=context, timeout=10) as smtp:
                assert smtp.login(*ALICE)[0] == 235
                smtp.sendmail(ALICE[0], ["bob@example.test"], b"Subject: compose\r\n\r\nhi\r\n")
        assert [envelope.rcpt_tos for envelope in received] == [["bob@example.test"]]
        # No credentials before TLS, as the catalog's healthy (Dovecot listens on 127.0.0.2).
        with imaplib.IMAP4(host, ports["imap"], timeout=10) as plain:
            assert "LOGINDISABLED" in plain.capabilities
            plain.logout()


def test_tls10_only_service_speaks_tls_1_0_and_nothing_else(
    engine: EngineInfo, tmp_path: Path
) -> None:
    """As the catalog's tls10-only: TLS 1.0 works, TLS 1.2 is refused, IMAP and SMTP."""
    service = SERVICES_BY_NAME["dovecot-tls10-only"]
    with compose_up(engine, tmp_path, service) as certs:
        legacy = ClientProfile(tls="tls1.0-only").context(certs / "ca.pem")
        modern = ssl.create_default_context(cafile=certs / "ca.pem")
        host, ports = service.host, service.ports
        with imaplib.IMAP4_SSL(host, ports["imaps"], ssl_context=legacy, timeout=10) as client:
            assert client.login(*ALICE)[0] == "OK"
            assert client.sock.version() == "TLSv1"  # type: ignore[attr-defined]
            client.logout()
        relay_port = service.dovecot.submission_relay_port
        assert relay_port is not None
        with (
            relay_sink(relay_port),
            smtplib.SMTP_SSL(host, ports["submissions"], context=legacy, timeout=10) as smtp,
        ):
            assert smtp.login(*ALICE)[0] == 235
        for port in (ports["imaps"], ports["submissions"]):
            # Dovecot's OpenSSL ends the handshake (an alert or a bare close): refused.
            with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|UNEXPECTED_EOF"):
                with socket.create_connection((host, port), timeout=10) as raw:
                    modern.wrap_socket(raw, server_hostname=host).close()


def test_compose_file_is_generated_from_the_catalog() -> None:
    assert COMPOSE_FILE.read_text() == compose_yaml(), (
        "run: python -m mailharness.servers.dovecot.compose compose"
    )


def test_every_dovecot_scenario_is_a_service_or_says_why_not() -> None:
    proven = [s.name for s in CATALOG.values() if "docker" in s.backends]
    served = [service.scenario for service in SERVICES]
    assert sorted(served + list(LEFT_OUT)) == sorted(proven)
    assert all(LEFT_OUT.values())
    for name in ("healthy", "tls10-only", "cert-expired", "plaintext-only"):
        assert f"dovecot-{name}" in SERVICES_BY_NAME


def test_a_service_is_what_the_docker_backend_runs_for_its_scenario() -> None:
    """One source: the service's Dovecot is the docker backend's for that scenario."""
    for service in SERVICES:
        scenario = CATALOG[service.scenario]
        if scenario.config.faults:
            continue  # a TLS pin: the front's job under MailServer, OpenSSL's here
        expected = dovecot_config(
            scenario.config,
            ContainerCerts(),  # type: ignore[arg-type]
            service.dovecot.submission_relay_port,
        )
        got = service.dovecot
        assert (got.host, got.users, got.disable_plaintext_auth, got.ssl) == (
            expected.host,
            expected.users,
            expected.disable_plaintext_auth,
            expected.ssl,
        ), service.name
        assert (got.submission, got.submissions) == (expected.submission, expected.submissions)
    tls10 = SERVICES_BY_NAME["dovecot-tls10-only"].dovecot
    assert (tls10.ssl_min_protocol, tls10.ssl_max_protocol) == ("TLSv1", "TLSv1")


def test_compose_file_lists_every_generated_service() -> None:
    compose = require_executable("docker-compose")
    result = subprocess.run(
        [compose, "-f", str(COMPOSE_FILE), "config", "--services"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == [service.name for service in SERVICES]


def test_generated_configs_listen_on_loopback_fixed_ports() -> None:
    seen_ports: set[int] = set()
    for service in SERVICES:
        text = render_service(service)
        assert f"\nlisten = {service.host}\n" in text
        assert service.host in ("127.0.0.1", "127.0.0.2")
        assert f"\nbase_dir = {CONTAINER_BASE_DIR}\n" in text
        for port in service.ports.values():
            assert f"port = {port}\n" in text
            assert port not in seen_ports
            seen_ports.add(port)
    assert "ssl_cert = </certs/expired.crt" in render_service(
        SERVICES_BY_NAME["dovecot-cert-expired"]
    )
    assert "ssl_min_protocol = TLSv1\n" in render_service(SERVICES_BY_NAME["dovecot-tls10-only"])


def test_generate_writes_users_openssl_cap_and_ignores_itself(tmp_path: Path) -> None:
    generate(
        tmp_path,
        [SERVICES_BY_NAME["dovecot-plaintext-only"], SERVICES_BY_NAME["dovecot-tls10-only"]],
    )
    root = tmp_path / "dovecot-plaintext-only"
    assert (tmp_path / ".gitignore").read_text().splitlines()[-1] == "*"
    assert "ssl = no" in (root / "dovecot.conf").read_text()
    line = (root / "users" / "alice@example.test").read_text()
    assert line.startswith("alice@example.test:{PLAIN}alice-password:65534:65534::")
    assert (root / "mail").stat().st_mode & 0o1777 == 0o1777
    cap = (tmp_path / "dovecot-tls10-only" / "openssl.cnf").read_text()
    assert "MaxProtocol = TLSv1\n" in cap
