"""`MailServer.stop()` ends at once, whatever state a client left its connection in.

Since Python 3.12.1 `asyncio.Server.wait_closed()` waits for every connection the
server accepted, and some never end on their own: a TLS session the server closes
waits for the client's close_notify (30 s), a client that never sends its
ClientHello holds a handshake open (60 s). Each case below hung `stop()` on 3.12
before the listeners aborted what was left (servers/listeners.py: `Listeners`);
3.11 never waited, so there they pass either way. The bound: the loop thread's
call timeout (30 s) turns a hang into a TimeoutError.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

import pytest
from mailharness.certs import MailCA
from mailharness.server import MailConfig, MailServer

# Measured ~0.01-0.1 s; a hang is 30 s.
STOP_BOUND = 5.0
BYE = b"* BYE Server shutting down.\r\n"
ALICE_LOGIN = b'a LOGIN alice@example.test "alice-password"\r\n'

Connect = Callable[[MailServer], socket.socket]


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _tls(server: MailServer, sock: socket.socket) -> ssl.SSLSocket:
    return server.ca.client_context().wrap_socket(sock, server_hostname="localhost")


def imap_starttls_idle(server: MailServer) -> socket.socket:
    """Logged in after STARTTLS, then idle (test_imap_userip_connection_limit's second client)."""
    sock = socket.create_connection(server.imap.starttls.address, timeout=5)
    _line(sock)
    sock.sendall(b"s STARTTLS\r\n")
    _line(sock)
    tls = _tls(server, sock)
    tls.sendall(ALICE_LOGIN)
    assert _line(tls).startswith(b"a OK ")
    return tls


def imap_implicit_idle(server: MailServer) -> socket.socket:
    tls = _tls(server, socket.create_connection(server.imap.implicit.address, timeout=5))
    _line(tls)
    return tls


def imap_logged_out_not_closed(server: MailServer) -> socket.socket:
    tls = imap_implicit_idle(server)
    tls.sendall(b"z LOGOUT\r\n")
    assert _line(tls).startswith(b"* BYE ")
    assert _line(tls).startswith(b"z OK ")
    return tls


def imap_starttls_no_client_hello(server: MailServer) -> socket.socket:
    sock = socket.create_connection(server.imap.starttls.address, timeout=5)
    _line(sock)
    sock.sendall(b"s STARTTLS\r\n")
    _line(sock)
    return sock


def imap_implicit_no_client_hello(server: MailServer) -> socket.socket:
    return socket.create_connection(server.imap.implicit.address, timeout=5)


def smtp_implicit_no_client_hello(server: MailServer) -> socket.socket:
    return socket.create_connection(server.smtp.implicit.address, timeout=5)


def smtp_starttls_idle(server: MailServer) -> socket.socket:
    sock = socket.create_connection(server.smtp.starttls.address, timeout=5)
    _line(sock)
    sock.sendall(b"EHLO client.test\r\n")
    while not _line(sock).startswith(b"250 "):
        pass
    sock.sendall(b"STARTTLS\r\n")
    assert _line(sock).startswith(b"220 ")
    return _tls(server, sock)


@pytest.mark.parametrize(
    "connect",
    [
        imap_starttls_idle,
        imap_implicit_idle,
        imap_logged_out_not_closed,
        imap_starttls_no_client_hello,
        imap_implicit_no_client_hello,
        smtp_implicit_no_client_hello,
        smtp_starttls_idle,
    ],
)
def test_stop_does_not_wait_for_idle_clients(connect: Connect, mail_ca: MailCA) -> None:
    server = MailServer(MailConfig(), ca=mail_ca).start()
    try:
        client = connect(server)
    except BaseException:
        server.stop()
        raise
    with client:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < STOP_BOUND
        # The connection is gone: the client reads its end (after a BYE, if it had a session).
        rest = b""
        while chunk := _recv(client):
            rest += chunk
        assert rest in (b"", BYE)


def test_an_idle_tls_session_still_hears_the_bye(mail_ca: MailCA) -> None:
    """Aborting what is left comes after the goodbye, not instead of it."""
    server = MailServer(MailConfig(), ca=mail_ca).start()
    with imap_starttls_idle(server) as client:
        server.stop()
        assert _line(client) == BYE


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096)
    except (ssl.SSLError, ConnectionResetError):
        return b""
