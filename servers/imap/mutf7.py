"""Modified UTF-7 (RFC 3501 §5.1.3), the wire form of mailbox names, checked as Dovecot does.

Names are kept in UTF-8 inside the server (what Dovecot calls the vname) and
turned into modified UTF-7 only on the wire. A client's name must be valid
modified UTF-7 by Dovecot's strict rules (``imap_utf7_to_utf8``): printable
US-ASCII only, ``&`` written ``&-``, no base64 run that hides a printable
ASCII character, no encoded NUL, no lone surrogate, no needless shift
(``&AOQ-&AOQ-``). Anything else is refused with ``NO Mailbox name is not
valid mUTF-7``.

>>> decode("p&AOQA5A-")
'pää'
>>> encode("pää")
'p&AOQA5A-'
>>> decode("a&b")
Traceback (most recent call last):
...
ValueError: 'a&b': not valid modified UTF-7
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["decode", "encode"]

_PLAIN = re.compile(r"[\x20-\x25\x27-\x7e]*")
_SHIFT = re.compile(r"&([A-Za-z0-9+,]*)-")


def decode(text: str) -> str:
    """The UTF-8 name that ``text`` (modified UTF-7) spells; ValueError if it is not valid."""
    if _PLAIN.fullmatch(text):
        return text
    out: list[str] = []
    pos = 0
    end = len(text)
    while pos < end:
        amp = text.find("&", pos)
        plain = text[pos:] if amp < 0 else text[pos:amp]
        if not _PLAIN.fullmatch(plain):
            raise _invalid(text)
        out.append(plain)
        if amp < 0:
            break
        match = _SHIFT.match(text, amp)
        if match is None:
            raise _invalid(text)
        run = match.group(1)
        pos = match.end()
        if not run:
            out.append("&")
            continue
        # A shift straight after a shift is needless; "&-" (a literal &) is fine.
        if text.startswith("&", pos) and not text.startswith("&-", pos):
            raise _invalid(text)
        out.append(_decode_run(text, run))
    return "".join(out)


def _decode_run(text: str, run: str) -> str:
    if len(run) % 4 == 1:
        raise _invalid(text)
    padded = run.replace(",", "/") + "=" * (-len(run) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error:
        raise _invalid(text) from None
    if len(raw) % 2:
        raise _invalid(text)
    units = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    chars: list[str] = []
    i = 0
    while i < len(units):
        unit = units[i]
        if 0xD800 <= unit <= 0xDBFF:
            low = units[i + 1] if i + 1 < len(units) else 0
            if not 0xDC00 <= low <= 0xDFFF:
                raise _invalid(text)
            chars.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
            i += 2
            continue
        # Dovecot refuses an encoded NUL, a lone low surrogate, and printable
        # ASCII that should have been written plainly.
        if unit == 0 or 0xDC00 <= unit <= 0xDFFF or 0x20 <= unit < 0x7F:
            raise _invalid(text)
        chars.append(chr(unit))
        i += 1
    return "".join(chars)


def encode(name: str) -> str:
    """``name`` in modified UTF-7, as it goes on the wire."""
    if _PLAIN.fullmatch(name):
        return name
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if "\x20" <= ch <= "\x7e":
            if run:
                out.append(_encode_run("".join(run)))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_encode_run("".join(run)))
    return "".join(out)


def _encode_run(chars: str) -> str:
    data = chars.encode("utf-16-be", "surrogatepass")
    return "&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-"


def _invalid(text: str) -> ValueError:
    return ValueError(f"{text[:80]!r}: not valid modified UTF-7")
