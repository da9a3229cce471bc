"""Slack: ``X-Slack-Signature: v0=<hex>`` over ``v0:{X-Slack-Request-Timestamp}:{body}``.

Slack's docs ("Verifying requests from Slack"): the base string is the version,
the timestamp and the raw request body joined with ``:``; the signature is its
hex HMAC-SHA256 under the app's signing secret; requests whose timestamp is
more than five minutes away from local time should be ignored. The body is
verified as received, before any form or JSON parsing; only then, an Events
API callback's JSON is read for its ``event_id`` (the deduplication key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from .._errors import InvalidSignature, MalformedSignature, MissingSignature
from .._message import HeadersLike
from ._profile import (
    DEFAULT_TOLERANCE,
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

__all__ = ["Slack"]

_OTHER_VERSION = re.compile(r"v[0-9]{1,4}=.+")


def _slack_secret(secret: object) -> bytes:
    if isinstance(secret, (bytes, bytearray, memoryview)):
        raw = bytes(secret)
    elif isinstance(secret, str):
        raw = secret.encode("utf-8")
    else:
        raise TypeError(f"a Slack signing secret is text or bytes, not {type(secret).__name__}")
    if not raw.strip():
        raise ValueError("a Slack signing secret must not be empty")
    return raw


class Slack(TimestampedProfile):
    """Verify requests from Slack (Events API, slash commands, interactivity).

    Args:
        signing_secret: the app's signing secret (text, used as UTF-8), or
            several during a rotation: any one that verifies passes.
        tolerance: seconds the request timestamp may be away from now, in
            either direction (default 300, as Slack advises).
        clock: the wall clock, used when ``verify`` gets no ``now``.
        allow_long_tolerance: accept a ``tolerance`` above 900 seconds.

    Raises:
        ValueError: no secret, an empty one, or a tolerance that is 0, None,
            negative, or over 900 s without ``allow_long_tolerance``.

    Deduplication (THREATS W4): Slack re-signs its retries (``X-Slack-Retry-Num``)
    with a new timestamp, so for an Events API callback (a JSON body up to
    64 KiB with ``"type": "event_callback"``) the ``dedupe_key`` is
    ``"event:{event_id}"``, read from the verified body, and ``delivery_id``
    is the ``event_id``: a retry of an event is a duplicate. For anything
    else (slash commands, interactivity, other JSON) it is
    ``"{timestamp}.{id}"``, where ``id`` (32 hex digits) is a one-way hash of
    the MAC of the request under one of the configured secrets, always the
    same one: it stops a captured request from being replayed inside the
    window, whichever secret signed it. ``dedupe_ttl`` (660 s by default)
    covers Slack's last retry, five minutes after the first attempt.
    """

    scheme = "slack"

    def __init__(
        self,
        signing_secret: str | bytes | Sequence[str | bytes],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = default_clock,
        allow_long_tolerance: bool = False,
    ) -> None:
        macs = tuple(
            Mac(_slack_secret(secret)) for secret in secret_list(signing_secret, "signing secret")
        )
        super().__init__(macs, tolerance, clock, allow_long_tolerance)

    def _parse(self, headers: HeadersLike, now: float | None) -> tuple[str, int, bytes]:
        grouped = collect(headers)
        signature = read_header(grouped, "x-slack-signature", "X-Slack-Signature")
        ts_text = read_header(grouped, "x-slack-request-timestamp", "X-Slack-Request-Timestamp")
        if signature is None or ts_text is None:
            absent = "X-Slack-Signature" if signature is None else "X-Slack-Request-Timestamp"
            raise MissingSignature(f"no {absent} header")
        timestamp = read_timestamp(ts_text, "X-Slack-Request-Timestamp")
        if not signature.startswith("v0="):
            if _OTHER_VERSION.fullmatch(signature):
                raise InvalidSignature("X-Slack-Signature is not a v0 signature, the only version")
            raise MalformedSignature("X-Slack-Signature is not 'v0=' + hex")
        candidate = decode_hex(signature[3:], 32, "X-Slack-Signature")
        check_window(
            timestamp, clock_now(self.clock, now), self.tolerance, "X-Slack-Request-Timestamp"
        )
        return ts_text, timestamp, candidate

    def check_headers(self, headers: HeadersLike, *, now: float | None = None) -> None:
        """Check the two headers and the timestamp's freshness, without the body.

        Raises:
            MissingSignature: a header is absent.
            MalformedSignature: a non-numeric timestamp, a signature that is
                not ``v0=`` + 64 hex digits, a repeated or non-ASCII header.
            InvalidSignature: a signature of another version than ``v0``.
            Expired, NotYetValid: the timestamp is outside the tolerance.
        """
        self._parse(headers, now)

    def verify(
        self, headers: HeadersLike, body: bytes, *, now: float | None = None
    ) -> VerifiedWebhook:
        """Verify a request: :meth:`check_headers`, then the MAC over the raw body.

        Raises:
            InvalidSignature: the MAC matches under no secret; and everything
                :meth:`check_headers` raises.
            TypeError: ``body`` is not bytes.
        """
        check_body(body)
        ts_text, timestamp, candidate = self._parse(headers, now)
        found = self._verify_mac(f"v0:{ts_text}:".encode("ascii"), body, [candidate])
        if found is None:
            raise InvalidSignature("the signature matches the body under no configured secret")
        secret_index, message = found
        event_id = _event_id(body)
        if event_id is not None:
            return VerifiedWebhook(
                self.scheme, event_id, timestamp, f"event:{event_id}", secret_index
            )
        # The signed request, not the signature: the same under whichever secret signed it.
        return VerifiedWebhook(self.scheme, None, timestamp, f"{ts_text}.{message}", secret_index)


# Events API callbacks are small; larger JSON bodies are not parsed for an event id.
_MAX_EVENT_BODY = 64 * 1024
_EVENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _event_id(body: bytes) -> str | None:
    """The ``event_id`` of an Events API callback, read from its verified JSON body, or None.

    Only after the MAC has matched, so the id is Slack's. The body is parsed
    (not searched): an ``"event_id"`` inside a message's text cannot pass
    for the callback's own.
    """
    if len(body) > _MAX_EVENT_BODY or b'"event_callback"' not in body:
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict) or payload.get("type") != "event_callback":
        return None
    event_id = payload.get("event_id")
    if not isinstance(event_id, str) or _EVENT_ID.fullmatch(event_id) is None:
        return None
    return event_id
