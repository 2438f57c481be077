"""Scenarios that need a run-time switch, two sessions or timing: one test each (or more).

The catalog marks them `dynamic`; `test_every_dynamic_scenario_has_a_test` keeps this
module and the catalog in step.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import sys
from collections.abc import Iterator

import pytest
from mailharness.catalog import CATALOG
from mailharness.certs import MailCA
from mailharness.server import MailServer

from tests.helpers import imap_starttls, submission

ALICE = ("alice@example.test", "alice-password")
MESSAGE = b"Subject: s\r\n\r\nbody\r\n"


@pytest.fixture
def served(request: pytest.FixtureRequest, mail_ca: MailCA) -> Iterator[MailServer]:
    server = CATALOG[request.param].serve(ca=mail_ca)
    try:
        yield server
    finally:
        server.stop()


def scenario(name: str) -> pytest.MarkDecorator:
    assert CATALOG[name].dynamic, f"{name} is not a dynamic scenario"
    return pytest.mark.parametrize("served", [name], indirect=True, ids=[name])


def _imap(server: MailServer) -> imaplib.IMAP4:
    client = imap_starttls(server, timeout=5)
    client.login(*ALICE)
    return client


def _smtp(server: MailServer) -> smtplib.SMTP:
    client = submission(server, timeout=5)
    client.login(*ALICE)
    return client


@scenario("mailbox-churn")
def test_uidvalidity_change_while_selected(served: MailServer) -> None:
    client = _imap(served)
    assert client.select("INBOX")[0] == "OK"
    served.store.user(ALICE[0]).change_uidvalidity("INBOX")
    with pytest.raises(imaplib.IMAP4.abort):
        client.noop()
    assert any(b"UIDVALIDITY changed" in line for line in _bye_lines(client))


@scenario("mailbox-churn")
def test_mailbox_deleted_while_selected(served: MailServer) -> None:
    mailboxes = served.store.user(ALICE[0])
    mailboxes.create("Projects")
    client = _imap(served)
    assert client.select("Projects")[0] == "OK"
    mailboxes.delete("Projects")
    with pytest.raises(imaplib.IMAP4.abort):
        client.noop()
    assert any(b"Selected mailbox was deleted" in line for line in _bye_lines(client))


@scenario("mailbox-churn")
def test_expunge_by_another_session_is_announced(served: MailServer) -> None:
    for n in range(3):
        served.deliver(ALICE[0], f"Subject: m{n}\r\n\r\nx\r\n".encode())
    watcher, other = _imap(served), _imap(served)
    assert watcher.select("INBOX") == ("OK", [b"3"])
    other.select("INBOX")
    other.store("2", "+FLAGS", "\\Deleted")
    other.expunge()
    typ, _ = watcher.noop()
    assert typ == "OK"
    assert watcher.untagged_responses.get("EXPUNGE") == [b"2"]
    assert watcher.search(None, "ALL") == ("OK", [b"1 2"])
    watcher.logout()
    other.logout()


def _bye_lines(client: imaplib.IMAP4) -> list[bytes]:
    return [b"BYE " + line for line in client.untagged_responses.get("BYE", [])]


@scenario("conn-limit")
def test_imap_userip_connection_limit(served: MailServer) -> None:
    served.switch_imap(max_userip_connections=1)
    first = _imap(served)
    second = imap_starttls(served, timeout=5)
    with pytest.raises(imaplib.IMAP4.error) as caught:
        second.login(*ALICE)
    assert str(caught.value) == (
        "b'[UNAVAILABLE] Maximum number of connections from user+IP exceeded "
        "(mail_max_userip_connections=1)'"
    )
    assert first.noop()[0] == "OK"
    first.logout()


@scenario("conn-limit")
def test_smtp_per_ip_connection_limit(served: MailServer) -> None:
    first = _smtp(served)
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        submission(served, timeout=5)
    assert (caught.value.smtp_code, caught.value.smtp_error) == (
        421,
        b"4.7.0 localhost Error: too many connections from 127.0.0.1",
    )
    first.quit()


@scenario("conn-queue-full")
def test_connection_queue_full(served: MailServer) -> None:
    first = imap_starttls(served, timeout=5)
    with pytest.raises(imaplib.IMAP4.error) as caught:
        imap_starttls(served, timeout=5)
    assert str(caught.value) == "b'* BYE Connection queue full'"
    first.logout()
    # The slot is free again: a new connection is greeted.
    with imap_starttls(served, timeout=5) as again:
        assert again.noop()[0] == "OK"


@scenario("bandwidth-exceeded")
def test_fetch_past_the_byte_budget(served: MailServer) -> None:
    served.deliver(ALICE[0], b"Subject: big\r\n\r\n" + b"z" * 2000 + b"\r\n")
    client = _imap(served)
    client.select("INBOX")
    typ, data = client.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and len(data[0][1]) > 2000  # the FETCH that crosses the budget completes
    assert client.fetch("1", "(FLAGS)") == (
        "NO",
        [b"[OVERQUOTA] Account exceeded command or bandwidth limits."],
    )
    client.logout()


def test_send_rate_limit_recovers_when_the_window_passes(mail_ca: MailCA) -> None:
    """rate-limit-send (2 per 1 s), on a clock the test moves: no race with the window."""
    now = [500.0]
    config = CATALOG["rate-limit-send"].config
    with MailServer(config, ca=mail_ca, clock=lambda: now[0]) as server:
        with _smtp(server) as client:
            client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
            client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
            with pytest.raises(smtplib.SMTPSenderRefused) as caught:
                client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
        assert (caught.value.smtp_code, caught.value.smtp_error) == (
            421,
            b"4.7.0 Try again later, closing connection.",
        )
        now[0] += 0.5  # 2 per 1.0 s: one token is back after half a second
        with _smtp(server) as client:
            client.sendmail(ALICE[0], ["bob@example.test"], MESSAGE)
        assert len(server.messages) == 3


@scenario("shutdown-mid-session")
def test_shutdown_mid_session(served: MailServer) -> None:
    imap_client = _imap(served)
    imap_client.select("INBOX")
    smtp_client = _smtp(served)
    served.announce_shutdown()
    with pytest.raises(imaplib.IMAP4.abort):
        imap_client.noop()
    assert any(b"Server shutting down." in line for line in _bye_lines(imap_client))
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp_client.noop()
        smtp_client.noop()  # the 421 answers the first; the second finds the socket closed
    transcript = served.transcripts.text()
    assert "S: 421 4.3.2 Shutting down" in transcript


@scenario("idle-timeout")
def test_idle_timeout(served: MailServer) -> None:
    client = _imap(served)
    served.switch_imap(idle_timeout=0.2)  # applies to the open session at once
    raw = socket.create_connection(served.smtp.starttls.address, timeout=5)
    reader = raw.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    # Both servers speak first when the timer fires: read, do not sleep.
    assert reader.readline() == b"421 4.4.2 localhost Error: timeout exceeded\r\n"
    raw.close()
    client.sock.settimeout(5)
    assert client.readline() == b"* BYE Disconnected for inactivity.\r\n"
    with pytest.raises(imaplib.IMAP4.abort):
        client.noop()


@scenario("drop-mid-fetch")
def test_drop_inside_a_fetch_literal(served: MailServer) -> None:
    served.deliver(ALICE[0], b"Subject: big\r\n\r\n" + b"y" * 10_000 + b"\r\n")
    # The front before 993 ends TLS, so it sees the FETCH.
    client = imaplib.IMAP4_SSL(
        *served.imap.implicit.address, ssl_context=served.ca.client_context(), timeout=5
    )
    client.login(*ALICE)
    client.select("INBOX")
    with pytest.raises(imaplib.IMAP4.abort):
        client.fetch("1", "(BODY[])")


@scenario("flapping")
def test_flapping_between_up_and_refused(served: MailServer) -> None:
    from mailharness.servers.faults import Refuse

    for _ in range(2):
        with imap_starttls(served, timeout=5) as client:
            assert client.noop()[0] == "OK"
        served.faults("imap/starttls").set(Refuse())
        with pytest.raises(ConnectionRefusedError):
            imap_starttls(served, timeout=5)
        served.faults("imap/starttls").clear()


def test_every_dynamic_scenario_has_a_test() -> None:
    module = sys.modules[__name__]
    tested = {
        mark.args[1][0]
        for name in dir(module)
        if name.startswith("test_")
        for mark in getattr(getattr(module, name), "pytestmark", [])
        if mark.name == "parametrize" and mark.args[0] == "served"
    }
    tested.add("rate-limit-send")  # checked on a fake clock, without the served fixture
    dynamic = {s.name for s in CATALOG.values() if s.dynamic}
    assert dynamic == tested
