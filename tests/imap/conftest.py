"""Fixtures for our IMAP server: a background event loop, a CA, running servers.

The server runs on a loop in a background thread so tests can drive it with
synchronous clients (imaplib, imapclient) exactly as connectors do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import imaplib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from mailharness.certs import MailCA
from mailharness.lifecycle import LoopThread
from mailharness.servers.accounts import DEFAULT_USERS, Accounts
from mailharness.servers.imap import IMAPServer, IMAPSettings
from mailharness.servers.imap.store import MailStore
from mailharness.servers.listeners import Endpoint, Security, bind_loopback
from mailharness.servers.transcript import TranscriptLog

#: Generous: a loaded CI machine, never a readiness wait.
CALL_TIMEOUT = 30.0


@dataclass
class Certs:
    """The session's MailCA, in the shapes these tests use."""

    ca: MailCA
    server: ssl.SSLContext
    ca_path: str

    def client(self) -> ssl.SSLContext:
        return self.ca.client_context()


@dataclass
class RunningIMAP:
    server: IMAPServer
    store: MailStore
    accounts: Accounts
    transcripts: TranscriptLog
    certs: Certs
    none: Endpoint
    starttls: Endpoint
    implicit: Endpoint
    loop: LoopThread
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return self.server.errors


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread(name="imap-tests").start()
    yield lt
    lt.stop()


@pytest.fixture(scope="session")
def certs(mail_ca: MailCA) -> Certs:
    return Certs(ca=mail_ca, server=mail_ca.server_context(), ca_path=str(mail_ca.ca_path))


MakeIMAP = Callable[..., RunningIMAP]


@pytest.fixture
def make_imap(loop_thread: LoopThread, certs: Certs) -> Iterator[MakeIMAP]:
    """Start a server with the given settings; stopped at teardown."""
    started: list[RunningIMAP] = []

    def make(settings: IMAPSettings | None = None, *, plaintext_login: bool = True) -> RunningIMAP:
        # These tests drive the IMAP core over its plain listener, so they allow plaintext
        # LOGIN explicitly; the defaults refuse it before TLS (plaintext_login=False keeps them).
        settings = settings or IMAPSettings()
        if plaintext_login:
            settings = dataclasses.replace(settings, plaintext_auth_requires_tls=False)
        accounts = Accounts.of(DEFAULT_USERS)
        store = MailStore(uidvalidity_base=1000)
        transcripts = TranscriptLog()
        server = IMAPServer(
            accounts=accounts, store=store, transcripts=transcripts, settings=settings
        )

        async def listen() -> tuple[Endpoint, Endpoint, Endpoint]:
            return (
                await server.add_listener(bind_loopback(), Security.NONE, None),
                await server.add_listener(bind_loopback(), Security.STARTTLS, certs.server),
                await server.add_listener(bind_loopback(), Security.IMPLICIT, certs.server),
            )

        none, starttls, implicit = loop_thread.run(listen())
        running = RunningIMAP(
            server, store, accounts, transcripts, certs, none, starttls, implicit, loop_thread
        )
        started.append(running)
        return running

    yield make
    for running in started:
        loop_thread.run(running.server.stop())
    # Like the harness fixture: a test that expects protocol errors clears them.
    unexpected = [e for running in started for e in running.errors]
    assert not unexpected, "server recorded errors:\n" + "\n".join(unexpected)


@pytest.fixture
def imap(make_imap: MakeIMAP) -> RunningIMAP:
    return make_imap()


#: The default user's login and password (servers.accounts.DEFAULT_USERS).
ALICE = ("alice@example.test", "alice-password")


@pytest.fixture
def alice(imap: RunningIMAP) -> Iterator[imaplib.IMAP4]:
    """imaplib logged in as alice over the plaintext (none) listener; logged out at teardown."""
    client = imaplib.IMAP4(*imap.none.address)
    client.login(*ALICE)
    yield client
    with contextlib.suppress(imaplib.IMAP4.abort, OSError):
        client.logout()


class RawClient:
    """A line-level client for exact-text checks; blocks with a timeout, never sleeps."""

    def __init__(self, endpoint: Endpoint, *, tls: ssl.SSLContext | None = None) -> None:
        import socket

        sock = socket.create_connection(endpoint.address, timeout=CALL_TIMEOUT)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.file = sock.makefile("rb")
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        data = self.file.readline()
        if not data:
            raise EOFError("server closed the connection")
        return data

    def until(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the tagged completion for `tag`."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def login(self, user: str = "alice@example.test", password: str = "alice-password") -> None:
        reply = self.command(b"L", f'LOGIN "{user}" "{password}"'.encode())
        assert reply[-1].startswith(b"L OK"), reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
