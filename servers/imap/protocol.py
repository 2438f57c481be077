"""Sans-IO IMAP server protocol core: bytes in, parsed events out.

Nothing here touches a socket, a clock or a thread, the way h11 does HTTP:
the asyncio shell feeds received bytes with :meth:`IMAPConnection.receive_data`
and calls :meth:`IMAPConnection.next_event` until it says :data:`NEED_DATA`.
That keeps the parser fuzzable and lets faults be injected mid-command.

>>> conn = IMAPConnection()
>>> conn.receive_data(b'a1 LOGIN {5}\\r\\n')
>>> conn.next_event()
ContinuationRequest(tag='a1', size=5, command='LOGIN')
>>> conn.receive_data(b'alice "pw"\\r\\n')
>>> conn.next_event()
Command(tag='a1', name='LOGIN', args=(b'alice', b'pw'), uid=False, transcript='a1 LOGIN {5} "pw"')

Tokens follow the contract shared with the SEARCH compiler: atoms (and NIL)
are ``str``, quoted strings and literals are ``bytes``, parenthesised lists
are Python lists. An atom may carry a bracketed part with spaces, so a fetch
attribute such as ``BODY[HEADER.FIELDS (DATE FROM)]<0.100>`` is one token.
"""

from __future__ import annotations

import enum
import re
from typing import cast

from mailharness.servers.imap.replies import DOVECOT, Replies
from mailharness.servers.records import lazy_dataclass

__all__ = [
    "MAX_APPEND_BYTES",
    "MAX_LINE_BYTES",
    "MAX_LITERAL_BYTES",
    "MAX_LOGIN_COMMAND_BYTES",
    "MAX_NUMBER_DIGITS",
    "MAX_TAG_BYTES",
    "NEED_DATA",
    "BadInput",
    "ClientLine",
    "Command",
    "ContinuationRequest",
    "Event",
    "IMAPConnection",
    "InputMode",
    "Literal8",
    "NeedData",
    "Token",
    "tokenize",
]

Token = str | bytes | list["Token"]

#: Dovecot's ``imap_max_line_length`` default (64 KiB): long enough for a
#: UID set of thousands of ranges, short enough that a client sending no CRLF
#: cannot make us buffer without end.
MAX_LINE_BYTES = 64 * 1024
#: Largest literal accepted (APPEND of a big message). 64 MiB covers any real
#: mail (providers cap at 25-50 MB) while refusing a hostile ``{99999999999}``.
MAX_LITERAL_BYTES = 64 * 1024 * 1024
#: All APPEND message literals of one command together (MULTIAPPEND, RFC 3502).
#: Dovecot streams each message to disk and needs no such cap; we hold a command's
#: literals in memory until it is complete, so this bounds that memory.
MAX_APPEND_BYTES = 2 * MAX_LITERAL_BYTES
#: Dovecot's ``IMAP_LOGIN_MAX_LINE_LENGTH`` (imap-login): before login the whole
#: command, literals included, must fit in 8 KiB. Past it Dovecot says
#: ``* BYE Literal size too large`` (a literal) or ``* BYE Input buffer full,
#: aborting`` (a line) and closes; so do we. (Dovecot's login input buffer is
#: ~1 KiB for other lines; we allow 8 KiB for every line so SASL-IR tokens fit.)
MAX_LOGIN_COMMAND_BYTES = 8192
#: Dovecot's ``IMAP_TAG_MAX_LEN`` (imap-login): a longer tag before login is
#: answered ``* BAD Error in IMAP command received by server.`` and never echoed.
#: After login Dovecot's only bound is the line length; we never echo a guessed
#: tag longer than this in an error reply either.
MAX_TAG_BYTES = 126
#: Longest digit run in an atom. Python's ``int()`` refuses more than 4,300
#: digits (``sys.int_info.default_max_str_digits``); Dovecot answers such numbers
#: BAD (they overflow its 32/64-bit parsers), so the command is refused here
#: before any handler tries to parse it.
MAX_NUMBER_DIGITS = 4300
#: Literals shown in the transcript are summarised, never dumped.
#: ``~{n}`` is RFC 3516's literal8 (APPEND of binary data); it is read like a literal.
_LITERAL_RE = re.compile(rb"~?\{(\d{1,20})(\+?)\}\r?$")
_LITERAL_ENDS = (b"}", b"}\r")
#: A tag is printable ASCII without space or any of ``(){%*"\+]``: ``! # $ & '``,
#: ``,`` to ``[`` (digits, letters...), ``^`` to ``z``, ``| } ~``.
_TAG_RE = re.compile(r"[!#$&',-\[^-z|}~]+")
_TAG_RE_BYTES = re.compile(_TAG_RE.pattern.encode("ascii"))


