"""One user's folder tree: names, hierarchy, LIST patterns, quota."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator

from mailharness.servers.imap.store.errors import (
    InvalidName,
    MailboxExists,
    NoSuchMailbox,
    QuotaExceeded,
    StoreError,
)
from mailharness.servers.imap.store.mailbox import Core, Mailbox, watch
from mailharness.servers.imap.store.tree import Glob, Tree

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


#: A list of mailbox names (spelled so because UserMailboxes.list shadows the builtin).
Names = list[str]


class UserMailboxes:
    """One user's folder tree (delimiter "/"), subscriptions, quota and APPENDLIMIT.

    As in Dovecot's Maildir++ layout, only the mailboxes created exist: the
    levels above ``a/b/c`` are listed (``\\Noselect \\HasChildren``) while
    something lives below them, but they are not mailboxes. Subscriptions are
    names, kept apart from the mailboxes: a deleted or renamed mailbox stays
    subscribed under its old name, as in Dovecot.
    """

    def __init__(self, core: Core, login: str) -> None:
        self._core = core
        self.login = login
        self.quota_storage_limit: int | None = None
        self.quota_message_limit: int | None = None
        self.append_limit: int | None = None
        self._boxes: dict[str, Mailbox] = {}
        #: The same names as a trie: parents, children, LIST matching.
        self._tree = Tree(DELIMITER, INBOX)
        self._subscribed: dict[str, None] = {}
        #: Told of any change to any of these mailboxes or to the list (NOTIFY).
        self.watchers: dict[int, Callable[[], None]] = {}
        for name, use in DEFAULT_MAILBOXES:
            self._add(Mailbox(core, self, name, use))
            self._subscribed[name] = None

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
            return [self._boxes[k] for k in sorted(self._boxes, key=list_order)]

    def create(
        self, name: str, special_use: str | None = None, *, subscribed: bool = False
    ) -> Mailbox:
        """CREATE; a trailing delimiter is dropped, missing parents are not made (Maildir++)."""
        if special_use is not None and special_use not in SPECIAL_USES:
            raise ValueError(
                f"special_use={special_use!r}: expected one of "
                + ", ".join(repr(s) for s in sorted(SPECIAL_USES))
            )
        key = _canonical(name[:-1] if name.endswith(DELIMITER) else name)
        with self._core.txn():
            if key in self._boxes:
                raise MailboxExists(key)
            box = self._add(Mailbox(self._core, self, key, special_use))
            if subscribed:
                self._subscribed[key] = None
            self._core.cond.notify_all()
            return box

    def delete(self, name: str) -> None:
        """DELETE; as Dovecot with Maildir++, children stay (the name lists as their parent)."""
        key = _canonical(name)
        if key == INBOX:
            raise StoreError("INBOX cannot be deleted")
        with self._core.txn():
            box = self._boxes.get(key)
            if box is None:
                raise NoSuchMailbox(name)
            self._remove(key)
            box._drop()

    def rename(self, old: str, new: str) -> None:
        """RENAME; children move along, subscriptions stay (as in Dovecot).

        A name that is only a parent of mailboxes may be renamed too: its
        children move. Renaming INBOX moves its messages and leaves it empty
        (RFC 3501; the IMAP command refuses it, as Dovecot with Maildir++ does).
        """
        src, dst = _canonical(old), _canonical(new)
        if dst.startswith(src + DELIMITER):
            raise StoreError(f"cannot rename {src!r} into its own child {dst!r}")
        with self._core.txn():
            box = self._boxes.get(src)
            if box is None and not self._tree.has_children(src):
                raise NoSuchMailbox(old)
            if dst in self._boxes:
                raise MailboxExists(dst)
            if box is not None and src == INBOX:
                target = self._add(Mailbox(self._core, self, dst))
                box._transfer(box._uids[:], target, move=True)
                return
            moving = [k for k in self._boxes if k == src or k.startswith(src + DELIMITER)]
            targets = [dst + k[len(src) :] for k in moving]
            for target_name in targets:
                if target_name in self._boxes:
                    raise MailboxExists(target_name)
            boxes = [self._boxes[k] for k in moving]
            for key in moving:
                self._remove(key)
            for child, target_name in zip(boxes, targets, strict=True):
                child.name = target_name
                self._add(child)
                child._notify()

    def list(self, reference: str, pattern: str) -> list[str]:
        """Names that LIST `reference` `pattern` shows (RFC 3501 §6.3.8), in LIST order.

        `*` spans levels, `%` stays within one; INBOX matches in any case.
        Parents of mailboxes are among the names (`get()` tells them apart).
        An empty pattern asks for the delimiter; the session answers that
        itself, so it gets [] here.
        """
        return self.list_many(reference, [pattern])

    def list_many(self, reference: str, patterns: Iterable[str]) -> Names:
        """LIST with several patterns (LIST-EXTENDED): every name matching any, once."""
        return [name for batch in self.iter_list(reference, patterns) for name in batch]

    def iter_list(
        self, reference: str, patterns: Iterable[str], batch: int = 256
    ) -> Iterator[Names]:
        """`list_many` in batches, each taken under the store lock: LIST streams its reply."""
        globs: list[Glob] = []
        inbox_globs: list[Glob] = []
        for pattern in patterns:
            if pattern:
                combined = _join(reference, pattern)
                globs.append(Glob(combined, DELIMITER))
                upper = _upper_inbox_prefix(combined)
                if upper != combined:  # INBOX matches in any case, its children too
                    inbox_globs.append(Glob(upper, DELIMITER))
        names = self._tree.match(globs, inbox_globs)
        while True:
            with self._core.lock:
                chunk = list(itertools.islice(names, batch))
            if not chunk:
                return
            yield chunk

    def is_hollow(self, name: str) -> bool:
        """Was `name` deleted while it had children, which are still there?

        Dovecot's Maildir++ keeps such a mailbox's directory: LIST shows it as
        if it existed, SELECT says it does not; it goes when its last child
        does, or when CREATE makes it again.
        """
        with self._core.lock:
            return self._tree.hollow(name)

    def has_children(self, name: str) -> bool:
        try:
            key = _canonical(name)
        except StoreError:
            return False
        with self._core.lock:
            return self._tree.has_children(key)

    # -- subscriptions ------------------------------------------------------------

    def subscribe(self, name: str) -> None:
        """Subscribe to an existing mailbox (Dovecot refuses a missing one)."""
        box = self.get(name)
        key = box.name if box is not None else _canonical(name)
        if box is None and not self.is_hollow(key):
            raise NoSuchMailbox(name)
        with self._core.lock:
            self._subscribed[key] = None

    def unsubscribe(self, name: str) -> None:
        """Drop a subscription; the mailbox need not exist (nor the subscription)."""
        try:
            key = _canonical(name)
        except InvalidName:
            return  # no such name can be subscribed
        with self._core.lock:
            self._subscribed.pop(key, None)

    def is_subscribed(self, name: str) -> bool:
        with self._core.lock:
            return name in self._subscribed

    def subscriptions(self) -> Names:
        """Subscribed names, existing or not, in LIST order."""
        with self._core.lock:
            return sorted(self._subscribed, key=list_order)

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

    def _add(self, box: Mailbox) -> Mailbox:
        self._boxes[box.name] = box
        self._tree.add(box.name)
        box._notify()  # the list changed: NOTIFY MailboxName
        return box

    def _remove(self, key: str) -> None:
        del self._boxes[key]
        self._tree.remove(key)

    def _check_quota(self, add_bytes: int, add_messages: int) -> None:
        used_bytes, used_messages = self.usage()
        storage, messages = self.quota_storage_limit, self.quota_message_limit
        if storage is not None and used_bytes + add_bytes > storage:
            raise QuotaExceeded("storage", storage, used_bytes, add_bytes)
        if messages is not None and used_messages + add_messages > messages:
            raise QuotaExceeded("messages", messages, used_messages, add_messages)


def check_name(name: str) -> str:
    """`name` with INBOX (and its children's prefix) in capitals, or InvalidName.

    Dovecot's checks of a name's shape (mailbox_verify_name, with its
    filesystem layout's): the texts are its own. `*` and `%` are allowed in
    names, as Dovecot allows them.
    """
    if not name:
        raise InvalidName("Invalid mailbox name: Name is empty")
    if name.startswith(DELIMITER):
        raise InvalidName("Invalid mailbox name: Begins with hierarchy separator")
    if DELIMITER + DELIMITER in name:
        raise InvalidName("Invalid mailbox name: Has adjacent hierarchy separators")
    if name.endswith(DELIMITER):
        raise InvalidName("Invalid mailbox name: Ends with hierarchy separator")
    if name.startswith("~"):
        raise InvalidName("Invalid mailbox name: Begins with '~'")
    head, sep, rest = name.partition(DELIMITER)
    if head != INBOX and head.upper() == INBOX:
        return INBOX + sep + rest
    return name


_canonical = check_name


def list_matcher(reference: str, patterns: Iterable[str]) -> Callable[[str], set[int]]:
    """For a name, the lengths of its prefixes (itself included) that LIST's patterns match.

    One pass over the name per pattern: a walk over a subscription's parents
    costs its length, not its length times its depth.
    """
    globs: list[tuple[Glob, Glob | None]] = []
    for pattern in patterns:
        if pattern:
            combined = _join(reference, pattern)
            upper = _upper_inbox_prefix(combined)
            inbox = Glob(upper, DELIMITER) if upper != combined else None
            globs.append((Glob(combined, DELIMITER), inbox))

    def matching(name: str) -> set[int]:
        cuts: set[int] = set()
        for glob, inbox in globs:
            cuts.update(glob.matching_levels(name))
            if inbox is not None and _in_inbox(name):
                cuts.update(inbox.matching_levels(name))
        return cuts

    return matching


def list_order(name: str) -> tuple[bool, list[str]]:
    """LIST's order: INBOX and its children first, then the rest; parents before children."""
    return (not _in_inbox(name), name.split(DELIMITER))


def _in_inbox(name: str) -> bool:
    return name == INBOX or name.startswith(INBOX + DELIMITER)


def _join(reference: str, pattern: str) -> str:
    """The pattern a LIST reference and pattern make together (RFC 3501 §6.3.8)."""
    if reference.endswith(DELIMITER) and pattern.startswith(DELIMITER):
        return reference + pattern[1:]
    return reference + pattern


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
