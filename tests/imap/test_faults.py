"""IMAP protocol faults of the scenario catalog, as a real client meets them.

Each test drives imaplib (or imapclient) over a loopback socket and asserts
exactly what Python surfaces: the exception class and message, or the
``('NO', [b'[CODE] text'])`` tuple. Texts are those of SCENARIOS.md.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import imapclient
import imapclient.exceptions
import pytest
from mailharness.servers.accounts import Lockout
from mailharness.servers.errors import ConfigError
from mailharness.servers.imap import IMAPSettings
from mailharness.servers.imap.replies import GMAIL, PERSONALITIES, for_personality
from mailharness.servers.imap.session import Session
from mailharness.servers.ratelimit import RateLimit

from tests.imap.conftest import CALL_TIMEOUT, MakeIMAP, RunningIMAP

ALICE = ("alice@example.test", "alice-password")
BOB = ("bob@example.test", "bob-password")
MESSAGE = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\n" + b"x" * 500
#: Short enough for a fast test, long enough that a loaded CI box does not race it.
SHORT = 0.2


class IMAP4From(imaplib.IMAP4):
    """imaplib from a chosen loopback source address (127.0.0.2 is "elsewhere")."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.source = source
        super().__init__(host, port, timeout=CALL_TIMEOUT)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.source, 0)
        )


def client(imap: RunningIMAP, timeout: float = CALL_TIMEOUT) -> imaplib.IMAP4:
    return imaplib.IMAP4(*imap.none.address, timeout=timeout)


def login_error(imap: RunningIMAP, user: str = ALICE[0], password: str = ALICE[1]) -> str:
    """What imaplib raises for a refused LOGIN, as ``str(exception)``."""
    c = client(imap)
    try:
        with pytest.raises(imaplib.IMAP4.error) as info:
            c.login(user, password)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            c.shutdown()
    assert type(info.value) is imaplib.IMAP4.error
    return str(info.value)


@contextlib.contextmanager
def logged_in(imap: RunningIMAP, who: tuple[str, str] = ALICE) -> Iterator[imaplib.IMAP4]:
    c = client(imap)
    c.login(*who)
    try:
        yield c
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            c.logout()


