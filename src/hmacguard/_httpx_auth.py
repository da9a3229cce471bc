"""HMACAuth: an ``httpx.Auth`` that signs each request exactly as httpx sends it.

The auth flow does no I/O: httpx reads the body before the flow starts
(``requires_request_body``), so one generator serves ``Client`` and
``AsyncClient``. Everything about signatures happens in the core; this module
reads the request and writes the fields back.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncGenerator, AsyncIterable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

try:
    from ._httpx_base import AuthBase
except ImportError as exc:  # pragma: no cover  (tested in a subprocess)
    raise ImportError('HMACAuth needs httpx (or httpx2): pip install "hmacguard[httpx]"') from exc

from ._client import (
    RedirectWarning,
    SigningAuth,
    may_sign_hop,
    origin,
    remove_fields,
    sign_request,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["HMACAuth"]

# The request extension that records what was signed: the redirect request
# httpx builds copies the extensions, so a hop still knows its signed origin.
_EXTENSION = "hmacguard.signed"


@dataclass(frozen=True)
class _Signed:
    origin: tuple[str, str | None, int | None]
    fields: Mapping[str, str]


def _record(request: httpx.Request) -> _Signed | None:
    signed = request.extensions.get(_EXTENSION)
    return signed if isinstance(signed, _Signed) else None


class HMACAuth(SigningAuth, AuthBase):
    """Sign every request an httpx client sends (RFC 9421, ``hmac-sha256``).

    An ``httpx.Auth``, and an ``httpx2.Auth`` when httpx2 is installed (as
    Starlette's ``TestClient`` uses it): give it to a ``Client`` or an
    ``AsyncClient`` of either as ``auth=``. Each send is signed afresh, with
    a new ``created`` time and nonce, over the method, the ``Host`` header
    httpx sends, the raw (percent-encoded) path and query, ``Content-Type``
    when there is a body, and a ``Content-Digest`` of the exact body bytes.
    Any body httpx accepts works
    (``content=``, ``json=``, ``data=``, ``files=``, iterators): httpx reads
    it once, before signing, and sends those bytes; a streamed body goes out
    with a ``Content-Length`` instead of ``Transfer-Encoding: chunked``.

    Args:
        key_id: the key id the server knows the secret by.
        secret: the shared secret, as bytes or base64 text: at least 32 bytes
            (64 for ``hmac-sha512``).
        signer: a ready :class:`Signer`, instead of ``key_id`` and ``secret``.
        algorithm: ``"hmac-sha256"`` (default) or ``"hmac-sha512"``.
        follow_redirects: follow redirects in the auth flow, re-signing each
            hop to the origin first requested and sending hops elsewhere
            without the signature. Keep the client's own ``follow_redirects``
            off (its default): httpx would re-send the first request's
            signature to every hop. The client's ``max_redirects`` applies.
        **signer_options: options for :class:`Signer` (``components``,
            ``label``, ``digest``, ``nonce``, ``expires_in``, ``tag``,
            ``include_alg``, ``structured_fields``, ``clock``).

    Raises:
        TypeError: both or neither of ``signer`` and key material.
        ValueError: a secret shorter than the algorithm needs, or a bad
            option value.

    Example::

        auth = HMACAuth("client-1", secret)
        with httpx.Client(base_url="https://api.example", auth=auth) as client:
            client.post("/v1/items", json={"name": "widget"})
    """

    requires_request_body = True

    def __call__(self, *args: NoReturn, **kwargs: NoReturn) -> NoReturn:
        """Refuse to be called as a function: that is how ``requests`` uses an auth."""
        raise TypeError(
            "hmacguard.HMACAuth is the httpx auth; for requests use hmacguard.requests.HMACAuth"
        )

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow for ``httpx.Client``: the body must be bytes or a sync iterator."""
        if not isinstance(request.stream, Iterable):
            raise RuntimeError(
                "the request body is an async iterator, which a sync httpx.Client cannot send "
                "(or sign): use httpx.AsyncClient, or give the body as bytes or a sync iterator"
            )
        return super().sync_auth_flow(request)

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """The flow for ``httpx.AsyncClient``: the body must be bytes or an async iterator."""
        if not isinstance(request.stream, AsyncIterable):
            raise RuntimeError(
                "the request body is a sync iterator, which an httpx.AsyncClient cannot send "
                "(or sign): use httpx.Client, or give the body as bytes or an async iterator"
            )
        return super().async_auth_flow(request)

    def sign(self, request: httpx.Request) -> dict[str, str]:
        """Sign ``request`` in place, replacing an earlier signature, and return the fields set.

        The body must have been read (``request.read()``); the auth flow does
        this through ``requires_request_body``. A ``Transfer-Encoding`` header
        is replaced by the ``Content-Length`` of the bytes read.
        """
        earlier = _record(request)
        if earlier is not None:
            remove_fields(request.headers, earlier.fields)
        body = _frame_by_length(request)
        url = request.url
        # The Host header is what the server sees; httpx sets it from the URL
        # unless the caller set one. raw_path is the target as sent:
        # percent-encoded, with "?query" (kept even when empty).
        host = request.headers.get("Host") or url.netloc.decode("ascii")
        fields = sign_request(
            self._signer,
            request.method,
            url.scheme,
            host,
            url.raw_path,
            request.headers.raw,
            body,
        )
        for name, value in fields.items():
            request.headers[name] = value
        request.extensions[_EXTENSION] = _Signed(origin(str(url)), fields)
        return fields

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign the request; with ``follow_redirects``, follow and re-sign redirects."""
        fields: Mapping[str, str] | None = self.sign(request)
        response = yield request
        rounds = 0
        _warn_if_client_followed(response, rounds, fields)
        if not self.follow_redirects:
            return
        signed_url = str(request.url)
        signed_origin = origin(signed_url)
        on_origin = True
        # next_request is set only when the client did not follow the redirect.
        while response.next_request is not None:
            hop = response.next_request
            rounds += 1
            if fields is not None:
                remove_fields(hop.headers, fields)
            # Once a hop has left the origin, a later hop back to it is not
            # signed: its URL (and for a 307/308, its method and body) was
            # chosen by another origin.
            on_origin = (
                on_origin
                and origin(str(hop.url)) == signed_origin
                and may_sign_hop(signed_url, hop.method, str(hop.url))
            )
            if on_origin:
                # The hop's body is the bytes read for the first request (or
                # none, when the method changed to GET): no I/O here.
                hop.read()
                fields = self.sign(hop)
            else:
                fields = None
                hop.extensions.pop(_EXTENSION, None)
            response = yield hop
            _warn_if_client_followed(response, rounds, fields)

    @staticmethod
    def strip_foreign_signatures(request: httpx.Request) -> None:
        """A ``Client`` request event hook that strips the signature from a hop to another origin.

        For clients that follow redirects themselves (``follow_redirects=True``
        on the client), which re-send every header of the first request::

            client = httpx.Client(auth=auth, follow_redirects=True,
                                  event_hooks={"request": [HMACAuth.strip_foreign_signatures]})

        Hooks run before each hop is sent. A hop to the signed origin keeps the
        stale signature, and the server rejects it; ``AsyncClient`` takes
        :meth:`astrip_foreign_signatures`.
        """
        signed = _record(request)
        if signed is not None and origin(str(request.url)) != signed.origin:
            remove_fields(request.headers, signed.fields)
            del request.extensions[_EXTENSION]

    @staticmethod
    async def astrip_foreign_signatures(request: httpx.Request) -> None:
        """:meth:`strip_foreign_signatures` for an ``AsyncClient``'s ``event_hooks``."""
        HMACAuth.strip_foreign_signatures(request)


def _frame_by_length(request: httpx.Request) -> bytes:
    """Return the read body, and make it go out with a ``Content-Length``, not chunked.

    httpx frames a generator body with ``Transfer-Encoding: chunked``. Once the
    body is read into memory to sign it, the bytes are known: send them with
    their length, as the requests adapter does. Otherwise an empty stream goes
    out chunked: the signer covers no body (there is none to digest), but a
    server counts a chunked request as one with a body and requires
    ``content-digest`` (SignatureMiddleware answers 401 insufficient_coverage).
    httpcore frames the body by the ``Content-Length`` header it is given.
    """
    body = request.content
    if "Transfer-Encoding" in request.headers:
        del request.headers["Transfer-Encoding"]
        request.headers["Content-Length"] = str(len(body))
    return body


def _warn_if_client_followed(
    response: httpx.Response, rounds: int, fields: Mapping[str, str] | None
) -> None:
    """Warn when the client followed redirects itself and re-sent our signature.

    ``response.history`` holds one response per earlier round of the flow,
    then the redirects the client followed in this round; the requests of
    those redirects' hops are ``history[rounds + 1:]`` and the last one.
    """
    if fields is None or len(response.history) <= rounds:
        return
    hops = [earlier.request for earlier in response.history[rounds + 1 :]]
    hops.append(response.request)
    for hop in hops:
        if hop.headers.get("Signature") == fields["Signature"]:
            same = origin(str(hop.url)) == origin(str(response.history[rounds].request.url))
            where = "to the same origin, which will reject it" if same else "to another origin"
            warnings.warn(
                f"httpx followed a redirect to {hop.url.host!r} and re-sent the signature "
                f"made for the first request, {where}. Leave the client's follow_redirects "
                "off and use HMACAuth(..., follow_redirects=True); see "
                "HMACAuth.strip_foreign_signatures",
                RedirectWarning,
                stacklevel=2,
            )
            return
