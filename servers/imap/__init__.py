"""Our own IMAP server: sans-IO core, command semantics, asyncio shell."""

from servers.imap.protocol import IMAPConnection
from servers.imap.replies import DOVECOT, PERSONALITIES, Replies, Reply, for_personality
from servers.imap.server import IMAPServer
from servers.imap.settings import IMAPSettings

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
