"""The fake SMTP server (aiosmtpd engine, our rules)."""

from mailharness.servers.smtp.capture import CapturedMessage, MessageLog
from mailharness.servers.smtp.server import SMTPServer, SMTPSettings

__all__ = ["CapturedMessage", "MessageLog", "SMTPServer", "SMTPSettings"]
