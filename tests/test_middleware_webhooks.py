"""SignatureMiddleware(webhooks=...): webhook paths verified by a profile, the rest by RFC 9421.

These tests drive the middleware's webhook mechanics with a small profile written
here (an HMAC over ``{timestamp}.{body}`` in three headers), so each rule of the
middleware is checked on its own: headers before the body, the profile's body
limit, exact bytes to the app, deduplication (200 ``duplicate``, app not called),
fail-closed store errors, and RFC 9421 routes unchanged beside the webhook paths.
The real profiles (Stripe, GitHub, Slack, Standard Webhooks) have their own tests.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, NamedTuple

import pytest

from asgi_helpers import (
    NOW,
    EchoApp,
    FakeClock,
    call,
    drive,
    http_scope,
    logged_reasons,
    problem,
    protect,
    sign,
)
from hmacguard import (
    Expired,
    InvalidSignature,
    MalformedSignature,
    MemoryNonceStore,
    MissingSignature,
    SignatureMiddleware,
)
from hmacguard._message import collect_headers

WEBHOOK_SECRET = b"w" * 32
PATH = "/a/hooks/test"


class Delivery(NamedTuple):
    scheme: str
    delivery_id: str | None
    timestamp: int | None
    dedupe_key: str
    secret_index: int


class HexProfile:
    """A minimal webhook scheme: X-Test-Id, X-Test-Ts, X-Test-Sig = hex HMAC of ``ts.body``."""

    scheme = "test"
    dedupe_ttl = 600.0

    def __init__(self, max_body_size: int | None = None) -> None:
        self.max_body_size = max_body_size
        self.header_checks = 0

    def check_headers(self, headers: Any, *, now: float | None = None) -> None:
        self.header_checks += 1
        self._read(headers, NOW if now is None else now)

    def verify(self, headers: Any, body: bytes, *, now: float | None = None) -> Delivery:
        delivery_id, timestamp, signature = self._read(headers, NOW if now is None else now)
        expected = hmac.new(WEBHOOK_SECRET, f"{timestamp}.".encode() + body, hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature):
            raise InvalidSignature("the webhook signature does not match")
        return Delivery(self.scheme, delivery_id, timestamp, delivery_id, 0)

    @staticmethod
    def _read(headers: Any, now: float) -> tuple[str, int, str]:
        fields: Mapping[str, list[str]] = collect_headers(headers)
        try:
            delivery_id, stamp, signature = (
                fields[name][0] for name in ("x-test-id", "x-test-ts", "x-test-sig")
            )
        except KeyError:
            raise MissingSignature("a webhook header is missing") from None
        if not stamp.isdigit():
            raise MalformedSignature("the timestamp is not a number")
        if abs(now - int(stamp)) > 300:
            raise Expired("the timestamp is outside the window")
        return delivery_id, int(stamp), signature


def deliver(body: bytes, delivery_id: str = "d-1", timestamp: int = NOW) -> dict[str, str]:
    """The headers of a delivery signed with the test scheme."""
    mac = hmac.new(WEBHOOK_SECRET, f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"x-test-id": delivery_id, "x-test-ts": str(timestamp), "x-test-sig": mac.hexdigest()}


def protected(profile: HexProfile | None = None, **options: Any) -> Any:
    return protect(webhooks={"/a/hooks/test": profile or HexProfile()}, **options)


async def test_a_valid_delivery_reaches_the_app_with_its_exact_bytes() -> None:
    """A delivery signed by the profile's scheme reaches the app once, body byte for byte."""
    setup = protected()
    body = b'{"a":  1,\n "b": "\\u00e9"}'
    exchange = await call(setup.middleware, "POST", PATH, deliver(body), body, chunk_size=5)
    assert exchange.status_code == 200
    assert exchange.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert setup.echo.count == 1


