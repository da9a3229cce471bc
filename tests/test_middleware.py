"""SignatureMiddleware in process: raw ASGI calls, and httpx.ASGITransport against the echo app.

What a request goes through (MIDDLEWARE.md, DESIGN "What a request goes through on the
server"): non-HTTP scopes and exempt paths pass; the header phase answers before the
body is read; the body is read, bounded and hashed; the nonce is recorded only after
the MAC and the digest are proven; the app gets the exact body once and then the
server's ``receive``. The threat catalogue's named cases are in
``tests/test_threats_server.py``; the wire-level ones in ``tests/test_uvicorn.py``.
Helpers (echo app, signing, raw driver) are in ``tests/asgi_helpers.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import types
from collections.abc import AsyncIterator, Generator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import JSONResponse

import hmacguard
from asgi_helpers import (
    HOST,
    KEY,
    KEYS,
    NOW,
    ORIGIN,
    SECRET,
    FakeClock,
    Message,
    asgi_client,
    body_messages,
    call,
    drive,
    http_scope,
    logged_reasons,
    problem,
    protect,
    sign,
    signed_scope,
    websocket_scope,
)
from hmacguard import (
    HMACKey,
    MemoryNonceStore,
    SignatureMiddleware,
    VerificationError,
    VerifiedSignature,
    Verifier,
)
from hmacguard._message import normalise_authority, split_url

BODY = b'{"item": "widget", "qty": 3}'
UPGRADE = {"upgrade": "websocket"}  # what every WebSocket handshake carries
JSON = {"content-type": "application/json"}


class Recorder:
    """An ASGI app that records its scope and every message it receives, then answers 200.

    For HTTP it reads until the body ends and then calls ``receive()`` once more (a
    server answers that with ``http.disconnect``), so a test sees what the app sees.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.scope: dict[str, Any] | None = None
        self.messages: list[dict[str, Any]] = []
        self.receive: Any = None
        self.send: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        self.scope, self.receive, self.send = scope, receive, send
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        self.messages.append(await receive())
        body = b"".join(m.get("body", b"") for m in self.messages)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {"type": "http.response.body", "body": hashlib.sha256(body).hexdigest().encode()}
        )


def guard(app: Any, **options: Any) -> SignatureMiddleware:
    """``app`` behind a middleware on the fixed clock, with a memory store on that clock."""
    clock = options.pop("clock", None) or FakeClock()
    options.setdefault("keys", KEYS)
    options.setdefault("nonce_store", MemoryNonceStore(clock=clock))
    return SignatureMiddleware(app, clock=clock, **options)


def sha(body: bytes) -> str:
    """The hex SHA-256 of ``body``, as the echo app reports it."""
    return hashlib.sha256(body).hexdigest()


# -- pass-through ------------------------------------------------------------------


async def test_lifespan_passes_through_untouched() -> None:
    """A lifespan scope reaches the app with the very same scope, receive and send."""
    recorder = Recorder()
    middleware = guard(recorder)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        return None

    await middleware(scope, receive, send)
    assert recorder.calls == 1
    assert recorder.scope is scope
    assert recorder.receive is receive
    assert recorder.send is send


async def test_unknown_scope_type_passes_through() -> None:
    """A scope type the middleware does not know is not its business: it passes untouched."""
    recorder = Recorder()
    scope = {"type": "custom.thing"}
    await drive(guard(recorder), scope)
    assert recorder.calls == 1
    assert recorder.scope is scope


# -- the body: chunking, one message, disconnects -------------------------------------


