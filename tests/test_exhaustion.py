"""THREATS "Exhaustion" (issue 8 item 5): floods that must store nothing and grow nothing.

- R6 at volume: GET requests with a wrong MAC, each with a nonce never sent before, go
  through :class:`hmacguard.SignatureMiddleware` in process (a hand-driven ASGI call, no
  HTTP). No nonce may be stored (memory store: ``len == 0``; Redis: ``DBSIZE`` unchanged)
  and the resident set size (RSS) may grow by less than 10 MB from the end of a 10,000
  request warm-up to the end of the flood. 100,000 requests by default; the THREATS figure,
  10^6, is the ``slow`` variant (``pytest -m slow``). The Redis variant is marked
  ``redis``.
- A flood of key ids and covered header names never seen before (20,000 requests): the
  verifier's caches stay bounded, RSS grows by less than 10 MB.
- A full memory store: every new nonce gets 503 ``nonce_store_unavailable`` and nothing is
  stored; every nonce it holds is still refused as a replay, at every step while the
  entries expire one by one (never evicted; a slot frees only when its nonce expires, and
  that nonce is then refused as stale).
- Memory per entry of ``MemoryNonceStore`` filled to ``max_entries = 10^6`` (THREATS
  figure), measured in a fresh interpreter, and the bound itself.

The requests are prepared cheaply: one ``Signature-Input`` signed with the wrong secret for
``client-1`` is cut at its nonce, and each request splices in its own nonce; the MAC is the
same for all, so it is wrong for every one of them (it was made with another secret, over
another nonce).

Logging: the middleware logs one WARNING per rejection. pytest's log capture (the report
handler and ``caplog``, on the root logger) keeps every record in memory, which would
dominate RSS and time in a flood. The flood tests therefore point the ``hmacguard`` logger
at :class:`ReasonCounter` only (``propagate`` off, level WARNING, restored afterwards): it
parses each record with :func:`asgi_helpers.logged_reasons` and keeps a count per reason,
not the record, and the tests assert that every request was logged with its reason.

RSS is read from ``/proc/self/statm`` after ``gc.collect()``: the tests that read it run on
Linux only. Run with ``-s`` to see the figures (duration, RSS growth, bytes per entry).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from asgi_helpers import (
    HOST,
    NOW,
    FakeClock,
    Protected,
    call,
    logged_reasons,
    problem,
    protect,
    sign,
)
from hmacguard import HMACKey, MemoryNonceStore, RedisNonceStore
from redis_server import RedisServer, require_redis_server

#: For the tests that read RSS.
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/statm").exists(), reason="RSS is read from /proc (Linux only)"
)

MB = 1_000_000
#: Requests before the first RSS reading: caches, the event loop and the allocator warm up.
WARM_UP = 10_000
#: The right key id with the wrong secret: every MAC it makes is wrong for client-1.
WRONG_SECRET = HMACKey("client-1", b"z" * 32)
SRC = Path(__file__).resolve().parent.parent / "src"


def rss() -> int:
    """This process's resident set size in bytes, after a full garbage collection."""
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


