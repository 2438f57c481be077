"""Capture: what the probe saw of a server, written as a scenario file `serve` reproduces.

QA probes a customer's server (`mailharness probe --save-scenario acme.toml`) and gets
a scenario in the TOML format of `mailharness.scenarios.load_toml`: the listeners and
their security, the TLS versions accepted (as a `tls-version` fault when it is one
version), the certificate problem as the matching variant, the greeting, AUTH
mechanisms, plaintext rules, size limit, refused listeners, failure replies (as
comments) and the personality whose wording they match. Passwords are never
written: an account that refused the probe's login gets a random password, so it
refuses it again; the probed user name appears in a comment.

Only what a client can observe is captured. Account states (app password, lockout,
disabled) need the account's real password and stay comments; unknown-CA and
missing-intermediate leaves look the same to a client and are saved as `unknown-ca`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailharness.diagnosis import Diagnosis
from mailharness.probe import ProbeReport
from mailharness.servers.listeners import Security

__all__ = ["save_scenario", "scenario_toml"]

# A client's verdict on a certificate, as the variant that provokes it.
CERT_VARIANTS = {
    Diagnosis.CERT_EXPIRED: "expired",
    Diagnosis.CERT_NOT_YET_VALID: "not-yet-valid",
    Diagnosis.CERT_HOSTNAME_MISMATCH: "wrong-host",
    Diagnosis.CERT_WEAK_KEY: "weak-key",
}
# What the harness serves without a fault: the `modern` TLS versions.
MODERN = ("tls1.2", "tls1.3")
# Diagnoses that come from the account, not the server's configuration.
ACCOUNT_STATES = (
    Diagnosis.APP_PASSWORD_REQUIRED,
    Diagnosis.WEB_LOGIN_REQUIRED,
    Diagnosis.PASSWORD_EXPIRED,
    Diagnosis.IMAP_DISABLED,
    Diagnosis.ACCOUNT_DISABLED,
    Diagnosis.ACCOUNT_LOCKED,
)


@dataclass
class _Listener:
    security: Security
    faults: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Protocol:
    """What all reports of one protocol say about its server."""

    listeners: dict[Security, _Listener] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def toml_fields() -> tuple[str, ...]:
    """The top-level fields the scenario-file loader knows: capture writes only these."""
    from mailharness.scenario_files import TOP_LEVEL

    return tuple(str(row[0]) for row in TOP_LEVEL)


def _listener_security(report: ProbeReport) -> Security | None:
    """The listener's own security, from what the probe met (it may differ from the setting)."""
    probed, diagnosis = report.security, report.diagnosis
    if diagnosis is Diagnosis.TLS_MISMATCH or (
        diagnosis is Diagnosis.GREETING_TIMEOUT and probed is Security.NONE
    ):
        return None  # the probe's setting may be wrong for this port: nothing to tell
    if probed is Security.NONE:
        return Security.STARTTLS if "STARTTLS" in report.capabilities_before_tls else Security.NONE
    if probed is Security.STARTTLS and diagnosis is Diagnosis.STARTTLS_UNAVAILABLE:
        return Security.NONE
    return probed


def _cert_variant(reports: Sequence[ProbeReport]) -> str | None:
    for report in reports:
        cert = report.certificate
        verdict = Diagnosis(cert.default_client) if cert is not None else report.diagnosis
        if verdict in CERT_VARIANTS:
            return CERT_VARIANTS[verdict]
        if verdict is Diagnosis.CERT_UNTRUSTED:
            return "self-signed" if cert is not None and cert.self_signed else "unknown-ca"
    if any(r.certificate is not None for r in reports):
        return "trusted"
    return None


def _observe(protocol: str, reports: Sequence[ProbeReport], cert: str) -> _Protocol:
    seen = _Protocol()
    for report in reports:
        security = _listener_security(report)
        if security is None:
            seen.notes.append(
                f"{report.security.value} on port {report.port}: {report.diagnosis.value}"
            )
            continue
        listener = seen.listeners.setdefault(security, _Listener(security))
        diagnosis, outcome = report.diagnosis, report.outcome
        if diagnosis is Diagnosis.CONNECTION_REFUSED and not listener.faults:
            listener.faults.append({"kind": "refuse"})
        elif diagnosis is Diagnosis.CONNECT_TIMEOUT and not listener.faults:
            listener.faults.append({"kind": "firewall-drop"})
        elif diagnosis is Diagnosis.CONNECTION_RESET and not listener.faults:
            # After the client's connect has completed, as a middlebox does.
            listener.faults.append({"kind": "reset", "after_seconds": 0.02})
        elif diagnosis is Diagnosis.GREETING_TIMEOUT and not listener.faults:
            listener.faults.append({"kind": "hang"})
        versions = report.tls_versions
        if versions and security is not Security.NONE and tuple(versions) != MODERN:
            if len(versions) == 1 and not any(f["kind"] == "tls-version" for f in listener.faults):
                listener.faults.append(
                    {
                        "kind": "tls-version",
                        "version": versions[0],
                        "security": security.value,
                        "cert": cert,
                    }
                )
            elif len(versions) > 1:
                seen.notes.append(f"{security.value}: accepts {', '.join(versions)}")
        _settings(protocol, report, seen.settings)
        if diagnosis in ACCOUNT_STATES:
            seen.notes.append(f"account state not captured: {diagnosis.value}: {outcome.text}")
    return seen