@pytest.mark.parametrize(
    ("chunk_size", "empty_chunks"),
    [(None, False), (1, False), (1, True), (7, False), (7, True), (None, True), (4096, False)],
    ids=["one-message", "1-byte", "1-byte+empty", "7-byte", "7-byte+empty", "empty", "big"],
)
@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
async def test_chunking_gives_the_same_digest(
    chunk_size: int | None, empty_chunks: bool, content_length: bool
) -> None:
    """The same body in one message, 1-byte chunks or with empty chunks verifies alike (B3)."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    framing = (
        ("content-length", str(len(BODY))) if content_length else ("transfer-encoding", "chunked")
    )
    scope = http_scope("POST", "/t", [*headers.items(), framing])
    exchange = await drive(
        protected.middleware, scope, body_messages(BODY, chunk_size, empty_chunks=empty_chunks)
    )
    assert exchange.status_code == 200
    assert exchange.json()["sha256"] == sha(BODY)
    assert protected.echo.count == 1


@pytest.mark.parametrize("chunk_size", [None, 1, 5])
async def test_app_sees_one_request_message_then_disconnect(chunk_size: int | None) -> None:
    """The app gets the whole body as one http.request, then the server's http.disconnect."""
    recorder = Recorder()
    scope, _ = signed_scope("POST", "/t", BODY, JSON)
    exchange = await drive(guard(recorder), scope, body_messages(BODY, chunk_size))
    assert exchange.status_code == 200
    assert recorder.messages == [
        {"type": "http.request", "body": BODY, "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_app_sees_server_messages_after_the_body() -> None:
    """After the replayed body every receive() reaches the server, in order."""
    recorder = Recorder()
    scope, messages = signed_scope("POST", "/t", BODY, JSON)
    later = {"type": "http.request", "body": b"", "more_body": False, "marker": 1}
    exchange = await drive(guard(recorder), scope, [*messages, later])
    assert exchange.status_code == 200
    assert recorder.messages[1] == later


async def test_get_without_body_reads_the_empty_request_message() -> None:
    """A GET's empty http.request is read and handed on, then the server's disconnect."""
    recorder = Recorder()
    scope, messages = signed_scope("GET", "/t")
    exchange = await drive(guard(recorder), scope, messages)
    assert exchange.status_code == 200
    assert recorder.messages == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]


@pytest.mark.parametrize("chunks_before", [0, 1, 3])
async def test_disconnect_mid_body_sends_nothing_and_keeps_the_nonce(
    chunks_before: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A client leaving mid-body gets no response, the app no call, the nonce stays unused (B7)."""
    caplog.set_level(logging.DEBUG, logger="hmacguard")
    protected = protect()
    scope, _ = signed_scope("POST", "/t", BODY, JSON, nonce="mid-body")
    partial = body_messages(BODY, 4)[:chunks_before]
    tasks_before = len(asyncio.all_tasks())
    exchange = await drive(protected.middleware, scope, [*partial, {"type": "http.disconnect"}])
    assert exchange.sent == []
    assert exchange.receive_calls == chunks_before + 1
    assert protected.echo.untouched()
    assert len(protected.store) == 0
    assert len(asyncio.all_tasks()) == tasks_before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        r.levelno == logging.DEBUG and "disconnected" in r.getMessage() for r in caplog.records
    )
    scope, messages = signed_scope("POST", "/t", BODY, JSON, nonce="mid-body")
    resend = await drive(protected.middleware, scope, messages)
    assert resend.status_code == 200
    assert protected.echo.count == 1


# -- header phase and size limits ------------------------------------------------------


def _unsigned(headers: dict[str, str]) -> dict[str, str]:
    return JSON


def _bad_mac(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Signature": "sig1=:" + "A" * 43 + "=:"}


def _unknown_key(headers: dict[str, str]) -> dict[str, str]:
    return sign("POST", "/t", JSON, BODY, key=HMACKey("nobody", SECRET))


def _expired(headers: dict[str, str]) -> dict[str, str]:
    return sign("POST", "/t", JSON, BODY, now=NOW - 301)


def _future(headers: dict[str, str]) -> dict[str, str]:
    return sign("POST", "/t", JSON, BODY, now=NOW + 31)


def _no_digest(headers: dict[str, str]) -> dict[str, str]:
    return sign("POST", "/t", JSON, BODY, components=["@method", "@authority", "@path", "@query"])


def _no_nonce(headers: dict[str, str]) -> dict[str, str]:
    return sign("POST", "/t", JSON, BODY, nonce=False)


def _malformed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Signature-Input": "sig1=("}


# (tamper, status, the client's reason, the reason logged): an unknown key, an expired
# and a future-dated signature are told as invalid_signature (THREATS K2/E1).
HEADER_FAILURES = [
    (_unsigned, 401, "missing_signature", "missing_signature"),
    (_bad_mac, 401, "invalid_signature", "invalid_signature"),
    (_unknown_key, 401, "invalid_signature", "unknown_key"),
    (_expired, 401, "invalid_signature", "expired"),
    (_future, 401, "invalid_signature", "not_yet_valid"),
    (_no_digest, 401, "insufficient_coverage", "insufficient_coverage"),
    (_no_nonce, 401, "invalid_parameters", "invalid_parameters"),
    (_malformed, 400, "malformed_signature", "malformed_signature"),
]


@pytest.mark.parametrize(
    ("tamper", "status", "reason", "logged"),
    HEADER_FAILURES,
    ids=[f[3] for f in HEADER_FAILURES],
)
async def test_header_phase_failure_reads_no_body(
    tamper: Any, status: int, reason: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Anything wrong in the headers is answered before receive() is called even once (B9)."""
    protected = protect()
    headers = tamper(sign("POST", "/t", JSON, BODY))
    scope = http_scope("POST", "/t", [*headers.items(), ("content-length", "104857600")])
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    assert exchange.receive_calls == 0
    assert exchange.status_code == status
    assert problem(exchange)["reason"] == reason
    assert logged_reasons(caplog) == [logged]
    assert protected.echo.untouched()


@pytest.mark.parametrize("declared", [1024 * 1024 + 1, 10_000_000_000, 10**18 - 1])
async def test_content_length_over_limit_is_413_without_reading(declared: int) -> None:
    """A Content-Length above max_body_size answers 413 before receive() is called."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    scope = http_scope("POST", "/t", [*headers.items(), ("content-length", str(declared))])
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    assert exchange.receive_calls == 0
    assert exchange.status_code == 413
    assert problem(exchange)["reason"] == "body_too_large"
    assert protected.echo.untouched()
    assert len(protected.store) == 0


@pytest.mark.parametrize(
    # "\xb2" and "\xb9" (superscript two, one) pass str.isdigit(); int() refuses them.
    "value",
    ["abc", "-1", "1e3", "0x10", "1" * 19, "5 5", "\x0b5", "5\r", "\xb2", "1\xb9"],
)
async def test_bad_content_length_is_400(value: str) -> None:
    """A Content-Length that is not a plain decimal is a malformed request, read no further."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    scope = http_scope("POST", "/t", [*headers.items(), ("content-length", value)])
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    assert exchange.receive_calls == 0
    assert exchange.status_code == 400
    assert problem(exchange)["reason"] == "malformed_request"
    assert protected.echo.untouched()


@pytest.mark.parametrize("padded", [" {}", "{} ", "{}\t", "\t {} \t"])
async def test_content_length_is_read_without_the_whitespace_around_it(padded: str) -> None:
    """SP and HTAB around a field value are not part of it (RFC 9110 §5.5); httptools
    passes on those after it. A padded Content-Length is still the number: 413 unread
    above the limit, and the body read below it."""
    protected = protect(max_body_size=len(BODY))
    headers = sign("POST", "/t", JSON, BODY)
    over = padded.format(len(BODY) + 1)
    scope = http_scope("POST", "/t", [*headers.items(), ("content-length", over)])
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    assert (exchange.receive_calls, exchange.status_code) == (0, 413)
    assert protected.echo.untouched()
    exact = padded.format(len(BODY))
    scope = http_scope("POST", "/t", [*headers.items(), ("content-length", exact)])
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    assert exchange.status_code == 200
    assert protected.echo.seen[-1]["sha256"] == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize(("limit", "chunk"), [(1000, 100), (1000, 333), (1000, 1), (10, 3)])
async def test_streamed_body_crossing_the_limit_is_413(limit: int, chunk: int) -> None:
    """A chunked body is cut off with 413 once past the limit, after at most limit+chunk bytes."""
    protected = protect(max_body_size=limit)
    body = b"x" * (limit * 5 + 50)
    headers = sign("POST", "/t", {}, body)
    scope = http_scope("POST", "/t", [*headers.items(), ("transfer-encoding", "chunked")])
    exchange = await drive(protected.middleware, scope, body_messages(body, chunk))
    read = sum(len(m.get("body", b"")) for m in exchange.received)
    assert exchange.status_code == 413
    assert problem(exchange)["reason"] == "body_too_large"
    assert limit < read <= limit + chunk
    assert protected.echo.untouched()
    assert len(protected.store) == 0


@pytest.mark.parametrize("size", [0, 1, 1000])
async def test_body_at_the_limit_is_accepted(size: int) -> None:
    """A body of exactly max_body_size bytes passes."""
    protected = protect(max_body_size=size)
    body = b"y" * size
    scope, _ = signed_scope("POST", "/t", body)
    exchange = await drive(protected.middleware, scope, body_messages(body, 7))
    assert exchange.status_code == 200
    assert exchange.json()["sha256"] == sha(body)


LIMITS = {"/t/uploads/*": 5000, "/t/uploads/avatars/*": 100, "/t/uploads/avatars/big": 2000}


@pytest.mark.parametrize(
    ("target", "limit"),
    [
        ("/t/uploads/report.pdf", 5000),  # a prefix
        ("/t/uploads/avatars/me.png", 100),  # the longest prefix
        ("/t/uploads/avatars/big", 2000),  # an exact path before any prefix
        ("/t", 1000),  # elsewhere: max_body_size
        ("/t/uploads", 1000),  # "/t/uploads/*" covers what is under /t/uploads/, not /t/uploads
        ("/t/uploads/../t", 1000),  # a prefix never covers a dot segment
        ("/t/uploads/%2E%2E/t", 1000),  # nor one written percent-encoded
    ],
)
@pytest.mark.parametrize("announced", [True, False])
async def test_body_limits_per_path(target: str, limit: int, announced: bool) -> None:
    """``body_limits`` sets the limit per path: a body of exactly the path's limit
    reaches the app whole; one byte more is 413 (before reading when Content-Length
    announces it, else once the chunks pass it), and the app is never called."""
    protected = protect(max_body_size=1000, body_limits=LIMITS)
    for size, status in ((limit, 200), (limit + 1, 413)):
        body = b"z" * size
        scope, _ = signed_scope(
            "POST", target, body, content_length=announced, nonce=f"{target}-{size}-{announced}"
        )
        if not announced:
            scope["headers"].append((b"transfer-encoding", b"chunked"))
        exchange = await drive(protected.middleware, scope, body_messages(body, 64))
        assert exchange.status_code == status, (target, size, exchange.body)
        if status == 200:
            assert exchange.json()["sha256"] == sha(body)
        else:
            assert problem(exchange)["reason"] == "body_too_large"
            assert exchange.receive_calls == (0 if announced else limit // 64 + 1)
    assert protected.echo.count == 1
    assert len(protected.store) == 1


async def test_body_limits_follow_the_router_under_a_root_path() -> None:
    """Paths are matched as the router sees them, without ``root_path`` (a mount,
    uvicorn's ``--root-path``), as ``exempt`` paths are."""
    protected = protect(max_body_size=10, body_limits={"/t/uploads/*": 500})
    body = b"u" * 500
    scope, messages = signed_scope(
        "POST", "/api/t/uploads/x", body, scope_options={"root_path": "/api"}
    )
    exchange = await drive(protected.middleware, scope, messages)
    assert exchange.status_code == 200, exchange.body
    assert exchange.json()["sha256"] == sha(body)


async def test_body_limits_through_httpx_and_an_app() -> None:
    """From the outside: a signed 3 KiB upload passes on its path and is 413 on
    another with the default limit; the app is called once."""
    protected = protect(max_body_size=1024, body_limits={"/t/uploads/*": 4096})
    body = b"\x00" * 3072
    async with protected.client() as client:
        accepted = await client.post(
            "/t/uploads/file", content=body, headers=sign("POST", "/t/uploads/file", {}, body)
        )
        refused = await client.post("/t", content=body, headers=sign("POST", "/t", {}, body))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["sha256"] == sha(body)
    assert refused.status_code == 413
    assert problem(refused)["reason"] == "body_too_large"
    assert protected.echo.count == 1


@pytest.mark.parametrize(
    ("limits", "exempt"),
    [
        ({"/t/health": 10}, ["/t/health"]),
        ({"/t/static/logo.png": 10}, ["/t/static/*"]),
        ({"/t/static/big/*": 10}, ["/t/static/*"]),
        ({"/t/static/*": 10}, ["/t/static/*"]),
    ],
)
def test_a_body_limit_on_an_exempt_path_is_refused_at_construction(
    limits: dict[str, int], exempt: list[str]
) -> None:
    """An exempt request is passed on unread: a limit there would do nothing."""
    with pytest.raises(ValueError, match="exempt"):
        SignatureMiddleware(_noop_app, keys=KEYS, body_limits=limits, exempt=exempt)


@pytest.mark.parametrize(
    ("limits", "exempt"),
    [
        ({"/t/*": 10}, ["/t/health"]),  # the limit covers more than the exemption
        ({"/t/static/../x": 10}, ["/t/static/*"]),  # a prefix never covers a dot segment
        ({"/t/healthz": 10}, ["/t/health"]),
    ],
)
def test_a_body_limit_beside_an_exempt_path_is_kept(
    limits: dict[str, int], exempt: list[str]
) -> None:
    """A limit that an exemption covers only in part, or not at all, is accepted."""
    middleware = SignatureMiddleware(_noop_app, keys=KEYS, body_limits=limits, exempt=exempt)
    assert middleware.verifier is not None


async def test_an_empty_chunked_body_signed_on_the_defaults_is_accepted() -> None:
    """A chunked POST whose body turns out empty, signed with the Signer's defaults
    (which cover Content-Digest whenever Transfer-Encoding announces a body), passes:
    the defaults are never refused insufficient_coverage. (A differential run of the
    two uvicorn parsers found it refused so, on both.)"""
    protected = protect()
    headers = {**JSON, "transfer-encoding": "chunked"}
    scope, _ = signed_scope("POST", "/t", b"", headers)
    exchange = await drive(protected.middleware, scope, body_messages(b""))
    assert exchange.status_code == 200, exchange.body
    assert protected.echo.seen[-1]["sha256"] == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("chunked", [True, False])
async def test_a_zero_body_limit_takes_an_empty_body_however_framed(chunked: bool) -> None:
    """``{"/t/ping": 0}`` takes a signed POST with an empty body, whether it says
    ``Content-Length: 0`` or comes chunked (a body of unknown size that turns out
    empty), and refuses one byte, announced or not, with the request's key id logged."""
    protected = protect(body_limits={"/t/ping": 0})
    # A chunked request may have a body: its signature must cover the digest.
    covered = ("@method", "@authority", "@path", "@query", "content-digest")
    for body, status in ((b"", 200), (b"x", 413)):
        scope, _ = signed_scope(
            "POST", "/t/ping", body, content_length=not chunked, components=covered
        )
        if chunked:
            scope["headers"].append((b"transfer-encoding", b"chunked"))
        elif not body:
            scope["headers"].append((b"content-length", b"0"))
        exchange = await drive(protected.middleware, scope, body_messages(body))
        assert exchange.status_code == status, (body, exchange.body)
    assert protected.echo.count == 1


async def test_an_announced_body_over_the_limit_is_logged_with_the_key_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The 413 for a Content-Length over the path's limit names the limit in bytes,
    and its log line the signature's label and key id, as other refusals do."""
    caplog.set_level(logging.WARNING, logger="hmacguard")
    protected = protect(body_limits={"/t/small": 10})
    scope, messages = signed_scope("POST", "/t/small", b"y" * 11)
    assert (await drive(protected.middleware, scope, messages)).status_code == 413
    (record,) = [r for r in caplog.records if r.name == "hmacguard.rejected"]
    assert "(11 bytes) is over the limit (10 bytes)" in record.getMessage()
    assert (record.hmacguard_label, record.hmacguard_key_id) == ("sig1", "client-1")


# -- what the app sees -------------------------------------------------------------------


async def test_scope_state_carries_the_verified_signature() -> None:
    """scope["state"]["signature"] is the VerifiedSignature (request.state.signature)."""
    recorder = Recorder()
    scope, messages = signed_scope("POST", "/t", BODY, JSON, nonce="n-1")
    await drive(guard(recorder), scope, messages)
    assert recorder.scope is not None
    verified = recorder.scope["state"]["signature"]
    assert isinstance(verified, VerifiedSignature)
    assert (verified.key_id, verified.label, verified.nonce, verified.created) == (
        "client-1",
        "sig1",
        "n-1",
        NOW,
    )
    assert verified.covers("content-digest")


async def test_scope_without_state_gets_one() -> None:
    """A server that gives no scope["state"] still gets the signature in a new state dict."""
    recorder = Recorder()
    scope, messages = signed_scope("GET", "/t")
    del scope["state"]
    exchange = await drive(guard(recorder), scope, messages)
    assert exchange.status_code == 200
    assert recorder.scope is not None
    assert recorder.scope["state"]["signature"].key_id == "client-1"


async def test_echo_app_reads_request_state_signature() -> None:
    """Through httpx, the Starlette handler sees request.state.signature's key id."""
    protected = protect()
    async with protected.client() as client:
        response = await client.post(
            "/t",
            content=BODY,
            headers=sign("POST", "/t", JSON, BODY, key=hmacguard.HMACKey("client-2", b"q" * 32)),
        )
    assert response.status_code == 200
    assert response.json()["key_id"] == "client-2"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", BODY),
        ("application/octet-stream", bytes(range(256))),
        ("text/plain", b""),
    ],
)
async def test_body_read_every_way_agrees(content_type: str, body: bytes) -> None:
    """body() twice, stream() and json() downstream all see the bytes sent, with no hang (B6)."""
    protected = protect()
    headers = sign("POST", "/b6", {"content-type": content_type}, body)
    async with protected.client() as client:
        response = await asyncio.wait_for(client.post("/b6", content=body, headers=headers), 1.0)
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["sha256"] == sha(body)
    assert all(echoed["checks"].values())
    assert ("json" in echoed["checks"]) == (content_type == "application/json")


async def test_form_read_agrees() -> None:
    """request.form() downstream parses the same verified bytes (B6; needs python-multipart)."""
    pytest.importorskip("python_multipart", reason="Starlette's form() needs python-multipart")
    protected = protect()
    body = b"a=1&b=two&a=3"
    headers = sign("POST", "/b6", {"content-type": "application/x-www-form-urlencoded"}, body)
    async with protected.client() as client:
        response = await asyncio.wait_for(client.post("/b6", content=body, headers=headers), 1.0)
    assert response.status_code == 200
    assert response.json()["checks"] == {"body_twice": True, "stream": True, "form": True}


async def test_app_exceptions_are_not_swallowed() -> None:
    """An exception the app raises after verification propagates; it is never turned into 503."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("app bug")

    scope, messages = signed_scope("GET", "/t")
    with pytest.raises(RuntimeError, match="app bug"):
        await drive(guard(broken), scope, messages)


# -- websockets ------------------------------------------------------------------------


async def test_websocket_signed_handshake_is_accepted() -> None:
    """A signed handshake (verified as a GET with no body) reaches the Starlette websocket route."""
    protected = protect()
    scope = websocket_scope("/ws", sign("GET", "/ws", UPGRADE))
    exchange = await drive(protected.middleware, scope, [{"type": "websocket.connect"}])
    assert [m["type"] for m in exchange.sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    echoed = json.loads(exchange.sent[1]["text"])
    assert (echoed["key_id"], echoed["n"], echoed["method"]) == ("client-1", 1, "WEBSOCKET")


@pytest.mark.parametrize("upgrade_on_the_way", [True, False])
async def test_a_signed_plain_get_never_opens_a_websocket(upgrade_on_the_way: bool) -> None:
    """A client's signed GET /ws, given an Upgrade header on the way (which its signature
    does not cover), must not open a WebSocket under its key: the handshake is refused
    (1008) before accept, and the app never sees it."""
    protected = protect()
    signed = sign("GET", "/ws")  # a plain GET: no Upgrade signed
    assert "upgrade" not in signed["Signature-Input"]
    headers = {**signed, **UPGRADE} if upgrade_on_the_way else signed
    scope = websocket_scope("/ws", headers)
    exchange = await drive(protected.middleware, scope, [{"type": "websocket.connect"}])
    assert exchange.sent == [{"type": "websocket.close", "code": 1008}]
    assert protected.echo.untouched()


def test_the_default_signature_of_a_handshake_covers_upgrade_and_its_key() -> None:
    """Signer's defaults cover Upgrade (and a Sec-WebSocket-Key given) on a handshake."""
    headers = {**UPGRADE, "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}
    signed = sign("GET", "/ws", headers)
    assert '"upgrade" "sec-websocket-key")' in signed["Signature-Input"]


async def test_websocket_unsigned_handshake_is_closed_1008() -> None:
    """An unsigned handshake is closed with 1008 and the app never sees the scope."""
    protected = protect()
    exchange = await drive(
        protected.middleware, websocket_scope("/ws"), [{"type": "websocket.connect"}]
    )
    assert exchange.sent == [{"type": "websocket.close", "code": 1008}]
    assert protected.echo.untouched()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_websocket_rejected_before_accept(scheme: str) -> None:
    """A bad handshake: the middleware reads websocket.connect and sends only close 1008."""
    protected = protect()
    scope = websocket_scope(
        "/ws",
        sign("GET", f"{scheme.replace('ws', 'http')}://{HOST}/ws?x=1", UPGRADE),
        scheme=scheme,
    )
    exchange = await drive(protected.middleware, scope, [{"type": "websocket.connect"}])
    assert exchange.sent == [{"type": "websocket.close", "code": 1008}]
    assert exchange.receive_calls == 1
    assert protected.echo.untouched()


@pytest.mark.parametrize(("scheme", "signed"), [("ws", "http"), ("wss", "https")])
async def test_websocket_scheme_maps_to_http(scheme: str, signed: str) -> None:
    """A ws/wss handshake verifies against the http/https URL the client signed."""
    protected = protect()
    scope = websocket_scope("/ws", sign("GET", f"{signed}://{HOST}/ws", UPGRADE), scheme=scheme)
    exchange = await drive(protected.middleware, scope, [{"type": "websocket.connect"}])
    assert exchange.sent[0]["type"] == "websocket.accept"
    assert protected.echo.count == 1


# -- exemptions ----------------------------------------------------------------------


EXEMPT_CASES = [
    (["/t"], "/t", True),
    (["/t"], "/t/", False),
    (["/t"], "/t/x", False),
    (["/t"], "/T", False),
    (["/t"], "/tx", False),
    (["/t/*"], "/t/x", True),
    (["/t/*"], "/t/", True),
    (["/t/*"], "/t", False),
    (["/t/*"], "/tx", False),
    (["/sub/*"], "/sub/x", True),
    (["/ro", "/t"], "/t", True),
    ([], "/t", False),
]


@pytest.mark.parametrize(("exempt", "path", "passes"), EXEMPT_CASES)
async def test_exempt_paths(exempt: list[str], path: str, passes: bool) -> None:
    """Exempt paths match exactly, or by prefix with a trailing '*'; everything else is verified."""
    protected = protect(exempt=exempt)
    async with protected.client() as client:
        response = await client.get(path)
    if passes:
        assert response.status_code in (200, 404)
        assert protected.echo.calls == 1
    else:
        assert response.status_code == 401
        assert protected.echo.untouched()


@pytest.mark.parametrize(
    ("target", "passes"),
    [
        (b"/static/app.css", True),
        (b"/static/.well-known/x", True),
        (b"/static/..x", True),
        (b"/static/../admin", False),
        (b"/static/./admin", False),
        (b"/static/x/..", False),
        (b"/static%2F..%2Fadmin", False),
        (b"/static/%2E%2E/admin", False),
    ],
)
async def test_an_exempt_prefix_never_covers_a_dot_segment(target: bytes, passes: bool) -> None:
    """A "/static/*" exemption covers what is under /static/, not a path that leaves it once an
    app or a mount normalises "." and ".." (decoded, as scope["path"] is): those are
    verified like any other request."""
    protected = protect(exempt=["/static/*"])
    exchange = await call(protected.middleware, "GET", target)
    if passes:
        assert protected.echo.calls == 1
    else:
        assert exchange.status_code == 401
        assert protected.echo.untouched()


@pytest.mark.parametrize(
    ("exempt", "target", "passes"),
    [
        (["/health"], "/api/health", True),
        (["/static/*"], "/api/static/x", True),
        (["/api/health"], "/api/health", False),
        (["/health"], "/apihealth", False),
    ],
)
async def test_exempt_paths_are_the_router_s_under_a_root_path(
    exempt: list[str], target: str, passes: bool
) -> None:
    """With uvicorn's --root-path /api, scope["path"] is "/api/health" while the router
    matches "/health": exempt paths are matched as the router matches routes."""
    protected = protect(exempt=exempt)
    exchange = await call(protected.middleware, "GET", target, root_path="/api")
    if passes:
        assert protected.echo.calls == 1
    else:
        assert exchange.status_code == 401
        assert protected.echo.untouched()


async def test_exempt_prefix_star_lets_unrouted_path_through() -> None:
    """A prefix exemption passes every path under it, routed or not (the router then answers)."""
    protected = protect(exempt=["/t*"])
    async with protected.client() as client:
        response = await client.get("/tx")
    assert response.status_code == 404
    assert protected.echo.calls == 1


async def test_exempt_callable() -> None:
    """A callable exemption decides per scope; its False verifies as usual."""
    seen: list[str] = []

    def exempt(scope: Any) -> bool:
        seen.append(scope["type"])
        return bool(scope["path"] == "/ro")

    protected = protect(exempt=exempt)
    async with protected.client() as client:
        assert (await client.get("/ro")).status_code == 200
        assert (await client.get("/t")).status_code == 401
    assert seen == ["http", "http"]
    assert protected.echo.count == 1


async def test_exempt_websocket_path() -> None:
    """An exempt websocket path is accepted unsigned."""
    protected = protect(exempt=["/ws"])
    exchange = await drive(
        protected.middleware, websocket_scope("/ws"), [{"type": "websocket.connect"}]
    )
    assert exchange.sent[0]["type"] == "websocket.accept"


# -- hand-built scopes -------------------------------------------------------------------


async def test_mixed_case_header_names_verify() -> None:
    """Header names in any case (ASGI says 'should' be lowercase, not 'must') verify the same."""
    protected = protect()
    headers = sign("POST", "/t", {"Content-Type": "application/json"}, BODY)
    pairs = [
        (name.upper() if i % 2 else name.title(), value)
        for i, (name, value) in enumerate(headers.items())
    ]
    pairs.append(("Content-Length", str(len(BODY))))
    scope = http_scope("POST", "/t", [("HoSt", HOST), *pairs], host=None, keep_case=True)
    exchange = await drive(protected.middleware, scope, body_messages(BODY, 3))
    assert exchange.status_code == 200
    assert exchange.json()["sha256"] == sha(BODY)


async def test_mixed_case_content_length_over_limit() -> None:
    """A 'Content-Length' header in mixed case still triggers the 413 without reading."""
    protected = protect()
    headers = sign("POST", "/t", {}, BODY)
    scope = http_scope(
        "POST", "/t", [*headers.items(), ("Content-Length", "99999999")], keep_case=True
    )
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    assert (exchange.status_code, exchange.receive_calls) == (413, 0)


async def test_mixed_case_content_digest_is_checked() -> None:
    """A 'CONTENT-DIGEST' header in upper case is the one compared with the body."""
    protected = protect()
    headers = sign("POST", "/t", {}, BODY)
    pairs = [(name.upper(), value) for name, value in headers.items()]
    tampered = BODY.replace(b"3", b"4")
    scope = http_scope("POST", "/t", [*pairs, ("CONTENT-LENGTH", str(len(BODY)))], keep_case=True)
    exchange = await drive(protected.middleware, scope, body_messages(tampered))
    assert exchange.status_code == 401
    assert problem(exchange)["reason"] == "digest_mismatch"
    assert protected.echo.untouched()


@pytest.mark.parametrize("raw_path", [None, b""], ids=["absent", "empty"])
async def test_no_raw_path_is_400(raw_path: bytes | None) -> None:
    """Without scope["raw_path"] the middleware fails closed (400), never using the decoded path."""
    protected = protect()
    headers = sign("GET", "/t")
    scope = http_scope("GET", "/t", headers, raw_path=raw_path)
    exchange = await drive(protected.middleware, scope)
    assert exchange.status_code == 400
    assert problem(exchange)["reason"] == "malformed_request"
    assert exchange.receive_calls == 0
    assert protected.echo.untouched()


async def test_conflicting_content_lengths_are_400() -> None:
    """Two different Content-Length values are a malformed request, answered without reading."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    pairs = [*headers.items(), ("content-length", str(len(BODY))), ("content-length", "5")]
    exchange = await drive(
        protected.middleware, http_scope("POST", "/t", pairs), body_messages(BODY)
    )
    assert (exchange.status_code, exchange.receive_calls) == (400, 0)
    assert problem(exchange)["reason"] == "malformed_request"
    assert protected.echo.untouched()


@pytest.mark.parametrize("second", ["{}", " {}\t"])
async def test_repeated_equal_content_length_is_accepted(second: str) -> None:
    """The same Content-Length twice is one length (RFC 9110 §8.6 allows the repetition),
    whitespace around either value apart (RFC 9110 §5.5)."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    pairs = [
        *headers.items(),
        ("content-length", str(len(BODY))),
        ("content-length", second.format(len(BODY))),
    ]
    exchange = await drive(
        protected.middleware, http_scope("POST", "/t", pairs), body_messages(BODY)
    )
    assert exchange.status_code == 200


