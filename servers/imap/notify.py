"""NOTIFY (RFC 5465) as Dovecot 2.3 does it: parse the filters, report other mailboxes.

The session keeps a small snapshot of every mailbox its filters name (counts,
UIDNEXT, UNSEEN, MODSEQ, subscription) and, when the store says something
changed, sends ``* STATUS`` / ``* LIST`` for the differences. Changes the
session made itself are absorbed into the snapshot after each of its commands,
so, as with Dovecot, a client is not told of its own CREATE or APPEND.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailharness.servers.imap.commands import mailbox_wire
from mailharness.servers.imap.fetch import FetchPlan
from mailharness.servers.imap.protocol import Token
from mailharness.servers.imap.replies import DOVECOT, Replies
from mailharness.servers.imap.store import DELIMITER, INBOX, Mailbox, UserMailboxes

__all__ = ["NotifyError", "NotifySpec", "NotifyState", "parse_notify"]

_EVENTS = {
    name.upper(): name
    for name in (
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "AnnotationChange",
        "MailboxName",
        "SubscriptionChange",
        "MailboxMetadataChange",
        "ServerMetadataChange",
    )
}
#: Events Dovecot 2.3 refuses with ``NO [BADEVENT ...]``.
UNSUPPORTED = ("AnnotationChange", "MailboxMetadataChange", "ServerMetadataChange")
#: Dovecot's IMAP_NOTIFY_MAX_NAMES_PER_NS: more names is NOTIFICATIONOVERFLOW.
MAX_NAMES = 100
_MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})


class NotifyError(ValueError):
    """A NOTIFY the client got wrong: BAD, or NO with ``code`` (BADEVENT, NOTIFICATIONOVERFLOW)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Group:
    """One ``(filter events)`` of NOTIFY SET."""

    kind: str  # personal (also inboxes), subscribed, subtree, mailboxes
    names: tuple[str, ...]
    events: frozenset[str]

    def covers(self, box: Mailbox) -> bool:
        if self.kind == "personal":
            return True
        if self.kind == "subscribed":
            return box.subscribed
        if self.kind == "mailboxes":
            return box.name in self.names
        return any(box.name == n or box.name.startswith(n + DELIMITER) for n in self.names)


@dataclass(frozen=True, slots=True)
class NotifySpec:
    """A parsed ``NOTIFY SET``."""

    status: bool
    #: Events for the selected mailbox; None when SELECTED was not given (Dovecot: none).
    selected: frozenset[str] | None
    groups: tuple[Group, ...]
    #: SELECTED's ``MessageNew (fetch-att...)``: what to FETCH of each new message.
    new_mail_fetch: Token | None = None

    @property
    def selected_events(self) -> frozenset[str]:
        return self.selected or frozenset()


def parse_notify(args: Iterable[Token], replies: Replies = DOVECOT) -> NotifySpec | None:
    """``NONE`` -> None; ``SET [STATUS] (filter events)...`` -> a spec; else NotifyError."""
    items = list(args)
    verb = items.pop(0) if items else None
    if not isinstance(verb, str):
        raise NotifyError(replies.invalid_arguments)
    verb = verb.upper()
    if verb == "NONE" and not items:
        return None
    if verb != "SET":
        raise NotifyError(replies.invalid_arguments)
    status = False
    if items and isinstance(items[0], str) and items[0].upper() == "STATUS":
        status = True
        items.pop(0)
    selected: frozenset[str] | None = None
    new_mail_fetch: Token | None = None
    groups: list[Group] = []
    used: set[str] = set()
    for group in items:
        if not isinstance(group, list) or not group or not isinstance(group[0], str):
            raise NotifyError(replies.invalid_arguments)
        kind = group[0].lower()
        rest = group[1:]
        names: tuple[str, ...] = ()
        if kind in ("subtree", "mailboxes"):
            if not rest:
                raise NotifyError(replies.invalid_arguments)
            names = _names(rest.pop(0), replies)
        elif kind not in ("selected", "selected-delayed", "personal", "inboxes", "subscribed"):
            raise NotifyError(replies.invalid_arguments)
        if len(rest) != 1:
            raise NotifyError(replies.invalid_arguments)
        events = _events(rest[0], replies)
        used |= events
        if kind.startswith("selected"):
            if selected is not None:
                raise NotifyError(replies.notify_duplicate_selected)
            selected = events
            new_mail_fetch = _new_mail_fetch(rest[0], replies)
        elif events:
            # Dovecot cannot tell inboxes from other personal mailboxes: the same to it.
            groups.append(Group("personal" if kind == "inboxes" else kind, names, events))
    bad = [e for e in _EVENTS.values() if e in used and e in UNSUPPORTED]
    if bad:
        raise NotifyError(replies.bad_notify_events, "BADEVENT " + " ".join(bad))
    if any(len(g.names) > MAX_NAMES for g in groups):
        overflow = replies.notify_too_many_names
        raise NotifyError(overflow.text, overflow.code)
    return NotifySpec(status, selected, tuple(groups), new_mail_fetch)


def _names(token: Token, replies: Replies) -> tuple[str, ...]:
    values = token if isinstance(token, list) else [token]
    if not values:
        raise NotifyError(replies.invalid_arguments)
    out = []
    for value in values:
        if isinstance(value, list):
            raise NotifyError(replies.invalid_arguments)
        name = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        out.append(INBOX if name.upper() == INBOX else name)
    return tuple(out)


