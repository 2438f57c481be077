"""One session's view of its selected mailbox: its own UID array, \\Recent and sync.

Each session numbers messages by its own array, so sequence numbers stay dense
and stable while other sessions (or the test) change the mailbox. Changes are
reported when the session may report them: EXPUNGE only where RFC 3501
§7.4.1 allows it (not during FETCH, STORE or SEARCH), EXISTS and flag
changes after any command.

What the view adds to the mailbox is Dovecot's per-session state: the
\\Recent messages it was given (a few UID ranges, never a set per message),
how many keywords it has announced with ``* FLAGS``, the saved SEARCH result
(``$``, RFC 5182) and the searches it keeps up to date (RFC 5267).
"""

from __future__ import annotations

import enum
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from mailharness.servers.imap.commands import SYSTEM_FLAGS
from mailharness.servers.imap.fetch import flags_bytes
from mailharness.servers.imap.sequence import format_sequence_set
from mailharness.servers.imap.store import Mailbox, StoredMessage

__all__ = ["RECENT", "Lost", "SearchUpdate", "SearchView", "SelectedView"]

RECENT = "\\Recent"
_RECENT_SET = frozenset({RECENT})
#: Distinct flag sets whose \\Recent form and FLAGS bytes a view keeps (keywords make
#: more possible; past this they are made per message).
_FLAG_CACHE = 1024
#: Dovecot's CLIENT_MAX_SEARCH_UPDATES: searches kept up to date at once.
MAX_SEARCH_UPDATES = 10


class Lost(enum.Enum):
    """Why the view can no longer go on (the session sends BYE)."""

    DELETED = "deleted"
    UIDVALIDITY = "uidvalidity"


class SearchView:
    """A stored message with this session's sequence number and \\Recent (search.MessageView)."""

    __slots__ = ("_msg", "flags", "internaldate", "modseq", "seq", "size", "uid")

    def __init__(self, msg: StoredMessage, seq: int, flags: frozenset[str]) -> None:
        self._msg = msg
        self.seq = seq
        self.uid = msg.uid
        self.flags = flags
        self.internaldate = msg.internaldate
        self.size = msg.size
        self.modseq = msg.modseq

    @property
    def raw(self) -> bytes:
        return self._msg.raw

    @property
    def savedate(self) -> datetime:
        return self._msg.savedate or self.internaldate


Matcher = Callable[[SearchView, int, int], bool]
"""``(message, max_seq, max_uid) -> matches``: a compiled SEARCH program."""


@dataclass(slots=True)
class SearchUpdate:
    """A ``SEARCH RETURN (UPDATE)`` kept current (RFC 5267 CONTEXT=SEARCH)."""

    tag: str
    uid: bool
    matches: Matcher
    hits: set[int] = field(default_factory=set)  # UIDs


