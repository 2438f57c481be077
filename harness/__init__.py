"""mailharness: fake and real mail servers for integration-testing inbox connectors.

The public API: everything the README uses is importable from here. Everything
else is private.
"""

from mailharness.cases import ClientCase, Expected
from mailharness.catalog import CATALOG, parametrize, parametrize_cases, scenario
from mailharness.certs import CertVariant, MailCA, ServerCert
from mailharness.diagnosis import Diagnosis, diagnose
from mailharness.journeys import ClientProfile, Outcome
from mailharness.scenarios import Expect, Family, Scenario
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
    "Hang",
    "IMAPSettings",
    "Latency",
    "Lockout",
    "MailCA",
    "MailConfig",
    "MailServer",
    "MailServerFactory",
    "MailharnessError",
    "Outcome",
    "ProtocolEndpoints",
    "RateLimit",
    "Refuse",
    "Reset",
    "SMTPSettings",
    "Scenario",
    "Security",
    "ServerCert",
    "ServerStartError",
    "SlowGreeting",
    "TLSVersion",
    "User",
    "diagnose",
    "parametrize",
    "parametrize_cases",
    "scenario",
]
