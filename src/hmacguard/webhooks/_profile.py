"""What every webhook profile shares: the result, the protocol, and the header checks.

A profile is sans-IO like the core: it is handed the request's headers and its
raw body bytes and either returns a :class:`VerifiedWebhook` or raises a leaf
of :class:`~hmacguard.VerificationError`. It verifies the body as received,
never re-encoded, and never raises anything else for any input (THREATS W5,
W6); only after the MAC has matched may it read the body for an event id
(Slack's Events API, whose retries are re-signed).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from .._errors import Expired, MalformedSignature, NotYetValid
from .._keys import MAX_ID_BYTES
from .._message import HeadersLike, collect_headers

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_ENTRIES",
    "MAX_HEADER_CHARS",
    "MAX_TOLERANCE",
    "VerifiedWebhook",
    "WebhookProfile",
]

#: The freshness window, in seconds, in both directions (Stripe, Slack and the
#: Standard Webhooks spec all use five minutes).
DEFAULT_TOLERANCE = 300
#: At most this many signature entries are examined; a header with more is malformed.
MAX_ENTRIES = 8
#: A signature or timestamp header longer than this is malformed, before any parsing.
MAX_HEADER_CHARS = 8192

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX40 = re.compile(r"[0-9a-fA-F]{40}")


class VerifiedWebhook(NamedTuple):
    """What a profile proved about a webhook delivery.

    Attributes:
        scheme: ``"standard-webhooks"``, ``"stripe"``, ``"github"`` or ``"slack"``.
        delivery_id: the provider's delivery id (``webhook-id``,
            ``X-GitHub-Delivery``); None for Stripe and Slack, whose event ids
            live in the body.
        timestamp: the signed timestamp (None for GitHub, which signs none).
        dedupe_key: what a nonce store remembers for this delivery.
        secret_index: which configured secret matched (0 is the first).
    """

    scheme: str
    delivery_id: str | None
    timestamp: int | None
    dedupe_key: str
    secret_index: int


@runtime_checkable
class WebhookProfile(Protocol):
    """What ``SignatureMiddleware`` needs from a webhook scheme.

    Attributes:
        scheme: the scheme's name, as in :attr:`VerifiedWebhook.scheme`.
        max_body_size: the body cap for this profile; None leaves the
            middleware's own ``max_body_size`` in force.
        dedupe_ttl: seconds a ``dedupe_key`` is remembered.
    """

    scheme: str
    max_body_size: int | None
    dedupe_ttl: float

    def check_headers(self, headers: HeadersLike, *, now: float | None = None) -> None:
        """Check all that needs no body: headers present and well formed, timestamp fresh."""
        ...

    def verify(
        self, headers: HeadersLike, body: bytes, *, now: float | None = None
    ) -> VerifiedWebhook:
        """Check the headers and the MAC over the raw body; raise a ``VerificationError`` leaf."""
        ...


# -- configuration -----------------------------------------------------------------------------


def positive(what: str, value: object, *, integer: bool = False) -> float:
    """Return ``value`` if it is a positive number, else raise ``TypeError``/``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if value is None:
            raise ValueError(f"{what} must be a positive number, not None")
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    if integer and not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{what} must be a positive, finite number of seconds or bytes")
    return value


#: A window longer than this (15 minutes, as the core's ``max_age``) needs
#: ``allow_long_tolerance=True``: it widens the span a captured delivery replays in.
MAX_TOLERANCE = 900


def check_tolerance(tolerance: object, allow_long: bool = False) -> float:
    """Validate a freshness window: 0, None or negative would disable it (THREATS
    W1), and one over ``MAX_TOLERANCE`` needs ``allow_long`` (THREATS T4)."""
    seconds = positive("tolerance", tolerance)
    if seconds > MAX_TOLERANCE and not allow_long:
        raise ValueError(
            f"tolerance={seconds:g} is longer than {MAX_TOLERANCE} s, which widens the "
            "window a captured delivery can be replayed in; pass allow_long_tolerance=True "
            "if you mean it"
        )
    return seconds