def wait_until(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- auth outcomes by personality --------------------------------------------------------

APP_PASSWORD = "app-secret-1234"
GMAIL_APP = (
    "b'[ALERT] Application-specific password required: "
    "https://support.google.com/accounts/answer/185833 (Failure)'"
)
GMAIL_WEB = (
    "b'[ALERT] Please log in via your web browser: "
    "https://support.google.com/mail/accounts/answer/78754 (Failure)'"
)
AUTH_FAILED = "b'[AUTHENTICATIONFAILED] Authentication failed.'"
ACCOUNT_CASES: dict[str, dict[str, object]] = {
    "app-password-required": {"require_app_password": True, "app_password": APP_PASSWORD},
    "imap-disabled": {"imap_enabled": False},
    "web-login-required": {"web_login_required": True},
    "password-expired": {"password_expired": True},
    "account-disabled": {"disabled": True},
}


@pytest.mark.parametrize(
    ("personality", "case", "expected"),
    [
        ("gmail", "app-password-required", GMAIL_APP),
        ("yahoo", "app-password-required", AUTH_FAILED),
        ("icloud", "app-password-required", AUTH_FAILED),
        ("dovecot", "app-password-required", AUTH_FAILED),
        ("gmail", "imap-disabled", "b'[ALERT] Your account is not enabled for IMAP use.'"),
        ("gmail", "web-login-required", GMAIL_WEB),
        ("dovecot", "password-expired", "b'[EXPIRED] Authentication failed.'"),
        ("gmail", "password-expired", "b'[EXPIRED] Authentication failed.'"),
        ("dovecot", "account-disabled", "b'[CONTACTADMIN] Login disabled for this user'"),
        *(("outlook", case, "b'LOGIN failed.'") for case in ACCOUNT_CASES),
    ],
)
def test_account_state_by_personality(
    make_imap: MakeIMAP, personality: str, case: str, expected: str
) -> None:
    imap = make_imap(IMAPSettings(personality=personality))
    imap.accounts.update(ALICE[0], **ACCOUNT_CASES[case])
    assert login_error(imap) == expected


def test_app_password_works_where_the_password_is_refused(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(personality="gmail"))
    imap.accounts.update(ALICE[0], require_app_password=True, app_password=APP_PASSWORD)
    assert login_error(imap) == GMAIL_APP
    with logged_in(imap, (ALICE[0], APP_PASSWORD)) as c:
        assert c.noop()[0] == "OK"


@pytest.mark.parametrize(
    ("personality", "expected"),
    [
        ("dovecot", AUTH_FAILED),
        ("icloud", AUTH_FAILED),
        ("gmail", "b'[AUTHENTICATIONFAILED] Invalid credentials (Failure)'"),
        ("outlook", "b'LOGIN failed.'"),
    ],
)
def test_bad_password_by_personality(make_imap: MakeIMAP, personality: str, expected: str) -> None:
    imap = make_imap(IMAPSettings(personality=personality))
    assert login_error(imap, password="wrong") == expected


def test_outlook_authenticate_failed_has_no_code(make_imap: MakeIMAP) -> None:
    imap = make_imap(
        IMAPSettings(personality="outlook", auth_mechanisms=("PLAIN", "LOGIN", "XOAUTH2"))
    )
    c = client(imap)
    with pytest.raises(imaplib.IMAP4.error) as info:
        c.authenticate("PLAIN", lambda _: f"\0{ALICE[0]}\0wrong".encode())
    assert str(info.value) == "AUTHENTICATE failed."  # authenticate() decodes; login() does not
    # No Google-style error challenge for a bad token either.
    with pytest.raises(imaplib.IMAP4.error) as info:
        c.authenticate("XOAUTH2", lambda _: f"user={ALICE[0]}\1auth=Bearer nope\1\1".encode())
    assert str(info.value) == "AUTHENTICATE failed."
    c.shutdown()


@pytest.mark.parametrize(
    ("personality", "expected"),
    [
        ("dovecot", AUTH_FAILED),  # Dovecot has no lockout text of its own
        ("icloud", AUTH_FAILED),
        ("gmail", GMAIL_WEB),
        ("yahoo", "b'[AUTHENTICATIONFAILED] (#AUTH005) Too many bad auth attempts.'"),
        ("outlook", "b'LOGIN failed.'"),
    ],
)
def test_lockout_refuses_the_right_password(
    make_imap: MakeIMAP, personality: str, expected: str
) -> None:
    imap = make_imap(IMAPSettings(personality=personality))
    imap.accounts.lockout = Lockout(max_failures=2, seconds=60)
    bad = for_personality(personality).auth_failed
    for _ in range(2):
        assert bad.text.format(command="LOGIN") in login_error(imap, password="wrong")
    assert login_error(imap) == expected
    with logged_in(imap, BOB):  # other accounts are not locked
        pass


@pytest.mark.parametrize(
    ("personality", "expected"),
    [
        ("outlook", r"b'Server Unavailable\. 15'"),
        (
            "dovecot",
            r"b'\[UNAVAILABLE\] Temporary authentication failure\. "
            r"\[localhost:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]'",
        ),
        ("gmail", r"b'\[UNAVAILABLE\] Temporary System Problem\. Try again later\. \(Failure\)'"),
    ],
)
def test_login_rate_limit(make_imap: MakeIMAP, personality: str, expected: str) -> None:
    imap = make_imap(IMAPSettings(personality=personality))
    imap.accounts.login_rate = RateLimit(count=1, per_seconds=60)
    with logged_in(imap):
        pass
    assert re.fullmatch(expected, login_error(imap))


@pytest.mark.parametrize(
    ("personality", "expected"),
    [
        (
            "dovecot",
            r"b'\[UNAVAILABLE\] Temporary authentication failure\. "
            r"\[localhost:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]'",
        ),
        ("outlook", r"b'Server Unavailable\. 15'"),
    ],
)
def test_backend_down(make_imap: MakeIMAP, personality: str, expected: str) -> None:
    imap = make_imap(IMAPSettings(personality=personality))
    imap.accounts.backend_down = True
    assert re.fullmatch(expected, login_error(imap))


def test_failure_delay_applies_to_every_refusal(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(personality="gmail", failure_delay=SHORT))
    imap.accounts.update(ALICE[0], web_login_required=True)
    started = time.monotonic()
    assert login_error(imap) == GMAIL_WEB
    assert time.monotonic() - started >= SHORT


# -- availability -----------------------------------------------------------------------------

MAINTENANCE = "b'* BYE [UNAVAILABLE] Server down for maintenance'"


def test_maintenance_greeting(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(maintenance=True))
    with pytest.raises(imaplib.IMAP4.error) as info:
        client(imap)
    assert type(info.value) is imaplib.IMAP4.error
    assert str(info.value) == MAINTENANCE
    wait_until(lambda: imap.server.connections == 0)  # and closed


def test_maintenance_switch_affects_new_connections_only(imap: RunningIMAP) -> None:
    with logged_in(imap) as before:
        imap.server.maintenance = True
        with pytest.raises(imaplib.IMAP4.error) as info:
            client(imap)
        assert str(info.value) == MAINTENANCE
        assert before.noop()[0] == "OK"
        imap.server.maintenance = False
        with logged_in(imap):
            pass


def test_backend_maintenance(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(backend_maintenance=True))
    assert login_error(imap) == 'b"[UNAVAILABLE] User\'s backend down for maintenance"'
    # Wrong credentials are still just wrong.
    assert login_error(imap, password="wrong") == AUTH_FAILED


def test_shutdown_mid_session(imap: RunningIMAP) -> None:
    c = client(imap)
    c.login(*ALICE)
    c.select("INBOX")
    imap.server.announce_shutdown_threadsafe().result(CALL_TIMEOUT)
    wait_until(lambda: imap.server.connections == 0)
    with pytest.raises(imaplib.IMAP4.abort) as info:
        c.noop()
    assert str(info.value) == "command: NOOP => Server shutting down."
    c.shutdown()
    with logged_in(imap):  # listeners stay up: the next connection is served
        pass


def test_idle_timeout(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(idle_timeout=SHORT))
    c = client(imap)
    c.login(*ALICE)
    wait_until(lambda: imap.server.connections == 0)
    with pytest.raises(imaplib.IMAP4.abort) as info:
        c.noop()
    assert str(info.value) == "command: NOOP => Disconnected for inactivity."
    c.shutdown()


def test_idle_timeout_shortened_at_run_time(imap: RunningIMAP) -> None:
    c = client(imap)
    c.login(*ALICE)
    imap.server.settings = replace(imap.server.settings, idle_timeout=SHORT)
    wait_until(lambda: imap.server.connections == 0)
    with pytest.raises(
        imaplib.IMAP4.abort, match=r"^command: NOOP => Disconnected for inactivity\.$"
    ):
        c.noop()
    c.shutdown()


# -- connection limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("personality", "expected"),
    [
        (
            "dovecot",
            "b'[UNAVAILABLE] Maximum number of connections from user+IP exceeded "
            "(mail_max_userip_connections=2)'",
        ),
        ("gmail", "b'[ALERT] Too many simultaneous connections. (Failure)'"),
    ],
)
def test_userip_connection_limit(make_imap: MakeIMAP, personality: str, expected: str) -> None:
    imap = make_imap(IMAPSettings(personality=personality, max_userip_connections=2))
    with logged_in(imap), logged_in(imap), logged_in(imap, BOB):
        c = client(imap)
        with pytest.raises(imaplib.IMAP4.error) as info:
            c.login(*ALICE)
        assert str(info.value) == expected
        # ...and the server hangs up, as Dovecot's imap process exits (a command
        # sent now would meet ConnectionResetError: the FIN is already here).
        assert c.readline() == b""
        c.shutdown()
        # Another address is another count (127.0.0.2 reaches the 127.0.0.1 listener).
        other = IMAP4From(*imap.none.address, source="127.0.0.2")
        other.login(*ALICE)
        other.logout()
    with logged_in(imap):  # a slot freed
        pass


