"""FETCH SNIPPET / PREVIEW (draft-ietf-extra-imap-fetch-preview, RFC 8970), as Dovecot 2.3.

Dovecot makes one text (its "FUZZY" algorithm, message-snippet.c): the first
text part (in a multipart/alternative: text/plain, else text/html, else any
text/), transfer encoding and charset undone, HTML turned into text
(mail-html2text.c), white space runs collapsed to one space, lines quoted
with ``>`` left out, at most 200 characters. A message whose text is all
quoted gets ``>`` and the quoted text instead.

``PREVIEW`` answers ``PREVIEW "text"`` (RFC 8970); ``SNIPPET`` and any
request naming ``FUZZY`` get the older ``(FUZZY "text")`` form. ``LAZY``
asks for a stored preview only: Dovecot answers ``NIL`` until a FETCH
without LAZY has made it (it is then in Dovecot's cache, here in the
message's), and the text after that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.entities import name2codepoint
from typing import Any

from mailharness.servers.imap import message as mime
from mailharness.servers.imap.replies import DOVECOT, Replies

__all__ = ["PreviewError", "compile_preview", "snippet"]

#: Dovecot's BODY_SNIPPET_MAX_CHARS.
MAX_SNIPPET_CHARS = 200
#: Decoded text looked at per message. Dovecot reads the whole part; a
#: preview of 200 characters never needs more unless the part is white space
#: or quotes for a mebibyte, and the bound keeps FETCH PREVIEW linear and short.
MAX_SOURCE_CHARS = 256 * 1024

_SPACE = " \t\n\v\f\r"  # C isspace() of an ASCII byte


class PreviewError(ValueError):
    """A PREVIEW/SNIPPET modifier Dovecot refuses; the message is the BAD text."""


def compile_preview(
    name: str, modifiers: Any, replies: Replies = DOVECOT
) -> Callable[[Any], bytes]:
    """The render function of ``PREVIEW``/``SNIPPET`` with its ``(LAZY FUZZY)`` modifiers."""
    old_standard = name == "SNIPPET"
    lazy = False
    for modifier in modifiers:
        if not isinstance(modifier, str):
            raise PreviewError(replies.preview_invalid_modifier)
        upper = modifier.upper()
        if upper == "LAZY":
            lazy = True
        elif upper == "LAZY=FUZZY":
            lazy = old_standard = True
        elif upper == "FUZZY":
            old_standard = True
        else:
            raise PreviewError(replies.preview_unsupported_modifier.format(modifier=modifier))
    label = name.encode()

    def render(msg: Any) -> bytes:
        value: bytes | None = msg.cache.get("snippet")
        if value is None:
            if lazy:
                value = b"NIL"  # Dovecot: not in its cache, and LAZY does not compute it
            else:
                value = msg.cache["snippet"] = nstring(snippet(msg.raw))
        if old_standard:
            return label + b" (FUZZY " + value + b")"
        return label + b" " + value

    return render


def nstring(text: str) -> bytes:
    """Dovecot's imap_append_nstring: quoted unless 8-bit, CR/LF or over 4 escapes."""
    data = text.encode("utf-8")
    if (
        not data.isascii()
        or b"\r" in data
        or b"\n" in data
        or data.count(b'"') + data.count(b"\\") > 4
    ):
        return b"{%d}\r\n" % len(data) + data
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _first_text_part(part: mime._Part) -> mime._Part | None:
    """Dovecot's index_mail_find_first_text_mime_part."""
    mtype = (part.mtype or b"").lower()
    if part.mtype is None or mtype == b"text":
        return part
    if not part.multipart:
        return None
    if (part.subtype or b"").lower() == b"alternative":
        html = other = None
        for child in part.children:
            if child.mtype is None or child.mtype.lower() == b"text":
                sub = (child.subtype or b"").lower()
                if child.subtype is None or sub == b"plain":
                    return child
                if sub == b"html":
                    html = child
                else:
                    other = child
        return html or other
    for child in part.children:
        found = _first_text_part(child)
        if found is not None:
            return found
    return None


