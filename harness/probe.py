"""The probe: look at any IMAP or SMTP server, real or fake, and say what a connector will meet.

It does what a connector does, step by step with stdlib clients (connect, TLS,
greeting, capabilities, STARTTLS, login, SELECT INBOX or EHLO/AUTH, and on request
a test message stored and deleted, or sent to oneself), times each step, and on
failure gives one `Diagnosis` code with its hint. Around that it gathers what a
support person asks for: the negotiated TLS version and cipher, every TLS version
the server accepts (scanned, one handshake each), the certificate (issuer, names,
validity, chain, key) and what a default client says of it, capabilities and AUTH
mechanisms.

A password is never sent before TLS unless `allow_plaintext=True`: on a plaintext
connection the probe stops before login (`PLAINTEXT_BLOCKED`), or says
`PLAINTEXT_REFUSED` when the server itself announces it refuses credentials there.

    report = probe(ProbeSettings(protocol="imap", host="127.0.0.1", port=993,
                                 security=Security.IMPLICIT, username="alice@example.test",
                                 password="alice-password", ca_path=server.ca.ca_path))
    print(report.human())
    assert report.diagnosis is Diagnosis.OK
"""

from __future__ import annotations

import contextlib
import email.utils
import imaplib
import re
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailharness.diagnosis import Diagnosis, diagnose
from mailharness.journeys import _IMAP, _SMTP, ClientProfile, Outcome, _outcome
from mailharness.probe_tls import Certificate, certificate_facts, connect, scan_versions
from mailharness.profiles import TLS_MODES
from mailharness.servers.errors import ConfigError, choice_error
from mailharness.servers.listeners import Security

if TYPE_CHECKING:
    from mailharness.cases import ClientCase

__all__ = ["ProbeReport", "ProbeSettings", "Step", "probe", "probe_case", "settings_for_case"]

PROTOCOLS = ("imap", "smtp")
AUTHS = ("password", "xoauth2")
# Exit codes of `mailharness probe`: scripts tell "works" from "the server refused" from
# "the probe itself was misused".
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeSettings:
    """What a user types into a connector's settings form, plus what the probe may do.

    `verify_certificate=False` is "allow a non-secure certificate"; `ca_path` an
    extra CA to trust; `tls` one of "default", "legacy" (accept TLS 1.0/1.1),
    "tls1.0-only". `write=True` stores and deletes a test message (IMAP) or sends
    one to `address` (SMTP). `scan=False` skips the TLS version scan and
    certificate facts (one handshake each).
    """

    protocol: str
    host: str
    port: int
    security: Security
    username: str = ""
    password: str = field(default="", repr=False)
    auth: str = "password"
    address: str = ""  # the user's mail address (default: the user name)
    verify_certificate: bool = True
    ca_path: Path | None = None
    tls: str = "default"
    server_name: str = ""  # the name TLS checks (default: host)
    source_address: str | None = None
    timeout: float = 10.0
    allow_plaintext: bool = False
    write: bool = False
    scan: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise choice_error("protocol", self.protocol, PROTOCOLS)
        if self.auth not in AUTHS:
            raise choice_error("auth", self.auth, AUTHS)
        if self.tls not in TLS_MODES:
            raise choice_error("tls", self.tls, TLS_MODES)
        object.__setattr__(self, "security", Security.parse(self.security))
        if not 0 < self.port < 65536:
            raise ConfigError(f"port={self.port!r}: expected 1-65535")

    @property
    def tls_name(self) -> str:
        return self.server_name or self.host

    def context(self) -> ssl.SSLContext:
        """The client TLS context these settings make (a connector's, as ClientProfile's)."""
        profile = ClientProfile(verify=self.verify_certificate, tls=self.tls)
        return profile.context(self.ca_path)


