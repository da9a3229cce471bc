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

import atheris
from _harness import BUDGET_MAX_LEN, BUDGET_SECONDS, PLAIN_ENV, Budget, fuzz
from _harness import split as _split

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

_BUDGET = Budget(__file__)


def _timed(data: bytes) -> object:
    """Run ``_target`` on ``data`` within the time budget (see ``_harness``)."""
    return _BUDGET.timed(_target, data, BUDGET_SECONDS, BUDGET_MAX_LEN)


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


if __name__ == "__main__":
    fuzz(_target, TestOneInput)
