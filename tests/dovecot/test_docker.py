"""Dovecot in Docker: a real engine, a real container, real imaplib clients.

One container serves the module (started in ~0.25 s once the image exists; the
image is built once per machine, ~50 s); each test gets it `reset()`, which
takes a few milliseconds. Unit tests of the settings we generate need no engine.
"""

from __future__ import annotations

import dataclasses
import imaplib
import os
import shutil
import socket
import ssl
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mailharness.certs import MailCA
from mailharness.servers.accounts import User
from mailharness.servers.dovecot.config import DovecotConfig, Identity, InstancePaths, SSLMode
from mailharness.servers.dovecot.container import (
    DovecotContainer,
    Network,
    container_config_text,
    run_options,
)
from mailharness.servers.dovecot.engine import EngineInfo, EngineUnavailable, dockerd_command
from mailharness.servers.dovecot.image import debian_mirror, ensure_image, image_tag
from mailharness.servers.errors import ConfigError
from mailharness.servers.listeners import Security

ALICE = ("alice@example.test", "alice-password")
AUTH_FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed."
CAROL = User(address="carol@example.test", password="carol-password")


def message(subject: str, body: str = "hello") -> bytes:
    return (
        f"From: sender@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\n{body}\r\n"
    ).encode()


# --- fixtures ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def docker_client(engine: EngineInfo) -> Iterator[Any]:
    client = engine.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def container(engine: EngineInfo, mail_ca: MailCA) -> Iterator[DovecotContainer]:
    with DovecotContainer(DovecotConfig(cert=mail_ca.server_cert()), engine=engine) as running:
        yield running


@pytest.fixture
def dovecot(container: DovecotContainer) -> DovecotContainer:
    container.reset()
    return container


def imaps(dovecot: DovecotContainer, ca: MailCA) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL(
        *dovecot.endpoint("implicit").address, ssl_context=ca.client_context(), timeout=10
    )


def raw_login(address: tuple[str, int], login: str, password: str) -> bytes:
    """LOGIN over plain IMAP (plaintext auth is allowed by default): the tagged reply."""
    with socket.create_connection(address, timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"* OK")
        sock.sendall(f'a1 LOGIN "{login}" "{password}"\r\n'.encode())
        while True:
            line = reader.readline()
            if line.startswith(b"a1 "):
                sock.sendall(b"a2 LOGOUT\r\n")
                return line.rstrip(b"\r\n")


# --- real container ---------------------------------------------------------------
def test_greets_on_loopback(dovecot: DovecotContainer) -> None:
    assert dovecot.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
    assert dovecot.greeting.endswith(b"Dovecot ready.")
    assert {e.host for e in dovecot.endpoints} == {"127.0.0.1"}
    assert [e.security for e in dovecot.endpoints] == [Security.STARTTLS, Security.IMPLICIT]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    assert dovecot.name.startswith(f"mailharness-dovecot-{worker}-")
    assert dovecot.running


def test_login_over_implicit_tls_with_the_ca(dovecot: DovecotContainer, mail_ca: MailCA) -> None:
    with imaps(dovecot, mail_ca) as client:
        assert client.login(*ALICE) == ("OK", [b"Logged in"])
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        client.logout()


def test_login_after_starttls_with_the_ca(dovecot: DovecotContainer, mail_ca: MailCA) -> None:
    with imaplib.IMAP4(*dovecot.endpoint("starttls").address, timeout=10) as client:
        assert client.starttls(ssl_context=mail_ca.client_context())[0] == "OK"
        assert client.login(*ALICE) == ("OK", [b"Logged in"])
        client.logout()


def test_untrusted_client_refuses_the_certificate(dovecot: DovecotContainer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            *dovecot.endpoint("implicit").address,
            ssl_context=ssl.create_default_context(),
            timeout=10,
        )


def test_wrong_password_gets_dovecots_exact_reply(
    dovecot: DovecotContainer, mail_ca: MailCA
) -> None:
    reply = raw_login(dovecot.endpoint("starttls").address, ALICE[0], "wrong")
    assert reply == b"a1 " + AUTH_FAILED
    with imaps(dovecot, mail_ca) as client:
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\] Authentication"):
            client.login(ALICE[0], "wrong")


