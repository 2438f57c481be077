"""A small but realistic inbox connector: checks a user's IMAP or SMTP settings.

This is the kind of code mailharness exists to test: a CRM or helpdesk asks
the user for host, port, encryption, user name and password, then checks them
before saving. It must work against every server a customer can have and
refuse, with a clear code, every server it must refuse. It uses imapclient
for IMAP and smtplib for SMTP, and knows nothing of mailharness.

    python inbox_connector.py imap HOST PORT SECURITY USER PASSWORD [--insecure] [--ca FILE]

prints the result code (OK, CERT_EXPIRED, AUTH_FAILED...) and a message, and exits
0 for OK, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import imaplib
import smtplib
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import imapclient
from imapclient.exceptions import CapabilityError, IMAPClientAbortError, IMAPClientError

SECURITIES = ("none", "starttls", "implicit")


@dataclass(frozen=True)
class Settings:
    """What the user typed into the connector's settings form."""

    protocol: str  # "imap" or "smtp"
    host: str
    port: int
    security: str  # "none", "starttls" or "implicit"
    username: str
    password: str
    auth: str = "password"  # or "xoauth2" (the password is then an OAuth token)
    verify_certificate: bool = True  # False: "allow a non-secure certificate"
    allow_legacy_tls: bool = False  # accept TLS 1.0/1.1 (an old-server switch)
    ca_file: str | None = None  # extra CA to trust (a company's internal CA)
    timeout: float = 10.0
    source_address: str | None = None  # SMTP only: the address to connect from


@dataclass(frozen=True)
class Result:
    code: str
    message: str

    @property
    def ok(self) -> bool:
        return self.code == "OK"


class _Failed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def tls_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file)
    if settings.allow_legacy_tls:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if not settings.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


# --- what a reply means ---------------------------------------------------------------

# Words real servers put in their replies (Dovecot, Postfix, Gmail, Outlook, Yahoo).
_REPLY_WORDS = (
    ("APP_PASSWORD_REQUIRED", ("application-specific password", "5.7.9")),
    ("WEB_LOGIN_REQUIRED", ("web browser",)),
    ("IMAP_DISABLED", ("not enabled for imap",)),
    ("PASSWORD_EXPIRED", ("[expired]",)),
    ("ACCOUNT_DISABLED", ("[contactadmin]", "login disabled", "5.7.13")),
    ("ACCOUNT_LOCKED", ("too many bad auth",)),
    ("PLAINTEXT_REFUSED", ("privacyrequired", "plaintext auth", "starttls command first")),
    ("AUTH_MECHANISM_UNSUPPORTED", ("unsupported authentication mechanism",)),
    ("IP_NOT_ALLOWED", ("client host rejected",)),
    ("TOO_MANY_CONNECTIONS", ("too many connections", "connection queue full", "[limit]")),
    ("RATE_LIMITED", ("too many login attempts", "rate", "bandwidth limits")),
    ("MAILBOX_FULL", ("overquota", "quota exceeded")),
    ("MESSAGE_TOO_LARGE", ("[toobig]", "size exceeds")),
    ("SERVICE_UNAVAILABLE", ("unavailable", "temporary authentication failure", "maintenance")),
    ("AUTH_FAILED", ("authenticationfailed", "login failed", "credentials", "not accepted")),
)


def _from_reply(text: str, fallback: str) -> str:
    lowered = text.lower()
    for code, words in _REPLY_WORDS:
        if any(word in lowered for word in words):
            return code
    return fallback


def _from_tls_error(error: ssl.SSLError) -> str:
    text = str(error)
    if isinstance(error, ssl.SSLCertVerificationError):
        if "expired" in text:
            return "CERT_EXPIRED"
        if "not yet valid" in text:
            return "CERT_NOT_YET_VALID"
        if "mismatch" in text:
            return "CERT_HOSTNAME_MISMATCH"
        if "too weak" in text or "too small" in text:
            return "CERT_WEAK_KEY"
        return "CERT_UNTRUSTED"
    if "WRONG_VERSION_NUMBER" in text:
        return "TLS_MISMATCH"
    if "PROTOCOL_VERSION" in text or "UNSUPPORTED_PROTOCOL" in text:
        return "TLS_VERSION_TOO_OLD"
    return "TLS_FAILED"