@dataclass(frozen=True, slots=True)
class Step:
    """One step the probe took: its name, whether it worked, how long, and what it saw."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass(slots=True, kw_only=True)
class ProbeReport:
    """What the probe saw; `diagnosis` is the one code, `outcome` the step where it ended."""

    protocol: str
    host: str
    port: int
    security: Security
    username: str = ""
    steps: list[Step] = field(default_factory=list)
    greeting: str = ""
    capabilities_before_tls: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    auth_mechanisms: tuple[str, ...] = ()
    tls_version: str | None = None
    tls_cipher: str | None = None
    tls_versions: tuple[str, ...] | None = None  # accepted, scanned; None: not scanned
    certificate: Certificate | None = None
    replies: list[str] = field(default_factory=list)  # failure replies the server gave
    outcome: Outcome = field(default_factory=Outcome.success)
    diagnosis: Diagnosis = Diagnosis.OK

    @property
    def ok(self) -> bool:
        return self.diagnosis is Diagnosis.OK

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    @property
    def personality(self) -> str:
        """The provider these replies sound like (dovecot when nothing says otherwise)."""
        return guess_personality(self.greeting, self.replies)

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "host": self.host,
            "port": self.port,
            "security": self.security.value,
            "diagnosis": self.diagnosis.value,
            "hint": self.diagnosis.hint,
            "outcome": {
                "step": self.outcome.step,
                "error": self.outcome.error,
                "text": self.outcome.text,
                "code": self.outcome.code,
            },
            "steps": [
                {"name": s.name, "ok": s.ok, "seconds": round(s.seconds, 4), "detail": s.detail}
                for s in self.steps
            ],
            "greeting": self.greeting,
            "capabilities_before_tls": list(self.capabilities_before_tls),
            "capabilities": list(self.capabilities),
            "auth_mechanisms": list(self.auth_mechanisms),
            "tls": {"version": self.tls_version, "cipher": self.tls_cipher},
            "tls_versions": None if self.tls_versions is None else list(self.tls_versions),
            "certificate": None if self.certificate is None else self.certificate.as_dict(),
            "replies": list(self.replies),
            "personality": self.personality,
        }

    def signature(self) -> dict[str, Any]:
        """What two probes of servers in the same condition share (no ports, times, dates).

        The capture round trip compares these: a scenario saved from a server and
        served again must look the same to the probe.
        """
        cert = self.certificate
        return {
            "protocol": self.protocol,
            "security": self.security.value,
            "diagnosis": self.diagnosis.value,
            "outcome": (self.outcome.step, self.outcome.error, self.outcome.code),
            "steps": [(s.name, s.ok) for s in self.steps],
            "greeting": _without_volatile(self.greeting),
            "capabilities_before_tls": self.capabilities_before_tls,
            "capabilities": self.capabilities,
            "auth_mechanisms": self.auth_mechanisms,
            "tls_version": self.tls_version,
            "tls_versions": self.tls_versions,
            "certificate": None
            if cert is None
            else (cert.key, cert.self_signed, cert.chain_length, cert.default_client),
            "replies": [_without_volatile(r) for r in self.replies],
            "personality": self.personality,
        }

    def human(self) -> str:
        """The report as a person reads it: steps with timings, facts, then the verdict."""
        lines = [f"{self.protocol.upper()} {self.host}:{self.port} ({self.security.value})", ""]
        for s in self.steps:
            mark = "ok  " if s.ok else "FAIL"
            detail = f"  {s.detail}" if s.detail else ""
            lines.append(f"  {mark} {s.name:<12} {s.seconds * 1000:8.1f} ms{detail}")
        lines.append("")
        if self.greeting:
            lines.append(f"  greeting:        {self.greeting}")
        if self.tls_version:
            lines.append(f"  TLS:             {self.tls_version}, {self.tls_cipher}")
        if self.tls_versions is not None:
            accepted = ", ".join(self.tls_versions) or "none of TLS 1.0-1.3"
            lines.append(f"  TLS accepted:    {accepted}")
        if self.capabilities_before_tls and self.capabilities_before_tls != self.capabilities:
            lines.append(f"  before TLS:      {' '.join(self.capabilities_before_tls)}")
        if self.capabilities:
            lines.append(f"  capabilities:    {' '.join(self.capabilities)}")
        if self.auth_mechanisms:
            lines.append(f"  AUTH mechanisms: {' '.join(self.auth_mechanisms)}")
        cert = self.certificate
        if cert is not None:
            lines += [
                f"  certificate:     {cert.subject} (issuer: {cert.issuer})",
                f"    names:         {', '.join(cert.names) or '-'}",
                f"    valid:         {cert.not_before} .. {cert.not_after}",
                f"    key:           {cert.key}; chain sent: {cert.chain_length}"
                + ("; self-signed" if cert.self_signed else ""),
                f"    a default client says: {cert.default_client}"
                + (f" ({cert.default_client_says})" if cert.default_client_says else ""),
            ]
        for reply in self.replies:
            lines.append(f"  server said:     {reply}")
        lines += ["", f"  {self.diagnosis.value}: {self.diagnosis.hint}"]
        if not self.ok:
            lines.append(f"    ({self.outcome})")
        return "\n".join(lines)


_VOLATILE = re.compile(
    r"\[[^\]]*:\d+[^\]]*\]"
    r"|\d{4}-\d\d-\d\d[T ][\d:.]+"
    r"|(?:\b[A-Z][a-z]{2}, )?\b\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d(?::\d\d)?(?: [+-]\d{4})?"
    r"|\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b"
)


def _without_volatile(text: str) -> str:
    """A reply without the parts that change per connection (times, addresses, sessions)."""
    # [host:time] stamps, ISO dates, RFC 5322 dates (Exchange's "ready at Mon, 7 Dec 2026
    # 01:05:35 +0000"), and hex session ids (Gmail's "... 4cdc12092c44 - gsmtp").
    return _VOLATILE.sub("[...]", text)


# --- personalities: whose words these are ----------------------------------------------
_PERSONALITY_WORDS = (
    ("gmail", ("gimap", "google", "gsmtp", "application-specific password", "web browser")),
    ("outlook", ("microsoft", "outlook", "office365", "5.7.139", "basic authentication")),
    ("yahoo", ("yahoo", "#auth005")),
    ("icloud", ("icloud", "apple")),
    ("dovecot", ("dovecot",)),
)


def guess_personality(greeting: str, replies: list[str]) -> str:
    """The provider whose wording the greeting and replies match; dovecot by default."""
    text = " ".join([greeting, *replies]).lower()
    for name, words in _PERSONALITY_WORDS:
        if any(w in text for w in words):
            return name
    return "dovecot"


# --- the probe --------------------------------------------------------------------------
class _Stop(Exception):
    """The probe ends here with this outcome and (when not derived from it) this code."""

    def __init__(self, outcome: Outcome, diagnosis: Diagnosis | None = None) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome
        self.diagnosis = diagnosis


class _Run:
    """One probe in progress: the report it fills and the step being timed."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.report = ProbeReport(
            protocol=settings.protocol,
            host=settings.host,
            port=settings.port,
            security=settings.security,
            username=settings.username,
        )
        self.step = "connect"
        self.secure = False

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[list[str]]:
        """Time one step; the block may append a detail; an exception marks it failed."""
        self.step = name
        detail: list[str] = []
        start = time.monotonic()
        try:
            yield detail
        except BaseException as error:
            if detail:
                text = detail[0]
            elif isinstance(error, _Stop):
                text = error.outcome.text
            else:
                text = f"{type(error).__name__}: {error}"[:200]
            self.report.steps.append(Step(name, False, time.monotonic() - start, text))
            raise
        self.report.steps.append(Step(name, True, time.monotonic() - start, " ".join(detail)))

    def record_tls(self, sock: ssl.SSLSocket) -> None:
        self.secure = True
        self.report.tls_version = sock.version()
        cipher = sock.cipher()
        self.report.tls_cipher = cipher[0] if cipher else None


