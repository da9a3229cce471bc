"""RedisNonceStore against a real redis-server: the nonce-store contract, and what Redis adds.

Every test talks to a redis-server started by ``tests/redis_server.py`` on a free
port of 127.0.0.1 (no persistence); none mocks Redis. Without the binary the
tests skip, saying how to install it, except in CI (``CI=true``), where they fail.
Tests that stop or reconfigure the server get one of their own (``own_redis``);
the others share one per module and keep apart through a fresh key prefix each.

What is proved here, beyond :class:`NonceStoreContract` (which also runs on a
three-node Redis Cluster): one ``SET NX PX`` per call (seen with ``MONITOR``),
fixed-size hashed keys (R9), the TTL rounded up, real expiry, the
``maxmemory-policy`` warning (R8), fail closed within the timeout on refusal,
silence and error replies (R7), recovery, ``fail_open``, credentials kept out of
reprs, messages and logs, concurrent calls sharing a few connections without
starving anyone, and use from several event loops and threads. Through the
middleware in process: 503 with ``Retry-After``, app untouched.

Tests about the store's behaviour run twice (the ``connect`` fixture): with the
store built from a URL (its built-in RESP2 client, ``_resp.py``) and with a
redis-py client given to it. The built-in client's own protocol handling is
tested in ``tests/test_resp.py``.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from asgi_helpers import (
    KEYS,
    asgi_client,
    logged_reasons,
    problem,
    protect,
    sign,
    signed_scope,
)
from hmacguard import (
    NonceStore,
    NonceStoreUnavailable,
    RedisNonceStore,
    SignatureMiddleware,
    nonce_key,
)
from local_server import HOST, free_port
from redis_server import LocalRedisCluster, RedisServer, require_redis_server
from stopwatch import Stopwatch
from tcp_proxy import TcpProxy
from test_nonce_store import TTL, NonceStoreContract

pytestmark = pytest.mark.redis

TIMEOUT = 0.25  # the store's default, and THREATS' bound for a Redis call
SLACK = 0.15  # scheduling slack on a busy 2-core machine, on top of the timeout
ANSWER_TIMEOUT = 5.0  # for tests about answers, not timing
PASSWORD = "s3cr3t-Pa55word"  # a test server's password


# -- servers and stores ------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the module's tests that leave it running and configured as is."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test, which may stop, restart or reconfigure it."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests sharing a server stay independent."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def make_store(prefix: str) -> AsyncIterator[Any]:
    """A factory of RedisNonceStores (prefix of this test by default), closed afterwards."""
    stores: list[RedisNonceStore] = []

    def make(url_or_client: Any, **options: Any) -> RedisNonceStore:
        options.setdefault("prefix", prefix)
        store = RedisNonceStore(url_or_client, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()


@pytest.fixture(params=["url", "client"])
async def connect(request: pytest.FixtureRequest, make_store: Any) -> AsyncIterator[Any]:
    """A factory of stores on a Redis URL, run once per client the store can use.

    "url": the store is given the URL and talks to Redis itself (its built-in
    RESP2 client). "client": it is given a redis.asyncio.Redis made from the
    URL, with socket timeouts equal to the store's timeout and no retries, as
    docs/deployment.md advises. Everything made here is closed afterwards.
    """
    stores: list[RedisNonceStore] = []
    clients: list[redis.asyncio.Redis] = []

    def connect(url: str, **options: Any) -> RedisNonceStore:
        if request.param == "url":
            store: RedisNonceStore = make_store(url, **options)
        else:
            timeout = options.get("timeout", TIMEOUT)
            client = redis.asyncio.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
            clients.append(client)
            store = make_store(client, **options)
        stores.append(store)
        return store

    yield connect
    for store in stores:
        await store.aclose()
    for client in clients:
        await client.aclose()


@pytest.fixture
def blackhole() -> Iterator[str]:
    """The URL of a TCP server that accepts connections and never answers (a hung Redis)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen(64)  # the kernel completes handshakes; nothing ever reads or writes
        yield f"redis://{HOST}:{sock.getsockname()[1]}/0"