def test_deliver_then_fetch(dovecot: DovecotContainer, mail_ca: MailCA) -> None:
    dovecot.deliver_many(ALICE[0], [message("first"), message("second")])
    dovecot.deliver(ALICE[0], message("read one"), flags=["\\Seen"])
    with imaps(dovecot, mail_ca) as client:
        client.login(*ALICE)
        assert client.select("INBOX") == ("OK", [b"3"])
        _, data = client.fetch("1:3", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = [item[1].strip() for item in data if isinstance(item, tuple)]
        assert subjects == [b"Subject: first", b"Subject: second", b"Subject: read one"]
        _, flags = client.fetch("3", "(FLAGS)")
        assert isinstance(flags[0], bytes) and b"\\Seen" in flags[0]
        client.logout()


def test_doveadm_runs_in_the_container(dovecot: DovecotContainer) -> None:
    dovecot.deliver(ALICE[0], message("counted"))
    result = dovecot.doveadm("mailbox", "status", "-u", ALICE[0], "messages", "INBOX")
    assert result.stdout.strip() == "INBOX messages=1"
    assert "starting up" in dovecot.log_text()


def test_add_user_logs_in_at_once(dovecot: DovecotContainer, mail_ca: MailCA) -> None:
    dovecot.add_user(CAROL)
    with imaps(dovecot, mail_ca) as client:
        assert client.login(CAROL.login, CAROL.password)[0] == "OK"
        client.logout()
    with pytest.raises(ConfigError, match="already exists"):
        dovecot.add_user(CAROL)


def test_reset_gives_empty_inbox_and_new_users(dovecot: DovecotContainer, mail_ca: MailCA) -> None:
    dovecot.deliver(ALICE[0], message("before reset"))
    client = imaps(dovecot, mail_ca)  # left logged in: reset ends its session
    client.login(*ALICE)
    client.select("INBOX")
    dovecot.reset(users=[CAROL])
    with pytest.raises(imaplib.IMAP4.abort):
        client.noop()
    client.shutdown()
    assert [u.login for u in dovecot.users] == [CAROL.login]
    assert raw_login(dovecot.endpoint("starttls").address, *ALICE) == b"a1 " + AUTH_FAILED
    with imaps(dovecot, mail_ca) as client:
        client.login(CAROL.login, CAROL.password)
        assert client.select("INBOX") == ("OK", [b"0"])
        client.logout()
    dovecot.reset()
    with imaps(dovecot, mail_ca) as client:
        client.login(*ALICE)
        assert client.select("INBOX") == ("OK", [b"0"])
        client.logout()


def test_reset_with_a_changed_password_takes_effect_at_once(
    dovecot: DovecotContainer,
) -> None:
    address = dovecot.endpoint("starttls").address
    assert raw_login(address, *ALICE).startswith(b"a1 OK")  # the auth process reads it now
    changed = User(address=ALICE[0], password="a-new-password")
    dovecot.reset(users=[changed])
    assert raw_login(address, *ALICE) == b"a1 " + AUTH_FAILED
    assert raw_login(address, ALICE[0], "a-new-password").startswith(b"a1 OK")


def test_reset_is_cheap(container: DovecotContainer) -> None:
    costs = []
    for _ in range(20):
        container.deliver(ALICE[0], message("to be removed"))
        container.reset()
        costs.append(container.reset_seconds)
    # Measured here: ~4 ms. The bound only catches a reset that restarts something.
    assert statistics.median(costs) < 0.5


def test_reconfigure_lower_quota_then_append_is_over_quota(
    dovecot: DovecotContainer, mail_ca: MailCA
) -> None:
    original = dovecot.config
    dovecot.reconfigure(dataclasses.replace(original, quota_storage=1024))
    try:
        with imaps(dovecot, mail_ca) as client:
            client.login(*ALICE)
            status, data = client.append("INBOX", None, None, message("big", "x" * 4096))
            assert status == "NO"
            assert data[0].startswith(b"[OVERQUOTA] Quota exceeded (mailbox for user is full)")
            status, _ = client.append("INBOX", None, None, message("small", "x"))
            assert status == "OK"
            client.logout()
    finally:
        dovecot.reconfigure(original)
    with imaps(dovecot, mail_ca) as client:
        client.login(*ALICE)
        assert client.append("INBOX", None, None, message("big", "x" * 4096))[0] == "OK"
        client.logout()


def test_reconfigure_refuses_a_bad_setting_and_keeps_serving(
    dovecot: DovecotContainer, mail_ca: MailCA
) -> None:
    from mailharness.servers.dovecot import DovecotError

    original = dovecot.config
    with pytest.raises(DovecotError, match="no_such_setting"):
        dovecot.reconfigure(dataclasses.replace(original, extra=("no_such_setting = 1",)))
    assert dovecot.config == original
    with imaps(dovecot, mail_ca) as client:
        assert client.login(*ALICE)[0] == "OK"
        client.logout()


def test_stop_leaves_nothing_behind(
    engine: EngineInfo, docker_client: Any, mail_ca: MailCA
) -> None:
    config = DovecotConfig(cert=mail_ca.server_cert())
    with (
        DovecotContainer(config, engine=engine) as first,
        DovecotContainer(config, engine=engine) as second,
    ):
        assert {e.port for e in first.endpoints}.isdisjoint(e.port for e in second.endpoints)
        names, root = [first.name, second.name], first.paths
        assert root is not None
        address = first.endpoint("implicit").address
    for name in names:
        assert docker_client.containers.list(all=True, filters={"name": f"^{name}$"}) == []
    assert not root.root.exists()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2).close()


