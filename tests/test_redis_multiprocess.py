"""Two uvicorn servers sharing one real Redis: replay protection across processes (THREATS R4-R7).

The module starts one redis-server (``tests/redis_server.py``) and two servers
running the echo app of ``tests/apps/echo_app.py`` with a ``RedisNonceStore`` on
that Redis (``tests/apps/redis_store.py``): A with ``--http h11 --loop asyncio``,
B with ``--http httptools --loop uvloop``. Both check the same key, and since
neither is given an external authority, each verifies ``@authority`` from the
``Host`` header: a request signed for A's address verifies on B, as it would
behind a load balancer. Each test reads the servers' app counters
(``GET /_stats``, which does not move them) and ends by checking that neither
logged a 500 or a traceback.

Requests go over raw keep-alive sockets where there are many of them: an httpx
client spends about 2 ms of CPU per request, which would spread a race over
hundreds of milliseconds and make 10,000 requests take most of a minute on two
cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from asgi_helpers import logged_reasons
from hmacguard import HMACKey, Signer
from redis_server import RedisServer, require_redis_server
from uvicorn_server import UvicornServer, close_connections

pytestmark = pytest.mark.redis

KEY_ID = "client-1"
SECRET = b"redis-multiprocess-test-secret-1"
APP = "tests.apps.echo_app:app"
STORE = "tests.apps.redis_store:store"
STATS = "/_stats"
JSON = "application/json"
TIMEOUT = 10.0
STORE_TIMEOUT = 0.25  # the RedisNonceStore default, set explicitly for the outage bound
OUTAGE_BOUND = 0.5  # a valid request during an outage is answered within this (seconds)

SIGNER = Signer(HMACKey(KEY_ID, SECRET))
WRONG_SIGNER = Signer(HMACKey(KEY_ID, b"w" * 32))  # the same key id, another secret: bad MAC


# -- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """The Redis both servers share."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def servers(redis_server: RedisServer) -> Iterator[tuple[UvicornServer, UvicornServer]]:
    """A (h11, asyncio) and B (httptools, uvloop), each its own process, one Redis store."""
    env = {
        "HMACGUARD_TEST_KEY_ID": KEY_ID,
        "HMACGUARD_TEST_SECRET": SECRET.hex(),
        "HMACGUARD_TEST_NONCE_STORE": STORE,
        "HMACGUARD_REDIS_URL": redis_server.url,
        "HMACGUARD_TEST_REDIS_TIMEOUT": str(STORE_TIMEOUT),
    }
    with (
        UvicornServer(APP, http="h11", env=env) as a,
        UvicornServer(APP, http="httptools", env=env) as b,
    ):
        yield a, b


@pytest.fixture(autouse=True)
def no_server_errors(servers: tuple[UvicornServer, UvicornServer]) -> Iterator[None]:
    """Fail the test if either server logged a 500 or an unhandled exception meanwhile."""
    starts = [server.log_size() for server in servers]
    yield
    for server, start in zip(servers, starts, strict=True):
        server.assert_no_server_errors(since=start)


# -- helpers ----------------------------------------------------------------------------------


def stats(server: UvicornServer) -> dict[str, Any]:
    """The server's app counter and process id (``/_stats`` is exempt and moves nothing)."""
    response = httpx.get(server.url + STATS, timeout=TIMEOUT, trust_env=False)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def served(*servers: UvicornServer) -> int:
    """Requests that reached the app, summed over ``servers``."""
    return sum(stats(server)["count"] for server in servers)


def signed_request(
    authority: str, target: str, body: bytes = b"", *, signer: Signer = SIGNER
) -> bytes:
    """A signed HTTP/1.1 request for ``authority``, written out byte for byte, fresh nonce."""
    fields = [("host", authority)]
    if body:
        fields += [("content-type", JSON), ("content-length", str(len(body)))]
    fields += signer.sign("POST", f"http://{authority}{target}", fields, body or None).items()
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    return head.encode("latin-1") + b"\r\n" + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Read one Content-Length framed response: (status, lowercase headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0][9:12]), headers, body


