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
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from mailharness.servers.imap import message as mime
from mailharness.servers.imap.binary import BinaryError, BinaryFailure
from mailharness.servers.imap.commands import CommandHandler, Disconnect, Effect, Fail, Handler
from mailharness.servers.imap.fetch import FetchError, FetchPlan, compile_fetch
from mailharness.servers.imap.header_index import (
    keep_order,
    matching_positions,
    sort_keys,
    sorted_order,
)
from mailharness.servers.imap.ordering import Sorter, SortError, esearch_line, parse_sort_return
from mailharness.servers.imap.protocol import Command, Token
from mailharness.servers.imap.responses import Status, UntaggedStatus
from mailharness.servers.imap.search import SearchError, SearchProgram, compile_search
from mailharness.servers.imap.sequence import (
    MAX_NUMBER,
    SequenceSet,
    SequenceSetError,
    format_sequence_set,
)
from mailharness.servers.imap.states import Transition
from mailharness.servers.imap.store import NoSuchMailbox, QuotaExceeded, StoredMessage, TooBig
from mailharness.servers.imap.threads import THREAD_ALGORITHMS
from mailharness.servers.imap.view import MAX_SEARCH_UPDATES, SearchUpdate, SearchView, SelectedView

if TYPE_CHECKING:
    from mailharness.servers.imap.session import Session

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


def _mentions(tokens: Iterable[Token], word: str) -> bool:
    """Whether the atom `word` (upper case) appears anywhere in a SEARCH program."""
    for token in tokens:
        if isinstance(token, list):
            if _mentions(token, word):
                return True
        elif isinstance(token, str) and token.upper() == word:
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
    if token == "$":  # RFC 5182: the saved SEARCH result, as UIDs either way
        return _positions(view.uids, view.saved_uids())
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


def _positions(uids: array[int], wanted: Iterable[int]) -> Ranges:
    """Index ranges of the (ascending, present) UIDs `wanted` in `uids`."""
    out: Ranges = []
    for uid in wanted:
        i = bisect_left(uids, uid)
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
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
        plan = compile_fetch(args[1], s.replies)
    except FetchError as exc:
        raise s.bad(cmd, str(exc)) from None
    changed_since: int | None = None
    vanished = False
    if len(args) > 2:
        changed_since, vanished = _fetch_modifiers(s, cmd, args[2])
        plan = plan.with_modseq()
    limit = s.settings.fetch_byte_limit
    if limit is not None and s.fetched_bytes >= limit:
        raise s.no(s.replies.bandwidth_exceeded)
    if plan.has_modseq:  # RFC 7162 §3.1: FETCH MODSEQ and CHANGEDSINCE enable CONDSTORE
        yield s.enable_condstore()
    if cmd.uid:
        plan = plan.with_uid()
    # As Dovecot: FETCH FLAGS shows no MODSEQ unless asked (RFC 7162 wants it only in
    # unsolicited FETCHes, which sync adds).
    box = view.mailbox
    if vanished and changed_since is not None and args[0] != "$":
        seqset = _seq_set(s, cmd, args[0])
        top = box.uidnext - 1
        gone = [u for u in box.vanished_since(changed_since) if seqset.contains(u, top)]
        if gone:
            yield b"* VANISHED (EARLIER) %s\r\n" % format_sequence_set(gone).encode()
    seen_now: set[int] = set()
    if plan.sets_seen and not view.readonly and ranges:
        changed, _ = box.set_flags(_uids_at(view.uids, ranges), ("\\Seen",), "add")
        seen_now = {m.uid for m in changed}
    flagged_plan = plan.with_flags()
    if s.condstore:
        flagged_plan = flagged_plan.with_modseq()
    if view.recent:
        plan = plan.bind_flags(view.render_flags)
        flagged_plan = flagged_plan.bind_flags(view.render_flags)
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


def _fetch_modifiers(s: Session, cmd: Command, token: Token) -> tuple[int, bool]:
    """``(CHANGEDSINCE n [VANISHED])``: VANISHED only in UID FETCH under QRESYNC (RFC 7162)."""
    if isinstance(token, list) and len(token) in (2, 3):
        key, value, *rest = token
        vanished = bool(rest)
        if (
            isinstance(key, str)
            and key.upper() == "CHANGEDSINCE"
            and isinstance(value, str)
            and value.isdigit()
            and (not rest or (isinstance(rest[0], str) and rest[0].upper() == "VANISHED"))
        ):
            if vanished and not (cmd.uid and s.qresync):
                raise s.bad(cmd, s.replies.invalid_arguments)
            return int(value), vanished
    raise s.bad(cmd, s.replies.invalid_arguments)


