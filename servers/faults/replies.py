"""Every protocol text the fault front writes itself, in one place.

The front is not a mail server: it only speaks where a real server (or the
firewall, tcpwrap or Postfix restriction in front of it) would have spoken
instead of the backend. Texts hold ``{tag}``, ``{ip}`` and ``{hostname}``.
Sources: Dovecot 2.3 (imap-login), Postfix smtpd, RFC 2595/3207 (SCENARIOS.md).
"""

from __future__ import annotations

from typing import Literal

Protocol = Literal["imap", "smtp"]
PROTOCOLS: tuple[Protocol, ...] = ("imap", "smtp")

HOSTNAME = "localhost"

STARTTLS_OK: dict[Protocol, str] = {
    "imap": "{tag} OK Begin TLS negotiation now.",
    "smtp": "220 2.0.0 Ready to start TLS",
}
# Allowlist mode "greeting": refused as the first thing the client reads.
ACCESS_DENIED_GREETING: dict[Protocol, str] = {
    "imap": "* BYE [UNAVAILABLE] Access denied for {ip}.",
    "smtp": "554 5.7.1 <unknown[{ip}]>: Client host rejected: Access denied",
}
# Allowlist mode "login": Dovecot's passdb allow_nets fails the login like a wrong password.
ACCESS_DENIED_LOGIN: dict[Protocol, str] = {
    "imap": "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.",
    "smtp": "535 5.7.8 Authentication failed.",
}
# Allowlist mode "rcpt": Postfix smtpd_client_restrictions with smtpd_delay_reject=yes.
ACCESS_DENIED_RCPT = "554 5.7.1 <unknown[{ip}]>: Client host rejected: Access denied"
# ConnectionCap on_excess="greeting": Dovecot's login queue, Postfix's anvil limit.
TOO_MANY_CONNECTIONS: dict[Protocol, str] = {
    "imap": "* BYE Connection queue full",
    "smtp": "421 4.7.0 {hostname} Error: too many connections from {ip}",
}


def line(text: str, **values: str) -> bytes:
    """One reply line, filled in and CRLF-terminated."""
    return (text.format(hostname=HOSTNAME, **values) + "\r\n").encode()
