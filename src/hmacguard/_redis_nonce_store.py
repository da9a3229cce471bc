"""RedisNonceStore: one nonce store shared by every worker and host, in Redis.

Each request costs one round trip, ``SET <prefix><hash> 1 NX PX <ttl ms>``:
Redis checks and inserts in one atomic step, so of two concurrent requests
carrying the same (key id, nonce), on any worker, exactly one gets ``OK``
(THREATS R4, R5). Only single-key commands are used, so the store works on
Redis Cluster and on servers that speak the same protocol.

Failure is closed (THREATS R7): a refused connection, a timeout or any Redis
error raises :class:`NonceStoreUnavailable`, which the middleware answers with
503 and ``Retry-After`` without calling the app. Every call is bounded by
``timeout``; redis-py's own socket timeouts are set to it as well, and its
retries are turned off, since a retried ``SET NX`` whose first reply was lost
would call a fresh request a replay.

Concurrent calls in one event loop share round trips: the ``SET`` commands
that arrive while others are in flight go out together in one pipeline (not a
transaction: each ``SET NX`` is still its own atomic step), at most
``_MAX_BATCHES`` pipelines at a time. redis-py spends about 200 us of CPU per
command sent alone and about 60 us per command in a pipeline, so under load
this roughly triples what a worker can check per second; and the callers
queue in order, where a pool of connections lets a newcomer take a freed
connection ahead of callers already waiting, so some waited past the timeout.
A lone call is sent at once, as a single command.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import sys
import threading
import time
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

try:
    from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError, ResponseError
except ImportError:  # pragma: no cover  (the tests run with the extra installed)
    raise ImportError('RedisNonceStore needs redis: pip install "hmacguard[redis]"') from None

from ._errors import NonceStoreUnavailable

__all__ = ["RedisNonceStore"]

logger = logging.getLogger("hmacguard")

_T = TypeVar("_T")

# 16 bytes of SHA-256, URL-safe base64 without padding: 22 characters, 128 bits.
_DIGEST_BYTES = 16
# Pipelines in flight per event loop, and SET commands per pipeline.
_MAX_BATCHES = 4
_MAX_BATCH = 256
# Connections per event loop, for a store built from a URL: one per pipeline,
# and one for the maxmemory-policy check.
_MAX_CONNECTIONS = _MAX_BATCHES + 1
# Eviction policies that never remove a key with a TTL (every nonce key has one).
_SAFE_POLICIES = frozenset({"noeviction"})
# With fail_open=True, at most one ERROR line per this many seconds.
_FAIL_OPEN_LOG_INTERVAL = 10.0
# The errors that mean "Redis cannot answer": anything else is a bug and propagates.
_UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)

if sys.version_info >= (3, 11):

    async def _within(seconds: float, awaitable: Awaitable[_T]) -> _T:
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover  (Python 3.10)

    async def _within(seconds: float, awaitable: Awaitable[_T]) -> _T:
        return await asyncio.wait_for(awaitable, seconds)


class RedisNonceStore:
    """A nonce store in Redis, shared by all the processes that point at it.

    Args:
        url_or_client: a Redis URL (``redis://``, ``rediss://`` or ``unix://``),
            or a ready ``redis.asyncio.Redis`` (or ``RedisCluster``) client.
            From a URL the store builds its client with ``socket_timeout`` and
            ``socket_connect_timeout`` set to ``timeout`` and no retries, one
            client per event loop (redis-py connections belong to the loop
            that opened them). A client you pass is used as it is: its own
            timeouts and retry policy apply inside ``timeout``, it must be
            used from the event loop it belongs to, and it stays yours to
            close.
        prefix: put before every key, to share a Redis database with other
            data. Each key is the prefix and 22 characters of a SHA-256 hash
            of the (key id, nonce) pair, so long key ids or nonces cost no
            more memory than short ones.
        timeout: seconds each call may take, connecting included (default
            0.25). Past it the request gets 503.
        fail_open: True accepts requests without a replay check while Redis
            cannot answer, and logs an ERROR (at most once every 10 s).
            Choose it only if availability matters more than replay
            protection; the default, False, answers 503.

    On first use the store reads ``maxmemory-policy`` and logs a warning unless
    it is ``noeviction``: every other policy may evict unexpired nonce keys
    under memory pressure, which re-opens replays (THREATS R8). A server that
    refuses ``CONFIG GET`` (managed Redis) is noted in the log, not an error.

    Raises:
        TypeError, ValueError: invalid arguments, at construction.

    Example::

        store = RedisNonceStore(os.environ["HMACGUARD_REDIS_URL"])
        app = SignatureMiddleware(app, keys=keys, nonce_store=store)
    """

    def __init__(
        self,
        url_or_client: str | Redis | RedisCluster,
        *,
        prefix: str = "hmacguard:nonce:",
        timeout: float = 0.25,
        fail_open: bool = False,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError("prefix must be a str")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < math.inf
        ):
            raise ValueError("timeout must be a positive number of seconds")
        if not isinstance(fail_open, bool):
            raise TypeError("fail_open must be a bool")
        self._prefix = prefix
        self._timeout = float(timeout)
        self._fail_open = fail_open
        self._url: str | None = None
        self._given: Redis | RedisCluster | None = None
        self._spare: Redis | None = None
        self._senders: dict[asyncio.AbstractEventLoop, _Sender] = {}
        self._lock = threading.Lock()
        if isinstance(url_or_client, str):
            self._url = url_or_client
            self._where = _redact(url_or_client)
            try:
                # Built now so a bad URL fails here; no connection is opened yet.
                self._spare = self._new_client()
            except ValueError as exc:
                raise ValueError(f"invalid Redis URL {self._where}: {exc}") from None
        elif isinstance(url_or_client, (Redis, RedisCluster)):
            self._given = url_or_client
            self._where = _describe(url_or_client)
        else:
            raise TypeError(
                "url_or_client is a Redis URL or a redis.asyncio.Redis client, not "
                f"{type(url_or_client).__name__}"
            )
        self._policy_checked = False
        self._failures = 0
        self._last_failure_log = -math.inf
        if fail_open:
            logger.warning(
                "RedisNonceStore(fail_open=True): while Redis at %s cannot answer, requests "
                "are accepted WITHOUT a replay check, so a captured request can be replayed",
                self._where,
            )

    def __repr__(self) -> str:
        return (
            f"RedisNonceStore({self._where!r}, prefix={self._prefix!r}, "
            f"timeout={self._timeout}, fail_open={self._fail_open})"
        )

    def redis_key(self, key: str) -> str:
        """The Redis key that holds ``key`` (a :func:`nonce_key`), for inspection."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        return self._prefix + base64.urlsafe_b64encode(digest[:_DIGEST_BYTES]).decode()[:22]

    async def add(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; False if it is already recorded.

        Raises:
            ValueError: ``ttl`` is not a positive, finite number.
            NonceStoreUnavailable: Redis did not answer within ``timeout`` or
                answered with an error (unless ``fail_open``).
        """
        if not 0 < ttl < math.inf:
            raise ValueError("ttl must be a positive number of seconds")
        # PX takes whole milliseconds: round up, so a nonce is never forgotten early.
        milliseconds = max(1, math.ceil(ttl * 1000))
        sender = self._sender()
        try:
            reply = await _within(self._timeout, sender.submit(self.redis_key(key), milliseconds))
        except _UNAVAILABLE as exc:
            return self._unavailable(exc)
        if isinstance(reply, BaseException):  # this command's error, from a pipeline
            return self._unavailable(reply)
        if not self._policy_checked:
            await self._check_policy(sender.client)
        # OK (True) when the key was set; nil (None) when it already existed.
        return bool(reply)

    async def aclose(self) -> None:
        """Close the connections this store opened in the running event loop.

        Call it in every event loop that used the store, before the loop
        closes (with uvicorn, one loop per worker: at shutdown). A client
        passed to the constructor is left open: it is the caller's to close.
        """
        with self._lock:
            sender = self._senders.pop(asyncio.get_running_loop(), None)
        if sender is None:
            return
        await sender.drain()
        if self._given is None:
            await sender.client.aclose()

    async def __aenter__(self) -> RedisNonceStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals -------------------------------------------------------------

    def _new_client(self) -> Redis:
        assert self._url is not None  # noqa: S101  (only called for URL stores)
        pool = BlockingConnectionPool.from_url(
            self._url,
            # A burst waits (within timeout) for one of these connections
            # instead of opening hundreds at once.
            max_connections=_MAX_CONNECTIONS,
            timeout=self._timeout,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            # No retries: a retried SET NX whose first reply was lost would
            # answer "replay" for a fresh request, and retries outlast timeout.
            retry=Retry(NoBackoff(), 0),
        )
        return Redis.from_pool(pool)

    def _sender(self) -> _Sender:
        """The sender for the running event loop, created on its first use there."""
        loop = asyncio.get_running_loop()
        sender = self._senders.get(loop)
        if sender is not None:
            return sender
        with self._lock:
            sender = self._senders.get(loop)
            if sender is None:
                # Forget the senders of closed loops: their sockets cannot be used again.
                for old in [old for old in self._senders if old.is_closed()]:
                    del self._senders[old]
                client: Redis | RedisCluster
                if self._given is not None:
                    client = self._given
                else:
                    client, self._spare = self._spare or self._new_client(), None
                sender = self._senders[loop] = _Sender(client, loop, self._timeout)
            return sender

    def _unavailable(self, exc: BaseException) -> bool:
        """Raise NonceStoreUnavailable for ``exc``, or (fail_open) log and accept."""
        failure = _failure_name(exc)
        if not self._fail_open:
            raise NonceStoreUnavailable(
                f"Redis at {self._where} did not answer: {failure}"
            ) from None
        self._failures += 1
        now = time.monotonic()
        if now - self._last_failure_log >= _FAIL_OPEN_LOG_INTERVAL:
            logger.error(
                "RedisNonceStore: Redis at %s did not answer (%s); fail_open=True, so %d "
                "request(s) were accepted WITHOUT a replay check since the last report",
                self._where,
                failure,
                self._failures,
            )
            self._failures = 0
            self._last_failure_log = now
        return True

    async def _check_policy(self, client: Redis | RedisCluster) -> None:
        """Warn once if Redis may evict nonce keys (THREATS R8); never raise."""
        self._policy_checked = True
        try:
            reply: Any = await _within(self._timeout, client.config_get("maxmemory-policy"))
        except ResponseError as exc:
            logger.warning(
                "RedisNonceStore: could not read maxmemory-policy from Redis at %s (%s); "
                "make sure it is noeviction, or unexpired nonces may be evicted and "
                "replays accepted",
                self._where,
                _failure_name(exc),
            )
            return
        except _UNAVAILABLE:
            self._policy_checked = False  # Redis went away meanwhile: check next time
            return
        # Bytes or str, depending on the client's decode_responses.
        settings = {_text(name): _text(value) for name, value in dict(reply or {}).items()}
        policy = settings.get("maxmemory-policy")
        if policy is None:
            logger.warning(
                "RedisNonceStore: Redis at %s did not report maxmemory-policy; make sure it "
                "is noeviction, or unexpired nonces may be evicted and replays accepted",
                self._where,
            )
        elif policy not in _SAFE_POLICIES:
            logger.warning(
                "RedisNonceStore: Redis at %s has maxmemory-policy %s, which may evict "
                "unexpired nonce keys and so accept replays; set maxmemory-policy noeviction "
                "(a full Redis then answers 503 instead)",
                self._where,
                policy,
            )
        else:
            logger.debug("RedisNonceStore: maxmemory-policy is %s", policy)


class _Sender:
    """Sends one event loop's SET commands, those that arrive together in one pipeline.

    :meth:`submit` queues a command and returns a future for its reply (or for
    the exception that kept it from being answered). Up to ``_MAX_BATCHES``
    worker tasks take queued commands, up to ``_MAX_BATCH`` at a time, in
    arrival order; a worker is started only when none is about to start, so
    commands queued in the same event-loop turn share a pipeline. A command
    whose caller gave up (timed out) before it was sent is dropped, so its
    nonce is not burned. A RedisCluster client gets each command sent on its
    own: its pipelines route by slot and retry on their own terms.
    """

    __slots__ = ("_loop", "_pending", "_starter", "_tasks", "_timeout", "client")

    def __init__(
        self, client: Redis | RedisCluster, loop: asyncio.AbstractEventLoop, timeout: float
    ) -> None:
        self.client = client
        self._loop = loop
        self._timeout = timeout
        self._pending: list[tuple[str, int, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # the workers
        self._starter: asyncio.Task[None] | None = None  # a worker that has not run yet

    def submit(self, name: str, milliseconds: int) -> Awaitable[Any]:
        """Queue ``SET name 1 NX PX milliseconds``; await the result for the reply."""
        if isinstance(self.client, RedisCluster):
            return self.client.execute_command("SET", name, b"1", "NX", "PX", milliseconds)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((name, milliseconds, future))
        if self._starter is None and len(self._tasks) < _MAX_BATCHES:
            task = self._starter = self._loop.create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        return future

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._starter is task:  # cancelled before it ran
            self._starter = None

    async def drain(self) -> None:
        """Wait for the commands in flight (each bounded by the timeout)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        self._starter = None  # from now on, what is queued waits for a new worker
        while self._pending:
            batch = self._pending[:_MAX_BATCH]
            del self._pending[:_MAX_BATCH]
            await self._send([item for item in batch if not item[2].done()])

    async def _send(self, batch: list[tuple[str, int, asyncio.Future[Any]]]) -> None:
        if not batch:
            return
        replies: list[Any]
        try:
            if len(batch) == 1:
                # execute_command, not set(): the same command, with less work per call.
                name, milliseconds, _ = batch[0]
                command = self.client.execute_command("SET", name, b"1", "NX", "PX", milliseconds)
                replies = [await _within(self._timeout, command)]
            else:
                pipe = self.client.pipeline(transaction=False)
                for name, milliseconds, _ in batch:
                    pipe.execute_command("SET", name, b"1", "NX", "PX", milliseconds)
                replies = await _within(self._timeout, pipe.execute(raise_on_error=False))
        except _UNAVAILABLE as exc:
            replies = [exc] * len(batch)
        except asyncio.CancelledError:
            # The loop is shutting down: the callers get an answer, a 503.
            for _, _, future in batch:
                if not future.done():
                    future.set_result(RedisConnectionError("the nonce store was shut down"))
            raise
        except Exception as exc:  # a bug, not an outage: each caller raises it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _failure_name(exc: BaseException) -> str:
    """The failure's class, and for a Redis error reply its code (OOM, READONLY...).

    Never the exception's message: it may name hosts, and is not ours to log.
    """
    if isinstance(exc, asyncio.TimeoutError):
        return "TimeoutError"
    name = type(exc).__name__
    if type(exc) is ResponseError and exc.args:
        code = str(exc.args[0]).split(" ", 1)[0]
        if code.isalpha() and code.isupper() and len(code) <= 32:
            return f"{name} {code}"
    # redis-py wraps socket errors: name the one underneath (refused, DNS...).
    under = exc.__cause__ or exc.__context__
    if isinstance(under, OSError) and not isinstance(exc, OSError):
        return f"{name} ({type(under).__name__})"
    return name


def _redact(url: str) -> str:
    """``url`` with its password (in the userinfo or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        # A lone userinfo may be a password written without the ":".
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = "&".join(
        f"{quote(name)}={'***' if name.lower() == 'password' else quote(value)}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _describe(client: Redis | RedisCluster) -> str:
    """Where a given client points, without its credentials."""
    if isinstance(client, RedisCluster):
        return "cluster " + ",".join(node.name for node in client.startup_nodes)
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
