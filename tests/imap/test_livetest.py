"""imapclient's own live test suite against our server (the acceptance target).

`python -m imapclient.livetest CONFIG.ini` runs 59 tests written against real
servers. Some cannot pass against any server on loopback with Python 3.11 and
imapclient 3.x, Dovecot included; every other test must pass (or be skipped
for a capability Dovecot 2.3 lacks too: Gmail extensions, XLIST, ACL).

One livetest test depends on timing: stock Dovecot spawns a login process per
connection and greets 5-8 ms after connect, so livetest's 1 ms connect timeout
fires against it. The server here runs with `greeting_delay=0.005`, Dovecot's
timing, which is the configuration that claims to behave like stock Dovecot.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import imapclient
import pytest
from mailharness.servers.imap import IMAPSettings

from tests.imap.conftest import MakeIMAP, RunningIMAP

#: Fail against real Dovecot 2.3.19 here too (checked by hand), for client-side reasons.
CLIENT_SIDE_FAILURES = {
    # imapclient calls imaplib's `move` method, which Python 3.11's imaplib lacks
    # (imapclient only registers MOVE in imaplib.Commands): AttributeError before
    # anything is sent.
    "test_move",
    # livetest compares imapclient's Envelope dataclass as a sequence; the ENVELOPE
    # on the wire is byte-identical to Dovecot's.
    "test_fetch",
    # A 10 us read timeout is a 1 ms poll (CPython rounds up); both servers answer
    # NOOP within it on loopback.
    "test_small_read_timeout_fail",
}
#: Stock Dovecot's per-connection login process greets ~5 ms after connect, which is
#: what makes livetest's 1 ms timeout tests fail against it. 5 ms here raced a client
#: descheduled on a loaded machine (it read the greeting in time: a flaky test); 100 ms
#: keeps the same outcome whatever the load, for ~2 s more over the whole livetest.
DOVECOT_GREETING_DELAY = 0.1
#: Stock Dovecot 2.3.19: 59 tests, 4 failures as in CLIENT_SIDE_FAILURES (test_fetch
#: runs twice), 8 skips for capabilities it lacks (Gmail x4, XLIST, ACL x2, one
#: UID-only test): 47 passes, over implicit TLS and STARTTLS alike.
DOVECOT_PASSES = 47
MIN_PASSES = DOVECOT_PASSES
LIVETEST_TIMEOUT = 300


def run_livetest(imap: RunningIMAP, tmp_path: Path, *, starttls: bool) -> tuple[int, set[str], str]:
    endpoint = imap.starttls if starttls else imap.implicit
    ini = tmp_path / "livetest.ini"
    ini.write_text(
        "[DEFAULT]\n"
        f"host = {endpoint.host}\n"
        f"port = {endpoint.port}\n"
        f"ssl = {not starttls}\n"
        f"starttls = {starttls}\n"
        f"ssl_ca_file = {imap.certs.ca_path}\n"
        "username = alice@example.test\n"
        "password = alice-password\n"
    )
    # imapclient's config builds its STARTTLS context from the system trust
    # store, so point OpenSSL's default verify file at our CA.
    env = {**os.environ, "SSL_CERT_FILE": imap.certs.ca_path}
    proc = subprocess.run(
        [sys.executable, "-m", "imapclient.livetest", str(ini), "-v"],
        capture_output=True,
        text=True,
        timeout=LIVETEST_TIMEOUT,
        check=False,
        env=env,
    )
    output = proc.stdout + proc.stderr
    passes = len(re.findall(r"^(test_\w+) \(.*\) \.\.\. ok$", output, re.M))
    failed = set(re.findall(r"^(?:FAIL|ERROR): (test_\w+)", output, re.M))
    return passes, failed, output


@pytest.fixture
def dovecot_like(make_imap: MakeIMAP) -> RunningIMAP:
    return make_imap(IMAPSettings(greeting_delay=DOVECOT_GREETING_DELAY))


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit-tls", "starttls"])
def test_imapclient_livetest(dovecot_like: RunningIMAP, tmp_path: Path, starttls: bool) -> None:
    imap = dovecot_like
    passes, failed, output = run_livetest(imap, tmp_path, starttls=starttls)
    summary = re.search(r"^Ran (\d+) tests", output, re.M)
    assert summary is not None and int(summary.group(1)) == 59, output[-3000:]
    assert failed <= CLIENT_SIDE_FAILURES, output[-6000:]
    assert passes >= MIN_PASSES, output[-6000:]
    imap.server.errors.clear()  # livetest probes with commands in the wrong state on purpose


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit-tls", "starttls"])
def test_greeting_delay_misses_a_1ms_connect_timeout(
    dovecot_like: RunningIMAP, starttls: bool
) -> None:
    """livetest's test_small_connection_timeout_fail, alone, against Dovecot's timing."""
    endpoint = dovecot_like.starttls if starttls else dovecot_like.implicit
    with pytest.raises(socket.timeout):
        imapclient.IMAPClient(
            *endpoint.address,
            ssl=not starttls,
            ssl_context=dovecot_like.certs.client(),
            timeout=imapclient.SocketTimeout(connect=0.001, read=10),
        )
