"""Our own IMAP server: sans-IO core, command semantics, asyncio shell.

The asyncio shell (`IMAPServer`) is imported when first used, so the sans-IO core
(`protocol`, `session` and the command modules) loads without asyncio, socket or ssl.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mailharness.servers.imap.protocol import IMAPConnection
from mailharness.servers.imap.replies import DOVECOT, PERSONALITIES, Replies, Reply, for_personality
from mailharness.servers.imap.settings import IMAPSettings

if TYPE_CHECKING:
    from mailharness.servers.imap.server import IMAPServer


def __getattr__(name: str) -> Any:
    if name == "IMAPServer":
        return importlib.import_module("mailharness.servers.imap.server").IMAPServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DOVECOT",
    "PERSONALITIES",
    "IMAPConnection",
    "IMAPServer",
    "IMAPSettings",
    "Replies",
    "Reply",
    "for_personality",
]
