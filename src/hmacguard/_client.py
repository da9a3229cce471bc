"""What the httpx and requests adapters share: the signer, signing as sent, redirects.

Sans-IO and standard library only, like the core: each adapter reads its
library's request (method, scheme, the ``Host`` it will send, the raw target,
the header lines and the exact body bytes), calls :func:`sign_request`, and
writes the returned fields back. The URL is rebuilt exactly as the server
rebuilds it (``f"{scheme}://{host}{target}"``), so both ends sign the same
``@authority``, ``@path`` and ``@query``.

Redirects: a signature covers one method, authority, path, query and body, so
it is worth nothing on the next hop of a redirect, except to whoever receives
it. The adapters therefore re-sign a hop to the origin they signed for and
strip the fields they added from a hop anywhere else (:func:`remove_fields`,
:func:`origin`).
"""

from __future__ import annotations

import sys
import urllib.parse
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ._components import split_covered_field
from ._keys import HMACKey
from ._message import HeadersLike, collect_headers
from ._signature_fields import read_signatures
from ._signer import Signer, SignerOptions

if sys.version_info >= (3, 11):
    from typing import Unpack
elif TYPE_CHECKING:  # pragma: no cover  (Python 3.10: for type checkers only, so that
    # `import hmacguard` loads nothing outside the standard library there either)
    from typing_extensions import Unpack