def test_gmail_userip_limit_is_15() -> None:
    assert GMAIL.userip_connection_limit == 15
    assert for_personality("dovecot").userip_connection_limit == 10


def test_userip_limit_with_imapclient(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(personality="gmail", max_userip_connections=1))
    with logged_in(imap):
        c = imapclient.IMAPClient(*imap.none.address, ssl=False, timeout=CALL_TIMEOUT)
        with pytest.raises(imapclient.exceptions.LoginError) as info:
            c.login(*ALICE)
        assert str(info.value) == "b'[ALERT] Too many simultaneous connections. (Failure)'"
        c.shutdown()


def test_connection_queue_full_bye(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(max_connections=1))
    with logged_in(imap):
        with pytest.raises(imaplib.IMAP4.error) as info:
            client(imap)
        assert str(info.value) == "b'* BYE Connection queue full'"
    wait_until(lambda: imap.server.connections == 0)
    with logged_in(imap):
        pass


def test_connection_queue_full_hang_until_a_slot_frees(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(max_connections=1, queue_full_mode="hang"))
    first = client(imap)
    first.login(*ALICE)
    with pytest.raises(TimeoutError, match="timed out"):
        client(imap, timeout=SHORT)
    waiting = socket.create_connection(imap.none.address, timeout=CALL_TIMEOUT)
    with waiting, waiting.makefile("rb") as lines:
        wait_until(lambda: imap.server.connections == 2)  # the timed-out one is gone
        first.logout()
        assert lines.readline().startswith(b"* OK [CAPABILITY IMAP4rev1 ")
        waiting.sendall(b'a LOGIN alice@example.test "alice-password"\r\n')
        assert lines.readline().startswith(b"a OK ")