def probe(settings: ProbeSettings) -> ProbeReport:
    """Probe one listener as a connector configured with `settings` would use it."""
    run = _Run(settings)
    report = run.report
    try:
        if settings.protocol == "imap":
            _probe_imap(run)
        else:
            _probe_smtp(run)
    except _Stop as stop:
        report.outcome = stop.outcome
        report.diagnosis = stop.diagnosis or diagnose(
            stop.outcome, secure=_secure_at(settings, run)
        )
    except (OSError, imaplib.IMAP4.error, smtplib.SMTPException, ssl.SSLError) as error:
        report.outcome = _failure(run.step, error)
        report.diagnosis = diagnose(report.outcome, secure=_secure_at(settings, run))
    # What the server answered (a NO, a 5xx), not what the client library concluded.
    kind = report.outcome.error or ""
    said = kind.startswith(("imap", "smtplib.SMTP")) and "Disconnected" not in kind
    if said and report.outcome.text:
        report.replies.append(report.outcome.text)
    if settings.scan and settings.security is not Security.NONE and _reached_tls(report):
        _scan(run)
    return report


def _secure_at(settings: ProbeSettings, run: _Run) -> bool:
    """Was the connection encrypted at the failing step (as the catalog's expectations say)."""
    if settings.security is Security.IMPLICIT:
        return True
    return settings.security is Security.STARTTLS and run.step not in ("connect", "greeting")


def _reached_tls(report: ProbeReport) -> bool:
    """Worth scanning: the listener answered (a TLS or later step was tried)."""
    return report.outcome.step not in ("connect", "greeting") or report.tls_version is not None


