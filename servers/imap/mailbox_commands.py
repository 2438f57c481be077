"""Mailbox-level commands: SELECT, CREATE, LIST, STATUS, APPEND, QUOTA, ACL...

Each handler takes the :class:`~servers.imap.session.Session` first and works
through its public helpers; the registry at the bottom is merged into the
session's dispatch table.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from mailharness.servers.imap import message as mime
from mailharness.servers.imap import message_commands, mutf7
from mailharness.servers.imap.append import parse_append
from mailharness.servers.imap.commands import (
    CommandHandler,
    Disconnect,
    Effect,
    Fail,
    Handler,
    mailbox_wire,
)
from mailharness.servers.imap.listing import cmd_LIST, cmd_LSUB, parse_status_items, status_line
from mailharness.servers.imap.protocol import Command, Token
from mailharness.servers.imap.responses import Status, Tagged, Untagged, UntaggedStatus
from mailharness.servers.imap.sequence import SequenceSet, SequenceSetError, format_sequence_set
from mailharness.servers.imap.states import Transition
from mailharness.servers.imap.store import (
    DELIMITER,
    INBOX,
    InvalidName,
    Mailbox,
    MailboxExists,
    NoSuchMailbox,
    QuotaExceeded,
    StoreError,
    TooBig,
    check_name,
)
from mailharness.servers.imap.view import SelectedView

if TYPE_CHECKING:
    from mailharness.servers.imap.session import Session

__all__ = ["ALL_RIGHTS", "COMMANDS", "wire_name"]

#: The owner's rights on every own mailbox (RFC 4314), as Dovecot's acl plugin lists them.
ALL_RIGHTS = "lrwstipekxacd"


def wire_name(
    s: Session, cmd: Command, token: Token, *, new: bool = False, create: bool = False
) -> str:
    """A mailbox name from the wire, as Dovecot takes it: modified UTF-7 decoded, shape checked.

    Returns the UTF-8 name with INBOX in capitals. `new` (CREATE, RENAME's
    target) adds Dovecot's rules for new names: no control characters, and
    the length and depth limits of the settings. `create` drops one trailing
    delimiter first: CREATE "a/" makes "a" (RFC 3501 §6.3.3).
    """
    if isinstance(token, list):
        raise s.bad(cmd, s.replies.invalid_arguments)
    # Bytes over 0x7f (8-bit or non-UTF-8 names) and control characters,
    # NUL included, are not modified UTF-7: Dovecot refuses them all alike.
    text = token.decode("latin-1") if isinstance(token, bytes) else token
    try:
        name = mutf7.decode(text)
    except ValueError:
        raise s.no(s.replies.invalid_mutf7) from None
    if create and name.endswith(DELIMITER):
        name = name[:-1]
    try:
        name = check_name(name)
    except InvalidName as exc:
        raise Fail(Status.NO, str(exc), s.replies.invalid_name_code) from None
    if new:
        _check_new_name(s, name)
    return name


def _check_new_name(s: Session, name: str) -> None:
    """Dovecot's mailbox_verify_create_name, with our limits for length and depth."""
    if any(c < " " for c in name):
        raise s.no(s.replies.control_characters)
    settings = s.settings
    if len(name.encode()) > settings.mailbox_name_max_bytes:
        raise s.no(s.replies.name_too_long)
    levels = name.split(DELIMITER)
    if len(levels) > settings.mailbox_max_levels or any(
        len(level.encode()) > settings.mailbox_level_max_bytes for level in levels
    ):
        raise s.no(s.replies.name_too_long)


def _missing(s: Session, name: str) -> Fail:
    """SELECT, EXAMINE, STATUS, SUBSCRIBE of a missing mailbox: Dovecot's NO has no code."""
    reply = s.replies.mailbox_missing
    return Fail(Status.NO, reply.text.format(mailbox=name), reply.code)


def cmd_NAMESPACE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    yield Untagged(b'NAMESPACE (("" "' + DELIMITER.encode() + b'")) NIL NIL').to_bytes()
    return s.ok(cmd, s.replies.namespace_ok)


def cmd_SELECT(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _select(s, cmd, readonly=False))


def cmd_EXAMINE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _select(s, cmd, readonly=True))


