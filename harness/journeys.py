"""Client journeys: what an inbox connector does, step by step, with real stdlib clients.

A journey connects, negotiates TLS, logs in and does one unit of work
(IMAP: SELECT, APPEND, FETCH; SMTP: send to a local user), and reports the
first step that failed exactly as Python surfaced it: exception class,
message and, for SMTP, the reply code; IMAP `NO`/`BAD` answers (which imaplib
returns rather than raises) are reported as `imap.NO` / `imap.BAD`.

The scenario catalog states its expectations as `Outcome`s, the catalog test
compares them with what a journey saw, and the probe uses the same journeys
against any server.

    outcome = imap_journey(server.imap.implicit, ClientProfile(), user, ca_path)
    assert outcome == Outcome.success()
"""

from __future__ import annotations

import contextlib
import email.utils
import imaplib
import smtplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailharness.servers.accounts import User
from mailharness.servers.errors import choice_error
from mailharness.servers.listeners import Endpoint, Security
from mailharness.servers.tlsversions import TLSProtocol, limit_versions

# The name a connector puts in its settings: our leaves cover it (and 127.0.0.1, ::1).
DEFAULT_SERVER_NAME = "localhost"
SECRETS = ("password", "app_password", "oauth_token", "wrong")
MECHANISMS = ("login", "xoauth2")
TLS_MODES = ("default", "legacy", "tls1.0-only")
WRONG_SECRET = "not-the-password"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientProfile:
    """How the connector is configured; each field is a setting a user can change.

    `verify=False` is "allow a non-secure certificate". `tls="legacy"` is a
    client that still accepts TLS 1.0 and 1.1 (at OpenSSL security level 0);
    `tls="tls1.0-only"` an old client that speaks nothing newer.
    `secret` picks which of the user's secrets it logs in with ("wrong": a
    wrong password), `mechanism` how (IMAP LOGIN / SMTP AUTH PLAIN-or-LOGIN,
    or XOAUTH2 with the user's token). `source` binds the client to another
    loopback address (to test IP allowlists).
    """

    name: str = "default"
    verify: bool = True
    tls: str = "default"
    secret: str = "password"
    mechanism: str = "login"
    source: str | None = None
    timeout: float = 2.0
    server_name: str = DEFAULT_SERVER_NAME

    def __post_init__(self) -> None:
        if self.secret not in SECRETS:
            raise choice_error("secret", self.secret, SECRETS)
        if self.mechanism not in MECHANISMS:
            raise choice_error("mechanism", self.mechanism, MECHANISMS)
        if self.tls not in TLS_MODES:
            raise choice_error("tls", self.tls, TLS_MODES)

    def context(self, ca_path: str | Path | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=None if ca_path is None else str(ca_path))
        if self.tls != "default":
            high = TLSProtocol.TLS1_0 if self.tls == "tls1.0-only" else None
            limit_versions(ctx, TLSProtocol.TLS1_0, high)
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        return ctx

    def credential(self, user: User) -> str:
        if self.secret == "wrong":
            return WRONG_SECRET
        if self.mechanism == "xoauth2" and self.secret == "password":
            return user.oauth_token or ""
        value = getattr(user, self.secret)
        return "" if value is None else str(value)

    def xoauth2(self, user: User) -> bytes:
        return f"user={user.login}\x01auth=Bearer {self.credential(user)}\x01\x01".encode()


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a journey stopped and what Python said there.

    `step` is "done" on success. `error` is the exception's qualified class
    name (`ssl.SSLCertVerificationError`, `imaplib.IMAP4.error`,
    `smtplib.SMTPAuthenticationError`...) or `imap.NO` / `imap.BAD`. `text` is
    `str(exception)` (for SMTP exceptions, the decoded reply text) and `code`
    the SMTP reply code.
    """

    step: str
    error: str | None = None
    text: str = ""
    code: int | None = None

    @classmethod
    def success(cls) -> Outcome:
        return cls("done")

    @property
    def ok(self) -> bool:
        return self.step == "done"

    def matches(self, expected: Outcome) -> bool:
        """Same step, class and code; the expected text is contained in what was seen."""
        return (
            self.step == expected.step
            and self.error == expected.error
            and (expected.code is None or self.code == expected.code)
            and expected.text in self.text
        )

    def __str__(self) -> str:
        if self.ok:
            return "done"
        code = f" {self.code}" if self.code is not None else ""
        return f"{self.step}: {self.error}{code}: {self.text}"


class _StepFailed(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


def _qualified(error: BaseException) -> str:
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__name__
    name = cls.__qualname__
    module = {"_ssl": "ssl", "_socket": "socket"}.get(cls.__module__, cls.__module__)
    return f"{module}.{name}"


def _outcome(step: str, error: BaseException) -> Outcome:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()))
        return Outcome(step, _qualified(error), reply.decode("utf-8", "replace"), code)
    if isinstance(error, smtplib.SMTPResponseException):
        raw: bytes | str = error.smtp_error
        decoded = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return Outcome(step, _qualified(error), decoded, error.smtp_code)
    return Outcome(step, _qualified(error), str(error))


def _resolve(host: str, port: int) -> tuple[str, int]:
    """Numeric resolution only: a DNS query would leave loopback (see the network rule).

    A name that is not an address literal fails exactly as an unknown name
    does: `socket.gaierror: [Errno -2] Name or service not known`.
    """
    if host == "localhost":
        host = "127.0.0.1"
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    address = info[0][4]
    return str(address[0]), int(address[1])


def _connect(endpoint: Endpoint, profile: ClientProfile) -> socket.socket:
    source = (profile.source, 0) if profile.source else None
    try:
        address = _resolve(endpoint.host, endpoint.port)
        return socket.create_connection(address, timeout=profile.timeout, source_address=source)
    except OSError as error:
        raise _StepFailed(_outcome("connect", error)) from None


def _wrap(sock: socket.socket, ctx: ssl.SSLContext, profile: ClientProfile) -> ssl.SSLSocket:
    try:
        return ctx.wrap_socket(sock, server_hostname=profile.server_name)
    except (OSError, ssl.SSLError) as error:
        sock.close()
        raise _StepFailed(_outcome("tls", error)) from None


def _open(
    endpoint: Endpoint, profile: ClientProfile, ca_path: str | Path | None
) -> tuple[socket.socket, ssl.SSLContext]:
    """Connect and, for implicit TLS, handshake; the context is kept for STARTTLS."""
    sock = _connect(endpoint, profile)
    ctx = profile.context(ca_path)
    if endpoint.security is Security.IMPLICIT:
        sock = _wrap(sock, ctx, profile)
    return sock, ctx


class _IMAP(imaplib.IMAP4):
    """imaplib on a socket we connected (and maybe wrapped) ourselves, step by step."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self._premade = sock
        super().__init__(host, 0, timeout=sock.gettimeout())

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._premade


