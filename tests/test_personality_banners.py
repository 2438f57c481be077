"""Personalities cover greetings, banners and capability lists, not only reply texts.

Stock imaplib and smtplib against the fake, as a connector meets each provider: what
it greets with, what it advertises before TLS, after TLS and after login. The texts
and their public sources are in servers/imap/replies.py and servers/smtp/replies.py.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
from collections.abc import Iterator

import pytest
from mailharness.scenarios import with_personality
from mailharness.server import MailConfig, MailServer
from mailharness.servers.personality import PERSONALITIES

ALICE = ("alice@example.test", "alice-password")
EXCHANGE_BANNER = re.compile(
    rb"220 localhost Microsoft ESMTP MAIL Service ready at "
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}"
)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, MailServer]]:
    running: dict[str, MailServer] = {}
    try:
        for name in PERSONALITIES:
            running[name] = MailServer(with_personality(MailConfig(), name)).start()
        yield running
    finally:
        for server in running.values():
            server.stop()


def _imap_lists(server: MailServer) -> tuple[bytes, list[bytes], str]:
    """Greeting, CAPABILITY before STARTTLS / after it / after login, the login's text."""
    client = imaplib.IMAP4(*server.imap.starttls.address, timeout=5)
    try:
        lists = [client.capability()[1][0]]
        client.starttls(ssl_context=server.ca.client_context())
        lists.append(client.capability()[1][0])
        typ, data = client.login(*ALICE)
        assert typ == "OK"
        lists.append(client.capability()[1][0])
        return client.welcome, lists, data[0].decode()
    finally:
        client.logout()


def test_outlook_greets_as_exchange_online(servers: dict[str, MailServer]) -> None:
    welcome, (before, after_tls, after_login), logged_in = _imap_lists(servers["outlook"])
    assert welcome.startswith(b"* OK Microsoft Exchange IMAP4 service ready. ")
    assert b"Dovecot" not in welcome and b"[CAPABILITY" not in welcome
    assert before == (
        b"IMAP4 IMAP4rev1 STARTTLS LOGINDISABLED SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN "
        b"IDLE NAMESPACE LITERAL+"
    )
    assert after_tls == (
        b"IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=LOGIN SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN "
        b"IDLE NAMESPACE LITERAL+"
    )
    assert after_login == (
        b"IMAP4 IMAP4rev1 SASL-IR UIDPLUS MOVE ID UNSELECT ENABLE CHILDREN IDLE NAMESPACE LITERAL+"
    )
    assert logged_in == "LOGIN completed."  # no [CAPABILITY ...] code either


def test_exchange_on_premises_greets_as_exchange_2013_2016(
    servers: dict[str, MailServer],
) -> None:
    welcome, (before, after_tls, after_login), logged_in = _imap_lists(servers["exchange"])
    assert welcome == b"* OK The Microsoft Exchange IMAP4 service is ready."
    assert before == (
        b"IMAP4 IMAP4rev1 STARTTLS LOGINDISABLED UIDPLUS MOVE ID CHILDREN IDLE NAMESPACE LITERAL+"
    )
    assert after_tls == (
        b"IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=LOGIN UIDPLUS MOVE ID CHILDREN IDLE NAMESPACE LITERAL+"
    )
    assert after_login == b"IMAP4 IMAP4rev1 UIDPLUS MOVE ID CHILDREN IDLE NAMESPACE LITERAL+"
    assert logged_in == "LOGIN completed."


def test_gmail_greets_as_gimap(servers: dict[str, MailServer]) -> None:
    welcome, (before, _, _), _ = _imap_lists(servers["gmail"])
    assert welcome == b"* OK Gimap ready for requests from 127.0.0.1 mh01gimap"
    assert before.startswith(b"IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID CHILDREN SASL-IR ")


def test_dovecot_keeps_its_greeting_and_codes(servers: dict[str, MailServer]) -> None:
    welcome, _, logged_in = _imap_lists(servers["dovecot"])
    assert welcome.startswith(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ")
    assert welcome.endswith(b"] Dovecot ready.")
    assert logged_in.startswith("[CAPABILITY IMAP4rev1 ") and logged_in.endswith("Logged in")


def test_no_personality_offers_what_the_server_does_not_implement(
    servers: dict[str, MailServer],
) -> None:
    """A provider's extension we cannot answer (XLIST, NTLM...) is left out, not faked."""
    _, dovecot_lists, _ = _imap_lists(servers["dovecot"])
    implemented = {cap for caps in dovecot_lists for cap in caps.split()} | {b"IMAP4"}
    for name in PERSONALITIES:
        _, lists, _ = _imap_lists(servers[name])
        offered = {cap for caps in lists for cap in caps.split()}
        assert offered <= implemented, (name, offered - implemented)


@pytest.mark.parametrize("name", ["outlook", "exchange"])
def test_exchange_smtp_banner_and_ehlo(servers: dict[str, MailServer], name: str) -> None:
    server = servers[name]
    code, banner = _banner(server)
    assert EXCHANGE_BANNER.fullmatch(b"%d %s" % (code, banner)), banner
    client = smtplib.SMTP(*server.smtp.starttls.address, timeout=5)
    try:
        code, ehlo = client.ehlo("client.test")
        assert ehlo.split(b"\n")[0] == b"localhost Hello [127.0.0.1]"
        assert b"HELP" not in ehlo and b"mailharness" not in ehlo
        client.starttls(context=server.ca.client_context())
        client.ehlo("client.test")
        shown = b"LOGIN XOAUTH2" if name == "outlook" else b"LOGIN"
        assert client.esmtp_features["auth"].encode() == b" " + shown
        client.login(*ALICE)  # smtplib picks LOGIN, the mechanism Exchange shows
    finally:
        client.close()


def _banner(server: MailServer) -> tuple[int, bytes]:
    """The 220 greeting, as smtplib's connect() returns it."""
    client = smtplib.SMTP(timeout=5)
    try:
        return client.connect(*server.smtp.starttls.address)
    finally:
        client.close()


def test_gmail_smtp_banner(servers: dict[str, MailServer]) -> None:
    code, banner = _banner(servers["gmail"])
    assert code == 220 and re.fullmatch(rb"localhost ESMTP [0-9a-f]{12} - gsmtp", banner)
    with smtplib.SMTP(*servers["gmail"].smtp.starttls.address, timeout=5) as client:
        assert client.ehlo("client.test")[1].startswith(b"localhost at your service, [127.0.0.1]")
