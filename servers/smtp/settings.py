"""How the fake SMTP server behaves: plain data, cheap to import (no aiosmtpd).

A scenario's config holds these; the server (servers/smtp/server.py) is imported
when an SMTP listener is started, and aiosmtpd (servers/smtp/session.py) when its
first client connects.
"""

from __future__ import annotations

import ipaddress

from mailharness.servers.errors import ConfigError, choice_error
from mailharness.servers.ratelimit import RateLimit
from mailharness.servers.records import record
from mailharness.servers.smtp import replies
from mailharness.servers.smtp.replies import SMTPReplies

AUTH_MECHANISMS = ("PLAIN", "LOGIN", "XOAUTH2")
# Gmail's and Outlook's limits are 25 and 35 MB; a realistic default that tests can lower.
DEFAULT_SIZE_LIMIT = 35 * 1024 * 1024
# A client idle this long is dropped, as Postfix does after 300 s.
DEFAULT_TIMEOUT = 300.0
# Postfix's smtpd_recipient_limit: RCPT TO beyond it gets 452 4.5.3 Error: too many recipients.
DEFAULT_MAX_RECIPIENTS = 1000


@record
class SMTPSettings:
    """How the fake SMTP server behaves; vary with `dataclasses.replace`.

    ``personality`` picks the provider's wording (``replies.BY_PERSONALITY``);
    ``replies`` replaces it with custom wording, as ``IMAPSettings.replies`` does.
    Read the wording in force from :attr:`texts`.

    >>> SMTPSettings(personality="gmail").texts.auth_failed.splitlines()[0]
    '535-5.7.8 Username and Password not accepted. For more information, go to'
    """

    #: The server's name in the greeting and replies.
    hostname: str = "localhost"
    # Real submission servers (587/465) require AUTH; so do we unless told otherwise.
    auth_required: bool = True
    # Dovecot and Postfix treat loopback as secure and allow AUTH without TLS there.
    plaintext_auth: bool = True
    # Refuse credentials (and mail) before TLS, as Dovecot's submission with its default
    # disable_plaintext_auth = yes and Postfix's 587 (smtpd_tls_security_level=encrypt) do.
    # False only for a scenario that allows plaintext credentials (`plaintext-only`).
    starttls_required: bool = True
    #: SASL mechanisms advertised after TLS (PLAIN, LOGIN, XOAUTH2).
    auth_mechanisms: tuple[str, ...] = AUTH_MECHANISMS
    #: The SIZE advertised and enforced, in bytes (none: no limit).
    size_limit: int | None = DEFAULT_SIZE_LIMIT
    #: Seconds without a command before `421 4.4.2 <host> Error: timeout exceeded`.
    timeout: float = DEFAULT_TIMEOUT
    # Which provider's wording and limits (servers.personality.PERSONALITIES).
    personality: str = "dovecot"
    replies: SMTPReplies | None = None  # None: the personality's
    # Greet with this instead of 220: a 421 closes at once (maintenance); a 554 keeps
    # the session and answers 503 to everything (Postfix's smtpd_delay_reject=no).
    greeting_refusal: str | None = None
    # STARTTLS advertised but failing with 454 (a broken certificate store, say).
    starttls_broken: bool = False
    # Over-quota local recipients are refused at RCPT with 452 (temporary) instead of 552.
    quota_temporary: bool = False
    # Messages per login (or per client address when not logged in) per window.
    send_rate: RateLimit | None = None
    # Concurrent connections from one address (Postfix's smtpd_client_connection_count_limit,
    # 50 there, but loopback is exempt through smtpd_client_event_limit_exceptions =
    # $mynetworks, so None here: every client of the harness is on loopback).
    max_connections_per_ip: int | None = None
    # Connections at once, server-wide; past it the per-IP refusal text. None: a quarter
    # of the process's open-file limit (listeners.default_connection_cap), as Postfix's
    # master.cf process limit keeps smtpd inside its resources.
    max_connections: int | None = None
    # Recipients of one message (Postfix's smtpd_recipient_limit); duplicates of an
    # address already given are answered 250 and dropped, as Postfix's cleanup does.
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    # Source networks allowed to send; others get 554 at RCPT, or as the greeting.
    allowed_networks: tuple[str, ...] | None = None
    #: Where a client outside allowed_networks is refused: rcpt (554 at RCPT) or greeting (554
    #: greeting).
    reject_unlisted_at: str = "rcpt"
    # Take the submitter's login and address from Postfix's XCLIENT LOGIN= and ADDR= (as
    # Postfix does for smtpd_authorized_xclient_hosts): the relay behind Dovecot's
    # submission learns who logged in, and from where, that way.
    xclient: bool = False
    # Prepend a `Received:` trace header (RFC 5321 4.4) to accepted mail, in the format of
    # Dovecot's submission (lib-smtp's smtp_server_transaction_write_trace_record). The
    # relay behind real Dovecot adds none, so what it captures carries Dovecot's own.
    trace_header: bool = True

    def __post_init__(self) -> None:
        for mechanism in self.auth_mechanisms:
            if mechanism not in AUTH_MECHANISMS:
                raise choice_error("auth_mechanisms", mechanism, AUTH_MECHANISMS)
        replies.for_personality(self.personality)
        if self.replies is not None and not isinstance(self.replies, SMTPReplies):
            raise ConfigError(f"replies={self.replies!r}: expected an SMTPReplies or None")
        if self.greeting_refusal is not None and self.greeting_refusal[:3] not in ("421", "554"):
            raise ConfigError(
                f"greeting_refusal={self.greeting_refusal!r}: expected a 421 or 554 reply"
            )
        if self.reject_unlisted_at not in ("rcpt", "greeting"):
            raise choice_error("reject_unlisted_at", self.reject_unlisted_at, ("rcpt", "greeting"))
        for net in self.allowed_networks or ():
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(
                    f"allowed_networks entry {net!r}: expected a network like '127.0.0.1/32'"
                ) from None
        for name in ("max_connections_per_ip", "max_connections"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value!r}: expected >= 1 or None")
        if self.max_recipients < 1:
            raise ConfigError(f"max_recipients={self.max_recipients!r}: expected >= 1")
        if self.size_limit is not None and self.size_limit <= 0:
            raise ConfigError(f"size_limit={self.size_limit!r}: expected a positive int or None")
        if self.timeout <= 0:
            raise ConfigError(f"timeout={self.timeout!r}: expected a positive number of seconds")

    @property
    def texts(self) -> SMTPReplies:
        """The wording in force: ``replies`` if given, else the personality's."""
        if self.replies is not None:
            return self.replies
        return replies.for_personality(self.personality)
