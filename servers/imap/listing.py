"""LIST and LSUB as Dovecot 2.3 answers them: LIST-EXTENDED, CHILDREN, LIST-STATUS.

The rules follow Dovecot's ``cmd-list.c`` and its subscription walk
(``mailbox_list_iter_update``), checked against a native Dovecot:

- A plain ``LIST`` always returns ``\\HasChildren``/``\\HasNoChildren`` and
  special-use flags; a name that only has mailboxes below it is ``\\Noselect``.
- Once any LIST-EXTENDED syntax is used (selection options, a pattern list,
  ``RETURN``), children flags come only with ``RETURN (CHILDREN)`` and such
  a name is ``\\NonExistent`` instead.
- ``(SUBSCRIBED)`` lists subscriptions, existing or not (``\\NonExistent``);
  with ``RECURSIVEMATCH`` a matching parent of a subscription that the
  pattern does not reach is listed with ``CHILDINFO ("SUBSCRIBED")``.
- ``LSUB`` is that walk with no flags, except ``\\Noselect`` for such a
  parent (only when the pattern ends in ``%``) and special-use flags.
- ``RETURN (STATUS (...))`` (RFC 5819) adds a STATUS line after each
  selectable mailbox.

Listing costs O(log n) to find the range the pattern's literal head
selects, then a linear scan of it; nothing is quadratic in the mailboxes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailharness.servers.imap import mutf7
from mailharness.servers.imap.commands import Effect, Handler, mailbox_wire
from mailharness.servers.imap.protocol import Command, Token
from mailharness.servers.imap.responses import Status, UntaggedStatus
from mailharness.servers.imap.store import (
    DELIMITER,
    Mailbox,
    UserMailboxes,
    list_matcher,
    list_order,
)

if TYPE_CHECKING:
    from mailharness.servers.imap.session import Session

__all__ = ["STATUS_ITEMS", "cmd_LIST", "cmd_LSUB", "parse_status_items", "status_line"]

#: STATUS items in the order Dovecot answers them, whatever order they were asked in.
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE")


@dataclass(slots=True)
class _Options:
    listext: bool = False
    select_subscribed: bool = False
    select_special_use: bool = False
    recursivematch: bool = False
    return_subscribed: bool = False
    return_children: bool = False
    return_special_use: bool = False
    status: tuple[str, ...] = ()
    lsub: bool = False


@dataclass(slots=True)
class _Entry:
    """One LIST reply line to be: its name and what Dovecot's iterator knows of it."""

    name: str
    subscribed: bool = False
    child_subscribed: bool = False
    child_special_use: bool = False


def cmd_LIST(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _list(s, cmd, lsub=False))


def cmd_LSUB(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _list(s, cmd, lsub=True))


def _list(s: Session, cmd: Command, *, lsub: bool) -> Handler:
    args = list(cmd.args)
    opts = _Options(lsub=lsub)
    if not lsub and args and isinstance(args[0], list):
        opts.listext = True
        _select_options(s, cmd, args.pop(0), opts)
    if len(args) < 2:  # Dovecot's texts: the argument it failed to read
        raise s.bad(
            cmd, s.replies.list_invalid_pattern if args else s.replies.list_invalid_reference
        )
    if isinstance(args[0], list):
        raise s.bad(cmd, s.replies.list_invalid_reference)
    reference = _pattern_text(s, cmd, args[0])
    if isinstance(args[1], list):
        opts.listext = True
        patterns = [_pattern_text(s, cmd, p) for p in args[1]]
    else:
        patterns = [_pattern_text(s, cmd, args[1])]
    rest = args[2:]
    if (
        len(rest) >= 2
        and isinstance(rest[0], str)
        and rest[0].upper() == "RETURN"
        and isinstance(rest[1], list)
    ):
        opts.listext = True
        _return_options(s, cmd, rest[1], opts)
        rest = rest[2:]
    if rest:
        raise s.bad(cmd, s.replies.list_extra_arguments)
    done = s.ok(cmd, s.replies.lsub_ok if lsub else s.replies.list_ok)
    if lsub:
        # Dovecot's LSUB: the subscription walk with RECURSIVEMATCH, special-use flags only.
        opts.select_subscribed = opts.recursivematch = opts.return_special_use = True
    elif not opts.listext:
        if patterns == [""]:
            # The delimiter and root: Dovecot emulates UW-IMAP, the root being the
            # reference up to its first delimiter.
            cut = reference.find(DELIMITER)
            root = mailbox_wire(reference[: cut + 1]) if cut >= 0 else b'""'
            yield b'* LIST (\\Noselect) "%s" %s\r\n' % (DELIMITER.encode(), root)
            return done
        opts.return_children = opts.return_special_use = True
    user = s.user()
    entries = _entries(user, reference, patterns, opts)
    kind = b"LSUB" if lsub else b"LIST"
    # LSUB without a trailing % shows no parent that is not itself subscribed.
    hide_parents = lsub and not patterns[0].endswith("%")
    out: list[bytes] = []
    for entry in entries:
        if hide_parents and entry.child_subscribed and not entry.subscribed:
            continue
        box = user.get(entry.name)
        # Deleted with children still there: listed as if it existed (Dovecot, Maildir++).
        hollow = box is None and not opts.select_subscribed and user.is_hollow(entry.name)
        out.append(_line(s, user, kind, entry, box, opts, hollow=hollow))
        if opts.status and box is not None and (entry.subscribed or not opts.select_subscribed):
            out.append(status_line(box, entry.name, opts.status))
        elif opts.status and hollow:
            missing = s.replies.mailbox_missing.text.format(mailbox=entry.name)
            out.append(UntaggedStatus(Status.NO, missing).to_bytes())
        if len(out) >= 256:
            yield b"".join(out)
            out = []
    yield b"".join(out)
    return done


