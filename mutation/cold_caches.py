"""A pytest plugin for mutation runs: every test starts with empty caches.

hmacguard remembers validated component lists, interned components, canonical
``Signature-Input`` heads and digest coverage in module-level caches. mutmut
decides which tests to run against a mutant from the functions each test
called during one statistics run, in one process: a test that found a list
already cached never called the code that builds it, so a mutant there would
not be tested with it, and whether a mutant is caught would depend on test
order. Emptying the caches before each test makes every test call what it
needs, in any order. pyproject.toml's ``[tool.mutmut]`` loads this with
``-p mutation.cold_caches``; the caches only save time, so behaviour is the same.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _cold_caches() -> None:
    from hmacguard import _components, _signature_fields, _verifier  # noqa: PLC0415

    for cache in (
        _components._INTERNED,
        _signature_fields._COMPONENT_CACHE,
        _signature_fields._HEAD_CACHE,
        _verifier._DIGEST_COVERAGE,
    ):
        cache.clear()
