"""Standard Webhooks (and Svix): ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The spec (standardwebhooks.com, "Verifying webhook authenticity"): the signed
content is ``{msg_id}.{timestamp}.{payload}``, the signature header is a
space-delimited list of ``version,base64`` entries (``v1`` is HMAC-SHA256,
``v1a`` ed25519), and a consumer accepts the request when any ``v1`` entry
matches. Secrets are ``whsec_`` followed by the base64 of 24 to 64 random bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence

from .._errors import InvalidSignature, MalformedSignature, MissingSignature
from .._message import HeadersLike
from ._profile import (
    DEFAULT_TOLERANCE,
    MAX_ENTRIES,
    Mac,
    TimestampedProfile,
    VerifiedWebhook,
    check_body,
    check_window,
    clock_now,
    collect,
    default_clock,
    match,
    read_header,
    read_id,
    read_timestamp,
    secret_list,
)

__all__ = ["StandardWebhooks", "decode_whsec"]

Secret = str | bytes

_PREFIX = "whsec_"
_VERSION = re.compile(r"[a-z0-9]{1,16}")
_B64_32 = re.compile(r"[A-Za-z0-9+/]{43}=")
# The two header families, tried in this order: webhook-* (the spec), svix-* (Svix).
_FAMILIES = (
    ("webhook-id", "webhook-timestamp", "webhook-signature"),
    ("svix-id", "svix-timestamp", "svix-signature"),
)


def decode_whsec(secret: object) -> bytes:
    """Return the key bytes of a Standard Webhooks secret.

    ``secret`` is ``"whsec_"`` + base64 (the prefix is optional, padding too)
    or the raw key as bytes. The key must be 24 to 64 bytes (the spec's range).

    Raises:
        TypeError: neither text nor bytes.
        ValueError: not base64, or a key outside 24-64 bytes. The message never
            quotes the secret.
    """
    if isinstance(secret, (bytes, bytearray, memoryview)):
        raw = bytes(secret)
    elif isinstance(secret, str):
        text = secret.strip()
        text = text.removeprefix(_PREFIX)
        text += "=" * (-len(text) % 4)
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValueError("a Standard Webhooks secret is 'whsec_' followed by base64") from None
    else:
        raise TypeError(f"a secret is 'whsec_...' text or bytes, not {type(secret).__name__}")
    if not 24 <= len(raw) <= 64:
        raise ValueError(f"a Standard Webhooks key is 24 to 64 bytes, not {len(raw)}")
    return raw


class StandardWebhooks(TimestampedProfile):
    """Verify Standard Webhooks deliveries (also Svix's ``svix-*`` headers).

    Args:
        secret_or_secrets: the endpoint secret (``"whsec_..."`` or raw bytes),
            or several during a rotation, newest first: any one that verifies
            passes, and :attr:`VerifiedWebhook.secret_index` says which.
        tolerance: seconds a ``webhook-timestamp`` may be away from now, in
            either direction (default 300, as the spec advises).
        clock: the wall clock, used when ``verify`` gets no ``now``.
        allow_long_tolerance: accept a ``tolerance`` above 900 seconds.

    Raises:
        ValueError: no secret, a secret that is not base64 of 24-64 bytes, or
            a tolerance that is 0, None, negative, or over 900 s without
            ``allow_long_tolerance``.

    ``webhook-signature`` may list at most 8 entries (more is malformed);
    entries of versions other than ``v1`` are ignored, but a request with no
    ``v1`` entry fails. The ``webhook-id`` is the ``dedupe_key``, remembered
    for ``2 * tolerance + 60`` seconds. Example::

        profile = StandardWebhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        delivery = profile.verify(request_headers, raw_body)
    """

    scheme = "standard-webhooks"

    def __init__(
        self,
        secret_or_secrets: Secret | Sequence[Secret],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = default_clock,
        allow_long_tolerance: bool = False,
    ) -> None:
        macs = tuple(
            Mac(decode_whsec(secret)) for secret in secret_list(secret_or_secrets, "secret")
        )
        super().__init__(macs, tolerance, clock, allow_long_tolerance)

    def _parse(self, headers: HeadersLike, now: float | None) -> tuple[str, str, int, list[bytes]]:
        grouped = collect(headers)
        # Use the webhook-* family when any of its headers is present, else svix-*.
        names = next((f for f in _FAMILIES if any(n in grouped for n in f)), _FAMILIES[0])
        id_name, ts_name, sig_name = names
        msg_id = read_header(grouped, id_name, id_name)
        ts_text = read_header(grouped, ts_name, ts_name)
        signature = read_header(grouped, sig_name, sig_name)
        if msg_id is None or ts_text is None or signature is None:
            values = (msg_id, ts_text, signature)
            absent = [n for n, v in zip(names, values, strict=True) if v is None]
            raise MissingSignature(f"no {' or '.join(absent)} header")
        read_id(msg_id, id_name)
        # The signed content joins id, timestamp and body with ".", so neither may hold one.
        if "." in msg_id:
            raise MalformedSignature(f"{id_name} contains '.'")
        timestamp = read_timestamp(ts_text, ts_name)
        entries = signature.split()
        if len(entries) > MAX_ENTRIES:
            raise MalformedSignature(f"{sig_name} lists more than {MAX_ENTRIES} signatures")
        candidates: list[bytes] = []
        others: set[str] = set()
        for entry in entries:
            version, comma, value = entry.partition(",")
            if version != "v1":
                # Other versions (v1a, one the spec may add) are skipped, as the
                # spec's own libraries do: only v1 entries are read.
                if _VERSION.fullmatch(version) is not None:
                    others.add(version)
                continue
            # "v1", "v1," and "v1,," are malformed (CVE-2024-21491 accepted "v1,").
            if not comma or _B64_32.fullmatch(value) is None:
                raise MalformedSignature(f"a v1 entry of {sig_name} is not the base64 of 32 bytes")
            candidates.append(base64.b64decode(value))
        if not candidates:
            raise InvalidSignature(
                f"{sig_name} has no v1 (HMAC-SHA256) signature; versions present: "
                + (", ".join(sorted(others)) or "none")
            )
        check_window(timestamp, clock_now(self.clock, now), self.tolerance, ts_name)
        return msg_id, ts_text, timestamp, candidates

    def check_headers(self, headers: HeadersLike, *, now: float | None = None) -> None:
        """Check the three headers and the timestamp's freshness, without the body.

        Raises:
            MissingSignature: a header is absent.
            MalformedSignature: a header is repeated, not ASCII, or badly formed.
            InvalidSignature: no ``v1`` entry (only other versions).
            Expired, NotYetValid: the timestamp is outside the tolerance.
        """
        self._parse(headers, now)

    def verify(
        self, headers: HeadersLike, body: bytes, *, now: float | None = None
    ) -> VerifiedWebhook:
        """Verify a delivery: :meth:`check_headers`, then a ``v1`` MAC over the raw body.

        Raises:
            InvalidSignature: no ``v1`` entry matches under any secret; and
                everything :meth:`check_headers` raises.
            TypeError: ``body`` is not bytes.
        """
        check_body(body)
        msg_id, ts_text, timestamp, candidates = self._parse(headers, now)
        found = match(self._macs, f"{msg_id}.{ts_text}.".encode("ascii"), body, candidates)
        if found is None:
            raise InvalidSignature("no v1 signature matches the body under any configured secret")
        return VerifiedWebhook(self.scheme, msg_id, timestamp, msg_id, found[0])