__all__ = [
    "RedirectWarning",
    "SigningAuth",
    "make_signer",
    "origin",
    "remove_fields",
    "sign_request",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class RedirectWarning(UserWarning):
    """The HTTP client re-sent a signature on a redirect it followed by itself.

    The hop carried a signature made for the first request: another origin
    received it, or the same origin got a signature for another URL, which it
    rejects. Let the auth follow redirects instead (``follow_redirects=True``
    on the auth, not on the client).
    """


def make_signer(
    key_id: str | None,
    secret: bytes | bytearray | memoryview | str | None,
    signer: Signer | None,
    algorithm: str | None,
    options: Mapping[str, Any],
) -> Signer:
    """Return the :class:`Signer` an auth signs with.

    Either ``signer`` (a ready Signer, and nothing else), or ``key_id`` and
    ``secret`` (bytes or base64 text) with an optional ``algorithm`` and the
    Signer's keyword options. Errors name the argument, never the secret.

    Raises:
        TypeError: both or neither of a Signer and key material, a wrong type,
            or an unknown Signer option.
        ValueError: a secret shorter than the algorithm needs, a bad key id or
            a bad Signer option value (from :class:`HMACKey` and :class:`Signer`).
    """
    if signer is not None:
        if key_id is not None or secret is not None or algorithm is not None or options:
            raise TypeError(
                "give either signer= or key_id and secret (with Signer options), not both"
            )
        if not isinstance(signer, Signer):
            raise TypeError(f"signer must be a hmacguard.Signer, not {type(signer).__name__}")
        return signer
    if key_id is None or secret is None:
        raise TypeError("give key_id and secret (bytes or base64 text), or signer=")
    key = HMACKey(key_id, secret, algorithm or "hmac-sha256")
    return Signer(key, **options)


class SigningAuth:
    """What both ``HMACAuth`` classes (httpx, requests) hold: the signer and the
    redirect choice, built and shown the same way. Each subclass adds its
    library's auth protocol."""

    def __init__(
        self,
        key_id: str | None = None,
        secret: bytes | bytearray | memoryview | str | None = None,
        *,
        signer: Signer | None = None,
        algorithm: str | None = None,
        follow_redirects: bool = False,
        **signer_options: Unpack[SignerOptions],
    ) -> None:
        self._signer = make_signer(key_id, secret, signer, algorithm, signer_options)
        self.follow_redirects = bool(follow_redirects)

    @property
    def signer(self) -> Signer:
        """The signer every request is signed with."""
        return self._signer

    def __repr__(self) -> str:
        # The key id only: never the secret.
        return (
            f"HMACAuth(key_id={self._signer.key.key_id!r}, "
            f"follow_redirects={self.follow_redirects!r})"
        )


def sign_request(
    signer: Signer,
    method: str,
    scheme: str,
    host: str,
    target: str | bytes,
    headers: HeadersLike,
    body: bytes,
) -> dict[str, str]:
    """Sign a request as it goes on the wire and return the fields to set on it.

    Args:
        signer: the signer.
        method: the method as sent.
        scheme: ``"http"`` or ``"https"``: the scheme of the URL requested.
        host: the ``Host`` header the client sends (the URL's authority unless
            the caller set one).
        target: the request target as sent: the raw, still percent-encoded
            path, with ``?query`` when the URL has one (even an empty one).
        headers: the request's header lines.
        body: the exact body bytes.

    Returns:
        ``Signature-Input`` and ``Signature``, and ``Content-Digest`` when the
        signature covers the body; each replaces any field of that name.

    Raises:
        ValueError: what :meth:`Signer.sign` refuses, and a covered field on
            more than one line (not covered with ``;bs``), which
            ``SignatureMiddleware`` refuses.
    """
    path = target.decode("latin-1") if isinstance(target, bytes) else target
    if path.endswith("?") and path.find("?") == len(path) - 1:
        # An empty query: ASGI servers give it as no query (query_string b""),
        # so the server rebuilds the URL without the "?". Signed so, both ends
        # agree on @target-uri and @request-target (@query is "?" either way).
        path = path[:-1]
    # The server rebuilds the URL the same way from Host and the raw target
    # (SignatureMiddleware._request), so the two ends cannot disagree on it.
    fields = signer.sign(method, f"{scheme}://{host}{path}", headers, body)
    _check_one_line_each(headers, fields)
    return fields


def _check_one_line_each(headers: HeadersLike, fields: Mapping[str, str]) -> None:
    """Refuse a request that sends a covered field on more than one line.

    RFC 9421 §2.1 signs the lines joined with ", ", but SignatureMiddleware
    refuses such a request (THREATS C4(b)): an app reading one value would see
    only the first line. Send the value on one line, or cover the field with
    ``;bs``, which signs each line apart.
    """
    lines = {name: len(values) for name, values in collect_headers(headers).items()}
    if all(count == 1 for count in lines.values()):
        return
    signature = read_signatures(
        {"signature-input": [fields["Signature-Input"]], "signature": [fields["Signature"]]},
        max_signatures=1,
        max_components=1024,
        max_field_bytes=len(fields["Signature-Input"]) + len(fields["Signature"]),
    )[0]
    split = split_covered_field(signature.covered.specs, lines)
    if split is not None:
        name, count = split
        raise ValueError(
            f"the covered field {name!r} is on {count} lines: send it on one line (a "
            "server reading one value would see only the first, and SignatureMiddleware "
            "refuses it), or cover it with ;bs"
        )


def remove_fields(headers: MutableMapping[str, Any], added: Mapping[str, str]) -> None:
    """Delete each field in ``added`` whose value in ``headers`` is still the one added.

    A field the caller set itself (a ``Content-Digest`` the signer did not
    compute) or changed since is left alone.
    """
    for name, value in added.items():
        current = headers.get(name)
        if isinstance(current, bytes):
            current = current.decode("latin-1")
        if current == value:
            del headers[name]


def may_sign_hop(signed_url: str, method: str, url: str) -> bool:
    """Whether a same-origin redirect hop may be signed by the auth that follows it.

    The redirect response is not authenticated: whoever can answer (an
    on-path attacker without TLS, an open redirect in the app) picks the
    ``Location``, and the client would sign it with its key. A hop that keeps
    a method other than GET or HEAD (a 307 or 308, or a 301/302 of a ``PUT``)
    keeps its body too, so it is signed only when its target is the signed
    request's, up to a trailing ``/`` on the path (the redirect a router sends
    for a missing or extra slash): a ``POST /pay`` is never re-signed as a
    ``POST /admin/users/42?action=delete``. A GET or HEAD hop (a 303 See Other,
    or a 301/302 of a POST) is signed wherever it goes on the origin.
    """
    if method.upper() in ("GET", "HEAD"):
        return True
    signed, hop = urllib.parse.urlsplit(signed_url), urllib.parse.urlsplit(url)
    return signed.path.rstrip("/") == hop.path.rstrip("/") and signed.query == hop.query


def origin(url: str) -> tuple[str, str | None, int | None]:
    """The origin of an absolute URL: lowercase scheme and host, and the port (default filled in).

    Two URLs share an origin when all three parts are equal (RFC 6454 §4); an
    ``http`` to ``https`` upgrade is another origin.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # not a number: no origin matches it
        port = -1
    return scheme, parts.hostname, _DEFAULT_PORTS.get(scheme) if port is None else port
