"""SEARCH programs: compile the client's keys once, then test each message.

The session parses the command into :data:`Token` values and calls
:func:`compile_search`; the result is applied to every message of the
mailbox. Compiling first means a bad key is reported (as BAD) before any
message is read, and :attr:`SearchProgram.needs_raw` lets the caller skip
loading bodies when only flags, sizes, dates or numbers are asked for, which
matters for mailboxes of a million messages.

>>> prog = compile_search(["UNSEEN", "LARGER", "100"])
>>> prog.needs_raw
False
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_tz
from typing import Protocol

from mailharness.servers.imap.casemap import casemap
from mailharness.servers.imap.header_index import SEPARATOR, IndexTerm
from mailharness.servers.imap.message import address_texts, decoded_headers, text_content
from mailharness.servers.imap.replies import DOVECOT, Replies
from mailharness.servers.imap.sequence import SequenceSet, SequenceSetError

__all__ = [
    "MessageView",
    "SearchError",
    "SearchProgram",
    "Token",
    "compile_search",
    "parse_search_date",
]

Token = str | bytes | list["Token"]
"""Parser output: atoms (and NIL) as ``str``, strings as ``bytes``, lists as lists."""

#: Charsets accepted by CHARSET; anything else is answered ``[BADCHARSET]``.
SUPPORTED_CHARSETS = ("US-ASCII", "UTF-8")

#: A parenthesised program nested deeper than this is refused, so a hostile
#: client cannot exhaust the recursion limit.
MAX_DEPTH = 100

#: Sent dates of messages whose Date: header is missing or unreadable; Dovecot
#: also treats them as the epoch.
_NO_SENT_DATE = date(1970, 1, 1)

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_DATE_RE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})")


class SearchError(ValueError):
    """The client's SEARCH program is wrong; answer BAD (or NO with ``code``).

    ``code`` is a response code such as ``"BADCHARSET"``, or ``None``.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class MessageView(Protocol):
    """What a search needs of a message; ``raw`` is read only when needed."""

    seq: int
    uid: int
    flags: frozenset[str]
    internaldate: datetime
    size: int
    modseq: int

    @property
    def raw(self) -> bytes: ...


class _Context:
    """One message under test, with decoded headers and text computed at most once."""

    __slots__ = ("_addresses", "_headers", "_raw", "_text", "max_seq", "max_uid", "msg")

    def __init__(self, msg: MessageView, max_seq: int, max_uid: int) -> None:
        self.msg = msg
        self.max_seq = max_seq
        self.max_uid = max_uid
        self._raw: bytes | None = None
        self._headers: list[tuple[str, str]] | None = None
        self._text: str | None = None
        self._addresses: dict[str, list[str]] = {}

    @property
    def raw(self) -> bytes:
        """The message, read once however many keys look at it (a synthetic one renders)."""
        if self._raw is None:
            self._raw = self.msg.raw
        return self._raw

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            self._headers = [(n, casemap(v)) for n, v in decoded_headers(self.raw)]
        return self._headers

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = casemap(text_content(self.raw))
        return self._text

    def addresses(self, name: str) -> list[str]:
        """Each field ``name``'s address list as Dovecot searches it, casemapped."""
        found = self._addresses.get(name)
        if found is None:
            found = self._addresses[name] = [casemap(t) for t in address_texts(self.raw, name)]
        return found


_Test = Callable[[_Context], bool]


@dataclass(frozen=True, slots=True)
class _Node:
    test: _Test
    needs_raw: bool
    #: The test is true of every message (``ALL``, ``(ALL ALL)``).
    everything: bool = False
    #: ``test`` is: every one of ``terms`` holds (the header index answers those), and
    #: ``rest`` (None: nothing more) is true. Without terms, ``rest`` is ``test``.
    terms: tuple[IndexTerm, ...] = ()
    rest: _Test | None = None


def _leaf(test: _Test, needs_raw: bool) -> _Node:
    return _Node(test, needs_raw, rest=test)


def _indexed(test: _Test, term: IndexTerm) -> _Node:
    if SEPARATOR in term.needle:  # it could match across two fields' texts
        return _leaf(test, True)
    return _Node(test, True, terms=(term,))


