"""How much of a message the parser reads: Dovecot's message-parser limits, as settings.

A hostile message must not make one FETCH or SEARCH cost more than bounded memory
and time, and a scenario may want other values than Dovecot's (to show a connector
a truncated structure). The limits are per server, but the parsing functions are
called from dozens of places that know nothing of a server, so the asyncio shell
puts a connection's limits in a context variable at each entry into the core (each
step of a command, each IDLE or NOTIFY update). Each server runs its own event loop
thread, and a context variable is per thread, so servers with different limits in
one process never see each other's. Code outside any server gets the defaults.
"""

from __future__ import annotations

from contextvars import ContextVar

from mailharness.servers.records import record

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_MIME_DEPTH",
    "DEFAULT_MAX_MIME_PARTS",
    "ParserLimits",
    "current",
    "use",
]

#: Dovecot's MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS.
DEFAULT_MAX_MIME_DEPTH = 100
#: Dovecot's MESSAGE_PARSER_DEFAULT_MAX_TOTAL_MIME_PARTS.
DEFAULT_MAX_MIME_PARTS = 10_000
#: How much of one structured header value (addresses, Content-Type,
#: Content-Disposition, Content-Language) ENVELOPE, BODYSTRUCTURE, SEARCH and SORT
#: read: Dovecot's own imap_max_line_length. Parsing is linear but costs about a
#: microsecond per token in Python; a hostile 2 MiB From: of commas would otherwise
#: hold the event loop for seconds. Real address lists (a thousand recipients is
#: ~40 KiB) fit.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024


@record(kw_only=False)
class ParserLimits:
    """The three limits; hashable, so parse caches key on them with the message."""

    max_mime_depth: int = DEFAULT_MAX_MIME_DEPTH
    max_mime_parts: int = DEFAULT_MAX_MIME_PARTS
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES


#: Dovecot's limits: what code outside any server parses with.
DEFAULT_LIMITS = ParserLimits()

_CURRENT: ContextVar[ParserLimits] = ContextVar("mailharness_parser_limits", default=DEFAULT_LIMITS)


def current() -> ParserLimits:
    """The limits in force for the code running now (see the module docstring)."""
    return _CURRENT.get()


def use(limits: ParserLimits) -> None:
    """Put ``limits`` in force for the current context (one connection's task).

    The shell calls this before every step of a command: setting a context variable
    costs an allocation, reading it does not, so it is set only when it changes."""
    if _CURRENT.get() is not limits:
        _CURRENT.set(limits)
