"""FETCH attributes: parse the client's list once, render each message fast.

A FETCH over 10,000 messages is the hot path of every sync tool, so the
attribute list is compiled into a tuple of small render functions and each
response line is one ``b"".join``. ENVELOPE and BODYSTRUCTURE bytes are
cached in ``StoredMessage.cache``: they never change for a stored message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mailharness.servers.imap import message as mime
from mailharness.servers.imap.binary import binary_section, binary_size
from mailharness.servers.imap.protocol import Token
from mailharness.servers.imap.replies import DOVECOT, Replies
from mailharness.servers.imap.snippet import PreviewError, compile_preview
from mailharness.servers.imap.store import StoredMessage

Fetched = StoredMessage

__all__ = ["FetchError", "FetchPlan", "Fetched", "compile_fetch", "flags_bytes"]


Render = Callable[[Fetched], bytes]


class FetchError(ValueError):
    """A FETCH attribute the client spelled wrong; the message is the BAD text."""


@dataclass(frozen=True, slots=True)
class FetchPlan:
    renders: tuple[Render, ...]
    #: BODY[...] / RFC822 / RFC822.TEXT without PEEK: sets \\Seen (RFC 3501 §6.4.5).
    sets_seen: bool
    has_uid: bool
    has_flags: bool
    has_modseq: bool

    def with_uid(self) -> FetchPlan:
        """UID FETCH always reports the UID (RFC 3501 §6.4.8)."""
        if self.has_uid:
            return self
        return FetchPlan(
            (_uid, *self.renders), self.sets_seen, True, self.has_flags, self.has_modseq
        )

    def with_flags(self) -> FetchPlan:
        if self.has_flags:
            return self
        return FetchPlan(
            (*self.renders, _flags), self.sets_seen, self.has_uid, True, self.has_modseq
        )

    def bind_flags(self, render: Render) -> FetchPlan:
        """FLAGS rendered by `render`: a session adds its own \\Recent."""
        renders = tuple(render if r is _flags else r for r in self.renders)
        return FetchPlan(renders, self.sets_seen, self.has_uid, self.has_flags, self.has_modseq)

    def with_modseq(self) -> FetchPlan:
        if self.has_modseq:
            return self
        return FetchPlan(
            (*self.renders, _modseq), self.sets_seen, self.has_uid, self.has_flags, True
        )


# Dovecot's order: system flags first, in this order, then keywords (here: sorted).
_SYSTEM_FLAG_ORDER = {
    flag: rank
    for rank, flag in enumerate(
        ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
    )
}


def _flag_key(flag: str) -> tuple[int, str]:
    return (_SYSTEM_FLAG_ORDER.get(flag, len(_SYSTEM_FLAG_ORDER)), flag)


def flags_bytes(flags: Any) -> bytes:
    """A parenthesised flag list in a stable order (a set's order varies per process)."""
    return b"(" + " ".join(sorted(flags, key=_flag_key)).encode() + b")"


def _uid(msg: Fetched) -> bytes:
    return b"UID %d" % msg.uid


def _flags(msg: Fetched) -> bytes:
    return b"FLAGS " + flags_bytes(msg.flags)


def _modseq(msg: Fetched) -> bytes:
    return b"MODSEQ (%d)" % msg.modseq


def _savedate(msg: Fetched) -> bytes:
    """RFC 8514; a synthetic message was "saved" when it was made: its internal date."""
    when = mime.format_internaldate(msg.savedate or msg.internaldate)
    text = when.encode() if isinstance(when, str) else bytes(when)
    return b"SAVEDATE " + (text if text.startswith(b'"') else b'"' + text + b'"')


def _size(msg: Fetched) -> bytes:
    return b"RFC822.SIZE %d" % msg.size


def _internaldate(msg: Fetched) -> bytes:
    cached: bytes | None = msg.cache.get("internaldate")
    if cached is None:
        text = mime.format_internaldate(msg.internaldate)
        value = text.encode() if isinstance(text, str) else bytes(text)
        if not value.startswith(b'"'):
            value = b'"' + value + b'"'
        cached = msg.cache["internaldate"] = b"INTERNALDATE " + value
    return cached


def _envelope(msg: Fetched) -> bytes:
    cached: bytes | None = msg.cache.get("envelope")
    if cached is None:
        cached = msg.cache["envelope"] = b"ENVELOPE " + mime.envelope(msg.raw)
    return cached


def _bodystructure(msg: Fetched) -> bytes:
    cached: bytes | None = msg.cache.get("bodystructure")
    if cached is None:
        cached = msg.cache["bodystructure"] = b"BODYSTRUCTURE " + mime.bodystructure(msg.raw)
    return cached


def _body(msg: Fetched) -> bytes:
    cached: bytes | None = msg.cache.get("body")
    if cached is None:
        cached = msg.cache["body"] = b"BODY " + mime.bodystructure(msg.raw, extensible=False)
    return cached


def _literal(name: bytes, data: bytes) -> bytes:
    return b"%s {%d}\r\n%s" % (name, len(data), data)


def _literal8(name: bytes, data: bytes) -> bytes:
    """RFC 3516 ``~{n}``, which may carry NULs and bare line ends."""
    return b"%s ~{%d}\r\n%s" % (name, len(data), data)


def _binary_size(
    spec: str, part: tuple[int, ...], kind: str | None, fields: tuple[str, ...]
) -> Render:
    """``BINARY.SIZE[section]``; Dovecot ignores a ``<partial>`` after it."""
    name = b"BINARY.SIZE[" + spec.encode() + b"]"

    def render(msg: Fetched) -> bytes:
        if kind is None:
            return b"%s %d" % (name, binary_size(msg.raw, part))
        return b"%s %d" % (name, len(mime.section(msg.raw, part, kind, fields)))

    return render


def _whole(name: bytes) -> Render:
    def render(msg: Fetched) -> bytes:
        return b"%s {%d}\r\n" % (name, len(msg.raw)) + msg.raw

    return render


_SIMPLE: dict[str, tuple[Render, str]] = {
    "UID": (_uid, "uid"),
    "FLAGS": (_flags, "flags"),
    "MODSEQ": (_modseq, "modseq"),
    "RFC822.SIZE": (_size, ""),
    "SAVEDATE": (_savedate, ""),
    "INTERNALDATE": (_internaldate, ""),
    "ENVELOPE": (_envelope, ""),
    "BODYSTRUCTURE": (_bodystructure, ""),
    "BODY": (_body, ""),
}

_MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}

