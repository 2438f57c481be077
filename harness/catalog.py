"""The scenario catalog: every requirement and failure mode of SCENARIOS.md, as data.

Each entry says what a connector must face, how the harness serves it and,
as `Expect`s, what a correct client sees, exactly as Python surfaces it. The
docs table (`docs/scenarios.md`), `mailharness scenarios` and the catalog
tests are all generated from this one list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mailharness.certs import CertVariant
from mailharness.profiles import ClientProfile, Outcome
from mailharness.scenario_files import load_toml
from mailharness.scenarios import Catalog, Expect, Family, Scenario, with_personality
from mailharness.schedule import Flap, MailboxChurn, MaintenanceWindow, Shutdown
from mailharness.server import DEFAULT_SECURITIES, MailConfig, MailServer
from mailharness.servers.accounts import DEFAULT_USERS, Lockout, User
from mailharness.servers.errors import choice_error
from mailharness.servers.faults import (
    Allowlist,
    Bandwidth,
    DropOnCommand,
    Fault,
    FirewallDrop,
    Hang,
    Latency,
    Refuse,
    Reset,
    SlowGreeting,
    TLSVersion,
)
from mailharness.servers.imap import IMAPSettings
from mailharness.servers.listeners import Security
from mailharness.servers.ratelimit import RateLimit
from mailharness.servers.smtp import SMTPSettings

if TYPE_CHECKING:
    import pytest

NONE, STARTTLS, IMPLICIT = Security.NONE, Security.STARTTLS, Security.IMPLICIT
# `backends=`: where a scenario is proven to meet its expectations. "dovecot" (native) and
# "docker" (the same Dovecot in a container) are proven by tests/test_differential.py,
# which runs every scenario marked so on both. Every other static scenario gives its
# `fake_only_reason`: why Dovecot does not serve it.
EVERYWHERE = ("fake", "dovecot", "docker")
OK = Outcome.success()
DEFAULT_CLIENT = ClientProfile()
INSECURE = ClientProfile(name="insecure", verify=False)
LEGACY = ClientProfile(name="legacy-tls", tls="legacy")
TLS10_ONLY = ClientProfile(name="tls1.0-only", tls="tls1.0-only")
QUICK = ClientProfile(name="short-timeout", timeout=0.3)
APP_PASSWORD = ClientProfile(name="app-password", secret="app_password")
WRONG_PASSWORD = ClientProfile(name="wrong-password", secret="wrong")
FROM_ELSEWHERE = ClientProfile(name="from-127.0.0.2", source="127.0.0.2")
XOAUTH2 = ClientProfile(name="xoauth2", mechanism="xoauth2")
XOAUTH2_BAD = ClientProfile(name="xoauth2-bad-token", mechanism="xoauth2", secret="wrong")

ALICE = DEFAULT_USERS[0]
TWO_FACTOR = dataclasses.replace(ALICE, app_password="abcdefghijklmnop", require_app_password=True)

IMAP_AUTH_FAILED = Outcome(
    "login", "imaplib.IMAP4.error", "b'[AUTHENTICATIONFAILED] Authentication failed.'"
)


def both(
    outcome: Outcome,
    securities: Iterable[Security] = DEFAULT_SECURITIES,
    **kw: object,
) -> tuple[Expect, ...]:
    """The same outcome on every listener of both protocols."""
    return tuple(
        Expect(protocol=p, security=s, outcome=outcome, **kw)  # type: ignore[arg-type]
        for p in ("imap", "smtp")
        for s in securities
    )


def imap(security: Security, outcome: Outcome, **kw: object) -> Expect:
    return Expect(protocol="imap", security=security, outcome=outcome, **kw)  # type: ignore[arg-type]


def smtp(security: Security, outcome: Outcome, **kw: object) -> Expect:
    return Expect(protocol="smtp", security=security, outcome=outcome, **kw)  # type: ignore[arg-type]


def on_tls_listeners(*faults_by_security: tuple[Security, object]) -> dict[str, tuple]:  # type: ignore[type-arg]
    return {f"{p}/{s.value}": (f,) for p in ("imap", "smtp") for s, f in faults_by_security}


def _imap_login_error(text: str, error: str = "imaplib.IMAP4.error") -> Outcome:
    """What imaplib's login() raises on a NO: the response text's bytes repr."""
    return Outcome("login", error, f"b'{text}")


def _smtp_login_error(code: int, text: str) -> Outcome:
    return Outcome("login", "smtplib.SMTPAuthenticationError", text, code)


# A connector that skips STARTTLS on 143/587, against Dovecot's defaults (disable_plaintext_auth
# = yes, which its submission service shares): what `healthy` and `starttls-required` answer.
IMAP_PRIVACY_REQUIRED = _imap_login_error(
    "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
)
SMTP_NO_AUTH_BEFORE_TLS = Outcome(
    "login", "smtplib.SMTPException", "No suitable authentication method found."
)
# The one config that takes credentials in plaintext: listeners without TLS, and the
# settings that allow it (the defaults refuse credentials before TLS, as Dovecot does).
PLAINTEXT_ONLY = MailConfig(
    imap=IMAPSettings(plaintext_auth_requires_tls=False),
    smtp=SMTPSettings(starttls_required=False),
    imap_listeners=(NONE,),
    smtp_listeners=(NONE,),
)


# --- baseline -------------------------------------------------------------------------------
def _baseline() -> list[Scenario]:
    return [
        Scenario(
            name="healthy",
            family=Family.BASELINE,
            requirement="IMAP on 993 (implicit TLS) and 143 (STARTTLS), SMTP on 465 and 587, as a "
            "well-run server: no credentials before TLS",
            server="IMAP 143 (STARTTLS) and 993, SMTP 587 (STARTTLS) and 465; CA-signed "
            "certificate "
            "for localhost/127.0.0.1/127.0.0.2/::1; AUTH PLAIN and LOGIN after TLS only (IMAP "
            "LOGINDISABLED before STARTTLS, SMTP AUTH with no mechanism and 530 for MAIL, as "
            "Dovecot's defaults); a Received: header on accepted mail",
            client_sees="everything works over TLS; a client that skips STARTTLS: IMAP4.error(b'"
            "[PRIVACYREQUIRED] ...') / smtplib.SMTPException('No suitable authentication method "
            "found.')",
            expect=(
                *both(OK),
                imap(STARTTLS, IMAP_PRIVACY_REQUIRED, connect_as=NONE),
                smtp(STARTTLS, SMTP_NO_AUTH_BEFORE_TLS, connect_as=NONE),
            ),
            backends=EVERYWHERE,
        ),
    ]


# --- connect ----------------------------------------------------------------------------------
def _cert_tls_error(text: str, step: str) -> Outcome:
    return Outcome(step, "ssl.SSLCertVerificationError", f"certificate verify failed: {text}")


REFUSED = Outcome("connect", "ConnectionRefusedError", "[Errno 111] Connection refused")
# glibc's resolver (getaddrinfo, so Python, curl, Node...) rejects a name whose first
# character is '-' before any query (res_hnok): `[Errno -2] Name or service not known`.
UNRESOLVABLE_HOST = "-mail.wrong-host.invalid"


def _connect() -> list[Scenario]:
    return [
        Scenario(
            name="wrong-host",
            family=Family.CONNECT,
            requirement="wrong host name in the connector's settings",
            server=f"the host name {UNRESOLVABLE_HOST!r}: under .invalid (RFC 2606) and starting "
            "with '-', so the C resolver refuses it without asking DNS: no query leaves the "
            "machine "
            "(a connector that checks host-name syntax itself may refuse it even earlier)",
            client_sees="socket.gaierror [Errno -2] Name or service not known",
            expect=tuple(
                Expect(
                    protocol=p,
                    security=IMPLICIT,
                    host=UNRESOLVABLE_HOST,
                    outcome=Outcome(
                        "connect", "socket.gaierror", "[Errno -2] Name or service not known"
                    ),
                )
                for p in ("imap", "smtp")
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="refused",
            family=Family.CONNECT,
            requirement="wrong port, or the server is down",
            server="every port closed",
            client_sees="ConnectionRefusedError [Errno 111] at once",
            config=MailConfig(faults={"*": (Refuse(),)}),
            expect=both(REFUSED),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="no-imap",
            family=Family.CONNECT,
            requirement="IMAP not offered (SMTP-only host)",
            server="IMAP ports closed, SMTP up",
            client_sees="IMAP: ConnectionRefusedError; SMTP works",
            config=MailConfig(faults={"imap": (Refuse(),)}),
            expect=tuple(imap(s, REFUSED) for s in DEFAULT_SECURITIES)
            + tuple(smtp(s, OK) for s in DEFAULT_SECURITIES),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="firewall-drop",
            family=Family.CONNECT,
            requirement="a firewall silently drops the connection",
            server="SYN never answered (a full accept queue; no root needed)",
            client_sees="TimeoutError('timed out') after the client's connect timeout",
            config=MailConfig(faults={"*": (FirewallDrop(),)}),
            expect=both(Outcome("connect", "TimeoutError", "timed out"), client=QUICK),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="reset",
            family=Family.CONNECT,
            requirement="a middlebox resets the connection",
            server="accept, then RST (20 ms later, so the client has finished connecting)",
            client_sees="ConnectionResetError [Errno 104] Connection reset by peer (smtplib wraps "
            "it: SMTPServerDisconnected('Connection unexpectedly closed: [Errno 104] ...'))",
            config=MailConfig(faults={"*": (Reset(after_seconds=0.02),)}),
            expect=(
                imap(
                    STARTTLS,
                    Outcome(
                        "greeting", "ConnectionResetError", "[Errno 104] Connection reset by peer"
                    ),
                ),
                smtp(
                    STARTTLS,
                    Outcome(
                        "greeting",
                        "smtplib.SMTPServerDisconnected",
                        "Connection unexpectedly closed: [Errno 104] Connection reset by peer",
                    ),
                ),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="hang-greeting",
            family=Family.CONNECT,
            requirement="server accepts but never answers",
            server="accept, never greet",
            client_sees="read timeout: imaplib TimeoutError('timed out'); smtplib "
            "SMTPServerDisconnected('Connection unexpectedly closed: timed out')",
            config=MailConfig(faults={"*": (Hang(),)}),
            expect=(
                imap(STARTTLS, Outcome("greeting", "TimeoutError", "timed out"), client=QUICK),
                smtp(
                    STARTTLS,
                    Outcome(
                        "greeting",
                        "smtplib.SMTPServerDisconnected",
                        "Connection unexpectedly closed: timed out",
                    ),
                    client=QUICK,
                ),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="slow-greeting",
            family=Family.CONNECT,
            requirement="a slow server",
            server="greets after 0.5 s",
            client_sees="works if the client waits long enough",
            config=MailConfig(faults={"*": (SlowGreeting(seconds=0.5),)}),
            expect=both(OK, (STARTTLS,)),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="plaintext-on-tls-port",
            family=Family.CONNECT,
            requirement="wrong encryption setting: implicit TLS configured, server speaks plain",
            server="plaintext greeting where the client expects TLS",
            client_sees="ssl.SSLError [SSL: WRONG_VERSION_NUMBER] wrong version number",
            expect=both(
                Outcome("tls", "ssl.SSLError", "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
                (STARTTLS,),
                connect_as=IMPLICIT,
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="tls-on-plain-port",
            family=Family.CONNECT,
            requirement="wrong encryption setting: plain configured, server expects TLS first",
            server="implicit-TLS listener; the client waits for a plaintext greeting",
            client_sees="read timeout waiting for the greeting",
            expect=(
                imap(
                    IMPLICIT,
                    Outcome("greeting", "TimeoutError", "timed out"),
                    client=QUICK,
                    connect_as=NONE,
                ),
                smtp(
                    IMPLICIT,
                    Outcome(
                        "greeting",
                        "smtplib.SMTPServerDisconnected",
                        "Connection unexpectedly closed: timed out",
                    ),
                    client=QUICK,
                    connect_as=NONE,
                ),
            ),
            backends=EVERYWHERE,
        ),
    ]


# --- tls ----------------------------------------------------------------------------------
PROTOCOL_VERSION_ALERT = "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version"


def _pinned(version: str, securities: Iterable[Security] = (IMPLICIT, STARTTLS)) -> MailConfig:
    faults: dict[str, tuple[Fault, ...]] = {
        f"{p}/{s.value}": (TLSVersion(version=version, security=s.value),)  # type: ignore[arg-type]
        for p in ("imap", "smtp")
        for s in securities
    }
    return MailConfig(faults=faults)


def _version_only(version: str, label: str) -> Scenario:
    return Scenario(
        name=f"{version.replace('.', '')}-only",
        family=Family.TLS,
        requirement=f"{label} is outdated and must be refused",
        server=f"{label} only, on the implicit-TLS and STARTTLS listeners",
        client_sees=f"default client: ssl.SSLError {PROTOCOL_VERSION_ALERT}; "
        "a client that allows TLS 1.0 connects",
        config=_pinned(version),
        expect=tuple(
            Expect(
                protocol=p,
                security=s,
                outcome=Outcome(
                    "tls" if s is IMPLICIT else "starttls", "ssl.SSLError", PROTOCOL_VERSION_ALERT
                ),
            )
            for p in ("imap", "smtp")
            for s in (IMPLICIT, STARTTLS)
        )
        + both(OK, (IMPLICIT, STARTTLS), client=LEGACY),
        backends=EVERYWHERE,
    )


def _starttls_not_offered() -> tuple[Expect, ...]:
    """What a client asking for STARTTLS sees on plain listeners that do not offer it."""
    return (
        imap(
            NONE,
            Outcome("starttls", "imaplib.IMAP4.abort", "TLS not supported by server"),
            connect_as=STARTTLS,
        ),
        smtp(
            NONE,
            Outcome(
                "starttls",
                "smtplib.SMTPNotSupportedError",
                "STARTTLS extension not supported by server.",
            ),
            connect_as=STARTTLS,
        ),
    )


def _tls() -> list[Scenario]:
    return [
        Scenario(
            name="sslv3-only",
            family=Family.TLS,
            requirement="SSLv3 is outdated and must be refused",
            server="SSL 3.0 only (tlslite-ng: OpenSSL 3 cannot serve it), implicit-TLS listeners",
            client_sees="default client: ssl.SSLError [SSL: TLSV1_ALERT_PROTOCOL_VERSION]; "
            "a TLS 1.0-only client: [SSL: UNSUPPORTED_PROTOCOL]",
            config=dataclasses.replace(
                _pinned("sslv3", (IMPLICIT,)),
                imap_listeners=(IMPLICIT,),
                smtp_listeners=(IMPLICIT,),
            ),
            expect=both(
                Outcome("tls", "ssl.SSLError", "[SSL: TLSV1_ALERT_PROTOCOL_VERSION]"), (IMPLICIT,)
            )
            + both(
                Outcome("tls", "ssl.SSLError", "[SSL: UNSUPPORTED_PROTOCOL]"),
                (IMPLICIT,),
                client=TLS10_ONLY,
            ),
            backends=EVERYWHERE,
        ),
        _version_only("tls1.0", "TLS 1.0"),
        _version_only("tls1.1", "TLS 1.1"),
        Scenario(
            name="tls12-only",
            family=Family.TLS,
            requirement="a server without TLS 1.3",
            server="TLS 1.2 only",
            client_sees="works",
            config=_pinned("tls1.2"),
            expect=both(OK, (IMPLICIT, STARTTLS)),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="tls13-only",
            family=Family.TLS,
            requirement="a modern server",
            server="TLS 1.3 only",
            client_sees="works",
            config=_pinned("tls1.3"),
            expect=both(OK, (IMPLICIT, STARTTLS)),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="starttls-required",
            family=Family.TLS,
            requirement="143/587 must be upgraded with STARTTLS before any credentials",
            server="IMAP greeting carries LOGINDISABLED until STARTTLS (LOGIN anyway: * BAD "
            "[ALERT] "
            "then NO [PRIVACYREQUIRED]); SMTP as Dovecot's submission: AUTH advertised with no "
            "mechanism, AUTH gets 523 5.7.10 Plaintext authentication disabled., MAIL 530 5.7.0 "
            "Authentication required.",
            client_sees="works after STARTTLS; a client that skips it: "
            "IMAP4.error(b'[PRIVACYREQUIRED] "
            "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.') / "
            "smtplib.SMTPException('No suitable authentication method found.')",
            config=MailConfig(
                imap=IMAPSettings(plaintext_auth_requires_tls=True),
                smtp=SMTPSettings(starttls_required=True),
                imap_listeners=(STARTTLS, IMPLICIT),
                smtp_listeners=(STARTTLS, IMPLICIT),
            ),
            expect=(
                *both(OK, (STARTTLS, IMPLICIT)),
                imap(STARTTLS, IMAP_PRIVACY_REQUIRED, connect_as=NONE),
                smtp(STARTTLS, SMTP_NO_AUTH_BEFORE_TLS, connect_as=NONE),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="starttls-required-gmail",
            family=Family.TLS,
            personality="gmail",
            requirement="587 must be upgraded with STARTTLS before any credentials (Gmail, "
            "Postfix)",
            server="SMTP offers no AUTH before STARTTLS and answers every other command with 530 "
            "5.7.0 Must issue a STARTTLS command first.",
            client_sees="works after STARTTLS; a client that skips it: "
            "smtplib.SMTPNotSupportedError"
            "('SMTP AUTH extension not supported by server.')",
            config=with_personality(MailConfig(smtp=SMTPSettings(starttls_required=True)), "gmail"),
            expect=(
                smtp(STARTTLS, OK),
                smtp(
                    STARTTLS,
                    Outcome(
                        "login",
                        "smtplib.SMTPNotSupportedError",
                        "SMTP AUTH extension not supported by server.",
                    ),
                    connect_as=NONE,
                ),
            ),
            fake_only_reason="Gmail's reply texts; Dovecot's are its own (see starttls-required)",
        ),
        Scenario(
            name="starttls-only",
            family=Family.TLS,
            requirement="IMAP on 143 and SMTP on 587 with STARTTLS; no implicit-TLS ports",
            server="no implicit-TLS listeners (993/465 closed)",
            client_sees="works via STARTTLS; the implicit-TLS ports refuse connections",
            config=MailConfig(faults={"imap/implicit": (Refuse(),), "smtp/implicit": (Refuse(),)}),
            expect=both(OK, (STARTTLS,)) + both(REFUSED, (IMPLICIT,)),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="implicit-tls-only",
            family=Family.TLS,
            requirement="IMAP on 993 and SMTP on 465 only",
            server="no plaintext or STARTTLS listeners (143/587 closed)",
            client_sees="works via implicit TLS; 143/587 refuse connections",
            config=MailConfig(faults={f"{p}/starttls": (Refuse(),) for p in ("imap", "smtp")}),
            expect=both(OK, (IMPLICIT,)) + both(REFUSED, (STARTTLS,)),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="starttls-missing",
            family=Family.TLS,
            requirement="the SMTP server must support TLS",
            server="STARTTLS not advertised; SMTP answers STARTTLS with "
            "502 5.5.1 Error: command not implemented",
            client_sees="imaplib.IMAP4.abort('TLS not supported by server'); "
            "smtplib.SMTPNotSupportedError('STARTTLS extension not supported by server.')",
            config=MailConfig(imap_listeners=(NONE,), smtp_listeners=(NONE,)),
            expect=_starttls_not_offered(),
            fake_only_reason="Dovecot offers STARTTLS on its plain ports whenever TLS is "
            "configured",
        ),
        Scenario(
            name="starttls-broken",
            family=Family.TLS,
            requirement="STARTTLS advertised but failing: no credentials may be sent",
            server="SMTP: 454 4.7.0 TLS not available due to local problem",
            client_sees="smtplib.SMTPResponseException(454, b'4.7.0 TLS not available due to local "
            "problem')",
            config=MailConfig(smtp=SMTPSettings(starttls_broken=True)),
            expect=(
                smtp(
                    STARTTLS,
                    Outcome(
                        "starttls",
                        "smtplib.SMTPResponseException",
                        "4.7.0 TLS not available due to local problem",
                        454,
                    ),
                ),
            ),
            fake_only_reason="Dovecot cannot advertise STARTTLS and then refuse it with 454",
        ),
        Scenario(
            name="plaintext-only",
            family=Family.TLS,
            requirement="a server without any TLS must be refused (or warned about)",
            server="plaintext listeners only, no STARTTLS; credentials accepted in plaintext "
            "(the only "
            "catalog scenario that takes them before TLS: its name says so)",
            client_sees="a client requiring STARTTLS: imaplib.IMAP4.abort('TLS not supported by "
            "server') / SMTPNotSupportedError",
            config=PLAINTEXT_ONLY,
            expect=(
                *_starttls_not_offered(),
                imap(NONE, OK),
                smtp(NONE, OK),
            ),
            backends=EVERYWHERE,
        ),
    ]


# --- cert -------------------------------------------------------------------------------------
CERT_ERRORS = {
    CertVariant.SELF_SIGNED: "self-signed certificate",
    CertVariant.UNKNOWN_CA: "unable to get local issuer certificate",
    CertVariant.EXPIRED: "certificate has expired",
    CertVariant.NOT_YET_VALID: "certificate is not yet valid",
    CertVariant.WRONG_HOST: "Hostname mismatch, certificate is not valid for 'localhost'.",
    CertVariant.MISSING_INTERMEDIATE: "unable to get local issuer certificate",
    CertVariant.WEAK_KEY: "EE certificate key too weak",
}


def _cert() -> list[Scenario]:
    return [
        Scenario(
            name=f"cert-{variant.value}",
            family=Family.CERT,
            requirement="certificates not signed by a CA are refused unless the user allows a "
            "non-secure certificate",
            server=f"the {variant.value} certificate on every TLS listener",
            client_sees=f"ssl.SSLCertVerificationError ... certificate verify failed: {text}; "
            "connects when verification is off",
            config=MailConfig(cert=variant),
            expect=tuple(
                Expect(
                    protocol=p,
                    security=s,
                    outcome=_cert_tls_error(text, "tls" if s is IMPLICIT else "starttls"),
                )
                for p in ("imap", "smtp")
                for s in (IMPLICIT, STARTTLS)
            )
            + both(OK, (IMPLICIT, STARTTLS), client=INSECURE),
            backends=EVERYWHERE,
        )
        for variant, text in CERT_ERRORS.items()
    ]


# --- auth ---------------------------------------------------------------------------------


def _auth_config(personality: str, users: tuple[User, ...] = DEFAULT_USERS) -> MailConfig:
    return with_personality(MailConfig(users=users), personality)


Prepare = Callable[[MailServer], None]


def _backend_down(server: MailServer) -> None:
    server.users.backend_down = True


def _update_alice(**changes: object) -> Prepare:
    """A `prepare` step that changes the first user's account state on the running server."""

    def prepare(server: MailServer) -> None:
        server.users.update(ALICE.login, **changes)

    return prepare


