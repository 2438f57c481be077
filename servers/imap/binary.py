"""FETCH BINARY[...] and BINARY.SIZE[...] (RFC 3516), decoded the way Dovecot 2.3 does it.

Dovecot (index-mail-binary.c) decodes every base64 and quoted-printable leaf
of the requested part, rewrites the header of each decoded part it shows
(``Content-Transfer-Encoding`` lines dropped, ``Content-Transfer-Encoding:
binary`` added before the blank line) and copies everything else as stored.
The result is sent as a ``~{n}`` literal8 when something was decoded or when
it holds NUL bytes. Three failures, as Dovecot reports them:

- an encoding it does not know: ``NO [UNKNOWN-CTE]``;
- invalid base64 or quoted-printable data: ``NO [PARSE]``;
- data that ends in the middle of an encoded unit (base64 without its last
  quantum, QP ending in ``=``): Dovecot's stream reports EPIPE, which its
  FETCH turns into ``* BYE FETCH failed: Internal error occurred...``.

Everything works on offsets of the one parsed message (see ``message._Part``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re

from mailharness.servers.imap import message as mime

__all__ = ["BinaryError", "BinaryFailure", "binary_section", "binary_size"]


class BinaryFailure(enum.Enum):
    """Why a part could not be decoded; each maps to one Dovecot reply."""

    UNKNOWN_CTE = "unknown-cte"
    INVALID = "invalid"
    TRUNCATED = "truncated"


class BinaryError(ValueError):
    """A part of the message cannot be sent decoded (see :class:`BinaryFailure`)."""

    def __init__(self, failure: BinaryFailure) -> None:
        super().__init__(failure.value)
        self.failure = failure


_BINARY_CTE_LINE = b"Content-Transfer-Encoding: binary\r\n"
_CONVERTED = (b"base64", b"quoted-printable")
_PLAIN = (b"7bit", b"8bit", b"binary")


def _cte(part: mime._Part) -> bytes:
    """The part's encoding as Dovecot's message_decoder_parse_cte reads it (last header wins).

    A value that is not one token (``base64 binary``) or names no known
    encoding raises UNKNOWN-CTE; no header at all is 7bit.
    """
    value: bytes | None = None
    for f in _raw_fields(part):
        if f.name == "content-transfer-encoding":
            value = f.value
    if value is None:
        return b"7bit"
    token, rest = mime._token(value)
    name = (token or b"").lower()
    if (rest and rest[0].kind != ";") or name not in _CONVERTED + _PLAIN:
        raise BinaryError(BinaryFailure.UNKNOWN_CTE)
    return name


class _Output:
    __slots__ = ("chunks", "converted", "nuls")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.converted = False
        self.nuls = False


def _raw_fields(part: mime._Part) -> list[mime._Field]:
    """Every header field of the part, Content-* ones too where BODYSTRUCTURE ignores them
    (a message without MIME-Version): Dovecot's decoder reads them all."""
    return mime._fields(part.header)


def _header_without_cte(part: mime._Part) -> bytes:
    lines = [f.lines for f in _raw_fields(part) if f.name != "content-transfer-encoding"]
    header = part.header
    blank = b"\r\n" if header.endswith(b"\r\n\r\n") or header == b"\r\n" else b""
    return b"".join(lines) + _BINARY_CTE_LINE + blank


def _add_part(part: mime._Part, include_header: bool, out: _Output) -> None:
    """Dovecot's add_binary_part: this part (its header too if asked), decoded."""
    cte = _cte(part)
    data = part.data
    if data.find(b"\0", part.start, part.body_start) >= 0:
        out.nuls = True  # Dovecot does not turn header NULs into 0x80 for BINARY
    if include_header:
        out.chunks.append(_header_without_cte(part) if cte in _CONVERTED else part.header)
    if part.children:
        pos = part.body_start
        for child in part.children:
            out.chunks.append(data[pos : child.start])
            _add_part(child, True, out)
            pos = child.end
        out.chunks.append(data[pos : part.end])
        return
    if part.body_size == 0:
        return
    body = part.body
    if cte == b"base64":
        out.chunks.append(_base64(body))
        out.converted = True
    elif cte == b"quoted-printable":
        out.chunks.append(_quoted_printable(body))
        out.converted = True
    else:
        if b"\0" in body:
            out.nuls = True
        out.chunks.append(body)


def _find(raw: bytes, section: tuple[int, ...]) -> tuple[mime._Part | None, bool]:
    """The part a BINARY section number names (None if absent) and whether it is the message."""
    tree = mime._tree(raw)
    if not section:
        return tree, True
    return mime.find_part(tree, section), False


def _render(raw: bytes, section: tuple[int, ...]) -> _Output:
    out = _Output()
    part, whole = _find(raw, section)
    if part is not None:
        _add_part(part, whole, out)
    return out


def binary_section(raw: bytes, section: tuple[int, ...]) -> tuple[bytes, bool]:
    """``BINARY[section]``: the decoded bytes and whether to send them as literal8.

    A section that does not exist is empty, as in Dovecot. Raises
    :class:`BinaryError` when the part cannot be decoded.
    """
    out = _render(raw, section)
    return b"".join(out.chunks), out.converted or out.nuls


