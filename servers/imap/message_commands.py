"""Commands on the selected mailbox: FETCH, STORE, SEARCH, SORT, COPY/MOVE, EXPUNGE.

FETCH is the hot path: messages are read in batches and each response line is
one ``bytes`` formatting, handed out in chunks so flow control can pause it.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Literal

from servers.imap.commands import CommandHandler, Effect, Fail, Handler
from servers.imap.fetch import FetchError, FetchPlan, compile_fetch, flags_bytes
from servers.imap.ordering import SortError, sort_messages, thread_references
from servers.imap.protocol import Command, Token
from servers.imap.responses import Status, UntaggedStatus
from servers.imap.search import SearchError, compile_search
from servers.imap.sequence import SequenceSet, SequenceSetError, format_sequence_set
from servers.imap.states import Transition
from servers.imap.store import NoSuchMailbox, QuotaExceeded, StoredMessage, TooBig
from servers.imap.view import SelectedView

if TYPE_CHECKING:
    from servers.imap.session import Session

__all__ = ["COMMANDS", "FETCH_CHUNK_BYTES"]

#: FETCH output is handed to the transport in chunks of about this size, so
#: flow control can pause a huge FETCH between chunks.
FETCH_CHUNK_BYTES = 256 * 1024
_STORE_MODES: dict[str, Literal["set", "add", "remove"]] = {
    "FLAGS": "set",
    "+FLAGS": "add",
    "-FLAGS": "remove",
}


class _SearchView:
    """A stored message with this session's sequence number (search.MessageView)."""

    __slots__ = ("_msg", "flags", "internaldate", "modseq", "seq", "size", "uid")

    def __init__(self, msg: StoredMessage, seq: int) -> None:
        self._msg = msg
        self.seq = seq
        self.uid = msg.uid
        self.flags = msg.flags
        self.internaldate = msg.internaldate
        self.size = msg.size
        self.modseq = msg.modseq

    @property
    def raw(self) -> bytes:
        return self._msg.raw


def _mentions_modseq(tokens: Iterable[Token]) -> bool:
    for token in tokens:
        if isinstance(token, list):
            if _mentions_modseq(token):
                return True
        elif isinstance(token, str) and token.upper() == "MODSEQ":
            return True
    return False


