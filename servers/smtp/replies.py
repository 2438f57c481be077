"""Every SMTP reply text the fake server sends, in one place, per provider personality.

Defaults are Postfix/Dovecot-submission wording (what most connectors meet);
a personality (gmail, outlook, yahoo, icloud) swaps the texts where that
provider is known to differ (SCENARIOS.md). Texts may hold `{hostname}`,
`{ip}`, `{rcpt}` and `{id}`; a multi-line reply is lines joined by CRLF.

aiosmtpd has its own wording for a few replies; `REWRITES` maps those to the
production wording.
"""

from __future__ import annotations

from dataclasses import replace

from mailharness.servers.accounts import AuthOutcome
from mailharness.servers.personality import pick
from mailharness.servers.records import record

# aiosmtpd's own wording of "authentication required" (the table's `auth_required` replaces it).
AUTH_REQUIRED = "530 5.7.0 Authentication required"
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds fixed limit"

# aiosmtpd's built-in texts, rewritten to production wording.
REWRITES: dict[str, str] = {
    "530 Must issue a STARTTLS command first": STARTTLS_FIRST,
    "552 Error: Too much mail data": MESSAGE_TOO_BIG,
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
    "535 5.7.8 Authentication credentials invalid": "535 5.7.8 Authentication failed.",
}


