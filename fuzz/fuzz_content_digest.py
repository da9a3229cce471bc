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
from collections.abc import Callable

import atheris
from _harness import BUDGET_MAX_LEN, BUDGET_SECONDS, PLAIN_ENV, Budget, fuzz
from _harness import split as _split

with contextlib.nullcontext() if os.environ.get(PLAIN_ENV) else atheris.instrument_imports():
    from hmacguard._content_digest import (
        DigestVerifier,
        parse_content_digest,
        verify_content_digest,
    )
    from hmacguard._errors import DigestMismatch, MalformedDigest

OURS = (MalformedDigest, DigestMismatch)

_BUDGET = Budget(__file__)


def _timed(data: bytes) -> object:
    """Run ``_target`` on ``data`` within the time budget (see ``_harness``)."""
    return _BUDGET.timed(_target, data, BUDGET_SECONDS, BUDGET_MAX_LEN)


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


if __name__ == "__main__":
    fuzz(_target, TestOneInput)
