"""Settings of one fake IMAP server, named after the Dovecot settings they mimic."""

from __future__ import annotations

import functools
import ipaddress

from mailharness.servers.errors import ConfigError, choice_error
from mailharness.servers.imap.parser_limits import (
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_MIME_DEPTH,
    DEFAULT_MAX_MIME_PARTS,
    ParserLimits,
)
from mailharness.servers.imap.protocol import (
    MAX_APPEND_BYTES,
    MAX_LINE_BYTES,
    MAX_LITERAL_BYTES,
    MAX_LOGIN_COMMAND_BYTES,
    MAX_TAG_BYTES,
)
from mailharness.servers.imap.replies import PERSONALITIES, Replies, for_personality
from mailharness.servers.records import record

__all__ = ["KNOWN_MECHANISMS", "PERSONALITIES", "QUEUE_FULL_MODES", "IMAPSettings"]

KNOWN_MECHANISMS = ("PLAIN", "LOGIN", "XOAUTH2")
#: Dovecot's imap "autologout" is 30 minutes; tests shorten it when they need to.
DEFAULT_IDLE_TIMEOUT = 30 * 60.0
#: Dovecot's login process drops a client that has not logged in within
#: ``CLIENT_LOGIN_TIMEOUT_MSECS`` (``MASTER_LOGIN_TIMEOUT_SECS``, 3 minutes,
#: counted from connect, not from the last command): ``* BYE Disconnected for
#: inactivity.``
DEFAULT_LOGIN_TIMEOUT = 3 * 60.0
#: What a connection beyond ``max_connections`` meets: ``* BYE Connection queue
#: full`` and a close, or (``"hang"``) no greeting until a slot frees, as when a
#: server's process limit is reached and the kernel's listen queue holds it.
QUEUE_FULL_MODES = ("bye", "hang")
#: Dovecot's mailbox name limits (lib-storage): see the IMAPSettings fields.
DEFAULT_MAILBOX_NAME_MAX_BYTES = 4096
DEFAULT_MAILBOX_LEVEL_MAX_BYTES = 255
DEFAULT_MAILBOX_MAX_LEVELS = 127