async def test_headers_that_are_not_byte_pairs_are_400() -> None:
    """A scope whose headers are str pairs (a broken server) fails closed with 400."""
    protected = protect()
    scope = http_scope("GET", "/t", sign("GET", "/t"))
    scope["headers"] = [(n.decode(), v.decode()) for n, v in scope["headers"]]
    exchange = await drive(protected.middleware, scope, body_messages(b""))
    assert exchange.status_code == 400
    assert problem(exchange)["reason"] == "malformed_request"
    assert protected.echo.untouched()


@pytest.mark.parametrize("second", [b"host", b"Host", b"HOST"])
async def test_two_host_headers_are_400(second: bytes) -> None:
    """Two Host headers (any case) are a malformed request (RFC 9112 §3.2), even when equal."""
    protected = protect()
    scope = http_scope("GET", "/t", sign("GET", "/t"))
    scope["headers"].append((second, HOST.encode()))
    exchange = await drive(protected.middleware, scope)
    assert exchange.status_code == 400
    assert problem(exchange)["reason"] == "malformed_request"
    assert protected.echo.untouched()


async def test_no_host_header_is_400() -> None:
    """A request without Host (and no configured authority) cannot be verified: 400."""
    protected = protect()
    exchange = await drive(
        protected.middleware, http_scope("GET", "/t", sign("GET", "/t"), host=None)
    )
    assert exchange.status_code == 400
    assert problem(exchange)["reason"] == "malformed_request"


async def test_no_host_header_with_configured_authority() -> None:
    """With a configured authority the Host header is not needed."""
    protected = protect(authority=HOST)
    scope, messages = signed_scope("GET", "/t", scope_options={"host": None})
    exchange = await drive(protected.middleware, scope, messages)
    assert exchange.status_code == 200


# -- configuration -------------------------------------------------------------------


def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    return None


class NoAdd:
    """An object that is not a nonce store."""


