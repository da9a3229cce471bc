"""The clients against real uvicorn on 127.0.0.1: httpx sync and async, and requests.

The server is ``tests/apps/echo_app.py`` behind ``SignatureMiddleware`` (memory nonce
store, ``max_body_size`` raised to 16 MiB), started once per module with ``--http h11``
and once with ``--http httptools`` (``tests/uvicorn_server.py``). Signatures are made
on the real clock, so these are the round trips of ``tests/test_client.py`` with the
real wire in between: httpx's or urllib3's own ``Host`` header and request target, and
uvicorn's ``raw_path`` and ``query_string``. After each test the server's log must show
no 500 and no unhandled exception.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import requests

from asgi_helpers import logged_reasons
from hmacguard import HMACAuth
from hmacguard.requests import HMACAuth as RequestsHMACAuth
from local_server import HOST
from uvicorn_server import UvicornServer

KEY_ID = "client-1"
SECRET = b"uvicorn-client-round-trip-secret"
APP = "tests.apps.echo_app:app"
MIB = 1024 * 1024
BODY = b'{"item": "widget", "qty": 3}'
BIG = bytes(range(256)) * (10 * MIB // 256)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
TIMEOUT = 30.0


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    """The echo app under uvicorn, once with h11 and once with httptools."""
    if request.param == "httptools":
        for module in ("httptools", "uvloop"):
            if importlib.util.find_spec(module) is None:
                pytest.fail(f"{module} is not installed: pip install 'uvicorn[standard]'")
    env = {
        "HMACGUARD_TEST_KEY_ID": KEY_ID,
        "HMACGUARD_TEST_SECRET": SECRET.hex(),
        "HMACGUARD_TEST_MAX_BODY": str(16 * MIB),
        "HMACGUARD_TEST_NONCE_STORE": "memory",
    }
    with UvicornServer(APP, http=request.param, env=env) as running:
        yield running


@pytest.fixture(autouse=True)
def no_server_errors(server: UvicornServer) -> Iterator[None]:
    """Fail the test if the server logged a 500 or an unhandled exception meanwhile."""
    start = server.log_size()
    yield
    server.assert_no_server_errors(since=start)


def served(server: UvicornServer) -> int:
    """How many requests reached the app so far (the exempt stats route)."""
    count: int = httpx.get(server.url + "/_stats", timeout=TIMEOUT).json()["count"]
    return count


def assert_replayed(
    server: UvicornServer, response: httpx.Response | requests.Response, since: int
) -> None:
    """A 401 told like a bad MAC (THREATS K2), and the server logged it as a replay.

    The middleware's WARNING line lands in the server's log (stderr), written before
    the response is sent; ``since`` is the log size before the request.
    """
    assert (response.status_code, response.json()["reason"]) == (401, "invalid_signature")
    assert logged_reasons(server.log()[since:]) == ["replayed"]


def check_echo(echo: dict[str, Any], method: str, raw_path: str, query: str, body: bytes) -> None:
    """The app received this method, raw target and body, verified for client-1."""
    assert (echo["method"], echo["raw_path"], echo["query"]) == (method, raw_path, query)
    assert echo["sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["key_id"] == KEY_ID


# -- httpx ---------------------------------------------------------------------------------


def _files() -> dict[str, Any]:
    return {"upload": ("notes.txt", b"line one\nline two\n", "text/plain")}


SYNC_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "none": dict,
    "content": lambda: {"content": BODY},
    "json": lambda: {"json": {"a": [1, "é"]}},
    "data-form": lambda: {"data": {"a": "1 2", "b": ["x", "y&z"]}},
    "files-multipart": lambda: {"files": _files(), "data": {"k": "v"}},
    "generator": lambda: {"content": iter([b"one,", b"two,", b"three"])},
}


@pytest.mark.parametrize("body", list(SYNC_BODIES))
@pytest.mark.parametrize("method", METHODS)
def test_httpx_sync_round_trip_every_method_and_body_kind(
    server: UvicornServer, method: str, body: str
) -> None:
    """A sync httpx.Client's signed request verifies after crossing a real socket."""
    with httpx.Client(base_url=server.url, auth=HMACAuth(KEY_ID, SECRET), timeout=TIMEOUT) as c:
        response = c.request(method, "/t/a b?x=1&x=2", **SYNC_BODIES[body]())
        assert response.status_code == 200, response.text
        if method == "HEAD":
            return  # no body to read the echo from; the 200 is the verdict
        check_echo(response.json(), method, "/t/a%20b", "x=1&x=2", response.request.content)


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


ASYNC_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "none": dict,
    "content": lambda: {"content": BODY},
    "json": lambda: {"json": {"a": 1}},
    "files-multipart": lambda: {"files": _files()},
    "async-generator": lambda: {"content": _chunks(BODY * 50, 64)},
}


