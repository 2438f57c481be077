"""THREAD (RFC 5256): REFERENCES, REFS and ORDEREDSUBJECT, as Dovecot 2.3 builds them.

REFERENCES follows lib-storage/index/index-thread-links.c and
index-thread-finish.c: messages are linked in UID order by their References
(else In-Reply-To); a link that would make a loop is dropped, a child keeps the
first parent it got, a message's own header overrides the parent others gave
it, and of two messages with one Message-ID the first owns it. Dummy parents
are skipped below the roots; a dummy root with one child is replaced by it.
Roots and children sort by sent date (the arrival date when there is none),
then UID. Roots with the same base subject are then merged as RFC 5256
§2.2 (5) says. REFS (Dovecot's variant, after draft-ietf-morg-inthread) skips
the subject merge and sorts threads by their latest message's date.

A million-message mailbox must thread in a few tens of MiB, so nothing per
message is kept but a number, a date and two 32-bit hashes in arrays. Only
the messages whose Message-ID hash some hit references, and the roots whose
subject hash another root shares, are read a second time, through
``reread(numbers)`` (the hits' messages in that order, None for one that has
gone), to get the exact Message-ID or subject.
"""

from __future__ import annotations

import heapq
import itertools
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from operator import le

from mailharness.servers.imap.message import decode_header_text
from mailharness.servers.imap.ordering import (
    Sorter,
    base_subject,
    date_key,
    head_of,
    header_fields,
    header_of,
    stable_sort,
)
from mailharness.servers.imap.store import StoredMessage

__all__ = ["THREAD_ALGORITHMS", "Hits", "Reread"]

Hits = Iterable[tuple[int, StoredMessage]]
Reread = Callable[["array[int]"], Iterable[StoredMessage | None]]

#: THREAD output is given in pieces of about this many bytes.
PIECE = 1 << 16
#: Bits in each of the two bitmaps that find roots sharing a subject hash (4 MiB each).
_SUBJECT_BITS = 1 << 25
_MSGID = re.compile(rb"<([^>]*)>")
_COMMENT = re.compile(rb"\([^()]*\)")
_WSP = re.compile(rb"[ \t\r\n]+")
_UNUSUAL = re.compile(rb'[ \t\r\n("]')
_FIELDS = (b"date", b"subject", b"message-id", b"references", b"in-reply-to")


def _message_ids(value: bytes | None) -> list[str]:
    """Dovecot's message_id_get_next, in turn: each ``<...@...>``, white space and comments out."""
    if not value:
        return []
    if (
        value[:1] == b"<"
        and value.find(b">") == len(value) - 1
        and b"@" in value
        and _UNUSUAL.search(value) is None
    ):
        return [value[1:-1].decode("latin-1")]  # the usual single <id@host>
    found: list[str] = []
    for match in _MSGID.finditer(value):
        text = match[1]
        if b"@" not in text:
            continue
        if b"(" in text or b'"' in text:
            text = _COMMENT.sub(b"", text).replace(b'"', b"")
        found.append(_WSP.sub(b"", text).decode("latin-1"))
    return found


def _hash(text: str) -> int:
    """A nonzero 32-bit hash (0 stands for "none")."""
    return (hash(text) & 0xFFFFFFFF) or 1


def _subject_of(msg: StoredMessage | None) -> tuple[str, bool] | None:
    """(base subject, reply or forward) when the message has a Subject, as Dovecot gathers."""
    value = None if msg is None else header_of(msg, "subject")
    if value is None:
        return None
    return base_subject(decode_header_text(value))


class _Hits:
    """What the first pass keeps: per hit a number, a date, subject and Message-ID hashes."""

    def __init__(self, hits: Hits) -> None:
        self.numbers = array("I")
        self.dates: array[int] = array("I")  # seconds; "q" when one does not fit
        self.subjects = array("I")
        self.ids = array("I")
        self.refs: dict[int, list[str]] = {}  # hit -> its references, oldest first
        referenced: dict[str, str] = {}  # each referenced Message-ID, kept once
        numbers, subjects, ids = self.numbers, self.subjects, self.ids
        for h, (number, msg) in enumerate(hits):
            fields = header_fields(head_of(msg), _FIELDS)
            numbers.append(number)
            date = date_key(msg, fields.get(b"date", b""))
            try:
                self.dates.append(date)
            except OverflowError:  # before 1970 or after 2106
                self.dates = array("q", self.dates)
                self.dates.append(date)
            subject = fields.get(b"subject")
            base = base_subject(decode_header_text(subject))[0] if subject is not None else ""
            subjects.append(_hash(base) if base else 0)
            own = fields.get(b"message-id")
            own_ids = _message_ids(own) if own else None
            ids.append(_hash(own_ids[0]) if own_ids else 0)
            if b"references" in fields or b"in-reply-to" in fields:
                refs = _message_ids(fields.get(b"references"))
                if not refs:
                    refs = _message_ids(fields.get(b"in-reply-to"))[:1]
                if refs:
                    self.refs[h] = [referenced.setdefault(ref, ref) for ref in refs]
        self.referenced = referenced

    def key(self, h: int) -> tuple[int, int]:
        """Dovecot's order of threads and children: sent date, then UID."""
        return (self.dates[h], h)


