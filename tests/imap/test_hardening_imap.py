"""Hostile IMAP clients (issue 14): each test is named after the attack, talks over
real sockets and asserts what Dovecot 2.3.19 answers (measured on this machine)."""

from __future__ import annotations

import imaplib
import logging
import resource
import socket
import ssl
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from mailharness.servers.imap.settings import IMAPSettings
from mailharness.servers.listeners import ACCEPT_ERRORS, default_connection_cap
from mailharness.servers.transcript import TranscriptLog

from tests.helpers import cycles_after, peak_rss, served
from tests.imap.conftest import MakeIMAP, RawClient, RunningIMAP

MIB = 1024 * 1024


def test_login_with_58_literals_of_64mib_refused_memory_bounded() -> None:
    with served("plaintext-only") as (proc, endpoints):
        _attack_with_58_literals(proc, endpoints["imap"])


def _attack_with_58_literals(proc: subprocess.Popen[bytes], address: tuple[str, int]) -> None:
    before = peak_rss(proc.pid)
    chunk = b"x" * MIB
    with socket.create_connection(address, timeout=30) as evil:
        evil.recv(4096)  # greeting
        sent = 0
        with pytest.raises(OSError):
            evil.sendall(b"a LOGIN {62914560+}\r\n")
            # Another client is served while the attacker is still sending.
            with imaplib.IMAP4(*address, timeout=30) as good:
                good.login("alice@example.test", "alice-password")
                assert good.noop()[0] == "OK"
            for _ in range(58):
                for _ in range(64):
                    evil.sendall(chunk)
                    sent += len(chunk)
            evil.sendall(b"\r\n")
            pytest.fail("the server read every literal")  # pragma: no cover
        answer = evil.recv(4096)
        assert answer in (b"", b"* BYE Literal size too large\r\n")
    assert sent < 58 * 64 * MIB
    assert peak_rss(proc.pid) - before < 64 * MIB


def test_literal_over_8kib_before_login_is_bye_literal_size_too_large(imap: RunningIMAP) -> None:
    with RawClient(imap.none) as raw:
        raw.send(b"a LOGIN {9000}\r\n")
        assert raw.line() == b"* BYE Literal size too large\r\n"
        with pytest.raises((EOFError, ConnectionError)):
            raw.line()
    imap.errors.clear()


def test_long_line_before_login_is_bye_input_buffer_full(imap: RunningIMAP) -> None:
    with RawClient(imap.none) as raw:
        raw.send(b"a NOOP " + b"x" * 10_000 + b"\r\n")
        assert raw.line() == b"* BYE Input buffer full, aborting\r\n"
    imap.errors.clear()


def test_literals_over_64kib_in_one_command_after_login_are_bye(imap: RunningIMAP) -> None:
    with RawClient(imap.none) as raw:
        raw.login()
        raw.send(b"a SEARCH TEXT {40000+}\r\n" + b"x" * 40_000 + b" TEXT {40000+}\r\n")
        assert raw.line() == b"* BYE Literal size too large\r\n"
    imap.errors.clear()


def test_multiappend_over_its_total_is_refused(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(max_append_bytes=4096))
    with RawClient(imap.none) as raw:
        raw.login()
        raw.send(b"a APPEND INBOX {3000}\r\n")
        assert raw.line().startswith(b"+ ")
        raw.send(b"x" * 3000 + b" {3000}\r\n")
        assert raw.line() == b"a BAD Literal too large\r\n"
        [ok] = raw.command(b"b", b"NOOP")
        assert ok.startswith(b"b OK")
    imap.errors.clear()


def test_tag_over_126_bytes_before_login_is_not_echoed(imap: RunningIMAP) -> None:
    with RawClient(imap.none) as raw:
        raw.send(b"t" * 200 + b" NOOP\r\n")
        assert raw.line() == b"* BAD Error in IMAP command received by server.\r\n"
        [ok] = raw.command(b"b", b"NOOP")
        assert ok.startswith(b"b OK")
        [ok] = raw.command(b"t" * 126, b"NOOP")  # Dovecot's IMAP_TAG_MAX_LEN still fits
        assert ok.startswith(b"t" * 126 + b" OK")
    imap.errors.clear()


