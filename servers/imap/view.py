"""One session's view of its selected mailbox: its own UID array and sync.

Each session numbers messages by its own array, so sequence numbers stay dense
and stable while other sessions (or the test) change the mailbox. Changes are
reported when the session may report them: EXPUNGE only where RFC 3501
§7.4.1 allows it (not during FETCH, STORE or SEARCH), EXISTS and flag
changes after any command.
"""

from __future__ import annotations

import enum
from array import array
from bisect import bisect_left, bisect_right

from servers.imap.fetch import flags_bytes
from servers.imap.store import Mailbox

__all__ = ["Lost", "SelectedView"]


class Lost(enum.Enum):
    """Why the view can no longer go on (the session sends BYE)."""

    DELETED = "deleted"
    UIDVALIDITY = "uidvalidity"


class SelectedView:
    def __init__(self, mailbox: Mailbox, *, readonly: bool) -> None:
        self.mailbox = mailbox
        self.readonly = readonly
        self.uids: array[int] = mailbox.uids()  # a fresh copy: ours to keep
        self.uidvalidity = mailbox.uidvalidity
        self.modseq = mailbox.highest_modseq
        # uid -> modseq already reported by this command, so sync does not repeat it.
        self.reported: dict[int, int] = {}
        self.recent = mailbox.claim_recent() if not readonly else set()

    def __len__(self) -> int:
        return len(self.uids)

    def seq(self, uid: int) -> int | None:
        uids = self.uids
        i = bisect_left(uids, uid)
        if i < len(uids) and uids[i] == uid:
            return i + 1
        return None

    def lost(self) -> Lost | None:
        if self.mailbox.deleted:
            return Lost.DELETED
        if self.mailbox.uidvalidity != self.uidvalidity:
            return Lost.UIDVALIDITY
        return None

    def sync(self, *, expunge: bool, condstore: bool) -> list[bytes]:
        """Untagged EXPUNGE / EXISTS / FETCH lines bringing the view up to date."""
        box = self.mailbox
        out: list[bytes] = []
        old = self.uids
        last_known = old[-1] if old else 0
        if not box.uids_equal(old):
            current = box.uids()
            if expunge:
                alive = set(current)
                gone = [i + 1 for i, uid in enumerate(old) if uid not in alive]
                if gone:
                    out.extend(b"* %d EXPUNGE\r\n" % seq for seq in reversed(gone))
                    old = array("I", (uid for uid in old if uid in alive))
            tail_start = bisect_right(current, last_known)
            if tail_start < len(current):
                old = old + current[tail_start:]
                out.append(b"* %d EXISTS\r\n" % len(old))
            self.uids = old
        highest = box.highest_modseq
        if highest > self.modseq:
            for msg in box.changed_since(self.modseq):
                if msg.uid > last_known or self.reported.get(msg.uid) == msg.modseq:
                    continue
                seq = self.seq(msg.uid)
                if seq is None:
                    continue
                line = b"* %d FETCH (UID %d FLAGS %s" % (seq, msg.uid, flags_bytes(msg.flags))
                if condstore:
                    line += b" MODSEQ (%d)" % msg.modseq
                out.append(line + b")\r\n")
            self.modseq = highest
        self.reported.clear()
        return out
