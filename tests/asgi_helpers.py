"""Shared helpers for testing :class:`hmacguard.SignatureMiddleware` in process and over the wire.

The harness follows THREATS.md ("Test harness conventions") and uvicorn's proxy-headers
tests: a tiny Starlette echo app with a counter, requests signed with a fixed clock, and a
raw-ASGI driver for what HTTP clients normalise away.

- :data:`KEY`, :data:`KEY2` and :data:`KEYS`: two 32-byte test keys (``client-1``,
  ``client-2``); :data:`NOW` is the fixed signing time; :data:`ORIGIN` is the external
  origin clients sign (``http://api.example``).
- :class:`FakeClock`: one injectable clock for the ``Verifier`` (``clock=``) and the
  ``MemoryNonceStore`` (``clock=``), so a test moves both at once.
- :class:`EchoApp`: the target app. Every route bumps :attr:`EchoApp.count` and echoes
  ``{n, method, raw_path, path, query, sha256, key_id}``; :attr:`EchoApp.calls` counts
  every HTTP/WebSocket scope that reached the app at all (404s and 405s included).
  Every REJECT assertion checks that neither moved (:meth:`EchoApp.untouched`).
- :func:`sign`: the headers of a signed request (the caller's plus the signature fields);
  :func:`forge`: the same for an arbitrary ``Signature-Input`` member with a real MAC,
  for what a lax or hostile client holding the key can send (a custom
  ``Content-Digest``, a 300-character nonce).
- :func:`protect`: an ``EchoApp`` behind a ``SignatureMiddleware`` with test defaults
  (fixed clock, a memory nonce store on the same clock), returned as :class:`Protected`.
- :func:`http_scope`, :func:`websocket_scope`, :func:`signed_scope`: hand-built scopes
  (header names lowercased unless ``keep_case=True``; ``raw_path`` can be left out).
- :func:`drive`: call an ASGI app with a scope and a scripted ``receive``; the
  :class:`Exchange` it returns holds every message sent and how many times ``receive()``
  was called (0 proves that not a byte of the body was read). :func:`call` builds the
  scope and body messages for one request and drives it.
- :func:`asgi_client`: an ``httpx.AsyncClient`` over ``httpx.ASGITransport``.
- :func:`problem`: parse and sanity-check an ``application/problem+json`` error body.
- :func:`logged_reasons`: the precise reasons the middleware logged for its rejections
  (the client is told ``invalid_signature`` for an unknown key, a stale or future
  signature and a replay; THREATS K2/E1), from ``caplog`` or a server's log text.

The app and the signing helpers import nothing from pytest, so a uvicorn test can serve
``EchoApp`` from a subprocess (``uvicorn --factory asgi_helpers:create_app``; the counter
is readable at ``/_count``, which that factory exempts).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from hmacguard import HMACKey, MemoryNonceStore, SignatureMiddleware, Signer
from hmacguard._components import parse_component
from hmacguard._message import Message as CoreMessage
from hmacguard._signature_base import build_signature_base
from hmacguard._structured_fields import parse_inner_list, serialize_inner_list

__all__ = [
    "HOST",
    "KEY",
    "KEY2",
    "KEYS",
    "NOW",
    "ORIGIN",
    "SECRET",
    "SECRET2",
    "EchoApp",
    "Exchange",
    "FakeClock",
    "Protected",
    "asgi_client",
    "body_messages",
    "call",
    "create_app",
    "drive",
    "forge",
    "http_scope",
    "logged_reasons",
    "problem",
    "protect",
    "sign",
    "signed_scope",
    "websocket_scope",
]

SECRET = b"k" * 32
SECRET2 = b"q" * 32
KEY = HMACKey("client-1", SECRET)
KEY2 = HMACKey("client-2", SECRET2)
KEYS: dict[str, HMACKey] = {KEY.key_id: KEY, KEY2.key_id: KEY2}
NOW = 1_700_000_000
HOST = "api.example"
ORIGIN = f"http://{HOST}"

#: The methods the echo routes answer (Starlette adds HEAD to GET routes anyway).
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

Message = dict[str, Any]
Headers = Sequence[tuple[str | bytes, str | bytes]] | Mapping[str, str]


class FakeClock:
    """A clock that stands still until a test moves it (epoch seconds)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