def test_tagless_100kb_line_is_not_the_echoed_tag(imap: RunningIMAP) -> None:
    with RawClient(imap.none) as raw:
        raw.login()
        raw.send(b"x" * 100_000 + b"\r\nb NOOP\r\n")
        assert raw.line() == b"* BAD Error in IMAP command received by server.\r\n"
        assert raw.until(b"b")[-1].startswith(b"b OK")
    client_errors = imap.server.client_errors
    assert client_errors and all(len(error) < 1000 for error in client_errors)
    assert imap.errors == []


HUGE = b"9" * 5000


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"FETCH " + HUGE + b" FLAGS", b"BAD Error in IMAP command FETCH: Invalid messageset"),
        (
            b"UID FETCH 1:" + HUGE + b" FLAGS",
            b"BAD Error in IMAP command UID FETCH: Invalid uidset",
        ),
        (b"SEARCH LARGER " + HUGE, b"BAD Error in IMAP command SEARCH: "),
        (b"SEARCH MODSEQ " + HUGE, b"BAD Error in IMAP command SEARCH: "),
        (b"UID SEARCH UID " + HUGE, b"BAD Error in IMAP command UID SEARCH: "),
        (b"FETCH 1 BODY[" + HUGE + b"]", b"BAD Error in IMAP command FETCH: "),
        (b"FETCH 1 BODY[]<" + HUGE + b".1>", b"BAD Error in IMAP command FETCH: "),
        (b"FETCH 1 (FLAGS) (CHANGEDSINCE " + HUGE + b")", b"BAD Error in IMAP command FETCH: "),
        (b"STORE 1 (UNCHANGEDSINCE " + HUGE + b") +FLAGS (x)", b"BAD Error in IMAP command STORE:"),
    ],
)
def test_numbers_over_4300_digits_are_bad_not_serverbug(
    imap: RunningIMAP, command: bytes, reply: bytes
) -> None:
    with RawClient(imap.none) as raw:
        raw.login()
        raw.command(b"s", b"SELECT INBOX")
        [bad] = raw.command(b"a", command)[-1:]
        assert bad.startswith(b"a " + reply)
    assert not [e for e in imap.errors if "server error" in e or "exception" in e]
    imap.errors.clear()


def test_login_timeout_disconnects_for_inactivity(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(login_timeout=0.2))
    with RawClient(imap.none) as raw:
        assert raw.line() == b"* BYE Disconnected for inactivity.\r\n"


def test_login_timeout_ends_at_login_and_the_idle_timeout_goes_on(make_imap: MakeIMAP) -> None:
    """One timer serves both: once logged in, only the idle timeout (from the last
    command) can end the session. The BYE cannot come early, so no upper bound."""
    imap = make_imap(
        IMAPSettings(login_timeout=0.1, idle_timeout=0.8, plaintext_auth_requires_tls=False)
    )
    with RawClient(imap.none) as raw:
        raw.login()
        logged_in = time.monotonic()
        assert raw.line() == b"* BYE Disconnected for inactivity.\r\n"
        assert time.monotonic() - logged_in >= 0.75


def test_login_timeout_default_is_dovecots_3_minutes() -> None:
    assert IMAPSettings().login_timeout == 180.0


def test_connection_flood_is_refused_with_queue_full(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(max_connections=2))
    with RawClient(imap.none), RawClient(imap.none), RawClient(imap.none) as third:
        assert third.greeting == b"* BYE Connection queue full\r\n"
    assert imap.server._default_cap == default_connection_cap()
    imap.server.settings = replace(imap.server.settings, max_connections=None)


def test_accept_out_of_fds_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("asyncio")
    before = ACCEPT_ERRORS.suppressed
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for _ in range(3):
            logger.error("socket.accept() out of system resource\nsocket: <...>")
    assert len([r for r in caplog.records if "accept()" in r.getMessage()]) <= 1
    assert ACCEPT_ERRORS.suppressed >= before + 2


def test_transcripts_are_a_ring_buffer() -> None:
    log = TranscriptLog(max_items=3)
    for i in range(5):
        log.open("imap", f"peer{i}", "x")
    assert [t.peer for t in log] == ["peer2", "peer3", "peer4"]
    assert log.dropped == 2


