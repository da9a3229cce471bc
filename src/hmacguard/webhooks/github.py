"""GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body, ``X-GitHub-Delivery``.

GitHub's docs ("Validating webhook deliveries"): the signature is the hex
HMAC-SHA256 of the payload, prefixed ``sha256=``, to be compared in constant
time. There is no timestamp, so a captured delivery would verify forever: the
delivery id is the only replay defence, and this profile requires it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import InvalidSignature, MalformedSignature, MissingSignature
from .._message import HeadersLike
from ._profile import (
    Mac,
    VerifiedWebhook,
    check_body,
    collect,
    decode_hex,
    match,
    positive,
    read_header,
    read_id,
    secret_list,
)

__all__ = ["DEFAULT_DEDUPE_TTL", "DEFAULT_MAX_BODY_SIZE", "GitHub"]

#: "Payloads are capped at 25 MB" (GitHub docs, "Webhook events and payloads").
#: 25 MiB, so that no payload GitHub sends is refused whichever unit it means.
DEFAULT_MAX_BODY_SIZE = 25 * 1024 * 1024
#: How long a delivery id is remembered: GitHub lets anyone with admin rights
#: redeliver "webhook deliveries from the past 3 days" (GitHub docs,
#: "Redelivering webhooks"), with the same id; three days and an hour.
DEFAULT_DEDUPE_TTL = (3 * 24 + 1) * 60 * 60.0

_SHA256 = ("x-hub-signature-256", "X-Hub-Signature-256", "sha256=", 32, "sha256")
_SHA1 = ("x-hub-signature", "X-Hub-Signature", "sha1=", 20, "sha1")


def _github_secret(secret: object) -> bytes:
    if isinstance(secret, (bytes, bytearray, memoryview)):
        raw = bytes(secret)
    elif isinstance(secret, str):
        raw = secret.encode("utf-8")
    else:
        raise TypeError(f"a GitHub webhook secret is text or bytes, not {type(secret).__name__}")
    if not raw:
        raise ValueError("a GitHub webhook secret must not be empty")
    return raw


class GitHub:
    """Verify GitHub webhook deliveries.

    Args:
        secret_or_secrets: the webhook secret (text, used as UTF-8, or bytes),
            or several during a rotation: any one that verifies passes.
        allow_sha1: also accept the legacy ``X-Hub-Signature: sha1=...`` when
            ``X-Hub-Signature-256`` is absent (default False: a request with
            only the SHA-1 header fails with ``invalid_signature``).
        dedupe_ttl: seconds a ``X-GitHub-Delivery`` id is remembered
            (default 73 h: GitHub redelivers deliveries of the past 3 days,
            keeping their id; GitHub Enterprise Server 7 days, so raise it
            there).
        max_body_size: the body cap (default 25 MiB, GitHub's payload cap).

    Raises:
        ValueError: no secret, an empty one, or a non-positive ``dedupe_ttl``
            or ``max_body_size``.

    ``X-GitHub-Delivery`` is required: without it (``missing_signature``)
    nothing would stop a captured delivery from being replayed.
    """

    scheme = "github"

    def __init__(
        self,
        secret_or_secrets: str | bytes | Sequence[str | bytes],
        *,
        allow_sha1: bool = False,
        dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        secrets = [_github_secret(s) for s in secret_list(secret_or_secrets, "secret")]
        self._macs = tuple(Mac(secret) for secret in secrets)
        self._sha1_macs = tuple(Mac(secret, "sha1") for secret in secrets) if allow_sha1 else ()
        self.allow_sha1 = bool(allow_sha1)
        self.dedupe_ttl: float = positive("dedupe_ttl", dedupe_ttl)
        self.max_body_size: int | None = (
            None
            if max_body_size is None
            else int(positive("max_body_size", max_body_size, integer=True))
        )

    def __repr__(self) -> str:
        return (
            f"GitHub(secrets=<{len(self._macs)} hidden>, allow_sha1={self.allow_sha1!r}, "
            f"dedupe_ttl={self.dedupe_ttl!r}, max_body_size={self.max_body_size!r})"
        )

    def _parse(self, headers: HeadersLike) -> tuple[str, bytes, bool]:
        grouped = collect(headers)
        sha256 = read_header(grouped, _SHA256[0], _SHA256[1])
        sha1 = read_header(grouped, _SHA1[0], _SHA1[1]) if sha256 is None else None
        if sha256 is None and sha1 is not None and not self.allow_sha1:
            raise InvalidSignature(
                "only the legacy SHA-1 X-Hub-Signature is present; "
                "GitHub(..., allow_sha1=True) accepts it"
            )
        if sha256 is not None:
            value, (_, title, prefix, size, _) = sha256, _SHA256
        elif sha1 is not None:
            value, (_, title, prefix, size, _) = sha1, _SHA1
        else:
            raise MissingSignature("no X-Hub-Signature-256 header")
        if not value.startswith(prefix):
            raise MalformedSignature(f"{title} does not start with {prefix!r}")
        candidate = decode_hex(value[len(prefix) :], size, title)
        delivery = read_header(grouped, "x-github-delivery", "X-GitHub-Delivery")
        if delivery is None:
            raise MissingSignature("no X-GitHub-Delivery header: a delivery cannot be deduplicated")
        read_id(delivery, "X-GitHub-Delivery")
        return delivery, candidate, sha256 is None

    def check_headers(self, headers: HeadersLike, *, now: float | None = None) -> None:
        """Check the signature header and the delivery id, without the body.

        ``now`` is accepted for the protocol and unused: GitHub signs no time.

        Raises:
            MissingSignature: no ``X-Hub-Signature-256`` (nor an allowed
                SHA-1 one), or no ``X-GitHub-Delivery``.
            MalformedSignature: not ``sha256=`` + 64 hex digits, repeated
                with different values, non-ASCII.
            InvalidSignature: only the SHA-1 header, and SHA-1 is not allowed.
        """
        self._parse(headers)

    def verify(
        self, headers: HeadersLike, body: bytes, *, now: float | None = None
    ) -> VerifiedWebhook:
        """Verify a delivery: :meth:`check_headers`, then the MAC over the raw body.

        Raises:
            InvalidSignature: the MAC matches under no secret; and everything
                :meth:`check_headers` raises.
            TypeError: ``body`` is not bytes.
        """
        check_body(body)
        delivery, candidate, legacy = self._parse(headers)
        found = match(self._sha1_macs if legacy else self._macs, b"", body, [candidate])
        if found is None:
            raise InvalidSignature("the signature matches the body under no configured secret")
        return VerifiedWebhook(self.scheme, delivery, None, delivery, found[0])
