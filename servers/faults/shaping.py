"""Latency, bandwidth and byte-count drops for one direction of one connection.

The shaper is asked about each chunk *when it is written*, with the faults
active at that moment, which is what lets a switch at run time reach
connections that are already open. Chunks are stamped when they are read,
so latency is measured from arrival and chunks are not delayed behind each
other (a 50 ms latency is 50 ms per reply, not a throughput cap).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

from mailharness.servers.faults.toxics import Bandwidth, DropAfter, Fault, Latency, applies

Stream = Literal["downstream", "upstream"]
# Pacing granularity: a slice is 1/20 s of data, smooth enough for a ±10 % rate
# over any transfer of a second or more, coarse enough to cost little CPU.
SLICES_PER_SECOND = 20
# Lateness still counted as "the same burst" (asyncio.sleep overshoots by ~0.1-1 ms).
LATE_WAKEUP = 0.01


class Shaper:
    """Per-connection, per-direction state of the live faults; see the module docstring."""

    def __init__(self, stream: Stream, rng: random.Random) -> None:
        self.stream = stream
        self._rng = rng
        self._drops: dict[DropAfter, int | None] = {}  # bytes left; None: the roll said no
        self._budget: int | None = None  # DropOnCommand's reply bytes still allowed
        self._next_send = 0.0

    def _mine(self, faults: Iterable[Fault]) -> list[Fault]:
        return [
            f
            for f in faults
            if isinstance(f, Latency | Bandwidth | DropAfter) and applies(f.direction, self.stream)
        ]

    def delay(self, faults: Iterable[Fault]) -> float:
        """Seconds this chunk is held, from its arrival."""
        total = 0.0
        for fault in self._mine(faults):
            if isinstance(fault, Latency) and self._roll(fault.probability):
                jitter = self._rng.uniform(-fault.jitter_ms, fault.jitter_ms)
                total += max(0.0, fault.ms + jitter) / 1000
        return total

    def set_budget(self, nbytes: int) -> None:
        """Allow ``nbytes`` more, then drop (DropOnCommand's ``reply_bytes``)."""
        self._budget = nbytes if self._budget is None else min(self._budget, nbytes)

    def limit(self, faults: Iterable[Fault], data: bytes) -> tuple[bytes, str | None]:
        """Cut ``data`` at the first drop point; the reason is set when the connection must drop."""
        allowed = len(data)
        reason = None
        for fault in self._mine(faults):
            if not isinstance(fault, DropAfter):
                continue
            if fault not in self._drops:
                self._drops[fault] = fault.bytes if self._roll(fault.probability) else None
            left = self._drops[fault]
            if left is not None and left <= allowed:
                allowed, reason = left, f"{fault} fired ({self.stream})"
        if self._budget is not None and self._budget <= allowed:
            allowed, reason = self._budget, f"DropOnCommand fired after {self._budget} reply bytes"
        for fault, left in self._drops.items():
            if left is not None:
                self._drops[fault] = left - allowed
        if self._budget is not None:
            self._budget -= allowed
        return data[:allowed], reason

    def rate(self, faults: Iterable[Fault]) -> int | None:
        rates = [f.bytes_per_second for f in self._mine(faults) if isinstance(f, Bandwidth)]
        return min(rates) if rates else None

    async def send(
        self,
        data: bytes,
        write: Callable[[bytes], Awaitable[None]],
        rate: Callable[[], int | None],
    ) -> None:
        """Write ``data``, paced at ``rate()`` (asked again per slice: a switch applies at once)."""
        view = memoryview(data)
        while view:
            bps = rate()
            if bps is None:
                await write(bytes(view))
                return
            size = max(1, bps // SLICES_PER_SECOND)
            piece, view = view[:size], view[size:]
            # A piece leaves when a link of this rate would have finished sending it
            # (serialization delay): N bytes take N/rate from the first, whoever measures.
            # An idle connection banks no credit: after a pause the clock restarts from now.
            # A wake-up a little late (sleep overshoot) keeps the schedule, or the rate
            # would fall ~1 % short per ms of overshoot.
            now = time.monotonic()
            if now - self._next_send > LATE_WAKEUP:
                self._next_send = now
            self._next_send += len(piece) / bps
            if self._next_send > now:
                await asyncio.sleep(self._next_send - now)
            await write(bytes(piece))

    def _roll(self, probability: float) -> bool:
        return probability >= 1.0 or self._rng.random() < probability