def binary_size(raw: bytes, section: tuple[int, ...]) -> int:
    """``BINARY.SIZE[section]``; 0 for a section that does not exist.

    Dovecot decodes the whole message to learn any part's size, so a bad
    encoding anywhere in the message fails every BINARY.SIZE of it.
    """
    _render(raw, ())
    return sum(len(chunk) for chunk in _render(raw, section).chunks)


# --------------------------------------------------------------------------- decoders

_B64_DATA = re.compile(rb"[A-Za-z0-9+/]*")
_B64_SPACE = b" \t\r\n"


def _base64(body: bytes) -> bytes:
    """Dovecot's base64 stream decoder: white space anywhere, strict alphabet and padding."""
    compact = body.translate(None, _B64_SPACE)
    match = _B64_DATA.match(compact)
    assert match is not None  # the pattern matches the empty string
    data, rest = match.group(), compact[match.end() :]
    tail = len(data) % 4
    if not rest:
        if tail:
            raise BinaryError(BinaryFailure.TRUNCATED)
    elif tail == 2 and rest == b"=":
        raise BinaryError(BinaryFailure.TRUNCATED)
    elif not ((tail == 2 and rest == b"==") or (tail == 3 and rest == b"=")):
        raise BinaryError(BinaryFailure.INVALID)
    return base64.b64decode(data + b"=" * (-len(data) % 4))


#: After trailing white space is gone and lines are joined with LF: an ``=``
#: that is neither an escape nor a soft line break, or more white space than a
#: QP line may hold (76) before more text (Dovecot's "Too much whitespace").
_QP_BAD = re.compile(rb"=(?![0-9A-Fa-f]{2}|\n)|[ \t]{77,}(?=[^ \t\n])")


def _quoted_printable(body: bytes) -> bytes:
    """Dovecot's qp-decoder: trailing white space dropped, bare LF as CRLF, strict ``=``."""
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n")
        cr = body.find(b"\r")
        if cr >= 0:
            # A CR not followed by LF; at the very end it is a cut-off line.
            fail = BinaryFailure.TRUNCATED if cr == len(body) - 1 else BinaryFailure.INVALID
            raise BinaryError(fail)
    check = b"\n".join(line.rstrip(b" \t") for line in body.split(b"\n"))
    bad = _QP_BAD.search(check)
    if bad is not None:
        end = check[bad.start() :]
        if re.fullmatch(rb"=[0-9A-Fa-f]?", end):
            raise BinaryError(BinaryFailure.TRUNCATED)
        raise BinaryError(BinaryFailure.INVALID)
    if check.endswith(b"="):
        raise BinaryError(BinaryFailure.TRUNCATED)
    return binascii.a2b_qp(check.replace(b"=\n", b"").replace(b"\n", b"\r\n"))


# --------------------------------------------------------------------------- APPEND of literal8

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _is_binary_cte(f: mime._Field) -> bool:
    """Dovecot converts only a one-line ``Content-Transfer-Encoding: binary``."""
    return f.name == "content-transfer-encoding" and f.value.rstrip(b"\r\n").lower() == b"binary"


def _base64_lines(body: bytes) -> bytes:
    """Base64 in lines of 76 characters joined by CRLF, as istream-binary-converter writes."""
    text = base64.b64encode(body)
    return b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def _converted_header(part: mime._Part) -> bytes:
    lines = [
        b"Content-Transfer-Encoding: base64\r\n" if _is_binary_cte(f) else f.lines
        for f in part.fields
    ]
    return b"".join(lines) + (b"\r\n" if part.header.endswith(b"\r\n\r\n") else b"")


def _convert_part(part: mime._Part, out: list[bytes]) -> None:
    data = part.data
    if not part.multipart and any(_is_binary_cte(f) for f in part.fields):
        out.append(_converted_header(part))
        out.append(_base64_lines(part.body))
        return
    out.append(part.header)
    pos = part.body_start
    for child in part.children:
        out.append(data[pos : child.start])
        _convert_part(child, out)
        pos = child.end
    out.append(data[pos : part.end])


def binary_to_base64(raw: bytes) -> bytes:
    """What Dovecot stores for an APPEND sent as literal8 (istream-binary-converter.c).

    Every non-multipart part labelled ``Content-Transfer-Encoding: binary``
    is stored base64-encoded, so its exact bytes (bare LF, NUL) come back
    from ``BINARY[...]``. A single-part message keeps its body bytes exactly;
    inside a multipart, line ends are CRLF as everywhere in the store.
    """
    tree = mime._tree(raw)
    if not tree.multipart and not tree.rfc822:
        if not any(_is_binary_cte(f) for f in tree.fields):
            return raw
        end = _HEADER_END.search(raw)
        body = raw[end.end() :] if end is not None else b""
        return _converted_header(tree) + _base64_lines(body)
    if not any(_is_binary_cte(f) for f in _all_fields(tree)):
        return raw
    out: list[bytes] = []
    _convert_part(tree, out)
    return b"".join(out)


def _all_fields(part: mime._Part) -> list[mime._Field]:
    found = list(part.fields)
    for child in part.children:
        found.extend(_all_fields(child))
    return found
