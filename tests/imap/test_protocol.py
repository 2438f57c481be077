"""The sans-IO core: framing, tokens, limits, responses, states."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from mailharness.servers.imap.protocol import (
    NEED_DATA,
    BadInput,
    ClientLine,
    Command,
    ContinuationRequest,
    IMAPConnection,
    tokenize,
)
from mailharness.servers.imap.responses import (
    Continuation,
    Status,
    Tagged,
    Untagged,
    UntaggedStatus,
)
from mailharness.servers.imap.states import IllegalTransition, State, Transition, next_state

PURE_MODULES = ("protocol.py", "responses.py", "replies.py", "states.py", "sasl.py")
FORBIDDEN = {"asyncio", "socket", "ssl", "threading", "time"}


@pytest.mark.parametrize("module", PURE_MODULES)
def test_core_imports_no_io(module: str) -> None:
    path = Path(__file__).parents[2] / "servers" / "imap" / module
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN


def events(conn: IMAPConnection) -> list[object]:
    out: list[object] = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def feed(data: bytes, **limits: int) -> list[object]:
    conn = IMAPConnection(**limits)
    conn.receive_data(data)
    return events(conn)


def test_simple_command() -> None:
    [cmd] = feed(b"a1 noop\r\n")
    assert cmd == Command(tag="a1", name="NOOP", args=(), transcript="a1 noop")


def test_uid_command_and_fetch_attributes() -> None:
    [cmd] = feed(b"a UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.100>)\r\n")
    assert isinstance(cmd, Command)
    assert cmd.uid and cmd.name == "FETCH"
    assert cmd.args == ("1:*", ["UID", "BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.100>"])


def test_quoted_strings_are_bytes_with_escapes() -> None:
    [cmd] = feed(b'a LOGIN "al\\"ice" "p\\\\w"\r\n')
    assert isinstance(cmd, Command)
    assert cmd.args == (b'al"ice', b"p\\w")


def test_synchronizing_literal_asks_for_continuation() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"a APPEND INBOX (\\Seen) {5}\r\n")
    assert conn.next_event() == ContinuationRequest("a", 5, "APPEND")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"hel")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"lo\r\n")
    cmd = conn.next_event()
    assert isinstance(cmd, Command)
    assert cmd.args == ("INBOX", ["\\Seen"], b"hello")
    assert cmd.transcript == "a APPEND INBOX (\\Seen) {5}"


def test_refused_literal_is_forgotten() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"a UID APPEND INBOX {500000}\r\n")
    assert conn.next_event() == ContinuationRequest("a", 500000, "APPEND")
    conn.reject_literal()
    conn.receive_data(b"b NOOP\r\n")
    cmd = conn.next_event()
    assert isinstance(cmd, Command) and cmd.tag == "b"


def test_literal_plus_needs_no_continuation() -> None:
    [cmd] = feed(b"a LOGIN {5+}\r\nalice {2+}\r\npw\r\n")
    assert isinstance(cmd, Command)
    assert cmd.args == (b"alice", b"pw")


def test_byte_by_byte_feeding() -> None:
    conn = IMAPConnection()
    out: list[object] = []
    for byte in b"t1 SELECT {5+}\r\nINBOX\r\nt2 NOOP\r\n":
        conn.receive_data(bytes([byte]))
        out.extend(events(conn))
    assert [c.name for c in out if isinstance(c, Command)] == ["SELECT", "NOOP"]


def test_unbalanced_parens_is_bad_and_parser_goes_on() -> None:
    bad, ok = feed(b"a FETCH 1 (FLAGS\r\nb NOOP\r\n")
    assert bad == BadInput("a", "FETCH", "Missing ')'")
    assert isinstance(ok, Command) and ok.name == "NOOP"
    [bad] = feed(b"a FETCH 1 FLAGS)\r\n")
    assert isinstance(bad, BadInput) and bad.reason == "Unexpected ')'"


def test_garbage_is_untagged_bad() -> None:
    [bad] = feed(b"\x00\x01\x02 garbage\r\n")
    assert isinstance(bad, BadInput) and bad.tag is None


def test_empty_lines_are_ignored() -> None:
    [cmd] = feed(b"\r\n\r\na NOOP\r\n")
    assert isinstance(cmd, Command)


def test_line_too_long_is_bad_then_resyncs() -> None:
    conn = IMAPConnection(max_line=1024)
    conn.receive_data(b"a NOOP " + b"x" * 2000)
    bad = conn.next_event()
    assert isinstance(bad, BadInput) and bad.reason == "Too long argument."
    conn.receive_data(b"yyy\r\nb NOOP\r\n")
    [cmd] = events(conn)
    assert isinstance(cmd, Command) and cmd.tag == "b"


def test_huge_synchronizing_literal_is_refused_without_reading_it() -> None:
    bad, ok = feed(b"a APPEND INBOX {99999999999}\r\nb NOOP\r\n")
    assert bad == BadInput("a", None, "Literal too large")
    assert isinstance(ok, Command) and ok.tag == "b"


def test_huge_literal_plus_is_fatal() -> None:
    [bad] = feed(b"a APPEND INBOX {99999999999+}\r\n")
    assert isinstance(bad, BadInput) and bad.fatal


def test_line_mode_for_sasl_and_idle() -> None:
    conn = IMAPConnection()
    conn.receive_data(b"a IDLE\r\n")
    assert isinstance(conn.next_event(), Command)
    conn.expect_line()
    conn.receive_data(b"DONE\r\nb NOOP\r\n")
    assert conn.next_event() == ClientLine(b"DONE")
    assert isinstance(conn.next_event(), Command)


def test_tokenize_nested_lists_and_nil() -> None:
    assert tokenize([b'(A (B "c") NIL) D'], []) == [["A", ["B", b"c"], "NIL"], "D"]


def test_response_serialisation() -> None:
    assert (
        Tagged("a1", Status.OK, "Done.", "READ-WRITE").to_bytes() == b"a1 OK [READ-WRITE] Done.\r\n"
    )
    assert UntaggedStatus(Status.BYE, "Logging out").to_bytes() == b"* BYE Logging out\r\n"
    assert Untagged(b"3 EXISTS").to_bytes() == b"* 3 EXISTS\r\n"
    assert Continuation("idling").to_bytes() == b"+ idling\r\n"
    with pytest.raises(ValueError, match="tagged response"):
        Tagged("a", Status.BYE, "no")


def test_state_table() -> None:
    assert next_state(State.NOT_AUTHENTICATED, Transition.LOGGED_IN) is State.AUTHENTICATED
    assert next_state(State.SELECTED, Transition.SELECT_FAILED) is State.AUTHENTICATED
    with pytest.raises(IllegalTransition, match="'selected' is not allowed in state"):
        next_state(State.NOT_AUTHENTICATED, Transition.SELECTED)


def test_docstring_examples() -> None:
    import doctest

    from mailharness.servers.imap import protocol, replies

    for module in (protocol, replies):
        assert doctest.testmod(module).failed == 0


def test_core_loads_without_asyncio_or_ssl() -> None:
    """Transitively too, not just its own import lines: the package's exports are lazy.

    (The stdlib's email.utils imports socket for make_msgid, and the shared accounts
    use a threading lock: neither is I/O the core does.)
    """
    code = (
        "import sys\n"
        "import mailharness.servers.imap.session, mailharness.servers.imap.protocol\n"
        "print(sorted({'asyncio', 'ssl'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
