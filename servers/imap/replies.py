"""Every IMAP reply text and response code, in one place, per provider personality.

A personality (gmail, outlook, yahoo, icloud) swaps texts with
``dataclasses.replace`` without touching command logic. Defaults are Dovecot
2.3's wording, because that is what most connectors meet and what our Dovecot
backend says. Texts may hold ``{host}``, ``{time}`` (Dovecot's ``[host:time]``
stamp), ``{command}`` (``LOGIN`` or ``AUTHENTICATE``) and ``{limit}``.

>>> for_personality("outlook").auth_failed.text.format(command="LOGIN")
'LOGIN failed.'
>>> from dataclasses import replace
>>> custom = replace(DOVECOT, greeting="Ready, steady.")
"""

from __future__ import annotations

from dataclasses import replace

from mailharness.servers.personality import PERSONALITIES, pick
from mailharness.servers.records import record

__all__ = [
    "AUTH_SLOT",
    "BY_PERSONALITY",
    "DOVECOT",
    "EXCHANGE",
    "GMAIL",
    "ICLOUD",
    "OUTLOOK",
    "PERSONALITIES",
    "YAHOO",
    "Replies",
    "Reply",
    "for_personality",
]


@record(kw_only=False)
class Reply:
    """A response code (or None) and its human text."""

    code: str | None
    text: str


#: In a personality's capability list, where the entries that depend on TLS and settings
#: go: STARTTLS, LOGINDISABLED and the AUTH= mechanisms the session offers.
AUTH_SLOT = "{auth}"