def _events(token: Token, replies: Replies) -> frozenset[str]:
    if isinstance(token, str) and token.upper() == "NONE":
        return frozenset()
    if not isinstance(token, list) or not token:
        raise NotifyError(replies.invalid_arguments)
    events = set()
    for item in token:
        if isinstance(item, list):
            continue  # MessageNew's fetch attributes: see _new_mail_fetch
        name = _EVENTS.get(item.upper() if isinstance(item, str) else "")
        if name is None:
            raise NotifyError(replies.invalid_arguments)
        events.add(name)
    return frozenset(events)


def _new_mail_fetch(token: Token, replies: Replies) -> Token | None:
    """The list after MessageNew in SELECTED's events, if any (RFC 5465 §5.2)."""
    if not isinstance(token, list):
        return None
    for name, after in itertools.pairwise(token):
        if isinstance(name, str) and name.upper() == "MESSAGENEW" and isinstance(after, list):
            if not after:
                raise NotifyError(replies.invalid_arguments)
            return after
    return None


@dataclass(frozen=True, slots=True)
class _Seen:
    uidvalidity: int
    messages: int
    uidnext: int
    unseen: int
    highest_modseq: int
    subscribed: bool


@dataclass(slots=True)
class NotifyState:
    """What this session last told (or would have told) the client about its mailboxes."""

    spec: NotifySpec
    seen: dict[str, _Seen] = field(default_factory=dict)
    #: The compiled ``MessageNew (fetch-att)`` of SELECTED, set by the session.
    new_mail_fetch: FetchPlan | None = None

    def events_for(self, box: Mailbox) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for group in self.spec.groups:
            if group.covers(box):
                out |= group.events
        return out

    def initial_status(self, user: UserMailboxes, selected: Mailbox | None) -> list[bytes]:
        """NOTIFY SET STATUS: Dovecot's STATUS of each mailbox with message events."""
        modseq = any("FlagChange" in g.events for g in self.spec.groups)
        out = []
        for box in user.mailboxes():
            if box is selected or not self.events_for(box) & _MESSAGE_EVENTS:
                continue
            s = box.status()
            items = [
                f"MESSAGES {s.messages}",
                f"UIDNEXT {s.uidnext}",
                f"UIDVALIDITY {s.uidvalidity}",
                f"UNSEEN {s.unseen}",
            ]
            if modseq:
                items.append(f"HIGHESTMODSEQ {s.highest_modseq}")
            out.append(_status_line(box, items))
        return out

    def refresh(self, user: UserMailboxes) -> None:
        """Take the present as known (after the session's own command)."""
        self.seen = {box.name: _snapshot(box) for box in user.mailboxes()}

    def updates(
        self, user: UserMailboxes, selected: Mailbox | None, condstore: bool
    ) -> list[bytes]:
        """``* LIST`` / ``* STATUS`` for what changed since the last look, then remember it."""
        out: list[bytes] = []
        now = {box.name: box for box in user.mailboxes()}
        before = self.seen
        for name, old in before.items():
            if name not in now and self._wants_name(name, old.subscribed):
                out.append(_list_line("\\NonExistent", name))
        fresh: dict[str, _Seen] = {}
        for name, box in now.items():
            new = _snapshot(box)
            fresh[name] = new
            events = self.events_for(box)
            known = before.get(name)
            if known is None:
                if "MailboxName" in events:
                    out.append(_list_line("", name))
                continue
            if known.subscribed != new.subscribed and "SubscriptionChange" in events:
                out.append(_list_line("\\Subscribed" if new.subscribed else "", name))
            if box is not selected:
                items = _status_items(known, new, events, condstore)
                if items:
                    out.append(_status_line(box, items))
        self.seen = fresh
        return out

    def _wants_name(self, name: str, subscribed: bool) -> bool:
        for group in self.spec.groups:
            if "MailboxName" not in group.events:
                continue
            if (
                group.kind == "personal"
                or (group.kind == "subscribed" and subscribed)
                or (group.kind == "mailboxes" and name in group.names)
                or (
                    group.kind == "subtree"
                    and any(name == n or name.startswith(n + DELIMITER) for n in group.names)
                )
            ):
                return True
        return False


def _snapshot(box: Mailbox) -> _Seen:
    s = box.status()
    return _Seen(s.uidvalidity, s.messages, s.uidnext, s.unseen, s.highest_modseq, box.subscribed)


def _status_items(old: _Seen, new: _Seen, events: frozenset[str], condstore: bool) -> list[str]:
    """Dovecot's choice of STATUS items for a change (imap-notify.c)."""
    counts = uidvalidity = unseen = False
    if new.uidvalidity != old.uidvalidity and events & _MESSAGE_EVENTS:
        uidvalidity = counts = True
    if (new.uidnext != old.uidnext and "MessageNew" in events) or (
        new.messages < old.messages + (new.uidnext - old.uidnext) and "MessageExpunge" in events
    ):
        counts = True
    flags_changed = new.highest_modseq != old.highest_modseq and "FlagChange" in events
    if flags_changed and new.unseen != old.unseen:
        unseen = True
    items = []
    if counts:
        items += [f"MESSAGES {new.messages}", f"UIDNEXT {new.uidnext}"]
    if uidvalidity:
        items.append(f"UIDVALIDITY {new.uidvalidity}")
    if counts or unseen:
        items.append(f"UNSEEN {new.unseen}")
    if (items or flags_changed) and condstore:
        items.append(f"HIGHESTMODSEQ {new.highest_modseq}")
    return items


def _status_line(box: Mailbox, items: list[str]) -> bytes:
    return b"* STATUS %s (%s)\r\n" % (mailbox_wire(box.name), " ".join(items).encode())


def _list_line(attrs: str, name: str) -> bytes:
    return b'* LIST (%s) "%s" %s\r\n' % (attrs.encode(), DELIMITER.encode(), mailbox_wire(name))