def cmd_CHECK(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return s.ok(cmd, s.replies.check)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_CLOSE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    view = s.selected()
    if not view.readonly:
        with contextlib.suppress(NoSuchMailbox):
            view.mailbox.expunge(list(view.uids))
    s.unselect()
    s.transition(Transition.CLOSED)
    return s.ok(cmd, s.replies.close_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_UNSELECT(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    s.unselect()
    s.transition(Transition.CLOSED)
    return s.ok(cmd, s.replies.unselect_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def cmd_EXPUNGE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    view = s.selected()
    if view.readonly:
        raise s.no(s.replies.read_only)
    if cmd.uid:
        uids = _uid_set(s, cmd, s.args(cmd, 1)[0])
        view.mailbox.expunge(uids)
    else:
        view.mailbox.expunge(list(view.uids))
    return s.ok(cmd, s.replies.expunge_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


def _seq_set(s: Session, cmd: Command, token: Token) -> SequenceSet:
    if not isinstance(token, str):
        raise s.bad(cmd, s.replies.invalid_arguments)
    try:
        return SequenceSet.parse(token)
    except SequenceSetError:
        reason = s.replies.invalid_uidset if cmd.uid else s.replies.invalid_messageset
        raise s.bad(cmd, reason) from None


def _uid_set(s: Session, cmd: Command, token: Token) -> list[int]:
    """The UIDs of this view a (UID) sequence set names, ascending."""
    view = s.selected()
    seqset = _seq_set(s, cmd, token)
    if cmd.uid:
        return seqset.filter_sorted(view.uids)
    uids = view.uids
    count = len(uids)
    if count == 0:
        if seqset.uses_star:
            return []
        raise s.bad(cmd, s.replies.invalid_messageset)
    out: list[int] = []
    for lo, hi in seqset.intervals(count):
        if hi > count:
            raise s.bad(cmd, s.replies.invalid_messageset)
        out.extend(uids[lo - 1 : hi])
    return out


def cmd_FETCH(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 2)
    view = s.selected()
    uids = _uid_set(s, cmd, args[0])
    try:
        plan = compile_fetch(args[1])
    except FetchError as exc:
        raise s.bad(cmd, str(exc)) from None
    changed_since: int | None = None
    if len(args) > 2:
        changed_since = _changedsince(s, cmd, args[2])
        plan = plan.with_modseq()
    limit = s.settings.fetch_byte_limit
    if limit is not None and s.fetched_bytes >= limit:
        raise s.no(s.replies.bandwidth_exceeded)
    if cmd.uid:
        plan = plan.with_uid()
    if s.condstore and plan.has_flags:
        plan = plan.with_modseq()
    box = view.mailbox
    seen_now: set[int] = set()
    if plan.sets_seen and not view.readonly and uids:
        changed, _ = box.set_flags(uids, ("\\Seen",), "add")
        seen_now = {m.uid for m in changed}
    flagged_plan = plan.with_flags()
    if s.condstore:
        flagged_plan = flagged_plan.with_modseq()
    missing = yield from _fetch_rows(s, view, uids, plan, flagged_plan, seen_now, changed_since)
    if missing:
        raise s.no(s.replies.expunged_fetch)
    return s.ok(cmd, s.replies.fetch_ok)


def _changedsince(s: Session, cmd: Command, token: Token) -> int:
    if isinstance(token, list) and len(token) == 2:
        key, value = token
        if (
            isinstance(key, str)
            and key.upper() == "CHANGEDSINCE"
            and isinstance(value, str)
            and value.isdigit()
        ):
            s.condstore = True
            return int(value)
    raise s.bad(cmd, s.replies.invalid_arguments)


def _fetch_rows(
    s: Session,
    view: SelectedView,
    uids: list[int],
    plan: FetchPlan,
    flagged_plan: FetchPlan,
    seen_now: set[int],
    changed_since: int | None,
) -> Generator[bytes | Effect, bytes | None, bool]:
    """Render FETCH lines in chunks; True if some messages had gone."""
    box = view.mailbox
    view_uids = view.uids
    reported = view.reported
    renders = plan.renders
    report_flags = plan.has_flags
    chunk: list[bytes] = []
    size = 0
    missing = False
    for start in range(0, len(uids), 512):
        batch = uids[start : start + 512]
        messages = box.get_many(batch)
        if len(messages) != len(batch):
            missing = True
        for msg in messages:
            uid = msg.uid
            if changed_since is not None and msg.modseq <= changed_since:
                continue
            seq = bisect_left(view_uids, uid) + 1
            if uid in seen_now:
                body = b" ".join([render(msg) for render in flagged_plan.renders])
                reported[uid] = msg.modseq
            else:
                body = b" ".join([render(msg) for render in renders])
                if report_flags:
                    reported[uid] = msg.modseq
            line = b"* %d FETCH (%s)\r\n" % (seq, body)
            chunk.append(line)
            size += len(line)
            if size >= FETCH_CHUNK_BYTES:
                s.fetched_bytes += size
                yield b"".join(chunk)
                chunk = []
                size = 0
    if chunk:
        s.fetched_bytes += size
        yield b"".join(chunk)
    return missing


def cmd_STORE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(s.args(cmd, 3))
    view = s.selected()
    uids = _uid_set(s, cmd, args.pop(0))
    unchanged_since: int | None = None
    if isinstance(args[0], list):
        mod = args.pop(0)
        if (
            len(mod) == 2
            and isinstance(mod[0], str)
            and mod[0].upper() == "UNCHANGEDSINCE"
            and isinstance(mod[1], str)
            and mod[1].isdigit()
        ):
            unchanged_since = int(mod[1])
            s.condstore = True
        else:
            raise s.bad(cmd, s.replies.invalid_arguments)
    if len(args) < 2:
        raise s.bad(cmd, s.replies.missing_arguments)
    item = s.astring(cmd, args[0]).upper()
    silent = item.endswith(".SILENT")
    mode = _STORE_MODES.get(item.removesuffix(".SILENT"))
    if mode is None:
        raise s.bad(cmd, f"Invalid STORE parameter {item}")
    flags = s.parse_flags(cmd, args[1] if len(args) == 2 else list(args[1:]))
    if view.readonly:
        raise s.no(s.replies.read_only)
    box = view.mailbox
    changed, failed = box.set_flags(uids, flags, mode, unchanged_since=unchanged_since)
    changed_uids = {m.uid for m in changed}
    lines = []
    report = [m for m in box.get_many(uids) if m.uid not in failed]
    for msg in report:
        if silent and (msg.uid in changed_uids and unchanged_since is None):
            view.reported[msg.uid] = msg.modseq
            continue
        if silent and msg.uid not in changed_uids:
            continue
        seq = view.seq(msg.uid)
        if seq is None:
            continue
        parts = [b"FLAGS " + flags_bytes(msg.flags)]
        if cmd.uid:
            parts.insert(0, b"UID %d" % msg.uid)
        if s.condstore:
            parts.append(b"MODSEQ (%d)" % msg.modseq)
        lines.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts)))
        view.reported[msg.uid] = msg.modseq
    yield b"".join(lines)
    if failed:
        if cmd.uid:
            modified = format_sequence_set(failed)
        else:
            modified = format_sequence_set(n for u in failed if (n := view.seq(u)))
        return s.ok(cmd, s.replies.modified, f"MODIFIED {modified}")
    return s.ok(cmd, s.replies.store_ok)


def cmd_COPY(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _transfer(s, cmd, move=False))


def cmd_MOVE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    return (yield from _transfer(s, cmd, move=True))


def _transfer(s: Session, cmd: Command, *, move: bool) -> Handler:
    args = s.args(cmd, 2)
    view = s.selected()
    uids = _uid_set(s, cmd, args[0])
    name = s.mailbox_name(cmd, args[1])
    dest = s.mailbox(name)
    if dest is None:
        raise s.nonexistent(name, trycreate=True)
    if move and view.readonly:
        raise s.no(s.replies.read_only)
    try:
        pairs = view.mailbox.move_to(uids, dest) if move else view.mailbox.copy_to(uids, dest)
    except QuotaExceeded:
        raise s.no(s.replies.over_quota) from None
    except TooBig:
        raise s.no(s.replies.too_big) from None
    except NoSuchMailbox:
        raise s.nonexistent(name, trycreate=True) from None
    ok_text = s.replies.move_ok if move else s.replies.copy_ok
    if not pairs:
        return s.ok(cmd, ok_text if uids else s.replies.no_messages_copied)
    sources = format_sequence_set(s for s, _ in pairs)
    targets = format_sequence_set(d for _, d in pairs)
    code = f"COPYUID {dest.uidvalidity} {sources} {targets}"
    if move:
        yield UntaggedStatus(Status.OK, s.replies.moved_uids, code).to_bytes()
        yield b"".join(view.sync(expunge=True, condstore=s.condstore))
        return s.ok(cmd, ok_text)
    return s.ok(cmd, ok_text, code)


def cmd_SEARCH(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(cmd.args)
    esearch: list[str] | None = None
    if len(args) >= 2 and isinstance(args[0], str) and args[0].upper() == "RETURN":
        opts = args[1]
        if not isinstance(opts, list):
            raise s.bad(cmd, s.replies.invalid_arguments)
        esearch = [s.astring(cmd, o).upper() for o in opts] or ["ALL"]
        args = args[2:]
    hits = _search_hits(s, cmd, args)
    numbers = [msg.uid if cmd.uid else seq for seq, msg in hits]
    uses_modseq = _mentions_modseq(args)
    if esearch is not None:
        yield _esearch_line(s, cmd, esearch, numbers, hits, uses_modseq)
    else:
        line = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
        if uses_modseq and hits:
            line += b" (MODSEQ %d)" % max(msg.modseq for _, msg in hits)
        yield line + b"\r\n"
    return s.ok(cmd, s.replies.search_ok)


def _search_hits(
    s: Session, cmd: Command, args: list[Token], charset: str = "US-ASCII"
) -> list[tuple[int, StoredMessage]]:
    """(seq, message) of every message of the view that matches the SEARCH keys."""
    view = s.selected()
    if not args:
        raise s.bad(cmd, s.replies.missing_arguments)
    try:
        program = compile_search(args, charset)
    except SearchError as exc:
        if exc.code is not None:
            raise Fail(Status.NO, str(exc), exc.code) from None
        raise s.bad(cmd, str(exc)) from None
    box = view.mailbox
    uids = view.uids
    max_seq = len(uids)
    max_uid = uids[-1] if uids else 0
    hits: list[tuple[int, StoredMessage]] = []
    for start in range(0, max_seq, 1024):
        for msg in box.get_many(uids[start : start + 1024]):
            seq = bisect_left(uids, msg.uid) + 1
            if program.matches(_SearchView(msg, seq), max_seq=max_seq, max_uid=max_uid):
                hits.append((seq, msg))
    return hits


def cmd_SORT(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(s.args(cmd, 3))
    criteria = args.pop(0)
    if not isinstance(criteria, list) or not all(isinstance(c, str) for c in criteria):
        raise s.bad(cmd, s.replies.invalid_arguments)
    charset = s.astring(cmd, args.pop(0))
    hits = _search_hits(s, cmd, args, charset)
    try:
        ordered = sort_messages(hits, [str(c) for c in criteria])
    except SortError as exc:
        raise s.bad(cmd, str(exc)) from None
    numbers = [msg.uid if cmd.uid else seq for seq, msg in ordered]
    yield b"* SORT" + b"".join(b" %d" % n for n in numbers) + b"\r\n"
    return s.ok(cmd, s.replies.sort_ok)


def cmd_THREAD(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(s.args(cmd, 3))
    algorithm = s.astring(cmd, args.pop(0)).upper()
    if algorithm != "REFERENCES":
        raise s.bad(cmd, f"Unknown thread algorithm {algorithm}")
    charset = s.astring(cmd, args.pop(0))
    hits = _search_hits(s, cmd, args, charset)
    numbered = [(msg.uid if cmd.uid else seq, msg) for seq, msg in hits]
    yield b"* THREAD " + thread_references(numbered) + b"\r\n"
    return s.ok(cmd, s.replies.thread_ok)


def _esearch_line(
    s: Session,
    cmd: Command,
    options: list[str],
    numbers: list[int],
    hits: list[tuple[int, StoredMessage]],
    uses_modseq: bool,
) -> bytes:
    parts = [b'* ESEARCH (TAG "' + cmd.tag.encode() + b'")']
    if cmd.uid:
        parts.append(b"UID")
    if numbers:
        if "MIN" in options:
            parts.append(b"MIN %d" % min(numbers))
        if "MAX" in options:
            parts.append(b"MAX %d" % max(numbers))
        if "ALL" in options:
            parts.append(b"ALL " + format_sequence_set(numbers).encode())
    if "COUNT" in options:
        parts.append(b"COUNT %d" % len(numbers))
    if uses_modseq and hits:
        parts.append(b"MODSEQ %d" % max(msg.modseq for _, msg in hits))
    return b" ".join(parts) + b"\r\n"


COMMANDS: dict[str, CommandHandler] = {
    "CHECK": cmd_CHECK,
    "CLOSE": cmd_CLOSE,
    "UNSELECT": cmd_UNSELECT,
    "EXPUNGE": cmd_EXPUNGE,
    "FETCH": cmd_FETCH,
    "STORE": cmd_STORE,
    "COPY": cmd_COPY,
    "MOVE": cmd_MOVE,
    "SEARCH": cmd_SEARCH,
    "SORT": cmd_SORT,
    "THREAD": cmd_THREAD,
}