def _settings(protocol: str, report: ProbeReport, settings: dict[str, Any]) -> None:
    """Server settings the report shows (later reports add, never contradict, earlier ones)."""
    outcome, secure = report.outcome, report.tls_version is not None
    login_ok = any(s.name == "login" and s.ok for s in report.steps)
    if protocol == "imap":
        welcome = re.match(r"\* OK (?:\[[^\]]*\] ?)?(.*)$", report.greeting)
        if welcome is not None:
            settings.setdefault("greeting", welcome.group(1).strip())
        if outcome.step == "greeting" and "UNAVAILABLE" in outcome.text:
            settings["maintenance"] = True
        if secure and report.capabilities:
            mechanisms = [c.split("=", 1)[1] for c in report.capabilities if c.startswith("AUTH=")]
            if mechanisms:
                settings.setdefault("auth_mechanisms", mechanisms)
            if "LOGINDISABLED" in report.capabilities:
                settings["login_disabled"] = True
        if not secure and login_ok:
            settings["plaintext_auth_requires_tls"] = False
    else:
        if outcome.step == "greeting" and outcome.code in (421, 554):
            settings["greeting_refusal"] = f"{outcome.code} {outcome.text}"
        if outcome.step == "starttls" and outcome.code == 454:
            settings["starttls_broken"] = True
        if secure and report.auth_mechanisms:
            settings.setdefault("auth_mechanisms", list(report.auth_mechanisms))
        for capability in report.capabilities:
            name, _, value = capability.partition(" ")
            if name == "SIZE" and value.isdigit() and int(value) > 0:
                settings.setdefault("size_limit", int(value))
        if not secure and login_ok:
            settings["starttls_required"] = False


def _one_line(text: str) -> str:
    return " / ".join(text.splitlines())


def _personality(reports: Sequence[ProbeReport]) -> str:
    """The provider whose words the replies match; else what the SMTP rules suggest.

    An SMTP server that offers no AUTH at all before STARTTLS speaks as Postfix does
    (Gmail, Outlook, Yahoo, iCloud); Dovecot's submission offers AUTH with no mechanism.
    """
    named = [r.personality for r in reports if r.personality != "dovecot"]
    if named:
        return named[0]
    for r in reports:
        before = r.capabilities_before_tls
        if (
            r.protocol == "smtp"
            and "STARTTLS" in before
            and not any(c.startswith("AUTH") for c in before)
        ):
            return "icloud"  # Postfix's SMTP wording, Dovecot's IMAP wording
    return "dovecot"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def scenario_toml(reports: Sequence[ProbeReport], name: str = "captured") -> str:
    """The scenario file for what `reports` saw (any number of IMAP and SMTP listeners)."""
    if not reports:
        raise ValueError("scenario_toml: no probe reports")
    personality = _personality(reports)
    cert = _cert_variant(reports) or "trusted"
    probed = ", ".join(f"{r.protocol} {r.host}:{r.port} ({r.security.value})" for r in reports)
    lines = [
        "# Captured by `mailharness probe --save-scenario`; serve it with",
        f"#   mailharness serve --scenario {name}.toml",
        f"# Probed: {probed}",
        f'name = "{name}"',
        'base = "healthy"',
        f"requirement = {_value('a server as the probe saw it: ' + probed)}",
        f'personality = "{personality}"',
        f'cert = "{cert}"',
    ]
    refused_logins = [
        r for r in reports if r.diagnosis is Diagnosis.AUTH_FAILED and r.outcome.step == "login"
    ]
    logged_in = any(s.name == "login" and s.ok for r in reports for s in r.steps)
    users = sorted({r.username for r in reports if r.username})
    if refused_logins and not logged_in and refused_logins[0].username:
        # The account refused the probe's password: a random one refuses it again.
        lines += [
            "",
            "# The account refused the probe's login; its password here is random, never the",
            "# one the probe used.",
        ]
        if "users_mode" in toml_fields():
            lines.append('users_mode = "replace"')
        lines += [
            "[[users]]",
            f"address = {_value(refused_logins[0].username)}",
            f"password = {_value(secrets.token_urlsafe(12))}",
        ]
    elif users:
        lines += [
            "",
            f"# Probed as {', '.join(users)}: add [[users]] with address and password to serve",
            "# that account (passwords are never captured); the base's demo users serve now.",
        ]
    for protocol in ("imap", "smtp"):
        own = [r for r in reports if r.protocol == protocol]
        lines += ["", f"[{protocol}]"]
        if not own:
            lines.append("enabled = false  # not probed")
            continue
        seen = _observe(protocol, own, cert)
        for reply in dict.fromkeys(r for report in own for r in report.replies):
            lines.append(f"# server said: {_one_line(reply)}")
        for note in seen.notes:
            lines.append(f"# {_one_line(note)}")
        if not seen.listeners:
            lines.append("enabled = false  # no listener answered as expected")
            continue
        listeners = [s.value for s in seen.listeners]
        lines.append(f"listeners = {_value(listeners)}")
        for key, value in seen.settings.items():
            lines.append(f"{key} = {_value(value)}")
        for listener in seen.listeners.values():
            for fault in listener.faults:
                lines += ["", f"[[{protocol}.faults]]"]
                lines.append(f'listener = "{protocol}/{listener.security.value}"')
                lines += [f"{k} = {_value(v)}" for k, v in fault.items()]
    return "\n".join(lines) + "\n"


def save_scenario(path: str | Path, reports: Sequence[ProbeReport]) -> Path:
    """Write `reports` as a scenario file named after the file's stem."""
    path = Path(path)
    path.write_text(scenario_toml(reports, name=path.stem))
    return path