def _pattern_text(s: Session, cmd: Command, token: Token) -> str:
    """A reference or pattern: decoded from modified UTF-7 when it is valid, else as sent."""
    if isinstance(token, list):
        raise s.bad(cmd, s.replies.list_invalid_pattern_list)
    text = token.decode("latin-1") if isinstance(token, bytes) else token
    try:
        return mutf7.decode(text)
    except ValueError:
        return text  # as Dovecot: an invalid pattern simply matches no UTF-8 name


def _atoms(s: Session, cmd: Command, token: Token) -> list[str]:
    items = token if isinstance(token, list) else [token]
    if not all(isinstance(i, str) for i in items):
        raise s.bad(cmd, s.replies.list_non_atoms)
    return [str(i).upper() for i in items]


def _select_options(s: Session, cmd: Command, token: Token, opts: _Options) -> None:
    for option in _atoms(s, cmd, token):
        if option == "SUBSCRIBED":
            opts.select_subscribed = opts.return_subscribed = True
        elif option == "RECURSIVEMATCH":
            opts.recursivematch = True
        elif option == "SPECIAL-USE":
            opts.select_special_use = opts.return_special_use = True
        elif option != "REMOTE":  # REMOTE: no remote mailboxes here, as in Dovecot
            raise s.bad(cmd, s.replies.list_unknown_select)
    if opts.recursivematch and not (opts.select_subscribed or opts.select_special_use):
        raise s.bad(cmd, s.replies.list_recursivematch_alone)


def _return_options(s: Session, cmd: Command, token: Token, opts: _Options) -> None:
    items = token if isinstance(token, list) else [token]
    i = 0
    while i < len(items):
        item = items[i]
        if not isinstance(item, str):
            raise s.bad(cmd, s.replies.list_non_atoms)
        option = item.upper()
        if option == "SUBSCRIBED":
            opts.return_subscribed = True
        elif option == "CHILDREN":
            opts.return_children = True
        elif option == "SPECIAL-USE":
            opts.return_special_use = True
        elif option == "STATUS" and i + 1 < len(items) and isinstance(items[i + 1], list):
            opts.status = parse_status_items(s, cmd, items[i + 1])
            i += 1
        else:
            raise s.bad(cmd, s.replies.list_unknown_return)
        i += 1


def parse_status_items(s: Session, cmd: Command, token: Token) -> tuple[str, ...]:
    """STATUS items as Dovecot parses them (imap-status.c), in its answering order."""
    if not isinstance(token, list):
        raise s.bad(cmd, s.replies.invalid_arguments)
    if not token:
        raise s.bad(cmd, s.replies.status_empty)
    asked: set[str] = set()
    for item in token:
        if not isinstance(item, str):
            raise s.bad(cmd, s.replies.status_non_atoms)
        key = item.upper()
        if key not in STATUS_ITEMS:
            raise s.bad(cmd, s.replies.status_invalid_item.format(item=key))
        asked.add(key)
    return tuple(k for k in STATUS_ITEMS if k in asked)