def _failure(step: str, error: BaseException) -> Outcome:
    if isinstance(error, smtplib.SMTPSenderRefused):
        return _outcome("mail", error)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return _outcome("rcpt", error)
    if isinstance(error, smtplib.SMTPDataError):
        return _outcome("data", error)
    return _outcome(step, error)


def _imap_ok(step: str, typ: str, data: Sequence[Any]) -> str:
    first = data[0] if data else b""
    text = first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)
    if typ != "OK":
        raise _Stop(Outcome(step, f"imap.{typ}", text))
    return text


def _open(run: _Run) -> socket.socket:
    settings = run.settings
    with run.timed("connect") as detail:
        sock = connect(settings)
        detail.append(f"{sock.getpeername()[0]}")
    if settings.security is Security.IMPLICIT:
        with run.timed("tls"):
            try:
                sock = settings.context().wrap_socket(sock, server_hostname=settings.tls_name)
            except BaseException:
                sock.close()
                raise
            run.record_tls(sock)
    return sock


def _probe_imap(run: _Run) -> None:
    settings, report = run.settings, run.report
    sock = _open(run)
    client: _IMAP | None = None
    try:
        with run.timed("greeting") as detail:
            try:
                client = _IMAP(sock, settings.tls_name)
            except BaseException:
                sock.close()
                raise
            report.greeting = client.welcome.decode("utf-8", "replace").strip()
            detail.append(report.greeting)
        report.capabilities_before_tls = tuple(client.capabilities)
        report.capabilities = report.capabilities_before_tls
        if settings.security is Security.STARTTLS:
            with run.timed("starttls"):  # imaplib asks for the new CAPABILITY within
                _imap_ok("starttls", *client.starttls(ssl_context=settings.context()))
                run.record_tls(client.sock)  # type: ignore[arg-type]
            report.capabilities = tuple(client.capabilities)
        report.auth_mechanisms = tuple(
            c.split("=", 1)[1] for c in report.capabilities if c.startswith("AUTH=")
        )
        with run.timed("login") as detail:
            if not run.secure:
                _plaintext_guard_imap(run)
            if settings.auth == "xoauth2":
                blob = _xoauth2(settings)
                text = _imap_ok("login", *client.authenticate("XOAUTH2", lambda _: blob))
            else:
                text = _imap_ok("login", *client.login(settings.username, settings.password))
            detail.append(text)
        with run.timed("select") as detail:
            typ, data = client.select("INBOX")
            detail.append(f"{_imap_ok('select', typ, data)} messages")
        if settings.write:
            _imap_write(run, client)
        with run.timed("logout"):
            client.logout()
        client = None
    finally:
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown()


def _plaintext_guard_imap(run: _Run) -> None:
    """No password before TLS: say why the probe stops, without sending it."""
    caps = run.report.capabilities
    if "LOGINDISABLED" in caps and run.settings.auth == "password":
        raise _Stop(
            Outcome("login", "probe.stopped", "LOGINDISABLED before TLS: no password sent"),
            Diagnosis.PLAINTEXT_REFUSED,
        )
    if not run.settings.allow_plaintext:
        raise _Stop(
            Outcome("login", "probe.stopped", "no TLS and plaintext not allowed: no password sent"),
            Diagnosis.PLAINTEXT_BLOCKED,
        )


def _test_message(address: str) -> tuple[str, bytes]:
    message_id = f"<probe-{uuid.uuid4().hex[:12]}@mailharness.test>"
    text = (
        f"From: {address}\r\nTo: {address}\r\nSubject: mailharness probe\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {message_id}\r\n\r\n"
        "A test message from mailharness probe.\r\n"
    )
    return message_id, text.encode()


def _imap_write(run: _Run, client: _IMAP) -> None:
    settings = run.settings
    _id, message = _test_message(settings.address or settings.username)
    with run.timed("append") as detail:
        text = _imap_ok("append", *client.append("INBOX", None, None, message))
        detail.append(text)
    found = re.search(r"APPENDUID \d+ (\d+)", text)
    with run.timed("delete"):
        if found is None:  # no UIDPLUS: the newest message is ours
            _imap_ok("delete", *client.store("*", "+FLAGS", "(\\Deleted)"))
            _imap_ok("delete", *client.expunge())
        else:
            uid = found.group(1)
            _imap_ok("delete", *client.uid("STORE", uid, "+FLAGS", "(\\Deleted)"))
            _imap_ok("delete", *client.uid("EXPUNGE", uid))


def _xoauth2(settings: ProbeSettings) -> bytes:
    return f"user={settings.username}\x01auth=Bearer {settings.password}\x01\x01".encode()