def _reread_some(
    reread: Reread, numbers: array[int], wanted: list[int]
) -> list[StoredMessage | None]:
    """The messages of the hits ``wanted`` (ascending)."""
    return list(reread(array("I", (numbers[h] for h in wanted))))


class _Forest:
    """The links of Dovecot's thread cache, over hits (0..n-1) and dummies (n...)."""

    def __init__(self, hits: _Hits, reread: Reread) -> None:
        self.hits = hits
        n = self.n = len(hits.numbers)
        self.parents: dict[int, int] = {}
        self.children: dict[int, list[int]] = {}
        self.dummies = 0
        if not hits.refs:
            return
        # The first hit carrying each referenced Message-ID owns it.
        wanted_hashes = {_hash(ref) for ref in hits.referenced}
        candidates = [h for h, value in enumerate(hits.ids) if value in wanted_hashes]
        owner: dict[str, int] = {}
        for h, msg in zip(candidates, _reread_some(reread, hits.numbers, candidates), strict=True):
            own = [] if msg is None else _message_ids(header_of(msg, "message-id"))
            if own and own[0] in hits.referenced:
                owner.setdefault(own[0], h)
        node: dict[str, int] = dict(owner)
        for ref in hits.referenced:
            if ref not in node:
                node[ref] = n + len(node) - len(owner)
        self.dummies = len(node) - len(owner)
        for h in sorted(set(hits.refs).union(owner.values())):
            refs = hits.refs.get(h)
            parent: int | None = None
            if refs:
                parent = node[refs[0]]
                for ref in refs[1:]:
                    child = node[ref]
                    self._link(parent, child)
                    parent = child
            if self.parents.get(h, parent) != parent:
                del self.parents[h]  # its own references override what others said
            if parent is not None:
                self._link(parent, h)
        # Dovecot's shadow tree: below the roots, dummies are skipped.
        for h, parent in self.parents.items():
            if h >= n:
                continue  # a dummy: never a child below the roots
            while parent >= n and parent in self.parents:
                parent = self.parents[parent]
            self.children.setdefault(parent, []).append(h)

    def _link(self, parent: int, child: int) -> None:
        node: int | None = parent
        while node is not None and node != child:
            node = self.parents.get(node)
        if node == child:
            return  # a loop (or a self-reference): ignored
        if child not in self.parents:
            self.parents[child] = parent
        # else: a conflicting parent exists already; the first one stays

    def sorted_children(self, node: int) -> list[int]:
        kids = self.children.get(node, [])
        return sorted(kids, key=self.hits.key) if len(kids) > 1 else kids

    def dummy_roots(self) -> Iterator[int]:
        n = self.n
        for d in range(n, n + self.dummies):
            if d not in self.parents and d in self.children:
                yield d


class _Root:
    """A root that is not simply a lone hit: a dummy, or one that takes part in a merge."""

    __slots__ = ("dummy", "ignore", "key", "node", "parent", "reply")

    def __init__(self, node: int, dummy: bool) -> None:
        self.node = node
        self.dummy = dummy
        self.ignore = False
        self.reply = False
        self.parent: _Root | None = None
        self.key = (0, 0)


def _settle(forest: _Forest, root: _Root) -> None:
    """Dovecot's sort_root_nodes for one root: a dummy sorts as its oldest child, and a
    dummy with one child is replaced by it (RFC 5256 §2.2 (3), deferred)."""
    if not root.dummy:
        root.key = forest.hits.key(root.node)
        return
    kids = forest.sorted_children(root.node)
    if not kids:
        root.ignore = True
    elif len(kids) == 1:
        root.node, root.dummy = kids[0], False
        root.key = forest.hits.key(root.node)
    else:
        root.key = forest.hits.key(kids[0])


def _plain_roots(forest: _Forest, special: set[int]) -> Sequence[int]:
    """Hits without a parent, not in ``special``, in (date, UID) order."""
    parents, dates = forest.parents, forest.hits.dates
    if not parents and not special:
        if all(map(le, dates, islice(dates, 1, None))):
            return range(forest.n)  # already in date order (arrival order usually is)
        order: Sequence[int] = range(forest.n)
    else:
        order = array("I", (h for h in range(forest.n) if h not in parents and h not in special))
    return stable_sort(order, forest.hits.key)


