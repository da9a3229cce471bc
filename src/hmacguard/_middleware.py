"""SignatureMiddleware: a pure ASGI middleware that verifies every request.

The pipeline (DESIGN "What a request goes through on the server"):

1. Exempt path, or not an HTTP/WebSocket scope: pass through untouched.
2. Headers: rebuild the request's URL from the raw path and the ``Host``
   header (or the configured external values) and verify the signature with
   the core. A failure answers at once, before a byte of the body is read.
3. Body: read it chunk by chunk, hashing as it arrives; 413 the moment it
   passes ``max_body_size``; then compare with ``Content-Digest``.
4. Replay: only now, with the MAC and the body proven, record (key id, nonce)
   in the nonce store. Seen before: a replay, answered like a bad MAC (401
   ``invalid_signature``) and logged as ``replayed``. Store down: 503.
5. Hand the app the exact bytes received, once, then pass ``receive`` through;
   the :class:`VerifiedSignature` is in ``scope["state"]["signature"]``.

This module translates between ASGI and the core and answers errors; it does
not know how a signature base is built.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import math
import sys
import types
from collections import Counter
from collections.abc import (
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from ._components import split_covered_field
from ._content_digest import DigestVerifier, verify_content_digest
from ._deadlines import Deadlines
from ._error_response import WEBHOOK_MESSAGES, ErrorResponder, accept_signature
from ._errors import (
    BodyTimeout,
    BodyTooLarge,
    Expired,
    InsufficientCoverage,
    KeyLookupFailed,
    MalformedRequest,
    NonceStoreUnavailable,
    Replayed,
    VerificationError,
    VerificationUnavailable,
)
from ._keys import SECRET_TEXT_CHARS, Keys
from ._message import (
    GOOD_HOSTS,
    MAX_HOST_PORT,
    MAX_LENGTH_DIGITS,
    is_host_port,
    normalise_authority,
)
from ._nonce_store import MemoryNonceStore, NonceStore, delivery_key, nonce_key
from ._signer import METHOD_OVERRIDES
from ._verifier import VerifiedSignature, Verifier, covers, covers_content_digest

if TYPE_CHECKING:
    from .webhooks import WebhookProfile

__all__ = ["SignatureMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorHandler: TypeAlias = Callable[[Scope, VerificationError], Any]

logger = logging.getLogger("hmacguard")
# One WARNING per request refused for what the client sent (4xx), on a child of
# "hmacguard": its records reach the same handlers, and operators can tune or
# route those lines (a scanner's flood of unsigned requests) apart from what
# needs the server's attention, which stays on "hmacguard": 5xx refusals (the
# nonce store or a key lookup down), a scope the server built wrongly
# (_SCOPE_FAULTS), a failing on_error handler, start-up warnings.
rejections = logging.getLogger("hmacguard.rejected")

_T = TypeVar("_T")

# asyncio's documented low-level lookup: the running loop, or None (no exception).
_running_loop = asyncio.events._get_running_loop

_WS_SCHEMES = {"ws": "http", "wss": "https"}
# What the header phase gives: the verified signature, the declared body size
# (-1: none announced), the Content-Digest value, and the (key id, nonce) pairs
# of the request's other signatures (RFC 9421 §4.3), spent with the winner's.
_HeaderPhase = tuple[VerifiedSignature, int, "str | None", tuple[tuple[str, str], ...]]

# What _request() gives: method, scheme, authority, path, query, declared body
# size, the header dict for the fast path (or None), the header list, and the
# Content-Digest value.
_Request = tuple[
    str,
    str,
    str,
    str,
    "str | None",
    int,
    "dict[bytes, bytes] | None",
    "list[tuple[bytes, bytes]]",
    "str | None",
]


class SignatureMiddleware:
    """Verify the HTTP message signature of every request before the app sees it.

    Args:
        app: the ASGI application to protect.
        keys: the keys, as for :class:`Verifier` (mapping, list of
            ``HMACKey`` or a sync/async resolver). Give either ``keys`` or
            ``verifier``.
        verifier: a ready :class:`Verifier` (then no policy options here).
        nonce_store: where accepted (key id, nonce) pairs are remembered.
            Default: a :class:`MemoryNonceStore` (one process only).
        require_nonce: False turns replay protection off (logged loudly).
        exempt: paths that skip verification, e.g. ``["/health", "/static/*"]``
            (a trailing ``*`` makes a prefix; anything else matches exactly),
            matched against the path the router sees (without ``root_path``);
            a prefix never covers a ``.`` or ``..`` segment. Or a plain (not
            async) callable ``scope -> bool``: True exempts, False or None
            does not, any other answer is a 503. Everything else is protected.
            Webhook paths are never exempt: an exempt path under one is
            refused at construction, and the callable is not asked about them.
        max_body_size: the largest body accepted, in bytes (default 1 MiB).
        body_limits: other limits for some paths, in bytes, e.g.
            ``{"/uploads/*": 50 * 2**20}``; paths as in ``exempt`` (a
            trailing ``*`` makes a prefix, a prefix never covers a ``.`` or
            ``..`` segment), an exact path before the longest prefix. Each
            is checked against ``Content-Length`` before the body is read,
            and as it arrives. Not for webhook paths (give the profile its
            ``max_body_size``) nor exempt ones (no limit applies there).
        body_timeout: seconds a request with a body has to deliver all of it
            (default 30); then 408 ``body_timeout``, under asyncio and trio.
            None waits forever (THREATS B8: a client trickling its body holds
            the request).
        lookup_timeout: seconds a nonce store or an async key resolver of
            your own has to answer (default 1); then 503
            ``nonce_store_unavailable`` or ``key_lookup_failed``, and the
            call is cancelled. hmacguard's own stores are not watched:
            ``MemoryNonceStore`` never waits, ``RedisNonceStore`` has its own
            ``timeout``. None waits as long as the store or resolver does.
            Under asyncio and trio; a synchronous resolver cannot be cut short.
        authority: the external ``host[:port]`` clients sign, when a proxy
            changes ``Host``; never taken from ``X-Forwarded-*``.
        scheme: the external scheme (``"https"`` behind TLS termination).
        path_prefix: a prefix a proxy strips before the request arrives
            (``"/api"``): clients sign ``/api/items``, the app sees ``/items``.
        on_error: ``(scope, error) -> ASGI app`` (sync or async) to answer an
            error yourself, e.g. with a Starlette ``Response``. It gets the
            precise error (``unknown_key``, ``expired``, ``replayed``...); the
            default answer tells the client ``invalid_signature`` for those.
        debug: put the precise failure and the server's signature base in
            error responses. For development only: it is an oracle.
        webhooks: path prefixes verified by a webhook profile instead of
            RFC 9421, e.g. ``{"/webhooks/stripe": Stripe(secret)}`` (see
            ``hmacguard.webhooks``). The body is read (up to the profile's
            ``max_body_size``, else ``max_body_size``) and verified on its raw
            bytes; the delivery is remembered in the nonce store for the
            profile's ``dedupe_ttl``, and a delivery seen before is answered
            200 ``{"status": "duplicate"}`` without reaching the app (one the
            app did not answer with 2xx is forgotten, so its retry is). The
            app finds the ``VerifiedWebhook`` in ``scope["state"]["webhook"]``.
        required_components: a :class:`Verifier` policy option, as are
            ``max_age``, ``clock_skew``, ``tag``, ``allow_long_max_age``,
            ``max_signatures``, ``max_components``, ``max_field_bytes``,
            ``structured_fields`` and ``clock``: each is passed on as given;
            left out, the Verifier's default applies.

    Raises:
        TypeError, ValueError: invalid configuration, at construction.

    Example::

        app = Starlette(routes=..., middleware=[
            Middleware(SignatureMiddleware, keys={"client-1": secret}),
        ])
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: Keys | None = None,
        *,
        verifier: Verifier | None = None,
        nonce_store: NonceStore | None = None,
        require_nonce: bool | None = None,
        exempt: Iterable[str] | Callable[[Scope], bool | None] = (),
        max_body_size: int = 1024 * 1024,
        body_limits: Mapping[str, int] | None = None,
        body_timeout: float | None = 30.0,
        lookup_timeout: float | None = 1.0,
        authority: str | None = None,
        scheme: str | None = None,
        path_prefix: str = "",
        on_error: ErrorHandler | None = None,
        debug: bool = False,
        webhooks: Mapping[str, WebhookProfile] | None = None,
        required_components: Sequence[str] | None = None,
        max_age: int | None = None,
        clock_skew: int | None = None,
        tag: str | None = None,
        allow_long_max_age: bool | None = None,
        max_signatures: int | None = None,
        max_components: int | None = None,
        max_field_bytes: int | None = None,
        structured_fields: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not callable(app):
            raise TypeError("app must be an ASGI application")
        self.app = app
        if (keys is None) == (verifier is None):
            raise TypeError("give either keys= or verifier=")
        # The Verifier's own policy options, as given (None: its default).
        policy = {
            name: value
            for name, value in (
                ("required_components", required_components),
                ("max_age", max_age),
                ("clock_skew", clock_skew),
                ("tag", tag),
                ("allow_long_max_age", allow_long_max_age),
                ("max_signatures", max_signatures),
                ("max_components", max_components),
                ("max_field_bytes", max_field_bytes),
                ("structured_fields", structured_fields),
                ("clock", clock),
            )
            if value is not None
        }
        if verifier is not None:
            if not isinstance(verifier, Verifier):
                raise TypeError("verifier must be a hmacguard.Verifier")
            if policy or require_nonce is not None:
                raise TypeError("policy options go to the Verifier when verifier= is given")
            self._verifier = verifier
        else:
            assert keys is not None  # noqa: S101  (checked above)
            nonce_policy = True if require_nonce is None else bool(require_nonce)
            self._verifier = Verifier(keys, require_nonce=nonce_policy, **policy)  # type: ignore[arg-type]
        if nonce_store is not None and not isinstance(nonce_store, NonceStore):
            raise TypeError("nonce_store must have an async add(key, ttl) -> bool method")
        if self._verifier.require_nonce:
            # "is None", not "or": an empty store is falsy (it has __len__).
            self._store: NonceStore | None = (
                MemoryNonceStore() if nonce_store is None else nonce_store
            )
        else:
            self._store = nonce_store
            logger.warning(
                "SignatureMiddleware: require_nonce=False: signatures without a nonce are "
                "accepted, so a captured request can be replayed within the time window"
            )
        self._memory = self._store if type(self._store) is MemoryNonceStore else None
        self._ttl = float(self._verifier.nonce_ttl)
        self._max_age = self._verifier.max_age
        self._clock = self._verifier.clock
        self._exact, self._prefixes, self._exempt_call = _exemptions(exempt)
        self._webhooks = _webhook_routes(webhooks)
        _check_paths_miss_webhooks(
            "exempt", self._exact, self._prefixes, self._webhooks, _WEBHOOKS_VERIFIED
        )
        self._exact_limits, self._prefix_limits = _body_limits(body_limits)
        _check_paths_miss_webhooks(
            "body_limits",
            frozenset(self._exact_limits),
            tuple(prefix for prefix, _ in self._prefix_limits),
            self._webhooks,
            "a webhook profile takes its own max_body_size",
        )
        _check_limits_miss_exemptions(
            self._exact_limits, self._prefix_limits, self._exact, self._prefixes
        )
        self._any_limits = bool(self._exact_limits or self._prefix_limits)
        # Each webhook path's clock, chosen once: the profile's own, else the verifier's.
        self._webhook_clocks = {
            prefix: _webhook_clock(profile, self._verifier.clock)
            for prefix, profile in self._webhooks
        }
        self._any_exempt = bool(self._exact or self._prefixes or self._exempt_call)
        # Deliveries are always deduplicated, even with require_nonce=False.
        self._webhook_store: NonceStore | None = None
        if self._webhooks:
            self._webhook_store = MemoryNonceStore() if self._store is None else self._store
        self._webhook_responder = ErrorResponder(
            None,
            debug=bool(debug),
            challenge=b'Webhook realm="hmacguard"',
            messages=WEBHOOK_MESSAGES,
        )
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int):
            raise TypeError("max_body_size must be an int")
        if max_body_size < 0:
            raise ValueError("max_body_size must not be negative")
        self._max_body = max_body_size
        self._body_timeout = _seconds("body_timeout", body_timeout)
        self._deadlines = None if body_timeout is None else Deadlines(float(body_timeout))
        self._lookup_timeout = _seconds("lookup_timeout", lookup_timeout)
        if scheme is not None and scheme not in ("http", "https"):
            raise ValueError('scheme must be "http" or "https"')
        self._scheme = scheme
        if authority is not None:
            if not isinstance(authority, str) or not is_host_port(authority):
                raise ValueError("authority is a host[:port], e.g. 'api.example.com'")
            authority = normalise_authority(authority, scheme or "https")
        self._authority = authority
        if not isinstance(path_prefix, str) or (
            path_prefix
            and (
                not path_prefix.startswith("/")
                or path_prefix.endswith("/")
                or "?" in path_prefix
                or "#" in path_prefix
            )
        ):
            raise ValueError("path_prefix is '' or like '/api' (leading slash, none trailing)")
        self._prefix = path_prefix
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        self._on_error = on_error
        self._debug = bool(debug)
        if self._debug:
            logger.warning(
                "SignatureMiddleware: debug=True: error responses include the precise failure "
                "and the server's signature base. Never enable this in production."
            )
        self._responder = ErrorResponder(
            accept_signature(self._verifier.required_components, tag=self._verifier.tag),
            debug=self._debug,
        )
        self._async_keys = self._verifier.keyring.is_async
        # Static keys: HTTP requests try the one-pass header phase first.
        self._fast = not self._async_keys
        # What lookup_timeout watches: the stores and the resolver we did not write.
        lookups = None if lookup_timeout is None else Deadlines(float(lookup_timeout))
        self._store_deadlines = None if _bounds_itself(self._store) else lookups
        self._webhook_store_deadlines = None if _bounds_itself(self._webhook_store) else lookups
        self._key_deadlines = lookups if self._async_keys else None

    @property
    def verifier(self) -> Verifier:
        """The verifier this middleware uses."""
        return self._verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":  # noqa: PLR1714
            await self.app(scope, receive, send)
            return
        if self._webhooks:
            # Before exemptions: a webhook path is always verified.
            route = self._webhook_route(scope)
            if route is not None:
                await self._webhook(scope, receive, send, *route)
                return
        if self._any_exempt:
            try:
                exempt = self._is_exempt(scope)
            except Exception as exc:  # fail closed: neither a 500 nor the app
                if isinstance(exc, _NotAnAnswer):
                    logger.error("hmacguard: %s", exc)  # it returned: no traceback to show
                else:
                    logger.exception("hmacguard: the exempt callable raised")
                await self._reject(
                    scope, receive, send, VerificationUnavailable(type(exc).__name__)
                )
                return
            if exempt:
                await self.app(scope, receive, send)
                return
        try:
            # Counted before anything is awaited: httptools appends a request
            # trailer to this very list whenever it arrives, even while an async
            # key resolver is awaited.
            header_count = len(scope["headers"])
            found = self._fast_headers(scope) if kind == "http" and self._fast else None
            if found is None:
                found = await self._headers(scope, kind)
            verified, declared, digest, others = found
            body: bytes | None = None
            if kind == "http":
                limit = self._body_limit(scope) if self._any_limits else self._max_body
                # A chunked body (declared 1: of unknown size) may be empty: under
                # a limit of 0 it is measured as it arrives, not refused unread.
                if declared > limit and (declared != 1 or not _chunked(scope["headers"])):
                    raise BodyTooLarge(
                        f"the announced body ({declared} bytes) is over the limit ({limit} bytes)",
                        label=verified.label,
                        key_id=verified.key_id,
                    )
                covers_digest = covers_content_digest(verified.components)
                if covers_digest and digest is None:  # pragma: no cover  (the base needed it)
                    raise InsufficientCoverage("content-digest is covered but absent")
                try:
                    body = await self._body(
                        receive, limit, digest if covers_digest else None, declared
                    )
                except VerificationError as error:
                    error.label, error.key_id = verified.label, verified.key_id
                    raise
                if body is None:
                    return  # the client went away: no response, no app, no nonce
                if len(scope["headers"]) != header_count:
                    # Fields appended while the key was looked up or the body
                    # was read: trailers.
                    raise MalformedRequest(_NO_TRAILERS)
                if body and not covers_digest and self._verifier.requires_digest_with_body:
                    # RFC 9421 §7.2.8: a body the signature does not cover is not protected.
                    raise InsufficientCoverage(
                        "the request has a body but the signature does not cover content-digest",
                        label=verified.label,
                        key_id=verified.key_id,
                    )
            elif not covers(verified.components, "upgrade"):
                # A signed plain GET, given an unsigned Upgrade on the way, would
                # open a WebSocket under its key: a handshake must sign that it is one.
                raise InsufficientCoverage(
                    "a WebSocket handshake's signature must cover upgrade",
                    label=verified.label,
                    key_id=verified.key_id,
                )
            if self._store is not None and self._clock() - verified.created > self._max_age:
                # Still inside its window when its nonce is spent, as when it was
                # checked: nonce_ttl counts from there. A copy held back after its
                # check (a body trickled, a stream left open) would otherwise be
                # spent after the first copy's nonce was forgotten.
                raise Expired(
                    "max_age passed while the request was read, before its nonce was spent",
                    label=verified.label,
                    key_id=verified.key_id,
                )
            spent_before = scope.get(_SPENT)
            if self._memory is not None:
                spent = self._check_replay_in_memory(scope, verified, self._memory, others)
            else:
                spent = await self._check_replay(scope, verified, others)
            if spent:
                scope[_SPENT] = spent if spent_before is None else (*spent_before, *spent)
        except VerificationError as error:
            await self._reject(scope, receive, send, error)
            return
        except Exception as exc:  # fail closed, never a 500 and never the app
            logger.exception("hmacguard: verification failed unexpectedly")
            await self._reject(scope, receive, send, VerificationUnavailable(type(exc).__name__))
            return
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["signature"] = verified
        # Also in the scope itself, which is this request's alone, for
        # hmacguard.starlette: the server may share "state" between requests
        # (hypercorn gave one to each connection until pgjones/hypercorn#274).
        verified_before = scope.get(SCOPE_SIGNATURE)
        scope[SCOPE_SIGNATURE] = verified
        try:
            if body is None:
                await self.app(scope, receive, send)
            else:
                await self.app(scope, _Replay(body, receive), send)
        finally:
            # The pairs are this request's only while it runs: a scope used
            # again afterwards (a test replaying one) is another request.
            if spent:
                scope[_SPENT] = spent_before
            scope[SCOPE_SIGNATURE] = verified_before

    # -- the steps -----------------------------------------------------------

    def _is_exempt(self, scope: Scope) -> bool:
        if self._exempt_call is not None:
            answer: object = self._exempt_call(scope)
            if answer is True or answer is False or answer is None:  # None: a bare return
                return answer is True
            # Only True opens the door: a coroutine (an async callable slipped past
            # the check at start-up), "false" or [0] would all be truthy.
            close = getattr(answer, "close", None)
            if close is not None and isinstance(answer, Awaitable):
                close()  # no "coroutine was never awaited" left behind
            raise _NotAnAnswer(
                f"the exempt callable returned {type(answer).__name__}, not True, False or None"
            )
        if not self._exact and not self._prefixes:
            return False
        path = _route_path(scope)
        if path in self._exact:
            return True
        # A prefix never exempts a "." or ".." segment: "/static/../admin" (or
        # "/static%2F..%2Fadmin", decoded) is not under /static/ once an app or
        # a mount normalises it.
        return path.startswith(self._prefixes) and not _has_dot_segment(path)

    def _body_limit(self, scope: Scope) -> int:
        """The largest body accepted on this request's path (``body_limits``,
        else ``max_body_size``)."""
        path = _route_path(scope)
        limit = self._exact_limits.get(path)
        if limit is not None:
            return limit
        if not _has_dot_segment(path):
            for prefix, size in self._prefix_limits:  # the longest first
                if path.startswith(prefix):
                    return size
        return self._max_body

    def _fast_headers(self, scope: Scope) -> _HeaderPhase | None:
        """The header phase of the usual HTTP request in one pass, or None.

        The usual request: header names in lowercase bytes, none repeated, no
        trailer or method-override header, a well-formed ``Host`` (optional
        with ``authority=``) and a raw path starting with ``/``, and a
        signature the verifier's fast path accepts (which decodes only the
        headers the signature covers). Anything else returns None and
        :meth:`_headers` decides, with the precise reason. A
        ``Content-Length`` that is not a number and a MAC that fails are
        refused at once, as they would be there.
        """
        raw = scope["headers"]
        try:
            headers = dict(raw)
            names = b"".join(headers)
            b"".join(headers.values())
        except (TypeError, ValueError):
            return None
        if (
            len(headers) != len(raw)
            or not names.islower()
            or b"trailer" in headers
            or _names_an_override(headers)
        ):
            return None
        declared = 1 if b"transfer-encoding" in headers else -1
        length = headers.get(b"content-length")
        if length is not None:
            if declared == 1:
                return None  # with Transfer-Encoding: _request() refuses it
            # bytes.isdigit() takes ASCII digits only, and int() bytes. Anything
            # else (whitespace around the digits included) _request() decides.
            if not length.isdigit() or len(length) > MAX_LENGTH_DIGITS:
                return None
            declared = int(length)
        host = headers.get(b"host")
        if host is not None:
            text = host.decode("latin-1")
            if text not in GOOD_HOSTS and not is_host_port(text):
                return None  # _request() refuses it, with the reason
            authority = self._authority or text
        elif self._authority is None:
            return None
        else:
            authority = self._authority
        raw_path = scope.get("raw_path")
        if not raw_path or raw_path[:1] != b"/":
            return None  # checked before path_prefix is put in front, as _request() does
        path = raw_path.decode("latin-1")
        if self._prefix:
            path = self._prefix + path
        query = scope.get("query_string")
        verifier = self._verifier
        verified = verifier._fast_asgi(
            scope["method"],
            self._scheme or scope.get("scheme") or "http",
            authority,
            path,
            "?" + query.decode("latin-1") if query else None,
            headers,
            self._clock(),
            declared > 0,
        )
        if verified is None:
            return None
        digest = headers.get(b"content-digest")
        return verified, declared, None if digest is None else digest.decode("latin-1"), ()

    async def _headers(self, scope: Scope, kind: str) -> _HeaderPhase:
        """The header phase of any request: the signature verified, the
        declared body size and the ``Content-Digest`` value, or an error."""
        (method, scheme, authority, path, query, declared, headers, raw, digest) = self._request(
            scope, kind
        )
        if self._async_keys:
            verified = await self._within(
                self._key_deadlines,
                self._verifier.averify_headers(
                    method, _url(scheme, authority, path, query), raw, has_body=declared > 0
                ),
                KeyLookupFailed,
                "the key resolver",
            )
        else:
            verified = self._verifier._verify_headers_prepared(
                method, scheme, authority, path, query, headers, raw, declared > 0
            )
        if headers is None:  # a name repeated, or not in lowercase
            _check_one_line_each(raw, verified)
        if headers is None or _names_an_override(headers):
            _check_method_override(raw, verified)
        others: tuple[tuple[str, str], ...] = ()
        if _may_hold_several(raw):
            # Any other signature could be stripped out and sent again alone:
            # its nonce is spent with the winner's.
            others = self._verifier._other_nonces(
                method, _url(scheme, authority, path, query), raw, verified
            )
        return verified, declared, digest, others

    def _request(self, scope: Scope, kind: str) -> _Request:
        """The request as the client signed it: method, scheme, authority,
        path (with ``path_prefix``), query (``?...`` or None), the declared body
        size, the header dict for the verifier's fast path (or None), the
        server's header list, and the ``Content-Digest`` value.

        The declared size is -1 without ``Content-Length``; ``Transfer-Encoding``
        counts as a body of unknown size (1). The header dict maps the raw byte
        names to their values when every name is lowercase and none repeats
        (the usual case); nothing is decoded but what the checks read.
        """
        raw = scope["headers"]
        try:
            single: dict[bytes, bytes] | None = dict(raw)
            names = b"".join(single)  # type: ignore[arg-type]
            b"".join(single.values())  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise MalformedRequest(_NOT_BYTE_PAIRS) from None
        if single is not None and len(single) == len(raw) and names.islower():
            if b"trailer" in single:
                raise MalformedRequest(_NO_TRAILERS)
            host_bytes = single.get(b"host")
            host = None if host_bytes is None else host_bytes.decode("latin-1").strip(_OWS)
            length_bytes = single.get(b"content-length")
            length = None if length_bytes is None else length_bytes.decode("latin-1").strip(_OWS)
            declared = 1 if b"transfer-encoding" in single else -1
            digest_bytes = single.get(b"content-digest")
            digest = None if digest_bytes is None else digest_bytes.decode("latin-1")
        else:
            single = None
            host, length, declared, digest = _scan_headers(raw)
        declared = _declared_size(length, declared)
        if host is not None:
            _check_host(host)  # with authority= too: the app may still read the Host
        if self._authority is not None:
            authority = self._authority
        elif host is None:
            raise MalformedRequest("the request has no Host header")
        else:
            authority = host
        raw_path = scope.get("raw_path")
        if raw_path is None:
            # THREATS U1: never fall back to the decoded path, which routers
            # use but clients do not sign.
            raise MalformedRequest(_NO_RAW_PATH)
        if raw_path[:1] != b"/" or b"?" in raw_path or b"#" in raw_path:
            # Only an origin-form target (RFC 9112 §3.2.1) can be verified: a "?"
            # or "#" in the path (h11 splits the target at "?" only) would be read
            # as a query or fragment when the URL is checked, not as the path the
            # app is routed on.
            raise MalformedRequest("the request target is not an absolute path")
        query = scope.get("query_string")
        if query and b"#" in query:
            # A fragment is never sent (RFC 9110 §7.1); one left in the query
            # would be dropped from the URL checked but reach the app.
            raise MalformedRequest("the request target holds a '#'")
        scheme = self._scheme or scope.get("scheme") or "http"
        if kind == "websocket":
            method = "GET"
            scheme = _WS_SCHEMES.get(scheme, scheme)
        else:
            method = scope["method"]
        path = raw_path.decode("latin-1")
        if self._prefix:
            path = self._prefix + path
        return (
            method,
            scheme,
            authority,
            path,
            "?" + query.decode("latin-1") if query else None,
            declared,
            single,
            raw,
            digest,
        )

    async def _body(
        self, receive: Receive, limit: int, digest: str | None, declared: int
    ) -> bytes | None:
        """:func:`_receive_body` within ``body_timeout``, else :class:`BodyTimeout`.

        Only a read that has to wait is watched: a small body has usually
        arrived before the app is called, and ``receive()`` then returns
        without suspending (it is stepped once here to find out), which needs
        no timer. A read that waits is watched by :class:`Deadlines`, which
        cancels this task when the time is up (one timer per event loop, not
        one per request); only that cancellation becomes a 408. Under trio
        the read that waits is resumed in a cancel scope of ``body_timeout``
        seconds instead. A request announcing no body (``Content-Length: 0``)
        is watched the same way: over HTTP/2 its stream still ends only when
        the client says so, and hypercorn waits for that without a limit.
        """
        deadlines = self._deadlines
        if deadlines is None:
            return await _receive_body(receive, limit, digest)
        if "trio" in sys.modules and _running_trio() is not None:
            # Not stepped: a receive() that enters a cancel scope before it
            # waits must run inside this one from the start (trio checks that
            # cancel scopes nest).
            return await self._bounded(
                deadlines, _receive_body(receive, limit, digest), self._body_timed_out
            )
        waiting = receive().__await__()
        try:
            pending = waiting.send(None)
        except StopIteration as done:
            first: Message = done.value
            if first["type"] == "http.request" and not first.get("more_body", False):
                return _whole_body(first, limit, digest)  # at once: nothing to time
            if first["type"] != "http.request":
                return await _receive_body(receive, limit, digest, first)  # the client left
            rest = _receive_body(receive, limit, digest, first)
        else:  # receive() is waiting: it is resumed, under the watch if there is a loop
            rest = _resumed_body(waiting, pending, receive, limit, digest)
        # Only now, when a timer is needed, the loop: on Python 3.11 every lookup
        # of the running loop is a getpid() system call. Not under asyncio, trio
        # has its own deadlines. (asyncio.current_task() would raise
        # RuntimeError there; the loop lookup raises nothing.)
        return await self._bounded(deadlines, rest, self._body_timed_out)

    def _body_timed_out(self) -> BodyTimeout:
        return BodyTimeout(f"the body was not complete after {self._body_timeout} s")

    async def _bounded(
        self,
        deadlines: Deadlines,
        call: Awaitable[_T],
        timed_out: Callable[[], VerificationError],
    ) -> _T:
        """Await ``call`` for at most ``deadlines.timeout`` seconds, else raise
        ``timed_out()``: under asyncio watched by ``deadlines``, under trio in a
        cancel scope, under anything else not bounded (awaited as is)."""
        loop = _running_loop()
        task = None if loop is None else asyncio.current_task(loop)
        if loop is not None and task is not None:
            return await _watched(deadlines, loop, task, call, timed_out)
        # No asyncio task: trio, possibly with a trio-asyncio loop open beside it.
        trio = _running_trio()
        if trio is None:
            return await call
        with trio.move_on_after(deadlines.timeout):
            return await call
        raise timed_out()

    async def _within(
        self,
        deadlines: Deadlines | None,
        call: Awaitable[_T],
        error: type[VerificationError],
        what: str,
    ) -> _T:
        """Await ``call`` (a store's or a key resolver's); past ``lookup_timeout``,
        cancel it and raise ``error``. Unbounded without ``deadlines``."""
        if deadlines is None:
            return await call
        return await self._bounded(
            deadlines,
            call,
            lambda: error(f"{what} did not answer within {self._lookup_timeout} s"),
        )

    async def _add(
        self, store: NonceStore, deadlines: Deadlines | None, key: str, ttl: float
    ) -> bool:
        """``store.add(key, ttl)``, within ``lookup_timeout``; a failure is a 503."""
        try:
            if deadlines is None:  # hmacguard's own store, or no limit: no watch to set
                return await store.add(key, ttl)
            return await self._within(
                deadlines, store.add(key, ttl), NonceStoreUnavailable, "the nonce store"
            )
        except NonceStoreUnavailable:
            raise
        except Exception as exc:
            raise NonceStoreUnavailable(f"the nonce store raised {type(exc).__name__}") from exc

    async def _check_replay(
        self,
        scope: Scope,
        verified: VerifiedSignature,
        others: tuple[tuple[str, str], ...] = (),
    ) -> tuple[_Mark, ...]:
        """Record the winner's (key id, nonce) and the other signatures' pairs
        (``others``); any one already recorded makes the request a replay,
        unless this very request spent it (:func:`_spent_here`). A request
        refused part way (a replay, a store failure) takes back the pairs it
        wrote, so that it spends nothing (THREATS R2). Returns what it spent,
        as the scope notes it (``_SPENT``)."""
        store = self._store
        if store is None:
            return ()
        added: list[str] = []
        spent: list[_Mark] = []
        try:
            for key_id, nonce in _pairs(verified, others):
                key = nonce_key(key_id, nonce)
                if await self._add(store, self._store_deadlines, key, self._ttl):
                    added.append(key)
                elif _spent_here(scope, store, key, self._ttl) is not True:
                    raise self._replayed(verified, key_id)
                spent.append((store, key, self._ttl))
        except Exception:
            discard = getattr(store, "discard", None)
            if discard is not None:
                for key in added:
                    await self._forget(
                        discard,
                        key,
                        self._store_deadlines,
                        _REFUSED_NONCE,
                    )
            raise
        return tuple(spent)

    def _check_replay_in_memory(
        self,
        scope: Scope,
        verified: VerifiedSignature,
        store: MemoryNonceStore,
        others: tuple[tuple[str, str], ...] = (),
    ) -> tuple[_Mark, ...]:
        """:meth:`_check_replay` for the memory store: no await, no coroutine."""
        nonce = verified.nonce
        if not others:  # the usual request: one signature
            if nonce is None:
                return ()
            key = nonce_key(verified.key_id, nonce)
            if (
                not store.add_sync(key, self._ttl)
                and _spent_here(scope, store, key, self._ttl) is not True
            ):
                raise self._replayed(verified)
            return ((store, key, self._ttl),)
        added: list[str] = []
        spent: list[_Mark] = []
        try:
            for key_id, nonce in _pairs(verified, others):
                key = nonce_key(key_id, nonce)
                if store.add_sync(key, self._ttl):
                    added.append(key)
                elif _spent_here(scope, store, key, self._ttl) is not True:
                    raise self._replayed(verified, key_id)
                spent.append((store, key, self._ttl))
        except Exception:
            for key in added:
                store.discard_sync(key)
            raise
        return tuple(spent)

    # -- webhooks ------------------------------------------------------------

    def _webhook_route(self, scope: Scope) -> tuple[str, WebhookProfile] | None:
        """The webhook path the router sees, if any, and its profile. A path with
        a "." or ".." segment is none: a delivery's MAC covers its body, not its
        path, so "/webhooks/stripe/../admin" must not ride on it."""
        path = _route_path(scope)
        if _has_dot_segment(path):
            return None
        for prefix, profile in self._webhooks:  # longest prefix first
            if path == prefix or path.startswith(prefix + "/") or prefix == "/":
                return prefix, profile
        return None

    async def _webhook(
        self, scope: Scope, receive: Receive, send: Send, endpoint: str, profile: WebhookProfile
    ) -> None:
        """Verify a webhook delivery to ``endpoint`` (its configured path) with
        ``profile``, then hand it to the app once."""
        try:
            if scope["type"] != "http":
                raise MalformedRequest("webhook paths take HTTP requests only")
            raw = scope["headers"]
            host, length, declared, _ = _scan_headers(raw)
            declared = _declared_size(length, declared)
            if host is not None:
                # A delivery's MAC covers its body, not the Host, but the app may
                # read the Host (links, redirects) as on any other path.
                _check_host(host)
            now = self._webhook_clocks[endpoint]()
            # Headers first: a missing or stale signature is refused before
            # any body byte is read.
            profile.check_headers(raw, now=now)
            limit = self._max_body if profile.max_body_size is None else profile.max_body_size
            if declared > limit:
                raise BodyTooLarge(
                    f"the announced body ({declared} bytes) is over the limit ({limit})"
                )
            header_count = len(raw)
            body = await self._body(receive, limit, None, declared)
            if body is None:
                return  # the client went away: no response, no app, no delivery recorded
            if len(scope["headers"]) != header_count:
                raise MalformedRequest(_NO_TRAILERS)
            verified = profile.verify(raw, body, now=now)
            later = self._webhook_clocks[endpoint]()
            if later != now:
                # Still inside its window when it is recorded, as when it was
                # checked: dedupe_ttl counts from there (see __call__).
                profile.check_headers(raw, now=later)
            key = delivery_key(profile.scheme, endpoint, verified.dedupe_key)
            fresh = await self._remember_delivery(key, profile.dedupe_ttl)
            if not fresh:
                # Recorded already by this very delivery (an outer middleware on
                # the same store)? Then it is not a duplicate; recorded for too
                # short a time, it is answered 503, so the provider retries,
                # rather than acknowledged and lost.
                outer = _spent_here(scope, self._webhook_store, key, profile.dedupe_ttl)
                if outer is False:
                    raise VerificationUnavailable(
                        "an outer SignatureMiddleware records this delivery for less "
                        "than this one's dedupe_ttl"
                    )
                fresh = outer is True
        except VerificationError as error:
            await self._reject(scope, receive, send, error, webhook=True)
            return
        except Exception as exc:  # fail closed, never a 500 and never the app
            logger.exception("hmacguard: webhook verification failed unexpectedly")
            await self._reject(
                scope, receive, send, VerificationUnavailable(type(exc).__name__), webhook=True
            )
            return
        if not fresh:
            # The sender retried a delivery the app already has: acknowledge
            # it so the retries stop, without processing it twice.
            logger.info(
                "hmacguard: duplicate %s delivery acknowledged without the app", profile.scheme
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_DUPLICATE)).encode("ascii")),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _DUPLICATE})
            return
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["webhook"] = verified
        verified_before = scope.get(SCOPE_WEBHOOK)
        scope[SCOPE_WEBHOOK] = verified  # as SCOPE_SIGNATURE in __call__
        spent_before = scope.get(_SPENT)
        mark = (self._webhook_store, key, profile.dedupe_ttl)
        scope[_SPENT] = (mark,) if spent_before is None else (*spent_before, mark)
        try:
            await self._deliver(scope, receive, send, body, key)
        finally:
            scope[_SPENT] = spent_before
            scope[SCOPE_WEBHOOK] = verified_before

    async def _deliver(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, key: str
    ) -> None:
        """Hand a verified delivery (its store key ``key``) to the app; forget it
        if the app does not answer 2xx."""
        forget = getattr(self._webhook_store, "discard", None)
        if forget is None:
            await self.app(scope, _Replay(body, receive), send)
            return
        # A delivery the app did not answer with 2xx is forgotten, so the
        # provider's retry is processed rather than acknowledged as a
        # duplicate: every provider counts any other answer (a 429, a 409,
        # a redirect) as a failed delivery and sends it again. One whose 2xx
        # went out whole stays recorded, even if the app raises afterwards (a
        # background task): the provider has its answer and will not retry,
        # and a replay of it must not be processed again.
        status = 0
        answered = False

        async def watch_status(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                answered = 200 <= status < 300
            await send(message)

        try:
            await self.app(scope, _Replay(body, receive), watch_status)
        except Exception:
            if not answered:
                await self._forget(forget, key, self._webhook_store_deadlines, _FAILED_DELIVERY)
            raise
        if not 200 <= status < 300:
            await self._forget(forget, key, self._webhook_store_deadlines, _FAILED_DELIVERY)

    async def _remember_delivery(self, key: str, ttl: float) -> bool:
        """Record the delivery's ``key`` (:func:`delivery_key`) in the nonce store:
        True the first time, False for a duplicate."""
        store = self._webhook_store
        assert store is not None  # noqa: S101  (set whenever webhooks are configured)
        return await self._add(store, self._webhook_store_deadlines, key, ttl)

    async def _forget(
        self,
        discard: Callable[[str], Awaitable[None]],
        key: str,
        deadlines: Deadlines | None,
        what: tuple[str, str],
    ) -> None:
        """Take ``key`` back out of a store (a delivery the app failed on, a nonce
        of a refused request); a store that cannot, or does not answer within
        ``lookup_timeout``, is logged (``what``: the key and what follows), not
        raised: the response is sent, or an error is already on its way."""
        try:
            await self._within(deadlines, discard(key), NonceStoreUnavailable, "the nonce store")
        except Exception as exc:
            thing, consequence = what
            logger.warning(
                "hmacguard: could not forget %s (%s): %s", thing, type(exc).__name__, consequence
            )

    async def _reject(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: VerificationError,
        *,
        webhook: bool = False,
    ) -> None:
        """Answer ``error``: the ``on_error`` handler's answer, or the default one.

        A refused HTTP/1 request that announced a body is answered with
        ``Connection: close`` (RFC 9110 §10.1.1), and the server closes the
        connection after it. Else HTTP/1.1 servers read and drop the rest of
        a body refused unread (all 10 GB of an announced 10 GB), keep the
        connection of a client that trickles bytes after its 408, or take the
        bytes after a ``Content-Length`` with ``Transfer-Encoding`` for the
        next request (RFC 9112 §6.1: the server MUST close that connection).
        Whether the body was read first does not decide it: that would tell
        a replayed request (refused after its body) from a bad MAC (refused
        before), which the answers must not (THREATS E1).
        """
        close = _announces_body(scope)
        key_id = None if error.key_id is None else self._loggable(error.key_id)
        cause = error.__cause__ if isinstance(error, KeyLookupFailed) else None
        client = _client_host(scope)
        server_side = error.status >= 500 or error.detail in _SCOPE_FAULTS
        (logger if server_side else rejections).warning(
            "hmacguard rejected %s %r: %s: %s (label=%r, key_id=%r, client=%r)",
            scope.get("method", "WEBSOCKET"),
            scope.get("path"),
            error.reason,
            error.detail,
            error.label,
            key_id,
            client,
            # The resolver's own exception, with its traceback: what went wrong there.
            exc_info=cause,
            # The same facts as fields, for log pipelines that keep extras.
            extra={
                "hmacguard_reason": error.reason,
                "hmacguard_status": error.status,
                "hmacguard_label": error.label,
                "hmacguard_key_id": key_id,
                "hmacguard_client": client,
            },
        )
        if self._on_error is not None and scope["type"] == "http":
            started = finished = False

            async def send_once(message: Message) -> None:
                # One answer: what comes after its last body message is dropped.
                nonlocal started, finished
                if finished:
                    return
                started = True
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    finished = True
                elif close and message["type"] == "http.response.start":
                    message = {**message, "headers": _closing(message.get("headers", ()))}
                await send(message)

            try:
                handler = self._on_error(scope, error)
                if isinstance(handler, Awaitable):
                    handler = await handler
                await handler(scope, receive, send_once)
            except Exception:
                if started:  # part of its answer is out: nothing clean is left to send
                    raise
                logger.exception("hmacguard: the on_error handler failed; the default answer")
            else:
                if started:
                    return
                logger.error("hmacguard: the on_error handler sent nothing; the default answer")
        if scope["type"] == "websocket":
            # Refuse the handshake before accepting it: the server answers 403.
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        if webhook:
            status, headers, body = self._webhook_responder.render(error)
        else:
            base = self._debug_base(scope) if self._debug else None
            status, headers, body = self._responder.render(error, base=base)
        if close:
            headers = _closing(headers)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _loggable(self, key_id: str) -> str:
        """``key_id`` as it may be logged: a long one that is not a static key's
        (a client's secret sent in its place?) as its length and a short hash."""
        if len(key_id) >= SECRET_TEXT_CHARS and not self._verifier.keyring.holds(key_id):
            return _masked(key_id)
        return key_id

    def _replayed(self, verified: VerifiedSignature, key_id: str | None = None) -> Replayed:
        """The request is a replay: its winner's pair, or (``key_id``, of another
        signature in it) another pair, was already accepted."""
        detail = (
            "this (key id, nonce) pair was already accepted"
            if key_id is None or key_id == verified.key_id
            else "the (key id, nonce) pair of another signature in it (key id "
            f"{self._loggable(key_id)!r}) was already accepted"
        )
        return Replayed(detail, label=verified.label, key_id=verified.key_id)

    def _debug_base(self, scope: Scope) -> bytes | None:
        try:
            method, scheme, authority, path, query, _, _, raw, _ = self._request(
                scope, scope["type"]
            )
            return self._verifier.signature_base(method, _url(scheme, authority, path, query), raw)
        except Exception:  # debugging aid only: no base to show
            return None


_DUPLICATE = b'{"status":"duplicate"}'


def _check_disconnect(message: Message) -> None:
    """Accept ``http.disconnect`` in the middle of a body; refuse any other message.

    ASGI servers send nothing else there: another type comes from a broken
    server or outer middleware, and is answered 503 rather than taken for a
    disconnect (which would leave the client without an answer).
    """
    if message["type"] != "http.disconnect":
        raise VerificationUnavailable(
            f"the server sent {str(message['type'])[:40]!r} while the body was read"
        )
    logger.debug("hmacguard: client disconnected while sending the body")


async def _receive_body(
    receive: Receive, limit: int, digest: str | None = None, first: Message | None = None
) -> bytes | None:
    """The whole body, or None if the client left; :class:`BodyTooLarge` past ``limit``.

    ``first`` is the first message when it was already received. With
    ``digest`` (a ``Content-Digest`` value), the body is also checked against
    it. A body that arrives in one message (the usual case) is checked in one
    call once it is complete; from the second chunk on, chunks are hashed as
    they arrive, so a large body is never hashed twice.
    """
    message = await receive() if first is None else first
    if message["type"] == "http.request" and not message.get("more_body", False):
        return _whole_body(message, limit, digest)
    checker: DigestVerifier | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] != "http.request":
            # http.disconnect: the client is gone. Nothing to answer and
            # nothing to log as an error; the nonce stays unused.
            _check_disconnect(message)
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the body passed the limit ({limit} bytes)")
            chunks.append(chunk)
            if checker is not None:
                checker.update(chunk)
            elif digest is not None and len(chunks) == 2:
                checker = DigestVerifier(digest)
                checker.update(chunks[0])
                checker.update(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if checker is not None:
        checker.verify()
    elif digest is not None:
        verify_content_digest(digest, body)
    return body


def _whole_body(message: Message, limit: int, digest: str | None) -> bytes:
    """The body of a request sent in one message (the usual case: no list, no
    running total), within ``limit`` and checked against ``digest`` if given."""
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise BodyTooLarge(f"the body passed the limit ({limit} bytes)")
    if digest is not None:
        verify_content_digest(digest, body)
    return body


def _webhook_clock(profile: WebhookProfile, default: Callable[[], float]) -> Callable[[], float]:
    """The clock a delivery for ``profile`` is checked against: the profile's
    own when it was given one (``Stripe(secret, clock=...)``), else ``default``
    (the middleware's ``clock=``, or the wall clock)."""
    from .webhooks._profile import default_clock  # noqa: PLC0415  (only with webhooks)

    clock = getattr(profile, "clock", default_clock)
    return default if clock is default_clock or not callable(clock) else clock


def _webhook_routes(
    webhooks: Mapping[str, WebhookProfile] | None,
) -> tuple[tuple[str, WebhookProfile], ...]:
    """The webhook path prefixes, longest first, checked at construction."""
    if webhooks is None:
        return ()
    if not isinstance(webhooks, Mapping):
        raise TypeError(
            'webhooks maps path prefixes to profiles: {"/webhooks/stripe": Stripe(...)}'
        )
    routes = []
    for prefix, profile in webhooks.items():
        if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.endswith("*"):
            raise ValueError(f"webhook paths start with '/' and are prefixes (no '*'): {prefix!r}")
        if not all(
            hasattr(profile, name)
            for name in ("scheme", "max_body_size", "dedupe_ttl", "check_headers", "verify")
        ):
            raise TypeError(f"the profile for {prefix!r} is not a webhook profile")
        routes.append((prefix.rstrip("/") or "/", profile))
    _warn_shared_secrets(routes)
    return tuple(sorted(routes, key=lambda route: len(route[0]), reverse=True))


def _warn_shared_secrets(routes: list[tuple[str, WebhookProfile]]) -> None:
    """Flag one secret configured on two webhook paths (THREATS W7).

    The Standard Webhooks spec asks for a secret per endpoint: with a shared
    one, a delivery signed for one endpoint verifies at the other whenever
    their schemes agree.
    """
    from .webhooks._profile import secret_fingerprints  # noqa: PLC0415  (only with webhooks)

    seen: dict[bytes, str] = {}
    for prefix, profile in routes:
        for fingerprint in secret_fingerprints(profile):
            other = seen.setdefault(fingerprint, prefix)
            if other != prefix:
                logger.warning(
                    "SignatureMiddleware: webhook paths %r and %r share a secret; give each "
                    "endpoint its own secret, or a delivery for one may verify at the other",
                    other,
                    prefix,
                )


# The nonce store keys a request has spent (its nonces, or a webhook
# delivery's), as (store, key, ttl), in its scope while the app runs: a second
# SignatureMiddleware the same request reaches (a mounted sub-app protected
# too) finds them already recorded when the two share one store object. That
# is this request, not a replay or a duplicate of it. Two store objects, even
# on one Redis, are never taken for one: that fails closed (a replay). Only
# server-side code writes a scope: a client cannot set this.
_SPENT = "hmacguard.spent"
# What the middleware verified, in the request's scope (read by hmacguard.starlette).
SCOPE_SIGNATURE = "hmacguard.signature"
SCOPE_WEBHOOK = "hmacguard.webhook"
_Mark: TypeAlias = tuple[object, str, float]  # (store, key, ttl)


def _spent_here(scope: Scope, store: object, key: str, ttl: float) -> bool | None:
    """Whether an outer SignatureMiddleware spent ``key`` for this very request in
    this very ``store`` object: True when it recorded it for at least ``ttl``
    seconds, False when for less (a shorter record would let the request be sent
    again to this middleware alone once it expired), None when it did not (a record
    in another store proves nothing here: there, it is a replay)."""
    for spent_in, spent, for_seconds in scope.get(_SPENT) or ():
        if spent == key and spent_in is store:
            if for_seconds >= ttl:
                return True
            webhook = key.startswith("webhook:")
            logger.warning(
                "hmacguard: an outer SignatureMiddleware recorded this request's %s for "
                "%s s, less than this one's %s s, in the same store: give both the same %s",
                "delivery" if webhook else "nonce",
                for_seconds,
                ttl,
                "dedupe_ttl" if webhook else "max_age and clock_skew",
            )
            return False
    return None


def _pairs(
    verified: VerifiedSignature, others: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """The (key id, nonce) pairs a request spends: the winner's (if it has a
    nonce), then its other signatures'."""
    if verified.nonce is None:
        return others
    return ((verified.key_id, verified.nonce), *others)


class _Replay:
    """A ``receive`` that hands over the verified body once, then the real one."""

    __slots__ = ("_body", "_receive")

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive

    async def __call__(self) -> Message:
        body = self._body
        if body is not None:
            self._body = None
            return {"type": "http.request", "body": body, "more_body": False}
        # Later calls reach the server, so the app still sees http.disconnect.
        return await self._receive()


# RFC 9421 §4.1: signatures MAY be sent as trailers, but ASGI has no request
# trailers, and uvicorn's httptools protocol appends trailer fields to the very
# header list the scope holds, whenever they arrive. A request that announces
# trailers is refused, as is one whose list grows once the middleware has
# counted it. Trailer fields that arrived before (a short body sent in one
# write, the request's task not yet started) cannot be told from headers: they
# are verified as headers, and the app sees exactly the list that was verified.
_FAILED_DELIVERY = ("a failed delivery", "its redelivery will be acknowledged as a duplicate")
_REFUSED_NONCE = ("a nonce of a refused request", "its signature cannot be sent again")
_NO_TRAILERS = "request trailers are not supported: fields sent there cannot be verified"
_NOT_A_LENGTH = "Content-Length is not a number"
# Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
# h11 strips it; httptools (llhttp) keeps what follows the value, so Host and
# Content-Length are read without it, as the signed components are.
_OWS = " \t"


class _NotAnAnswer(TypeError):
    """The exempt callable returned something other than True, False or None."""


# A scope the server built wrongly. The client is told malformed_request, but
# every request fails the same way until the server is fixed: logged on
# "hmacguard", with what needs an operator, not on "hmacguard.rejected".
_NOT_BYTE_PAIRS = "the server gave headers that are not byte pairs"
_NO_RAW_PATH = "the server gave no raw path to verify"
_SCOPE_FAULTS = frozenset({_NOT_BYTE_PAIRS, _NO_RAW_PATH})


def _names_an_override(headers: Mapping[bytes, bytes]) -> bool:
    """Whether a header dict (lowercase byte names) holds a method-override field
    (THREATS U6: unsigned, it would let a signed POST act as a DELETE): the
    signer's ``METHOD_OVERRIDES``, spelled out, three lookups on every request."""
    return (
        b"x-http-method-override" in headers
        or b"x-method-override" in headers
        or b"x-http-method" in headers
    )


def _may_hold_several(raw: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request's ``Signature`` may hold more than one signature: one
    signature is one member, ``label=:base64:``, on one line and with no comma."""
    lines = [value for name, value in raw if name.lower() == b"signature"]
    return len(lines) > 1 or (len(lines) == 1 and b"," in lines[0])


def _check_one_line_each(raw: list[tuple[bytes, bytes]], verified: VerifiedSignature) -> None:
    """Refuse a covered field sent on more than one line (THREATS C4(b):
    :func:`split_covered_field`)."""
    split = split_covered_field(
        verified.components, Counter(name.lower().decode("latin-1") for name, _ in raw)
    )
    if split is not None:
        name, count = split
        raise MalformedRequest(
            f"the covered field {name!r} is sent on {count} lines: send it on one "
            "line, as signed (an app reading one value would see only the first)"
        )


def _check_method_override(raw: list[tuple[bytes, bytes]], verified: VerifiedSignature) -> None:
    """Refuse a method-override header that the signature does not cover."""
    names = {name.lower() for name, _ in raw}
    for name in METHOD_OVERRIDES:
        if name.encode("ascii") in names and name not in verified.components:
            raise InsufficientCoverage(
                f"the request carries {name}, which the signature does not cover",
                label=verified.label,
                key_id=verified.key_id,
            )


@types.coroutine
def _resume(waiting: Generator[Any, Any, Message], pending: Any) -> Generator[Any, Any, Message]:
    """Await the rest of ``waiting``, an awaitable's iterator already stepped once
    that yielded ``pending`` (what it waits for, handed to the event loop first).

    What ``await`` does from the start (PEP 380), from its first suspension on:
    values and exceptions (a cancellation) go in, results and the return value
    come out.
    """
    while True:
        try:
            sent = yield pending
        except GeneratorExit:
            waiting.close()
            raise
        except BaseException as exc:  # thrown in (a cancellation): passed on, as await does
            try:
                pending = waiting.throw(exc)
            except StopIteration as done:
                result: Message = done.value
                return result
        else:
            try:
                pending = waiting.send(sent)
            except StopIteration as done:
                result = done.value
                return result


def _declared_size(length: str | None, declared: int) -> int:
    """The body size a request announces: its ``Content-Length``, else
    ``declared`` (1, a body of unknown size, for ``Transfer-Encoding``; -1 for
    neither).

    Both together are refused (RFC 9112 §6.3: "ought to be handled as an
    error", a request smuggling attempt): llhttp answers 400 itself, but h11
    frames the body by ``Transfer-Encoding`` while an app or proxy may read
    ``Content-Length``.
    """
    if length is None:
        return declared
    if declared == 1:
        raise MalformedRequest(
            "the request has both Content-Length and Transfer-Encoding (RFC 9112 §6.3)"
        )
    return _content_length(length)


def _check_host(host: str) -> None:
    """Refuse a ``Host`` that is not a ``host[:port]`` (RFC 9110 §7.2)."""
    if len(host) > MAX_HOST_PORT:
        raise MalformedRequest("the Host header is too long")
    if not is_host_port(host):
        raise MalformedRequest("the Host header is not a host[:port] (RFC 9110 §7.2)")


def _content_length(value: str) -> int:
    """A ``Content-Length`` value as a number: ASCII digits only (RFC 9110
    §8.6), at most 18 of them. ``str.isdigit`` alone would pass "²", which
    ``int`` then refuses."""
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_LENGTH_DIGITS:
        raise MalformedRequest(_NOT_A_LENGTH)
    return int(value)


def _url(scheme: str, authority: str, path: str, query: str | None) -> str:
    """The absolute URL the client signed, from its parts."""
    return (
        f"{scheme}://{authority}{path}" if query is None else f"{scheme}://{authority}{path}{query}"
    )


def _masked(key_id: str) -> str:
    """How a long, unknown key id is logged: its length and a short hash, which an
    operator can compute from a key id to find it, never the text itself."""
    digest = hashlib.sha256(key_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"<{len(key_id)} characters, sha256 {digest}>"


def _announces_body(scope: Scope) -> bool:
    """Whether an HTTP/1 request announced a body: ``Transfer-Encoding``, or a
    ``Content-Length`` other than 0. (HTTP/2 and 3 have no ``Connection``
    field: there a refused stream is reset on its own.)"""
    if scope["type"] != "http" or scope.get("http_version", "1.1") not in ("1.1", "1.0"):
        return False
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (
            lowered == b"content-length" and value.strip() != b"0"
        ):
            return True
    return False


def _closing(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Connection: close`` in place of any ``Connection`` field."""
    kept = [(name, value) for name, value in headers if name.lower() != b"connection"]
    kept.append((b"connection", b"close"))
    return kept


def _scan_headers(
    raw: list[tuple[bytes, bytes]],
) -> tuple[str | None, str | None, int, str | None]:
    """Host, Content-Length, declared size and Content-Digest from a header list
    with repeated or mixed-case names (the rare case)."""
    host: str | None = None
    length: str | None = None
    declared = -1
    digests: list[str] = []
    for name, value in raw:
        lowered = name.lower()
        if lowered == b"host":
            if host is not None:
                # RFC 9112 §3.2: a request with more than one Host is answered 400.
                raise MalformedRequest("the request has more than one Host header")
            host = value.decode("latin-1").strip(_OWS)
        elif lowered == b"content-length":
            text = value.decode("latin-1").strip(_OWS)
            if length is not None and length != text:
                raise MalformedRequest("the request has conflicting Content-Length headers")
            length = text
        elif lowered == b"transfer-encoding":
            declared = 1
        elif lowered == b"content-digest":
            digests.append(value.decode("latin-1"))
        elif lowered == b"trailer":
            raise MalformedRequest(_NO_TRAILERS)
    return host, length, declared, ", ".join(digests) if digests else None


def _chunked(raw: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request has a ``Transfer-Encoding`` (its body's size unknown)."""
    return any(name.lower() == b"transfer-encoding" for name, _ in raw)


def _route_path(scope: Scope) -> str:
    """The path the router sees: ``scope["path"]`` less ``scope["root_path"]``
    (uvicorn's ``--root-path``, a mount), as Starlette's router takes it off."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path


def _has_dot_segment(path: str) -> bool:
    """Whether ``path`` has a ``.`` or ``..`` segment (RFC 3986 §3.3)."""
    return "/." in path and any(segment in (".", "..") for segment in path.split("/"))


def _exemptions(
    exempt: Iterable[str] | Callable[[Scope], bool | None],
) -> tuple[frozenset[str], tuple[str, ...], Callable[[Scope], bool | None] | None]:
    if callable(exempt):
        if inspect.iscoroutinefunction(exempt) or inspect.iscoroutinefunction(
            getattr(exempt, "__call__", None)  # noqa: B004  (an object with async __call__)
        ):
            raise TypeError(
                "exempt must be a plain function scope -> bool, not async: it is called "
                "on every request before anything is awaited"
            )
        return frozenset(), (), exempt
    if isinstance(exempt, (str, bytes)):
        raise TypeError('exempt is a list of paths, e.g. ["/health"], not one string')
    exact: set[str] = set()
    prefixes: list[str] = []
    for path in exempt:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"exempt paths start with '/': {path!r}")
        if path.endswith("*"):
            prefixes.append(path[:-1])
        else:
            exact.add(path)
    return frozenset(exact), tuple(prefixes), None


_WEBHOOKS_VERIFIED = "webhook paths are always verified by their profile"


def _check_paths_miss_webhooks(
    option: str,
    exact: frozenset[str],
    prefixes: tuple[str, ...],
    routes: tuple[tuple[str, Any], ...],
    why: str,
) -> None:
    """Refuse a path of ``option`` (``exempt``, ``body_limits``) that a webhook
    path also matches.

    Webhook paths are verified before exemptions are looked at, and take their
    profile's body limit, so such a path would do nothing there; but whoever
    wrote it expected it to apply (or the webhook to be verified by RFC 9421):
    say so at start-up rather than let either belief stand.
    """
    for webhook, _ in routes:
        below = webhook + "/"
        for path in sorted(exact):
            if webhook in ("/", path) or path.startswith(below):
                raise ValueError(
                    f"{option} path {path!r} is under the webhook path {webhook!r}: {why}"
                )
        for prefix in prefixes:
            if webhook == "/" or below.startswith(prefix) or prefix.startswith(below):
                raise ValueError(
                    f"{option} prefix {prefix + '*'!r} overlaps the webhook path {webhook!r}: {why}"
                )


def _check_limits_miss_exemptions(
    exact_limits: Mapping[str, int],
    prefix_limits: tuple[tuple[str, int], ...],
    exact: frozenset[str],
    prefixes: tuple[str, ...],
) -> None:
    """Refuse a ``body_limits`` path that ``exempt`` paths cover entirely: an
    exempt request is not verified and its body not read here, so the limit
    would do nothing there (an exempt callable is asked per request and cannot
    be checked in advance)."""
    for path in exact_limits:
        if path in exact or (path.startswith(prefixes) and not _has_dot_segment(path)):
            raise ValueError(
                f"body_limits path {path!r} is exempt: exempt requests are not verified, "
                "and no body limit applies to them"
            )
    for prefix, _ in prefix_limits:
        if prefix.startswith(prefixes):
            raise ValueError(
                f"body_limits prefix {prefix + '*'!r} is under an exempt prefix: exempt "
                "requests are not verified, and no body limit applies to them"
            )


def _body_limits(
    limits: Mapping[str, int] | None,
) -> tuple[dict[str, int], tuple[tuple[str, int], ...]]:
    """``body_limits`` read: exact paths, and prefixes with the longest first."""
    if limits is None:
        return {}, ()
    if not isinstance(limits, Mapping):
        raise TypeError('body_limits maps paths to sizes, e.g. {"/uploads/*": 50 * 2**20}')
    exact: dict[str, int] = {}
    prefixes: list[tuple[str, int]] = []
    for path, size in limits.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"body_limits paths start with '/': {path!r}")
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"body_limits[{path!r}] must be an int (bytes)")
        if size < 0:
            raise ValueError(f"body_limits[{path!r}] must not be negative")
        if path.endswith("*"):
            prefixes.append((path[:-1], size))
        else:
            exact[path] = size
    prefixes.sort(key=lambda item: len(item[0]), reverse=True)
    return exact, tuple(prefixes)


def _seconds(name: str, value: float | None) -> float | None:
    """A timeout option: a positive, finite number of seconds, or None (no limit)."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf
    ):
        raise ValueError(f"{name} is a positive number of seconds, or None")
    return value


async def _watched(
    deadlines: Deadlines,
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[Any],
    call: Awaitable[_T],
    timed_out: Callable[[], VerificationError],
) -> _T:
    """Await ``call`` in ``task``, which ``deadlines`` cancels at its deadline;
    that cancellation, and only that one, becomes ``timed_out()``.

    The cancellation is then taken back (``Task.uncancel``, Python 3.11+): the
    middleware answers it rather than letting it end the task. If the task
    was also cancelled from outside (the server's shutdown, an outer timeout)
    in the same turn, that cancellation stands and is raised.
    """
    try:
        watch = deadlines.watch(loop, task)
    except BaseException:
        close = getattr(call, "close", None)
        if close is not None:
            close()  # never awaited: no "coroutine was never awaited" left behind
        raise
    try:
        return await call
    except asyncio.CancelledError:
        if not watch.expired:
            raise
        uncancel = getattr(task, "uncancel", None)
        if uncancel is not None and uncancel() > 0:
            raise
        raise timed_out() from None
    finally:
        deadlines.finish(watch)


async def _resumed_body(
    waiting: Generator[Any, Any, Message],
    pending: Any,
    receive: Receive,
    limit: int,
    digest: str | None,
) -> bytes | None:
    """:func:`_receive_body`, once the ``receive()`` that :meth:`SignatureMiddleware._body`
    stepped (and found waiting, on ``pending``) has returned the first message."""
    return await _receive_body(receive, limit, digest, await _resume(waiting, pending))


def _client_host(scope: Scope) -> str | None:
    """The address of the peer the server names (``scope["client"]``), for the log:
    the client's, or a proxy's in front of it. None when the server names none."""
    client = scope.get("client")
    try:
        host = client[0]  # type: ignore[index]
    except (TypeError, IndexError, KeyError):
        return None
    return host if isinstance(host, str) else None


def _running_trio() -> Any:
    """The ``trio`` module when this task runs under trio, else None.

    trio is not a dependency: it is only looked for once something has
    imported it, as anything running under it has.
    """
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        trio.lowlevel.current_task()
    except RuntimeError:  # imported, but not what runs this task
        return None
    return trio


def _bounds_itself(store: object) -> bool:
    """Whether ``store`` is one of hmacguard's, which need no ``lookup_timeout``:
    :class:`MemoryNonceStore` never waits, and ``RedisNonceStore`` times out
    every call itself (its module is imported only when one is made). A
    subclass is watched: its overrides are not ours."""
    if store is None or type(store) is MemoryNonceStore:
        return True
    redis_store = sys.modules.get("hmacguard._redis_nonce_store")
    return redis_store is not None and type(store) is redis_store.RedisNonceStore