class SearchProgram:
    """A compiled SEARCH; immutable, so one program may be shared between threads."""

    __slots__ = ("_rest", "_test", "matches_everything", "needs_raw", "terms")

    def __init__(self, node: _Node) -> None:
        self._test = node.test
        self._rest = node.rest
        #: False when only flags, numbers, sizes and internal dates are tested.
        self.needs_raw = node.needs_raw
        #: True when every message matches (``SEARCH ALL``): callers may skip reading them.
        self.matches_everything = node.everything
        #: Header keys ANDed into the program that `header_index` can answer for the whole
        #: mailbox; then `matches_rest` is the rest of the program.
        self.terms = node.terms

    def matches(self, msg: MessageView, *, max_seq: int, max_uid: int) -> bool:
        """Whether ``msg`` matches; ``max_seq``/``max_uid`` give the value of ``*``."""
        return self._test(_Context(msg, max_seq, max_uid))

    def matches_rest(self, msg: MessageView, *, max_seq: int, max_uid: int) -> bool:
        """Whether ``msg``, known to satisfy every one of `terms`, matches the program."""
        return self._rest is None or self._rest(_Context(msg, max_seq, max_uid))


# --------------------------------------------------------------------------- arguments


def _as_text(token: Token, key: str, charset: str, replies: Replies) -> str:
    if isinstance(token, list):
        raise SearchError(replies.search_expected_string.format(key=key))
    if isinstance(token, str):
        return token
    return token.decode("utf-8" if charset == "UTF-8" else "ascii", errors="replace")


def _as_atom(token: Token, key: str, what: str, replies: Replies) -> str:
    if isinstance(token, list):
        raise SearchError(replies.search_expected_atom.format(key=key, what=what))
    return token if isinstance(token, str) else token.decode("ascii", errors="replace")


def _as_number(token: Token, key: str, replies: Replies) -> int:
    text = _as_atom(token, key, "a number", replies)
    if not (text.isascii() and text.isdigit()):
        raise SearchError(replies.search_expected_number.format(key=key, text=text))
    return int(text)


def parse_search_date(text: str) -> date:
    """Parse a SEARCH ``date`` such as ``1-Feb-1994`` (RFC 3501 §9)."""
    m = _DATE_RE.fullmatch(text)
    month = _MONTHS.get(m.group(2).lower()) if m else None
    if m is None or month is None:
        raise ValueError(f"invalid date {text!r}: expected d-Mon-yyyy, e.g. '1-Feb-1994'")
    try:
        return date(int(m.group(3)), month, int(m.group(1)))
    except ValueError as exc:
        raise ValueError(f"invalid date {text!r}: {exc}") from exc


def _as_date(token: Token, key: str, replies: Replies) -> date:
    text = _as_atom(token, key, "a date", replies)
    try:
        return parse_search_date(text)
    except ValueError as exc:
        raise SearchError(replies.search_bad_argument.format(key=key, reason=exc)) from exc


# --------------------------------------------------------------------------- tests


def _has_flag(flag: str) -> _Test:
    lowered = flag.lower()

    def test(ctx: _Context) -> bool:
        flags = ctx.msg.flags
        return flag in flags or any(f.lower() == lowered for f in flags)

    return test


def _not(test: _Test) -> _Test:
    return lambda ctx: not test(ctx)


def _header_contains(name: str, needle: str) -> _Test:
    name = name.lower()
    needle = casemap(needle)

    def test(ctx: _Context) -> bool:
        return any(n == name and needle in v for n, v in ctx.headers)

    return test


def _address_contains(name: str, needle: str) -> _Test:
    """FROM/TO/CC/BCC as Dovecot: against the parsed and rewritten address list, so comments
    and groups match as Dovecot matches them (``a (c)@ (c) b.org`` is ``<a@b.org>``)."""
    needle = casemap(needle)

    def test(ctx: _Context) -> bool:
        return any(needle in text for text in ctx.addresses(name))

    return test


def _sent_date(ctx: _Context) -> date:
    value = next((v for n, v in ctx.headers if n == "date"), None)
    parsed = parsedate_tz(value) if value else None
    if parsed is None:
        return _NO_SENT_DATE
    try:
        return date(parsed[0], parsed[1], parsed[2])
    except ValueError:
        return _NO_SENT_DATE


def _internal_date(ctx: _Context) -> date:
    # The date in the message's own zone, as Dovecot compares it.
    return ctx.msg.internaldate.date()


def _date_test(get: Callable[[_Context], date], op: str, when: date) -> _Test:
    if op == "BEFORE":
        return lambda ctx: get(ctx) < when
    if op == "ON":
        return lambda ctx: get(ctx) == when
    return lambda ctx: get(ctx) >= when