@pytest.mark.parametrize("body", list(ASYNC_BODIES))
@pytest.mark.parametrize("method", METHODS)
async def test_httpx_async_round_trip_every_method_and_body_kind(
    server: UvicornServer, method: str, body: str
) -> None:
    """An httpx.AsyncClient's signed request verifies after crossing a real socket."""
    auth = HMACAuth(KEY_ID, SECRET)
    async with httpx.AsyncClient(base_url=server.url, auth=auth, timeout=TIMEOUT) as client:
        response = await client.request(method, "/t/b;c=d?q=a+b", **ASYNC_BODIES[body]())
    assert response.status_code == 200, response.text
    if method != "HEAD":
        check_echo(response.json(), method, "/t/b;c=d", "q=a+b", response.request.content)


STREAMS = {"yields-nothing": [], "yields-empty-bytes": [b""], "yields-bytes": [b"ab", b"c"]}


def check_framed_by_length(echo: dict[str, Any], chunks: list[bytes]) -> None:
    """The server got the body framed by its Content-Length, not chunked, and all of it."""
    headers = dict(echo["headers"])
    assert "transfer-encoding" not in headers
    assert headers["content-length"] == str(len(b"".join(chunks)))
    assert echo["length"] == len(b"".join(chunks))


@pytest.mark.parametrize("stream", list(STREAMS))
def test_httpx_sync_streamed_body_empty_or_not_goes_out_with_a_length(
    server: UvicornServer, stream: str
) -> None:
    """A generator body, even an empty one, crosses the wire with Content-Length and verifies."""
    with httpx.Client(base_url=server.url, auth=HMACAuth(KEY_ID, SECRET), timeout=TIMEOUT) as c:
        response = c.post("/t/up", content=iter(STREAMS[stream]))
    assert response.status_code == 200, response.text
    check_framed_by_length(response.json(), STREAMS[stream])


@pytest.mark.parametrize("stream", list(STREAMS))
async def test_httpx_async_streamed_body_empty_or_not_goes_out_with_a_length(
    server: UvicornServer, stream: str
) -> None:
    """An async generator body, even an empty one, crosses with Content-Length and verifies."""

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in STREAMS[stream]:
            yield chunk

    auth = HMACAuth(KEY_ID, SECRET)
    async with httpx.AsyncClient(base_url=server.url, auth=auth, timeout=TIMEOUT) as client:
        response = await client.put("/t/up", content=chunks())
    assert response.status_code == 200, response.text
    check_framed_by_length(response.json(), STREAMS[stream])


TARGETS = [
    ("/t/a b", "/t/a%20b", ""),
    ("/t/café/ü", "/t/caf%C3%A9/%C3%BC", ""),
    ("/t/a%2Fb", "/t/a%2Fb", ""),
    ("/t/a;b=c", "/t/a;b=c", ""),
    ("/t?a=1&a=2", "/t", "a=1&a=2"),
    ("/t?q=a+b&r=a%20b", "/t", "q=a+b&r=a%20b"),
    ("/t?", "/t", ""),
]


WHOLE_TARGET = [
    *("@method", "@authority", "@path", "@query", "@target-uri", "@request-target"),
    "content-digest",
]


@pytest.mark.parametrize("components", [None, WHOLE_TARGET], ids=["default", "whole-target"])
@pytest.mark.parametrize(("target", "raw_path", "query"), TARGETS)
async def test_threat_U1_U2_httpx_targets_verify_over_the_wire(
    server: UvicornServer, target: str, raw_path: str, query: str, components: list[str] | None
) -> None:
    """Spaces, unicode, %2F, ';', repeated keys, '+' and '?' verify as uvicorn receives them,
    also when ``@target-uri`` and ``@request-target`` are covered: an empty query ("/t?")
    reaches the app as none, so it is signed as none (it was refused invalid_signature)."""
    auth = (
        HMACAuth(KEY_ID, SECRET)
        if components is None
        else HMACAuth(KEY_ID, SECRET, components=components)
    )
    async with httpx.AsyncClient(base_url=server.url, auth=auth, timeout=TIMEOUT) as client:
        response = await client.post(target, content=BODY)
    assert response.status_code == 200, response.text
    check_echo(response.json(), "POST", raw_path, query, BODY)


def test_httpx_sync_10_mib_body(server: UvicornServer) -> None:
    """A 10 MiB body, signed once, crosses the socket and verifies (max_body_size 16 MiB)."""
    with httpx.Client(base_url=server.url, auth=HMACAuth(KEY_ID, SECRET), timeout=TIMEOUT) as c:
        response = c.put("/t/big", content=BIG)
    assert response.status_code == 200, response.text
    check_echo(response.json(), "PUT", "/t/big", "", BIG)