_SECTION_RE = re.compile(
    r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d+)(?:\.(\d+))?>)?$",
    re.I,
)
_KINDS = ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT", "MIME")


def _section(token: str, replies: Replies) -> tuple[Render, bool]:
    match = _SECTION_RE.match(token)
    if match is None:
        raise FetchError(replies.fetch_invalid_named.format(attribute=token))
    verb, spec, start_text, length_text = match.groups()
    verb = verb.upper()
    spec_upper = spec.upper()
    base = b"BINARY" if verb.startswith("BINARY") else b"BODY"
    # Dovecot's imap_fetch_body_init / imap_fetch_binary_init wording.
    invalid = replies.fetch_invalid_section.format(kind=base.decode())
    part: list[int] = []
    kind: str | None = None
    fields: tuple[str, ...] = ()
    rest = spec_upper
    while rest:
        head, _dot, tail = rest.partition(".")
        if head.isdigit() and int(head) > 0:
            part.append(int(head))
            rest = tail
            continue
        for candidate in _KINDS:
            if rest == candidate or rest.startswith(candidate + " "):
                kind = candidate
                fields_text = rest[len(candidate) :].strip()
                break
        else:
            raise FetchError(invalid)
        if kind.startswith("HEADER.FIELDS"):
            if not (fields_text.startswith("(") and fields_text.endswith(")")):
                raise FetchError(invalid)
            fields = tuple(f.strip('"') for f in fields_text[1:-1].split())
            if not fields:
                raise FetchError(invalid)
        elif fields_text:
            raise FetchError(invalid)
        if kind == "MIME" and not part:
            raise FetchError(invalid)
        break
    part_t = tuple(part)
    if verb == "BINARY.SIZE":
        return _binary_size(spec_upper, part_t, kind, fields), False
    name = base + b"[" + spec_upper.encode() + b"]"
    sets_seen = not verb.endswith("PEEK")
    if start_text is not None:
        start = int(start_text)
        length = int(length_text) if length_text is not None else None
        name += b"<%d>" % start
    else:
        start, length = 0, None

    if base == b"BINARY" and kind is None:
        # Dovecot answers BINARY[n.MIME] and friends like BODY; only whole
        # parts are decoded (imap_msgpart_open's decode_cte_to_binary).
        def binary(msg: Fetched) -> bytes:
            data, literal8 = binary_section(msg.raw, part_t)
            if start or length is not None:
                data = data[start : None if length is None else start + length]
            return _literal8(name, data) if literal8 else _literal(name, data)

        return binary, sets_seen

    def render(msg: Fetched) -> bytes:
        if not part_t and kind is None:
            data = msg.raw
        else:
            data = mime.section(msg.raw, part_t, kind, fields)
        if start or length is not None:
            data = data[start : None if length is None else start + length]
        return _literal(name, data)

    return render, sets_seen


