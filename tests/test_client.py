"""HMACAuth for httpx: the auth flow stepped by hand, then round trips through the middleware.

Round trips go ``HMACAuth`` -> ``httpx.ASGITransport`` (``AsyncClient``) or Starlette's
a small in-process sync transport (``httpx.Client``) -> ``SignatureMiddleware`` -> the echo app of
``tests/asgi_helpers.py``, which reports the raw path, query and body hash it received.
Signer and verifier share the fixed clock ``NOW``. Redirect cases run against two
origins behind one in-process app that dispatches on ``Host``: ``api.example`` (signed,
with a route that redirects anywhere) and ``evil.example`` (records what it receives).
The same round trips over real sockets are in ``tests/test_client_uvicorn.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

import hmacguard
from asgi_helpers import (
    KEYS,
    NOW,
    ORIGIN,
    SECRET,
    EchoApp,
    FakeClock,
    asgi_client,
    logged_reasons,
    protect,
)
from hmacguard import HMACKey, MemoryNonceStore, SignatureMiddleware, Signer, Verifier
from hmacguard._client import RedirectWarning
from hmacguard._httpx_auth import HMACAuth

MIB = 1024 * 1024
BODY = b'{"item": "widget", "qty": 3}'
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
NONCE = re.compile(r';nonce="([^"]+)"')
CREATED = re.compile(r";created=(\d+)")


def make_auth(**options: Any) -> HMACAuth:
    """An HMACAuth for client-1 that signs at ``NOW``."""
    options.setdefault("clock", lambda: NOW)
    return HMACAuth("client-1", SECRET, **options)


def verify(request: httpx.Request, **policy: Any) -> hmacguard.VerifiedSignature:
    """Verify a signed httpx request as the server would rebuild it from the wire."""
    url = f"{request.url.scheme}://{request.headers['host']}{request.url.raw_path.decode()}"
    return Verifier(KEYS, **policy).verify(
        request.method, url, request.headers.raw, request.content, now=NOW
    )


class SyncASGITransport(httpx.BaseTransport):
    """A sync transport that runs an ASGI app in process, for ``httpx.Client``.

    Each request runs ``httpx.ASGITransport`` in its own event loop; the body must be
    bytes by then, which the auth guarantees (it reads streamed bodies before sending).
    """

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run(call())


def sync_client(app: Any, **kwargs: Any) -> httpx.Client:
    """A sync ``httpx.Client`` to ``http://api.example`` that calls ``app`` in process."""
    return httpx.Client(transport=SyncASGITransport(app), base_url=ORIGIN, **kwargs)


def nonce_of(request: httpx.Request) -> str:
    """The nonce of a request's Signature-Input."""
    found = NONCE.search(request.headers["signature-input"])
    assert found is not None
    return found[1]


# -- the auth flow, stepped by hand ---------------------------------------------------


def test_auth_requires_the_request_body() -> None:
    """httpx must read the body before the flow, so the signature can cover it."""
    assert HMACAuth.requires_request_body is True
    assert HMACAuth.requires_response_body is False


def test_flow_yields_the_signed_request_once_and_ends_on_its_response() -> None:
    """The flow signs the request in place, yields it, and stops after one response."""
    auth = make_auth(nonce=lambda: "n-1")
    request = httpx.Request(
        "POST", "https://api.example/v1/items?page=2", json={"a": 1}, headers={"x-other": "1"}
    )
    flow = auth.auth_flow(request)
    sent = next(flow)
    assert sent is request
    assert request.headers["signature-input"] == (
        'sig1=("@method" "@authority" "@path" "@query" "content-type" "content-digest")'
        f';created={NOW};keyid="client-1";nonce="n-1"'
    )
    assert request.headers["content-digest"] == hmacguard.make_content_digest(request.content)
    assert request.headers["signature"].startswith("sig1=:")
    with pytest.raises(StopIteration):
        flow.send(httpx.Response(200))


def test_flow_signature_verifies_over_the_request_as_httpx_sends_it() -> None:
    """The signature verifies over httpx's encoded target, its Host header and the body bytes."""
    request = httpx.Request(
        "PATCH",
        "https://API.Example:443/t/a b/café/a%2Fb;v=1",
        params={"q": ["a b", "c+d"], "x": "é"},
        content=BODY,
        headers={"content-type": "application/json"},
    )
    next(make_auth().auth_flow(request))
    verified = verify(request)
    assert verified.components == (
        "@method",
        "@authority",
        "@path",
        "@query",
        "content-type",
        "content-digest",
    )
    assert request.url.raw_path == b"/t/a%20b/caf%C3%A9/a%2Fb;v=1?q=a+b&q=c%2Bd&x=%C3%A9"


