"""Every dynamic scenario acts out under `mailharness serve`, as a stock client sees it.

The serve runs as QA runs it (a subprocess, `--json`); the clients are imaplib and
smtplib. A scenario with a schedule is served from a scenario file whose `base` is
the catalog scenario and whose `[[schedule]]` makes the periods short: the same
events the catalog gives it, quicker.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mailharness.catalog import CATALOG

from tests.helpers import observe_states

ALICE = ("alice@example.test", "alice-password")
BOB = "bob@example.test"


@dataclass
class Served:
    """What a serve printed, and clients built from it."""

    facts: dict[str, object]
    context: ssl.SSLContext

    def address(self, protocol: str, security: str) -> tuple[str, int]:
        for e in self.facts["endpoints"]:  # type: ignore[attr-defined]
            if (e["protocol"], e["security"]) == (protocol, security):
                return e["host"], e["port"]
        raise AssertionError(f"no {protocol}/{security} listener in {self.facts}")

    def imap(self) -> imaplib.IMAP4:
        """Port 143, STARTTLS, as a correct connector."""
        client = imaplib.IMAP4(*self.address("imap", "starttls"), timeout=5)
        try:
            client.starttls(ssl_context=self.context)
        except BaseException:
            client.shutdown()
            raise
        return client

    def imap_login(self) -> imaplib.IMAP4:
        client = self.imap()
        try:
            client.login(*ALICE)
        except BaseException:
            client.shutdown()
            raise
        return client

    def smtp(self) -> smtplib.SMTP:
        client = smtplib.SMTP(*self.address("smtp", "starttls"), timeout=5)
        try:
            client.starttls(context=self.context)
            client.login(*ALICE)
        except BaseException:
            client.close()
            raise
        return client


@contextlib.contextmanager
def serve(scenario: str) -> Iterator[Served]:
    command = [sys.executable, "-m", "mailharness.cli", "serve", "--scenario", scenario, "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()  # printed once every listener accepts
        assert line, process.stderr.read()
        facts = json.loads(line)
        context = ssl.create_default_context(cafile=str(facts["ca_path"]))
        yield Served(facts, context)
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _next_line(client: imaplib.IMAP4) -> bytes:
    """What the server says without being asked (a scheduled event's BYE)."""
    client.sock.settimeout(10)
    return client.readline()


# --- one check per dynamic scenario ---------------------------------------------------------
def flapping(served: Served) -> None:
    def state() -> str:
        try:
            with served.imap() as client:
                return "up" if client.noop()[0] == "OK" else "odd"
        except ConnectionRefusedError:
            return "refused"
        except (imaplib.IMAP4.abort, OSError):
            return "cut"  # refused again between connect and the end of the session

    observe_states(state, ["up", "refused", "up"])


def maintenance_window(served: Served) -> None:
    def state() -> str:
        try:
            with imaplib.IMAP4(*served.address("imap", "starttls"), timeout=5):
                return "up"
        except imaplib.IMAP4.error as error:
            assert str(error) == "b'* BYE [UNAVAILABLE] Server down for maintenance'"
            return "maintenance"

    observe_states(state, ["up", "maintenance", "up"])


def _logged_in_and_selected(served: Served) -> imaplib.IMAP4:
    """A session that got as far as SELECT (one opened just before an event is cut short)."""
    for _ in range(10):
        try:
            client = served.imap_login()
        except (imaplib.IMAP4.abort, OSError):
            continue
        try:
            if client.select("INBOX")[0] == "OK":
                return client
        except (imaplib.IMAP4.abort, OSError):
            pass
        client.shutdown()
    raise AssertionError("no session lived long enough to select INBOX")


def shutdown_mid_session(served: Served) -> None:
    client = _logged_in_and_selected(served)
    try:
        assert _next_line(client) == b"* BYE Server shutting down.\r\n"
    finally:
        client.shutdown()


def mailbox_churn(served: Served) -> None:
    client = _logged_in_and_selected(served)
    try:
        client.send(b"w IDLE\r\n")
        line = client.readline()
        if line == b"+ idling\r\n":
            line = _next_line(client)
        assert line == b"* BYE Mailbox UIDVALIDITY changed, have to disconnect.\r\n"
    finally:
        client.shutdown()


def conn_limit(served: Served) -> None:
    first = served.imap_login()
    second = served.imap()
    try:
        with pytest.raises(imaplib.IMAP4.error) as caught:
            second.login(*ALICE)
        assert str(caught.value) == (
            "b'[UNAVAILABLE] Maximum number of connections from user+IP exceeded "
            "(mail_max_userip_connections=1)'"
        )
        assert first.noop()[0] == "OK"
    finally:
        second.shutdown()
        first.logout()
    first_smtp = served.smtp()
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP(*served.address("smtp", "starttls"), timeout=5)
        assert refused.value.smtp_code == 421
    finally:
        first_smtp.quit()


def conn_queue_full(served: Served) -> None:
    first = served.imap()
    try:
        with pytest.raises(imaplib.IMAP4.error) as caught:
            imaplib.IMAP4(*served.address("imap", "starttls"), timeout=5)
        assert str(caught.value) == "b'* BYE Connection queue full'"
    finally:
        first.logout()


def _send(served: Served, size: int) -> None:
    """Mail of about `size` bytes to alice, in lines SMTP allows (at most 998 octets)."""
    lines = [b"y" * 76] * (size // 76 + 1)
    with served.smtp() as client:
        client.sendmail(ALICE[0], [ALICE[0]], b"Subject: big\r\n\r\n" + b"\r\n".join(lines))


def bandwidth_exceeded(served: Served) -> None:
    _send(served, 2000)
    with served.imap_login() as client:
        client.select("INBOX")
        typ, data = client.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and len(data[0][1]) > 2000  # type: ignore[index,arg-type]
        assert client.fetch("1", "(FLAGS)") == (
            "NO",
            [b"[OVERQUOTA] Account exceeded command or bandwidth limits."],
        )


def rate_limit_send(served: Served) -> None:
    with served.smtp() as client:
        client.sendmail(ALICE[0], [BOB], b"Subject: 1\r\n\r\nx\r\n")
        client.sendmail(ALICE[0], [BOB], b"Subject: 2\r\n\r\nx\r\n")
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail(ALICE[0], [BOB], b"Subject: 3\r\n\r\nx\r\n")
    assert caught.value.smtp_code == 421


def idle_timeout(served: Served) -> None:
    client = served.imap_login()
    try:
        assert _next_line(client) == b"* BYE Disconnected for inactivity.\r\n"
    finally:
        client.shutdown()


def drop_mid_fetch(served: Served) -> None:
    _send(served, 10_000)
    client = imaplib.IMAP4_SSL(
        *served.address("imap", "implicit"), ssl_context=served.context, timeout=5
    )
    try:
        client.login(*ALICE)
        client.select("INBOX")
        with pytest.raises(imaplib.IMAP4.abort):
            client.fetch("1", "(BODY[])")
    finally:
        client.shutdown()


# name -> (the scenario file's [[schedule]] that makes it quick, or "" to serve it by name;
#          the check)
CHECKS: dict[str, tuple[str, Callable[[Served], None]]] = {
    "flapping": ('kind = "flap"\nup_seconds = 0.3\ndown_seconds = 0.3', flapping),
    "maintenance-window": (
        'kind = "maintenance-window"\nevery_seconds = 0.8\nlasts_seconds = 0.4',
        maintenance_window,
    ),
    "shutdown-mid-session": ('kind = "shutdown"\nevery_seconds = 0.5', shutdown_mid_session),
    "mailbox-churn": ('kind = "mailbox-churn"\nevery_seconds = 0.5', mailbox_churn),
    "conn-limit": ("", conn_limit),
    "conn-queue-full": ("", conn_queue_full),
    "bandwidth-exceeded": ("", bandwidth_exceeded),
    "rate-limit-send": ("", rate_limit_send),
    "idle-timeout": ("", idle_timeout),
    "drop-mid-fetch": ("", drop_mid_fetch),
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_dynamic_scenario_acts_out_under_serve(name: str, tmp_path: Path) -> None:
    schedule, check = CHECKS[name]
    target = name
    if schedule:
        assert CATALOG[name].config.schedule, f"{name} has no schedule to make quick"
        path = tmp_path / f"quick-{name}.toml"
        path.write_text(f'base = "{name}"\n[[schedule]]\n{schedule}\n')
        target = str(path)
    with serve(target) as served:
        check(served)


def test_every_dynamic_scenario_is_checked_under_serve() -> None:
    assert set(CHECKS) == {s.name for s in CATALOG.values() if s.dynamic}


def test_flapping_as_the_catalog_serves_it() -> None:
    """No file: `serve --scenario flapping` flaps on the catalog's own 2 s period."""
    with serve("flapping") as served:
        flapping(served)
