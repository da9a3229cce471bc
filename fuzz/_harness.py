"""What every fuzz harness shares: the input's flags byte, and the time budget.

The budget (issue 8): no input of at most 16 KiB may take more than 10 ms.
Coverage instrumentation makes code several times slower, so an overrun seen
while fuzzing is only a candidate: it is timed again, best of a few tries, in
a helper process running the same harness without instrumentation
(``--timing-worker``), and only an overrun there is a finding. That time is
the thread's CPU time, not the wall clock: on a busy machine (two harnesses
and a test run on two cores) a wall-clock timing measures the scheduler, and
once turned a 1.7 ms parse into a 16.8 ms "finding".
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import atheris

#: Set in the environment: import hmacguard without coverage instrumentation.
PLAIN_ENV = "HMACGUARD_FUZZ_UNINSTRUMENTED"
BUDGET_SECONDS = 0.010
BUDGET_MAX_LEN = 16384
TRIES = 5

Target = Callable[[bytes], object]


class BudgetExceeded(AssertionError):
    """An input of at most 16 KiB took longer than the 10 ms budget, uninstrumented."""


def split(data: bytes) -> tuple[int, bytes]:
    """The flags byte and the rest of the input (each harness's format)."""
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeBytes(1)
    return (flags[0] if flags else 0), fdp.ConsumeBytes(fdp.remaining_bytes())


def best_time(check: Target, data: bytes) -> float:
    """The best of ``TRIES`` timings of ``check(data)``, in CPU seconds of this thread."""
    best = float("inf")
    for _ in range(TRIES):
        start = time.thread_time()
        check(data)
        best = min(best, time.thread_time() - start)
    return best


class Budget:
    """The time budget of one harness (``harness``: its file, run again as the timing helper)."""

    def __init__(self, harness: str) -> None:
        self._harness = harness
        self._worker: subprocess.Popen[bytes] | None = None

    def timed(
        self,
        target: Target,
        data: bytes,
        seconds: float = BUDGET_SECONDS,
        max_len: int = BUDGET_MAX_LEN,
    ) -> object:
        """Run ``target`` on ``data``; an input of at most ``max_len`` over budget is a finding."""
        start = time.perf_counter()
        outcome = target(data)
        elapsed = time.perf_counter() - start
        if elapsed > seconds and len(data) <= max_len:
            # A candidate: time it again, without instrumentation, best of a few
            # tries (a GC pause or another process can slow one run).
            plain = os.environ.get(PLAIN_ENV)
            best = best_time(target, data) if plain else self._uninstrumented_time(data)
            if best > seconds:
                raise BudgetExceeded(f"{len(data)}-byte input took {best * 1000:.2f} ms (best)")
        return outcome

    def _uninstrumented_time(self, data: bytes) -> float:
        """Time ``data`` in the helper process (started on the first candidate)."""
        if self._worker is None:
            self._worker = subprocess.Popen(  # noqa: S603  our own interpreter and harness
                [sys.executable, self._harness, "--timing-worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, PLAIN_ENV: "1"},
            )
        worker = self._worker
        if worker.stdin is None or worker.stdout is None:
            raise RuntimeError("the timing helper has no pipes")
        worker.stdin.write(len(data).to_bytes(4, "big") + data)
        worker.stdin.flush()
        return float(worker.stdout.readline())


def fuzz(target: Target, test_one_input: Callable[[bytes], None]) -> None:
    """A harness run as a script: fuzz ``test_one_input`` with libFuzzer's command
    line (``-max_len``, ``-max_total_time``, corpus dirs), or, with
    ``--timing-worker``, be the timing helper for ``target``."""
    if sys.argv[1:] == ["--timing-worker"]:
        serve(target)
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def serve(check: Target) -> None:
    """Be the timing helper: read length-prefixed inputs, answer their best time."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(4):
        data = stdin.read(int.from_bytes(header, "big"))
        stdout.write(f"{best_time(check, data)!r}\n".encode())
        stdout.flush()
