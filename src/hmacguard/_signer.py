"""Signer: turns a request into the headers that sign it (RFC 9421 §3.1)."""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypedDict

from ._algorithms import REGISTERED_ALGORITHMS
from ._components import Component, component_from_spec, structured_types
from ._content_digest import ACTIVE_ALGORITHMS, make_content_digest
from ._errors import VerificationError
from ._keys import HMACKey, check_id
from ._message import HeadersLike, Message, check_body
from ._signature_base import build_signature_base
from ._structured_fields import StructuredFieldError, serialize_key, serialize_string

__all__ = ["DEFAULT_COMPONENTS", "METHOD_OVERRIDES", "Signer", "SignerOptions"]


class _Default:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT_COMPONENTS"


#: The default covered components: ``@method @authority @path @query``, and
#: any method-override header the request has (``x-http-method-override``,
#: ``x-method-override``, ``x-http-method``) and, for a WebSocket handshake,
#: ``upgrade`` (and ``sec-websocket-key`` when given); when the body is not
#: empty, also ``content-digest`` and (if the request has that header)
#: ``content-type``.
DEFAULT_COMPONENTS: Final = _Default()

_BASE = tuple(component_from_spec(c) for c in ("@method", "@authority", "@path", "@query"))
_CONTENT_TYPE = component_from_spec("content-type")
_CONTENT_DIGEST = component_from_spec("content-digest")
#: The headers frameworks honour to change the method an app acts on (THREATS
#: U6): SignatureMiddleware refuses one the signature does not cover, so the
#: default components cover each the request carries.
METHOD_OVERRIDES: Final = ("x-http-method-override", "x-method-override", "x-http-method")
_OVERRIDES = tuple(component_from_spec(name) for name in METHOD_OVERRIDES)
# A WebSocket handshake: SignatureMiddleware requires Upgrade covered (a signed
# plain GET must not open a WebSocket), and a Sec-WebSocket-Key given to the
# signer binds the signature to that one handshake.
_HANDSHAKE = tuple(component_from_spec(name) for name in ("upgrade", "sec-websocket-key"))


# What cannot be sent as it is in a request's URL: a space, a control character or a
# non-ASCII character (bytes are read as latin-1, so a byte above 0x7E is too).
_UNSENDABLE = re.compile(r"[^\x21-\x7e]")


def _check_url(url: str | bytes) -> None:
    """Refuse a URL that is not percent-encoded as sent: the signature would not match."""
    text = url.decode("latin-1") if isinstance(url, (bytes, bytearray)) else url
    if not isinstance(text, str):
        raise TypeError(f"url must be str or bytes, not {type(url).__name__}")
    if text.isascii() and text.isprintable() and " " not in text:
        return  # the common case, without a search
    end = text.find("#")  # a fragment is not sent
    found = _UNSENDABLE.search(text, 0, len(text) if end == -1 else end)
    if found is None:
        return
    index = found.start()
    char = found.group()
    if char == " ":
        what, fix = "a space", "percent-encode it as %20"
    elif char < " " or char == "\x7f":
        what, fix = f"a control character (U+{ord(char):04X})", "percent-encode it"
    else:
        what = f"a non-ASCII character (U+{ord(char):04X})"
        fix = "percent-encode its UTF-8 bytes (urllib.parse.quote)"
    start = text.find("://")
    authority = start + 3 if start != -1 else 0
    path = min((i for i in (text.find(c, authority) for c in "/?#") if i != -1), default=len(text))
    query = text.find("?", path)
    if index < authority:
        part = "scheme"
    elif index < path:
        part = "authority"
        if char > "\x7f":
            fix = "use the host name's ASCII form (IDNA, e.g. xn--...)"
    elif query == -1 or index < query:
        part = "path"
    else:
        part = "query"
    # The URL itself is not quoted: its query may hold a token.
    raise ValueError(
        f"url[{index}] is {what}, in the {part}, which cannot be sent as it is: {fix}, "
        "and sign the URL exactly as it is sent"
    )