def test_flow_signs_a_host_header_the_caller_set() -> None:
    """A caller-set Host is what goes on the wire, so it is the signed @authority."""
    request = httpx.Request("GET", "http://10.0.0.7:8080/t", headers={"Host": "API.Internal"})
    next(make_auth().auth_flow(request))
    assert verify(request).key_id == "client-1"
    as_url = f"http://10.0.0.7:8080{request.url.raw_path.decode()}"
    with pytest.raises(hmacguard.VerificationError) as caught:
        Verifier(KEYS).verify("GET", as_url, request.headers.raw, b"", now=NOW)
    assert caught.value.reason == "invalid_signature"


def test_flow_without_body_covers_no_digest() -> None:
    """A GET without a body is signed over the four request components only."""
    request = httpx.Request("GET", "http://api.example/t?")
    next(make_auth().auth_flow(request))
    assert "content-digest" not in request.headers
    assert verify(request).components == ("@method", "@authority", "@path", "@query")


def test_sync_flow_reads_a_generator_body_once_and_signs_those_bytes() -> None:
    """A generator body is consumed once, before signing, and sent as the same bytes."""
    pulls: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        for chunk in (b"first,", b"second,", b"third"):
            pulls.append(chunk)
            yield chunk

    request = httpx.Request("POST", "http://api.example/t", content=chunks())
    flow = make_auth().sync_auth_flow(request)
    sent = next(flow)
    assert pulls == [b"first,", b"second,", b"third"]
    assert b"".join(sent.stream) == b"".join(sent.stream) == b"first,second,third"
    assert sent.headers["content-digest"] == hmacguard.make_content_digest(b"first,second,third")
    assert verify(sent).components[-1] == "content-digest"


async def test_async_flow_reads_an_async_generator_body_once_and_signs_those_bytes() -> None:
    """An async generator body is read once by the async flow and signed over its bytes."""
    pulls = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal pulls
        for chunk in (b"a" * 1000, b"b" * 10):
            pulls += 1
            yield chunk

    request = httpx.Request("PUT", "http://api.example/t", content=chunks())
    flow = make_auth().async_auth_flow(request)
    sent = await flow.__anext__()
    assert pulls == 2
    assert sent.headers["content-digest"] == hmacguard.make_content_digest(b"a" * 1000 + b"b" * 10)
    assert verify(sent).key_id == "client-1"
    await flow.aclose()


def test_flow_signs_a_multipart_body_with_its_boundary() -> None:
    """files= is signed over the exact multipart bytes, and content-type carries the boundary."""
    request = httpx.Request(
        "POST", "http://api.example/t", files={"f": ("a.txt", b"x" * 100)}, data={"k": "v"}
    )
    next(make_auth().sync_auth_flow(request))
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert verify(request).components[-2:] == ("content-type", "content-digest")


def test_each_send_is_signed_afresh_replacing_the_earlier_signature() -> None:
    """Re-running the flow on one request gives a new nonce and created, one field each."""
    clock = FakeClock()
    auth = make_auth(clock=clock)
    request = httpx.Request("POST", "http://api.example/t", content=BODY)
    next(auth.auth_flow(request))
    first = nonce_of(request), request.headers["signature"]
    clock.advance(7)
    next(auth.auth_flow(request))
    assert nonce_of(request) != first[0]
    assert request.headers["signature"] != first[1]
    for name in ("signature", "signature-input", "content-digest"):
        assert len(request.headers.get_list(name)) == 1, name
    created = CREATED.search(request.headers["signature-input"])
    assert created is not None
    assert int(created[1]) == NOW + 7


def test_signing_a_component_the_request_lacks_is_a_value_error() -> None:
    """A covered header the request does not have fails before anything is sent."""
    request = httpx.Request("GET", "http://api.example/t")
    with pytest.raises(ValueError, match="cannot sign this request"):
        next(make_auth(components=["@method", "x-tenant"]).auth_flow(request))


@pytest.mark.parametrize(
    ("components", "lines"),
    [
        (None, [("Content-Type", "a/b"), ("Content-Type", "c/d")]),
        (["@method", "@path", "x-a"], [("X-A", "1"), ("X-A", "2")]),
    ],
    ids=["default content-type", "x-a"],
)
def test_a_covered_field_on_two_lines_is_a_value_error(
    components: list[str] | None, lines: list[tuple[str, str]]
) -> None:
    """RFC 9421 would sign the two lines joined, but SignatureMiddleware refuses a covered
    field on several lines (THREATS C4(b)): the auth says so before anything is sent,
    rather than sign a request its server always refuses (found by a helper's run of our
    clients against our server)."""
    options = {} if components is None else {"components": components}
    request = httpx.Request("POST", "http://api.example/t", headers=lines, content=b"abc")
    with pytest.raises(ValueError, match="on 2 lines: send it on one line"):
        next(make_auth(**options).auth_flow(request))


