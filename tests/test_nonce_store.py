"""The nonce stores: the ``NonceStore`` contract, ``MemoryNonceStore`` and ``nonce_key``.

:class:`NonceStoreContract` holds what every store must do (STYLE habit 8); a store's
test class inherits it and overrides the ``store`` fixture, as
:class:`TestMemoryNonceStore` does here and the Redis store's tests will. The contract
needs no clock control; expiry, bounds and sweeping are tested on the memory store with a
fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import tracemalloc
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmacguard import MemoryNonceStore, NonceStore, NonceStoreUnavailable, _nonce_store, nonce_key
from uvicorn_server import UvicornServer

TTL = 361.0


class FakeMonotonic:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NonceStoreContract:
    """What every ``NonceStore`` must do; subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Any:
        """The store under test (overridden by each implementation's test class)."""
        raise NotImplementedError

    def test_is_a_nonce_store(self, store: Any) -> None:
        """The store satisfies the runtime-checkable NonceStore protocol."""
        assert isinstance(store, NonceStore)

    async def test_first_add_is_fresh(self, store: Any) -> None:
        """A key never seen before is recorded and reported fresh."""
        assert await store.add(nonce_key("client-1", "n1"), TTL) is True

    async def test_second_add_is_a_replay(self, store: Any) -> None:
        """The same key added twice within its TTL is reported as seen the second time."""
        key = nonce_key("client-1", "n1")
        assert await store.add(key, TTL) is True
        assert await store.add(key, TTL) is False
        assert await store.add(key, TTL) is False

    async def test_keys_are_independent(self, store: Any) -> None:
        """Recording one key does not make another look seen."""
        assert await store.add(nonce_key("client-1", "n1"), TTL) is True
        assert await store.add(nonce_key("client-1", "n2"), TTL) is True
        assert await store.add(nonce_key("client-2", "n1"), TTL) is True

    async def test_colliding_pairs_are_distinct(self, store: Any) -> None:
        """("a:b", "c") and ("a", "b:c") never share a store key (THREATS R9)."""
        assert await store.add(nonce_key("a:b", "c"), TTL) is True
        assert await store.add(nonce_key("a", "b:c"), TTL) is True

    async def test_concurrent_adds_accept_exactly_one(self, store: Any) -> None:
        """100 concurrent adds of one key give exactly one True (THREATS R5)."""
        for round_ in range(20):
            key = nonce_key("client-1", f"race-{round_}")
            results = await asyncio.gather(*[store.add(key, TTL) for _ in range(100)])
            assert results.count(True) == 1

    @pytest.mark.parametrize("ttl", [0, -1, 0.0, float("nan")])
    async def test_non_positive_ttl_refused(self, store: Any, ttl: float) -> None:
        """A TTL that is not a positive number is a ValueError, never a silent no-expiry."""
        with pytest.raises(ValueError, match="ttl"):
            await store.add(nonce_key("client-1", "n"), ttl)

    async def test_discard_makes_a_key_fresh_again(self, store: Any) -> None:
        """After discard(key), add(key) is True again; other keys stay recorded."""
        key, other = nonce_key("client-1", "n-discard"), nonce_key("client-1", "n-kept")
        assert await store.add(key, 60)
        assert await store.add(other, 60)
        await store.discard(key)
        assert await store.add(key, 60) is True
        assert await store.add(key, 60) is False
        assert await store.add(other, 60) is False

    async def test_discard_of_an_unknown_key_is_harmless(self, store: Any) -> None:
        """Discarding a key never added raises nothing and records nothing."""
        key = nonce_key("client-1", "never-added")
        await store.discard(key)
        assert await store.add(key, 60) is True


