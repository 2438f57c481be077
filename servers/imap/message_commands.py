"""Commands on the selected mailbox: FETCH, STORE, SEARCH, SORT, COPY/MOVE, EXPUNGE.

FETCH is the hot path: messages are read in batches and each response line is
one ``bytes`` formatting, handed out in chunks so flow control can pause it.
Memory stays flat however large the mailbox: a sequence set is resolved to
index ranges of the view's ``array('I')`` (never a list of every UID), only
one batch of messages is alive at a time, and a long SEARCH/SORT line is
handed out in pieces too.
"""

from __future__ import annotations

import contextlib
from array import array
from bisect import bisect_left
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from servers.imap.binary import BinaryError, BinaryFailure
from servers.imap.commands import CommandHandler, Disconnect, Effect, Fail, Handler
from servers.imap.fetch import FetchError, FetchPlan, compile_fetch, flags_bytes
from servers.imap.ordering import Sorter, SortError, parse_sort_return
from servers.imap.protocol import Command, Token
from servers.imap.responses import Status, UntaggedStatus
from servers.imap.search import SearchError, SearchProgram, compile_search
from servers.imap.sequence import (
    SequenceSet,
    SequenceSetError,
    format_ascending,
    format_sequence_set,
)
from servers.imap.states import Transition
from servers.imap.store import NoSuchMailbox, QuotaExceeded, StoredMessage, TooBig
from servers.imap.threads import THREAD_ALGORITHMS
from servers.imap.view import SelectedView

if TYPE_CHECKING:
    from servers.imap.session import Session

__all__ = ["COMMANDS", "FETCH_CHUNK_BYTES"]

#: FETCH output is handed to the transport in chunks of about this size, so
#: flow control can pause a huge FETCH between chunks.
FETCH_CHUNK_BYTES = 256 * 1024
#: Messages read from the store at a time by FETCH and SEARCH.
BATCH = 512
#: A SEARCH/SORT result line longer than this many numbers goes out in pieces of
#: about this many (each piece is one transport write, so flow control applies).
LINE_NUMBERS = 8192

Ranges = list[tuple[int, int]]
"""Half-open index ranges ``(start, stop)`` into a view's UID array, ascending."""
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


def _ranges(s: Session, cmd: Command, token: Token) -> Ranges:
    """Where in this view's UID array the messages a (UID) sequence set names are."""
    view = s.selected()
    seqset = _seq_set(s, cmd, token)
    if cmd.uid:
        return seqset.positions(view.uids)
    count = len(view.uids)
    if count == 0:
        if seqset.uses_star:
            return []
        raise s.bad(cmd, s.replies.invalid_messageset)
    out: Ranges = []
    for lo, hi in seqset.intervals(count):
        if hi > count:
            raise s.bad(cmd, s.replies.invalid_messageset)
        out.append((lo - 1, hi))
    return out


def _uids_at(uids: array[int], ranges: Ranges) -> array[int]:
    out = array("I")
    for start, stop in ranges:
        out.extend(uids[start:stop])
    return out


def _uid_set(s: Session, cmd: Command, token: Token) -> array[int]:
    """The UIDs of this view a (UID) sequence set names, ascending."""
    return _uids_at(s.selected().uids, _ranges(s, cmd, token))


