"""A minimal Redis client on asyncio: RESP2, one pipelined connection per event loop.

:class:`RedisNonceStore` built from a URL sends one command per request,
``SET key 1 NX PX ms``, and reads ``maxmemory-policy`` once. redis-py spends
about 290 us of CPU on such a call made alone and 80 us when 16 run at once;
this client spends about 45 us and 8 us (docs/deployment.md has the numbers),
because it does only what those commands need:

* Commands are appended to a buffer; once per turn of the event loop
  (``call_soon``) the buffer is written with one ``transport.write``. Replies
  come back in the order the commands were written (RESP guarantees it), so
  each resolves the oldest waiting future. Nothing is written before the
  connection's handshake (``AUTH``, ``SELECT``) has been answered, so a reply
  is never matched to the wrong command.
* A command whose future is already done (its caller was cancelled) when the
  buffer is written is dropped, not sent.
* Every command has a deadline, ``timeout`` after it was submitted; one timer
  per client watches the oldest. (A command the event loop held back, blocked
  by other code, past its deadline before it could be written, or before a
  connection for it was started, gets ``timeout`` again from that moment: the
  stall was not Redis's.) Past it, or when the connection is lost or
  the server sends what is not RESP2, the connection is closed and EVERY
  pending command fails with :class:`ConnectionError`: none is retried (a
  retried ``SET NX`` whose first reply was lost would call a fresh request a
  replay), and no later reply can reach a command of the old connection. The
  next command opens a new connection, connecting and handshake bounded by
  ``timeout``.
* An error reply (``-OOM ...``) fails only its own command, with
  :class:`RespError`; the connection stays usable.

It imports nothing outside the standard library, and no message it raises
names the password.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
from typing import Any, Final, cast

__all__ = ["RespClient", "RespError", "RespParser", "RespProtocolError", "encode_command"]

# Limits on what a server may send: past them the stream is treated as garbage.
# The client reads short replies only (OK, nil, CONFIG GET's pairs).
MAX_LINE: Final = 64 * 1024  # a simple string, error or integer line
MAX_BULK: Final = 16 * 1024 * 1024  # one bulk string
MAX_ARRAY: Final = 1024 * 1024  # elements of one array
MAX_DEPTH: Final = 16  # arrays within arrays

_INTEGER = re.compile(rb"-?[0-9]{1,19}\Z")
_OK: Final = b"+OK\r\n"
_NIL: Final = b"$-1\r\n"


class RespError(Exception):
    """An error reply (``-ERR ...``, ``-OOM ...``); :attr:`code` is its first word."""

    @property
    def code(self) -> str:
        """The error's code, e.g. ``OOM`` or ``NOPERM`` (``ERR`` if the reply has none)."""
        text = str(self.args[0]) if self.args else ""
        return text.split(" ", 1)[0]


class RespProtocolError(Exception):
    """The server sent bytes that are not a RESP2 reply, or a reply nobody asked for."""


# -- encoding ------------------------------------------------------------------------------


def encode_command(*args: bytes | str | int) -> bytes:
    """One command as a RESP2 array of bulk strings (str is UTF-8, int is its decimal)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"a command argument is bytes, str or int, not {type(arg).__name__}")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _encode_set_nx_px(key: bytes, milliseconds: int) -> bytes:
    """``SET key 1 NX PX milliseconds``, the nonce store's one command, without a loop."""
    ms = b"%d" % milliseconds
    return b"*6\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$%d\r\n%s\r\n" % (
        len(key),
        key,
        len(ms),
        ms,
    )


# -- decoding ------------------------------------------------------------------------------


def _integer(line: bytes | bytearray) -> int:
    # int() alone would take " 5", "+5" and "5_0".
    if not _INTEGER.match(line):
        raise RespProtocolError("expected an integer")
    return int(line)