class ReasonCounter(logging.Handler):
    """A logging handler that counts the middleware's rejections by reason, keeping no record.

    Records that are not rejections count under ``"other"``.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        """Count ``record`` under the reason it was logged with."""
        reasons = logged_reasons(SimpleNamespace(records=(record,)))
        self.reasons[reasons[0] if reasons else "other"] += 1


@contextmanager
def counted_rejections() -> Iterator[Counter[str]]:
    """Send the ``hmacguard`` logger to a :class:`ReasonCounter` only, for a flood.

    Yields the counter's ``Counter`` of reasons. ``propagate`` is off, so pytest's
    capture handlers (which keep every record) see nothing; the level is WARNING, so
    every rejection is logged whatever pytest's log level. All is restored afterwards.
    """
    logger = logging.getLogger("hmacguard")
    counter = ReasonCounter()
    saved = (logger.propagate, logger.level)
    logger.addHandler(counter)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    try:
        yield counter.reasons
    finally:
        logger.removeHandler(counter)
        logger.propagate, level = saved
        logger.setLevel(level)


class Flood:
    """Bad-MAC ``GET /t`` requests, request ``i`` carrying nonce ``flood-<i>``.

    Each request is a fresh ASGI scope whose ``Signature-Input`` is one template with the
    nonce spliced in, and whose ``Signature`` is one fixed MAC made with
    :data:`WRONG_SECRET`: no request is signed one by one.
    """

    SLOT = "NONCE-SLOT"

    def __init__(self) -> None:
        signed = sign("GET", "/t", nonce=self.SLOT, key=WRONG_SECRET)
        head, found, tail = signed["Signature-Input"].partition(self.SLOT)
        assert found
        self.head = head.encode("ascii") + b"flood-"
        self.tail = tail.encode("ascii")
        self.signature = signed["Signature"].encode("ascii")
        self.host = HOST.encode("ascii")

    def scope(self, i: int) -> dict[str, Any]:
        """The ASGI scope of request ``i``."""
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/t",
            "raw_path": b"/t",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", self.host),
                (b"signature-input", b"%s%d%s" % (self.head, i, self.tail)),
                (b"signature", self.signature),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }

    async def run(
        self,
        app: Any,
        start: int,
        stop: int,
        scope: Callable[[int], dict[str, Any]] | None = None,
    ) -> Counter[int]:
        """Send requests ``start`` to ``stop - 1`` through ``app`` (request ``i`` is
        ``scope(i)``, by default :meth:`scope`); count response statuses."""
        statuses: Counter[int] = Counter()
        make = self.scope if scope is None else scope

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] += 1

        for i in range(start, stop):
            await app(make(i), receive, send)
        return statuses


async def flood_and_measure(protected: Protected, count: int) -> tuple[Counter[int], int]:
    """Run ``count`` flood requests through ``protected``; return statuses and RSS growth.

    The growth is measured from the end of the first :data:`WARM_UP` requests to the end.
    """
    flood = Flood()
    started = time.perf_counter()
    statuses = await flood.run(protected.middleware, 0, WARM_UP)
    before = rss()
    statuses += await flood.run(protected.middleware, WARM_UP, count)
    growth = rss() - before
    seconds = time.perf_counter() - started
    print(  # shown with -s: the figures of the run
        f"{count} bad-MAC requests in {seconds:.1f} s ({1e6 * seconds / count:.0f} µs each), "
        f"RSS {growth / MB:+.2f} MB after the warm-up"
    )
    return statuses, growth


async def assert_flood_nonces_unburned(protected: Protected, count: int) -> None:
    """Validly signed requests reusing flood nonces are accepted: the flood burned none."""
    for i in (0, WARM_UP, count // 2, count - 1):
        headers = sign("GET", "/t", nonce=f"flood-{i}")
        exchange = await call(protected.middleware, "GET", "/t", headers)
        assert exchange.status_code == 200, exchange.body


VOLUMES = [
    pytest.param(100_000, id="1e5"),
    pytest.param(1_000_000, id="1e6", marks=pytest.mark.slow),
]


@needs_proc
@pytest.mark.parametrize("count", VOLUMES)
async def test_threat_R6_bad_mac_flood_stores_no_nonce_and_rss_stays_flat(count: int) -> None:
    """Bad-MAC requests with unique nonces store nothing in memory and grow RSS < 10 MB."""
    protected = protect()
    with counted_rejections() as reasons:
        statuses, growth = await flood_and_measure(protected, count)
    assert statuses == {401: count}
    assert reasons == {"invalid_signature": count}
    assert len(protected.store) == 0
    assert protected.echo.untouched()
    assert growth < 10 * MB, f"RSS grew {growth / MB:.1f} MB over {count - WARM_UP} requests"
    await assert_flood_nonces_unburned(protected, count)
    assert len(protected.store) == 4  # the store in use is the one inspected


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for this module."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@needs_proc
@pytest.mark.redis
@pytest.mark.parametrize("count", VOLUMES)
async def test_threat_R6_bad_mac_flood_leaves_redis_dbsize_unchanged(
    redis_server: RedisServer, count: int
) -> None:
    """Bad-MAC requests with unique nonces write no Redis key and grow RSS < 10 MB."""
    # A generous timeout: this test is about what is written, not about a slow Redis.
    store = RedisNonceStore(redis_server.url, prefix=f"exhaustion:{uuid.uuid4().hex}:", timeout=5.0)
    redis = redis_server.client()
    try:
        protected = protect(nonce_store=store)
        # One valid request first: the store is connected and holds one key.
        first = await call(protected.middleware, "GET", "/t", sign("GET", "/t", nonce="first"))
        assert first.status_code == 200, first.body
        keys_before = redis.dbsize()
        assert keys_before >= 1
        with counted_rejections() as reasons:
            statuses, growth = await flood_and_measure(protected, count)
        assert statuses == {401: count}
        assert reasons == {"invalid_signature": count}
        assert redis.dbsize() == keys_before
        assert protected.echo.untouched(1)
        assert growth < 10 * MB, f"RSS grew {growth / MB:.1f} MB over {count - WARM_UP} requests"
        await assert_flood_nonces_unburned(protected, count)
        assert redis.dbsize() == keys_before + 4  # the Redis inspected is the one in use
    finally:
        redis.close()
        await store.aclose()


@needs_proc
async def test_threat_R6_varied_key_ids_and_components_flood_keeps_rss_flat() -> None:
    """Unknown key ids and covered header names never seen before grow RSS < 10 MB.

    The verifier keeps bounded caches of component lists and parsed components; this
    flood gives each request its own key id (unknown) or its own covered header (with a
    wrong MAC), so an unbounded cache would grow with every request: with the bounds of
    ``_signature_fields``, ``_components`` and ``_verifier`` lifted, RSS grew 16.7 MB here.
    """
    protected = protect()
    count, warm_up = 20_000, 3_000  # the caches hold at most 1,024 entries

    flood = Flood()
    base = '"@method" "@authority" "@path" "@query"'

    def varied(i: int) -> dict[str, Any]:
        scope = flood.scope(i)
        header = f"x-flood-{i}"
        if i % 2:  # a known key, a wrong MAC, a header name never covered before
            inputs = f'sig1=({base} "{header}");created={NOW};keyid="client-1"'
        else:  # a key id never seen before
            inputs = f'sig1=({base});created={NOW};keyid="unknown-{i}"'
        scope["headers"] = [
            (b"host", flood.host),
            (header.encode("ascii"), b"v"),
            (b"signature-input", f'{inputs};nonce="varied-{i}"'.encode("ascii")),
            (b"signature", flood.signature),
        ]
        return scope

    async def send_requests(start: int, stop: int) -> Counter[int]:
        return await flood.run(protected.middleware, start, stop, varied)

    with counted_rejections() as reasons:
        statuses = await send_requests(0, warm_up)
        before = rss()
        statuses += await send_requests(warm_up, count)
        growth = rss() - before
    print(f"{count} varied requests: RSS {growth / MB:+.2f} MB after the warm-up")
    assert statuses == {401: count}
    assert reasons == {"invalid_signature": count // 2, "unknown_key": count // 2}
    assert len(protected.store) == 0
    assert protected.echo.untouched()
    assert growth < 10 * MB, f"RSS grew {growth / MB:.1f} MB over {count - warm_up} requests"


# -- the memory store when full ----------------------------------------------------------


async def test_threat_R6_full_store_still_refuses_every_held_nonce_while_entries_expire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full memory store 503s every new nonce and refuses every nonce it holds, at each expiry.

    Twenty nonces fill the store one second apart (max_age 60 s, no clock skew). Then,
    for longer than a full turnover, each step: three new nonces get 503 and are not
    stored; every held nonce is replayed and refused as ``replayed``; the clock moves to
    the oldest nonce's expiry, which frees exactly one slot: that nonce is now refused as
    ``expired`` (stale, never accepted again), one new nonce is accepted into the slot and
    the next gets 503.
    """
    caplog.set_level(logging.WARNING, logger="hmacguard")
    size = 20
    clock = FakeClock()
    store = MemoryNonceStore(max_entries=size, clock=clock)
    protected = protect(clock=clock, nonce_store=store, max_age=60, clock_skew=0)
    ttl = protected.middleware.verifier.nonce_ttl
    held: deque[tuple[float, dict[str, str]]] = deque()  # (accepted at, headers), oldest first
    accepted = 0
    fresh = 0

    async def send(headers: dict[str, str]) -> Any:
        return await call(protected.middleware, "GET", "/t", headers)

    async def accept_new() -> None:
        nonlocal accepted, fresh
        headers = sign("GET", "/t", nonce=f"new-{fresh}", now=clock.now)
        fresh += 1
        exchange = await send(headers)
        assert exchange.status_code == 200, exchange.body
        accepted += 1
        held.append((clock.now, headers))

    async def refused_new() -> None:
        nonlocal fresh
        exchange = await send(sign("GET", "/t", nonce=f"new-{fresh}", now=clock.now))
        fresh += 1
        assert exchange.status_code == 503, exchange.body
        assert problem(exchange)["reason"] == "nonce_store_unavailable"
        assert exchange.headers["retry-after"] == "1"

    for _ in range(size):
        await accept_new()
        clock.advance(1)
    for step in range(size + 5):
        assert len(store) == size, step
        for _ in range(3):
            await refused_new()
        assert len(store) == size
        for _, headers in held:
            replay = await send(headers)
            assert replay.status_code == 401, replay.body
            assert problem(replay)["reason"] == "invalid_signature"
            assert logged_reasons(caplog)[-1] == "replayed"
        assert protected.echo.untouched(accepted)
        oldest_at, oldest = held.popleft()
        clock.now = max(clock.now, oldest_at + ttl)
        stale = await send(oldest)
        assert stale.status_code == 401, stale.body
        assert logged_reasons(caplog)[-1] == "expired"
        await accept_new()  # into the slot the expired nonce freed: exactly one
        await refused_new()
    assert accepted == 2 * size + 5


