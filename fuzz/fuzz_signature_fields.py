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

import atheris
from _harness import BUDGET_MAX_LEN, BUDGET_SECONDS, PLAIN_ENV, Budget, fuzz
from _harness import split as _split

with contextlib.nullcontext() if os.environ.get(PLAIN_ENV) else atheris.instrument_imports():
    from hmacguard._errors import MalformedSignature, MissingSignature
    from hmacguard._signature_fields import Candidate, _fast, _full, read_signatures

MAX_SIGNATURES = 4
MAX_COMPONENTS = 32
MAX_FIELD_BYTES = 8192

_BUDGET = Budget(__file__)


def _timed(data: bytes) -> object:
    """Run ``_target`` on ``data`` within the time budget (see ``_harness``)."""
    return _BUDGET.timed(_target, data, BUDGET_SECONDS, BUDGET_MAX_LEN)


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


if __name__ == "__main__":
    fuzz(_target, TestOneInput)