@record  # a frozen dataclass, made without generated code (see records.py)
class SMTPReplies:
    """Every reply the fake sends (but aiosmtpd's, above); vary with `dataclasses.replace`."""

    # The greeting again after XCLIENT (Postfix's).
    xclient_greeting: str = "220 {hostname} ESMTP"
    mail_ok: str = "250 OK"
    rcpt_ok: str = "250 OK"
    # Postfix accepts a duplicate recipient and delivers once.
    rcpt_duplicate: str = "250 2.1.5 Ok"
    data_accepted: str = "250 2.0.0 Ok: queued as {queue_id}"
    # A handler exception of ours.
    internal_error: str = "451 4.3.0 Error: internal server error"
    bad_auth_syntax: str = "501 5.5.4 Invalid AUTH parameters"
    plaintext_auth_disabled: str = "523 5.7.10 Plaintext authentication disabled."
    # Gmail's XOAUTH2 error challenge (the 334 text): base64 of
    # {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}
    xoauth2_challenge: str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
    auth_failed: str = "535 5.7.8 Authentication failed."
    app_password_required: str = "535 5.7.8 Authentication failed."
    web_login_required: str = "535 5.7.8 Authentication failed."
    password_expired: str = "535 5.7.8 Authentication failed."
    account_disabled: str = "525 5.7.13 Login disabled for this user"
    locked_out: str = "454 4.7.0 Too many login attempts, please try again later."
    login_rate_limited: str = "454 4.7.0 Too many login attempts, please try again later."
    backend_down: str = "454 4.7.0 Temporary authentication failure."
    over_quota: str = "552 5.2.2 <{rcpt}> Quota exceeded (mailbox for user is full)"
    over_quota_temporary: str = "452 4.2.2 <{rcpt}> Quota exceeded (mailbox for user is full)"
    # A 421 reply closes the connection after it is sent (RFC 5321 §3.8).
    send_rate_exceeded: str = "421 4.7.0 Try again later, closing connection."
    too_many_connections: str = "421 4.7.0 {hostname} Error: too many connections from {ip}"
    client_rejected: str = "554 5.7.1 <unknown[{ip}]>: Client host rejected: Access denied"
    access_denied: str = "503 5.7.0 Error: access denied for unknown[{ip}]"
    maintenance: str = "421 4.3.2 Service not available"
    shutting_down: str = "421 4.3.2 Shutting down"
    idle_timeout: str = "421 4.4.2 {hostname} Error: timeout exceeded"
    # What the fault front answers to STARTTLS (aiosmtpd itself says "220 Ready to start TLS").
    starttls_ready: str = "220 2.0.0 Ready to start TLS"
    starttls_broken: str = "454 4.7.0 TLS not available due to local problem"
    starttls_missing: str = "502 5.5.1 Error: command not implemented"
    # STARTTLS inside TLS (Postfix's smtpd).
    tls_already_active: str = "554 5.5.1 Error: TLS already active"
    # The client aborted the STARTTLS handshake (a rejected certificate): the connection
    # is closed, so nobody reads this; Postfix logs "SSL_accept error" and drops it.
    tls_handshake_failed: str = "454 4.7.0 TLS not available due to local problem"
    # A line over the limit in an AUTH exchange (Dovecot's submission, measured on 2.3.19).
    line_too_long: str = "500 5.5.2 Line too long"
    # RCPT TO past smtpd_recipient_limit (Postfix).
    too_many_recipients: str = "452 4.5.3 Error: too many recipients"
    # MAIL before AUTH where AUTH is required.
    auth_required: str = AUTH_REQUIRED
    # With STARTTLS required: None answers as Dovecot's submission service does (AUTH
    # advertised with no mechanism, AUTH refused with 523, MAIL with auth_required);
    # a text is what every other command before STARTTLS gets (Postfix, Gmail).
    before_starttls: str | None = STARTTLS_FIRST
    # The greeting after "220 <hostname> "; may hold {date} (Exchange's "Tue, 1 Sep 2020
    # 17:02:13 +0200") and {id}.
    banner: str = "ESMTP mailharness"
    # The text after "250-<hostname>" on EHLO's first line; may hold {ip}.
    ehlo_hello: str = ""
    # EHLO keywords in the provider's order, limited to those our server implements
    # (SIZE, 8BITMIME, SMTPUTF8, STARTTLS, AUTH, HELP): a keyword the server does not
    # offer at that moment (STARTTLS inside TLS) is left out. None: aiosmtpd's order.
    ehlo_keywords: tuple[str, ...] | None = None
    # AUTH mechanisms advertised, in the provider's order, among those the settings
    # allow; None: all of those. A client may still use another the settings allow.
    auth_shown: tuple[str, ...] | None = None

    def for_outcome(self, outcome: AuthOutcome) -> str:
        """The reply to a failed AUTH, by why it failed."""
        return {
            AuthOutcome.BAD_CREDENTIALS: self.auth_failed,
            AuthOutcome.APP_PASSWORD_REQUIRED: self.app_password_required,
            AuthOutcome.WEB_LOGIN_REQUIRED: self.web_login_required,
            AuthOutcome.PASSWORD_EXPIRED: self.password_expired,
            AuthOutcome.ACCOUNT_DISABLED: self.account_disabled,
            AuthOutcome.LOCKED_OUT: self.locked_out,
            AuthOutcome.RATE_LIMITED: self.login_rate_limited,
            AuthOutcome.BACKEND_DOWN: self.backend_down,
            # IMAP access off does not stop sending: the caller never asks for it.
            AuthOutcome.IMAP_DISABLED: self.auth_failed,
        }[outcome]


# Dovecot's submission service, as measured against Dovecot 2.3.19 here.
DOVECOT = SMTPReplies(auth_required="530 5.7.0 Authentication required.", before_starttls=None)

# The providers below start from Postfix-like behaviour where nothing else is known.
POSTFIX_LIKE = SMTPReplies()

GMAIL = replace(
    POSTFIX_LIKE,
    # Source: https://github.com/halojoy/PHP-SMTP-Mailer/issues/6 (2020): "220
    # smtp.gmail.com ESMTP v7sm7921742wrp.45 - gsmtp".
    banner="ESMTP {id} - gsmtp",
    # Source: https://github.com/The-Login/SMTP-Smuggling-Tools/issues/11 (2024,
    # mx.google.com): "at your service, [<ip>]", then SIZE 8BITMIME STARTTLS
    # ENHANCEDSTATUSCODES PIPELINING CHUNKING SMTPUTF8 (not offered here: not implemented:
    # ENHANCEDSTATUSCODES, PIPELINING, CHUNKING). AUTH on smtp.gmail.com: unsourced.
    ehlo_hello="at your service, [{ip}]",
    ehlo_keywords=("SIZE", "8BITMIME", "STARTTLS", "AUTH", "SMTPUTF8"),
    before_starttls="530 5.7.0 Must issue a STARTTLS command first. {id} - gsmtp",
    auth_failed=(
        "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials {id} - gsmtp"
    ),
    app_password_required=(
        "534-5.7.9 Application-specific password required. For more information, go to\r\n"
        "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor {id} - gsmtp"
    ),
    web_login_required=(
        "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials {id} - gsmtp"
    ),
    over_quota=(
        "452-4.2.2 The email account that you tried to reach is over quota.\r\n"
        "452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp {id} - gsmtp"
    ),
    over_quota_temporary=(
        "452-4.2.2 The email account that you tried to reach is over quota.\r\n"
        "452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp {id} - gsmtp"
    ),
    send_rate_exceeded="550 5.4.5 Daily user sending quota exceeded.",
)