def test_plaintext_only_container(engine: EngineInfo) -> None:
    with DovecotContainer(engine=engine) as plain:
        assert [e.security for e in plain.endpoints] == [Security.NONE]
        with imaplib.IMAP4(*plain.endpoint("none").address, timeout=10) as client:
            assert client.login(*ALICE)[0] == "OK"
            client.logout()


# --- no engine needed: the settings we generate ---------------------------------------
def test_published_mode_publishes_on_loopback_only(tmp_path: Path, mail_ca: MailCA) -> None:
    config = DovecotConfig(cert=mail_ca.server_cert())
    paths = InstancePaths(tmp_path)
    options = run_options(
        image="img", name="n", paths=paths, config=config, network=Network.PUBLISHED
    )
    assert options["ports"] == {"143/tcp": ("127.0.0.1", None), "993/tcp": ("127.0.0.1", None)}
    assert "network_mode" not in options
    assert "MAILHARNESS_LISTENERS" not in options["environment"]
    assert options["volumes"] == {str(tmp_path): {"bind": str(tmp_path), "mode": "rw"}}
    text = container_config_text(
        config, paths, Identity(65534, 65534), {"imap": 143, "imaps": 993}, Network.PUBLISHED
    )
    assert "\nlisten = *\n" in text
    assert "port = 143\n" in text and "port = 993\n" in text


def test_host_mode_binds_inside_on_the_configured_loopback(tmp_path: Path) -> None:
    config = DovecotConfig(ssl=SSLMode.NO, imaps=False, host="127.0.0.2")
    options = run_options(
        image="img", name="n", paths=InstancePaths(tmp_path), config=config, network="host"
    )
    assert options["network_mode"] == "host"
    assert "ports" not in options
    env = options["environment"]
    assert (env["MAILHARNESS_LISTENERS"], env["MAILHARNESS_LISTEN"]) == ("imap", "127.0.0.2")
    text = container_config_text(
        config, InstancePaths(tmp_path), Identity(1, 1), {"imap": 1234}, Network.HOST
    )
    assert "\nlisten = 127.0.0.2\n" in text


def test_network_option_is_checked() -> None:
    with pytest.raises(ConfigError, match="network='bridge': expected one of 'host', 'published'"):
        DovecotContainer(network="bridge")


def test_private_engine_keeps_containers_off_private_networks() -> None:
    command = dockerd_command("/usr/sbin/dockerd")
    for flag in ("--bridge=none", "--iptables=false", "--ip-masq=false"):
        assert flag in command


def test_mirror_is_read_from_apt_sources(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.invalid/debian-security\n"
        "Suites: bookworm-security\n"
    )
    assert debian_mirror((deb822,)) == "http://mirror.invalid/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64] http://other.invalid/debian bookworm main\n")
    assert debian_mirror((one_line,)) == "http://other.invalid/debian"


def test_image_tag_is_a_content_hash() -> None:
    tag = image_tag()
    assert tag.startswith("mailharness/dovecot:") and len(tag.split(":")[1]) == 12
    assert image_tag() == tag


def test_image_base_choice_is_checked() -> None:
    with pytest.raises(ConfigError, match="base='cloud': expected one of 'auto', 'registry'"):
        ensure_image(None, base="cloud")


def test_missing_docker_io_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailharness.servers.dovecot import engine as engine_module

    monkeypatch.setattr(engine_module, "find_engine", lambda: None)
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(EngineUnavailable, match=r"apt-get install -y docker\.io"):
        engine_module.ensure_engine()


def test_tls_version_cap_reaches_the_container(engine: EngineInfo, mail_ca: MailCA) -> None:
    config = DovecotConfig(cert=mail_ca.server_cert(), ssl_max_protocol="TLSv1.2")
    with DovecotContainer(config, engine=engine) as capped:
        address = capped.endpoint("implicit").address
        with imaplib.IMAP4_SSL(*address, ssl_context=mail_ca.client_context()) as client:
            assert isinstance(client.sock, ssl.SSLSocket)
            assert client.sock.version() == "TLSv1.2"
            client.logout()
        only_13 = mail_ca.client_context()
        only_13.minimum_version = ssl.TLSVersion.TLSv1_3
        with pytest.raises(ssl.SSLError):
            imaplib.IMAP4_SSL(*address, ssl_context=only_13, timeout=10)


def test_submission_listeners_are_smtp_endpoints(engine: EngineInfo, mail_ca: MailCA) -> None:
    config = DovecotConfig(
        cert=mail_ca.server_cert(), submission=True, submissions=True, submission_relay_port=9
    )
    with DovecotContainer(config, engine=engine) as dovecot:
        smtp = dovecot.endpoint("starttls", protocol="smtp")
        assert dovecot.endpoint("implicit", protocol="smtp").port != smtp.port
        with socket.create_connection(smtp.address, timeout=10) as sock:
            assert sock.makefile("rb").readline().startswith(b"220 ")
