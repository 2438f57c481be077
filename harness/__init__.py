"""mailharness: fake and real mail servers for integration-testing inbox connectors.

The public API: everything the README uses is importable from here. Everything
else is private.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailharness.capture import save_scenario, scenario_toml
    from mailharness.cases import ClientCase, Expected
    from mailharness.catalog import CATALOG, parametrize, parametrize_cases, scenario
    from mailharness.certs import CertVariant, MailCA, ServerCert
    from mailharness.diagnosis import Diagnosis, diagnose
    from mailharness.matrix import MatrixResult, run_matrix
    from mailharness.probe import ProbeReport, ProbeSettings, probe_case
    from mailharness.profiles import ClientProfile, Outcome
    from mailharness.scenarios import Expect, Family, Scenario
    from mailharness.schedule import Flap, MailboxChurn, MaintenanceWindow, Shutdown
    from mailharness.server import MailConfig, MailServer, MailServerFactory, ProtocolEndpoints
    from mailharness.servers.accounts import DEFAULT_USERS, Lockout, User
    from mailharness.servers.errors import ConfigError, MailharnessError, ServerStartError
    from mailharness.servers.faults import (
        Allowlist,
        Bandwidth,
        ConnectionCap,
        DropAfter,
        DropOnCommand,
        Fault,
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
    from mailharness.servers.ratelimit import RateLimit
    from mailharness.servers.smtp import CapturedMessage, SMTPSettings
    from mailharness.servers.transcript import (
        LoginAttempt,
        Transcript,
        TranscriptEvent,
        TranscriptLog,
    )

# Imported when first used: `import mailharness` (and the sans-IO IMAP core beneath it)
# costs no asyncio, ssl, certificates or catalog until something asks for them.
_EXPORTS = {
    "save_scenario": "mailharness.capture",
    "scenario_toml": "mailharness.capture",
    "ClientCase": "mailharness.cases",
    "Expected": "mailharness.cases",
    "CATALOG": "mailharness.catalog",
    "parametrize": "mailharness.catalog",
    "parametrize_cases": "mailharness.catalog",
    "scenario": "mailharness.catalog",
    "CertVariant": "mailharness.certs",
    "MailCA": "mailharness.certs",
    "ServerCert": "mailharness.certs",
    "Diagnosis": "mailharness.diagnosis",
    "diagnose": "mailharness.diagnosis",
    "ClientProfile": "mailharness.profiles",
    "Outcome": "mailharness.profiles",
    "Flap": "mailharness.schedule",
    "MailboxChurn": "mailharness.schedule",
    "MaintenanceWindow": "mailharness.schedule",
    "Shutdown": "mailharness.schedule",
    "MatrixResult": "mailharness.matrix",
    "run_matrix": "mailharness.matrix",
    "ProbeReport": "mailharness.probe",
    "ProbeSettings": "mailharness.probe",
    "probe_case": "mailharness.probe",
    "Expect": "mailharness.scenarios",
    "Family": "mailharness.scenarios",
    "Scenario": "mailharness.scenarios",
    "MailConfig": "mailharness.server",
    "MailServer": "mailharness.server",
    "MailServerFactory": "mailharness.server",
    "ProtocolEndpoints": "mailharness.server",
    "DEFAULT_USERS": "mailharness.servers.accounts",
    "Lockout": "mailharness.servers.accounts",
    "User": "mailharness.servers.accounts",
    "ConfigError": "mailharness.servers.errors",
    "MailharnessError": "mailharness.servers.errors",
    "ServerStartError": "mailharness.servers.errors",
    "Allowlist": "mailharness.servers.faults",
    "Bandwidth": "mailharness.servers.faults",
    "ConnectionCap": "mailharness.servers.faults",
    "DropAfter": "mailharness.servers.faults",
    "DropOnCommand": "mailharness.servers.faults",
    "Fault": "mailharness.servers.faults",
    "FaultFront": "mailharness.servers.faults",
    "FirewallDrop": "mailharness.servers.faults",
    "Hang": "mailharness.servers.faults",
    "Latency": "mailharness.servers.faults",
    "Refuse": "mailharness.servers.faults",
    "Reset": "mailharness.servers.faults",
    "SlowGreeting": "mailharness.servers.faults",
    "TLSVersion": "mailharness.servers.faults",
    "IMAPSettings": "mailharness.servers.imap",
    "Endpoint": "mailharness.servers.listeners",
    "Security": "mailharness.servers.listeners",
    "RateLimit": "mailharness.servers.ratelimit",
    "CapturedMessage": "mailharness.servers.smtp",
    "SMTPSettings": "mailharness.servers.smtp",
    "LoginAttempt": "mailharness.servers.transcript",
    "Transcript": "mailharness.servers.transcript",
    "TranscriptEvent": "mailharness.servers.transcript",
    "TranscriptLog": "mailharness.servers.transcript",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mailharness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CATALOG",
    "DEFAULT_USERS",
    "Allowlist",
    "Bandwidth",
    "CapturedMessage",
    "CertVariant",
    "ClientCase",
    "ClientProfile",
    "ConfigError",
    "ConnectionCap",
    "Diagnosis",
    "DropAfter",
    "DropOnCommand",
    "Endpoint",
    "Expect",
    "Expected",
    "Family",
    "Fault",
    "FaultFront",
    "FirewallDrop",
    "Flap",
    "Hang",
    "IMAPSettings",
    "Latency",
    "Lockout",
    "LoginAttempt",
    "MailCA",
    "MailConfig",
    "MailServer",
    "MailServerFactory",
    "MailboxChurn",
    "MailharnessError",
    "MaintenanceWindow",
    "MatrixResult",
    "Outcome",
    "ProbeReport",
    "ProbeSettings",
    "ProtocolEndpoints",
    "RateLimit",
    "Refuse",
    "Reset",
    "SMTPSettings",
    "Scenario",
    "Security",
    "ServerCert",
    "ServerStartError",
    "Shutdown",
    "SlowGreeting",
    "TLSVersion",
    "Transcript",
    "TranscriptEvent",
    "TranscriptLog",
    "User",
    "diagnose",
    "parametrize",
    "parametrize_cases",
    "probe_case",
    "run_matrix",
    "save_scenario",
    "scenario",
    "scenario_toml",
]