class Literal8(bytes):
    """A literal sent as RFC 3516 ``~{n}``: binary data (APPEND converts its binary parts)."""


class NeedData(enum.Enum):
    """The one value of :data:`NEED_DATA`: feed more bytes before asking again."""

    NEED_DATA = "need-data"


NEED_DATA = NeedData.NEED_DATA


class InputMode(enum.Enum):
    """What the next line from the client is: a command, or a bare line.

    AUTHENTICATE responses and IDLE's ``DONE`` are bare lines, not commands;
    the session switches the mode while it waits for one.
    """

    COMMAND = "command"
    LINE = "line"


# Module names for the members next_event compares against (an Enum class lookup costs more).
_COMMAND = InputMode.COMMAND
_LINE = InputMode.LINE


@lazy_dataclass(frozen=True, slots=True)
class Command:
    """One complete client command with its literals already in place."""

    tag: str
    name: str
    args: tuple[Token, ...]
    uid: bool = False
    #: The command as the transcript shows it: literals are ``{n}`` only.
    transcript: str = ""

    def __post_init__(self) -> None:
        if not self.tag or not self.name:
            raise ValueError("Command needs a tag and a name")


@lazy_dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """A synchronizing literal ``{n}`` arrived: send ``+`` before the client goes on."""

    tag: str
    size: int
    #: The command word so far (``APPEND``), so the session may refuse early.
    command: str | None = None


@lazy_dataclass(frozen=True, slots=True)
class ClientLine:
    """A bare line read in :attr:`InputMode.LINE` (SASL response, IDLE's DONE)."""

    text: bytes


@lazy_dataclass(frozen=True, slots=True)
class BadInput:
    """The peer broke the protocol; answer ``BAD`` (tag or ``*``) and go on.

    ``fatal`` means the stream cannot be resynchronised (a LITERAL+ too big
    to skip safely): the session must send ``BYE`` and close. ``bye`` is the
    text of that ``BYE`` when it is Dovecot's limit wording rather than the
    session's default.
    """

    tag: str | None
    command: str | None
    reason: str
    fatal: bool = False
    bye: str | None = None


Event = Command | ContinuationRequest | ClientLine | BadInput | NeedData


class ParseError(ValueError):
    """A command line could not be tokenised; the message is the reply text."""