CONFIG_ERRORS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"app": None}, TypeError, "ASGI"),
    ({"keys": None}, TypeError, "keys= or verifier="),
    ({"verifier": Verifier(KEYS)}, TypeError, "keys= or verifier="),
    ({"keys": None, "verifier": object()}, TypeError, "Verifier"),
    ({"keys": None, "verifier": Verifier(KEYS), "max_age": 60}, TypeError, "policy"),
    ({"keys": None, "verifier": Verifier(KEYS), "require_nonce": False}, TypeError, "policy"),
    ({"keys": {}}, ValueError, "empty"),
    ({"keys": "secret"}, TypeError, "keys"),
    ({"max_age": 10_000}, ValueError, "max_age"),
    ({"clock_skew": -1}, ValueError, "clock_skew"),
    ({"no_such_option": 1}, TypeError, "no_such_option"),
    ({"nonce_store": NoAdd()}, TypeError, "nonce_store"),
    ({"exempt": "/health"}, TypeError, "exempt"),
    ({"exempt": ["health"]}, ValueError, "exempt"),
    ({"exempt": [b"/health"]}, ValueError, "exempt"),
    ({"max_body_size": True}, TypeError, "max_body_size"),
    ({"max_body_size": 1.5}, TypeError, "max_body_size"),
    ({"max_body_size": "1"}, TypeError, "max_body_size"),
    ({"max_body_size": -1}, ValueError, "max_body_size"),
    ({"body_limits": [("/uploads/*", 10)]}, TypeError, "body_limits"),
    ({"body_limits": {"uploads/*": 10}}, ValueError, "body_limits"),
    ({"body_limits": {"/uploads/*": 1.5}}, TypeError, "body_limits"),
    ({"body_limits": {"/uploads/*": True}}, TypeError, "body_limits"),
    ({"body_limits": {"/uploads/*": -1}}, ValueError, "body_limits"),
    ({"scheme": "ftp"}, ValueError, "scheme"),
    ({"scheme": "HTTPS"}, ValueError, "scheme"),
    ({"authority": ""}, ValueError, "authority"),
    ({"authority": "api.example/v1"}, ValueError, "authority"),
    ({"authority": 443}, ValueError, "authority"),
    ({"authority": "api.example#"}, ValueError, "authority"),
    ({"authority": "api.example?"}, ValueError, "authority"),
    ({"authority": "user@api.example"}, ValueError, "authority"),
    ({"authority": "api example"}, ValueError, "authority"),
    ({"path_prefix": "/api?x"}, ValueError, "path_prefix"),
    ({"path_prefix": "/api#x"}, ValueError, "path_prefix"),
    ({"path_prefix": "api"}, ValueError, "path_prefix"),
    ({"path_prefix": "/api/"}, ValueError, "path_prefix"),
    ({"path_prefix": "/"}, ValueError, "path_prefix"),
    ({"path_prefix": 5}, ValueError, "path_prefix"),
    ({"on_error": "not callable"}, TypeError, "on_error"),
]


@pytest.mark.parametrize(("options", "error", "match"), CONFIG_ERRORS)
def test_bad_configuration_raises_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Each invalid option is a TypeError or ValueError from __init__, not a request-time error."""
    arguments: dict[str, Any] = {"app": _noop_app, "keys": KEYS, **options}
    if arguments["keys"] is None:
        del arguments["keys"]
    app = arguments.pop("app")
    with pytest.raises(error, match=match):
        SignatureMiddleware(app, **arguments)


def test_ready_verifier_is_used() -> None:
    """verifier= is used as given, with its policy."""
    verifier = Verifier(KEYS, max_age=60)
    middleware = SignatureMiddleware(_noop_app, verifier=verifier)
    assert middleware.verifier is verifier


async def test_default_store_refuses_replays(caplog: pytest.LogCaptureFixture) -> None:
    """With require_nonce (the default) and no store given, a memory store refuses replays."""
    middleware = SignatureMiddleware(Recorder(), keys=KEYS, clock=FakeClock())
    assert middleware.verifier.require_nonce is True
    scope, messages = signed_scope("GET", "/t")
    assert (await drive(middleware, scope, messages)).status_code == 200
    replay = await drive(middleware, scope, messages)
    assert replay.status_code == 401
    assert problem(replay)["reason"] == "invalid_signature"  # told like a bad MAC (K2)
    assert logged_reasons(caplog) == ["replayed"]


async def test_given_memory_store_is_used_even_when_empty() -> None:
    """An empty MemoryNonceStore passed as nonce_store (len 0, so falsy) is the store used."""
    clock = FakeClock()
    store = MemoryNonceStore(max_entries=1, clock=clock)
    middleware = SignatureMiddleware(Recorder(), keys=KEYS, nonce_store=store, clock=clock)
    scope, messages = signed_scope("GET", "/t", nonce="first")
    assert (await drive(middleware, scope, messages)).status_code == 200
    assert len(store) == 1
    scope, messages = signed_scope("GET", "/t", nonce="second")
    full = await drive(middleware, scope, messages)
    assert full.status_code == 503
    assert problem(full)["reason"] == "nonce_store_unavailable"


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"require_nonce": False}, "require_nonce=False"), ({"debug": True}, "debug=True")],
)
def test_risky_options_warn_at_construction(
    options: dict[str, Any], needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    """require_nonce=False and debug=True each log a WARNING on the hmacguard logger at start-up."""
    caplog.set_level(logging.DEBUG, logger="hmacguard")
    SignatureMiddleware(_noop_app, keys=KEYS, **options)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "hmacguard"]
    assert len(warnings) == 1
    assert needle in warnings[0].getMessage()


def test_default_configuration_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """The default configuration logs no warning."""
    caplog.set_level(logging.DEBUG, logger="hmacguard")
    SignatureMiddleware(_noop_app, keys=KEYS)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_require_nonce_false_accepts_no_nonce_and_skips_store() -> None:
    """require_nonce=False accepts a signature without a nonce and records nothing."""
    protected = protect(require_nonce=False)
    scope, messages = signed_scope("GET", "/t", nonce=False)
    assert (await drive(protected.middleware, scope, messages)).status_code == 200
    assert (await drive(protected.middleware, scope, messages)).status_code == 200
    assert len(protected.store) == 0


async def test_require_nonce_false_with_a_store_still_rejects_replayed_nonces(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With require_nonce=False and a store given, a nonce that is present is still checked."""
    protected = protect(require_nonce=False)
    scope, messages = signed_scope("GET", "/t", nonce="present")
    assert (await drive(protected.middleware, scope, messages)).status_code == 200
    replay = await drive(protected.middleware, scope, messages)
    assert replay.status_code == 401
    assert problem(replay)["reason"] == "invalid_signature"  # told like a bad MAC (K2)
    assert logged_reasons(caplog) == ["replayed"]


# -- error responses -------------------------------------------------------------------


async def test_on_error_starlette_response() -> None:
    """on_error's Starlette JSONResponse replaces the default answer; the app is not called."""
    seen: list[VerificationError] = []

    def on_error(scope: Any, error: VerificationError) -> JSONResponse:
        seen.append(error)
        return JSONResponse({"oops": error.status}, status_code=error.status)

    protected = protect(on_error=on_error)
    async with protected.client() as client:
        response = await client.get("/t")
    assert response.status_code == 401
    assert response.json() == {"oops": 401}
    assert [e.reason for e in seen] == ["missing_signature"]
    assert protected.echo.untouched()


async def test_on_error_async_handler() -> None:
    """An async on_error is awaited for the ASGI app it returns."""

    async def on_error(scope: Any, error: VerificationError) -> JSONResponse:
        return JSONResponse({"status": error.status}, status_code=418)

    protected = protect(on_error=on_error)
    async with protected.client() as client:
        response = await client.get("/t")
    assert response.status_code == 418
    assert protected.echo.untouched()


async def test_debug_response_shows_detail_and_base() -> None:
    """debug=True adds the precise detail and the server's signature base to the problem."""
    protected = protect(debug=True)
    headers = sign("GET", "/t?x=1")
    headers["Signature"] = "sig1=:" + "A" * 43 + "=:"
    async with protected.client() as client:
        response = await client.get("/t?x=1", headers=headers)
    document = problem(response)
    assert document["reason"] == "invalid_signature"
    debug = document["debug"]
    assert debug["reason"] == "invalid_signature"
    assert "does not match" in debug["detail"]
    assert debug["key_id"] == "client-1"
    base = debug["signature_base"]
    assert '"@path": /t\n' in base
    assert '"@query": ?x=1\n' in base
    assert f'"@authority": {HOST}\n' in base
    assert base.splitlines()[-1].startswith('"@signature-params": (')


async def test_debug_response_and_on_error_carry_the_precise_reason_of_a_replay() -> None:
    """A replay is told invalid_signature, but debug=True's body and on_error see replayed."""
    protected = protect(debug=True)
    scope, messages = signed_scope("GET", "/t")
    assert (await drive(protected.middleware, scope, messages)).status_code == 200
    document = problem(await drive(protected.middleware, scope, messages))
    assert (document["reason"], document["debug"]["reason"]) == ("invalid_signature", "replayed")
    seen: list[str] = []

    def on_error(scope: Any, error: VerificationError) -> JSONResponse:
        seen.append(error.reason)
        return JSONResponse({}, status_code=error.status)

    handled = protect(on_error=on_error)
    assert (await drive(handled.middleware, scope, messages)).status_code == 200
    assert (await drive(handled.middleware, scope, messages)).status_code == 401
    assert seen == ["replayed"]


async def test_debug_response_without_a_base() -> None:
    """debug=True with no signature to rebuild still answers, with a null base."""
    protected = protect(debug=True)
    async with protected.client() as client:
        response = await client.get("/t")
    document = problem(response)
    assert document["debug"]["reason"] == "missing_signature"
    assert document["debug"]["signature_base"] is None


async def test_no_debug_never_shows_detail_or_base() -> None:
    """debug=False (the default) keeps the detail, base, key id and time out of every response."""
    protected = protect()
    headers = sign("GET", "/t?x=1")
    headers["Signature"] = "sig1=:" + "A" * 43 + "=:"
    async with protected.client() as client:
        response = await client.get("/t?x=1", headers=headers)
    document = problem(response)
    assert "debug" not in document
    text = response.text
    for needle in (
        "@signature-params",
        "@path",
        "client-1",
        str(NOW),
        "does not match",
        headers["Signature-Input"],
    ):
        assert needle not in text


PROBLEM_FIELDS = {"type", "title", "status", "detail", "reason"}


async def test_problem_document_shape() -> None:
    """An error answers application/problem+json with exactly the five RFC 9457 members."""
    protected = protect()
    async with protected.client() as client:
        response = await client.get("/t")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-length"] == str(len(response.content))
    document = response.json()
    assert set(document) == PROBLEM_FIELDS
    assert document["status"] == 401
    assert document["reason"] == "missing_signature"
    assert document["type"].endswith("#missing-signature")


async def test_unknown_key_and_bad_mac_are_byte_identical() -> None:
    """An unknown key id and a bad MAC give the same status, headers and body bytes."""
    protected = protect()
    unknown = sign("GET", "/t", key=HMACKey("nobody", SECRET))
    bad_mac = sign("GET", "/t", key=HMACKey("client-1", b"z" * 32))
    async with protected.client() as client:
        first = await client.get("/t", headers=unknown)
        second = await client.get("/t", headers=bad_mac)
    assert first.status_code == second.status_code == 401
    assert first.content == second.content
    assert first.headers.raw == second.headers.raw
    assert problem(first)["reason"] == "invalid_signature"
    assert b"nobody" not in first.content


async def test_401_headers() -> None:
    """A 401 carries WWW-Authenticate and an Accept-Signature that names no key id, and
    asks for no parameter the signer generates (RFC 9421 §5.1: "MUST NOT include
    parameters that the signer is expected to generate, including the created and
    nonce parameters")."""
    protected = protect()
    async with protected.client() as client:
        response = await client.get("/t")
    assert response.headers["www-authenticate"] == 'Signature realm="hmacguard"'
    assert response.headers["accept-signature"] == 'sig1=("@method" "@authority" "@path" "@query")'
    assert "retry-after" not in response.headers
    for key_id in KEYS:
        assert key_id not in response.headers["accept-signature"]


async def test_outer_middleware_editing_an_answer_changes_no_later_answer() -> None:
    """An outer middleware may edit the headers of the message it is sent in place
    (the raw-ASGI idiom ``message.setdefault("headers", []).append(...)``): each
    refusal is sent its own header list, so no edit reaches a later answer."""
    protected = protect()

    async def tag_answers(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", b"1"))
            await send(message)

        await protected.middleware(scope, receive, tagged)

    for _ in range(3):
        exchange = await call(tag_answers, "GET", "/t")
        assert exchange.status_code == 401
        start = next(m for m in exchange.sent if m["type"] == "http.response.start")
        assert [v for n, v in start["headers"] if n == b"x-request-id"] == [b"1"]
    assert protected.echo.untouched()


async def test_gzip_of_one_answer_does_not_reach_the_next() -> None:
    """Starlette's GZipMiddleware, outside, compresses one client's 401 (editing the
    headers in place); the next client, which accepts no gzip, gets a plain 401."""
    protected = protect()
    outer = GZipMiddleware(protected.middleware, minimum_size=10)
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        zipped = await client.get("/t", headers={"accept-encoding": "gzip"})
        plain = await client.get("/t", headers={"accept-encoding": "identity"})
    assert zipped.status_code == plain.status_code == 401
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert problem(plain)["reason"] == "missing_signature"
    assert int(plain.headers["content-length"]) == len(plain.content)
    assert protected.echo.untouched()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"required_components": ["@method", "@path"]},
            'sig1=("@method" "@path")',
        ),
        (
            {"tag": "api"},
            'sig1=("@method" "@authority" "@path" "@query");tag="api"',
        ),
        ({"require_nonce": False}, 'sig1=("@method" "@authority" "@path" "@query")'),
    ],
)
async def test_accept_signature_follows_policy(options: dict[str, Any], expected: str) -> None:
    """Accept-Signature lists what the configured policy requires."""
    protected = protect(**options)
    async with protected.client() as client:
        response = await client.get("/t")
    assert response.headers["accept-signature"] == expected


