"""The errors hmacguard raises when a request cannot be accepted.

Every failure is a leaf of one root, so ``except VerificationError`` catches them
all, and each leaf carries a stable machine-readable ``reason`` and the HTTP
``status`` an adapter should answer with::

    VerificationError                         reason                   status
    ├── MissingSignature                      missing_signature        401
    ├── MalformedSignature                    malformed_signature      400
    ├── InvalidParameters                     invalid_parameters       401
    ├── Expired                               expired                  401
    ├── NotYetValid                           not_yet_valid            401
    ├── UnknownKey                            unknown_key              401
    ├── InvalidSignature                      invalid_signature        401
    ├── InsufficientCoverage                  insufficient_coverage    401
    ├── MalformedDigest                       malformed_digest         400
    ├── DigestMismatch                        digest_mismatch          401
    ├── Replayed                              replayed                 401
    ├── BodyTooLarge                          body_too_large           413
    ├── BodyTimeout                           body_timeout             408
    ├── MalformedRequest                      malformed_request        400
    ├── KeyLookupFailed                       key_lookup_failed        503
    ├── NonceStoreUnavailable                 nonce_store_unavailable  503
    └── VerificationUnavailable               verification_unavailable 503

An error carries only safe context: the signature ``label`` and the ``key_id``
the request claimed (both attacker-controlled, so always shown with ``repr``),
and a ``detail`` sentence for operators. It never carries a secret, a MAC, an
expected signature or a signature base: those would turn the error into an
oracle (RFC 9421 §8.3) and must not reach logs either.
"""

from __future__ import annotations

__all__ = [
    "BodyTimeout",
    "BodyTooLarge",
    "DigestMismatch",
    "Expired",
    "InsufficientCoverage",
    "InvalidParameters",
    "InvalidSignature",
    "KeyLookupFailed",
    "MalformedDigest",
    "MalformedRequest",
    "MalformedSignature",
    "MissingSignature",
    "NonceStoreUnavailable",
    "NotYetValid",
    "Replayed",
    "UnknownKey",
    "VerificationError",
    "VerificationUnavailable",
]


class VerificationError(Exception):
    """A request failed verification.

    Attributes:
        reason: a stable code such as ``"invalid_signature"``; safe to log and
            to match on.
        status: the HTTP status code an adapter answers with.
        detail: a sentence for the operator saying precisely what failed. It
            names components and parameters but never contains secrets, MACs
            or signature bases. Servers log it; they do not send it to clients
            unless debugging is explicitly enabled.
        label: the signature label concerned, when one was selected.
        key_id: the key id the signature claimed, when it got that far.
    """

    reason: str = "verification_failed"
    status: int = 401

    def __init__(
        self,
        detail: str | None = None,
        *,
        label: str | None = None,
        key_id: str | None = None,
    ) -> None:
        self.detail = detail or self.reason.replace("_", " ")
        self.label = label
        self.key_id = key_id
        super().__init__(self.detail)

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"

    def __repr__(self) -> str:
        context = "".join(
            f", {name}={value!r}"
            for name, value in (("label", self.label), ("key_id", self.key_id))
            if value is not None
        )
        return f"{type(self).__name__}({self.detail!r}{context})"


class MissingSignature(VerificationError):
    """The request carries neither ``Signature`` nor ``Signature-Input``."""

    reason = "missing_signature"


class MalformedSignature(VerificationError):
    """``Signature``/``Signature-Input`` cannot be parsed or are inconsistent.

    Includes structured-field syntax errors, labels present in only one of the
    two fields, duplicated labels or parameters, values of the wrong type,
    invalid component identifiers, and inputs over the size limits.
    """

    reason = "malformed_signature"
    status = 400


class InvalidParameters(VerificationError):
    """The signature parameters break the policy.

    A required parameter (``created``, ``keyid``, ``nonce``) is missing, an
    unknown parameter is present, a parameter has the wrong type or is empty,
    ``alg`` names an unsupported algorithm, ``expires`` precedes ``created``,
    or no signature carries the configured ``tag``. A supported ``alg`` that
    disagrees with the key's algorithm is :class:`InvalidSignature` instead, so
    that it cannot tell known key ids from unknown ones.
    """

    reason = "invalid_parameters"


class Expired(VerificationError):
    """``created`` is older than ``max_age``, or ``expires`` has passed."""

    reason = "expired"


class NotYetValid(VerificationError):
    """``created`` lies further in the future than the allowed clock skew."""

    reason = "not_yet_valid"


class UnknownKey(VerificationError):
    """No key is known for the signature's ``keyid``."""

    reason = "unknown_key"


class InvalidSignature(VerificationError):
    """The MAC does not match the signature base the server rebuilt.

    This covers every way a MAC can fail: a tampered component, a covered
    header that is missing, a wrong secret, a truncated signature.
    """

    reason = "invalid_signature"


class InsufficientCoverage(VerificationError):
    """A valid signature does not cover every component the policy requires."""

    reason = "insufficient_coverage"


class MalformedDigest(VerificationError):
    """``Content-Digest`` is not a valid RFC 9530 field."""

    reason = "malformed_digest"
    status = 400


class DigestMismatch(VerificationError):
    """The body does not match its ``Content-Digest``.

    Also raised when the field holds no Active algorithm (only deprecated or
    unknown ones), since nothing then proves the body (RFC 9530 §6.6).
    """

    reason = "digest_mismatch"


class Replayed(VerificationError):
    """The (key id, nonce) pair was seen before inside the replay window."""

    reason = "replayed"


class BodyTooLarge(VerificationError):
    """The body is larger than the configured limit."""

    reason = "body_too_large"
    status = 413


class BodyTimeout(VerificationError):
    """The body did not arrive in time (a slow or stalled client)."""

    reason = "body_timeout"
    status = 408


class KeyLookupFailed(VerificationError):
    """The key resolver raised or returned something that is not a key.

    The request fails closed: it is neither accepted nor blamed on the client.
    """

    reason = "key_lookup_failed"
    status = 503


class NonceStoreUnavailable(VerificationError):
    """The nonce store could not answer, so replay cannot be ruled out."""

    reason = "nonce_store_unavailable"
    status = 503


class MalformedRequest(VerificationError):
    """The request itself cannot be canonicalised.

    No ``Host`` or two of them (RFC 9112 §3.2), no raw path from the server,
    an unreadable ``Content-Length``: nothing a signature could cover.
    """

    reason = "malformed_request"
    status = 400


class VerificationUnavailable(VerificationError):
    """Verification itself failed unexpectedly; the request fails closed.

    The cause is logged with its traceback; the client is told to retry.
    """

    reason = "verification_unavailable"
    status = 503