def qresync_changes(
    s: Session, view: SelectedView, modseq: int, known: SequenceSet | None
) -> Iterator[bytes]:
    """SELECT (QRESYNC ...): what changed since `modseq` among the client's known UIDs.

    ``VANISHED (EARLIER)`` for the expunged ones, then a FETCH of UID, FLAGS and
    MODSEQ for each changed one, as Dovecot sends them before the tagged OK.
    """
    box = view.mailbox
    top = box.uidnext - 1
    gone = [u for u in box.vanished_since(modseq) if known is None or known.contains(u, top)]
    if gone:
        yield b"* VANISHED (EARLIER) %s\r\n" % format_sequence_set(gone).encode()
    lines = [view.flags_line()]
    for msg in box.changed_since(modseq):
        seq = view.seq(msg.uid)
        if seq is None or (known is not None and not known.contains(msg.uid, top)):
            continue
        lines.append(
            b"* %d FETCH (UID %d %s MODSEQ (%d))\r\n"
            % (seq, msg.uid, view.render_flags(msg), msg.modseq)
        )
    yield b"".join(lines)


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
            if report_flags or seen_now:
                announce = view.flags_line()  # new keywords before any FETCH shows one
                if announce:
                    chunk.append(announce)
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
        else:
            raise s.bad(cmd, s.replies.invalid_arguments)
    if len(args) < 2:
        raise s.bad(cmd, s.replies.missing_arguments)
    item = s.astring(cmd, args[0]).upper()
    silent = item.endswith(".SILENT")
    mode = _STORE_MODES.get(item.removesuffix(".SILENT"))
    if mode is None:
        raise s.bad(cmd, s.replies.store_invalid_item.format(item=item))
    flags = s.parse_flags(cmd, args[1] if len(args) == 2 else list(args[1:]))
    if view.readonly:  # Dovecot: OK, and nothing stored
        return s.ok(cmd, s.replies.store_read_only)
    if unchanged_since is not None:  # RFC 7162 §3.1: UNCHANGEDSINCE enables CONDSTORE
        yield s.enable_condstore()
    box = view.mailbox
    changed, failed = box.set_flags(uids, flags, mode, unchanged_since=unchanged_since)
    changed_uids = {m.uid for m in changed}
    lines = [view.flags_line()]
    report = [m for m in box.get_many(uids) if m.uid not in failed]
    for msg in report:
        if silent and msg.uid not in changed_uids:
            continue
        seq = view.seq(msg.uid)
        if seq is None:
            continue
        view.reported[msg.uid] = msg.modseq
        if silent and not s.condstore:
            continue
        # Dovecot's order: UID, MODSEQ, FLAGS; .SILENT under CONDSTORE still says the
        # new MODSEQ (RFC 7162 §3.1.3).
        parts = []
        if cmd.uid or s.qresync:
            parts.append(b"UID %d" % msg.uid)
        if s.condstore:
            parts.append(b"MODSEQ (%d)" % msg.modseq)
            view.fetched_modseq = max(view.fetched_modseq, msg.modseq)
        if not silent:
            parts.append(view.render_flags(msg))
        lines.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts)))
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
        yield b"".join(view.sync(expunge=True, condstore=s.condstore, qresync=s.qresync))
        return s.ok(cmd, ok_text)
    return s.ok(cmd, ok_text, code)


