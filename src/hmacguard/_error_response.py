"""Where an error is answered: the HTTP response for a failed verification.

Responses are RFC 9457 problem documents (``application/problem+json``) with
``type``, ``title``, ``status``, ``detail`` and ``reason``. They say what kind
of failure happened, never the specifics: no key id, no server time, no
signature base, no expected value (RFC 9421 §8.3). An unknown key, a stale or
future-dated signature and a replay answer exactly like a bad MAC
(``invalid_signature``, byte for byte), so key ids, the server's clock and the
replay cache cannot be probed. The precise cause goes to the ``hmacguard``
logger instead (and, with ``debug``, into the body).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ._errors import VerificationError
from ._structured_fields import InnerList, Item, serialize_dictionary

__all__ = ["WEBHOOK_MESSAGES", "ErrorResponder"]

# A problem's type is DOCS#<reason, "_" as "-">: docs/errors.md gives each reason's
# table row that id, and tests/test_docs.py checks that every reason's link lands.
DOCS = "https://hmacguard.readthedocs.io/en/latest/errors/"

# reason -> (title, what the client is told). The reasons in _CLIENT_REASON are
# told as invalid_signature: see the module docstring.
_MESSAGES: dict[str, tuple[str, str]] = {
    "missing_signature": (
        "Signature required",
        "The request carries no HTTP message signature (Signature and Signature-Input).",
    ),
    "malformed_signature": (
        "Malformed signature",
        "The Signature or Signature-Input field cannot be parsed.",
    ),
    "invalid_parameters": (
        "Invalid signature parameters",
        "The signature parameters do not meet the server's requirements.",
    ),
    "invalid_signature": ("Invalid signature", "The request signature could not be verified."),
    "insufficient_coverage": (
        "Insufficient signature coverage",
        "The signature does not cover every component the server requires.",
    ),
    "malformed_digest": ("Malformed Content-Digest", "The Content-Digest field cannot be parsed."),
    "digest_mismatch": ("Content digest mismatch", "The body does not match its Content-Digest."),
    "body_too_large": ("Body too large", "The request body is larger than the server accepts."),
    "body_timeout": ("Body timeout", "The request body did not arrive in time."),
    "malformed_request": ("Malformed request", "The request cannot be verified as sent."),
    "key_lookup_failed": (
        "Verification unavailable",
        "The server cannot verify signatures right now; retry later.",
    ),
    "nonce_store_unavailable": (
        "Verification unavailable",
        "The server cannot check for replays right now; retry later.",
    ),
    "verification_unavailable": (
        "Verification unavailable",
        "The server cannot verify signatures right now; retry later.",
    ),
}
# What a webhook path tells instead: its sender signs with its provider's
# scheme (Stripe-Signature, X-Hub-Signature-256...), not with RFC 9421 fields.
WEBHOOK_MESSAGES: dict[str, tuple[str, str]] = {
    "missing_signature": (
        "Signature required",
        "The request carries no webhook signature for this endpoint's scheme.",
    ),
    "malformed_signature": (
        "Malformed signature",
        "The webhook's signature or timestamp header cannot be parsed.",
    ),
    "invalid_signature": ("Invalid signature", "The webhook signature could not be verified."),
}
_CLIENT_REASON = dict.fromkeys(
    ("unknown_key", "expired", "not_yet_valid", "replayed"), "invalid_signature"
)
_FALLBACK = ("Verification failed", "The request could not be verified.")


def accept_signature(
    required_components: Sequence[str], *, tag: str | None, label: str = "sig1"
) -> str:
    """The ``Accept-Signature`` value (RFC 9421 §5.1) asking for what the policy needs.

    It lists the required components and, when the policy requires one, the
    ``tag``; never a key id. ``created``, ``keyid`` and ``nonce`` are required
    too, but §5.1 forbids asking for them: "These parameters MUST NOT include
    parameters that the signer is expected to generate, including the
    ``created`` and ``nonce`` parameters" (and a bare ``keyid`` would be the
    Boolean true, where the parameter is a String).
    """
    from ._components import component_from_spec  # noqa: PLC0415  (avoid an import cycle)

    items = []
    for spec in required_components:
        component = component_from_spec(spec)
        items.append(Item(component.name, component.params))  # type: ignore[arg-type]
    params: dict[str, object] = {}
    if tag is not None:
        params["tag"] = tag
    return serialize_dictionary({label: InnerList(items, params)})  # type: ignore[arg-type]


class ErrorResponder:
    """Builds the response for a :class:`VerificationError`, once per reason.

    Bodies and headers depend only on the reason (and, with ``debug``, on the
    error's detail), so they are precomputed. A 401 carries ``challenge`` as
    ``WWW-Authenticate`` and, when given, ``Accept-Signature`` (webhook paths
    have none: the sender's scheme is fixed by the provider). ``messages``
    replaces some reasons' title and detail (webhook paths: ``WEBHOOK_MESSAGES``).
    """

    def __init__(
        self,
        accept_signature_value: str | None,
        *,
        debug: bool = False,
        challenge: bytes = b'Signature realm="hmacguard"',
        messages: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self._debug = debug
        self._messages = _MESSAGES if messages is None else {**_MESSAGES, **messages}
        self._accept = None if accept_signature_value is None else accept_signature_value.encode()
        self._challenge = challenge
        self._cache: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}

    def client_reason(self, error: VerificationError) -> str:
        """The reason the client is told."""
        return _CLIENT_REASON.get(error.reason, error.reason)

    def render(
        self, error: VerificationError, *, base: bytes | None = None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Return ``(status, headers, body)`` for ``error``.

        With ``debug`` on, the body also carries the error's precise detail and
        the server's signature base (``base``), for a developer's eyes only.
        """
        reason = self.client_reason(error)
        if not self._debug:
            cached = self._cache.get(reason)
            if cached is None:
                cached = self._cache[reason] = self._build(error.status, reason, None, None)
            status, headers, body = cached
            # A new list each time: middleware outside this one may edit the
            # headers of the message it is sent in place (GZipMiddleware adds
            # Content-Encoding), which must not reach every later answer.
            return status, list(headers), body
        return self._build(error.status, reason, error, base)

    def _build(
        self,
        status: int,
        reason: str,
        error: VerificationError | None,
        base: bytes | None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        title, detail = self._messages.get(reason, _FALLBACK)
        problem: dict[str, object] = {
            "type": DOCS + "#" + reason.replace("_", "-"),
            "title": title,
            "status": status,
            "detail": detail,
            "reason": reason,
        }
        if error is not None:
            problem["debug"] = {
                "reason": error.reason,
                "detail": error.detail,
                "label": error.label,
                "key_id": error.key_id,
                "signature_base": None if base is None else base.decode("ascii", "replace"),
            }
        body = json.dumps(problem, separators=(",", ":")).encode("utf-8")
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"cache-control", b"no-store"),
        ]
        if status == 401:
            # RFC 9110 §11.6.1: a 401 "MUST send a WWW-Authenticate header field".
            headers.append((b"www-authenticate", self._challenge))
            if self._accept is not None:
                headers.append((b"accept-signature", self._accept))
        elif status == 503:
            headers.append((b"retry-after", b"1"))
        return status, headers, body