def snippet(raw: bytes) -> str:
    """The preview text of a message, as Dovecot 2.3 makes it (empty when it has no text)."""
    part = _first_text_part(mime._tree(raw))
    if part is None:
        return ""
    # The decoder reads Content-Type of the part itself, MIME-Version or not.
    fields = mime._fields(part.header)
    ctype, rest = mime._token(mime._first(fields, "content-type"))
    kind = b""
    params: list[tuple[bytes, bytes]] = []
    if ctype is not None and len(rest) >= 2 and rest[0].kind == "/" and rest[1].kind == "atom":
        kind = ctype.lower() + b"/" + rest[1].text.lower()
        params = mime._parameters(rest[2:])
    if kind and not kind.startswith(b"text/"):
        return ""
    encoding, _ = mime._token(mime._first(fields, "content-transfer-encoding"))
    body = mime._decode_transfer(part.body[: MAX_SOURCE_CHARS * 2], encoding)
    charset = next((v for k, v in params if k.lower() == b"charset"), b"utf-8")
    text = mime._charset_decode(body, charset.decode("latin-1"))[:MAX_SOURCE_CHARS]
    if kind in (b"text/html", b"application/xhtml+xml"):
        text = html_to_text(text)
    return generate(text)


_RUN = re.compile(r"[^\s\0\ufeff]+|[\0\ufeff]+|\s")


def generate(text: str, max_chars: int = MAX_SNIPPET_CHARS) -> str:
    """Dovecot's snippet_generate over decoded text."""
    out: list[list[str]] = [[], []]  # normal, quoted
    left = [max_chars, max_chars - 1]  # -1 for the '>'
    newline, add_space = True, False
    target = 0
    pos, end = 0, len(text)
    while pos < end:
        if newline:
            newline = False
            target = 0
            if text[pos] == ">":
                target = 1
                pos += 1
                if pos >= end:
                    break
        match = _RUN.match(text, pos)
        assert match is not None  # every character is one of the three
        run = match.group()
        pos = match.end()
        first = run[0]
        if first in "\0\ufeff":
            continue
        if first in _SPACE:
            if out[target]:
                add_space = True
            if first == "\n":
                newline = True
            continue
        if target == 1 and left[1] == 0:
            skip = text.find("\n", pos)
            pos = end if skip < 0 else skip
            continue
        for ch in run:
            if left[target] == 0:
                break
            left[target] -= 1
            if add_space:
                if left[target] == 0:
                    break
                out[target].append(" ")
                add_space = False
                left[target] -= 1
            out[target].append(ch)
        if left[0] == 0:
            break
    if out[0]:
        return "".join(out[0]).lstrip(_SPACE)
    if out[1]:
        return ">" + "".join(out[1]).lstrip(_SPACE)
    return ""


# --------------------------------------------------------------------------- HTML

_HTML = re.compile(
    r"<!--.*?--\s*>"
    r"|<(script|style)[\s>].*?</\1>"
    r"|<!\[CDATA\[(.*?)\]\]>"
    r"|<(/?blockquote)?(?:[^>\"']|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')*>"
    r"|&([^\s;]{0,9});"
    r"|&",
    re.I | re.S,
)


def html_to_text(html: str) -> str:
    """Dovecot's mail_html2text: a tag is one space, entities decoded, no script/style.

    Inside ``<blockquote>`` a tag starts a new ``>`` line, so the snippet
    treats that text as quoted, as Dovecot's does.
    """
    out: list[str] = []
    last = ""  # the last character written

    def add(text: str) -> None:
        nonlocal last
        if text:
            out.append(text)
            last = text[-1]

    def space() -> None:
        if last and last not in " \n":
            add(" ")

    quote_level = 0
    add_newline = False
    pos = 0
    for match in _HTML.finditer(html):
        add(html[pos : match.start()])
        pos = match.end()
        token = match.group()
        if match.group(1) is not None:  # script or style
            space()
        elif match.group(2) is not None:
            add(match.group(2))
        elif token.startswith("&"):
            if match.group(4) is not None:
                add(_entity(match.group(4)))
        elif not token.startswith("<!--"):
            quote = (match.group(3) or "").lower()
            if quote == "blockquote":
                quote_level += 1
            elif quote == "/blockquote" and quote_level > 0:
                quote_level -= 1
                add_newline = True
            if quote_level > 0:
                add("\n>")
            elif add_newline:
                add("\n")
            add_newline = False
            space()
    add(html[pos:])
    return "".join(out)


def _entity(name: str) -> str:
    if name in name2codepoint:
        return chr(name2codepoint[name])
    try:
        if name.startswith("#x"):
            code = int(name[2:], 16)
        elif name.startswith("#"):
            code = int(name[1:])
        else:
            return ""
    except ValueError:
        return ""
    if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
        return chr(code)
    return ""
