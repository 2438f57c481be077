"""The fake SMTP server (aiosmtpd engine, our rules)."""

from typing import TYPE_CHECKING, Any

from mailharness.servers.smtp.capture import CapturedMessage, MessageLog
from mailharness.servers.smtp.settings import SMTPSettings

if TYPE_CHECKING:
    from mailharness.servers.smtp.server import SMTPServer


def __getattr__(name: str) -> Any:
    # The listeners; aiosmtpd (and attrs beneath it, ~20 ms) is imported by an SMTP
    # listener's first connection (session.py). Settings and captured mail are plain data.
    if name == "SMTPServer":
        from mailharness.servers.smtp.server import SMTPServer

        return SMTPServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CapturedMessage", "MessageLog", "SMTPServer", "SMTPSettings"]
