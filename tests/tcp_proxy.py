"""A TCP proxy on 127.0.0.1 that can blackhole the server behind it, for outage tests.

Usage, e.g. between a nonce store and a test's redis-server::

    with TcpProxy(redis_server.port) as proxy:
        store = RedisNonceStore(f"redis://127.0.0.1:{proxy.port}/0")
        proxy.blackhole()  # nothing is answered any more
        proxy.forward()    # new connections reach the server again
        proxy.latency = 0.2  # every reply arrives 0.2 s late

What a blackhole looks like to a client, without iptables: every connection
already open stalls (the bytes it sends are swallowed, and the server's
replies, even those already on their way, are dropped), and every connection
opened meanwhile is accepted and then never answered. Nothing is closed: the
client finds out only through its own timeout, as behind a firewall that
drops packets. :meth:`forward` relays connections opened from then on; the
stalled ones stay stalled until their client closes them, as a TCP connection
whose packets were dropped for longer than the client waited is of no use
once the network returns.

The proxy runs its own event loop in a daemon thread, so a test's event loop
may be saturated with load without delaying it, and its methods may be called
from any thread. :meth:`blackhole` and :meth:`forward` return two readings of
``time.monotonic()`` (the clock of ``asyncio``'s ``loop.time()``), taken just
before and just after the switch, so a test can tell which requests were
certainly sent during an outage even if the proxy's thread was descheduled
in between (on a busy machine, that can last a good part of a second).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from local_server import Managed

HOST = "127.0.0.1"

_T = TypeVar("_T")


class _Client(asyncio.Protocol):
    """The client's side of one proxied connection."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.upstream: _Upstream | None = None
        self.stalled = proxy.blackholed
        self.closed = False
        # Bytes read before the upstream connection is up. Reading is paused until
        # then, but Python 3.10 starts reading after connection_made() all the same.
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.proxy._connections.add(self)
        self.proxy.accepted += 1
        if self.stalled:
            return  # accepted, and never answered
        transport.pause_reading()
        self.proxy._loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, upstream = await self.proxy._loop.create_connection(
                lambda: _Upstream(self), self.proxy.target_host, self.proxy.target_port
            )
        except OSError:
            if self.transport is not None and not self.stalled:
                self.transport.abort()  # the server is gone: as it would look without a proxy
            return
        self.upstream = upstream
        if self.closed:
            upstream.close()
        elif self.transport is not None:
            if self.early and not self.stalled and upstream.transport is not None:
                upstream.transport.write(b"".join(self.early))
            self.early.clear()
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.stalled:
            return  # swallowed
        if self.upstream is None or self.upstream.transport is None:
            self.early.append(data)
            return
        self.upstream.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy._connections.discard(self)
        if self.upstream is not None:
            self.upstream.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _Upstream(asyncio.Protocol):
    """The server's side of one proxied connection."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        latency = self.client.proxy.latency
        if latency:
            asyncio.get_running_loop().call_later(latency, self._relay, data)
        else:
            self._relay(data)

    def _relay(self, data: bytes) -> None:
        client = self.client
        if not client.stalled and client.transport is not None:
            client.transport.write(data)  # else dropped, even a reply already on its way

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.client.stalled:
            self.client.close()  # the server closed: so does the proxy, towards the client

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class TcpProxy(Managed):
    """A TCP proxy from a free port of 127.0.0.1 to ``target_host:target_port``.

    Args:
        target_port: the port of the server behind the proxy.
        target_host: its address (default 127.0.0.1).
    """

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = HOST
        self.port = 0
        self.blackholed = False
        # Seconds each chunk of the server's replies is held before it is relayed
        # (a slow network or a busy server): set it at any time.
        self.latency = 0.0
        self.accepted = 0  # connections accepted so far
        self._connections: set[_Client] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __repr__(self) -> str:
        return (
            f"TcpProxy({HOST}:{self.port} -> {self.target_host}:{self.target_port}, "
            f"blackholed={self.blackholed})"
        )

    def start(self) -> TcpProxy:
        """Listen on a free port (``self.port``) and start relaying."""
        self._thread.start()
        self._server = self._call(self._listen())
        return self

    async def _listen(self) -> asyncio.AbstractServer:
        server = await self._loop.create_server(lambda: _Client(self), HOST, 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def blackhole(self) -> tuple[float, float]:
        """Stall every open connection and swallow new ones: the moments before and after."""
        return self._call(self._switch(blackholed=True))

    def forward(self) -> tuple[float, float]:
        """Relay the connections opened from now on: the moments before and after."""
        return self._call(self._switch(blackholed=False))

    async def _switch(self, *, blackholed: bool) -> tuple[float, float]:
        # Connections and bytes that reached the proxy before the switch are handled
        # under the old mode: a few turns of the loop accept and read what is pending.
        for _ in range(3):
            await asyncio.sleep(0)
        before = time.monotonic()
        self.blackholed = blackholed
        if blackholed:
            for connection in self._connections:
                connection.stalled = True
        return before, time.monotonic()

    def close(self) -> None:
        """Close the listener and every connection, and stop the thread."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
            if connection.upstream is not None:
                connection.upstream.close()
        await asyncio.sleep(0)  # let the transports close

    def _call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)