class _SMTP(smtplib.SMTP):
    def __init__(self, sock: socket.socket, host: str) -> None:
        self._premade = sock
        super().__init__(timeout=sock.gettimeout() or 2.0)
        self._host = host

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._premade


def _imap_check(step: str, typ: str, data: Sequence[object]) -> None:
    if typ != "OK":
        first = data[0] if data else b""
        text = first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)
        raise _StepFailed(Outcome(step, f"imap.{typ}", text))


JOURNEY_MESSAGE = (
    "From: harness@example.test\r\nTo: {to}\r\nSubject: mailharness journey\r\n"
    "Date: {date}\r\nMessage-ID: <journey@mailharness.test>\r\n\r\nHello from a journey.\r\n"
)


def imap_journey(
    endpoint: Endpoint, profile: ClientProfile, user: User, ca_path: str | Path | None
) -> Outcome:
    """Connect, TLS, greeting, STARTTLS, LOGIN, SELECT INBOX, APPEND, FETCH, LOGOUT."""
    step = "connect"
    client: _IMAP | None = None
    try:
        sock, ctx = _open(endpoint, profile, ca_path)
        step = "greeting"
        client = _IMAP(sock, profile.server_name)
        if endpoint.security is Security.STARTTLS:
            step = "starttls"
            _imap_check(step, *client.starttls(ssl_context=ctx))
        step = "login"
        if profile.mechanism == "xoauth2":
            blob = profile.xoauth2(user)
            _imap_check(step, *client.authenticate("XOAUTH2", lambda _: blob))
        else:
            _imap_check(step, *client.login(user.login, profile.credential(user)))
        step = "select"
        _imap_check(step, *client.select("INBOX"))
        step = "append"
        message = JOURNEY_MESSAGE.format(to=user.address, date=email.utils.formatdate())
        _imap_check(step, *client.append("INBOX", None, None, message.encode()))
        step = "fetch"
        typ, data = client.fetch("*", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
        _imap_check(step, typ, data)
        step = "logout"
        client.logout()
        client = None
        return Outcome.success()
    except _StepFailed as failed:
        return failed.outcome
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as error:
        return _outcome(step, error)
    finally:
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown()


def smtp_journey(
    endpoint: Endpoint,
    profile: ClientProfile,
    user: User,
    ca_path: str | Path | None,
    recipient: str | None = None,
) -> Outcome:
    """Connect, TLS, greeting, EHLO, STARTTLS, AUTH, send one message, QUIT."""
    step = "connect"
    client: _SMTP | None = None
    try:
        sock, ctx = _open(endpoint, profile, ca_path)
        step = "greeting"
        client = _SMTP(sock, profile.server_name)
        code, text = client.connect(profile.server_name, endpoint.port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, text)
        step = "ehlo"
        client.ehlo()
        if endpoint.security is Security.STARTTLS:
            step = "starttls"
            client.starttls(context=ctx)
            client.ehlo()
        step = "login"
        if profile.mechanism == "xoauth2":
            blob = profile.xoauth2(user)
            # The initial response carries the token; an error challenge is answered empty.
            client.auth(
                "XOAUTH2",
                lambda challenge=None: "" if challenge else blob.decode(),
                initial_response_ok=True,
            )
        else:
            client.login(user.login, profile.credential(user))
        step = "send"
        to = recipient or user.address
        message = JOURNEY_MESSAGE.format(to=to, date=email.utils.formatdate())
        client.sendmail(user.address, [to], message.encode())
        step = "quit"
        client.quit()
        client = None
        return Outcome.success()
    except _StepFailed as failed:
        return failed.outcome
    except smtplib.SMTPSenderRefused as error:
        return _outcome("mail", error)
    except smtplib.SMTPRecipientsRefused as error:
        return _outcome("rcpt", error)
    except smtplib.SMTPDataError as error:
        return _outcome("data", error)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as error:
        return _outcome(step, error)
    finally:
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()
