"""Where nonces are stored: the NonceStore protocol and the in-memory store.

A nonce store remembers which (key id, nonce) pairs were accepted, for as long
as a signature carrying them could still verify, so that a captured request
cannot be replayed (RFC 9421 §7.2.2). The middleware calls it once per request,
after the MAC and the body digest are proven: invalid requests never write to it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ._errors import NonceStoreUnavailable

__all__ = ["MemoryNonceStore", "NonceStore", "delivery_key", "nonce_key"]

logger = logging.getLogger("hmacguard")

# The warning that a memory store is one worker's only is logged once per process.
_workers_warned = False
_workers_lock = threading.Lock()


def nonce_key(key_id: str, nonce: str) -> str:
    """Encode a (key id, nonce) pair as one store key, injectively.

    The key id's length comes first, so ``("a:b", "c")`` and ``("a", "b:c")``
    give different keys: one tenant cannot burn another's nonces.

    >>> nonce_key("a:b", "c"), nonce_key("a", "b:c")
    ('3:a:b:c', '1:a:b:c')
    """
    return f"{len(key_id)}:{key_id}:{nonce}"


def delivery_key(scheme: str, endpoint: str, dedupe_key: str) -> str:
    """The store key of a webhook delivery to ``endpoint`` (the middleware's
    path for it): ``"webhook:"`` and :func:`nonce_key` of (scheme,
    :func:`nonce_key` of (endpoint, dedupe key)).

    Each endpoint keeps its own deliveries: a provider sends one message to
    every endpoint subscribed, under one id, and two senders may pick the same
    id. A :func:`nonce_key` starts with a digit and this with ``w``, so no key
    id (not even one called ``"webhook:stripe"``) shares a delivery's keys.

    >>> delivery_key("github", "/hooks/github", "72d3162e")
    'webhook:6:github:13:/hooks/github:72d3162e'
    """
    return "webhook:" + nonce_key(scheme, nonce_key(endpoint, dedupe_key))


@runtime_checkable
class NonceStore(Protocol):
    """What the middleware needs from a nonce store.

    ``add`` records ``key`` for ``ttl`` seconds and returns True, or returns
    False when the key is already recorded and unexpired. The check and the
    insert must be one atomic step: two concurrent calls with the same key
    must never both return True. A store that cannot answer raises (any
    exception); the middleware then fails closed with 503. So it does when a
    store of your own takes longer than its ``lookup_timeout`` (1 s by
    default): the call is cancelled, so a store must leave nothing half
    done when cancelled (an atomic write either happened or did not).

    A store may also have ``async def discard(self, key: str) -> None``,
    which forgets ``key``. The middleware calls it when the app fails on a
    webhook delivery (raises, or answers 5xx), so the provider's redelivery
    is processed instead of being acknowledged as a duplicate. Both stores
    here have it; without it, such a redelivery counts as a duplicate.
    """

    async def add(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; False if it was already there."""
        ...


