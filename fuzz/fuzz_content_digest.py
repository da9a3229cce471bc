#!/usr/bin/env python3
"""Fuzz the Content-Digest parser and checkers (``hmacguard._content_digest``).

Input: one flags byte, then latin-1 text split on the first NUL into the
Content-Digest field value and the body. ``flags`` (plus one) is the chunk
size fed to ``DigestVerifier``.

Checks: only ``MalformedDigest`` and ``DigestMismatch`` escape;
``verify_content_digest`` and the chunked ``DigestVerifier`` agree (same
error type, or both pass); a field that passes holds a correct digest of an
Active algorithm; no input of at most 16 KiB takes more than 10 ms.

Run: ``python fuzz/fuzz_content_digest.py [libFuzzer args] [corpus dir]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable

import atheris

PLAIN_ENV = "HMACGUARD_FUZZ_UNINSTRUMENTED"

with contextlib.nullcontext() if os.environ.get(PLAIN_ENV) else atheris.instrument_imports():
    from hmacguard._content_digest import (
        DigestVerifier,
        parse_content_digest,
        verify_content_digest,
    )
    from hmacguard._errors import DigestMismatch, MalformedDigest

OURS = (MalformedDigest, DigestMismatch)

BUDGET_SECONDS = 0.010
BUDGET_MAX_LEN = 16384
TRIES = 5
_worker: subprocess.Popen[bytes] | None = None


class BudgetExceeded(AssertionError):
    """An input of at most 16 KiB took longer than the 10 ms budget, uninstrumented."""


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


class CheckersDisagree(AssertionError):
    """The one-shot and the chunked digest checks gave different answers."""


def _outcome(check: Callable[[], object]) -> type[Exception] | None:
    try:
        check()
    except OURS as exc:
        return type(exc)
    return None


def _chunked(field: str, body: bytes, size: int) -> None:
    checker = DigestVerifier(field)
    for start in range(0, len(body), size):
        checker.update(memoryview(body)[start : start + size])
    checker.verify()


def _decode(data: bytes) -> tuple[str, bytes, int]:
    flags, rest = _split(data)
    field, _, body = rest.decode("latin-1").partition("\x00")
    return field, body.encode("latin-1"), flags


def _target(data: bytes) -> object:
    """Check the body against the field in one go; return None or the error type."""
    field, body, _ = _decode(data)
    return _outcome(lambda: verify_content_digest(field, body))


def _check(data: bytes) -> None:
    one_shot = _timed(data)
    field, body, flags = _decode(data)
    chunked = _outcome(lambda: _chunked(field, body, flags + 1))
    if one_shot is not chunked:
        raise CheckersDisagree(f"{field!r}: one-shot {one_shot}, chunked {chunked}")
    if one_shot is None:
        expected = parse_content_digest(field)
        for algorithm, digest in expected.items():
            if hashlib.new(algorithm.replace("-", ""), body).digest() != digest:
                raise CheckersDisagree(f"{field!r} passed with a wrong {algorithm} digest")


def TestOneInput(data: bytes) -> None:
    """Run one input through the target within the time budget."""
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