_FLAG_KEYS = {
    "ANSWERED": "\\Answered",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "FLAGGED": "\\Flagged",
    "SEEN": "\\Seen",
    "RECENT": "\\Recent",
}
_HEADER_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TO": "to"}
_DATE_KEYS = {
    "BEFORE": ("BEFORE", False),
    "ON": ("ON", False),
    "SINCE": ("SINCE", False),
    "SENTBEFORE": ("BEFORE", True),
    "SENTON": ("ON", True),
    "SENTSINCE": ("SINCE", True),
}


_SAVED_DATE_KEYS = {"SAVEDBEFORE": "BEFORE", "SAVEDON": "ON", "SAVEDSINCE": "SINCE"}


def _saved_date(ctx: _Context) -> date:
    # RFC 8514; a message without a save date (synthetic) uses its internal date.
    msg = ctx.msg
    when: datetime = getattr(msg, "savedate", None) or msg.internaldate
    return when.date()


def _within(older: bool, seconds: int) -> _Test:
    """RFC 5032 OLDER/YOUNGER: internal date against the time the SEARCH runs."""
    limit = datetime.now(UTC).timestamp() - seconds
    if older:
        return lambda ctx: ctx.msg.internaldate.timestamp() <= limit
    return lambda ctx: ctx.msg.internaldate.timestamp() > limit