def cmd_FETCH(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = s.args(cmd, 2)
    view = s.selected()
    ranges = _ranges(s, cmd, args[0])
    if _preview_modifiers(args):
        # FETCH 1 PREVIEW (LAZY): the list belongs to the attribute.
        args = (args[0], [args[1], args[2]], *args[3:])
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
    if plan.sets_seen and not view.readonly and ranges:
        changed, _ = box.set_flags(_uids_at(view.uids, ranges), ("\\Seen",), "add")
        seen_now = {m.uid for m in changed}
    flagged_plan = plan.with_flags()
    if s.condstore:
        flagged_plan = flagged_plan.with_modseq()
    missing = yield from _fetch_rows(s, view, ranges, plan, flagged_plan, seen_now, changed_since)
    if missing:
        raise s.no(s.replies.expunged_fetch)
    return s.ok(cmd, s.replies.fetch_ok)


def _preview_modifiers(args: tuple[Token, ...]) -> bool:
    """Whether ``args`` is ``seqset PREVIEW (modifiers) ...`` rather than a CHANGEDSINCE list."""
    if len(args) < 3 or not isinstance(args[1], str) or not isinstance(args[2], list):
        return False
    first = args[2][0] if args[2] else None
    return args[1].upper() in ("PREVIEW", "SNIPPET") and not (
        isinstance(first, str) and first.upper() == "CHANGEDSINCE"
    )


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
    ranges: Ranges,
    plan: FetchPlan,
    flagged_plan: FetchPlan,
    seen_now: set[int],
    changed_since: int | None,
) -> Generator[bytes | Effect, bytes | None, bool]:
    """Render FETCH lines in chunks; True if some messages had gone.

    Only one batch of messages and one chunk of output exist at a time, so a
    ``FETCH 1:*`` of a million messages costs no more memory than one of a
    thousand. The view's UIDs cannot change while this runs (only ``sync``
    changes them, after the command).
    """
    box = view.mailbox
    view_uids = view.uids
    reported = view.reported
    # sync() only reports changes above the view's MODSEQ; a line sent for an
    # older MODSEQ can never be repeated there, so it needs no entry (for
    # FETCH 1:* FLAGS of a million messages, a million-entry dict otherwise).
    floor = view.modseq
    renders = plan.renders
    report_flags = plan.has_flags
    chunk: list[bytes] = []
    size = 0
    missing = False
    for first, stop in ranges:
        for start in range(first, stop, BATCH):
            end = min(start + BATCH, stop)
            messages = box.get_many(view_uids[start:end])
            whole = len(messages) == end - start
            if not whole:
                missing = True
            for i, msg in enumerate(messages):
                uid = msg.uid
                if changed_since is not None and msg.modseq <= changed_since:
                    continue
                seq = start + i + 1 if whole else bisect_left(view_uids, uid) + 1
                try:
                    if uid in seen_now:
                        body = b" ".join([render(msg) for render in flagged_plan.renders])
                        if msg.modseq > floor:
                            reported[uid] = msg.modseq
                    else:
                        body = b" ".join([render(msg) for render in renders])
                        if report_flags and msg.modseq > floor:
                            reported[uid] = msg.modseq
                except BinaryError as exc:
                    # Dovecot ends the FETCH at this message with only its UID.
                    chunk.append(b"* %d FETCH (UID %d)\r\n" % (seq, uid))
                    yield b"".join(chunk)
                    yield from _binary_failure(s, exc)
                    return missing
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


