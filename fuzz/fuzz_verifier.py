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
import subprocess
import sys
import time
from collections.abc import Callable

import atheris

PLAIN_ENV = "HMACGUARD_FUZZ_UNINSTRUMENTED"

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


def main() -> None:
    """Fuzz with libFuzzer's command line (``-max_len``, ``-max_total_time``, corpus dirs)."""
    if sys.argv[1:] == ["--timing-worker"]:
        _timing_worker(_target)
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