async def test_a_field_covered_with_bs_may_come_on_several_lines() -> None:
    """``;bs`` signs each line apart (RFC 9421 §2.1.3): such a field may repeat, and the
    middleware accepts it; so do fields on several lines that are not covered."""
    protected = protect()
    auth = make_auth(components=["@method", "@authority", "@path", "@query", "x-a;bs"])
    async with protected.client(auth=auth) as client:
        response = await client.get("/t", headers=[("X-A", "1"), ("X-A", "2"), ("X-B", "3")])
    async with protected.client(auth=make_auth()) as client:
        uncovered = await client.get("/t", headers=[("X-B", "1"), ("X-B", "2")])
    assert (response.status_code, uncovered.status_code) == (200, 200)


# -- construction -----------------------------------------------------------------------


def test_base64_text_secret_signs_like_the_raw_bytes() -> None:
    """A base64 text secret is decoded: the signature equals the one made with the bytes."""
    text = base64.b64encode(SECRET).decode()
    signatures = []
    for secret in (SECRET, text):
        request = httpx.Request("POST", "http://api.example/t", content=BODY)
        auth = HMACAuth("client-1", secret, clock=lambda: NOW, nonce=lambda: "fixed")
        next(auth.auth_flow(request))
        signatures.append(request.headers["signature"])
    assert signatures[0] == signatures[1]


@pytest.mark.parametrize(
    ("secret", "algorithm"),
    [(b"k" * 31, None), ("c2hvcnQ=", None), (b"", None), (b"k" * 63, "hmac-sha512")],
)
def test_threat_K3_short_key_is_a_value_error_at_construction(
    secret: bytes | str, algorithm: str | None
) -> None:
    """A secret shorter than the hash output is refused when the auth is built."""
    with pytest.raises(ValueError, match="needs at least") as caught:
        HMACAuth("client-1", secret, algorithm=algorithm)
    if isinstance(secret, bytes) and secret:
        assert secret.decode() not in str(caught.value)


@pytest.mark.parametrize(
    ("secret_text", "algorithm"),
    [
        (base64.b64encode(b"\xfb\xef" * 16).decode(), None),
        (base64.urlsafe_b64encode(b"\xfb\xef" * 16).decode().rstrip("="), None),
        (base64.b64encode(bytes(range(64))).decode(), "hmac-sha512"),
        ("aHVudGVyMg", None),  # a weak secret, shorter than a key id could be
    ],
    ids=["base64", "urlsafe", "sha512", "weak"],
)
def test_swapped_key_id_and_secret_never_show_the_secret(
    secret_text: str, algorithm: str | None
) -> None:
    """HMACAuth(secret, "client-1") is refused without the secret (given as the key id)
    in the message or the repr; a secret-length key id asks whether they were swapped."""
    with pytest.raises(ValueError, match="needs at least") as caught:
        HMACAuth(secret_text, "client-1", algorithm=algorithm)
    shown = str(caught.value) + repr(caught.value) + repr(caught.value.__context__)
    assert secret_text not in shown
    assert ("did you swap key_id and secret?" in shown) == (len(secret_text) >= 43)


def test_hmac_sha512_key_signs_for_a_sha512_verifier() -> None:
    """algorithm= picks the key's algorithm; a verifier holding that key accepts it."""
    secret = bytes(range(64))
    request = httpx.Request("GET", "http://api.example/t")
    next(HMACAuth("k5", secret, algorithm="hmac-sha512", clock=lambda: NOW).auth_flow(request))
    verifier = Verifier([HMACKey("k5", secret, "hmac-sha512")])
    url = str(request.url)
    assert verifier.verify("GET", url, request.headers.raw, now=NOW).algorithm == "hmac-sha512"


