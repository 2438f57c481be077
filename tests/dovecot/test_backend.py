"""`MailServer(MailConfig(backend="dovecot"|"docker"))`: real Dovecot behind the harness's one
object, as a native process or in a container; every test that takes `server` runs on both."""

from __future__ import annotations

import dataclasses
import imaplib
import os
import smtplib
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailharness.certs import MailCA
from mailharness.journeys import ClientProfile, Outcome, imap_journey, smtp_journey
from mailharness.server import ALL_SECURITIES, MailConfig, MailServer, NotApplicable
from mailharness.servers.accounts import DEFAULT_USERS, AccountChange, Accounts, User
from mailharness.servers.dovecot import DovecotProcess
from mailharness.servers.dovecot.container import LABEL, DovecotContainer
from mailharness.servers.dovecot.engine import ensure_engine
from mailharness.servers.errors import ConfigError
from mailharness.servers.imap import IMAPSettings
from mailharness.servers.listeners import Security

from tests.helpers import require_backend
from tests.leakcheck import assert_stopped_listening, listening_sockets

ALICE, BOB = DEFAULT_USERS


BACKENDS = ("dovecot", "docker")


@pytest.fixture(scope="module", params=BACKENDS)
def dovecot_server(request: pytest.FixtureRequest, mail_ca: MailCA) -> Iterator[MailServer]:
    backend: str = request.param
    require_backend(backend)
    with MailServer(MailConfig(backend=backend), ca=mail_ca) as server:
        yield server


@pytest.fixture
def server(dovecot_server: MailServer) -> Iterator[MailServer]:
    dovecot_server.reset()
    yield dovecot_server
    dovecot_server.reset()


def imap_login(server: MailServer, user: str, password: str) -> imaplib.IMAP4_SSL:
    endpoint = server.imap.implicit
    client = imaplib.IMAP4_SSL(
        endpoint.host, endpoint.port, ssl_context=server.ca.client_context(), timeout=5
    )
    client.login(user, password)
    return client


def inbox_count(server: MailServer, user: User = ALICE) -> int:
    client = imap_login(server, user.login, user.password)
    try:
        typ, data = client.select("INBOX")
        assert typ == "OK"
        return int(data[0] or 0)
    finally:
        client.logout()


def test_backend_must_be_known() -> None:
    with pytest.raises(ConfigError, match="backend='podman': expected one of"):
        MailConfig(backend="podman")


def test_every_listener_the_fake_has_and_none_is_the_plain_port(
    server: MailServer, mail_ca: MailCA
) -> None:
    every = [Security.STARTTLS, Security.IMPLICIT]
    assert [e.security for e in server.imap] == every
    assert [e.security for e in server.smtp] == every
    # Strict like the fake: loopback is not the server's own address (see dovecot_backend).
    assert {e.host for e in server.endpoints()} == {"127.0.0.2"}
    assert server.describe()["backend"] == server.config.backend
    # Dovecot has no plain-only port beside TLS: a client that never sends STARTTLS uses 143's.
    config = MailConfig(backend=server.config.backend, imap_listeners=ALL_SECURITIES)
    with MailServer(config, ca=mail_ca) as listed:
        assert listed.imap.none.port == listed.imap.starttls.port


def test_real_clients_work_on_every_listener(server: MailServer) -> None:
    for endpoint in server.endpoints():
        journey = imap_journey if endpoint.protocol == "imap" else smtp_journey
        assert journey(endpoint, ClientProfile(), ALICE, server.ca.ca_path) == Outcome.success()


def test_submitted_mail_is_captured_and_delivered_locally(server: MailServer) -> None:
    endpoint = server.smtp.starttls
    with smtplib.SMTP(endpoint.host, endpoint.port, timeout=5) as client:
        client.starttls(context=server.ca.client_context())
        client.login(ALICE.login, ALICE.password)
        client.sendmail(ALICE.address, [BOB.address], b"Subject: relayed\r\n\r\nhello\r\n")
    [captured] = server.wait_for_messages(1)
    assert captured.rcpt_tos == (BOB.address,)
    assert b"Subject: relayed" in captured.data
    # Dovecot names who logged in by XCLIENT LOGIN=; the TLS it never sees stays unknown.
    assert (captured.login, captured.tls_version) == (ALICE.login, None)
    [stored] = server.wait_for_appends(BOB.login, 1)
    assert b"Subject: relayed" in stored.raw


