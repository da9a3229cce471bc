"""THREATS.md against the server: sections 1, 3 (D4), 4 (K2), 5, 6 and 10, in process.

Each test is named ``test_threat_<ID>_<what>`` after an entry of /work/shared/THREATS.md.
Requests go through :class:`hmacguard.SignatureMiddleware` in front of the echo app of
``tests/asgi_helpers.py``, either as hand-built ASGI scopes (:func:`call`, for what HTTP
clients normalise away: raw paths, lowercase methods, mixed-case or repeated headers) or
through ``httpx.ASGITransport`` (the concurrency race). The verifier and the memory nonce
store share one fake clock. Every REJECT also asserts that the echo app was not reached.

Readings of the catalogue:

- REJECT is a 401; per MIDDLEWARE.md the problem body is identical *per client reason*,
  not one body for every failure as E1's example suggests. An unknown key, a bad MAC,
  an expired or future-dated signature and a replay share ``invalid_signature`` byte for
  byte (K2, issue 8); the precise reason is in the ``hmacguard`` log, which these tests
  read with ``caplog`` (:func:`asgi_helpers.logged_reasons`).
- R4 (two processes), R7/R8 (Redis) and the RSS figures of R6/B4 belong to the uvicorn
  and Redis modules; R5 here is the single-process memory-store half.
- U2 "raw non-ASCII bytes in the query" is a 400 ``malformed_signature`` (the covered
  ``@query`` cannot be put in a signature base).

Needs the wire (tests/test_uvicorn.py):

- B3: ``Content-Length`` together with ``Transfer-Encoding`` (smuggling) must be a 400 from
  h11 and httptools before the app; ASGI never shows both framings' effect. Here: a
  ``Transfer-Encoding`` request counts as having a body (``content-digest`` required).
- B4: the RSS growth of a 50 MB chunked upload (here: bytes read <= limit + one chunk).
- B8: a body trickled at 1 byte/s cut off by a server timeout; 500 slow clients not
  delaying a normal request measured in milliseconds (here: 500 stalled bodies do not
  block a signed request, and their nonces stay unused).
- B9: no ``100 Continue`` is sent for a request rejected in the header phase (here:
  ``receive()`` is never called).
- U4: a 10 KB Host through h11/httptools (431/400 from the server first); here a 10 KB
  Host in the scope is a fast 400.
- E2: duplicate Host and obs-fold as the servers parse them.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import hmacguard
from asgi_helpers import (
    HOST,
    KEY,
    KEY2,
    KEYS,
    NOW,
    ORIGIN,
    SECRET,
    SECRET2,
    EchoApp,
    Exchange,
    FakeClock,
    Protected,
    asgi_client,
    body_messages,
    call,
    drive,
    forge,
    http_scope,
    logged_reasons,
    problem,
    protect,
    sign,
    signed_scope,
    websocket_scope,
)
from hmacguard import HMACKey, MemoryNonceStore, Signer, make_content_digest
from hmacguard.webhooks import StandardWebhooks

BODY = b'{"amount": 100, "to": "alice"}'
JSON = {"content-type": "application/json"}
BASE4 = '"@method" "@authority" "@path" "@query"'
WRONG_SECRET = HMACKey("client-1", b"z" * 32)
STRANGER = HMACKey("nobody", SECRET)


def params(nonce: str = "n-1", *, created: int = NOW, keyid: str = "client-1") -> str:
    """Signature parameters in the order the Signer writes them."""
    return f';created={created};keyid="{keyid}";nonce="{nonce}"'


def assert_rejected(
    exchange: Exchange, protected: Protected, reason: str, status: int = 401, before: int = 0
) -> None:
    """The request was refused with ``status``/``reason`` and the app did not move."""
    assert exchange.status_code == status, exchange.body
    assert problem(exchange)["reason"] == reason
    assert protected.echo.untouched(before)


def assert_hidden(
    exchange: Exchange,
    protected: Protected,
    caplog: pytest.LogCaptureFixture,
    logged: str,
    before: int = 0,
) -> None:
    """Refused as ``invalid_signature`` to the client (K2/E1), with ``logged`` as the logged cause.

    An unknown key, a stale or future signature and a replay answer exactly like a bad
    MAC; the precise reason is only in the ``hmacguard`` log (the last rejection logged).
    """
    assert_rejected(exchange, protected, "invalid_signature", before=before)
    assert logged_reasons(caplog)[-1] == logged


def assert_accepted(exchange: Exchange, body: bytes = b"") -> dict[str, Any]:
    """The request reached the app, which read exactly ``body``; return the echo."""
    assert exchange.status_code == 200, exchange.body
    echoed: dict[str, Any] = exchange.json()
    assert echoed["sha256"] == hashlib.sha256(body).hexdigest()
    return echoed


# == 1. Replay and the nonce store ====================================================


async def test_threat_R1_identical_resend_rejected(caplog: pytest.LogCaptureFixture) -> None:
    """A byte-identical resend of an accepted request is refused (logged replayed); n stays 1."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    assert (
        assert_accepted(await call(protected.middleware, "POST", "/t", headers, BODY), BODY)["n"]
        == 1
    )
    replay = await call(protected.middleware, "POST", "/t", headers, BODY)
    assert_hidden(replay, protected, caplog, "replayed", before=1)


async def test_threat_R2_same_nonce_new_body_old_signature_rejected() -> None:
    """A's signature and nonce on a new body (old or recomputed digest) are refused."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY, nonce="N")
    assert_accepted(await call(protected.middleware, "POST", "/t", headers, BODY), BODY)
    evil = b'{"amount": 999, "to": "mallory"}'
    old_digest = await call(protected.middleware, "POST", "/t", headers, evil)
    assert_rejected(old_digest, protected, "digest_mismatch", before=1)
    recomputed = {**headers, "Content-Digest": make_content_digest(evil)}
    new_digest = await call(protected.middleware, "POST", "/t", recomputed, evil)
    assert_rejected(new_digest, protected, "invalid_signature", before=1)


async def test_threat_R2_same_nonce_new_target_rejected() -> None:
    """A's signature moved to another path is refused."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY, nonce="N")
    assert_accepted(await call(protected.middleware, "POST", "/t", headers, BODY), BODY)
    moved = await call(protected.middleware, "POST", "/t/other", headers, BODY)
    assert_rejected(moved, protected, "invalid_signature", before=1)


async def test_threat_R2_same_nonce_validly_signed_is_a_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second, validly signed request reusing the nonce is refused, logged as replayed."""
    protected = protect()
    first = sign("POST", "/t", JSON, BODY, nonce="N")
    assert_accepted(await call(protected.middleware, "POST", "/t", first, BODY), BODY)
    other = b'{"amount": 1}'
    second = sign("POST", "/t/x", JSON, other, nonce="N")
    reused = await call(protected.middleware, "POST", "/t/x", second, other)
    assert_hidden(reused, protected, caplog, "replayed", before=1)


@pytest.mark.parametrize(
    "spoil",
    ["bad-mac", "bad-digest", "expired", "unknown-key", "no-coverage"],
)
async def test_threat_R2_invalid_request_does_not_burn_nonce(spoil: str) -> None:
    """B(N) refused first, then the genuine A(N) is still a 2xx: invalid requests store nothing."""
    protected = protect()
    if spoil == "bad-mac":
        bad = sign("POST", "/t", JSON, BODY, nonce="N", key=WRONG_SECRET)
    elif spoil == "bad-digest":
        bad = {**sign("POST", "/t", JSON, BODY, nonce="N")}
    elif spoil == "expired":
        bad = sign("POST", "/t", JSON, BODY, nonce="N", now=NOW - 400)
    elif spoil == "unknown-key":
        bad = sign("POST", "/t", JSON, BODY, nonce="N", key=STRANGER)
    else:
        bad = sign("POST", "/t", JSON, BODY, nonce="N", components=BASE4.replace('"', "").split())
    body = BODY + b" " if spoil == "bad-digest" else BODY
    refused = await call(protected.middleware, "POST", "/t", bad, body)
    assert refused.status_code == 401
    assert protected.echo.untouched()
    assert len(protected.store) == 0
    genuine = sign("POST", "/t", JSON, BODY, nonce="N")
    assert_accepted(await call(protected.middleware, "POST", "/t", genuine, BODY), BODY)


async def test_threat_R2_two_keys_same_nonce_both_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keys k1 and k2 may both use nonce N: the store key is (keyid, nonce)."""
    protected = protect()
    for n, key in enumerate((KEY, HMACKey("client-2", SECRET2)), start=1):
        headers = sign("GET", "/t", nonce="N", key=key)
        echoed = assert_accepted(await call(protected.middleware, "GET", "/t", headers))
        assert (echoed["n"], echoed["key_id"]) == (n, key.key_id)
    for key in (KEY, HMACKey("client-2", SECRET2)):  # both pairs were recorded
        replay = await call(
            protected.middleware, "GET", "/t", sign("GET", "/t", nonce="N", key=key)
        )
        assert_hidden(replay, protected, caplog, "replayed", before=2)