# -- memory per entry --------------------------------------------------------------------

#: Fills a MemoryNonceStore to max_entries in a fresh interpreter and prints what it took.
#: Keys are nonce_key("client-1", <22 characters>), the length of the Signer's nonces
#: (secrets.token_urlsafe(16)); the TTL is the default verifier's nonce_ttl.
_FILL = textwrap.dedent(
    """
    import gc, json, os, sys, time
    from hmacguard import HMACKey, MemoryNonceStore, NonceStoreUnavailable, Verifier, nonce_key

    def rss():
        gc.collect()
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    count = int(sys.argv[1])
    ttl = float(Verifier([HMACKey("client-1", bytes(32))]).nonce_ttl)
    store = MemoryNonceStore(max_entries=count, clock=lambda: 1000.0)
    prefix = nonce_key("client-1", "")
    before = rss()
    started = time.perf_counter()
    for i in range(count):
        assert store.add_sync(f"{prefix}{i:022d}", ttl)
    seconds = time.perf_counter() - started
    grown = rss() - before
    try:
        store.add_sync(prefix + "one-more", ttl)
        refused = False
    except NonceStoreUnavailable:
        refused = True
    print(json.dumps({"entries": len(store), "bytes": grown, "seconds": seconds,
                      "refused": refused, "key_length": len(prefix) + 22}))
    """
)


