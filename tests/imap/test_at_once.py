"""LOGIN and LOGOUT answered at once (issue 13) say and do what the engine does.

A lone ``LOGIN`` or ``LOGOUT`` line skips the framing loop
(`IMAPConnection.simple_command`) and the command engine
(`Session.answer_at_once`). These tests hold the shortcut to the long way: the
same Command from the same line, and over real sockets the same bytes on the
wire, the same transcript, the same recorded errors and the same account state,
for every outcome a login can have.
"""

from __future__ import annotations

import dataclasses
import random
import re
import socket
from collections.abc import Callable

import pytest
from mailharness.servers.accounts import Lockout
from mailharness.servers.imap import IMAPSettings
from mailharness.servers.imap.protocol import (
    NEED_DATA,
    Command,
    ContinuationRequest,
    IMAPConnection,
)

from tests.imap.conftest import CALL_TIMEOUT, MakeIMAP, RunningIMAP

# -- the line: simple_command against the framing loop ---------------------------------

HANDPICKED = [
    b"a LOGIN alice@example.test alice-password\r\n",
    b'a LOGIN "alice@example.test" "alice-password"\r\n',
    b'a login alice "pass word with (parens) {5} and [brackets]"\r\n',
    b'A1.2 LoGiN "" ""\r\n',
    b"b LOGOUT\r\n",
    b"b logout\r\n",
    b"b LOGOUT extra\r\n",
    b"b LOGOUT\n",
    b"a LOGIN alice\r\n",
    b"a LOGIN alice pw extra\r\n",
    b"a LOGIN al%ice pw\r\n",
    b"a LOGIN alice pw}\r\n",
    b"a LOGIN alice {5}\r\n",
    b'a LOGIN alice "back\\\\slash"\r\n',
    b"a LOGIN alice caf\xc3\xa9\r\n",
    b"a LOGIN  alice pw\r\n",
    b"+ LOGIN alice pw\r\n",
    b"a UID LOGIN alice pw\r\n",
    b"a LOGIN alice 12345678901234567890\r\n",
    b"a LOGOUT\r\nb NOOP\r\n",
]
# Characters that matter to the tokenizer, and plain ones.
ALPHABET = b"aZ09.@-_+!#$&'|~ \"()[]{}%*\\\x00\x7f\xc3\r\n"


def parsed_by_loop(data: bytes, conn: IMAPConnection) -> Command | None:
    """The loop's event for `data`, if it is a whole Command and all of `data` went into it."""
    conn.receive_data(data)
    event = conn.next_event()
    if not isinstance(event, Command) or conn.buffered:
        return None
    return event if conn.next_event() is NEED_DATA else None


def new_parser(prelogin: bool, **limits: int) -> IMAPConnection:
    return IMAPConnection(prelogin=prelogin, **limits)


def random_lines(count: int) -> list[bytes]:
    rng = random.Random(13)
    lines = []
    for _ in range(count):
        verb = rng.choice([b"LOGIN", b"login", b"LOGOUT", b"Logout"])
        words = [
            bytes(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6)))
            for _ in range(rng.randint(0, 3))
        ]
        args = b"".join(b" " + w for w in words)
        if rng.random() < 0.5 and words:
            args = b"".join(b' "' + w.replace(b'"', b"") + b'"' for w in words)
        tag = rng.choice([b"a", b"A1", b"x.9", b"+", b"*", b"t" * 70])
        lines.append(tag + b" " + verb + args + b"\r\n")
    return lines


@pytest.mark.parametrize("prelogin", [True, False])
def test_a_simple_command_is_the_loops_command(prelogin: bool) -> None:
    taken = 0
    for line in HANDPICKED + random_lines(20_000):
        quick = new_parser(prelogin).simple_command(line)
        if quick is None:
            continue
        taken += 1
        assert parsed_by_loop(line, new_parser(prelogin)) == quick, line
    assert taken > 1_500  # the random lines do reach the shortcut


def test_a_simple_command_is_taken_for_the_common_lines() -> None:
    conn = new_parser(True)
    assert conn.simple_command(HANDPICKED[0]) == Command(
        "a", "LOGIN", ("alice@example.test", "alice-password"), False, HANDPICKED[0][:-2].decode()
    )
    assert conn.simple_command(HANDPICKED[1]) is not None  # imaplib quotes both
    assert conn.simple_command(b"b LOGOUT\r\n") is not None


@pytest.mark.parametrize(
    "limits",
    [{"max_tag": 2}, {"max_login_command": 20}, {"max_line": 20}],
    ids=lambda limits: next(iter(limits)),
)
def test_a_line_over_a_limit_is_left_to_the_loop(limits: dict[str, int]) -> None:
    line = b"abc LOGIN alice@example.test alice-password\r\n"
    assert new_parser(True, **limits).simple_command(line) is None


def test_nothing_is_taken_while_input_waits() -> None:
    conn = new_parser(True)
    conn.receive_data(b"a NOOP")  # half a line
    assert conn.simple_command(b"b LOGOUT\r\n") is None
    conn = new_parser(True)
    conn.receive_data(b"a LOGIN {5}\r\n")  # waiting for a literal
    assert isinstance(conn.next_event(), ContinuationRequest)
    assert conn.simple_command(b"b LOGOUT\r\n") is None


# -- the session: at once against the engine, over real sockets -------------------------

#: Dovecot's refusal texts carry the time: ``[host:2026-12-07 02:40:01]``.
_TIME = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
Script = list[list[bytes]]  # per connection, the lines sent one at a time


