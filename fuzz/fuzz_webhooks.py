#!/usr/bin/env python3
"""Fuzz each webhook profile's header parsing and verification (``hmacguard.webhooks``).

Input: one flags byte, then latin-1 text split on NUL into the body and then
header name/value pairs. ``flags % 4`` picks the profile (Standard Webhooks,
Stripe, GitHub, Slack, with the secrets of tests/vectors/webhooks.json and the
clock at the vector's timestamp); bit 2 gives GitHub ``allow_sha1=True``.

Checks: ``profile.verify(headers, body)`` lets only ``VerificationError``
subclasses escape (bodies are always bytes); when ``check_headers`` rejects the
headers, ``verify`` rejects them with the same error type; no input of at most
16 KiB takes more than 10 ms.

Run: ``python fuzz/fuzz_webhooks.py [libFuzzer args] [corpus dir]``.
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
    from hmacguard import VerificationError
    from hmacguard.webhooks import GitHub, Slack, StandardWebhooks, Stripe, WebhookProfile

# The secrets and timestamps of tests/vectors/webhooks.json (fuzz/make_corpus.py reads that file).
PROFILES: tuple[tuple[WebhookProfile, float], ...] = (
    (StandardWebhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), 1614265330),
    (Stripe("whsec_test_secret_for_vectors"), 1700000000),
    (GitHub("It's a Secret to Everybody"), 1700000000),
    (Slack("8f742231b10e8888abcd99yyyzzz85a5"), 1531420618),
    (GitHub("It's a Secret to Everybody", allow_sha1=True), 1700000000),
)

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


class InconsistentProfile(AssertionError):
    """check_headers and verify disagree about headers alone."""


def _decode(data: bytes) -> tuple[WebhookProfile, float, list[tuple[str, str]], bytes]:
    flags, rest = _split(data)
    parts = rest.decode("latin-1").split("\x00")
    pairs = parts[1:]
    choice = flags % 4
    if choice == 2 and flags & 4:
        choice = 4
    profile, now = PROFILES[choice]
    headers = list(zip(pairs[0::2], pairs[1::2], strict=False))
    return profile, now, headers, parts[0].encode("latin-1")


def _target(data: bytes) -> object:
    """Verify the delivery; return the ``VerifiedWebhook`` or the ``VerificationError``."""
    profile, now, headers, body = _decode(data)
    try:
        return profile.verify(headers, body, now=now)
    except VerificationError as exc:
        return exc


def _check(data: bytes) -> None:
    outcome = _timed(data)
    profile, now, headers, _ = _decode(data)
    try:
        profile.check_headers(headers, now=now)
    except VerificationError as exc:
        if type(outcome) is not type(exc):
            raise InconsistentProfile(f"check_headers {type(exc)}, verify {outcome!r}") from exc


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