@record  # a frozen dataclass, made without generated code (see records.py)
class Replies:
    """Every reply text and code of the IMAP server; vary with ``dataclasses.replace``."""

    #: ``* OK <greeting>``; may hold ``{ip}`` (the client's address).
    greeting: str = "Dovecot ready."
    #: Capabilities as a response code in the greeting and the login's tagged OK
    #: (Dovecot does); a provider that sends them only when asked says False.
    capability_codes: bool = True
    #: The provider's CAPABILITY lists, in its order, limited to what our server
    #: implements (a connector must not be offered an extension it would then meet
    #: unanswered); None: Dovecot 2.3's. ``AUTH_SLOT`` marks where STARTTLS,
    #: LOGINDISABLED and AUTH= go.
    capabilities_before_login: tuple[str, ...] | None = None
    capabilities_after_login: tuple[str, ...] | None = None
    #: A successful LOGIN/AUTHENTICATE; may hold ``{command}``.
    logged_in: str = "Logged in"
    bye_logout: str = "Logging out"
    logout_ok: str = "Logout completed (0.001 + 0.000 secs)."
    bye_shutdown: str = "Server shutting down."
    bye_idle_timeout: str = "Disconnected for inactivity."
    bye_mailbox_deleted: str = "Selected mailbox was deleted, have to disconnect."
    bye_uidvalidity: str = "Mailbox UIDVALIDITY changed, have to disconnect."
    #: After a RENAME of the selected mailbox: Dovecot's Maildir++ loses track of it.
    bye_inconsistent: str = "IMAP session state is inconsistent, please relogin."
    bye_literal_too_large: str = "Too long argument."
    # The command parser's (protocol.py), in Dovecot's imap-parser and imap-login wording:
    # BYE when a command outgrows a pre-login limit, BAD for the rest.
    bye_literal_size_too_large: str = "Literal size too large"
    bye_input_buffer_full: str = "Input buffer full, aborting"
    too_long_argument: str = "Too long argument."
    literal_too_large: str = "Literal too large"
    unexpected_close_paren: str = "Unexpected ')'"
    literal_not_at_end: str = "Unexpected '{' (literal not at end of line)"
    control_character: str = "Unexpected control character"
    missing_close_paren: str = "Missing ')'"
    missing_quote: str = "Missing '\"'"
    auth_failed: Reply = Reply("AUTHENTICATIONFAILED", "Authentication failed.")
    # One reply per servers.accounts.AuthOutcome; Dovecot has no text of its own
    # for the Gmail-only situations, so those default to Gmail's.
    auth_app_password_required: Reply = Reply("AUTHENTICATIONFAILED", "Authentication failed.")
    auth_imap_disabled: Reply = Reply("ALERT", "Your account is not enabled for IMAP use.")
    auth_web_login_required: Reply = Reply(
        "ALERT",
        "Please log in via your web browser: "
        "https://support.google.com/mail/accounts/answer/78754 (Failure)",
    )
    auth_password_expired: Reply = Reply("EXPIRED", "Authentication failed.")
    auth_account_disabled: Reply = Reply("CONTACTADMIN", "Login disabled for this user")
    # Dovecot has no lockout of its own (its auth penalty only slows failures down).
    auth_locked_out: Reply = Reply("AUTHENTICATIONFAILED", "Authentication failed.")
    # Dovecot refuses a login it may retry later (auth policy, anvil) as a tempfail.
    auth_rate_limited: Reply = Reply(
        "UNAVAILABLE", "Temporary authentication failure. [{host}:{time}]"
    )
    auth_backend_down: Reply = Reply(
        "UNAVAILABLE", "Temporary authentication failure. [{host}:{time}]"
    )
    #: The credentials were right, but the user's backend (behind a proxy) is down.
    backend_maintenance: Reply = Reply("UNAVAILABLE", "User's backend down for maintenance")
    #: ``LOGINDISABLED`` and LOGIN sent anyway: Dovecot's imap-login, with no PLAIN
    #: mechanism to run LOGIN through, answers as for an unknown mechanism.
    login_disabled: Reply = Reply("ALERT", "Unsupported authentication mechanism.")
    #: After login, when the user already has ``{limit}`` sessions from this address.
    too_many_connections: Reply = Reply(
        "UNAVAILABLE",
        "Maximum number of connections from user+IP exceeded (mail_max_userip_connections={limit})",
    )
    #: The provider's own per-user+IP limit, for a ``conn-limit`` scenario to pick;
    #: 10 is Dovecot's ``mail_max_userip_connections`` default.
    userip_connection_limit: int = 10
    bye_maintenance: Reply = Reply("UNAVAILABLE", "Server down for maintenance")
    bye_queue_full: str = "Connection queue full"
    #: An IP allowlist refusing the connection at the greeting (the fault front's).
    bye_access_denied: Reply = Reply("UNAVAILABLE", "Access denied for {ip}.")
    over_soft_quota: Reply = Reply("OVERQUOTA", "You are now over your soft quota")
    bandwidth_exceeded: Reply = Reply("OVERQUOTA", "Account exceeded command or bandwidth limits.")
    #: Google's XOAUTH2 error challenge; None: a bad token is refused at once.
    xoauth2_challenge: str | None = (
        "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="
    )
    xoauth2_failed: Reply = Reply("AUTHENTICATIONFAILED", "Invalid credentials (Failure)")
    auth_aborted: str = "Authentication aborted by client."
    auth_bad_base64: str = "Invalid base64 data in continued response"
    auth_unsupported: str = "Unsupported authentication mechanism."
    plaintext_alert: str = (
        "Plaintext authentication not allowed without SSL/TLS, but your client did it anyway. "
        "If anyone was listening, the password was exposed."
    )
    privacy_required: Reply = Reply(
        "PRIVACYREQUIRED",
        "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
    )
    starttls_ok: str = "Begin TLS negotiation now."
    starttls_active: str = "TLS is already active."
    starttls_unavailable: str = "TLS support isn't enabled."
    unknown_command: str = "Unknown command."
    bad_prefix: str = "Error in IMAP command {command}: {reason}"
    bad_untagged: str = "Error in IMAP command received by server."
    missing_arguments: str = "Missing arguments."
    invalid_arguments: str = "Invalid arguments."
    invalid_messageset: str = "Invalid messageset"
    invalid_uidset: str = "Invalid uidset"
    no_mailbox_selected: str = "No mailbox selected."
    already_logged_in: str = "Already logged in."
    not_logged_in: str = "Please login first."
    nonexistent: Reply = Reply("NONEXISTENT", "Mailbox doesn't exist: {mailbox}")
    #: SELECT, EXAMINE, STATUS and SUBSCRIBE of a missing mailbox: Dovecot sends no code.
    mailbox_missing: Reply = Reply(None, "Mailbox doesn't exist: {mailbox}")
    invalid_mutf7: Reply = Reply(None, "Mailbox name is not valid mUTF-7")
    #: A name's shape refused (its text comes from the store): Dovecot's code for it.
    invalid_name_code: str = "CANNOT"
    name_too_long: Reply = Reply("CANNOT", "Mailbox name too long")
    control_characters: Reply = Reply(
        "CANNOT", "Control characters not allowed in new mailbox names"
    )
    target_exists: Reply = Reply("ALREADYEXISTS", "Target mailbox already exists")
    rename_own_child: Reply = Reply(None, "Can't rename mailbox under its own child.")
    #: Dovecot's Maildir++ layout cannot rename INBOX (RFC 3501 would move its messages).
    rename_inbox: Reply = Reply("CANNOT", "Renaming INBOX isn't supported")
    already_exists: Reply = Reply("ALREADYEXISTS", "Mailbox already exists")
    inbox_delete: Reply = Reply(None, "INBOX can't be deleted.")
    delete_root: Reply = Reply("CANNOT", "Storage root can't be deleted")
    read_only: Reply = Reply(None, "Mailbox is read-only.")
    # Dovecot 2.3 adds its command timing to this tagged NO, as to its OKs.
    over_quota: Reply = Reply(
        "OVERQUOTA", "Quota exceeded (mailbox for user is full) (0.001 + 0.000 secs)."
    )
    too_big: Reply = Reply("TOOBIG", "Mail size is larger than the maximum size allowed")
    server_bug: Reply = Reply(
        "SERVERBUG", "Internal error occurred. Refer to server log for more information."
    )
    # BINARY (RFC 3516), as Dovecot's cmd-fetch.c words its failures.
    unknown_cte: Reply = Reply(
        "UNKNOWN-CTE", "Unknown Content-Transfer-Encoding (0.001 + 0.000 secs)."
    )
    invalid_mime_data: Reply = Reply("PARSE", "Invalid data in MIME part (0.001 + 0.000 secs).")
    fetch_failed: str = (
        "FETCH failed: Internal error occurred. Refer to server log for more information. [{time}]"
    )
    invalid_internaldate: str = "Invalid internal date."
    invalid_flags: str = "Invalid system flag {flag}"
    expunged_fetch: Reply = Reply(
        "EXPUNGEISSUED", "Some of the requested messages no longer exist."
    )
    modified: str = "Conditional store failed"
    no_quota_root: Reply = Reply(None, "Quota root doesn't exist")
    noop: str = "NOOP completed (0.001 + 0.000 secs)."
    check: str = "Check completed (0.001 + 0.000 secs)."
    capability: str = "Capability completed."
    select_ok: str = "Select completed (0.001 + 0.000 secs)."
    examine_ok: str = "Examine completed (0.001 + 0.000 secs)."
    create_ok: str = "Create completed."
    delete_ok: str = "Delete completed."
    rename_ok: str = "Rename completed."
    subscribe_ok: str = "Subscribe completed."
    unsubscribe_ok: str = "Unsubscribe completed."
    list_ok: str = "List completed (0.001 + 0.000 secs)."
    lsub_ok: str = "Lsub completed (0.001 + 0.000 secs)."
    status_ok: str = "Status completed (0.001 + 0.000 secs)."
    # SELECT/EXAMINE parameters (CONDSTORE, QRESYNC): BAD reasons.
    select_non_atoms: str = "SELECT options contain non-atoms."
    select_unknown_option: str = "Unknown SELECT option"
    qresync_not_enabled: str = "QRESYNC not enabled"
    qresync_missing: str = "QRESYNC parameters missing"
    qresync_invalid: str = "Invalid QRESYNC parameters"
    qresync_invalid_known_uids: str = "Invalid QRESYNC known-uids"
    # SEARCH RETURN options (ESEARCH, CONTEXT=SEARCH, PARTIAL): BAD reasons.
    search_return_non_atoms: str = "SEARCH return options contain non-atoms."
    search_return_duplicate_update: str = "SEARCH return options have duplicate UPDATE."
    search_return_unknown: str = "Unknown SEARCH return option"
    search_update_duplicate_tag: str = "Duplicate search update tag"
    partial_twice: str = "PARTIAL can be used only once."
    partial_missing: str = "PARTIAL range missing."
    partial_broken: str = "PARTIAL range broken."
    partial_with_all: str = "PARTIAL conflicts with ALL"
    #: ``* NO [NOUPDATE "tag"]`` past Dovecot's limit of kept CONTEXT=SEARCH updates.
    search_updates_limit: str = "Too many updates"
    invalid_parameters: str = "Invalid parameters."
    store_invalid_item: str = "Invalid STORE parameter {item}"
    thread_unknown_algorithm: str = "Unknown thread algorithm."
    idle_expected_done: str = "Expected DONE."
    # SEARCH programs: our own wording (Dovecot's varies with its parser's state);
    # ``{reason}`` is a sequence set's or a date's own complaint.
    search_expected_string: str = "SEARCH {key}: expected a string, got a list"
    search_expected_atom: str = "SEARCH {key}: expected {what}, got a list"
    search_expected_number: str = "SEARCH {key}: expected a number, got {text!r}"
    search_bad_argument: str = "SEARCH {key}: {reason}"
    search_missing_argument: str = "SEARCH {key}: missing argument"
    search_too_deep: str = "SEARCH program nested deeper than {depth}"
    search_empty_list: str = "SEARCH: empty parenthesised list"
    search_unknown_key: str = "SEARCH: unknown search key {key!r}"
    search_missing_charset: str = "SEARCH CHARSET: missing charset name"
    search_bad_charset: Reply = Reply(
        "BADCHARSET", "SEARCH CHARSET {charset!r}: supported charsets are {supported}"
    )
    search_no_keys: str = "SEARCH: no search keys"
    # SORT programs (cmd-sort.c).
    sort_unknown_key: str = "Unknown sort argument: {key}"
    sort_empty: str = "Empty sort program."
    sort_ends_with_reverse: str = "Sort list ends with REVERSE."
    # FETCH attributes (imap-fetch.c, imap-fetch-body.c); ``{kind}`` is BODY or BINARY.
    fetch_invalid: str = "Invalid fetch attribute"
    fetch_invalid_named: str = "Invalid fetch attribute {attribute}"
    fetch_invalid_section: str = "Invalid {kind}[..] section"
    fetch_unknown_item: str = "Unknown parameter {item}"
    preview_invalid_modifier: str = "Invalid PREVIEW modifier"
    preview_unsupported_modifier: str = "'{modifier}' is not a supported PREVIEW modifier"
    # NOTIFY (RFC 5465); BADEVENT answers bad_notify_events.
    notify_duplicate_selected: str = "Duplicate selected filter"
    notify_too_many_names: Reply = Reply("NOTIFICATIONOVERFLOW", "Too many mailbox names")
    # APPEND's CATENATE (RFC 4469); the BADURL texts end in "." as Dovecot's do.
    catenate_empty: str = "Empty CATENATE list"
    catenate_binary_first: Reply = Reply(
        "UNKNOWN-CTE", "Binary input allowed only when the first part is binary."
    )
    url_invalid: str = "Invalid IMAP URL."
    url_no_mailbox: str = "Mailbox doesn't exist: {mailbox}."
    url_invalid_uidvalidity: str = "Invalid UIDVALIDITY."
    url_no_message: str = "Message not found."
    url_invalid_section: str = "Invalid section."
    status_selected_ok: Reply = Reply("CLIENTBUG", "Status on selected mailbox completed.")
    # LIST's BAD reasons (cmd-list.c, imap-status.c).
    list_unknown_select: str = "Unknown select options"
    list_unknown_return: str = "Unknown return options"
    list_recursivematch_alone: str = "RECURSIVEMATCH must not be the only selection."
    list_non_atoms: str = "List options contains non-atoms."
    list_extra_arguments: str = "Extra arguments."
    list_invalid_reference: str = "Invalid reference."
    list_invalid_pattern: str = "Invalid pattern."
    list_invalid_pattern_list: str = "Invalid pattern list."
    status_empty: str = "Empty status list."
    status_non_atoms: str = "Status list contains non-atoms."
    status_invalid_item: str = "Invalid status item {item}"
    append_ok: str = "Append completed (0.001 + 0.000 secs)."
    close_ok: str = "Close completed."
    unselect_ok: str = "Unselect completed."
    expunge_ok: str = "Expunge completed (0.001 + 0.000 secs)."
    search_ok: str = "Search completed (0.001 + 0.000 secs)."
    sort_ok: str = "Sort completed (0.001 + 0.000 secs)."
    thread_ok: str = "Thread completed (0.001 + 0.000 secs)."
    getacl_ok: str = "Getacl completed."
    myrights_ok: str = "Myrights completed."
    listrights_ok: str = "Listrights completed."
    fetch_ok: str = "Fetch completed (0.001 + 0.000 secs)."
    store_ok: str = "Store completed (0.001 + 0.000 secs)."
    copy_ok: str = "Copy completed (0.001 + 0.000 secs)."
    move_ok: str = "Move completed (0.001 + 0.000 secs)."
    moved_uids: str = "Moved UIDs."
    no_messages_copied: str = "No messages found."
    idle_continuation: str = "idling"
    idle_ok: str = "Idle completed (0.001 + 0.000 secs)."
    namespace_ok: str = "Namespace completed."
    id_ok: str = "ID completed."
    enable_ok: str = "Enabled."
    getquota_ok: str = "Getquota completed."
    getquotaroot_ok: str = "Getquotaroot completed."
    literal_continuation: str = "OK"
    quota_root_name: str = "User quota"
    flags_permitted: str = "Flags permitted."
    read_only_mailbox: str = "Read-only mailbox."
    previous_closed: str = "Previous mailbox closed."
    store_read_only: str = "Store ignored with read-only mailbox."
    uids_valid: str = "UIDs valid"
    predicted_uid: str = "Predicted next UID"
    highest_modseq: str = "Highest"
    notify_ok: str = "NOTIFY completed (0.001 + 0.000 secs)."
    cancelupdate_ok: str = "Updates cancelled."
    unknown_update_tag: str = "Unknown tag."
    bad_notify_events: str = "Unsupported NOTIFY events (0.001 + 0.000 secs)."
    first_unseen: str = "First unseen."
    no_modseq: str = "No permanent modsequences"
    server_id_name: str = "Dovecot"

    def auth_outcome(self, outcome: str) -> Reply:
        """The reply for a failed login, by ``AuthOutcome`` value (``"password-expired"``)."""
        reply = getattr(self, "auth_" + outcome.replace("-", "_"), None)
        return reply if isinstance(reply, Reply) else self.auth_failed

    def bad(self, command: str | None, reason: str) -> str:
        """Dovecot's BAD text: ``Error in IMAP command FETCH: Invalid messageset``."""
        if command is None:
            return reason or self.bad_untagged
        return self.bad_prefix.format(command=command, reason=reason)