@pytest.mark.parametrize(("max_age", "skew"), [(300, 30), (300, 60), (60, 60), (900, 0)])
async def test_threat_R3_replay_refused_through_the_whole_window(
    max_age: int, skew: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Accepted at the skew edge (created = now + S), a replay is refused until created expires."""
    protected = protect(max_age=max_age, clock_skew=skew)
    headers = sign("GET", "/t", now=NOW + skew, nonce="edge")
    assert_accepted(await call(protected.middleware, "GET", "/t", headers))
    ttl = protected.middleware.verifier.nonce_ttl
    assert ttl >= max_age + skew
    last_valid = skew + max_age  # created + max_age, counted from the first acceptance
    for offset in sorted({1, max_age // 2, max_age, last_valid - 1, last_valid}):
        protected.clock.now = NOW + offset
        replay = await call(protected.middleware, "GET", "/t", headers)
        assert_hidden(replay, protected, caplog, "replayed", before=1)


@pytest.mark.parametrize(("max_age", "skew"), [(300, 30), (60, 60)])
async def test_threat_R3_replay_after_the_window_is_stale(
    max_age: int, skew: int, caplog: pytest.LogCaptureFixture
) -> None:
    """At created + max_age + 1 and at the TTL boundary + 1 s the replay is refused as expired."""
    protected = protect(max_age=max_age, clock_skew=skew)
    headers = sign("GET", "/t", now=NOW + skew, nonce="edge")
    assert_accepted(await call(protected.middleware, "GET", "/t", headers))
    ttl = protected.middleware.verifier.nonce_ttl
    for offset in (skew + max_age + 1, ttl + 1):
        protected.clock.now = NOW + offset
        replay = await call(protected.middleware, "GET", "/t", headers)
        assert_hidden(replay, protected, caplog, "expired", before=1)


@pytest.mark.parametrize(
    "rounds", [200, pytest.param(1000, marks=pytest.mark.slow, id="1000 rounds")]
)
async def test_threat_R5_concurrent_identical_requests_accept_one(
    caplog: pytest.LogCaptureFixture, rounds: int
) -> None:
    """100 identical requests at once via ASGITransport, 200 rounds (1,000, as THREATS R5
    asks, with -m slow): exactly one 2xx per round."""
    caplog.set_level(logging.ERROR, logger="hmacguard")  # 19,800 expected rejections
    protected = protect()
    copies = 100
    entered = 0
    in_flight_at_accept: list[int] = []

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        nonlocal entered
        entered += 1
        await protected.middleware(scope, receive, send)

    inner = protected.middleware.app

    async def app(scope: Any, receive: Any, send: Any) -> None:
        in_flight_at_accept.append(entered)
        await inner(scope, receive, send)

    protected.middleware.app = app

    async def body() -> Any:
        # Two chunks with a yield between: every copy is mid-body before any reaches the store.
        yield BODY[:10]
        await asyncio.sleep(0)
        yield BODY[10:]

    async with asgi_client(counting) as client:
        for round_ in range(rounds):
            headers = sign("POST", "/t", JSON, BODY, nonce=f"race-{round_}")
            responses = await asyncio.gather(
                *[client.post("/t", headers=headers, content=body()) for _ in range(copies)]
            )
            statuses = [r.status_code for r in responses]
            assert statuses.count(200) == 1, round_
            assert statuses.count(401) == copies - 1
            assert protected.echo.count == round_ + 1
            # The race was real: all copies had entered the middleware when one was accepted.
            assert in_flight_at_accept[-1] == copies * (round_ + 1)
    assert protected.echo.count == rounds


async def test_threat_R6_unauthenticated_flood_stores_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10,000 bad-MAC, unknown-key or bad-digest requests with fresh nonces store nothing."""
    caplog.set_level(logging.ERROR, logger="hmacguard")
    protected = protect()
    for i in range(10_000):
        kind = i % 3
        if kind == 0:
            headers = sign("POST", "/t", JSON, BODY, nonce=f"flood-{i}", key=WRONG_SECRET)
        elif kind == 1:
            stranger = HMACKey(f"k{i}", SECRET)
            headers = sign("POST", "/t", JSON, BODY, nonce=f"flood-{i}", key=stranger)
        else:
            headers = sign("POST", "/t", JSON, BODY, nonce=f"flood-{i}")
        body = BODY if kind != 2 else BODY[::-1]
        exchange = await call(protected.middleware, "POST", "/t", headers, body)
        assert exchange.status_code == 401
    assert len(protected.store) == 0
    assert protected.echo.untouched()
    for i in range(0, 10_000, 97):  # a sample of the flood's nonces is still usable
        headers = sign("GET", "/t", nonce=f"flood-{i}")
        assert_accepted(await call(protected.middleware, "GET", "/t", headers))


async def test_threat_R6_full_memory_store_is_503_never_eviction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A memory store at max_entries answers 503 for new nonces and still refuses old replays."""
    clock = FakeClock()
    protected = protect(clock=clock, nonce_store=MemoryNonceStore(max_entries=3, clock=clock))
    accepted = []
    for i in range(3):
        headers = sign("GET", "/t", nonce=f"n{i}")
        assert_accepted(await call(protected.middleware, "GET", "/t", headers))
        accepted.append(headers)
    full = await call(protected.middleware, "GET", "/t", sign("GET", "/t", nonce="n3"))
    assert_rejected(full, protected, "nonce_store_unavailable", 503, before=3)
    assert full.headers["retry-after"] == "1"
    for headers in accepted:
        replay = await call(protected.middleware, "GET", "/t", headers)
        assert_hidden(replay, protected, caplog, "replayed", before=3)
    protected.clock.advance(protected.middleware.verifier.nonce_ttl)
    fresh = sign("GET", "/t", nonce="n3", now=protected.clock.now)
    assert_accepted(await call(protected.middleware, "GET", "/t", fresh))


async def test_threat_R9_colliding_key_ids_both_accepted(caplog: pytest.LogCaptureFixture) -> None:
    """keyid "a:b" with nonce "c" and keyid "a" with nonce "b:c" are different store keys."""
    keys = [HMACKey("a:b", b"1" * 32), HMACKey("a", b"2" * 32)]
    protected = protect(keys=keys)
    first = sign("GET", "/t", key=keys[0], nonce="c")
    second = sign("GET", "/t", key=keys[1], nonce="b:c")
    assert assert_accepted(await call(protected.middleware, "GET", "/t", first))["key_id"] == "a:b"
    assert assert_accepted(await call(protected.middleware, "GET", "/t", second))["key_id"] == "a"
    for headers in (first, second):  # both pairs were recorded, separately
        replay = await call(protected.middleware, "GET", "/t", headers)
        assert_hidden(replay, protected, caplog, "replayed", before=2)


class SpyStore:
    """A nonce store recording every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def add(self, key: str, ttl: float) -> bool:
        self.calls.append(key)
        return True


@pytest.mark.parametrize(
    ("nonce", "keyid"),
    [("n" * 10_240, "client-1"), ("n" * 300, "client-1"), ("n", "k" * 257)],
    ids=["10KB-nonce", "300-char-nonce", "257-char-keyid"],
)
async def test_threat_R9_huge_nonce_or_keyid_is_400_before_the_store(
    nonce: str, keyid: str
) -> None:
    """A nonce or keyid over 256 characters is BAD (400) and the store is never touched."""
    store = SpyStore()
    protected = protect(nonce_store=store)
    headers = forge("GET", "/t", {}, f"({BASE4}){params(nonce, keyid=keyid)}")
    exchange = await call(protected.middleware, "GET", "/t", headers)
    assert_rejected(exchange, protected, "malformed_signature", 400)
    assert store.calls == []


# == 2. C4(b): a covered field on one line ==============================================

ACCT = ["@method", "@authority", "@path", "@query", "x-acct"]


async def test_threat_C4b_a_covered_value_split_over_two_lines_is_a_400() -> None:
    """A signed one-line "X-Acct: a, b" sent as two lines still verifies (RFC 9421 §2.1
    joins lines with ", "), but the app would read only "a": refused, 400, unread."""
    protected = protect()
    headers = sign("GET", "/t", {"x-acct": "a, b"}, components=ACCT)
    split = [(n, v) for n, v in headers.items() if n != "x-acct"] + [
        ("x-acct", "a"),
        ("x-acct", "b"),
    ]
    exchange = await call(protected.middleware, "GET", "/t", split)
    assert_rejected(exchange, protected, "malformed_request", 400)
    assert exchange.receive_calls == 0


async def test_threat_C4b_the_same_value_on_one_line_is_accepted_as_signed() -> None:
    """Sent as signed, on one line, it is accepted."""
    protected = protect()
    headers = sign("GET", "/t", {"x-acct": "a, b"}, components=ACCT)
    assert assert_accepted(await call(protected.middleware, "GET", "/t", headers))["n"] == 1


@pytest.mark.parametrize("mixed_case", [False, True])
async def test_threat_C4b_two_lines_signed_as_two_lines_are_a_400(mixed_case: bool) -> None:
    """Two lines the client signed as two lines ("a" and "b", joined "a, b") are the
    same request on the wire: refused too, whatever the case of the names."""
    protected = protect()
    pairs = [("x-acct", "a"), ("X-Acct" if mixed_case else "x-acct", "b")]
    signed = Signer(KEY, components=ACCT, clock=lambda: NOW).sign("GET", f"{ORIGIN}/t", pairs)
    exchange = await call(
        protected.middleware, "GET", "/t", [*pairs, *signed.items()], keep_case=True
    )
    assert_rejected(exchange, protected, "malformed_request", 400)


async def test_threat_C4b_a_field_covered_with_bs_may_repeat() -> None:
    """With "bs" each line is signed apart (RFC 9421 §2.1.3): joining them breaks the
    MAC, so the lines may repeat."""
    protected = protect()
    pairs = [("x-acct", "a"), ("x-acct", "b")]
    components = [*ACCT[:-1], "x-acct;bs"]
    signed = Signer(KEY, components=components, clock=lambda: NOW).sign("GET", f"{ORIGIN}/t", pairs)
    exchange = await call(protected.middleware, "GET", "/t", [*pairs, *signed.items()])
    assert assert_accepted(exchange)["n"] == 1
    joined = [*signed.items(), ("x-acct", "a, b")]
    exchange = await call(protected.middleware, "GET", "/t", joined)
    assert_rejected(exchange, protected, "invalid_signature", before=1)


async def test_threat_C4b_an_uncovered_field_may_repeat() -> None:
    """Only covered fields are held to one line: a repeated field the signature does
    not cover passes, as any unsigned field does."""
    protected = protect()
    headers = [*sign("GET", "/t").items(), ("x-trace", "1"), ("x-trace", "2")]
    assert_accepted(await call(protected.middleware, "GET", "/t", headers))


# == 3. D4: unprotected paths ===========================================================

PREFLIGHT = {"origin": "https://evil.example", "access-control-request-method": "DELETE"}

D4_ROUTES: list[tuple[str, str, dict[str, str], int]] = [
    ("GET", "/t", {}, 200),
    ("POST", "/t", {}, 200),
    ("PUT", "/t", {}, 200),
    ("PATCH", "/t", {}, 200),
    ("DELETE", "/t", {}, 200),
    ("HEAD", "/t", {}, 200),
    ("OPTIONS", "/t", PREFLIGHT, 200),
    ("GET", "/t/deep/path", {}, 200),
    ("GET", "/sub/", {}, 200),
    ("POST", "/sub/x", {}, 200),
    ("GET", "/missing", {}, 404),
    ("POST", "/ro", {}, 405),
    ("HEAD", "/ro", {}, 200),  # Starlette's automatic HEAD on a GET route
    ("OPTIONS", "/ro", PREFLIGHT, 405),
    ("GET", "/b6", {}, 405),
    ("GET", "/_count", {}, 200),
]
D4_IDS = [f"{m}-{p}" for m, p, _, _ in D4_ROUTES]


@pytest.mark.parametrize(("method", "path", "headers", "bare"), D4_ROUTES, ids=D4_IDS)
async def test_threat_D4_unsigned_request_to_every_route_rejected(
    method: str, path: str, headers: dict[str, str], bare: int
) -> None:
    """Each route, sub-app, HEAD, 404, 405 and preflight answers 401 unsigned, before the router."""
    echo = EchoApp()
    assert (await call(echo, method, path, headers)).status_code == bare
    protected = protect()
    exchange = await call(protected.middleware, method, path, headers)
    assert_rejected(exchange, protected, "missing_signature")


@pytest.mark.parametrize(("method", "path", "headers", "bare"), D4_ROUTES, ids=D4_IDS)
async def test_threat_D4_signature_for_another_route_rejected(
    method: str, path: str, headers: dict[str, str], bare: int
) -> None:
    """A valid signature for GET /t?x=1 sent to each route in the matrix is refused."""
    protected = protect()
    signed = sign("GET", "/t?x=1", headers)
    exchange = await call(protected.middleware, method, path, signed)
    assert_rejected(exchange, protected, "invalid_signature")


@pytest.mark.parametrize(("method", "path", "headers", "bare"), D4_ROUTES, ids=D4_IDS)
async def test_threat_D4_exempt_route_reaches_the_router(
    method: str, path: str, headers: dict[str, str], bare: int
) -> None:
    """The unsigned request passes only when its path is exempt, and then the router answers."""
    protected = protect(exempt=[path])
    exchange = await call(protected.middleware, method, path, headers)
    assert exchange.status_code == bare
    assert protected.echo.calls == 1


@pytest.mark.parametrize("path", ["/ws", "/missing"])
async def test_threat_D4_unsigned_websocket_rejected(path: str) -> None:
    """An unsigned handshake is closed 1008 before accept; exempted, it reaches the app."""
    bare = await drive(EchoApp(), websocket_scope(path), [{"type": "websocket.connect"}])
    assert bare.sent[0]["type"] == ("websocket.accept" if path == "/ws" else "websocket.close")
    protected = protect()
    exchange = await drive(
        protected.middleware, websocket_scope(path), [{"type": "websocket.connect"}]
    )
    assert exchange.sent == [{"type": "websocket.close", "code": 1008}]
    assert protected.echo.untouched()
    exempted = protect(exempt=[path])
    passed = await drive(
        exempted.middleware, websocket_scope(path), [{"type": "websocket.connect"}]
    )
    assert passed.sent[0] == bare.sent[0]


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"require_nonce": False}, "require_nonce=False"), ({"debug": True}, "debug=True")],
)
def test_threat_D4_disable_and_debug_flags_log_loudly(
    options: dict[str, Any], needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Turning replay protection off or debug on logs a WARNING at start-up."""
    caplog.set_level(logging.INFO, logger="hmacguard")
    protect(**options)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert needle in caplog.records[0].getMessage()


# == 5. Target URI, method, authority ====================================================

U1_VARIANTS = [
    "/api//items",
    "/api/./items",
    "/api/x/../items",
    "/api/items/",
    "/API/items",
    "/api/%69tems",
    "/api%2Fitems",
    "/api/items%2F",
    "/api/items;",
    "/api/ITEMS",
    "/api/items%00",
]


@pytest.mark.parametrize("sent", U1_VARIANTS)
async def test_threat_U1_path_variant_rejected(sent: str) -> None:
    """A signature over /api/items does not verify for any other raw spelling of the path."""
    protected = protect()
    headers = sign("GET", "/api/items")
    exchange = await call(protected.middleware, "GET", sent, headers)
    assert_rejected(exchange, protected, "invalid_signature")


async def test_threat_U1_signed_path_as_sent_accepted() -> None:
    """The unmodified /api/items verifies (the variants above fail for the path alone)."""
    protected = protect()
    headers = sign("GET", "/api/items")
    assert assert_accepted(await call(protected.middleware, "GET", "/api/items", headers))[
        "raw_path"
    ] == ("/api/items")


async def test_threat_U1_encoded_slash_verifies_on_the_raw_path() -> None:
    """/a%2Fb signed and sent unchanged is a 2xx; the base shows %2F and the app sees /a/b."""
    protected = protect()
    headers = sign("GET", "/a%2Fb")
    echoed = assert_accepted(await call(protected.middleware, "GET", "/a%2Fb", headers))
    assert (echoed["raw_path"], echoed["path"]) == ("/a%2Fb", "/a/b")
    debug = protect(debug=True)
    spoiled = {**sign("GET", "/a%2Fb"), "Signature": "sig1=:" + "A" * 43 + "=:"}
    base = problem(await call(debug.middleware, "GET", "/a%2Fb", spoiled))["debug"]
    assert '"@path": /a%2Fb\n' in base["signature_base"]


async def test_threat_U1_decoded_twin_of_encoded_slash_rejected() -> None:
    """A signature for /a%2Fb does not authorise /a/b, which routes the same."""
    protected = protect()
    exchange = await call(protected.middleware, "GET", "/a/b", sign("GET", "/a%2Fb"))
    assert_rejected(exchange, protected, "invalid_signature")


@pytest.mark.parametrize(
    ("raw_path", "logged_on"),
    [(None, "hmacguard"), (b"", "hmacguard.rejected")],
    ids=["absent", "empty"],
)
async def test_threat_U1_no_raw_path_fails_closed(
    raw_path: bytes | None, logged_on: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without scope["raw_path"] the request is a 400, never verified on the decoded path.
    An absent one is the server's fault, logged for the operator on ``hmacguard``; an
    empty one is the client's (hypercorn gives it for an HTTP/2 ``:path`` of "?"), logged
    as a rejection, so no client can fill the operator's log with server faults."""
    protected = protect()
    exchange = await call(protected.middleware, "GET", "/t", sign("GET", "/t"), raw_path=raw_path)
    assert_rejected(exchange, protected, "malformed_request", 400)
    assert exchange.receive_calls == 0
    assert [r.name for r in caplog.records if r.levelname == "WARNING"] == [logged_on]


@pytest.mark.parametrize(
    ("signed", "sent"),
    [
        ("/t?a=1&b=2", "/t?b=2&a=1"),
        ("/t?q=a+b", "/t?q=a%20b"),
        ("/t?q=a%20b", "/t?q=a+b"),
        ("/t", "/t?admin=1"),
        ("/t?", "/t?admin=1"),
        ("/t?a=1", "/t?a=1&admin=1"),
        ("/t?a=1", "/t?A=1"),
        ("/t?a=%2F", "/t?a=/"),
    ],
)
async def test_threat_U2_query_change_rejected(signed: str, sent: str) -> None:
    """Reordered, re-encoded or extended queries do not verify (@query is the raw query)."""
    protected = protect()
    exchange = await call(protected.middleware, "GET", sent, sign("GET", signed))
    assert_rejected(exchange, protected, "invalid_signature")


async def test_threat_U2_repeated_query_param_rejected() -> None:
    """A @query-param signature over a=1 does not verify once a second a= is added."""
    components = ["@method", "@authority", "@path", '@query-param;name="a"']
    protected = protect(required_components=components)
    headers = sign("GET", "/t?a=1", components=components)
    assert_accepted(await call(protected.middleware, "GET", "/t?a=1", headers))
    repeated = await call(protected.middleware, "GET", "/t?a=1&a=2", headers)
    assert_rejected(repeated, protected, "invalid_signature", before=1)
    with pytest.raises(ValueError, match="more than once"):
        sign("GET", "/t?a=1&a=2", components=components)


@pytest.mark.parametrize("query", [b"q=\xff", b"q=\xc3\xa9", b"\x80=1"])
async def test_threat_U2_raw_non_ascii_query_is_400(query: bytes) -> None:
    """Raw non-ASCII bytes in a covered query are a 400, never a 500."""
    protected = protect()
    exchange = await call(protected.middleware, "GET", b"/t?" + query, sign("GET", "/t?q=1"))
    assert_rejected(exchange, protected, "malformed_signature", 400)


async def test_threat_U2_query_param_and_form_body_both_protected() -> None:
    """@query-param x plus a form body x=evil: the app reads the query, the body is digested."""
    components = ["@method", "@authority", "@path", "@query", '@query-param;name="x"']
    components += ["content-type", "content-digest"]
    protected = protect()
    form = {"content-type": "application/x-www-form-urlencoded"}
    body = b"x=evil"
    headers = sign("POST", "/t?x=good", form, body, components=components)
    echoed = assert_accepted(
        await call(protected.middleware, "POST", "/t?x=good", headers, body), body
    )
    assert echoed["query"] == "x=good"
    swapped = await call(protected.middleware, "POST", "/t?x=good", headers, b"x=worse")
    assert_rejected(swapped, protected, "digest_mismatch", before=1)


@pytest.mark.parametrize("sent", ["/users/1;role=admin", "/users/1;", "/users/1%3Brole=admin"])
async def test_threat_U3_path_parameters_rejected(sent: str) -> None:
    """A signature over /users/1 does not verify for /users/1;role=admin."""
    protected = protect()
    exchange = await call(protected.middleware, "GET", sent, sign("GET", "/users/1"))
    assert_rejected(exchange, protected, "invalid_signature")


FORWARDED = [
    {"x-forwarded-host": "staging.example"},
    {"forwarded": "host=staging.example"},
    {"x-forwarded-host": "staging.example", "x-forwarded-proto": "https"},
    {"x-original-host": "staging.example"},
]


@pytest.mark.parametrize("forwarded", FORWARDED)
@pytest.mark.parametrize("configured", [None, "prod.example"])
async def test_threat_U4_forwarded_host_ignored(
    forwarded: dict[str, str], configured: str | None
) -> None:
    """A request signed for staging, sent to prod with X-Forwarded-Host: staging, is refused."""
    protected = protect(authority=configured)
    headers = {**forwarded, **sign("GET", "http://staging.example/t")}
    exchange = await call(protected.middleware, "GET", "/t", headers, host="prod.example")
    assert_rejected(exchange, protected, "invalid_signature")


@pytest.mark.parametrize("forwarded", FORWARDED)
async def test_threat_U4_configured_authority_wins_over_host(forwarded: dict[str, str]) -> None:
    """With authority= configured, a signature for it verifies whatever Host the proxy sends."""
    protected = protect(authority="prod.example")
    headers = {**forwarded, **sign("GET", "http://prod.example/t")}
    exchange = await call(protected.middleware, "GET", "/t", headers, host="10.0.0.7:8000")
    assert_accepted(exchange)


async def test_threat_U4_host_signed_for_elsewhere_rejected_without_config() -> None:
    """Without a configured authority, the Host header is the authority: another host fails."""
    protected = protect()
    exchange = await call(
        protected.middleware, "GET", "/t", sign("GET", "http://staging.example/t")
    )
    assert_rejected(exchange, protected, "invalid_signature")


@pytest.mark.parametrize("configured", [False, True])
async def test_threat_U4_mixed_case_host_with_default_port(configured: bool) -> None:
    """Host: API.Example.COM:443 behind TLS with scheme="https" verifies as api.example.com."""
    options: dict[str, Any] = {"scheme": "https"}
    if configured:
        options["authority"] = "API.Example.COM:443"
    protected = protect(**options)
    headers = sign("GET", "https://api.example.com/t")
    exchange = await call(protected.middleware, "GET", "/t", headers, host="API.Example.COM:443")
    assert_accepted(exchange)


async def test_threat_U4_default_port_kept_without_configured_scheme() -> None:
    """Host ...:443 on a plain-http scope is not the default port: https://api.example.com fails."""
    protected = protect()
    headers = sign("GET", "https://api.example.com/t")
    exchange = await call(protected.middleware, "GET", "/t", headers, host="API.Example.COM:443")
    assert_rejected(exchange, protected, "invalid_signature")


@pytest.mark.parametrize("size", [263, 10_240])
async def test_threat_U4_huge_host_is_a_fast_400(size: int) -> None:
    """A Host over 262 bytes is refused as malformed before anything is read."""
    protected = protect()
    exchange = await call(protected.middleware, "GET", "/t", sign("GET", "/t"), host="h" * size)
    assert_rejected(exchange, protected, "malformed_request", 400)
    assert exchange.receive_calls == 0


async def _resolve(key_id: str) -> HMACKey | None:
    """An async key resolver: the middleware's other header path, which takes a URL."""
    return KEY if key_id == KEY.key_id else None


KEYRINGS = pytest.mark.parametrize(
    "keys", [{KEY.key_id: SECRET}, _resolve], ids=["static keys", "async resolver"]
)


@KEYRINGS
@pytest.mark.parametrize(
    ("signed", "sent", "host"),
    [
        ("/", "/admin?x=1", f"{HOST}#"),
        ("/", "/admin", f"{HOST}#/x"),
        ("/users/admin", "/admin", f"{HOST}/users"),
        ("/?/admin", "/admin", f"{HOST}?"),
        ("/", "/", f"evil.example@{HOST}"),
        ("/", "/", f"{HOST} :80"),
        ("/", "/", f"{HOST}\v"),
        ("/", "/", ""),
        ("/", "/", " "),
        ("/", "/", "/"),
        ("/", "/", "#"),
        ("/", "/", f"{HOST}:"),
        ("/", "/", "[xyz]"),
        ("/", "/", "[::1"),
        ("/", "/", f"{HOST}:123456"),
    ],
)
async def test_threat_U4_a_host_that_is_not_host_port_is_a_400(
    keys: Any, signed: str, sent: str, host: str
) -> None:
    """A Host with "#", "/", "?" or "@" would move part of it into the fragment, path,
    query or userinfo of the URL the signature is checked against: a signature for "/"
    would pass "/admin" sent with "Host: api.example#". It is a 400 before anything is
    read, as is an empty Host, never a 503 (split_url used to raise on them)."""
    protected = protect(keys=keys)
    exchange = await call(protected.middleware, "GET", sent, sign("GET", signed), host=host)
    assert_rejected(exchange, protected, "malformed_request", 400)
    assert exchange.receive_calls == 0


@KEYRINGS
@pytest.mark.parametrize(
    "host", [HOST.upper(), f"{HOST}:8080", "127.0.0.1:8000", "[::1]:8000", "[fe80::1%25eth0]"]
)
async def test_threat_U4_a_well_formed_host_verifies(keys: Any, host: str) -> None:
    """Names, IPv4 and IPv6 literals (with a zone), with or without a port, verify."""
    protected = protect(keys=keys)
    headers = sign("GET", f"http://{host}/t?x=1")
    echoed = assert_accepted(await call(protected.middleware, "GET", "/t?x=1", headers, host=host))
    assert (echoed["raw_path"], echoed["query"]) == ("/t", "x=1")


@KEYRINGS
@pytest.mark.parametrize(("before", "after"), [(" ", ""), ("", " "), ("\t", " \t"), ("", "\t\t")])
@pytest.mark.parametrize("authority", [None, HOST])
async def test_threat_U4_whitespace_around_the_host_is_not_part_of_it(
    keys: Any, before: str, after: str, authority: str | None
) -> None:
    """SP and HTAB around a field value are not part of it (RFC 9110 §5.5), and
    httptools passes on those after it: "Host: api.example:8080 " is the authority
    api.example:8080, verified as the client signed it, on the fast path and the general."""
    protected = protect(keys=keys, authority=authority)
    host = f"{before}{HOST}:8080{after}" if authority is None else f"{before}{HOST}{after}"
    for _ in range(2):  # the first request teaches the fast path the component list
        headers = sign("GET", f"http://{host.strip()}/t?x=1")
        exchange = await call(protected.middleware, "GET", "/t?x=1", headers, host=host)
        echoed = assert_accepted(exchange)
        assert (echoed["raw_path"], echoed["query"]) == ("/t", "x=1")
    elsewhere = sign("GET", "http://other.example/t?x=1")
    exchange = await call(protected.middleware, "GET", "/t?x=1", elsewhere, host=host)
    assert_rejected(exchange, protected, "invalid_signature", before=2)


@KEYRINGS
@pytest.mark.parametrize("raw_path", [b"*", b"x/y", b"http://api.example/z"])
async def test_threat_U7_a_target_not_starting_with_a_slash_is_a_400_under_a_prefix_too(
    keys: Any, raw_path: bytes
) -> None:
    """With path_prefix="/api", "/api" + "*" would look like a path: the raw path is
    checked before the prefix goes in front, on the fast path as on the general."""
    protected = protect(keys=keys, path_prefix="/api")
    warm = sign("GET", "/api/t")  # the component list is then known to the fast path
    assert_accepted(await call(protected.middleware, "GET", "/t", warm))
    headers = sign("GET", "http://api.example/api" + raw_path.decode())
    scope = http_scope("GET", b"/t", headers, raw_path=raw_path)
    exchange = await drive(protected.middleware, scope, body_messages(b""))
    assert_rejected(exchange, protected, "malformed_request", 400, before=1)


@pytest.mark.parametrize("host", [f"{HOST}#", "evil@example", "", "a b", f"{HOST}/admin"])
async def test_threat_U4_with_a_configured_authority_a_bad_host_is_a_400_too(host: str) -> None:
    """authority= decides what is verified, but the app may still read the Host
    (links, redirects): one that is not host[:port] is refused all the same."""
    protected = protect(authority=HOST)
    exchange = await call(protected.middleware, "GET", "/t", sign("GET", "/t"), host=host)
    assert_rejected(exchange, protected, "malformed_request", 400)


async def test_threat_U4_with_a_configured_authority_no_host_is_fine() -> None:
    """Without a Host (HTTP/1.0), the configured authority is verified as usual."""
    protected = protect(authority=HOST)
    exchange = await call(protected.middleware, "GET", "/t", sign("GET", "/t"), host=None)
    assert_accepted(exchange)


@KEYRINGS
@pytest.mark.parametrize(
    ("raw_path", "query"),
    [
        (b"/t#x", b""),
        (b"/t#x", b"admin=1"),
        (b"/t", b"a=1#&admin=1"),
        (b"/t", b"#"),
        (b"/t?admin=1", b""),
        (b"*", b""),
        (b"t", b""),
        (b"http://api.example/t", b""),
    ],
)
async def test_threat_U1_a_target_that_is_not_an_absolute_path_is_a_400(
    keys: Any, raw_path: bytes, query: bytes
) -> None:
    """Only an origin-form target can be verified. A "#" left in the path or query (h11
    splits at "?" only), a "?" in the raw path, or a target not starting with "/" would
    be split differently in the URL checked than in what the app reads: 400, unread."""
    protected = protect(keys=keys)
    target = b"/t?" + query if query else b"/t"
    scope = http_scope("GET", target, sign("GET", "/t"), raw_path=raw_path)
    exchange = await drive(protected.middleware, scope, body_messages(b""))
    assert_rejected(exchange, protected, "malformed_request", 400)
    assert exchange.receive_calls == 0


@pytest.mark.parametrize(
    ("configured", "signed", "proto", "accepted"),
    [
        (None, "https", None, False),
        (None, "https", "https", False),
        ("https", "https", None, True),
        ("https", "http", None, False),
        ("https", "http", "http", False),
        (None, "http", "https", True),
        ("http", "http", None, True),
    ],
)
async def test_threat_U5_scheme_comes_from_configuration(
    configured: str | None, signed: str, proto: str | None, accepted: bool
) -> None:
    """An https signature verifies only with scheme="https"; X-Forwarded-Proto is ignored."""
    headers = sign("GET", f"{signed}://{HOST}/t", components=["@method", "@target-uri"])
    headers.update({"x-forwarded-proto": proto} if proto else {})
    protected = protect(scheme=configured, required_components=["@method", "@target-uri"])
    exchange = await call(protected.middleware, "GET", "/t", headers)
    if accepted:
        assert_accepted(exchange)
    else:
        assert_rejected(exchange, protected, "invalid_signature")


@pytest.mark.parametrize(
    "override",
    [
        {"x-http-method-override": "DELETE"},
        {"x-method-override": "DELETE"},
        {"x-http-method": "DELETE"},
    ],
)
async def test_threat_U6_method_override_header(override: dict[str, str]) -> None:
    """An unsigned method override on a signed POST: REJECT, or stripped and the app sees POST."""
    protected = protect()
    seen: list[list[tuple[bytes, bytes]]] = []
    inner = protected.middleware.app

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        await inner(scope, receive, send)

    protected.middleware.app = spy
    headers = {**sign("POST", "/t", JSON, BODY), **override}
    exchange = await call(protected.middleware, "POST", "/t", headers, BODY)
    if exchange.status_code == 401:
        assert protected.echo.untouched()
        return
    assert assert_accepted(exchange, BODY)["method"] == "POST"
    name = next(iter(override)).encode()
    assert all(n.lower() != name for n, _ in seen[0]), "the unsigned override reached the app"


async def test_threat_U6_method_override_query_signed_or_rejected() -> None:
    """?_method=DELETE added after signing is refused; signed, the app still sees POST."""
    protected = protect()
    added = await call(
        protected.middleware, "POST", "/t?_method=DELETE", sign("POST", "/t", JSON, BODY), BODY
    )
    assert_rejected(added, protected, "invalid_signature")
    signed = sign("POST", "/t?_method=DELETE", JSON, BODY)
    echoed = assert_accepted(
        await call(protected.middleware, "POST", "/t?_method=DELETE", signed, BODY), BODY
    )
    assert echoed["method"] == "POST"


@pytest.mark.parametrize(
    ("signed", "sent"),
    [("POST", "post"), ("POST", "Post"), ("GET", "HEAD"), ("GET", "get"), ("DELETE", "POST")],
)
async def test_threat_U6_method_must_match_exactly(signed: str, sent: str) -> None:
    """A method in another case, or GET replayed as HEAD, does not verify (no normalisation)."""
    protected = protect()
    exchange = await call(protected.middleware, sent, "/t", sign(signed, "/t"))
    assert_rejected(exchange, protected, "invalid_signature")


async def test_threat_U7_configured_prefix_verifies() -> None:
    """The proxy strips /api: a signature over /api/items verifies only with path_prefix="/api"."""
    headers = sign("GET", "/api/items")
    with_prefix = protect(path_prefix="/api")
    echoed = assert_accepted(await call(with_prefix.middleware, "GET", "/items", headers))
    assert echoed["raw_path"] == "/items"
    without = protect()
    exchange = await call(without.middleware, "GET", "/items", sign("GET", "/api/items"))
    assert_rejected(exchange, without, "invalid_signature")


@pytest.mark.parametrize(
    ("prefix", "signed", "sent"),
    [
        ("/api", "/a", "/a"),  # the client signed the inner path, not the external one
        (None, "/api/a", "/a"),  # no prefix configured: /api/a is not /a
        ("/v2", "/api/a", "/a"),  # another mount's prefix
        ("/api", "/api/a", "/api/a"),  # the prefix is not stripped by the proxy: /api/api/a
    ],
)
async def test_threat_U7_signature_for_another_mount_rejected(
    prefix: str | None, signed: str, sent: str
) -> None:
    """A signature for /api/a never authorises /a on a different mount or prefix."""
    protected = protect(**({"path_prefix": prefix} if prefix else {}))
    exchange = await call(protected.middleware, "GET", sent, sign("GET", signed))
    assert_rejected(exchange, protected, "invalid_signature")


async def test_threat_U7_root_path_is_not_trusted_as_prefix() -> None:
    """scope["root_path"] is not added to the signed path: only a configured path_prefix is."""
    protected = protect()
    exchange = await call(
        protected.middleware, "GET", "/items", sign("GET", "/api/items"), root_path="/api"
    )
    assert_rejected(exchange, protected, "invalid_signature")


@pytest.mark.parametrize("path", ["/t", "/hooks"])
async def test_threat_T1_a_clock_that_gives_nan_fails_closed(path: str) -> None:
    """A broken clock reading NaN would pass every window comparison (a 1970 signature
    accepted): the request is a 503, logged, and never reaches the app, on RFC 9421
    and webhook paths alike."""
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    protected = protect(clock=FakeClock(math.nan), webhooks={"/hooks": StandardWebhooks(secret)})
    if path == "/t":
        headers = sign("POST", "/t", JSON, BODY, now=0)
    else:
        headers = _sw_delivery(secret, BODY, 0, "msg_1970")
    exchange = await call(protected.middleware, "POST", path, headers, BODY)
    assert exchange.status_code == 503
    assert problem(exchange)["reason"] == "verification_unavailable"
    assert protected.echo.untouched()


# == 6. Body handling ===================================================================


@pytest.mark.parametrize("position", [0, 5, len(BODY) - 1])
async def test_threat_B1_flipped_body_byte_rejected(position: int) -> None:
    """A valid signature with one body byte flipped is refused and the app is not called."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    flipped = bytearray(BODY)
    flipped[position] ^= 0x01
    exchange = await call(protected.middleware, "POST", "/t", headers, bytes(flipped))
    assert_rejected(exchange, protected, "digest_mismatch")
    assert len(protected.store) == 0


async def test_threat_B1_covered_digest_on_empty_body_rejected() -> None:
    """A covered Content-Digest of a non-empty body, sent with no body, is refused."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    exchange = await call(protected.middleware, "POST", "/t", headers, b"")
    assert_rejected(exchange, protected, "digest_mismatch")


def _digest_value(*members: tuple[str, bytes]) -> str:
    return ", ".join(f"{alg}=:{base64.b64encode(raw).decode()}:" for alg, raw in members)


GOOD256 = hashlib.sha256(BODY).digest()
GOOD512 = hashlib.sha512(BODY).digest()
BAD256 = hashlib.sha256(b"other").digest()

B2_CASES = [
    ("md5-only", _digest_value(("md5", hashlib.md5(BODY).digest())), 401, "digest_mismatch"),  # noqa: S324
    (
        "bad256-good512",
        _digest_value(("sha-256", BAD256), ("sha-512", GOOD512)),
        401,
        "digest_mismatch",
    ),
    (
        "good256-bad512",
        _digest_value(("sha-256", GOOD256), ("sha-512", b"\0" * 64)),
        401,
        "digest_mismatch",
    ),
    ("good256-md5-junk", _digest_value(("sha-256", GOOD256), ("md5", b"x")), 200, None),
    ("good512-crc32c", _digest_value(("sha-512", GOOD512), ("crc32c", b"1234")), 200, None),
    ("unknown-only", _digest_value(("sha-3", GOOD256)), 401, "digest_mismatch"),
    ("wrong-length", _digest_value(("sha-256", GOOD256[:31])), 401, "digest_mismatch"),
    ("sha512-under-256", _digest_value(("sha-256", GOOD512)), 401, "digest_mismatch"),
    ("not-a-dictionary", "sha-256=abc", 400, "malformed_digest"),
    (
        "repeated-alg",
        _digest_value(("sha-256", GOOD256), ("sha-256", GOOD256)),
        400,
        "malformed_digest",
    ),
    ("not-bytes", 'sha-256="abc"', 400, "malformed_digest"),
]


@pytest.mark.parametrize(
    ("value", "status", "reason"), [c[1:] for c in B2_CASES], ids=[c[0] for c in B2_CASES]
)
async def test_threat_B2_digest_algorithm_downgrade(
    value: str, status: int, reason: str | None
) -> None:
    """Every Active digest must match, Deprecated ones are ignored, unknown ones prove nothing."""
    protected = protect()
    member = f'({BASE4} "content-type" "content-digest"){params()}'
    headers = forge("POST", "/t", {**JSON, "content-digest": value}, member)
    exchange = await call(protected.middleware, "POST", "/t", headers, BODY)
    if reason is None:
        assert_accepted(exchange, BODY)
    else:
        assert_rejected(exchange, protected, reason, status)


async def test_threat_B2_legacy_digest_header_is_no_substitute() -> None:
    """An RFC 3230 Digest: header covered instead of Content-Digest leaves the body uncovered."""
    protected = protect()
    legacy = {**JSON, "digest": "SHA-256=" + base64.b64encode(GOOD256).decode()}
    headers = forge("POST", "/t", legacy, f'({BASE4} "content-type" "digest"){params()}')
    exchange = await call(protected.middleware, "POST", "/t", headers, BODY)
    assert_rejected(exchange, protected, "insufficient_coverage")
    assert exchange.receive_calls == 0


@pytest.mark.parametrize(
    ("chunk_size", "empty_chunks", "framing"),
    [
        (None, False, "content-length"),
        (1, False, "content-length"),
        (1, False, "transfer-encoding"),
        (None, True, "transfer-encoding"),
        (1, True, "transfer-encoding"),
        (3, True, "content-length"),
    ],
)
async def test_threat_B3_framing_gives_identical_digest(
    chunk_size: int | None, empty_chunks: bool, framing: str
) -> None:
    """Content-Length, 1-byte chunks and empty chunks give the same digest and a 2xx."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    frame = (
        ("content-length", str(len(BODY))) if framing == "content-length" else (framing, "chunked")
    )
    scope = http_scope("POST", "/t", [*headers.items(), frame])
    messages = body_messages(BODY, chunk_size, empty_chunks=empty_chunks)
    assert_accepted(await drive(protected.middleware, scope, messages), BODY)


async def test_threat_B3_transfer_encoding_counts_as_a_body() -> None:
    """A chunked request must cover content-digest: without it, 401 before the body is read."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY, components=BASE4.replace('"', "").split())
    exchange = await call(
        protected.middleware, "POST", "/t", {**headers, "transfer-encoding": "chunked"}, BODY
    )
    assert_rejected(exchange, protected, "insufficient_coverage")
    assert exchange.receive_calls == 0


@pytest.mark.parametrize(
    "names", ["lowercase", "mixed case"], ids=["fast header phase", "general header phase"]
)
async def test_threat_B3_content_length_with_transfer_encoding_is_400(
    names: str, caplog: pytest.LogCaptureFixture
) -> None:
    """CL and TE together (RFC 9112 §6.3, smuggling) are 400 before the body is read, whatever
    the server: h11 frames by TE, while something behind it may read CL."""
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY)
    framing = [("content-length", "5"), ("transfer-encoding", "chunked")]
    if names == "mixed case":
        framing = [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]
    scope = http_scope("POST", "/t", [*headers.items(), *framing])
    exchange = await drive(protected.middleware, scope, body_messages(BODY, None))
    assert_rejected(exchange, protected, "malformed_request", 400)
    assert "both Content-Length and Transfer-Encoding" in caplog.text
    assert exchange.receive_calls == 0