def test_raising_max_connections_greets_the_queue(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(max_connections=1, queue_full_mode="hang"))
    with logged_in(imap):
        waiting = socket.create_connection(imap.none.address, timeout=CALL_TIMEOUT)
        with waiting, waiting.makefile("rb") as lines:
            wait_until(lambda: imap.server.connections == 2)
            imap.server.settings = replace(imap.server.settings, max_connections=None)
            assert lines.readline().startswith(b"* OK [CAPABILITY ")


# -- quota and bandwidth ----------------------------------------------------------------------


def test_soft_quota_warns_and_keeps_the_message(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(soft_quota_bytes=1000))
    with logged_in(imap) as c:
        typ, data = c.append("INBOX", None, None, MESSAGE)  # 560 bytes: under the limit
        assert typ == "OK" and data[0].startswith(b"[APPENDUID ")
        assert c.append("INBOX", None, None, MESSAGE) == (
            "OK",
            [b"[OVERQUOTA] You are now over your soft quota"],
        )
        assert c.select("INBOX") == ("OK", [b"2"])


def test_gmail_bandwidth_limit_on_fetch(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(personality="gmail", fetch_byte_limit=1000))
    for _ in range(3):
        imap.store.deliver(ALICE[0], MESSAGE)
    with logged_in(imap) as c:
        c.select("INBOX")
        assert c.fetch("1", "(RFC822)")[0] == "OK"
        assert c.fetch("2", "(RFC822)")[0] == "OK"  # now past 1000 bytes served
        assert c.fetch("3", "(RFC822)") == (
            "NO",
            [b"[OVERQUOTA] Account exceeded command or bandwidth limits."],
        )
        assert c.uid("FETCH", "3", "(FLAGS)")[0] == "NO"
        assert c.noop()[0] == "OK"
    with logged_in(imap) as fresh:  # per login session
        fresh.select("INBOX")
        assert fresh.fetch("3", "(FLAGS)")[0] == "OK"