def _select(s: Session, cmd: Command, *, readonly: bool) -> Handler:
    args = cmd.args
    if not args:
        raise s.bad(cmd, s.replies.invalid_arguments)  # Dovecot's text, not "Missing"
    if s.view is not None:
        # As Dovecot (cmd-select.c): the selected mailbox is closed first, whatever
        # follows, and said so with QRESYNC's [CLOSED], even if the new one fails.
        s.unselect()
        s.transition(Transition.SELECT_FAILED)
        yield UntaggedStatus(Status.OK, s.replies.previous_closed, "CLOSED").to_bytes()
    name = s.mailbox_name(cmd, args[0])
    qresync: tuple[int, int, SequenceSet | None] | None = None
    condstore = False
    if len(args) > 1:
        try:
            condstore, qresync = _select_params(s, args[1:])
        except ValueError as exc:
            raise s.bad(cmd, str(exc)) from None
    box = s.mailbox(name)
    if box is None:
        raise _missing(s, name)
    if condstore:
        s.condstore = True
    view = SelectedView(box, readonly=readonly)
    view.permanent_text = s.replies.read_only_mailbox if readonly else s.replies.flags_permitted
    s.view = view
    s.watch(box)
    s.transition(Transition.SELECTED)
    lines = [
        Untagged(f"FLAGS {view.select_flags()}".encode()).to_bytes(),
        UntaggedStatus(
            Status.OK, view.permanent_text, f"PERMANENTFLAGS {view.permanent_flags()}"
        ).to_bytes(),
        b"* %d EXISTS\r\n* %d RECENT\r\n" % (len(view), view.recent_count),
    ]
    unseen_uid = box.first_unseen()
    if unseen_uid is not None:
        seq = view.seq(unseen_uid)
        if seq is not None:
            lines.append(
                UntaggedStatus(Status.OK, s.replies.first_unseen, f"UNSEEN {seq}").to_bytes()
            )
    lines += [
        UntaggedStatus(
            Status.OK, s.replies.uids_valid, f"UIDVALIDITY {box.uidvalidity}"
        ).to_bytes(),
        UntaggedStatus(Status.OK, s.replies.predicted_uid, f"UIDNEXT {box.uidnext}").to_bytes(),
    ]
    if s.condstore:
        box.modseqs_tracked = True
    # As Dovecot: once CONDSTORE was used on the mailbox (by any session).
    if box.modseqs_tracked:
        lines.append(
            UntaggedStatus(
                Status.OK, s.replies.highest_modseq, f"HIGHESTMODSEQ {view.modseq}"
            ).to_bytes()
        )
    yield b"".join(lines)
    if qresync is not None and qresync[0] == box.uidvalidity:
        yield from message_commands.qresync_changes(s, view, qresync[1], qresync[2])
    if readonly:
        return s.ok(cmd, s.replies.examine_ok, "READ-ONLY")
    return s.ok(cmd, s.replies.select_ok, "READ-WRITE")


def _select_params(
    s: Session, params: tuple[Token, ...]
) -> tuple[bool, tuple[int, int, SequenceSet | None] | None]:
    """SELECT's ``(CONDSTORE)`` / ``(QRESYNC (uidvalidity modseq [uids [seq-match]]))``."""
    if len(params) != 1 or not isinstance(params[0], list):
        raise ValueError(s.replies.invalid_arguments)
    items = list(params[0])
    condstore = False
    qresync: tuple[int, int, SequenceSet | None] | None = None
    while items:
        word = items.pop(0)
        if not isinstance(word, str):
            raise ValueError(s.replies.select_non_atoms)
        if word.upper() == "CONDSTORE":
            condstore = True
        elif word.upper() == "QRESYNC":
            if not s.qresync:
                raise ValueError(s.replies.qresync_not_enabled)
            value = items.pop(0) if items else None
            if not isinstance(value, list) or len(value) < 2:
                raise ValueError(s.replies.qresync_missing)
            uidvalidity, modseq, *rest = value
            if not (
                isinstance(uidvalidity, str)
                and uidvalidity.isdigit()
                and isinstance(modseq, str)
                and modseq.isdigit()
            ):
                raise ValueError(s.replies.qresync_invalid)
            known: SequenceSet | None = None
            if rest and isinstance(rest[0], str):
                text = rest.pop(0)
                assert isinstance(text, str)
                try:
                    known = SequenceSet.parse(text)
                except SequenceSetError:
                    raise ValueError(s.replies.qresync_invalid_known_uids) from None
            if rest and isinstance(rest[0], list):
                rest.pop(0)  # the sequence match data: an optimisation we may skip
            if rest:
                raise ValueError(s.replies.qresync_invalid)
            qresync = (int(uidvalidity), int(modseq), known)
            condstore = True
        else:
            raise ValueError(s.replies.select_unknown_option)
    return condstore, qresync