def test_wait_for_appends_wakes_on_an_imap_append(server: MailServer) -> None:
    def append_later() -> None:
        time.sleep(0.05)
        client = imap_login(server, ALICE.login, ALICE.password)
        client.append("INBOX", None, None, b"Subject: appended\r\n\r\nhi\r\n")
        client.logout()

    thread = threading.Thread(target=append_later)
    thread.start()
    try:
        [stored] = server.wait_for_appends(ALICE.login, 1, timeout=5)
    finally:
        thread.join()
    assert stored.uid == 1
    assert b"Subject: appended" in stored.raw


def test_wait_for_appends_times_out_saying_what_arrived(server: MailServer) -> None:
    server.deliver(ALICE.login, b"Subject: one\r\n\r\n1\r\n")
    with pytest.raises(TimeoutError, match="expected 2 message"):
        server.wait_for_appends(ALICE.login, 2, timeout=0.05)


def test_deliver_returns_the_uid_dovecot_assigns(server: MailServer) -> None:
    assert server.deliver(ALICE.login, b"Subject: a\r\n\r\na\r\n") == 1
    assert server.deliver(ALICE.address, b"Subject: b\r\n\r\nb\r\n") == 2
    client = imap_login(server, ALICE.login, ALICE.password)
    try:
        client.select("INBOX")
        _, data = client.uid("SEARCH", "ALL")
        assert data[0] == b"1 2"
        assert server.deliver(ALICE.login, b"Subject: c\r\n\r\nc\r\n") == 3
    finally:
        client.logout()


def test_run_time_user_changes_reach_dovecot_at_once(server: MailServer) -> None:
    assert inbox_count(server) == 0
    server.users.set_password(ALICE.login, "changed-password")  # same second as the login
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_login(server, ALICE.login, ALICE.password)
    imap_login(server, ALICE.login, "changed-password").logout()
    server.users.update(BOB.login, disabled=True)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[CONTACTADMIN\] Login disabled for this user"):
        imap_login(server, BOB.login, BOB.password)
    carol = server.users.add(User(address="carol@example.test", password="carol-password"))
    assert inbox_count(server, carol) == 0


def test_backend_down_is_dovecots_own_temporary_failure(server: MailServer) -> None:
    """Its passdb really fails (passwd-files made unreadable), so the reply is Dovecot's."""
    server.users.backend_down = True
    with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\] Temporary authentication"):
        imap_login(server, ALICE.login, ALICE.password)
    with smtplib.SMTP_SSL(
        *server.smtp.implicit.address, context=server.ca.client_context(), timeout=5
    ) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login(ALICE.login, ALICE.password)
    assert caught.value.smtp_code == 454
    # Dovecot adds "[host:time]", the key to find the failure in its log.
    assert caught.value.smtp_error.startswith(b"4.7.0 Temporary authentication failure. [")
    server.users.backend_down = False
    imap_login(server, ALICE.login, ALICE.password).logout()
    server.users.backend_down = True
    server.reset()  # back up, like every other switch
    imap_login(server, ALICE.login, ALICE.password).logout()


def test_reset_restores_users_and_empties_mailboxes(server: MailServer) -> None:
    server.deliver(ALICE.login, b"Subject: old\r\n\r\nold\r\n")
    server.users.set_password(ALICE.login, "changed-password")
    server.set_quota(ALICE.login, storage_bytes=1)
    lingering = imap_login(server, BOB.login, BOB.password)  # a session the test forgot
    server.reset()
    assert inbox_count(server) == 0
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        lingering.noop()
    client = imap_login(server, ALICE.login, ALICE.password)
    try:
        client.select("INBOX")
        assert client.append("INBOX", None, None, b"Subject: fits\r\n\r\nx\r\n")[0] == "OK"
    finally:
        client.logout()


def test_set_quota_fills_the_mailbox_on_dovecot(server: MailServer) -> None:
    message = b"Subject: filler\r\n\r\n" + b"x" * 100 + b"\r\n"
    server.deliver(ALICE.login, message)
    server.set_quota(ALICE.login, storage_bytes=len(message))
    client = imap_login(server, ALICE.login, ALICE.password)
    try:
        client.select("INBOX")
        typ, data = client.append("INBOX", None, None, b"Subject: more\r\n\r\nx\r\n")
    finally:
        client.logout()
    assert typ == "NO"
    assert data[0].startswith(b"[OVERQUOTA] Quota exceeded (mailbox for user is full)")


def test_set_quota_on_the_fake(mail_server: MailServer) -> None:
    mail_server.set_quota(ALICE.address, storage_bytes=10, messages=2)
    mailboxes = mail_server.store.user(ALICE.login)
    assert (mailboxes.quota_storage_limit, mailboxes.quota_message_limit) == (10, 2)
    with pytest.raises(ConfigError, match="no such user"):
        mail_server.set_quota("nobody@example.test", messages=1)


