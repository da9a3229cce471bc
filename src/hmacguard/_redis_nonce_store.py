"""RedisNonceStore: one nonce store shared by every worker and host, in Redis.

Each signature costs one round trip (a request carries one, as a rule),
``SET <prefix><hash> 1 NX PX <ttl ms>``:
Redis checks and inserts in one atomic step, so of two concurrent requests
carrying the same (key id, nonce), on any worker, exactly one gets ``OK``
(THREATS R4, R5). Only single-key commands are used, so the store works on
Redis Cluster and on servers that speak the same protocol.

Failure is closed (THREATS R7): a refused connection, a timeout or any Redis
error raises :class:`NonceStoreUnavailable`, which the middleware answers with
503 and ``Retry-After`` without calling the app. Every call is bounded by
``timeout``, and no command is ever retried: a retried ``SET NX`` whose first
reply was lost would call a fresh request a replay.

Two clients, one behaviour:

* **From a URL** the store talks to Redis itself, through the small RESP2
  client in ``_resp.py`` (one pipelined connection per event loop). This is
  the one place hmacguard does by hand what a library does, for CPU: on the
  benchmark machine redis-py spent 294 us of CPU per check made alone and 82
  us per check with 16 at once (hiredis made no difference), about twice what
  a whole unsigned request costs; the built-in client spends about 45 us and
  8 us, because it only ever sends ``SET NX PX`` and ``CONFIG GET``. The
  numbers and the trade-off are in docs/deployment.md. The commands that
  arrive in one turn of the event loop go out in one write, each still its
  own atomic ``SET NX``; past ``timeout`` the connection is closed and every
  command pending on it fails (503), and the next call reconnects.
* **Given a redis-py client** (``redis.asyncio.Redis`` or ``RedisCluster``)
  the store uses it: Cluster, Sentinel and your own pool and TLS settings
  stay available. Concurrent calls in one event loop share round trips: the
  ``SET`` commands that arrive while others are in flight go out together in
  one pipeline (not a transaction), at most ``_MAX_BATCHES`` pipelines at a
  time, in arrival order. A RedisCluster client gets each command sent on its
  own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import re
import ssl
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

try:
    from redis.asyncio import Redis, RedisCluster
    from redis.connection import parse_url
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError, ResponseError
except ImportError:  # pragma: no cover  (the tests run with the extra installed)
    raise ImportError('RedisNonceStore needs redis: pip install "hmacguard[redis]"') from None

from ._errors import NonceStoreUnavailable
from ._resp import RespClient, RespError

__all__ = ["RedisNonceStore"]

logger = logging.getLogger("hmacguard")

_T = TypeVar("_T")

# 16 bytes of SHA-256, URL-safe base64 without padding: 22 characters, 128 bits.
_DIGEST_BYTES = 16
# Pipelines in flight per event loop, and SET commands per pipeline.
_MAX_BATCHES = 4
_MAX_BATCH = 256
# Eviction policies that never remove a key with a TTL (every nonce key has one).
_SAFE_POLICIES = frozenset({"noeviction"})
# With fail_open=True, at most one ERROR line per this many seconds.
_FAIL_OPEN_LOG_INTERVAL = 10.0
# The errors that mean "Redis cannot answer": anything else is a bug and propagates.
_UNAVAILABLE = (RedisError, RespError, OSError, asyncio.TimeoutError)
# Error replies by code, named as redis-py names them, for the log and the 503 detail.
_RESP_ERROR_NAMES = {
    "OOM": "OutOfMemoryError",
    "NOPERM": "NoPermissionError",
    "READONLY": "ReadOnlyError",
    "NOAUTH": "AuthenticationError",
    "WRONGPASS": "AuthenticationError",
    "LOADING": "BusyLoadingError",
    "MASTERDOWN": "MasterDownError",
}
# What ends a URL's host part early when left unescaped in a user name or password.
_RESERVED = frozenset("/?#")
# The path of a redis:// or rediss:// URL: none, or the database number.
_DATABASE = re.compile(r"/?|/[0-9]{1,5}")
# URL query options the built-in client honours (the others are refused).
_TLS_OPTIONS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
)

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
            From a URL the store talks RESP2 to Redis itself, one pipelined
            connection per event loop, with ``AUTH`` (password, or user and
            password) and ``SELECT`` from the URL; ``rediss://`` verifies the
            server's certificate (query options ``ssl_cert_reqs``,
            ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` and
            ``ssl_check_hostname`` are honoured, any other query option is a
            ValueError). A client you pass is used as it is: its own
            timeouts and retry policy apply inside ``timeout``, it must be
            used from the event loop it belongs to, and it stays yours to
            close. Pass one for Cluster, Sentinel or your own pool settings.
        prefix: put before every key, to share a Redis database with other
            data. Each key is the prefix and 22 characters of a SHA-256 hash
            of the (key id, nonce) pair, so long key ids or nonces cost no
            more memory than short ones.
        timeout: seconds each call may take, connecting included (default
            0.25). Past it the request gets 503. (From a URL, a call that a
            blocked event loop kept from being sent until after its deadline
            gets ``timeout`` again once it is sent.)
        fail_open: True accepts requests without a replay check while Redis
            cannot answer, and logs an ERROR (at most once every 10 s).
            Choose it only if availability matters more than replay
            protection; the default, False, answers 503.

    After its first answer the store reads ``maxmemory-policy``, beside the
    calls (none waits for it), and logs a warning unless it is
    ``noeviction``: every other policy may evict unexpired nonce keys under
    memory pressure, which re-opens replays (THREATS R8). A server that
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
        self._given: Redis | RedisCluster | None = None
        self._options: dict[str, Any] = {}  # RespClient's, for a URL
        self._clients: dict[asyncio.AbstractEventLoop, RespClient] = {}  # for a URL
        self._senders: dict[asyncio.AbstractEventLoop, _Sender] = {}  # for a given client
        self._loop_ends: dict[asyncio.AbstractEventLoop, _LoopEnd] = {}  # with _clients
        self._lock = threading.Lock()
        if isinstance(url_or_client, str):
            self._where = _redact(url_or_client)
            try:
                # Parsed now so a bad URL fails here; no connection is opened yet.
                self._options = _client_options(url_or_client)
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
        # The maxmemory-policy check, made once, after the first call's answer
        # and without holding it up: no call waits for more than one round trip.
        self._policy_checked = False
        self._policy_tasks: set[asyncio.Task[None]] = set()  # for a given client
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
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise NonceStoreUnavailable(_NOT_ASYNCIO) from None
        if self._given is None:
            client = self._clients.get(loop) or self._client()
            try:
                # The client bounds the call by the timeout, connecting included.
                reply = await client.set_nx_px(self.redis_key(key), milliseconds)
            except _UNAVAILABLE as exc:
                return self._unavailable(exc)
            if not self._policy_checked:
                self._check_policy_resp(client)
            # OK when the key was set; nil (None) when it already existed.
            return reply is not None
        sender = self._sender()
        try:
            reply = await _within(self._timeout, sender.submit(self.redis_key(key), milliseconds))
        except _UNAVAILABLE as exc:
            return self._unavailable(exc)
        if isinstance(reply, BaseException):  # this command's error, from a pipeline
            return self._unavailable(reply)
        if not self._policy_checked:
            self._policy_checked = True
            task = loop.create_task(self._check_policy(sender.client))
            self._policy_tasks.add(task)
            task.add_done_callback(self._policy_tasks.discard)
        return bool(reply)

    async def discard(self, key: str) -> None:
        """Forget ``key`` (one ``DEL``), so that it can be added again.

        The middleware calls it when the app fails on a webhook delivery.
        A failure here is logged, not raised: the delivery then stays
        recorded, and its redelivery is acknowledged as a duplicate.
        """
        name = self.redis_key(key)
        try:
            if self._given is None:
                client = self._clients.get(asyncio.get_running_loop()) or self._client()
                reply = await client.command(b"DEL", name)
                if isinstance(reply, BaseException):
                    raise reply
            else:
                await _within(self._timeout, self._given.delete(name))
        except Exception as exc:
            logger.warning(
                "RedisNonceStore: could not forget a delivery in Redis at %s (%s)",
                self._where,
                _failure_name(exc),
            )

    async def ping(self) -> None:
        """Check that Redis answers (one ``PING``, within ``timeout``), for a
        readiness probe: a worker whose store cannot answer refuses every
        signed request with 503.

        Raises:
            NonceStoreUnavailable: Redis did not answer in time, or answered
                with an error; whatever ``fail_open`` says, as a probe must
                tell the truth. Its message names the failure's class, never
                the server's message.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise NonceStoreUnavailable(_NOT_ASYNCIO) from None
        try:
            if self._given is None:
                client = self._clients.get(loop) or self._client()
                reply = await client.command(b"PING")
                if isinstance(reply, BaseException):
                    raise reply
            else:
                await _within(self._timeout, self._given.ping())
        except _UNAVAILABLE as exc:
            raise NonceStoreUnavailable(
                f"Redis at {self._where} did not answer: {_failure_name(exc)}"
            ) from None

    async def aclose(self) -> None:
        """Close the connections this store opened in the running event loop.

        Call it in every event loop that used the store, before the loop
        closes (with uvicorn, one loop per worker: at shutdown). A loop that
        ends through ``asyncio.run()``, ``uvloop.run()`` or anyio closes the
        store's connection itself if this was not called; one closed by
        ``loop.close()`` alone cannot. A client passed to the constructor is
        left open: it is the caller's to close.
        """
        await self._close_in(asyncio.get_running_loop())

    async def _close_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close what this store opened in ``loop``, the running loop."""
        with self._lock:
            client = self._clients.pop(loop, None)
            sender = self._senders.pop(loop, None)
            loop_end = self._loop_ends.pop(loop, None)
        if loop_end is not None:
            loop_end.disarm()
        if client is not None:
            await client.aclose()  # which waits for the policy check's reply too
        if sender is not None:
            await sender.drain()
        checks = [task for task in self._policy_tasks if task.get_loop() is loop]
        if checks:
            await asyncio.gather(*checks, return_exceptions=True)

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

    def _client(self) -> RespClient:
        """The built-in client for the running event loop, made on its first use there."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None:
                # Forget the clients of closed loops: their sockets cannot be used again
                # (a loop that ended through asyncio.run() closed its own: _LoopEnd).
                for old in [old for old in self._clients if old.is_closed()]:
                    del self._clients[old]
                    closed = self._loop_ends.pop(old, None)
                    if closed is not None:
                        closed.disarm()
                client = self._clients[loop] = RespClient(**self._options, timeout=self._timeout)
                self._loop_ends[loop] = _LoopEnd(self, loop)
            return client

    def _sender(self) -> _Sender:
        """The sender for the running event loop (a given client), made on its first use."""
        loop = asyncio.get_running_loop()
        sender = self._senders.get(loop)
        if sender is not None:
            return sender
        with self._lock:
            sender = self._senders.get(loop)
            if sender is None:
                # Forget the senders of closed loops.
                for old in [old for old in self._senders if old.is_closed()]:
                    del self._senders[old]
                assert self._given is not None  # noqa: S101  (only for a given client)
                sender = self._senders[loop] = _Sender(self._given, loop, self._timeout)
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

    def _check_policy_resp(self, client: RespClient) -> None:
        """:meth:`_check_policy`, through the built-in client: the command is sent,
        and its reply read when it comes, by a callback nobody waits for."""
        self._policy_checked = True
        client.command(b"CONFIG", b"GET", b"maxmemory-policy").add_done_callback(
            self._policy_answered
        )

    def _policy_answered(self, future: asyncio.Future[Any]) -> None:
        error = None if future.cancelled() else future.exception()
        if isinstance(error, RespError):
            self._policy_unreadable(error)
            return
        if future.cancelled() or error is not None:
            self._policy_checked = False  # Redis went away meanwhile: check next time
            return
        # RESP2: a flat array, name then value.
        reply = future.result()
        pairs = reply if isinstance(reply, list) else []
        self._policy_read(dict(zip(pairs[::2], pairs[1::2], strict=False)))

    async def _check_policy(self, client: Redis | RedisCluster) -> None:
        """Warn once if Redis may evict nonce keys (THREATS R8); never raise."""
        try:
            reply: Any = await _within(self._timeout, client.config_get("maxmemory-policy"))
        except ResponseError as exc:
            self._policy_unreadable(exc)
            return
        except _UNAVAILABLE:
            self._policy_checked = False  # Redis went away meanwhile: check next time
            return
        self._policy_read(dict(reply or {}))

    def _policy_unreadable(self, exc: BaseException) -> None:
        logger.warning(
            "RedisNonceStore: could not read maxmemory-policy from Redis at %s (%s); "
            "make sure it is noeviction, or unexpired nonces may be evicted and "
            "replays accepted",
            self._where,
            _failure_name(exc),
        )

    def _policy_read(self, reply: dict[Any, Any]) -> None:
        # Bytes or str, depending on the client.
        settings = {_text(name): _text(value) for name, value in reply.items()}
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


