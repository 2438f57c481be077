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
from dataclasses import dataclass

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_LITERAL_BYTES",
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
#: Literals shown in the transcript are summarised, never dumped.
#: ``~{n}`` is RFC 3516's literal8 (APPEND of binary data); it is read like a literal.
_LITERAL_RE = re.compile(rb"~?\{(\d{1,20})(\+?)\}\r?$")
_TAG_FORBIDDEN = frozenset('(){ %*"\\+]')


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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """A synchronizing literal ``{n}`` arrived: send ``+`` before the client goes on."""

    tag: str
    size: int
    #: The command word so far (``APPEND``), so the session may refuse early.
    command: str | None = None


@dataclass(frozen=True, slots=True)
class ClientLine:
    """A bare line read in :attr:`InputMode.LINE` (SASL response, IDLE's DONE)."""

    text: bytes


@dataclass(frozen=True, slots=True)
class BadInput:
    """The peer broke the protocol; answer ``BAD`` (tag or ``*``) and go on.

    ``fatal`` means the stream cannot be resynchronised (a LITERAL+ too big
    to skip safely): the session must send ``BYE`` and close.
    """

    tag: str | None
    command: str | None
    reason: str
    fatal: bool = False


Event = Command | ContinuationRequest | ClientLine | BadInput | NeedData


class ParseError(ValueError):
    """A command line could not be tokenised; the message is the reply text."""


class IMAPConnection:
    """Framing and tokenising of client input for one connection."""

    def __init__(
        self, *, max_line: int = MAX_LINE_BYTES, max_literal: int = MAX_LITERAL_BYTES
    ) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
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
            if idx < 0:
                if len(buf) > self.max_line:
                    tag = self._pending_tag() if self._texts else _guess_tag(bytes(buf))
                    buf.clear()
                    self._reset_command()
                    self._discard_line = True
                    self.mode = InputMode.COMMAND
                    return BadInput(tag, None, "Too long argument.")
                self._scan_from = len(buf)
                return NEED_DATA
            line = bytes(buf[:idx])
            del buf[: idx + 1]
            self._scan_from = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.mode is InputMode.LINE:
                self.mode = InputMode.COMMAND
                if len(line) > self.max_line:
                    return BadInput(None, None, "Too long argument.")
                return ClientLine(line)
            self._pending_length += len(line)
            if self._pending_length > self.max_line:
                tag = self._pending_tag() if self._texts else _guess_tag(line)
                self._reset_command()
                return BadInput(tag, None, "Too long argument.")
            match = _LITERAL_RE.search(line)
            if match is not None:
                size = int(match.group(1))
                sync = not match.group(2)
                self._texts.append(line[: match.start()])
                if size > self.max_literal:
                    tag = self._pending_tag()
                    self._reset_command()
                    if sync:
                        # The client waits for "+", so nothing of it follows.
                        return BadInput(tag, None, "Literal too large")
                    return BadInput(tag, None, "Literal too large", fatal=True)
                self._literal_size = size
                self._literal_sync = sync
                self._literal8 = line.startswith(b"~", match.start())
                self._continuation_sent = False
                continue
            if not self._texts and not line.strip():
                continue  # stray empty line: Dovecot ignores it too
            self._texts.append(line)
            texts, literals = self._texts, self._literals
            self._reset_command()
            return _build_command(texts, literals)

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
        return _guess_tag(self._texts[0]) if self._texts else None

    def _reset_command(self) -> None:
        self._texts = []
        self._literals = []
        self._literal_size = None
        self._pending_length = 0


def _guess_tag(line: bytes) -> str | None:
    word = line.split(b" ", 1)[0].decode("utf-8", "replace")
    return word if _valid_tag(word) else None


def _valid_tag(tag: str) -> bool:
    return bool(tag) and tag.isprintable() and tag.isascii() and not (set(tag) & _TAG_FORBIDDEN)


def _build_command(texts: list[bytes], literals: list[bytes]) -> Command | BadInput:
    transcript = " ".join(
        part
        for i, text in enumerate(texts)
        for part in (
            text.decode("utf-8", "backslashreplace").strip(),
            f"{{{len(literals[i])}}}" if i < len(literals) else "",
        )
        if part
    )
    head = texts[0].split(b" ", 2)
    tag = head[0].decode("utf-8", "replace")
    if not _valid_tag(tag):
        return BadInput(None, None, "Error in IMAP command received by server.")
    try:
        tokens = tokenize(texts, literals)
    except ParseError as exc:
        name = head[1].decode("ascii", "replace").upper() if len(head) > 1 else None
        return BadInput(tag, name, str(exc))
    if len(tokens) < 2 or not isinstance(tokens[1], str):
        return BadInput(tag, None, "Error in IMAP command received by server.")
    name = tokens[1].upper()
    args = tokens[2:]
    uid = False
    if name == "UID":
        if not args or not isinstance(args[0], str):
            return BadInput(tag, "UID", "Missing arguments.")
        uid = True
        name = args[0].upper()
        args = args[1:]
    return Command(tag=tag, name=name, args=tuple(args), uid=uid, transcript=transcript)


_ATOM_STOP = frozenset(' ()"{')


def tokenize(texts: list[bytes], literals: list[bytes]) -> list[Token]:
    """Split a command into tokens; ``literals[i]`` follows ``texts[i]``.

    >>> tokenize([b'a FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (DATE)]<0.9>)'], [])
    ['a', 'FETCH', '1', ['UID', 'BODY.PEEK[HEADER.FIELDS (DATE)]<0.9>']]
    """
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
                    raise ParseError("Unexpected ')'")
                stack.pop()
                pos += 1
            elif ch == '"':
                value, pos = _quoted(text, pos + 1)
                stack[-1].append(value)
            elif ch == "{":
                raise ParseError("Unexpected '{' (literal not at end of line)")
            elif ch < " " or ch == "\x7f":
                raise ParseError("Unexpected control character")
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
                        raise ParseError("Unexpected control character")
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
        raise ParseError("Missing ')'")
    return root


def _quoted(text: str, pos: int) -> tuple[bytes, int]:
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
    raise ParseError("Missing '\"'")
