"""mailharness: fake and real mail servers for integration-testing inbox connectors.

The public API: everything the README uses is importable from here. Everything
else is private.
"""

from harness.cases import ClientCase, Expected
from harness.catalog import CATALOG, parametrize, parametrize_cases, scenario
from harness.certs import CertVariant, MailCA, ServerCert
from harness.diagnosis import Diagnosis, diagnose
from harness.journeys import ClientProfile, Outcome
from harness.scenarios import Expect, Family, Scenario
from harness.server import MailConfig, MailServer, MailServerFactory, ProtocolEndpoints
from servers.accounts import DEFAULT_USERS, Lockout, User
from servers.errors import ConfigError, MailharnessError, ServerStartError
from servers.faults import (
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
from servers.imap import IMAPSettings
from servers.listeners import Endpoint, Security
from servers.ratelimit import RateLimit
from servers.smtp import CapturedMessage, SMTPSettings

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