class SelectedView:
    def __init__(self, mailbox: Mailbox, *, readonly: bool) -> None:
        self.mailbox = mailbox
        self.readonly = readonly
        self.uids: array[int] = mailbox.uids()  # a fresh copy: ours to keep
        self.uidvalidity = mailbox.uidvalidity
        self.modseq = mailbox.highest_modseq
        # uid -> modseq already reported by this command, so sync does not repeat it.
        self.reported: dict[int, int] = {}
        #: Inclusive UID ranges that are \Recent in this session (usually 0 or 1).
        self.recent: list[tuple[int, int]] = []
        self._take_recent()
        self.recent_count = self.count_recent()
        #: How many of the mailbox's keywords this session has announced in FLAGS.
        self.keywords_announced = len(mailbox.keywords)
        #: The text of ``OK [PERMANENTFLAGS ...]`` (the session's wording).
        self.permanent_text = ""
        #: QRESYNC: the HIGHESTMODSEQ the client was last brought up to, and the
        #: highest MODSEQ a FETCH told it since (Dovecot's imap_sync_send_highestmodseq).
        self.full_modseq = self.modseq
        self.fetched_modseq = 0
        #: The saved result ``$`` (RFC 5182), as UIDs; None before any SEARCH SAVE.
        self.saved: array[int] | None = None
        self.updates: list[SearchUpdate] = []
        # FETCH 1:* FLAGS of many \Recent messages is a hot path: a flag set (the store
        # interns them) with \Recent, and its FLAGS bytes, are made once.
        self._with_recent: dict[frozenset[str], frozenset[str]] = {}
        self._rendered: dict[frozenset[str], bytes] = {}

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

    # -- \Recent -----------------------------------------------------------------

    def _take_recent(self) -> None:
        lo, hi = self.mailbox.claim_recent(take=not self.readonly)
        if lo > hi:
            return
        if self.recent and self.recent[-1][1] + 1 >= lo:
            self.recent[-1] = (self.recent[-1][0], max(hi, self.recent[-1][1]))
        else:
            self.recent.append((lo, hi))

    def is_recent(self, uid: int) -> bool:
        # A loop, not any(): this runs per message in FETCH 1:* FLAGS and SEARCH.
        for lo, hi in self.recent:  # noqa: SIM110
            if lo <= uid <= hi:
                return True
        return False

    def count_recent(self) -> int:
        uids = self.uids
        return sum(bisect_right(uids, hi) - bisect_left(uids, lo) for lo, hi in self.recent)

    def flags_of(self, msg: StoredMessage) -> frozenset[str]:
        """The message's flags as this session sees them (with \\Recent)."""
        flags = msg.flags
        recent = self.recent
        if not recent:
            return flags
        if len(recent) == 1:
            lo, hi = recent[0]
            if not lo <= msg.uid <= hi:
                return flags
        elif not self.is_recent(msg.uid):
            return flags
        out = self._with_recent.get(flags)
        if out is None:
            out = flags | _RECENT_SET
            if len(self._with_recent) < _FLAG_CACHE:
                self._with_recent[flags] = out
        return out

    def render_flags(self, msg: StoredMessage) -> bytes:
        """FETCH's ``FLAGS (...)`` item for this session."""
        flags = self.flags_of(msg)
        out = self._rendered.get(flags)
        if out is None:
            out = b"FLAGS " + flags_bytes(flags)
            if len(self._rendered) < _FLAG_CACHE:
                self._rendered[flags] = out
        return out

    def search_view(self, msg: StoredMessage, seq: int) -> SearchView:
        return SearchView(msg, seq, self.flags_of(msg))

    # -- keywords ----------------------------------------------------------------

    def flags_line(self) -> bytes:
        """``* FLAGS (...)`` when the mailbox has keywords this session has not been told of.

        Dovecot announces them before any FETCH that could use one (RFC 3501 §7.2.6).
        """
        keywords = self.mailbox.keywords
        if len(keywords) == self.keywords_announced:
            return b""
        self.keywords_announced = len(keywords)
        # Dovecot 2.3.19 sends PERMANENTFLAGS again too (newer versions only FLAGS).
        return b"* FLAGS %s\r\n* OK [PERMANENTFLAGS %s] %s\r\n" % (
            self.select_flags().encode(),
            self.permanent_flags().encode(),
            self.permanent_text.encode(),
        )

    def permanent_flags(self) -> str:
        """PERMANENTFLAGS' list: Dovecot's order, the keywords, then ``\\*``."""
        if self.readonly:
            return "()"
        return "(" + " ".join([*SYSTEM_FLAGS, *self.mailbox.keywords, "\\*"]) + ")"

    def select_flags(self) -> str:
        return "(" + " ".join([*SYSTEM_FLAGS, *self.mailbox.keywords]) + ")"

    # -- saved result --------------------------------------------------------------

    def saved_uids(self) -> array[int]:
        """``$``: the saved UIDs still in this view (RFC 5182: expunged ones drop out)."""
        if self.saved is None:
            return array("I")
        return array("I", (u for u in self.saved if self.seq(u) is not None))

    # -- sync ----------------------------------------------------------------------

    def sync(
        self,
        *,
        expunge: bool,
        condstore: bool,
        qresync: bool = False,
        counts: bool = True,
        flag_changes: bool = True,
        new_mail: Callable[[array[int]], list[bytes]] | None = None,
    ) -> list[bytes]:
        """Untagged lines bringing the view up to date, in Dovecot's order.

        FLAGS for new keywords, search REMOVEFROM for expunged messages, flag
        FETCHes, EXPUNGE (or VANISHED under QRESYNC), EXISTS and RECENT, then
        ``new_mail(uids)`` (NOTIFY's MessageNew fetch), then
        the other search updates. ``counts`` / ``flag_changes`` False: NOTIFY
        left those events out for the selected mailbox, and Dovecot then sends
        neither (nor takes the new messages into the view).
        """
        box = self.mailbox
        out: list[bytes] = []
        flags_line = self.flags_line()
        if flags_line:
            out.append(flags_line)
        old = self.uids
        last_known = old[-1] if old else 0
        # Flag changes first, numbered as the client still numbers them (Dovecot's order).
        changed: list[StoredMessage] = []
        highest = box.highest_modseq
        if highest > self.modseq and not flag_changes:
            self.modseq = highest
        if highest > self.modseq:
            for msg in box.changed_since(self.modseq):
                if msg.uid > last_known:
                    continue
                changed.append(msg)
                if self.reported.get(msg.uid) == msg.modseq:
                    continue
                seq = self.seq(msg.uid)
                if seq is None:
                    continue
                # Dovecot's order; UID only under QRESYNC (RFC 7162 §3.2.4).
                line = b"* %d FETCH (" % seq
                if qresync:
                    line += b"UID %d " % msg.uid
                if condstore:
                    line += b"MODSEQ (%d) " % msg.modseq
                    self.fetched_modseq = max(self.fetched_modseq, msg.modseq)
                out.append(line + self.render_flags(msg) + b")\r\n")
            self.modseq = highest
        new_uids: array[int] = array("I")
        gone_uids: list[int] = []
        if counts and not box.uids_equal(old):
            current = box.uids()
            if expunge:
                alive = set(current)
                gone = [i + 1 for i, uid in enumerate(old) if uid not in alive]
                if gone:
                    gone_uids = [old[seq - 1] for seq in gone]
                    out.extend(self._update_removes(gone_uids, gone))
                    if qresync:
                        out.append(b"* VANISHED %s\r\n" % format_sequence_set(gone_uids).encode())
                    else:
                        out.extend(b"* %d EXPUNGE\r\n" % seq for seq in reversed(gone))
                    old = array("I", (uid for uid in old if uid in alive))
            tail_start = bisect_right(current, last_known)
            if tail_start < len(current):
                new_uids = current[tail_start:]
                old = old + new_uids
            self.uids = old
        if new_uids:
            self._take_recent()
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
        recent = self.count_recent() if self.recent else 0
        if recent != self.recent_count and (new_uids or gone_uids):
            out.append(b"* %d RECENT\r\n" % recent)
        self.recent_count = recent
        if new_uids and new_mail is not None:
            out.extend(new_mail(new_uids))
        if self.updates and (changed or new_uids):
            out.extend(self._update_changes(changed, new_uids))
        self.reported.clear()
        return out

    def highest_modseq_news(self) -> int | None:
        """QRESYNC: a HIGHESTMODSEQ to tell after a sync, if EXPUNGE/EXISTS moved it past
        what the FETCH lines said (Dovecot's imap_sync_send_highestmodseq)."""
        highest = self.modseq
        news = highest > self.full_modseq and highest > self.fetched_modseq
        self.full_modseq = highest
        self.fetched_modseq = 0
        return highest if news else None

    # -- CONTEXT=SEARCH --------------------------------------------------------------

    def _update_removes(self, gone_uids: list[int], gone_seqs: list[int]) -> list[bytes]:
        out = []
        for update in self.updates:
            removed = [
                (uid, seq)
                for uid, seq in zip(gone_uids, gone_seqs, strict=True)
                if uid in update.hits
            ]
            if removed:
                update.hits.difference_update(uid for uid, _ in removed)
                numbers = [uid if update.uid else seq for uid, seq in removed]
                out.append(_update_line(update, b"REMOVEFROM", numbers))
        return out

    def _update_changes(
        self, changed: Iterable[StoredMessage], new_uids: array[int]
    ) -> list[bytes]:
        box = self.mailbox
        candidates = [m for m in changed if self.seq(m.uid) is not None]
        candidates += box.get_many(new_uids)
        max_seq = len(self.uids)
        max_uid = self.uids[-1] if self.uids else 0
        out = []
        for update in self.updates:
            added, removed = [], []
            for msg in candidates:
                seq = self.seq(msg.uid)
                assert seq is not None
                hit = update.matches(self.search_view(msg, seq), max_seq, max_uid)
                number = msg.uid if update.uid else seq
                if hit and msg.uid not in update.hits:
                    update.hits.add(msg.uid)
                    added.append(number)
                elif not hit and msg.uid in update.hits:
                    update.hits.discard(msg.uid)
                    removed.append(number)
            if removed:
                out.append(_update_line(update, b"REMOVEFROM", sorted(removed)))
            if added:
                out.append(_update_line(update, b"ADDTO", sorted(added)))
        return out


def _update_line(update: SearchUpdate, kind: bytes, numbers: list[int]) -> bytes:
    # Dovecot always sends position 0 ("unknown", RFC 5267 §4.3).
    return b'* ESEARCH (TAG "%s")%s %s (0 %s)\r\n' % (
        update.tag.encode(),
        b" UID" if update.uid else b"",
        kind,
        format_sequence_set(numbers).encode(),
    )
