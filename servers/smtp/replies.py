"""Every SMTP reply text the fake server sends, in one place.

aiosmtpd has its own wording for a few replies; `REWRITES` maps those to what
real servers (Postfix, Dovecot submission) send, so a connector sees the same
codes and enhanced status codes it will meet in production.
"""

from __future__ import annotations

GREETING = "220 {hostname} ESMTP mailharness"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_FAILED = "535 5.7.8 Authentication failed."
XOAUTH2_FAILED = AUTH_FAILED
# Gmail's XOAUTH2 error challenge: base64 of
# {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}
XOAUTH2_ERROR_CHALLENGE = "334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
AUTH_REQUIRED = "530 5.7.0 Authentication required"
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds fixed limit"
DATA_ACCEPTED = "250 2.0.0 Ok: queued as {queue_id}"
BAD_SYNTAX_AUTH = "501 5.5.4 Invalid AUTH parameters"
COMMAND_NOT_IMPLEMENTED = "502 5.5.1 Error: command not implemented"

# aiosmtpd's built-in texts, rewritten to production wording.
REWRITES: dict[str, str] = {
    "530 Must issue a STARTTLS command first": STARTTLS_FIRST,
    "552 Error: Too much mail data": MESSAGE_TOO_BIG,
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
    "535 5.7.8 Authentication credentials invalid": AUTH_FAILED,
}