DOVECOT = Replies()

_GMAIL_WEB_LOGIN = Reply(
    "ALERT",
    "Please log in via your web browser: "
    "https://support.google.com/mail/accounts/answer/78754 (Failure)",
)
# Gmail's "Temporary System Problem. Try again later" is seen on its SMTP side; its
# IMAP side is assumed to word a temporary refusal the same way.
_GMAIL_TEMPORARY = Reply("UNAVAILABLE", "Temporary System Problem. Try again later. (Failure)")

GMAIL = replace(
    DOVECOT,
    # Source: https://mikeboers.com/blog/2014/10/14/google-status (openssl s_client to
    # imap.gmail.com:993): "* OK Gimap ready for requests from <ip> <id>", no capability
    # code. The id is a per-connection token there; ours is fixed.
    greeting="Gimap ready for requests from {ip} mh01gimap",
    capability_codes=False,
    # Source: https://github.com/zone-eu/wildduck/pull/943 (2025, imap.gmail.com:993):
    # IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 XYZZY SASL-IR
    # AUTH=XOAUTH2 AUTH=PLAIN AUTH=PLAIN-CLIENTTOKEN AUTH=OAUTHBEARER. Not offered here
    # (not implemented): XLIST, X-GM-EXT-1, XYZZY, PLAIN-CLIENTTOKEN, OAUTHBEARER.
    capabilities_before_login=(
        "IMAP4rev1",
        "UNSELECT",
        "IDLE",
        "NAMESPACE",
        "QUOTA",
        "ID",
        "CHILDREN",
        "SASL-IR",
        AUTH_SLOT,
    ),
    # Source: https://archivio-jazzo-blog.m4ss.net/2011/11/14/connessione-imap-gmail-via-shell-osx/
    # (after LOGIN): IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1
    # UIDPLUS COMPRESS=DEFLATE; later lists add ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT
    # LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE (unsourced here, so left out).
    # Not offered: XLIST, X-GM-EXT-1, COMPRESS=DEFLATE.
    capabilities_after_login=(
        "IMAP4rev1",
        "UNSELECT",
        "IDLE",
        "NAMESPACE",
        "QUOTA",
        "ID",
        "CHILDREN",
        "UIDPLUS",
    ),
    auth_failed=Reply("AUTHENTICATIONFAILED", "Invalid credentials (Failure)"),
    auth_app_password_required=Reply(
        "ALERT",
        "Application-specific password required: "
        "https://support.google.com/accounts/answer/185833 (Failure)",
    ),
    auth_web_login_required=_GMAIL_WEB_LOGIN,
    # A hammered Google account is locked behind its web sign-in ("unlock captcha").
    auth_locked_out=_GMAIL_WEB_LOGIN,
    auth_rate_limited=_GMAIL_TEMPORARY,
    auth_backend_down=_GMAIL_TEMPORARY,
    too_many_connections=Reply("ALERT", "Too many simultaneous connections. (Failure)"),
    userip_connection_limit=15,
)