class IMAPConnection:
    """Framing and tokenising of client input for one connection.

    Limits, as Dovecot applies them: before login (``prelogin``, the shell
    clears it once the session is authenticated) a whole command, literals
    included, is at most ``max_login_command`` bytes. After login a command's
    lines and literals together are at most ``max_line`` (Dovecot's
    ``imap_max_line_length``), except APPEND's messages, each at most
    ``max_literal`` and all of one command at most ``max_append``.
    """

    def __init__(
        self,
        *,
        max_line: int = MAX_LINE_BYTES,
        max_literal: int = MAX_LITERAL_BYTES,
        max_append: int = MAX_APPEND_BYTES,
        max_login_command: int = MAX_LOGIN_COMMAND_BYTES,
        max_tag: int = MAX_TAG_BYTES,
        prelogin: bool = False,
        replies: Replies = DOVECOT,
    ) -> None:
        self.replies = replies  # the texts of BAD and BYE reasons
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_append = max_append
        self.max_login_command = max_login_command
        self.max_tag = max_tag
        self.prelogin = prelogin
        self._append_total = 0
        self.mode = InputMode.COMMAND
        self._buf = bytearray()
        self._scan_from = 0
        self._texts: list[bytes] = []
        self._literals: list[bytes] = []
        self._literal_size: int | None = None
        self._literal_sync = False
        self._literal8 = False
        self._continuation_sent = False
        self._pending_length = 0
        self._discard_line = False

    # -- input ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events (for back-pressure)."""
        return len(self._buf)

    def simple_command(self, data: bytes) -> Command | None:
        """`data` as its Command if it is one whole LOGIN or LOGOUT line, nothing
        waits in the buffer, and the framing loop would make the very same Command
        of it (within every limit); else None, and `data` goes to `receive_data`.

        Most connections of a load test only log in and out: one match replaces the
        framing, the tokenizer and the checks (issue 13). tests/imap/test_at_once.py
        holds its Commands to the loop's.
        """
        if (
            self._buf
            or self._texts
            or self._discard_line
            or self._literal_size is not None
            or self.mode is not _COMMAND
            or len(data) > _SIMPLE_MAX
            or len(data) > self.max_login_command
            or len(data) > self.max_line
        ):
            return None
        match = _SIMPLE_COMMAND.fullmatch(data)
        if match is None:
            return None
        tag, user_atom, user_quoted, secret_atom, secret_quoted, logout = match.groups()
        if len(tag) > self.max_tag:
            return None
        text = data[:-2].decode("ascii")
        if logout is not None:
            return Command(tag=tag.decode("ascii"), name="LOGOUT", args=(), transcript=text)
        # An atom is text, a quoted string its bytes, as the tokenizer gives them.
        user: Token = user_quoted if user_atom is None else user_atom.decode("ascii")
        secret: Token = secret_quoted if secret_atom is None else secret_atom.decode("ascii")
        return Command(tag=tag.decode("ascii"), name="LOGIN", args=(user, secret), transcript=text)

    def expect_line(self) -> None:
        """Read the next line raw (AUTHENTICATE continuation, IDLE's DONE)."""
        self.mode = InputMode.LINE

    def next_event(self) -> Event:
        buf = self._buf
        while True:
            if self._discard_line:
                idx = buf.find(b"\n")
                if idx < 0:
                    buf.clear()
                    return NEED_DATA
                del buf[: idx + 1]
                self._discard_line = False
                continue
            if self._literal_size is not None:
                size = self._literal_size
                if len(buf) < size:
                    if self._literal_sync and not self._continuation_sent:
                        self._continuation_sent = True
                        return ContinuationRequest(
                            self._pending_tag() or "*", size, self._pending_command()
                        )
                    return NEED_DATA
                literal = bytes(buf[:size])
                self._literals.append(Literal8(literal) if self._literal8 else literal)
                del buf[:size]
                self._literal_size = None
                continue
            idx = buf.find(b"\n", self._scan_from)
            if self.prelogin and self.mode is _COMMAND:
                pending = self._pending_length + (idx if idx >= 0 else len(buf))
                # _login_limit() is never below max_login_command: ask it only past that.
                if pending > self.max_login_command and pending > self._login_limit():
                    return self._fatal(self.replies.bye_input_buffer_full)
            if idx < 0:
                if len(buf) > self.max_line:
                    first = self._texts[0] if self._texts else bytes(buf)
                    tag = _guess_tag(first, self.max_tag)
                    buf.clear()
                    self._reset_command()
                    self._discard_line = True
                    self.mode = InputMode.COMMAND
                    return BadInput(tag, None, self.replies.too_long_argument)
                self._scan_from = len(buf)
                return NEED_DATA
            line = bytes(buf[: idx - 1 if idx and buf[idx - 1] == 13 else idx])  # less "\r"
            del buf[: idx + 1]
            self._scan_from = 0
            if self.mode is _LINE:
                self.mode = InputMode.COMMAND
                if len(line) > self.max_line:
                    return BadInput(None, None, self.replies.too_long_argument)
                return ClientLine(line)
            self._pending_length += len(line)
            if self._pending_length > self.max_line and not self.prelogin:
                tag = self._pending_tag() if self._texts else _guess_tag(line, self.max_tag)
                self._reset_command()
                return BadInput(tag, None, self.replies.too_long_argument)
            # Only a line ending in "}" or "}\r" can end in a literal: skip the search.
            match = _LITERAL_RE.search(line) if line.endswith(_LITERAL_ENDS) else None
            if match is not None:
                size = int(match.group(1))
                sync = not match.group(2)
                self._texts.append(line[: match.start()])
                if self.prelogin or self._pending_command() != "APPEND":
                    # Dovecot counts these literals into the command's length and
                    # says BYE when one would overflow it, synchronizing or not.
                    limit = self._login_limit() if self.prelogin else self.max_line
                    if self._pending_length + size > limit:
                        return self._fatal(self.replies.bye_literal_size_too_large)
                    self._pending_length += size
                elif size > self.max_literal or self._append_total + size > self.max_append:
                    tag = self._pending_tag()
                    self._reset_command()
                    if sync:
                        # The client waits for "+", so nothing of it follows.
                        return BadInput(tag, None, self.replies.literal_too_large)
                    return BadInput(tag, None, self.replies.literal_too_large, fatal=True)
                else:
                    self._append_total += size
                self._literal_size = size
                self._literal_sync = sync
                self._literal8 = line.startswith(b"~", match.start())
                self._continuation_sent = False
                continue
            if self._texts:
                self._texts.append(line)
                texts, literals = self._texts, self._literals
                self._reset_command()
            elif not line.strip():
                continue  # stray empty line: Dovecot ignores it too
            else:
                # A one-line command: no literal was read, so of _reset_command()'s
                # work only the length is left to clear.
                texts, literals = [line], []
                self._pending_length = 0
            built = _build_command(texts, literals, self.replies)
            # A Command's tag passed _valid_tag: ASCII, so its length is its byte count.
            if self.prelogin and isinstance(built, Command) and len(built.tag) > self.max_tag:
                return BadInput(None, None, self.replies.bad_untagged)
            return built

    def _login_limit(self) -> int:
        """Before login: ``max_login_command``, but ID gets the line limit of later.

        Dovecot's imap-login parses ID one element at a time (imaptest's ``id``
        group sends 31 KB before login); we hold the command, so it gets the
        64 KiB of ``max_line`` instead of no limit at all.
        """
        first = self._texts[0] if self._texts else bytes(self._buf[:64])
        words = first.split(b" ", 2)
        if len(words) > 1 and words[1].upper() == b"ID":
            return max(self.max_line, self.max_login_command)
        return self.max_login_command

    def _fatal(self, bye: str) -> BadInput:
        """A limit Dovecot answers with BYE: forget everything, the shell closes."""
        tag = self._pending_tag()
        self._buf.clear()
        self._scan_from = 0
        self._reset_command()
        return BadInput(tag, None, bye, fatal=True, bye=bye)

    def reject_literal(self) -> None:
        """Forget the command whose synchronizing literal the session refused.

        The client sends nothing more of it: it waits for ``+`` and got a
        tagged reply instead (RFC 3501 §7.5).
        """
        self._reset_command()

    def _pending_command(self) -> str | None:
        words = self._texts[0].split(b" ", 3) if self._texts else []
        if len(words) > 2 and words[1].upper() == b"UID":
            return words[2].decode("ascii", "replace").upper()
        return words[1].decode("ascii", "replace").upper() if len(words) > 1 else None

    def _pending_tag(self) -> str | None:
        return _guess_tag(self._texts[0], self.max_tag) if self._texts else None

    def _reset_command(self) -> None:
        self._texts = []
        self._literals = []
        self._literal_size = None
        self._pending_length = 0
        self._append_total = 0


