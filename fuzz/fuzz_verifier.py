#!/usr/bin/env python3
"""Fuzz ``Verifier.verify`` as a whole, on fuzzed requests and header values.

Input: one flags byte, then latin-1 text split on NUL into: method, path and
query (after ``https://example.com``), body, then header name/value pairs (the
seeds are requests signed by hmacguard's ``Signer`` and the RFC 9421 B.2.5
example, so mutations start from requests that verify). Flags pick the
verifier's policy: bit 0 ``require_nonce``, bit 1 ``tag="fuzz"``, bit 2
``required_components=("@authority",)``, bit 3 passes ``body=None``.

Checks: only ``VerificationError`` subclasses escape; a request that verifies
names a key of the keyring; no input of at most 16 KiB takes more than 10 ms.

Run: ``python fuzz/fuzz_verifier.py [libFuzzer args] [corpus dir]``.
"""

from __future__ import annotations

import contextlib
import os

import atheris
from _harness import BUDGET_MAX_LEN, BUDGET_SECONDS, PLAIN_ENV, Budget, fuzz
from _harness import split as _split

with contextlib.nullcontext() if os.environ.get(PLAIN_ENV) else atheris.instrument_imports():
    from hmacguard import HMACKey, VerificationError, VerifiedSignature, Verifier

# Shared with fuzz/make_corpus.py, which signs the seed requests with these keys.
NOW = 1618884473
KEYS = (
    HMACKey("fuzz-key", b"k" * 32),
    HMACKey("fuzz-512", b"s" * 64, algorithm="hmac-sha512"),
    HMACKey(
        "test-shared-secret",
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==",
    ),
)
KEY_IDS = frozenset(key.key_id for key in KEYS)
VERIFIERS = [
    Verifier(
        list(KEYS),
        require_nonce=bool(policy & 1),
        tag="fuzz" if policy & 2 else None,
        required_components=("@authority",) if policy & 4 else None,
    )
    for policy in range(8)
]

_BUDGET = Budget(__file__)


def _timed(data: bytes) -> object:
    """Run ``_target`` on ``data`` within the time budget (see ``_harness``)."""
    return _BUDGET.timed(_target, data, BUDGET_SECONDS, BUDGET_MAX_LEN)


class BadVerification(AssertionError):
    """A request verified under a key the keyring does not hold."""


def _target(data: bytes) -> object:
    """Verify the request; return the ``VerifiedSignature`` or the ``VerificationError``."""
    flags, rest = _split(data)
    parts = rest.decode("latin-1").split("\x00")
    method, target, body = [*parts, "", "", ""][:3]
    pairs = parts[3:]
    headers = list(zip(pairs[0::2], pairs[1::2], strict=False))
    url = "https://example.com" + (target if target.startswith(("/", "?")) else "/" + target)
    verifier = VERIFIERS[flags % 8]
    try:
        return verifier.verify(
            method, url, headers, None if flags & 8 else body.encode("latin-1"), now=NOW
        )
    except VerificationError as exc:
        return exc


def _check(data: bytes) -> None:
    verified = _timed(data)
    if isinstance(verified, VerifiedSignature) and verified.key_id not in KEY_IDS:
        raise BadVerification(f"verified under unknown key {verified.key_id!r}")


def TestOneInput(data: bytes) -> None:
    """Run one input through the target within the time budget."""
    _check(data)


if __name__ == "__main__":
    fuzz(_target, TestOneInput)
