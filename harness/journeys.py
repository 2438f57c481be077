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
from pathlib import Path

from mailharness.profiles import ClientProfile, Outcome
from mailharness.servers.accounts import User
from mailharness.servers.listeners import Endpoint, Security

__all__ = ["ClientProfile", "Outcome", "imap_journey", "smtp_journey"]


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
