"""Our own IMAP server: sans-IO core, command semantics, asyncio shell."""

from mailharness.servers.imap.protocol import IMAPConnection
from mailharness.servers.imap.replies import DOVECOT, PERSONALITIES, Replies, Reply, for_personality
from mailharness.servers.imap.server import IMAPServer
from mailharness.servers.imap.settings import IMAPSettings

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