def _probe_smtp(run: _Run) -> None:
    settings, report = run.settings, run.report
    sock = _open(run)
    client = _SMTP(sock, settings.tls_name)
    try:
        with run.timed("greeting") as detail:
            code, text = client.connect(settings.tls_name, settings.port)
            report.greeting = f"{code} {text.decode('utf-8', 'replace')}"
            detail.append(report.greeting)
            if code != 220:
                raise smtplib.SMTPConnectError(code, text)
        with run.timed("ehlo"):
            client.ehlo()
        report.capabilities_before_tls = _smtp_extensions(client)
        report.capabilities = report.capabilities_before_tls
        if settings.security is Security.STARTTLS:
            with run.timed("starttls"):
                client.starttls(context=settings.context())
                run.record_tls(client.sock)  # type: ignore[arg-type]
            with run.timed("ehlo"):
                client.ehlo()
            report.capabilities = _smtp_extensions(client)
        report.auth_mechanisms = tuple(client.esmtp_features.get("auth", "").upper().split())
        with run.timed("login") as detail:
            if not run.secure:
                _plaintext_guard_smtp(run, client)
            if settings.auth == "xoauth2":
                blob = _xoauth2(settings).decode()
                code, reply = client.auth(
                    "XOAUTH2",
                    lambda challenge=None: "" if challenge else blob,
                    initial_response_ok=True,
                )
            else:
                code, reply = client.login(settings.username, settings.password)
            detail.append(f"{code} {reply.decode('utf-8', 'replace')}")
        if settings.write:
            to = settings.address or settings.username
            _id, message = _test_message(to)
            with run.timed("send"):
                client.sendmail(to, [to], message)
        with run.timed("quit"):
            client.quit()
    finally:
        with contextlib.suppress(OSError):
            client.close()


def _smtp_extensions(client: smtplib.SMTP) -> tuple[str, ...]:
    return tuple(
        f"{name.upper()} {value}".strip() if value else name.upper()
        for name, value in client.esmtp_features.items()
    )


def _plaintext_guard_smtp(run: _Run, client: smtplib.SMTP) -> None:
    if not run.report.auth_mechanisms:
        # No AUTH, or AUTH without mechanisms (Dovecot's submission): credentials refused.
        words = "no AUTH" if not client.has_extn("auth") else "AUTH with no mechanism"
        raise _Stop(
            Outcome("login", "probe.stopped", f"{words} before TLS: no password sent"),
            Diagnosis.PLAINTEXT_REFUSED,
        )
    if not run.settings.allow_plaintext:
        raise _Stop(
            Outcome("login", "probe.stopped", "no TLS and plaintext not allowed: no password sent"),
            Diagnosis.PLAINTEXT_BLOCKED,
        )


def _scan(run: _Run) -> None:
    settings, report = run.settings, run.report
    with run.timed("scan") as detail:
        report.tls_versions = scan_versions(settings)
        detail.append(", ".join(report.tls_versions) or "no TLS version accepted")
        if report.tls_versions not in ((), ("sslv3",)):
            with contextlib.suppress(OSError, ssl.SSLError):
                report.certificate = certificate_facts(settings)


# --- from a client case -----------------------------------------------------------------
def settings_for_case(case: ClientCase, **changes: Any) -> ProbeSettings:
    """Probe settings from a catalog client case: the connector's settings, as given.

    A case configured for no encryption is an explicit choice, so it allows plaintext.
    """
    values: dict[str, Any] = {
        "protocol": case.protocol,
        "host": case.host,
        "port": case.port,
        "security": case.security,
        "username": case.username,
        "password": case.password,
        "auth": case.auth,
        "address": case.user.address,
        "verify_certificate": case.verify_certificate,
        "ca_path": case.ca_path,
        "tls": case.tls,
        "server_name": case.server_name,
        "source_address": case.source_address,
        "timeout": case.timeout,
        "allow_plaintext": case.security is Security.NONE,
        "write": True,
    }
    values.update(changes)
    return ProbeSettings(**values)


def probe_case(case: ClientCase, **changes: Any) -> ProbeReport:
    """Probe one catalog client case's server with the case's settings."""
    return probe(settings_for_case(case, **changes))


# --- command line: `mailharness probe` ----------------------------------------------------
_DEFAULT_SECURITY = {
    993: "implicit",
    465: "implicit",
    143: "starttls",
    587: "starttls",
    25: "starttls",
}
_LISTENER = re.compile(
    r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>\d+)(?:/(?P<sec>\w+))?$"
)


