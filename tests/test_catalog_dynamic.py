"""Scenarios that need a run-time switch, two sessions or timing: one test each (or more).

The catalog marks them `dynamic`; `test_every_dynamic_scenario_has_a_test` keeps this
module and the catalog in step.
"""

from __future__ import annotations

import dataclasses
import imaplib
import smtplib
import socket
import sys
from collections.abc import Iterator

import pytest
from mailharness.catalog import CATALOG
from mailharness.certs import MailCA
from mailharness.schedule import scaled
from mailharness.server import MailServer

from tests.helpers import imap_starttls, observe_states, submission

ALICE = ("alice@example.test", "alice-password")
MESSAGE = b"Subject: s\r\n\r\nbody\r\n"


# The catalog's schedules, ten times as fast: the same events, short enough for a test.
QUICK = 0.1


@pytest.fixture
def served(request: pytest.FixtureRequest, mail_ca: MailCA) -> Iterator[MailServer]:
    name, timing = request.param
    chosen = CATALOG[name]
    if timing != "as-is":
        # "off": a test of the mechanics a schedule uses (a mailbox deleted while
        # selected), which a scheduled event at the same moment would blur.
        schedule = () if timing == "off" else scaled(chosen.config.schedule, QUICK)
        chosen = dataclasses.replace(
            chosen, config=dataclasses.replace(chosen.config, schedule=schedule)
        )
    server = chosen.serve(ca=mail_ca)
    try:
        yield server
    finally:
        server.stop()


def scenario(name: str, timing: str = "quick") -> pytest.MarkDecorator:
    """Serve a dynamic scenario with its schedule `timing`: "quick", "as-is" or "off"."""
    assert CATALOG[name].dynamic, f"{name} is not a dynamic scenario"
    return pytest.mark.parametrize("served", [(name, timing)], indirect=True, ids=[name])


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
    """The schedule gives INBOX a new UIDVALIDITY: the session that has it selected is told."""
    client = _imap(served)
    assert client.select("INBOX")[0] == "OK"
    client.send(b"w IDLE\r\n")  # told at once while idling, as a connector waits for mail
    assert client.readline() == b"+ idling\r\n"
    try:
        assert _next_line(client) == b"* BYE Mailbox UIDVALIDITY changed, have to disconnect.\r\n"
    finally:
        client.shutdown()


def _next_line(client: imaplib.IMAP4) -> bytes:
    """What the server says next without being asked (a scheduled event's BYE)."""
    client.sock.settimeout(10)
    return client.readline()


@scenario("mailbox-churn", "off")
def test_mailbox_deleted_while_selected(served: MailServer) -> None:
    mailboxes = served.store.user(ALICE[0])
    mailboxes.create("Projects")
    client = _imap(served)
    assert client.select("Projects")[0] == "OK"
    mailboxes.delete("Projects")
    with pytest.raises(imaplib.IMAP4.abort):
        client.noop()
    assert any(b"Selected mailbox was deleted" in line for line in _bye_lines(client))


@scenario("mailbox-churn", "off")
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
    first = _imap(served)  # the limit is the scenario's data: max_userip_connections=1
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
    """The schedule announces a shutdown to every open session, again and again."""
    for _ in range(5):  # a session opened just before an announcement is closed early: again
        try:
            imap_client = _imap(served)
            imap_client.select("INBOX")
            smtp_client = _smtp(served)
            break
        except (imaplib.IMAP4.abort, smtplib.SMTPServerDisconnected, OSError):
            continue
    else:
        pytest.fail("no session lived long enough to log in")
    try:
        assert _next_line(imap_client) == b"* BYE Server shutting down.\r\n"
    finally:
        imap_client.shutdown()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp_client.noop()
        smtp_client.noop()  # the 421 answers the first; the second finds the socket closed
    smtp_client.close()
    assert "S: 421 4.3.2 Shutting down" in served.transcripts.text()


@scenario("idle-timeout")
def test_idle_timeout(served: MailServer) -> None:
    client = _imap(served)  # the scenario's idle_timeout (1 s) is its data
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
    def state() -> str:
        try:
            with imap_starttls(served, timeout=5) as client:
                return "up" if client.noop()[0] == "OK" else "odd"
        except ConnectionRefusedError:
            return "refused"
        except (imaplib.IMAP4.abort, OSError):
            return "cut"  # the port closed between connect and the end of the session

    observe_states(state, ["up", "refused", "up", "refused", "up"])


@scenario("maintenance-window")
def test_maintenance_window_comes_and_goes(served: MailServer) -> None:
    def imap_state() -> str:
        try:
            with imaplib.IMAP4(*served.imap.starttls.address, timeout=5):
                return "up"
        except imaplib.IMAP4.error as error:
            assert str(error) == "b'* BYE [UNAVAILABLE] Server down for maintenance'"
            return "maintenance"

    def smtp_state() -> str:
        try:
            smtplib.SMTP(*served.smtp.starttls.address, timeout=5).quit()
            return "up"
        except smtplib.SMTPConnectError as error:
            assert (error.smtp_code, error.smtp_error) == (421, b"4.3.2 Service not available")
            return "maintenance"

    def both() -> str:
        imap_now, smtp_now = imap_state(), smtp_state()
        return imap_now if imap_now == smtp_now else "switching"

    observe_states(both, ["up", "maintenance", "up"])


def test_every_dynamic_scenario_has_a_test() -> None:
    module = sys.modules[__name__]
    tested = {
        mark.args[1][0]
        for name in dir(module)
        if name.startswith("test_")
        for mark in getattr(getattr(module, name), "pytestmark", [])
        if mark.name == "parametrize" and mark.args[0] == "served"
    }
    tested = {name[0] if isinstance(name, tuple) else name for name in tested}
    tested.add("rate-limit-send")  # checked on a fake clock, without the served fixture
    dynamic = {s.name for s in CATALOG.values() if s.dynamic}
    assert dynamic == tested
