"""Mailbox-level commands: SELECT, CREATE, LIST, STATUS, APPEND, QUOTA, ACL...

Each handler takes the :class:`~servers.imap.session.Session` first and works
through its public helpers; the registry at the bottom is merged into the
session's dispatch table.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from servers.imap import message as mime
from servers.imap import message_commands
from servers.imap.commands import CommandHandler, Effect, Fail, Handler, mailbox_wire
from servers.imap.protocol import Command, Token
from servers.imap.responses import Status, Untagged, UntaggedStatus
from servers.imap.sequence import SequenceSet, SequenceSetError
from servers.imap.states import Transition
from servers.imap.store import (
    DELIMITER,
    Mailbox,
    MailboxExists,
    NoSuchMailbox,
    QuotaExceeded,
    StoreError,
    TooBig,
)
from servers.imap.view import SelectedView

if TYPE_CHECKING:
    from servers.imap.session import Session

__all__ = ["ALL_RIGHTS", "COMMANDS"]

#: The owner's rights on every own mailbox (RFC 4314), as Dovecot's acl plugin lists them.
ALL_RIGHTS = "lrwstipekxacd"


def cmd_NAMESPACE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    yield Untagged(b'NAMESPACE (("" "' + DELIMITER.encode() + b'")) NIL NIL').to_bytes()
    return s.ok(cmd, s.replies.namespace_ok)


def cmd_SELECT(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _select(s, cmd, readonly=False))


def cmd_EXAMINE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _select(s, cmd, readonly=True))


def _select(s: Session, cmd: Command, *, readonly: bool) -> Handler:
    args = s.args(cmd, 1)
    name = s.mailbox_name(cmd, args[0])
    qresync: tuple[int, int, SequenceSet | None] | None = None
    condstore = False
    if len(args) > 1:
        try:
            condstore, qresync = _select_params(s, args[1:])
        except ValueError as exc:
            yield _close_for_select(s)
            raise s.bad(cmd, str(exc)) from None
    yield _close_for_select(s)
    box = s.mailbox(name)
    if box is None:
        raise s.nonexistent(name)
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


def _close_for_select(s: Session) -> bytes:
    """Leave the selected mailbox; Dovecot always says so with ``[CLOSED]`` (RFC 7162)."""
    if s.view is None:
        return b""
    s.unselect()
    s.transition(Transition.SELECT_FAILED)
    return UntaggedStatus(Status.OK, s.replies.mailbox_closed, "CLOSED").to_bytes()


def _select_params(
    s: Session, params: tuple[Token, ...]
) -> tuple[bool, tuple[int, int, SequenceSet | None] | None]:
    """SELECT's ``(CONDSTORE)`` / ``(QRESYNC (uidvalidity modseq [uids [seq-match]]))``."""
    if len(params) != 1 or not isinstance(params[0], list):
        raise ValueError("Invalid arguments.")
    items = list(params[0])
    condstore = False
    qresync: tuple[int, int, SequenceSet | None] | None = None
    while items:
        word = items.pop(0)
        if not isinstance(word, str):
            raise ValueError("SELECT options contain non-atoms.")
        if word.upper() == "CONDSTORE":
            condstore = True
        elif word.upper() == "QRESYNC":
            if not s.qresync:
                raise ValueError("QRESYNC not enabled")
            value = items.pop(0) if items else None
            if not isinstance(value, list) or len(value) < 2:
                raise ValueError("QRESYNC parameters missing")
            uidvalidity, modseq, *rest = value
            if not (
                isinstance(uidvalidity, str)
                and uidvalidity.isdigit()
                and isinstance(modseq, str)
                and modseq.isdigit()
            ):
                raise ValueError("Invalid QRESYNC parameters")
            known: SequenceSet | None = None
            if rest and isinstance(rest[0], str):
                text = rest.pop(0)
                assert isinstance(text, str)
                try:
                    known = SequenceSet.parse(text)
                except SequenceSetError:
                    raise ValueError("Invalid QRESYNC known-uids") from None
            if rest and isinstance(rest[0], list):
                rest.pop(0)  # the sequence match data: an optimisation we may skip
            if rest:
                raise ValueError("Invalid QRESYNC parameters")
            qresync = (int(uidvalidity), int(modseq), known)
            condstore = True
        else:
            raise ValueError("Unknown SELECT option")
    return condstore, qresync


def cmd_CREATE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 1)
    name = s.mailbox_name(cmd, args[0])
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
    name = s.mailbox_name(cmd, s.args(cmd, 1)[0])
    if name == "INBOX":
        raise s.no(s.replies.inbox_delete)
    if s.view is not None and s.view.mailbox.name == name:
        # Dovecot lets a session delete its own selected mailbox and unselects it.
        s.unselect()
        s.transition(Transition.CLOSED)
    try:
        s.user().delete(name)
    except NoSuchMailbox:
        raise s.nonexistent(name) from None
    except StoreError:
        raise s.no(s.replies.has_children) from None
    return s.ok(cmd, s.replies.delete_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_RENAME(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 2)
    old = s.mailbox_name(cmd, args[0])
    new = s.mailbox_name(cmd, args[1])
    try:
        s.user().rename(old, new)
    except NoSuchMailbox:
        raise s.nonexistent(old) from None
    except MailboxExists:
        raise s.no(s.replies.already_exists) from None
    except StoreError as exc:
        raise Fail(Status.NO, str(exc)) from None
    return s.ok(cmd, s.replies.rename_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_SUBSCRIBE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _subscribe(s, cmd, True, s.replies.subscribe_ok))


def cmd_UNSUBSCRIBE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _subscribe(s, cmd, False, s.replies.unsubscribe_ok))