def test_aborted_tls_handshakes_leave_no_reference_cycles(imap: RunningIMAP) -> None:
    """A client refusing our certificate: its handshake was ~140 KB for the collector."""
    refusing = ssl.create_default_context()  # does not trust the harness CA

    def handshakes() -> None:
        for _ in range(10):
            with socket.create_connection(imap.implicit.address, timeout=5) as sock:
                with pytest.raises(ssl.SSLError):
                    refusing.wrap_socket(sock, server_hostname="localhost")
        with RawClient(imap.none) as raw:  # the loop has handled every abort by now
            raw.login()

    assert cycles_after(handshakes) == {}


def test_sessions_leave_no_reference_cycles(imap: RunningIMAP) -> None:
    def sessions() -> None:
        for _ in range(10):
            with RawClient(imap.none) as raw:
                raw.login()
                raw.command(b"s", b"SELECT INBOX")
                raw.command(b"z", b"LOGOUT")
        with RawClient(imap.none) as raw:  # the loop has closed every one by now
            raw.login()

    assert cycles_after(sessions) == {}


def test_non_ascii_command_name_is_bad_not_serverbug(imap: RunningIMAP) -> None:
    """Found by tests/test_hardening_fuzz.py: the BAD reply itself raised UnicodeEncodeError."""
    with RawClient(imap.none) as raw:
        raw.login()
        [bad] = raw.command(b"t0", b"\x80")
        assert bad == b"t0 BAD Error in IMAP command received by server.\r\n"
        [bad] = raw.command(b"t1", b"UID \xff\xfe")
        assert bad == b"t1 BAD Error in IMAP command received by server.\r\n"
    assert not [e for e in imap.errors if "exception" in e or "server error" in e]
    imap.errors.clear()


def test_long_id_before_login_is_served_as_dovecot_does(imap: RunningIMAP) -> None:
    """Dovecot's imap-login reads ID element by element (imaptest's `id` group sends 31 KB
    before login); we allow it the 64 KiB line limit, and BYE past it."""
    params = b" ".join(b'"k%d" "%s"' % (i, b"v" * 1000) for i in range(30))
    with RawClient(imap.none) as raw:
        reply = raw.command(b"a", b"ID (" + params + b")")
        assert reply[-1].startswith(b"a OK")
        raw.send(b"b ID (" + params * 3 + b")\r\n")
        assert raw.line() == b"* BYE Input buffer full, aborting\r\n"
    imap.errors.clear()


def test_fd_exhaustion_logs_accept_error_once_and_serving_resumes(tmp_path: Path) -> None:
    """20,000 idle connections once made asyncio log `socket.accept() out of system
    resource` 1.9 million times. Here the server process gets 64 fds and no cap."""
    scenario = tmp_path / "no-cap.toml"
    scenario.write_text('base = "plaintext-only"\n[imap]\nmax_connections = 100000\n')

    def few_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    hogs: list[socket.socket] = []
    with served(str(scenario), stderr=subprocess.PIPE, preexec_fn=few_fds) as (proc, endpoints):
        assert proc.stderr is not None
        address = endpoints["imap"]
        try:
            for _ in range(100):
                hogs.append(socket.create_connection(address, timeout=30))
            first = proc.stderr.readline()  # blocks until the server has run out of fds
            assert b"socket.accept() out of system resource" in first
        finally:
            for hog in hogs:
                hog.close()
        with imaplib.IMAP4(*address, timeout=30) as good:  # accepting resumed
            good.login("alice@example.test", "alice-password")
        proc.terminate()
        err = proc.stderr.read()
    assert err.count(b"out of system resource") == 0  # only the first line, read above


def test_non_utf8_argument_quoted_in_bad_is_sent_back_as_is(imap: RunningIMAP) -> None:
    """Found by tests/test_hardening_fuzz.py: `THREAD \\x80` made the BAD text unencodable."""
    with RawClient(imap.none) as raw:
        raw.login()
        raw.command(b"s", b"SELECT INBOX")
        [bad] = raw.command(b"t0", b"THREAD \x80 UTF-8 ALL")
        assert bad.startswith(b"t0 BAD ")  # answered, not a server error
        *_, bad = raw.command(b"t1", b"SELECT \x80")  # Dovecot: NO, not a server error
        assert bad.startswith(b"t1 NO ") or bad.startswith(b"t1 BAD ")
    assert not [e for e in imap.errors if "exception" in e or "server error" in e]
    imap.errors.clear()
