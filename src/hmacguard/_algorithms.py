"""The HMAC algorithms of RFC 9421 and how a MAC is compared.

RFC 9421 §3.3.3 defines ``hmac-sha256``; hmacguard also offers ``hmac-sha512``
(HMAC over SHA-512, same construction), which a verifier only accepts when the
key says so. Nothing else is registered: an asymmetric ``alg`` on an HMAC key is
algorithm confusion (RFC 9421 §7.3.6) and is refused.
"""

from __future__ import annotations

__all__ = [
    "ALGORITHMS",
    "MIN_KEY_BYTES",
    "REGISTERED_ALGORITHMS",
    "HMACAlgorithm",
    "get_algorithm",
]

#: The shortest secret accepted, in bytes. RFC 2104 §3 strongly discourages keys
#: shorter than the hash output (32 bytes for SHA-256, 64 for SHA-512, which is
#: what each algorithm requires), and RFC 7518 §3.2 requires at least 256 bits
#: for HS256.
MIN_KEY_BYTES = 32


class HMACAlgorithm:
    """One HMAC algorithm: its RFC 9421 name, the hash, and the MAC length.

    The MAC itself is computed by :class:`~hmacguard.HMACKey`, which keeps the
    keyed state.
    """

    __slots__ = ("digest_size", "hash_name", "min_key_bytes", "name")

    def __init__(self, name: str, hash_name: str, digest_size: int) -> None:
        self.name = name
        self.hash_name = hash_name
        self.digest_size = digest_size
        # RFC 2104 §3: "less than L bytes is strongly discouraged".
        self.min_key_bytes = max(MIN_KEY_BYTES, digest_size)

    def __repr__(self) -> str:
        return f"HMACAlgorithm({self.name!r})"


ALGORITHMS: dict[str, HMACAlgorithm] = {
    # RFC 9421 §3.3.3: "HMAC Using SHA-256 ... the hmac-sha256 algorithm".
    "hmac-sha256": HMACAlgorithm("hmac-sha256", "sha256", 32),
    "hmac-sha512": HMACAlgorithm("hmac-sha512", "sha512", 64),
}
#: The names the HTTP Signature Algorithms registry (RFC 9421 §6.2) lists, of
#: those above: what a signer may write as ``alg``.
REGISTERED_ALGORITHMS = frozenset({"hmac-sha256"})


def get_algorithm(name: str) -> HMACAlgorithm:
    """Return the algorithm registered as ``name`` or raise ``ValueError``."""
    try:
        return ALGORITHMS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ALGORITHMS))
        raise ValueError(f"unsupported algorithm {name!r}; use one of: {known}") from None