class RaisingStore:
    """A nonce store whose add() raises."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0

    async def add(self, key: str, ttl: float) -> bool:
        self.calls += 1
        raise self.exc


class AnswerStore:
    """A nonce store that answers a fixed value and records its calls."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[tuple[str, float]] = []

    async def add(self, key: str, ttl: float) -> bool:
        self.calls.append((key, ttl))
        return self.answer


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("redis down"),
        TimeoutError(),
        RuntimeError("boom"),
        hmacguard.NonceStoreUnavailable("full"),
    ],
)
async def test_store_that_raises_is_503(exc: Exception) -> None:
    """A nonce store that raises answers 503 with Retry-After, and the app is not called."""
    store = RaisingStore(exc)
    protected = protect(nonce_store=store)
    scope, messages = signed_scope("POST", "/t", BODY, JSON)
    exchange = await drive(protected.middleware, scope, messages)
    assert exchange.status_code == 503
    assert problem(exchange)["reason"] == "nonce_store_unavailable"
    assert exchange.headers["retry-after"] == "1"
    assert "www-authenticate" not in exchange.headers
    assert store.calls == 1
    assert protected.echo.untouched()


async def test_store_that_answers_false_is_replayed(caplog: pytest.LogCaptureFixture) -> None:
    """A store answering False (seen before) is a replay: 401 like a bad MAC, logged replayed."""
    store = AnswerStore(False)
    protected = protect(nonce_store=store)
    scope, messages = signed_scope("GET", "/t", nonce="abc")
    exchange = await drive(protected.middleware, scope, messages)
    assert exchange.status_code == 401
    assert problem(exchange)["reason"] == "invalid_signature"
    assert logged_reasons(caplog) == ["replayed"]
    assert protected.echo.untouched()


async def test_custom_store_gets_key_and_ttl() -> None:
    """A custom store is awaited with nonce_key(key id, nonce) and the verifier's nonce TTL."""
    store = AnswerStore(True)
    protected = protect(nonce_store=store, max_age=120, clock_skew=10)
    scope, messages = signed_scope("GET", "/t", nonce="abc")
    exchange = await drive(protected.middleware, scope, messages)
    assert exchange.status_code == 200
    assert store.calls == [(hmacguard.nonce_key("client-1", "abc"), 120 + 2 * 10 + 1)]


def _raise(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected")


def _resolver_raising(key_id: str) -> HMACKey | None:
    raise RuntimeError("vault down")


async def _async_resolver_raising(key_id: str) -> HMACKey | None:
    raise RuntimeError("vault down")


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ("sync key resolver", "key_lookup_failed"),
        ("async key resolver", "key_lookup_failed"),
        ("nonce store", "nonce_store_unavailable"),
        ("digest check of a one-message body", "verification_unavailable"),
        ("DigestVerifier", "verification_unavailable"),
        ("DigestVerifier.update", "verification_unavailable"),
        ("verify_headers", "verification_unavailable"),
    ],
)
async def test_exception_at_each_step_is_503(
    step: str, reason: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception injected at any internal step answers 503 and never reaches the app (E4)."""
    options: dict[str, Any] = {}
    if step == "sync key resolver":
        options["keys"] = _resolver_raising
    elif step == "async key resolver":
        options["keys"] = _async_resolver_raising
    elif step == "nonce store":
        options["nonce_store"] = RaisingStore(RuntimeError("injected"))
    elif step == "digest check of a one-message body":
        monkeypatch.setattr("hmacguard._middleware.verify_content_digest", _raise)
    elif step == "DigestVerifier":
        monkeypatch.setattr("hmacguard._middleware.DigestVerifier", _raise)
    elif step == "DigestVerifier.update":
        monkeypatch.setattr(hmacguard.DigestVerifier, "update", _raise)
    protected = protect(**options)
    if step == "verify_headers":
        monkeypatch.setattr(protected.middleware.verifier, "verify_headers", _raise)
        monkeypatch.setattr(protected.middleware.verifier, "_verify_headers_prepared", _raise)
        monkeypatch.setattr(protected.middleware.verifier, "_fast_asgi", _raise)
    caplog.set_level(logging.WARNING, logger="hmacguard")
    scope, messages = signed_scope("POST", "/t", BODY, JSON)
    if step.startswith("DigestVerifier"):
        messages = body_messages(BODY, 4)  # several chunks: hashed as they arrive
    exchange = await drive(protected.middleware, scope, messages)
    assert exchange.status_code == 503
    assert problem(exchange)["reason"] == reason
    assert exchange.headers["retry-after"] == "1"
    assert protected.echo.untouched()
    if reason == "verification_unavailable":
        assert any(r.exc_info for r in caplog.records), (
            "an unexpected exception is logged with its traceback"
        )


async def test_async_key_resolver() -> None:
    """An async key resolver is awaited: a known key verifies, an unknown one does not."""

    async def resolve(key_id: str) -> HMACKey | None:
        await asyncio.sleep(0)
        return KEY if key_id == KEY.key_id else None

    protected = protect(keys=resolve)
    ok_scope, ok_messages = signed_scope("POST", "/t", BODY, JSON)
    assert (await drive(protected.middleware, ok_scope, ok_messages)).status_code == 200
    bad_scope, bad_messages = signed_scope("GET", "/t", key=HMACKey("nobody", SECRET))
    rejected = await drive(protected.middleware, bad_scope, bad_messages)
    assert rejected.status_code == 401
    assert problem(rejected)["reason"] == "invalid_signature"
    assert protected.echo.count == 1


async def test_sync_key_resolver() -> None:
    """A sync key resolver works like static keys."""
    protected = protect(keys=lambda key_id: KEY if key_id == KEY.key_id else None)
    scope, messages = signed_scope("GET", "/t")
    assert (await drive(protected.middleware, scope, messages)).status_code == 200


async def test_rejections_log_a_warning_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    """A rejection logs one WARNING with the precise reason and never the Signature value."""
    caplog.set_level(logging.DEBUG, logger="hmacguard")
    protected = protect()
    headers = sign("GET", "/t", key=HMACKey("nobody", SECRET))
    async with protected.client() as client:
        await client.get("/t", headers=headers)
    records = [r for r in caplog.records if r.name.startswith("hmacguard")]
    assert [(r.name, r.levelno) for r in records] == [("hmacguard.rejected", logging.WARNING)]
    message = records[0].getMessage()
    assert "unknown_key" in message
    assert headers["Signature"].split("=", 1)[1] not in message
    # The same facts as fields of the record, for structured logging.
    assert records[0].hmacguard_reason == "unknown_key"
    assert records[0].hmacguard_status == 401  # what the client got (as invalid_signature)
    assert records[0].hmacguard_label == "sig1"
    assert records[0].hmacguard_key_id == "nobody"


@pytest.mark.parametrize(
    ("client", "logged"),
    [
        (("203.0.113.7", 50123), "203.0.113.7"),
        (None, None),
        (["::1", 1], "::1"),
        ((), None),
        # Behind uvicorn --forwarded-allow-ips, X-Forwarded-For becomes the client:
        # quoted, it cannot end the line and start a forged one.
        (
            ("1.2.3.4) hmacguard accepted POST '/admin'\nx", 0),
            "1.2.3.4) hmacguard accepted POST '/admin'\nx",
        ),
    ],
)
async def test_rejections_log_the_peer_address(
    caplog: pytest.LogCaptureFixture, client: Any, logged: str | None
) -> None:
    """The rejection log names the peer the server names (scope["client"], host only:
    the client, or the proxy in front of it), so an operator can tell one noisy
    source from many; a server that names none, or names it oddly, logs None. It is
    quoted, as the path and key id are: a proxy header may have written it."""
    caplog.set_level(logging.WARNING, logger="hmacguard")
    protected = protect()
    scope = http_scope("GET", "/t")
    scope["client"] = client
    assert (await drive(protected.middleware, scope)).status_code == 401
    (record,) = [r for r in caplog.records if r.name == "hmacguard.rejected"]
    assert record.hmacguard_client == logged
    assert record.getMessage().endswith(f"client={logged!r})")
    assert "\n" not in record.getMessage()


async def test_client_refusals_can_be_quieted_apart_from_server_faults(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 4xx refusal is logged on ``hmacguard.rejected``, a 5xx one on ``hmacguard``
    itself: turning the first down (a scanner's flood) keeps store outages in the log."""
    caplog.set_level(logging.DEBUG, logger="hmacguard")
    unsigned = http_scope("GET", "/t")
    outage = protect(nonce_store=RaisingStore(ConnectionError("down")))
    signed = sign("GET", "/t")
    assert (await drive(outage.middleware, unsigned)).status_code == 401
    async with outage.client() as client:
        assert (await client.get("/t", headers=signed)).status_code == 503
    logged = [
        (r.name, r.levelno, r.hmacguard_reason)
        for r in caplog.records
        if r.name.startswith("hmacguard")
    ]
    assert logged == [
        ("hmacguard.rejected", logging.WARNING, "missing_signature"),
        ("hmacguard", logging.WARNING, "nonce_store_unavailable"),
    ]
    caplog.clear()
    quiet = logging.getLogger("hmacguard.rejected")
    try:
        quiet.setLevel(logging.ERROR)
        assert (await drive(outage.middleware, http_scope("GET", "/t"))).status_code == 401
        async with outage.client() as client:
            assert (await client.get("/t", headers=sign("GET", "/t"))).status_code == 503
    finally:
        quiet.setLevel(logging.NOTSET)
    assert [(r.name, r.hmacguard_reason) for r in caplog.records] == [
        ("hmacguard", "nonce_store_unavailable")
    ]
    assert outage.echo.untouched()


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"raw_path": None}, "no raw path"),
        ({"headers": [("host", "api.example")]}, "not byte pairs"),
    ],
)
async def test_a_scope_the_server_built_wrongly_is_logged_for_the_operator(
    caplog: pytest.LogCaptureFixture, change: dict[str, Any], detail: str
) -> None:
    """A scope without a raw path, or with headers that are not byte pairs, is the
    ASGI server's fault and every request gets it: 400 for the client, but logged
    on ``hmacguard`` itself, which quieting ``hmacguard.rejected`` leaves alone."""
    caplog.set_level(logging.DEBUG, logger="hmacguard")
    protected = protect()
    scope, messages = signed_scope("GET", "/t")
    for name, value in change.items():
        if value is None:
            del scope[name]
        else:
            scope[name] = value
    exchange = await drive(protected.middleware, scope, messages)
    assert (exchange.status_code, problem(exchange)["reason"]) == (400, "malformed_request")
    (record,) = [r for r in caplog.records if r.name.startswith("hmacguard")]
    assert (record.name, record.levelno) == ("hmacguard", logging.WARNING)
    assert detail in record.getMessage()
    assert protected.echo.untouched()