def _default_components(headers: Mapping[str, list[str]], has_body: bool) -> tuple[Component, ...]:
    """The components ``DEFAULT_COMPONENTS`` stands for, for a request with these headers.

    Each is what ``SignatureMiddleware`` requires by default of such a request,
    so a client on the defaults is never refused for ``insufficient_coverage``.
    """
    components = _BASE
    if (
        "x-http-method-override" in headers
        or "x-method-override" in headers
        or "x-http-method" in headers
    ):  # rare: three lookups rather than a loop over _OVERRIDES on every request
        components += tuple(c for c in _OVERRIDES if c.name in headers)
    if "upgrade" in headers:
        components += tuple(c for c in _HANDSHAKE if c.name in headers)
    if has_body:
        if "content-type" in headers:
            components += (_CONTENT_TYPE,)
        components += (_CONTENT_DIGEST,)
    return components


def _random_nonce() -> str:
    # 16 random bytes, URL-safe base64 without padding: 22 characters.
    return secrets.token_urlsafe(16)


class SignerOptions(TypedDict, total=False):
    """:class:`Signer`'s keyword options, as the client auths take them
    (``HMACAuth(key_id, secret, components=[...])``): a type checker then
    catches a misspelt option."""

    components: Sequence[str] | _Default
    label: str
    digest: str
    nonce: bool | Callable[[], str]
    expires_in: int | None
    tag: str | None
    include_alg: bool
    structured_fields: Mapping[str, str] | None
    clock: Callable[[], float]


