"""One three-session conversation, word for word, on the fake and on native Dovecot 2.3.

It walks the per-session state ``test_state`` checks piece by piece (\\Recent,
keyword announcements, CONDSTORE switched on by use, SEARCHRES, CONTEXT=SEARCH,
PARTIAL, SAVEDATE, WITHIN, QRESYNC, [CLOSED], NOTIFY STATUS) and fails on the
first reply where the fake says something Dovecot does not. Only what must
differ is masked: timing suffixes, UIDVALIDITY values and dates.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator

import pytest
from mailharness.certs import MailCA
from mailharness.server import MailConfig, MailServer
from mailharness.servers.listeners import Endpoint

from tests.helpers import require_backend

#: (session, command): sessions a and b select the mailbox, c mostly appends.
CONVERSATION: tuple[tuple[str, bytes], ...] = (
    ("a", b"CREATE st"),
    ("a", b"APPEND st {3+}\r\nab\n"),
    ("a", b"APPEND st (\\Seen) {3+}\r\ncd\n"),
    ("b", b"STATUS st (MESSAGES RECENT UNSEEN SIZE)"),
    ("b", b"EXAMINE st"),
    ("b", b"FETCH 1:* FLAGS"),
    ("a", b"SELECT st"),
    ("a", b"FETCH 1:* FLAGS"),
    ("a", b"SEARCH RECENT"),
    ("a", b"SEARCH NEW"),
    ("a", b"SEARCH OLD"),
    ("b", b"SELECT st"),
    ("b", b"FETCH 1:* FLAGS"),
    ("b", b"STATUS INBOX (RECENT)"),
    ("c", b"APPEND st {3+}\r\nef\n"),
    ("a", b"NOOP"),
    ("b", b"NOOP"),
    ("a", b"STORE 1 +FLAGS ($Hello)"),
    ("b", b"NOOP"),
    ("b", b"FETCH 1 MODSEQ"),
    ("b", b"STORE 2 +FLAGS (\\Flagged)"),
    ("b", b"SEARCH MODSEQ 1"),
    ("b", b"SEARCH RETURN (SAVE) FLAGGED"),
    ("b", b"FETCH $ (UID FLAGS)"),
    ("b", b"SEARCH RETURN (MIN SAVE) ALL"),
    ("b", b"UID SEARCH $"),
    ("b", b"SEARCH RETURN (PARTIAL 1:2) ALL"),
    ("b", b"SEARCH RETURN (UPDATE COUNT) FLAGGED"),
    ("b", b"STORE 1 +FLAGS (\\Flagged)"),
    ("b", b'CANCELUPDATE "t27"'),
    ("b", b'CANCELUPDATE "nope"'),
    ("b", b"FETCH 1 SAVEDATE"),
    ("b", b"SEARCH SAVEDATESUPPORTED"),
    ("b", b"SEARCH YOUNGER 3600"),
    ("b", b"SEARCH OLDER 3600"),
    ("b", b"STORE 3 +FLAGS.SILENT (\\Deleted)"),
    ("b", b"EXPUNGE"),
    ("a", b"NOOP"),
    ("c", b"ENABLE QRESYNC"),
    ("c", b"SELECT st (QRESYNC (1 1))"),
    ("c", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"),
    ("c", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)"),
    ("c", b"STORE 2 +FLAGS.SILENT (\\Deleted)"),
    ("c", b"EXPUNGE"),
    ("c", b"EXAMINE INBOX"),
    ("b", b"ENABLE CONDSTORE X-FOO"),
    ("b", b"ENABLE X-FOO"),
    ("a", b"ENABLE CONDSTORE"),
    ("a", b"NOOP"),
    ("a", b"NOTIFY SET STATUS (mailboxes INBOX (MessageNew MessageExpunge FlagChange))"),
    ("a", b"UNSELECT"),
    ("a", b"DELETE st"),
)

_MASKS = (
    (re.compile(rb" \(\d+\.\d+ \+ \d+\.\d+( \+ \d+\.\d+)? secs\)"), b""),
    (re.compile(rb"(UIDVALIDITY|COPYUID|APPENDUID) \d+"), rb"\1 V"),
    (re.compile(rb'"\d\d-\w\w\w-\d{4} [\d:]+ [+-]\d{4}"'), b'"DATE"'),
)


class _Session:
    def __init__(self, endpoint: Endpoint, tls: ssl.SSLContext) -> None:
        sock = socket.create_connection(endpoint.address, timeout=10)
        self.sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")
        self.file.readline()

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.sock.sendall(tag + b" " + text + b"\r\n")
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError(f"connection closed during {text!r}")
            for pattern, replacement in _MASKS:
                line = pattern.sub(replacement, line)
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def converse(server: MailServer) -> Iterator[tuple[bytes, list[bytes]]]:
    sessions: dict[str, _Session] = {}
    try:
        for number, (who, text) in enumerate(CONVERSATION):
            if who not in sessions:
                sessions[who] = _Session(server.imap.implicit, server.ca.client_context())
                sessions[who].command(b"L", b'LOGIN "alice@example.test" "alice-password"')
            yield who.encode() + b": " + text, sessions[who].command(b"t%d" % number, text)
    finally:
        for session in sessions.values():
            session.close()


def test_fake_says_what_dovecot_says(mail_ca: MailCA) -> None:
    require_backend("dovecot")
    replies = {}
    for backend in ("fake", "dovecot"):
        with MailServer(MailConfig(backend=backend), ca=mail_ca) as server:
            replies[backend] = list(converse(server))
    for (command, fake), (_, dovecot) in zip(replies["fake"], replies["dovecot"], strict=True):
        assert fake == dovecot, f"{command!r}: the fake differs from Dovecot"


@pytest.mark.parametrize("tag", [b"t27"])
def test_the_cancelled_update_is_the_one_started(tag: bytes) -> None:
    """The conversation's CANCELUPDATE names the SEARCH RETURN (UPDATE) it started."""
    number = int(tag[1:])
    assert CONVERSATION[number][1].startswith(b"SEARCH RETURN (UPDATE")
    assert CONVERSATION[number + 2][1] == b'CANCELUPDATE "%s"' % tag