def _from_network_error(error: OSError, connected: bool) -> str:
    if isinstance(error, socket.gaierror):
        return "DNS_FAILED"
    if isinstance(error, ConnectionRefusedError):
        return "CONNECTION_REFUSED"
    if isinstance(error, ConnectionResetError):
        return "CONNECTION_RESET"
    if isinstance(error, TimeoutError | socket.timeout):
        return "GREETING_TIMEOUT" if connected else "CONNECT_TIMEOUT"
    return "CONNECTION_DROPPED"


def _check_message(settings: Settings) -> bytes:
    """The test message both checks store or send: to and from the user."""
    return (
        f"From: {settings.username}\r\nTo: {settings.username}\r\n"
        f"Subject: connector check\r\nDate: {email.utils.formatdate()}\r\n\r\nhello\r\n"
    ).encode()


# --- IMAP -----------------------------------------------------------------------------


def check_imap(settings: Settings) -> Result:
    """Connect, secure, log in, open INBOX, store and read back a test message."""
    connected = False
    client: imapclient.IMAPClient | None = None
    try:
        context = tls_context(settings)
        try:
            # imapclient connects and reads the greeting in its constructor; a TCP
            # connection first tells "no answer" from "no greeting".
            socket.create_connection((settings.host, settings.port), settings.timeout).close()
            connected = True
            client = imapclient.IMAPClient(
                settings.host,
                port=settings.port,
                ssl=settings.security == "implicit",
                ssl_context=context,
                timeout=settings.timeout,
            )
        except IMAPClientAbortError as error:
            raise _Failed(
                "CONNECTION_DROPPED", f"the server closed the connection: {error}"
            ) from error
        except IMAPClientError as error:  # a `* BYE` greeting
            raise _Failed(_from_reply(str(error), "SERVICE_UNAVAILABLE"), str(error)) from error
        if settings.security == "starttls":
            try:
                client.starttls(context)
            except CapabilityError as error:
                raise _Failed("STARTTLS_UNAVAILABLE", str(error)) from error
            except (IMAPClientAbortError, imaplib.IMAP4.abort) as error:
                raise _Failed("STARTTLS_UNAVAILABLE", str(error)) from error
        try:
            if settings.auth == "xoauth2":
                client.oauth2_login(settings.username, settings.password)
            else:
                client.login(settings.username, settings.password)
        except IMAPClientError as error:
            secure = settings.security != "none"
            fallback = "AUTH_FAILED" if secure else "PLAINTEXT_REFUSED"
            raise _Failed(_from_reply(str(error), fallback), str(error)) from error
        try:
            client.select_folder("INBOX")
            client.append("INBOX", _check_message(settings))
            newest = client.search("ALL")[-1:]
            client.fetch(newest, ["FLAGS", "RFC822.SIZE"])
        except IMAPClientError as error:
            raise _Failed(_from_reply(str(error), "IMAP_ERROR"), str(error)) from error
        client.logout()
        client = None
        return Result("OK", "IMAP settings work")
    except _Failed as failed:
        return Result(failed.code, str(failed))
    except ssl.SSLError as error:
        return Result(_from_tls_error(error), str(error))
    except OSError as error:
        return Result(_from_network_error(error, connected), str(error))
    finally:
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown()


# --- SMTP -----------------------------------------------------------------------------


