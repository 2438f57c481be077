r"""Two imaplib sessions against one running server, checked against a plain Python model.

A hypothesis state machine APPENDs, STOREs flags, EXPUNGEs, COPYs and MOVEs
between two mailboxes from either of two real sessions. After every step both
sessions NOOP, and each must have been told of every change (EXISTS, EXPUNGE
and FETCH FLAGS responses, replayed in arrival order into the client's idea of
the mailbox), must number messages 1..N in UID order, and must see exactly the
model's UIDs and flags; the store itself must hold the model's messages. UIDs
must rise strictly and never be reused, and UIDNEXT must stay above all of them.

Dovecot's per-session state is modelled too: a new message is \Recent for
exactly one session, the first whose command completes with its mailbox
selected (or that selects it), and only while that selection lasts; RECENT
counts and STATUS RECENT follow. Every keyword a FETCH shows must have been
announced in an untagged FLAGS first. Session b has CONDSTORE enabled: a
message's MODSEQ must rise exactly when its flags change.

The model does not predict UIDs: it takes them from APPENDUID / COPYUID and
only checks the UID rules, so the same test could run against Dovecot.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import re
import socket
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from mailharness.server import MailServer

LOGIN, PASSWORD = "alice@example.test", "alice-password"
#: Generous: a loaded CI machine, never a readiness wait.
TIMEOUT = 30.0
#: Keeps the whole state machine test under ~15 s, and under `-n 2`.
MAX_EXAMPLES = 60
STEPS = 40
#: \Recent belongs to a session, not to the message: modelled apart from the flags.
RECENT = "\\Recent"
FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Label1", "Work")
#: STORE item -> how the model applies it.
STORE_ITEMS = {"+FLAGS": "add", "-FLAGS": "remove", "FLAGS": "set"}

_FETCH = re.compile(rb"^(\d+) \((.*)\)$")
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")
_boxes = itertools.count(1)  # a fresh pair of mailboxes per example: no reset needed


# -- the model -------------------------------------------------------------------------


@dataclass
class Msg:
    uid: int
    flags: frozenset[str]
    body: bytes
    #: (session name, selection number) that holds \Recent; None while unclaimed.
    recent: tuple[str, int] | None = None
    #: The flags changed since the CONDSTORE session last read the MODSEQ.
    changed: bool = False
    modseq: int | None = None  # as last read by the CONDSTORE session


@dataclass
class Box:
    name: str
    msgs: list[Msg] = field(default_factory=list)
    #: The highest UID this mailbox ever handed out: a new one must be above it.
    max_uid: int = 0

    def assign(self, uid: int, flags: frozenset[str], body: bytes) -> None:
        assert uid > self.max_uid, f"{self.name}: new UID {uid} not above {self.max_uid}"
        self.max_uid = uid
        self.msgs.append(Msg(uid, flags, body))

    def by_uid(self, uid: int) -> Msg:
        return next(m for m in self.msgs if m.uid == uid)


def apply_flags(old: frozenset[str], flags: Iterable[str], mode: str) -> frozenset[str]:
    if mode == "add":
        return old | frozenset(flags)
    if mode == "remove":
        return old - frozenset(flags)
    return frozenset(flags)


# -- a client that keeps what the server told it -------------------------------------------


def fetched_flags(data: bytes) -> frozenset[str] | None:
    """Every flag of a FETCH response, \\Recent included; None without FLAGS."""
    match = _FLAGS.search(data)
    return frozenset(match.group(1).decode().split()) if match else None


def parse_fetch(data: bytes) -> tuple[int, int | None, frozenset[str] | None]:
    """`b'3 (UID 7 FLAGS (\\Seen))'` -> (3, 7, {'\\Seen'}); UID and FLAGS may be missing."""
    match = _FETCH.match(data)
    assert match is not None, f"unparsable FETCH response {data!r}"
    seq, items = int(match.group(1)), match.group(2)
    uid = _UID.search(items)
    flags = _FLAGS.search(items)
    return (
        seq,
        int(uid.group(1)) if uid else None,
        frozenset(flags.group(1).decode().split()) - {RECENT} if flags else None,
    )


@dataclass
class Entry:
    """What the client knows of one message: None until the server said."""

    uid: int | None = None
    flags: frozenset[str] | None = None
    recent: bool | None = None


class Session(imaplib.IMAP4):
    """imaplib over a real socket, plus every untagged response in arrival order.

    imaplib files untagged responses in a dict by type, which loses the order
    of EXPUNGE, EXISTS and FETCH that sequence numbers depend on; hence the
    override of its (private) `_append_untagged` hook.
    """

    def __init__(self, name: str, address: tuple[str, int]) -> None:
        self.name = name
        self.log: list[tuple[str, bytes]] = []
        self.last: list[tuple[str, bytes]] = []  # the untagged data of the last `ok`
        self.entries: list[Entry] = []
        self.selected = ""
        #: Counts SELECTs: \Recent lasts one selection.
        self.selection = 0
        #: The last `* n RECENT`, and the keywords announced by untagged FLAGS.
        self.recent_count = 0
        self.announced: frozenset[str] = frozenset()
        #: Called after every OK command (the model hands out \Recent there).
        self.on_ok: Callable[[Session], None] = lambda session: None
        super().__init__(*address, timeout=TIMEOUT)
        # imaplib sends an APPEND literal and its CRLF in two writes; without
        # this, Nagle plus the server's delayed ACK stall each APPEND ~40 ms.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _append_untagged(self, typ: str, dat: bytes | None) -> None:
        if isinstance(dat, bytes):
            self.log.append((typ, dat))
        super()._append_untagged(typ, dat)  # type: ignore[misc]

    def ok(self, result: tuple[str, Sequence[object]]) -> None:
        """The tagged reply must be OK; takes in the untagged news that came with it."""
        typ, data = result
        self.absorb()
        assert typ == "OK", f"session {self.name}: {typ} {data!r}"
        self.on_ok(self)

    def absorb(self) -> None:
        """Replay the untagged EXISTS / EXPUNGE / FETCH responses as a client would."""
        self.last, self.log = self.log, []
        for typ, dat in self.last:
            if typ == "FLAGS":
                self.announced = frozenset(dat.decode().strip("()").split())
            elif typ == "RECENT":
                self.recent_count = int(dat)
            elif typ == "EXISTS":
                count = int(dat)
                assert count >= len(self.entries), (
                    f"session {self.name}: EXISTS {count} shrank the mailbox from "
                    f"{len(self.entries)} without EXPUNGE"
                )
                self.entries += [Entry() for _ in range(count - len(self.entries))]
            elif typ == "EXPUNGE":
                seq = int(dat)
                assert 1 <= seq <= len(self.entries), (
                    f"session {self.name}: EXPUNGE {seq} of {len(self.entries)} messages"
                )
                del self.entries[seq - 1]
            elif typ == "FETCH":
                seq, uid, flags = parse_fetch(dat)
                assert 1 <= seq <= len(self.entries), (
                    f"session {self.name}: FETCH {dat!r} of {len(self.entries)} messages"
                )
                entry = self.entries[seq - 1]
                if uid is not None:
                    assert entry.uid in (None, uid), (
                        f"session {self.name}: seq {seq} was UID {entry.uid}, FETCH says {dat!r}"
                    )
                    entry.uid = uid
                if flags is not None:
                    entry.flags = flags
                    every = fetched_flags(dat) or frozenset()
                    entry.recent = RECENT in every
                    unknown = {f for f in every if not f.startswith("\\")} - self.announced
                    assert not unknown, (
                        f"session {self.name}: FETCH {dat!r} uses keywords {sorted(unknown)} "
                        f"no FLAGS response announced"
                    )

    def untagged(self, name: str) -> list[bytes]:
        """Data of kind `name` (FETCH, SEARCH, APPENDUID...) of the last command checked.

        Not imaplib's return value: that mixes in what earlier commands left behind.
        """
        return [dat for typ, dat in self.last if typ == name]

    def enter(self, box: str) -> None:
        self.entries, self.log = [], []
        self.selected = box
        self.selection += 1
        self.ok(self.select(box))

    def safe_logout(self) -> None:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self.logout()


def uid_set(uids: Iterable[int]) -> str:
    return ",".join(str(u) for u in uids)


def flag_list(flags: Iterable[str]) -> str:
    return "(" + " ".join(sorted(flags)) + ")"


def copyuid(code: bytes) -> list[tuple[int, int]]:
    """`b'1234 3:4 7:8'` -> [(3, 7), (4, 8)] (source UID, destination UID)."""
    _, sources, targets = code.split()
    return list(zip(expand(sources), expand(targets), strict=True))


def expand(uidset: bytes) -> list[int]:
    out: list[int] = []
    for part in uidset.decode().split(","):
        lo, _, hi = part.partition(":")
        first, last = int(lo), int(hi or lo)
        out += range(min(first, last), max(first, last) + 1)
    return out


def make_message(subject: str, lines: list[str]) -> bytes:
    head = f"From: bob@example.test\r\nTo: {LOGIN}\r\nSubject: {subject}\r\n\r\n"
    return (head + "".join(line + "\r\n" for line in lines)).encode()


WORDS = string.ascii_letters + string.digits + " .,"
messages = st.builds(
    make_message,
    st.text(alphabet=string.ascii_letters, max_size=12),
    st.lists(st.text(alphabet=WORDS, max_size=30), max_size=3),
)
flag_sets = st.frozensets(st.sampled_from(FLAGS), max_size=3)
#: A few messages to APPEND, each with its flags.
appends = st.lists(st.tuples(flag_sets, messages), min_size=1, max_size=3)
who = st.sampled_from(("a", "b"))
#: Messages to act on, as indexes into the selected mailbox (taken modulo its size).
picks = st.sets(st.integers(0, 15), min_size=1, max_size=3)


# -- the state machine ---------------------------------------------------------------------


class TwoSessions(RuleBasedStateMachine):
    server: MailServer  # set by the test function: one running server for every example

    def __init__(self) -> None:
        super().__init__()
        n = next(_boxes)
        self.boxes = {name: Box(name) for name in (f"model{n}", f"model{n}-other")}
        self.main, self.other = self.boxes
        self.sessions: dict[str, Session] = {}

    @initialize(seeds=appends)
    def connect(self, seeds: list[tuple[frozenset[str], bytes]]) -> None:
        for name in ("a", "b"):
            session = Session(name, self.server.imap.starttls.address)
            session.starttls(ssl_context=self.server.ca.client_context())
            session.on_ok = self.claim_recent
            self.sessions[name] = session
            session.ok(session.login(LOGIN, PASSWORD))
        condstore = self.sessions["b"]
        condstore.ok(condstore.enable("CONDSTORE"))
        for box in self.boxes:
            self.sessions["a"].ok(self.sessions["a"].create(box))
        for session in self.sessions.values():
            session.enter(self.main)
        self.append("a", False, seeds)

    def teardown(self) -> None:
        for session in self.sessions.values():
            session.safe_logout()

    # -- helpers --

    def claim_recent(self, session: Session) -> None:
        """Dovecot: \\Recent goes to the first session that syncs the new message."""
        if not session.selected:
            return
        for msg in self.boxes[session.selected].msgs:
            if msg.recent is None:
                msg.recent = (session.name, session.selection)

    def owned(self, session: Session, box: Box) -> list[bool]:
        """Which of `box`'s messages are \\Recent for `session` now."""
        mine = (session.name, session.selection)
        return [m.recent == mine for m in box.msgs]

    def has_messages(self) -> bool:
        return any(self.boxes[s.selected].msgs for s in self.sessions.values())

    def actor(self, name: str) -> Session:
        """Session `name`, or the other one if `name` has nothing selected to act on."""
        session = self.sessions[name]
        if not self.boxes[session.selected].msgs:
            session = self.sessions["b" if name == "a" else "a"]
        return session

    def picked(self, session: Session, indexes: set[int]) -> list[Msg]:
        msgs = self.boxes[session.selected].msgs
        by_uid = {m.uid: m for m in (msgs[i % len(msgs)] for i in indexes)}
        return [by_uid[uid] for uid in sorted(by_uid)]

    def store(self, session: Session, msgs: list[Msg], item: str, flags: frozenset[str]) -> None:
        """UID STORE; the model and (for .SILENT) the client's own view follow it."""
        mode = STORE_ITEMS[item.removesuffix(".SILENT")]
        session.ok(session.uid("STORE", uid_set(m.uid for m in msgs), item, flag_list(flags)))
        box = self.boxes[session.selected]
        for msg in msgs:
            new = apply_flags(msg.flags, flags, mode)
            msg.changed = msg.changed or new != msg.flags
            msg.flags = new
        for entry in session.entries:
            if item.endswith(".SILENT") and entry.uid in {m.uid for m in msgs}:
                entry.flags = box.by_uid(entry.uid).flags  # a client updates its own view
        if not item.endswith(".SILENT"):  # each stored message comes back in a FETCH
            self.check_told(session, uids={m.uid for m in msgs})

    def check_told(self, session: Session, uids: set[int] | None = None) -> None:
        """What `session` was told (without asking) matches the model.

        `uids=None`: the whole mailbox, EXISTS count included; else these
        messages must be known, with their current flags.
        """
        box = self.boxes[session.selected]
        entries = session.entries
        if uids is None:
            assert len(entries) == len(box.msgs), (
                f"session {session.name} believes {box.name} has {len(entries)} messages, "
                f"it has {[m.uid for m in box.msgs]}"
            )
            pairs = list(zip(entries, box.msgs, strict=True))
            recent = sum(self.owned(session, box))
            assert session.recent_count == recent, (
                f"session {session.name}: told RECENT {session.recent_count}, {recent} are its"
            )
        else:
            known = {e.uid: e for e in entries}
            pairs = [(known.get(m.uid, Entry()), m) for m in box.msgs if m.uid in uids]
            assert all(e.uid is not None for e, _ in pairs), (
                f"session {session.name} was not told of UIDs {sorted(uids)}: {entries}"
            )
        for seq, (entry, msg) in enumerate(pairs, 1):
            assert entry.uid in (None, msg.uid), (
                f"session {session.name}: seq {seq} is UID {entry.uid} to the client, "
                f"{msg.uid} in the model"
            )
            assert entry.flags in (None, msg.flags), (
                f"session {session.name}: UID {msg.uid} has flags {sorted(entry.flags or ())} "
                f"to the client, {sorted(msg.flags)} in the model"
            )
            mine = msg.recent == (session.name, session.selection)
            assert entry.recent in (None, mine), (
                f"session {session.name}: UID {msg.uid} \\Recent={entry.recent}, model {mine}"
            )

    # -- rules --

    @rule(name=who, to_other=st.booleans(), items=appends)
    def append(self, name: str, to_other: bool, items: list[tuple[frozenset[str], bytes]]) -> None:
        session = self.sessions[name]
        box = self.boxes[self.other if to_other else self.main]
        for flags, body in items:
            flagged = flag_list(flags) if flags else None
            session.ok(session.append(box.name, flagged, None, body))
            [code] = session.untagged("APPENDUID")
            box.assign(int(code.split()[1]), flags, body)
            self.claim_recent(session)  # the APPEND's own EXISTS came with it

    @precondition(has_messages)
    @rule(
        name=who,
        indexes=picks,
        item=st.sampled_from(sorted(STORE_ITEMS)),
        silent=st.booleans(),
        flags=flag_sets,
    )
    def store_flags(
        self, name: str, indexes: set[int], item: str, silent: bool, flags: frozenset[str]
    ) -> None:
        session = self.actor(name)
        self.store(session, self.picked(session, indexes), item + ".SILENT" * silent, flags)

    @precondition(has_messages)
    @rule(name=who, indexes=picks)
    def expunge(self, name: str, indexes: set[int]) -> None:
        session = self.actor(name)
        msgs = self.picked(session, indexes)
        self.store(session, msgs, "+FLAGS.SILENT", frozenset({"\\Deleted"}))
        session.ok(session.expunge())
        box = self.boxes[session.selected]
        box.msgs = [m for m in box.msgs if "\\Deleted" not in m.flags]
        self.check_told(session)  # EXPUNGE reports every removal before its OK

    @precondition(has_messages)
    @rule(name=who, indexes=picks, doomed=picks)
    def uid_expunge(self, name: str, indexes: set[int], doomed: set[int]) -> None:
        """Mark some messages \\Deleted, then UID EXPUNGE a set that overlaps them."""
        session = self.actor(name)
        marked, named = self.picked(session, indexes), self.picked(session, doomed)
        self.store(session, marked, "+FLAGS.SILENT", frozenset({"\\Deleted"}))
        session.ok(session.uid("EXPUNGE", uid_set(m.uid for m in named)))
        box = self.boxes[session.selected]
        gone = {m.uid for m in named if "\\Deleted" in m.flags}
        box.msgs = [m for m in box.msgs if m.uid not in gone]
        self.check_told(session)

    @precondition(has_messages)
    @rule(name=who, indexes=picks)
    def copy(self, name: str, indexes: set[int]) -> None:
        self.transfer(self.actor(name), indexes, move=False)

    @precondition(has_messages)
    @rule(name=who, indexes=picks, back=st.booleans())
    def move(self, name: str, indexes: set[int], back: bool) -> None:
        """UID MOVE; `back`: first SELECT the other mailbox, to move messages back."""
        session = self.sessions[name]
        if back and self.boxes[self.opposite(session.selected)].msgs:
            session.enter(self.opposite(session.selected))
        self.transfer(self.actor(name), indexes, move=True)

    @precondition(has_messages)
    @rule(indexes=picks, flags=flag_sets)
    def store_after_move(self, indexes: set[int], flags: frozenset[str]) -> None:
        """One session MOVEs messages away; the other, not yet told, UID STOREs on them.

        RFC 2180 §4.2: the STORE succeeds and changes nothing, and its reply may
        carry the EXPUNGEs (a UID command), never a FETCH for a message that is gone;
        the invariant then checks the session was told of the move.
        """
        mover = self.actor("a")
        other = self.sessions["b" if mover.name == "a" else "a"]
        if other.selected != mover.selected:
            other.enter(mover.selected)
        msgs = self.picked(mover, indexes)
        self.transfer(mover, indexes, move=True)
        uids = uid_set(m.uid for m in msgs)
        other.ok(other.uid("STORE", uids, "+FLAGS", flag_list(flags)))
        told = [parse_fetch(data)[1] for data in other.untagged("FETCH")]
        assert not told, f"session {other.name}: FETCH for moved UIDs {told}"

    def opposite(self, box: str) -> str:
        return self.other if box == self.main else self.main

    def transfer(self, session: Session, indexes: set[int], *, move: bool) -> None:
        """UID COPY or UID MOVE to the mailbox `session` does not have selected."""
        msgs = self.picked(session, indexes)
        source = self.boxes[session.selected]
        dest = self.boxes[self.opposite(source.name)]
        args = (uid_set(m.uid for m in msgs), dest.name)
        # imaplib has COPY, but no MOVE: send UID MOVE as an extension command.
        result = session.xatom("UID", "MOVE", *args) if move else session.uid("COPY", *args)
        session.ok(result)
        [code] = session.untagged("COPYUID")
        pairs = copyuid(code)
        assert [s for s, _ in pairs] == [m.uid for m in msgs], (
            f"COPYUID {code!r} for UIDs {[m.uid for m in msgs]}"
        )
        for src, new in pairs:
            msg = source.by_uid(src)
            dest.assign(new, msg.flags, msg.body)
        if move:
            source.msgs = [m for m in source.msgs if m.uid not in {s for s, _ in pairs}]
            self.check_told(session)  # MOVE reports the expunges before its OK

    @rule(name=who)
    def switch(self, name: str) -> None:
        """SELECT the other mailbox, so messages can move back."""
        session = self.sessions[name]
        session.enter(self.opposite(session.selected))

    @rule(name=who)
    def noop(self, name: str) -> None:
        session = self.sessions[name]
        session.ok(session.noop())

    # -- invariants --

    @invariant()
    def sessions_agree_with_model(self) -> None:
        if not self.sessions:
            return
        for session in self.sessions.values():
            session.ok(session.noop())
            self.check_told(session)
            self.check_view(session)

    def check_view(self, session: Session) -> None:
        """Ask: UID SEARCH ALL, FETCH 1:* (UID FLAGS), STATUS (UIDNEXT MESSAGES)."""
        box = self.boxes[session.selected]
        want = [(seq, m.uid, m.flags) for seq, m in enumerate(box.msgs, 1)]
        session.ok(session.uid("SEARCH", "ALL"))
        [hits] = session.untagged("SEARCH")
        found = [int(u) for u in hits.split()]
        assert found == [m.uid for m in box.msgs], f"session {session.name}: UID SEARCH ALL"
        if box.msgs:
            session.ok(session.fetch("1:*", "(UID FLAGS)"))
            fetched = session.untagged("FETCH")
            got = [parse_fetch(d) for d in fetched]
            assert got == want, f"session {session.name}: FETCH 1:* (UID FLAGS) of {box.name}"
            recent = [RECENT in (fetched_flags(d) or ()) for d in fetched]
            assert recent == self.owned(session, box), f"session {session.name}: \\Recent"
            if session.name == "b":
                self.check_modseqs(session, box)
        other = self.boxes[self.opposite(box.name)]
        session.ok(session.status(other.name, "(RECENT)"))
        [status] = session.untagged("STATUS")
        unclaimed = sum(m.recent is None for m in other.msgs)
        assert status.endswith(b"(RECENT %d)" % unclaimed), f"{other.name}: STATUS {status!r}"
        session.ok(session.status(box.name, "(UIDNEXT MESSAGES)"))
        [status] = session.untagged("STATUS")
        text = status.decode()
        uidnext = int(re.search(r"UIDNEXT (\d+)", text).group(1))  # type: ignore[union-attr]
        count = int(re.search(r"MESSAGES (\d+)", text).group(1))  # type: ignore[union-attr]
        assert uidnext > box.max_uid, f"{box.name}: UIDNEXT {uidnext} <= UID {box.max_uid}"
        assert count == len(box.msgs), f"{box.name}: STATUS MESSAGES {count}"

    def check_modseqs(self, session: Session, box: Box) -> None:
        """CONDSTORE: a MODSEQ rises exactly when the message's flags changed."""
        session.ok(session.fetch("1:*", "(UID MODSEQ)"))
        for data in session.untagged("FETCH"):
            uid = _UID.search(data)
            modseq = _MODSEQ.search(data)
            assert uid is not None and modseq is not None, data
            msg = box.by_uid(int(uid.group(1)))
            value = int(modseq.group(1))
            if msg.modseq is not None:
                assert (value > msg.modseq) == msg.changed and value >= msg.modseq, (
                    f"UID {msg.uid}: MODSEQ {msg.modseq} -> {value}, flags changed: {msg.changed}"
                )
            msg.modseq, msg.changed = value, False

    @invariant()
    def store_agrees_with_model(self) -> None:
        if not self.sessions:
            return
        mailboxes = self.server.store.user(LOGIN)
        for name, box in self.boxes.items():
            stored = mailboxes[name]
            assert list(stored.uids()) == [m.uid for m in box.msgs], f"store {name}: UIDs"
            assert stored.uidnext > box.max_uid, f"store {name}: UIDNEXT {stored.uidnext}"
            for msg in box.msgs:
                kept = stored.get(msg.uid)
                assert kept is not None
                assert (kept.flags, kept.raw) == (msg.flags, msg.body), f"store {name} {msg}"


@pytest.fixture
def machine(imap_server: MailServer) -> Iterator[type[TwoSessions]]:
    TwoSessions.server = imap_server
    yield TwoSessions
    del TwoSessions.server


def test_two_sessions_match_the_model(machine: type[TwoSessions]) -> None:
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