def secret_list(value: object, what: str) -> list[object]:
    """Turn one secret or a sequence of secrets into a non-empty list (newest first)."""
    items: list[object]
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        items = [value]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise TypeError(f"{what} must be a secret or a sequence of secrets")
    if not items:
        raise ValueError(f"no {what} given: no delivery could ever verify")
    return items


class Mac:
    """HMAC-SHA256 (or SHA-1) under one secret, keyed once.

    The keyed state is copied per message, so the padded key is not derived
    again for every delivery, and the body is fed as it is: ``prefix`` then
    the raw bytes, never concatenated (a 25 MB body is not copied).
    """

    __slots__ = ("_keyed", "fingerprint")

    def __init__(self, secret: bytes, digest: str = "sha256") -> None:
        self._keyed = hmac.new(secret, digestmod=digest)
        # Tells two secrets apart without revealing either (THREATS W7).
        self.fingerprint = hmac.digest(secret, b"hmacguard secret fingerprint", "sha256")[:16]

    def digest(self, prefix: bytes, body: bytes) -> bytes:
        """Return the MAC of ``prefix + body``."""
        state = self._keyed.copy()
        state.update(prefix)
        state.update(body)
        return state.digest()

    def __repr__(self) -> str:
        return "Mac(<hidden>)"