# Exchange Online: every refused login is the bare "LOGIN failed." or
# "AUTHENTICATE failed.", and a temporary refusal is "Server Unavailable. 15".
_OUTLOOK_FAILED = Reply(None, "{command} failed.")
_OUTLOOK_UNAVAILABLE = Reply(None, "Server Unavailable. 15")

# Exchange's IMAP4 service (Exchange Server 2013/2016/2019 and Exchange Online) sends
# capabilities only when asked: "Microsoft Exchange Server does not use the CAPABILITY
# response code" ([MS-STANXIMAP] 2.2.30,
# https://msdn.microsoft.com/en-us/library/ee624969(v=exchg.80).aspx).
_EXCHANGE_AFTER_LOGIN = ("IMAP4", "IMAP4rev1", "UIDPLUS", "MOVE", "ID", "CHILDREN", "IDLE")

OUTLOOK = replace(
    DOVECOT,
    # Exchange Online. Source: https://github.com/jstedfast/MailKit/issues/2016 (2026,
    # outlook.office365.com:993): "* OK Microsoft Exchange IMAP4 service ready. <guid>
    # (tcpproxy/15.21.0406.000 BACKENDAUTHENTICATE) [<stamp>]"; the source redacts the
    # guid and stamp, so those two values are ours.
    greeting="Microsoft Exchange IMAP4 service ready. 6d61696c-6861-726e-6573-733031303130 "
    "(tcpproxy/15.21.0406.000 BACKENDAUTHENTICATE) [TQBBAEkATABIAEEAUgBOAEUAUwBTAA==]",
    capability_codes=False,
    # Source: https://github.com/Cocoanetics/SwiftMail/pull/109 (2026-03-05,
    # outlook.office365.com:993, before login): IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2
    # SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+.
    capabilities_before_login=(
        "IMAP4",
        "IMAP4rev1",
        AUTH_SLOT,
        "SASL-IR",
        "UIDPLUS",
        "MOVE",
        "ID",
        "UNSELECT",
        "CHILDREN",
        "IDLE",
        "NAMESPACE",
        "LITERAL+",
    ),
    # Source: MailKit issue 2016 above, after AUTHENTICATE: the same list plus ENABLE
    # (IMAP4rev2 and Microsoft's CLIENTACCESSRULES, CLIENTNETWORKPRESENCELOCATION,
    # BACKENDAUTHENTICATE[-IR] not offered: not implemented).
    capabilities_after_login=(
        "IMAP4",
        "IMAP4rev1",
        "SASL-IR",
        "UIDPLUS",
        "MOVE",
        "ID",
        "UNSELECT",
        "ENABLE",
        "CHILDREN",
        "IDLE",
        "NAMESPACE",
        "LITERAL+",
    ),
    # Sources: MailKit issue 2016 above ("OK AUTHENTICATE completed.") and
    # https://github.com/jstedfast/MailKit/issues/269 ("OK CAPABILITY completed.").
    logged_in="{command} completed.",
    capability="CAPABILITY completed.",
    auth_failed=_OUTLOOK_FAILED,
    auth_app_password_required=_OUTLOOK_FAILED,
    auth_imap_disabled=_OUTLOOK_FAILED,
    auth_web_login_required=_OUTLOOK_FAILED,
    auth_password_expired=_OUTLOOK_FAILED,
    auth_account_disabled=_OUTLOOK_FAILED,
    auth_locked_out=_OUTLOOK_FAILED,
    auth_rate_limited=_OUTLOOK_UNAVAILABLE,
    auth_backend_down=_OUTLOOK_UNAVAILABLE,
    backend_maintenance=_OUTLOOK_UNAVAILABLE,
    login_disabled=_OUTLOOK_FAILED,
    xoauth2_failed=_OUTLOOK_FAILED,
    xoauth2_challenge=None,
)

