#!/usr/bin/env python3
"""Fuzz ``read_signatures`` (``hmacguard._signature_fields``): Signature-Input and Signature.

Input: one flags byte, then latin-1 text split on NUL into the Signature-Input
value and the Signature value; each is split on LF into header lines (a
repeated header). Flags: bit 0 drops Signature-Input, bit 1 drops Signature,
bit 2 asks only for signatures tagged ``fuzz``.

Checks: only ``MalformedSignature`` and ``MissingSignature`` escape; when the
canonical fast path accepts the fields, the full RFC 9651 path yields the same
candidates (label, components, parameters, MAC, ``@signature-params``); no
input of at most 16 KiB takes more than 10 ms.

Run: ``python fuzz/fuzz_signature_fields.py [libFuzzer args] [corpus dir]``.
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
    from hmacguard._errors import MalformedSignature, MissingSignature
    from hmacguard._signature_fields import Candidate, _fast, _full, read_signatures

MAX_SIGNATURES = 4
MAX_COMPONENTS = 32
MAX_FIELD_BYTES = 8192

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


class PathsDisagree(AssertionError):
    """The fast path and the full parser read the same fields differently."""


def _summary(candidate: Candidate) -> tuple[object, ...]:
    error = candidate.error
    return (
        candidate.label,
        tuple(c.identifier for c in candidate.covered.components),
        sorted((k, type(v).__name__, v) for k, v in candidate.params.items()),
        candidate.signature,
        candidate.signature_params,
        None if error is None else type(error),
    )


def _decode(data: bytes) -> tuple[dict[str, list[str]], str | None]:
    flags, rest = _split(data)
    inputs, signatures = [*rest.decode("latin-1").split("\x00"), "", ""][:2]
    headers: dict[str, list[str]] = {}
    if not flags & 1:
        headers["signature-input"] = inputs.split("\n")
    if not flags & 2:
        headers["signature"] = signatures.split("\n")
    return headers, "fuzz" if flags & 4 else None


def _target(data: bytes) -> object:
    """Read the signatures; return the candidates or the error."""
    headers, tag = _decode(data)
    try:
        return read_signatures(
            headers,
            max_signatures=MAX_SIGNATURES,
            max_components=MAX_COMPONENTS,
            max_field_bytes=MAX_FIELD_BYTES,
            tag=tag,
        )
    except (MalformedSignature, MissingSignature) as exc:
        return exc


def _check(data: bytes) -> None:
    candidates = _timed(data)
    headers, tag = _decode(data)
    if not isinstance(candidates, list) or tag is not None:
        return
    joined_inputs = ", ".join(headers["signature-input"])
    joined_signatures = ", ".join(headers["signature"])
    fast = _fast(joined_inputs, joined_signatures, MAX_COMPONENTS)
    if fast is None:
        return
    full = _full(joined_inputs, joined_signatures, MAX_SIGNATURES, MAX_COMPONENTS, None)
    if [_summary(c) for c in fast] != [_summary(c) for c in full]:
        raise PathsDisagree(f"{joined_inputs!r} / {joined_signatures!r}")
    if [_summary(c) for c in candidates] != [_summary(c) for c in full]:
        raise PathsDisagree(f"read_signatures differs for {joined_inputs!r}")


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