def _guess_tag(line: bytes, max_tag: int = MAX_TAG_BYTES) -> str | None:
    """The tag of a line we refuse, if it is one we may echo (short and valid)."""
    word = line[: max_tag + 1].split(b" ", 1)[0]
    if len(word) > max_tag:
        return None
    text = word.decode("utf-8", "replace")
    return text if _valid_tag(text) else None


def _valid_tag(tag: str) -> bool:
    return _TAG_RE.fullmatch(tag) is not None


def _build_command(
    texts: list[bytes], literals: list[bytes], replies: Replies
) -> Command | BadInput:
    first = texts[0]
    if len(texts) == 1 and not literals:  # most commands: one line, no literal
        transcript = first.decode("utf-8", "backslashreplace").strip()
    else:
        transcript = " ".join(
            part
            for i, text in enumerate(texts)
            for part in (
                text.decode("utf-8", "backslashreplace").strip(),
                f"{{{len(literals[i])}}}" if i < len(literals) else "",
            )
            if part
        )
    # A valid tag is ASCII, so checking the bytes is checking the decoded text.
    tag_bytes = first.partition(b" ")[0]
    if _TAG_RE_BYTES.fullmatch(tag_bytes) is None:
        return BadInput(None, None, replies.bad_untagged)
    tag = tag_bytes.decode("ascii")
    try:
        tokens = tokenize(texts, literals, replies)
    except ParseError as exc:
        head = first.split(b" ", 2)
        name = head[1].decode("ascii", "replace").upper() if len(head) > 1 else None
        return BadInput(tag, name, str(exc))
    if len(tokens) < 2 or not isinstance(tokens[1], str):
        return BadInput(tag, None, replies.bad_untagged)
    name = tokens[1].upper()
    args = tokens[2:]
    uid = False
    if name == "UID":
        if not args or not isinstance(args[0], str):
            return BadInput(tag, "UID", replies.missing_arguments)
        uid = True
        name = args[0].upper()
        args = args[1:]
    if not (name.isascii() and name.isprintable()):  # found by fuzzing: b"t0 \x80"
        return BadInput(tag, None, replies.bad_untagged)
    # An atom is no longer than the text it came from (literals are bytes, never atoms).
    if (len(texts) > 1 or len(first) > MAX_NUMBER_DIGITS) and _has_huge_number(args):
        reason = _huge_number_reason(name, uid, replies)
        return BadInput(tag, f"UID {name}" if uid else name, reason)
    return Command(tag=tag, name=name, args=tuple(args), uid=uid, transcript=transcript)


