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

import atheris
from _harness import BUDGET_MAX_LEN, BUDGET_SECONDS, PLAIN_ENV, Budget, fuzz
from _harness import split as _split

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

_BUDGET = Budget(__file__)


def _timed(data: bytes) -> object:
    """Run ``_target`` on ``data`` within the time budget (see ``_harness``)."""
    return _BUDGET.timed(_target, data, BUDGET_SECONDS, BUDGET_MAX_LEN)


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


if __name__ == "__main__":
    fuzz(_target, TestOneInput)