def _binary_failure(s: Session, exc: BinaryError) -> Generator[bytes | Effect, bytes | None, None]:
    """Dovecot's replies to a part BINARY cannot decode (cmd-fetch.c, cmd_fetch_finish)."""
    if exc.failure is BinaryFailure.UNKNOWN_CTE:
        raise Fail(Status.NO, s.replies.unknown_cte.text, s.replies.unknown_cte.code)
    if exc.failure is BinaryFailure.INVALID:
        raise Fail(Status.NO, s.replies.invalid_mime_data.text, s.replies.invalid_mime_data.code)
    # A stream error that is not EINVAL: Dovecot says BYE and disconnects.
    text = s.replies.fetch_failed.format(time=datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
    yield UntaggedStatus(Status.BYE, text).to_bytes()
    yield Disconnect()
    raise Fail(Status.NO, text)


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
    program = _compile_search(s, cmd, args)
    uses_modseq = _mentions_modseq(args)
    # Ascending either way: sequence numbers, and the view's UIDs.
    numbers = array("I")
    top_modseq = 0
    view = s.selected()
    if program.matches_everything and not uses_modseq and view.mailbox.uids_equal(view.uids):
        # SEARCH ALL of a view that is still current: no message needs reading.
        numbers = array("I", view.uids) if cmd.uid else array("I", range(1, len(view.uids) + 1))
    else:
        for seq, msg in _matches(view, program):
            numbers.append(msg.uid if cmd.uid else seq)
            if msg.modseq > top_modseq:
                top_modseq = msg.modseq
    if esearch is not None:
        yield _esearch_line(s, cmd, esearch, numbers, top_modseq if uses_modseq else None)
    else:
        tail = b" (MODSEQ %d)" % top_modseq if uses_modseq and numbers else b""
        yield from _number_line(b"* SEARCH", numbers, tail)
    return s.ok(cmd, s.replies.search_ok)


def _number_line(head: bytes, numbers: Sequence[int], tail: bytes = b"") -> Iterator[bytes]:
    """``head n1 n2 ...tail CRLF``, in pieces when long (a million-hit SEARCH is ~7 MB)."""
    count = len(numbers)
    start = 0
    while True:
        stop = start + LINE_NUMBERS
        if count - stop < LINE_NUMBERS:
            stop = count  # the last piece takes the rest, so no piece is short
        piece = b"".join([b" %d" % n for n in numbers[start:stop]])
        if stop >= count:
            yield head + piece + tail + b"\r\n"
            return
        yield head + piece
        head = b""
        start = stop


def _compile_search(
    s: Session, cmd: Command, args: list[Token], charset: str = "US-ASCII"
) -> SearchProgram:
    if not args:
        raise s.bad(cmd, s.replies.missing_arguments)
    try:
        return compile_search(args, charset)
    except SearchError as exc:
        if exc.code is not None:
            raise Fail(Status.NO, str(exc), exc.code) from None
        raise s.bad(cmd, str(exc)) from None


def _matches(view: SelectedView, program: SearchProgram) -> Iterator[tuple[int, StoredMessage]]:
    """(seq, message) of every message of the view that matches, one batch read at a time."""
    box = view.mailbox
    uids = view.uids
    max_seq = len(uids)
    max_uid = uids[-1] if uids else 0
    everything = program.matches_everything
    for start in range(0, max_seq, BATCH):
        messages = box.get_many(uids[start : start + BATCH])
        whole = len(messages) == min(BATCH, max_seq - start)
        for i, msg in enumerate(messages):
            seq = start + i + 1 if whole else bisect_left(uids, msg.uid) + 1
            if everything or program.matches(
                _SearchView(msg, seq), max_seq=max_seq, max_uid=max_uid
            ):
                yield seq, msg


def cmd_SORT(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(cmd.args)
    returning = None
    if len(args) >= 2 and isinstance(args[0], str) and args[0].upper() == "RETURN":
        options = args[1]  # ESORT (RFC 5267)
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise s.bad(cmd, s.replies.invalid_arguments)
        try:
            returning = parse_sort_return([str(o) for o in options])
        except SortError as exc:
            raise s.bad(cmd, str(exc)) from None
        args = args[2:]
    if len(args) < 3:
        raise s.bad(cmd, s.replies.missing_arguments)
    criteria = args.pop(0)
    if not isinstance(criteria, list) or not all(isinstance(c, str) for c in criteria):
        raise s.bad(cmd, s.replies.invalid_arguments)
    charset = s.astring(cmd, args.pop(0))
    program = _compile_search(s, cmd, args, charset)
    try:
        sorter = Sorter([str(c) for c in criteria])
    except SortError as exc:
        raise s.bad(cmd, str(exc)) from None
    # Only the hits' numbers and sort keys are kept, never their messages.
    numbers = array("I")
    for seq, msg in _matches(s.selected(), program):
        numbers.append(msg.uid if cmd.uid else seq)
        sorter.add(msg)
    order = sorter.order()
    del sorter
    ordered = array("I", map(numbers.__getitem__, order))
    del numbers, order
    if returning is not None:
        yield returning.line(cmd.tag, cmd.uid, ordered)
    else:
        yield from _number_line(b"* SORT", ordered)
    return s.ok(cmd, s.replies.sort_ok)


def cmd_THREAD(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(s.args(cmd, 3))
    algorithm = s.astring(cmd, args.pop(0)).upper()
    threader = THREAD_ALGORITHMS.get(algorithm)
    if threader is None:
        raise s.bad(cmd, "Unknown thread algorithm.")
    charset = s.astring(cmd, args.pop(0))
    program = _compile_search(s, cmd, args, charset)
    view = s.selected()
    hits = _matches(view, program)
    numbered = ((msg.uid if cmd.uid else seq, msg) for seq, msg in hits)
    head = b"* THREAD "
    for piece in threader(numbered, lambda numbers: _reread(view, numbers, cmd.uid)):
        yield head + piece
        head = b""
    yield b"\r\n"
    return s.ok(cmd, s.replies.thread_ok)


def _reread(
    view: SelectedView, numbers: Sequence[int], uid: bool
) -> Iterator[StoredMessage | None]:
    """The messages of ``numbers`` (UIDs or sequence numbers of the view), in order;
    None for one expunged since, one batch read at a time."""
    box = view.mailbox
    for start in range(0, len(numbers), BATCH):
        batch = numbers[start : start + BATCH]
        uids = batch if uid else [view.uids[seq - 1] for seq in batch]
        messages = box.get_many(uids)
        if len(messages) == len(uids):
            yield from messages
        else:
            found = {msg.uid: msg for msg in messages}
            yield from map(found.get, uids)


def _esearch_line(
    s: Session,
    cmd: Command,
    options: list[str],
    numbers: array[int],
    top_modseq: int | None,
) -> bytes:
    """The ESEARCH response; ``numbers`` ascending, ``top_modseq`` when MODSEQ was searched."""
    parts = [b'* ESEARCH (TAG "' + cmd.tag.encode() + b'")']
    if cmd.uid:
        parts.append(b"UID")
    if numbers:
        if "MIN" in options:
            parts.append(b"MIN %d" % numbers[0])
        if "MAX" in options:
            parts.append(b"MAX %d" % numbers[-1])
        if "ALL" in options:
            parts.append(b"ALL " + format_ascending(numbers).encode())
    if "COUNT" in options:
        parts.append(b"COUNT %d" % len(numbers))
    if top_modseq is not None and numbers:
        parts.append(b"MODSEQ %d" % top_modseq)
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
