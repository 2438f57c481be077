"""mailharness: fake and real mail servers for integration-testing inbox connectors.

The public API; everything else is private.
"""

from harness.certs import CertVariant, MailCA, ServerCert
from harness.server import MailConfig, MailServer, ProtocolEndpoints
from servers.accounts import DEFAULT_USERS, User
from servers.errors import ConfigError, MailharnessError, ServerStartError
from servers.listeners import Endpoint, Security
from servers.smtp import CapturedMessage, SMTPSettings

__all__ = [
    "DEFAULT_USERS",
    "CapturedMessage",
    "CertVariant",
    "ConfigError",
    "Endpoint",
    "MailCA",
    "MailConfig",
    "MailServer",
    "MailharnessError",
    "ProtocolEndpoints",
    "SMTPSettings",
    "Security",
    "ServerCert",
    "ServerStartError",
    "User",
]