async def test_the_app_finds_the_verified_delivery_in_scope_state() -> None:
    """scope["state"]["webhook"] is the profile's VerifiedWebhook."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"]["webhook"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = SignatureMiddleware(
        app, keys={"client-1": b"k" * 32}, webhooks={"/hooks": HexProfile()}, clock=lambda: NOW
    )
    exchange = await call(middleware, "POST", "/hooks", deliver(b"x", "d-9"), b"x")
    assert exchange.status_code == 204
    assert seen == [Delivery("test", "d-9", NOW, "d-9", 0)]


async def test_a_redelivery_is_acknowledged_without_reaching_the_app() -> None:
    """The same delivery twice: the second gets 200 "duplicate" and the app is not called again."""
    setup = protected()
    body = b"{}"
    first = await call(setup.middleware, "POST", PATH, deliver(body), body)
    second = await call(setup.middleware, "POST", PATH, deliver(body), body)
    assert first.status_code == 200
    assert (second.status_code, second.json()) == (200, {"status": "duplicate"})
    assert setup.echo.count == 1


async def test_a_bad_signature_is_refused_with_a_webhook_challenge() -> None:
    """A wrong MAC is 401 invalid_signature, with WWW-Authenticate and no Accept-Signature."""
    setup = protected()
    headers = deliver(b"original")
    exchange = await call(setup.middleware, "POST", PATH, headers, b"tampered")
    assert (exchange.status_code, problem(exchange)["reason"]) == (401, "invalid_signature")
    assert exchange.headers["www-authenticate"] == 'Webhook realm="hmacguard"'
    assert "accept-signature" not in exchange.headers
    assert setup.echo.untouched()


async def test_a_failed_delivery_is_not_remembered() -> None:
    """A rejected delivery does not burn its id: the genuine one still gets through afterwards."""
    setup = protected()
    await call(setup.middleware, "POST", PATH, deliver(b"genuine"), b"forged")
    exchange = await call(setup.middleware, "POST", PATH, deliver(b"genuine"), b"genuine")
    assert exchange.status_code == 200
    assert setup.echo.count == 1


@pytest.mark.parametrize(
    ("headers", "status", "reason", "logged"),
    [
        ({}, 401, "missing_signature", "missing_signature"),
        (
            {"x-test-id": "d", "x-test-ts": "soon", "x-test-sig": "00"},
            400,
            "malformed_signature",
            "malformed_signature",
        ),
        # A stale delivery is told invalid_signature, like a bad MAC (THREATS K2/E1).
        (
            {"x-test-id": "d", "x-test-ts": str(NOW - 3600), "x-test-sig": "00"},
            401,
            "invalid_signature",
            "expired",
        ),
    ],
    ids=["missing", "malformed", "stale"],
)
async def test_header_failures_are_answered_before_the_body_is_read(
    headers: dict[str, str],
    status: int,
    reason: str,
    logged: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Missing, malformed or stale headers are refused without a single receive() call."""
    setup = protected()
    scope = http_scope("POST", PATH, {**headers, "content-length": "2"})
    exchange = await drive(setup.middleware, scope, [{"type": "http.request", "body": b"{}"}])
    assert (exchange.status_code, problem(exchange)["reason"]) == (status, reason)
    assert logged_reasons(caplog) == [logged]
    assert exchange.receive_calls == 0
    assert setup.echo.untouched()


@pytest.mark.parametrize("value", ["abc", "-1", "\xb2"])
async def test_a_bad_content_length_on_a_webhook_path_is_400(value: str) -> None:
    """A Content-Length that is not ASCII digits is a malformed request, read no further."""
    setup = protected()
    scope = http_scope("POST", PATH, {**deliver(b"{}"), "content-length": value})
    exchange = await drive(setup.middleware, scope, [{"type": "http.request", "body": b"{}"}])
    assert (exchange.status_code, problem(exchange)["reason"]) == (400, "malformed_request")
    assert exchange.receive_calls == 0
    assert setup.echo.untouched()


async def test_a_content_length_padded_with_whitespace_is_its_number_on_a_webhook_path() -> None:
    """SP and HTAB around a value are not part of it (RFC 9110 §5.5; httptools passes on
    those after it): a padded Content-Length over the profile's limit is 413 unread,
    and one at the limit delivers the body."""
    setup = protected(HexProfile(max_body_size=10))
    body = b"x" * 10
    over = http_scope("POST", PATH, {**deliver(body, "d-1"), "content-length": " 11\t"})
    refused = await drive(setup.middleware, over, [{"type": "http.request", "body": body}])
    assert (refused.status_code, problem(refused)["reason"]) == (413, "body_too_large")
    assert refused.receive_calls == 0
    exact = http_scope("POST", PATH, {**deliver(body, "d-2"), "content-length": "10 \t"})
    delivered = await drive(setup.middleware, exact, [{"type": "http.request", "body": body}])
    assert delivered.status_code == 200
    assert setup.echo.count == 1


@pytest.mark.parametrize("host", ["evil.example/admin", "a.example#x", "u@a.example", "", "a b"])
async def test_a_host_that_is_not_host_port_on_a_webhook_path_is_400(host: str) -> None:
    """A delivery's MAC does not cover the Host, but the app may read it (links,
    redirects): one that is not host[:port] (RFC 9110 §7.2) is refused as on any
    other path, before the profile or the body is read, and nothing is recorded."""
    profile = HexProfile()
    setup = protected(profile)
    scope = http_scope("POST", PATH, deliver(b"{}"), host=host)
    exchange = await drive(setup.middleware, scope, [{"type": "http.request", "body": b"{}"}])
    assert (exchange.status_code, problem(exchange)["reason"]) == (400, "malformed_request")
    assert (exchange.receive_calls, profile.header_checks) == (0, 0)
    assert setup.echo.untouched()
    good = await call(setup.middleware, "POST", PATH, deliver(b"{}"), b"{}", host=" a.example\t")
    assert good.status_code == 200  # the same delivery, not spent; padding is not the Host