def cmd_CREATE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 1)
    name = wire_name(s, cmd, args[0], new=True, create=True)
    special: str | None = None
    if len(args) > 1 and isinstance(args[1], list) and len(args[1]) == 2:
        key, value = args[1]
        if isinstance(key, str) and key.upper() == "USE" and isinstance(value, list):
            uses = [v for v in value if isinstance(v, str)]
            special = uses[0] if uses else None
    try:
        s.user().create(name, special)
    except MailboxExists:
        raise s.no(s.replies.already_exists) from None
    except (StoreError, ValueError) as exc:
        raise Fail(Status.NO, str(exc)) from None
    return s.ok(cmd, s.replies.create_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_DELETE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    token = s.args(cmd, 1)[0]
    if token in ("", b""):
        raise s.no(s.replies.delete_root)
    name = s.mailbox_name(cmd, token)
    if name == "INBOX":
        raise s.no(s.replies.inbox_delete)
    if s.view is not None and s.view.mailbox.name == name:
        # Dovecot closes the selected mailbox, deletes it, answers, then says BYE
        # and disconnects (cmd-delete.c), whether the delete worked or not.
        s.unselect()
        s.transition(Transition.CLOSED)
        bye = UntaggedStatus(Status.BYE, s.replies.bye_mailbox_deleted).to_bytes()
        after.append(Disconnect(farewell=bye))
    try:
        # As Dovecot with Maildir++: a mailbox with children is deleted, they stay.
        s.user().delete(name)
    except NoSuchMailbox:
        raise s.nonexistent(name) from None
    return s.ok(cmd, s.replies.delete_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_RENAME(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 2)
    old = s.mailbox_name(cmd, args[0])
    new = wire_name(s, cmd, args[1], new=True)
    if new.startswith(old + DELIMITER):
        raise s.no(s.replies.rename_own_child)
    if old == INBOX:
        raise s.no(s.replies.rename_inbox)
    selected = s.view.mailbox if s.view is not None else None
    was = selected.name if selected is not None else None
    try:
        s.user().rename(old, new)
    except NoSuchMailbox:
        raise s.nonexistent(old) from None
    except MailboxExists:
        raise s.no(s.replies.target_exists) from None
    if selected is not None and selected.name != was:
        # The selected mailbox moved: Dovecot (Maildir++) answers, then finds its
        # session inconsistent and disconnects.
        s.unselect()
        s.transition(Transition.CLOSED)
        bye = UntaggedStatus(Status.BYE, s.replies.bye_inconsistent).to_bytes()
        after.append(Disconnect(farewell=bye))
    return s.ok(cmd, s.replies.rename_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_SUBSCRIBE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _subscribe(s, cmd, True, s.replies.subscribe_ok))


def cmd_UNSUBSCRIBE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _subscribe(s, cmd, False, s.replies.unsubscribe_ok))


def _subscribe(s: Session, cmd: Command, value: bool, ok: str) -> Handler:
    try:
        name = s.mailbox_name(cmd, s.args(cmd, 1)[0])
    except Fail as fail:
        if not value or fail.code != s.replies.invalid_name_code:
            raise
        # Dovecot's SUBSCRIBE checks only that the mailbox exists, not its name's shape.
        name = mutf7.decode(s.astring(cmd, cmd.args[0]))
    user = s.user()
    if not value:
        user.unsubscribe(name)  # as Dovecot: fine whether it exists or was subscribed
        _subscription_changed(s, name)
        return s.ok(cmd, ok)
    try:
        user.subscribe(name)
    except (NoSuchMailbox, InvalidName):
        raise _missing(s, name) from None
    _subscription_changed(s, name)
    return s.ok(cmd, ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def _subscription_changed(s: Session, name: str) -> None:
    """NOTIFY SubscriptionChange for the user's other sessions."""
    box = s.mailbox(name)
    if box is not None:
        box.touch()


def cmd_STATUS(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 2)
    if not isinstance(args[1], list):
        raise s.bad(cmd, s.replies.invalid_arguments)
    items = parse_status_items(s, cmd, args[1])
    name = s.mailbox_name(cmd, args[0])
    box = s.mailbox(name)
    if box is None:
        raise _missing(s, name)
    if "HIGHESTMODSEQ" in items:  # RFC 7162 §3.1: enables CONDSTORE
        yield s.enable_condstore()
    # As Dovecot: the name is echoed as the client spelled it.
    yield status_line(box, mutf7.decode(s.astring(cmd, args[0])), items)
    if s.view is not None and s.view.mailbox is box:
        reply = s.replies.status_selected_ok
        return Tagged(cmd.tag, Status.OK, reply.text, reply.code)
    return s.ok(cmd, s.replies.status_ok)


def cmd_APPEND(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(s.args(cmd, 2))
    name = s.mailbox_name(cmd, args.pop(0))
    box = s.mailbox(name)
    if box is None:
        # Dovecot checks the mailbox before reading any message or CATENATE URL.
        raise s.nonexistent(name, trycreate=True)
    messages = parse_append(s, cmd, args)
    uids: list[int] = []
    try:
        try:
            for pending in messages:
                uids.append(box.append(pending.data, pending.flags, pending.date))
        except StoreError:
            # MULTIAPPEND is all or nothing (RFC 3502, Dovecot's one transaction):
            # the messages saved before the refused one go again.
            if uids:
                with contextlib.suppress(StoreError):
                    box.expunge(uids, only_deleted=False)
            raise
    except QuotaExceeded:
        raise s.no(s.replies.over_quota) from None
    except TooBig:
        raise s.no(s.replies.too_big) from None
    except NoSuchMailbox:
        raise s.nonexistent(name, trycreate=True) from None
    soft = s.settings.soft_quota_bytes
    if soft is not None and s.user().usage()[0] > soft:
        # One response code per reply: the warning takes the place of APPENDUID.
        warning = s.replies.over_soft_quota
        return s.ok(cmd, warning.text, warning.code)
    uid_set = format_sequence_set(uids)
    return s.ok(cmd, s.replies.append_ok, f"APPENDUID {box.uidvalidity} {uid_set}")
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_GETQUOTAROOT(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    name = s.mailbox_name(cmd, s.args(cmd, 1)[0])
    box = s.mailbox(name)
    if box is None:
        raise s.nonexistent(name)
    root = mime.quote(s.replies.quota_root_name)
    yield b"* QUOTAROOT %s %s\r\n" % (mailbox_wire(box.name), root)
    yield _quota_line(s)
    return s.ok(cmd, s.replies.getquotaroot_ok)


def cmd_GETQUOTA(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    root = s.astring(cmd, s.args(cmd, 1)[0])
    if root != s.replies.quota_root_name:
        raise s.no(s.replies.no_quota_root)
    yield _quota_line(s)
    return s.ok(cmd, s.replies.getquota_ok)


def _quota_line(s: Session) -> bytes:
    user = s.user()
    used_bytes, used_messages = user.usage()
    parts = []
    if user.quota_storage_limit is not None:
        # RFC 2087 counts STORAGE in units of 1024 octets.
        parts.append(f"STORAGE {used_bytes // 1024} {user.quota_storage_limit // 1024}")
    if user.quota_message_limit is not None:
        parts.append(f"MESSAGE {used_messages} {user.quota_message_limit}")
    root = mime.quote(s.replies.quota_root_name)
    return b"* QUOTA %s (%s)\r\n" % (root, " ".join(parts).encode())


def cmd_GETACL(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    box = _acl_mailbox(s, cmd)
    login = mime.quote(s.login or "")
    yield b"* ACL %s %s %s\r\n" % (mailbox_wire(box.name), login, ALL_RIGHTS.encode())
    return s.ok(cmd, s.replies.getacl_ok)


def cmd_MYRIGHTS(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    box = _acl_mailbox(s, cmd)
    yield b"* MYRIGHTS %s %s\r\n" % (mailbox_wire(box.name), ALL_RIGHTS.encode())
    return s.ok(cmd, s.replies.myrights_ok)


def cmd_LISTRIGHTS(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 2)
    box = _acl_mailbox(s, cmd)
    who = mime.quote(s.astring(cmd, args[1]))
    rights = " ".join(ALL_RIGHTS).encode()
    yield b'* LISTRIGHTS %s %s "" %s\r\n' % (mailbox_wire(box.name), who, rights)
    return s.ok(cmd, s.replies.listrights_ok)


def _acl_mailbox(s: Session, cmd: Command) -> Mailbox:
    name = s.mailbox_name(cmd, s.args(cmd, 1)[0])
    box = s.mailbox(name)
    if box is None:
        raise s.nonexistent(name)
    return box


COMMANDS: dict[str, CommandHandler] = {
    "NAMESPACE": cmd_NAMESPACE,
    "SELECT": cmd_SELECT,
    "EXAMINE": cmd_EXAMINE,
    "CREATE": cmd_CREATE,
    "DELETE": cmd_DELETE,
    "RENAME": cmd_RENAME,
    "SUBSCRIBE": cmd_SUBSCRIBE,
    "UNSUBSCRIBE": cmd_UNSUBSCRIBE,
    "LIST": cmd_LIST,
    "LSUB": cmd_LSUB,
    "STATUS": cmd_STATUS,
    "APPEND": cmd_APPEND,
    "GETQUOTAROOT": cmd_GETQUOTAROOT,
    "GETQUOTA": cmd_GETQUOTA,
    "GETACL": cmd_GETACL,
    "MYRIGHTS": cmd_MYRIGHTS,
    "LISTRIGHTS": cmd_LISTRIGHTS,
}
