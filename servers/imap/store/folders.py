"""One user's folder tree: names, hierarchy, LIST patterns, quota."""

from __future__ import annotations

import re
from collections.abc import Callable

from servers.imap.store.errors import MailboxExists, NoSuchMailbox, QuotaExceeded, StoreError
from servers.imap.store.mailbox import Core, Mailbox, watch

DELIMITER = "/"
INBOX = "INBOX"
SPECIAL_USES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)
# What every new user starts with, as a Dovecot install with the usual
# `mailbox { auto = subscribe; special_use = ... }` namespace gives them.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    (INBOX, None),
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


class UserMailboxes:
    """One user's folder tree (delimiter "/"), quota and APPENDLIMIT."""

    def __init__(self, core: Core, login: str) -> None:
        self._core = core
        self.login = login
        self.quota_storage_limit: int | None = None
        self.quota_message_limit: int | None = None
        self.append_limit: int | None = None
        self._boxes: dict[str, Mailbox] = {}
        #: Told of any change to any of these mailboxes or to the list (NOTIFY).
        self.watchers: dict[int, Callable[[], None]] = {}
        for name, use in DEFAULT_MAILBOXES:
            self._boxes[name] = Mailbox(core, self, name, use, subscribed=True)

    def __repr__(self) -> str:
        return f"<UserMailboxes {self.login!r} {sorted(self._boxes)}>"

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback()` after any change of this user's mailboxes; returns unwatch."""
        return watch(self._core, self.watchers, callback)

    def get(self, name: str) -> Mailbox | None:
        """The mailbox called `name` ("INBOX" in any case), or None."""
        try:
            key = _canonical(name)
        except StoreError:
            return None
        with self._core.lock:
            return self._boxes.get(key)

    def __getitem__(self, name: str) -> Mailbox:
        box = self.get(name)
        if box is None:
            raise NoSuchMailbox(name)
        return box

    def mailboxes(self) -> list[Mailbox]:
        """All mailboxes, INBOX first, then by name."""
        with self._core.lock:
            return [self._boxes[k] for k in sorted(self._boxes, key=_list_order)]

    def create(
        self, name: str, special_use: str | None = None, *, subscribed: bool = False
    ) -> Mailbox:
        """CREATE; missing parents are created too, as Dovecot does."""
        if special_use is not None and special_use not in SPECIAL_USES:
            raise ValueError(
                f"special_use={special_use!r}: expected one of "
                + ", ".join(repr(s) for s in sorted(SPECIAL_USES))
            )
        key = _canonical(name[:-1] if name.endswith(DELIMITER) else name)
        with self._core.txn():
            if key in self._boxes:
                raise MailboxExists(key)
            box = self._make(key)
            box.special_use = special_use
            box.subscribed = subscribed
            return box

    def delete(self, name: str) -> None:
        key = _canonical(name)
        if key == INBOX:
            raise StoreError("INBOX cannot be deleted")
        with self._core.txn():
            box = self._boxes.get(key)
            if box is None:
                raise NoSuchMailbox(name)
            if self._has_children(key):
                raise StoreError(f"mailbox {key!r} has children, delete them first")
            del self._boxes[key]
            box._drop()

    def rename(self, old: str, new: str) -> None:
        """RENAME; children move along. Renaming INBOX moves its messages and leaves it empty."""
        src, dst = _canonical(old), _canonical(new)
        with self._core.txn():
            box = self._boxes.get(src)
            if box is None:
                raise NoSuchMailbox(old)
            if dst in self._boxes:
                raise MailboxExists(dst)
            if src == INBOX:
                target = self._make(dst)
                box._transfer(box._uids[:], target, move=True)
                return
            if dst.startswith(src + DELIMITER):
                raise StoreError(f"cannot rename {src!r} into its own child {dst!r}")
            self._make_parents(dst)
            moving = [k for k in self._boxes if k == src or k.startswith(src + DELIMITER)]
            for key in moving:
                child = self._boxes.pop(key)
                child.name = dst + key[len(src) :]
                self._boxes[child.name] = child
                child._notify()

    def list(self, reference: str, pattern: str) -> list[Mailbox]:
        """LIST matching (RFC 3501 §6.3.8): `*` spans levels, `%` stays within one.

        An empty pattern asks for the delimiter; the session answers that itself,
        so it gets [] here.
        """
        if not pattern:
            return []
        if reference and not reference.endswith(DELIMITER) and not pattern.startswith(DELIMITER):
            combined = reference + pattern
        elif reference.endswith(DELIMITER) and pattern.startswith(DELIMITER):
            combined = reference + pattern[1:]
        else:
            combined = reference + pattern
        regex = _pattern_regex(combined)
        inbox_regex = _pattern_regex(_upper_inbox_prefix(combined))
        with self._core.lock:
            return [
                box
                for box in self.mailboxes()
                if regex.fullmatch(box.name)
                or (_in_inbox(box.name) and inbox_regex.fullmatch(box.name))
            ]

    def has_children(self, name: str) -> bool:
        try:
            key = _canonical(name)
        except StoreError:
            return False
        with self._core.lock:
            return self._has_children(key)

    def usage(self) -> tuple[int, int]:
        """(bytes, messages) over every mailbox: what QUOTA and GETQUOTAROOT report."""
        with self._core.lock:
            return (
                sum(b._bytes for b in self._boxes.values()),
                sum(len(b._uids) for b in self._boxes.values()),
            )

    def change_uidvalidity(self, name: str) -> None:
        """Give `name` a new UIDVALIDITY and renumber its UIDs from 1; watchers are told."""
        with self._core.txn():
            box = self._boxes.get(_canonical(name))
            if box is None:
                raise NoSuchMailbox(name)
            box._renumber()

    # -- internals -------------------------------------------------------------

    def _has_children(self, key: str) -> bool:
        prefix = key + DELIMITER
        return any(k.startswith(prefix) for k in self._boxes)

    def _make_parents(self, key: str) -> None:
        parts = key.split(DELIMITER)
        for depth in range(1, len(parts)):
            parent = DELIMITER.join(parts[:depth])
            if parent not in self._boxes:
                self._boxes[parent] = Mailbox(self._core, self, parent)

    def _make(self, key: str) -> Mailbox:
        self._make_parents(key)
        box = self._boxes[key] = Mailbox(self._core, self, key)
        box._notify()  # the list changed: NOTIFY MailboxName
        self._core.cond.notify_all()
        return box

    def _check_quota(self, add_bytes: int, add_messages: int) -> None:
        used_bytes, used_messages = self.usage()
        storage, messages = self.quota_storage_limit, self.quota_message_limit
        if storage is not None and used_bytes + add_bytes > storage:
            raise QuotaExceeded("storage", storage, used_bytes, add_bytes)
        if messages is not None and used_messages + add_messages > messages:
            raise QuotaExceeded("messages", messages, used_messages, add_messages)


def _canonical(name: str) -> str:
    """Validate a mailbox name and spell INBOX (and its children's prefix) in capitals."""
    parts = name.split(DELIMITER)
    if not name or any(not p for p in parts):
        raise StoreError(f"invalid mailbox name {name!r}: empty hierarchy level")
    if "*" in name or "%" in name:
        raise StoreError(f"invalid mailbox name {name!r}: '*' and '%' are LIST wildcards")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return DELIMITER.join(parts)


def _in_inbox(name: str) -> bool:
    return name == INBOX or name.startswith(INBOX + DELIMITER)


def _list_order(name: str) -> tuple[bool, str]:
    return (not _in_inbox(name), name)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _upper_inbox_prefix(pattern: str) -> str:
    """Capitalise a leading literal that could spell INBOX, so `inbox/%` matches INBOX/x."""
    literal = re.match(r"[^*%/]*", pattern)
    head = literal.group(0) if literal else ""
    rest = pattern[len(head) :]
    if head and (
        INBOX.startswith(head.upper()) and (rest[:1] in ("*", "%") or head.upper() == INBOX)
    ):
        return head.upper() + rest
    return pattern
