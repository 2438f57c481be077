"""compose/docker-compose.yml with Debian's docker-compose (v1): up, connect over TLS, down.

The test runs a copy of the compose file in a temp dir (certs and generated
configs there too), so the repository's `certs/` and `compose/generated/` are
never touched. Services use fixed loopback ports, so a file lock keeps two test
sessions on one machine from running it at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailharness.servers.dovecot.compose import (
    CONTAINER_BASE_DIR,
    SERVICES,
    SERVICES_BY_NAME,
    generate,
    render_service,
)
from mailharness.servers.dovecot.engine import EngineInfo
from mailharness.servers.dovecot.image import ensure_image

from tests.helpers import require_executable

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
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


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def await_greeting(port: int, ca_file: Path) -> bytes:
    context = ssl.create_default_context(cafile=ca_file)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    return sock.recv(4096)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_compose_up_connect_over_tls_and_down(engine: EngineInfo, tmp_path: Path) -> None:
    compose = require_executable("docker-compose")
    image = ensure_image(engine.client())
    service = SERVICES_BY_NAME["dovecot-healthy"]
    project = f"mailharness-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}"
    workdir = tmp_path / "compose"
    workdir.mkdir()
    shutil.copy(COMPOSE_FILE, workdir / "docker-compose.yml")
    certs = tmp_path / "certs"
    from mailharness.servers.dovecot.compose import ensure_certs

    assert ensure_certs(certs)
    generate(workdir / "generated", [service])
    env = {**os.environ, "DOCKER_HOST": engine.docker_host, "MAILHARNESS_DOVECOT_IMAGE": image}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [compose, "-p", project, *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    with machine_lock():
        busy = [p for p in service.ports.values() if not port_free(p)]
        if busy:
            pytest.fail(f"127.0.0.1 ports {busy} are in use: is a dovecot-healthy already up?")
        up = run("up", "-d", service.name)
        try:
            assert up.returncode == 0, up.stderr
            assert service.imaps_port is not None
            greeting = await_greeting(service.imaps_port, certs / "ca.pem")
            assert greeting.startswith(b"* OK") and greeting.rstrip().endswith(b"Dovecot ready.")
            context = ssl.create_default_context(cafile=certs / "ca.pem")
            with imaplib.IMAP4_SSL(
                "127.0.0.1", service.imaps_port, ssl_context=context, timeout=10
            ) as client:
                assert client.login(*ALICE) == ("OK", [b"Logged in"])
                assert client.select("INBOX") == ("OK", [b"0"])
                client.logout()
        finally:
            down = run("down", "--volumes", "--remove-orphans")
        assert down.returncode == 0, down.stderr
    client = engine.client()
    try:
        left = client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
        networks = client.networks.list(filters={"label": f"com.docker.compose.project={project}"})
    finally:
        client.close()
    assert left == [] and networks == []
    assert all(port_free(p) for p in service.ports.values())


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
        assert "\nlisten = 127.0.0.1\n" in text
        assert f"\nbase_dir = {CONTAINER_BASE_DIR}\n" in text
        for port in service.ports.values():
            assert f"port = {port}\n" in text
            assert port not in seen_ports
            seen_ports.add(port)
    assert "ssl = required" in render_service(SERVICES_BY_NAME["dovecot-starttls-required"])
    assert "ssl_cert = </certs/expired.crt" in render_service(
        SERVICES_BY_NAME["dovecot-cert-expired"]
    )
    assert "quota_rule = *:storage=1024b" in render_service(SERVICES_BY_NAME["dovecot-quota-full"])


def test_generate_writes_users_and_ignores_itself(tmp_path: Path) -> None:
    generate(tmp_path, [SERVICES_BY_NAME["dovecot-plaintext"]])
    root = tmp_path / "dovecot-plaintext"
    assert (tmp_path / ".gitignore").read_text().splitlines()[-1] == "*"
    assert "ssl = no" in (root / "dovecot.conf").read_text()
    line = (root / "users" / "alice@example.test").read_text()
    assert line.startswith("alice@example.test:{PLAIN}alice-password:65534:65534::")
    assert (root / "mail").stat().st_mode & 0o1777 == 0o1777