def test_reset_is_cheap(server: MailServer) -> None:
    """The per-test cost of the shared Dovecot (reset before and after a test)."""
    costs = []
    for _ in range(15):
        server.deliver(ALICE.login, b"Subject: x\r\n\r\nx\r\n")
        started = time.perf_counter()
        server.reset()
        costs.append(time.perf_counter() - started)
    # Measured ~2 ms here; generous so a loaded CI machine does not flake.
    assert statistics.median(costs) < 0.05


def test_run_time_switches_are_not_applicable(server: MailServer) -> None:
    with pytest.raises(NotApplicable, match=r"^not applicable: switch_imap\(\) on backend"):
        server.switch_imap(maintenance=True)


def test_a_config_dovecot_cannot_serve_is_not_applicable(mail_ca: MailCA) -> None:
    config = MailConfig(backend="dovecot", imap=IMAPSettings(maintenance=True))
    with pytest.raises(NotApplicable, match=r"^not applicable: .*imap.maintenance=True"):
        MailServer(config, ca=mail_ca).start()


def our_containers() -> list[str]:
    """Names of this process's Dovecot containers, running or not (`docker ps -a`)."""
    client = ensure_engine().client()
    try:
        found = client.containers.list(
            all=True, filters={"label": f"{LABEL}.owner-pid={os.getpid()}"}
        )
        return [c.name for c in found]
    finally:
        client.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_leaves_nothing_behind(backend: str, mail_ca: MailCA) -> None:
    require_backend(backend)
    before = our_containers() if backend == "docker" else []
    server = MailServer(MailConfig(backend=backend), ca=mail_ca).start()
    dovecot = server._dovecot
    assert dovecot is not None
    assert isinstance(dovecot, DovecotProcess | DovecotContainer)
    assert dovecot.paths is not None
    root = dovecot.paths.root
    if isinstance(dovecot, DovecotProcess):
        pid = dovecot.pid
    else:
        pid = dovecot._pid
        assert dovecot.name in our_containers()
    listening = listening_sockets(e.port for e in server.endpoints())
    server.stop()
    assert not root.exists()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    if backend == "docker":
        assert our_containers() == before
    assert_stopped_listening(listening)


def test_accounts_tell_subscribers_about_every_change() -> None:
    accounts = Accounts.of(DEFAULT_USERS)
    seen: list[AccountChange] = []
    unsubscribe = accounts.on_change(seen.append)
    accounts.set_password(ALICE.login, "new")
    accounts.update(BOB.login, disabled=True)
    carol = accounts.add(User(address="carol@example.test", password="pw"))
    accounts.replace_all(DEFAULT_USERS)
    unsubscribe()
    accounts.set_password(ALICE.login, "unseen")
    assert [c.added for c in seen[:3]] == [
        (dataclasses.replace(ALICE, password="new"),),
        (dataclasses.replace(BOB, disabled=True),),
        (carol,),
    ]
    assert seen[3] == AccountChange(added=DEFAULT_USERS, removed=(carol,))
    assert len(seen) == 4


def test_plugin_serves_dovecot_when_asked(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        """
        import pytest
        from mailharness.catalog import parametrize

        def test_shared(mail_server):
            assert mail_server.config.backend == "dovecot"

        @pytest.mark.mail_backend("fake")
        def test_marker_wins(mail_server):
            assert mail_server.config.backend == "fake"

        @parametrize(names=["healthy", "maintenance"])
        def test_scenarios(mail_scenario):
            assert mail_scenario.config.backend == "dovecot"
        """
    )
    result = pytester.runpytest_subprocess(
        "--mail-backend=dovecot", "-p", "no:cacheprovider", "-rs"
    )
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*not applicable: scenario 'maintenance' is not proven on backend 'dovecot' "
            "(its backends: fake): Dovecot has no maintenance switch*"
        ]
    )


def test_plugin_shares_one_container_per_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--mail-backend=docker: every test gets the same container, reset (empty mailbox)."""
    require_backend("docker")
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        """
        import pytest

        NAMES = set()

        @pytest.mark.parametrize("i", range(3))
        def test_shared(mail_server, i):
            assert mail_server.config.backend == "docker"
            NAMES.add(mail_server._dovecot.name)
            assert len(NAMES) == 1
            assert mail_server.deliver("alice@example.test", b"Subject: x\\r\\n\\r\\nx\\r\\n") == 1
        """
    )
    result = pytester.runpytest_subprocess("--mail-backend=docker", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
