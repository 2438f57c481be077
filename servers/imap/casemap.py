"""The i;unicode-casemap comparator (RFC 5051) as Dovecot 2.3 applies it: I18NLEVEL=1.

SORT keys and SEARCH strings (both the needle and the text searched) go through
`casemap`, then compare as UTF-8 bytes or by substring. This is Dovecot 2.3.19's
``uni_utf8_to_decomposed_titlecase`` (lib/unichar.c, tables from unicodemap.pl),
which differs from RFC 5051's NFKD: each character takes its simple titlecase
mapping, then one level of its decomposition (canonical or compatibility), and
characters that have a titlecase mapping (``ǅ``) are never decomposed. So ``cafe``
is found in ``café``, ``strasse`` is not in ``Straße``, ``ﬁ`` becomes a lower-case
``fi`` and ``Å`` (U+212B) only ``Å`` (U+00C5): all measured against Dovecot 2.3.19.
"""

from __future__ import annotations

import unicodedata

__all__ = ["casemap"]

_HANGUL = range(0xAC00, 0xD7A4)


def _char(char: str) -> str:
    title = char.title()
    if len(title) == 1 and title != char:
        char = title  # the simple titlecase mapping (str.title's "ß" -> "Ss" is not one)
    if unicodedata.category(char) == "Lt":
        return char  # has a titlecase mapping (itself): Dovecot keeps no decomposition
    if ord(char) in _HANGUL:
        return unicodedata.normalize("NFD", char)
    fields = unicodedata.decomposition(char).split()
    if fields and fields[0].startswith("<"):
        del fields[0]  # <compat>, <font>, <fraction>...: all decompose alike
    return "".join(chr(int(code, 16)) for code in fields) if fields else char


class _Table(dict[int, str]):
    """Code point -> its casemapped text, filled in as `str.translate` meets them."""

    def __missing__(self, code: int) -> str:
        if len(self) >= _TABLE_LIMIT:
            self.clear()
        value = self[code] = _char(chr(code))
        return value


#: Distinct code points remembered (a real text uses a few hundred).
_TABLE_LIMIT = 1 << 16
_TABLE = _Table()


def casemap(text: str) -> str:
    """Each character titlecased, then decomposed; for ASCII this is ``text.upper()``."""
    if text.isascii():
        return text.upper()
    return text.translate(_TABLE)