def status_line(box: Mailbox, name: str, items: Iterable[str]) -> bytes:
    """``* STATUS name (...)``; `name` as the client should see it (UTF-8 here, mUTF-7 out)."""
    status = box.status()
    values = {
        "MESSAGES": status.messages,
        "RECENT": status.recent,
        "UIDNEXT": status.uidnext,
        "UIDVALIDITY": status.uidvalidity,
        "UNSEEN": status.unseen,
        "HIGHESTMODSEQ": status.highest_modseq,
        "SIZE": status.size,
    }
    body = " ".join(f"{k} {values[k]}" for k in items)
    return b"* STATUS %s (%s)\r\n" % (mailbox_wire(name), body.encode())


def _entries(
    user: UserMailboxes, reference: str, patterns: list[str], opts: _Options
) -> Iterable[_Entry]:
    if opts.select_subscribed:
        chosen = user.subscriptions()
        if opts.select_special_use:
            chosen = [n for n in chosen if _special_use(user, n) is not None]
        return _walk(user, chosen, reference, patterns, opts, subscribed=True)
    if opts.select_special_use:
        chosen = [b.name for b in user.mailboxes() if b.special_use is not None]
        return _walk(user, chosen, reference, patterns, opts, subscribed=False)
    return (_Entry(name) for batch in user.iter_list(reference, patterns) for name in batch)


def _walk(
    user: UserMailboxes,
    chosen: list[str],
    reference: str,
    patterns: list[str],
    opts: _Options,
    *,
    subscribed: bool,
) -> list[_Entry]:
    """Dovecot's walk over the selected names (mailbox_list_iter_update).

    Each selected name that matches is listed; with RECURSIVEMATCH its
    nearest matching parent is listed instead when the name itself does not
    match. A listed name has a selected child (CHILDINFO) when a selected
    name lies below it. Only listed names are ever built as strings, so deep
    subscriptions cost their length, not length times depth.
    """
    matching = list_matcher(reference, patterns)
    listed: set[str] = set()
    for name in chosen:
        cuts = matching(name)
        if len(name) in cuts:
            listed.add(name)
        elif cuts and opts.recursivematch:
            listed.add(name[: max(cuts)])
    selected = set(chosen)
    ordered = sorted(chosen)
    entries = []
    for name in sorted(listed, key=list_order):
        entry = _Entry(name)
        if name in selected:
            entry.subscribed = subscribed
        below = name + DELIMITER
        at = bisect.bisect_left(ordered, below)
        if opts.recursivematch and at < len(ordered) and ordered[at].startswith(below):
            if subscribed:
                entry.child_subscribed = True
            else:
                entry.child_special_use = True
        entries.append(entry)
    return entries


def _line(
    s: Session,
    user: UserMailboxes,
    kind: bytes,
    entry: _Entry,
    box: Mailbox | None,
    opts: _Options,
    *,
    hollow: bool = False,
) -> bytes:
    """One reply line, its flags in Dovecot's order (imap_mailbox_flags2str)."""
    flags: list[str] = []
    if opts.lsub:
        if entry.child_subscribed and not entry.subscribed:
            flags.append("\\Noselect")
    else:
        if opts.return_subscribed and (
            entry.subscribed if opts.select_subscribed else user.is_subscribed(entry.name)
        ):
            flags.append("\\Subscribed")
        if box is None and not hollow:
            flags.append("\\NonExistent" if opts.listext else "\\Noselect")
        if opts.return_children:
            children = user.has_children(entry.name) or entry.child_subscribed
            flags.append("\\HasChildren" if children else "\\HasNoChildren")
    if opts.return_special_use and box is not None and box.special_use is not None:
        flags.append(box.special_use)
    line = b'* %s (%s) "%s" %s' % (
        kind,
        " ".join(flags).encode(),
        DELIMITER.encode(),
        mailbox_wire(entry.name),
    )
    if opts.listext and opts.recursivematch:
        if entry.child_subscribed:
            line += b' (CHILDINFO ("SUBSCRIBED"))'
        if entry.child_special_use:
            line += b' (CHILDINFO ("SPECIAL-USE"))'
    return line + b"\r\n"


def _special_use(user: UserMailboxes, name: str) -> str | None:
    box = user.get(name)
    return box.special_use if box is not None else None
