"""Deadlines: one timer per event loop cancels body reads that outlive the timeout."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest

from hmacguard import BodyTimeout
from hmacguard._deadlines import Deadlines, Watch
from hmacguard._middleware import _watched

TIMEOUT = 0.05


async def _read(deadlines: Deadlines, stall: float) -> Watch:
    """A body read that takes ``stall`` seconds, watched; returns its watch."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    watch = deadlines.watch(loop, task)
    try:
        await asyncio.sleep(stall)
    except asyncio.CancelledError:
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
    finally:
        deadlines.finish(watch)
    return watch


async def test_a_read_past_its_deadline_is_cancelled() -> None:
    """A read still running at its deadline has expired set and its task cancelled."""
    deadlines = Deadlines(TIMEOUT)
    started = asyncio.get_running_loop().time()
    watch = await _read(deadlines, stall=5.0)
    assert watch.expired
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_read_that_finishes_in_time_is_left_alone() -> None:
    """A read that ends before its deadline is never cancelled, even after the deadline passes."""
    deadlines = Deadlines(TIMEOUT)
    watch = await _read(deadlines, stall=0.0)
    await asyncio.sleep(TIMEOUT * 3)  # the sweep runs and finds nothing to cancel
    assert not watch.expired
    assert not watch.queue


async def test_finished_reads_do_not_pile_up() -> None:
    """Reads that finish in order leave the queue at once: it stays empty under load."""
    deadlines = Deadlines(30.0)
    watches = [await _read(deadlines, stall=0.0) for _ in range(1000)]
    assert not watches[-1].queue
    assert not any(watch.expired for watch in watches)


async def test_a_stalled_read_does_not_affect_the_reads_behind_it() -> None:
    """Only the stalled read is cancelled; quick reads started after it complete normally."""
    deadlines = Deadlines(0.5)  # the quick reads must all run before it: room for a busy host
    stalled = asyncio.create_task(_read(deadlines, stall=5.0))
    await asyncio.sleep(0)
    quick = [await _read(deadlines, stall=0.0) for _ in range(10)]
    assert len(quick[0].queue) == 11  # queued behind the stalled read until it leaves
    assert (await stalled).expired
    assert not any(watch.expired for watch in quick)
    assert not quick[0].queue


async def test_reads_queued_behind_a_stalled_one_let_go_of_their_tasks() -> None:
    """Finished reads behind a stalled one stay queued until it leaves, but hold no
    task: one slow client must not keep every later request's task alive."""
    import gc  # noqa: PLC0415  (this test only)
    import weakref  # noqa: PLC0415

    deadlines = Deadlines(30.0)
    stalled = asyncio.create_task(_read(deadlines, stall=5.0))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(_read(deadlines, stall=0.0)) for _ in range(50)]
    watches = [await task for task in tasks]
    refs = [weakref.ref(task) for task in tasks]
    del tasks
    gc.collect()
    assert len(watches[0].queue) == 51  # still queued behind the stalled read
    assert all(watch.task is None for watch in watches)
    # The finished tasks are gone, but for the last one awaited, which asyncio's
    # own wake-up of this task may still hold for a moment (not the queue).
    assert sum(ref() is not None for ref in refs) <= 1
    stalled.cancel()


async def test_reads_started_later_get_their_own_full_timeout() -> None:
    """A read that starts near another's deadline is not cut short by that deadline."""
    deadlines = Deadlines(1.0)
    loop = asyncio.get_running_loop()
    first_done = asyncio.Event()

    async def second_read() -> Watch:
        task = asyncio.current_task()
        assert task is not None
        watch = deadlines.watch(loop, task)
        try:
            await first_done.wait()  # ends just after the first read's deadline has passed
        finally:
            deadlines.finish(watch)
        return watch

    first = asyncio.create_task(_read(deadlines, stall=30.0))
    await asyncio.sleep(0.75)
    second = asyncio.create_task(second_read())
    first_watch = await first
    first_done.set()
    second_watch = await second
    assert first_watch.expired
    # Its own full timeout, not what was left of the first read's.
    assert second_watch.deadline >= first_watch.deadline + 0.7
    assert not second_watch.expired


def test_each_event_loop_has_its_own_queue() -> None:
    """One Deadlines serves successive event loops (as tests and reloads create them)."""
    deadlines = Deadlines(TIMEOUT)
    for _ in range(3):
        assert asyncio.run(_read(deadlines, stall=5.0)).expired
        assert not asyncio.run(_read(deadlines, stall=0.0)).expired


@pytest.mark.parametrize("concurrent", [2, 50])
async def test_concurrent_stalled_reads_all_expire(concurrent: int) -> None:
    """Every stalled read among many concurrent ones is cancelled, each within the timeout."""
    deadlines = Deadlines(TIMEOUT)
    started = asyncio.get_running_loop().time()
    watches = await asyncio.gather(*(_read(deadlines, stall=5.0) for _ in range(concurrent)))
    assert all(watch.expired for watch in watches)
    assert asyncio.get_running_loop().time() - started < 1.0


@pytest.mark.skipif(not hasattr(asyncio.Task, "uncancel"), reason="Task.uncancel: Python 3.11+")
async def test_an_outside_cancellation_in_the_deadlines_turn_is_not_lost() -> None:
    """The deadline and an outside cancel (shutdown, an outer timeout) in one turn:
    the body timeout is taken back, the outside cancellation still ends the task."""
    loop = asyncio.get_running_loop()
    reached: list[str] = []

    async def handler() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop.call_soon(task.cancel)  # from outside, in the turn the deadline (now) passes
        try:
            await _watched(
                Deadlines(0.0), loop, task, loop.create_future(), lambda: BodyTimeout("slow")
            )
        except BodyTimeout:
            reached.append("timeout")
        await asyncio.sleep(0)
        reached.append("ran on")

    task = asyncio.ensure_future(handler())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reached == []


def test_loops_in_many_threads_share_one_deadlines() -> None:
    """One middleware serves loops in several threads at once (a TestClient per
    test, each with its loop): their loops come and go while others watch reads,
    and no watch fails (it once raised "dictionary changed size during
    iteration", or a KeyError for a closed loop two threads both forgot)."""
    deadlines = Deadlines(10.0)
    errors: list[BaseException] = []

    async def one_read() -> None:
        await _read(deadlines, stall=0)

    def worker() -> None:
        for _ in range(150):
            try:
                asyncio.run(one_read())
            except BaseException as exc:  # collected for the assertion
                errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(deadlines._queues) <= 6  # closed loops are forgotten
