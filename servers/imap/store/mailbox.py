"""One folder's messages, UIDs, flags and MODSEQs, and the lock every store object shares."""

from __future__ import annotations

import itertools
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from mailharness.servers.imap.store.errors import NoSuchMailbox, StoreError, TooBig
from mailharness.servers.imap.store.messages import (
    MAX_UID,
    NO_FLAGS,
    RawMessage,
    StoredMessage,
    Synthetic,
    aware,
    normalise_flags,
    to_message_bytes,
)
from mailharness.servers.records import lazy_dataclass

if TYPE_CHECKING:
    from mailharness.servers.imap.store.folders import UserMailboxes


# Synthetic messages are handed out as fresh objects; this many stay alive so a
# session that fetches ENVELOPE then BODY of the same message reuses its cache.
SYNTHETIC_CACHE = 1024
#: Expunged (MODSEQ, UID) pairs kept for QRESYNC, at least this many and at most
#: as many as the mailbox holds; older ones are forgotten, half at a time.
GONE_LOG = 4096

assert array("I").itemsize == 4, "UID arrays need 32-bit unsigned items"


class Core:
    """State shared by a store's objects: the lock, pending notifications, UIDVALIDITY."""

    def __init__(self, uidvalidity_base: int | None) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.depth = 0
        self.pending: dict[int, Callable[[], None]] = {}
        self.tokens = itertools.count(1)
        self.errors: list[BaseException] = []
        if uidvalidity_base is not None and not 0 < uidvalidity_base <= MAX_UID:
            raise ValueError(f"uidvalidity_base={uidvalidity_base!r}: expected 1..{MAX_UID}")
        self.uidvalidity_base = uidvalidity_base
        self.last_uidvalidity = 0 if uidvalidity_base is None else uidvalidity_base - 1

    def next_uidvalidity(self) -> int:
        """Like Dovecot: the creation time, but never the same value twice."""
        value = self.last_uidvalidity + 1
        if self.uidvalidity_base is None:
            value = max(value, int(time.time()))
        if value > MAX_UID:
            value = 1
        self.last_uidvalidity = value
        return value

    def txn(self) -> Txn:
        return Txn(self)


class Txn:
    """Hold the lock for a change; on the outermost exit, release it, then notify watchers."""

    __slots__ = ("_core",)

    def __init__(self, core: Core) -> None:
        self._core = core

    def __enter__(self) -> None:
        self._core.lock.acquire()
        self._core.depth += 1

    def __exit__(self, *exc: object) -> None:
        core = self._core
        core.depth -= 1
        if core.depth or not core.pending:
            core.lock.release()
            return
        callbacks = list(core.pending.values())
        core.pending.clear()
        core.lock.release()
        for callback in callbacks:
            try:
                callback()
            except Exception as error:  # recorded: the change itself succeeded
                with core.lock:
                    core.errors.append(error)


@lazy_dataclass(frozen=True, slots=True)
class MailboxStatus:
    """What STATUS and SELECT report, read in one go under the lock."""

    messages: int
    recent: int
    unseen: int
    uidnext: int
    uidvalidity: int
    highest_modseq: int
    size: int


