"""The per-test reset's shortcut: a server nobody touched is not reset (no trip to its loop
thread), and anything a test can change makes it reset as before."""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import Callable

import pytest
from mailharness import MailServer
from mailharness.certs import MailCA
from mailharness.server import MailServerFactory

ALICE = "alice@example.test"


@pytest.fixture
def server(mail_server_factory: MailServerFactory) -> MailServer:
    started = mail_server_factory()
    started.reset()
    assert started.pristine()
    return started


def _deliver(server: MailServer) -> None:
    server.deliver(ALICE, b"Subject: hi\r\n\r\nbody\r\n")


def _user_change(server: MailServer) -> None:
    server.users.update(ALICE, disabled=True)


def _settings(server: MailServer) -> None:
    server.switch_imap(backend_maintenance=True)


def _maintenance(server: MailServer) -> None:
    server.set_maintenance()


def _connection(server: MailServer) -> None:
    with socket.create_connection(server.imap.starttls.address) as sock:
        assert sock.recv(100).startswith(b"* OK")


def _failed_login(server: MailServer) -> None:
    client = imaplib.IMAP4(*server.imap.starttls.address)
    try:
        client.starttls(ssl_context=server.ca.client_context())
        with pytest.raises(imaplib.IMAP4.error):
            client.login(ALICE, "wrong")
    finally:
        client.logout()


@pytest.mark.parametrize(
    "change",
    [_deliver, _user_change, _settings, _maintenance, _connection, _failed_login],
    ids=lambda f: f.__name__.strip("_"),
)
def test_any_change_makes_the_reset_happen(
    server: MailServer, change: Callable[[MailServer], None]
) -> None:
    change(server)
    assert not server.pristine()
    server.reset()
    assert server.pristine()
    assert len(server.store.users()) == 0
    assert not server.users.get(ALICE).disabled  # type: ignore[union-attr]
    live = server._backend.live_servers()
    assert live is not None and live.imap is not None
    assert live.imap.settings is server.config.imap
    assert not len(server.transcripts)


def test_untouched_server_skips_settle_and_reset(server: MailServer) -> None:
    server.settle()
    server.reset()
    assert server.pristine()


def test_shared_server_context_is_made_once(mail_ca: MailCA) -> None:
    shared = mail_ca.shared_server_context()
    assert mail_ca.shared_server_context("trusted") is shared
    assert mail_ca.shared_server_context("expired") is not shared
    own = mail_ca.server_context()
    assert own is not shared and isinstance(own, ssl.SSLContext)