# Exchange Server 2013/2016 on premises: the same login refusals as Exchange Online
# (unsourced for on-premises: assumed the same service code), its own greeting and lists.
EXCHANGE = replace(
    OUTLOOK,
    # Sources: https://github.com/jstedfast/MailKit/issues/269 (hosted Exchange, 143) and
    # https://github.com/jakartaee/mail-api/issues/485 (Exchange 2013, 993):
    # "* OK The Microsoft Exchange IMAP4 service is ready."
    greeting="The Microsoft Exchange IMAP4 service is ready.",
    # Same sources: before STARTTLS "IMAP4 IMAP4rev1 LOGINDISABLED STARTTLS UIDPLUS MOVE
    # ID CHILDREN IDLE NAMESPACE LITERAL+"; after it "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=NTLM
    # AUTH=GSSAPI UIDPLUS MOVE ID CHILDREN IDLE NAMESPACE LITERAL+". Not offered here (not
    # implemented): AUTH=NTLM, AUTH=GSSAPI.
    capabilities_before_login=(
        "IMAP4",
        "IMAP4rev1",
        AUTH_SLOT,
        "UIDPLUS",
        "MOVE",
        "ID",
        "CHILDREN",
        "IDLE",
        "NAMESPACE",
        "LITERAL+",
    ),
    # After login: unsourced; the list without its AUTH entries, as Exchange Online's.
    capabilities_after_login=(*_EXCHANGE_AFTER_LOGIN, "NAMESPACE", "LITERAL+"),
)

