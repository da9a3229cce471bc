"""Run a real uvicorn server in a subprocess on 127.0.0.1, for end-to-end tests.

Usage, e.g. in a module-scoped fixture::

    with UvicornServer("tests.apps.echo_app:app", http="httptools",
                       env={"HMACGUARD_TEST_MAX_BODY": "1048576"}) as server:
        httpx.get(server.url + "/_stats")
        server.assert_no_server_errors()

The server listens on a free port of 127.0.0.1 (``server.port``,
``server.url``, ``server.authority``), imports the app by name with the
repository root as ``--app-dir``, and writes its log (stdout and stderr) to a
file that ``server.log()`` reads. ``start()`` returns once the port accepts
connections and every worker has logged "Application startup complete";
``stop()`` sends SIGTERM to the process it started (and only to it) and waits.
Several servers can run at once, e.g. two instances sharing one Redis, or one
started with ``workers=2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from local_server import HOST, ChildProcess

ROOT = Path(__file__).resolve().parent.parent

# What a server error looks like in uvicorn's log: the traceback uvicorn logs
# when an app raises, and a 500 in the access log.
SERVER_ERROR = re.compile(
    r"Exception in ASGI application|Traceback \(most recent call last\)|\" 500 "
)
STARTED = "Application startup complete"


async def close_connections(
    connections: Iterable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
) -> None:
    """Close each connection and wait for it; one the server closed first is fine."""
    writers = [writer for _, writer in connections]
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class ServerFailed(RuntimeError):
    """The server exited, or did not start in time; the message carries its log."""


class UvicornServer(ChildProcess):
    """A uvicorn subprocess serving ``app`` (an import string) on 127.0.0.1.

    Args:
        app: the app as uvicorn takes it, ``"package.module:attribute"``,
            importable from ``app_dir``.
        http: ``"h11"`` or ``"httptools"`` (``--http``).
        loop: ``"asyncio"`` or ``"uvloop"`` (``--loop``); by default uvloop
            with httptools and asyncio with h11.
        env: extra environment variables for the server process (the app
            reads its configuration from them).
        options: more uvicorn command-line options, e.g. ``["--no-access-log"]``.
        workers: ``--workers`` (None: uvicorn's default, one process).
        port: the port (default: a free one, chosen at start).
        app_dir: ``--app-dir`` (default: the repository root).
        log_level: ``--log-level`` (default ``info``, so the access log, with
            its status codes, is in ``log()``).
        startup_timeout: seconds to wait for the server to accept connections.
    """

    def __init__(
        self,
        app: str,
        *,
        http: str = "h11",
        loop: str | None = None,
        env: Mapping[str, str] | None = None,
        options: Iterable[str] = (),
        workers: int | None = None,
        port: int | None = None,
        app_dir: str | os.PathLike[str] = ROOT,
        log_level: str = "info",
        startup_timeout: float = 20.0,
    ) -> None:
        if http not in ("h11", "httptools"):
            raise ValueError('http is "h11" or "httptools"')
        self.app = app
        self.http = http
        self.loop = loop or ("uvloop" if http == "httptools" else "asyncio")
        self.env = dict(env or {})
        self.options = list(options)
        self.workers = workers
        self._fixed_port = port
        self.port = 0
        self.app_dir = Path(app_dir)
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.failure = ServerFailed
        self._log_dir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    #: The server's name in messages, and the line each worker logs once it serves.
    name = "uvicorn"
    started = STARTED

    def __repr__(self) -> str:
        return f"UvicornServer({self.app!r}, http={self.http!r}, port={self.port})"

    # -- addresses -------------------------------------------------------------

    @property
    def authority(self) -> str:
        """``127.0.0.1:port``, the Host a client sends."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``."""
        return f"http://{self.authority}"

    @property
    def pid(self) -> int | None:
        """The server process's id, while it runs."""
        return None if self._process is None else self._process.pid

    # -- lifecycle ---------------------------------------------------------------

    def command(self) -> list[str]:
        """The command line that starts the server."""
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--app-dir",
            str(self.app_dir),
            "--http",
            self.http,
            "--loop",
            self.loop,
            "--log-level",
            self.log_level,
        ]
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        return command + self.options

    def start(self) -> UvicornServer:
        """Start the server and wait until it serves; retry on a port taken meanwhile."""
        if self._process is None:
            self.port = self._fixed_port  # 0: a free port, chosen afresh each start
        self._launch()
        return self

    def _spawn(self) -> None:
        self._log_dir = tempfile.TemporaryDirectory(prefix=f"hmacguard-{self.name}-")
        self.log_path = Path(self._log_dir.name) / "server.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        expected = self.workers or 1
        while True:
            if self._process.poll() is not None:
                raise ServerFailed(
                    f"{self.name} exited with {self._process.returncode}:\n{self.log()}"
                )
            if self.log().count(self.started) >= expected and self._accepts():
                return
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"{self.name} did not start in {self.startup_timeout} s:\n{self.log()}"
                )
            time.sleep(0.05)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def close(self) -> None:
        """Stop the server and delete its log."""
        self.stop()
        if self._log_dir is not None:
            self._log_dir.cleanup()
            self._log_dir = None

    # -- the log -------------------------------------------------------------------

    def log(self) -> str:
        """Everything the server printed so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def log_size(self) -> int:
        """The log's length in characters, to look at what a test added later."""
        return len(self.log())

    def server_errors(self, since: int = 0) -> list[str]:
        """Lines of the log after ``since`` that show a 500 or an unhandled exception."""
        return [line for line in self.log()[since:].splitlines() if SERVER_ERROR.search(line)]

    def assert_no_server_errors(self, since: int = 0) -> None:
        """Fail if the log (after ``since``) shows a 500 or an unhandled exception."""
        errors = self.server_errors(since)
        if errors:
            raise AssertionError(
                "the server logged errors:\n"
                + "\n".join(errors)
                + "\n--- log ---\n"
                + self.log()[since:]
            )
