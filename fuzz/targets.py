"""Fuzz targets shared by the hypothesis tests (tests/test_hardening_fuzz.py) and the
atheris runners in this folder. Each takes bytes and raises only on a bug of ours.

A bug is: an exception out of the parser, a command handler ending in
``NO [SERVERBUG]`` (the session's catch-all for our exceptions), or an SMTP
handler error recorded by the server.
"""

from __future__ import annotations

from mailharness.servers.accounts import DEFAULT_USERS, Accounts
from mailharness.servers.imap.commands import ReadLine
from mailharness.servers.imap.protocol import (
    NEED_DATA,
    BadInput,
    ClientLine,
    Command,
    ContinuationRequest,
    IMAPConnection,
)
from mailharness.servers.imap.session import Session
from mailharness.servers.imap.settings import IMAPSettings
from mailharness.servers.imap.store import MailStore

LOGIN = b"l LOGIN alice@example.test alice-password\r\n"
MESSAGE = b"From: a@example.test\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
SETUP = LOGIN + b"p APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\ns SELECT INBOX\r\n"


class ServerBug(AssertionError):
    """Our code failed on client input."""


def parse(data: bytes, *, prelogin: bool = False) -> None:
    """The sans-IO parser: any bytes give events, never an exception."""
    conn = IMAPConnection(max_line=4096, max_literal=1 << 16, prelogin=prelogin)
    third = len(data) // 3
    for piece in (data[:third], data[third:]):  # two reads: framing across a boundary
        conn.receive_data(piece)
        for _ in range(10_000):
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, BadInput) and event.fatal:
                return
            if not isinstance(event, Command | ClientLine | BadInput | ContinuationRequest):
                raise ServerBug(f"unexpected event {event!r}")


def session(data: bytes) -> None:
    """Logged in with INBOX selected, then the fuzzed commands through Session.handle."""
    errors: list[str] = []
    store = MailStore(uidvalidity_base=1000)
    sess = Session(
        accounts=Accounts.of(DEFAULT_USERS),
        store=store,
        settings=IMAPSettings(),
        secure=True,
        starttls_available=False,
        record_error=errors.append,
    )
    conn = IMAPConnection(max_line=4096, max_literal=1 << 16)
    conn.receive_data(SETUP + data)
    for _ in range(200):
        event = conn.next_event()
        if event is NEED_DATA or (isinstance(event, BadInput) and event.fatal):
            break
        if not isinstance(event, Command):
            continue
        gen = sess.handle(event)
        value: bytes | None = None
        for _ in range(1000):
            try:
                item = gen.send(value)
            except StopIteration:
                break
            value = b"*" if isinstance(item, ReadLine) else None  # cancel any exchange
        bugs = [e for e in errors if "server error" in e or "exception" in e]
        if bugs:
            sess.shutdown()
            raise ServerBug(bugs[0])
        if sess.state.value == "logout":
            break
    sess.shutdown()