def compile_fetch(spec: Token, replies: Replies = DOVECOT) -> FetchPlan:
    """Compile ``ALL`` / ``(UID FLAGS BODY.PEEK[HEADER])`` into a :class:`FetchPlan`."""
    items: Sequence[Token]
    if isinstance(spec, list):
        items = spec
    elif isinstance(spec, str) and spec.upper() in _MACROS:
        items = list(_MACROS[spec.upper()])
    else:
        items = [spec]
    if not items:
        raise FetchError(replies.fetch_invalid_named.format(attribute="()"))
    renders: list[Render] = []
    sets_seen = has_uid = has_flags = has_modseq = False
    pending = list(items)
    pending.reverse()
    while pending:
        item = pending.pop()
        if not isinstance(item, str):
            raise FetchError(replies.fetch_invalid)
        upper = item.upper()
        simple = _SIMPLE.get(upper)
        if upper in ("PREVIEW", "SNIPPET"):
            modifiers: Token = pending.pop() if pending and isinstance(pending[-1], list) else []
            try:
                render = compile_preview(upper, modifiers, replies)
            except PreviewError as exc:
                raise FetchError(str(exc)) from None
        elif simple is not None:
            render, marker = simple
            has_uid = has_uid or marker == "uid"
            has_flags = has_flags or marker == "flags"
            has_modseq = has_modseq or marker == "modseq"
        elif upper == "RFC822":
            render, sets_seen = _whole(b"RFC822"), True
        elif upper == "RFC822.HEADER":
            render = _named_section(b"RFC822.HEADER", "HEADER")
        elif upper == "RFC822.TEXT":
            render, sets_seen = _named_section(b"RFC822.TEXT", "TEXT"), True
        elif upper.startswith(("BODY[", "BODY.PEEK[", "BINARY[", "BINARY.PEEK[", "BINARY.SIZE[")):
            if upper in ("BODY[]", "BODY.PEEK[]"):
                render = _whole(b"BODY[]")
                seen = upper == "BODY[]"
            else:
                render, seen = _section(item, replies)
            sets_seen = sets_seen or seen
        else:
            raise FetchError(replies.fetch_unknown_item.format(item=item))
        renders.append(render)
    return FetchPlan(tuple(renders), sets_seen, has_uid, has_flags, has_modseq)


def _named_section(name: bytes, kind: str) -> Render:
    def render(msg: Fetched) -> bytes:
        return _literal(name, mime.section(msg.raw, (), kind, ()))

    return render