async def test_starlette_middleware_stack() -> None:
    """SignatureMiddleware works in Starlette(middleware=[Middleware(...)])."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.middleware import Middleware  # noqa: PLC0415
    from starlette.responses import PlainTextResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.state.signature.key_id)

    clock = FakeClock()
    app = Starlette(
        routes=[Route("/t", hello)],
        middleware=[
            Middleware(
                SignatureMiddleware,
                keys=KEYS,
                clock=clock,
                nonce_store=MemoryNonceStore(clock=clock),
            )
        ],
    )
    async with asgi_client(app) as client:
        ok = await client.get("/t", headers=sign("GET", "/t"))
        unsigned = await client.get("/t")
    assert (ok.status_code, ok.text) == (200, "client-1")
    assert unsigned.status_code == 401


# -- trailers --------------------------------------------------------------------------


async def test_threat_M4_request_announcing_trailers_is_refused() -> None:
    """A request with a Trailer header is 400 malformed_request: trailer fields go unverified."""
    protected = protect()
    scope, messages = signed_scope("POST", "/t", BODY, JSON)
    scope["headers"].append((b"trailer", b"Signature"))
    exchange = await drive(protected.middleware, scope, messages)
    assert (exchange.status_code, problem(exchange)["reason"]) == (400, "malformed_request")
    assert exchange.receive_calls == 0
    assert protected.echo.untouched()


async def test_threat_C9_fields_appended_while_the_body_is_read_are_refused() -> None:
    """Fields that appear while the body is read (httptools trailers) are 400, app untouched."""
    protected = protect()
    scope, messages = signed_scope("POST", "/t", BODY, JSON)

    async def late_trailer() -> AsyncIterator[dict[str, Any]]:
        for message in messages:
            if not message.get("more_body"):
                # What uvicorn's httptools protocol does with a request trailer.
                scope["headers"].append((b"x-acct", b"evil"))
            yield message

    exchange = await drive(protected.middleware, scope, late_trailer())
    assert (exchange.status_code, problem(exchange)["reason"]) == (400, "malformed_request")
    assert protected.echo.untouched()
    assert len(protected.store) == 0


@pytest.mark.parametrize(
    "trailer", [(b"x-http-method-override", b"DELETE"), (b"content-type", b"text/plain")]
)
async def test_threat_C9_fields_appended_while_an_async_key_is_looked_up_are_refused(
    trailer: tuple[bytes, bytes],
) -> None:
    """httptools appends a request trailer to the scope's header list whenever it
    arrives, even while an async key resolver is awaited, before the body is read.
    Such a field was counted as a header and reached the app unverified (an uncovered
    method override, a second line of a covered field): it is 400, the app untouched.
    (Found by a differential run of h11 against httptools with a 0.3 s resolver.)"""
    scope, messages = signed_scope("POST", "/t", BODY, JSON)

    async def resolve(key_id: str) -> HMACKey | None:
        scope["headers"].append(trailer)  # the trailer lands while the key is fetched
        await asyncio.sleep(0)
        return KEY if key_id == KEY.key_id else None

    protected = protect(keys=resolve)
    exchange = await drive(protected.middleware, scope, messages)
    assert (exchange.status_code, problem(exchange)["reason"]) == (400, "malformed_request")
    assert protected.echo.untouched()
    assert len(protected.store) == 0


# -- body timeout ----------------------------------------------------------------------


async def _stalled_after(messages: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Hand out ``messages``, then wait forever: a client that stops sending its body."""
    for message in messages:
        yield message
    await asyncio.Event().wait()
    yield {"type": "http.disconnect"}  # pragma: no cover  (never reached)


async def test_threat_B8_a_request_announcing_no_body_is_timed_too() -> None:
    """``Content-Length: 0`` announces no body, but over HTTP/2 the request ends only
    when the client ends its stream, and hypercorn waits for that without a limit. Such
    a request held open was never timed: it is cut off after ``body_timeout`` like any
    other, 408, the app untouched and the nonce unused. (Found by a helper probing
    hypercorn over HTTP/2: held past ``nonce_ttl``, it replayed an accepted copy.)"""
    protected = protect(body_timeout=0.05)
    scope, _ = signed_scope("DELETE", "/t/7", nonce="held-open")
    scope["headers"].append((b"content-length", b"0"))
    exchange = await drive(protected.middleware, scope, _stalled_after([]), timeout=2.0)
    assert (exchange.status_code, problem(exchange)["reason"]) == (408, "body_timeout")
    assert protected.echo.untouched()
    assert len(protected.store) == 0