# -- the echo app ---------------------------------------------------------------


class EchoApp:
    """The THREATS harness target: a Starlette app that counts and echoes what it read.

    Routes: ``GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS`` on ``/t``, ``/t/...``,
    ``/api/...``, ``/users/...``, ``/a/...`` and ``/items``; ``/ro`` (GET only, so other
    methods get 405); ``/b6`` (reads the body every way Starlette offers and checks they
    agree); a mounted sub-app at ``/sub`` (``/sub/`` and ``/sub/x``); a WebSocket at
    ``/ws``; ``/_count`` (the counters, without bumping them). Nothing is at ``/missing``.
    """

    def __init__(self) -> None:
        self.count = 0
        self.calls = 0
        self.seen: list[dict[str, Any]] = []
        echo_routes = [
            Route(path, self._echo, methods=METHODS)
            for path in (
                "/t",
                "/t/{rest:path}",
                "/api/{rest:path}",
                "/users/{rest:path}",
                "/a/{rest:path}",
                "/items",
            )
        ]
        sub = Starlette(
            routes=[
                Route("/", self._echo, methods=METHODS),
                Route("/x", self._echo, methods=METHODS),
            ]
        )
        self.app = Starlette(
            routes=[
                *echo_routes,
                Route("/ro", self._echo, methods=["GET"]),
                Route("/b6", self._read_every_way, methods=["POST", "PUT"]),
                Route("/_count", self._count, methods=["GET"]),
                WebSocketRoute("/ws", self._websocket),
                Mount("/sub", app=sub),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            self.calls += 1
        await self.app(scope, receive, send)

    def untouched(self, count: int = 0, calls: int | None = None) -> bool:
        """True when no handler ran and no request reached the app since the given values."""
        return self.count == count and self.calls == (count if calls is None else calls)

    def _payload(self, request: Request | WebSocket, body: bytes) -> dict[str, Any]:
        self.count += 1
        raw_path = request.scope.get("raw_path")
        signature = request.scope.get("state", {}).get("signature")
        payload = {
            "n": self.count,
            "method": request.scope.get("method", "WEBSOCKET"),
            "raw_path": None if raw_path is None else raw_path.decode("latin-1"),
            "path": request.scope["path"],
            "query": request.scope.get("query_string", b"").decode("latin-1"),
            "sha256": hashlib.sha256(body).hexdigest(),
            "key_id": None if signature is None else signature.key_id,
        }
        self.seen.append(payload)
        return payload

    async def _echo(self, request: Request) -> Response:
        body = await request.body()
        return JSONResponse(self._payload(request, body))

    async def _read_every_way(self, request: Request) -> Response:
        """THREATS B6: body() twice, stream(), then json() or form(); all must agree."""
        first = await request.body()
        second = await request.body()
        streamed = b"".join([chunk async for chunk in request.stream()])
        checks = {"body_twice": first == second, "stream": streamed == first}
        content_type = request.headers.get("content-type", "")
        if content_type == "application/json":
            checks["json"] = await request.json() == json.loads(first)
        elif content_type == "application/x-www-form-urlencoded":
            form = await request.form()
            checks["form"] = list(form.multi_items()) == urllib.parse.parse_qsl(
                first.decode("latin-1"), keep_blank_values=True
            )
        payload = self._payload(request, first)
        payload["checks"] = checks
        return JSONResponse(payload)

    async def _count(self, request: Request) -> Response:
        return JSONResponse({"n": self.count, "calls": self.calls})

    async def _websocket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(self._payload(websocket, b""))
        await websocket.close()


def create_app(**options: Any) -> SignatureMiddleware:
    """An ``EchoApp`` behind a ``SignatureMiddleware`` on the real clock, for uvicorn.

    ``/_count`` is exempt so a test can read the counter over HTTP; ``options`` go to
    the middleware (default keys: :data:`KEYS`).
    """
    options.setdefault("keys", KEYS)
    options.setdefault("exempt", ["/_count"])
    return SignatureMiddleware(EchoApp(), **options)


# -- signing --------------------------------------------------------------------


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    key: HMACKey = KEY,
    now: float = NOW,
    nonce: str | bool | None = None,
    **options: Any,
) -> dict[str, str]:
    """Return ``headers`` plus the signature fields for a request signed at ``now``.

    ``url`` is absolute, or a target (``"/t?x=1"``) on :data:`ORIGIN`; ``options`` go to
    :class:`hmacguard.Signer` (``components=``, ``tag=``, ``expires_in=``...). ``nonce``
    is the nonce text, False for none, or None (default) for a fresh random one.
    """
    if url.startswith("/"):
        url = ORIGIN + url
    given = dict(headers or {})
    signer = Signer(key, clock=lambda: now, nonce=nonce is not False, **options)
    text = nonce if isinstance(nonce, str) else None
    return {**given, **signer.sign(method, url, given, body, nonce=text)}


def forge(
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    member: str,
    *,
    key: HMACKey = KEY,
    label: str = "sig1",
) -> dict[str, str]:
    """Return ``headers`` plus ``Signature-Input: label=member`` and a real MAC over its base.

    ``member`` is the inner list and parameters as sent, e.g.
    ``'("@method" "@path");created=1700000000;keyid="client-1";nonce="n"'``; nothing is
    checked or added (no ``Content-Digest``), so the request is whatever the caller made.
    """
    if url.startswith("/"):
        url = ORIGIN + url
    given = dict(headers or {})
    inner = parse_inner_list(member)
    components = [parse_component(item) for item in inner.items]
    base = build_signature_base(
        CoreMessage(method, url, list(given.items())), components, serialize_inner_list(inner)
    )
    mac = base64.b64encode(key.mac(base)).decode("ascii")
    return {**given, "Signature-Input": f"{label}={member}", "Signature": f"{label}=:{mac}:"}


# -- the middleware under test ----------------------------------------------------

_DEFAULT: Any = object()


@dataclass
class Protected:
    """An echo app behind a middleware, with the clock and store they share."""

    middleware: SignatureMiddleware
    echo: EchoApp
    clock: FakeClock
    store: Any

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client over ``ASGITransport`` to this middleware."""
        return asgi_client(self.middleware, **kwargs)


def protect(
    *,
    echo: EchoApp | None = None,
    clock: FakeClock | None = None,
    nonce_store: Any = _DEFAULT,
    keys: Any = KEYS,
    **options: Any,
) -> Protected:
    """Build :class:`Protected`: an ``EchoApp`` behind ``SignatureMiddleware``.

    By default the verifier and a fresh ``MemoryNonceStore`` share one :class:`FakeClock`
    at :data:`NOW`. Pass ``nonce_store=None`` to let the middleware pick its default, and
    ``verifier=`` (with ``keys=None``) to hand it a ready verifier. ``options`` go to the
    middleware.
    """
    clock = clock or FakeClock()
    echo = echo or EchoApp()
    store = MemoryNonceStore(clock=clock) if nonce_store is _DEFAULT else nonce_store
    if keys is not None:
        options["keys"] = keys
        options.setdefault("clock", clock)
    middleware = SignatureMiddleware(echo, nonce_store=store, **options)
    return Protected(middleware, echo, clock, store)


def asgi_client(app: Any, *, base_url: str = ORIGIN, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that calls ``app`` in process (``httpx.ASGITransport``)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url, **kwargs)


def problem(response: httpx.Response | Exchange) -> dict[str, Any]:
    """The problem document of an error response, checked for RFC 9457's shape."""
    headers = response.headers
    assert headers["content-type"] == "application/problem+json"
    document = json.loads(
        response.content if isinstance(response, httpx.Response) else response.body
    )
    assert {"type", "title", "status", "detail", "reason"} <= set(document)
    assert document["status"] == response.status_code
    return document  # type: ignore[no-any-return]


# Where the middleware logs refusals for what the client sent (4xx), and the
# server's own (5xx).
_REJECTION_LOGGERS = ("hmacguard.rejected", "hmacguard")
#: The WARNING the middleware logs for every rejection (``SignatureMiddleware._reject``):
#: ``hmacguard rejected <method> <path!r>: <reason>: <detail> (label=..., key_id=..., client=...)``.
_REJECTED = re.compile(
    r"hmacguard rejected \S+ (?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|None): ([a-z_]+): "
)


def logged_reasons(log: Any) -> list[str]:
    """The precise reasons of the middleware's rejections, oldest first, as it logged them.

    ``log`` is pytest's ``caplog`` (the ``hmacguard`` logger's records) or the text of a
    server's log (``UvicornServer.log()``, where the WARNING lines land on stderr). The
    client is told ``invalid_signature`` for an unknown key, an expired or future-dated
    signature and a replay (THREATS K2/E1), so the log is where a test proves the cause.
    """
    if isinstance(log, str):
        return [m.group(1) for m in _REJECTED.finditer(log)]
    reasons = []
    for record in log.records:
        if record.name in _REJECTION_LOGGERS and record.levelname == "WARNING":
            reason = getattr(record, "hmacguard_reason", None)
            match = _REJECTED.match(record.getMessage())
            # The record's field and its text agree (both are what operators read).
            assert (reason is None) == (match is None), record.getMessage()
            if match is not None:
                assert reason == match.group(1), (reason, record.getMessage())
                reasons.append(reason)
    return reasons


# -- raw ASGI ---------------------------------------------------------------------


def _bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def http_scope(
    method: str = "GET",
    target: str | bytes = "/t",
    headers: Headers = (),
    *,
    host: str | bytes | None = HOST,
    raw_path: Any = _DEFAULT,
    scheme: str = "http",
    root_path: str = "",
    kind: str = "http",
    keep_case: bool = False,
) -> dict[str, Any]:
    """A hand-built ASGI HTTP scope for ``method target`` (target = raw path + query).

    Header names are lowercased, as servers do, unless ``keep_case`` (ASGI only says
    they *should* be lowercase); a ``host`` header is added first unless ``host`` is
    None. ``scope["path"]`` is the percent-decoded path, as servers give it;
    ``raw_path=None`` leaves ``raw_path`` out of the scope, any other value replaces it.
    """
    raw_target = _bytes(target)
    raw, _, query = raw_target.partition(b"?")
    pairs = [
        (_bytes(n) if keep_case else _bytes(n).lower(), _bytes(v))
        for n, v in _header_pairs(headers)
    ]
    if host is not None:
        pairs.insert(0, (b"host", _bytes(host)))
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": scheme,
        "path": urllib.parse.unquote(raw.decode("latin-1"), encoding="latin-1"),
        "query_string": query,
        "root_path": root_path,
        "headers": pairs,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    if kind == "http":
        scope["method"] = method
    if raw_path is _DEFAULT:
        scope["raw_path"] = raw
    elif raw_path is not None:
        scope["raw_path"] = raw_path
    return scope


def websocket_scope(target: str = "/ws", headers: Headers = (), **kwargs: Any) -> dict[str, Any]:
    """A hand-built ASGI WebSocket scope (scheme ``ws`` unless given)."""
    kwargs.setdefault("scheme", "ws")
    return http_scope("GET", target, headers, kind="websocket", **kwargs)


def _header_pairs(headers: Headers) -> list[tuple[str | bytes, str | bytes]]:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def body_messages(
    body: bytes, chunk_size: int | None = None, *, empty_chunks: bool = False
) -> list[Message]:
    """``http.request`` messages carrying ``body``: one, or ``chunk_size`` bytes each.

    With ``empty_chunks`` an empty message (``more_body=True``) goes before every chunk
    and one more ends the body.
    """
    size = chunk_size or max(len(body), 1)
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages: list[Message] = []
    for piece in pieces:
        if empty_chunks:
            messages.append({"type": "http.request", "body": b"", "more_body": True})
        messages.append({"type": "http.request", "body": piece, "more_body": True})
    if empty_chunks:
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    else:
        messages[-1]["more_body"] = False
    return messages


def signed_scope(
    method: str,
    target: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    content_length: bool = True,
    scope_options: Mapping[str, Any] | None = None,
    **sign_options: Any,
) -> tuple[dict[str, Any], list[Message]]:
    """A signed request as ``(scope, messages)`` for :func:`drive`.

    Signs ``ORIGIN + target`` with :func:`sign` (``sign_options`` go there) and adds a
    ``content-length`` header for a non-empty body unless ``content_length`` is False.
    """
    signed = sign(method, target, headers, body, **sign_options)
    pairs = list(signed.items())
    if body and content_length:
        pairs.append(("content-length", str(len(body))))
    scope = http_scope(method, target, pairs, **(scope_options or {}))
    return scope, body_messages(body)


@dataclass
class Exchange:
    """What an ASGI app did with one scope: the messages it sent and receive() calls."""

    sent: list[Message] = field(default_factory=list)
    receive_calls: int = 0
    received: list[Message] = field(default_factory=list)

    @property
    def status_code(self) -> int | None:
        """The status of ``http.response.start``, or None if no response began."""
        for message in self.sent:
            if message["type"] == "http.response.start":
                return int(message["status"])
        return None

    @property
    def headers(self) -> dict[str, str]:
        """The response headers, names lowercased (a repeated name keeps its last value)."""
        for message in self.sent:
            if message["type"] == "http.response.start":
                return {
                    n.decode("latin-1").lower(): v.decode("latin-1") for n, v in message["headers"]
                }
        return {}

    @property
    def header_list(self) -> list[tuple[bytes, bytes]]:
        """The response header pairs exactly as sent."""
        for message in self.sent:
            if message["type"] == "http.response.start":
                return list(message["headers"])
        return []

    @property
    def body(self) -> bytes:
        """The concatenated ``http.response.body`` bytes."""
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def content(self) -> bytes:
        """Alias of :attr:`body`, as on ``httpx.Response``."""
        return self.body

    def json(self) -> Any:
        """The response body parsed as JSON."""
        return json.loads(self.body)


async def drive(
    app: Callable[..., Any],
    scope: dict[str, Any],
    messages: Iterable[Message] | AsyncIterator[Message] = (),
    *,
    then: Message | None = None,
    timeout: float = 1.0,
) -> Exchange:
    """Call ``app(scope, receive, send)`` with a scripted ``receive`` and collect the result.

    ``receive()`` hands out ``messages`` in order (a list, or a lazy iterator for huge
    bodies; an explicit ``http.disconnect`` in the script simulates a client leaving),
    then ``then`` forever: by default ``http.disconnect`` (``websocket.disconnect`` for a
    WebSocket scope), which is what a server sends once the exchange is over. A hang is
    a failure after ``timeout`` seconds.
    """
    exchange = Exchange()
    if then is None:
        then = (
            {"type": "websocket.disconnect", "code": 1000}
            if scope["type"] == "websocket"
            else {"type": "http.disconnect"}
        )
    script = iter(messages) if not hasattr(messages, "__anext__") else None
    aiter_script = messages if script is None else None

    async def receive() -> Message:
        exchange.receive_calls += 1
        if script is not None:
            message = next(script, None)
        else:
            try:
                message = await aiter_script.__anext__()  # type: ignore[union-attr]
            except StopAsyncIteration:
                message = None
        message = dict(then if message is None else message)
        exchange.received.append(message)
        return message

    async def send(message: Message) -> None:
        exchange.sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout)
    return exchange


async def call(
    app: Callable[..., Any],
    method: str,
    target: str | bytes,
    headers: Headers = (),
    body: bytes = b"",
    *,
    chunk_size: int | None = None,
    content_length: bool = True,
    **scope_options: Any,
) -> Exchange:
    """Drive one request through ``app``: build the scope, send ``body`` in chunks.

    A ``content-length`` header is added for a non-empty body unless ``content_length``
    is False or the headers already frame the body; ``scope_options`` go to
    :func:`http_scope`.
    """
    pairs = _header_pairs(headers)
    names = {(n.decode("latin-1") if isinstance(n, bytes) else n).lower() for n, _ in pairs}
    if body and content_length and not names & {"content-length", "transfer-encoding"}:
        pairs.append(("content-length", str(len(body))))
    scope = http_scope(method, target, pairs, **scope_options)
    return await drive(app, scope, body_messages(body, chunk_size))