async def test_threat_B4_huge_content_length_is_413_without_reading() -> None:
    """Content-Length: 10000000000 answers 413 at once; receive() is never called."""
    protected = protect()
    headers = {**sign("POST", "/t", JSON, BODY), "content-length": "10000000000"}
    exchange = await call(protected.middleware, "POST", "/t", headers, BODY)
    assert_rejected(exchange, protected, "body_too_large", 413)
    assert exchange.receive_calls == 0


async def test_threat_B4_50MB_chunked_body_cut_at_the_limit() -> None:
    """50 MB chunked against the 1 MiB default: 413 after at most limit + one chunk is read."""
    protected = protect()
    chunk, total = 64 * 1024, 50 * 1024 * 1024
    headers = sign("POST", "/t", {}, b"x" * 10)  # the signature is fine; the body is not

    def stream() -> Any:
        for _ in range(total // chunk):
            yield {"type": "http.request", "body": b"x" * chunk, "more_body": True}
        yield {"type": "http.request", "body": b"", "more_body": False}

    scope = http_scope("POST", "/t", [*headers.items(), ("transfer-encoding", "chunked")])
    exchange = await drive(protected.middleware, scope, stream())
    assert_rejected(exchange, protected, "body_too_large", 413)
    assert exchange.receive_calls * chunk <= 1024 * 1024 + chunk
    assert len(protected.store) == 0


async def test_threat_B4_digest_covers_the_content_coding_as_received() -> None:
    """A gzip body verifies against the digest of the gzip bytes and reaches the app compressed."""
    protected = protect()
    packed = gzip.compress(BODY, mtime=0)
    coded = {**JSON, "content-encoding": "gzip"}
    headers = sign("POST", "/t", coded, packed)
    assert_accepted(await call(protected.middleware, "POST", "/t", headers, packed), packed)
    of_plain = {**sign("POST", "/t", coded, packed), "Content-Digest": make_content_digest(BODY)}
    exchange = await call(protected.middleware, "POST", "/t", of_plain, packed)
    assert_rejected(exchange, protected, "invalid_signature", before=1)
    decoded_digest = sign("POST", "/t", coded, BODY)  # the client digested the plain bytes
    exchange = await call(protected.middleware, "POST", "/t", decoded_digest, packed)
    assert_rejected(exchange, protected, "digest_mismatch", before=1)


EMPTY_DIGEST = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


async def test_threat_B5_signed_empty_digest_accepted_and_added_body_rejected() -> None:
    """A GET covering the empty body's digest is a 2xx; the same request with a body is refused."""
    protected = protect()
    components = [*BASE4.replace('"', "").split(), "content-digest"]
    headers = sign("GET", "/t", {}, b"", components=components, nonce="e1")
    assert headers["Content-Digest"] == EMPTY_DIGEST
    assert_accepted(await call(protected.middleware, "GET", "/t", headers))
    added = sign("GET", "/t", {}, b"", components=components, nonce="e2")
    exchange = await call(protected.middleware, "GET", "/t", added, b"smuggled")
    assert_rejected(exchange, protected, "digest_mismatch", before=1)


@pytest.mark.parametrize("with_digest", [False, True])
async def test_threat_B5_content_length_zero_same_as_absent(with_digest: bool) -> None:
    """Content-Length: 0 and no Content-Length give the same result."""
    components = [*BASE4.replace('"', "").split(), *(["content-digest"] if with_digest else [])]
    results = []
    for extra in ({}, {"content-length": "0"}):
        protected = protect()
        headers = {**sign("POST", "/t", {}, b"", components=components), **extra}
        exchange = await call(protected.middleware, "POST", "/t", headers)
        results.append((exchange.status_code, exchange.json()["sha256"]))
    assert results[0] == results[1]
    assert results[0][0] == 200


async def test_threat_B5_get_with_body_needs_a_digest() -> None:
    """A GET carrying a body without a covered digest is refused before the body is read (D2)."""
    protected = protect()
    exchange = await call(protected.middleware, "GET", "/t", sign("GET", "/t"), b"surprise")
    assert_rejected(exchange, protected, "insufficient_coverage")
    assert exchange.receive_calls == 0


async def test_threat_B5_undeclared_body_without_digest_rejected() -> None:
    """A body arriving without Content-Length or Transfer-Encoding is refused if uncovered."""
    protected = protect()
    scope = http_scope("POST", "/t", sign("POST", "/t"))
    exchange = await drive(protected.middleware, scope, body_messages(b"surprise", 3))
    assert_rejected(exchange, protected, "insufficient_coverage")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", BODY), ("application/octet-stream", bytes(range(256)) * 40)],
)
async def test_threat_B6_body_read_many_ways_agrees(content_type: str, body: bytes) -> None:
    """body() twice, stream() and json() all see the sent bytes, with no hang (1 s timeout)."""
    protected = protect()
    headers = sign("POST", "/b6", {"content-type": content_type}, body)
    async with protected.client() as client:
        response = await asyncio.wait_for(client.post("/b6", content=body, headers=headers), 1.0)
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["sha256"] == hashlib.sha256(body).hexdigest()
    assert echoed["checks"]
    assert all(echoed["checks"].values())