def test_ready_signer_is_used_as_given() -> None:
    """signer= takes a Signer; its label and options decide the signature."""
    signer = Signer(HMACKey("client-2", b"q" * 32), label="app", tag="api", clock=lambda: NOW)
    auth = HMACAuth(signer=signer)
    assert auth.signer is signer
    request = httpx.Request("GET", "http://api.example/t")
    next(auth.auth_flow(request))
    assert request.headers["signature-input"].startswith('app=("@method"')
    verified = verify(request, tag="api")
    assert (verified.key_id, verified.label, verified.tag) == ("client-2", "app", "api")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("client-1",), {}),
        ((None, SECRET), {}),
        (("client-1", SECRET), {"signer": Signer(HMACKey("client-1", SECRET))}),
        ((), {"signer": Signer(HMACKey("client-1", SECRET)), "label": "x"}),
        ((), {"signer": Signer(HMACKey("client-1", SECRET)), "algorithm": "hmac-sha256"}),
        ((), {"signer": HMACKey("client-1", SECRET)}),
        (("client-1", 12345), {}),
        (("client-1", SECRET), {"no_such_option": 1}),
    ],
)
def test_exactly_one_of_signer_or_key_material_is_a_type_error_otherwise(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Both, neither, or a wrong type of key material is a TypeError naming the fix."""
    with pytest.raises(TypeError) as caught:
        HMACAuth(*args, **kwargs)
    assert "kkkk" not in str(caught.value)


def test_repr_names_the_key_id_and_hides_the_secret() -> None:
    """repr shows the key id and redirect setting, never the secret in any encoding."""
    text = repr(HMACAuth("client-1", SECRET, follow_redirects=True))
    assert text == "HMACAuth(key_id='client-1', follow_redirects=True)"
    assert repr(make_auth().signer) == "Signer(key_id='client-1', label='sig1')"


def test_top_level_name_is_the_httpx_auth() -> None:
    """hmacguard.HMACAuth is this class, an httpx.Auth, loaded on first use."""
    assert hmacguard.HMACAuth is HMACAuth
    assert issubclass(HMACAuth, httpx.Auth)


def test_used_with_requests_it_names_the_requests_auth() -> None:
    """requests calls an auth as a function: the httpx HMACAuth says which class to use
    instead of "'HMACAuth' object is not callable", and stays an httpx.Auth."""
    import requests  # noqa: PLC0415  (the other client library)

    auth = make_auth()
    with pytest.raises(TypeError, match=r"for requests use hmacguard\.requests\.HMACAuth"):
        requests.Request("GET", "http://api.example/t", auth=auth).prepare()  # type: ignore[arg-type]
    assert isinstance(auth, httpx.Auth)
    request = httpx.Request("GET", "http://api.example/t")
    next(auth.sync_auth_flow(request))
    assert verify(request).key_id == "client-1"


async def _async_chunks() -> AsyncIterator[bytes]:
    yield BODY


def _sync_chunks() -> Iterator[bytes]:
    yield BODY


def _recording_transport() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    return httpx.MockTransport(handler), sent


def test_sync_client_with_an_async_body_is_a_clear_error_not_an_assertion() -> None:
    """httpx.Client cannot send an async generator: the auth says so (a RuntimeError naming
    AsyncClient, as httpx does without an auth) before anything is sent."""
    transport, sent = _recording_transport()
    with (
        httpx.Client(transport=transport, auth=make_auth()) as client,
        pytest.raises(RuntimeError, match=r"async iterator.*sync httpx\.Client.*AsyncClient"),
    ):
        client.post("http://api.example/t", content=_async_chunks())
    assert sent == []


async def test_async_client_with_a_sync_body_is_a_clear_error_not_an_assertion() -> None:
    """httpx.AsyncClient cannot send a sync generator: the auth says so, naming httpx.Client."""
    transport, sent = _recording_transport()
    async with httpx.AsyncClient(transport=transport, auth=make_auth()) as client:
        with pytest.raises(RuntimeError, match=r"sync iterator.*httpx\.AsyncClient.*httpx\.Client"):
            await client.post("http://api.example/t", content=_sync_chunks())
    assert sent == []


def test_matching_bodies_still_sign_in_both_clients() -> None:
    """A sync generator with Client and an async one with AsyncClient are signed as before."""
    transport, sent = _recording_transport()
    with httpx.Client(transport=transport, auth=make_auth()) as client:
        client.post("http://api.example/t", content=_sync_chunks())

    async def send_async() -> None:
        async with httpx.AsyncClient(transport=transport, auth=make_auth()) as client:
            await client.post("http://api.example/t", content=_async_chunks())

    asyncio.run(send_async())
    assert [verify(request).components[-1] for request in sent] == ["content-digest"] * 2


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  (our interpreter, our code)
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_httpx_extra_names_the_pip_install() -> None:
    """Without httpx, the core imports and HMACAuth raises an ImportError naming the extra."""
    result = _run(
        """
        import sys
        sys.modules["httpx"] = sys.modules["httpx2"] = None
        import hmacguard
        assert hmacguard.Signer and hmacguard.SignatureMiddleware
        try:
            hmacguard.HMACAuth
        except ImportError as exc:
            print(exc)
            print(type(exc.__cause__).__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        'HMACAuth needs httpx (or httpx2): pip install "hmacguard[httpx]"',
        "ImportError",
    ]


# -- round trips through ASGITransport and the middleware ------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


def _files() -> dict[str, Any]:
    return {"upload": ("notes.txt", b"line one\nline two\n", "text/plain")}


ASYNC_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "none": dict,
    "content-bytes": lambda: {"content": BODY},
    "content-text": lambda: {"content": "héllo wörld"},
    "json": lambda: {"json": {"item": "widget", "tags": ["a", "b"]}},
    "data-form": lambda: {"data": {"a": "1 2", "b": ["x", "y&z"]}},
    "files-multipart": lambda: {"files": _files(), "data": {"k": "v"}},
    "async-generator": lambda: {"content": _chunks(BODY * 3)},
}


@pytest.mark.parametrize("body", list(ASYNC_BODIES))
@pytest.mark.parametrize("method", METHODS)
async def test_round_trip_async_client_every_method_and_body_kind(method: str, body: str) -> None:
    """Each method with each body kind is accepted, and the app gets the bytes httpx sent."""
    protected = protect()
    async with protected.client(auth=make_auth()) as client:
        response = await client.request(method, "/t/items?id=7", **ASYNC_BODIES[body]())
    assert response.status_code == 200, response.text
    sent = response.request
    seen = protected.echo.seen[-1]
    assert (seen["method"], seen["raw_path"], seen["query"]) == (method, "/t/items", "id=7")
    assert seen["sha256"] == hashlib.sha256(sent.content).hexdigest()
    assert seen["key_id"] == "client-1"
    assert ("content-digest" in sent.headers) == bool(sent.content)


