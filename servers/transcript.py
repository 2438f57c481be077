"""Per-connection protocol transcripts: the report shown when a test fails, and events
a test can assert on ("no credentials before TLS", "logged in once, with PLAIN").

Each transcript keeps structured `TranscriptEvent`s: time since connect, direction,
the TLS version in force, the line with only its secrets masked, and the fields parsed
from it (IMAP tag, command and tagged status; SMTP verb and reply code). Credentials are
decoded so the report shows who logged in and with which mechanism, never the password
or token: the front ends hand LOGIN arguments and SASL responses to `login()`,
`auth()` and `auth_response()`, which keep the user name and mask the rest.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from mailharness.servers.errors import ConfigError
from mailharness.servers.records import lazy_dataclass, record

if TYPE_CHECKING:
    import asyncio

MASK = "****"
# A transcript is for reading, not for archiving message bodies.
MAX_LINE_CHARS = 300
MAX_LINES = 2000
# Transcripts a server keeps, oldest forgotten first: a `serve` running all week stays
# flat (it grew 7.7 KB a session, 636 -> 972 MB over 43k sessions, when all were kept).
# A test run sees far fewer connections per server than this.
MAX_TRANSCRIPTS = 1000

Direction = Literal["client", "server", "event"]
_MARKS: dict[Direction, str] = {"client": "C", "server": "S", "event": "*"}
_IMAP_STATUS = re.compile(r"(\S+) (OK|NO|BAD)\b", re.IGNORECASE)
_SMTP_REPLY = re.compile(r"([2-5][0-9][0-9])(?:[ -]|$)")

_session_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    """One line of a session (or a `*` event: TLS up, closed, fault applied)."""

    elapsed: float  # seconds since the connection was accepted
    direction: Direction
    tls_version: str | None  # in force when the line passed, e.g. "TLSv1.3"; None in clear
    text: str  # the line, secrets masked
    tag: str | None = None  # IMAP: the command's tag, or the tag a reply completes
    command: str | None = None  # IMAP command name or SMTP verb, upper case
    status: str | None = None  # IMAP tagged reply: OK, NO or BAD
    reply_code: int | None = None  # SMTP reply code
    mechanism: str | None = None  # set on the line that starts a login
    login: str | None = None  # the user a credential line names, when it names one
    secret: bool = False  # the line carried a password, token or undecodable SASL blob

    def __str__(self) -> str:
        return f"{self.elapsed:8.3f} {_MARKS[self.direction]}: {self.text}"


class LoginAttempt(NamedTuple):
    """One login attempt. The IMAP LOGIN command counts as mechanism "LOGIN" (its
    first event's `command` tells it from AUTHENTICATE LOGIN)."""

    login: str | None  # None when the mechanism hides it (or the client never sent it)
    mechanism: str
    tls_version: str | None  # at the time the credentials were sent
    succeeded: bool  # False when refused or never answered


@lazy_dataclass(slots=True)
class _Auth:
    """A SASL exchange in progress: which response comes next."""

    mechanism: str
    responses: int = 0


# Written lines wait here, unparsed, until someone reads the transcript: (the parser
# method, the time written, the TLS version then in force, its arguments).
_Pending = tuple[Callable[..., None], float, "str | None", tuple[object, ...]]
# Serializes readers turning pending lines into events (the writer only appends);
# re-entrant for a live listener that reads a transcript from its callback.
_parse_lock = threading.RLock()


@dataclass(slots=True)
class Transcript:
    """One connection's events, written from the server's loop and read by tests.

    A write only notes the line, its time and the TLS version in force; the line is
    parsed into a `TranscriptEvent` when the transcript is read (`events`), in order,
    by the same code. Most sessions are never read, and parsing on every write was a
    quarter of the Python a login costs (issue 13). With a live listener (`on_event`:
    `serve`'s activity lines, the console) each line is parsed as it is written.
    """

    protocol: str
    peer: str
    listener: str
    session_id: int = field(default_factory=lambda: next(_session_ids))
    started: float = field(default_factory=time.monotonic)
    dropped: int = 0
    #: The TLS version in force now (None while in the clear).
    tls_version: str | None = None
    # Told of every event as it is added (the `serve` activity lines); set by TranscriptLog.
    on_event: Callable[[Transcript, TranscriptEvent], None] | None = None
    _events: list[TranscriptEvent] = field(default_factory=list)
    _pending: list[_Pending] = field(default_factory=list)
    _lines: int = 0  # lines kept (parsed or pending): at MAX_LINES the rest are counted
    # Parser state, used while pending lines are parsed, in order:
    _now: float = 0.0  # when the line being parsed was written
    _tls_then: str | None = None  # the TLS version in force when it was written
    _auth: _Auth | None = None
    # IMAP tags sent and not yet completed: only these make a server line a tagged reply
    # (a message body line such as "Hello OK" does not).
    _open_tags: set[str] = field(default_factory=set)

    @property
    def events(self) -> list[TranscriptEvent]:
        """The session's events so far, in order (parsed now if not yet)."""
        if self._pending:
            self._parse_pending()
        return self._events

    @property
    def full(self) -> bool:
        """At MAX_LINES: further lines are only counted in `dropped`."""
        return self._lines >= MAX_LINES

    # -- writing (from the server's event loop) --------------------------------------

    def _note(self, parse: Callable[..., None], *args: object, lines: int = 1) -> None:
        """Note a write of `lines` lines, or only count it when they do not all fit."""
        if self._lines + lines > MAX_LINES:
            self.dropped += lines
            return
        self._lines += lines
        self._pending.append((parse, time.monotonic(), self.tls_version, args))
        if self.on_event is not None:
            self._parse_pending()

    def _parse_pending(self) -> None:
        with _parse_lock:
            pending = self._pending
            count = len(pending)  # the writer may append meanwhile: those wait
            for parse, written, tls_version, args in pending[:count]:
                self._now, self._tls_then = written, tls_version
                parse(self, *args)
            del pending[:count]

    def _add(
        self,
        direction: Direction,
        text: str,
        *,
        tag: str | None = None,
        command: str | None = None,
        status: str | None = None,
        reply_code: int | None = None,
        mechanism: str | None = None,
        login: str | None = None,
        secret: bool = False,
    ) -> None:
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f"... [{len(text)} chars]"
        if direction == "client" and tag is not None:
            self._open_tags.add(tag)
        event = TranscriptEvent(
            self._now - self.started,
            direction,
            self._tls_then,
            text,
            tag=tag,
            command=command,
            status=status,
            reply_code=reply_code,
            mechanism=mechanism,
            login=login,
            secret=secret,
        )
        self._events.append(event)
        if self.on_event is not None:
            self.on_event(self, event)

    def client(
        self, line: bytes | str, *, tag: str | None = None, command: str | None = None
    ) -> None:
        """A client line that holds no secret (credentials go to `login`/`auth`).
        An SMTP line's first word is its verb; IMAP passes tag and command parsed."""
        self._note(Transcript._parse_client, line, tag, command)

    def _parse_client(self, line: bytes | str, tag: str | None, command: str | None) -> None:
        text = _text(line)
        if command is None and self.protocol == "smtp" and text:
            command = text.split(" ", 1)[0].upper()
        self._add("client", text, tag=tag, command=command)

    def client_data(self, text: str) -> None:
        """A summary of client data (a message body): parsed as nothing."""
        self._note(Transcript._parse_client_data, text)

    def _parse_client_data(self, text: str) -> None:
        self._add("client", text)

    def server(self, line: bytes | str) -> None:
        self._note(Transcript._parse_server, line)

    def server_lines(self, data: bytes | str) -> None:
        """What the server wrote in one go, CRLF-ended lines (one line if none ends):
        each becomes an event, from one note (an IMAP write, an SMTP reply)."""
        # Counted now, split when read (`_split_lines`): most transcripts are never read.
        ends = data.count(b"\r\n") if isinstance(data, bytes) else data.count("\r\n")
        count = ends or 1
        room = MAX_LINES - self._lines
        if count > room > 0:  # the first lines fit: keep those
            self.dropped += count - room
            count = room
        self._note(Transcript._parse_server_lines, data, count, lines=count)

    def _parse_server_lines(self, data: bytes | str, count: int) -> None:
        for line in _split_lines(data)[:count]:
            self._parse_server(line)

    def _parse_server(self, line: bytes | str) -> None:
        text = _text(line)
        if self.protocol == "imap":
            match = _IMAP_STATUS.match(text)
            if match is not None and match[1] in self._open_tags:
                self._open_tags.discard(match[1])
                self._auth = None
                self._add("server", text, tag=match[1], status=match[2].upper())
            else:
                self._add("server", text)
        else:
            code_match = _SMTP_REPLY.match(text)
            code = int(code_match[1]) if code_match else None
            if code is not None and code != 334:
                self._auth = None
            self._add("server", text, reply_code=code)

    def event(self, text: str) -> None:
        self._note(Transcript._parse_event, text)

    def _parse_event(self, text: str) -> None:
        self._add("event", text)

    def tls(self, version: str | None, how: str) -> None:
        """TLS is up (`how`: "implicit" or "STARTTLS"); later events carry `version`."""
        self.tls_version = version or "TLS"
        self.event(f"TLS established ({self.tls_version}, {how})")

    def login(self, tag: str | None, user: str, command: str = "LOGIN") -> None:
        """IMAP `tag LOGIN user password`: the user shown, the password masked."""
        self._note(Transcript._parse_login, tag, user, command)

    def _parse_login(self, tag: str | None, user: str, command: str) -> None:
        prefix = f"{tag} " if tag else ""
        self._add(
            "client",
            f"{prefix}{command} {_quoted(user)} {MASK}",
            tag=tag,
            command=command,
            mechanism="LOGIN",
            login=user,
            secret=True,
        )

    def auth(
        self, tag: str | None, command: str, mechanism: str, initial: bytes | str | None
    ) -> None:
        """A SASL exchange begins (IMAP AUTHENTICATE, SMTP AUTH), with the client's
        initial response if it sent one (decoded to show the user, mask the secret)."""
        self._note(Transcript._parse_auth, tag, command, mechanism, initial)

    def _parse_auth(
        self, tag: str | None, command: str, mechanism: str, initial: bytes | str | None
    ) -> None:
        mechanism = mechanism.upper()
        self._auth = _Auth(mechanism)
        prefix = f"{tag} " if tag else ""
        head = f"{prefix}{command} {mechanism}"
        if initial is None or _text(initial) == "":
            self._add("client", head, tag=tag, command=command, mechanism=mechanism)
            return
        shown, user, secret = self._response(_text(initial))
        self._add(
            "client",
            f"{head} {shown}",
            tag=tag,
            command=command,
            mechanism=mechanism,
            login=user,
            secret=secret,
        )

    def auth_response(self, line: bytes | str) -> None:
        """A client line answering a SASL challenge (IMAP `+`, SMTP 334)."""
        self._note(Transcript._parse_auth_response, line)

    def _parse_auth_response(self, line: bytes | str) -> None:
        shown, user, secret = self._response(_text(line))
        self._add("client", shown, login=user, secret=secret)

    def _response(self, text: str) -> tuple[str, str | None, bool]:
        """What to show of one SASL response: (shown text, user named, secret masked)."""
        auth = self._auth
        if text.strip() in ("", "*", "="):  # empty response or cancel: nothing secret
            return text, None, False
        step = 0
        mechanism = "?"
        if auth is not None:
            step, mechanism = auth.responses, auth.mechanism
            auth.responses += 1
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            return MASK, None, True
        decoded = raw.decode("utf-8", "replace")
        user: str | None = None
        if mechanism == "PLAIN":
            parts = decoded.split("\0")
            if len(parts) == 3:
                authzid, user = parts[0], parts[1]
                extra = f" as={_quoted(authzid)}" if authzid else ""
                return f"[user={_quoted(user)}{extra} password={MASK}]", user, True
        elif mechanism == "LOGIN":
            if step == 0:
                return f"[user={_quoted(decoded)}]", decoded, False
            return MASK, None, True
        elif mechanism in ("XOAUTH2", "OAUTHBEARER"):
            match = re.search(r"(?:^|[\x01,])(?:user|a)=([^\x01,]*)", decoded)
            if match is not None:
                user = match[1]
                return f"[user={_quoted(user)} token={MASK}]", user, True
        elif mechanism == "CRAM-MD5":
            name, _, _digest = decoded.rpartition(" ")
            if name:
                return f"[user={_quoted(name)} digest={MASK}]", name, True
        return MASK, None, True

    # -- reading (from the test) -------------------------------------------------------

    def text(self) -> str:
        header = (
            f"--- {self.protocol} session {self.session_id} from {self.peer} on {self.listener}"
        )
        body = [str(event) for event in self.events]
        if self.dropped:
            body.append(f"... {self.dropped} more lines not kept")
        return "\n".join([header, *body])

    def __str__(self) -> str:
        return self.text()

    def credentials_sent_before_tls(self) -> list[TranscriptEvent]:
        """Client lines that carried a password, token or SASL secret in the clear."""
        return [e for e in list(self.events) if e.secret and e.tls_version is None]

    def assert_credentials_only_after_tls(self) -> None:
        """Raise AssertionError naming the first line that sent a secret in the clear."""
        _assert_no_cleartext([self])

    def logins(self) -> list[LoginAttempt]:
        """Every login attempt of this session, in order."""
        found: list[LoginAttempt] = []
        pending: LoginAttempt | None = None
        pending_tag: str | None = None
        for event in list(self.events):
            if event.direction == "client" and event.mechanism is not None:
                if pending is not None:
                    found.append(pending)
                pending = LoginAttempt(event.login, event.mechanism, event.tls_version, False)
                pending_tag = event.tag
            elif pending is None:
                continue
            elif event.direction == "client" and event.login is not None:
                pending = pending._replace(login=event.login)
            elif event.direction == "server" and self.protocol == "imap":
                if event.status is not None and event.tag == pending_tag:
                    found.append(pending._replace(succeeded=event.status == "OK"))
                    pending = None
            elif event.direction == "server" and event.reply_code not in (None, 334):
                found.append(pending._replace(succeeded=event.reply_code == 235))
                pending = None
        if pending is not None:
            found.append(pending)
        return found

    def auth_mechanisms_used(self) -> list[str]:
        """The mechanisms of this session's login attempts, each once, in order."""
        return _unique(login.mechanism for login in self.logins())


def tls_version_of(transport: asyncio.BaseTransport | None) -> str | None:
    """The negotiated version ("TLSv1.3") of a transport, None when it is not TLS."""
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    return None if ssl_object is None else str(ssl_object.version())


def _split_lines(data: bytes | str) -> list[bytes] | list[str]:
    """CRLF-ended lines without their ends; `data` itself when no line ends."""
    if isinstance(data, bytes):
        return data.split(b"\r\n")[:-1] or [data]
    return data.split("\r\n")[:-1] or [data]


def _text(line: bytes | str) -> str:
    if isinstance(line, bytes):
        line = line.decode("utf-8", "backslashreplace")
    return line.rstrip("\r\n")


def _quoted(value: str) -> str:
    """A user name as it reads unambiguously (quoted when empty or with spaces)."""
    if value and not any(c in value for c in ' "\\\x01\0'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _assert_no_cleartext(transcripts: Iterable[Transcript]) -> None:
    for transcript in transcripts:
        leaks = transcript.credentials_sent_before_tls()
        if leaks:
            raise AssertionError(
                f"credentials sent before TLS in {transcript.protocol} session "
                f"{transcript.session_id} from {transcript.peer} on {transcript.listener}: "
                f"{str(leaks[0]).strip()}"
            )


@record(frozen=False, kw_only=False)
class TranscriptLog:
    """The last `max_items` transcripts of one server, in connection order (a ring
    buffer: `dropped` counts those forgotten); safe to read from the test thread.

    The helpers take optional filters: `protocol` ("imap", "smtp") and `listener`
    (a substring of the listener's description, e.g. "implicit" or a port)."""

    max_items: int = MAX_TRANSCRIPTS
    dropped: int = 0
    _items: deque[Transcript] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Hooks for a live view (`mailharness serve` prints one line per session event):
    # called on the server's loop, so they must be quick and must not raise.
    on_open: Callable[[Transcript], None] | None = None
    on_event: Callable[[Transcript, TranscriptEvent], None] | None = None

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ConfigError(f"max_items={self.max_items!r}: expected >= 1")
        self._items = deque(maxlen=self.max_items)

    def open(self, protocol: str, peer: str, listener: str) -> Transcript:
        transcript = Transcript(
            protocol=protocol, peer=peer, listener=listener, on_event=self.on_event
        )
        with self._lock:
            if len(self._items) == self.max_items:
                self.dropped += 1
            self._items.append(transcript)
        if self.on_open is not None:
            self.on_open(transcript)
        return transcript

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.dropped = 0

    def __iter__(self) -> Iterator[Transcript]:
        with self._lock:
            return iter(list(self._items))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __getitem__(self, index: int) -> Transcript:
        with self._lock:
            return self._items[index]

    def text(self) -> str:
        return "\n\n".join(t.text() for t in self)

    def filter(self, protocol: str | None = None, listener: str | None = None) -> list[Transcript]:
        """The transcripts of one protocol and/or of listeners whose description
        contains `listener` (e.g. "starttls", "implicit", or a port number)."""
        return [
            t
            for t in self
            if (protocol is None or t.protocol == protocol.lower())
            and (listener is None or listener in t.listener)
        ]

    def credentials_sent_before_tls(
        self, protocol: str | None = None, listener: str | None = None
    ) -> list[TranscriptEvent]:
        return [e for t in self.filter(protocol, listener) for e in t.credentials_sent_before_tls()]

    def assert_credentials_only_after_tls(
        self, protocol: str | None = None, listener: str | None = None
    ) -> None:
        """Raise AssertionError naming the session and line that sent a secret in clear."""
        _assert_no_cleartext(self.filter(protocol, listener))

    def logins(
        self, protocol: str | None = None, listener: str | None = None
    ) -> list[LoginAttempt]:
        return [login for t in self.filter(protocol, listener) for login in t.logins()]

    def auth_mechanisms_used(
        self, protocol: str | None = None, listener: str | None = None
    ) -> list[str]:
        return _unique(login.mechanism for login in self.logins(protocol, listener))