class MemoryNonceStore:
    """A bounded nonce store for one process.

    Args:
        max_entries: the most nonces held at once (default 1,000,000). When
            full, :meth:`add` raises :class:`NonceStoreUnavailable` (503)
            until entries expire: evicting an unexpired nonce would re-open
            a replay. Each entry takes about 230 bytes (the process's RSS
            growth over 10^6 ``add_sync`` calls with 33-character
            :func:`nonce_key` keys); a nonce stays for the verifier's
            ``nonce_ttl`` (361 s by default: ``max_age`` 300 s, plus twice
            ``clock_skew`` 30 s, plus 1), so the default holds a sustained
            1,000,000 / 361, about 2,770 requests/s. A warning is logged when
            the store reaches 90% of it.
        clock: a monotonic clock in seconds.

    ``add`` is atomic for asyncio (there is no ``await`` between the check and
    the insert) and for threads (a lock). Expired entries are swept in
    insertion order, so each call costs O(1) amortised: there is one queue per
    distinct TTL (a middleware uses one or two), in which insertion order is
    expiry order.

    Every worker process has its own memory: with several workers or hosts,
    use ``RedisNonceStore`` so a request accepted by one is a replay for all.
    Building one logs a warning (once per process) when ``WEB_CONCURRENCY``
    is above 1 or the process was started through :mod:`multiprocessing`, as
    ``uvicorn --workers`` (and ``--reload``) start theirs.
    """

    def __init__(
        self, *, max_entries: int = 1_000_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int):
            raise TypeError("max_entries must be an int")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        # Warn once at 90% full, and again only after dropping below 80%.
        self._warn_at = max(1, max_entries * 9 // 10)
        self._rearm_at = max_entries * 8 // 10
        self._warned = False
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._queues: dict[float, deque[tuple[float, str]]] = {}
        # When the oldest entry expires: until then, add() has nothing to sweep.
        self._next_expiry = math.inf
        self._lock = threading.Lock()
        _warn_if_one_of_several_workers()

    def __repr__(self) -> str:
        return f"MemoryNonceStore(entries={len(self._expiry)}, max_entries={self._max_entries})"

    def __len__(self) -> int:
        return len(self._expiry)

    async def add(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; False if it is already recorded.

        Raises:
            ValueError: ``ttl`` is not a positive number.
            NonceStoreUnavailable: the store is full of unexpired nonces.
        """
        return self.add_sync(key, ttl)

    def add_sync(self, key: str, ttl: float) -> bool:
        """The same as :meth:`add`, for synchronous callers."""
        if not ttl > 0:
            raise ValueError("ttl must be a positive number of seconds")
        with self._lock:
            now = self._clock()
            if now >= self._next_expiry:
                self._sweep(now)
            expiry = self._expiry
            until = now + ttl
            # One lookup in the usual case (a new key): setdefault inserts it,
            # and the size tells whether it did (never `is` on the expiry: two
            # equal small ints from an int clock are one object).
            size = len(expiry)
            known = expiry.setdefault(key, until)
            if len(expiry) == size:
                if known > now:
                    return False
                # Expired: swept above unless the clock went back. Recorded afresh.
                expiry[key] = until  # pragma: no cover
            elif size >= self._max_entries:
                del expiry[key]
                raise NonceStoreUnavailable(
                    f"the memory nonce store is full ({self._max_entries} unexpired nonces)"
                )
            queue = self._queues.get(ttl)
            if queue is None:
                queue = self._queues[ttl] = deque()
            queue.append((until, key))
            if until < self._next_expiry:  # noqa: PLR1730  (min() costs a call per request)
                self._next_expiry = until
            if not self._warned and len(expiry) >= self._warn_at:
                self._warned = True
                logger.warning(
                    "MemoryNonceStore is %d%% full (%d of max_entries=%d unexpired nonces); "
                    "when full, requests are refused with 503 until nonces expire: raise "
                    "max_entries, shorten max_age, or use RedisNonceStore",
                    100 * len(expiry) // self._max_entries,
                    len(expiry),
                    self._max_entries,
                )
            return True

    async def discard(self, key: str) -> None:
        """Forget ``key``, so that it can be added again."""
        self.discard_sync(key)

    def discard_sync(self, key: str) -> None:
        """:meth:`discard` without a coroutine (it never waits)."""
        with self._lock:
            until = self._expiry.pop(key, None)
            if until is not None:
                # A key taken back at once (a refused request's) is the last entry
                # of its queue: dropped too, so that adding and taking back again
                # and again cannot grow the queues past max_entries. Any other
                # stays, and is skipped when swept (its expiry is gone).
                entry = (until, key)
                for queue in self._queues.values():
                    if queue and queue[-1] == entry:
                        queue.pop()
                        break
            self._rearm_warning()

    def _sweep(self, now: float) -> None:
        """Drop the expired entries, oldest first; note when the next one expires."""
        expiry = self._expiry
        earliest = math.inf
        for queue in self._queues.values():
            while queue and queue[0][0] <= now:
                until, key = queue.popleft()
                # A key re-added after expiring has a newer entry further back.
                if expiry.get(key) == until:
                    del expiry[key]
            if queue and queue[0][0] < earliest:
                earliest = queue[0][0]
        self._next_expiry = earliest
        self._rearm_warning()

    def _rearm_warning(self) -> None:
        if self._warned and len(self._expiry) < self._rearm_at:
            self._warned = False


def _warn_if_one_of_several_workers() -> None:
    """Warn, once per process, when this process may be one of several workers.

    Two signs are read: ``WEB_CONCURRENCY`` above 1 (uvicorn and gunicorn take
    their worker count from it when none is given), and a parent process that
    started this one through :mod:`multiprocessing`, as ``uvicorn --workers N``
    starts its workers (and ``uvicorn --reload`` its one server, which is warned
    about too). gunicorn forks its workers with ``os.fork``: there, ``-w N`` is
    not seen, only ``WEB_CONCURRENCY``.
    """
    global _workers_warned  # noqa: PLW0603  (one warning per process, on purpose)
    with _workers_lock:
        if _workers_warned:
            return
        workers = os.environ.get("WEB_CONCURRENCY", "1")
        # A process started through multiprocessing has imported it (its
        # bootstrap runs there); anything else need not import it to find out.
        spawner = sys.modules.get("multiprocessing")
        parent = None if spawner is None else spawner.parent_process()
        if workers.isascii() and workers.isdigit() and int(workers) > 1:
            why = f"WEB_CONCURRENCY={workers}: a request accepted by one worker"
        elif parent is not None:
            why = (
                f"this process was started through multiprocessing (parent pid "
                f"{parent.pid}), as uvicorn --workers starts its workers (--reload its "
                "server, hypercorn even one worker): if several workers serve this app, "
                "a request accepted by one"
            )
        else:
            return
        _workers_warned = True
        logger.warning(
            "MemoryNonceStore keeps nonces in this process only, but %s can be replayed "
            "to another; use RedisNonceStore",
            why,
        )