# Exchange's transport (Exchange Server 2013/2016/2019, and Exchange Online's front
# end). Sources: https://github.com/testssl/testssl.sh/issues/763 (Exchange, port 25):
# "220 <host> Microsoft ESMTP MAIL Service ready at Tue, 1 Sep 2020 17:02:13 +0200",
# "250-<host> Hello [<ip>]", then SIZE PIPELINING DSN ENHANCEDSTATUSCODES STARTTLS
# X-ANONYMOUSTLS AUTH NTLM X-EXPS 8BITMIME BINARYMIME CHUNKING XRDST; and
# https://github.com/namshi/docker-smtp/issues/37 (Exchange after STARTTLS): "250-AUTH
# GSSAPI NTLM LOGIN". Not offered here (not implemented): PIPELINING, DSN,
# ENHANCEDSTATUSCODES, X-ANONYMOUSTLS, X-EXPS, BINARYMIME, CHUNKING, XRDST, GSSAPI, NTLM.
_EXCHANGE_BANNER = "Microsoft ESMTP MAIL Service ready at {date}"
_EXCHANGE_EHLO = ("SIZE", "STARTTLS", "AUTH", "8BITMIME")

OUTLOOK = replace(
    POSTFIX_LIKE,
    # Exchange Online. Source: https://github.com/ietf-tools/datatracker/pull/5888 (2023,
    # <x>.mail.protection.outlook.com): the same banner and hello as Exchange Server, then
    # SIZE PIPELINING DSN ENHANCEDSTATUSCODES STARTTLS 8BITMIME BINARYMIME CHUNKING
    # SMTPUTF8 (that is the inbound MX; smtp.office365.com:587 is assumed to answer alike,
    # with AUTH LOGIN XOAUTH2 after STARTTLS: unsourced).
    banner=_EXCHANGE_BANNER,
    ehlo_hello="Hello [{ip}]",
    ehlo_keywords=("SIZE", "STARTTLS", "AUTH", "8BITMIME", "SMTPUTF8"),
    auth_shown=("LOGIN", "XOAUTH2"),
    auth_failed=(
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [{hostname}]"
    ),
    app_password_required=(
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [{hostname}]"
    ),
    send_rate_exceeded=("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"),
    too_many_connections="432 4.3.2 Concurrent connections limit exceeded.",
)

# Exchange Server 2013/2016 on premises: Exchange's banner and EHLO (sources above); its
# refusals are those of Exchange Online (unsourced for on-premises).
EXCHANGE = replace(
    OUTLOOK,
    ehlo_keywords=_EXCHANGE_EHLO,
    auth_shown=("LOGIN",),
)

# Yahoo and iCloud: banner and EHLO unsourced, so ours ("ESMTP mailharness") is kept.
YAHOO = replace(POSTFIX_LIKE, locked_out="535 5.7.0 (#AUTH005) Too many bad auth attempts.")

ICLOUD = POSTFIX_LIKE

BY_PERSONALITY: dict[str, SMTPReplies] = {
    "dovecot": DOVECOT,
    "gmail": GMAIL,
    "outlook": OUTLOOK,
    "exchange": EXCHANGE,
    "yahoo": YAHOO,
    "icloud": ICLOUD,
}


def for_personality(name: str) -> SMTPReplies:
    return pick(BY_PERSONALITY, name)
