"""Per-connection protocol transcripts, the test artefact shown when a test fails.

Each line is timestamped relative to the connection's start and prefixed `C:`
(client) or `S:` (server). Secrets never appear: the caller marks a line as
sensitive (AUTH payloads, LOGIN arguments) and it is stored masked.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailharness.servers.errors import ConfigError

MASK = "****"
# A transcript is for reading, not for archiving message bodies.
MAX_LINE_CHARS = 300
MAX_LINES = 2000
# Transcripts a server keeps, oldest forgotten first: a `serve` running all week stays
# flat (it grew 7.7 KB a session, 636 -> 972 MB over 43k sessions, when all were kept).
# A test run sees far fewer connections per server than this.
MAX_TRANSCRIPTS = 1000

_session_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    elapsed: float
    direction: str  # "C", "S" or "*" (an event: TLS up, closed, fault applied)
    text: str

    def __str__(self) -> str:
        return f"{self.elapsed:8.3f} {self.direction}: {self.text}"


@dataclass(slots=True)
class Transcript:
    protocol: str
    peer: str
    listener: str
    session_id: int = field(default_factory=lambda: next(_session_ids))
    started: float = field(default_factory=time.monotonic)
    lines: list[TranscriptLine] = field(default_factory=list)
    dropped: int = 0

    def _add(self, direction: str, text: str) -> None:
        if len(self.lines) >= MAX_LINES:
            self.dropped += 1
            return
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f"... [{len(text)} chars]"
        self.lines.append(TranscriptLine(time.monotonic() - self.started, direction, text))

    def client(self, line: bytes | str) -> None:
        self._add("C", _text(line))

    def server(self, line: bytes | str) -> None:
        self._add("S", _text(line))

    def event(self, text: str) -> None:
        self._add("*", text)

    def client_masked(self, visible_prefix: str = "") -> None:
        self._add("C", f"{visible_prefix}{MASK}")

    def text(self) -> str:
        header = (
            f"--- {self.protocol} session {self.session_id} from {self.peer} on {self.listener}"
        )
        body = [str(line) for line in self.lines]
        if self.dropped:
            body.append(f"... {self.dropped} more lines not kept")
        return "\n".join([header, *body])

    def __str__(self) -> str:
        return self.text()


def _text(line: bytes | str) -> str:
    if isinstance(line, bytes):
        line = line.decode("utf-8", "backslashreplace")
    return line.rstrip("\r\n")


@dataclass(slots=True)
class TranscriptLog:
    """The last `max_items` transcripts of one server, in connection order (a ring
    buffer: `dropped` counts those forgotten); safe to read from the test thread."""

    max_items: int = MAX_TRANSCRIPTS
    dropped: int = 0
    _items: deque[Transcript] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ConfigError(f"max_items={self.max_items!r}: expected >= 1")
        self._items = deque(maxlen=self.max_items)

    def open(self, protocol: str, peer: str, listener: str) -> Transcript:
        transcript = Transcript(protocol=protocol, peer=peer, listener=listener)
        with self._lock:
            if len(self._items) == self.max_items:
                self.dropped += 1
            self._items.append(transcript)
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