def converse(running: RunningIMAP, script: Script) -> list[bytes]:
    """Each connection's bytes as received. The connections open together and take
    turns, a line each; a line goes after the reply to the one before it."""
    socks = [socket.create_connection(running.none.address, CALL_TIMEOUT) for _ in script]
    try:
        received = [read_reply(sock, None) for sock in socks]
        for step in range(max(len(lines) for lines in script)):
            for i, (sock, lines) in enumerate(zip(socks, script, strict=True)):
                if step >= len(lines) or received[i].endswith(b"<closed>"):
                    continue
                line = lines[step]
                try:
                    sock.sendall(line)
                except OSError:
                    received[i] += b"<closed>"
                    continue
                last_tag = line.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1].split(b" ", 1)[0]
                received[i] += read_reply(sock, last_tag)
    finally:
        for sock in socks:
            sock.close()
    return [_TIME.sub(b"<time>", data) for data in received]


def read_reply(sock: socket.socket, tag: bytes | None) -> bytes:
    """Through the line tagged `tag` (None: the first line), or to the close."""
    data = b""
    while True:
        complete = data.split(b"\r\n")[:-1]
        if complete and (tag is None or any(ln.startswith(tag + b" ") for ln in complete)):
            return data
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data + b"<closed>"
        data += chunk


def observed(running: RunningIMAP, script: Script) -> dict[str, object]:
    """What a script leaves: the wire, the transcript (the server notes each line before
    it sends it, so all is there once the client has the replies; the close events
    may still be on their way and are left out), the errors and the accounts."""
    wire = converse(running, script)
    events = [
        (
            e.direction,
            _TIME.sub(b"<time>", e.text.encode()),
            e.tag,
            e.command,
            e.status,
            e.login,
            e.mechanism,
            e.secret,
        )
        for t in running.transcripts
        for e in t.events
        if e.direction != "event"
    ]
    failures = {login: len(times) for login, times in running.accounts._failures.items()}
    errors = [*running.errors, *running.server.client_errors]
    running.errors.clear()
    alice = running.accounts.get("alice@example.test")
    return {"wire": wire, "events": events, "errors": errors, "alice": alice, "failures": failures}


ALICE_LOGIN = b"a LOGIN alice@example.test alice-password\r\n"
QUOTED_LOGIN = b'a LOGIN "alice@example.test" "alice-password"\r\n'
WRONG = b"a LOGIN alice@example.test wrong\r\n"
LOGOUT = b"b LOGOUT\r\n"

SCRIPTS: dict[str, Script] = {
    "login-logout": [[ALICE_LOGIN, LOGOUT]],
    "quoted": [[QUOTED_LOGIN, LOGOUT]],
    "lower-case": [[ALICE_LOGIN.replace(b"LOGIN", b"login"), b"b logout\r\n"]],
    "wrong-then-right": [[WRONG, WRONG.replace(b"a ", b"c ", 1), ALICE_LOGIN, LOGOUT]],
    "app-password": [[b"a LOGIN alice@example.test app-secret\r\n", LOGOUT]],
    "unknown-user": [[b"a LOGIN nobody@example.test pw\r\n", LOGOUT]],
    "twice": [[ALICE_LOGIN, ALICE_LOGIN.replace(b"a ", b"c ", 1), LOGOUT]],
    "logout-first": [[LOGOUT]],
    "two-connections": [[ALICE_LOGIN, LOGOUT], [ALICE_LOGIN, LOGOUT]],
    "pipelined": [[ALICE_LOGIN + LOGOUT]],
}

Setup = Callable[[RunningIMAP], None]


def _no_setup(running: RunningIMAP) -> None:
    pass


def _app_password(running: RunningIMAP) -> None:
    running.accounts.update(
        "alice@example.test", app_password="app-secret", require_app_password=True
    )


def _disabled(running: RunningIMAP) -> None:
    running.accounts.update("alice@example.test", disabled=True)


def _lockout(running: RunningIMAP) -> None:
    running.accounts.lockout = Lockout(max_failures=1, seconds=60)


def _backend_down(running: RunningIMAP) -> None:
    running.accounts.backend_down = True


SERVERS: dict[str, tuple[IMAPSettings, bool, Setup]] = {
    "dovecot": (IMAPSettings(), True, _no_setup),
    "plaintext-refused": (IMAPSettings(), False, _no_setup),
    "gmail": (IMAPSettings(personality="gmail"), True, _no_setup),
    "outlook": (IMAPSettings(personality="outlook"), True, _no_setup),
    "yahoo": (IMAPSettings(personality="yahoo"), True, _no_setup),
    "login-disabled": (IMAPSettings(login_disabled=True), True, _no_setup),
    "failure-delay": (IMAPSettings(failure_delay=0.01), True, _no_setup),
    "backend-maintenance": (IMAPSettings(backend_maintenance=True), True, _no_setup),
    "one-per-ip": (IMAPSettings(max_userip_connections=1), True, _no_setup),
    "app-password": (IMAPSettings(personality="gmail"), True, _app_password),
    "disabled-account": (IMAPSettings(), True, _disabled),
    "lockout": (IMAPSettings(), True, _lockout),
    "backend-down": (IMAPSettings(), True, _backend_down),
}


@pytest.mark.parametrize("server", list(SERVERS))
def test_at_once_and_the_engine_give_the_same_session(
    server: str, make_imap: MakeIMAP, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, plaintext_login, setup = SERVERS[server]

    def run_all() -> dict[str, dict[str, object]]:
        seen = {}
        for name, script in SCRIPTS.items():
            running = make_imap(dataclasses.replace(settings), plaintext_login=plaintext_login)
            setup(running)
            seen[name] = observed(running, script)
        return seen

    at_once = run_all()
    monkeypatch.setattr(IMAPConnection, "simple_command", lambda self, data: None)
    engine = run_all()
    for name in SCRIPTS:
        assert at_once[name] == engine[name], name