def expected_redis_key(prefix: str, key: str) -> str:
    """The documented key layout: prefix + base64url(sha256(key)[:16]), unpadded."""
    digest = hashlib.sha256(key.encode()).digest()[:16]
    return prefix + base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Monitor:
    """The commands a Redis server executes, read from a raw ``MONITOR`` connection."""

    _LINE = re.compile(r"^\+\d+\.\d+ \[\d+ [^\]]+\] (?P<command>.*)$")

    def __init__(self, port: int, client: redis.Redis) -> None:
        client.ping()  # connect the marker client now, so its handshake is not seen
        self._sock = socket.create_connection((HOST, port), timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        self._file = self._sock.makefile("rb")
        assert self._file.readline() == b"+OK\r\n"

    def until(self, marker: str, client: redis.Redis) -> list[list[str]]:
        """Every command seen before ``ECHO marker``, which ``client`` sends now."""
        client.echo(marker)
        commands: list[list[str]] = []
        while True:
            line = self._file.readline().decode().rstrip("\r\n")
            match = self._LINE.match(line)
            assert match, line
            words = re.findall(r'"((?:[^"\\]|\\.)*)"', match["command"])
            if words == ["ECHO", marker]:
                return commands
            commands.append(words)

    def close(self) -> None:
        """Close the monitoring connection."""
        self._file.close()
        self._sock.close()


# -- the contract ----------------------------------------------------------------------------


class TestRedisNonceStore(NonceStoreContract):
    """RedisNonceStore passes the contract every NonceStore passes, on a real Redis."""

    @pytest.fixture
    async def store(self, redis_server: RedisServer, connect: Any) -> RedisNonceStore:
        """A store on the module's Redis (either client), under a prefix of its own.

        The timeout is generous: these tests are about answers, and a busy machine
        must not turn a slow first connection into a failure. Timing is tested below.
        """
        return connect(redis_server.url, timeout=ANSWER_TIMEOUT)  # type: ignore[no-any-return]

    @pytest.mark.parametrize("ttl", [float("inf"), -float("inf")])
    async def test_infinite_ttl_refused(self, store: RedisNonceStore, ttl: float) -> None:
        """An infinite TTL is a ValueError: a nonce key must always expire."""
        with pytest.raises(ValueError, match="ttl"):
            await store.add(nonce_key("client-1", "n"), ttl)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A Redis Cluster of three masters, for the module's cluster tests."""
    require_redis_server()
    with LocalRedisCluster() as cluster:
        yield cluster


@pytest.fixture
async def cluster_client(redis_cluster: LocalRedisCluster) -> AsyncIterator[Any]:
    """A redis.asyncio.RedisCluster client that has discovered the cluster's slots."""
    client = redis.asyncio.RedisCluster(host=HOST, port=redis_cluster.nodes[0].port)
    await client.initialize()
    yield client
    await client.aclose()


class TestRedisClusterNonceStore(NonceStoreContract):
    """On Redis Cluster (a RedisCluster client): the same contract, single-key commands only."""

    @pytest.fixture
    async def store(self, cluster_client: Any, make_store: Any) -> RedisNonceStore:
        """A store on the cluster, under a prefix of its own, its one maxmemory-policy
        check done: the check runs beside the first calls, and on the node's 100
        connections (redis-py's cap) a test's 100 concurrent calls would meet it."""
        store: RedisNonceStore = make_store(cluster_client, timeout=ANSWER_TIMEOUT)
        assert await store.add("settle", TTL) is True
        await store.aclose()  # waits for the check
        await store.discard("settle")  # and leaves no key behind
        return store

    def test_repr_names_the_startup_node(
        self, store: RedisNonceStore, redis_cluster: LocalRedisCluster
    ) -> None:
        """The repr names the cluster by the node the client started from (redis-py
        before 7.0 keeps no list of the nodes given: there, the nodes it knows)."""
        first = f"{HOST}:{redis_cluster.nodes[0].port}"
        if hasattr(store._given, "startup_nodes"):
            assert repr(store).startswith(f"RedisNonceStore('cluster {first}', ")
        else:
            assert repr(store).startswith("RedisNonceStore('cluster ")
            assert first in repr(store).split("'")[1].removeprefix("cluster ").split(",")

    async def test_keys_spread_over_every_node(
        self, store: RedisNonceStore, redis_cluster: LocalRedisCluster, prefix: str
    ) -> None:
        """60 nonces land on all three masters: no key hashes to a fixed slot (no hash tag)."""
        results = await asyncio.gather(*[store.add(f"spread-{i}", TTL) for i in range(60)])
        assert results == [True] * 60
        counts = []
        for node in redis_cluster.nodes:
            with node.client() as client:
                counts.append(len(list(client.scan_iter(match=f"{prefix}*", count=1000))))
        assert sum(counts) == 60
        assert all(count > 0 for count in counts), counts


# -- one command, fixed-size keys, TTL ---------------------------------------------------


async def test_threat_R5_one_set_nx_px_per_add(
    redis_server: RedisServer, connect: Any, prefix: str
) -> None:
    """Each add is exactly one SET key 1 NX PX ms, a single-key command (MONITOR proves it)."""
    store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
    await store.add(nonce_key("client-1", "warm-up"), TTL)  # connects, checks the policy
    await store.aclose()  # waits for the policy check, which runs beside the calls
    client = redis_server.client()
    monitor = Monitor(redis_server.port, client)
    try:
        assert await store.add(nonce_key("client-1", "n1"), 1.0001) is True
        assert await store.add(nonce_key("client-1", "n1"), 361) is False
        commands = monitor.until("done", client)
    finally:
        monitor.close()
        client.close()
    key = expected_redis_key(prefix, nonce_key("client-1", "n1"))
    # PX is the TTL in milliseconds rounded UP: 1.0001 s -> 1001 ms, never 1000.
    assert commands == [
        ["SET", key, "1", "NX", "PX", "1001"],
        ["SET", key, "1", "NX", "PX", "361000"],
    ]


async def test_ttl_below_a_millisecond_is_one_millisecond(
    redis_server: RedisServer, connect: Any
) -> None:
    """A TTL under 1 ms becomes PX 1 (Redis refuses PX 0), not an error or no expiry."""
    store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
    await store.add("warm-up", TTL)
    await store.aclose()  # waits for the policy check, which runs beside the calls
    client = redis_server.client()
    monitor = Monitor(redis_server.port, client)
    try:
        assert await store.add("tiny", 0.0001) is True
        commands = monitor.until("done", client)
    finally:
        monitor.close()
        client.close()
    assert [command[-2:] for command in commands] == [["PX", "1"]]


async def test_key_is_recorded_with_its_ttl(
    redis_server: RedisServer, connect: Any, prefix: str
) -> None:
    """The nonce key holds "1" and expires after the TTL, give or take the elapsed time."""
    store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
    key = nonce_key("client-1", "n1")
    assert await store.add(key, TTL) is True
    client = redis_server.client()
    try:
        name = store.redis_key(key)
        assert name == expected_redis_key(prefix, key)
        assert client.get(name) == b"1"
        assert 360_000 < client.pttl(name) <= 361_000
    finally:
        client.close()


async def test_key_is_fresh_again_after_it_expires(redis_server: RedisServer, connect: Any) -> None:
    """A key is a replay until Redis expires it, then fresh again (real expiry, 0.5 s:
    long enough that a busy machine cannot let it lapse between the first two calls)."""
    store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
    key = nonce_key("client-1", "short")
    assert await store.add(key, 0.5) is True
    assert await store.add(key, 0.5) is False
    client = redis_server.client()
    try:
        deadline = time.monotonic() + 3
        while client.exists(store.redis_key(key)):
            assert time.monotonic() < deadline, "Redis did not expire the key"
            await asyncio.sleep(0.005)
    finally:
        client.close()
    assert await store.add(key, 0.5) is True


@pytest.mark.parametrize(
    ("key_id", "nonce"),
    [("a:b", "c"), ("a", "b:c"), ("1:a", "b"), ("1", "a:b"), ("é", "\udc80"), ("k", "")],
)
def test_threat_R9_redis_key_is_prefix_and_128_bit_hash(key_id: str, nonce: str) -> None:
    """The Redis key is the prefix and 22 base64url characters of SHA-256 (128 bits)."""
    store = RedisNonceStore("redis://127.0.0.1:1/0", prefix="p:")
    key = nonce_key(key_id, nonce)
    name = store.redis_key(key)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:16]
    assert name == "p:" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert len(name) == len("p:") + 22


def test_threat_R9_distinct_pairs_get_distinct_redis_keys() -> None:
    """Pairs that concatenate alike, and 10,000 others, map to 10,000+ distinct Redis keys."""
    store = RedisNonceStore("redis://127.0.0.1:1/0")
    pairs = {("a:b", "c"), ("a", "b:c"), ("a", ":b"), ("a:", "b"), ("ab", "c"), ("a", "bc")}
    pairs |= {(f"client-{i % 7}", f"n{i}") for i in range(10_000)}
    assert len({store.redis_key(nonce_key(*pair)) for pair in pairs}) == len(pairs)