class _Compiler:
    """Recursive-descent reader of the key list (RFC 3501 §6.4.4, RFC 7162 MODSEQ)."""

    def __init__(
        self,
        tokens: Sequence[Token],
        charset: str,
        saved: frozenset[int] = frozenset(),
        replies: Replies = DOVECOT,
    ) -> None:
        self.replies = replies
        self.tokens = tokens
        self.pos = 0
        self.charset = charset
        self.saved = saved

    def take(self, key: str) -> Token:
        if self.pos >= len(self.tokens):
            raise SearchError(self.replies.search_missing_argument.format(key=key))
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def program(self, depth: int) -> _Node:
        nodes: list[_Node] = []
        while self.pos < len(self.tokens):
            nodes.append(self.key(depth))
        return _all_of(nodes)

    def key(self, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise SearchError(self.replies.search_too_deep.format(depth=MAX_DEPTH))
        token = self.take("program")
        if isinstance(token, list):
            if not token:
                raise SearchError(self.replies.search_empty_list)
            return _Compiler(token, self.charset, self.saved, self.replies).program(depth + 1)
        word = token if isinstance(token, str) else token.decode("ascii", "replace")
        name = word.upper()
        if name in _FLAG_KEYS:
            return _leaf(_has_flag(_FLAG_KEYS[name]), False)
        if name.startswith("UN") and name[2:] in _FLAG_KEYS and name != "UNRECENT":
            return _leaf(_not(_has_flag(_FLAG_KEYS[name[2:]])), False)
        if name == "ALL":
            return _Node(lambda ctx: True, False, everything=True)
        if name == "NEW":
            recent, seen = _has_flag("\\Recent"), _has_flag("\\Seen")
            return _leaf(lambda ctx: recent(ctx) and not seen(ctx), False)
        if name == "OLD":
            return _leaf(_not(_has_flag("\\Recent")), False)
        if name in ("KEYWORD", "UNKEYWORD"):
            flag = _as_atom(self.take(name), name, "a flag", self.replies)
            test = _has_flag(flag)
            return _leaf(test if name == "KEYWORD" else _not(test), False)
        if name in _HEADER_KEYS:
            needle = _as_text(self.take(name), name, self.charset, self.replies)
            field = _HEADER_KEYS[name]
            if name != "SUBJECT" and needle:
                term = IndexTerm("address", field, casemap(needle))
                return _indexed(_address_contains(field, needle), term)
            term = IndexTerm("text", field, casemap(needle))
            return _indexed(_header_contains(field, needle), term)
        if name == "HEADER":
            field = _as_text(self.take(name), name, self.charset, self.replies)
            needle = _as_text(self.take(name), name, self.charset, self.replies)
            term = IndexTerm("text", field.lower(), casemap(needle))
            return _indexed(_header_contains(field, needle), term)
        if name == "BODY":
            needle = casemap(_as_text(self.take(name), name, self.charset, self.replies))
            return _leaf(lambda ctx: needle in ctx.text, True)
        if name == "TEXT":
            needle = casemap(_as_text(self.take(name), name, self.charset, self.replies))
            return _leaf(
                lambda ctx: needle in ctx.text or any(needle in v for _, v in ctx.headers), True
            )
        if name in _DATE_KEYS:
            op, sent = _DATE_KEYS[name]
            when = _as_date(self.take(name), name, self.replies)
            return _leaf(_date_test(_sent_date if sent else _internal_date, op, when), sent)
        if name == "LARGER":
            n = _as_number(self.take(name), name, self.replies)
            return _leaf(lambda ctx: ctx.msg.size > n, False)
        if name == "SMALLER":
            n = _as_number(self.take(name), name, self.replies)
            return _leaf(lambda ctx: ctx.msg.size < n, False)
        if name == "UID":
            uids = self.sequence(_as_atom(self.take(name), name, "a UID set", self.replies), name)
            return _leaf(lambda ctx: uids.contains(ctx.msg.uid, ctx.max_uid), False)
        if name == "MODSEQ":
            return self.modseq()
        if name == "$":  # RFC 5182: the saved result (UIDs)
            saved = self.saved
            return _leaf(lambda ctx: ctx.msg.uid in saved, False)
        if name in ("OLDER", "YOUNGER"):
            seconds = _as_number(self.take(name), name, self.replies)
            return _leaf(_within(name == "OLDER", seconds), False)
        if name in _SAVED_DATE_KEYS:
            when = _as_date(self.take(name), name, self.replies)
            return _leaf(_date_test(_saved_date, _SAVED_DATE_KEYS[name], when), False)
        if name == "SAVEDATESUPPORTED":
            return _leaf(lambda ctx: True, False)
        if name == "NOT":
            inner = self.key(depth + 1)
            return _leaf(_not(inner.test), inner.needs_raw)
        if name == "OR":
            left, right = self.key(depth + 1), self.key(depth + 1)
            lt, rt = left.test, right.test
            return _leaf(lambda ctx: lt(ctx) or rt(ctx), left.needs_raw or right.needs_raw)
        if word[:1].isdigit() or word[:1] == "*":
            seqs = self.sequence(word, "sequence set")
            return _leaf(lambda ctx: seqs.contains(ctx.msg.seq, ctx.max_seq), False)
        raise SearchError(self.replies.search_unknown_key.format(key=word))

    def sequence(self, text: str, key: str) -> SequenceSet:
        try:
            return SequenceSet.parse(text)
        except SequenceSetError as exc:
            raise SearchError(self.replies.search_bad_argument.format(key=key, reason=exc)) from exc

    def modseq(self) -> _Node:
        # MODSEQ [entry-name entry-type-req] mod-sequence-valzer (RFC 7162 §3.1.5);
        # the per-flag entry is accepted and ignored: one modseq per message.
        first = self.take("MODSEQ")
        if isinstance(first, bytes):
            self.take("MODSEQ")  # entry type: "priv" / "shared" / "all"
            first = self.take("MODSEQ")
        n = _as_number(first, "MODSEQ", self.replies)
        return _leaf(lambda ctx: ctx.msg.modseq >= n, False)


def _all_of(nodes: list[_Node]) -> _Node:
    if len(nodes) == 1:
        return nodes[0]
    tests = tuple(n.test for n in nodes)
    rests = tuple(n.rest for n in nodes if n.rest is not None)
    rest: _Test | None = None
    if len(rests) == 1:
        rest = rests[0]
    elif rests:
        rest = lambda ctx: all(t(ctx) for t in rests)  # noqa: E731
    return _Node(
        lambda ctx: all(t(ctx) for t in tests),
        any(n.needs_raw for n in nodes),
        everything=all(n.everything for n in nodes),
        terms=tuple(term for n in nodes for term in n.terms),
        rest=rest,
    )


def compile_search(
    tokens: Sequence[Token],
    charset: str = "US-ASCII",
    *,
    saved: Iterable[int] = (),
    replies: Replies = DOVECOT,
) -> SearchProgram:
    """Compile SEARCH keys; raise :class:`SearchError` for any mistake.

    A leading ``CHARSET name`` in ``tokens`` is honoured too, so callers may
    pass the command's arguments as they came.
    """
    if tokens and isinstance(tokens[0], str) and tokens[0].upper() == "CHARSET":
        if len(tokens) < 2 or isinstance(tokens[1], list):
            raise SearchError(replies.search_missing_charset)
        charset = _as_atom(tokens[1], "CHARSET", "a charset", replies)
        tokens = tokens[2:]
    normalized = charset.upper()
    if normalized not in SUPPORTED_CHARSETS:
        bad = replies.search_bad_charset
        supported = ", ".join(SUPPORTED_CHARSETS)
        raise SearchError(bad.text.format(charset=charset, supported=supported), code=bad.code)
    if not tokens:
        raise SearchError(replies.search_no_keys)
    return SearchProgram(_Compiler(tokens, normalized, frozenset(saved), replies).program(0))
