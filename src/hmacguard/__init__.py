"""hmacguard: HMAC request signing for Python web APIs.

RFC 9421 HTTP Message Signatures (``hmac-sha256``) with RFC 9530
``Content-Digest``. The core, imported here, needs only the standard library:
it signs and verifies plain values (method, URL, headers, body) and does no I/O.

Two names need an extra and are imported on first use, so ``import hmacguard``
never loads a third-party package: :class:`HMACAuth` (``hmacguard[httpx]``) and
:class:`RedisNonceStore` (``hmacguard[redis]``).
"""

from __future__ import annotations

import importlib
import typing

from ._algorithms import MIN_KEY_BYTES as MIN_KEY_BYTES
from ._client import RedirectWarning as RedirectWarning
from ._content_digest import DigestVerifier as DigestVerifier
from ._content_digest import make_content_digest as make_content_digest
from ._content_digest import verify_content_digest as verify_content_digest
from ._errors import BodyTimeout as BodyTimeout
from ._errors import BodyTooLarge as BodyTooLarge
from ._errors import DigestMismatch as DigestMismatch
from ._errors import Expired as Expired
from ._errors import InsufficientCoverage as InsufficientCoverage
from ._errors import InvalidParameters as InvalidParameters
from ._errors import InvalidSignature as InvalidSignature
from ._errors import KeyLookupFailed as KeyLookupFailed
from ._errors import MalformedDigest as MalformedDigest
from ._errors import MalformedRequest as MalformedRequest
from ._errors import MalformedSignature as MalformedSignature
from ._errors import MissingSignature as MissingSignature
from ._errors import NonceStoreUnavailable as NonceStoreUnavailable
from ._errors import NotYetValid as NotYetValid
from ._errors import Replayed as Replayed
from ._errors import UnknownKey as UnknownKey
from ._errors import VerificationError as VerificationError
from ._errors import VerificationUnavailable as VerificationUnavailable
from ._keys import HMACKey as HMACKey
from ._keys import Keyring as Keyring
from ._middleware import SignatureMiddleware as SignatureMiddleware
from ._nonce_store import MemoryNonceStore as MemoryNonceStore
from ._nonce_store import NonceStore as NonceStore
from ._nonce_store import nonce_key as nonce_key
from ._signer import DEFAULT_COMPONENTS as DEFAULT_COMPONENTS
from ._signer import Signer as Signer
from ._verifier import DEFAULT_REQUIRED_COMPONENTS as DEFAULT_REQUIRED_COMPONENTS
from ._verifier import VerifiedSignature as VerifiedSignature
from ._verifier import Verifier as Verifier

if typing.TYPE_CHECKING:
    from ._httpx_auth import HMACAuth as HMACAuth
    from ._redis_nonce_store import RedisNonceStore as RedisNonceStore

__version__ = "0.1.0.dev0"

# Names whose modules import an extra: loaded by __getattr__ on first use, and
# left out of __all__, so that `from hmacguard import *` works without extras.
_LAZY = {"HMACAuth": "._httpx_auth", "RedisNonceStore": "._redis_nonce_store"}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hmacguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_COMPONENTS",
    "DEFAULT_REQUIRED_COMPONENTS",
    "MIN_KEY_BYTES",
    "BodyTimeout",
    "BodyTooLarge",
    "DigestMismatch",
    "DigestVerifier",
    "Expired",
    "HMACKey",
    "InsufficientCoverage",
    "InvalidParameters",
    "InvalidSignature",
    "KeyLookupFailed",
    "Keyring",
    "MalformedDigest",
    "MalformedRequest",
    "MalformedSignature",
    "MemoryNonceStore",
    "MissingSignature",
    "NonceStore",
    "NonceStoreUnavailable",
    "NotYetValid",
    "RedirectWarning",
    "Replayed",
    "SignatureMiddleware",
    "Signer",
    "UnknownKey",
    "VerificationError",
    "VerificationUnavailable",
    "VerifiedSignature",
    "Verifier",
    "make_content_digest",
    "nonce_key",
    "verify_content_digest",
]