async def test_threat_R9_long_inputs_cost_no_more_memory(
    redis_server: RedisServer, connect: Any
) -> None:
    """A 10 KB key id and nonce take the same Redis memory as short ones (MEMORY USAGE)."""
    store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
    short = nonce_key("client-1", "n")
    long = nonce_key("k" * 10_000, "n" * 10_000)
    assert await store.add(short, TTL) is True
    assert await store.add(long, TTL) is True
    assert await store.add(long, TTL) is False
    client = redis_server.client()
    try:
        sizes = [client.memory_usage(store.redis_key(key)) for key in (short, long)]
    finally:
        client.close()
    assert sizes[0] == sizes[1]
    assert sizes[0] < 128


async def test_prefixes_keep_stores_apart(redis_server: RedisServer, connect: Any) -> None:
    """Two prefixes on one Redis are two independent stores."""
    first = connect(redis_server.url, prefix="app-a:", timeout=ANSWER_TIMEOUT)
    second = connect(redis_server.url, prefix="app-b:", timeout=ANSWER_TIMEOUT)
    key = nonce_key("client-1", uuid.uuid4().hex)
    assert await first.add(key, TTL) is True
    assert await second.add(key, TTL) is True
    assert await first.add(key, TTL) is False


# -- fail closed ---------------------------------------------------------------------------


async def test_threat_R7_connection_refused_is_unavailable(connect: Any) -> None:
    """Nothing listening: NonceStoreUnavailable (503) at once, naming the failure class."""
    store = connect(f"redis://{HOST}:{free_port()}/0")
    with Stopwatch() as watch, pytest.raises(NonceStoreUnavailable) as caught:
        await store.add(nonce_key("client-1", "n"), TTL)
    assert watch.running < TIMEOUT + SLACK
    assert caught.value.reason == "nonce_store_unavailable"
    assert caught.value.status == 503
    assert "ConnectionError" in caught.value.detail


@pytest.mark.parametrize("timeout", [0.1, TIMEOUT])
async def test_threat_R7_silent_server_times_out(
    blackhole: str, connect: Any, timeout: float
) -> None:
    """A server that accepts but never answers: unavailable within the timeout, not never."""
    store = connect(blackhole, timeout=timeout)
    for _ in range(3):  # each call is bounded, the first (connecting) and the later ones
        with Stopwatch() as watch, pytest.raises(NonceStoreUnavailable) as caught:
            await store.add(nonce_key("client-1", "n"), TTL)
        assert timeout * 0.9 <= watch.elapsed
        assert watch.running < timeout + SLACK
        assert "TimeoutError" in caught.value.detail


async def test_threat_R7_paused_redis_times_out_then_answers_correctly(
    own_redis: RedisServer, connect: Any
) -> None:
    """A Redis that stops answering (CLIENT PAUSE) times out; afterwards replies stay in step."""
    store = connect(own_redis.url)
    assert await store.add("before", TTL) is True
    client = own_redis.client()
    try:
        client.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
        with Stopwatch() as watch, pytest.raises(NonceStoreUnavailable) as caught:
            await store.add("during", TTL)
        assert watch.running < TIMEOUT + SLACK
        assert "TimeoutError" in caught.value.detail
        client.execute_command("CLIENT", "UNPAUSE")
    finally:
        client.close()
    # A connection whose reply was abandoned must not hand that reply to the next call.
    for i in range(20):
        assert await store.add(f"after-{i}", TTL) is True
        assert await store.add(f"after-{i}", TTL) is False
    assert await store.add("before", TTL) is False


async def test_threat_R7_error_reply_is_unavailable(own_redis: RedisServer, connect: Any) -> None:
    """An error reply (OOM under noeviction) is unavailable, naming the error class only."""
    store = connect(own_redis.url, timeout=ANSWER_TIMEOUT)
    assert await store.add("first", TTL) is True
    client = own_redis.client()
    try:
        client.config_set("maxmemory", "1")
        with pytest.raises(NonceStoreUnavailable) as caught:
            await store.add("second", TTL)
        client.config_set("maxmemory", "0")
    finally:
        client.close()
    assert caught.value.detail.endswith(": OutOfMemoryError")
    assert await store.add("second", TTL) is True