# -- auth mechanisms and access ---------------------------------------------------------------


def test_oauth_only_server(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(auth_mechanisms=("XOAUTH2",), login_disabled=True))
    c = client(imap)
    assert "LOGINDISABLED" in c.capabilities
    assert [cap for cap in c.capabilities if cap.startswith("AUTH=")] == ["AUTH=XOAUTH2"]
    with pytest.raises(imaplib.IMAP4.error) as info:
        c.login(*ALICE)
    assert str(info.value) == "b'[ALERT] Unsupported authentication mechanism.'"
    with pytest.raises(imaplib.IMAP4.error) as info:
        c.authenticate("PLAIN", lambda _: f"\0{ALICE[0]}\0{ALICE[1]}".encode())
    assert str(info.value) == "Unsupported authentication mechanism."
    typ, _ = c.authenticate(
        "XOAUTH2", lambda _: f"user={ALICE[0]}\1auth=Bearer alice-token\1\1".encode()
    )
    assert typ == "OK"
    c.logout()


def test_oauth_only_outlook(make_imap: MakeIMAP) -> None:
    imap = make_imap(
        IMAPSettings(personality="outlook", auth_mechanisms=("XOAUTH2",), login_disabled=True)
    )
    assert login_error(imap) == "b'LOGIN failed.'"


def test_tcpwrap_closes_without_greeting(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(allowed_networks=("127.0.0.1/32",)))
    with pytest.raises(imaplib.IMAP4.abort) as info:
        IMAP4From(*imap.none.address, source="127.0.0.2")
    assert str(info.value) == "socket error: EOF"
    c = IMAP4From(*imap.none.address, source="127.0.0.1")
    c.login(*ALICE)
    c.logout()
    [refused] = [t for t in imap.transcripts if t.peer.startswith("127.0.0.2:")]
    assert "outside allowed_networks" in refused.text()


def test_dovecot_allow_nets_fails_like_a_wrong_password(imap: RunningIMAP) -> None:
    imap.accounts.update(ALICE[0], allow_nets=("127.0.0.1/32",))
    c = IMAP4From(*imap.none.address, source="127.0.0.2")
    with pytest.raises(imaplib.IMAP4.error) as info:
        c.login(*ALICE)
    assert str(info.value) == AUTH_FAILED
    c.shutdown()
    c = IMAP4From(*imap.none.address, source="127.0.0.1")
    c.login(*ALICE)
    c.logout()


# -- settings at run time ----------------------------------------------------------------------


def test_settings_switch_reaches_open_sessions_at_their_next_command(imap: RunningIMAP) -> None:
    c = client(imap)
    imap.server.settings = replace(imap.server.settings, personality="outlook")
    with pytest.raises(imaplib.IMAP4.error, match=r"^b'LOGIN failed\.'$"):
        c.login(ALICE[0], "wrong")
    imap.server.settings = IMAPSettings(backend_maintenance=True, plaintext_auth_requires_tls=False)
    assert login_error(imap) == 'b"[UNAVAILABLE] User\'s backend down for maintenance"'
    imap.server.settings = IMAPSettings(plaintext_auth_requires_tls=False)
    c.login(*ALICE)
    c.logout()


def test_settings_setter_validates(imap: RunningIMAP) -> None:
    with pytest.raises(ConfigError, match=r"^settings=\{'maintenance': True\}: expected"):
        imap.server.settings = {"maintenance": True}  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"^settings=None: expected IMAPSettings$"):
        imap.server.settings = None  # type: ignore[assignment]
    assert isinstance(imap.server.settings, IMAPSettings)


