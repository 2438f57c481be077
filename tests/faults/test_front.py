"""The fault front with real clients over real sockets, before our fake IMAP/SMTP backend.

Each test asserts what a client sees (SCENARIOS.md "connect", "tls",
"limits", "access"): the exception type and text, or a measured time.
Timing assertions measure; nothing sleeps waiting for readiness.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mailharness.lifecycle import LoopThread
from mailharness.server import ALL_SECURITIES, MailConfig, MailServer
from mailharness.servers.faults import (
    Allowlist,
    Bandwidth,
    ConnectionCap,
    DropAfter,
    DropOnCommand,
    FaultFront,
    FirewallDrop,
    Hang,
    Latency,
    Refuse,
    Reset,
    SlowGreeting,
    TLSVersion,
)
from mailharness.servers.imap import IMAPSettings
from mailharness.servers.listeners import Endpoint, Security
from mailharness.servers.smtp import SMTPSettings
from mailharness.servers.transcript import TranscriptLog

from tests.helpers import require_executable
from tests.leakcheck import assert_stopped_listening, listening_sockets

ALICE = ("alice@example.test", "alice-password")
CLIENT_TIMEOUT = 0.3  # the connector's short timeout, as the brief states it
BIG_MESSAGE_BYTES = 200_000
OTHER_SOURCE = "127.0.0.2"


def _big_message() -> bytes:
    body = b"".join(
        b"line %06d of a large message body, padded to width.....\r\n" % i for i in range(4000)
    )
    head = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: big\r\n\r\n"
    return (head + body)[:BIG_MESSAGE_BYTES]


@pytest.fixture(scope="module")
def backend() -> Iterator[MailServer]:
    # The fronts under test proxy plaintext to its plain listeners (or end TLS for it), so
    # it takes credentials in plaintext: said so here, the defaults refuse them.
    server = MailServer(
        MailConfig(
            imap=IMAPSettings(plaintext_auth_requires_tls=False),
            smtp=SMTPSettings(starttls_required=False),
            imap_listeners=ALL_SECURITIES,
            smtp_listeners=ALL_SECURITIES,
        )
    ).start()
    server.deliver(ALICE[0], b"From: bob@example.test\r\nSubject: hello\r\n\r\nHi Alice!\r\n")
    server.deliver(ALICE[0], _big_message())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread(name="fault-front-tests").start()
    yield thread
    thread.stop()


Make = Callable[..., FaultFront]


@pytest.fixture
def make_front(loop: LoopThread, backend: MailServer) -> Iterator[Make]:
    """Start a front before a backend endpoint (default: the IMAP plain listener)."""
    fronts: list[FaultFront] = []

    def make(*faults: Any, to: Endpoint | None = None, **options: Any) -> FaultFront:
        options.setdefault("certs", backend.ca)
        front = FaultFront(to or backend.imap.none, faults=faults, **options)
        loop.run(front.start())
        fronts.append(front)
        return front

    yield make
    for front in fronts:
        loop.run(front.stop())


def legacy_client(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client that allows old protocols at security level 0 (a lenient connector)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version or ssl.TLSVersion.TLSv1
        if version is not None:
            ctx.maximum_version = version
    ctx.set_ciphers("@SECLEVEL=0:ALL")
    return ctx


class SourcedIMAP(imaplib.IMAP4):
    """imaplib has no source_address; a connector bound to another local address does."""

    source = OTHER_SOURCE

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0))


def raw_login(address: tuple[str, int]) -> tuple[socket.socket, Any]:
    """A raw IMAP session (logged in, INBOX selected) for timing without client overhead."""
    sock = socket.create_connection(address, timeout=5)
    reader = sock.makefile("rb")
    reader.readline()
    for command in (b"a LOGIN alice@example.test alice-password", b"b SELECT INBOX"):
        sock.sendall(command + b"\r\n")
        tag = command.split()[0]
        while not reader.readline().startswith(tag + b" "):
            pass
    return sock, reader


def noop_rtt(sock: socket.socket, reader: Any) -> float:
    started = time.perf_counter()
    sock.sendall(b"n NOOP\r\n")
    while not reader.readline().startswith(b"n "):
        pass
    return time.perf_counter() - started


# --- plain forwarding ------------------------------------------------------------------


def test_without_faults_the_front_is_transparent(make_front: Make) -> None:
    front = make_front()
    assert front.endpoint.security is Security.NONE
    with imaplib.IMAP4(*front.address, timeout=5) as client:
        client.login(*ALICE)
        assert client.select("INBOX") == ("OK", [b"2"])


def test_smtp_mail_flows_through_the_front(make_front: Make, backend: MailServer) -> None:
    front = make_front(to=backend.smtp.none)
    assert front.protocol == "smtp"
    with smtplib.SMTP(*front.address, timeout=5) as client:
        client.login(*ALICE)
        client.sendmail(ALICE[0], ["bob@example.test"], b"Subject: via front\r\n\r\nhi\r\n")
    assert any(b"via front" in m.data for m in backend.wait_for_messages(1))


# --- connect ---------------------------------------------------------------------------


def test_refuse_gives_connection_refused_then_serves_again(make_front: Make) -> None:
    front = make_front(Refuse())
    with pytest.raises(ConnectionRefusedError) as info:
        socket.create_connection(front.address, timeout=CLIENT_TIMEOUT)
    assert info.value.errno == 111
    front.clear()  # from this (non-loop) thread: returns once the port listens again
    with imaplib.IMAP4(*front.address, timeout=5) as client:
        assert client.welcome.startswith(b"* OK")


def test_firewall_drop_times_out_in_connect(make_front: Make) -> None:
    front = make_front(FirewallDrop())
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        socket.create_connection(front.address, timeout=CLIENT_TIMEOUT)
    assert CLIENT_TIMEOUT <= time.monotonic() - started < CLIENT_TIMEOUT + 0.2
    front.clear()
    with imaplib.IMAP4(*front.address, timeout=5) as client:
        assert client.welcome.startswith(b"* OK")


def test_reset_gives_connection_reset(make_front: Make) -> None:
    front = make_front(Reset())
    with pytest.raises(ConnectionResetError) as info:
        imaplib.IMAP4(*front.address, timeout=5)
    assert info.value.errno == 104


def test_hang_gives_a_read_timeout(make_front: Make, backend: MailServer) -> None:
    front = make_front(Hang())
    with pytest.raises(TimeoutError):
        imaplib.IMAP4(*front.address, timeout=CLIENT_TIMEOUT)
    smtp_front = make_front(Hang(), to=backend.smtp.none)
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        smtplib.SMTP(*smtp_front.address, timeout=CLIENT_TIMEOUT)


def test_slow_greeting_needs_patience(make_front: Make) -> None:
    front = make_front(SlowGreeting(seconds=0.4))
    with pytest.raises(TimeoutError):
        imaplib.IMAP4(*front.address, timeout=CLIENT_TIMEOUT)
    started = time.monotonic()
    with imaplib.IMAP4(*front.address, timeout=2) as client:
        waited = time.monotonic() - started
        client.login(*ALICE)
    assert 0.4 <= waited < 0.5


# --- tls -------------------------------------------------------------------------------


def tls_connect(front: FaultFront, ctx: ssl.SSLContext) -> str:
    with socket.create_connection(front.address, timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            greeting = tls.recv(100)
            assert greeting.startswith(b"* OK")
            return str(tls.version())


def test_sslv3_only_refuses_modern_and_tls10_clients(make_front: Make, backend: MailServer) -> None:
    front = make_front(TLSVersion(version="sslv3"))
    assert front.endpoint.security is Security.IMPLICIT
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        tls_connect(front, backend.ca.client_context())
    with pytest.raises(ssl.SSLError, match="UNSUPPORTED_PROTOCOL"):
        tls_connect(front, legacy_client(ssl.TLSVersion.TLSv1))  # a TLS 1.0 client
    # A client allowing 1.0 to 1.3 sends supported_versions: tlslite answers with an alert.
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        tls_connect(front, legacy_client())


def test_sslv3_only_serves_an_sslv3_client(make_front: Make) -> None:
    """The port really speaks SSL 3.0 (through tlslite-ng's client), not just refuses."""
    # As the server does, through sslv3: tlslite's asyncore DeprecationWarning silenced.
    from mailharness.servers.faults.sslv3 import HandshakeSettings, TLSConnection

    front = make_front(TLSVersion(version="sslv3"))
    settings = HandshakeSettings()
    settings.minVersion = settings.maxVersion = (3, 0)
    settings.versions = [(3, 0)]
    with socket.create_connection(front.address, timeout=5) as raw:
        tls = TLSConnection(raw)
        tls.handshakeClientCert(settings=settings)
        assert tls.version == (3, 0)
        tls.write(b"a LOGIN alice@example.test alice-password\r\n")
        received = b""
        while b"a OK" not in received:
            received += bytes(tls.read())
        assert received.startswith(b"* OK")


@pytest.mark.parametrize(
    ("version", "pinned"), [("tls1.0", ssl.TLSVersion.TLSv1), ("tls1.1", ssl.TLSVersion.TLSv1_1)]
)
def test_legacy_tls_only_refuses_default_clients_and_serves_lenient_ones(
    make_front: Make, backend: MailServer, version: str, pinned: ssl.TLSVersion
) -> None:
    front = make_front(TLSVersion(version=version))  # type: ignore[arg-type]
    with pytest.raises(ssl.SSLError) as info:
        tls_connect(front, backend.ca.client_context())
    assert "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version" in str(info.value)
    assert tls_connect(front, legacy_client()) == {"tls1.0": "TLSv1", "tls1.1": "TLSv1.1"}[version]
    with imaplib.IMAP4_SSL(*front.address, ssl_context=legacy_client(pinned), timeout=5) as client:
        assert client.login(*ALICE)[0] == "OK"


@pytest.mark.parametrize(("version", "name"), [("tls1.2", "TLSv1.2"), ("tls1.3", "TLSv1.3")])
def test_modern_tls_pins_work_with_verifying_clients(
    make_front: Make, backend: MailServer, version: str, name: str
) -> None:
    front = make_front(TLSVersion(version=version))  # type: ignore[arg-type]
    ctx = backend.ca.client_context()
    assert tls_connect(front, ctx) == name
    with imaplib.IMAP4_SSL("localhost", front.port, ssl_context=ctx, timeout=5) as client:
        assert client.login(*ALICE)[0] == "OK"
        assert client.select("INBOX") == ("OK", [b"2"])


def test_certificate_variant_reaches_the_client(make_front: Make, backend: MailServer) -> None:
    front = make_front(TLSVersion(version="modern", cert="expired"))
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        tls_connect(front, backend.ca.client_context())


SSLSCAN_FLAGS = {"sslv3": "--ssl3", "tls1.0": "--tls10", "tls1.1": "--tls11"}
SSLSCAN_NAMES = {"sslv3": "SSLv3", "tls1.0": "TLSv1.0", "tls1.1": "TLSv1.1"}


@pytest.mark.parametrize(
    ("version", "security"),
    [
        ("sslv3", "implicit"),
        ("tls1.0", "implicit"),
        ("tls1.1", "implicit"),
        ("sslv3", "starttls"),
    ],
)
def test_sslscan_sees_exactly_the_pinned_version(
    make_front: Make, version: str, security: str
) -> None:
    """sslscan 2.x tests SSLv2/SSLv3 with hand-made hellos, so it sees SSLv3 even though
    its OpenSSL 3 cannot speak it; a protocol-only scan keeps this test fast."""
    sslscan = require_executable("sslscan")
    front = make_front(TLSVersion(version=version, security=security))  # type: ignore[arg-type]
    flags = ["--starttls-imap"] if security == "starttls" else []
    flags += ["--no-colour", "--no-ciphersuites", "--no-fallback", "--no-renegotiation"]
    flags += ["--no-compression", "--no-heartbleed", "--no-groups", "--no-check-certificate"]
    result = subprocess.run(
        [sslscan, *flags, f"127.0.0.1:{front.port}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    states = dict(re.findall(r"^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)", result.stdout, re.M))
    assert len(states) == 6, result.stdout
    enabled = sorted(name for name, state in states.items() if state == "enabled")
    assert enabled == [SSLSCAN_NAMES[version]], result.stdout


# --- starttls --------------------------------------------------------------------------


def test_imap_starttls_terminated_at_the_front(make_front: Make, backend: MailServer) -> None:
    front = make_front(TLSVersion(version="tls1.2", security="starttls"))
    assert front.endpoint.security is Security.STARTTLS
    with imaplib.IMAP4("localhost", front.port, timeout=5) as client:
        assert "STARTTLS" in client.capabilities
        assert client.starttls(ssl_context=backend.ca.client_context())[0] == "OK"
        assert client.sock.version() == "TLSv1.2"  # type: ignore[attr-defined]
        assert "STARTTLS" not in client.capabilities
        assert client.login(*ALICE)[0] == "OK"
        client.select("INBOX")
        typ, data = client.fetch("1", "(BODY[])")
        assert typ == "OK" and b"Hi Alice!" in data[0][1]  # type: ignore[index,operator]


def test_imap_starttls_with_a_pinned_legacy_version(make_front: Make, backend: MailServer) -> None:
    front = make_front(TLSVersion(version="tls1.0", security="starttls"))
    refused = imaplib.IMAP4(*front.address, timeout=5)
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        refused.starttls(ssl_context=backend.ca.client_context())
    with imaplib.IMAP4(*front.address, timeout=5) as client:
        client.starttls(ssl_context=legacy_client())
        assert client.sock.version() == "TLSv1"  # type: ignore[attr-defined]
        assert client.login(*ALICE)[0] == "OK"


def test_smtp_starttls_terminated_at_the_front(make_front: Make, backend: MailServer) -> None:
    front = make_front(TLSVersion(version="tls1.3", security="starttls"), to=backend.smtp.none)
    with smtplib.SMTP("localhost", front.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=backend.ca.client_context())[0] == 220
        assert client.sock.version() == "TLSv1.3"  # type: ignore[union-attr]
        client.ehlo()
        assert not client.has_extn("starttls")
        client.login(*ALICE)
        client.sendmail(ALICE[0], ["bob@example.test"], b"Subject: over tls\r\n\r\nhi\r\n")
    assert any(b"over tls" in m.data for m in backend.wait_for_messages(1))


# --- access ----------------------------------------------------------------------------


def test_allowlist_serves_allowed_sources(make_front: Make) -> None:
    front = make_front(Allowlist(networks=("127.0.0.1/32",), mode="close"))
    with imaplib.IMAP4(*front.address, timeout=5) as client:
        assert client.login(*ALICE)[0] == "OK"


def test_allowlist_close_gives_eof_before_greeting(make_front: Make) -> None:
    front = make_front(Allowlist(mode="close"))
    with pytest.raises(imaplib.IMAP4.abort, match="EOF"):
        SourcedIMAP(*front.address, timeout=5)


def test_allowlist_reset_and_hang(make_front: Make) -> None:
    front = make_front(Allowlist(mode="reset"))
    with pytest.raises(ConnectionResetError):
        SourcedIMAP(*front.address, timeout=5)
    front.set(Allowlist(mode="hang"))
    with pytest.raises(TimeoutError):
        SourcedIMAP(*front.address, timeout=CLIENT_TIMEOUT)


def test_allowlist_greeting(make_front: Make, backend: MailServer) -> None:
    front = make_front(Allowlist(mode="greeting"))
    with pytest.raises(imaplib.IMAP4.error, match=r"\* BYE \[UNAVAILABLE\] Access denied"):
        SourcedIMAP(*front.address, timeout=5)
    smtp_front = make_front(Allowlist(mode="greeting"), to=backend.smtp.none)
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtplib.SMTP(*smtp_front.address, timeout=5, source_address=(OTHER_SOURCE, 0))
    assert info.value.smtp_code == 554
    assert info.value.smtp_error == (
        b"5.7.1 <unknown[127.0.0.2]>: Client host rejected: Access denied"
    )


def test_allowlist_login_fails_like_a_wrong_password(make_front: Make, backend: MailServer) -> None:
    front = make_front(Allowlist(mode="login"))
    with SourcedIMAP(*front.address, timeout=5) as client:
        with pytest.raises(imaplib.IMAP4.error, match=r"\[AUTHENTICATIONFAILED\] Authentication"):
            client.login(*ALICE)
    smtp_front = make_front(Allowlist(mode="login"), to=backend.smtp.none)
    with smtplib.SMTP(*smtp_front.address, timeout=5, source_address=(OTHER_SOURCE, 0)) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            smtp.login(*ALICE)
    assert info.value.smtp_code == 535


def test_allowlist_rcpt_is_postfix_client_restriction(
    make_front: Make, backend: MailServer
) -> None:
    front = make_front(Allowlist(mode="rcpt"), to=backend.smtp.none)
    with smtplib.SMTP(*front.address, timeout=5, source_address=(OTHER_SOURCE, 0)) as client:
        client.login(*ALICE)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            client.sendmail(ALICE[0], ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
    code, text = info.value.recipients["bob@example.test"]
    assert (code, text) == (554, b"5.7.1 <unknown[127.0.0.2]>: Client host rejected: Access denied")


# --- limits ----------------------------------------------------------------------------


def test_connection_cap_total_frees_slots_on_close(make_front: Make) -> None:
    front = make_front(ConnectionCap(max_total=1, on_excess="greeting"))
    first = imaplib.IMAP4(*front.address, timeout=5)
    with pytest.raises(imaplib.IMAP4.error, match=r"\* BYE Connection queue full"):
        imaplib.IMAP4(*front.address, timeout=5)
    first.logout()
    deadline = time.monotonic() + 2  # the slot frees when the front sees the close
    while True:
        try:
            with imaplib.IMAP4(*front.address, timeout=5) as again:
                assert again.welcome.startswith(b"* OK")
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline


def test_connection_cap_per_source_with_a_custom_reply(
    make_front: Make, backend: MailServer
) -> None:
    def gmail(ip: str) -> bytes:
        return b"* BYE [ALERT] Too many simultaneous connections. (Failure)\r\n"

    front = make_front(ConnectionCap(per_source=1, on_excess=gmail))
    first = imaplib.IMAP4(*front.address, timeout=5)
    with pytest.raises(imaplib.IMAP4.error, match="Too many simultaneous connections"):
        imaplib.IMAP4(*front.address, timeout=5)
    other = SourcedIMAP(*front.address, timeout=5)  # another source has its own allowance
    assert other.welcome.startswith(b"* OK")
    other.logout()
    first.logout()

    smtp_front = make_front(ConnectionCap(per_source=0, on_excess="greeting"), to=backend.smtp.none)
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtplib.SMTP(*smtp_front.address, timeout=5)
    assert info.value.smtp_code == 421
    assert info.value.smtp_error == b"4.7.0 localhost Error: too many connections from 127.0.0.1"


# --- drops -----------------------------------------------------------------------------


def test_drop_after_bytes_inside_a_fetch_literal(make_front: Make) -> None:
    front = make_front()
    client = imaplib.IMAP4(*front.address, timeout=5)
    client.login(*ALICE)
    client.select("INBOX")
    front.set(DropAfter(bytes=1000))  # live: counts from now, on this open connection
    with pytest.raises(imaplib.IMAP4.abort, match="FETCH"):
        client.fetch("2", "(BODY[])")  # the literal is 200 kB: the FIN comes inside it
    client.shutdown()


def test_drop_on_command_mid_reply(make_front: Make) -> None:
    log = TranscriptLog()
    front = make_front(DropOnCommand(pattern=rb"FETCH", reply_bytes=100), transcripts=log)
    client = imaplib.IMAP4(*front.address, timeout=5)
    client.login(*ALICE)
    client.select("INBOX")
    assert client.noop()[0] == "OK"
    with pytest.raises(imaplib.IMAP4.abort, match="FETCH"):
        client.fetch("2", "(BODY[])")
    client.shutdown()
    text = log.text()
    assert "DropOnCommand" in text and "FETCH" in text and "100 reply bytes" in text


def test_drop_on_command_before_the_server_sees_it(make_front: Make) -> None:
    front = make_front(DropOnCommand(pattern=rb"^\S+ LOGIN "))
    client = imaplib.IMAP4(*front.address, timeout=5)
    with pytest.raises(imaplib.IMAP4.abort, match="LOGIN => socket error: EOF"):
        client.login(*ALICE)
    client.shutdown()


# --- throttle --------------------------------------------------------------------------


def test_bandwidth_is_within_ten_percent(make_front: Make) -> None:
    rate = 200_000
    front = make_front(Bandwidth(bytes_per_second=rate))
    sock, reader = raw_login(front.address)
    with sock:
        started, received = time.perf_counter(), 0
        sock.sendall(b"f FETCH 2 (BODY[])\r\n")  # the whole reply, timed from the request
        while not (line := reader.readline()).startswith(b"f "):
            received += len(line)
        elapsed = time.perf_counter() - started
    assert received > BIG_MESSAGE_BYTES
    measured = received / elapsed
    assert abs(measured - rate) / rate < 0.10, f"{measured:.0f} B/s"


def test_latency_is_within_ten_ms_and_switches_on_open_connections(make_front: Make) -> None:
    front = make_front()
    sock, reader = raw_login(front.address)
    with sock:
        base = min(noop_rtt(sock, reader) for _ in range(3))
        # From this thread, while the connection is open: a live fault.
        front.set(Latency(ms=60, direction="downstream"))
        one_way = min(noop_rtt(sock, reader) for _ in range(3)) - base
        front.set(Latency(ms=40, direction="both"))
        both_ways = min(noop_rtt(sock, reader) for _ in range(3)) - base
        front.remove(Latency)
        after = min(noop_rtt(sock, reader) for _ in range(3)) - base
    assert abs(one_way - 0.060) < 0.010, one_way
    assert abs(both_ways - 0.080) < 0.010, both_ways
    assert after < 0.010, after


def test_switching_from_another_thread_is_seen_by_the_next_connection(make_front: Make) -> None:
    front = make_front()
    switcher = threading.Thread(target=front.set, args=(Reset(),))
    switcher.start()
    switcher.join()
    with pytest.raises(ConnectionResetError):
        imaplib.IMAP4(*front.address, timeout=5)


def test_probability_is_reproducible_with_a_seed(make_front: Make) -> None:
    def outcomes(front: FaultFront) -> list[str]:
        seen = []
        for _ in range(8):
            try:
                with imaplib.IMAP4(*front.address, timeout=5):
                    seen.append("ok")
            except ConnectionResetError:
                seen.append("reset")
        return seen

    first = outcomes(make_front(Reset(probability=0.5), seed=7))
    second = outcomes(make_front(Reset(probability=0.5), seed=7))
    assert first == second
    assert set(first) == {"ok", "reset"}


def test_fault_events_land_in_the_transcript(make_front: Make) -> None:
    log = TranscriptLog()
    front = make_front(Reset(), transcripts=log)
    with pytest.raises(ConnectionResetError):
        imaplib.IMAP4(*front.address, timeout=5)
    (transcript,) = list(log)
    assert transcript.protocol == "imap"
    assert [line.direction for line in transcript.events] == ["event"]
    assert "Reset" in transcript.events[0].text and "RST" in transcript.events[0].text


def test_stop_closes_open_connections(loop: LoopThread, backend: MailServer) -> None:
    front = FaultFront(backend.imap.none)
    loop.run(front.start())
    address = front.address
    client = imaplib.IMAP4(*address, timeout=5)
    assert front.open_connections == 1
    listening = listening_sockets([address[1]])
    loop.run(front.stop())
    with pytest.raises(imaplib.IMAP4.abort):
        client.noop()
    client.shutdown()
    assert_stopped_listening(listening)