async def exchange(server: UvicornServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request on a new connection and read the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        return await asyncio.wait_for(read_response(reader), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()


def reason(body: bytes) -> str:
    """The problem document's reason."""
    result: str = json.loads(body)["reason"]
    return result


def logged_since(server: UvicornServer, since: int) -> list[str]:
    """The precise reasons ``server`` logged for its rejections after log offset ``since``.

    A replay is told ``invalid_signature`` like a bad MAC (THREATS K2); the middleware's
    WARNING line in the server's log (written before the response) says ``replayed``.
    """
    return logged_reasons(server.log()[since:])


# -- replay across processes (R4) --------------------------------------------------------


async def test_threat_R4_accepted_by_A_is_a_replay_on_B(
    servers: tuple[UvicornServer, UvicornServer],
) -> None:
    """A request accepted by server A, sent byte for byte to server B, is a replay there."""
    a, b = servers
    before = (stats(a)["count"], stats(b)["count"])
    since = (a.log_size(), b.log_size())
    request = signed_request(a.authority, "/orders", b'{"amount": 10}')
    first = await exchange(a, request)
    replay = await exchange(b, request)
    again = await exchange(a, request)
    assert first[0] == 200
    assert json.loads(first[2])["count"] == before[0] + 1
    assert (replay[0], reason(replay[2])) == (401, "invalid_signature")
    assert (again[0], reason(again[2])) == (401, "invalid_signature")
    assert (logged_since(a, since[0]), logged_since(b, since[1])) == (["replayed"], ["replayed"])
    assert (stats(a)["count"], stats(b)["count"]) == (before[0] + 1, before[1])


async def test_threat_R4_the_other_way_round(servers: tuple[UvicornServer, UvicornServer]) -> None:
    """Accepted by B first (uvloop, httptools), the same request is a replay on A."""
    a, b = servers
    request = signed_request(b.authority, "/orders", b'{"amount": 11}')
    assert (await exchange(b, request))[0] == 200
    since = a.log_size()
    status, _, body = await exchange(a, request)
    assert (status, reason(body)) == (401, "invalid_signature")
    assert logged_since(a, since) == ["replayed"]


# -- the race across processes (R5) ----------------------------------------------------------

ROUNDS = 20
COPIES = 100


@pytest.mark.parametrize(
    "rounds", [ROUNDS, pytest.param(1000, marks=pytest.mark.slow, id="1000 rounds")]
)
async def test_threat_R5_hundred_copies_split_across_A_and_B_one_accepted_per_round(
    servers: tuple[UvicornServer, UvicornServer], rounds: int
) -> None:
    """The same signed request 100 times at once, 50 to A and 50 to B, 20 rounds (1,000, as
    THREATS R5 asks, with -m slow): one 2xx each.

    The copies are written back to back on 100 connections opened beforehand, so
    both processes race to record the nonce in Redis within a millisecond or so.
    Each round opens its own: a refusal of a request with a body closes its
    connection.
    """
    a, b = servers
    before = served(a, b)
    since = (a.log_size(), b.log_size())
    accepted_by = Counter[int]()
    for round_ in range(rounds):
        connections = [
            await asyncio.open_connection("127.0.0.1", server.port)
            for server in (a, b)
            for _ in range(COPIES // 2)
        ]
        try:
            request = signed_request(a.authority, f"/race/{round_}", b'{"n": %d}' % round_)
            for _, writer in connections:
                writer.write(request)
            responses = await asyncio.wait_for(
                asyncio.gather(*(read_response(reader) for reader, _ in connections)), TIMEOUT
            )
            statuses = Counter(status for status, _, _ in responses)
            assert statuses == {200: 1, 401: COPIES - 1}, statuses
            reasons = Counter(reason(body) for status, _, body in responses if status == 401)
            assert reasons == {"invalid_signature": COPIES - 1}  # told like a bad MAC (K2)
            winner = next(i for i, (status, _, _) in enumerate(responses) if status == 200)
            accepted_by[winner // (COPIES // 2)] += 1
        finally:
            await close_connections(connections)
    assert served(a, b) - before == rounds
    assert sum(accepted_by.values()) == rounds
    # Every refused copy was logged as a replay, by whichever server refused it.
    logged = logged_since(a, since[0]) + logged_since(b, since[1])
    assert Counter(logged) == {"replayed": rounds * (COPIES - 1)}


# -- outage (R7) -------------------------------------------------------------------------------


async def valid_requests_answered_503(
    servers: Sequence[UvicornServer], target: str, rounds: int
) -> None:
    """Send ``rounds`` valid requests to each server; each gets 503 with Retry-After in time."""
    for _ in range(rounds):
        for server in servers:
            started = time.monotonic()
            status, headers, body = await exchange(server, signed_request(server.authority, target))
            elapsed = time.monotonic() - started
            assert status == 503, body
            assert reason(body) == "nonce_store_unavailable"
            assert headers["retry-after"] == "1"
            assert elapsed < OUTAGE_BOUND, f"{server}: 503 after {elapsed:.3f} s"


async def test_threat_R7_redis_stopped_gives_503_then_recovers_without_restarting(
    servers: tuple[UvicornServer, UvicornServer], redis_server: RedisServer
) -> None:
    """Redis stopped: valid requests get 503 in < 0.5 s, none reach the app; Redis back: 200."""
    a, b = servers
    pids = (stats(a)["pid"], stats(b)["pid"])
    for server in servers:  # open pooled connections, which the outage then breaks
        assert (await exchange(server, signed_request(server.authority, "/warm")))[0] == 200
    before = served(a, b)
    redis_server.stop()
    try:
        await valid_requests_answered_503(servers, "/during-outage", rounds=5)
        assert served(a, b) == before
    finally:
        redis_server.start()  # on the same port
    for server in servers:
        status, _, body = await exchange(server, signed_request(server.authority, "/after"))
        assert status == 200, body
    assert served(a, b) == before + 2
    assert (stats(a)["pid"], stats(b)["pid"]) == pids  # the same processes, never restarted


async def test_threat_R7_unresponsive_redis_gives_503_within_the_timeout(
    servers: tuple[UvicornServer, UvicornServer], redis_server: RedisServer
) -> None:
    """Redis alive but not answering (CLIENT PAUSE): 503 in < 0.5 s; answering again: 200."""
    a, b = servers
    before = served(a, b)
    client = redis_server.client()
    try:
        client.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
        try:
            await valid_requests_answered_503(servers, "/paused", rounds=2)
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
    finally:
        client.close()
    assert served(a, b) == before
    for server in servers:
        status, _, body = await exchange(server, signed_request(server.authority, "/unpaused"))
        assert status == 200, body
    assert served(a, b) == before + 2


# -- store exhaustion by unauthenticated traffic (R6) -----------------------------------------

BAD_REQUESTS = 10_000
CONNECTIONS = 16


async def test_threat_R6_ten_thousand_bad_macs_write_nothing_to_redis(
    servers: tuple[UvicornServer, UvicornServer], redis_server: RedisServer
) -> None:
    """10,000 requests with bad MACs and unique nonces: all 401, DBSIZE and counters unchanged.

    16 clients, 8 per server, each sending its share one request at a time, each on a
    new connection when the server closed the last (a refusal of a request with a
    body says Connection: close).
    """
    a, b = servers
    client = redis_server.client()
    try:
        keys_before = client.dbsize()
        before = served(a, b)
        requests = [
            signed_request(a.authority, "/flood", b'{"i": %d}' % i, signer=WRONG_SIGNER)
            for i in range(BAD_REQUESTS)
        ]
        nonces = {re.search(rb'nonce="([^"]+)"', request)[1] for request in requests}  # type: ignore[index]
        assert len(nonces) == BAD_REQUESTS

        async def send(
            server: UvicornServer, share: list[bytes]
        ) -> Counter[tuple[int, str, str | None]]:
            seen: Counter[tuple[int, str, str | None]] = Counter()
            for request in share:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                try:
                    writer.write(request)
                    status, headers, body = await read_response(reader)
                    seen[status, reason(body), headers.get("connection")] += 1
                finally:
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()
            return seen

        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(
                *(send(servers[i % 2], requests[i::CONNECTIONS]) for i in range(CONNECTIONS))
            ),
            120,
        )
        elapsed = time.monotonic() - started
        assert sum(results, Counter()) == {(401, "invalid_signature", "close"): BAD_REQUESTS}
        assert client.dbsize() == keys_before
        assert served(a, b) == before
    finally:
        client.close()
    assert elapsed < 60, f"{BAD_REQUESTS} requests took {elapsed:.1f} s"
