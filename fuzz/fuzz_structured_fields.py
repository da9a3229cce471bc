#!/usr/bin/env python3
"""Fuzz the RFC 9651 Structured Field parser (``hmacguard._structured_fields``).

Input: one flags byte, then the field value. ``flags % 4`` picks the parser
(Item, List, Dictionary, Inner List), bit 2 turns on ``reject_duplicates``,
bit 3 decodes the value as UTF-8 (with replacement) instead of latin-1.

Checks: only ``StructuredFieldError`` escapes; a value that parses serialises,
and the serialisation parses back to an equal value and serialises to itself
(round trip); no input of at most 16 KiB takes more than 10 ms.

Run: ``python fuzz/fuzz_structured_fields.py [libFuzzer args] [corpus dir]``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable

import atheris

PLAIN_ENV = "HMACGUARD_FUZZ_UNINSTRUMENTED"

with contextlib.nullcontext() if os.environ.get(PLAIN_ENV) else atheris.instrument_imports():
    from hmacguard._structured_fields import (
        StructuredFieldError,
        parse_dictionary,
        parse_inner_list,
        parse_item,
        parse_list,
        serialize_dictionary,
        serialize_inner_list,
        serialize_item,
        serialize_list,
    )

BUDGET_SECONDS = 0.010
BUDGET_MAX_LEN = 16384
TRIES = 5
_worker: subprocess.Popen[bytes] | None = None


class BudgetExceeded(AssertionError):
    """An input of at most 16 KiB took longer than the 10 ms budget, uninstrumented."""


class RoundTripFailed(AssertionError):
    """A parsed value did not survive serialise-then-parse unchanged."""


def _best_time(check: Callable[[bytes], object], data: bytes) -> float:
    best = float("inf")
    for _ in range(TRIES):
        start = time.perf_counter()
        check(data)
        best = min(best, time.perf_counter() - start)
    return best


def _uninstrumented_time(data: bytes) -> float:
    """Time ``data`` in a helper process running this harness without coverage instrumentation.

    Instrumented code runs several times slower, so an overrun seen here is
    only a candidate; the budget applies to the library as users run it.
    """
    global _worker  # noqa: PLW0603  one helper process, started on the first candidate
    if _worker is None:
        _worker = subprocess.Popen(  # noqa: S603  our own interpreter and harness
            [sys.executable, __file__, "--timing-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, PLAIN_ENV: "1"},
        )
    if _worker.stdin is None or _worker.stdout is None:
        raise RuntimeError("the timing helper has no pipes")
    _worker.stdin.write(len(data).to_bytes(4, "big") + data)
    _worker.stdin.flush()
    return float(_worker.stdout.readline())


def _timing_worker(check: Callable[[bytes], object]) -> None:
    """Serve ``_uninstrumented_time``: read length-prefixed inputs, answer their best time."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(4):
        data = stdin.read(int.from_bytes(header, "big"))
        stdout.write(f"{_best_time(check, data)!r}\n".encode())
        stdout.flush()


def _split(data: bytes) -> tuple[int, bytes]:
    """The flags byte and the rest of the input (the harness's format, see the module doc)."""
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeBytes(1)
    return (flags[0] if flags else 0), fdp.ConsumeBytes(fdp.remaining_bytes())


def _timed(data: bytes) -> object:
    """Run ``_target`` on ``data``; an input of at most 16 KiB over budget is a finding."""
    start = time.perf_counter()
    outcome = _target(data)
    elapsed = time.perf_counter() - start
    if elapsed > BUDGET_SECONDS and len(data) <= BUDGET_MAX_LEN:
        # A candidate: time it again, without instrumentation, best of a few tries
        # (a GC pause or another process can slow one run).
        plain = os.environ.get(PLAIN_ENV)
        best = _best_time(_target, data) if plain else _uninstrumented_time(data)
        if best > BUDGET_SECONDS:
            raise BudgetExceeded(f"{len(data)}-byte input took {best * 1000:.2f} ms (best)")
    return outcome


PARSERS: tuple[tuple[Callable[..., object], Callable[..., str], bool], ...] = (
    (parse_item, serialize_item, False),
    (parse_list, serialize_list, True),
    (parse_dictionary, serialize_dictionary, True),
    (parse_inner_list, serialize_inner_list, False),
)


def _decode(data: bytes) -> tuple[str, int]:
    flags, raw = _split(data)
    return (raw.decode("utf-8", "replace") if flags & 8 else raw.decode("latin-1")), flags


def _target(data: bytes) -> object:
    """Parse the field value; return the value or the ``StructuredFieldError``."""
    text, flags = _decode(data)
    parse, _, takes_duplicates = PARSERS[flags % 4]
    kwargs = {"reject_duplicates": bool(flags & 4)} if takes_duplicates else {}
    try:
        return parse(text, **kwargs)
    except StructuredFieldError as exc:
        return exc


def _check(data: bytes) -> None:
    value = _timed(data)
    if isinstance(value, StructuredFieldError):
        return
    text, flags = _decode(data)
    parse, serialize, _ = PARSERS[flags % 4]
    serialised = serialize(value)
    again = parse(serialised)
    if again != value or serialize(again) != serialised:
        raise RoundTripFailed(f"{text!r} -> {value!r} -> {serialised!r} -> {again!r}")


def TestOneInput(data: bytes) -> None:
    """Run one input through the parser within the time budget."""
    _check(data)


def main() -> None:
    """Fuzz with libFuzzer's command line (``-max_len``, ``-max_total_time``, corpus dirs)."""
    if sys.argv[1:] == ["--timing-worker"]:
        _timing_worker(_target)
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