def _subscribe(s: Session, cmd: Command, value: bool, ok: str) -> Handler:
    name = s.mailbox_name(cmd, s.args(cmd, 1)[0])
    box = s.mailbox(name)
    if box is None:
        raise s.nonexistent(name)
    box.subscribed = value
    box.touch()  # NOTIFY SubscriptionChange for the user's other sessions
    return s.ok(cmd, ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_LIST(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(s.args(cmd, 2))
    select_opts: list[str] = []
    if isinstance(args[0], list):
        select_opts = [o.upper() for o in args.pop(0) if isinstance(o, str)]
    if len(args) < 2:
        raise s.bad(cmd, s.replies.missing_arguments)
    reference = s.astring(cmd, args[0])
    patterns_tok = args[1]
    patterns = (
        [s.astring(cmd, p) for p in patterns_tok]
        if isinstance(patterns_tok, list)
        else [s.astring(cmd, patterns_tok)]
    )
    return_opts: list[str] = []
    if len(args) >= 4 and isinstance(args[2], str) and args[2].upper() == "RETURN":
        opts = args[3]
        if isinstance(opts, list):
            return_opts = [o.upper() for o in opts if isinstance(o, str)]
    subscribed_only = "SUBSCRIBED" in select_opts
    special_only = "SPECIAL-USE" in select_opts
    show_subscribed = subscribed_only or "SUBSCRIBED" in return_opts
    if patterns == [""]:
        yield b'* LIST (\\Noselect) "' + DELIMITER.encode() + b'" ""\r\n'
        return s.ok(cmd, s.replies.list_ok)
    lines = []
    seen: set[str] = set()
    for pattern in patterns:
        for box in s.user().list(reference, pattern):
            if box.name in seen:
                continue
            seen.add(box.name)
            if subscribed_only and not box.subscribed:
                continue
            if special_only and box.special_use is None:
                continue
            attrs = _attributes(s, box)
            if show_subscribed and box.subscribed:
                attrs.append("\\Subscribed")
            lines.append(_list_line(s, b"LIST", attrs, box.name))
    yield b"".join(lines)
    return s.ok(cmd, s.replies.list_ok)


def _attributes(s: Session, box: Mailbox) -> list[str]:
    children = s.user().has_children(box.name)
    attrs = ["\\HasChildren" if children else "\\HasNoChildren"]
    if box.special_use is not None:
        attrs.append(box.special_use)
    return attrs


def _list_line(s: Session, kind: bytes, attrs: list[str], name: str) -> bytes:
    return b'* %s (%s) "%s" %s\r\n' % (
        kind,
        " ".join(attrs).encode(),
        DELIMITER.encode(),
        mailbox_wire(name),
    )


def cmd_LSUB(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 2)
    reference = s.astring(cmd, args[0])
    pattern = s.astring(cmd, args[1])
    lines = [
        _list_line(s, b"LSUB", [], box.name)
        for box in s.user().list(reference, pattern)
        if box.subscribed
    ]
    yield b"".join(lines)
    return s.ok(cmd, s.replies.lsub_ok)


def cmd_STATUS(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 2)
    name = s.mailbox_name(cmd, args[0])
    items = args[1]
    if not isinstance(items, list) or not items:
        raise s.bad(cmd, s.replies.invalid_arguments)
    box = s.mailbox(name)
    if box is None:
        raise s.nonexistent(name)
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
    asked = set()
    for item in items:
        key = s.astring(cmd, item).upper()
        if key not in values:
            raise s.bad(cmd, f"Invalid status item {key}")
        asked.add(key)
    if "HIGHESTMODSEQ" in asked:  # RFC 7162 §3.1: enables CONDSTORE
        yield s.enable_condstore()
    # Dovecot's order, whatever the client's.
    out = [f"{key} {value}" for key, value in values.items() if key in asked]
    yield b"* STATUS %s (%s)\r\n" % (mailbox_wire(box.name), " ".join(out).encode())
    if s.view is not None and s.view.mailbox is box:
        return s.ok(cmd, s.replies.status_selected, "CLIENTBUG")
    return s.ok(cmd, s.replies.status_ok)


def cmd_APPEND(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(s.args(cmd, 2))
    name = s.mailbox_name(cmd, args.pop(0))
    flags: list[str] = []
    date: datetime | None = None
    if args and isinstance(args[0], list):
        flags = s.parse_flags(cmd, args.pop(0))
    if len(args) > 1 and isinstance(args[0], bytes | str):
        text = s.astring(cmd, args.pop(0))
        try:
            date = mime.parse_internaldate(text)
        except ValueError:
            raise s.bad(cmd, s.replies.invalid_internaldate) from None
    if len(args) != 1 or not isinstance(args[0], bytes):
        raise s.bad(cmd, s.replies.invalid_arguments)
    box = s.mailbox(name)
    if box is None:
        raise s.nonexistent(name, trycreate=True)
    try:
        uid = box.append(args[0], flags, date)
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
    return s.ok(cmd, s.replies.append_ok, f"APPENDUID {box.uidvalidity} {uid}")
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
