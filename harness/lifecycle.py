"""One event-loop thread per running harness: the sync facade's engine.

Servers are asyncio code. A sync test cannot run a loop itself, so the
harness runs one in a daemon thread and hands it coroutines; exceptions raised
there are re-raised in the caller's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Long enough for a slow CI machine, short enough that a hung stop is noticed.
DEFAULT_CALL_TIMEOUT = 30.0


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def fastest_loop_factory() -> LoopFactory:
    """uvloop's loop when it is installed (the `fast` extra), else asyncio's own.

    uvloop does the socket work in C: `mailharness serve` under load spends most of its
    time there. The protocol code and the fault layer are the same on either loop.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: LoopFactory = uvloop.new_event_loop
    return factory


class LoopThread:
    """An asyncio loop running in its own thread until `stop()`."""

    def __init__(
        self, name: str = "mailharness-loop", *, loop_factory: LoopFactory | None = None
    ) -> None:
        self.loop = (loop_factory or asyncio.new_event_loop)()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def start(self, first: Coroutine[Any, Any, object] | None = None) -> LoopThread:
        """Start the thread; with `first`, run that as the loop's first work and return
        when it is done (its exception raised here). The caller waits for one wake-up,
        not two: a trip to the loop thread costs about 0.1 ms, and a fixture that makes a
        server per test pays every one (issue 13)."""
        if first is None:
            self._thread.start()
            self._started.wait()
            return self
        done = asyncio.run_coroutine_threadsafe(first, self.loop)  # runs once the loop does
        self._thread.start()
        done.result(DEFAULT_CALL_TIMEOUT)
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = DEFAULT_CALL_TIMEOUT) -> T:
        """Run `coro` on the loop and return its result here (or raise its exception here)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run() called from its own loop: await instead")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, last: Coroutine[Any, Any, object] | None = None) -> None:
        """Run `last` (a server's own stop), cancel what is left, stop the loop, join the
        thread and close the loop; `last`'s exception is raised here after all that.

        The loop thread does it all in one task and ends; this thread only joins it (one
        wake-up, where waiting on `last` and then on the cancelling took two more).
        """
        if not self._thread.is_alive():
            if last is not None:
                last.close()
            if not self.loop.is_closed():
                self.loop.close()
            return
        if threading.current_thread() is self._thread:
            if last is not None:
                last.close()
            raise RuntimeError("LoopThread.stop() called from its own loop")
        failed: list[BaseException] = []

        async def finish() -> None:
            try:
                if last is not None:
                    await last
            except BaseException as exc:  # raised in the caller's thread, below
                failed.append(exc)
            finally:
                current = asyncio.current_task()
                tasks = [t for t in asyncio.all_tasks() if t is not current]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.loop.shutdown_asyncgens()
                self.loop.stop()

        hung = False
        try:
            self.loop.call_soon_threadsafe(self.loop.create_task, finish())
            self._thread.join(DEFAULT_CALL_TIMEOUT)
        finally:
            if self._thread.is_alive():  # `last` hung: cancel it, and finish() goes on
                hung = True
                self.loop.call_soon_threadsafe(_cancel_all)
                self._thread.join(DEFAULT_CALL_TIMEOUT)
            if self._thread.is_alive():  # and a task refused its cancellation
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(DEFAULT_CALL_TIMEOUT)
            self.loop.close()
        if hung:
            raise TimeoutError(f"the loop thread's stop took over {DEFAULT_CALL_TIMEOUT:g} s")
        if failed:
            raise failed[0]


def _cancel_all() -> None:
    for task in asyncio.all_tasks():
        task.cancel()
