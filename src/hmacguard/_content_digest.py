"""RFC 9530 ``Content-Digest``: create the field, and check a body against it.

The digest covers the content exactly as it travels (after any content coding,
RFC 9530 §2), so bodies are hashed as the bytes received: no decoding, no
re-encoding, no copies. :class:`DigestVerifier` hashes incrementally, chunk by
chunk, so a server can verify a streamed body without holding it twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable

from ._errors import DigestMismatch, MalformedDigest
from ._structured_fields import Item, StructuredFieldError, parse_dictionary

__all__ = [
    "ACTIVE_ALGORITHMS",
    "DEPRECATED_ALGORITHMS",
    "DigestVerifier",
    "make_content_digest",
    "parse_content_digest",
    "verify_content_digest",
]

# RFC 9530 §7.2 "Hash Algorithms for HTTP Digest Fields" registry: the Active ones.
ACTIVE_ALGORITHMS: dict[str, tuple[Callable[..., hashlib._Hash], int]] = {
    "sha-256": (hashlib.sha256, 32),
    "sha-512": (hashlib.sha512, 64),
}
# RFC 9530 §5: "Deprecated" algorithms "MUST NOT be used" where an adversary may
# control the content; we ignore them, so they can neither pass nor fail a body.
DEPRECATED_ALGORITHMS = frozenset({"md5", "sha", "unixsum", "unixcksum", "adler", "crc32c"})

# The shape every client sends: one Active algorithm, one canonical byte sequence.
_SIMPLE = re.compile(r"(sha-256|sha-512)=:([A-Za-z0-9+/]{43}=|[A-Za-z0-9+/]{86}==):")


def make_content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """Return the ``Content-Digest`` field value for ``body``.

    >>> make_content_digest(b'{"hello": "world"}')
    'sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:'
    """
    try:
        factory, _ = ACTIVE_ALGORITHMS[algorithm]
    except KeyError:
        known = ", ".join(ACTIVE_ALGORITHMS)
        raise ValueError(f"unsupported digest algorithm {algorithm!r}; use {known}") from None
    encoded = base64.b64encode(factory(body).digest()).decode("ascii")
    return f"{algorithm}=:{encoded}:"


def parse_content_digest(value: str) -> dict[str, bytes]:
    """Parse a ``Content-Digest`` field value into ``{algorithm: digest}``.

    Only Active algorithms are returned. Deprecated and unknown ones are
    ignored (RFC 9530 §3: a recipient "MAY ignore" algorithms it does not
    support), but a field that holds nothing else proves nothing about the body.

    Raises:
        MalformedDigest: not a dictionary of byte sequences, or an algorithm
            listed twice (two lines repeating ``sha-256=`` are ambiguous).
        DigestMismatch: no Active algorithm, or a digest of the wrong length.
    """
    # Leading and trailing whitespace (SP and HTAB) is not part of a field
    # value (RFC 9110 §5.5); a structured-field parser drops only SP.
    value = value.strip(" \t")
    match = _SIMPLE.fullmatch(value)
    if match is not None:
        algorithm, encoded = match.groups()
        digest = binascii.a2b_base64(encoded)
        if len(digest) == ACTIVE_ALGORITHMS[algorithm][1]:
            return {algorithm: digest}
    try:
        members = parse_dictionary(value, reject_duplicates=True)
    except StructuredFieldError as exc:
        raise MalformedDigest(f"Content-Digest is not a valid dictionary: {exc}") from None
    digests: dict[str, bytes] = {}
    for algorithm, member in members.items():
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise MalformedDigest(f"Content-Digest member {algorithm!r} is not a byte sequence")
        if algorithm not in ACTIVE_ALGORITHMS:
            continue
        if len(member.value) != ACTIVE_ALGORITHMS[algorithm][1]:
            raise DigestMismatch(f"the {algorithm} digest has the wrong length")
        digests[algorithm] = member.value
    if not digests:
        raise DigestMismatch("Content-Digest holds no supported algorithm (sha-256, sha-512)")
    return digests


class DigestVerifier:
    """Checks a body, fed in chunks, against a ``Content-Digest`` value.

    Every Active algorithm present must match: accepting the field when any one
    matches would let an attacker add a digest they control (RFC 9530 §6.6).

    >>> checker = DigestVerifier("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:")
    >>> checker.update(b'{"hello": ')
    >>> checker.update(b'"world"}')
    >>> checker.verify()
    """

    __slots__ = ("_expected", "_hashers")

    def __init__(self, field_value: str) -> None:
        self._expected = parse_content_digest(field_value)
        self._hashers = [(alg, ACTIVE_ALGORITHMS[alg][0]()) for alg in self._expected]

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Hash the next chunk of the body."""
        for _, hasher in self._hashers:
            hasher.update(chunk)

    def verify(self) -> None:
        """Raise :class:`DigestMismatch` unless every digest matches."""
        for algorithm, hasher in self._hashers:
            if not hmac.compare_digest(hasher.digest(), self._expected[algorithm]):
                raise DigestMismatch(f"the body does not match its {algorithm} Content-Digest")


def verify_content_digest(field_value: str, body: bytes | bytearray | memoryview) -> None:
    """Check a whole body against a ``Content-Digest`` value, or raise."""
    if field_value.startswith("sha-256=:"):
        # The common case: one sha-256 member in canonical form. Digests are
        # not secret, so a plain comparison of the field text is enough.
        digest = binascii.b2a_base64(hashlib.sha256(body).digest(), newline=False)
        if field_value == f"sha-256=:{digest.decode('ascii')}:":
            return
    expected = parse_content_digest(field_value)
    for algorithm, digest in expected.items():
        actual = ACTIVE_ALGORITHMS[algorithm][0](body).digest()
        if not hmac.compare_digest(actual, digest):
            raise DigestMismatch(f"the body does not match its {algorithm} Content-Digest")