@needs_proc
def test_threat_R6_memory_store_at_a_million_entries_is_bounded_per_entry() -> None:
    """10^6 nonces fill MemoryNonceStore(max_entries=10^6) at under 400 bytes each; then 503.

    Measured as RSS growth in a fresh interpreter, so that memory freed by earlier tests
    cannot hide the store's. Measured here (2 cores, Python 3.11): about 230 bytes per
    entry with a 33-character key (201 by tracemalloc); the bound leaves room for
    allocator noise and other Python versions, and fails if an entry grows by half.
    """
    count = 1_000_000
    completed = subprocess.run(  # noqa: S603  (this interpreter, our own script)
        [sys.executable, "-c", _FILL, str(count)],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")
    result = json.loads(completed.stdout)
    assert result["entries"] == count
    assert result["refused"] is True  # the bound: the 1,000,001st nonce is refused
    per_entry = result["bytes"] / count
    print(f"{count} entries: {per_entry:.0f} bytes each, filled in {result['seconds']:.1f} s")
    # The key string alone takes 49 + 33 bytes: less means the measurement failed.
    assert 49 + result["key_length"] < per_entry < 400, per_entry


async def test_exhaustion_flood_request_fails_only_on_its_mac(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flood request is a valid request but for its MAC: signed right, the same is accepted.

    So the floods above measure requests that pass every check up to the MAC comparison.
    """
    caplog.set_level(logging.WARNING, logger="hmacguard")
    flood = Flood()
    protected = protect()
    inputs = dict(flood.scope(7)["headers"])[b"signature-input"].decode("ascii")
    good = sign("GET", "/t", nonce="flood-7")
    assert good["Signature-Input"] == inputs
    assert good["Signature"].encode("ascii") != flood.signature
    assert await flood.run(protected.middleware, 7, 8) == {401: 1}
    assert logged_reasons(caplog) == ["invalid_signature"]
    accepted = await call(protected.middleware, "GET", "/t", good)
    assert accepted.status_code == 200, accepted.body
