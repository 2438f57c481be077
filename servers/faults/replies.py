"""What the fault front says itself: texts from the IMAP and SMTP reply tables.

The front is not a mail server: it only speaks where a real server (or the
firewall, tcpwrap or Postfix restriction in front of it) would have spoken
instead of the backend. Its texts come from the protocols' one reply tables
(``servers/imap/replies.py``, ``servers/smtp/replies.py``) in the default
(Dovecot) personality's wording, framed here as whole lines with ``{tag}``,
``{ip}`` and ``{hostname}`` to fill in.
"""

from __future__ import annotations

from typing import Literal

from mailharness.servers.imap.replies import DOVECOT as _IMAP
from mailharness.servers.imap.replies import Reply
from mailharness.servers.smtp.replies import DOVECOT as _SMTP

Protocol = Literal["imap", "smtp"]
PROTOCOLS: tuple[Protocol, ...] = ("imap", "smtp")

HOSTNAME = "localhost"


def _imap(prefix: str, reply: Reply) -> str:
    return f"{prefix} [{reply.code}] {reply.text}"


STARTTLS_OK: dict[Protocol, str] = {
    "imap": "{tag} OK " + _IMAP.starttls_ok,
    "smtp": _SMTP.starttls_ready,
}
# Allowlist mode "greeting": refused as the first thing the client reads.
ACCESS_DENIED_GREETING: dict[Protocol, str] = {
    "imap": _imap("* BYE", _IMAP.bye_access_denied),
    "smtp": _SMTP.client_rejected,
}
# Allowlist mode "login": Dovecot's passdb allow_nets fails the login like a wrong password.
ACCESS_DENIED_LOGIN: dict[Protocol, str] = {
    "imap": _imap("{tag} NO", _IMAP.auth_failed),
    "smtp": _SMTP.auth_failed,
}
# Allowlist mode "rcpt": Postfix smtpd_client_restrictions with smtpd_delay_reject=yes.
ACCESS_DENIED_RCPT = _SMTP.client_rejected
# ConnectionCap on_excess="greeting": Dovecot's login queue, Postfix's anvil limit.
TOO_MANY_CONNECTIONS: dict[Protocol, str] = {
    "imap": "* BYE " + _IMAP.bye_queue_full,
    "smtp": _SMTP.too_many_connections,
}


def line(text: str, **values: str) -> bytes:
    """One reply line, filled in and CRLF-terminated."""
    return (text.format(hostname=HOSTNAME, **values) + "\r\n").encode()