def test_session_never_holds_settings_none(imap: RunningIMAP) -> None:
    """A session checks its settings: None is refused, and a refused switch changes nothing."""

    def session(settings: IMAPSettings) -> Session:
        return Session(
            accounts=imap.accounts,
            store=imap.store,
            settings=settings,
            secure=False,
            starttls_available=False,
        )

    with pytest.raises(ConfigError, match=r"^settings=None: expected IMAPSettings$"):
        session(None)  # type: ignore[arg-type]
    live = session(IMAPSettings())
    with pytest.raises(ConfigError):
        live.use_settings(None)  # type: ignore[arg-type]
    assert live.greeting().endswith(b"] Dovecot ready.\r\n")
    live.use_settings(IMAPSettings(greeting="Switched."))
    assert live.greeting().endswith(b"] Switched.\r\n")


def test_greetings_while_settings_switch_from_another_thread(imap: RunningIMAP) -> None:
    """Connections set up while a test thread swaps the settings are all greeted."""
    variants = [IMAPSettings(), IMAPSettings(personality="gmail", greeting="Hi.")]
    stop = False

    def flip() -> None:
        n = 0
        while not stop:
            imap.server.settings = variants[n % 2]
            n += 1
            time.sleep(0.0005)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(50):
            with socket.create_connection(imap.none.address, timeout=CALL_TIMEOUT) as sock:
                greeting = sock.makefile("rb").readline()
                # Dovecot's greeting carries its capabilities; Gmail's does not.
                dovecot = greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
                assert dovecot or greeting == b"* OK Hi.\r\n", greeting
    finally:
        stop = True
        flipper.join(CALL_TIMEOUT)
    assert not [e for e in imap.server.errors if "exception" in e], imap.server.errors


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"personality": "gmial"},
            "personality='gmial': expected one of 'dovecot', 'gmail', 'outlook', 'exchange', "
            "'yahoo', 'icloud' (did you mean 'gmail'?)",
        ),
        ({"queue_full_mode": "drop"}, "queue_full_mode='drop': expected one of 'bye', 'hang'"),
        ({"max_connections": 0}, "max_connections=0: expected >= 1 or None"),
        ({"max_userip_connections": 0}, "max_userip_connections=0: expected >= 1 or None"),
        ({"fetch_byte_limit": -1}, "fetch_byte_limit=-1: expected >= 0 bytes or None"),
        (
            {"allowed_networks": ("nowhere",)},
            "allowed_networks entry 'nowhere': expected a network like '127.0.0.1/32'",
        ),
        (
            {"allowed_networks": "127.0.0.1/32"},
            "allowed_networks='127.0.0.1/32': expected a tuple of networks like ('127.0.0.1/32',)",
        ),
    ],
)
def test_settings_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        IMAPSettings(**changes)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_custom_replies_win_over_the_personality() -> None:
    custom = replace(GMAIL, greeting="Custom ready.")
    settings = IMAPSettings(personality="outlook", replies=custom)
    assert settings.texts is custom
    assert replace(settings, replies=None).texts is for_personality("outlook")
    # Each provider greets in its own words (issue 10: outlook greeted "Dovecot ready.").
    assert IMAPSettings(personality="outlook").texts.greeting != "Dovecot ready."
    assert {IMAPSettings(personality=p).texts.greeting for p in PERSONALITIES} >= {
        "Dovecot ready.",
        "The Microsoft Exchange IMAP4 service is ready.",
    }


def test_shutdown_closes_queued_connections_ungreeted(make_imap: MakeIMAP) -> None:
    imap = make_imap(IMAPSettings(max_connections=1, queue_full_mode="hang"))
    with logged_in(imap) as c:
        waiting = socket.create_connection(imap.none.address, timeout=CALL_TIMEOUT)
        with waiting, waiting.makefile("rb") as lines:
            wait_until(lambda: imap.server.connections == 2)
            imap.server.announce_shutdown_threadsafe().result(CALL_TIMEOUT)
            assert lines.readline() == b""
        wait_until(lambda: imap.server.connections == 0)
        with pytest.raises(imaplib.IMAP4.abort, match=r"^command: NOOP => Server shutting down\.$"):
            c.noop()