def cmd_SEARCH(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(cmd.args)
    view = s.selected()
    options: _ReturnOptions | None = None
    if len(args) >= 2 and isinstance(args[0], str) and args[0].upper() == "RETURN":
        options = _return_options(s, cmd, args[1])
        args = args[2:]
    try:
        saved = view.saved_uids() if _mentions(args, "$") else ()
        program = _compile_search(s, cmd, args, saved=saved)
    except Fail:
        if options is not None and options.save:
            view.saved = array("I")  # RFC 5182 §2.1: a failed SEARCH SAVE empties $
        raise
    uses_modseq = _mentions(args, "MODSEQ")
    if uses_modseq:  # RFC 7162 §3.1: SEARCH MODSEQ enables CONDSTORE
        yield s.enable_condstore()
    # Ascending either way: sequence numbers, and the view's UIDs.
    numbers = array("I")
    uids = array("I")
    modseqs = array("Q")
    keep_uids = options is not None and (options.save or options.update)
    if program.matches_everything and not uses_modseq and view.mailbox.uids_equal(view.uids):
        # SEARCH ALL of a view that is still current: no message needs reading.
        numbers = array("I", view.uids) if cmd.uid else array("I", range(1, len(view.uids) + 1))
        uids = view.uids
    else:
        for seq, msg in _matches(view, program, args):
            numbers.append(msg.uid if cmd.uid else seq)
            if keep_uids:
                uids.append(msg.uid)
            if uses_modseq:
                modseqs.append(msg.modseq)
    if options is None:
        tail = b" (MODSEQ %d)" % max(modseqs) if uses_modseq and numbers else b""
        yield from _number_line(b"* SEARCH", numbers, tail)
        return s.ok(cmd, s.replies.search_ok)
    picked = options.picked(len(numbers))
    if options.save:
        kept = range(len(numbers)) if options.partial and options.count else picked
        view.saved = array("I", sorted({uids[i] for i in kept}))
    if options.update:
        yield _register_update(s, cmd, view, program, uids)
    if options.esearch:
        top = max((modseqs[i] for i in picked), default=0) if uses_modseq else 0
        yield esearch_line(cmd.tag, cmd.uid, numbers, options.returns, options.partial, top)
    return s.ok(cmd, s.replies.search_ok)


@dataclass(slots=True)
class _ReturnOptions:
    """SEARCH RETURN (...) (RFC 4731 ESEARCH, RFC 5182 SAVE, RFC 5267 UPDATE/PARTIAL)."""

    min: bool = False
    max: bool = False
    all: bool = False
    count: bool = False
    save: bool = False
    update: bool = False
    partial: tuple[int, int] | None = None

    @property
    def returns(self) -> frozenset[str]:
        """MIN, MAX, ALL and COUNT as ``esearch_line`` takes them."""
        names = ("MIN", "MAX", "ALL", "COUNT")
        return frozenset(n for n in names if getattr(self, n.lower()))

    @property
    def esearch(self) -> bool:
        """Dovecot sends no ESEARCH when SAVE is the only option."""
        return self.min or self.max or self.all or self.count or self.update or bool(self.partial)

    def picked(self, count: int) -> range | list[int]:
        """Indexes of the hits whose MODSEQ is reported and which SAVE keeps (Dovecot's rule)."""
        if self.partial is not None:
            lo, hi = self.partial
            return range(lo - 1, min(hi, count))
        if self.all or self.count or not (self.min or self.max):
            return range(count)
        ends = {0} if self.min else set()
        if self.max:
            ends.add(count - 1)
        return sorted(i for i in ends if 0 <= i < count)


def _return_options(s: Session, cmd: Command, token: Token) -> _ReturnOptions:
    if not isinstance(token, list):
        raise s.bad(cmd, s.replies.invalid_arguments)
    opts = _ReturnOptions()
    items = list(token)
    while items:
        item = items.pop(0)
        if not isinstance(item, str):
            raise s.bad(cmd, s.replies.search_return_non_atoms)
        name = item.upper()
        if name in ("MIN", "MAX", "ALL", "COUNT", "SAVE"):
            setattr(opts, name.lower(), True)
        elif name == "CONTEXT":
            pass  # RFC 5267: a hint we need not act on
        elif name == "UPDATE":
            if opts.update:
                raise s.bad(cmd, s.replies.search_return_duplicate_update)
            opts.update = True
        elif name == "PARTIAL":
            if opts.partial is not None:
                raise s.bad(cmd, s.replies.partial_twice)
            value = items.pop(0) if items else None
            if not isinstance(value, str):
                raise s.bad(cmd, s.replies.partial_missing)
            opts.partial = _partial_range(value)
            if opts.partial is None:
                raise s.bad(cmd, s.replies.partial_broken)
        else:
            raise s.bad(cmd, s.replies.search_return_unknown)
    if opts.update and any(u.tag == cmd.tag for u in s.selected().updates):
        raise s.bad(cmd, s.replies.search_update_duplicate_tag)
    if opts.partial is not None and opts.all:
        raise s.bad(cmd, s.replies.partial_with_all)
    if not (opts.min or opts.max or opts.count or opts.save or opts.update or opts.partial):
        opts.all = True
    return opts


def _partial_range(text: str) -> tuple[int, int] | None:
    """``n:m`` of positive numbers, either order (Dovecot swaps them); no ``*``."""
    first, colon, last = text.partition(":")
    if not (colon and first.isdigit() and last.isdigit()):
        return None
    lo, hi = int(first), int(last)
    if lo == 0 or hi == 0 or max(lo, hi) > MAX_NUMBER:
        return None
    return (min(lo, hi), max(lo, hi))


def _register_update(
    s: Session, cmd: Command, view: SelectedView, program: SearchProgram, uids: array[int]
) -> bytes:
    """Keep this search current (CONTEXT=SEARCH), or say NOUPDATE past Dovecot's limit."""
    if len(view.updates) >= MAX_SEARCH_UPDATES:
        tag = mime.quote(cmd.tag).decode("utf-8", "surrogateescape")
        return UntaggedStatus(
            Status.NO, s.replies.search_updates_limit, f"NOUPDATE {tag}"
        ).to_bytes()

    def matches(msg: SearchView, max_seq: int, max_uid: int) -> bool:
        return program.matches(msg, max_seq=max_seq, max_uid=max_uid)

    view.updates.append(SearchUpdate(cmd.tag, cmd.uid, matches, set(uids)))
    return b""


def cmd_CANCELUPDATE(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    """RFC 5267: stop updating the searches these tags started."""
    args = s.args(cmd, 1)
    view = s.view
    for token in args:
        if not isinstance(token, bytes):
            raise s.bad(cmd, s.replies.invalid_parameters)
        tag = token.decode("utf-8", "replace")
        found = [u for u in view.updates if u.tag == tag] if view is not None else []
        if not found or view is None:
            raise Fail(Status.NO, s.replies.unknown_update_tag)
        view.updates.remove(found[0])
    return s.ok(cmd, s.replies.cancelupdate_ok)
    yield b""  # pragma: no cover - unreachable; makes this a generator


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
    s: Session,
    cmd: Command,
    args: list[Token],
    charset: str = "US-ASCII",
    *,
    saved: Sequence[int] = (),
) -> SearchProgram:
    if not args:
        raise s.bad(cmd, s.replies.missing_arguments)
    try:
        return compile_search(args, charset, saved=saved, replies=s.replies)
    except SearchError as exc:
        if exc.code is not None:
            raise Fail(Status.NO, str(exc), exc.code) from None
        raise s.bad(cmd, str(exc)) from None


#: Search keys that look at \\Recent; without them a SEARCH skips this session's \\Recent.
_RECENT_KEYS = ("RECENT", "NEW", "OLD", "UNRECENT", "\\RECENT")


def _matches(
    view: SelectedView, program: SearchProgram, args: Sequence[Token] = ()
) -> Iterator[tuple[int, StoredMessage]]:
    """(seq, message) of every message of the view that matches, one batch read at a time.

    `args`: the program as sent, to see whether it asks about \\Recent at all.
    """
    box = view.mailbox
    uids = view.uids
    max_seq = len(uids)
    max_uid = uids[-1] if uids else 0
    everything = program.matches_everything
    recent = view.recent and any(_mentions(args, key) for key in _RECENT_KEYS)
    search_view = view.search_view if recent else _plain_view
    if program.terms:
        # Header keys: the index gives the candidates; only they are read and tested.
        positions = matching_positions(box, uids, program.terms)
        for start in range(0, len(positions), BATCH):
            chunk = positions[start : start + BATCH]
            messages = box.get_many([uids[p] for p in chunk])
            whole = len(messages) == len(chunk)
            for i, msg in enumerate(messages):
                seq = chunk[i] + 1 if whole else bisect_left(uids, msg.uid) + 1
                if program.matches_rest(search_view(msg, seq), max_seq=max_seq, max_uid=max_uid):
                    yield seq, msg
        return
    for start in range(0, max_seq, BATCH):
        messages = box.get_many(uids[start : start + BATCH])
        whole = len(messages) == min(BATCH, max_seq - start)
        for i, msg in enumerate(messages):
            seq = start + i + 1 if whole else bisect_left(uids, msg.uid) + 1
            if everything or program.matches(
                search_view(msg, seq), max_seq=max_seq, max_uid=max_uid
            ):
                yield seq, msg


def _plain_view(msg: StoredMessage, seq: int) -> SearchView:
    return SearchView(msg, seq, msg.flags)


def cmd_SORT(s: Session, cmd: Command, after: list[Effect]) -> Handler:
    args = list(cmd.args)
    returning = None
    if len(args) >= 2 and isinstance(args[0], str) and args[0].upper() == "RETURN":
        options = args[1]  # ESORT (RFC 5267)
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise s.bad(cmd, s.replies.invalid_arguments)
        try:
            returning = parse_sort_return([str(o) for o in options], s.replies)
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
    view = s.selected()
    box = view.mailbox
    try:
        sorter = Sorter([str(c) for c in criteria], s.replies, lambda name: sort_keys(box, name))
    except SortError as exc:
        raise s.bad(cmd, str(exc)) from None
    # SORT ... ALL of a current view: the order of the same UIDs is the same as last time.
    whole = program.matches_everything and box.uids_equal(view.uids)
    names = tuple(str(c).upper() for c in criteria)
    order = sorted_order(box, names, view.uids) if whole else None
    if order is not None:
        numbers = view.uids if cmd.uid else array("I", range(1, len(view.uids) + 1))
    else:
        # Only the hits' numbers and sort keys are kept, never their messages.
        numbers = array("I")
        for seq, msg in _matches(view, program, args):
            numbers.append(msg.uid if cmd.uid else seq)
            sorter.add(msg)
        order = sorter.order()
        if whole and len(order) == len(view.uids):
            keep_order(box, names, view.uids, order)
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
        raise s.bad(cmd, s.replies.thread_unknown_algorithm)
    charset = s.astring(cmd, args.pop(0))
    program = _compile_search(s, cmd, args, charset)
    view = s.selected()
    hits = _matches(view, program, args)
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
    "CANCELUPDATE": cmd_CANCELUPDATE,
}
