"""What a scenario does over time, as data: the one source serve and the fixtures share.

A `MailConfig(schedule=...)` holds these events; `MailServer` runs them on its own
loop from start to stop, so `mailharness serve --scenario flapping` flaps exactly as
the `flapping` fixture does, and no test acts a scenario out by hand.

    MailConfig(schedule=(Flap(up_seconds=2, down_seconds=2),))

Every period is a field, so a TOML file (`[[schedule]] kind = "flap"`) or a test can
make it short. Limits (connection caps, rate limits, idle timeouts) need no event:
they are settings of the protocol servers, in the same config.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar

from mailharness.servers.errors import ConfigError
from mailharness.servers.faults import Refuse
from mailharness.servers.records import record

if TYPE_CHECKING:
    from mailharness.server import MailServer
    from mailharness.servers.faults import FaultFront  # the proxy: loaded with a front


def _positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(
                f"{type(owner).__name__}.{name}={value!r}: expected a number of seconds > 0"
            )


@record
class Flap:
    """An unstable server: `listeners` accept for `up_seconds`, then refuse
    (ConnectionRefusedError, port still bound) for `down_seconds`, and again.

    `listeners` is a faults selector ("*", "imap", "imap/starttls"); the listeners it
    names are served through a fault front, which is what refuses.
    """

    kind: ClassVar[str] = "flap"
    #: Seconds each up phase lasts (the first comes first).
    up_seconds: float = 2.0
    #: Seconds each refused phase lasts.
    down_seconds: float = 2.0
    #: Which listeners flap: *, imap, smtp or one listener (imap/starttls...).
    listeners: str = "*"

    def __post_init__(self) -> None:
        _positive(self, "up_seconds", "down_seconds")


@record
class MaintenanceWindow:
    """Recurring outages: every `every_seconds`, for `lasts_seconds`, new connections
    are greeted IMAP `* BYE [UNAVAILABLE] Server down for maintenance` and SMTP
    `421 4.3.2`; the first window opens `every_seconds - lasts_seconds` after start."""

    kind: ClassVar[str] = "maintenance-window"
    #: Seconds from the start of one window to the next.
    every_seconds: float = 60.0
    #: Seconds each window lasts.
    lasts_seconds: float = 10.0

    def __post_init__(self) -> None:
        _positive(self, "every_seconds", "lasts_seconds")
        if self.lasts_seconds >= self.every_seconds:
            raise ConfigError(
                f"MaintenanceWindow.lasts_seconds={self.lasts_seconds!r}: expected less than "
                f"every_seconds={self.every_seconds!r}"
            )


@record
class Shutdown:
    """The server goes away mid-session: every `every_seconds`, each open session is
    told `* BYE Server shutting down.` / `421 4.3.2 Shutting down` and closed; new
    connections are served as before (a restart)."""

    kind: ClassVar[str] = "shutdown"
    #: Seconds between two announcements.
    every_seconds: float = 5.0

    def __post_init__(self) -> None:
        _positive(self, "every_seconds")


@record
class MailboxChurn:
    """The mailbox changes under the client: every `every_seconds`, `mailbox` of
    every user gets a new UIDVALIDITY, so a session that has it selected is
    closed with `* BYE ... UIDVALIDITY changed` (what Dovecot does)."""

    kind: ClassVar[str] = "mailbox-churn"
    #: Seconds between two UIDVALIDITY changes.
    every_seconds: float = 5.0
    #: The mailbox that changes, for every user that has it.
    mailbox: str = "INBOX"

    def __post_init__(self) -> None:
        _positive(self, "every_seconds")


ScheduledEvent = Flap | MaintenanceWindow | Shutdown | MailboxChurn
EVENT_TYPES: tuple[type[ScheduledEvent], ...] = (Flap, MaintenanceWindow, Shutdown, MailboxChurn)
#: Events that act on the fake servers' state (Flap acts on fronts, before any backend).
FAKE_ONLY = (MaintenanceWindow, Shutdown, MailboxChurn)


def check_schedule(schedule: object) -> tuple[ScheduledEvent, ...]:
    """The schedule as a tuple of events; anything else is an error naming what is allowed."""
    if not isinstance(schedule, tuple | list):
        raise ConfigError(f"schedule={schedule!r}: expected a tuple of events")
    for event in schedule:
        if not isinstance(event, EVENT_TYPES):
            allowed = ", ".join(t.__name__ for t in EVENT_TYPES)
            raise ConfigError(f"schedule event {event!r}: expected one of {allowed}")
    return tuple(schedule)


def flapped_selectors(schedule: tuple[ScheduledEvent, ...]) -> tuple[str, ...]:
    """The fault selectors a schedule switches: those listeners need a front."""
    return tuple(e.listeners for e in schedule if isinstance(e, Flap))


class ScheduleRunner:
    """The schedule of one running server, as tasks on its loop; `stop()` cancels them."""

    def __init__(self, server: MailServer, schedule: tuple[ScheduledEvent, ...]) -> None:
        self.server = server
        self.tasks = [asyncio.ensure_future(self._run(event)) for event in schedule]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()

    async def _run(self, event: ScheduledEvent) -> None:
        server = self.server
        if isinstance(event, Flap):
            fronts = server.fronts_matching(event.listeners)
            await _cycle(
                event.up_seconds,
                event.down_seconds,
                lambda down: _refuse(fronts, down),
            )
        elif isinstance(event, MaintenanceWindow):
            await _cycle(
                event.every_seconds - event.lasts_seconds,
                event.lasts_seconds,
                server.set_maintenance,
            )
        elif isinstance(event, Shutdown):
            await _every(event.every_seconds, server.aannounce_shutdown)
        else:
            mailbox = event.mailbox

            async def churn() -> None:
                for user in server.users:
                    mailboxes = server.store.user(user.login)
                    if mailboxes.get(mailbox) is not None:
                        mailboxes.change_uidvalidity(mailbox)

            await _every(event.every_seconds, churn)


def _refuse(fronts: list[FaultFront], down: bool) -> None:
    for front in fronts:
        if down:
            front.add(Refuse())
        else:
            front.remove(Refuse)


async def _cycle(on_seconds: float, off_seconds: float, switch: Callable[[bool], None]) -> None:
    """`switch(False)` for on_seconds, `switch(True)` for off_seconds, forever."""
    try:
        while True:
            await asyncio.sleep(on_seconds)
            switch(True)
            await asyncio.sleep(off_seconds)
            switch(False)
    finally:
        switch(False)


async def _every(seconds: float, action: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        await action()


def scaled(schedule: tuple[ScheduledEvent, ...], factor: float) -> tuple[ScheduledEvent, ...]:
    """The same schedule with every period times `factor` (0.1: ten times as fast)."""
    return tuple(
        dataclasses.replace(
            event,
            **{
                f.name: getattr(event, f.name) * factor
                for f in dataclasses.fields(event)
                if f.name.endswith("_seconds")
            },
        )
        for event in schedule
    )
