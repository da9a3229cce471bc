#!/usr/bin/env python3
"""Fuzz the signature base builder (``_signature_base`` with ``_components``).

Input: one flags byte, then latin-1 text split on NUL into: method, the URL
after ``https://`` (authority, path, query), the covered components as an
Inner List (``("@method" "x-dict";sf "@query-param";name="a")``), then header
name/value pairs (a value may hold CR/LF, to reach obs-fold handling).
Flag bit 0 declares ``x-dict``/``x-list``/``x-item`` as structured fields.

Checks: only ``StructuredFieldError`` (the component list), ``MalformedSignature``
and ``InvalidSignature`` escape (a URL that is not absolute is the caller's
``ValueError`` and skipped); a base that builds is ASCII with one line per
component plus ``@signature-params``, and equals what the careful per-component
path builds; no input of at most 16 KiB takes more than 10 ms.

Run: ``python fuzz/fuzz_signature_base.py [libFuzzer args] [corpus dir]``.
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
    from hmacguard._components import KNOWN_STRUCTURED_FIELDS, parse_component, structured_types
    from hmacguard._errors import InvalidSignature, MalformedSignature
    from hmacguard._message import Message
    from hmacguard._signature_base import _careful_base, build_signature_base
    from hmacguard._structured_fields import (
        StructuredFieldError,
        parse_inner_list,
        serialize_inner_list,
    )

SF_TYPES = structured_types({"x-dict": "dictionary", "x-list": "list", "x-item": "item"})

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


class BadBase(AssertionError):
    """A signature base was built that breaks its own invariants."""


OURS = (StructuredFieldError, MalformedSignature, InvalidSignature)


def _target(data: bytes) -> object:
    """Build the base; return (message, components, params, sf_types, base), an error, or None."""
    flags, rest = _split(data)
    parts = rest.decode("latin-1").split("\x00")
    method, after_scheme, covered = [*parts, "", "", ""][:3]
    pairs = parts[3:]
    headers = list(zip(pairs[0::2], pairs[1::2], strict=False))
    sf_types = SF_TYPES if flags & 1 else KNOWN_STRUCTURED_FIELDS
    try:
        message = Message(method, "https://" + after_scheme, headers)
    except ValueError:
        return None  # not an absolute URL: the server builds the URL, not the attacker
    try:
        inner = parse_inner_list(covered)
        components = [parse_component(item) for item in inner.items]
        params = serialize_inner_list(inner)
        base = build_signature_base(message, components, params, sf_types)
    except OURS as exc:
        return exc
    return message, components, params, sf_types, base


def _check(data: bytes) -> None:
    outcome = _timed(data)
    if not isinstance(outcome, tuple):
        return
    message, components, params, sf_types, base = outcome
    text = base.decode("ascii")
    if text.count("\n") != len(components) or "\r" in text:
        raise BadBase(f"wrong line structure: {text!r}")
    if not text.endswith(f'"@signature-params": {params}'):
        raise BadBase(f"does not end with the parameters: {text!r}")
    careful = _careful_base(message, components, params, sf_types)
    if careful != text:
        raise BadBase(f"fast {text!r} != careful {careful!r}")


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
