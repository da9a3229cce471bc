"""Shared fixtures: vectors loaded from tests/vectors, keys and a fixed clock."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from _vectors import load_vector
from hmacguard import HMACKey


@pytest.fixture(scope="session")
def rfc9421() -> Any:
    """The RFC 9421 Appendix B vectors."""
    return load_vector("rfc9421.json")


@pytest.fixture(scope="session")
def rfc_secret(rfc9421: Any) -> bytes:
    """The RFC 9421 B.1.5 shared secret, decoded."""
    return base64.b64decode(rfc9421["shared_secret"]["base64"])


@pytest.fixture
def key() -> HMACKey:
    """A 32-byte test key called client-1."""
    return HMACKey("client-1", b"k" * 32)


@pytest.fixture
def other_key() -> HMACKey:
    """A different 32-byte key under the same id, for wrong-secret cases."""
    return HMACKey("client-1", b"x" * 32)
