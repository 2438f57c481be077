"""APPEND with MULTIAPPEND (RFC 3502), CATENATE (RFC 4469) and URL-PARTIAL (RFC 5550).

As Dovecot 2.3 does it: every message of one APPEND is composed and checked
before any is saved; CATENATE's URL parts name messages of the same user
(``/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]``, or the
same as an absolute ``imap://`` URL, whose server part is not checked); a bad
URL is ``NO [BADURL url] reason.``; a literal8 TEXT part is allowed only
when the first part is one, else ``NO [UNKNOWN-CTE]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from mailharness.servers.imap import message as mime
from mailharness.servers.imap.binary import binary_to_base64
from mailharness.servers.imap.commands import Fail
from mailharness.servers.imap.protocol import Command, Literal8, Token
from mailharness.servers.imap.responses import Status

if TYPE_CHECKING:
    from mailharness.servers.imap.session import Session

__all__ = ["PendingMessage", "parse_append"]

_PART_RE = re.compile(r"[1-9][0-9]{0,9}")


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """One message of an APPEND, composed and ready to save."""

    data: bytes
    flags: list[str]
    date: datetime | None


def parse_append(s: Session, cmd: Command, args: list[Token]) -> list[PendingMessage]:
    """The messages of ``APPEND box`` after the mailbox name; raises :class:`Fail`.

    Each is ``[flags] [date-time] (literal / CATENATE (parts))``. URLs are
    resolved here, so nothing is saved when any message is refused.
    """
    pending: list[tuple[list[str], datetime | None, Token, Token | None]] = []
    i = 0
    while i < len(args):
        flags: list[str] = []
        date: datetime | None = None
        if isinstance(args[i], list):
            flags = s.parse_flags(cmd, args[i])
            i += 1
        if i + 1 < len(args) and isinstance(args[i], bytes | str) and _is_date_slot(args, i):
            try:
                date = mime.parse_internaldate(s.astring(cmd, args[i]))
            except ValueError:
                raise s.bad(cmd, s.replies.invalid_internaldate) from None
            i += 1
        if i >= len(args):
            raise s.bad(cmd, s.replies.invalid_arguments)
        token = args[i]
        if isinstance(token, str) and token.upper() == "CATENATE":
            if i + 1 >= len(args) or not isinstance(args[i + 1], list):
                raise s.bad(cmd, s.replies.invalid_arguments)
            parts = args[i + 1]
            if not parts:
                raise s.bad(cmd, s.replies.catenate_empty)
            pending.append((flags, date, "CATENATE", parts))
            i += 2
        elif isinstance(token, bytes):
            pending.append((flags, date, token, None))
            i += 1
        else:
            raise s.bad(cmd, s.replies.invalid_arguments)
    if not pending:
        raise s.bad(cmd, s.replies.invalid_arguments)
    out: list[PendingMessage] = []
    for flags, date, token, catenate in pending:
        if catenate is None:
            assert isinstance(token, bytes)
            data = binary_to_base64(token) if isinstance(token, Literal8) else token
        else:
            assert isinstance(catenate, list)
            data = _catenate(s, cmd, catenate)
        out.append(PendingMessage(data, flags, date))
    return out


def _is_date_slot(args: list[Token], i: int) -> bool:
    """Whether ``args[i]`` is a date-time: a short string before a message.

    Dovecot tells a quoted date from a message literal by its type; our
    tokens are both bytes, and a date-time is short and one line, a message
    (``APPEND box {85} {85}``) hardly ever.
    """
    token, after = args[i], args[i + 1]
    text = token if isinstance(token, bytes) else str(token).encode()
    if isinstance(token, Literal8) or len(text) > 64 or b"\n" in text:
        return False
    if isinstance(after, str):
        return after.upper() == "CATENATE"
    return isinstance(after, bytes)


def _catenate(s: Session, cmd: Command, parts: list[Token]) -> bytes:
    if len(parts) % 2:
        raise s.bad(cmd, s.replies.invalid_arguments)
    first_binary = isinstance(parts[1], Literal8) if parts else False
    chunks: list[bytes] = []
    for kind, value in zip(parts[::2], parts[1::2], strict=True):
        name = kind.upper() if isinstance(kind, str) else ""
        if name == "TEXT" and isinstance(value, bytes):
            if isinstance(value, Literal8) and not first_binary:
                reply = s.replies.catenate_binary_first
                raise Fail(Status.NO, reply.text, reply.code)
            chunks.append(bytes(value))
        elif name == "URL" and isinstance(value, bytes | str):
            chunks.append(_resolve(s, cmd, s.astring(cmd, value)))
        else:
            raise s.bad(cmd, s.replies.invalid_arguments)
    data = b"".join(chunks)
    return binary_to_base64(data) if first_binary else data


def _bad_url(url: str, text: str) -> Fail:
    return Fail(Status.NO, text, f"BADURL {url}")


def _resolve(s: Session, cmd: Command, url: str) -> bytes:
    """The bytes an IMAP URL (RFC 5092) with URL-PARTIAL names, in this user's mailboxes."""
    path = url
    if path.lower().startswith("imap://"):
        slash = path.find("/", 7)
        path = path[slash:] if slash >= 0 else ""
    if not path.startswith("/") or "/;" not in path:
        raise _bad_url(url, s.replies.url_invalid)
    mailbox, *params = path[1:].split("/;")
    name_part, _, validity = mailbox.partition(";")
    name = unquote_to_bytes(name_part).decode("utf-8", "replace")
    values: dict[str, str] = {}
    for param in params:
        key, eq, value = param.partition("=")
        if not eq or key.lower() not in ("uid", "section", "partial") or key.lower() in values:
            raise _bad_url(url, s.replies.url_invalid)
        values[key.lower()] = unquote_to_bytes(value).decode("utf-8", "replace")
    uid_text = values.get("uid", "")
    if not uid_text.isdigit() or not 0 < int(uid_text) < 2**32:
        raise _bad_url(url, s.replies.url_invalid)
    box = s.mailbox(name)
    if box is None:
        raise _bad_url(url, s.replies.url_no_mailbox.format(mailbox=name))
    if validity:
        key, _, number = validity.partition("=")
        if key.lower() != "uidvalidity" or not number.isdigit():
            raise _bad_url(url, s.replies.url_invalid)
        if int(number) != box.uidvalidity:
            raise _bad_url(url, s.replies.url_invalid_uidvalidity)
    found = box.get_many([int(uid_text)])
    if not found:
        raise _bad_url(url, s.replies.url_no_message)
    data = _section(url, found[0].raw, values.get("section", ""), s.replies.url_invalid_section)
    partial = values.get("partial")
    if partial is not None:
        match = re.fullmatch(r"(\d{1,10})(?:\.(\d{1,10}))?", partial)
        if match is None:
            raise _bad_url(url, s.replies.url_invalid)
        start = int(match.group(1))
        length = match.group(2)
        data = data[start : None if length is None else start + int(length)]
    return data


def _section(url: str, raw: bytes, section: str, invalid: str) -> bytes:
    if not section:
        return mime.section(raw, ())
    numbers: list[int] = []
    rest = section.upper()
    while rest:
        head, _, tail = rest.partition(".")
        if _PART_RE.fullmatch(head):
            numbers.append(int(head))
            rest = tail
            continue
        break
    kind: str | None = None
    fields: tuple[str, ...] = ()
    if rest:
        kind, _, names = rest.partition(" ")
        if kind not in ("HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            raise _bad_url(url, invalid)
        if kind.startswith("HEADER.FIELDS"):
            if not (names.startswith("(") and names.endswith(")")):
                raise _bad_url(url, invalid)
            fields = tuple(names[1:-1].split())
        elif names or (kind == "MIME" and not numbers):
            raise _bad_url(url, invalid)
    return mime.section(raw, tuple(numbers), kind, fields)
