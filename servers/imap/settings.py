"""Settings of one fake IMAP server, named after the Dovecot settings they mimic."""

from __future__ import annotations

from dataclasses import dataclass

from servers.errors import ConfigError
from servers.imap.protocol import MAX_LINE_BYTES, MAX_LITERAL_BYTES
from servers.imap.replies import DOVECOT, Replies

__all__ = ["KNOWN_MECHANISMS", "IMAPSettings"]

KNOWN_MECHANISMS = ("PLAIN", "LOGIN", "XOAUTH2")
#: Dovecot's imap "autologout" is 30 minutes; tests shorten it when they need to.
DEFAULT_IDLE_TIMEOUT = 30 * 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class IMAPSettings:
    """What a scenario varies about the IMAP server; vary with ``dataclasses.replace``.

    ``failure_delay`` is Dovecot's ``auth_failure_delay`` (2 s there; 0 by
    default here so failing-login tests stay fast).
    """

    hostname: str = "localhost"
    plaintext_auth_requires_tls: bool = False  # Dovecot's disable_plaintext_auth
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    failure_delay: float = 0.0
    greeting: str | None = None  # None: the personality's text
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_line_bytes: int = MAX_LINE_BYTES
    max_literal_bytes: int = MAX_LITERAL_BYTES
    replies: Replies = DOVECOT
    #: Advertise ACL (RFC 4314) with owner-only rights, as Dovecot's acl plugin does.
    acl: bool = False

    def __post_init__(self) -> None:
        mechanisms = tuple(m.upper() for m in self.auth_mechanisms)
        for mech in mechanisms:
            if mech not in KNOWN_MECHANISMS:
                raise ConfigError(
                    f"auth_mechanisms={self.auth_mechanisms!r}: {mech!r} is not one of "
                    + ", ".join(repr(m) for m in KNOWN_MECHANISMS)
                )
        object.__setattr__(self, "auth_mechanisms", mechanisms)
        if self.failure_delay < 0:
            raise ConfigError(f"failure_delay={self.failure_delay!r}: expected >= 0 seconds")
        if self.idle_timeout <= 0:
            raise ConfigError(f"idle_timeout={self.idle_timeout!r}: expected > 0 seconds")
        if self.max_line_bytes < 1024:
            raise ConfigError(f"max_line_bytes={self.max_line_bytes!r}: expected >= 1024")
        if self.max_literal_bytes < 1:
            raise ConfigError(f"max_literal_bytes={self.max_literal_bytes!r}: expected >= 1")
