"""HMACAuth for ``requests``: sign each prepared request as it goes on the wire.

Needs the ``requests`` extra (``pip install "hmacguard[requests]"``)::

    from hmacguard.requests import HMACAuth

    session = requests.Session()
    session.auth = HMACAuth("client-1", secret)
    session.post("https://api.example/v1/items", json={"name": "widget"})

A streamed body (a generator, an iterator or a file) is read into bytes once,
to hash it, and sent as those bytes with a ``Content-Length`` instead of
``Transfer-Encoding: chunked``.

Redirects: requests re-sends the headers of the first request on every hop
and never calls the auth again, so a response hook removes the signature
fields from the request a redirect answered before requests copies it. With
``follow_redirects=True`` the hook also signs the next hop when it goes to the
origin first signed for.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any, NoReturn

try:
    import requests
    import requests.compat
    from requests.auth import AuthBase
    from requests.cookies import RequestsCookieJar
    from requests.models import DEFAULT_REDIRECT_LIMIT, PreparedRequest, Response
    from requests.sessions import SessionRedirectMixin
except ImportError as exc:  # pragma: no cover  (tested in a subprocess)
    raise ImportError('HMACAuth needs requests: pip install "hmacguard[requests]"') from exc

from ._client import SigningAuth, may_sign_hop, origin, remove_fields, sign_request

__all__ = ["HMACAuth"]

# How urllib3 encodes a str body or chunk: UTF-8 since urllib3 2, Latin-1
# (through http.client) before.
_TEXT_ENCODING = "latin-1" if getattr(requests.compat, "is_urllib3_1", False) else "utf-8"


class HMACAuth(SigningAuth, AuthBase):
    """Sign every request a ``requests`` session sends (RFC 9421, ``hmac-sha256``).

    A ``requests.auth.AuthBase``: give it to a ``Session`` (``session.auth``)
    or to one call as ``auth=``. Each request is signed when it is prepared,
    with a fresh ``created`` time and nonce, over the method, the ``Host`` it
    is sent with, the percent-encoded path and query, ``Content-Type`` when
    there is a body and a ``Content-Digest`` of the exact body bytes.

    Args:
        key_id: the key id the server knows the secret by.
        secret: the shared secret, as bytes or base64 text: at least 32 bytes
            (64 for ``hmac-sha512``).
        signer: a ready :class:`hmacguard.Signer`, instead of ``key_id`` and ``secret``.
        algorithm: ``"hmac-sha256"`` (default) or ``"hmac-sha512"``.
        follow_redirects: sign the next hop of a redirect to the origin first
            signed for. Off (the default), every hop is sent unsigned, so a
            hop to the same origin is refused by the server. A hop to another
            origin is never signed.
        **signer_options: options for :class:`hmacguard.Signer`.

    Raises:
        TypeError: both or neither of ``signer`` and key material.
        ValueError: a secret shorter than the algorithm needs, or a bad
            option value.
    """

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        """Sign ``r`` in place (replacing a signature this auth made before) and return it."""
        if not isinstance(r, PreparedRequest):
            _not_prepared(r)  # the typing says it is; a caller may still pass another object
        hooks = {event: list(found) for event, found in r.hooks.items()}
        # A copied request shares its hooks with the original: take a copy,
        # and drop the guard of an earlier signature along with its fields.
        responses = hooks.setdefault("response", [])
        for hook in list(responses):
            if isinstance(hook, _RedirectGuard) and hook.auth is self:
                if hook.fields is not None:
                    remove_fields(r.headers, hook.fields)
                responses.remove(hook)
        r.hooks = hooks
        fields = self.sign(r)
        r.register_hook("response", _RedirectGuard(self, r.url or "", fields))
        return r

    def sign(self, r: PreparedRequest) -> dict[str, str]:
        """Sign ``r`` in place and return the fields set, without registering the redirect hook."""
        body = _read_body(r)
        method = r.method or "GET"
        url = r.url or ""
        # The Host urllib3 sends, unless the caller set one; path_url is the
        # target it sends (the path and ?query of r.url).
        parts = urllib.parse.urlsplit(url)
        host = r.headers.get("Host") or _wire_host(parts.netloc)
        headers = [(name, _text(value)) for name, value in r.headers.items()]
        if "Host" not in r.headers:
            # urllib3 adds it after the auth has run: signed as it will go out,
            # so that "host" can be covered (r.headers is left as it was).
            headers.append(("Host", _text(host)))
        fields = sign_request(
            self._signer, method, parts.scheme, _text(host), r.path_url, headers, body
        )
        r.headers.update(fields)
        return fields


class _RedirectGuard:
    """The response hook that keeps a signature off the next hop of a redirect.

    requests copies the request a redirect answered to make the next hop,
    and it shares this hook with every copy; so the hook sees each response of
    one redirect chain in turn, and ``fields`` are the signature fields the
    chain's current request carries (None once a hop went out unsigned).
    """

    def __init__(self, auth: HMACAuth, signed_url: str, fields: dict[str, str]) -> None:
        self.auth = auth
        self.url = signed_url
        self.origin = origin(signed_url)
        self.fields: dict[str, str] | None = fields

    def __call__(self, response: Response, *args: Any, **kwargs: Any) -> Response:
        fields = self.fields
        if fields is None or not response.is_redirect:
            return response
        request = response.request
        if _text(request.headers.get("Signature", "")) != fields["Signature"]:
            return response  # not the request this chain signed
        # requests builds the next hop from this request, after this hook.
        remove_fields(request.headers, fields)
        self.fields = None
        if not self.auth.follow_redirects:
            return response
        hop = _next_hop(response)
        if (
            hop is None
            or _origin(hop) != self.origin
            or not may_sign_hop(self.url, hop.method or "GET", hop.url or "")
        ):
            return response
        # Sign the hop requests will send (the same code computes it) and put
        # the fields on the request it will be copied from.
        self.fields = self.auth.sign(hop)
        request.headers.update(self.fields)
        return response


class _Redirects(SessionRedirectMixin):
    """requests' own redirect logic, without a session's environment (no netrc, no proxies)."""

    max_redirects = DEFAULT_REDIRECT_LIMIT
    trust_env = False

    def __init__(self) -> None:
        self.cookies = RequestsCookieJar()


def _next_hop(response: Response) -> PreparedRequest | None:
    """The request requests will send next for a redirect: URL, method and body."""
    hops: Iterable[Any] = _Redirects().resolve_redirects(
        response, response.request, yield_requests=True
    )
    hop = next(iter(hops), None)
    return hop if isinstance(hop, PreparedRequest) else None


def _not_prepared(r: object) -> NoReturn:
    # httpx takes any callable as an auth and calls it with its own Request.
    if type(r).__module__.split(".")[0] in ("httpx", "httpx2"):
        raise TypeError(
            "hmacguard.requests.HMACAuth is the requests auth; for httpx use hmacguard.HMACAuth"
        )
    raise TypeError(
        f"HMACAuth signs a requests.PreparedRequest, not {type(r).__name__}: give it to a "
        "requests session or call (auth=...)"
    )


def _origin(r: PreparedRequest) -> object:
    return origin(r.url or "")


def _wire_host(netloc: str) -> str:
    """The ``Host`` urllib3 sends for a URL's netloc: ``host[:port]``, host without trailing dots.

    urllib3's ``HTTPConnection.host`` is ``_dns_host.rstrip(".")``: it resolves
    ``api.example.`` as written but sends ``Host: api.example`` (and SNI
    without the dot), and http.client builds ``Host`` from that. Signing the
    dotted name would sign an ``@authority`` the server never sees. (A default
    port urllib3 leaves out is no matter: ``@authority`` drops it on both ends.)
    Through a proxy urllib3 keeps the dot instead: set ``Host`` there.
    """
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):  # an IPv6 literal never ends in a dot
        return hostport
    host, colon, port = hostport.partition(":")
    return host.rstrip(".") + colon + port


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _read_body(r: PreparedRequest) -> bytes:
    """Return the body bytes as sent, replacing a str, buffer or streamed body with them."""
    body: Any = r.body
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    streamed = False
    if isinstance(body, str):
        data = body.encode(_TEXT_ENCODING)
    elif isinstance(body, (bytearray, memoryview)):
        data = bytes(body)
    elif hasattr(body, "read"):
        # A file: what is left of it from its current position, as urllib3 sends it.
        chunk = body.read()
        data = chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
        streamed = True
    else:
        data = b"".join(
            chunk.encode(_TEXT_ENCODING) if isinstance(chunk, str) else bytes(chunk)
            for chunk in body
        )
        streamed = True
    r.body = data
    if streamed:
        # It would have gone out chunked; the bytes go out with their length.
        r.headers.pop("Transfer-Encoding", None)
        r.headers["Content-Length"] = str(len(data))
        # requests rewinds a file to this position for a redirect: bytes need not be.
        r._body_position = None
    return data