@record
class IMAPSettings:
    """What a scenario varies about the IMAP server; vary with ``dataclasses.replace``.

    ``failure_delay`` is Dovecot's ``auth_failure_delay`` (2 s there; 0 by
    default here so failing-login tests stay fast). ``personality`` picks the
    provider's wording (``replies.PERSONALITIES``); ``replies`` replaces it
    with custom wording. Read the wording in force from :attr:`texts`.

    >>> IMAPSettings(personality="gmail").texts.too_many_connections.text
    'Too many simultaneous connections. (Failure)'
    """

    #: The server's name in replies (Dovecot's hostname).
    hostname: str = "localhost"
    #: Whose wording and limits: dovecot, gmail, outlook, exchange, yahoo or icloud.
    personality: str = "dovecot"
    replies: Replies | None = None  # None: the personality's
    #: Dovecot's ``disable_plaintext_auth`` (``yes`` by default there too): before
    #: TLS the capability carries LOGINDISABLED and LOGIN gets ``NO [PRIVACYREQUIRED]``.
    #: False only for a scenario that allows plaintext credentials (``plaintext-only``).
    plaintext_auth_requires_tls: bool = True
    #: SASL mechanisms advertised and accepted (PLAIN, LOGIN, XOAUTH2).
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    #: Advertise LOGINDISABLED and refuse LOGIN even over TLS (an OAuth-only
    #: provider: pair with ``auth_mechanisms=("XOAUTH2",)``).
    login_disabled: bool = False
    #: Seconds before a failed login is answered (Dovecot's auth_failure_delay, 2 s there).
    failure_delay: float = 0.0
    greeting: str | None = None  # None: the personality's text
    #: Seconds before the greeting. Stock Dovecot spawns a login process per connection
    #: and greets in ~5 ms (0.005 mimics it); our default answers at once.
    greeting_delay: float = 0.0
    #: Seconds without a command before `* BYE Disconnected for inactivity.` (Dovecot: 30 min).
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    #: Seconds from connect to a successful login (see ``DEFAULT_LOGIN_TIMEOUT``).
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT
    #: Dovecot's ``imap_max_line_length`` (64 KiB): a whole command after login,
    #: literals included, except APPEND's messages.
    max_line_bytes: int = MAX_LINE_BYTES
    #: One APPEND message (Dovecot has no default cap; 64 MiB here).
    max_literal_bytes: int = MAX_LITERAL_BYTES
    #: All APPEND messages of one MULTIAPPEND command together (held in memory).
    max_append_bytes: int = MAX_APPEND_BYTES
    #: Dovecot's ``IMAP_LOGIN_MAX_LINE_LENGTH`` (8 KiB): a whole command before
    #: login, literals included; past it ``* BYE Literal size too large`` /
    #: ``* BYE Input buffer full, aborting`` and the connection is closed.
    max_login_command_bytes: int = MAX_LOGIN_COMMAND_BYTES
    #: Dovecot's ``IMAP_TAG_MAX_LEN`` (126): a longer tag before login is answered
    #: ``* BAD Error in IMAP command received by server.``; no guessed tag longer
    #: than this is ever echoed in an error reply.
    max_tag_bytes: int = MAX_TAG_BYTES
    #: Advertise ACL (RFC 4314) with owner-only rights, as Dovecot's acl plugin does.
    acl: bool = False
    #: New connections are greeted ``* BYE [UNAVAILABLE] Server down for maintenance``.
    maintenance: bool = False
    #: Right credentials get ``NO [UNAVAILABLE] User's backend down for maintenance``.
    backend_maintenance: bool = False
    #: Dovecot's ``mail_max_userip_connections``: sessions of one user from one
    #: address, checked after login (the personality's real value is
    #: ``texts.userip_connection_limit``). None: no limit.
    max_userip_connections: int | None = None
    #: Greeted connections at once, server-wide; see ``QUEUE_FULL_MODES``. None:
    #: a quarter of the process's open-file limit (``listeners.default_connection_cap``),
    #: as Dovecot's ``default_client_limit`` keeps a login process inside its fds.
    max_connections: int | None = None
    #: What a connection over max_connections meets: bye (`* BYE Connection queue full`) or hang
    #: (no greeting until a slot frees).
    queue_full_mode: str = "bye"
    #: A soft storage quota in bytes: an APPEND that leaves the user above it
    #: succeeds with ``OK [OVERQUOTA] You are now over your soft quota``.
    soft_quota_bytes: int | None = None
    #: FETCH response bytes one session may receive; past them FETCH answers
    #: ``NO [OVERQUOTA] Account exceeded command or bandwidth limits.`` (Gmail).
    fetch_byte_limit: int | None = None
    #: tcpwrap-style allowlist: connections from elsewhere are closed ungreeted.
    allowed_networks: tuple[str, ...] | None = None
    #: Longest mailbox name CREATE and RENAME accept, in UTF-8 bytes: Dovecot's
    #: MAILBOX_LIST_NAME_MAX_LENGTH (PATH_MAX, 4096 on Linux). Longer ones get
    #: ``NO [CANNOT] Mailbox name too long``.
    mailbox_name_max_bytes: int = DEFAULT_MAILBOX_NAME_MAX_BYTES
    #: Longest level of a name (between delimiters): Dovecot's
    #: MAILBOX_MAX_HIERARCHY_NAME_LENGTH, 255 bytes; same refusal.
    mailbox_level_max_bytes: int = DEFAULT_MAILBOX_LEVEL_MAX_BYTES
    #: Deepest hierarchy CREATE and RENAME accept; same refusal. Dovecot 2.3 has
    #: no setting for it: its default Maildir++ layout keeps ``a/b/c`` in one
    #: directory ``.a.b.c``, which the filesystem caps at 255 bytes (NAME_MAX),
    #: so no mailbox there is deeper than 127 levels.
    mailbox_max_levels: int = DEFAULT_MAILBOX_MAX_LEVELS
    #: Dovecot's MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS (100): a multipart or
    #: message/rfc822 part this deep is not descended into and shows in BODYSTRUCTURE
    #: as application/octet-stream; the message itself is kept whole.
    max_mime_depth: int = DEFAULT_MAX_MIME_DEPTH
    #: Dovecot's MESSAGE_PARSER_DEFAULT_MAX_TOTAL_MIME_PARTS (10,000): after this many
    #: parts no further boundary is looked for, and the last part runs to the end.
    max_mime_parts: int = DEFAULT_MAX_MIME_PARTS
    #: Bytes of one structured header value (From, To, Content-Type, ...) that
    #: ENVELOPE, BODYSTRUCTURE, SEARCH and SORT read; the rest is ignored (64 KiB,
    #: Dovecot's imap_max_line_length), so a hostile header cannot stall the server.
    #: Like Dovecot, whose index cache keeps a message's BODYSTRUCTURE and ENVELOPE,
    #: a change of these three reaches messages not yet fetched.
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __post_init__(self) -> None:
        mechanisms = tuple(m.upper() for m in self.auth_mechanisms)
        for mech in mechanisms:
            if mech not in KNOWN_MECHANISMS:
                raise ConfigError(
                    f"auth_mechanisms={self.auth_mechanisms!r}: {mech!r} is not one of "
                    + ", ".join(repr(m) for m in KNOWN_MECHANISMS)
                )
        object.__setattr__(self, "auth_mechanisms", mechanisms)
        for_personality(self.personality)
        if self.replies is not None and not isinstance(self.replies, Replies):
            raise ConfigError(f"replies={self.replies!r}: expected a Replies or None")
        if self.failure_delay < 0:
            raise ConfigError(f"failure_delay={self.failure_delay!r}: expected >= 0 seconds")
        if self.greeting_delay < 0:
            raise ConfigError(f"greeting_delay={self.greeting_delay!r}: expected >= 0 seconds")
        if self.idle_timeout <= 0:
            raise ConfigError(f"idle_timeout={self.idle_timeout!r}: expected > 0 seconds")
        if self.login_timeout <= 0:
            raise ConfigError(f"login_timeout={self.login_timeout!r}: expected > 0 seconds")
        for name in ("max_append_bytes", "max_login_command_bytes"):
            if getattr(self, name) < 1024:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected >= 1024")
        if self.max_tag_bytes < 1:
            raise ConfigError(f"max_tag_bytes={self.max_tag_bytes!r}: expected >= 1")
        if self.max_line_bytes < 1024:
            raise ConfigError(f"max_line_bytes={self.max_line_bytes!r}: expected >= 1024")
        if self.max_literal_bytes < 1:
            raise ConfigError(f"max_literal_bytes={self.max_literal_bytes!r}: expected >= 1")
        for name in (
            "mailbox_name_max_bytes",
            "mailbox_level_max_bytes",
            "mailbox_max_levels",
            "max_mime_depth",
            "max_mime_parts",
            "max_header_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected >= 1")
        for name in ("max_userip_connections", "max_connections"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value!r}: expected >= 1 or None")
        for name in ("soft_quota_bytes", "fetch_byte_limit"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name}={value!r}: expected >= 0 bytes or None")
        if self.queue_full_mode not in QUEUE_FULL_MODES:
            raise choice_error("queue_full_mode", self.queue_full_mode, QUEUE_FULL_MODES)
        if self.allowed_networks is not None:
            if isinstance(self.allowed_networks, str):
                raise ConfigError(
                    f"allowed_networks={self.allowed_networks!r}: expected a tuple of "
                    "networks like ('127.0.0.1/32',)"
                )
            for net in self.allowed_networks:
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"allowed_networks entry {net!r}: expected a network like '127.0.0.1/32'"
                    ) from None
            object.__setattr__(self, "allowed_networks", tuple(self.allowed_networks))

    @property
    def parser_limits(self) -> ParserLimits:
        """The message-parser limits, as the shell puts them in force (parser_limits)."""
        return _parser_limits(self.max_mime_depth, self.max_mime_parts, self.max_header_bytes)

    @property
    def texts(self) -> Replies:
        """The wording in force: ``replies`` if given, else the personality's."""
        return self.replies if self.replies is not None else for_personality(self.personality)

    def allows(self, address: str) -> bool:
        """Is a client at ``address`` inside ``allowed_networks`` (always, when unset)?"""
        if self.allowed_networks is None:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)


@functools.lru_cache(maxsize=32)
def _parser_limits(depth: int, parts: int, header_bytes: int) -> ParserLimits:
    """One ParserLimits per set of values: each connection asks for it (twice), and
    the parse caches compare it on every lookup."""
    return ParserLimits(depth, parts, header_bytes)
