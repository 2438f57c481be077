"""The fake SMTP server (aiosmtpd engine, our rules)."""

from servers.smtp.capture import CapturedMessage, MessageLog
from servers.smtp.server import SMTPServer, SMTPSettings

__all__ = ["CapturedMessage", "MessageLog", "SMTPServer", "SMTPSettings"]