def _lock_out_alice(server: MailServer) -> None:
    server.users.lockout = Lockout(max_failures=3, seconds=60)
    for _ in range(3):
        server.users.authenticate(ALICE.login, "wrong", source="127.0.0.1")


def _change_password(server: MailServer) -> None:
    server.users.set_password(ALICE.login, "changed-password")


def _large_inbox(server: MailServer) -> None:
    server.store.add_synthetic(ALICE.login, "INBOX", 100_000)


SECURE = (IMPLICIT, STARTTLS)


def _auth() -> list[Scenario]:
    return [
        Scenario(
            name="auth-bad-password",
            family=Family.AUTH,
            requirement="username and password",
            server="a wrong password is refused (failure delay configurable; 0 in tests)",
            client_sees="IMAP: imaplib.IMAP4.error(b'[AUTHENTICATIONFAILED] Authentication "
            "failed.'); SMTP: SMTPAuthenticationError(535, b'5.7.8 Authentication failed.')",
            expect=tuple(imap(s, IMAP_AUTH_FAILED, client=WRONG_PASSWORD) for s in SECURE)
            + tuple(
                smtp(
                    s, _smtp_login_error(535, "5.7.8 Authentication failed."), client=WRONG_PASSWORD
                )
                for s in SECURE
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="auth-bad-password-outlook",
            family=Family.AUTH,
            personality="outlook",
            requirement="username and password (Exchange Online: basic auth is off)",
            server="every failed login: IMAP NO LOGIN failed. with no code; SMTP 535 5.7.139",
            client_sees="IMAP4.error(b'LOGIN failed.'); SMTPAuthenticationError(535, b'5.7.139 "
            "Authentication unsuccessful, basic authentication is disabled. [<host>]')",
            config=_auth_config("outlook"),
            expect=(
                imap(IMPLICIT, _imap_login_error("LOGIN failed.'"), client=WRONG_PASSWORD),
                smtp(
                    IMPLICIT,
                    _smtp_login_error(
                        535,
                        "5.7.139 Authentication unsuccessful, basic authentication is disabled.",
                    ),
                    client=WRONG_PASSWORD,
                ),
            ),
            fake_only_reason="Exchange Online's reply texts (5.7.139, LOGIN failed.)",
        ),
        Scenario(
            name="auth-lockout",
            family=Family.AUTH,
            personality="gmail",
            requirement="too many failed logins lock the account for a while",
            server="after 3 failures even the right password is refused for 60 s (Gmail wording)",
            client_sees="IMAP: IMAP4.error(b'[ALERT] Please log in via your web browser: ...'); "
            "SMTP: 454 4.7.0 Too many login attempts, please try again later.",
            config=_auth_config("gmail"),
            prepare=_lock_out_alice,
            expect=(
                imap(IMPLICIT, _imap_login_error("[ALERT] Please log in via your web browser")),
                smtp(
                    IMPLICIT,
                    _smtp_login_error(
                        454, "4.7.0 Too many login attempts, please try again later."
                    ),
                ),
            ),
            fake_only_reason="Gmail's lockout texts; Dovecot's auth penalty only delays failed "
            "logins",
        ),
        Scenario(
            name="auth-lockout-yahoo",
            family=Family.AUTH,
            personality="yahoo",
            requirement="too many failed logins lock the account for a while (Yahoo)",
            server="after 3 failures even the right password is refused for 60 s",
            client_sees="SMTP: SMTPAuthenticationError(535, b'5.7.0 (#AUTH005) Too many bad auth "
            "attempts.'); IMAP: [AUTHENTICATIONFAILED] (#AUTH005) Too many bad auth attempts.",
            config=_auth_config("yahoo"),
            prepare=_lock_out_alice,
            expect=(
                imap(
                    IMPLICIT,
                    _imap_login_error(
                        "[AUTHENTICATIONFAILED] (#AUTH005) Too many bad auth attempts."
                    ),
                ),
                smtp(
                    IMPLICIT, _smtp_login_error(535, "5.7.0 (#AUTH005) Too many bad auth attempts.")
                ),
            ),
            fake_only_reason="Yahoo's lockout texts; Dovecot's auth penalty only delays failed "
            "logins",
        ),
        Scenario(
            name="auth-password-changed",
            family=Family.AUTH,
            requirement="the user changed the password after setting up the connector",
            server="the password is changed at run time (here: before the journey)",
            client_sees="as a bad password from then on",
            prepare=_change_password,
            expect=(
                imap(IMPLICIT, IMAP_AUTH_FAILED),
                smtp(IMPLICIT, _smtp_login_error(535, "5.7.8 Authentication failed.")),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="auth-app-password-required",
            family=Family.AUTH,
            personality="gmail",
            requirement="two-factor auth on: an app-specific password is required",
            server="the account password is refused with Gmail's texts; the app password works",
            client_sees="IMAP: IMAP4.error(b'[ALERT] Application-specific password required: "
            "https://support.google.com/accounts/answer/185833 (Failure)'); SMTP: 534 5.7.9",
            config=_auth_config("gmail", (TWO_FACTOR, DEFAULT_USERS[1])),
            expect=(
                imap(
                    IMPLICIT,
                    _imap_login_error(
                        "[ALERT] Application-specific password required: "
                        "https://support.google.com/accounts/answer/185833 (Failure)"
                    ),
                ),
                smtp(
                    IMPLICIT,
                    _smtp_login_error(
                        534,
                        "5.7.9 Application-specific password required. For more information, go to"
                        "\n5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor ",
                    ),
                ),
                imap(IMPLICIT, OK, client=APP_PASSWORD),
                smtp(IMPLICIT, OK, client=APP_PASSWORD),
            ),
            fake_only_reason="Gmail's reply texts; Dovecot has no app passwords",
        ),
        Scenario(
            name="auth-app-password-required-yahoo",
            family=Family.AUTH,
            personality="yahoo",
            requirement="two-factor auth on (Yahoo, iCloud): no distinct text",
            server="the account password is refused like a wrong one; the app password works",
            client_sees="IMAP: [AUTHENTICATIONFAILED] Authentication failed.; SMTP: 535",
            config=_auth_config("yahoo", (TWO_FACTOR, DEFAULT_USERS[1])),
            expect=(
                imap(IMPLICIT, IMAP_AUTH_FAILED),
                smtp(IMPLICIT, _smtp_login_error(535, "5.7.8 Authentication failed.")),
                imap(IMPLICIT, OK, client=APP_PASSWORD),
                smtp(IMPLICIT, OK, client=APP_PASSWORD),
            ),
            fake_only_reason="Yahoo's reply texts; Dovecot has no app passwords",
        ),
        Scenario(
            name="auth-imap-disabled",
            family=Family.AUTH,
            personality="gmail",
            requirement="IMAP access switched off in the account (Gmail)",
            server="IMAP login refused; SMTP works",
            client_sees="IMAP: IMAP4.error(b'[ALERT] Your account is not enabled for IMAP use.')",
            config=_auth_config("gmail"),
            prepare=_update_alice(imap_enabled=False),
            expect=(
                imap(
                    IMPLICIT, _imap_login_error("[ALERT] Your account is not enabled for IMAP use.")
                ),
                smtp(IMPLICIT, OK),
            ),
            fake_only_reason="Gmail's per-account IMAP switch and its reply text",
        ),
        Scenario(
            name="auth-web-login-required",
            family=Family.AUTH,
            personality="gmail",
            requirement="the provider wants a browser login first (Gmail)",
            server="login refused with Gmail's web-login texts",
            client_sees="IMAP: IMAP4.error(b'[ALERT] Please log in via your web browser: ...'); "
            "SMTP: 535 5.7.8 Username and Password not accepted.",
            config=_auth_config("gmail"),
            prepare=_update_alice(web_login_required=True),
            expect=(
                imap(
                    IMPLICIT,
                    _imap_login_error(
                        "[ALERT] Please log in via your web browser: "
                        "https://support.google.com/mail/accounts/answer/78754 (Failure)"
                    ),
                ),
                smtp(IMPLICIT, _smtp_login_error(535, "5.7.8 Username and Password not accepted.")),
            ),
            fake_only_reason="Gmail's WEBALERT reply; Dovecot has no such account state",
        ),
        Scenario(
            name="auth-password-expired",
            family=Family.AUTH,
            requirement="the password has expired",
            server="login refused with EXPIRED",
            client_sees="IMAP: IMAP4.error(b'[EXPIRED] Authentication failed.'); SMTP: 535",
            prepare=_update_alice(password_expired=True),
            expect=(
                imap(IMPLICIT, _imap_login_error("[EXPIRED] Authentication failed.")),
                smtp(IMPLICIT, _smtp_login_error(535, "5.7.8 Authentication failed.")),
            ),
            fake_only_reason="Dovecot's passwd-file has no password expiry ([EXPIRED])",
        ),
        Scenario(
            name="auth-account-disabled",
            family=Family.AUTH,
            requirement="the account is disabled",
            server="login refused: Dovecot nologin",
            client_sees="IMAP: IMAP4.error(b'[CONTACTADMIN] Login disabled for this user'); "
            "SMTP: 525 5.7.13 Login disabled for this user",
            # Data, not a run-time step: so compose serves it too (passwd-file nologin=y).
            config=MailConfig(
                users=(dataclasses.replace(ALICE, disabled=True), *DEFAULT_USERS[1:])
            ),
            expect=(
                imap(IMPLICIT, _imap_login_error("[CONTACTADMIN] Login disabled for this user")),
                smtp(IMPLICIT, _smtp_login_error(525, "5.7.13 Login disabled for this user")),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="auth-backend-down",
            family=Family.AUTH,
            requirement="the provider's auth backend is down: a temporary failure",
            server="every login fails temporarily (on Dovecot its passdb really fails: each "
            "passwd-file becomes a symlink loop)",
            client_sees="IMAP: IMAP4.error(b'[UNAVAILABLE] Temporary authentication failure. "
            "[<host>:<time>]'); SMTP: 454 4.7.0 Temporary authentication failure.",
            prepare=_backend_down,
            expect=(
                imap(
                    IMPLICIT, _imap_login_error("[UNAVAILABLE] Temporary authentication failure. [")
                ),
                smtp(IMPLICIT, _smtp_login_error(454, "4.7.0 Temporary authentication failure.")),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="auth-mechanism-unsupported",
            family=Family.AUTH,
            requirement="the server offers only OAuth (XOAUTH2)",
            server="only AUTH=XOAUTH2 offered (IMAP also LOGINDISABLED)",
            client_sees="a password client: IMAP4.error(b'[ALERT] Unsupported authentication "
            "mechanism.'); smtplib.SMTPException('No suitable authentication method found.'); an "
            "XOAUTH2 client works",
            config=MailConfig(
                smtp=SMTPSettings(auth_mechanisms=("XOAUTH2",)),
                imap=IMAPSettings(auth_mechanisms=("XOAUTH2",), login_disabled=True),
            ),
            expect=(
                imap(IMPLICIT, _imap_login_error("[ALERT] Unsupported authentication mechanism.")),
                smtp(
                    IMPLICIT,
                    Outcome(
                        "login", "smtplib.SMTPException", "No suitable authentication method found."
                    ),
                ),
                imap(IMPLICIT, OK, client=XOAUTH2),
                smtp(IMPLICIT, OK, client=XOAUTH2),
            ),
            fake_only_reason=(
                "XOAUTH2 only: Dovecot offers XOAUTH2 only with an OAuth2 token server behind its "
                "oauth2 passdb"
            ),
        ),
        Scenario(
            name="auth-xoauth2",
            family=Family.AUTH,
            personality="gmail",
            requirement="OAuth 2 login (XOAUTH2)",
            server="a valid token works; a bad one gets Google's error challenge, then a failure",
            client_sees="IMAP: IMAP4.error(b'[AUTHENTICATIONFAILED] Invalid credentials "
            "(Failure)'); "
            "SMTP: 535 5.7.8",
            config=with_personality(
                MailConfig(imap=IMAPSettings(auth_mechanisms=("PLAIN", "LOGIN", "XOAUTH2"))),
                "gmail",
            ),
            expect=(
                imap(IMPLICIT, OK, client=XOAUTH2),
                smtp(IMPLICIT, OK, client=XOAUTH2),
                imap(
                    IMPLICIT,
                    # imaplib's AUTHENTICATE decodes the text; LOGIN's error shows the bytes.
                    Outcome(
                        "login",
                        "imaplib.IMAP4.error",
                        "[AUTHENTICATIONFAILED] Invalid credentials (Failure)",
                    ),
                    client=XOAUTH2_BAD,
                ),
                smtp(
                    IMPLICIT,
                    _smtp_login_error(535, "5.7.8 Username and Password not accepted."),
                    client=XOAUTH2_BAD,
                ),
            ),
            fake_only_reason=(
                "Gmail's texts, and Dovecot checks XOAUTH2 tokens only against an OAuth2 server"
            ),
        ),
    ]


# --- mailbox --------------------------------------------------------------------------------
FILLER = b"Subject: filler\r\n\r\n" + b"x" * 1000 + b"\r\n"


def _fill_quota(server: MailServer) -> None:
    """Fill every user whose data sets a quota (`User.quota_bytes` / `quota_messages`)
    up to it: one message of the quota's size, or as many messages as it counts."""
    for user in server.users:
        if user.quota_bytes is not None:
            header = b"Subject: filler\r\n\r\n"
            server.deliver(user.login, header + b"x" * max(0, user.quota_bytes - len(header)))
        for _ in range(user.quota_messages or 0):
            server.deliver(user.login, FILLER)


# quota-full's full user, as data: alice's quota is exactly the filler message's size.
FULL_ALICE = dataclasses.replace(ALICE, quota_bytes=len(FILLER))
FULL_MAILBOX = (FULL_ALICE, *DEFAULT_USERS[1:])


def _append_limit(server: MailServer) -> None:
    server.store.user(ALICE.login).append_limit = 100


OVER_QUOTA_TEXT = "Quota exceeded (mailbox for user is full)"


def _mailbox() -> list[Scenario]:
    return [
        Scenario(
            name="quota-full",
            family=Family.MAILBOX,
            requirement="a full mailbox",
            server="the user's quota is used up: APPEND/COPY/MOVE refused; RCPT to the user 552",
            client_sees=f"IMAP APPEND: ('NO', [b'[OVERQUOTA] {OVER_QUOTA_TEXT}']) (no exception); "
            f"SMTP: SMTPRecipientsRefused 552 5.2.2 <rcpt> {OVER_QUOTA_TEXT}",
            config=MailConfig(users=FULL_MAILBOX),
            prepare=_fill_quota,
            expect=(
                imap(IMPLICIT, Outcome("append", "imap.NO", f"[OVERQUOTA] {OVER_QUOTA_TEXT}")),
                smtp(
                    IMPLICIT,
                    Outcome(
                        "rcpt",
                        "smtplib.SMTPRecipientsRefused",
                        f"5.2.2 <{ALICE.address}> {OVER_QUOTA_TEXT}",
                        552,
                    ),
                ),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="quota-full-temporary",
            family=Family.MAILBOX,
            requirement="a full mailbox, reported as a temporary failure",
            server="RCPT to the user: 452 4.2.2 (quota_full_tempfail)",
            client_sees=f"SMTPRecipientsRefused 452 4.2.2 <rcpt> {OVER_QUOTA_TEXT}",
            config=MailConfig(users=FULL_MAILBOX, smtp=SMTPSettings(quota_temporary=True)),
            prepare=_fill_quota,
            expect=(
                smtp(
                    IMPLICIT,
                    Outcome(
                        "rcpt",
                        "smtplib.SMTPRecipientsRefused",
                        f"4.2.2 <{ALICE.address}> {OVER_QUOTA_TEXT}",
                        452,
                    ),
                ),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="quota-soft",
            family=Family.MAILBOX,
            requirement="a nearly full mailbox: the connector should warn",
            server="APPEND over the soft quota succeeds with OK [OVERQUOTA] You are now over your "
            "soft quota",
            client_sees="('OK', [b'[OVERQUOTA] You are now over your soft quota']): no error",
            config=MailConfig(imap=IMAPSettings(soft_quota_bytes=100)),
            expect=(imap(IMPLICIT, OK),),
            fake_only_reason=(
                "Dovecot's quota warnings run a script; no reply says a quota is nearly full"
            ),
        ),
        Scenario(
            name="message-too-large",
            family=Family.MAILBOX,
            requirement="a message over the server's size limit",
            server="IMAP APPENDLIMIT (RFC 7889) and SMTP SIZE advertised, 100 bytes",
            client_sees="IMAP APPEND: ('NO', [b'[TOOBIG] ...']); SMTP: SMTPSenderRefused(552, "
            "b'5.3.4 Message size exceeds fixed limit')",
            config=MailConfig(smtp=SMTPSettings(size_limit=100)),
            prepare=_append_limit,
            expect=(
                imap(IMPLICIT, Outcome("append", "imap.NO", "[TOOBIG]")),
                smtp(
                    IMPLICIT,
                    Outcome(
                        "mail",
                        "smtplib.SMTPSenderRefused",
                        "5.3.4 Message size exceeds fixed limit",
                        552,
                    ),
                ),
            ),
            fake_only_reason="Dovecot 2.3 has no APPENDLIMIT and no [TOOBIG] for a plain APPEND, "
            "and "
            "its submission refuses SIZE= with 552 5.2.3 ... administrative limit",
        ),
        Scenario(
            name="mailbox-large",
            family=Family.MAILBOX,
            requirement="a big mailbox must sync without timing out",
            server="100,000 deterministic synthetic messages in INBOX (up to 1,000,000 on demand)",
            client_sees="works",
            prepare=_large_inbox,
            expect=(imap(IMPLICIT, OK),),
            fake_only_reason=(
                "100,000 synthetic messages cost the fake ~4 bytes each; as Dovecot maildir files "
                "they would be 400 MB per test"
            ),
        ),
        Scenario(
            name="mailbox-churn",
            family=Family.MAILBOX,
            requirement="the mailbox changes under the connector",
            server="every 5 s INBOX gets a new UIDVALIDITY (a session that has it selected is "
            "closed); a mailbox deleted while selected, or messages expunged by another session, "
            "are announced",
            client_sees="imaplib.IMAP4.abort after * BYE; unsolicited EXPUNGE and EXISTS",
            config=MailConfig(schedule=(MailboxChurn(every_seconds=5.0),)),
            dynamic=True,
        ),
    ]


# --- limits ---------------------------------------------------------------------------------
def _spend_login(server: MailServer) -> None:
    server.users.login_rate = RateLimit(count=1, per_seconds=60)
    server.users.authenticate(ALICE.login, ALICE.password, source="127.0.0.1")


def _limits() -> list[Scenario]:
    return [
        Scenario(
            name="conn-limit",
            family=Family.LIMITS,
            requirement="connection limits",
            client_sees="the connection over the limit: IMAP NO [UNAVAILABLE] Maximum number of "
            "connections from user+IP exceeded; SMTP 421 4.7.0 <host> Error: too many connections",
            server="IMAP: one session per user+IP after login (mail_max_userip_connections=1); "
            "SMTP: one connection per client address (Postfix smtpd_client_connection_count_limit)",
            config=MailConfig(
                imap=IMAPSettings(max_userip_connections=1),
                smtp=SMTPSettings(max_connections_per_ip=1),
            ),
            dynamic=True,
        ),
        Scenario(
            name="conn-queue-full",
            family=Family.LIMITS,
            requirement="connection limits: the server's queue is full",
            server="IMAP: one connection at a time; the next gets * BYE Connection queue full "
            "(or, in hang mode, no greeting until a slot frees)",
            client_sees="imaplib.IMAP4.error(b'* BYE Connection queue full')",
            config=MailConfig(imap=IMAPSettings(max_connections=1)),
            dynamic=True,
        ),
        Scenario(
            name="bandwidth-exceeded",
            family=Family.LIMITS,
            personality="gmail",
            requirement="provider bandwidth limits on downloads (Gmail)",
            server="a byte budget per session: the FETCH that crosses it completes, the next "
            "gets NO [OVERQUOTA] Account exceeded command or bandwidth limits.",
            client_sees="('NO', [b'[OVERQUOTA] Account exceeded command or bandwidth limits.'])",
            config=with_personality(MailConfig(imap=IMAPSettings(fetch_byte_limit=1000)), "gmail"),
            dynamic=True,
        ),
        Scenario(
            name="rate-limit-send",
            family=Family.LIMITS,
            requirement="rate limits on sending",
            server="after N messages per window the next MAIL is refused; recovers when the window "
            "passes",
            client_sees="SMTPSenderRefused: 421 4.7.0 Try again later, closing connection. "
            "(gmail 550 5.4.5, outlook 554 5.2.0)",
            config=MailConfig(smtp=SMTPSettings(send_rate=RateLimit(count=2, per_seconds=1.0))),
            dynamic=True,
        ),
        Scenario(
            name="rate-limit-login",
            family=Family.LIMITS,
            requirement="rate limits on logins",
            server="one login per minute per user and address; the journey's login is the second",
            client_sees="IMAP: IMAP4.error(b'[UNAVAILABLE] Temporary authentication failure. "
            "[<host>:<time>]') (outlook: NO Server Unavailable. 15); SMTP: 454 4.7.0 Too many "
            "login "
            "attempts, please try again later.",
            prepare=_spend_login,
            expect=(
                imap(
                    IMPLICIT, _imap_login_error("[UNAVAILABLE] Temporary authentication failure. [")
                ),
                smtp(
                    IMPLICIT,
                    _smtp_login_error(
                        454, "4.7.0 Too many login attempts, please try again later."
                    ),
                ),
            ),
            fake_only_reason="Dovecot's auth penalty delays failed logins (2-15 s) but refuses "
            "none",
        ),
        Scenario(
            name="throttle",
            family=Family.LIMITS,
            requirement="a slow, throttled server",
            server="50 ms latency per chunk and a 256 KB/s bandwidth cap on every listener",
            client_sees="works, slowly",
            config=MailConfig(faults={"*": (Latency(ms=50), Bandwidth(bytes_per_second=256_000))}),
            expect=both(OK, (IMPLICIT,)),
            backends=EVERYWHERE,
        ),
    ]


# --- availability ---------------------------------------------------------------------------
def _availability() -> list[Scenario]:
    return [
        Scenario(
            name="maintenance",
            family=Family.AVAILABILITY,
            requirement="outages and maintenance",
            server="IMAP greets * BYE [UNAVAILABLE] Server down for maintenance; SMTP greets 421 "
            "4.3.2 Service not available",
            client_sees="imaplib.IMAP4.error(b'* BYE [UNAVAILABLE] Server down for maintenance'); "
            "smtplib.SMTPConnectError(421, b'4.3.2 Service not available')",
            config=MailConfig(
                imap=IMAPSettings(maintenance=True),
                smtp=SMTPSettings(greeting_refusal="421 4.3.2 Service not available"),
            ),
            expect=(
                imap(
                    IMPLICIT,
                    Outcome(
                        "greeting",
                        "imaplib.IMAP4.error",
                        "[UNAVAILABLE] Server down for maintenance",
                    ),
                ),
                smtp(
                    IMPLICIT,
                    Outcome(
                        "greeting", "smtplib.SMTPConnectError", "4.3.2 Service not available", 421
                    ),
                ),
            ),
            fake_only_reason=(
                "Dovecot has no maintenance switch (a 421 or BYE greeting comes from a proxy)"
            ),
        ),
        Scenario(
            name="backend-maintenance",
            family=Family.AVAILABILITY,
            requirement="outages and maintenance behind a proxy",
            server="IMAP LOGIN: NO [UNAVAILABLE] User's backend down for maintenance",
            client_sees="imaplib.IMAP4.error(b\"[UNAVAILABLE] User's backend down for "
            'maintenance")',
            config=MailConfig(imap=IMAPSettings(backend_maintenance=True)),
            expect=(
                imap(
                    IMPLICIT,
                    Outcome(
                        "login",
                        "imaplib.IMAP4.error",
                        "[UNAVAILABLE] User's backend down for maintenance",
                    ),
                ),
            ),
            fake_only_reason=(
                "the text of a Dovecot proxy or director whose backend is down; a single Dovecot "
                "has no backend"
            ),
        ),
        Scenario(
            name="shutdown-mid-session",
            family=Family.AVAILABILITY,
            requirement="the server goes away during a session",
            server="every 5 s, each open session: IMAP * BYE Server shutting down. then close; "
            "SMTP 421 4.3.2 Shutting down; new connections are served (a restart)",
            client_sees="imaplib.IMAP4.abort on the next command; smtplib.SMTPServerDisconnected",
            config=MailConfig(schedule=(Shutdown(every_seconds=5.0),)),
            dynamic=True,
        ),
        Scenario(
            name="idle-timeout",
            family=Family.AVAILABILITY,
            requirement="the server drops idle sessions",
            server="after 1 s without a command, IMAP: * BYE Disconnected for inactivity.; SMTP: "
            "421 4.4.2 <host> Error: timeout exceeded",
            client_sees="imaplib.IMAP4.abort / SMTPServerDisconnected on the next command",
            config=MailConfig(imap=IMAPSettings(idle_timeout=1.0), smtp=SMTPSettings(timeout=1.0)),
            dynamic=True,
        ),
        Scenario(
            name="drop-mid-fetch",
            family=Family.AVAILABILITY,
            requirement="the connection breaks in the middle of a transfer",
            server="FIN inside a FETCH literal (50 bytes into the reply)",
            client_sees="imaplib.IMAP4.abort",
            # The front ends TLS (TLSVersion) so it sees the FETCH command.
            config=MailConfig(
                faults={
                    "imap/implicit": (TLSVersion(), DropOnCommand(pattern=b"FETCH", reply_bytes=50))
                }
            ),
            dynamic=True,
        ),
        Scenario(
            name="flapping",
            family=Family.AVAILABILITY,
            requirement="an unstable server",
            server="every listener alternates: up for 2 s, then refused for 2 s",
            client_sees="works, then ConnectionRefusedError, then works",
            config=MailConfig(schedule=(Flap(up_seconds=2.0, down_seconds=2.0),)),
            dynamic=True,
        ),
        Scenario(
            name="maintenance-window",
            family=Family.AVAILABILITY,
            requirement="scheduled maintenance: the server is down for a while, then back",
            server="every 30 s a 10 s window (the first opens 20 s after start) in which new "
            "connections are greeted IMAP * BYE [UNAVAILABLE] Server down for maintenance, SMTP "
            "421 4.3.2 Service not available",
            client_sees="works; in a window imaplib.IMAP4.error(b'* BYE [UNAVAILABLE] Server down "
            "for maintenance') / smtplib.SMTPConnectError(421, ...); then works again",
            config=MailConfig(
                schedule=(MaintenanceWindow(every_seconds=30.0, lasts_seconds=10.0),)
            ),
            dynamic=True,
        ),
    ]


# --- access ---------------------------------------------------------------------------------
ALLOW_LOCAL = ("127.0.0.1/32",)
LOCAL_ONLY = dataclasses.replace(ALICE, allow_nets=ALLOW_LOCAL)


def _access() -> list[Scenario]:
    return [
        Scenario(
            name="ip-not-allowed",
            family=Family.ACCESS,
            requirement="IP allowlists on the customer's side (Dovecot allow_nets)",
            server="the account may log in from 127.0.0.1 only; elsewhere it fails like a wrong "
            "password",
            client_sees="from 127.0.0.2: IMAP [AUTHENTICATIONFAILED] Authentication failed.; "
            "SMTP 535",
            config=MailConfig(users=(LOCAL_ONLY, DEFAULT_USERS[1])),
            expect=(
                imap(IMPLICIT, OK),
                imap(IMPLICIT, IMAP_AUTH_FAILED, client=FROM_ELSEWHERE),
                smtp(
                    IMPLICIT,
                    _smtp_login_error(535, "5.7.8 Authentication failed."),
                    client=FROM_ELSEWHERE,
                ),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="ip-not-allowed-postfix",
            family=Family.ACCESS,
            requirement="IP allowlists (Postfix smtpd_client_restrictions)",
            server="SMTP refuses recipients for clients outside 127.0.0.1 (on Dovecot: the MTA "
            "behind its submission, told the client's address by XCLIENT)",
            client_sees="SMTPRecipientsRefused 554 5.7.1 <unknown[<ip>]>: Client host rejected: "
            "Access denied",
            config=MailConfig(smtp=SMTPSettings(allowed_networks=ALLOW_LOCAL)),
            expect=(
                smtp(IMPLICIT, OK),
                smtp(
                    IMPLICIT,
                    Outcome(
                        "rcpt",
                        "smtplib.SMTPRecipientsRefused",
                        "5.7.1 <unknown[127.0.0.2]>: Client host rejected: Access denied",
                        554,
                    ),
                    client=FROM_ELSEWHERE,
                ),
            ),
            backends=EVERYWHERE,
        ),
        Scenario(
            name="ip-not-allowed-greeting",
            family=Family.ACCESS,
            requirement="IP allowlists (Postfix, rejecting at connect)",
            server="SMTP greets clients outside 127.0.0.1 with 554 and answers 503 after",
            client_sees="smtplib.SMTPConnectError(554, b'5.7.1 <unknown[<ip>]>: Client host "
            "rejected: Access denied')",
            config=MailConfig(
                smtp=SMTPSettings(allowed_networks=ALLOW_LOCAL, reject_unlisted_at="greeting")
            ),
            expect=(
                smtp(IMPLICIT, OK),
                smtp(
                    IMPLICIT,
                    Outcome(
                        "greeting",
                        "smtplib.SMTPConnectError",
                        "5.7.1 <unknown[127.0.0.2]>: Client host rejected: Access denied",
                        554,
                    ),
                    client=FROM_ELSEWHERE,
                ),
            ),
            fake_only_reason=(
                "Postfix's 554 greeting: behind Dovecot's submission the MTA learns the client's "
                "address only after Dovecot has greeted it"
            ),
        ),
        Scenario(
            name="ip-not-allowed-tcpwrap",
            family=Family.ACCESS,
            requirement="IP allowlists (a firewall or tcpwrap closing unknown clients)",
            server="connections from outside 127.0.0.1 are closed before any greeting",
            client_sees="EOF before the greeting: imaplib.IMAP4.abort('socket error: EOF'); "
            "SMTPServerDisconnected('Connection unexpectedly closed')",
            config=MailConfig(faults={"*": (Allowlist(networks=ALLOW_LOCAL),)}),
            expect=(
                imap(STARTTLS, OK),
                imap(
                    STARTTLS,
                    Outcome("greeting", "imaplib.IMAP4.abort", "socket error: EOF"),
                    client=FROM_ELSEWHERE,
                ),
                smtp(
                    STARTTLS,
                    Outcome(
                        "greeting",
                        "smtplib.SMTPServerDisconnected",
                        "Connection unexpectedly closed",
                    ),
                    client=FROM_ELSEWHERE,
                ),
            ),
            backends=EVERYWHERE,
        ),
    ]


# A family is built when a name first needs it (see `Catalog`): a `serve` of one
# scenario pays for the families up to its own, not for all nine (issue 13).
CATALOG = Catalog(
    families=(
        _baseline,
        _connect,
        _tls,
        _cert,
        _auth,
        _mailbox,
        _limits,
        _availability,
        _access,
    )
)


def scenario(name_or_path: str | Path, *, relative_to: Path | None = None) -> Scenario:
    """A catalog scenario by name (`"tls10-only"`), or a customer setup from a `.toml` file."""
    text = str(name_or_path)
    if text.endswith(".toml"):
        path = Path(text)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        return load_toml(path, CATALOG)
    return CATALOG[text]


def parametrize(
    family: str | Family | None = None, *, names: Iterable[str] = ()
) -> pytest.MarkDecorator:
    """`@parametrize("tls")`: run a test once per scenario (ids are the names).

    The test takes the `mail_scenario` fixture: the running server of each scenario.
    With no arguments, the whole catalog; `names=` picks scenarios by name.
    """
    import pytest

    chosen = list(names) or [
        s.name for s in (CATALOG.values() if family is None else CATALOG.family(family))
    ]
    for name in chosen:
        CATALOG[name]  # fail at collection on a bad name, with suggestions
    return pytest.mark.parametrize("mail_scenario", chosen, indirect=True, ids=chosen)


def parametrize_cases(
    family: str | Family | None = None,
    *,
    names: Iterable[str] = (),
    protocol: str | None = None,
    cases: Iterable[str] = (),
) -> pytest.MarkDecorator:
    """`@parametrize_cases("cert")`: run a test once per client case of each scenario.

    The test takes the `mail_case` fixture: a `mailharness.cases.ClientCase` (the
    settings to give the connector and the expected diagnosis) against a fresh
    running server of its scenario. Ids are `scenario/case`, e.g.
    `cert-expired/imap-implicit`. `protocol="imap"` or `"smtp"` keeps one protocol;
    `cases=("imap-implicit",)` keeps the cases of those ids.
    """
    import pytest
    from mailharness.cases import case_ids

    if protocol not in (None, "imap", "smtp"):
        raise choice_error("protocol", protocol, ("imap", "smtp"))
    chosen = list(names) or [
        s.name for s in (CATALOG.values() if family is None else CATALOG.family(family))
    ]
    wanted = set(cases)
    params = []
    for name in chosen:
        for case_id in case_ids(CATALOG[name]):
            if wanted and case_id not in wanted:
                continue
            if protocol is None or case_id.startswith(protocol + "-"):
                params.append(pytest.param((name, case_id), id=f"{name}/{case_id}"))
    return pytest.mark.parametrize("mail_case", params, indirect=True)
