"""Verifier: checks a request's RFC 9421 signatures against a policy.

The order of checks, for each candidate signature (at most ``max_signatures``):

1. structure: both fields parse, labels match, members have the right shape,
   component identifiers are valid (``malformed_signature``);
2. parameters: required ones present, no unknown ones, right types
   (``invalid_parameters``);
3. time: ``created`` inside ``[now - max_age, now + clock_skew]``, ``expires``
   not passed (``expired``, ``not_yet_valid``);
4. key lookup (``unknown_key``; a MAC is still computed so an unknown key id
   costs the time a bad MAC does);
5. MAC over the rebuilt signature base, compared in constant time over exactly
   the digest length (``invalid_signature``);
6. coverage: every required component is covered (``insufficient_coverage``).

The first candidate that passes wins; if none does, the first candidate's
error is raised. Then, for :meth:`Verifier.verify`, the body is checked against
``Content-Digest`` (``digest_mismatch``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from hmac import compare_digest
from typing import Any, NamedTuple

from ._algorithms import ALGORITHMS
from ._components import component_from_spec, structured_types
from ._content_digest import verify_content_digest
from ._errors import (
    Expired,
    InsufficientCoverage,
    InvalidParameters,
    InvalidSignature,
    KeyLookupFailed,
    MalformedSignature,
    MissingSignature,
    NotYetValid,
    UnknownKey,
    VerificationError,
)
from ._keys import MAX_ID_BYTES, HMACKey, Keyring, Keys
from ._message import HeadersLike, Message, check_body, normalise_authority
from ._signature_base import build_signature_base
from ._signature_fields import (
    Candidate,
    CoveredComponents,
    FastTemplate,
    match_canonical,
    read_signatures,
)

__all__ = ["DEFAULT_REQUIRED_COMPONENTS", "VerifiedSignature", "Verifier"]

#: Required components of the default policy; ``content-digest`` is added when
#: the request has a body.
DEFAULT_REQUIRED_COMPONENTS = ("@method", "@authority", "@path", "@query")

# RFC 9421 §2.3: the signature parameters defined for HMAC signatures.
# UnknownKey's detail: a constant, as InvalidSignature's is, so that building
# the error takes the same time (the key id is on the error and in the log).
_NO_SUCH_KEY = "no key is known by this key id"
_KNOWN_PARAMS = frozenset({"created", "expires", "nonce", "alg", "keyid", "tag"})
_MAX_AGE_LIMIT = 900  # THREATS T4: windows longer than 15 minutes need an explicit override
_CONTENT_DIGEST = component_from_spec("content-digest")
# Component lists the fast path has judged, per verifier; bounded like the
# component cache they come from.
_FAST_SHAPES_SIZE = 256
# Per component list: the fast path's template without a body, and with one.
_Shapes = tuple["FastTemplate | None", "FastTemplate | None"]


class VerifiedSignature(NamedTuple):
    """Evidence of a verified signature: what was proven, and by which key.

    Attributes:
        key_id: the key that made the signature.
        label: the signature's label in the request.
        created: the ``created`` parameter, epoch seconds.
        expires: the ``expires`` parameter, or None.
        nonce: the ``nonce`` parameter, or None.
        components: the covered components, in signature order, in the short
            form used in configuration (``"@method"``, ``'@query-param;name="x"'``).
        algorithm: the HMAC algorithm, e.g. ``"hmac-sha256"``.
        tag: the ``tag`` parameter, or None.
    """

    key_id: str
    label: str
    created: int
    expires: int | None
    nonce: str | None
    components: tuple[str, ...]
    algorithm: str
    tag: str | None = None

    def covers(self, component: str) -> bool:
        """Tell whether the signature covers ``component`` (e.g. ``"content-type"``)."""
        return component_from_spec(component).spec in self.components


_DIGEST_COVERAGE: dict[tuple[str, ...], bool] = {}


def covers(components: tuple[str, ...], name: str) -> bool:
    """Whether a signature covering ``components`` (their short specs) covers the
    field ``name``, with or without parameters."""
    return any(spec.partition(";")[0] == name for spec in components)


def covers_content_digest(components: tuple[str, ...]) -> bool:
    """Whether a signature covering ``components`` binds ``Content-Digest``
    (with or without parameters), memoised per component list."""
    found = _DIGEST_COVERAGE.get(components)
    if found is None:
        found = covers(components, "content-digest")
        if len(_DIGEST_COVERAGE) > 256:  # bounded: component lists come from requests
            _DIGEST_COVERAGE.clear()
        _DIGEST_COVERAGE[components] = found
    return found


def _single_line_headers(headers: object) -> Mapping[str, str] | None:
    """The headers as ``{lowercase name: value}`` when that loses nothing, else None.

    For a plain dict whose names are all lowercase, the dict itself (nothing
    copied); for ASGI-style ``(bytes, bytes)`` pairs, a decoded dict when no
    name repeats. Anything else (mixed case, repeated names, other types)
    returns None and goes through the general path's full grouping.
    """
    if type(headers) is dict:
        grouped = headers
    elif type(headers) is list:
        try:
            grouped = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        except (AttributeError, TypeError, ValueError):
            return None
        if len(grouped) != len(headers):
            return None
    else:
        return None
    try:
        # No upper-case character in any name, so no two names fold together:
        # one join and one lower() (0.4 µs for eight names; str.islower on
        # each name took 1.4 µs).
        names = "".join(grouped)
    except TypeError:  # a bytes name in a dict
        return None
    return grouped if names.lower() == names else None


def _text_param(params: Mapping[str, object], name: str, label: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if type(value) is not str:
        raise InvalidParameters(f"the {name} parameter must be a string", label=label)
    if not value:
        raise InvalidParameters(f"the {name} parameter is empty", label=label)
    if len(value) > MAX_ID_BYTES:
        raise MalformedSignature(
            f"the {name} parameter is longer than {MAX_ID_BYTES} bytes", label=label
        )
    return value


def _int_param(params: Mapping[str, object], name: str, label: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise InvalidParameters(f"the {name} parameter must be a non-negative integer", label=label)
    return value


class Verifier:
    """Verifies RFC 9421 HMAC signatures on requests, against a policy.

    Args:
        keys: a mapping ``{key_id: secret}``, a list of :class:`HMACKey`, or a
            (sync or async) callable ``key_id -> HMACKey | None``.
        required_components: components every accepted signature must cover.
            None (default) means ``@method @authority @path @query`` plus
            ``content-digest`` whenever the request has a body. An explicit
            sequence replaces that set entirely.
        max_age: seconds a signature stays valid after ``created`` (default 300;
            more than 900 needs ``allow_long_max_age=True``).
        clock_skew: seconds ``created`` may lie in the future (default 30).
        require_nonce: require the ``nonce`` parameter (default True). Replay
            protection itself is the nonce store's job, in the adapters.
        tag: only consider signatures whose ``tag`` parameter equals this.
        allow_long_max_age: accept a ``max_age`` above 900 seconds.
        max_signatures: at most this many signatures in a request (default 4).
        max_components: at most this many covered components (default 32).
        max_field_bytes: ``Signature-Input`` and ``Signature`` size limit (8 KiB).
        structured_fields: extra ``{field: "item"|"list"|"dictionary"}`` types for
            components with the ``sf`` or ``key`` parameter.
        clock: returns the current time in epoch seconds.

    Raises:
        ValueError, TypeError: an invalid policy, at construction.

    Example::

        verifier = Verifier({"client-1": secret})
        verified = verifier.verify("POST", "https://api.example/v1/items", headers, body)
        verified.key_id  # "client-1"
    """

    def __init__(
        self,
        keys: Keys | Keyring,
        *,
        required_components: Sequence[str] | None = None,
        max_age: int = 300,
        clock_skew: int = 30,
        require_nonce: bool = True,
        tag: str | None = None,
        allow_long_max_age: bool = False,
        max_signatures: int = 4,
        max_components: int = 32,
        max_field_bytes: int = 8192,
        structured_fields: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keyring = keys if isinstance(keys, Keyring) else Keyring(keys)
        if required_components is None:
            self._required = tuple(component_from_spec(c) for c in DEFAULT_REQUIRED_COMPONENTS)
            self._digest_with_body = True
        else:
            if isinstance(required_components, str):
                raise TypeError("required_components is a sequence of strings, not one string")
            self._required = tuple(component_from_spec(c) for c in required_components)
            if not self._required:
                # RFC 9421 §7.2.2: a signature over nothing fits any request.
                raise ValueError("required_components is empty: any signature would do")
            self._digest_with_body = False
        self._required_set = frozenset(self._required)
        self._required_with_body = (
            self._required_set | {_CONTENT_DIGEST} if self._digest_with_body else self._required_set
        )
        for name, value, low in (
            ("max_age", max_age, 1),
            ("clock_skew", clock_skew, 0),
            ("max_signatures", max_signatures, 1),
            ("max_components", max_components, 1),
            ("max_field_bytes", max_field_bytes, 64),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int")
            if value < low:
                raise ValueError(f"{name} must be at least {low}")
        if max_age > _MAX_AGE_LIMIT and not allow_long_max_age:
            raise ValueError(
                f"max_age={max_age} is longer than {_MAX_AGE_LIMIT} s, which widens the replay "
                "window; pass allow_long_max_age=True if you mean it"
            )
        if clock_skew > max_age:
            raise ValueError("clock_skew must not exceed max_age")
        if tag is not None and (not isinstance(tag, str) or not tag):
            raise ValueError("tag must be a non-empty string")
        self._max_age = max_age
        self._clock_skew = clock_skew
        self._require_nonce = bool(require_nonce)
        self._tag = tag
        self._max_signatures = max_signatures
        self._max_components = max_components
        self._max_field_bytes = max_field_bytes
        self._sf_types = structured_types(structured_fields)
        self._clock = clock
        # The fast path needs keys known up front and no tag selection.
        self._fast_keys = self._keyring.static_keys if tag is None else None
        # An unknown key id is refused after computing a MAC with one of the
        # configured keys (warm in cache, so as fast as a known key's; the
        # keyring's throwaway key measured 0.2-0.4 µs slower), else with it.
        self._dummy_key = next(iter((self._fast_keys or {}).values()), self._keyring.dummy)
        self._fast_shapes: dict[CoveredComponents, _Shapes] = {}

    def __repr__(self) -> str:
        return (
            f"Verifier({self._keyring!r}, max_age={self._max_age}, "
            f"clock_skew={self._clock_skew}, require_nonce={self._require_nonce})"
        )

    @property
    def keyring(self) -> Keyring:
        """Where key ids are looked up."""
        return self._keyring

    @property
    def required_components(self) -> tuple[str, ...]:
        """The components every accepted signature covers (short form)."""
        return tuple(c.spec for c in self._required)

    @property
    def requires_digest_with_body(self) -> bool:
        """True when a request with a body must cover ``content-digest`` (the default)."""
        return self._digest_with_body

    @property
    def require_nonce(self) -> bool:
        """True when signatures must carry a ``nonce``."""
        return self._require_nonce

    @property
    def clock(self) -> Callable[[], float]:
        """The clock this verifier reads, in epoch seconds."""
        return self._clock

    @property
    def tag(self) -> str | None:
        """The ``tag`` a signature must carry, or None."""
        return self._tag

    def signature_base(
        self,
        method: str | bytes,
        url: str | bytes,
        headers: HeadersLike | None,
        *,
        label: str | None = None,
    ) -> bytes:
        """Return the signature base this verifier computes for a request.

        For debugging only: it shows what the server signed over, so a client
        can compare it with its own. It never belongs in a response to an
        untrusted client (RFC 9421 §8.3: an oracle).

        Args:
            label: the signature to rebuild; by default the first one.

        Raises:
            VerificationError: the signature fields or a covered component
                cannot be read, so there is no base to show;
                :class:`MissingSignature` if no signature has ``label``.
        """
        message = Message(method, url, headers)
        candidates = self._candidates(message)
        if label is None:
            candidate = candidates[0]
        else:
            found = [c for c in candidates if c.label == label]
            if not found:
                labels = ", ".join(repr(c.label) for c in candidates)
                raise MissingSignature(
                    f"the request has no signature labelled {label!r} (it has {labels})"
                )
            candidate = found[0]
        if candidate.error is not None:
            raise candidate.error
        return build_signature_base(
            message, candidate.covered.components, candidate.signature_params, self._sf_types
        )

    @property
    def max_age(self) -> int:
        """Seconds a signature stays acceptable after its ``created`` time."""
        return self._max_age

    @property
    def clock_skew(self) -> int:
        """Seconds ``created`` may lie in the future (the signer's clock may run ahead)."""
        return self._clock_skew

    @property
    def nonce_ttl(self) -> int:
        """Seconds a nonce must be remembered to cover the whole acceptance window.

        A signature is accepted from ``created - clock_skew`` until
        ``created + max_age``; counting from the moment it is first accepted, a
        replay is possible for up to ``max_age + clock_skew`` seconds. Another
        ``clock_skew`` covers servers whose clocks differ by that much, and one
        second covers rounding (RFC 9421 §3.2.1, §7.2.2).
        """
        return self._max_age + 2 * self._clock_skew + 1

    # -- public entry points -------------------------------------------------

    def verify(
        self,
        method: str | bytes,
        url: str | bytes,
        headers: HeadersLike | None,
        body: bytes | None = None,
        *,
        now: float | None = None,
    ) -> VerifiedSignature:
        """Verify a request, body included, or raise :class:`VerificationError`.

        Args:
            method: the method as received.
            url: the absolute URL: scheme, authority, and the raw (still
                percent-encoded) path and query.
            headers: a mapping or ``(name, value)`` pairs (repeated names
                allowed), as ``str`` or ``bytes``.
            body: the exact body bytes, or None for no body.
            now: the current time in epoch seconds (default: the clock).

        Returns:
            A :class:`VerifiedSignature`.

        Raises:
            VerificationError: a leaf naming the precise failure.
            TypeError: ``body`` is not bytes (a ``str``, a ``dict``...).
        """
        if body is not None and type(body) is not bytes:
            check_body(body)  # a str or a dict: a clear TypeError, not hashlib's
        if self._fast_keys is None and self._keyring.is_async:  # static keys are never async
            raise TypeError("the key resolver is async: call averify() instead of verify()")
        current = self._clock() if now is None else now
        has_body = bool(body)
        verified = self._try_fast(method, url, headers, current, has_body, body, True)
        if verified is not None:
            return verified
        message = Message(method, url, headers)
        verified = self._general(message, current, has_body)
        self._check_body(verified, message, body)
        return verified

    async def averify(
        self,
        method: str | bytes,
        url: str | bytes,
        headers: HeadersLike | None,
        body: bytes | None = None,
        *,
        now: float | None = None,
    ) -> VerifiedSignature:
        """Like :meth:`verify`, awaiting an async key resolver."""
        if body is not None and type(body) is not bytes:
            check_body(body)  # a str or a dict: a clear TypeError, not hashlib's
        current = self._clock() if now is None else now
        has_body = bool(body)
        verified = self._try_fast(method, url, headers, current, has_body, body, True)
        if verified is not None:
            return verified
        message = Message(method, url, headers)
        verified = await self._ageneral(message, current, has_body)
        self._check_body(verified, message, body)
        return verified

    def verify_headers(
        self,
        method: str | bytes,
        url: str | bytes,
        headers: HeadersLike | None,
        *,
        has_body: bool,
        now: float | None = None,
    ) -> VerifiedSignature:
        """Verify everything but the body, for servers that stream it.

        Every check of :meth:`verify` runs except the comparison of the body
        with ``Content-Digest``, which the caller does while reading the body
        (see :class:`~hmacguard.DigestVerifier`) when the signature covers
        ``content-digest``. ``has_body`` says whether the request announces a
        body (``Content-Length`` above 0, or ``Transfer-Encoding``): then the
        default policy requires ``content-digest`` to be covered.

        Raises:
            VerificationError: a leaf naming the precise failure.
        """
        if self._keyring.is_async:
            raise TypeError("the key resolver is async: call averify_headers() instead")
        current = self._clock() if now is None else now
        verified = self._try_fast(method, url, headers, current, has_body, None, False)
        if verified is not None:
            return verified
        return self._general(Message(method, url, headers), current, has_body)

    def _general(self, message: Message, now: float, has_body: bool) -> VerifiedSignature:
        """The general path: each candidate in turn; the first that passes wins,
        else the first candidate's error is raised."""
        first_error: VerificationError | None = None
        for candidate in self._candidates(message):
            try:
                key_id = self._check_parameters(candidate, now)
                key = self._keyring.lookup(key_id)
                return self._finish(candidate, key, key_id, message, has_body)
            except VerificationError as exc:
                first_error = first_error or exc
        assert first_error is not None  # noqa: S101  (_candidates never returns an empty list)
        try:
            raise first_error
        finally:
            # The traceback holds this frame: without this, every refusal
            # would leave the error, its frame and their locals in a cycle for
            # the garbage collector (16 objects per refusal, measured).
            first_error = None

    def _verify_headers_prepared(
        self,
        method: str,
        scheme: str,
        authority: str,
        path: str,
        query: str | None,
        headers: dict[bytes, bytes] | None,
        raw: list[tuple[bytes, bytes]],
        has_body: bool,
    ) -> VerifiedSignature:
        """:meth:`verify_headers` for the middleware, which has split the URL
        and made ``headers`` a dict of lowercase byte names when it could
        (else None); ``raw`` is the server's header list as is."""
        now = self._clock()
        if headers is not None and self._fast_keys is not None:
            verified = self._fast_asgi(
                method, scheme, authority, path, query, headers, now, has_body
            )
            if verified is not None:
                return verified
        url = (
            f"{scheme}://{authority}{path}"
            if query is None
            else f"{scheme}://{authority}{path}{query}"
        )
        return self._general(Message(method, url, raw), now, has_body)

    async def averify_headers(
        self,
        method: str | bytes,
        url: str | bytes,
        headers: HeadersLike | None,
        *,
        has_body: bool,
        now: float | None = None,
    ) -> VerifiedSignature:
        """Like :meth:`verify_headers`, awaiting an async key resolver."""
        current = self._clock() if now is None else now
        verified = self._try_fast(method, url, headers, current, has_body, None, False)
        if verified is not None:
            return verified
        return await self._ageneral(Message(method, url, headers), current, has_body)

    async def _ageneral(self, message: Message, now: float, has_body: bool) -> VerifiedSignature:
        """:meth:`_general`, awaiting the key resolver."""
        first_error: VerificationError | None = None
        for candidate in self._candidates(message):
            try:
                key_id = self._check_parameters(candidate, now)
                key = await self._keyring.alookup(key_id)
                return self._finish(candidate, key, key_id, message, has_body)
            except VerificationError as exc:
                first_error = first_error or exc
        assert first_error is not None  # noqa: S101  (_candidates never returns an empty list)
        try:
            raise first_error
        finally:
            # The traceback holds this frame: without this, every refusal
            # would leave the error, its frame and their locals in a cycle for
            # the garbage collector (16 objects per refusal, measured).
            first_error = None

    def _other_nonces(
        self, method: str, url: str, headers: HeadersLike, winner: VerifiedSignature
    ) -> tuple[tuple[str, str], ...]:
        """The (key id, nonce) pairs of the request's other signatures that may
        verify, now or later, each once, the winner's left out.

        RFC 9421 §4.3 lets a request carry several signatures. Any one of them,
        stripped of the others, could be sent again on its own, and one that
        fails a check now may pass later (its ``created`` still ahead, its key
        not yet known, its resolver failing for a moment). So each such pair
        is spent with the winner's. A signature whose MAC is wrong under its
        key is not: it proves nothing and never will, and spending its pair
        would let the holder of one key burn another client's nonce (THREATS
        R2). Only well-formed ids count.
        """
        message = Message(method, url, headers)
        pairs: dict[tuple[str, str], None] = {}
        for candidate in self._candidates(message):
            if candidate.label == winner.label or candidate.error is not None:
                continue
            key_id, nonce = candidate.params.get("keyid"), candidate.params.get("nonce")
            if (
                isinstance(key_id, str)
                and isinstance(nonce, str)
                and 0 < len(key_id) <= MAX_ID_BYTES
                and 0 < len(nonce) <= MAX_ID_BYTES
                and (key_id, nonce) != (winner.key_id, winner.nonce)
                and (key_id, nonce) not in pairs
                and self._may_verify(message, candidate, key_id)
            ):
                pairs[key_id, nonce] = None
        return tuple(pairs)

    def _may_verify(self, message: Message, candidate: Candidate, key_id: str) -> bool:
        """Whether ``candidate`` may verify, now or later: its MAC is right under
        its key, or its key cannot be read now (unknown, a resolver that is
        async or fails). False only when its key says its MAC is wrong, or
        this request cannot give the base it covers."""
        if self._keyring.is_async:
            return True  # not looked up: docs/security.md, "Multiple signatures"
        try:
            key = self._keyring.lookup(key_id)
        except KeyLookupFailed:
            return True
        if key is None:
            return True
        try:
            base = build_signature_base(
                message, candidate.covered.components, candidate.signature_params, self._sf_types
            )
        except VerificationError:
            return False
        return key.verify_mac(base, candidate.signature)

    def _try_fast(
        self,
        method: object,
        url: object,
        headers: object,
        now: float,
        has_body: bool,
        body: bytes | None,
        check_digest: bool,
    ) -> VerifiedSignature | None:
        if self._fast_keys is None or type(url) is not str:
            return None
        try:
            single = _single_line_headers(headers)
            if single is None:
                return None
            return self._fast_accept(method, url, single, now, has_body, body, check_digest)
        except TypeError:  # bytes where text was expected: the general path decides
            return None

    # -- the steps -----------------------------------------------------------

    def _fast_accept(
        self,
        method: object,
        url: str,
        headers: Mapping[str, str],
        now: float,
        has_body: bool,
        body: bytes | None,
        check_digest: bool,
    ) -> VerifiedSignature | None:
        """Accept the common case in one pass, or return None.

        ``headers`` maps lowercased names to their one line each (see
        :func:`_single_line_headers`). The URL is split as ``split_url()``
        splits it, for the two usual schemes and no fragment; anything else
        goes the general way. The rest is :meth:`_fast_core`.
        """
        if type(method) is not str:
            return None
        inputs = headers.get("signature-input")
        signatures = headers.get("signature")
        if inputs is None or signatures is None:
            return None
        if url.startswith("https://"):
            scheme, rest = "https", url[8:]
        elif url.startswith("http://"):
            scheme, rest = "http", url[7:]
        else:
            return None
        if "#" in rest:
            return None
        at = rest.find("?")
        target, query = (rest, None) if at == -1 else (rest[:at], rest[at:])
        at = target.find("/")
        authority, path = (target, "/") if at == -1 else (target[:at], target[at:])
        return self._fast_core(
            method,
            scheme,
            authority,
            path,
            query,
            inputs,
            signatures,
            headers.get,
            False,
            now,
            has_body,
            body,
            check_digest,
        )

    def _fast_asgi(
        self,
        method: str,
        scheme: str,
        authority: str,
        path: str,
        query: str | None,
        headers: Mapping[bytes, bytes],
        now: float,
        has_body: bool,
    ) -> VerifiedSignature | None:
        """:meth:`_fast_accept` for a server's request, already in parts.

        ``headers`` maps lowercase byte names to their one line each, as an
        ASGI server gives them; only the values the signature needs are
        decoded. ``query`` is None when absent, else starts with ``?``. Parts
        that a URL would split differently (a ``/``, ``?`` or ``#`` in the
        authority, a path not starting with ``/`` or holding a ``?`` or ``#``)
        go the general way, so both routes judge the same URL.
        """
        inputs = headers.get(b"signature-input")
        signatures = headers.get(b"signature")
        if (
            inputs is None
            or signatures is None
            or "/" in authority
            or "?" in authority
            or "#" in authority
            or path[:1] != "/"
            or "?" in path
            or "#" in path
            or (query is not None and "#" in query)
        ):
            return None
        return self._fast_core(
            method,
            scheme,
            authority,
            path,
            query,
            inputs.decode("latin-1"),
            signatures.decode("latin-1"),
            headers.get,
            True,
            now,
            has_body,
            None,
            False,
        )

    def _fast_core(
        self,
        method: str,
        scheme: str,
        authority: str,
        path: str,
        query: str | None,
        inputs: str,
        signatures: str,
        get: Callable[..., Any],
        raw: bool,
        now: float,
        has_body: bool,
        body: bytes | None,
        check_digest: bool,
    ) -> VerifiedSignature | None:
        """Accept the common case in one pass, or return None.

        One signature of the canonical shape (see ``_signature_fields``), a
        component list already validated, static keys, every component a plain
        header or a simple derived one, the body covered by a single canonical
        ``sha-256`` digest. It only ever *accepts*: on anything else, and on
        any failure before the MAC, it returns None and the general path
        decides, with the precise reason; a MAC that fails here would fail there
        too and raises :class:`InvalidSignature` at once. It never accepts what
        the general path rejects.

        ``get`` reads a header's one line by name: ``str`` names and values, or
        with ``raw``, ``bytes`` ones (decoded as Latin-1 here).
        """
        keys = self._fast_keys
        if (
            keys is None
            or not authority
            or len(inputs) > self._max_field_bytes
            or len(signatures) > self._max_field_bytes
        ):
            return None
        pair = match_canonical(inputs, signatures)
        if pair is None:
            return None
        (
            label,
            params_text,
            covered,
            created_text,
            key_id,
            alg,
            expires_text,
            nonce,
            tag,
            mac,
        ) = pair
        key = keys.get(key_id)
        shapes = self._fast_shapes.get(covered) or self._fast_shape(covered)
        fast = shapes[has_body]
        if (
            fast is None
            or (nonce is None and self._require_nonce)
            or (
                alg is not None
                and (alg != key.alg.name if key is not None else alg not in ALGORITHMS)
            )
        ):
            return None
        # Time window (RFC 9421 §3.2.1), as _check_parameters computes it.
        created = int(created_text)
        # Written so that a NaN clock fails it (every comparison with NaN is false).
        if not (created <= now + self._clock_skew and now - created <= self._max_age):
            return None
        expires = None
        if expires_text is not None:
            expires = int(expires_text)
            if expires < created or now > expires:
                return None
        if ":" in authority or "@" in authority:
            authority = normalise_authority(authority, scheme)
        else:
            authority = authority.lower()
        # The arguments follow DERIVED_SLOTS; RFC 9421 §2.2.7 for the absent
        # query. The path is never empty here: split_url() gives "/" for an
        # empty one (§2.2.6), and _fast_asgi() takes only paths starting "/".
        # An absent header reads as "\r", which the check below refuses like
        # any other carriage return.
        literals, header_names, header_bytes, arrange = fast
        if raw:
            values = [get(name, b"\r").decode("latin-1").strip(" \t") for name in header_bytes]
        else:
            values = [get(name, "\r").strip(" \t") for name in header_names]
        parts = (method, authority, path, scheme, query or "?", *values, params_text)
        # Any line break or non-ASCII character: the general path explains it.
        # (Looking for a line break in the parts, joined, costs a tenth of
        # counting the base's lines: str.count tests character by character.)
        joined = "".join(parts)
        if "\n" in joined or "\r" in joined:
            return None
        base = "".join(arrange(parts + literals))
        try:
            data = base.encode("ascii")
        except UnicodeEncodeError:
            return None
        if key is None:
            # The general path would reach its own key lookup and refuse the
            # same way; refusing here, after the same MAC work as a bad MAC,
            # keeps an unknown key id as fast as a known one (THREATS K2: going
            # the general way cost 13 µs more, a timing oracle).
            compare_digest(self._dummy_key.mac(data), mac)
            raise UnknownKey(_NO_SUCH_KEY, label=label, key_id=key_id)
        # HMACKey.verify_mac(), less one call. compare_digest refuses a MAC of
        # the wrong length (CVE-2024-21491) after the same work as any other.
        if not compare_digest(key.mac(data), mac):
            # Everything before the MAC passed, so the general path would reach
            # this same comparison and fail it: say so now rather than pay twice.
            raise InvalidSignature(
                "the signature does not match the request", label=label, key_id=key_id
            )
        if check_digest and covered.covers_digest:
            digest = get("content-digest")
            if digest is None:
                return None
            try:
                verify_content_digest(digest, b"" if body is None else body)
            except VerificationError as exc:
                exc.label, exc.key_id = label, key_id
                raise
        # tuple.__new__ skips NamedTuple's Python-level __new__ on this hot path.
        return tuple.__new__(
            VerifiedSignature,
            (key_id, label, created, expires, nonce, covered.specs, key.alg.name, tag),
        )

    def _fast_shape(self, covered: CoveredComponents) -> _Shapes:
        """The fast path's template for ``covered`` (without, with a body), or None.

        None where the list has no template, exceeds ``max_components`` or
        does not cover what this verifier requires: a shortfall is left to the
        general path, which names it. Remembered per list (bounded).
        """
        fast = covered.fast if len(covered.components) <= self._max_components else None
        shapes = (
            fast if self._required_set <= covered.covered else None,
            fast if self._required_with_body <= covered.covered else None,
        )
        if len(self._fast_shapes) >= _FAST_SHAPES_SIZE:
            self._fast_shapes.clear()
        self._fast_shapes[covered] = shapes
        return shapes

    def _candidates(self, message: Message) -> list[Candidate]:
        candidates = read_signatures(
            message.headers,
            max_signatures=self._max_signatures,
            max_components=self._max_components,
            max_field_bytes=self._max_field_bytes,
            tag=self._tag,
        )
        if not candidates:
            raise InvalidParameters(f"no signature carries the tag {self._tag!r}")
        return candidates

    def _check_parameters(self, candidate: Candidate, now: float) -> str:
        if candidate.error is not None:
            raise candidate.error
        params = candidate.params
        label = candidate.label
        for name in params:
            if name not in _KNOWN_PARAMS:
                raise InvalidParameters(f"unknown signature parameter {name!r}", label=label)
        created = _int_param(params, "created", label)
        expires = _int_param(params, "expires", label)
        key_id = _text_param(params, "keyid", label)
        nonce = _text_param(params, "nonce", label)
        alg = _text_param(params, "alg", label)
        _text_param(params, "tag", label)
        if created is None:
            raise InvalidParameters("the signature has no created parameter", label=label)
        if key_id is None:
            raise InvalidParameters("the signature has no keyid parameter", label=label)
        if nonce is None and self._require_nonce:
            raise InvalidParameters("the signature has no nonce parameter", label=label)
        if alg is not None and alg not in ALGORITHMS:
            # RFC 9421 §3.2 step 6: an algorithm outside the allowed set fails.
            raise InvalidParameters(f"unsupported alg {alg!r}", label=label, key_id=key_id)
        if expires is not None and expires < created:
            raise InvalidParameters("expires precedes created", label=label, key_id=key_id)
        if not math.isfinite(now):
            # A NaN clock would pass every comparison below: fail closed.
            raise ValueError(f"the current time is not a finite number of seconds: {now!r}")
        # RFC 9421 §3.2.1: the verifier enforces its own freshness window on created.
        if created > now + self._clock_skew:
            raise NotYetValid(
                f"created is {created - now:.0f} s in the future "
                f"(clock skew allowed: {self._clock_skew} s)",
                label=label,
                key_id=key_id,
            )
        if now - created > self._max_age:
            raise Expired(
                f"created is {now - created:.0f} s old (max_age: {self._max_age} s)",
                label=label,
                key_id=key_id,
            )
        if expires is not None and now > expires:
            raise Expired(f"expires passed {now - expires:.0f} s ago", label=label, key_id=key_id)
        return key_id

    def _finish(
        self,
        candidate: Candidate,
        key: HMACKey | None,
        key_id: str,
        message: Message,
        has_body: bool,
    ) -> VerifiedSignature:
        label = candidate.label
        covered = candidate.covered
        try:
            base = build_signature_base(
                message, covered.components, candidate.signature_params, self._sf_types
            )
        except VerificationError as exc:
            # The client's answer must not depend on whether the key exists
            # (THREATS K2): a base that cannot be built for an unknown key is
            # unknown_key only where that is told as invalid_signature too.
            if key is None and isinstance(exc, InvalidSignature):
                raise UnknownKey(_NO_SUCH_KEY, label=label, key_id=key_id) from None
            exc.label, exc.key_id = label, (key_id if key is not None else None)
            raise
        if key is None:
            self._dummy_key.verify_mac(base, candidate.signature)
            raise UnknownKey(_NO_SUCH_KEY, label=label, key_id=key_id)
        params = candidate.params
        alg = params.get("alg")
        if alg is not None and alg != key.algorithm:
            # RFC 9421 §3.2 step 6. Answered like a bad MAC, after the same
            # work, so that a wrong alg does not tell known key ids apart (K2).
            key.verify_mac(base, candidate.signature)
            raise InvalidSignature(
                f"alg {alg!r} disagrees with the key's algorithm", label=label, key_id=key_id
            )
        if not key.verify_mac(base, candidate.signature):
            raise InvalidSignature(
                "the signature does not match the request", label=label, key_id=key_id
            )
        required = self._required_with_body if has_body else self._required_set
        if not required <= covered.covered:
            missing = [c.spec for c in self._required if c not in covered.covered]
            if has_body and self._digest_with_body and _CONTENT_DIGEST not in covered.covered:
                missing.append(_CONTENT_DIGEST.spec)
            raise InsufficientCoverage(
                f"the signature does not cover {', '.join(missing)}", label=label, key_id=key_id
            )
        return VerifiedSignature(
            key_id,
            label,
            params["created"],  # type: ignore[arg-type]
            params.get("expires"),  # type: ignore[arg-type]
            params.get("nonce"),  # type: ignore[arg-type]
            covered.specs,
            key.algorithm,
            params.get("tag"),  # type: ignore[arg-type]
        )

    @staticmethod
    def _check_body(verified: VerifiedSignature, message: Message, body: bytes | None) -> None:
        if not covers_content_digest(verified.components):
            return
        value = message.header("content-digest")
        if value is None:  # pragma: no cover  (the base could not have been built)
            raise InvalidSignature("Content-Digest is covered but absent")
        try:
            verify_content_digest(value, b"" if body is None else body)
        except VerificationError as exc:
            exc.label, exc.key_id = verified.label, verified.key_id
            raise