def parse_listener(protocol: str, text: str) -> tuple[str, int, Security]:
    """`host:port[/security]` (`[::1]:993`); the security defaults by port (993: implicit)."""
    found = _LISTENER.match(text)
    if found is None:
        raise ConfigError(
            f"--{protocol} {text!r}: expected HOST:PORT[/SECURITY], e.g. 127.0.0.1:993"
        )
    port = int(found["port"])
    security = found["sec"] or _DEFAULT_SECURITY.get(port)
    if security is None:
        raise ConfigError(
            f"--{protocol} {text!r}: port {port} has no usual security: add /implicit, "
            "/starttls or /none"
        )
    return found["v6"] or found["host"], port, Security.parse(security, f"--{protocol} security")


def add_arguments(parser: Any) -> None:
    """The `probe` subcommand's arguments (kept here, beside what it runs; harness/cli.py
    makes its parser)."""
    parser.description = (
        "Connect as a connector would, time each step, scan TLS, and say in one "
        "code what is wrong. Exit 0 when every probed listener works, 1 when one fails, 2 on "
        "bad arguments."
    )
    parser.add_argument(
        "--imap", metavar="HOST:PORT[/SEC]", help="IMAP listener, e.g. 127.0.0.1:993"
    )
    parser.add_argument(
        "--smtp", metavar="HOST:PORT[/SEC]", help="SMTP listener, e.g. 127.0.0.1:587"
    )
    parser.add_argument("--user", default="", help="login name")
    parser.add_argument("--address", default="", help="mail address (default: --user)")
    parser.add_argument(
        "--password-env",
        default="MAILHARNESS_PASSWORD",
        metavar="VAR",
        help="read the password (or OAuth token) from this environment variable "
        "(default MAILHARNESS_PASSWORD)",
    )
    parser.add_argument(
        "--password", default=None, help="the password (visible in ps: prefer the env)"
    )
    parser.add_argument("--xoauth2", action="store_true", help="the password is an OAuth token")
    parser.add_argument("--insecure", action="store_true", help="allow a non-secure certificate")
    parser.add_argument("--ca", default=None, help="also trust this CA file (PEM)")
    parser.add_argument("--tls", default="default", choices=TLS_MODES, help="client TLS versions")
    parser.add_argument("--server-name", default="", help="the name TLS checks (default: host)")
    parser.add_argument("--source-address", default=None, help="connect from this address")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per step (10)")
    parser.add_argument(
        "--allow-plaintext",
        action="store_true",
        help="send the password even without TLS (never done otherwise)",
    )
    parser.add_argument(
        "--write", action="store_true", help="store and delete a test message / send one to self"
    )
    parser.add_argument("--no-scan", action="store_true", help="skip the TLS version scan")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.add_argument(
        "--save-scenario",
        metavar="FILE.toml",
        default=None,
        help="write what was seen as a scenario file `mailharness serve` reproduces "
        "(never a password)",
    )
    parser.set_defaults(run=run_cli)


def run_cli(args: Any) -> int:
    import json
    import os

    if not args.imap and not args.smtp:
        raise ConfigError("probe: give --imap HOST:PORT and/or --smtp HOST:PORT")
    password = args.password if args.password is not None else os.environ.get(args.password_env, "")
    reports = []
    for protocol in PROTOCOLS:
        spec = getattr(args, protocol)
        if not spec:
            continue
        host, port, security = parse_listener(protocol, spec)
        settings = ProbeSettings(
            protocol=protocol,
            host=host,
            port=port,
            security=security,
            username=args.user,
            password=password,
            auth="xoauth2" if args.xoauth2 else "password",
            address=args.address,
            verify_certificate=not args.insecure,
            ca_path=None if args.ca is None else Path(args.ca),
            tls=args.tls,
            server_name=args.server_name,
            source_address=args.source_address,
            timeout=args.timeout,
            allow_plaintext=args.allow_plaintext,
            write=args.write,
            scan=not args.no_scan,
        )
        reports.append(probe(settings))
    if args.save_scenario:
        from mailharness.capture import save_scenario

        save_scenario(args.save_scenario, reports)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": all(r.ok for r in reports),
                    **{r.protocol: r.as_dict() for r in reports},
                }
            )
        )
    else:
        print("\n\n".join(r.human() for r in reports))
        if args.save_scenario:
            print(f"\nsaved as a scenario: {args.save_scenario}")
    return max(r.exit_code for r in reports)
