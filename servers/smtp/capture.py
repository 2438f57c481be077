"""Messages accepted by the fake SMTP server, and waiting for them.

The server's loop thread appends; the test's thread (or its event loop) waits.
Waiting is on a condition, never a polling sleep, so `wait_for_messages`
returns the moment the message lands.

The log keeps the newest `max_items` messages (a ring), so a `serve` that takes mail
all week stays flat; waits count every arrival since the last `clear()`, kept or not.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import field
from typing import TYPE_CHECKING

from mailharness.servers.errors import ConfigError
from mailharness.servers.records import lazy_dataclass, record

if TYPE_CHECKING:
    from email.message import EmailMessage

#: Captured messages kept by default: far more than a test sends, and at about 2 KiB
#: each for a 1 KiB message a bounded few tens of MiB for a long `serve`.
MAX_MESSAGES = 10_000


@lazy_dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One accepted transaction: the envelope as sent and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: str
    login: str | None
    listener: str
    tls_version: str | None
    received_at: dt.datetime
    queue_id: str

    @property
    def message(self) -> EmailMessage:
        """The message parsed with `email.policy.default`, line endings as Python's ("\\n").

        Parsed when asked for, not at capture: a message nobody reads costs nothing.
        """
        from email import policy
        from email.message import EmailMessage
        from email.parser import BytesParser

        parsed = BytesParser(policy=policy.default).parsebytes(self.data.replace(b"\r\n", b"\n"))
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str | None:
        value = self.message["Subject"]
        return None if value is None else str(value)


@record(frozen=False, kw_only=False)
class MessageLog:
    """Captured messages in arrival order; thread-safe; waitable from threads and coroutines.

    Keeps the newest ``max_items`` messages (None: all); :attr:`arrived` counts every one.
    """

    max_items: int | None = MAX_MESSAGES
    _items: deque[CapturedMessage] = field(init=False)
    _arrived: int = field(default=0, init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)
    # Threads in wait(): without one, add() skips the notify (most messages have no waiter).
    _sync_waiters: int = field(default=0, init=False)
    _async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int]] = field(
        default_factory=list, init=False
    )
    # Told of each captured message (the `serve` activity lines); quick, must not raise.
    on_add: Callable[[CapturedMessage], None] | None = None

    def __post_init__(self) -> None:
        limit = self.max_items
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"max_messages={limit!r}: expected an integer >= 1 or None")
        self._items = deque(maxlen=limit)

    @property
    def arrived(self) -> int:
        """Messages captured since the last `clear()`, including those no longer kept."""
        with self._cond:
            return self._arrived

    def add(self, message: CapturedMessage) -> None:
        with self._cond:
            self._items.append(message)
            self._arrived += 1
            count = self._arrived
            if self._sync_waiters:
                self._cond.notify_all()
            ready = []
            if self._async_waiters:
                ready = [w for w in self._async_waiters if w[2] <= count]
                self._async_waiters = [w for w in self._async_waiters if w[2] > count]
        for loop, future, _ in ready:
            loop.call_soon_threadsafe(_resolve, future)
        if self.on_add is not None:
            self.on_add(message)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self._arrived = 0

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Block until at least `count` messages arrived; raise TimeoutError saying what came."""
        with self._cond:
            self._sync_waiters += 1
            try:
                arrived = self._cond.wait_for(lambda: self._arrived >= count, timeout)
            finally:
                self._sync_waiters -= 1
            if not arrived:
                raise TimeoutError(self._timeout_message(count, timeout))
            return list(self._items)

    async def wait_async(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._arrived >= count:
                return list(self._items)
            self._async_waiters.append((loop, future, count))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(self._timeout_message(count, timeout)) from None
        with self._cond:
            return list(self._items)

    def _timeout_message(self, count: int, timeout: float) -> str:
        got = [f"{m.mail_from} -> {', '.join(m.rcpt_tos)}" for m in self._items]
        return f"expected {count} message(s) within {timeout}s, got {len(got)}" + (
            ": " + "; ".join(got) if got else ""
        )

    def __iter__(self) -> Iterator[CapturedMessage]:
        with self._cond:
            return iter(list(self._items))

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def __getitem__(self, index: int) -> CapturedMessage:
        with self._cond:
            return self._items[index]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