def _references(forest: _Forest, reread: Reread) -> Iterator[tuple[int, bool]]:
    """REFERENCES roots in order, as (node, dummy)."""
    hits = forest.hits
    specials = [_Root(d, True) for d in forest.dummy_roots()]
    for root in specials:
        _settle(forest, root)
    specials = [r for r in specials if not r.ignore]
    parents = forest.parents
    plain = range(forest.n) if not parents else [h for h in range(forest.n) if h not in parents]
    subjects = hits.subjects
    # (5)(B): only roots whose subject hash another root shares can be merged; two
    # bitmaps of subject hashes find them without a table of every subject.
    seen, twice = bytearray(_SUBJECT_BITS // 8), bytearray(_SUBJECT_BITS // 8)
    for value in itertools.chain(
        map(subjects.__getitem__, plain), (subjects[r.key[1]] for r in specials)
    ):
        if value:
            bit = value % _SUBJECT_BITS
            byte, mask = bit >> 3, 1 << (bit & 7)
            if seen[byte] & mask:
                twice[byte] |= mask
            seen[byte] |= mask
    del seen

    def shared(h: int) -> bool:
        value = subjects[h]
        bit = value % _SUBJECT_BITS
        return bool(value and twice[bit >> 3] & (1 << (bit & 7)))

    # The bitmaps leave a few percent of a million distinct subjects; of those, keep
    # the roots whose whole hash another one shares.
    maybe = [h for h in plain if shared(h)]
    counts = Counter(subjects[h] for h in maybe)
    counts.update(subjects[r.key[1]] for r in specials if shared(r.key[1]))
    candidates: list[_Root] = [r for r in specials if counts[subjects[r.key[1]]] > 1]
    for h in maybe:
        if counts[subjects[h]] > 1:
            root = _Root(h, False)
            root.key = hits.key(h)
            candidates.append(root)
            specials.append(root)
    del maybe, counts
    exclude = {r.node for r in candidates if not r.dummy}
    if candidates:
        candidates.sort(key=lambda r: r.key)
        _gather(forest, candidates, reread, specials)
    specials = sorted((r for r in specials if not r.ignore), key=lambda r: r.key)
    order = _plain_roots(forest, exclude)
    if not specials:
        for h in order:
            yield h, False
        return
    merged = heapq.merge(
        ((hits.key(h), h, False) for h in order),
        ((r.key, r.node, r.dummy) for r in specials),
        key=lambda item: item[0],
    )
    for _, node, dummy in merged:
        yield node, dummy


def _gather(forest: _Forest, roots: list[_Root], reread: Reread, specials: list[_Root]) -> None:
    """RFC 5256 §2.2 (5)(B) and (C) over the roots (in order) that may share a subject,
    as Dovecot's gather_base_subjects and merge_subject_threads."""
    hits = forest.hits
    reps = sorted({r.key[1] for r in roots})
    by_hit = dict(zip(reps, _reread_some(reread, hits.numbers, reps), strict=True))
    table: dict[str, _Root] = {}
    for root in roots:
        subject = _subject_of(by_hit[root.key[1]])
        if subject is None or not subject[0]:
            continue
        text, root.reply = subject
        held = table.get(text)
        if held is None:
            table[text] = root
        elif not held.dummy and (root.dummy or (held.reply and not root.reply)):
            held.parent = root
            table[text] = root
        else:
            root.parent = held
    changed = False
    for root in roots:
        if root.parent is not None and not root.ignore:
            _merge(forest, root, specials)
            changed = True
    if changed:  # root order may have changed: settle them again
        for root in specials:
            if not root.ignore:
                _settle(forest, root)


def _merge(forest: _Forest, cur: _Root, roots: list[_Root]) -> None:
    """RFC 5256 §2.2 (5)(C), Dovecot's mail_thread_root_thread_merge."""
    top = cur.parent
    assert top is not None
    while top.parent is not None:
        top = top.parent
    children = forest.children
    if cur.dummy:
        children.setdefault(top.node, []).extend(children.pop(cur.node, []))
        cur.ignore = True
    elif top.dummy or (cur.reply and not top.reply):
        children.setdefault(top.node, []).append(cur.node)
        cur.ignore = True
    else:
        dummy = _Root(forest.n + forest.dummies, True)  # a node number no one has
        forest.dummies += 1
        children[dummy.node] = [top.node, cur.node]
        top.parent = dummy
        top.ignore = cur.ignore = True
        roots.append(dummy)


def _refs(forest: _Forest) -> Iterator[tuple[int, bool]]:
    """REFS roots in order: by their thread's latest date, then UID (a dummy's is 0)."""
    hits = forest.hits
    latest: dict[int, int] = {}
    for h in forest.parents:
        if h >= forest.n:
            continue
        top = h
        while top in forest.parents:
            top = forest.parents[top]
        date = hits.dates[h]
        if top < forest.n:
            date = max(date, hits.dates[top])
        if latest.get(top, date) <= date:
            latest[top] = date
    special = [
        ((date, node + 1 if node < forest.n else 0, node), node)
        for node, date in latest.items()
        if node >= forest.n or node not in forest.parents
    ]
    special.sort()
    plain = (((hits.dates[h], h + 1, h), h) for h in _plain_roots(forest, set(latest)))
    for _, node in heapq.merge(plain, special, key=lambda item: item[0]):
        yield node, node >= forest.n


def _write(forest: _Forest, roots: Iterator[tuple[int, bool]]) -> Iterator[bytes]:
    """Dovecot's imap_thread_write: ``(n)``, ``(n m k)``, ``(n (m)(k))``; a dummy ``((m)(k))``."""
    numbers = forest.hits.numbers
    out = bytearray()
    # Stack items: a node to write alone in a sibling list, or bytes to append.
    children = forest.children
    for root, dummy in roots:
        if not dummy and root not in children:
            out += b"(%d)" % numbers[root]
            if len(out) >= PIECE:
                yield bytes(out)
                out.clear()
            continue
        out += b"("
        if not dummy:
            out += b"%d" % numbers[root]
        stack: list[int | bytes] = [b")"]
        kids = forest.sorted_children(root)
        if kids:
            if not dummy:
                out += b" "
            stack += _siblings(kids)
        while stack:
            item = stack.pop()
            if isinstance(item, bytes):
                out += item
                continue
            # A lone child: "n" then its own children, without parentheses.
            out += b"%d" % numbers[item]
            kids = forest.sorted_children(item)
            if kids:
                out += b" "
                stack += _siblings(kids)
        if len(out) >= PIECE:
            yield bytes(out)
            out.clear()
    yield bytes(out)


def _siblings(kids: list[int]) -> list[int | bytes]:
    """Stack items (reversed) for a child list: one child bare, several each in parentheses."""
    if len(kids) == 1:
        return [kids[0]]
    items: list[int | bytes] = []
    for kid in reversed(kids):
        items += (b")", kid, b"(")
    return items


def thread_references(hits: Hits, reread: Reread) -> Iterator[bytes]:
    """THREAD=REFERENCES output body, in pieces."""
    forest = _Forest(_Hits(hits), reread)
    return _write(forest, _references(forest, reread))


def thread_refs(hits: Hits, reread: Reread) -> Iterator[bytes]:
    """THREAD=REFS output body, in pieces."""
    forest = _Forest(_Hits(hits), reread)
    return _write(forest, _refs(forest))


def thread_orderedsubject(hits: Hits, reread: Reread) -> Iterator[bytes]:
    """THREAD=ORDEREDSUBJECT, as Dovecot's cmd-thread.c: SORT (SUBJECT DATE), then a thread
    per run of one base subject, threads ordered by their first message's date and number."""
    numbers = array("I")
    sorter = Sorter(["SUBJECT", "DATE"])
    for number, msg in hits:
        numbers.append(number)
        sorter.add(msg)
    order = sorter.order()
    subject = sorter.columns[0].getter()
    dates = sorter.columns[1].values
    starts = array("I")  # positions in `order` where a thread starts
    previous: object = None
    for at, i in enumerate(order):
        key = subject(i)
        if key != previous:
            starts.append(at)
            previous = key
    del sorter.columns[0]
    starts.append(len(order))
    threads = array("I", range(len(starts) - 1))
    first = order.__getitem__

    def thread_key(t: int) -> tuple[int, int]:
        i = first(starts[t])
        return (dates[i], numbers[i])

    out = bytearray()
    for t in stable_sort(threads, thread_key):
        members = [numbers[i] for i in order[starts[t] : starts[t + 1]]]
        if len(members) == 1:
            out += b"(%d)" % members[0]
        elif len(members) == 2:
            out += b"(%d %d)" % (members[0], members[1])
        else:
            out += b"(%d " % members[0] + b"".join(b"(%d)" % m for m in members[1:]) + b")"
        if len(out) >= PIECE:
            yield bytes(out)
            out.clear()
    yield bytes(out)


#: THREAD algorithm name -> body writer, as advertised (THREAD=...).
THREAD_ALGORITHMS: dict[str, Callable[[Hits, Reread], Iterator[bytes]]] = {
    "REFERENCES": thread_references,
    "REFS": thread_refs,
    "ORDEREDSUBJECT": thread_orderedsubject,
}
