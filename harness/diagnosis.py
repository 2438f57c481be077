"""Diagnosis codes: one stable name for each way a connection to a mail server ends.

A connector, the probe and the scenario catalog speak of failures in these
codes, so "what must my connector report here?" has one answer per scenario
(`ClientCase.expected.diagnosis`) whatever the client library. Each code has a
plain-language hint of what the user should check.

`diagnose(outcome, secure=...)` classifies what a stdlib client (imaplib,
smtplib, ssl, socket) saw, as a journey reports it, by the rules below: the
step it failed at, the exception class, the reply code and words of the reply
text that real servers use (Dovecot, Postfix, Gmail, Outlook, Yahoo).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from mailharness.journeys import Outcome

__all__ = ["Diagnosis", "diagnose"]


class Diagnosis(enum.Enum):
    """Why a connection ended; `.hint` says what to check."""

    OK = "OK"
    DNS_FAILED = "DNS_FAILED"
    CONNECTION_REFUSED = "CONNECTION_REFUSED"
    CONNECT_TIMEOUT = "CONNECT_TIMEOUT"
    CONNECTION_RESET = "CONNECTION_RESET"
    GREETING_TIMEOUT = "GREETING_TIMEOUT"
    CONNECTION_DROPPED = "CONNECTION_DROPPED"
    TLS_MISMATCH = "TLS_MISMATCH"
    TLS_VERSION_TOO_OLD = "TLS_VERSION_TOO_OLD"
    CERT_UNTRUSTED = "CERT_UNTRUSTED"
    CERT_EXPIRED = "CERT_EXPIRED"
    CERT_NOT_YET_VALID = "CERT_NOT_YET_VALID"
    CERT_HOSTNAME_MISMATCH = "CERT_HOSTNAME_MISMATCH"
    CERT_WEAK_KEY = "CERT_WEAK_KEY"
    STARTTLS_UNAVAILABLE = "STARTTLS_UNAVAILABLE"
    STARTTLS_FAILED = "STARTTLS_FAILED"
    PLAINTEXT_REFUSED = "PLAINTEXT_REFUSED"
    PLAINTEXT_BLOCKED = "PLAINTEXT_BLOCKED"
    AUTH_FAILED = "AUTH_FAILED"
    AUTH_MECHANISM_UNSUPPORTED = "AUTH_MECHANISM_UNSUPPORTED"
    APP_PASSWORD_REQUIRED = "APP_PASSWORD_REQUIRED"
    WEB_LOGIN_REQUIRED = "WEB_LOGIN_REQUIRED"
    PASSWORD_EXPIRED = "PASSWORD_EXPIRED"
    IMAP_DISABLED = "IMAP_DISABLED"
    ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
    ACCOUNT_LOCKED = "ACCOUNT_LOCKED"
    IP_NOT_ALLOWED = "IP_NOT_ALLOWED"
    TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
    RATE_LIMITED = "RATE_LIMITED"
    MAILBOX_FULL = "MAILBOX_FULL"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    UNKNOWN = "UNKNOWN"

    @property
    def hint(self) -> str:
        return HINTS[self]

    def __str__(self) -> str:
        return self.value


HINTS: dict[Diagnosis, str] = {
    Diagnosis.OK: "Everything worked.",
    Diagnosis.DNS_FAILED: "The host name does not resolve: check the server name for typos.",
    Diagnosis.CONNECTION_REFUSED: "Nothing listens on that port: check the port (993/143 for "
    "IMAP, 465/587 for SMTP) and that the server is up.",
    Diagnosis.CONNECT_TIMEOUT: "No answer to the connection attempt: a firewall drops it, or "
    "the host or port is wrong.",
    Diagnosis.CONNECTION_RESET: "The connection was reset: a firewall or middlebox refuses it.",
    Diagnosis.GREETING_TIMEOUT: "Connected, but the server never greeted: the port may expect "
    "TLS first (use implicit TLS) or the server is overloaded.",
    Diagnosis.CONNECTION_DROPPED: "The server closed the connection: it may not accept clients "
    "from this address, or it stopped; try again later.",
    Diagnosis.TLS_MISMATCH: "The server spoke plaintext where TLS was expected: choose STARTTLS "
    "or no encryption for this port, or use the implicit-TLS port.",
    Diagnosis.TLS_VERSION_TOO_OLD: "The server only offers an outdated TLS version (SSLv3, "
    "TLS 1.0 or 1.1): ask the provider to enable TLS 1.2 or newer.",
    Diagnosis.CERT_UNTRUSTED: "The certificate is not signed by a trusted CA (self-signed, an "
    "internal CA, or a missing intermediate): install a proper certificate, or allow a "
    "non-secure certificate if you trust this server.",
    Diagnosis.CERT_EXPIRED: "The server's certificate has expired: the provider must renew it.",
    Diagnosis.CERT_NOT_YET_VALID: "The certificate is not valid yet: check the server's and "
    "this machine's clocks.",
    Diagnosis.CERT_HOSTNAME_MISMATCH: "The certificate is for another name: use the host name "
    "the certificate names.",
    Diagnosis.CERT_WEAK_KEY: "The certificate's key is too weak (e.g. RSA 1024): the provider "
    "must issue a stronger one.",
    Diagnosis.STARTTLS_UNAVAILABLE: "The server does not offer STARTTLS: it must support TLS; "
    "use the implicit-TLS port if it has one.",
    Diagnosis.STARTTLS_FAILED: "The server offers STARTTLS but cannot start TLS: a server-side "
    "problem; no credentials were sent.",
    Diagnosis.PLAINTEXT_REFUSED: "The server refuses credentials before TLS: enable STARTTLS "
    "or implicit TLS.",
    Diagnosis.PLAINTEXT_BLOCKED: "The connection is not encrypted, so the password was not "
    "sent: use STARTTLS or implicit TLS, or allow plaintext explicitly if you trust the network.",
    Diagnosis.AUTH_FAILED: "User name or password is wrong (or the password changed).",
    Diagnosis.AUTH_MECHANISM_UNSUPPORTED: "The server does not offer the authentication method "
    "used: check the login method (password or OAuth).",
    Diagnosis.APP_PASSWORD_REQUIRED: "Two-factor authentication is on: create an app-specific "
    "password and use it instead of the account password.",
    Diagnosis.WEB_LOGIN_REQUIRED: "The provider wants a sign-in in a web browser first.",
    Diagnosis.PASSWORD_EXPIRED: "The password has expired: change it with the provider.",
    Diagnosis.IMAP_DISABLED: "IMAP access is switched off in the account's settings.",
    Diagnosis.ACCOUNT_DISABLED: "The account is disabled: contact the administrator.",
    Diagnosis.ACCOUNT_LOCKED: "Too many failed logins locked the account for a while.",
    Diagnosis.IP_NOT_ALLOWED: "The server refuses this client's IP address: add it to the "
    "allowlist.",
    Diagnosis.TOO_MANY_CONNECTIONS: "Too many connections at once: close other clients or "
    "lower the connector's parallelism.",
    Diagnosis.RATE_LIMITED: "A rate limit was hit (logins, messages or bandwidth): slow down "
    "and retry later.",
    Diagnosis.MAILBOX_FULL: "The mailbox is over its quota: free some space.",
    Diagnosis.MESSAGE_TOO_LARGE: "The message exceeds the server's size limit.",
    Diagnosis.SERVICE_UNAVAILABLE: "The server is down for maintenance or its backend is "
    "unavailable: try again later.",
    Diagnosis.UNKNOWN: "An unexpected answer: read the server's reply text.",
}


@dataclass(frozen=True, slots=True)
class _Rule:
    diagnosis: Diagnosis
    pattern: str  # searched in "step error code text"
    secure: bool | None = None  # None: either way

    def applies(self, subject: str, secure: bool) -> bool:
        if self.secure is not None and self.secure != secure:
            return False
        return re.search(self.pattern, subject, re.IGNORECASE) is not None


# First match wins: specific texts before the generic class-and-step rules.
_RULES = (
    _Rule(Diagnosis.DNS_FAILED, r"gaierror"),
    _Rule(Diagnosis.CONNECTION_REFUSED, r"ConnectionRefusedError|Errno 111"),
    _Rule(Diagnosis.CONNECT_TIMEOUT, r"^connect .*(TimeoutError|timed out)"),
    _Rule(Diagnosis.CONNECTION_RESET, r"ConnectionResetError|Errno 104"),
    _Rule(Diagnosis.GREETING_TIMEOUT, r"^greeting .*timed out"),
    _Rule(Diagnosis.TLS_MISMATCH, r"WRONG_VERSION_NUMBER|record layer failure"),
    _Rule(
        Diagnosis.TLS_VERSION_TOO_OLD,
        r"TLSV1_ALERT_PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS_AVAILABLE",
    ),
    _Rule(Diagnosis.CERT_EXPIRED, r"certificate has expired"),
    _Rule(Diagnosis.CERT_NOT_YET_VALID, r"certificate is not yet valid"),
    _Rule(Diagnosis.CERT_HOSTNAME_MISMATCH, r"Hostname mismatch|IP address mismatch"),
    _Rule(Diagnosis.CERT_WEAK_KEY, r"key too (weak|small)"),
    _Rule(Diagnosis.CERT_UNTRUSTED, r"SSLCertVerificationError|certificate verify failed"),
    _Rule(Diagnosis.STARTTLS_UNAVAILABLE, r"TLS not supported by server|STARTTLS extension not"),
    _Rule(Diagnosis.STARTTLS_FAILED, r"^starttls .*(454|TLS not available)"),
    _Rule(Diagnosis.APP_PASSWORD_REQUIRED, r"Application-specific password|\b534\b.*5\.7\.9"),
    _Rule(Diagnosis.WEB_LOGIN_REQUIRED, r"log ?in via your web browser|WEBALERT"),
    _Rule(Diagnosis.IMAP_DISABLED, r"not enabled for IMAP"),
    _Rule(Diagnosis.PASSWORD_EXPIRED, r"\[EXPIRED\]|password (has )?expired"),
    _Rule(Diagnosis.ACCOUNT_DISABLED, r"CONTACTADMIN|Login disabled for this user|5\.7\.13"),
    _Rule(Diagnosis.ACCOUNT_LOCKED, r"Too many bad auth attempts|account (is )?locked"),
    _Rule(Diagnosis.PLAINTEXT_REFUSED, r"PRIVACYREQUIRED|Plaintext authentication disallowed"),
    _Rule(Diagnosis.PLAINTEXT_REFUSED, r"TLS required|Must issue a STARTTLS"),
    _Rule(
        Diagnosis.PLAINTEXT_REFUSED,
        r"^login .*(No suitable authentication method|AUTH extension not supported)",
        secure=False,
    ),
    _Rule(
        Diagnosis.AUTH_MECHANISM_UNSUPPORTED,
        r"Unsupported authentication mechanism|No suitable authentication method|"
        r"AUTH extension not supported|\b504\b",
    ),
    _Rule(Diagnosis.IP_NOT_ALLOWED, r"Client host rejected|not allowed to connect|IP.*not allow"),
    _Rule(
        Diagnosis.TOO_MANY_CONNECTIONS,
        r"Too many (simultaneous |concurrent )?connections|Maximum number of connections|"
        r"Connection queue full|\[LIMIT\]",
    ),
    _Rule(
        Diagnosis.RATE_LIMITED,
        r"Too many login attempts|rate limit|sending limit|bandwidth limits|"
        r"try again later|\b4\.7\.28\b",
    ),
    _Rule(Diagnosis.MAILBOX_FULL, r"OVERQUOTA|Quota exceeded|mailbox (for user )?is full|5\.2\.2"),
    _Rule(Diagnosis.MESSAGE_TOO_LARGE, r"TOOBIG|size exceeds|too large|5\.3\.4"),
    _Rule(
        Diagnosis.SERVICE_UNAVAILABLE,
        r"UNAVAILABLE|Temporary authentication failure|Service not available|"
        r"maintenance|shutting down|\b421\b",
    ),
    _Rule(
        Diagnosis.AUTH_FAILED,
        r"AUTHENTICATIONFAILED|Authentication failed|LOGIN failed|Invalid credentials|"
        r"Username and Password not accepted|Authentication unsuccessful|\b535\b",
    ),
    _Rule(
        Diagnosis.CONNECTION_DROPPED,
        r"IMAP4\.abort|SMTPServerDisconnected|EOF|BrokenPipe|unexpectedly closed",
    ),
)


def diagnose(outcome: Outcome, *, secure: bool = True) -> Diagnosis:
    """The code for what a client saw; `secure`: was the connection encrypted at that step.

    `secure` tells "credentials refused before TLS" (PLAINTEXT_REFUSED) from
    "mechanism not offered" where the reply words are the same.
    """
    if outcome.ok:
        return Diagnosis.OK
    code = "" if outcome.code is None else str(outcome.code)
    subject = f"{outcome.step} {outcome.error or ''} {code} {outcome.text}"
    for rule in _RULES:
        if rule.applies(subject, secure):
            return rule.diagnosis
    return Diagnosis.UNKNOWN
