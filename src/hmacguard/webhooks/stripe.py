"""Stripe: ``Stripe-Signature: t=<timestamp>,v1=<hex>[,v1=<hex>...]``.

Stripe's docs ("Verify webhook signatures manually"): the signed payload is
``{t}.{raw body}``, the MAC is hex HMAC-SHA256 keyed with the endpoint secret
as text (``whsec_...`` included, not base64-decoded), and "``v1`` is the only
valid live signature scheme": other schemes are ignored "to prevent downgrade
attacks". Retries are re-signed with a new timestamp.
"""

from __future__ import annotations

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
    decode_hex,
    default_clock,
    read_header,
    read_timestamp,
    secret_list,
)

__all__ = ["Stripe"]

_HEADER = "stripe-signature"
_TITLE = "Stripe-Signature"
_SCHEME = re.compile(r"[a-z0-9]{1,16}")


def _stripe_secret(secret: object) -> bytes:
    if not isinstance(secret, str):
        raise TypeError(
            f"a Stripe endpoint secret is text ('whsec_...'), not {type(secret).__name__}"
        )
    if not secret.strip():
        raise ValueError("a Stripe endpoint secret must not be empty")
    # stripe-python keys the HMAC with secret.encode("utf-8"): the whole text (THREATS W2).
    return secret.encode("utf-8")


class Stripe(TimestampedProfile):
    """Verify Stripe webhook deliveries.

    Args:
        secret_or_secrets: the endpoint's signing secret (``"whsec_..."``,
            used as UTF-8 text exactly as Stripe does), or several during a
            rotation: any one that verifies passes.
        tolerance: seconds ``t`` may be away from now, in **both** directions
            (default 300; stripe-python only rejects old timestamps).
        clock: the wall clock, used when ``verify`` gets no ``now``.
        allow_long_tolerance: accept a ``tolerance`` above 900 seconds.

    Raises:
        ValueError: no secret, an empty secret, or a tolerance that is 0,
            None or negative (stripe-python would silently disable the check),
            or over 900 s without ``allow_long_tolerance``.

    Only ``t`` and ``v1`` items are read; any other item (``v0``, a scheme
    Stripe may add, an empty one) is ignored, as Stripe's libraries do. At
    most 8 ``v1`` values may be present (more is malformed). The
    ``dedupe_key`` is ``"{t}.{id}"``, where ``id`` (32 hex digits) is a
    one-way hash of the MAC of ``{t}.{body}`` under one of the configured
    secrets, always the same one: it names the signed delivery, whichever
    ``v1`` matched, in whatever order, under whichever secret, with or
    without other ``v1``/``v0`` values. Stripe re-signs each retry with a
    new ``t``, so it catches a captured request replayed inside the window,
    not a retry; deduplicate retries on the event's ``id`` in the app.
    """

    scheme = "stripe"

    def __init__(
        self,
        secret_or_secrets: str | Sequence[str],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = default_clock,
        allow_long_tolerance: bool = False,
    ) -> None:
        macs = tuple(
            Mac(_stripe_secret(secret)) for secret in secret_list(secret_or_secrets, "secret")
        )
        super().__init__(macs, tolerance, clock, allow_long_tolerance)

    def _parse(self, headers: HeadersLike, now: float | None) -> tuple[str, int, list[bytes]]:
        value = read_header(collect(headers), _HEADER, _TITLE)
        if value is None:
            raise MissingSignature(f"no {_TITLE} header")
        t_text: str | None = None
        candidates: list[bytes] = []
        others: set[str] = set()
        for item in value.split(","):
            name, equals, text = item.strip(" ").partition("=")
            if name != "t" and name != "v1":  # noqa: PLR1714
                # Other schemes (v0, a future one, an empty item) are ignored,
                # as Stripe's own libraries do: only t and v1 are read.
                if _SCHEME.fullmatch(name) is not None:
                    others.add(name)
                continue
            if not equals or not text:
                raise MalformedSignature(f"{_TITLE} has a {name} item that is not '{name}=value'")
            if name == "t":
                if t_text is not None and text != t_text:
                    raise MalformedSignature(f"{_TITLE} has two different t= values")
                read_timestamp(text, f"{_TITLE} t=")
                t_text = text
            else:
                if len(candidates) == MAX_ENTRIES:
                    raise MalformedSignature(f"{_TITLE} has more than {MAX_ENTRIES} v1 values")
                candidates.append(decode_hex(text, 32, f"a v1 value of {_TITLE}"))
        if t_text is None:
            raise MalformedSignature(f"{_TITLE} has no t= timestamp")
        if not candidates:
            raise InvalidSignature(
                f"{_TITLE} has no v1 signature (other schemes are ignored); present: "
                + (", ".join(sorted(others)) or "none")
            )
        timestamp = int(t_text)
        check_window(timestamp, clock_now(self.clock, now), self.tolerance, f"{_TITLE} t=")
        return t_text, timestamp, candidates

    def check_headers(self, headers: HeadersLike, *, now: float | None = None) -> None:
        """Check ``Stripe-Signature``'s syntax and its timestamp's freshness, without the body.

        Raises:
            MissingSignature: no ``Stripe-Signature``.
            MalformedSignature: bad syntax, two different ``t=``, a ``v1`` that
                is not 64 hex digits, more than 8 ``v1`` values, non-ASCII.
            InvalidSignature: no ``v1`` value (only ``v0`` or other schemes).
            Expired, NotYetValid: ``t`` is outside the tolerance.
        """
        self._parse(headers, now)

    def verify(
        self, headers: HeadersLike, body: bytes, *, now: float | None = None
    ) -> VerifiedWebhook:
        """Verify a delivery: :meth:`check_headers`, then a ``v1`` MAC over ``{t}.{body}``.

        Raises:
            InvalidSignature: no ``v1`` value matches under any secret; and
                everything :meth:`check_headers` raises.
            TypeError: ``body`` is not bytes.
        """
        check_body(body)
        t_text, timestamp, candidates = self._parse(headers, now)
        found = self._verify_mac(f"{t_text}.".encode("ascii"), body, candidates)
        if found is None:
            raise InvalidSignature("no v1 signature matches the body under any configured secret")
        secret_index, message = found
        # The signed message, not the v1 that matched: the header cannot change it.
        return VerifiedWebhook(self.scheme, None, timestamp, f"{t_text}.{message}", secret_index)
