"""The loop thread behind every sync `MailServer`: a server's start runs as the loop's
first work and its stop as the loop's last, each with one wake-up of the caller, and
whatever they raise is raised in the caller's thread with nothing left running."""

from __future__ import annotations

import asyncio
import threading

import pytest
from mailharness import lifecycle
from mailharness.lifecycle import LoopThread


def _loop_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "lifecycle-tests"}


async def _loop_of_caller() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def _boom() -> None:
    raise ValueError("boom")


def test_start_runs_first_on_the_loop_before_returning() -> None:
    ran: list[threading.Thread] = []

    async def first() -> None:
        ran.append(threading.current_thread())

    thread = LoopThread(name="lifecycle-tests").start(first())
    try:
        assert [t.name for t in ran] == ["lifecycle-tests"]
        assert thread.running
        assert thread.run(_loop_of_caller()) is thread.loop
    finally:
        thread.stop()
    assert not thread.running and thread.loop.is_closed()
    assert _loop_threads() == set()


def test_start_raises_what_first_raised_and_the_thread_still_stops() -> None:
    thread = LoopThread(name="lifecycle-tests")
    with pytest.raises(ValueError, match="boom"):
        thread.start(_boom())
    thread.stop()
    assert not thread.running and thread.loop.is_closed()


def test_stop_runs_last_then_cancels_the_rest() -> None:
    order: list[str] = []

    async def left_running() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            order.append("cancelled")
            raise

    async def last() -> None:
        order.append("last")

    thread = LoopThread(name="lifecycle-tests").start()
    thread.loop.call_soon_threadsafe(thread.loop.create_task, left_running())
    thread.run(asyncio.sleep(0))  # the task has started
    thread.stop(last())
    assert order == ["last", "cancelled"]
    assert not thread.running and thread.loop.is_closed()


def test_stop_raises_what_last_raised_after_stopping() -> None:
    thread = LoopThread(name="lifecycle-tests").start()
    with pytest.raises(ValueError, match="boom"):
        thread.stop(_boom())
    assert not thread.running and thread.loop.is_closed()


def test_a_stop_that_hangs_is_a_timeout_and_the_loop_still_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "DEFAULT_CALL_TIMEOUT", 0.2)
    thread = LoopThread(name="lifecycle-tests").start()
    with pytest.raises(TimeoutError, match=r"stop took over 0\.2 s"):
        thread.stop(asyncio.sleep(3600))
    assert not thread.running and thread.loop.is_closed()


def test_stop_from_its_own_loop_is_refused() -> None:
    thread = LoopThread(name="lifecycle-tests").start()
    try:

        async def stop_here() -> None:
            thread.stop()

        with pytest.raises(RuntimeError, match="called from its own loop"):
            thread.run(stop_here())
        assert thread.running
    finally:
        thread.stop()


def test_stop_of_a_thread_never_started_closes_its_loop() -> None:
    thread = LoopThread(name="lifecycle-tests")
    thread.stop(_boom())  # never run: closed, not awaited
    assert thread.loop.is_closed()
