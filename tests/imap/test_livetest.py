"""imapclient's own live test suite against our server (the acceptance target).

`python -m imapclient.livetest CONFIG.ini` runs 59 tests written against real
servers. Some cannot pass against any server on loopback with Python 3.11 and
imapclient 3.x, Dovecot included; every other test must pass (or be skipped
for a capability Dovecot 2.3 lacks too: Gmail extensions, XLIST, ACL), except,
for now, one that stock Dovecot passes only by greeting slowly (see
GREETING_LATENCY_GAP).
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

from tests.imap.conftest import RunningIMAP

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
#: Passes on stock Dovecot, fails here: Dovecot forks a fresh imap-login per
#: connection (default `service_count = 1`), so its TLS ServerHello / greeting
#: comes 5-8 ms after connect and imapclient's 1 ms connect timeout fires. We
#: greet within 1 ms. With `service_count = 0` Dovecot fails it as well (46 passes).
#: See test_greeting_misses_a_1ms_connect_timeout.
GREETING_LATENCY_GAP = {"test_small_connection_timeout_fail"}
#: Stock Dovecot 2.3.19: 59 tests, 4 failures as in CLIENT_SIDE_FAILURES (test_fetch
#: runs twice), 8 skips for capabilities it lacks (Gmail x4, XLIST, ACL x2, one
#: UID-only test): 47 passes, over implicit TLS and STARTTLS alike.
DOVECOT_PASSES = 47
#: Ours until the greeting latency gap is closed; then DOVECOT_PASSES.
MIN_PASSES = 46
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


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit-tls", "starttls"])
def test_imapclient_livetest(imap: RunningIMAP, tmp_path: Path, starttls: bool) -> None:
    passes, failed, output = run_livetest(imap, tmp_path, starttls=starttls)
    summary = re.search(r"^Ran (\d+) tests", output, re.M)
    assert summary is not None and int(summary.group(1)) == 59, output[-3000:]
    assert failed <= CLIENT_SIDE_FAILURES | GREETING_LATENCY_GAP, output[-6000:]
    assert passes >= MIN_PASSES, output[-6000:]
    imap.server.errors.clear()  # livetest probes with commands in the wrong state on purpose


@pytest.mark.xfail(
    reason="server greets within 1 ms; stock Dovecot takes 5-8 ms (a fresh imap-login "
    "process per connection), which livetest's test_small_connection_timeout_fail relies on",
    strict=False,  # timing: a loaded machine may be slow enough anyway
)
@pytest.mark.parametrize("starttls", [False, True], ids=["implicit-tls", "starttls"])
def test_greeting_misses_a_1ms_connect_timeout(imap: RunningIMAP, starttls: bool) -> None:
    """livetest's test_small_connection_timeout_fail, alone: passes on stock Dovecot."""
    endpoint = imap.starttls if starttls else imap.implicit
    with pytest.raises(socket.timeout):
        imapclient.IMAPClient(
            *endpoint.address,
            ssl=not starttls,
            ssl_context=imap.certs.client(),
            timeout=imapclient.SocketTimeout(connect=0.001, read=10),
        )
