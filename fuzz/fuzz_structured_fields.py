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
from collections.abc import Callable

import atheris
from _harness import BUDGET_MAX_LEN, BUDGET_SECONDS, PLAIN_ENV, Budget, fuzz
from _harness import split as _split

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


class RoundTripFailed(AssertionError):
    """A parsed value did not survive serialise-then-parse unchanged."""


_BUDGET = Budget(__file__)


def _timed(data: bytes) -> object:
    """Run ``_target`` on ``data`` within the time budget (see ``_harness``)."""
    return _BUDGET.timed(_target, data, BUDGET_SECONDS, BUDGET_MAX_LEN)


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


if __name__ == "__main__":
    fuzz(_target, TestOneInput)
