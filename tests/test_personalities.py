"""One list of personalities; each protocol has one reply table per personality."""

from __future__ import annotations

from mailharness.servers.imap import replies as imap_replies
from mailharness.servers.personality import PERSONALITIES
from mailharness.servers.smtp import replies as smtp_replies


def test_every_protocol_has_a_reply_table_for_every_personality() -> None:
    assert tuple(imap_replies.BY_PERSONALITY) == PERSONALITIES
    assert tuple(smtp_replies.BY_PERSONALITY) == PERSONALITIES
    for name in PERSONALITIES:
        assert imap_replies.for_personality(name) is imap_replies.BY_PERSONALITY[name]
        assert smtp_replies.for_personality(name) is smtp_replies.BY_PERSONALITY[name]