async def test_threat_B6_form_read_agrees() -> None:
    """request.form() sees the verified bytes too (needs python-multipart)."""
    pytest.importorskip("python_multipart", reason="Starlette's form() needs python-multipart")
    protected = protect()
    body = b"x=1&y=2"
    form = {"content-type": "application/x-www-form-urlencoded"}
    async with protected.client() as client:
        response = await asyncio.wait_for(
            client.post("/b6", content=body, headers=sign("POST", "/b6", form, body)), 1.0
        )
    assert response.json()["checks"]["form"] is True


async def test_threat_B6_receive_passes_through_after_the_body() -> None:
    """After the replayed body, the app's next receive() gets the server's http.disconnect."""
    got: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.extend([await receive(), await receive()])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = protect().middleware
    middleware.app = app
    scope, _ = signed_scope("POST", "/t", BODY, JSON)
    exchange = await drive(middleware, scope, body_messages(BODY, 4))
    assert exchange.status_code == 204
    assert got == [
        {"type": "http.request", "body": BODY, "more_body": False},
        {"type": "http.disconnect"},
    ]


@pytest.mark.parametrize("chunks_sent", [0, 1, 4])
async def test_threat_B7_disconnect_mid_body(
    chunks_sent: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a body then a close: no response, no app, no ERROR log, no task left, nonce unused."""
    caplog.set_level(logging.DEBUG)
    protected = protect()
    headers = sign("POST", "/t", JSON, BODY, nonce="B7")
    scope = http_scope("POST", "/t", [*headers.items(), ("content-length", str(len(BODY)))])
    partial = body_messages(BODY, 5)[:chunks_sent]
    tasks = len(asyncio.all_tasks())
    exchange = await drive(protected.middleware, scope, [*partial, {"type": "http.disconnect"}])
    assert exchange.sent == []
    assert protected.echo.untouched()
    assert len(asyncio.all_tasks()) == tasks
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    resend = await call(protected.middleware, "POST", "/t", headers, BODY)
    assert_accepted(resend, BODY)


async def test_threat_B8_stalled_bodies_do_not_block_a_signed_request() -> None:
    """500 clients stalled mid-body do not hold up a signed request; their nonces stay unused."""
    protected = protect()
    release = asyncio.Event()

    async def stalled() -> Any:
        yield {"type": "http.request", "body": BODY[:3], "more_body": True}
        await release.wait()
        yield {"type": "http.disconnect"}

    slow = []
    for i in range(500):
        headers = sign("POST", "/t", JSON, BODY, nonce=f"slow-{i}")
        scope = http_scope("POST", "/t", [*headers.items(), ("content-length", str(len(BODY)))])
        slow.append(asyncio.create_task(drive(protected.middleware, scope, stalled(), timeout=5)))
    await asyncio.sleep(0)
    scope, messages = signed_scope("POST", "/t", BODY, JSON)
    assert_accepted(await drive(protected.middleware, scope, messages, timeout=1.0), BODY)
    assert not any(task.done() for task in slow)
    release.set()
    results = await asyncio.gather(*slow)
    assert all(r.sent == [] for r in results)
    assert protected.echo.count == 1
    for i in (0, 499):  # the stalled clients' nonces were not consumed
        headers = sign("POST", "/t", JSON, BODY, nonce=f"slow-{i}")
        assert_accepted(await call(protected.middleware, "POST", "/t", headers, BODY), BODY)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "multipart/form-data; boundary=" + "-" * 5000,
        "application/x-www-form-urlencoded",
    ],
)
async def test_threat_B9_bad_mac_with_100MB_body_never_read(content_type: str) -> None:
    """An invalid MAC with a 100 MB body is refused before receive() is called; nothing parsed."""
    protected = protect()
    headers = sign("POST", "/t", {"content-type": content_type}, BODY, key=WRONG_SECRET)
    headers["content-length"] = str(100 * 1024 * 1024)
    exchange = await call(protected.middleware, "POST", "/t", headers, BODY)
    assert_rejected(exchange, protected, "invalid_signature")
    assert exchange.receive_calls == 0


# == 9. Multiple signatures =============================================================


class _OwnStore(MemoryNonceStore):
    """A store of the user's own (a subclass is awaited, not called in place)."""


def _two_signers(body: bytes = BODY) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """One POST signed by client-1 (sig1) and client-2 (sig2): each signature's
    fields, and both together (RFC 9421 §4.3)."""
    one = sign("POST", "/t", JSON, body, key=KEY, label="sig1")
    two = sign("POST", "/t", JSON, body, key=KEY2, label="sig2")
    both = {
        **one,
        "Signature-Input": f"{one['Signature-Input']}, {two['Signature-Input']}",
        "Signature": f"{one['Signature']}, {two['Signature']}",
    }
    return one, two, both


@pytest.mark.parametrize("store", [None, _OwnStore], ids=["memory store", "own store"])
@pytest.mark.parametrize("alone", ["sig1", "sig2"])
async def test_threat_M1_each_signature_of_an_accepted_request_is_spent(
    store: type[MemoryNonceStore] | None, alone: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A request with two valid signatures is accepted once. Stripped down to either
    one, it is a replay: every verified signature's nonce was recorded, not only
    the winner's (else sig2 alone would pass once more)."""
    protected = protect() if store is None else protect(nonce_store=store())
    one, two, both = _two_signers()
    accepted = await call(protected.middleware, "POST", "/t", both, BODY)
    assert assert_accepted(accepted, BODY)["key_id"] == "client-1"
    stripped = one if alone == "sig1" else {**two, **JSON}
    replay = await call(protected.middleware, "POST", "/t", stripped, BODY)
    assert_hidden(replay, protected, caplog, "replayed", before=1)


async def test_threat_M1_with_an_async_resolver_each_signature_is_spent_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The other signatures' keys come from an async resolver as the winner's do."""

    async def resolve(key_id: str) -> HMACKey | None:
        await asyncio.sleep(0)
        return {KEY.key_id: KEY, KEY2.key_id: KEY2}.get(key_id)

    protected = protect(keys=resolve)
    _, two, both = _two_signers()
    assert_accepted(await call(protected.middleware, "POST", "/t", both, BODY), BODY)
    replay = await call(protected.middleware, "POST", "/t", {**two, **JSON}, BODY)
    assert_hidden(replay, protected, caplog, "replayed", before=1)


async def test_threat_M1_a_signature_already_spent_makes_the_pair_a_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """sig2 sent alone first, then with sig1 beside it: the pair holds a spent
    nonce, so it is refused, though sig1 (the winner) is new."""
    protected = protect()
    _, two, both = _two_signers()
    assert_accepted(await call(protected.middleware, "POST", "/t", {**two, **JSON}, BODY), BODY)
    replay = await call(protected.middleware, "POST", "/t", both, BODY)
    assert_hidden(replay, protected, caplog, "replayed", before=1)


@pytest.mark.parametrize("why", ["created ahead", "key not yet known"])
async def test_threat_M1_a_second_signature_that_verifies_only_later_is_spent_too(
    why: str, caplog: pytest.LogCaptureFixture
) -> None:
    """sig2 beside a valid sig1 does not verify yet (created 100 s ahead, past the
    30 s skew; or its key is added to the server later), so it neither blocks the
    request nor counts: but its nonce is spent with sig1's, so once it would verify,
    sig2 stripped out and sent alone is a replay."""
    clock = FakeClock(NOW)
    keys = {KEY.key_id: KEY, KEY2.key_id: KEY2} if why == "created ahead" else {KEY.key_id: KEY}
    protected = protect(clock=clock, keys=keys.get)
    one = sign("POST", "/t", JSON, BODY, key=KEY, label="sig1")
    later = NOW + 100 if why == "created ahead" else NOW
    two = sign("POST", "/t", JSON, BODY, key=KEY2, label="sig2", now=later)
    both = {
        **one,
        "Signature-Input": f"{one['Signature-Input']}, {two['Signature-Input']}",
        "Signature": f"{one['Signature']}, {two['Signature']}",
    }
    assert_accepted(await call(protected.middleware, "POST", "/t", both, BODY), BODY)
    if why == "created ahead":
        clock.now = NOW + 100
    else:
        keys[KEY2.key_id] = KEY2
    replay = await call(protected.middleware, "POST", "/t", {**two, **JSON}, BODY)
    assert_hidden(replay, protected, caplog, "replayed", before=1)


@pytest.mark.parametrize("keys", ["static", "sync resolver"])
@pytest.mark.parametrize("why", ["bad MAC", "base not in the request"])
async def test_threat_R2_a_second_signature_that_cannot_verify_burns_no_nonce(
    keys: str, why: str
) -> None:
    """client-1's valid request carries a sig2 in client-2's name, with client-2's nonce N
    (seen on its way) and a MAC that is wrong (or a base this request cannot give): it is
    accepted, and N is not spent, so client-2's own request with N still passes. Spending
    every other signature's nonce let the holder of one key burn another's (R2)."""
    protected = protect(keys=KEYS if keys == "static" else KEYS.get)
    theirs = sign("POST", "/t", JSON, BODY, key=KEY2, label="sig2", nonce="N")
    one = sign("POST", "/t", JSON, BODY, key=KEY, label="sig1")
    inputs = theirs["Signature-Input"]
    if why == "bad MAC":
        forged = "sig2=:" + base64.b64encode(bytes(32)).decode() + ":"
    else:  # covers a header this request does not have: no base, never a MAC
        inputs = inputs.replace('"content-digest"', '"content-digest" "x-absent"')
        forged = theirs["Signature"]
    both = {
        **one,
        "Signature-Input": f"{one['Signature-Input']}, {inputs}",
        "Signature": f"{one['Signature']}, {forged}",
    }
    assert_accepted(await call(protected.middleware, "POST", "/t", both, BODY), BODY)
    genuine = await call(protected.middleware, "POST", "/t", theirs, BODY)
    assert assert_accepted(genuine, BODY)["key_id"] == "client-2"


class _FailingOnce(MemoryNonceStore):
    """A store of one's own whose ``add`` raises once, on the call numbered ``fail_at``."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(clock=FakeClock())
        self.fail_at = fail_at
        self.calls = 0

    async def add(self, key: str, ttl: float) -> bool:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("the store went away for a moment")
        return await super().add(key, ttl)


async def test_threat_R2_a_store_failure_part_way_takes_back_what_the_request_wrote() -> None:
    """Two signatures, and the store fails on the second pair: 503, and the first
    pair is taken back, so the client's retry of the same request is accepted, not
    refused as its own replay."""
    store = _FailingOnce(fail_at=2)
    protected = protect(nonce_store=store)
    _, _, both = _two_signers()
    failed = await call(protected.middleware, "POST", "/t", both, BODY)
    assert (failed.status_code, problem(failed)["reason"]) == (503, "nonce_store_unavailable")
    assert len(store) == 0
    assert_accepted(await call(protected.middleware, "POST", "/t", both, BODY), BODY)


async def test_threat_R2_a_nonce_that_cannot_be_taken_back_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """If the store cannot take a written pair back either, the request is still
    answered 503 (never a 500), and the stranded nonce is logged."""

    class Stuck(_FailingOnce):
        async def discard(self, key: str) -> None:
            raise ConnectionError("still away")

    protected = protect(nonce_store=Stuck(fail_at=2))
    _, _, both = _two_signers()
    failed = await call(protected.middleware, "POST", "/t", both, BODY)
    assert (failed.status_code, problem(failed)["reason"]) == (503, "nonce_store_unavailable")
    assert protected.echo.untouched()
    assert (
        "could not forget a nonce of a refused request (ConnectionError): "
        "its signature cannot be sent again"
    ) in caplog.text


@pytest.mark.parametrize("store", [None, _OwnStore], ids=["memory store", "own store"])
async def test_threat_R2_a_replay_through_another_signature_spends_nothing(
    store: type[MemoryNonceStore] | None, caplog: pytest.LogCaptureFixture
) -> None:
    """sig2 alone is accepted; then sig1 + sig2 is a replay (sig2's pair is spent),
    and sig1's fresh pair is taken back: sig1 alone is still accepted once. The log
    names the signature whose pair was spent."""
    protected = protect() if store is None else protect(nonce_store=store())
    one, two, both = _two_signers()
    assert_accepted(await call(protected.middleware, "POST", "/t", {**two, **JSON}, BODY), BODY)
    replay = await call(protected.middleware, "POST", "/t", both, BODY)
    assert_hidden(replay, protected, caplog, "replayed", before=1)
    assert "another signature in it (key id 'client-2')" in caplog.text
    assert_accepted(await call(protected.middleware, "POST", "/t", one, BODY), BODY)


async def test_threat_M1_without_required_nonces_the_others_are_spent_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """require_nonce=False and a winner without a nonce: the other signature's pair
    is still spent, so it cannot be sent again alone."""
    protected = protect(require_nonce=False)
    one = sign("POST", "/t", JSON, BODY, key=KEY, label="sig1", nonce=False)
    two = sign("POST", "/t", JSON, BODY, key=KEY2, label="sig2")
    both = {
        **one,
        "Signature-Input": f"{one['Signature-Input']}, {two['Signature-Input']}",
        "Signature": f"{one['Signature']}, {two['Signature']}",
    }
    assert assert_accepted(await call(protected.middleware, "POST", "/t", both, BODY), BODY)[
        "key_id"
    ] == ("client-1")
    replay = await call(protected.middleware, "POST", "/t", {**two, **JSON}, BODY)
    assert_hidden(replay, protected, caplog, "replayed", before=1)


@pytest.mark.parametrize("copy", ["another label, same pair", "a relabelled copy"])
async def test_threat_M1_two_signatures_with_one_nonce_are_accepted_once(copy: str) -> None:
    """Two labels carrying the same (key id, nonce), e.g. sig1 duplicated by an
    intermediary under another label, are one pair: the request is accepted (not
    refused as its own replay), and the pair is spent once."""
    store = MemoryNonceStore()
    protected = protect(nonce_store=store)
    one = sign("POST", "/t", JSON, BODY, nonce="same")
    if copy == "a relabelled copy":
        extra_input = one["Signature-Input"].replace("sig1=", "sig2=", 1)
        extra = one["Signature"].replace("sig1=", "sig2=", 1)
    else:
        other = sign(
            "POST", "/t", JSON, BODY, nonce="same", label="sig2",
            components=["@method", "@authority", "@path", "@query", "content-digest"],
        )  # fmt: skip
        extra_input, extra = other["Signature-Input"], other["Signature"]
    both = {
        **one,
        "Signature-Input": f"{one['Signature-Input']}, {extra_input}",
        "Signature": f"{one['Signature']}, {extra}",
    }
    assert_accepted(await call(protected.middleware, "POST", "/t", both, BODY), BODY)
    assert len(store) == 1


# == 10. Error responses ================================================================


@dataclass
class Outcome:
    """One E2 case after it ran: the middleware, the exchange, what was sent, prior accepts."""

    protected: Protected
    exchange: Exchange
    headers: dict[str, str]
    before: int = 0


async def _run(
    method: str = "POST",
    target: str = "/t",
    headers: dict[str, str] | None = None,
    body: bytes = BODY,
    *,
    options: dict[str, Any] | None = None,
    **scope_options: Any,
) -> Outcome:
    protected = protect(**(options or {}))
    sent = sign(method, target, JSON, body) if headers is None else headers
    exchange = await call(protected.middleware, method, target, sent, body, **scope_options)
    return Outcome(protected, exchange, sent)


async def _valid() -> Outcome:
    return await _run()


async def _unsigned() -> Outcome:
    return await _run(headers=dict(JSON))


async def _only_input() -> Outcome:
    signed = sign("POST", "/t", JSON, BODY)
    del signed["Signature"]
    return await _run(headers=signed)


async def _sf_syntax() -> Outcome:
    return await _run(headers={**sign("POST", "/t", JSON, BODY), "Signature-Input": "sig1=(("})


async def _unknown_param() -> Outcome:
    member = f'({BASE4} "content-type" "content-digest"){params()};foo=1'
    return await _run(
        headers=forge("POST", "/t", {**JSON, "content-digest": make_content_digest(BODY)}, member)
    )


async def _expired() -> Outcome:
    return await _run(headers=sign("POST", "/t", JSON, BODY, now=NOW - 301))


async def _future() -> Outcome:
    return await _run(headers=sign("POST", "/t", JSON, BODY, now=NOW + 31))


async def _unknown_key() -> Outcome:
    return await _run(headers=sign("POST", "/t", JSON, BODY, key=STRANGER))


async def _bad_mac() -> Outcome:
    return await _run(headers=sign("POST", "/t", JSON, BODY, key=WRONG_SECRET))


async def _coverage() -> Outcome:
    return await _run(
        headers=sign("POST", "/t", JSON, BODY, components=["@method", "@path", "content-digest"])
    )


async def _malformed_digest() -> Outcome:
    member = f'({BASE4} "content-type" "content-digest"){params()}'
    return await _run(
        headers=forge("POST", "/t", {**JSON, "content-digest": "sha-256=abc"}, member)
    )


async def _digest_mismatch() -> Outcome:
    return await _run(headers=sign("POST", "/t", JSON, BODY), body=BODY + b"!")


async def _replayed() -> Outcome:
    protected = protect()
    signed = sign("POST", "/t", JSON, BODY)
    first = await call(protected.middleware, "POST", "/t", signed, BODY)
    assert first.status_code == 200
    exchange = await call(protected.middleware, "POST", "/t", signed, BODY)
    return Outcome(protected, exchange, signed, before=1)


async def _too_large() -> Outcome:
    return await _run(options={"max_body_size": 10})


async def _two_hosts() -> Outcome:
    signed = sign("POST", "/t", JSON, BODY)
    protected = protect()
    scope = http_scope("POST", "/t", [*signed.items(), ("host", HOST)])
    exchange = await drive(protected.middleware, scope, body_messages(BODY))
    return Outcome(protected, exchange, signed)


def _resolver_down(key_id: str) -> HMACKey | None:
    raise ConnectionError("vault unreachable")


async def _key_lookup_failed() -> Outcome:
    return await _run(options={"keys": _resolver_down})


class _DownStore:
    async def add(self, key: str, ttl: float) -> bool:
        raise ConnectionError("redis down")


async def _store_down() -> Outcome:
    return await _run(options={"nonce_store": _DownStore()})


async def _tag_missing() -> Outcome:
    return await _run(options={"tag": "api"})


async def _non_ascii_covered() -> Outcome:
    member = f'({BASE4} "content-digest" "x-note"){params()}'
    forged = forge(
        "POST", "/t", {"content-digest": make_content_digest(BODY), "x-note": "ok"}, member
    )
    forged["x-note"] = "caf\xe9"
    return await _run(headers=forged)


# (id, case, status, the client's reason, the reason logged). An unknown key, an expired
# or future-dated signature and a replay are told as invalid_signature (K2/E1, issue 8);
# only the log tells them apart.
E2_CASES: list[tuple[str, Callable[[], Awaitable[Outcome]], int, str | None, str | None]] = [
    ("valid", _valid, 200, None, None),
    ("unsigned", _unsigned, 401, "missing_signature", "missing_signature"),
    ("only-signature-input", _only_input, 400, "malformed_signature", "malformed_signature"),
    ("sf-syntax-error", _sf_syntax, 400, "malformed_signature", "malformed_signature"),
    (
        "non-ascii-covered-value",
        _non_ascii_covered,
        400,
        "malformed_signature",
        "malformed_signature",
    ),
    ("unknown-parameter", _unknown_param, 401, "invalid_parameters", "invalid_parameters"),
    ("tag-missing", _tag_missing, 401, "invalid_parameters", "invalid_parameters"),
    ("expired", _expired, 401, "invalid_signature", "expired"),
    ("future", _future, 401, "invalid_signature", "not_yet_valid"),
    ("unknown-key", _unknown_key, 401, "invalid_signature", "unknown_key"),
    ("bad-mac", _bad_mac, 401, "invalid_signature", "invalid_signature"),
    ("insufficient-coverage", _coverage, 401, "insufficient_coverage", "insufficient_coverage"),
    ("malformed-digest", _malformed_digest, 400, "malformed_digest", "malformed_digest"),
    ("digest-mismatch", _digest_mismatch, 401, "digest_mismatch", "digest_mismatch"),
    ("replayed", _replayed, 401, "invalid_signature", "replayed"),
    ("body-too-large", _too_large, 413, "body_too_large", "body_too_large"),
    ("two-hosts", _two_hosts, 400, "malformed_request", "malformed_request"),
    ("key-lookup-failed", _key_lookup_failed, 503, "key_lookup_failed", "key_lookup_failed"),
    ("nonce-store-down", _store_down, 503, "nonce_store_unavailable", "nonce_store_unavailable"),
]


@pytest.mark.parametrize(
    ("case", "status", "reason", "logged"),
    [c[1:] for c in E2_CASES],
    ids=[c[0] for c in E2_CASES],
)
async def test_threat_E2_status_map(
    case: Callable[[], Awaitable[Outcome]],
    status: int,
    reason: str | None,
    logged: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each failure answers its mapped status and client reason, and logs its precise reason."""
    outcome = await case()
    exchange = outcome.exchange
    assert exchange.status_code == status
    if reason is None:
        assert outcome.protected.echo.count == 1
        assert logged_reasons(caplog) == []
        return
    assert_rejected(exchange, outcome.protected, reason, status, before=outcome.before)
    assert logged_reasons(caplog) == [logged]
    headers = exchange.headers
    assert headers["cache-control"] == "no-store"
    assert ("www-authenticate" in headers) == (status == 401)
    assert ("accept-signature" in headers) == (status == 401)
    assert ("retry-after" in headers) == (status == 503)
    if status == 503:
        assert headers["retry-after"] == "1"


async def test_threat_E2_verification_unavailable_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception inside verification is a 503, never a 500."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError

    monkeypatch.setattr("hmacguard._middleware.DigestVerifier", broken)
    monkeypatch.setattr("hmacguard._middleware.verify_content_digest", broken)
    outcome = await _valid()
    assert_rejected(outcome.exchange, outcome.protected, "verification_unavailable", 503)
    assert outcome.exchange.headers["retry-after"] == "1"


async def test_threat_E2_mutation_fuzz_statuses() -> None:
    """400 random single-byte changes to a signed POST: each is 400/401, never 5xx; no-ops pass."""
    rng = random.Random(9421)  # noqa: S311  (reproducible test mutations, not cryptography)
    protected = protect()
    accepted = 0
    for i in range(400):
        headers = sign("POST", "/t", JSON, BODY, nonce=f"fuzz-{i}")
        pairs = [(n.encode(), v.encode()) for n, v in headers.items()]
        body = bytearray(BODY)
        target = rng.randrange(len(pairs) + 1)
        if target == len(pairs):
            body[rng.randrange(len(body))] = rng.randrange(256)
        else:
            name, value = pairs[target]
            mutated = bytearray(value)
            mutated[rng.randrange(len(mutated))] = rng.randrange(32, 127)
            pairs[target] = (name, bytes(mutated))
        changed = bytes(body) != BODY or pairs != [
            (n.encode(), v.encode()) for n, v in headers.items()
        ]
        exchange = await call(protected.middleware, "POST", "/t", pairs, bytes(body))
        if changed:
            assert exchange.status_code in (400, 401), (pairs, body)
        else:
            assert exchange.status_code == 200
            accepted += 1
    assert protected.echo.untouched(accepted)


async def test_threat_K6_key_revoked_while_the_server_runs_is_refused_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through a key resolver (docs/concepts/keys.md, "Rotation"), a key removed from the
    current set is refused on the very next request, while the other key still passes."""
    current = dict(KEYS)
    protected = protect(keys=current.get)  # each request looks its key up anew
    assert_accepted(await call(protected.middleware, "POST", "/t", sign("POST", "/t"), b""))
    del current[KEY.key_id]
    refused = await call(protected.middleware, "POST", "/t", sign("POST", "/t"), b"")
    assert_hidden(refused, protected, caplog, "unknown_key", before=1)
    other = sign("POST", "/t", key=KEY2)
    assert_accepted(await call(protected.middleware, "POST", "/t", other, b""))


async def test_threat_K6_static_keys_are_copied_when_the_server_starts() -> None:
    """A mapping given as keys= is read once: changing it afterwards changes nothing (the
    documented way to revoke at run time is a resolver, as above)."""
    mine = dict(KEYS)
    protected = protect(keys=mine)
    del mine[KEY.key_id]
    assert_accepted(await call(protected.middleware, "POST", "/t", sign("POST", "/t"), b""))


async def test_threat_K2_unknown_key_bad_mac_stale_future_replayed_byte_identical(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unknown key, bad MAC, stale, future and replay get one 401; only the log tells them apart."""
    protected = protect()
    genuine = sign("POST", "/t", JSON, BODY)
    assert_accepted(await call(protected.middleware, "POST", "/t", genuine, BODY), BODY)
    refused = {
        "unknown_key": sign("POST", "/t", JSON, BODY, key=STRANGER),
        "invalid_signature": sign("POST", "/t", JSON, BODY, key=WRONG_SECRET),
        "expired": sign("POST", "/t", JSON, BODY, now=NOW - 301),
        "not_yet_valid": sign("POST", "/t", JSON, BODY, now=NOW + 31),
        "replayed": genuine,
    }
    answers = []
    for headers in refused.values():
        exchange = await call(protected.middleware, "POST", "/t", headers, BODY)
        answers.append((exchange.status_code, exchange.header_list, exchange.body))
    assert protected.echo.untouched(1)
    assert logged_reasons(caplog) == list(refused)  # five distinct causes, in order
    assert all(answer == answers[0] for answer in answers)
    status, header_list, body = answers[0]
    assert status == 401
    assert json.loads(body)["reason"] == "invalid_signature"
    assert (b"www-authenticate", b'Signature realm="hmacguard"') in header_list


async def test_threat_K2_alg_mismatch_does_not_tell_known_key_ids_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong alg under a known and under an unknown key id gets the same 401 answer."""
    protected = protect()
    answers = []
    for key_id in ("client-1", "nobody"):
        member = f'({BASE4}){params(f"n-{key_id}", keyid=key_id)};alg="hmac-sha512"'
        headers = forge("GET", "/t", {}, member, key=HMACKey(key_id, b"x" * 32))
        exchange = await call(protected.middleware, "GET", "/t", headers)
        answers.append((exchange.status_code, exchange.header_list, exchange.body))
    assert logged_reasons(caplog) == ["invalid_signature", "unknown_key"]
    assert protected.echo.untouched()
    assert answers[0] == answers[1]


async def test_threat_K2_uncomputable_base_does_not_tell_known_key_ids_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A covered value with a non-ASCII byte gets the same 400 under a known and an unknown
    key id: the base is judged before the key's existence can show."""
    protected = protect()
    answers = []
    for key_id in ("client-1", "nobody"):
        member = f'({BASE4} "x-note"){params(f"n-{key_id}", keyid=key_id)}'
        headers = forge("GET", "/t", {"x-note": "ok"}, member, key=HMACKey(key_id, b"x" * 32))
        headers["x-note"] = "caf\xe9"
        exchange = await call(protected.middleware, "GET", "/t", headers)
        answers.append((exchange.status_code, exchange.header_list, exchange.body))
    assert logged_reasons(caplog) == ["malformed_signature", "malformed_signature"]
    assert protected.echo.untouched()
    assert answers[0] == answers[1]
    assert answers[0][0] == 400


def _sw_delivery(secret: str, body: bytes, timestamp: int, msg_id: str) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed with the stdlib as the spec says."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + mac,
    }


async def test_threat_K2_webhook_bad_signature_stale_and_future_byte_identical(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a Standard Webhooks path a bad signature, a stale and a future timestamp answer alike."""
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    wrong = "whsec_" + base64.b64encode(b"o" * 32).decode()
    protected = protect(webhooks={"/a/hooks": StandardWebhooks(secret)})
    body = b'{"type": "invoice.paid"}'
    genuine = _sw_delivery(secret, body, NOW, "msg_ok")
    assert_accepted(await call(protected.middleware, "POST", "/a/hooks", genuine, body), body)
    refused = {
        "invalid_signature": _sw_delivery(wrong, body, NOW, "msg_1"),
        "expired": _sw_delivery(secret, body, NOW - 301, "msg_2"),
        "not_yet_valid": _sw_delivery(secret, body, NOW + 301, "msg_3"),
    }
    answers = []
    for headers in refused.values():
        exchange = await call(protected.middleware, "POST", "/a/hooks", headers, body)
        answers.append((exchange.status_code, exchange.header_list, exchange.body))
    assert protected.echo.untouched(1)
    assert logged_reasons(caplog) == list(refused)
    assert all(answer == answers[0] for answer in answers)
    status, header_list, answer = answers[0]
    assert status == 401
    assert json.loads(answer)["reason"] == "invalid_signature"
    assert (b"www-authenticate", b'Webhook realm="hmacguard"') in header_list


async def test_threat_E1_unknown_key_and_bad_mac_byte_identical() -> None:
    """Unknown key, wrong secret, truncated and garbage MACs give byte-identical 401 responses."""
    responses = []
    variants = [
        sign("GET", "/t", key=STRANGER),
        sign("GET", "/t", key=WRONG_SECRET),
        {**sign("GET", "/t"), "Signature": "sig1=:" + base64.b64encode(b"\0" * 16).decode() + ":"},
        {**sign("GET", "/t"), "Signature": "sig1=:" + base64.b64encode(b"\0" * 64).decode() + ":"},
        sign("GET", "/t", key=HMACKey("client-2", SECRET)),
    ]
    for headers in variants:
        protected = protect()
        exchange = await call(protected.middleware, "GET", "/t", headers)
        assert_rejected(exchange, protected, "invalid_signature")
        responses.append((exchange.status_code, exchange.header_list, exchange.body))
    assert all(r == responses[0] for r in responses)


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [c[1:4] for c in E2_CASES[1:]],
    ids=[c[0] for c in E2_CASES[1:]],
)
async def test_threat_E1_no_key_id_time_or_base_in_bodies(
    case: Callable[[], Awaitable[Outcome]], status: int, reason: str
) -> None:
    """No error body echoes a key id, the server time, a signature base or a header value."""
    outcome = await case()
    text = outcome.exchange.body.decode()
    assert set(json.loads(text)) == {"type", "title", "status", "detail", "reason"}
    forbidden = ["client-1", "nobody", str(NOW), "@signature-params", '"@method"', HOST]
    forbidden += [v for v in outcome.headers.values() if len(v) > 8]
    for needle in forbidden:
        assert needle not in text


async def test_threat_E1_same_reason_same_bytes_whatever_the_time() -> None:
    """Two expired signatures of different ages give the same body: no server time leaks."""
    bodies = set()
    for age in (301, 5000, 10**6):
        outcome = await _run(headers=sign("POST", "/t", JSON, BODY, now=NOW - age))
        bodies.add(outcome.exchange.body)
    assert len(bodies) == 1


async def test_threat_E1_logs_hold_no_secret_or_signature(caplog: pytest.LogCaptureFixture) -> None:
    """Across every E2 case, the logs name reasons but hold no secret, MAC or signature base."""
    caplog.set_level(logging.DEBUG)
    outcomes = [await case() for _, case, _, _, _ in E2_CASES]
    text = "\n".join([r.getMessage() for r in caplog.records] + [caplog.text])
    assert "unknown_key" in text
    assert "invalid_signature" in text
    for secret in (SECRET, SECRET2, WRONG_SECRET.secret):
        for form in (secret.decode(), base64.b64encode(secret).decode(), secret.hex()):
            assert form not in text
    for outcome in outcomes:
        signature = outcome.headers.get("Signature")
        if signature:
            mac = signature.split("=", 1)[1].strip(":")
            assert mac not in text
    assert "@signature-params" not in text


E3_CASES: list[tuple[str, dict[str, str | bytes], int, str]] = [
    ("signature-v1", {"Signature": "v1"}, 400, "malformed_signature"),
    ("signature-v1-commas", {"Signature": "v1,,"}, 400, "malformed_signature"),
    ("signature-v1-a-b", {"Signature": "v1,a,b"}, 400, "malformed_signature"),
    ("signature-empty-bytes", {"Signature": "sig1=::"}, 401, "invalid_signature"),
    ("signature-not-bytes", {"Signature": 'sig1="abc"'}, 400, "malformed_signature"),
    ("signature-bad-base64", {"Signature": "sig1=:!!!!:"}, 400, "malformed_signature"),
    ("input-unterminated", {"Signature-Input": 'sig1=("@method'}, 400, "malformed_signature"),
    ("input-empty-list", {"Signature-Input": "sig1=()"}, 401, "invalid_parameters"),
    ("input-not-inner-list", {"Signature-Input": "sig1=1"}, 400, "malformed_signature"),
    ("input-non-utf8", {"Signature-Input": b"sig1=(\xff\xfe)"}, 400, "malformed_signature"),
    ("signature-non-utf8", {"Signature": b"sig1=:\xff\xfe:"}, 400, "malformed_signature"),
    (
        "keyid-non-utf8",
        {"Signature-Input": b'sig1=("@method");created=1;keyid="\xc3\xa9"'},
        400,
        "malformed_signature",
    ),
    (
        "created-float",
        {"Signature-Input": 'sig1=("@method");created=1.5;keyid="client-1";nonce="n"'},
        401,
        "invalid_parameters",
    ),
    (
        "created-16-digits",
        {"Signature-Input": 'sig1=("@method");created=1234567890123456;keyid="client-1"'},
        400,
        "malformed_signature",
    ),
    (
        "created-negative",
        {"Signature-Input": 'sig1=("@method");created=-1;keyid="client-1";nonce="n"'},
        401,
        "invalid_parameters",
    ),
    ("content-digest-non-utf8", {"Content-Digest": b"sha-256=:\xff:"}, 400, "malformed_signature"),
]


@pytest.mark.parametrize(
    ("override", "status", "reason"), [c[1:] for c in E3_CASES], ids=[c[0] for c in E3_CASES]
)
async def test_threat_E3_hostile_signature_fields_are_4xx(
    override: dict[str, str | bytes], status: int, reason: str
) -> None:
    """Garbage, non-UTF-8 or overflowing signature fields answer 400/401, never 500 or 503."""
    protected = protect()
    signed = sign("POST", "/t", JSON, BODY)
    pairs = [(n.encode(), v.encode()) for n, v in signed.items() if n not in override]
    pairs += [
        (n.lower().encode(), v if isinstance(v, bytes) else v.encode()) for n, v in override.items()
    ]
    exchange = await call(protected.middleware, "POST", "/t", pairs, BODY)
    assert_rejected(exchange, protected, reason, status)


async def test_threat_E3_non_utf8_body_is_not_decoded() -> None:
    """A signed non-UTF-8 body verifies as bytes; the same body under a wrong digest is 401."""
    protected = protect()
    body = b"\xff\xfe\x00binary\x80"
    headers = sign("POST", "/t", {"content-type": "application/octet-stream"}, body)
    assert_accepted(await call(protected.middleware, "POST", "/t", headers, body), body)
    other = sign("POST", "/t", {"content-type": "application/octet-stream"}, body)
    exchange = await call(protected.middleware, "POST", "/t", other, body[::-1])
    assert_rejected(exchange, protected, "digest_mismatch", before=1)


class _Flaky:
    """A nonce store that raises the given exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def add(self, key: str, ttl: float) -> bool:
        raise self.exc


async def _async_resolver_down(key_id: str) -> HMACKey | None:
    raise TimeoutError


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ("key-lookup", "key_lookup_failed"),
        ("async-key-lookup", "key_lookup_failed"),
        ("resolver-wrong-type", "key_lookup_failed"),
        ("store", "nonce_store_unavailable"),
        ("store-timeout", "nonce_store_unavailable"),
        ("digest", "verification_unavailable"),
        ("verifier", "verification_unavailable"),
        ("replay-key", "verification_unavailable"),
    ],
)
async def test_threat_E4_fail_closed_at_every_step(
    step: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception at any internal step is a 503 through httpx, and the app is never called."""
    options: dict[str, Any] = {}
    if step == "key-lookup":
        options["keys"] = _resolver_down
    elif step == "async-key-lookup":
        options["keys"] = _async_resolver_down
    elif step == "resolver-wrong-type":
        options["keys"] = lambda key_id: SECRET
    elif step == "store":
        options["nonce_store"] = _Flaky(OSError("down"))
    elif step == "store-timeout":
        options["nonce_store"] = _Flaky(asyncio.TimeoutError())
    elif step == "digest":
        monkeypatch.setattr(hmacguard.DigestVerifier, "verify", lambda self: 1 / 0)
        monkeypatch.setattr("hmacguard._middleware.verify_content_digest", lambda *a: 1 / 0)
    elif step == "replay-key":
        monkeypatch.setattr("hmacguard._middleware.nonce_key", lambda *a: 1 / 0)
    protected = protect(**options)
    if step == "verifier":
        broken = lambda *a, **k: 1 / 0  # noqa: E731
        monkeypatch.setattr(protected.middleware.verifier, "verify_headers", broken)
        monkeypatch.setattr(protected.middleware.verifier, "_verify_headers_prepared", broken)
        monkeypatch.setattr(protected.middleware.verifier, "_fast_asgi", broken)
    async with protected.client() as client:
        response = await client.post("/t", content=BODY, headers=sign("POST", "/t", JSON, BODY))
    assert response.status_code == 503
    assert problem(response)["reason"] == reason
    assert response.headers["retry-after"] == "1"
    assert protected.echo.untouched()