@pytest.mark.parametrize(("read_for", "accepted"), [(1.0, True), (2.5, False)])
async def test_threat_R3_a_request_must_still_be_fresh_when_its_nonce_is_spent(
    read_for: float, accepted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """nonce_ttl counts from the time a request is checked, and covers its window
    (max_age) from there. A copy checked in time but held back (a trickled body, an
    HTTP/2 stream left open, an unbounded ``body_timeout``) would be spent after the
    first copy's nonce was forgotten; so the window is checked again when the nonce is
    spent. Checked 1 s before max_age, read in 1 s: accepted; read in 2.5 s: refused,
    told as a bad MAC, logged as expired, the app untouched and nothing stored."""
    clock = FakeClock(NOW + 299)  # max_age is 300 s
    protected = protect(clock=clock, body_timeout=None)
    scope, messages = signed_scope("POST", "/t", BODY, JSON)  # created = NOW

    async def slow_body() -> AsyncIterator[dict[str, Any]]:
        clock.advance(read_for)  # the body took this long to arrive
        for message in messages:
            yield message

    exchange = await drive(protected.middleware, scope, slow_body())
    if accepted:
        assert exchange.status_code == 200
        assert len(protected.store) == 1
        return
    assert (exchange.status_code, problem(exchange)["reason"]) == (401, "invalid_signature")
    assert logged_reasons(caplog) == ["expired"]
    assert protected.echo.untouched()
    assert len(protected.store) == 0


async def test_threat_B8_stalled_body_is_408_and_the_nonce_stays_unused() -> None:
    """A body that stops arriving is cut off after body_timeout: 408, app and store untouched."""
    protected = protect(body_timeout=0.05)
    scope, messages = signed_scope("POST", "/t", BODY, JSON, nonce="slow-body")
    first = body_messages(BODY, 4)[:1]
    exchange = await drive(protected.middleware, scope, _stalled_after(first), timeout=2.0)
    assert (exchange.status_code, problem(exchange)["reason"]) == (408, "body_timeout")
    assert protected.echo.untouched()
    assert len(protected.store) == 0
    scope, messages = signed_scope("POST", "/t", BODY, JSON, nonce="slow-body")
    assert (await drive(protected.middleware, scope, messages)).status_code == 200


async def test_threat_B8_trickled_body_is_cut_off_at_body_timeout() -> None:
    """A body that keeps arriving, a byte every 20 ms, is cut off body_timeout after the
    read began, not kept alive by each byte (an idle timeout would let it run forever):
    408, app and store untouched."""
    protected = protect(body_timeout=0.1)
    body = b'{"note": "' + b"x" * 100 + b'"}'
    scope, _ = signed_scope("POST", "/t", body, JSON, nonce="trickled")

    async def trickle() -> AsyncIterator[dict[str, Any]]:
        for i in range(len(body)):  # 20 ms a byte: over 2 s in all
            await asyncio.sleep(0.02)
            yield {"type": "http.request", "body": body[i : i + 1], "more_body": True}
        yield {"type": "http.request", "body": b"", "more_body": False}

    loop = asyncio.get_running_loop()
    started = loop.time()
    exchange = await drive(protected.middleware, scope, trickle(), timeout=5.0)
    took = loop.time() - started
    assert (exchange.status_code, problem(exchange)["reason"]) == (408, "body_timeout")
    assert took < 0.1 + 1.0, f"cut off after {took:.2f} s"  # slack for a busy machine
    assert len(body) * 0.02 > 0.1 + 1.0  # the whole trickle would have taken longer
    assert protected.echo.untouched()
    assert len(protected.store) == 0


async def test_body_in_time_is_not_affected_by_the_timer() -> None:
    """A chunked body that completes within body_timeout verifies, and no cancellation leaks."""
    protected = protect(body_timeout=0.5)
    scope, _ = signed_scope("POST", "/t", BODY, JSON)
    exchange = await drive(protected.middleware, scope, body_messages(BODY, 3))
    assert exchange.status_code == 200
    await asyncio.sleep(0.6)  # the timer was cancelled: nothing fires later
    current = asyncio.current_task()
    assert current is not None
    assert not current.cancelled()


async def test_a_body_that_never_starts_is_408_too() -> None:
    """The very first receive() stalls (no byte of the body ever arrives): 408, app and
    store untouched. The read is watched from the moment receive() has to wait."""
    protected = protect(body_timeout=0.05)
    scope, _ = signed_scope("POST", "/t", BODY, JSON)
    reached: list[str] = []

    async def stalled() -> AsyncIterator[dict[str, Any]]:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            reached.append("cancelled")  # the timeout reached the pending receive()
            raise
        yield {"type": "http.disconnect"}  # pragma: no cover  (never reached)

    exchange = await drive(protected.middleware, scope, stalled(), timeout=2.0)
    assert (exchange.status_code, problem(exchange)["reason"]) == (408, "body_timeout")
    assert reached == ["cancelled"]
    assert protected.echo.untouched()
    assert len(protected.store) == 0


class _CountingDeadlines:
    """Wraps a middleware's Deadlines, counting the reads it is asked to watch."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.watched = 0
        self.finished = 0

    def watch(self, loop: Any, task: Any) -> Any:
        self.watched += 1
        return self.inner.watch(loop, task)

    def finish(self, watch: Any) -> None:
        self.finished += 1
        self.inner.finish(watch)


async def _late(messages: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Hand out ``messages``, each only after the event loop has run once (a slow client)."""
    for message in messages:
        await asyncio.sleep(0)
        yield message


@pytest.mark.parametrize(
    ("arrival", "watched"),
    [("at once", 0), ("in chunks, at once", 1), ("late", 1), ("late, in chunks", 1)],
)
async def test_only_a_body_read_that_waits_is_watched(arrival: str, watched: int) -> None:
    """A body already complete when the app is called needs no timer; one that has to be
    waited for (or comes in several messages) is watched, and the watch is finished."""
    protected = protect(body_timeout=5.0)
    counting = _CountingDeadlines(protected.middleware._deadlines)
    protected.middleware._deadlines = counting  # type: ignore[assignment]
    scope, _ = signed_scope("POST", "/t", BODY, JSON)
    chunks = body_messages(BODY, 10) if "chunks" in arrival else body_messages(BODY)
    messages = _late(chunks) if arrival.startswith("late") else chunks
    exchange = await drive(protected.middleware, scope, messages)
    assert exchange.status_code == 200
    assert [seen["sha256"] for seen in protected.echo.seen] == [hashlib.sha256(BODY).hexdigest()]
    assert (counting.watched, counting.finished) == (watched, watched)


async def test_a_request_closed_while_its_body_is_awaited_closes_the_read() -> None:
    """Closing the middleware's coroutine while receive() waits (a server shutting the
    request down) closes the pending receive() too, as a plain await would, and ends the
    watch. (Stepped by hand inside the running loop: the read is watched.)"""
    closed: list[bool] = []

    @types.coroutine
    def wait_forever() -> Generator[None, None, None]:
        yield  # suspends, like a receive() waiting for the network

    async def receive() -> Message:
        try:
            await wait_forever()
            return {"type": "http.disconnect"}  # pragma: no cover  (never resumed)
        finally:
            closed.append(True)

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        raise AssertionError("the app must not be called")

    middleware = SignatureMiddleware(
        app, keys={"client-1": SECRET}, body_timeout=5.0, clock=lambda: NOW
    )
    scope, _ = signed_scope("POST", "/t", BODY, JSON)

    async def send(message: Message) -> None:  # pragma: no cover
        raise AssertionError("nothing is sent")

    counting = _CountingDeadlines(middleware._deadlines)
    middleware._deadlines = counting  # type: ignore[assignment]
    coroutine = middleware(scope, receive, send)
    coroutine.send(None)  # runs to the body read, which suspends
    assert (closed, counting.watched, counting.finished) == ([], 1, 0)
    coroutine.close()
    assert (closed, counting.watched, counting.finished) == ([True], 1, 1)


@pytest.mark.parametrize("suspends", [False, True], ids=["at once", "suspending"])
def test_outside_an_event_loop_the_body_is_read_unwatched(suspends: bool) -> None:
    """Outside asyncio (trio, or a coroutine driven by hand) there is no timer to set:
    a body already there is read at once, and a receive() that suspends is resumed
    as a plain await would resume it; the request is verified as usual."""
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    middleware = SignatureMiddleware(
        app, keys={"client-1": SECRET}, body_timeout=0.01, clock=lambda: NOW
    )
    scope, messages = signed_scope("POST", "/t", BODY, JSON)
    sent: list[Message] = []

    @types.coroutine
    def network() -> Generator[str, Message, Message]:
        return (yield "waiting for the network")

    async def receive() -> Message:
        return await network() if suspends else messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    coroutine = middleware(scope, receive, send)
    arrived = None
    if suspends:
        assert coroutine.send(None) == "waiting for the network"  # passed out, as await does
        arrived = messages[0]
    with pytest.raises(StopIteration):
        coroutine.send(arrived)  # nothing else suspends: it runs to the end
    assert seen == [BODY]
    assert sent[0]["status"] == 200


@pytest.mark.parametrize(("arrival", "lookups"), [("at once", 0), ("late", 1)])
async def test_the_running_loop_is_looked_up_only_for_a_read_that_waits(
    arrival: str, lookups: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body that has arrived needs no timer, so the running loop is not looked up
    (on Python 3.11 each lookup is a getpid() system call); a read that waits is."""
    calls: list[None] = []
    looked_up = hmacguard._middleware._running_loop

    def counting() -> asyncio.AbstractEventLoop | None:
        calls.append(None)
        return looked_up()

    monkeypatch.setattr(hmacguard._middleware, "_running_loop", counting)
    protected = protect(body_timeout=5.0)
    scope, _ = signed_scope("POST", "/t", BODY, JSON)
    messages = body_messages(BODY)
    exchange = await drive(
        protected.middleware, scope, _late(messages) if arrival == "late" else messages
    )
    assert exchange.status_code == 200
    assert len(calls) == lookups


@pytest.mark.parametrize("option", ["body_timeout", "lookup_timeout"])
@pytest.mark.parametrize("value", [0, -1, "30", True, math.inf, math.nan])
def test_timeouts_are_validated(option: str, value: object) -> None:
    """A timeout must be a positive, finite number of seconds or None, named in the error."""
    with pytest.raises(ValueError, match=option):
        SignatureMiddleware(_noop_app, keys={"client-1": SECRET}, **{option: value})


@pytest.mark.parametrize("option", ["body_timeout", "lookup_timeout"])
@pytest.mark.parametrize("value", [None, 0.25, 2])
def test_timeouts_accept_seconds_or_none(option: str, value: float | None) -> None:
    """None (no limit), a float and an int are all accepted."""
    SignatureMiddleware(_noop_app, keys={"client-1": SECRET}, **{option: value})


async def _noop_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that is never called in the configuration tests."""


# -- the fast route and the general path judge the same URL ----------------------------

ODD_HOSTS = ["api.example", "API.Example", "api.example:80", "api.example:8080", "[::1]:8080"]
ODD_HOSTS += ["u@api.example", "a/b", "a?b", "a#b", "api.example."]
ODD_TARGETS = [b"/t", b"/", b"/a%2Fb/../c", b"/t?x", b"/t#frag", b"*", b"/%7e/./x;p=1"]
ODD_QUERIES = [b"", b"a=1&b=%20", b"a#b", b"?"]


@pytest.mark.parametrize("host", ODD_HOSTS)
@pytest.mark.parametrize("raw_path", ODD_TARGETS, ids=repr)
@pytest.mark.parametrize("query", ODD_QUERIES, ids=repr)
async def test_middleware_agrees_with_verify_on_the_url_it_rebuilds(
    host: str, raw_path: bytes, query: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Odd hosts, raw paths and queries: the middleware (which hands the verifier the
    URL in parts) accepts or refuses exactly as ``Verifier.verify`` does on the URL,
    except where the parts would not survive being put into a URL and split again: a
    Host that is not ``host[:port]``, a target that is not an absolute path, a "#" in
    the query. Those are refused (400) before the URL is ever made: the core reads a
    URL as URLs are read, but the server's parts are not a URL."""
    caplog.set_level(logging.WARNING, logger="hmacguard")
    if (
        any(char in host for char in "@/?#")
        or not raw_path.startswith(b"/")
        or any(char in raw_path for char in b"?#")
        or b"#" in query
    ):
        protected = protect()
        scope = http_scope("GET", b"/t", sign("GET", "/t"), host=host, raw_path=raw_path)
        scope["query_string"] = query
        exchange = await drive(protected.middleware, scope, body_messages(b""))
        assert exchange.status_code == 400
        assert problem(exchange)["reason"] == "malformed_request"
        assert protected.echo.untouched()
        return
    url = f"http://{host}{raw_path.decode('latin-1')}"
    if query:
        url += "?" + query.decode("latin-1")
    headers = {"content-type": "application/json"}
    signed = sign("POST", url, headers, BODY)
    expected: str
    try:
        Verifier(KEYS, clock=lambda: NOW).verify("POST", url, list(signed.items()), BODY)
        expected = "accepted"
    except VerificationError as error:
        expected = error.reason
    protected = protect()
    scope = http_scope(
        "POST",
        raw_path + (b"?" + query if query else b""),
        [*signed.items(), ("content-length", str(len(BODY)))],
        host=host,
        raw_path=raw_path,
    )
    scope["query_string"] = query
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    if expected == "accepted":
        assert protected.echo.calls == 1, exchange.body  # reached the app (it may 404)
    else:
        assert exchange.status_code in (400, 401)
        assert protected.echo.untouched()
        assert logged_reasons(caplog)[-1] == expected


# Characters that delimit URL parts, or that URLs may not hold, among plain ones.
_HOST_CHARS = "aZ09.-:[]@/?#%!$&'()*+,;=~_"
_PATH_CHARS = "a/.%?#;:@!$&'()*+,=~_"
_QUERY_CHARS = "a=&/?#%+;:@"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    host=st.one_of(
        st.sampled_from(["api.example", "API.Example:8080", "[::1]:80", "127.0.0.1:"]),
        st.text(_HOST_CHARS, max_size=10),
    ),
    raw_path=st.one_of(st.text(_PATH_CHARS, max_size=10).map("/".__add__), st.text(_PATH_CHARS)),
    query=st.text(_QUERY_CHARS, max_size=8),
)
def test_an_accepted_request_was_signed_for_the_parts_the_app_gets(
    host: str, raw_path: str, query: str
) -> None:
    """Whatever Host, raw path and query a server hands over, a request the middleware
    accepts was signed for exactly those parts: a signature over the URL they would
    spell when simply put together (what an attacker holds, or asks a client to sign)
    passes only when splitting that URL gives them back. Anything else is refused
    (400 or 401), never a 5xx, and the app is not reached."""
    url = f"http://{host}{raw_path}" + (f"?{query}" if query else "")
    try:
        signed = sign("GET", url)
    except ValueError:  # the signer refuses the URL: nothing to hold
        assume(False)
    protected = protect()
    scope = http_scope(
        "GET", b"/t", list(signed.items()), host=host, raw_path=raw_path.encode("latin-1")
    )
    scope["query_string"] = query.encode("latin-1")
    exchange = asyncio.run(drive(protected.middleware, scope, body_messages(b"")))
    event(f"answered {exchange.status_code}")
    if protected.echo.calls == 0:
        assert exchange.status_code in (400, 401), exchange.body
        return
    _, authority, path, signed_query = split_url(url)
    assert authority == normalise_authority(host, "http")
    assert path == raw_path
    assert (signed_query or "") == query


def test_lookup_timeout_watches_only_stores_hmacguard_did_not_write() -> None:
    """MemoryNonceStore never waits and RedisNonceStore times out its own calls, so
    lookup_timeout is not applied to them; any other store, a subclass too, is watched."""
    from hmacguard import RedisNonceStore  # noqa: PLC0415  (imports its module, as a user does)
    from hmacguard._middleware import _bounds_itself  # noqa: PLC0415

    assert _bounds_itself(MemoryNonceStore())
    assert _bounds_itself(RedisNonceStore("redis://127.0.0.1:1/0"))
    assert _bounds_itself(None)
    assert not _bounds_itself(AnswerStore(True))

    class Overriding(MemoryNonceStore):
        async def add(self, key: str, ttl: float) -> bool:
            return await super().add(key, ttl)

    assert not _bounds_itself(Overriding())  # its add is not ours


def _connection(exchange: Any) -> list[bytes]:
    return [value for name, value in exchange.header_list if name == b"connection"]


@pytest.mark.parametrize(
    ("method", "headers", "body", "closes"),
    [
        ("POST", {}, BODY, True),  # unsigned, body unread: 401
        ("POST", {"transfer-encoding": "chunked"}, BODY, True),
        ("GET", {}, b"", False),  # nothing announced: the connection is clean
        ("POST", {"content-length": "0"}, b"", False),
    ],
)
async def test_a_refusal_of_a_request_announcing_a_body_closes_the_connection(
    method: str, headers: dict[str, str], body: bytes, closes: bool
) -> None:
    """Refused before its body is read, an HTTP/1 request that announced one gets
    Connection: close (the server then closes rather than read and drop the rest)."""
    protected = protect()
    exchange = await call(protected.middleware, method, "/t", headers, body)
    assert exchange.status_code == 401
    assert _connection(exchange) == ([b"close"] if closes else [])
    assert protected.echo.untouched()


async def test_every_refusal_with_a_body_closes_the_same_way_replays_included() -> None:
    """A replay is refused after its body was read, a bad MAC before: both say
    Connection: close, so the header tells them apart no more than the body does."""
    protected = protect()
    genuine = sign("POST", "/t", JSON, BODY)
    assert (await call(protected.middleware, "POST", "/t", genuine, BODY)).status_code == 200
    replayed = await call(protected.middleware, "POST", "/t", genuine, BODY)
    tampered = await call(protected.middleware, "POST", "/t", genuine, BODY + b" ")
    forged = await call(protected.middleware, "POST", "/t", sign("POST", "/t", JSON, b"x"), BODY)
    for refused in (replayed, tampered, forged):
        assert refused.status_code == 401
        assert _connection(refused) == [b"close"]


async def test_no_connection_field_on_http_2() -> None:
    """HTTP/2 has no Connection field (RFC 9113 §8.2.2): none is added there."""
    protected = protect()
    scope = http_scope("POST", "/t", [("content-length", str(len(BODY)))])
    scope["http_version"] = "2"
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    assert exchange.status_code == 401
    assert _connection(exchange) == []


async def test_on_error_answer_gets_connection_close_in_place_of_its_own() -> None:
    """An on_error handler's answer to a request announcing a body says
    Connection: close, replacing a keep-alive it set itself."""

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-length", b"0"), (b"connection", b"keep-alive")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    protected = protect(on_error=lambda scope, error: handler)
    exchange = await call(protected.middleware, "POST", "/t", {}, BODY)
    assert exchange.status_code == 403
    assert _connection(exchange) == [b"close"]


async def test_query_param_of_a_query_sent_as_raw_utf8_verifies() -> None:
    """A client that sends "café" in the query as raw UTF-8 bytes (Go sends a RawQuery
    as it is) and covers @query-param: the server reads the same value as from the
    percent-encoded form (RFC 9421 §2.2.8 parses bytes), so the signature verifies."""
    protected = protect(required_components=["@method", "@authority", "@path"])
    components = ["@method", "@authority", "@path", '"@query-param";name="q"']
    headers = sign("GET", "/t?q=caf%C3%A9", components=components)
    scope = http_scope("GET", "/t?q=caf\u00e9".encode(), headers)
    assert scope["query_string"] == b"q=caf\xc3\xa9"
    exchange = await drive(protected.middleware, scope, body_messages(b""))
    assert exchange.status_code == 200
    assert protected.echo.count == 1


async def test_a_long_unknown_key_id_is_logged_masked(caplog: pytest.LogCaptureFixture) -> None:
    """A client that swapped key id and secret sends its secret as keyid: the rejection
    log gives its length and a short hash, never the text; a static key's long id is
    logged as it is."""
    secret_text = base64.b64encode(b"s" * 32).decode()
    long_id = "k" * 50
    protected = protect(keys={**KEYS, long_id: b"L" * 32})
    swapped = sign("GET", "/t", key=HMACKey(secret_text, b"x" * 32))
    assert (await call(protected.middleware, "GET", "/t", swapped)).status_code == 401
    wrong = sign("GET", "/t", key=HMACKey(long_id, b"W" * 32))
    assert (await call(protected.middleware, "GET", "/t", wrong)).status_code == 401
    assert secret_text not in caplog.text
    digest = hashlib.sha256(secret_text.encode()).hexdigest()[:16]
    assert f"key_id='<44 characters, sha256 {digest}>'" in caplog.text
    assert f"key_id='{long_id}'" in caplog.text
    assert all(
        getattr(record, "hmacguard_key_id", None) != secret_text for record in caplog.records
    )


async def test_a_long_unknown_key_id_of_a_second_signature_is_masked_in_a_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replay refused for another signature in the request names that signature's
    key id in its detail: a long unknown one (a secret sent as keyid?) is masked there
    too, as in ``key_id=``."""
    caplog.set_level(logging.WARNING, logger="hmacguard")
    secret_text = base64.b64encode(b"t" * 32).decode()
    protected = protect()

    def scope(nonce: str) -> dict[str, Any]:
        headers = sign("GET", "/t", nonce=nonce)
        # A second signature, unverifiable for now (its key is not known): its pair
        # is spent with the winner's (THREATS M1), and the second request reuses it.
        headers["Signature-Input"] += (
            f', sig2=("@method" "@path");created={int(NOW)};keyid="{secret_text}";nonce="n2"'
        )
        headers["Signature"] += ", sig2=:AAAA:"
        return http_scope("GET", "/t", list(headers.items()))

    first = await drive(protected.middleware, scope("first"), body_messages(b""))
    assert first.status_code == 200
    second = await drive(protected.middleware, scope("second"), body_messages(b""))
    assert second.status_code == 401
    assert logged_reasons(caplog) == ["replayed"]
    assert secret_text not in caplog.text
    digest = hashlib.sha256(secret_text.encode()).hexdigest()[:16]
    assert f"(key id '<44 characters, sha256 {digest}>') was already accepted" in caplog.text


async def test_a_key_error_not_about_the_key_id_is_logged_and_stays_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resolver whose own lookup fails (os.environ["VAULT_TOKEN"]) raises a KeyError that
    is not about the key id: still 401 like any unknown key (K2: a 503 would tell known
    ids apart), but the log says what the KeyError named."""
    settings: dict[str, str] = {}

    def resolver(key_id: str) -> HMACKey:
        return HMACKey(key_id, settings["VAULT_TOKEN"])

    protected = protect(keys=resolver)
    exchange = await call(protected.middleware, "GET", "/t", sign("GET", "/t"))
    assert exchange.status_code == 401
    assert "the key resolver raised KeyError('VAULT_TOKEN'), not KeyError(key_id)" in caplog.text
    caplog.clear()

    def keyed(key_id: str) -> HMACKey:
        return {"other": HMACKey("other", SECRET)}[key_id]

    protected = protect(keys=keyed)
    assert (await call(protected.middleware, "GET", "/t", sign("GET", "/t"))).status_code == 401
    assert "not KeyError(key_id)" not in caplog.text  # keys[key_id]: plainly unknown


async def test_a_failing_resolver_is_logged_with_its_traceback_and_key_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A resolver that raises: 503 key_lookup_failed, and the log shows its exception
    (message and traceback) and the key id asked for, to find what broke."""

    def resolver(key_id: str) -> HMACKey:
        raise RuntimeError("vault answered 403")

    protected = protect(keys=resolver)
    exchange = await call(protected.middleware, "GET", "/t", sign("GET", "/t"))
    assert exchange.status_code == 503
    assert "key_lookup_failed: key resolver raised RuntimeError" in caplog.text
    assert "key_id='client-1'" in caplog.text
    assert "RuntimeError: vault answered 403" in caplog.text
    assert "Traceback" in caplog.text


# -- under trio ----------------------------------------------------------------------


def _under_trio(
    middleware: SignatureMiddleware, scope: dict[str, Any], receive: Any
) -> tuple[list[Message], float]:
    """Run one request through ``middleware`` under trio; the messages sent, and the
    seconds it took (a hang fails after 5 s)."""
    trio = pytest.importorskip("trio")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> float:
        started = trio.current_time()
        with trio.fail_after(5):
            await middleware(scope, receive, send)
        return float(trio.current_time() - started)

    return sent, trio.run(main)


def test_under_trio_a_stalled_body_is_answered_408() -> None:
    """body_timeout holds under trio too (THREATS B8): half a body, then nothing, is
    answered 408 after body_timeout, and the app is not called."""
    trio = pytest.importorskip("trio")
    protected = protect(body_timeout=0.2)
    scope, _ = signed_scope("POST", "/t", BODY, JSON)
    first = {"type": "http.request", "body": BODY[:5], "more_body": True}
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            return first
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    sent, seconds = _under_trio(protected.middleware, scope, receive)
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["reason"] == "body_timeout"
    assert 0.2 <= seconds < 2
    assert protected.echo.untouched()


def test_under_trio_a_body_that_arrives_in_time_is_verified() -> None:
    """A body that arrives late, but within body_timeout, passes through as under asyncio."""
    trio = pytest.importorskip("trio")
    protected = protect(body_timeout=2.0)
    scope, messages = signed_scope("POST", "/t", BODY, JSON)

    async def receive() -> Message:
        await trio.sleep(0.05)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent, _ = _under_trio(protected.middleware, scope, receive)
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert protected.echo.count == 1


def test_under_trio_asyncio_a_stalled_body_is_answered_408(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under trio with a trio-asyncio loop open beside it, an asyncio loop is running
    but this task is not an asyncio task: the trio cancel scope bounds the read (it
    once went unbounded)."""
    trio = pytest.importorskip("trio")
    beside = object()  # the loop trio-asyncio would report, where this task is unknown
    monkeypatch.setattr(hmacguard._middleware, "_running_loop", lambda: beside)
    protected = protect(body_timeout=0.2)
    scope, _ = signed_scope("POST", "/t", BODY, JSON)
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": BODY[:5], "more_body": True}
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    sent, seconds = _under_trio(protected.middleware, scope, receive)
    assert sent[0]["status"] == 408
    assert 0.2 <= seconds < 2
    assert protected.echo.untouched()


class _TrioHangingStore:
    """A nonce store of one's own that never answers (under trio)."""

    async def add(self, key: str, ttl: float) -> bool:
        import trio  # noqa: PLC0415  (only the trio tests use it)

        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


def test_under_trio_a_hanging_store_is_cut_off_at_lookup_timeout() -> None:
    """lookup_timeout holds under trio: a store that never answers is answered 503
    with Retry-After after lookup_timeout, and the app is not called."""
    pytest.importorskip("trio")
    protected = protect(nonce_store=_TrioHangingStore(), lookup_timeout=0.2)
    scope, messages = signed_scope("POST", "/t", BODY, JSON)

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent, seconds = _under_trio(protected.middleware, scope, receive)
    assert sent[0]["status"] == 503
    assert dict(sent[0]["headers"])[b"retry-after"] == b"1"
    assert json.loads(sent[1]["body"])["reason"] == "nonce_store_unavailable"
    assert 0.2 <= seconds < 2
    assert protected.echo.untouched()


# -- a second SignatureMiddleware on the way ---------------------------------------------


class _AsyncMemoryStore:
    """A store of one's own (awaited, not hmacguard's memory store) over a memory store."""

    def __init__(self, store: MemoryNonceStore) -> None:
        self.store = store

    async def add(self, key: str, ttl: float) -> bool:
        return self.store.add_sync(key, ttl)

    async def discard(self, key: str) -> None:
        self.store.discard_sync(key)


def _nested(outer_store: Any, inner_store: Any) -> tuple[Any, Any]:
    """A Starlette app behind SignatureMiddleware that mounts, at /v2, an EchoApp
    behind a SignatureMiddleware of its own: the app and the inner echo app."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.middleware import Middleware  # noqa: PLC0415
    from starlette.routing import Mount  # noqa: PLC0415

    clock = FakeClock(NOW)
    inner = protect(clock=clock, nonce_store=inner_store)
    outer = Starlette(
        routes=[Mount("/v2", app=inner.middleware)],
        middleware=[
            Middleware(
                SignatureMiddleware,
                keys={KEY.key_id: SECRET},
                nonce_store=outer_store,
                clock=clock,
            )
        ],
    )
    return outer, inner


@pytest.mark.parametrize("kind", ["memory", "async"])
async def test_a_mounted_app_protected_again_accepts_once_with_a_shared_store(kind: str) -> None:
    """A mounted sub-app behind its own SignatureMiddleware, both sharing one store (as
    one RedisNonceStore would in production): the outer one spends the nonce, the
    inner one finds it spent by this very request (not a replay) and lets it through;
    the same request sent again is still refused."""
    clock = FakeClock(NOW)
    memory = MemoryNonceStore(clock=clock)
    store = memory if kind == "memory" else _AsyncMemoryStore(memory)
    app, inner = _nested(store, store)
    headers = sign("POST", "/v2/t", JSON, BODY)
    async with asgi_client(app) as client:
        first = await client.post("/v2/t", headers=headers, content=BODY)
        again = await client.post("/v2/t", headers=headers, content=BODY)
    assert first.status_code == 200, first.text
    assert first.json()["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert again.status_code == 401
    assert inner.echo.count == 1
    assert len(memory) == 1


async def test_a_mounted_app_with_a_store_of_its_own_records_the_nonce_too() -> None:
    """With two stores, each records the pair: a replay is refused by the outer one."""
    app, inner = _nested(MemoryNonceStore(), MemoryNonceStore())
    headers = sign("POST", "/v2/t", JSON, BODY)
    async with asgi_client(app) as client:
        assert (await client.post("/v2/t", headers=headers, content=BODY)).status_code == 200
        assert (await client.post("/v2/t", headers=headers, content=BODY)).status_code == 401
    assert inner.echo.count == 1
    assert len(inner.store) == 1


async def test_a_pair_spent_by_another_request_is_still_a_replay_inside() -> None:
    """The mark is per request: a pair spent before, by another request, is refused by
    an inner middleware reached directly (an outer one that exempts its path)."""
    clock = FakeClock(NOW)
    store = MemoryNonceStore(clock=clock)
    inner = protect(clock=clock, nonce_store=store)
    scope, messages = signed_scope("POST", "/t", BODY, JSON)
    assert (await drive(inner.middleware, dict(scope), list(messages))).status_code == 200
    replay = await drive(inner.middleware, dict(scope), list(messages))
    assert replay.status_code == 401
    assert inner.echo.count == 1


async def test_a_pair_spent_in_another_store_does_not_excuse_a_replay() -> None:
    """Two workers, each an outer middleware on its own memory store, in front of one
    protected sub-app whose store they share (one Redis): a request accepted through
    the first is refused through the second. The second outer one has not seen it; the
    inner one has, and the mark the second outer one left names another store."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.routing import Mount  # noqa: PLC0415

    clock = FakeClock(NOW)
    inner = protect(clock=clock, nonce_store=MemoryNonceStore(clock=clock))

    def worker() -> SignatureMiddleware:
        return SignatureMiddleware(
            Starlette(routes=[Mount("/v2", app=inner.middleware)]),
            keys={KEY.key_id: SECRET},
            nonce_store=MemoryNonceStore(clock=clock),
            clock=clock,
        )

    first, second = worker(), worker()
    headers = sign("POST", "/v2/t", JSON, BODY)
    async with asgi_client(first) as client:
        assert (await client.post("/v2/t", headers=headers, content=BODY)).status_code == 200
    async with asgi_client(second) as client:
        replay = await client.post("/v2/t", headers=headers, content=BODY)
    assert replay.status_code == 401
    assert inner.echo.count == 1


async def test_a_shorter_record_outside_does_not_excuse_a_later_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On one store, an outer middleware whose nonce_ttl is shorter than the inner one's
    would let the request be sent again to the inner app alone once its record
    expired: the inner one refuses it, and says why."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.routing import Mount  # noqa: PLC0415

    clock = FakeClock(NOW)
    store = MemoryNonceStore(clock=clock)
    inner = protect(clock=clock, nonce_store=store)  # max_age 300
    outer = SignatureMiddleware(
        Starlette(routes=[Mount("/v2", app=inner.middleware)]),
        keys={KEY.key_id: SECRET},
        nonce_store=store,
        clock=clock,
        max_age=60,
    )
    headers = sign("POST", "/v2/t", JSON, BODY)
    async with asgi_client(outer) as client:
        response = await client.post("/v2/t", headers=headers, content=BODY)
    assert response.status_code == 401
    assert inner.echo.untouched()
    assert "less than this one's" in caplog.text