class Mailbox:
    """One folder. Attributes are read-only to callers.

    UIDs live in one ascending `array('I')`; real messages and synthetic messages
    whose flags changed live in a dict; any other UID is an untouched synthetic
    message, rendered on demand.
    """

    def __init__(
        self,
        core: Core,
        owner: UserMailboxes,
        name: str,
        special_use: str | None = None,
    ) -> None:
        self._core = core
        self._owner = owner
        self.name = name
        self.special_use = special_use
        self.deleted = False
        self.uidvalidity = core.next_uidvalidity()
        self.uidnext = 1
        self.highest_modseq = 1
        # \Recent, as Dovecot keeps it: every UID from here up is recent and not yet
        # claimed by a session (one int, however many messages arrive).
        self.first_recent_uid = 1
        #: Keywords in order of first use; never shrinks (Dovecot keeps them too), so a
        #: session announces new ones with untagged FLAGS by comparing lengths.
        self.keywords: list[str] = []
        self._keyword_set: set[str] = set()
        self._uids: array[int] = array("I")
        self._msgs: dict[int, StoredMessage] = {}
        self._bytes = 0
        self._watchers: dict[int, Callable[[], None]] = {}
        self._flagsets: dict[frozenset[str], frozenset[str]] = {}
        # Change log for CONDSTORE/QRESYNC: (modseq, uid) pairs in modseq order.
        self._log_ms: array[int] = array("Q")
        self._log_uid: array[int] = array("I")
        self._gone_ms: array[int] = array("Q")
        self._gone_uid: array[int] = array("I")
        # Expunges at or below this MODSEQ were forgotten (the log is bounded):
        # QRESYNC then reports every missing UID as vanished, as RFC 7162 §3.2.5.1 allows.
        self.vanished_floor = 0
        #: A session used CONDSTORE here: from then on Dovecot's index tracks MODSEQs
        #: and every SELECT of the mailbox says HIGHESTMODSEQ.
        self.modseqs_tracked = False
        # Synthetic range: UIDs first..last not in _msgs are rendered from _synth.
        self._synth: Synthetic | None = None
        self._synth_first = 0
        self._synth_last = -1
        self._synth_keys: array[int] | None = None  # uid - first -> key, after renumbering
        self._synth_modseq = 0
        self._synth_gapless = True  # no UID of the range expunged: skip the bisect
        self._lru: OrderedDict[int, StoredMessage] = OrderedDict()
        #: What SEARCH derives from message contents (its header index), kept by the
        #: session layer: a message's bytes never change under its UID, so flags, appends
        #: and expunges leave it valid; renumbering and deletion drop it.
        self.derived: object | None = None

    def __repr__(self) -> str:
        return f"<Mailbox {self.name!r} messages={len(self._uids)} uidnext={self.uidnext}>"

    def __len__(self) -> int:
        return len(self._uids)

    # -- reading ---------------------------------------------------------------

    def uids(self) -> array[int]:
        """A snapshot of the UIDs, ascending, as a fresh ``array('I')`` the caller may keep."""
        with self._core.lock:
            return self._uids[:]

    def uids_equal(self, uids: array[int]) -> bool:
        """Whether ``uids`` are exactly the UIDs now here (a view still current), without a copy."""
        with self._core.lock:
            return self._uids == uids

    def uids_after(self, uid: int) -> array[int]:
        """The UIDs above ``uid``, ascending (what arrived since an index last looked)."""
        with self._core.lock:
            return self._uids[bisect_right(self._uids, uid) :]

    @property
    def lock(self) -> threading.RLock:
        """The store's lock, for a reader that must see several calls as one state."""
        return self._core.lock

    def synthetic_span(self) -> tuple[Synthetic, int, int, array[int] | None] | None:
        """(generator, first UID, last UID, keys) of the synthetic range, or None.

        A UID ``u`` of the range that still exists is message ``u - first + 1`` of the
        generator, or ``keys[u - first]`` after renumbering; its bytes never change.
        """
        with self._core.lock:
            if self._synth is None:
                return None
            return self._synth, self._synth_first, self._synth_last, self._synth_keys

    def get(self, uid: int) -> StoredMessage | None:
        with self._core.lock:
            return self._lookup(uid)

    def get_many(self, uids: Iterable[int]) -> list[StoredMessage]:
        """The messages that still exist among `uids`, in the order given, in one lock.

        This is FETCH 1:* over a million synthetic messages, hence the inlined loop.
        """
        with self._core.lock:
            msgs, synth = self._msgs, self._synth
            if synth is None:
                return [m for u in uids if (m := msgs.get(u)) is not None]
            first, last, keys, lru = (
                self._synth_first,
                self._synth_last,
                self._synth_keys,
                self._lru,
            )
            check = not self._synth_gapless
            size, modseq, date = synth.size, self._synth_modseq, synth.date
            out = []
            for uid in uids:
                msg = msgs.get(uid)
                if msg is None:
                    if not first <= uid <= last or (check and not self._exists(uid)):
                        continue
                    msg = lru.get(uid)
                    if msg is None:
                        key = uid - first + 1 if keys is None else keys[uid - first]
                        msg = StoredMessage(
                            uid, NO_FLAGS, date(key), size, modseq, None, synth, key
                        )
                out.append(msg)
            return out

    def status(self) -> MailboxStatus:
        with self._core.lock:
            seen = sum(1 for m in self._msgs.values() if "\\Seen" in m.flags)
            return MailboxStatus(
                messages=len(self._uids),
                recent=len(self._uids) - bisect_left(self._uids, self.first_recent_uid),
                unseen=len(self._uids) - seen,
                uidnext=self.uidnext,
                uidvalidity=self.uidvalidity,
                highest_modseq=self.highest_modseq,
                size=self._bytes,
            )

    def first_unseen(self) -> int | None:
        """UID of the first message without \\Seen (SELECT's [UNSEEN n])."""
        with self._core.lock:
            for uid in self._uids:
                msg = self._msgs.get(uid)
                if msg is None or "\\Seen" not in msg.flags:
                    return uid
            return None

    def changed_since(self, modseq: int) -> list[StoredMessage]:
        """Messages whose MODSEQ is above `modseq`, by UID (CONDSTORE, and flag news)."""
        with self._core.lock:
            start = bisect_right(self._log_ms, modseq)
            found: dict[int, StoredMessage] = {}
            for uid in self._log_uid[start:]:
                msg = self._msgs.get(uid)
                if msg is not None and msg.modseq > modseq:
                    found[uid] = msg
            if self._synth is not None and self._synth_modseq > modseq:
                lo = bisect_left(self._uids, self._synth_first)
                hi = bisect_right(self._uids, self._synth_last)
                for uid in self._uids[lo:hi]:
                    if uid not in self._msgs:
                        found[uid] = self._render(uid)
            return [found[uid] for uid in sorted(found)]

    def vanished_since(self, modseq: int) -> list[int]:
        """UIDs expunged after `modseq` (QRESYNC VANISHED (EARLIER)), ascending.

        Below :attr:`vanished_floor` the log is gone: then every UID under UIDNEXT
        that no longer exists is reported (RFC 7162 allows reporting too many).
        """
        with self._core.lock:
            if modseq < self.vanished_floor:
                return _missing(self._uids, self.uidnext)
            start = bisect_right(self._gone_ms, modseq)
            return sorted(self._gone_uid[start:])

    def claim_recent(self, *, take: bool = True) -> tuple[int, int]:
        """The UIDs still \\Recent and unclaimed, as an inclusive range (empty: lo > hi).

        Dovecot gives \\Recent to one session only: the first to see the messages
        with the mailbox opened read-write (``take``). EXAMINE sees them too but
        leaves them for the next session (RFC 3501 §6.3.2).
        """
        with self._core.lock:
            lo, hi = self.first_recent_uid, self.uidnext - 1
            if take:
                self.first_recent_uid = self.uidnext
            return lo, hi

    @property
    def subscribed(self) -> bool:
        """Subscriptions are the user's names (RENAME and DELETE leave them alone)."""
        return self._owner.is_subscribed(self.name)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback()` after every change, lock released; returns the unwatch function."""
        return watch(self._core, self._watchers, callback)

    def touch(self) -> None:
        """Tell watchers of a change made outside the store's methods (a subscription)."""
        with self._core.txn():
            self._notify()

    # -- changing --------------------------------------------------------------

    def append(
        self,
        raw: RawMessage,
        flags: Iterable[str] = (),
        internaldate: datetime | None = None,
        *,
        check_quota: bool = True,
    ) -> int:
        """Add a message and return its UID; `check_quota=False` lets a test overfill."""
        data = to_message_bytes(raw)
        with self._core.txn():
            self._require_live()
            limit = self._owner.append_limit
            if limit is not None and len(data) > limit:
                raise TooBig(limit, len(data))
            if check_quota:
                self._owner._check_quota(len(data), 1)
            msg = StoredMessage(0, normalise_flags(flags), aware(internaldate), len(data), 0)
            msg._raw = data
            return self._add(msg)

    def set_flags(
        self,
        uids: Iterable[int],
        flags: Iterable[str],
        mode: Literal["set", "add", "remove"],
        *,
        unchanged_since: int | None = None,
    ) -> tuple[list[StoredMessage], list[int]]:
        """STORE: returns (changed messages, UIDs refused by UNCHANGEDSINCE)."""
        if mode not in ("set", "add", "remove"):
            raise ValueError(f"mode={mode!r}: expected one of 'set', 'add', 'remove'")
        wanted = normalise_flags(flags)
        changed: list[StoredMessage] = []
        failed: list[int] = []
        with self._core.txn():
            self._require_live()
            for uid in sorted(set(uids)):
                msg = self._lookup(uid)
                if msg is None:
                    continue
                if unchanged_since is not None and msg.modseq > unchanged_since:
                    failed.append(uid)
                    continue
                if mode == "set":
                    new = wanted
                elif mode == "add":
                    new = msg.flags | wanted
                else:
                    new = msg.flags - wanted
                if new == msg.flags:
                    continue
                if uid not in self._msgs:  # a synthetic message keeps its flags from now on
                    self._lru.pop(uid, None)
                    self._msgs[uid] = msg
                self._learn_keywords(new)
                msg.flags = self._flagsets.setdefault(new, new)
                msg.modseq = self._bump()
                self._log(msg)
                changed.append(msg)
            if changed:
                self._notify()
        return changed, failed

    def expunge(self, uids: Iterable[int] | None = None, *, only_deleted: bool = True) -> list[int]:
        """EXPUNGE (None) or UID EXPUNGE (a set); only \\Deleted ones unless told otherwise."""
        with self._core.txn():
            self._require_live()
            if uids is None:
                doomed = sorted(u for u, m in self._msgs.items() if "\\Deleted" in m.flags)
            else:
                doomed = [
                    u
                    for u in sorted(set(uids))
                    if (m := self._lookup(u)) is not None
                    and (not only_deleted or "\\Deleted" in m.flags)
                ]
            self._remove(doomed)
            return doomed

    def copy_to(self, uids: Iterable[int], dest: Mailbox) -> list[tuple[int, int]]:
        """COPY: all or nothing against the destination owner's quota; (src, dest) UIDs."""
        return self._transfer(uids, dest, move=False)

    def move_to(self, uids: Iterable[int], dest: Mailbox) -> list[tuple[int, int]]:
        """MOVE (RFC 6851): copy, then expunge from here; quota only matters across users."""
        return self._transfer(uids, dest, move=True)

    # -- internals (caller holds the lock) -------------------------------------

    def _require_live(self) -> None:
        if self.deleted:
            raise NoSuchMailbox(self.name)

    def _notify(self) -> None:
        self._core.pending.update(self._watchers)
        self._core.pending.update(self._owner.watchers)

    def _bump(self) -> int:
        self.highest_modseq += 1
        return self.highest_modseq

    def _log(self, msg: StoredMessage) -> None:
        self._log_ms.append(msg.modseq)
        self._log_uid.append(msg.uid)
        if len(self._log_uid) > 2 * len(self._msgs) + 4096:
            self._rebuild_log()

    def _rebuild_log(self) -> None:
        live = sorted(self._msgs.values(), key=lambda m: m.modseq)
        self._log_ms = array("Q", (m.modseq for m in live))
        self._log_uid = array("I", (m.uid for m in live))

    def _exists(self, uid: int) -> bool:
        i = bisect_left(self._uids, uid)
        return i < len(self._uids) and self._uids[i] == uid

    def _lookup(self, uid: int, remember: bool = True) -> StoredMessage | None:
        msg = self._msgs.get(uid)
        if msg is not None or not self._synth_first <= uid <= self._synth_last:
            return msg
        msg = self._lru.get(uid)
        if msg is not None:
            self._lru.move_to_end(uid)
            return msg
        if not self._synth_gapless and not self._exists(uid):
            return None
        msg = self._render(uid)
        if remember:
            self._lru[uid] = msg
            if len(self._lru) > SYNTHETIC_CACHE:
                self._lru.popitem(last=False)
        return msg

    def _render(self, uid: int) -> StoredMessage:
        synth = self._synth
        assert synth is not None
        offset = uid - self._synth_first
        key = offset + 1 if self._synth_keys is None else self._synth_keys[offset]
        return StoredMessage(
            uid, NO_FLAGS, synth.date(key), synth.size, self._synth_modseq, None, synth, key
        )

    def _learn_keywords(self, flags: frozenset[str]) -> None:
        known = self._keyword_set
        for flag in flags:
            if flag not in known and not flag.startswith("\\"):
                known.add(flag)
                self.keywords.append(flag)

    def _add(self, msg: StoredMessage) -> int:
        uid = self.uidnext
        if uid > MAX_UID:
            raise StoreError(f"mailbox {self.name!r} has run out of UIDs")
        self.uidnext += 1
        msg.uid = uid
        msg.modseq = self._bump()
        msg.savedate = aware(None)
        self._msgs[uid] = msg
        self._uids.append(uid)
        self._bytes += msg.size
        if msg.flags:
            self._learn_keywords(msg.flags)
        self._log(msg)
        self._notify()
        self._core.cond.notify_all()
        return uid

    def _remove(self, doomed: list[int]) -> None:
        """Drop existing UIDs (ascending) and record them as vanished."""
        if not doomed:
            return
        modseq = self._bump()
        for uid in doomed:
            msg = self._msgs.pop(uid, None)
            self._lru.pop(uid, None)
            self._bytes -= msg.size if msg is not None else self._synth_size()
            if self._synth_first <= uid <= self._synth_last:
                self._synth_gapless = False
            self._gone_ms.append(modseq)
            self._gone_uid.append(uid)
        if len(doomed) <= 64:
            for uid in doomed:
                del self._uids[bisect_left(self._uids, uid)]
        else:
            drop = set(doomed)
            self._uids = array("I", (u for u in self._uids if u not in drop))
        if len(self._gone_uid) > max(GONE_LOG, len(self._uids)):
            keep = len(self._gone_uid) // 2
            self.vanished_floor = self._gone_ms[-keep - 1]
            self._gone_ms, self._gone_uid = self._gone_ms[-keep:], self._gone_uid[-keep:]
        self._notify()

    def _synth_size(self) -> int:
        assert self._synth is not None
        return self._synth.size

    def _transfer(self, uids: Iterable[int], dest: Mailbox, *, move: bool) -> list[tuple[int, int]]:
        with self._core.txn():
            self._require_live()
            dest._require_live()
            picked = [(u, m) for u in sorted(set(uids)) if (m := self._lookup(u)) is not None]
            if not move or dest._owner is not self._owner:
                dest._owner._check_quota(sum(m.size for _, m in picked), len(picked))
            pairs = [(u, dest._add(m._copy())) for u, m in picked]
            if move:
                self._remove([u for u, _ in picked])
            return pairs

    def _drop(self) -> None:
        """The mailbox is gone (DELETE, reset): empty it and tell whoever has it selected."""
        self.deleted = True
        self.derived = None
        self._uids = array("I")
        self._msgs.clear()
        self._lru.clear()
        self._synth, self._synth_keys = None, None
        self._synth_first, self._synth_last = 0, -1
        self._bytes = 0
        self._notify()

    def _add_synthetic(self, synth: Synthetic, count: int) -> None:
        if self._synth is not None:
            raise StoreError(f"mailbox {self.name!r} already has synthetic messages")
        first = self.uidnext
        if first + count - 1 > MAX_UID:
            raise StoreError(f"mailbox {self.name!r}: {count} messages would pass the UID limit")
        self._synth, self._synth_keys, self._synth_gapless = synth, None, True
        self._synth_first, self._synth_last = first, first + count - 1
        self._synth_modseq = self._bump()
        self._uids.extend(range(first, first + count))
        if self.first_recent_uid == first:
            # Seeded in bulk as old mail, as if a session had seen it: not \Recent.
            self.first_recent_uid = first + count
        self.uidnext = first + count
        self._bytes += synth.size * count
        self._notify()
        self._core.cond.notify_all()

    def _renumber(self) -> None:
        """New UIDVALIDITY, UIDs 1..n in the same order (the "mailbox-churn" scenario)."""
        old = self._uids
        if self._synth is not None:
            lo = bisect_left(old, self._synth_first)
            hi = bisect_right(old, self._synth_last)
            if lo == hi:
                self._synth = None
                self._synth_first, self._synth_last, self._synth_keys = 0, -1, None
            else:
                gapless = hi - lo == self._synth_last - self._synth_first + 1
                if not gapless or self._synth_keys is not None:
                    first, keys = self._synth_first, self._synth_keys
                    self._synth_keys = array(
                        "I",
                        (u - first + 1 if keys is None else keys[u - first] for u in old[lo:hi]),
                    )
                self._synth_first, self._synth_last = lo + 1, hi
                self._synth_gapless = True
        renamed: dict[int, StoredMessage] = {}
        for new_uid, old_uid in enumerate(old, 1):
            msg = self._msgs.get(old_uid)
            if msg is not None:
                msg.uid = new_uid
                renamed[new_uid] = msg
        self._msgs = renamed
        self._uids = array("I", range(1, len(old) + 1))
        self._lru.clear()
        self.derived = None  # keyed by UID
        self._gone_ms, self._gone_uid = array("Q"), array("I")
        self.vanished_floor = 0
        self._rebuild_log()
        self.uidnext = len(old) + 1
        self.first_recent_uid = self.uidnext
        self.uidvalidity = self._core.next_uidvalidity()
        self._bump()
        self._notify()


def watch(
    core: Core, watchers: dict[int, Callable[[], None]], callback: Callable[[], None]
) -> Callable[[], None]:
    """Add `callback` to `watchers` under the store's lock; returns the unwatch function."""
    with core.lock:
        token = next(core.tokens)
        watchers[token] = callback

    def unwatch() -> None:
        with core.lock:
            watchers.pop(token, None)
            core.pending.pop(token, None)

    return unwatch


def _missing(uids: array[int], uidnext: int) -> list[int]:
    """Every UID below `uidnext` not in `uids` (ascending)."""
    out: list[int] = []
    expected = 1
    for uid in uids:
        if uid > expected:
            out.extend(range(expected, uid))
        expected = uid + 1
    out.extend(range(expected, uidnext))
    return out
