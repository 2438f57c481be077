"""The native Dovecot runner, against a real Dovecot and real clients (imaplib).

One Dovecot serves the module (it starts in ~40 ms and stops in ~5 ms, but the
suite still pays it once); tests that need other settings start their own.
"""

from __future__ import annotations

import dataclasses
import imaplib
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailharness.certs import MailCA
from mailharness.servers.accounts import User
from mailharness.servers.dovecot import (
    DovecotConfig,
    DovecotNotInstalled,
    DovecotProcess,
    DovecotStartError,
    SSLMode,
    pid_namespaces_available,
)
from mailharness.servers.dovecot import process as process_module
from mailharness.servers.dovecot.config import Identity, InstancePaths, render_config
from mailharness.servers.errors import ConfigError
from mailharness.servers.listeners import Security

from tests.helpers import require_executable
from tests.leakcheck import assert_stopped_listening, listening_sockets

ALICE = ("alice@example.test", "alice-password")
AUTH_FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed."


def message(subject: str, body: str = "hello") -> bytes:
    return (
        f"From: sender@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def dovecot(mail_ca: MailCA) -> Iterator[DovecotProcess]:
    require_executable("dovecot")
    with DovecotProcess(DovecotConfig(cert=mail_ca.server_cert())) as process:
        yield process


def raw_exchange(address: tuple[str, int], *lines: bytes) -> list[bytes]:
    """Send tagged commands one by one over a plain socket; return each tagged reply line."""
    replies = []
    with socket.create_connection(address, timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"* OK")
        for line in lines:
            sock.sendall(line + b"\r\n")
            tag = line.split(b" ", 1)[0]
            while True:
                reply = reader.readline()
                assert reply, f"connection closed waiting for {tag!r}"
                if reply.startswith(tag + b" "):
                    replies.append(reply.rstrip(b"\r\n"))
                    break
    return replies


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by walking /proc's ppid links)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


# --- a running Dovecot, over each security --------------------------------------------
def test_greets_with_configured_greeting(dovecot: DovecotProcess) -> None:
    assert dovecot.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1")
    assert b"STARTTLS" in dovecot.greeting
    assert dovecot.greeting.endswith(b"] Dovecot ready.")
    assert [e.security for e in dovecot.endpoints] == [Security.STARTTLS, Security.IMPLICIT]
    assert all(e.host == "127.0.0.1" for e in dovecot.endpoints)


def test_login_over_plaintext(dovecot: DovecotProcess) -> None:
    client = imaplib.IMAP4(*dovecot.endpoint("starttls").address)
    try:
        assert client.login(*ALICE) == ("OK", [b"Logged in"])
        assert not isinstance(client.sock, ssl.SSLSocket)
    finally:
        client.logout()


def test_login_after_starttls(dovecot: DovecotProcess, mail_ca: MailCA) -> None:
    client = imaplib.IMAP4(*dovecot.endpoint("starttls").address)
    try:
        client.starttls(ssl_context=mail_ca.client_context())
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert client.login(*ALICE)[0] == "OK"
    finally:
        client.logout()


def test_login_over_implicit_tls(dovecot: DovecotProcess, mail_ca: MailCA) -> None:
    host, port = dovecot.endpoint("implicit").address
    client = imaplib.IMAP4_SSL(host, port, ssl_context=mail_ca.client_context())
    try:
        assert client.login(*ALICE)[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()


def test_implicit_tls_certificate_is_the_mail_ca_leaf(
    dovecot: DovecotProcess, mail_ca: MailCA
) -> None:
    # A context that does not trust our CA must refuse Dovecot's certificate.
    host, port = dovecot.endpoint("implicit").address
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        imaplib.IMAP4_SSL(host, port, ssl_context=ssl.create_default_context())


@pytest.mark.parametrize(
    "login, password",
    [("alice@example.test", "wrong"), ("nobody@example.test", "alice-password")],
    ids=["wrong-password", "unknown-user"],
)
def test_failed_login_has_dovecots_exact_text(
    dovecot: DovecotProcess, login: str, password: str
) -> None:
    [reply] = raw_exchange(
        dovecot.endpoint("starttls").address, f"a1 LOGIN {login} {password}".encode()
    )
    assert reply == b"a1 " + AUTH_FAILED


def test_failed_login_through_imaplib(dovecot: DovecotProcess) -> None:
    client = imaplib.IMAP4(*dovecot.endpoint("starttls").address)
    try:
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\]"):
            client.login("alice@example.test", "wrong")
    finally:
        client.shutdown()


# --- mail and users ----------------------------------------------------------------------
def test_delivered_messages_are_visible_in_order(dovecot: DovecotProcess) -> None:
    dovecot.add_user(User(address="dora@example.test", password="dora-password"))
    dovecot.deliver("dora@example.test", message("first"))
    dovecot.deliver("dora@example.test", message("second"), flags=("\\Seen", "\\Flagged"))
    dovecot.deliver_many("dora@example.test", [message(f"bulk {i}") for i in range(50)])
    client = imaplib.IMAP4(*dovecot.endpoint("starttls").address)
    try:
        client.login("dora@example.test", "dora-password")
        typ, data = client.select("INBOX")
        assert (typ, data) == ("OK", [b"52"])
        typ, fetched = client.fetch("1:3", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK"
        parts = [p for p in fetched if isinstance(p, tuple)]
        assert [p[1].strip() for p in parts] == [
            b"Subject: first",
            b"Subject: second",
            b"Subject: bulk 0",
        ]
        assert b"\\Recent" in parts[0][0] and b"\\Seen" not in parts[0][0]
        assert b"\\Seen \\Flagged" in parts[1][0] or b"\\Flagged \\Seen" in parts[1][0]
        typ, size = client.fetch("1", "(RFC822.SIZE)")
        assert f"RFC822.SIZE {len(message('first'))}".encode() in size[0]  # type: ignore[operator]
    finally:
        client.logout()


def test_delivery_to_another_folder_and_by_address(dovecot: DovecotProcess) -> None:
    dovecot.deliver("<bob@example.test>", message("archived"), mailbox="Archive")
    status = dovecot.doveadm("mailbox", "status", "-u", "bob@example.test", "messages", "Archive")
    assert status.stdout.strip() == "Archive messages=1"


def test_message_with_bare_line_feeds_has_crlf_size(dovecot: DovecotProcess) -> None:
    raw = b"Subject: lf\n\nline one\nline two\n"
    dovecot.add_user(User(address="lf@example.test", password="lf-password"))
    dovecot.deliver("lf@example.test", raw)
    client = imaplib.IMAP4(*dovecot.endpoint("starttls").address)
    try:
        client.login("lf@example.test", "lf-password")
        client.select("INBOX")
        _, data = client.fetch("1", "(RFC822.SIZE)")
        crlf_size = len(raw) + raw.count(b"\n")
        assert data == [f"1 (RFC822.SIZE {crlf_size})".encode()]
    finally:
        client.logout()


def test_user_added_while_running_can_log_in(dovecot: DovecotProcess) -> None:
    dovecot.add_user(User(address="carol@example.test", password="carol-password"))
    [reply] = raw_exchange(
        dovecot.endpoint("starttls").address, b"a1 LOGIN carol@example.test carol-password"
    )
    assert reply.startswith(b"a1 OK")
    assert "carol@example.test" in [u.login for u in dovecot.users]
    with pytest.raises(ConfigError, match="already exists"):
        dovecot.add_user(User(address="carol@example.test", password="x"))


def test_deliver_to_unknown_user_names_the_known_ones(dovecot: DovecotProcess) -> None:
    with pytest.raises(ConfigError, match=r"login='zed': no such user; known: .*alice"):
        dovecot.deliver("zed", b"Subject: x\r\n\r\n")
    with pytest.raises(ConfigError, match=r"flag='\\\\Bogus'"):
        dovecot.deliver("alice@example.test", b"Subject: x\r\n\r\n", flags=("\\Bogus",))


def test_doveadm_runs_with_the_instance_config(dovecot: DovecotProcess) -> None:
    result = dovecot.doveadm("user", "alice@example.test")
    assert "uid" in result.stdout
    failed = dovecot.doveadm(
        "mailbox", "status", "-u", "zed@example.test", "all", "INBOX", check=False
    )
    assert failed.returncode != 0


# --- other configurations (each its own short-lived Dovecot) --------------------------------
def test_quota_refuses_append_over_the_limit(mail_ca: MailCA) -> None:
    require_executable("dovecot")
    config = DovecotConfig(ssl=SSLMode.NO, imaps=False, quota_messages=1)
    with DovecotProcess(config) as dovecot:
        dovecot.deliver("alice@example.test", message("fills the quota"))
        client = imaplib.IMAP4(*dovecot.endpoint("none").address)
        try:
            client.login(*ALICE)
            typ, data = client.append("INBOX", None, None, message("one too many"))
            assert typ == "NO"
            assert data[0].startswith(b"[OVERQUOTA] Quota exceeded (mailbox for user is full)")
        finally:
            client.logout()


def test_high_performance_login_mode_serves_many_logins(mail_ca: MailCA) -> None:
    require_executable("dovecot")
    config = DovecotConfig(
        cert=mail_ca.server_cert(), high_performance=True, login_greeting="Fast one"
    )
    with DovecotProcess(config) as dovecot:
        assert dovecot.greeting.endswith(b"] Fast one")
        for _ in range(20):
            [reply] = raw_exchange(
                dovecot.endpoint("starttls").address, b"a LOGIN alice@example.test alice-password"
            )
            assert reply.startswith(b"a OK")


def test_stop_leaves_no_process_no_port_no_directory(mail_ca: MailCA) -> None:
    require_executable("dovecot")
    dovecot = DovecotProcess(DovecotConfig(cert=mail_ca.server_cert())).start()
    assert dovecot.pid is not None and dovecot.paths is not None
    # A logged-in session keeps an imap process alive: stop must take it down too.
    client = imaplib.IMAP4(*dovecot.endpoint("starttls").address)
    client.login(*ALICE)
    processes = descendants(dovecot.pid) | {dovecot.pid}
    assert len(processes) >= 5  # master, log, config, auth, imap...
    root = dovecot.paths.root
    listening = listening_sockets(e.port for e in dovecot.endpoints)
    started = time.perf_counter()
    dovecot.stop()
    elapsed = time.perf_counter() - started
    client.shutdown()
    left = {pid for pid in processes if Path(f"/proc/{pid}").exists()}
    assert not left, f"still there after stop: {left}"
    assert not root.exists()
    assert_stopped_listening(listening)
    if pid_namespaces_available():
        assert elapsed < 1.0  # SIGKILL to the namespace's init, not Dovecot's 1-3 s shutdown
    dovecot.stop()  # idempotent


def test_stop_without_pid_namespace_still_reaps_everything(mail_ca: MailCA) -> None:
    require_executable("dovecot")
    dovecot = DovecotProcess(
        DovecotConfig(ssl=SSLMode.NO, imaps=False), pid_namespace=False
    ).start()
    assert dovecot.pid is not None
    processes = descendants(dovecot.pid) | {dovecot.pid}
    dovecot.stop()
    # Dovecot's own SIGTERM shutdown exits without reaping its log process, which init
    # then reaps: allow a zombie, nothing that still runs.
    left = {pid for pid in processes if process_state(pid) not in (None, "Z")}
    assert not left, f"still running after stop: {left}"


def test_start_failure_reports_dovecots_log_and_cleans_up() -> None:
    require_executable("dovecot")
    dovecot = DovecotProcess(
        DovecotConfig(ssl=SSLMode.NO, imaps=False, extra=("no_such_setting = 1",)), start_timeout=10
    )
    with pytest.raises(DovecotStartError, match=r"(?s)exited before greeting.*no_such_setting"):
        dovecot.start()
    assert dovecot.paths is not None and not dovecot.paths.root.exists()
    assert not dovecot.running


def test_missing_dovecot_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(process_module, "_SEARCH_PATH", os.fspath(tmp_path))
    with pytest.raises(DovecotNotInstalled, match=r"apt-get install -y dovecot-imapd"):
        DovecotProcess(DovecotConfig(ssl=SSLMode.NO, imaps=False)).start()


# --- the config alone (no Dovecot needed) ----------------------------------------------------
def test_rendered_config_is_self_contained(tmp_path: Path, mail_ca: MailCA) -> None:
    config = DovecotConfig(
        cert=mail_ca.server_cert(), high_performance=True, quota_storage=1000, auth_failure_delay=2
    )
    text = render_config(config, InstancePaths(tmp_path), Identity(65534, 65534), {"imap": 1143})
    assert "!include" not in text
    for line in (
        "listen = 127.0.0.1",
        "protocols = imap",
        "ssl = yes",
        "ssl_dh = </usr/share/dovecot/dh.pem",
        "ssl_min_protocol = TLSv1.2",
        "auth_failure_delay = 2000 msecs",
        "  quota_rule = *:storage=1000b",
        "  service_count = 0",
        "    port = 1143",
        "    port = 0",
        f"base_dir = {tmp_path / 'run'}",
    ):
        assert line in text.splitlines(), line


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"ssl": "yes"}, r"ssl='yes': needs cert="),
        ({"ssl": "no"}, r"imaps=True with ssl='no'"),
        ({"ssl": "required-ish"}, r"ssl='required-ish': expected one of .*did you mean 'required'"),
        ({"ssl": "no", "imap": False, "imaps": False}, r"at least one IMAP listener"),
        ({"ssl": "no", "imaps": False, "host": "10.0.0.1"}, r"expected a loopback address"),
        ({"ssl": "no", "imaps": False, "ssl_min_protocol": "SSLv3"}, r"ssl_min_protocol='SSLv3'"),
        ({"ssl": "no", "imaps": False, "auth_mechanisms": ("xoauth",)}, r"auth_mechanisms="),
        (
            {"ssl": "no", "imaps": False, "users": (User(address="a@b.c", password="x:y"),)},
            r"passwd-file cannot hold ':'",
        ),
    ],
)
def test_config_mistakes_name_the_field(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        DovecotConfig(**fields)  # type: ignore[arg-type]


def test_config_is_frozen_and_replaceable() -> None:
    config = DovecotConfig(ssl=SSLMode.NO, imaps=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.imap = False  # type: ignore[misc]
    assert dataclasses.replace(config, login_greeting="Hi").login_greeting == "Hi"
