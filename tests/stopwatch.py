"""Timing a block of a test on a busy machine: its wall time, and that time less
the moments the OS did not run this process at all.

A test that bounds how long something takes (a timeout honoured, a call that
does not wait twice) has a lower bound, which shows the wait happened, and an
upper bound, which shows it ended. On a loaded host the process can be left
unscheduled for tenths of a second, which only the upper bound feels: it is
checked against :attr:`Stopwatch.running`, which leaves those stalls out,
while the lower bound keeps the wall time.
"""

from __future__ import annotations

import threading
import time


class StallMeter:
    """Measures when the OS left this process unscheduled (a busy machine), to discount it.

    A thread wakes every millisecond and records each wake-up more than
    ``THRESHOLD`` late: time in which the OS ran something else. The event loop's
    own work does not count: it gives up the GIL within the switch interval (5 ms),
    and only the lateness beyond that is recorded. On a quiet machine nothing is.
    """

    PERIOD = 0.001
    THRESHOLD = 0.015
    GIL = 0.005

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> StallMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(self.PERIOD)
            now = time.monotonic()
            if now - last - self.PERIOD > self.THRESHOLD:
                self.stalls.append((last + self.PERIOD + self.GIL, now))
            last = now

    def within(self, start: float, end: float) -> float:
        """Seconds of stall between ``start`` and ``end``."""
        return sum(max(0.0, min(end, until) - max(start, since)) for since, until in self.stalls)

    def longest(self) -> float:
        return max((until - since for since, until in self.stalls), default=0.0)


class Stopwatch:
    """``with Stopwatch() as watch:`` times the block: ``watch.elapsed`` (wall time,
    ``time.monotonic``, as ``loop.time()``) and ``watch.running`` (less the stalls a
    :class:`StallMeter` saw)."""

    def __init__(self) -> None:
        self._meter = StallMeter()
        self.started = self.ended = 0.0

    def __enter__(self) -> Stopwatch:
        self._meter.__enter__()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.ended = time.monotonic()
        self._meter.__exit__()

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    @property
    def running(self) -> float:
        return self.elapsed - self._meter.within(self.started, self.ended)