def check_smtp(settings: Settings) -> Result:
    """Connect, secure, authenticate and send a test message to the user."""
    connected = False
    client: smtplib.SMTP | None = None
    source = (settings.source_address, 0) if settings.source_address else None
    try:
        context = tls_context(settings)
        with socket.create_connection(
            (settings.host, settings.port), settings.timeout, source_address=source
        ):
            connected = True
        if settings.security == "implicit":
            client = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=context,
                source_address=source,
            )
        else:
            client = smtplib.SMTP(
                settings.host, settings.port, timeout=settings.timeout, source_address=source
            )
        client.ehlo()
        if settings.security == "starttls":
            try:
                client.starttls(context=context)
            except smtplib.SMTPNotSupportedError as error:
                raise _Failed("STARTTLS_UNAVAILABLE", str(error)) from error
            except smtplib.SMTPResponseException as error:
                text = f"{error.smtp_code} {error.smtp_error.decode()}"
                raise _Failed("STARTTLS_FAILED", text) from error
            client.ehlo()
        secure = settings.security != "none"
        if not client.has_extn("auth"):
            raise _Failed(
                "AUTH_MECHANISM_UNSUPPORTED" if secure else "PLAINTEXT_REFUSED",
                "the server offers no authentication",
            )
        try:
            if settings.auth == "xoauth2":
                blob = f"user={settings.username}\x01auth=Bearer {settings.password}\x01\x01"
                client.auth("XOAUTH2", lambda challenge=None: "" if challenge else blob)
            else:
                client.login(settings.username, settings.password)
        except smtplib.SMTPAuthenticationError as error:
            text = f"{error.smtp_code} {error.smtp_error.decode()}"
            raise _Failed(_from_reply(text, "AUTH_FAILED"), text) from error
        except smtplib.SMTPException as error:  # no mechanism in common
            code = "AUTH_MECHANISM_UNSUPPORTED" if secure else "PLAINTEXT_REFUSED"
            raise _Failed(code, str(error)) from error
        message = _check_message(settings)
        try:
            client.sendmail(settings.username, [settings.username], message)
        except smtplib.SMTPRecipientsRefused as error:
            code_, reply = next(iter(error.recipients.values()))
            text = f"{code_} {reply.decode()}"
            raise _Failed(_from_reply(text, "RECIPIENT_REFUSED"), text) from error
        except smtplib.SMTPResponseException as error:
            text = f"{error.smtp_code} {error.smtp_error.decode()}"
            raise _Failed(_from_reply(text, "SEND_FAILED"), text) from error
        client.quit()
        client = None
        return Result("OK", "SMTP settings work")
    except _Failed as failed:
        return Result(failed.code, str(failed))
    except smtplib.SMTPConnectError as error:
        text = f"{error.smtp_code} {error.smtp_error.decode()}"
        return Result(_from_reply(text, "SERVICE_UNAVAILABLE"), text)
    except smtplib.SMTPServerDisconnected as error:
        text = str(error)
        if "timed out" in text:
            return Result("GREETING_TIMEOUT", text)
        if "reset by peer" in text:
            return Result("CONNECTION_RESET", text)
        return Result("CONNECTION_DROPPED", text)
    except ssl.SSLError as error:
        return Result(_from_tls_error(error), str(error))
    except OSError as error:
        return Result(_from_network_error(error, connected), str(error))
    finally:
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()


def check(settings: Settings) -> Result:
    if settings.security not in SECURITIES:
        return Result("BAD_SETTINGS", f"security must be one of {', '.join(SECURITIES)}")
    return check_imap(settings) if settings.protocol == "imap" else check_smtp(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check mailbox settings.")
    parser.add_argument("protocol", choices=("imap", "smtp"))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("security", choices=SECURITIES)
    parser.add_argument("username")
    parser.add_argument("password")
    parser.add_argument("--xoauth2", action="store_true", help="the password is an OAuth token")
    parser.add_argument("--insecure", action="store_true", help="allow a non-secure certificate")
    parser.add_argument("--legacy-tls", action="store_true", help="accept TLS 1.0 and 1.1")
    parser.add_argument("--ca", help="also trust this CA file")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--source-address")
    args = parser.parse_args(argv)
    with _source_bound(args.source_address):
        result = _check_from_args(args)
    print(result.code, result.message)
    return 0 if result.ok else 1


@contextlib.contextmanager
def _source_bound(address: str | None) -> Iterator[None]:
    """imapclient has no source-address setting: for this one-shot run, every
    connection leaves from `address` (SMTP passes it to smtplib as well)."""
    if not address:
        yield
        return
    original = socket.create_connection
    default_timeout = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]

    def bound(
        target: Any, timeout: Any = default_timeout, source_address: Any = None, **kw: Any
    ) -> Any:
        return original(target, timeout, source_address or (address, 0), **kw)

    socket.create_connection = bound  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.create_connection = original


def _check_from_args(args: argparse.Namespace) -> Result:
    return check(
        Settings(
            protocol=args.protocol,
            host=args.host,
            port=args.port,
            security=args.security,
            username=args.username,
            password=args.password,
            auth="xoauth2" if args.xoauth2 else "password",
            verify_certificate=not args.insecure,
            allow_legacy_tls=args.legacy_tls,
            ca_file=args.ca,
            timeout=args.timeout,
            source_address=args.source_address,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