class _LoopEnd:
    """Closes a store's connection in one event loop when that loop ends.

    A store is often used in event loops that end without anyone calling
    :meth:`RedisNonceStore.aclose` in them: Starlette's ``TestClient`` runs
    each request in a loop of its own, as ``asyncio.run()`` does each call.
    The connection opened in such a loop would be left to the garbage
    collector (a ``ResourceWarning``, a socket open until then), and uvloop
    does not finish closing a loop that still has one.

    What closes it is an asynchronous generator, started here in the loop and
    left waiting: a loop that ends the way ``asyncio.run()``, ``uvloop.run()``
    and anyio end theirs first closes the asynchronous generators it saw start
    (PEP 525, ``loop.shutdown_asyncgens()``), and this one's ``finally``
    closes the store's connection while the loop can still run it. It holds
    the store weakly, so it keeps nothing alive. A loop closed by
    ``loop.close()`` alone closes no generator; its connection is forgotten
    (left to the garbage collector) when the store is next used in another.
    """

    __slots__ = ("_armed", "_loop", "_store", "_waiting")

    def __init__(self, store: RedisNonceStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = weakref.ref(store)
        self._loop = loop
        self._waiting = self._wait()
        # A loop already closing its generators would not close this one, and
        # asyncio warns about it: the connection is left as a loop.close() leaves it.
        self._armed = not getattr(loop, "_asyncgens_shutdown_called", False)
        if self._armed:
            try:
                # The first step runs up to the yield, at once, and registers the
                # generator with the running loop (its firstiter hook).
                self._waiting.asend(None).send(None)
            except StopIteration:
                pass
            except Exception:  # the hook refused it (a warning made an error)
                self._armed = False

    async def _wait(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            store = self._store()
            if self._armed and store is not None and _running_loop() is self._loop:
                self._armed = False
                try:
                    await store._close_in(self._loop)
                except Exception as exc:  # the loop is ending: nothing to answer
                    logger.debug(
                        "RedisNonceStore: closing the connection of an ending event loop "
                        "failed (%s)",
                        _failure_name(exc),
                    )

    def disarm(self) -> None:
        """Stop waiting without closing anything (the store closed or forgot the
        connection itself)."""
        if not self._armed:
            return  # closing now, from its own finally
        self._armed = False
        # Finishes it here and now: its finally finds it disarmed and returns
        # without waiting, so no loop is asked to close it later.
        with contextlib.suppress(StopIteration):
            self._waiting.aclose().send(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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
        self._tasks.discard(task)  # _work() has done so, unless it was cancelled
        if self._starter is task:  # cancelled before it ran
            self._starter = None

    async def drain(self) -> None:
        """Wait for the commands in flight (each bounded by the timeout)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        self._starter = None  # from now on, what is queued waits for a new worker
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                await self._send([item for item in batch if not item[2].done()])
        finally:
            # Leave the workers now, in the step that found nothing queued: the
            # done callback runs a turn later, and a command submitted in
            # between, with every worker finishing, would find none to start
            # and wait, unsent, for its caller's timeout (a 503 on a healthy Redis).
            task = asyncio.current_task(self._loop)
            if task is not None:
                self._tasks.discard(task)

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


_NOT_ASYNCIO = (
    "RedisNonceStore runs under asyncio only, and no asyncio event loop is running "
    "(under trio, use a store of your own)"
)


def _failure_name(exc: BaseException) -> str:
    """The failure's class, and for a Redis error reply its code (OOM, READONLY...).

    Never the exception's message: it may name hosts, and is not ours to log.
    An error reply to the built-in client is named as redis-py names it.
    """
    if isinstance(exc, asyncio.TimeoutError):
        return "TimeoutError"
    if isinstance(exc, RespError):
        code = exc.code
        name = _RESP_ERROR_NAMES.get(code)
        if name is not None:
            return name
        if code.isalpha() and code.isupper() and len(code) <= 32:
            return f"ResponseError {code}"
        return "ResponseError"
    name = type(exc).__name__
    if type(exc) is ResponseError and exc.args:
        code = str(exc.args[0]).split(" ", 1)[0]
        if code.isalpha() and code.isupper() and len(code) <= 32:
            return f"{name} {code}"
    # The built-in client's ConnectionError says why underneath (refused, timed
    # out, AUTH refused...); redis-py wraps socket errors likewise.
    under = exc.__cause__ if type(exc) is ConnectionError else exc.__cause__ or exc.__context__
    if isinstance(under, (OSError, RespError)) and (
        type(exc) is ConnectionError or not isinstance(exc, OSError)
    ):
        return f"{name} ({_failure_name(under)})"
    return name


def _client_options(url: str) -> dict[str, Any]:
    """RespClient's arguments for ``url`` (redis-py's parse_url, then what it leaves).

    Raises:
        ValueError: not a redis://, rediss:// or unix:// URL, or an option the
            built-in client does not support (named, never its value).
    """
    _check_shape(url)
    parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    parsed.pop("connection_class", None)
    options: dict[str, Any] = {}
    scheme = url.split(":", 1)[0].lower()
    if scheme == "unix":
        if not parsed.get("path"):
            raise ValueError("a unix:// URL needs the socket's path")
        options["path"] = parsed.pop("path")
    else:
        options["host"] = parsed.pop("host", "localhost")
        options["port"] = parsed.pop("port", 6379)
    options["username"] = parsed.pop("username", None)
    options["password"] = parsed.pop("password", None)
    options["db"] = parsed.pop("db", 0)
    if str(parsed.pop("protocol", 2)) != "2":
        raise ValueError("the built-in client speaks RESP2 only (protocol=2)")
    if scheme == "rediss":
        options["ssl_context"] = _tls_context(
            {name: parsed.pop(name, None) for name in _TLS_OPTIONS}
        )
    if parsed:
        names = ", ".join(sorted(parsed))
        raise ValueError(
            f"URL option(s) {names} not supported; pass a redis.asyncio.Redis client to use them"
        )
    return options


def _check_shape(url: str) -> None:
    """Refuse what redis-py would read as another URL than the one meant.

    A ``/``, ``?`` or ``#`` left unescaped in a password ends the host part
    early: redis-py then connects to localhost:6379 without a password, and
    takes the rest for a path it ignores. Messages never quote the URL.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("the scheme is not redis://, rediss:// or unix://")
    parts = urlsplit(url)
    if "@" in parts.path or "@" in parts.query or parts.fragment:
        raise ValueError(
            "an '@' or '#' follows the host: percent-encode the user name and password "
            "(urllib.parse.quote(password, safe='')), and an '@' in the query (%40)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number") from None
    if parts.scheme != "unix":
        if port == 0:
            raise ValueError("the port is not a number from 1 to 65535")
        if not _DATABASE.fullmatch(parts.path):
            raise ValueError("the path is not a database number (such as /0)")


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The client's TLS context: verification on by default, as ssl.create_default_context."""
    cert_reqs = str(options["ssl_cert_reqs"] or "required").lower()
    if cert_reqs not in ("none", "optional", "required"):
        raise ValueError("ssl_cert_reqs is none, optional or required")
    try:
        context = ssl.create_default_context(cafile=options["ssl_ca_certs"])
        if options["ssl_certfile"]:
            context.load_cert_chain(options["ssl_certfile"], options["ssl_keyfile"])
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS files ({type(exc).__name__})") from None
    if cert_reqs == "none" or options["ssl_check_hostname"] is False:
        context.check_hostname = False
    if cert_reqs != "required":
        context.verify_mode = ssl.CERT_NONE if cert_reqs == "none" else ssl.CERT_OPTIONAL
    return context


def _redact(url: str) -> str:
    """``url`` with whatever may be a password replaced by ``***``.

    That is the userinfo's password, taken up to the last ``@`` (a ``/``,
    ``?`` or ``#`` left unescaped in a password would end the host part early
    for ``urlsplit``, and show the rest), a ``password=`` query value, and a
    port that is not a number (``redis://user:password`` with the host left out).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<invalid URL>"
    userinfo, at, rest = rest.rpartition("@")
    shown = ""
    if at:
        user, colon, _ = userinfo.partition(":")
        # A lone userinfo may be a password written without the ":".
        shown = f"{user}:***@" if colon and not _RESERVED.intersection(user) else "***@"
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError:
        return f"{scheme}://{shown}<invalid>"
    netloc = parts.netloc
    host, colon, port = netloc.rpartition(":")
    if colon and port and not (port.isascii() and port.isdigit()) and not netloc.endswith("]"):
        netloc = f"{host}:***"
    path = parts.path
    if scheme != "unix" and not _DATABASE.fullmatch(path):
        path = "/***"  # not a database number: what is it?
    query = "&".join(
        f"{quote(name)}={'***' if name.lower() == 'password' else quote(value)}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, shown + netloc, path, query, ""))


def _describe(client: Redis | RedisCluster) -> str:
    """Where a given client points, without its credentials."""
    if isinstance(client, RedisCluster):
        # The nodes it was given: RedisCluster.startup_nodes from redis-py 7.0 on;
        # before, only the nodes manager's, which grow with the nodes discovered.
        given = getattr(client, "startup_nodes", None)
        if given is not None:
            return "cluster " + ",".join(node.name for node in given)
        return "cluster " + ",".join(client.nodes_manager.startup_nodes)
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