TARGETS = [
    # (what the caller writes, raw path the app gets, raw query the app gets)
    ("/t/a b", "/t/a%20b", ""),
    ("/t/café/ü", "/t/caf%C3%A9/%C3%BC", ""),
    ("/t/a%2Fb", "/t/a%2Fb", ""),
    ("/t/a;b=c/d;e", "/t/a;b=c/d;e", ""),
    ("/t?a=1&a=2&a=1", "/t", "a=1&a=2&a=1"),
    ("/t?q=a+b&r=a%20b&s=a b", "/t", "q=a+b&r=a%20b&s=a%20b"),
    ("/t?", "/t", ""),
    ("/t?é=ü", "/t", "%C3%A9=%C3%BC"),
    ("/t/%7Euser/./x", "/t/%7Euser/x", ""),  # httpx drops dot segments; what it sends is signed
]


@pytest.mark.parametrize(("target", "raw_path", "query"), TARGETS)
async def test_threat_U1_U2_path_and_query_edge_cases_round_trip(
    target: str, raw_path: str, query: str
) -> None:
    """Spaces, unicode, %2F, ';', repeated keys, '+', an empty '?' all verify as sent."""
    protected = protect()
    async with protected.client(auth=make_auth()) as client:
        response = await client.post(target, content=BODY)
    assert response.status_code == 200, response.text
    seen = protected.echo.seen[-1]
    assert (seen["raw_path"], seen["query"]) == (raw_path, query)


async def test_round_trip_params_argument_is_signed_as_encoded() -> None:
    """params= is encoded by httpx before signing, so the signed query is the one sent."""
    protected = protect()
    async with protected.client(auth=make_auth()) as client:
        response = await client.get("/t", params={"q": ["a b", "c&d"], "empty": ""})
    assert response.status_code == 200, response.text
    assert protected.echo.seen[-1]["query"] == "q=a+b&q=c%26d&empty="


async def test_round_trip_base_url_with_relative_paths() -> None:
    """With base_url, a relative path is joined before signing and verifies."""
    protected = protect()
    transport = httpx.ASGITransport(app=protected.middleware)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api.example/api/v1/", auth=make_auth()
    ) as client:
        first = await client.get("items/a b")
        second = await client.post("/api/other", json=[1])
    assert (first.status_code, second.status_code) == (200, 200)
    assert [seen["raw_path"] for seen in protected.echo.seen] == [
        "/api/v1/items/a%20b",
        "/api/v1/api/other",
    ]


async def test_round_trip_non_default_port_and_https() -> None:
    """An https URL with a port is signed with that authority, as the server rebuilds it."""
    protected = protect(scheme="https")
    async with protected.client(base_url="https://api.example:8443", auth=make_auth()) as client:
        response = await client.delete("/t/x")
    assert response.status_code == 200, response.text
    assert response.request.headers["host"] == "api.example:8443"


async def test_round_trip_10_mib_body_with_raised_max_body_size() -> None:
    """A 10 MiB body verifies once max_body_size allows it, and is 413 under the default."""
    body = bytes(range(256)) * (10 * MIB // 256)
    raised = protect(max_body_size=11 * MIB)
    async with raised.client(auth=make_auth()) as client:
        response = await client.put("/t/big", content=body)
    assert response.status_code == 200, response.text
    assert raised.echo.seen[-1]["sha256"] == hashlib.sha256(body).hexdigest()
    default = protect()
    async with default.client(auth=make_auth()) as client:
        refused = await client.put("/t/big", content=body)
    assert (refused.status_code, refused.json()["reason"]) == (413, "body_too_large")
    assert default.echo.untouched()


async def test_two_requests_never_share_a_nonce() -> None:
    """Fifty sends of the same request carry fifty different nonces, all accepted."""
    protected = protect()
    async with protected.client(auth=make_auth()) as client:
        responses = [await client.post("/t", content=BODY) for _ in range(50)]
    assert [r.status_code for r in responses] == [200] * 50
    assert len({nonce_of(r.request) for r in responses}) == 50


async def test_threat_R1_replayed_request_is_rejected(caplog: pytest.LogCaptureFixture) -> None:
    """The exact signed request sent again (no re-signing) is a 401, logged as replayed."""
    protected = protect()
    async with protected.client(auth=make_auth()) as client:
        first = await client.post("/t", content=BODY)
        sent = first.request
        again = httpx.Request(sent.method, sent.url, headers=sent.headers, content=sent.content)
        replay = await client.send(again, auth=None)
    assert first.status_code == 200
    assert again.headers["signature"] == sent.headers["signature"]
    # The client is told invalid_signature, as for a bad MAC (THREATS K2); the log says why.
    assert (replay.status_code, replay.json()["reason"]) == (401, "invalid_signature")
    assert logged_reasons(caplog) == ["replayed"]
    assert protected.echo.count == 1


async def test_resending_one_request_object_re_signs_it() -> None:
    """client.send() of the same Request twice signs it twice: both are accepted."""
    protected = protect()
    async with protected.client(auth=make_auth()) as client:
        request = client.build_request("PATCH", "/t", json={"a": 1})
        first = await client.send(request)
        first_nonce = nonce_of(request)
        second = await client.send(request)
    assert (first.status_code, second.status_code) == (200, 200)
    assert nonce_of(request) != first_nonce


async def test_unsigned_request_without_auth_is_rejected() -> None:
    """Control: the same client without the auth gets 401 missing_signature."""
    protected = protect()
    async with protected.client() as client:
        response = await client.post("/t", content=BODY)
    assert (response.status_code, response.json()["reason"]) == (401, "missing_signature")


SYNC_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "none": dict,
    "content-bytes": lambda: {"content": BODY},
    "json": lambda: {"json": {"a": [1, 2]}},
    "data-form": lambda: {"data": {"a": "1 2"}},
    "files-multipart": lambda: {"files": _files()},
    "generator": lambda: {"content": iter([b"one,", b"two,", b"three"])},
}