_HUGE_NUMBER = re.compile(rf"\d{{{MAX_NUMBER_DIGITS + 1}}}")
_SEQUENCE_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "EXPUNGE"})


def _has_huge_number(tokens: list[Token]) -> bool:
    """Does an atom hold a number longer than Python (or Dovecot) can parse?"""
    for token in tokens:
        if isinstance(token, list):
            if _has_huge_number(token):
                return True
        elif (
            isinstance(token, str) and len(token) > MAX_NUMBER_DIGITS and _HUGE_NUMBER.search(token)
        ):
            return True
    return False


def _huge_number_reason(name: str, uid: bool, replies: Replies) -> str:
    """Dovecot's text for the common case; its others (``Invalid search size
    parameter``, ``Invalid MODSEQ value``...) depend on which argument it was."""
    if name in _SEQUENCE_COMMANDS:
        return replies.invalid_uidset if uid else replies.invalid_messageset
    return replies.invalid_arguments


_ATOM_STOP = frozenset(' ()"{')

# `IMAPConnection.simple_command`'s lines: ``tag LOGIN user secret`` and ``tag LOGOUT``,
# CRLF-ended. Its atoms leave out every character the tokenizer treats specially
# (``% * \ } [ ]`` too) and its quoted strings are printable ASCII without ``"`` or
# ``\``: a subset of what `tokenize` reads the same way.
_SIMPLE_ATOM = rb"([!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]+)"
_SIMPLE_QUOTED = rb'"([ !#-\[\]-~]*)"'
_SIMPLE_ARG = rb"(?:" + _SIMPLE_ATOM + rb"|" + _SIMPLE_QUOTED + rb")"
_SIMPLE_COMMAND = re.compile(
    rb"(" + _TAG_RE_BYTES.pattern + rb") "
    rb"(?:(?i:LOGIN) " + _SIMPLE_ARG + rb" " + _SIMPLE_ARG + rb"|((?i:LOGOUT)))\r\n"
)
#: Longer lines take the loop (no huge-number check needed below this).
_SIMPLE_MAX = 1024

# The fast path of `tokenize`: most commands (``a LOGIN alice "pass word"``,
# ``b SELECT INBOX``, ``c UID FETCH 1:* FLAGS``) are spaces, plain atoms and quoted
# strings without escapes, which two C-level regex passes split exactly as the
# character loop of `_tokenize_slow` does. A plain atom character is anything but a
# space, a control character, DEL, a parenthesis, a quote, ``{`` or a bracket (DEL
# inside an atom and ``[``/``]`` sections are the loop's to judge).
#: Spaces and plain atoms only (no quote).
_PLAIN_LINE = re.compile(r'[^\x00-\x1f\x7f()"{\[\]]*+')
#: One token per match: a plain atom, or a quoted string without backslash; the
#: third group catches any other non-space character, which sends the text to the loop.
_FAST_TOKEN = re.compile(r'([^\x00-\x20\x7f()"{\[\]]+)|"([^"\\]*)"|([^ ])')


