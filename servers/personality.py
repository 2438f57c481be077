"""Provider personalities: one list of names, one lookup, for every protocol.

Each protocol keeps its own reply table per personality (IMAP and SMTP word
things differently); which personalities exist, and the error for a name
that is not one, live here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from mailharness.servers.errors import choice_error

# "outlook" is Exchange Online (Microsoft 365); "exchange" is Exchange Server 2013/2016
# on premises.
PERSONALITIES = ("dovecot", "gmail", "outlook", "exchange", "yahoo", "icloud")

_T = TypeVar("_T")


def pick(table: Mapping[str, _T], name: str) -> _T:
    """`table[name]`; an unknown name lists the personalities and suggests the closest."""
    try:
        return table[name]
    except KeyError:
        raise choice_error("personality", name, PERSONALITIES) from None