@pytest.mark.parametrize("body", list(SYNC_BODIES))
@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
def test_round_trip_sync_client_every_body_kind(method: str, body: str) -> None:
    """A sync httpx.Client signs every body kind the same way."""
    protected = protect()
    with sync_client(protected.middleware) as client:
        response = client.request(
            method, "/t/sync path?x=1", auth=make_auth(), **SYNC_BODIES[body]()
        )
    assert response.status_code == 200, response.text
    seen = protected.echo.seen[-1]
    assert (seen["method"], seen["raw_path"], seen["query"]) == (method, "/t/sync%20path", "x=1")
    assert seen["sha256"] == hashlib.sha256(response.request.content).hexdigest()


def _sync_stream(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks


async def _async_stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


STREAMS = {
    "yields-nothing": [],
    "yields-empty-bytes": [b"", b""],
    "yields-bytes": [b"ab", b"", b"c"],
}


def _check_sent_with_a_length(sent: httpx.Request, chunks: list[bytes]) -> None:
    """The request went out framed by the length of the bytes signed, not chunked."""
    assert "transfer-encoding" not in sent.headers
    assert sent.headers["content-length"] == str(len(b"".join(chunks)))
    assert ("content-digest" in sent.headers) == any(chunks)


@pytest.mark.parametrize("stream", list(STREAMS))
def test_sync_client_streamed_body_empty_or_not_is_accepted(stream: str) -> None:
    """A generator body, even one yielding nothing or only b"", goes out with a Content-Length
    and passes the middleware (chunked and empty, it was refused: insufficient_coverage)."""
    protected = protect()
    with sync_client(protected.middleware, auth=make_auth()) as client:
        response = client.post("/t/up", content=_sync_stream(STREAMS[stream]))
    assert response.status_code == 200, response.text
    _check_sent_with_a_length(response.request, STREAMS[stream])
    assert (
        protected.echo.seen[-1]["sha256"] == hashlib.sha256(b"".join(STREAMS[stream])).hexdigest()
    )


@pytest.mark.parametrize("stream", list(STREAMS))
async def test_async_client_streamed_body_empty_or_not_is_accepted(stream: str) -> None:
    """An async generator body, even an empty one, goes out with a Content-Length and passes."""
    protected = protect()
    async with protected.client(auth=make_auth()) as client:
        response = await client.put("/t/up", content=_async_stream(STREAMS[stream]))
    assert response.status_code == 200, response.text
    _check_sent_with_a_length(response.request, STREAMS[stream])
    assert (
        protected.echo.seen[-1]["sha256"] == hashlib.sha256(b"".join(STREAMS[stream])).hexdigest()
    )


@pytest.mark.parametrize("name", ["X-HTTP-Method-Override", "X-Method-Override", "X-HTTP-Method"])
@pytest.mark.parametrize("body", [{}, {"json": {"a": 1}}], ids=["no-body", "json"])
async def test_threat_U6_method_override_header_is_signed_by_default(
    name: str, body: dict[str, Any]
) -> None:
    """A method-override header is covered by the default components, so the middleware
    (which refuses one left unsigned) accepts the request."""
    protected = protect()
    async with protected.client(auth=make_auth()) as client:
        response = await client.post("/t", headers={name: "DELETE"}, **body)
    assert response.status_code == 200, response.text
    assert f'"{name.lower()}"' in response.request.headers["signature-input"]


# -- redirects -------------------------------------------------------------------------


class TwoOrigins:
    """``api.example`` behind the middleware, ``evil.example`` recording what it receives.

    ``api.example``: ``/go?code=307&to=URL`` redirects to ``to``, ``/loop`` redirects to
    itself, ``/t/dir?...`` (``code``, default 307) to ``/t/dir/?...`` as a router adds a
    missing slash, anything else is the echo app. ``evil.example``: ``/back?to=URL`` redirects
    there with 307, anything else answers 200; ``received`` keeps each request's headers.
    """

    def __init__(self) -> None:
        self.echo = EchoApp()
        self.received: list[dict[str, str]] = []
        self.loops = 0
        clock = FakeClock()
        api = Starlette(
            routes=[
                Route("/go", self._go, methods=METHODS),
                Route("/loop", self._loop, methods=METHODS),
                Route("/t/dir", self._slash, methods=METHODS),
                Mount("/", app=self.echo),
            ]
        )
        self.api = SignatureMiddleware(
            api, keys=KEYS, clock=clock, nonce_store=MemoryNonceStore(clock=clock)
        )

    async def _go(self, request: Request) -> Response:
        await request.body()
        target = request.query_params["to"]
        return RedirectResponse(target, status_code=int(request.query_params.get("code", 307)))

    async def _slash(self, request: Request) -> Response:
        await request.body()
        query = request.url.query
        target = "/t/dir/" + ("?" + query if query else "")
        return RedirectResponse(target, status_code=int(request.query_params.get("code", 307)))

    async def _loop(self, request: Request) -> Response:
        self.loops += 1
        return RedirectResponse("/loop", status_code=307)

    async def _evil(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        await request.body()
        self.received.append({k.lower(): v for k, v in request.headers.items()})
        if request.url.path == "/back":
            response: Response = RedirectResponse(request.query_params["to"], status_code=307)
        else:
            response = JSONResponse({"evil": True})
        await response(scope, receive, send)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        host = dict(scope.get("headers", [])).get(b"host", b"").decode()
        if host == "evil.example":
            await self._evil(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An AsyncClient to ``http://api.example`` over ASGITransport."""
        return asgi_client(self, **kwargs)

    def evil_saw_signature(self) -> bool:
        """True when any request evil.example received carried a signature field."""
        fields = ("signature", "signature-input", "content-digest")
        return any(name in headers for headers in self.received for name in fields)


async def test_redirect_is_not_followed_by_default() -> None:
    """Default auth and client: the redirect comes back with next_request, nothing followed."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth()) as client:
        response = await client.post("/go?to=/t/next", content=BODY)
    assert response.status_code == 307
    assert response.next_request is not None
    assert origins.echo.untouched()


async def test_manual_follow_of_next_request_is_signed_again() -> None:
    """client.send(response.next_request) runs the auth again: a fresh signature is accepted."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth()) as client:
        response = await client.post("/go?to=/t/next", content=BODY)
        assert response.next_request is not None
        followed = await client.send(response.next_request)
    assert followed.status_code == 200, followed.text
    assert nonce_of(followed.request) != nonce_of(response.request)


async def test_manual_follow_of_a_303_drops_the_first_requests_digest() -> None:
    """Re-signing a bodiless 303 hop removes the Content-Digest the first signature added."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth()) as client:
        response = await client.post("/go?code=303&to=/t/next", content=BODY)
        assert response.next_request is not None
        assert "content-digest" in response.next_request.headers  # copied by httpx
        followed = await client.send(response.next_request)
    assert followed.status_code == 200, followed.text
    assert "content-digest" not in followed.request.headers


async def test_follow_redirects_re_signs_a_same_origin_307_with_its_body() -> None:
    """HMACAuth(follow_redirects=True) re-signs a 307 hop to the same target with a slash
    added (a router's redirect): same body, new nonce, accepted."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth(follow_redirects=True)) as client:
        response = await client.post("/t/dir?z=1", content=BODY)
    assert response.status_code == 200, response.text
    seen = origins.echo.seen[-1]
    assert (seen["method"], seen["raw_path"], seen["query"]) == ("POST", "/t/dir/", "z=1")
    assert seen["sha256"] == hashlib.sha256(BODY).hexdigest()
    (first,) = response.history
    assert first.status_code == 307
    assert nonce_of(first.request) != nonce_of(response.request)


@pytest.mark.parametrize("code", [307, 308])
async def test_follow_redirects_never_re_signs_a_body_for_another_target(code: int) -> None:
    """A 307/308 keeps the method and body, and the redirect response is not
    authenticated: the auth never signs a POST /pay over again as a POST to a target the
    response picked. The hop goes out unsigned and is refused; the app never acts."""
    origins = TwoOrigins()
    target = "/t/admin/users/42?action=delete"
    async with origins.client(auth=make_auth(follow_redirects=True)) as client:
        response = await client.post("/go", params={"to": target, "code": code}, content=BODY)
    assert (response.status_code, response.json()["reason"]) == (401, "missing_signature")
    assert "signature" not in response.request.headers
    assert origins.echo.untouched()


async def test_follow_redirects_303_turns_post_into_get_signed_without_digest() -> None:
    """A 303 hop is a GET without body: re-signed without Content-Digest, accepted."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth(follow_redirects=True)) as client:
        response = await client.post("/go?code=303&to=/t/done", json={"a": 1})
    assert response.status_code == 200, response.text
    assert origins.echo.seen[-1]["method"] == "GET"
    assert "content-digest" not in response.request.headers
    assert "content-digest" not in response.request.headers["signature-input"]


async def test_follow_redirects_strips_the_signature_from_a_hop_to_another_origin() -> None:
    """A hop to another origin goes out without Signature, Signature-Input or Content-Digest."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth(follow_redirects=True)) as client:
        response = await client.post("/go?to=http://evil.example/steal", content=BODY)
    assert response.json() == {"evil": True}
    assert len(origins.received) == 1
    assert not origins.evil_saw_signature()


async def test_follow_redirects_keeps_caller_headers_on_a_foreign_hop() -> None:
    """Only the fields the auth added are removed from a foreign hop; the caller's stay."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth(follow_redirects=True)) as client:
        await client.post("/go?to=http://evil.example/steal", content=BODY, headers={"x-keep": "1"})
    assert origins.received[0]["x-keep"] == "1"
    assert not origins.evil_saw_signature()


async def test_follow_redirects_never_signs_after_the_chain_left_the_origin() -> None:
    """A foreign origin redirecting back to the API gets an unsigned hop, which is refused."""
    origins = TwoOrigins()
    back = "http://evil.example/back?to=http://api.example/t/admin"
    async with origins.client(auth=make_auth(follow_redirects=True)) as client:
        response = await client.post("/go", params={"to": back}, content=BODY)
    assert (response.status_code, response.json()["reason"]) == (401, "missing_signature")
    assert not origins.evil_saw_signature()
    assert origins.echo.untouched()


async def test_follow_redirects_https_upgrade_is_another_origin() -> None:
    """http -> https on the same host is another origin (RFC 6454): the hop is unsigned."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth(follow_redirects=True)) as client:
        response = await client.get("/go?to=https://api.example/t/secure")
    assert (response.status_code, response.json()["reason"]) == (401, "missing_signature")


async def test_follow_redirects_obeys_the_client_max_redirects() -> None:
    """A redirect loop stops at the client's max_redirects with TooManyRedirects."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth(follow_redirects=True), max_redirects=3) as client:
        with pytest.raises(httpx.TooManyRedirects):
            await client.get("/loop")
    assert origins.loops == 4  # every hop was signed and verified, then the client gave up


async def test_client_follow_redirects_leaks_the_signature_and_warns() -> None:
    """The hazard: with the client following, httpx re-sends the signature, and the auth warns."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth(), follow_redirects=True) as client:
        with pytest.warns(RedirectWarning, match="to another origin"):
            await client.post("/go?to=http://evil.example/steal", content=BODY)
    assert origins.evil_saw_signature()


async def test_client_follow_redirects_with_the_async_hook_strips_foreign_hops() -> None:
    """astrip_foreign_signatures as a request hook keeps the signature off a foreign hop."""
    origins = TwoOrigins()
    hooks = {"request": [HMACAuth.astrip_foreign_signatures]}
    async with origins.client(auth=make_auth(), follow_redirects=True, event_hooks=hooks) as client:
        response = await client.post("/go?to=http://evil.example/steal", content=BODY)
    assert response.json() == {"evil": True}
    assert not origins.evil_saw_signature()


async def test_client_follow_redirects_to_the_same_origin_warns_and_is_refused() -> None:
    """A client-followed same-origin hop carries a stale signature: warned, and refused."""
    origins = TwoOrigins()
    async with origins.client(auth=make_auth(), follow_redirects=True) as client:
        with pytest.warns(RedirectWarning, match="same origin"):
            response = await client.post("/go?to=/t/next", content=BODY)
    assert (response.status_code, response.json()["reason"]) == (401, "invalid_signature")


def test_sync_client_follow_redirects_with_the_sync_hook_strips_foreign_hops() -> None:
    """strip_foreign_signatures does the same for a sync Client."""
    origins = TwoOrigins()
    hooks = {"request": [HMACAuth.strip_foreign_signatures]}
    with sync_client(origins, follow_redirects=True, event_hooks=hooks) as client:
        response = client.post("/go?to=http://evil.example/steal", content=BODY, auth=make_auth())
    assert response.json() == {"evil": True}
    assert not origins.evil_saw_signature()


def test_sync_client_auth_follow_redirects_re_signs_same_origin() -> None:
    """The auth-driven redirect following works in a sync Client too."""
    origins = TwoOrigins()
    with sync_client(origins) as client:
        response = client.put(
            "/t/dir?code=308", json={"a": 1}, auth=make_auth(follow_redirects=True)
        )
    assert response.status_code == 200, response.text
    assert origins.echo.seen[-1]["raw_path"] == "/t/dir/"
    assert json.loads(response.request.content) == {"a": 1}
