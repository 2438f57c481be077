"""What a connector is configured with (`ClientProfile`) and what it saw (`Outcome`).

Plain data, apart from the journeys that use them (harness/journeys.py, which imports
imaplib and smtplib): the scenario catalog states its expectations in these, and a
`mailharness serve` that only looks a scenario up should not pay for the clients.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from mailharness.servers.accounts import User
from mailharness.servers.errors import choice_error
from mailharness.servers.records import record
from mailharness.servers.tlsversions import TLSProtocol, limit_versions

# The name a connector puts in its settings: our leaves cover it (and 127.0.0.1, ::1).
DEFAULT_SERVER_NAME = "localhost"
SECRETS = ("password", "app_password", "oauth_token", "wrong")
MECHANISMS = ("login", "xoauth2")
TLS_MODES = ("default", "legacy", "tls1.0-only")
WRONG_SECRET = "not-the-password"


@record
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


@record(kw_only=False)
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
