"""SORT and THREAD (RFC 5256), simplified to what connectors and imapclient use.

Sort keys follow RFC 5256 §2 loosely: base subjects drop ``Re:``/``Fwd:`` and
case, addresses compare by the first mailbox's local part, ties fall back to
sequence order. THREAD=REFERENCES links messages by ``In-Reply-To`` and
``References`` only (no subject merging), which is exact for mail that carries
proper headers and what the tests exercise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from servers.imap.message import header_value
from servers.imap.store import StoredMessage

__all__ = ["SORT_KEYS", "SortError", "sort_messages", "thread_references"]

_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv)\s*(\[\d+\])?\s*:\s*)+", re.I)
_MSGID = re.compile(r"<[^>]*>")


class SortError(ValueError):
    """An unknown sort criterion; the session answers BAD."""


def _base_subject(msg: StoredMessage) -> str:
    subject = header_value(msg.raw, "subject") or ""
    subject = _SUBJECT_PREFIX.sub("", subject)
    return subject.strip().casefold()


def _address(name: str, display: bool) -> Callable[[StoredMessage], str]:
    def key(msg: StoredMessage) -> str:
        value = header_value(msg.raw, name) or ""
        pairs = getaddresses([value])
        if not pairs:
            return ""
        real, addr = pairs[0]
        if display and real:
            return real.casefold()
        return addr.split("@", 1)[0].casefold()

    return key


def _date(msg: StoredMessage) -> datetime:
    value = header_value(msg.raw, "date")
    if value:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return _arrival(msg)


def _arrival(msg: StoredMessage) -> datetime:
    when = msg.internaldate
    return when if when.tzinfo else when.replace(tzinfo=UTC)


SORT_KEYS: dict[str, Callable[[StoredMessage], Any]] = {
    "ARRIVAL": _arrival,
    "DATE": _date,
    "SIZE": lambda msg: msg.size,
    "SUBJECT": _base_subject,
    "FROM": _address("from", False),
    "TO": _address("to", False),
    "CC": _address("cc", False),
    "DISPLAYFROM": _address("from", True),
    "DISPLAYTO": _address("to", True),
}


def sort_messages(
    hits: Sequence[tuple[int, StoredMessage]], criteria: Sequence[str]
) -> list[tuple[int, StoredMessage]]:
    """Order ``(seq, message)`` pairs by the criteria, e.g. ``["REVERSE", "SIZE"]``."""
    keys: list[tuple[Callable[[StoredMessage], Any], bool]] = []
    reverse = False
    for word in criteria:
        upper = word.upper()
        if upper == "REVERSE":
            reverse = True
            continue
        key = SORT_KEYS.get(upper)
        if key is None:
            raise SortError(f"Unknown sort argument: {word}")
        keys.append((key, reverse))
        reverse = False
    if not keys:
        raise SortError("Sort criteria missing")
    ordered = sorted(hits, key=lambda hit: hit[0])  # ties: sequence order
    for key, rev in reversed(keys):
        ordered.sort(key=lambda hit, key=key: key(hit[1]), reverse=rev)  # type: ignore[misc]
    return ordered


def thread_references(hits: Sequence[tuple[int, StoredMessage]]) -> bytes:
    """THREAD REFERENCES output body for the given ``(number, message)`` pairs."""
    by_id: dict[str, int] = {}
    parents: dict[int, int] = {}
    ids: dict[int, str | None] = {}
    for number, msg in hits:
        found = _MSGID.findall(header_value(msg.raw, "message-id") or "")
        ids[number] = found[0] if found else None
        if found and found[0] not in by_id:
            by_id[found[0]] = number
    for number, msg in hits:
        refs = _MSGID.findall(header_value(msg.raw, "references") or "")
        refs += _MSGID.findall(header_value(msg.raw, "in-reply-to") or "")
        for ref in reversed(refs):
            parent = by_id.get(ref)
            if (
                parent is not None
                and parent != number
                and not _is_ancestor(parents, number, parent)
            ):
                parents[number] = parent
                break
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for number, _ in hits:
        parent = parents.get(number)
        if parent is None:
            roots.append(number)
        else:
            children.setdefault(parent, []).append(number)

    def render(node: int) -> str:
        kids = children.get(node, [])
        if not kids:
            return str(node)
        if len(kids) == 1:
            return f"{node} {render(kids[0])}"
        return f"{node} " + "".join(f"({render(k)})" for k in kids)

    return "".join(f"({render(root)})" for root in roots).encode()


def _is_ancestor(parents: dict[int, int], node: int, candidate: int) -> bool:
    """Whether `node` is already above `candidate` (a link would make a loop)."""
    current: int | None = candidate
    while current is not None:
        if current == node:
            return True
        current = parents.get(current)
    return False