@pytest.mark.parametrize(("read_for", "accepted"), [(1.0, True), (2.5, False)])
async def test_a_delivery_must_still_be_fresh_when_it_is_recorded(
    read_for: float, accepted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """dedupe_ttl counts from the time a delivery is checked and covers its window from
    there: a copy checked in time but held back while its body is read would be recorded
    after the first copy was forgotten, and processed twice. Its timestamp is checked
    again when it is recorded: 1 s inside the window and read in 1 s, delivered; read
    in 2.5 s, refused (logged as expired), the app untouched and nothing recorded."""
    clock = FakeClock(NOW + 299)  # the test profile's tolerance is 300 s
    setup = protected(clock=clock, body_timeout=None)
    body = b'{"id":1}'

    async def slow_body() -> Any:
        clock.advance(read_for)
        yield {"type": "http.request", "body": body}

    scope = http_scope("POST", PATH, {**deliver(body), "content-length": str(len(body))})
    exchange = await drive(setup.middleware, scope, slow_body())
    if accepted:
        assert exchange.status_code == 200
        assert setup.echo.count == 1
        return
    assert (exchange.status_code, problem(exchange)["reason"]) == (401, "invalid_signature")
    assert logged_reasons(caplog) == ["expired"]
    assert setup.echo.untouched()
    assert len(setup.store) == 0


async def test_content_length_with_transfer_encoding_on_a_webhook_path_is_400() -> None:
    """CL and TE together (RFC 9112 §6.3) are refused on webhook paths too, body unread."""
    setup = protected()
    framing = {"content-length": "2", "transfer-encoding": "chunked"}
    scope = http_scope("POST", PATH, {**deliver(b"{}"), **framing})
    exchange = await drive(setup.middleware, scope, [{"type": "http.request", "body": b"{}"}])
    assert (exchange.status_code, problem(exchange)["reason"]) == (400, "malformed_request")
    assert exchange.receive_calls == 0
    assert setup.echo.untouched()


async def test_threat_M4_a_field_appended_while_a_delivery_is_read_is_refused() -> None:
    """A header the server appends to the scope while the body is read (uvicorn's httptools
    puts request trailers there) is never verified: 400, the app not called, nothing spent."""
    setup = protected()
    body = b'{"a":1}'
    scope = http_scope("POST", PATH, {**deliver(body), "content-length": str(len(body))})

    def messages() -> Any:
        scope["headers"].append((b"x-test-sig", b"0" * 64))  # a trailer, after the headers
        yield {"type": "http.request", "body": body, "more_body": False}

    exchange = await drive(setup.middleware, scope, messages())
    assert (exchange.status_code, problem(exchange)["reason"]) == (400, "malformed_request")
    assert setup.echo.untouched()
    scope["headers"].pop()
    retry = await call(setup.middleware, "POST", PATH, deliver(body), body)
    assert retry.status_code == 200  # the delivery id was not spent


async def test_the_profile_body_limit_replaces_the_middleware_default() -> None:
    """A profile's max_body_size applies on its path: over it is 413, under it passes."""
    setup = protected(HexProfile(max_body_size=10), max_body_size=1_000_000)
    small, large = b"x" * 10, b"x" * 11
    ok = await call(setup.middleware, "POST", PATH, deliver(small, "d-1"), small)
    announced = await call(setup.middleware, "POST", PATH, deliver(large, "d-2"), large)
    streamed = await call(
        setup.middleware,
        "POST",
        PATH,
        {**deliver(large, "d-3"), "transfer-encoding": "chunked"},
        large,
        chunk_size=4,
        content_length=False,
    )
    assert ok.status_code == 200
    assert (announced.status_code, problem(announced)["reason"]) == (413, "body_too_large")
    assert announced.receive_calls == 0
    assert (streamed.status_code, problem(streamed)["reason"]) == (413, "body_too_large")
    assert setup.echo.count == 1


async def test_a_profile_without_a_limit_uses_the_middleware_max_body_size() -> None:
    """Without its own limit, a profile's path gets the middleware's max_body_size."""
    setup = protected(HexProfile(), max_body_size=8)
    body = b"x" * 9
    exchange = await call(setup.middleware, "POST", PATH, deliver(body), body)
    assert (exchange.status_code, problem(exchange)["reason"]) == (413, "body_too_large")


async def test_rfc9421_routes_stay_protected_beside_webhook_paths() -> None:
    """Other paths still need an RFC 9421 signature; a webhook signature does not open them."""
    setup = protected()
    body = b"{}"
    webhook_signed = await call(setup.middleware, "POST", "/a/other", deliver(body), body)
    headers = sign("POST", "/a/other", body=body)
    rfc_signed = await call(setup.middleware, "POST", "/a/other", headers, body)
    assert (webhook_signed.status_code, problem(webhook_signed)["reason"]) == (
        401,
        "missing_signature",
    )
    assert rfc_signed.status_code == 200
    assert setup.echo.count == 1


async def test_an_rfc9421_signature_does_not_open_a_webhook_path() -> None:
    """A request signed for the API is refused on the webhook path: the profile decides there."""
    setup = protected()
    headers = sign("POST", PATH, body=b"{}")
    exchange = await call(setup.middleware, "POST", PATH, headers, b"{}")
    assert (exchange.status_code, problem(exchange)["reason"]) == (401, "missing_signature")
    assert setup.echo.untouched()


@pytest.mark.parametrize(
    ("path", "webhook"),
    [
        ("/a/hooks/test", True),
        ("/a/hooks/test/", True),
        ("/a/hooks/test/sub", True),
        ("/a/hooks/testing", False),
        ("/a/hooks", False),
    ],
)
async def test_webhook_paths_are_prefixes_on_segment_boundaries(path: str, webhook: bool) -> None:
    """A webhook prefix covers its path and what is below it, not look-alike siblings."""
    profile = HexProfile()
    setup = protected(profile)
    await call(setup.middleware, "POST", path, deliver(b"{}"), b"{}")
    assert (profile.header_checks == 1) is webhook


@pytest.mark.parametrize(
    ("path", "root_path", "webhook"),
    [
        ("/a/hooks/test/../../admin", "", False),
        ("/a/hooks/test/%2e%2e/admin", "", False),
        ("/a/hooks/test/./x", "", False),
        ("/api/a/hooks/test", "/api", True),
        ("/api/a/hooks/test/..", "/api", False),
    ],
)
async def test_webhook_paths_are_the_router_s_and_never_leave_the_prefix(
    path: str, root_path: str, webhook: bool
) -> None:
    """A webhook path is matched as the router matches (without uvicorn's --root-path),
    and a "." or ".." segment is no webhook path: the delivery's MAC covers its body,
    not its path, so it must not carry a request out of the prefix. Such a request is
    verified as any other (here: unsigned, 401)."""
    profile = HexProfile()
    setup = protected(profile)
    exchange = await call(
        setup.middleware, "POST", path, deliver(b"{}"), b"{}", root_path=root_path
    )
    assert (profile.header_checks == 1) is webhook
    if not webhook:
        assert exchange.status_code == 401
        assert setup.echo.untouched()


async def test_the_longest_prefix_wins() -> None:
    """Nested webhook prefixes: the most specific profile verifies the request."""
    outer, inner = HexProfile(), HexProfile()
    setup = protect(webhooks={"/a/hooks": outer, "/a/hooks/test": inner})
    await call(setup.middleware, "POST", PATH, deliver(b"{}"), b"{}")
    assert (outer.header_checks, inner.header_checks) == (0, 1)


async def test_a_nonce_store_outage_fails_closed() -> None:
    """A store that raises: 503 with Retry-After, and the app is not called."""

    class Broken:
        async def add(self, key: str, ttl: float) -> bool:
            raise ConnectionError("down")

    setup = protected(nonce_store=Broken())
    exchange = await call(setup.middleware, "POST", PATH, deliver(b"{}"), b"{}")
    assert (exchange.status_code, problem(exchange)["reason"]) == (503, "nonce_store_unavailable")
    assert exchange.headers["retry-after"] == "1"
    assert setup.echo.untouched()


async def test_deliveries_are_deduplicated_even_without_nonces_for_rfc9421() -> None:
    """require_nonce=False turns off RFC 9421 replay checks, not webhook deduplication."""
    setup = protected(nonce_store=None, require_nonce=False)
    for _ in range(2):
        await call(setup.middleware, "POST", PATH, deliver(b"{}"), b"{}")
    assert setup.echo.count == 1


async def test_deliveries_share_the_configured_store_under_their_own_keys() -> None:
    """A delivery id equal to an RFC 9421 nonce does not collide with it in the store."""
    store = MemoryNonceStore()
    setup = protected(nonce_store=store)
    await call(setup.middleware, "POST", PATH, deliver(b"{}", "nonce-1"), b"{}")
    assert len(store) == 1
    assert await store.add("8:client-1:nonce-1", 60)


async def test_two_endpoints_of_one_scheme_keep_their_deliveries_apart() -> None:
    """Two webhook paths of the same scheme share a store: a delivery id seen on one is
    no duplicate on the other (a provider sends one message, under one id, to every
    endpoint subscribed; two senders may pick the same id). Their keys were the
    scheme's alone, so the second endpoint answered "duplicate" and its app never ran."""
    setup = protect(webhooks={"/a/hooks/test": HexProfile(), "/a/other/hooks": HexProfile()})
    for path in ("/a/hooks/test", "/a/other/hooks"):
        exchange = await call(setup.middleware, "POST", path, deliver(b"{}", "d-1"), b"{}")
        assert exchange.status_code == 200, exchange.body
        assert exchange.json().get("status") != "duplicate"
    assert setup.echo.count == 2
    again = await call(setup.middleware, "POST", "/a/other/hooks", deliver(b"{}", "d-1"), b"{}")
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert setup.echo.count == 2


async def test_a_client_leaving_mid_body_gets_no_response_and_burns_nothing() -> None:
    """http.disconnect while the body arrives: no response, no app, the delivery id still unused."""
    setup = protected()
    scope = http_scope("POST", PATH, {**deliver(b"full"), "content-length": "4"})
    messages = [{"type": "http.request", "body": b"fu", "more_body": True}]
    exchange = await drive(setup.middleware, scope, messages)
    assert exchange.sent == []
    retry = await call(setup.middleware, "POST", PATH, deliver(b"full"), b"full")
    assert retry.status_code == 200


async def test_a_websocket_on_a_webhook_path_is_refused() -> None:
    """Webhook paths take HTTP only: a WebSocket handshake there is closed with 1008."""
    setup = protected()
    scope = http_scope("GET", PATH, deliver(b""), kind="websocket", scheme="ws")
    exchange = await drive(setup.middleware, scope, [{"type": "websocket.connect"}])
    assert exchange.sent == [{"type": "websocket.close", "code": 1008}]
    assert setup.echo.untouched()


@pytest.mark.parametrize(
    ("webhooks", "error"),
    [
        ({"hooks": HexProfile()}, ValueError),
        ({"/hooks/*": HexProfile()}, ValueError),
        ({"/hooks": object()}, TypeError),
        ([("/hooks", HexProfile())], TypeError),
    ],
)
def test_webhook_configuration_is_checked_at_construction(webhooks: Any, error: type) -> None:
    """Paths must be '/'-prefixes and values profiles; anything else fails at start-up."""
    with pytest.raises(error):
        SignatureMiddleware(EchoApp(), keys={"client-1": b"k" * 32}, webhooks=webhooks)


def _paths_option(option: str, paths: list[str]) -> dict[str, Any]:
    """``exempt=paths``, or ``body_limits`` with a limit for each of them."""
    return {option: paths if option == "exempt" else dict.fromkeys(paths, 10)}


@pytest.mark.parametrize("option", ["exempt", "body_limits"])
@pytest.mark.parametrize(
    ("paths", "webhook"),
    [
        (["/hooks"], "/hooks"),
        (["/hooks/extra"], "/hooks"),
        (["/hooks/*"], "/hooks"),
        (["/hoo*"], "/hooks"),
        (["/*"], "/hooks"),
        (["/hooks*"], "/hooks/stripe"),
        (["/health"], "/"),
    ],
)
def test_an_exempt_or_limited_path_under_a_webhook_path_is_refused_at_construction(
    option: str, paths: list[str], webhook: str
) -> None:
    """An exemption or a body limit a webhook path also matches would do nothing
    there (webhooks are verified first, with their profile's limit): refused at
    start-up, naming both."""
    with pytest.raises(ValueError, match=f"{option} .*webhook path"):
        SignatureMiddleware(
            EchoApp(),
            keys={"client-1": b"k" * 32},
            webhooks={webhook: HexProfile()},
            **_paths_option(option, paths),
        )


@pytest.mark.parametrize("option", ["exempt", "body_limits"])
@pytest.mark.parametrize("paths", [["/hooksmith"], ["/hookshot*"], ["/health", "/static/*"]])
def test_exempt_or_limited_paths_beside_a_webhook_path_are_kept(
    option: str, paths: list[str]
) -> None:
    """Paths that only share the webhook path's first letters are not under it."""
    middleware = SignatureMiddleware(
        EchoApp(),
        keys={"client-1": b"k" * 32},
        webhooks={"/hooks": HexProfile()},
        **_paths_option(option, paths),
    )
    assert middleware.verifier is not None


async def test_an_exempt_callable_is_not_asked_about_a_webhook_path() -> None:
    """exempt= answering True for everything: a webhook delivery is still verified, and an
    unsigned one never reaches the app."""
    asked: list[str] = []

    def exempt(scope: Any) -> bool:
        asked.append(scope["path"])
        return True

    setup = protected(exempt=exempt)
    unsigned = await call(setup.middleware, "POST", PATH + "/x", [], b'{"forged":true}')
    assert unsigned.status_code == 401
    assert setup.echo.untouched()
    assert asked == []
    signed = await call(setup.middleware, "POST", PATH, deliver(b"{}"), b"{}")
    assert signed.status_code == 200
    assert setup.echo.count == 1
    other = await call(setup.middleware, "GET", "/t/elsewhere", [], b"")
    assert other.status_code == 200  # the callable still decides everywhere else
    assert asked == ["/t/elsewhere"]


def _failing_app(outcome: str) -> Any:
    """An app that fails on its first call (raises, or answers ``outcome``), then answers 200."""
    calls = {"n": 0}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1 and outcome == "raise":
            raise RuntimeError("the handler crashed")
        status = int(outcome) if calls["n"] == 1 and outcome.isdigit() else 200
        if calls["n"] == 1 and outcome == "silent":
            return
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app.calls = calls  # type: ignore[attr-defined]
    return app


@pytest.mark.parametrize(
    "outcome", ["raise", "500", "503", "silent", "307", "400", "404", "409", "422", "429"]
)
async def test_a_delivery_the_app_failed_on_is_forgotten(outcome: str) -> None:
    """App raised, answered anything but 2xx, or nothing: every provider counts that
    as a failed delivery and retries, so the retry reaches the app, not 'duplicate'."""
    app = _failing_app(outcome)
    middleware = SignatureMiddleware(
        app, keys={"client-1": b"k" * 32}, webhooks={"/hooks": HexProfile()}, clock=lambda: NOW
    )
    if outcome == "raise":
        with pytest.raises(RuntimeError):
            await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    else:
        await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    retry = await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    assert retry.status_code == 200
    assert retry.body == b""  # the app's own answer, not {"status": "duplicate"}
    assert app.calls["n"] == 2
    third = await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    assert third.json() == {"status": "duplicate"}
    assert app.calls["n"] == 2


@pytest.mark.parametrize("outcome", ["200", "202", "204"])
async def test_a_delivery_the_app_answered_stays_recorded(outcome: str) -> None:
    """A 2xx from the app is a delivery: the redelivery is acknowledged as a duplicate."""
    app = _failing_app(outcome)
    middleware = SignatureMiddleware(
        app, keys={"client-1": b"k" * 32}, webhooks={"/hooks": HexProfile()}, clock=lambda: NOW
    )
    await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    retry = await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    assert retry.json() == {"status": "duplicate"}
    assert app.calls["n"] == 1


async def test_a_store_without_discard_keeps_failed_deliveries() -> None:
    """A custom store with only add(): a failed delivery's redelivery counts as a duplicate."""

    class AddOnly:
        def __init__(self) -> None:
            self.keys: set[str] = set()

        async def add(self, key: str, ttl: float) -> bool:
            fresh = key not in self.keys
            self.keys.add(key)
            return fresh

    app = _failing_app("500")
    middleware = SignatureMiddleware(
        app,
        keys={"client-1": b"k" * 32},
        webhooks={"/hooks": HexProfile()},
        nonce_store=AddOnly(),
        clock=lambda: NOW,
    )
    await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    retry = await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    assert retry.json() == {"status": "duplicate"}
    assert app.calls["n"] == 1


async def test_a_store_that_cannot_forget_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """discard() raising after a failed delivery: a warning, and the app's answer stands."""

    class Stubborn(MemoryNonceStore):
        async def discard(self, key: str) -> None:
            raise ConnectionError("down")

    app = _failing_app("500")
    middleware = SignatureMiddleware(
        app,
        keys={"client-1": b"k" * 32},
        webhooks={"/hooks": HexProfile()},
        nonce_store=Stubborn(),
        clock=lambda: NOW,
    )
    exchange = await call(middleware, "POST", "/hooks", deliver(b"{}"), b"{}")
    assert exchange.status_code == 500
    assert "could not forget a failed delivery (ConnectionError)" in caplog.text


async def test_threat_W4_a_slack_retry_of_an_event_is_acknowledged_without_the_app() -> None:
    """Slack re-signs a retry (new timestamp): the middleware still answers it as a duplicate."""
    from hmacguard.webhooks import Slack  # noqa: PLC0415  (this test's only real profile)

    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    setup = protect(webhooks={"/a/hooks/slack": Slack(secret, clock=lambda: NOW)})
    body = b'{"type":"event_callback","event_id":"Ev9","event":{"type":"app_mention"}}'

    def slack_headers(timestamp: int) -> dict[str, str]:
        base = f"v0:{timestamp}:".encode() + body
        mac = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
        return {"x-slack-request-timestamp": str(timestamp), "x-slack-signature": f"v0={mac}"}

    first = await call(setup.middleware, "POST", "/a/hooks/slack", slack_headers(NOW), body)
    retry_headers = slack_headers(NOW + 60) | {"x-slack-retry-num": "1"}
    retry = await call(setup.middleware, "POST", "/a/hooks/slack", retry_headers, body)
    assert first.status_code == 200
    assert (retry.status_code, retry.json()) == (200, {"status": "duplicate"})
    assert setup.echo.count == 1


def test_threat_W7_a_secret_shared_by_two_webhook_paths_is_flagged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One secret on two endpoints (even across schemes) is logged at construction."""
    from hmacguard.webhooks import GitHub, Slack  # noqa: PLC0415

    shared = "a-secret-used-twice-0123456789abcdef"
    SignatureMiddleware(
        EchoApp(),
        keys={"client-1": b"k" * 32},
        webhooks={"/hooks/github": GitHub(shared), "/hooks/slack": Slack([shared, "other-1234"])},
    )
    assert "webhook paths '/hooks/github' and '/hooks/slack' share a secret" in caplog.text
    assert shared not in caplog.text


def test_threat_W7_distinct_secrets_are_not_flagged(caplog: pytest.LogCaptureFixture) -> None:
    """Each endpoint with its own secret: nothing is logged."""
    from hmacguard.webhooks import GitHub, Slack  # noqa: PLC0415

    SignatureMiddleware(
        EchoApp(),
        keys={"client-1": b"k" * 32},
        webhooks={"/hooks/github": GitHub("secret-one-0123456789"), "/hooks/slack": Slack("two")},
    )
    assert "share a secret" not in caplog.text


# -- replay keys that the sender's header cannot vary ------------------------------------------

STRIPE_NEW = "whsec_rotation_new_secret_0123456789"
STRIPE_OLD = "whsec_rotation_old_secret_9876543210"
STRIPE_BODY = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}'


def _stripe_v1(secret: str, t: int) -> str:
    signed = f"{t}.".encode() + STRIPE_BODY
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _stripe_headers(*items: str) -> dict[str, str]:
    return {"stripe-signature": ",".join(items), "content-type": "application/json"}


def _stripe_setup() -> Any:
    from hmacguard.webhooks import Stripe  # noqa: PLC0415

    profile = Stripe([STRIPE_NEW, STRIPE_OLD], clock=lambda: NOW)
    return protect(webhooks={"/a/hooks/stripe": profile})


@pytest.mark.parametrize(
    "variant",
    [
        "same",
        "reordered",
        "only_old",
        "only_new",
        "upper_case_hex",
        "junk_v1_and_v0_added",
        "t_repeated",
    ],
)
async def test_stripe_replay_with_a_rewritten_header_is_a_duplicate(variant: str) -> None:
    """A rotation delivery replayed with its v1 values reordered, dropped, re-cased or padded
    with junk is still the same delivery: 200 duplicate, and the app runs exactly once."""
    setup = _stripe_setup()
    t, new, old = NOW, _stripe_v1(STRIPE_NEW, NOW), _stripe_v1(STRIPE_OLD, NOW)
    junk = hmac.new(b"junk", b"junk", hashlib.sha256).hexdigest()
    replays = {
        "same": (f"t={t}", f"v1={new}", f"v1={old}"),
        "reordered": (f"t={t}", f"v1={old}", f"v1={new}"),
        "only_old": (f"t={t}", f"v1={old}"),
        "only_new": (f"t={t}", f"v1={new}"),
        "upper_case_hex": (f"t={t}", f"v1={old.upper()}"),
        "junk_v1_and_v0_added": (f"t={t}", f"v1={junk}", f"v0={junk}", f"v1={old}"),
        "t_repeated": (f"v1={old}", f"t={t}", f"v1={junk}", f"t={t}"),
    }
    path = "/a/hooks/stripe"
    original = _stripe_headers(f"t={t}", f"v1={new}", f"v1={old}")
    first = await call(setup.middleware, "POST", path, original, STRIPE_BODY)
    assert first.status_code == 200
    replay = await call(
        setup.middleware, "POST", path, _stripe_headers(*replays[variant]), STRIPE_BODY
    )
    assert (replay.status_code, replay.json()) == (200, {"status": "duplicate"})
    assert setup.echo.count == 1


async def test_stripe_replays_under_each_secret_in_turn_reach_the_app_once() -> None:
    """The red-team sequence: original, again, reordered, old only, new only: one app call."""
    setup = _stripe_setup()
    new, old = _stripe_v1(STRIPE_NEW, NOW), _stripe_v1(STRIPE_OLD, NOW)
    sequence = [
        (f"t={NOW}", f"v1={new}", f"v1={old}"),
        (f"t={NOW}", f"v1={new}", f"v1={old}"),
        (f"t={NOW}", f"v1={old}", f"v1={new}"),
        (f"t={NOW}", f"v1={old}"),
        (f"t={NOW}", f"v1={new}"),
    ]
    answers = []
    for items in sequence:
        exchange = await call(
            setup.middleware, "POST", "/a/hooks/stripe", _stripe_headers(*items), STRIPE_BODY
        )
        answers.append(exchange.status_code)
    assert answers == [200] * 5
    assert setup.echo.count == 1


async def test_stripe_a_resigned_retry_with_a_new_timestamp_is_processed() -> None:
    """Stripe's retry of the same body with a new t is a new delivery: it reaches the app,
    whichever secret signed either attempt."""
    setup = _stripe_setup()
    path = "/a/hooks/stripe"
    first = _stripe_headers(f"t={NOW}", f"v1={_stripe_v1(STRIPE_OLD, NOW)}")
    later = NOW + 1
    retry = _stripe_headers(f"t={later}", f"v1={_stripe_v1(STRIPE_NEW, later)}")
    assert (await call(setup.middleware, "POST", path, first, STRIPE_BODY)).status_code == 200
    answer = await call(setup.middleware, "POST", path, retry, STRIPE_BODY)
    assert answer.status_code == 200
    assert answer.json() != {"status": "duplicate"}
    assert setup.echo.count == 2


async def test_slack_the_same_request_signed_under_another_secret_is_a_duplicate() -> None:
    """A slash command (no event_id) signed under the old secret, then the same timestamp and
    body under the new one: one delivery, the app runs once; a new timestamp is processed."""
    from hmacguard.webhooks import Slack  # noqa: PLC0415

    new, old = "slack-rotation-new-0123456789abcdef", "slack-rotation-old-fedcba9876543210"
    setup = protect(webhooks={"/a/hooks/slack": Slack([new, old], clock=lambda: NOW)})
    body = b"token=x&team_id=T1&command=%2Fdeploy&text=prod"

    def slack_headers(secret: str, timestamp: int) -> dict[str, str]:
        base = f"v0:{timestamp}:".encode() + body
        mac = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
        return {"x-slack-request-timestamp": str(timestamp), "x-slack-signature": f"v0={mac}"}

    path = "/a/hooks/slack"
    first = await call(setup.middleware, "POST", path, slack_headers(old, NOW), body)
    again = await call(setup.middleware, "POST", path, slack_headers(new, NOW), body)
    assert first.status_code == 200
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert setup.echo.count == 1
    later = await call(setup.middleware, "POST", path, slack_headers(new, NOW + 1), body)
    assert later.status_code == 200
    assert setup.echo.count == 2


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_signature"),
        ({"x-test-id": "d-1", "x-test-ts": "soon", "x-test-sig": "00"}, "malformed_signature"),
    ],
)
async def test_a_webhook_error_speaks_of_the_webhook_not_rfc_9421(
    headers: dict[str, str], reason: str
) -> None:
    """A sender's dashboard shows the body of a refusal: on a webhook path it names
    the webhook's signature, not the Signature and Signature-Input fields."""
    setup = protected()
    exchange = await call(setup.middleware, "POST", PATH, headers, b"{}")
    document = exchange.json()
    assert document["reason"] == reason
    assert "webhook" in document["detail"]
    assert "Signature-Input" not in exchange.body.decode()
    assert setup.echo.untouched()


async def test_a_profile_given_its_own_clock_keeps_it_behind_the_middleware() -> None:
    """Stripe(secret, clock=...) checks t against that clock, also behind the middleware
    (whose own clock is another); a profile left on the wall clock follows the
    middleware's clock= instead."""
    import time  # noqa: PLC0415  (this test only)

    from hmacguard.webhooks import Stripe  # noqa: PLC0415  (this test's only real profile)

    secret = "whsec_clock_test_secret_0123456789"
    body = b'{"id":"evt_1"}'
    then = 1_000_000_000

    def stripe(t: int) -> dict[str, str]:
        mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return {"stripe-signature": f"t={t},v1={mac}"}

    own = protect(webhooks={"/a/hooks/stripe": Stripe(secret, clock=lambda: then)})
    accepted = await call(own.middleware, "POST", "/a/hooks/stripe", stripe(then), body)
    assert accepted.status_code == 200
    assert own.echo.count == 1
    now = await call(own.middleware, "POST", "/a/hooks/stripe", stripe(int(time.time())), body)
    assert now.status_code == 401  # far from the profile's clock
    follows = protect(webhooks={"/a/hooks/stripe": Stripe(secret)})  # the middleware's NOW
    assert (
        await call(follows.middleware, "POST", "/a/hooks/stripe", stripe(NOW), body)
    ).status_code == 200
    stale = await call(follows.middleware, "POST", "/a/hooks/stripe", stripe(then), body)
    assert stale.status_code == 401


class _Recorder:
    """An app that records each body it reads and answers ``status``, empty."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append((await receive())["body"])
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _guard(
    inner: Any, store: MemoryNonceStore, clock: FakeClock, dedupe_ttl: float | None = None
) -> SignatureMiddleware:
    """``inner`` behind a middleware verifying /hooks with :class:`HexProfile` on ``store``."""
    profile = HexProfile()
    if dedupe_ttl is not None:
        profile.dedupe_ttl = dedupe_ttl
    return SignatureMiddleware(
        inner,
        keys={"client-1": b"k" * 32},
        webhooks={"/hooks": profile},
        nonce_store=store,
        clock=clock,
    )


@pytest.mark.parametrize("status", [200, 500])
async def test_two_middlewares_on_one_store_hand_the_delivery_over_once(status: int) -> None:
    """The same webhook path verified twice on the way, on one store (the middleware
    added by an app factory and again by the app, or a protected sub-app that sees
    the same path): the delivery reaches the app (before, the inner one found it
    recorded and acknowledged it as a duplicate: the event was lost); a redelivery
    is acknowledged without reaching it, unless the app failed the first one."""
    clock = FakeClock(NOW)
    store = MemoryNonceStore(clock=clock)
    app = _Recorder(status)
    outer = _guard(_guard(app, store, clock), store, clock)
    body = b'{"event": 1}'
    first = await call(outer, "POST", "/hooks", deliver(body), body)
    again = await call(outer, "POST", "/hooks", deliver(body), body)
    assert first.status_code == status
    if status == 200:
        assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
        assert app.calls == [body]
    else:
        assert again.status_code == status  # processed again: the first one failed
        assert app.calls == [body, body]


async def test_a_delivery_recorded_in_another_store_is_still_a_duplicate_inside() -> None:
    """Two workers, each verifying the webhook on its own memory store, in front of one
    app verifying it again on a store they share (one Redis): a redelivery that lands
    on the second worker is acknowledged as a duplicate by the inner middleware, not
    processed twice."""
    clock = FakeClock(NOW)
    app = _Recorder()
    inner = _guard(app, MemoryNonceStore(clock=clock), clock)
    first = _guard(inner, MemoryNonceStore(clock=clock), clock)
    second = _guard(inner, MemoryNonceStore(clock=clock), clock)
    body = b'{"event": 2}'
    assert (await call(first, "POST", "/hooks", deliver(body), body)).status_code == 200
    again = await call(second, "POST", "/hooks", deliver(body), body)
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert app.calls == [body]


async def test_an_outer_record_shorter_than_the_dedupe_ttl_is_a_503_not_a_lost_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On one store, an outer middleware that records the delivery for less than the
    inner one's dedupe_ttl: the inner one cannot take the record as its own, nor
    acknowledge the delivery as a duplicate (the provider would never send it again):
    it answers 503, so the provider retries, and says which setting to align."""
    clock = FakeClock(NOW)
    store = MemoryNonceStore(clock=clock)
    app = _Recorder()
    outer = _guard(_guard(app, store, clock, dedupe_ttl=7200), store, clock, dedupe_ttl=3600)
    body = b'{"event": 3}'
    exchange = await call(outer, "POST", "/hooks", deliver(body), body)
    assert exchange.status_code == 503
    assert problem(exchange)["reason"] == "verification_unavailable"
    assert app.calls == []
    assert "dedupe_ttl" in caplog.text
    assert len(store) == 0  # the outer one forgot it: its app failed