async def test_httpx_async_10_mib_streamed_body(server: UvicornServer) -> None:
    """A 10 MiB async-generator body is read once, signed, and verifies over the wire."""
    auth = HMACAuth(KEY_ID, SECRET)
    async with httpx.AsyncClient(base_url=server.url, auth=auth, timeout=TIMEOUT) as client:
        response = await client.post("/t/big", content=_chunks(BIG, MIB))
    assert response.status_code == 200, response.text
    check_echo(response.json(), "POST", "/t/big", "", BIG)


async def test_httpx_nonces_are_unique_and_a_replay_is_rejected(server: UvicornServer) -> None:
    """Concurrent sends carry distinct nonces; the same bytes re-sent are refused as replayed."""
    auth = HMACAuth(KEY_ID, SECRET)
    before = served(server)
    async with httpx.AsyncClient(base_url=server.url, auth=auth, timeout=TIMEOUT) as client:
        responses = await asyncio.gather(*(client.post("/t", content=BODY) for _ in range(30)))
        assert [r.status_code for r in responses] == [200] * 30
        assert len({r.json()["nonce"] for r in responses}) == 30
        sent = responses[0].request
        again = httpx.Request(sent.method, sent.url, headers=sent.headers, content=sent.content)
        since = server.log_size()
        replay = await client.send(again, auth=None)
    assert_replayed(server, replay, since)
    assert served(server) == before + 30


# -- requests ---------------------------------------------------------------------------------


REQUESTS_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "none": dict,
    "data-bytes": lambda: {"data": BODY},
    "data-str": lambda: {"data": "héllo"},
    "json": lambda: {"json": {"a": [1, "é"]}},
    "data-form": lambda: {"data": {"a": "1 2"}},
    "files-multipart": lambda: {"files": _files()},
    "generator": lambda: {"data": (c for c in (b"one,", b"two,", b"three"))},
    "file": lambda: {"data": io.BytesIO(BODY * 10)},
}


@pytest.mark.parametrize("body", list(REQUESTS_BODIES))
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_requests_round_trip_every_body_kind(server: UvicornServer, method: str, body: str) -> None:
    """A requests session's signed request verifies after crossing a real socket."""
    with requests.Session() as session:
        session.auth = RequestsHMACAuth(KEY_ID, SECRET)
        response = session.request(
            method, server.url + "/t/a b?x=1&x=2", timeout=TIMEOUT, **REQUESTS_BODIES[body]()
        )
    assert response.status_code == 200, response.text
    sent = response.request.body
    assert sent is None or isinstance(sent, bytes)
    check_echo(response.json(), method, "/t/a%20b", "x=1&x=2", sent or b"")


WITH_HOST = [*WHOLE_TARGET, "host"]


@pytest.mark.parametrize("components", [None, WITH_HOST], ids=["default", "whole-target-and-host"])
@pytest.mark.parametrize(("target", "raw_path", "query"), TARGETS)
def test_threat_U1_U2_requests_targets_verify_over_the_wire(
    server: UvicornServer, target: str, raw_path: str, query: str, components: list[str] | None
) -> None:
    """requests' encoding of odd paths and queries is what is signed and what arrives,
    also when the whole target and ``host`` are covered (urllib3 adds the Host after the
    auth has run, so covering it was a ValueError)."""
    with requests.Session() as session:
        session.auth = (
            RequestsHMACAuth(KEY_ID, SECRET)
            if components is None
            else RequestsHMACAuth(KEY_ID, SECRET, components=components)
        )
        response = session.post(server.url + target, data=BODY, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    check_echo(response.json(), "POST", raw_path, query, BODY)


def test_requests_trailing_dot_host_verifies_over_the_wire(
    server: UvicornServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http://api.example.:port/ (resolved here to 127.0.0.1) is signed for the Host urllib3
    sends, without the dot, and the server accepts it."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real(HOST if host == "api.example." else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: urllib3 connects itself
        session.auth = RequestsHMACAuth(KEY_ID, SECRET)
        response = session.get(f"http://api.example.:{server.port}/t/x", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert dict(response.json()["headers"])["host"] == f"api.example:{server.port}"


def test_requests_10_mib_body_and_replay(server: UvicornServer) -> None:
    """A 10 MiB requests body verifies; sending the prepared request again is replayed."""
    with requests.Session() as session:
        session.auth = RequestsHMACAuth(KEY_ID, SECRET)
        response = session.put(server.url + "/t/big", data=BIG, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        check_echo(response.json(), "PUT", "/t/big", "", BIG)
        since = server.log_size()
        replay = session.send(response.request, timeout=TIMEOUT)
    assert_replayed(server, replay, since)