async def test_two_middlewares_on_one_redis_store_accept_a_request_once(
    redis_server: RedisServer, connect: Any
) -> None:
    """A sub-app with its own SignatureMiddleware, mounted under another, both given
    the same RedisNonceStore: the request is accepted once, and sent again, refused.
    Given two store objects, even on the same URL, the inner one cannot tell the outer
    one's record from an earlier request's, and refuses (it fails closed)."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.routing import Mount  # noqa: PLC0415

    for shared in (True, False):
        outer_store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
        inner_store = outer_store if shared else connect(redis_server.url, timeout=ANSWER_TIMEOUT)
        inner = protect(nonce_store=inner_store)
        outer = SignatureMiddleware(
            Starlette(routes=[Mount("/v2", app=inner.middleware)]),
            keys=KEYS,
            nonce_store=outer_store,
            clock=inner.clock,
        )
        path = f"/v2/t/{uuid.uuid4()}"
        headers = sign("POST", path, {"content-type": "application/json"}, b"{}")
        async with asgi_client(outer) as client:
            first = await client.post(path, headers=headers, content=b"{}")
            again = await client.post(path, headers=headers, content=b"{}")
        assert first.status_code == (200 if shared else 401), first.text
        assert again.status_code == 401
        assert inner.echo.count == (1 if shared else 0)


# -- ping, for readiness probes --------------------------------------------------------------


async def test_ping_answers_when_redis_does(redis_server: RedisServer, connect: Any) -> None:
    """ping() returns when Redis answers PING, and sends nothing else (no key written)."""
    store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
    client = redis_server.client()
    try:
        before = client.dbsize()
        assert await store.ping() is None
        assert await store.ping() is None  # on the connection the first one opened
        assert client.dbsize() == before
    finally:
        client.close()


async def test_ping_raises_when_nothing_listens(connect: Any) -> None:
    """Nothing listening: NonceStoreUnavailable at once, naming the failure class."""
    store = connect(f"redis://{HOST}:{free_port()}/0")
    with pytest.raises(NonceStoreUnavailable, match="ConnectionError"):
        await store.ping()


async def test_ping_raises_within_the_timeout_when_redis_hangs(
    blackhole: str, connect: Any
) -> None:
    """A server that never answers: NonceStoreUnavailable within the timeout."""
    store = connect(blackhole, timeout=0.1)
    with Stopwatch() as watch, pytest.raises(NonceStoreUnavailable, match="TimeoutError"):
        await store.ping()
    assert watch.running < 0.1 + SLACK


async def test_ping_tells_the_truth_under_fail_open(connect: Any) -> None:
    """fail_open=True accepts requests when Redis is down; ping() still says it is down."""
    store = connect(f"redis://{HOST}:{free_port()}/0", fail_open=True)
    assert await store.add("k", TTL) is True  # accepted without a replay check
    with pytest.raises(NonceStoreUnavailable):
        await store.ping()


async def test_ping_on_a_cluster(cluster_client: Any, make_store: Any) -> None:
    """ping() through a given RedisCluster client."""
    store: RedisNonceStore = make_store(cluster_client, timeout=ANSWER_TIMEOUT)
    assert await store.ping() is None


async def fill(store: RedisNonceStore, client: redis.Redis, until_gone: str = "") -> int:
    """Add nonces 100 at a time until Redis refuses one (or evicts ``until_gone``)."""
    added = 0
    while not until_gone or client.exists(store.redis_key(until_gone)):
        await asyncio.gather(*[store.add(f"filler-{added + i}", TTL) for i in range(100)])
        added += 100
        assert added < 200_000, "Redis never ran out of memory"
    return added


async def warm_up(store: RedisNonceStore) -> None:
    """Open the store's connections, so memory measured afterwards is the keys' alone."""
    await asyncio.gather(*[store.add(f"warm-up-{i}", TTL) for i in range(100)])


async def test_threat_R8_full_redis_with_noeviction_never_forgets_a_live_nonce(
    own_redis: RedisServer, connect: Any
) -> None:
    """noeviction: a full Redis answers 503 (OOM), and the live nonce's replay is never accepted."""
    store = connect(own_redis.url, timeout=ANSWER_TIMEOUT)
    client = own_redis.client()
    try:
        await warm_up(store)
        assert await store.add("live", TTL) is True
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(used + 300_000))
        with pytest.raises(NonceStoreUnavailable, match="OutOfMemoryError"):
            await fill(store, client)
        try:
            replay: bool | None = await store.add("live", TTL)
        except NonceStoreUnavailable:  # still full: the check itself is refused (OOM)
            replay = None
        assert replay is not True  # never accepted: a 503, or refused as a replay
        client.config_set("maxmemory", "0")
    finally:
        client.close()
    assert await store.add("live", TTL) is False


async def test_threat_R7_recovers_when_redis_returns(own_redis: RedisServer, connect: Any) -> None:
    """Stopped Redis: unavailable; started again on the same port: the same store works."""
    store = connect(own_redis.url)
    assert await store.add("before", TTL) is True
    own_redis.stop()
    for _ in range(3):
        with Stopwatch() as watch, pytest.raises(NonceStoreUnavailable) as caught:
            await store.add("during", TTL)
        assert watch.running < TIMEOUT + SLACK
        assert "ConnectionError" in caught.value.detail
    own_redis.start()
    assert await store.add("after", TTL) is True
    assert await store.add("after", TTL) is False


# -- fail open --------------------------------------------------------------------------------