class Signer:
    """Signs requests with one key.

    Args:
        key: the :class:`HMACKey` to sign with.
        components: the components to cover, as strings (``"@method"``,
            ``"content-type"``, ``'@query-param;name="id"'``), or
            ``DEFAULT_COMPONENTS``. When ``"content-digest"`` is among them the
            signer computes that header from the body.
        label: the signature label (an sf-key such as ``"sig1"``).
        digest: ``"sha-256"`` (default) or ``"sha-512"`` for ``Content-Digest``.
        nonce: True for a fresh random nonce per request, False for none, or a
            callable returning the nonce text.
        expires_in: seconds after ``created`` to set ``expires`` to, or None.
        tag: an application tag (RFC 9421 §2.3) to bind the signature to.
        include_alg: emit the ``alg`` parameter (off by default, as RFC 9421
            §3.2 step 6 lets the key decide the algorithm). Only with an
            ``hmac-sha256`` key: ``hmac-sha512`` is not in the registry, whose
            values an ``alg`` "MUST use" (§3.3).
        structured_fields: extra ``{field: "item"|"list"|"dictionary"}`` types for
            components with the ``sf`` or ``key`` parameter.
        clock: returns the current time in epoch seconds.

    Example::

        signer = Signer(HMACKey("client-1", secret))
        headers = signer.sign("POST", "https://api.example/v1/items", {"content-type":
                              "application/json"}, b'{"a": 1}')
        # {"Signature-Input": ..., "Signature": ..., "Content-Digest": ...}
    """

    __slots__ = (
        "_clock",
        "_components",
        "_digest",
        "_expires_in",
        "_include_alg",
        "_key",
        "_label",
        "_nonce",
        "_sf_types",
        "_tag",
    )

    def __init__(
        self,
        key: HMACKey,
        *,
        components: Sequence[str] | _Default = DEFAULT_COMPONENTS,
        label: str = "sig1",
        digest: str = "sha-256",
        nonce: bool | Callable[[], str] = True,
        expires_in: int | None = None,
        tag: str | None = None,
        include_alg: bool = False,
        structured_fields: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(key, HMACKey):
            raise TypeError(f"key must be an HMACKey, not {type(key).__name__}")
        self._key = key
        if isinstance(components, _Default):
            self._components: tuple[Component, ...] | None = None
        else:
            if isinstance(components, str):
                raise TypeError("components is a sequence of strings, not one string")
            parsed = tuple(component_from_spec(c) for c in components)
            if not parsed:
                # RFC 9421 §7.2.2: a signature over no components can be
                # transplanted onto any request.
                raise ValueError("components is empty: such a signature would fit any request")
            if len(set(parsed)) != len(parsed):
                raise ValueError("components lists the same component twice")
            self._components = parsed
        try:
            serialize_key(label)
        except (StructuredFieldError, TypeError):
            raise ValueError(f"label {label!r} is not a valid structured-field key") from None
        self._label = label
        if digest not in ACTIVE_ALGORITHMS:
            raise ValueError(f"digest must be one of {', '.join(ACTIVE_ALGORITHMS)}")
        self._digest = digest
        if not (isinstance(nonce, bool) or callable(nonce)):
            raise TypeError("nonce is True, False or a callable returning the nonce")
        self._nonce = nonce
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0
        ):
            raise ValueError("expires_in must be a positive number of seconds")
        self._expires_in = expires_in
        self._tag = None if tag is None else check_id("tag", tag)
        self._include_alg = bool(include_alg)
        if self._include_alg and self._key.alg.name not in REGISTERED_ALGORITHMS:
            raise ValueError(
                f"include_alg=True would write alg={self._key.alg.name!r}, which is not in the "
                "HTTP Signature Algorithms registry (RFC 9421 §3.3: alg values MUST come from "
                "it): leave alg out, the key decides"
            )
        self._sf_types = structured_types(structured_fields)
        self._clock = clock

    def __repr__(self) -> str:
        return f"Signer(key_id={self._key.key_id!r}, label={self._label!r})"

    @property
    def key(self) -> HMACKey:
        """The key this signer signs with."""
        return self._key

    def sign(
        self,
        method: str | bytes,
        url: str | bytes,
        headers: HeadersLike | None = None,
        body: bytes | bytearray | memoryview | None = None,
        *,
        now: float | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """Sign a request and return the headers to add to it.

        Args:
            method: the request method, exactly as sent.
            url: the absolute URL as sent: scheme, authority, and the raw
                (percent-encoded) path and query.
            headers: the request's headers (mapping or ``(name, value)`` pairs).
            body: the exact body bytes (``bytes``, ``bytearray`` or
                ``memoryview``), or None.
            now: the signing time in epoch seconds (default: the clock).
            nonce: use this nonce instead of a generated one.

        Returns:
            ``Signature-Input`` and ``Signature``, plus ``Content-Digest`` when
            the body is covered.

        Raises:
            TypeError: ``body`` is not bytes (a ``str``, a ``dict``...).
            ValueError: a component to cover is absent from the request, a
                value cannot be signed (line break, non-ASCII), or the URL
                has a space, a control or a non-ASCII character (it is signed
                as sent: percent-encoded).
        """
        check_body(body)
        _check_url(url)
        message = Message(method, url, headers)
        data = b"" if body is None else bytes(body)
        components = self._components
        if components is None:
            # Transfer-Encoding announces a body of unknown size, which the
            # middleware must hold to Content-Digest before it reads it: covered
            # even when the body turns out to be empty.
            has_body = bool(data) or "transfer-encoding" in message.headers
            components = _default_components(message.headers, has_body)
        added: dict[str, str] = {}
        if any(c.name == "content-digest" for c in components):
            value = make_content_digest(data, self._digest)
            added["Content-Digest"] = value
            message.headers["content-digest"] = [value]
        created = int(self._clock() if now is None else now)
        params = [f";created={created}", f";keyid={serialize_string(self._key.key_id)}"]
        if self._include_alg:
            params.append(f';alg="{self._key.algorithm}"')
        if self._expires_in is not None:
            params.append(f";expires={created + self._expires_in}")
        if nonce is None and self._nonce is not False:
            nonce = _random_nonce() if self._nonce is True else self._nonce()
        if nonce is not None:
            params.append(f";nonce={serialize_string(check_id('nonce', nonce))}")
        if self._tag is not None:
            params.append(f";tag={serialize_string(self._tag)}")
        signature_params = "(" + " ".join(c.identifier for c in components) + ")" + "".join(params)
        try:
            base = build_signature_base(message, components, signature_params, self._sf_types)
        except VerificationError as exc:
            raise ValueError(f"cannot sign this request: {exc.detail}") from None
        mac = self._key.mac(base)
        added["Signature-Input"] = f"{self._label}={signature_params}"
        added["Signature"] = f"{self._label}=:{base64.b64encode(mac).decode('ascii')}:"
        return added