# Yahoo's IMAP lockout is assumed to carry the code of its SMTP one.
YAHOO = replace(
    DOVECOT,
    # Source: https://github.com/zone-eu/wildduck/pull/943 (2025, imap.mail.yahoo.com:993):
    # IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER ID MOVE NAMESPACE
    # XYMHIGHESTMODSEQ UIDPLUS LITERAL+ CHILDREN UNSELECT X-MSG-EXT OBJECTID IDLE ENABLE
    # UIDONLY X-ALL-MAIL X-UIDONLY LIST-EXTENDED LIST-STATUS SPECIAL-USE PARTIAL
    # APPENDLIMIT=41697280. Not offered (not implemented): OAUTHBEARER, XYMHIGHESTMODSEQ,
    # X-MSG-EXT, OBJECTID, UIDONLY, X-ALL-MAIL, X-UIDONLY, PARTIAL; APPENDLIMIT comes
    # from the scenario. The greeting is unsourced: Dovecot's is kept.
    capabilities_before_login=(
        "IMAP4rev1",
        "SASL-IR",
        AUTH_SLOT,
        "ID",
        "MOVE",
        "NAMESPACE",
        "UIDPLUS",
        "LITERAL+",
        "CHILDREN",
        "UNSELECT",
        "IDLE",
        "ENABLE",
        "LIST-EXTENDED",
        "LIST-STATUS",
        "SPECIAL-USE",
    ),
    auth_locked_out=Reply("AUTHENTICATIONFAILED", "(#AUTH005) Too many bad auth attempts."),
)

# iCloud: unsourced; Dovecot's greeting and lists are kept.
ICLOUD = DOVECOT

BY_PERSONALITY: dict[str, Replies] = {
    "dovecot": DOVECOT,
    "gmail": GMAIL,
    "outlook": OUTLOOK,
    "exchange": EXCHANGE,
    "yahoo": YAHOO,
    "icloud": ICLOUD,
}


def for_personality(name: str) -> Replies:
    """The stock replies of a personality; an unknown name suggests the closest."""
    return pick(BY_PERSONALITY, name)