def _parse(buf: bytes | bytearray, pos: int, depth: int) -> tuple[Any, int]:
    """The reply that starts at ``pos`` and the position after it; position -1: incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        if len(buf) - pos > MAX_LINE:
            raise RespProtocolError("line too long")
        return None, -1
    if end - pos > MAX_LINE:
        raise RespProtocolError("line too long")
    kind = buf[pos]
    line = buf[pos + 1 : end]
    after = end + 2
    if kind == 0x2B:  # + simple string
        return bytes(line), after
    if kind == 0x2D:  # - error
        return RespError(bytes(line).decode("utf-8", "replace")), after
    if kind == 0x3A:  # : integer
        return _integer(line), after
    if kind == 0x24:  # $ bulk string, $-1 null
        length = _integer(line)
        if length == -1:
            return None, after
        if not 0 <= length <= MAX_BULK:
            raise RespProtocolError("bad bulk string length")
        if len(buf) < after + length + 2:
            return None, -1
        if buf[after + length : after + length + 2] != b"\r\n":
            raise RespProtocolError("bulk string not followed by CRLF")
        return bytes(buf[after : after + length]), after + length + 2
    if kind == 0x2A:  # * array, *-1 null
        count = _integer(line)
        if count == -1:
            return None, after
        if not 0 <= count <= MAX_ARRAY:
            raise RespProtocolError("bad array length")
        if depth >= MAX_DEPTH:
            raise RespProtocolError("arrays nested too deep")
        items = []
        for _ in range(count):
            item, after = _parse(buf, after, depth + 1)
            if after < 0:
                return None, -1
            items.append(item)
        return items, after
    raise RespProtocolError("unknown reply type")


class RespParser:
    """Splits a stream of RESP2 bytes into replies, whatever the chunks it arrives in.

    Replies: bytes (simple and bulk strings), int, None (null bulk string or
    array), list, and :class:`RespError` objects for error replies (returned,
    not raised, so an error inside an array stays in its place).
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Take the next chunk; return the replies it completes, in order.

        Raises:
            RespProtocolError: the stream is not RESP2; the parser is then unusable.
        """
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        replies: list[Any] = []
        pos = 0
        size = len(buf)
        while pos < size:
            # The replies to SET NX, without the general parser.
            if buf.startswith(_OK, pos):
                replies.append(b"OK")
                pos += 5
            elif buf.startswith(_NIL, pos):
                replies.append(None)
                pos += 5
            else:
                reply, after = _parse(buf, pos, 0)
                if after < 0:
                    break
                replies.append(reply)
                pos = after
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < size:
            self._buf = bytearray(buf[pos:])
        return replies


# -- the client ------------------------------------------------------------------------------

# (future, deadline in loop time)
_Waiting = collections.deque[tuple["asyncio.Future[Any]", float]]


class _Connection(asyncio.Protocol):
    """One connection: its transport, its parser, and the futures waiting for its replies."""

    def __init__(self, client: RespClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = RespParser()
        self.waiting: _Waiting = collections.deque()
        self.closed = False
        self.lost: asyncio.Future[None] = client.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream: TCP, TLS or Unix

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            replies = self.parser.feed(data)
        except RespProtocolError as exc:
            self.client._fail(self, "Redis sent a reply that is not RESP2", exc)
            return
        waiting = self.waiting
        for reply in replies:
            if not waiting:
                self.client._fail(self, "Redis sent a reply nobody asked for", None)
                return
            future = waiting.popleft()[0]
            if not future.done():
                if type(reply) is RespError:
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        if not waiting:
            self.client._maybe_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.closed:
            self.client._fail(self, "the connection to Redis was lost", exc)

    def send(self, data: bytes, futures: list[tuple[asyncio.Future[Any], float]]) -> None:
        assert self.transport is not None  # noqa: S101  (only after connection_made)
        self.waiting.extend(futures)
        self.transport.write(data)

    def close(self, *, abort: bool) -> None:
        self.closed = True
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


class RespClient:
    """A pipelined RESP2 client for one event loop (the one running when it is made).

    Args:
        host, port: the server's TCP address (ignored when ``path`` is given).
        path: a Unix socket to connect to instead.
        ssl_context: TLS for TCP (``rediss://``); the server name is ``host``.
        username, password: sent as ``AUTH [username] password`` on connecting,
            when a password is given.
        db: selected with ``SELECT db`` on connecting, unless 0.
        timeout: seconds each command may take, connecting included.
    """

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 6379,
        path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        timeout: float,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._host = host
        self._port = port
        self._path = path
        self._ssl = ssl_context
        self._handshake: list[bytes] = []
        if password is not None:
            if username:
                self._handshake.append(encode_command(b"AUTH", username, password))
            else:
                self._handshake.append(encode_command(b"AUTH", password))
        if db:
            self._handshake.append(encode_command(b"SELECT", db))
        self._timeout = timeout
        self._connection: _Connection | None = None  # connected and handshake answered
        self._connecting: asyncio.Task[None] | None = None
        self._queue: list[tuple[bytes, asyncio.Future[Any], float]] = []  # not yet written
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle: list[asyncio.Future[None]] = []  # aclose() waiting for quiet
        self._closed = False

    def __repr__(self) -> str:
        where = f"unix://{self._path}" if self._path else f"{self._host}:{self._port}"
        return f"<RespClient {where} connected={self._connection is not None}>"

    # -- commands --------------------------------------------------------------------------

    def set_nx_px(self, key: str, milliseconds: int) -> asyncio.Future[Any]:
        """``SET key 1 NX PX milliseconds``: a future for b"OK" (set) or None (it existed)."""
        return self._submit(_encode_set_nx_px(key.encode(), milliseconds))

    def command(self, *args: bytes | str | int) -> asyncio.Future[Any]:
        """Any command; a future for its reply (or its :class:`RespError`)."""
        return self._submit(encode_command(*args))

    def _submit(self, data: bytes) -> asyncio.Future[Any]:
        loop = self.loop
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(ConnectionError("the Redis client is closed"))
            return future
        deadline = loop.time() + self._timeout
        self._queue.append((data, future, deadline))
        if self._flush_handle is None and self._connecting is None:
            self._flush_handle = loop.call_soon(self._flush)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._check_deadlines)
        return future

    def _flush(self) -> None:
        """Write every queued command in one write (connecting first if need be)."""
        self._flush_handle = None
        connection = self._connection
        if connection is None:
            if self._connecting is None and self._queue:
                self._renew_if_held_back()  # connecting is bounded from now on
                self._connecting = self.loop.create_task(self._connect())
                self._connecting.add_done_callback(self._connect_cancelled)
            return
        self._renew_if_held_back()
        queue, self._queue = self._queue, []
        # A caller cancelled before its command went out: drop it, its nonce stays unused.
        live = [item for item in queue if not item[1].done()]
        if live:
            waiting = [(item[1], item[2]) for item in live]
            connection.send(b"".join([item[0] for item in live]), waiting)
            if self._timer is None:
                self._timer = self.loop.call_at(waiting[0][1], self._check_deadlines)
        elif not connection.waiting:
            self._maybe_idle()

    def _renew_if_held_back(self) -> None:
        """Give the queued commands their timeout again from now if the first is
        past its deadline before it could be written or a connection started:
        the event loop was blocked (this process's stall, not Redis's). All
        alike, so deadlines stay in the order the commands were written."""
        queue = self._queue
        if queue:
            now = self.loop.time()
            if queue[0][2] <= now:
                renewed = now + self._timeout
                self._queue = [(data, future, renewed) for data, future, _ in queue]

    # -- connecting ------------------------------------------------------------------------

    async def _connect(self) -> None:
        connection: _Connection | None = None
        try:
            connection = await asyncio.wait_for(self._open(), self._timeout)
        except Exception as exc:  # refused, timed out, TLS, AUTH refused...: all unavailable
            self._connecting = None
            self._fail(None, "could not connect to Redis", exc)
            return
        self._connecting = None
        self._connection = connection
        self._flush()

    def _connect_cancelled(self, task: asyncio.Task[None]) -> None:
        """Cancelled from outside, not by :meth:`_fail` (``asyncio.run()`` cancels
        every task as its loop ends, perhaps before this one started): fail the
        queued commands now rather than at their deadline, which :meth:`aclose`
        would wait for."""
        if task.cancelled() and self._connecting is task:
            self._connecting = None
            self._fail(None, "connecting to Redis was cancelled", None)

    async def _open(self) -> _Connection:
        connection = _Connection(self)

        def factory() -> _Connection:
            return connection

        try:
            if self._path is not None:
                await self.loop.create_unix_connection(factory, self._path)
            else:
                await self.loop.create_connection(
                    factory,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
            if self._handshake:
                # Answered before anything else is written: AUTH and SELECT replies
                # cannot be taken for a SET's.
                # A lost connection fails these futures too (ConnectionError); a
                # refused AUTH or SELECT fails its own (RespError).
                deadline = self.loop.time() + self._timeout
                futures = [self.loop.create_future() for _ in self._handshake]
                connection.send(b"".join(self._handshake), [(f, deadline) for f in futures])
                await asyncio.gather(*futures)
        except BaseException:
            connection.close(abort=True)
            raise
        return connection

    # -- failure ---------------------------------------------------------------------------

    def _check_deadlines(self) -> None:
        """The timer: fail everything if the oldest command is past its deadline."""
        self._timer = None
        oldest = self._oldest_deadline()
        if oldest is None:
            return
        if self.loop.time() >= oldest:
            self._fail(self._connection, "Redis did not answer in time", TimeoutError("timed out"))
        else:
            self._timer = self.loop.call_at(oldest, self._check_deadlines)

    def _oldest_deadline(self) -> float | None:
        connection = self._connection
        if connection is not None:
            # Commands still queued are written on this turn of the loop
            # (_flush), which times them again if the loop held them back.
            return connection.waiting[0][1] if connection.waiting else None
        return self._queue[0][2] if self._queue else None

    def _fail(
        self, connection: _Connection | None, message: str, cause: BaseException | None
    ) -> None:
        """Close ``connection`` and fail every pending command with ConnectionError."""
        pending: list[asyncio.Future[Any]] = []
        if connection is not None:
            connection.close(abort=True)
            pending += [item[0] for item in connection.waiting]
            connection.waiting.clear()
            if connection is not self._connection:
                # A connection already given up (or still in its handshake): only its own.
                self._settle(pending, message, cause)
                return
        self._connection = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        pending += [item[1] for item in self._queue]
        self._queue = []
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._settle(pending, message, cause)
        self._maybe_idle()

    @staticmethod
    def _settle(
        futures: list[asyncio.Future[Any]], message: str, cause: BaseException | None
    ) -> None:
        for future in futures:
            if not future.done():
                error = ConnectionError(message)
                error.__cause__ = cause
                future.set_exception(error)

    # -- closing ---------------------------------------------------------------------------

    def _maybe_idle(self) -> None:
        if self._idle and not self._busy():
            for waiter in self._idle:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle.clear()

    def _busy(self) -> bool:
        return bool(
            self._queue
            or self._connecting is not None
            or (self._connection is not None and self._connection.waiting)
        )

    async def aclose(self) -> None:
        """Wait for the commands in flight (each bounded by the timeout), then close."""
        while self._busy():
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._idle.append(waiter)
            await waiter
        self._closed = True
        connection, self._connection = self._connection, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if connection is not None:
            connection.close(abort=False)
            await connection.lost
