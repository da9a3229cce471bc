"""What the tests' local servers share: ``with`` blocks, and stopping a child process.

:class:`Managed` gives every helper that starts something and must clean it
up (:class:`UvicornServer`, :class:`RedisServer`, :class:`LocalRedisCluster`,
:class:`TcpProxy`) the same ``with server: ...`` form: ``start()`` on entry,
``close()`` on exit, whatever happens inside. :class:`ChildProcess` adds how a
server run as a child process is stopped (politely, then not) or killed (at
once, as a crash would).
"""

from __future__ import annotations

import socket
import subprocess
from types import TracebackType
from typing import TypeVar

_M = TypeVar("_M", bound="Managed")

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Managed:
    """``start()`` on entering a ``with`` block, ``close()`` on leaving it."""

    def start(self: _M) -> _M:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _M) -> _M:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ChildProcess(Managed):
    """A server the tests run as a child process (``_process`` while it runs).

    A subclass says how to spawn it (``_spawn``), how to tell it is ready
    (``_wait_until_ready``, raising ``failure`` if it is not) and where its
    output went (``log``); :meth:`_launch` does the rest.
    """

    _process: subprocess.Popen[bytes] | None = None
    port = 0
    #: What ``_spawn`` and ``_wait_until_ready`` raise when the server did not come up.
    failure: type[Exception] = RuntimeError

    def _spawn(self) -> None:
        raise NotImplementedError

    def _wait_until_ready(self) -> None:
        raise NotImplementedError

    def log(self) -> str:
        raise NotImplementedError

    def _launch(self) -> None:
        """Spawn the server on ``port`` and wait until it is ready.

        With ``port`` 0, on a free port, tried up to three times: another
        process may take the port between the choice and the server's bind.
        A port already set is kept (one try), so clients find the server again.
        """
        if self._process is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        keep = bool(self.port)
        attempts = 1 if keep else 3
        for attempt in range(attempts):
            if not keep:
                self.port = free_port()
            try:
                self._spawn()
                self._wait_until_ready()
                return
            except self.failure:
                log = self.log()
                self.stop()
                if attempt + 1 < attempts and "address already in use" in log.lower():
                    continue
                raise

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); return its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return process.returncode

    def kill(self) -> int | None:
        """Kill the server at once (SIGKILL: no shutdown, nothing flushed) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return None
        process.kill()
        return process.wait(10)