class TestMemoryNonceStore(NonceStoreContract):
    """MemoryNonceStore: the contract, plus expiry, bounds and sweeping with a fake clock."""

    def test_a_warning_when_90_percent_full_then_again_only_after_draining(
        self, clock: FakeMonotonic, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One WARNING on reaching 90% of max_entries; re-armed once below 80%."""
        store = MemoryNonceStore(max_entries=10, clock=clock)
        for n in range(8):
            store.add_sync(f"a{n}", 10.0)
        assert "full" not in caplog.text
        store.add_sync("a8", 10.0)
        assert caplog.text.count("MemoryNonceStore is 90% full (9 of max_entries=10") == 1
        store.add_sync("a9", 10.0)
        assert caplog.text.count("% full") == 1  # not again while still full
        clock.now += 11  # everything expires
        for n in range(9):
            store.add_sync(f"b{n}", 10.0)
        assert caplog.text.count("% full") == 2

    @pytest.fixture
    def clock(self) -> FakeMonotonic:
        """The store's clock."""
        return FakeMonotonic()

    @pytest.fixture
    def store(self, clock: FakeMonotonic) -> MemoryNonceStore:
        """A memory store on the fake clock."""
        return MemoryNonceStore(clock=clock)

    def test_add_sync_matches_add(self, store: MemoryNonceStore) -> None:
        """add_sync is the same atomic check-and-insert for synchronous callers."""
        assert store.add_sync("k", TTL) is True
        assert store.add_sync("k", TTL) is False
        assert len(store) == 1

    async def test_key_is_fresh_again_after_ttl(
        self, store: MemoryNonceStore, clock: FakeMonotonic
    ) -> None:
        """A key is a replay until its TTL has passed, then fresh again."""
        assert await store.add("k", 10) is True
        clock.now += 9.999
        assert await store.add("k", 10) is False
        clock.now += 0.001
        assert await store.add("k", 10) is True

    async def test_expired_entries_are_swept(
        self, store: MemoryNonceStore, clock: FakeMonotonic
    ) -> None:
        """Expired entries leave the store on the next add, so it does not grow forever."""
        for i in range(50):
            await store.add(f"k{i}", 10)
        assert len(store) == 50
        clock.now += 10
        await store.add("new", 10)
        assert len(store) == 1

    async def test_sweep_handles_a_key_re_added_after_expiry(
        self, store: MemoryNonceStore, clock: FakeMonotonic
    ) -> None:
        """A key re-added after expiring keeps its new entry when the old one is swept."""
        assert await store.add("k", 10) is True
        clock.now += 10
        assert await store.add("k", 10) is True  # the old entry is swept, a new one added
        clock.now += 5
        assert await store.add("k", 10) is False  # the new entry is still live

    async def test_sweep_with_two_ttls(self, store: MemoryNonceStore, clock: FakeMonotonic) -> None:
        """Keys with different TTLs expire independently (one queue per TTL)."""
        await store.add("short", 5)
        await store.add("long", 50)
        clock.now += 5
        assert await store.add("short", 5) is True
        assert await store.add("long", 50) is False
        clock.now += 45
        assert await store.add("long", 50) is True

    async def test_full_store_refuses_new_keys(self, clock: FakeMonotonic) -> None:
        """At max_entries the store raises NonceStoreUnavailable (503) for a new key."""
        store = MemoryNonceStore(max_entries=3, clock=clock)
        for key in ("a", "b", "c"):
            assert await store.add(key, 10) is True
        with pytest.raises(NonceStoreUnavailable) as caught:
            await store.add("d", 10)
        assert caught.value.reason == "nonce_store_unavailable"
        assert caught.value.status == 503

    async def test_full_store_never_evicts_a_live_nonce(self, clock: FakeMonotonic) -> None:
        """When full, live nonces stay recorded: their replays are still refused (THREATS R6)."""
        store = MemoryNonceStore(max_entries=3, clock=clock)
        for key in ("a", "b", "c"):
            await store.add(key, 10)
        for _ in range(5):
            with pytest.raises(NonceStoreUnavailable):
                await store.add("new", 10)
        for key in ("a", "b", "c"):
            assert await store.add(key, 10) is False
        assert len(store) == 3

    async def test_full_store_recovers_after_expiry(self, clock: FakeMonotonic) -> None:
        """Once entries expire there is room again."""
        store = MemoryNonceStore(max_entries=2, clock=clock)
        await store.add("a", 10)
        clock.now += 5
        await store.add("b", 10)
        with pytest.raises(NonceStoreUnavailable):
            await store.add("c", 10)
        clock.now += 5  # "a" expires, "b" does not
        assert await store.add("c", 10) is True
        with pytest.raises(NonceStoreUnavailable):
            await store.add("d", 10)

    @pytest.mark.parametrize("ttl", [100, 100.0, 5])
    def test_an_int_clock_still_tells_a_replay(self, ttl: float) -> None:
        """With a clock giving ints, now + ttl is often one of CPython's shared small
        ints: a key recorded before must still be a replay (an identity test on the
        expiry took it for new, and a webhook delivery was accepted three times)."""
        store = MemoryNonceStore(clock=lambda: 100)
        assert store.add_sync("k", ttl) is True
        assert store.add_sync("k", ttl) is False
        assert store.add_sync("k", ttl) is False

    def test_adding_and_taking_back_again_and_again_holds_no_memory(self) -> None:
        """A refused request takes its keys back at once; 100,000 such requests leave
        the store's memory where it was (their queue entries went too), so churn
        cannot grow it past max_entries while the store never fills."""
        store = MemoryNonceStore(max_entries=100)
        store.add_sync("warm-up", TTL)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(100_000):
                store.add_sync(f"1:k:churn-{i}", TTL)
                store.discard_sync(f"1:k:churn-{i}")
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(store) == 1
        assert grown < 1_000_000, f"{grown:,} bytes held after 100,000 adds taken back"

    def test_threads_accept_exactly_one(self, store: MemoryNonceStore) -> None:
        """add_sync from 16 threads at once accepts a key exactly once (the lock)."""

        def worker(key: str, barrier: threading.Barrier, results: list[bool]) -> None:
            barrier.wait()
            results.append(store.add_sync(key, TTL))

        for round_ in range(20):
            barrier = threading.Barrier(16)
            results: list[bool] = []
            threads = [
                threading.Thread(target=worker, args=(f"t{round_}", barrier, results))
                for _ in range(16)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert results.count(True) == 1

    def test_repr_counts_but_shows_no_nonce(self, store: MemoryNonceStore) -> None:
        """The repr gives the size and bound but never a stored key."""
        store.add_sync(nonce_key("client-1", "secret-nonce"), TTL)
        text = repr(store)
        assert text == "MemoryNonceStore(entries=1, max_entries=1000000)"
        assert "secret-nonce" not in text

    @pytest.mark.parametrize(
        ("max_entries", "error"),
        [(0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError), ("10", TypeError)],
    )
    def test_bad_max_entries_refused(self, max_entries: Any, error: type[Exception]) -> None:
        """max_entries must be a positive int, checked at construction."""
        with pytest.raises(error, match="max_entries"):
            MemoryNonceStore(max_entries=max_entries)

    def test_warns_with_several_workers(
        self, fresh_process: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """WEB_CONCURRENCY above 1 logs a warning: each worker would have its own memory (R4)."""
        fresh_process.setenv("WEB_CONCURRENCY", "4")
        with caplog.at_level(logging.WARNING, logger="hmacguard"):
            MemoryNonceStore()
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert "WEB_CONCURRENCY=4" in caplog.records[0].getMessage()

    def test_silent_with_one_worker(
        self, fresh_process: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One worker (or no WEB_CONCURRENCY), not started by multiprocessing, logs nothing."""
        fresh_process.setenv("WEB_CONCURRENCY", "1")
        with caplog.at_level(logging.DEBUG, logger="hmacguard"):
            MemoryNonceStore()
        assert caplog.records == []

    def test_warns_in_a_multiprocessing_child(
        self, fresh_process: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A process started through multiprocessing (uvicorn --workers) is warned about (R4)."""
        fresh_process.setattr(multiprocessing, "parent_process", lambda: _Parent(4242))
        with caplog.at_level(logging.WARNING, logger="hmacguard"):
            MemoryNonceStore()
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        message = caplog.records[0].getMessage()
        assert "started through multiprocessing (parent pid 4242)" in message
        assert "uvicorn --workers" in message
        assert "use RedisNonceStore" in message

    def test_warns_once_per_process(
        self, fresh_process: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Several stores in one worker (e.g. two middlewares) give one warning, not one each."""
        fresh_process.setenv("WEB_CONCURRENCY", "4")
        fresh_process.setattr(multiprocessing, "parent_process", lambda: _Parent(4242))
        with caplog.at_level(logging.WARNING, logger="hmacguard"):
            MemoryNonceStore()
            MemoryNonceStore(max_entries=10)
        assert len(caplog.records) == 1
        assert "WEB_CONCURRENCY=4" in caplog.records[0].getMessage()


class _Parent:
    """What ``multiprocessing.parent_process()`` returns in a child: here, only a pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process as if no store had warned yet, not started by multiprocessing."""
    monkeypatch.setattr(_nonce_store, "_workers_warned", False)
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: None)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    return monkeypatch


# -- the warning under a real uvicorn ------------------------------------------------

_WORKER_WARNING = "MemoryNonceStore keeps nonces in this process only"


def _served_log(workers: int | None) -> tuple[str, int | None]:
    """Start the echo app (default memory store) under uvicorn; return its log and pid."""
    env = {"HMACGUARD_TEST_NONCE_STORE": "memory", "WEB_CONCURRENCY": "1"}
    with UvicornServer("tests.apps.echo_app:app", env=env, workers=workers) as server:
        # Every worker has built its middleware (and store) at start-up, in the lifespan.
        assert httpx.get(server.url + "/_stats", timeout=5).status_code == 200
        server.assert_no_server_errors()
        return server.log(), server.pid


def test_threat_R4_uvicorn_workers_log_the_memory_store_warning() -> None:
    """``uvicorn --workers 2`` with the default store: each worker warns once, naming uvicorn.

    WEB_CONCURRENCY is 1 here, so the warning comes from multiprocessing's parent alone.
    """
    log, supervisor = _served_log(workers=2)
    warnings = [line for line in log.splitlines() if _WORKER_WARNING in line]
    assert len(warnings) == 2, log
    for line in warnings:
        assert f"started through multiprocessing (parent pid {supervisor})" in line
        assert "use RedisNonceStore" in line


def test_uvicorn_one_worker_logs_no_memory_store_warning() -> None:
    """One uvicorn process (no --workers) with the default store: no warning."""
    log, _ = _served_log(workers=None)
    assert "Application startup complete" in log
    assert _WORKER_WARNING not in log


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a:b", "c"), ("a", "b:c")),
        (("a", ":b"), ("a:", "b")),
        (("1:a", "b"), ("1", "a:b")),
        (("ab", "c"), ("a", "bc")),
    ],
)
def test_threat_R9_nonce_key_does_not_collide(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    """Pairs that concatenate to the same text still get different store keys."""
    assert nonce_key(*first) != nonce_key(*second)


@settings(deadline=None)
@given(st.text(min_size=1), st.text(), st.text(min_size=1), st.text())
def test_threat_R9_nonce_key_is_injective(k1: str, n1: str, k2: str, n2: str) -> None:
    """nonce_key gives equal keys only for equal (key id, nonce) pairs."""
    assert (nonce_key(k1, n1) == nonce_key(k2, n2)) == ((k1, n1) == (k2, n2))


def test_delivery_keys_never_meet_nonce_keys() -> None:
    """A key id may be called anything, "webhook:stripe" included: its (key id, nonce)
    keys and a Stripe delivery's keys still never coincide in a shared store."""
    from hmacguard._nonce_store import delivery_key  # noqa: PLC0415

    for scheme, dedupe in [("stripe", "1700000000.abc"), ("github", "x:y"), ("s", "")]:
        delivery = delivery_key(scheme, "/hooks", dedupe)
        assert delivery != nonce_key(f"webhook:{scheme}", dedupe)
        assert not delivery[0].isdigit()
        assert nonce_key(f"webhook:{scheme}", dedupe)[0].isdigit()
    # Injective in each of its three parts, whatever they hold.
    assert delivery_key("a:b", "/h", "c") != delivery_key("a", "/h", "b:c")
    assert delivery_key("s", "/a:b", "c") != delivery_key("s", "/a", "b:c")
    assert delivery_key("s", "/a", "1") != delivery_key("s", "/b", "1")
