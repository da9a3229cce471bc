"""Run a real redis-server in a subprocess on 127.0.0.1, for the Redis tests.

Usage, e.g. in a module-scoped fixture::

    with RedisServer() as redis_server:
        store = RedisNonceStore(redis_server.url)
        redis_server.stop()      # an outage
        redis_server.start()     # back, on the same port

The server listens on a free port of 127.0.0.1 with no persistence
(``--save "" --appendonly no``) and ``maxmemory-policy noeviction``;
``start()`` returns once it answers ``PING``; ``stop()`` sends SIGTERM to the
process it started (and only to it) and waits; ``start()`` after ``stop()``
reuses the port, so clients that know the URL reconnect by themselves.
:class:`LocalRedisCluster` starts three such servers as a Redis Cluster, the slots
split between them, without needing redis-cli.

:func:`require_redis_server` is how tests find the binary: missing, the tests
skip with a message saying how to install it, except in CI (``CI=true``), where
a missing binary fails them: CI must not pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import redis

from local_server import HOST, ChildProcess, Managed, free_port

INSTALL_HINT = (
    "redis-server is not installed, so the Redis tests cannot run: install Redis >= 7.0 "
    "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) "
    "or put redis-server on PATH"
)


def in_ci() -> bool:
    """True on a CI runner (``CI=true``, as GitHub Actions and most CIs set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_redis_server() -> str:
    """The path of redis-server; if it is missing, skip the test, or fail it in CI."""
    binary = shutil.which("redis-server")
    if binary is None:
        if in_ci():
            pytest.fail(f"CI=true and {INSTALL_HINT}", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return binary


class RedisServerFailed(RuntimeError):
    """redis-server exited, or did not answer PING in time; the message carries its log."""


class RedisServer(ChildProcess):
    """A redis-server subprocess on 127.0.0.1.

    Args:
        binary: the redis-server executable (default: the one on PATH).
        options: more command-line options, e.g. ``["--maxmemory", "10mb"]``.
        startup_timeout: seconds to wait for the server to answer PING.

    :meth:`stop` and :meth:`kill` keep the port, so :meth:`start` brings the server
    back where clients expect it.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        options: Iterable[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self.binary = binary or require_redis_server()
        self.options = list(options)
        self.startup_timeout = startup_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self.failure = RedisServerFailed
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:port/0``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process this object started is alive."""
        return self._process is not None and self._process.poll() is None

    def client(self) -> redis.Redis:
        """A synchronous redis-py client, for the test to inspect or configure the server."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5)

    def command(self) -> list[str]:
        """The command line that starts the server."""
        assert self._dir is not None
        return [
            self.binary,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
            "--maxmemory-policy",
            "noeviction",
            *self.options,
        ]

    def start(self) -> RedisServer:
        """Start the server (on the same port as before, if it ran before) and wait for PING."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="hmacguard-redis-")
        self._launch()
        return self

    def _spawn(self) -> None:
        assert self._dir is not None
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(  # noqa: S603  (a fixed binary and our own arguments)
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir.name,
            )

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                raise RedisServerFailed(
                    f"redis-server exited with {self._process.returncode}:\n{self.log()}"
                )
            if self.ping():
                return
            if time.monotonic() > deadline:
                raise RedisServerFailed(
                    f"redis-server did not answer PING in {self.startup_timeout} s:\n{self.log()}"
                )
            time.sleep(0.02)

    def ping(self) -> bool:
        """True if the server answers PING within half a second."""
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def close(self) -> None:
        """Stop the server and delete its directory and log."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    @property
    def log_path(self) -> Path:
        """The file the server's output goes to."""
        assert self._dir is not None
        return Path(self._dir.name) / "redis.log"

    def log(self) -> str:
        """Everything the server printed so far."""
        if self._dir is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes().decode("utf-8", "replace")


class LocalRedisCluster(Managed):
    """A Redis Cluster of three masters on 127.0.0.1, each a :class:`RedisServer`.

    The 16,384 slots are split in three ranges with ``CLUSTER ADDSLOTSRANGE``
    (Redis >= 7.0), the nodes meet, and ``start()`` returns once every node
    reports ``cluster_state:ok``.
    """

    SLOTS = ((0, 5460), (5461, 10922), (10923, 16383))

    def __init__(self, *, startup_timeout: float = 20.0) -> None:
        # --cluster-port: the bus port would otherwise be port + 10000, past 65535 for
        # many free ports.
        self.bus_ports = [free_port() for _ in self.SLOTS]
        self.nodes = [
            RedisServer(
                options=[
                    *("--cluster-enabled", "yes", "--cluster-node-timeout", "5000"),
                    *("--cluster-port", str(bus_port)),
                ]
            )
            for bus_port in self.bus_ports
        ]
        self.startup_timeout = startup_timeout

    def __repr__(self) -> str:
        return f"LocalRedisCluster(ports={[node.port for node in self.nodes]})"

    def start(self) -> LocalRedisCluster:
        """Start the nodes, assign the slots, join them, and wait for the cluster to be ok."""
        try:
            for node in self.nodes:
                node.start()
            for node, (first, last) in zip(self.nodes, self.SLOTS, strict=True):
                with node.client() as client:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            with self.nodes[0].client() as client:
                for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                    client.execute_command("CLUSTER", "MEET", HOST, node.port, bus_port)
            self._wait_until_ok()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            states = []
            for node in self.nodes:
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                states.append("cluster_state:ok" in text and "cluster_known_nodes:3" in text)
            if all(states):
                return
            if time.monotonic() > deadline:
                raise RedisServerFailed(f"the cluster was not ok in {self.startup_timeout} s")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every node and delete their directories."""
        for node in self.nodes:
            node.close()