class TimestampedProfile:
    """What the timestamped schemes (Standard Webhooks, Stripe, Slack) share.

    The keyed secrets, the window in both directions, how long a delivery is
    remembered (``2 * tolerance + 60``: the window both ways, and a margin),
    the id of a signed message (:meth:`_verify_mac`), and a ``repr`` that
    counts the secrets without showing them.

    ``clock`` is what timestamps are checked against when ``verify`` gets no
    ``now``. Behind ``SignatureMiddleware``, a profile left on the default
    (the wall clock) follows the middleware's own ``clock=``; one given its
    own clock keeps it.
    """

    def __init__(
        self,
        macs: tuple[Mac, ...],
        tolerance: float,
        clock: Callable[[], float],
        allow_long_tolerance: bool = False,
    ) -> None:
        self._macs = macs
        # The secret that names messages: fixed by the set of secrets, not by their order.
        self._id_index = min(range(len(macs)), key=lambda index: macs[index].fingerprint)
        self.tolerance = check_tolerance(tolerance, bool(allow_long_tolerance))
        self.max_body_size: int | None = None
        self.dedupe_ttl: float = 2 * self.tolerance + 60
        self.clock = clock

    def _verify_mac(
        self, prefix: bytes, body: bytes, candidates: Sequence[bytes]
    ) -> tuple[int, str] | None:
        """Return (secret index, message id) when a candidate matches, else None.

        The message id names the signed message ``prefix + body`` at this
        endpoint, whichever candidate or secret verified it: it is derived
        from the MAC under one configured secret (always the same one,
        whatever their order), which the server computes itself. So a
        replayed delivery cannot get a new id by reordering, dropping or
        adding signatures, while the same message at an endpoint with other
        secrets gets another id. It is a one-way hash of that MAC (see
        :func:`message_id`): a nonce store never holds a valid signature.
        """
        expected = digests(self._macs, prefix, body)
        found = find(expected, candidates)
        if found is None:
            return None
        return found[0], message_id(expected[self._id_index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(secrets=<{len(self._macs)} hidden>, "
            f"tolerance={self.tolerance!r})"
        )


def secret_fingerprints(profile: object) -> frozenset[bytes]:
    """Fingerprints of the secrets a profile of this package holds (empty for others)."""
    macs = getattr(profile, "_macs", ())
    return frozenset(mac.fingerprint for mac in macs if isinstance(mac, Mac))


def digests(macs: Sequence[Mac], prefix: bytes, body: bytes) -> list[bytes]:
    """Each secret's MAC of ``prefix + body``, in the order of the secrets."""
    return [mac.digest(prefix, body) for mac in macs]


def message_id(digest: bytes) -> str:
    """A one-way id (32 hex digits) of a signed message, from one of its MACs.

    A labelled SHA-256 of the MAC, truncated to 128 bits: it names the message
    without being a signature anyone could send, so a nonce store (or a log of
    its keys) holds no MAC and nothing about the secret.
    """
    return hashlib.sha256(b"hmacguard webhook message id\x00" + digest).hexdigest()[:32]


def match(
    macs: Sequence[Mac], prefix: bytes, body: bytes, candidates: Sequence[bytes]
) -> tuple[int, int] | None:
    """Return (secret index, candidate index) of the first valid candidate, or None.

    Candidates are tried in header order, so the first valid one is found
    whatever the order of the secrets. Each secret's MAC is computed once and
    compared in constant time (``hmac.compare_digest`` over bytes).
    """
    return find(digests(macs, prefix, body), candidates)


def find(expected: Sequence[bytes], candidates: Sequence[bytes]) -> tuple[int, int] | None:
    """:func:`match` on MACs already computed: (secret index, candidate index), or None."""
    for candidate_index, candidate in enumerate(candidates):
        for secret_index, digest in enumerate(expected):
            if hmac.compare_digest(digest, candidate):
                return secret_index, candidate_index
    return None


# -- requests ----------------------------------------------------------------------------------


def collect(headers: HeadersLike) -> dict[str, list[str]]:
    """Group header lines by lowercased name (the core's ``collect_headers``)."""
    return collect_headers(headers)


def check_body(body: object) -> None:
    """Refuse a body that is not bytes: the MAC is over the raw bytes, never over text."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be the raw bytes received, not {type(body).__name__}")


def read_header(grouped: dict[str, list[str]], name: str, title: str) -> str | None:
    """Return one header's value, stripped of surrounding spaces, or None when absent.

    Raises:
        MalformedSignature: the header is repeated with different values, is
            empty, too long, or holds non-ASCII or control characters.
    """
    lines = grouped.get(name)
    if lines is None:
        return None
    value = lines[0]
    for other in lines[1:]:
        if other != value:
            raise MalformedSignature(f"{title} appears more than once with different values")
    if len(value) > MAX_HEADER_CHARS:
        raise MalformedSignature(f"{title} is longer than {MAX_HEADER_CHARS} characters")
    if not value.isascii():
        raise MalformedSignature(f"{title} holds non-ASCII bytes")
    value = value.strip(" \t")
    if not value:
        raise MalformedSignature(f"{title} is empty")
    if not value.isprintable():
        raise MalformedSignature(f"{title} holds control characters")
    return value


def read_timestamp(text: str, title: str) -> int:
    """Parse a timestamp of decimal digits only (no sign, fraction or exponent)."""
    if _TIMESTAMP.fullmatch(text) is None:
        raise MalformedSignature(f"{title} is not an integer number of seconds")
    return int(text)


def read_id(text: str, title: str) -> str:
    """Check a delivery id: at most ``MAX_ID_BYTES`` printable ASCII characters."""
    if len(text) > MAX_ID_BYTES:
        raise MalformedSignature(f"{title} is longer than {MAX_ID_BYTES} characters")
    return text


def check_window(timestamp: int, now: float, tolerance: float, title: str) -> None:
    """Reject a timestamp outside ``now ± tolerance`` (both directions, THREATS W1, W4)."""
    if not math.isfinite(now):
        # A NaN clock would pass both comparisons: fail closed.
        raise ValueError(f"the current time is not a finite number of seconds: {now!r}")
    if now - timestamp > tolerance:
        raise Expired(f"{title} is more than {tolerance:g} s old")
    if timestamp - now > tolerance:
        raise NotYetValid(f"{title} is more than {tolerance:g} s in the future")


def decode_hex(text: str, size: int, title: str) -> bytes:
    """Decode a hex MAC of ``size`` bytes, in either case; anything else is malformed."""
    pattern = _HEX64 if size == 32 else _HEX40
    if pattern.fullmatch(text) is None:
        raise MalformedSignature(f"{title} is not {size * 2} hexadecimal digits")
    return bytes.fromhex(text)


def clock_now(clock: Callable[[], float], now: float | None) -> float:
    """The time to check against: ``now`` when given, else the profile's clock."""
    return clock() if now is None else now


def default_clock() -> float:
    """The wall clock (a function, so a profile's default is visible in its signature)."""
    return time.time()
