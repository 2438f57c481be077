"""What FETCH and SEARCH need from a stored RFC 822 message, as IMAP wire bytes.

Everything here is a pure function of the message bytes, so callers may cache
results per message. Output follows Dovecot 2.3 where RFC 3501 leaves room
(default ``charset``, invalid encodings, sizes counted with CRLF line ends),
because the harness is compared with a real Dovecot.

Headers are split by hand rather than with :mod:`email`: FETCH ENVELOPE over
10,000 messages has to keep up with Dovecot, and only BODYSTRUCTURE and
SEARCH BODY/TEXT need the MIME tree.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
from dataclasses import field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import NamedTuple

from mailharness.servers.imap import parser_limits
from mailharness.servers.imap.addresses import (
    Address,
    parse_addresses,
    write_addresses,
)
from mailharness.servers.records import lazy_dataclass

__all__ = [
    "Address",
    "address_texts",
    "addresses",
    "bodystructure",
    "decode_header_text",
    "decoded_headers",
    "envelope",
    "format_internaldate",
    "header_value",
    "header_values",
    "parse_internaldate",
    "quote",
    "rfc822_size",
    "section",
    "text_content",
]

#: Longest string sent quoted; longer ones become literals. Dovecot uses a
#: similar cut-off so that no response line grows without bound.
MAX_QUOTED = 1000

#: Parsed MIME trees kept for repeated FETCH items of the same message
#: (BODYSTRUCTURE then BODY[1] then BODY[2.MIME]...). bytes cache their hash.
_TREE_CACHE_SIZE = 64

#: Dovecot's message-parser limits (IMAPSettings.max_mime_depth, max_mime_parts,
#: see parser_limits): a part this deep becomes a leaf, and after this many parts
#: no further boundary is looked for. The message is never refused.


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.lower(): i for i, m in enumerate(_MONTHS, start=1)}
_LF_RE = re.compile(rb"\r?\n")


# --------------------------------------------------------------------------- strings


def quote(value: str | bytes | None) -> bytes:
    """Encode an IMAP ``nstring``: ``NIL``, a quoted string, or a literal.

    A literal is used when quoting cannot carry the value (CR, LF, NUL or
    8-bit bytes) or when it is over :data:`MAX_QUOTED` bytes.

    >>> quote('say "hi"')
    b'"say \\\\"hi\\\\""'
    >>> quote("a\\r\\nb")
    b'{4}\\r\\na\\r\\nb'
    """
    if value is None:
        return b"NIL"
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) > MAX_QUOTED or not data.isascii() or b"\r" in data or b"\n" in data:
        return b"{%d}\r\n" % len(data) + data.replace(b"\0", b"\x80")
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
        return b"{%d}\r\n" % len(data) + data
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _quote_text(value: bytes | None) -> bytes:
    """Quote a header value for BODYSTRUCTURE: line breaks dropped, tabs as spaces."""
    if value is None:
        return b"NIL"
    return quote(value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\t", b" "))


# --------------------------------------------------------------------------- headers


def _normalize(raw: bytes) -> bytes:
    """Return ``raw`` with CRLF line ends; sizes and sections are defined on that form."""
    lf = raw.count(b"\n")
    if lf and raw.count(b"\r\n") != lf:
        return _LF_RE.sub(b"\r\n", raw)
    return raw


def _split_message(raw: bytes) -> tuple[bytes, bytes]:
    """Header block (with its blank line) and body of CRLF data."""
    if raw.startswith(b"\r\n"):
        return raw[:2], raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[: end + 4], raw[end + 4 :]


@lazy_dataclass(frozen=True, slots=True)
class _Field:
    """One header field: lower-case name, original lines, unfolded value."""

    name: str
    lines: bytes
    value: bytes


def _fields(header: bytes) -> list[_Field]:
    """Split a header block into fields; malformed lines never raise."""
    out: list[_Field] = []
    name = ""
    chunks: list[bytes] = []
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and chunks:
            chunks.append(line)
            continue
        if chunks:
            out.append(_make_field(name, chunks))
            chunks = []
        if not line:
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip().decode("latin-1").lower() if colon > 0 else ""
        chunks.append(line)
    if chunks:
        out.append(_make_field(name, chunks))
    return out


def _make_field(name: str, chunks: list[bytes]) -> _Field:
    lines = b"\r\n".join(chunks) + b"\r\n"
    if not name:
        return _Field("", lines, b"")
    joined = b"".join(chunks)
    value = joined[joined.find(b":") + 1 :].lstrip(b" \t")
    return _Field(name, lines, value)


def _first(fields: list[_Field], name: str) -> bytes | None:
    for f in fields:
        if f.name == name:
            return f.value
    return None


# --------------------------------------------------------------------------- RFC 822 tokens

_SPECIALS = b'()<>@,;:\\"[]'
_TSPECIALS = b'()<>@,;:\\"/[]?='


class _Tok(NamedTuple):
    """A lexical token of a structured header.

    ``kind`` is ``"atom"``, ``"quoted"``, ``"comment"``, ``"literal"`` (a
    ``[domain literal]``) or the special character itself; ``space`` says
    whether white space came before it, which separates phrase words.
    """

    kind: str
    text: bytes
    space: bool

    # A NamedTuple, not a frozen dataclass: a 2 MiB address header is a
    # million tokens, and a tuple is built three times faster.


_WS_RE = re.compile(rb"[ \t\r\n]+")
_QUOTED_RE = re.compile(rb'"((?:[^"\\]|\\.)*)"?', re.DOTALL)
_UNESCAPE_RE = re.compile(rb"\\(.)", re.DOTALL)
_ATOM_RE = re.compile(rb'[^ \t\r\n"()<>@,;:\\\[\]]+')
_MIME_ATOM_RE = re.compile(rb'[^ \t\r\n"()<>@,;:\\\[\]/?=]+')


def _comment(value: bytes, i: int) -> tuple[bytes, int]:
    """A nested ``(comment)`` starting after its ``(``: its text and the end index."""
    depth, buf, n = 1, bytearray(), len(value)
    while i < n and depth:
        ch = value[i]
        if ch == 0x5C and i + 1 < n:
            i += 1
            buf.append(value[i])
        elif ch == 0x28:
            depth += 1
            buf.append(ch)
        elif ch == 0x29:
            depth -= 1
            if depth:
                buf.append(ch)
        elif ch not in b"\r\n":
            buf.append(ch)
        i += 1
    return bytes(buf), i


def _tokenize(value: bytes, specials: bytes = _SPECIALS) -> list[_Tok]:
    """Tokenize leniently: an unterminated quote or comment runs to the end.

    Only the first ``max_header_bytes`` (see parser_limits) of a value are read.
    """
    value = value[: parser_limits.current().max_header_bytes]
    toks: list[_Tok] = []
    atom_re = _ATOM_RE if specials is _SPECIALS else _MIME_ATOM_RE
    i, n = 0, len(value)
    space = False
    while i < n:
        m = atom_re.match(value, i)
        if m is not None:
            toks.append(_Tok("atom", m.group(), space))
            i = m.end()
            space = False
            continue
        c = value[i]
        if c in b" \t\r\n":
            space = True
            ws = _WS_RE.match(value, i)
            i = ws.end() if ws is not None else i + 1
            continue
        if c == 0x22:  # "
            q = _QUOTED_RE.match(value, i)
            assert q is not None  # the pattern matches any text after a quote
            text = q.group(1)
            if b"\\" in text:
                text = _UNESCAPE_RE.sub(rb"\1", text)
            if b"\r" in text or b"\n" in text:
                text = text.replace(b"\r", b"").replace(b"\n", b"")
            toks.append(_Tok("quoted", text, space))
            i = q.end()
        elif c == 0x28:  # (
            text, i = _comment(value, i + 1)
            toks.append(_Tok("comment", text, space))
        elif c == 0x5B and specials is _SPECIALS:  # [
            end = value.find(b"]", i)
            end = n - 1 if end < 0 else end
            toks.append(_Tok("literal", value[i : end + 1], space))
            i = end + 1
        else:
            toks.append(_Tok(chr(c), value[i : i + 1], space))
            i += 1
        space = False
    return toks


# --------------------------------------------------------------------------- addresses


def addresses(value: bytes) -> list[Address]:
    """The address list of a From/To/Cc/Bcc value, as Dovecot parses it (ENVELOPE, SORT)."""
    return parse_addresses(value)


def address_texts(raw: bytes, name: str) -> list[str]:
    """Each field ``name``'s address list as Dovecot matches SEARCH FROM/TO/CC/BCC against it:
    parsed (comments and groups understood), written back, then MIME words decoded."""
    header, _ = _split_message(_normalize(raw))
    wanted = name.lower()
    return [
        decode_header_text(write_addresses(parse_addresses(f.value)))
        for f in _fields(header)
        if f.name == wanted
    ]


#: Mail sets repeat the same From/To values, so formatted lists are memoized.
_ADDRESS_CACHE_SIZE = 4096


def _address_list(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    # Keyed on what the parser reads, so a cached entry never outlives a limit change.
    return _cached_address_list(value[: parser_limits.current().max_header_bytes])


@lru_cache(maxsize=_ADDRESS_CACHE_SIZE)
def _cached_address_list(value: bytes) -> bytes:
    addrs = parse_addresses(value)
    if not addrs:
        return b"NIL"
    parts = [b"(" + b" ".join(_quote_env(x) for x in a) + b")" for a in addrs]
    return b"(" + b"".join(parts) + b")"


def _quote_env(value: bytes | None) -> bytes:
    """ENVELOPE strings: header text with line breaks removed (Dovecot's nolf)."""
    if value is None:
        return b"NIL"
    if b"\r" in value or b"\n" in value:
        value = value.replace(b"\r", b"").replace(b"\n", b"")
    return quote(value)


# --------------------------------------------------------------------------- ENVELOPE


def _envelope(fields: list[_Field]) -> bytes:
    found: dict[str, bytes] = {}
    for f in fields:
        if f.name in _ENVELOPE_NAMES and f.name not in found:
            found[f.name] = f.value
    from_ = _address_list(found.get("from"))
    sender = _address_list(found.get("sender"))
    reply_to = _address_list(found.get("reply-to"))
    # RFC 3501 §7.4.2: sender and reply-to default to from; Dovecot does this
    # also when the header is present but holds no address.
    parts = [
        _quote_env(found.get("date")),
        _quote_env(found.get("subject")),
        from_,
        from_ if sender == b"NIL" else sender,
        from_ if reply_to == b"NIL" else reply_to,
        _address_list(found.get("to")),
        _address_list(found.get("cc")),
        _address_list(found.get("bcc")),
        _quote_env(found.get("in-reply-to")),
        _quote_env(found.get("message-id")),
    ]
    return b"(" + b" ".join(parts) + b")"


_ENVELOPE_NAMES = frozenset(
    (
        "date",
        "subject",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "in-reply-to",
        "message-id",
    )
)


def envelope(raw: bytes) -> bytes:
    """The parenthesised ENVELOPE of a message (RFC 3501 §7.4.2).

    Strings are the header text as sent (encoded words are not decoded) and
    ``NIL`` for an absent header.
    """
    header, _ = _split_message(_normalize(raw))
    return _envelope(_fields(header))


# --------------------------------------------------------------------------- MIME tree


@lazy_dataclass(slots=True)
class _Part:
    """One MIME entity as offsets into the one normalized message (never a copy per level).

    ``data[start:body_start]`` is the header block (with its blank line) and
    ``data[body_start:end]`` the body: a 20 MiB message nested 60 deep costs one
    20 MiB buffer, not 60.
    """

    data: bytes
    start: int
    body_start: int
    end: int
    fields: list[_Field]
    mtype: bytes | None = None
    subtype: bytes | None = None
    params: list[tuple[bytes, bytes]] = field(default_factory=list)
    multipart: bool = False
    rfc822: bool = False
    children: list[_Part] = field(default_factory=list)

    @property
    def header(self) -> bytes:
        return self.data[self.start : self.body_start]

    @property
    def body(self) -> bytes:
        return self.data[self.body_start : self.end]

    @property
    def body_size(self) -> int:
        return self.end - self.body_start

    @property
    def body_lines(self) -> int:
        return self.data.count(b"\n", self.body_start, self.end)

    @property
    def text(self) -> bool:
        return self.mtype is None or self.mtype.lower() == b"text"

    def content(self, name: str) -> bytes | None:
        return _first(self.fields, name)


def _rfc2231(params: list[tuple[bytes, bytes, bool]]) -> list[tuple[bytes, bytes]]:
    """Join ``name*0``/``name*1*`` continuations the way Dovecot's rfc2231_parse does.

    Extended values are not decoded; the name gets a trailing ``*`` and the
    value keeps its ``charset'lang'`` prefix.
    """
    out: list[tuple[bytes, bytes]] = []
    continued: dict[bytes, list[tuple[int, bytes, bool]]] = {}
    order: list[bytes] = []
    for name, value, _quoted in params:
        m = re.fullmatch(rb"(.+?)\*(\d+)(\*?)", name)
        if m is None:
            out.append((name, value))
            continue
        key = m.group(1)
        if key not in continued:
            continued[key] = []
            order.append(key)
        continued[key].append((int(m.group(2)), value, bool(m.group(3))))
    for key in order:
        pieces = sorted(continued[key])
        extended = any(p[2] for p in pieces)
        out.append((key + b"*" if extended else key, b"".join(p[1] for p in pieces)))
    return out


def _parameters(toks: list[_Tok]) -> list[tuple[bytes, bytes]]:
    """``; name=value`` pairs after a MIME type or disposition; junk is skipped."""
    params: list[tuple[bytes, bytes, bool]] = []
    i = 0
    toks = [t for t in toks if t.kind != "comment"]
    while i < len(toks):
        if toks[i].kind != ";":
            i += 1
            continue
        if i + 2 < len(toks) and toks[i + 1].kind == "atom" and toks[i + 2].kind == "=":
            name = toks[i + 1].text
            value_toks: list[_Tok] = []
            k = i + 3
            while k < len(toks) and toks[k].kind != ";":
                value_toks.append(toks[k])
                k += 1
            if value_toks:
                quoted = value_toks[0].kind == "quoted"
                value = b"".join(t.text for t in value_toks)
                params.append((name, value, quoted))
            i = k
        else:
            i += 1
    return _rfc2231(params)


def _token(value: bytes | None) -> tuple[bytes | None, list[_Tok]]:
    """First MIME token of a header value and the tokens after it."""
    if value is None:
        return None, []
    toks = [t for t in _tokenize(value, _TSPECIALS) if t.kind != "comment"]
    if not toks or toks[0].kind != "atom":
        return None, toks
    return toks[0].text, toks[1:]


def _body_start(data: bytes, start: int, end: int) -> int:
    """Where the body of the entity ``data[start:end]`` begins (after its blank line)."""
    if data.startswith(b"\r\n", start, end):
        return start + 2
    blank = data.find(b"\r\n\r\n", start, end)
    return end if blank < 0 else blank + 4


class _Limits:
    """Dovecot's message-parser bounds, counted over one parse (message-parser.h)."""

    __slots__ = ("max_depth", "max_parts", "total")

    def __init__(self, max_depth: int, max_parts: int) -> None:
        self.max_depth = max_depth
        self.max_parts = max_parts
        self.total = 1  # the root part


def _parse_part(
    data: bytes, start: int, end: int, *, mime: bool, digest: bool, depth: int, limits: _Limits
) -> _Part:
    body_start = _body_start(data, start, end)
    fields = _fields(data[start:body_start])
    part = _Part(data, start, body_start, end, fields)
    ctype = part.content("content-type")
    if not mime and ctype is None and part.content("mime-version") is None:
        # Dovecot forgets Content-* headers of a part that is not MIME.
        part.fields = [f for f in fields if not f.name.startswith("content-")]
        ctype = None
    if ctype is not None:
        toks = [t for t in _tokenize(ctype, _TSPECIALS) if t.kind != "comment"]
        if (
            len(toks) >= 3
            and toks[0].kind == "atom"
            and toks[1].kind == "/"
            and (toks[2].kind == "atom")
        ):
            part.mtype, part.subtype = toks[0].text, toks[2].text
            part.params = _parameters(toks[3:])
    elif digest:
        part.mtype, part.subtype = b"message", b"rfc822"
    lower = (part.mtype or b"").lower()
    is_rfc822 = lower == b"message" and (part.subtype or b"").lower() == b"rfc822"
    if (lower == b"multipart" or is_rfc822) and (
        depth + 1 >= limits.max_depth or (is_rfc822 and limits.total >= limits.max_parts)
    ):
        # Dovecot (parse_too_many_nested_mime_parts) keeps parsing the message
        # but no longer descends, and imap-bodystructure's part_is_truncated
        # shows such a part as application/octet-stream (its parameters kept).
        part.mtype, part.subtype = b"application", b"octet-stream"
        return part
    if lower == b"multipart":
        boundary = next((v for k, v in part.params if k.lower() == b"boundary"), None)
        if boundary:
            part.multipart = True
            is_digest = (part.subtype or b"").lower() == b"digest"
            for child_start, child_end in _split_multipart(data, body_start, end, boundary):
                if limits.total >= limits.max_parts:
                    # Dovecot stops looking for boundaries: the last part runs on.
                    if part.children:
                        part.children[-1].end = end
                    break
                limits.total += 1
                part.children.append(
                    _parse_part(
                        data,
                        child_start,
                        child_end,
                        mime=True,
                        digest=is_digest,
                        depth=depth + 1,
                        limits=limits,
                    )
                )
        else:
            # Without a boundary Dovecot treats it as a leaf of that type.
            pass
    elif is_rfc822:
        limits.total += 1
        part.rfc822 = True
        inner = _parse_part(
            data, body_start, end, mime=False, digest=False, depth=depth + 1, limits=limits
        )
        part.children = [inner]
    return part


def _split_multipart(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """Spans of the bodies between ``--boundary`` lines of ``data[start:end]``.

    The CRLF before a delimiter belongs to it. Like Dovecot, a line only has
    to start with the delimiter; a missing close delimiter ends the last part
    at the end of the body.
    """
    delim = b"--" + boundary
    marks: list[tuple[int, int, bool]] = []  # (part end before it, content start, close)
    if data.startswith(delim, start, end):
        pos, at = start, start
    else:
        pos = data.find(b"\r\n" + delim, start, end)
        at = pos + 2
    while pos >= 0:
        line_end = data.find(b"\r\n", at, end)
        content = end if line_end < 0 else line_end + 2
        close = data.startswith(b"--", at + len(delim), end)
        marks.append((pos, content, close))
        if close or line_end < 0:
            break
        pos = data.find(b"\r\n" + delim, line_end, end)
        at = pos + 2
    spans: list[tuple[int, int]] = []
    for k, (_, content, close) in enumerate(marks):
        if close:
            break
        stop = marks[k + 1][0] if k + 1 < len(marks) else end
        spans.append((content, stop) if stop >= content else (content, content))
    return spans


#: Messages up to this size keep their parsed tree in the small LRU cache; a
#: bigger one is parsed again when needed (linear), so the cache never holds
#: big messages alive after EXPUNGE.
_TREE_CACHE_MAX_BYTES = 1024 * 1024


def _parse(raw: bytes, limits: parser_limits.ParserLimits) -> _Part:
    data = _normalize(raw)
    counter = _Limits(limits.max_mime_depth, limits.max_mime_parts)
    return _parse_part(data, 0, len(data), mime=False, digest=False, depth=0, limits=counter)


_cached_tree = lru_cache(maxsize=_TREE_CACHE_SIZE)(_parse)


def _tree(raw: bytes) -> _Part:
    limits = parser_limits.current()
    if len(raw) > _TREE_CACHE_MAX_BYTES:
        return _parse(raw, limits)
    return _cached_tree(raw, limits)


# --------------------------------------------------------------------------- BODYSTRUCTURE


def _param_list(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(_quote_text(k) + b" " + _quote_text(v) for k, v in params) + b")"


def _disposition(part: _Part) -> bytes:
    kind, rest = _token(part.content("content-disposition"))
    if kind is None:
        return b"NIL"
    return b"(" + _quote_text(kind) + b" " + _param_list(_parameters(rest)) + b")"


def _language(part: _Part) -> bytes:
    value = part.content("content-language")
    if value is None:
        return b"NIL"
    tags = [t.text for t in _tokenize(value) if t.kind == "atom"]
    return b"(" + b" ".join(_quote_text(t) for t in tags) + b")" if tags else b"NIL"


def _write(part: _Part, extensible: bool) -> bytes:
    if part.multipart:
        kids = part.children or []
        inner = b"".join(b"(" + _write(c, extensible) + b")" for c in kids)
        if not kids:
            inner = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
        out = inner + b" " + _quote_text(part.subtype or b"x-unknown")
        if extensible:
            out += b" " + b" ".join(
                (
                    _param_list(part.params),
                    _disposition(part),
                    _language(part),
                    _quote_text(part.content("content-location")),
                )
            )
        return out
    params = list(part.params)
    if part.rfc822:
        head = b'"message" "rfc822"'
    else:
        head = _quote_text(part.mtype or b"text") + b" "
        head += _quote_text(part.subtype or (b"plain" if part.text else b"unknown"))
        if part.text and not any(k.lower() == b"charset" for k, _ in params):
            params.append((b"charset", b"us-ascii"))
    encoding, _ = _token(part.content("content-transfer-encoding"))
    out = b" ".join(
        (
            head,
            _param_list(params),
            _quote_text(part.content("content-id")),
            _quote_text(part.content("content-description")),
            _quote_text(encoding or b"7bit"),
            b"%d" % part.body_size,
        )
    )
    if part.rfc822:
        sub = part.children[0]
        out += (
            b" "
            + _envelope(sub.fields)
            + b" ("
            + _write(sub, extensible)
            + b") %d" % part.body_lines
        )
    elif part.text:
        out += b" %d" % part.body_lines
    if extensible:
        out += b" " + b" ".join(
            (
                _quote_text(part.content("content-md5")),
                _disposition(part),
                _language(part),
                _quote_text(part.content("content-location")),
            )
        )
    return out


def bodystructure(raw: bytes, *, extensible: bool = True) -> bytes:
    """FETCH BODYSTRUCTURE (``extensible=True``) or BODY, formatted like Dovecot 2.3.

    Sizes count CRLF line ends even for LF-only input, as Dovecot's
    "virtual" sizes do; text parts without a charset get ``us-ascii``.
    """
    return b"(" + _write(_tree(raw), extensible) + b")"


# --------------------------------------------------------------------------- sections

_SECTION_KINDS = frozenset(("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"))


def find_part(tree: _Part, numbers: tuple[int, ...]) -> _Part | None:
    """The part a section number names, by Dovecot's imap_msgpart_find; None if none.

    A leaf's only sub-part is ``1``, itself (``BODY[2.1]`` is part 2), and
    only at the end of the path; a path going on through a message/rfc822
    part continues in the message it holds.
    """
    part: _Part | None = tree
    for i, num in enumerate(numbers):
        assert part is not None
        more = i + 1 < len(numbers)
        if part.multipart:
            index = max(num, 1) - 1
            part = part.children[index] if index < len(part.children) else None
        elif num != 1 or (more and not part.rfc822):
            part = None
        if part is None:
            return None
        if part.rfc822 and more:
            part = part.children[0]
    return part


def _filter_header(header: bytes, names: tuple[str, ...], keep: bool) -> bytes:
    wanted = {n.lower() for n in names}
    lines = [f.lines for f in _fields(header) if (f.name in wanted) == keep and f.name]
    return b"".join(lines) + b"\r\n"


def section(
    raw: bytes,
    part: tuple[int, ...],
    kind: str | None = None,
    fields: tuple[str, ...] = (),
) -> bytes:
    """The bytes of ``BODY[<part>.<kind>]``; ``b""`` when the part does not exist.

    ``kind`` is ``None``, ``"HEADER"``, ``"HEADER.FIELDS"``,
    ``"HEADER.FIELDS.NOT"``, ``"TEXT"`` or ``"MIME"``; ``fields`` are the
    header names for the two ``HEADER.FIELDS`` forms.
    """
    if kind is not None:
        kind = kind.upper()
        if kind not in _SECTION_KINDS:
            raise ValueError(
                f"section kind {kind!r}: expected None or one of {sorted(_SECTION_KINDS)}"
            )
    if any(n < 1 for n in part):
        return b""
    if not part:
        if kind is None:
            return _normalize(raw)
        message: _Part | None = _tree(raw)
    else:
        node = find_part(_tree(raw), part)
        if node is None:
            return b""
        if kind is None:
            return node.body
        if kind == "MIME":
            return node.header
        message = node.children[0] if node.rfc822 else None
    if message is None:
        return b""
    if kind == "HEADER":
        return message.header
    if kind == "TEXT":
        return message.body
    if kind == "HEADER.FIELDS":
        return _filter_header(message.header, fields, True)
    if kind == "HEADER.FIELDS.NOT":
        return _filter_header(message.header, fields, False)
    return b""  # MIME of the whole message is not a section


# --------------------------------------------------------------------------- SEARCH helpers

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(rb"[ \t\r\n]*")


def _charset_decode(data: bytes, charset: str) -> str:
    charset = charset.split("*", 1)[0].strip().lower() or "us-ascii"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    if charset in ("us-ascii", "ascii"):
        charset = "utf-8"  # 8-bit text labelled ASCII is most often UTF-8
    return data.decode(charset, errors="replace")


def _decode_word(charset: bytes, enc: bytes, text: bytes) -> str | None:
    """One encoded word's text, or ``None`` when it is broken (then it is kept as sent)."""
    if enc in (b"b", b"B"):
        try:
            data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        data = quopri.decodestring(text.replace(b"_", b" "), header=True)
    return _charset_decode(data, charset.decode("ascii", "replace"))


def _plain(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_header_text(value: bytes) -> str:
    """Decode RFC 2047 encoded words; white space between two of them is dropped."""
    if b"=?" not in value:
        return _plain(value)
    out: list[str] = []
    pos = 0
    last_end = -1
    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos : m.start()]
        if not (last_end == pos and _BETWEEN_WORDS.fullmatch(gap)):
            out.append(_plain(gap))
        word = _decode_word(m.group(1), m.group(2), m.group(3))
        out.append(_plain(m.group(0)) if word is None else word)
        pos = m.end()
        last_end = pos if word is not None else -1
    out.append(_plain(value[pos:]))
    return "".join(out)


def header_value(raw: bytes, name: str) -> str | None:
    """First value of header ``name``, unfolded and RFC 2047-decoded; ``None`` if absent."""
    header, _ = _split_message(_normalize(raw))
    value = _first(_fields(header), name.lower())
    if value is None:
        return None
    return decode_header_text(value.replace(b"\r\n", b"")).strip()


#: What ``bytes.rstrip`` strips, but for CR LF (no field name runs over a line end).
_NAME_SPACE = (b" ", b"\t", b"\r", b"\x0b", b"\x0c")


def header_field(raw: bytes, name: str) -> str | None:
    """`header_value`, splitting out only the one field (SORT/THREAD read a million).

    ``raw`` may be just the header block (through the blank line) of CRLF data.
    """
    header, _ = _split_message(_normalize(raw))
    value = _first_value(header, name.lower().encode("latin-1"))
    if value is None:
        return None
    return decode_header_text(value).strip()


def _first_value(header: bytes, want: bytes) -> bytes | None:
    """``_first(_fields(header), name)`` for a lower-case ASCII name, without the other fields.

    The wanted field's first line starts with the name, so it is never a folded
    line: it is the first line that starts with the name, white space, a colon.
    """
    low = header.lower()  # ASCII only, as the field names compare
    at = 0 if low.startswith(want) else low.find(b"\r\n" + want) + 2
    while at >= 2 or (at == 0 and low.startswith(want)):
        colon = at + len(want)
        while header[colon : colon + 1] in _NAME_SPACE:
            colon += 1
        if header[colon : colon + 1] == b":":
            break
        at = low.find(b"\r\n" + want, at + len(want)) + 2
    else:
        return None
    start = colon + 1
    end = header.find(b"\r\n", start)
    if end < 0:
        return header[start:].lstrip(b" \t")
    pieces = [header[start:end]]
    while header[end + 2 : end + 3] in (b" ", b"\t"):  # folded lines
        stop = header.find(b"\r\n", end + 2)
        if stop < 0:
            stop = len(header)
        pieces.append(header[end + 2 : stop])  # joined once: linear in the fold count
        end = stop
    return b"".join(pieces).lstrip(b" \t")


def header_values(raw: bytes, name: str) -> list[str]:
    """Every value of header ``name`` (decoded), for SEARCH HEADER on repeated fields."""
    header, _ = _split_message(_normalize(raw))
    wanted = name.lower()
    return [
        decode_header_text(f.value.replace(b"\r\n", b"")).strip()
        for f in _fields(header)
        if f.name == wanted
    ]


def _decoded_body(part: _Part) -> bytes:
    encoding, _ = _token(part.content("content-transfer-encoding"))
    return _decode_transfer(part.body, encoding)


def _decode_transfer(body: bytes, encoding: bytes | None) -> bytes:
    """Undo a transfer encoding leniently (SEARCH, previews); unknown ones stay as sent."""
    enc = (encoding or b"").lower()
    if enc == b"base64":
        try:
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", body) + b"==")
        except (binascii.Error, ValueError):
            return body
    if enc == b"quoted-printable":
        return quopri.decodestring(body)
    return body


def _collect_text(part: _Part, out: list[str]) -> None:
    if part.multipart:
        for child in part.children:
            _collect_text(child, out)
    elif part.rfc822:
        inner = part.children[0]
        out.extend(
            decode_header_text(f.value.replace(b"\r\n", b"")) for f in inner.fields if f.name
        )
        _collect_text(inner, out)
    elif part.text:
        charset = next((v for k, v in part.params if k.lower() == b"charset"), b"us-ascii")
        out.append(_charset_decode(_decoded_body(part), charset.decode("latin-1")))


def text_content(raw: bytes) -> str:
    """Decoded text of every text/* part (and headers of attached messages).

    For SEARCH BODY and TEXT: transfer encodings and charsets are undone so a
    UTF-8 search string matches a base64 ISO-8859-1 body.
    """
    out: list[str] = []
    _collect_text(_tree(raw), out)
    return "\n".join(out)


def rfc822_size(raw: bytes) -> int:
    """RFC822.SIZE: the size with CRLF line ends, which is what FETCH BODY[] sends."""
    lf = raw.count(b"\n")
    return len(raw) + lf - raw.count(b"\r\n")


# --------------------------------------------------------------------------- dates


def format_internaldate(dt: datetime) -> str:
    """INTERNALDATE as Dovecot sends it: ``"07-Feb-1994 21:52:25 -0800"``.

    A naive datetime is taken as UTC. Month names are fixed English, never
    the locale's.
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    offset = dt.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{dt.day:02d}-{_MONTHS[dt.month - 1]}-{dt.year:04d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


_INTERNALDATE_RE = re.compile(
    r"\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})"
)


def parse_internaldate(text: str) -> datetime:
    """Parse an APPEND ``date-time`` such as ``"17-Jul-1996 02:44:25 -0700"``."""
    m = _INTERNALDATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(
            f"invalid date-time {text!r}: expected dd-Mon-yyyy hh:mm:ss +zzzz, "
            "e.g. '17-Jul-1996 02:44:25 -0700'"
        )
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    month = _MONTH_NUMBER.get(mon.lower())
    if month is None:
        raise ValueError(f"invalid date-time {text!r}: unknown month {mon!r}")
    offset = timedelta(hours=int(zh), minutes=int(zm))
    if offset >= timedelta(hours=24):
        raise ValueError(f"invalid date-time {text!r}: zone offset out of range")
    try:
        return datetime(
            int(year),
            month,
            int(day),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=timezone(-offset if sign == "-" else offset),
        )
    except ValueError as exc:
        raise ValueError(f"invalid date-time {text!r}: {exc}") from exc


def decoded_headers(raw: bytes) -> list[tuple[str, str]]:
    """Every header as ``(lower-case name, decoded value)``, in order, for SEARCH."""
    header, _ = _split_message(_normalize(raw))
    return [
        (f.name, decode_header_text(f.value.replace(b"\r\n", b"")).strip())
        for f in _fields(header)
        if f.name
    ]