def _fast_tokens(text: str) -> list[Token] | None:
    """`text`'s tokens if it needs no character loop, else None (see `_FAST_TOKEN`)."""
    if '"' not in text:
        if _PLAIN_LINE.fullmatch(text) is None:
            return None
        if text.isascii():
            # No control characters, so split() splits on " " only.
            return cast("list[Token]", text.split())
        return [word for word in text.split(" ") if word]
    tokens: list[Token] = []
    for atom, quoted, other in _FAST_TOKEN.findall(text):
        if other:
            return None
        tokens.append(atom or quoted.encode("utf-8", "surrogateescape"))
    return tokens


def tokenize(texts: list[bytes], literals: list[bytes], replies: Replies = DOVECOT) -> list[Token]:
    """Split a command into tokens; ``literals[i]`` follows ``texts[i]``.

    Plain texts take the regex fast path (`_fast_tokens`), the rest the character
    loop (`_tokenize_slow`); tests/imap/test_tokenize_fastpath.py holds the two to
    the same result.

    >>> tokenize([b'a FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (DATE)]<0.9>)'], [])
    ['a', 'FETCH', '1', ['UID', 'BODY.PEEK[HEADER.FIELDS (DATE)]<0.9>']]
    """
    if len(texts) == 1 and not literals:
        tokens = _fast_tokens(texts[0].decode("utf-8", "surrogateescape"))
        return _tokenize_slow(texts, literals, replies) if tokens is None else tokens
    root: list[Token] = []
    for i, raw in enumerate(texts):
        tokens = _fast_tokens(raw.decode("utf-8", "surrogateescape"))
        if tokens is None:
            return _tokenize_slow(texts, literals, replies)
        root += tokens
        if i < len(literals):
            root.append(literals[i])
    return root


def _tokenize_slow(texts: list[bytes], literals: list[bytes], replies: Replies) -> list[Token]:
    """`tokenize` one character at a time: lists, sections, escapes and every error."""
    root: list[Token] = []
    stack: list[list[Token]] = [root]
    for i, raw in enumerate(texts):
        text = raw.decode("utf-8", "surrogateescape")
        pos = 0
        end = len(text)
        while pos < end:
            ch = text[pos]
            if ch == " ":
                pos += 1
            elif ch == "(":
                child: list[Token] = []
                stack[-1].append(child)
                stack.append(child)
                pos += 1
            elif ch == ")":
                if len(stack) == 1:
                    raise ParseError(replies.unexpected_close_paren)
                stack.pop()
                pos += 1
            elif ch == '"':
                value, pos = _quoted(text, pos + 1, replies)
                stack[-1].append(value)
            elif ch == "{":
                raise ParseError(replies.literal_not_at_end)
            elif ch < " " or ch == "\x7f":
                raise ParseError(replies.control_character)
            else:
                start = pos
                depth = 0
                plain_end = -1  # where the atom ends if its '[' is not a section
                while pos < end:
                    ch = text[pos]
                    if ch == "[":
                        depth += 1
                    elif ch == "]":
                        depth = max(depth - 1, 0)
                    elif ch in _ATOM_STOP:
                        if depth == 0:
                            break
                        if plain_end < 0:
                            plain_end = pos
                    elif ch < " ":
                        raise ParseError(replies.control_character)
                    pos += 1
                if depth:
                    # An unclosed '[' is an atom character (a mailbox name such as
                    # "a[b"), as in Dovecot's parser: the atom ends where it would
                    # without the bracket.
                    pos = end if plain_end < 0 else plain_end
                stack[-1].append(text[start:pos])
        if i < len(literals):
            stack[-1].append(literals[i])
    if len(stack) != 1:
        raise ParseError(replies.missing_close_paren)
    return root


def _quoted(text: str, pos: int, replies: Replies) -> tuple[bytes, int]:
    out: list[str] = []
    end = len(text)
    while pos < end:
        ch = text[pos]
        if ch == "\\" and pos + 1 < end:
            out.append(text[pos + 1])
            pos += 2
        elif ch == '"':
            return "".join(out).encode("utf-8", "surrogateescape"), pos + 1
        else:
            out.append(ch)
            pos += 1
    raise ParseError(replies.missing_quote)