async def test_fail_open_accepts_and_logs_an_error_while_redis_is_down(
    connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """fail_open=True: unreachable Redis accepts every add, with one ERROR per 10 s."""
    with caplog.at_level(logging.WARNING, logger="hmacguard"):
        store = connect(f"redis://{HOST}:{free_port()}/0", fail_open=True)
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "fail_open=True" in caplog.records[0].getMessage()
        caplog.clear()
        results = [await store.add(nonce_key("client-1", "n"), TTL) for _ in range(5)]
    assert results == [True] * 5
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    message = caplog.records[0].getMessage()
    assert "ConnectionError" in message
    assert "WITHOUT a replay check" in message


async def test_fail_open_still_refuses_replays_while_redis_is_up(
    redis_server: RedisServer, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """fail_open only changes what happens when Redis cannot answer: replays stay refused."""
    store = connect(redis_server.url, fail_open=True, timeout=ANSWER_TIMEOUT)
    caplog.clear()  # the warning about fail_open itself
    with caplog.at_level(logging.ERROR, logger="hmacguard"):
        assert await store.add("k", TTL) is True
        assert await store.add("k", TTL) is False
    assert caplog.records == []


async def test_fail_open_reports_the_count_of_unchecked_requests(
    connect: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ERROR line says how many requests went unchecked since the previous one."""
    import hmacguard._redis_nonce_store as module  # noqa: PLC0415  (the interval to shorten)

    store = connect(f"redis://{HOST}:{free_port()}/0", fail_open=True)
    with caplog.at_level(logging.ERROR, logger="hmacguard"):
        await store.add("a", TTL)
        await store.add("b", TTL)
        await store.add("c", TTL)
        monkeypatch.setattr(module, "_FAIL_OPEN_LOG_INTERVAL", 0.0)
        await store.add("d", TTL)
    counts = [re.search(r"so (\d+) request", r.getMessage()) for r in caplog.records]
    assert [int(match[1]) for match in counts if match] == [1, 3]


# -- maxmemory-policy ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-lfu"])
async def test_threat_R8_evicting_policy_logs_a_warning_once(
    own_redis: RedisServer, connect: Any, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    """A policy that can evict keys with a TTL is named in one warning that says noeviction."""
    client = own_redis.client()
    try:
        client.config_set("maxmemory-policy", policy)
    finally:
        client.close()
    store = connect(own_redis.url, timeout=ANSWER_TIMEOUT)
    with caplog.at_level(logging.WARNING, logger="hmacguard"):
        assert await store.add("a", TTL) is True
        assert await store.add("b", TTL) is True
        await store.aclose()  # the check runs beside the calls; closing waits for it
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    message = caplog.records[0].getMessage()
    assert f"maxmemory-policy {policy}" in message
    assert "set maxmemory-policy noeviction" in message


async def test_threat_R8_noeviction_logs_no_warning(
    redis_server: RedisServer, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """noeviction (the test server's setting) is safe: no warning."""
    store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
    with caplog.at_level(logging.DEBUG, logger="hmacguard"):
        assert await store.add("a", TTL) is True
        await store.aclose()
    # The policy was read (at DEBUG), and nothing was said above DEBUG.
    assert [r.getMessage() for r in caplog.records] == [
        "RedisNonceStore: maxmemory-policy is noeviction"
    ]


async def test_threat_R8_config_refused_is_noted_not_fatal(
    own_redis: RedisServer, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A user without CONFIG (as on managed Redis) still works; the log says it was unchecked."""
    client = own_redis.client()
    try:
        client.acl_setuser(
            "app",
            enabled=True,
            passwords=[f"+{PASSWORD}"],
            keys=["*"],
            commands=["+@all", "-config"],
        )
    finally:
        client.close()
    store = connect(f"redis://app:{PASSWORD}@{HOST}:{own_redis.port}/0")
    with caplog.at_level(logging.WARNING, logger="hmacguard"):
        assert await store.add("a", TTL) is True
        assert await store.add("a", TTL) is False
        await store.aclose()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    message = caplog.records[0].getMessage()
    assert "could not read maxmemory-policy" in message
    assert "NoPermissionError" in message
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("kind", ["url", "client"])
async def test_first_call_waits_for_one_round_trip_not_two(
    redis_server: RedisServer, make_store: Any, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """The first call is bounded by ``timeout`` like any other: the policy check
    (THREATS R8) is read beside it, not after it.

    Behind a network that holds every reply 0.2 s, with timeout=0.35: the first
    call used to wait for its SET and then for CONFIG GET, 0.4 s in all, past
    its timeout, and was accepted.
    """
    with TcpProxy(redis_server.port) as proxy:
        url = f"redis://{HOST}:{proxy.port}/0"
        given = None
        if kind == "client":
            given = redis.asyncio.Redis.from_url(url, socket_timeout=ANSWER_TIMEOUT)
            await given.ping()  # connected (redis-py's handshake) before the network slows
        try:
            store = make_store(url if given is None else given, timeout=0.35)
            proxy.latency = 0.2
            with caplog.at_level(logging.DEBUG, logger="hmacguard"):
                with Stopwatch() as watch:
                    assert await store.add("first", TTL) is True
                # Still read, in the background: give it its round trip before closing.
                deadline = time.monotonic() + 2
                while "maxmemory-policy is noeviction" not in caplog.text:
                    assert time.monotonic() < deadline, "the policy was never read"
                    await asyncio.sleep(0.02)
                await store.aclose()
        finally:
            if given is not None:
                await given.aclose()
    assert watch.running < 0.35, f"the first call took {watch.running:.2f} s"


async def test_threat_R8_evicting_policy_does_lose_nonces(
    own_redis: RedisServer, connect: Any
) -> None:
    """Why the warning exists: under volatile-lru and memory pressure, a replay is accepted."""
    client = own_redis.client()
    try:
        client.config_set("maxmemory-policy", "volatile-lru")
        store = connect(own_redis.url, timeout=ANSWER_TIMEOUT)
        await warm_up(store)
        assert await store.add("victim", TTL) is True
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(used + 300_000))
        await fill(store, client, until_gone="victim")
    finally:
        client.close()
    assert await store.add("victim", TTL) is True  # the replay of a live nonce is accepted


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://user:{PASSWORD}@{HOST}:1/0", f"redis://user:***@{HOST}:1/0"),
        (f"redis://:{PASSWORD}@{HOST}:1/0", f"redis://:***@{HOST}:1/0"),
        (f"redis://{PASSWORD}@{HOST}:1/0", f"redis://***@{HOST}:1/0"),
        (f"rediss://{HOST}:1/0?password={PASSWORD}", f"rediss://{HOST}:1/0?password=***"),
        (f"unix://:{PASSWORD}@/tmp/redis.sock?db=1", "unix://:***@/tmp/redis.sock?db=1"),
        (f"redis://{HOST}:1/0", f"redis://{HOST}:1/0"),
    ],
)
async def test_url_password_never_shown(
    make_store: Any, prefix: str, caplog: pytest.LogCaptureFixture, url: str, shown: str
) -> None:
    """The password in a URL appears in no repr, error, or log line; *** takes its place."""
    with caplog.at_level(logging.DEBUG, logger="hmacguard"):
        store = make_store(url, fail_open=False)
        assert repr(store) == (
            f"RedisNonceStore({shown!r}, prefix={prefix!r}, timeout=0.25, fail_open=False)"
        )
        with pytest.raises(NonceStoreUnavailable) as caught:
            await store.add("k", TTL)
        open_store = make_store(url, fail_open=True)
        await open_store.add("k", TTL)
    error = caught.value
    for text in (str(error), repr(error), error.detail, caplog.text, repr(open_store)):
        assert PASSWORD not in text
    assert shown in error.detail


def test_invalid_url_is_a_value_error_without_the_password() -> None:
    """A URL redis-py cannot use fails at construction, and the message hides the password."""
    with pytest.raises(ValueError, match=r"invalid Redis URL http://user:\*\*\*@host") as caught:
        RedisNonceStore(f"http://user:{PASSWORD}@host:1/0")
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown", "reason"),
    [
        # A "/", "?" or "#" left unescaped in the password ends the host part early:
        # redis-py read the first as localhost:6379 without a password, and the
        # message or repr showed the password.
        (f"redis://:6379/{PASSWORD}@{HOST}:1/0", f"redis://:***@{HOST}:1/0", "percent-encode"),
        (f"redis://user:{PASSWORD}?x@{HOST}:1/0", f"redis://user:***@{HOST}:1/0", "percent-encode"),
        (f"redis://user:{PASSWORD}#x@{HOST}:1/0", f"redis://user:***@{HOST}:1/0", "percent-encode"),
        (f"redis://us/er:{PASSWORD}@{HOST}:1/0", f"redis://***@{HOST}:1/0", "percent-encode"),
        (f"unix://:ab/{PASSWORD}@/tmp/redis.sock", "unix://:***@/tmp/redis.sock", "percent-encode"),
        # The host left out: the password reads as a port.
        (f"redis://default:{PASSWORD}", "redis://default:***", "port is not a number"),
        (f"redis://{HOST}:1/{PASSWORD}", f"redis://{HOST}:1/***", "not a database number"),
    ],
)
def test_url_redis_py_would_misread_is_refused_without_the_password(
    url: str, shown: str, reason: str
) -> None:
    """A URL redis-py would read as another one fails at construction, password unshown."""
    with pytest.raises(ValueError, match=reason) as caught:
        RedisNonceStore(url)
    message = str(caught.value)
    assert PASSWORD not in message
    assert message.startswith(f"invalid Redis URL {shown}: ")


@pytest.mark.parametrize(
    "url",
    [
        f"redis://{HOST}:1/0?password={quote(PASSWORD + '@#/', safe='')}",
        f"redis://:{quote(PASSWORD + '/?#@', safe='')}@{HOST}:1/0",
        f"redis://[::1]:1/0?password={PASSWORD}",
        f"redis://{HOST}/",
    ],
)
def test_url_redis_py_reads_as_meant_is_accepted(url: str) -> None:
    """Percent-encoded reserved characters, an IPv6 host and no database are fine."""
    store = RedisNonceStore(url)
    assert PASSWORD not in repr(store)


async def test_given_client_is_described_without_credentials(
    redis_server: RedisServer, make_store: Any
) -> None:
    """A client passed in is shown by host, port and db, never by its password."""
    client = redis.asyncio.Redis(host=HOST, port=redis_server.port, password=PASSWORD)
    try:
        store = make_store(client)
        assert repr(store).startswith(f"RedisNonceStore('{HOST}:{redis_server.port}/0'")
        assert PASSWORD not in repr(store)
    finally:
        await client.aclose()


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"timeout": float("inf")}, ValueError, "timeout"),
        ({"timeout": True}, ValueError, "timeout"),
        ({"timeout": "0.25"}, ValueError, "timeout"),
        ({"prefix": b"x:"}, TypeError, "prefix"),
        ({"fail_open": 1}, TypeError, "fail_open"),
    ],
)
def test_bad_options_refused(options: dict[str, Any], error: type[Exception], match: str) -> None:
    """Invalid options fail at construction with the option's name."""
    with pytest.raises(error, match=match):
        RedisNonceStore("redis://127.0.0.1:1/0", **options)


@pytest.mark.parametrize("value", [None, 6379, b"redis://127.0.0.1:1/0", redis.Redis()])
def test_not_a_url_or_async_client_refused(value: Any) -> None:
    """Only a URL string or a redis.asyncio client is accepted (not the synchronous client)."""
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisNonceStore(value)


def test_is_a_nonce_store_the_middleware_accepts() -> None:
    """RedisNonceStore satisfies the NonceStore protocol, so SignatureMiddleware takes it."""
    assert isinstance(RedisNonceStore("redis://127.0.0.1:1/0"), NonceStore)


async def test_given_client_is_used_and_left_open(
    redis_server: RedisServer, make_store: Any
) -> None:
    """A client passed in serves the store, and aclose() leaves it open: it is the caller's."""
    client = redis.asyncio.Redis(host=HOST, port=redis_server.port)
    try:
        async with make_store(client) as store:
            assert await store.add("k", TTL) is True
            assert await store.add("k", TTL) is False
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_async_context_manager_closes_its_connections(redis_server: RedisServer) -> None:
    """Leaving ``async with`` closes the connections the store opened (CLIENT LIST shrinks)."""
    client = redis_server.client()
    try:
        before = len(client.client_list())
        async with RedisNonceStore(redis_server.url, prefix=f"{uuid.uuid4()}:") as store:
            await asyncio.gather(*[store.add(f"k{i}", TTL) for i in range(10)])
            assert len(client.client_list()) > before
        deadline = time.monotonic() + 2
        while len(client.client_list()) > before:
            assert time.monotonic() < deadline, "the store's connections stayed open"
            await asyncio.sleep(0.01)
    finally:
        client.close()


# -- concurrent calls share round trips -----------------------------------------------------


def store_connections(client: redis.Redis) -> int:
    """Connections to the server other than ``client``'s own and MONITOR's."""
    mine = client.client_id()
    return sum(
        1 for info in client.client_list() if info["id"] != str(mine) and info["cmd"] != "monitor"
    )


async def test_concurrent_adds_share_one_connection(
    own_redis: RedisServer, make_store: Any
) -> None:
    """From a URL, 500 concurrent adds and the policy check share one pipelined connection."""
    store = make_store(own_redis.url, timeout=ANSWER_TIMEOUT)
    client = own_redis.client()
    try:
        results = await asyncio.gather(*[store.add(f"k{i % 250}", TTL) for i in range(500)])
        assert results.count(True) == 250
        assert store_connections(client) == 1
    finally:
        client.close()


async def test_given_client_concurrent_adds_share_a_few_connections(
    own_redis: RedisServer, make_store: Any
) -> None:
    """Given a redis-py client, 500 concurrent adds use at most 5 connections (4 pipelines)."""
    given = redis.asyncio.Redis(host=HOST, port=own_redis.port, socket_timeout=ANSWER_TIMEOUT)
    store = make_store(given, timeout=ANSWER_TIMEOUT)
    client = own_redis.client()
    try:
        results = await asyncio.gather(*[store.add(f"k{i % 250}", TTL) for i in range(500)])
        assert results.count(True) == 250
        assert 1 <= store_connections(client) <= 5
    finally:
        client.close()
        await store.aclose()
        await given.aclose()


async def test_sustained_load_starves_no_caller(redis_server: RedisServer, connect: Any) -> None:
    """128 callers adding back to back for 1 s: every call answers within a 1 s timeout.

    Callers queue in arrival order; with a pool of connections instead, a newcomer
    could take a freed connection ahead of earlier callers, and some timed out
    (starved for seconds). Not the default 0.25 s: on a loaded two-core machine
    one full-suite run saw a fair queue's wait pass it.
    """
    store = connect(redis_server.url, timeout=1.0)
    await warm_up(store)
    stop = time.monotonic() + 1.0
    answered = 0

    async def caller(n: int) -> None:
        nonlocal answered
        i = 0
        while time.monotonic() < stop:
            assert await store.add(f"load-{n}-{i}", TTL) is True
            answered += 1
            i += 1

    await asyncio.gather(*[caller(n) for n in range(128)])
    assert answered > 128


async def test_caller_that_gave_up_before_sending_burns_no_nonce(
    own_redis: RedisServer, connect: Any
) -> None:
    """A call abandoned while Redis is stuck is never executed: its nonce stays fresh.

    With a redis-py client it waits behind the busy pipelines and is dropped
    unsent; from a URL its connection is closed at the busy calls' timeout,
    before Redis runs it.
    """
    store = connect(own_redis.url, timeout=1.0)
    await warm_up(store)
    client = own_redis.client()
    try:
        client.execute_command("CLIENT", "PAUSE", "2000", "WRITE")
        busy = []
        for i in range(4):  # one pipeline per turn of the loop: all four in flight, paused
            busy.append(asyncio.ensure_future(store.add(f"busy-{i}", TTL)))
            await asyncio.sleep(0.01)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.add("abandoned", TTL), 0.05)
        outcomes = await asyncio.gather(*busy, return_exceptions=True)
        client.execute_command("CLIENT", "UNPAUSE")
        assert all(isinstance(outcome, NonceStoreUnavailable) for outcome in outcomes)
        assert client.exists(store.redis_key("abandoned")) == 0
    finally:
        client.close()
    assert await store.add("abandoned", TTL) is True


async def test_given_client_call_made_as_every_pipeline_finishes_is_sent(
    own_redis: RedisServer, make_store: Any
) -> None:
    """A second nonce of a request, added just as all four pipelines finish, is sent.

    Redis stalls (a paused server, a slow fsync) with four pipelines in flight,
    then answers them in one turn of the event loop. A request with two
    signatures adds its second nonce as soon as its first is answered, in that
    same turn. A worker used to leave the pool a turn later, so the second
    command found four workers, started none, and waited unsent for its
    caller's timeout: a 503 from a healthy Redis.
    """
    given = redis.asyncio.Redis(host=HOST, port=own_redis.port, socket_timeout=ANSWER_TIMEOUT)
    store = make_store(given, timeout=1.0)
    admin = own_redis.client()
    try:
        await warm_up(store)
        for round_ in range(3):
            admin.execute_command("CLIENT", "PAUSE", "200", "WRITE")
            answered: list[float] = []

            async def two_signatures(n: int = round_, answered: list[float] = answered) -> bool:
                assert await store.add(f"first-{n}", TTL) is True
                started = time.monotonic()
                second = await store.add(f"second-{n}", TTL)
                answered.append(time.monotonic() - started)
                return second

            calls = []
            for i in range(4):  # one pipeline per turn of the loop: four in flight
                call = two_signatures() if i == 3 else store.add(f"other-{round_}-{i}", TTL)
                calls.append(asyncio.ensure_future(call))
                await asyncio.sleep(0.01)
            assert await asyncio.gather(*calls) == [True] * 4
            assert answered[0] < 0.5, f"round {round_}: the second nonce waited {answered[0]:.2f} s"
    finally:
        admin.close()
        await given.aclose()


async def test_aclose_waits_for_calls_in_flight(redis_server: RedisServer, connect: Any) -> None:
    """Closing the store while 50 calls are in flight lets them finish with real answers."""
    store = connect(redis_server.url, timeout=ANSWER_TIMEOUT)
    calls = [asyncio.ensure_future(store.add(f"closing-{i}", TTL)) for i in range(50)]
    await asyncio.sleep(0)  # the calls are queued
    await store.aclose()
    assert await asyncio.gather(*calls) == [True] * 50


# -- event loops and threads ------------------------------------------------------------------


def test_one_store_serves_successive_event_loops(redis_server: RedisServer) -> None:
    """A URL store works in a new event loop after the first one closed (one pool per loop)."""
    store = RedisNonceStore(redis_server.url, prefix=f"{uuid.uuid4()}:")

    async def use(key: str) -> list[bool]:
        try:
            return [await store.add(key, TTL), await store.add("shared", TTL)]
        finally:
            await store.aclose()

    assert asyncio.run(use("first")) == [True, True]
    assert asyncio.run(use("second")) == [True, False]
    assert asyncio.run(use("first")) == [False, False]


def test_threat_R5_threads_with_their_own_loops_accept_exactly_one(
    redis_server: RedisServer,
) -> None:
    """Four threads, each with its own event loop, racing 25 adds each: one True in all."""
    store = RedisNonceStore(redis_server.url, prefix=f"{uuid.uuid4()}:", timeout=ANSWER_TIMEOUT)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    async def race() -> list[bool]:
        try:
            await store.add("warm-up", TTL)  # connect first, so the race is on the SET
            barrier.wait()
            return await asyncio.gather(*[store.add("key", TTL) for _ in range(25)])
        finally:
            await store.aclose()

    def worker() -> None:
        results.extend(asyncio.run(race()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 100
    assert results.count(True) == 1


def _store_connections(server: RedisServer) -> int:
    """Connections open on ``server`` other than the one asking, once they have settled."""
    with server.client() as probe:
        deadline = time.monotonic() + 2
        while True:
            count = len(probe.client_list()) - 1
            if count == 0 or time.monotonic() > deadline:
                return count
            time.sleep(0.02)


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the garbage collector could not raise (a ResourceWarning for a socket
    left open becomes one under the suite's ``error`` filter)."""
    caught: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", caught.append)
    return caught


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_an_event_loop_that_ends_takes_its_connection_with_it(
    own_redis: RedisServer, runner: str, unraisable: list[Any]
) -> None:
    """A store used in short-lived event loops (a test client runs each request in a
    loop of its own) and never closed: each loop's connection is closed as the loop
    ends, by asyncio.run() or uvloop.run(), not left to the garbage collector."""
    run = pytest.importorskip("uvloop").run if runner == "uvloop" else asyncio.run
    store = RedisNonceStore(own_redis.url, prefix=f"{uuid.uuid4()}:")

    async def add(key: str) -> bool:
        return await store.add(key, TTL)

    assert [run(add("a")), run(add("b")), run(add("a"))] == [True, True, False]
    assert _store_connections(own_redis) == 0
    gc.collect()
    assert unraisable == []


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_a_loop_that_ends_while_connecting_ends_at_once(
    own_redis: RedisServer, runner: str, unraisable: list[Any]
) -> None:
    """The loop ends while the store's connection is still being opened: asyncio.run()
    cancels every task first, the connecting one included, and the end does not then
    wait out the command's timeout (5 s here) before closing."""
    run = pytest.importorskip("uvloop").run if runner == "uvloop" else asyncio.run
    store = RedisNonceStore(own_redis.url, prefix=f"{uuid.uuid4()}:", timeout=5)
    started: list[asyncio.Task[bool]] = []

    async def main() -> None:
        started.append(asyncio.get_running_loop().create_task(store.add("k", TTL)))
        await asyncio.sleep(0)  # the SET is queued and the connection is opening

    began = time.monotonic()
    run(main())
    assert time.monotonic() - began < 2
    assert started[0].cancelled()
    assert _store_connections(own_redis) == 0
    gc.collect()
    assert unraisable == []


def test_each_request_in_a_loop_of_its_own_through_the_middleware(
    own_redis: RedisServer, unraisable: list[Any]
) -> None:
    """As Starlette's TestClient calls an app: every request in a new event loop. The
    replay is refused across loops, and no connection outlives its loop."""
    protected = protect(nonce_store=RedisNonceStore(own_redis.url))
    first = sign("POST", "/t", {"content-type": "application/json"}, b"{}")
    second = sign("POST", "/t", {"content-type": "application/json"}, b"{}")

    async def post(headers: dict[str, str]) -> int:
        async with protected.client() as client:
            return (await client.post("/t", headers=headers, content=b"{}")).status_code

    assert [asyncio.run(post(first)), asyncio.run(post(second)), asyncio.run(post(first))] == [
        200,
        200,
        401,
    ]
    assert protected.echo.count == 2
    assert _store_connections(own_redis) == 0
    gc.collect()
    assert unraisable == []


def test_aclose_then_the_loop_ends(own_redis: RedisServer, unraisable: list[Any]) -> None:
    """aclose() in the loop, then the loop's end: closed once, quietly."""
    store = RedisNonceStore(own_redis.url, prefix=f"{uuid.uuid4()}:")

    async def add_then_close(key: str) -> bool:
        try:
            return await store.add(key, TTL)
        finally:
            await store.aclose()

    assert asyncio.run(add_then_close("a")) is True
    assert asyncio.run(add_then_close("a")) is False
    assert _store_connections(own_redis) == 0
    gc.collect()
    assert unraisable == []


def test_a_loop_closed_by_hand_is_forgotten_quietly(
    own_redis: RedisServer, unraisable: list[Any]
) -> None:
    """A loop closed without shutting down its async generators (loop.close() alone)
    cannot close the connection itself; the next loop's first call forgets it. The
    only complaint is the socket's own ResourceWarning, and the store works on."""
    store = RedisNonceStore(own_redis.url, prefix=f"{uuid.uuid4()}:")
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(store.add("a", TTL)) is True
    finally:
        loop.close()
    assert asyncio.run(store.add("a", TTL)) is False
    gc.collect()
    assert all(isinstance(hook.exc_value, ResourceWarning) for hook in unraisable)


def test_a_store_first_used_as_its_loop_ends_still_answers(
    own_redis: RedisServer, unraisable: list[Any]
) -> None:
    """First used in an async generator the ending loop is closing: too late for
    that loop to close the connection, so none is promised, and the check still
    answers (the loop's warning about a late generator is not turned into a
    failure of the check)."""
    stores = [RedisNonceStore(own_redis.url, prefix=f"{uuid.uuid4()}:")]
    answers: list[bool] = []
    kept: list[Any] = []

    async def late() -> AsyncIterator[None]:
        try:
            yield
        finally:
            answers.append(await stores[0].add("late", TTL))

    async def main() -> None:
        waiting = late()
        await waiting.__anext__()
        kept.append(waiting)  # left unfinished: the loop closes it as it ends

    asyncio.run(main())
    assert answers == [True]
    stores.clear()  # its connection goes with it, while the hook still listens
    gc.collect()
    assert all(isinstance(hook.exc_value, ResourceWarning) for hook in unraisable)


# -- through the middleware ------------------------------------------------------------------


async def test_threat_R1_replay_refused_through_the_middleware(
    redis_server: RedisServer, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind SignatureMiddleware: the first request reaches the app, its replay is 401."""
    protected = protect(nonce_store=connect(redis_server.url, timeout=ANSWER_TIMEOUT))
    headers = sign("POST", "/t", {"content-type": "application/json"}, b"{}")
    async with protected.client() as client:
        first = await client.post("/t", headers=headers, content=b"{}")
        replay = await client.post("/t", headers=headers, content=b"{}")
    assert first.status_code == 200
    assert replay.status_code == 401
    # Told like a bad MAC (THREATS K2); the log holds the precise cause.
    assert problem(replay)["reason"] == "invalid_signature"
    assert logged_reasons(caplog) == ["replayed"]
    assert protected.echo.count == 1


async def test_threat_R7_middleware_answers_503_with_retry_after(
    own_redis: RedisServer, connect: Any
) -> None:
    """Redis down: 503 nonce_store_unavailable with Retry-After, the app never called."""
    protected = protect(nonce_store=connect(own_redis.url))
    own_redis.stop()
    async with protected.client() as client:
        with Stopwatch() as watch:
            response = await client.get("/t", headers=sign("GET", "/t"))
        own_redis.start()
        recovered = await client.get("/t", headers=sign("GET", "/t"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert problem(response)["reason"] == "nonce_store_unavailable"
    assert watch.running < TIMEOUT + SLACK
    assert recovered.status_code == 200
    assert protected.echo.count == 1


async def test_threat_R7_middleware_with_fail_open_lets_requests_through(
    connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """fail_open=True and Redis down: the request reaches the app and an ERROR is logged."""
    protected = protect(nonce_store=connect(f"redis://{HOST}:{free_port()}/0", fail_open=True))
    caplog.clear()  # the warning about fail_open itself
    with caplog.at_level(logging.ERROR, logger="hmacguard"):
        async with protected.client() as client:
            response = await client.get("/t", headers=sign("GET", "/t"))
    assert response.status_code == 200
    assert protected.echo.count == 1
    assert [r.levelname for r in caplog.records] == ["ERROR"]


# -- the extra -------------------------------------------------------------------------------


def test_missing_redis_names_the_extra_to_install() -> None:
    """Without redis-py, using RedisNonceStore says: pip install "hmacguard[redis]"."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import hmacguard\n"
        "try:\n"
        "    hmacguard.RedisNonceStore\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(  # noqa: S603  (our own interpreter and code)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == 'RedisNonceStore needs redis: pip install "hmacguard[redis]"'


def test_under_trio_the_store_says_it_needs_asyncio(caplog: pytest.LogCaptureFixture) -> None:
    """Under trio there is no asyncio loop to run the client on: each request is a
    503 whose logged cause says so, not a bare "RuntimeError"."""
    trio = pytest.importorskip("trio")
    store = RedisNonceStore("redis://127.0.0.1:1/0")
    with pytest.raises(NonceStoreUnavailable, match="asyncio only"):
        trio.run(store.add, "k", 10.0)
    with pytest.raises(NonceStoreUnavailable, match="asyncio only"):
        trio.run(store.ping)

    protected = protect(nonce_store=store)
    scope, messages = signed_scope("POST", "/t", b"{}", {"content-type": "application/json"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level(logging.WARNING, logger="hmacguard"):
        trio.run(protected.middleware, scope, receive, send)
    assert sent[0]["status"] == 503
    assert "RedisNonceStore runs under asyncio only" in caplog.text
    assert protected.echo.untouched()
