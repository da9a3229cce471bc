"""Run a real hypercorn server in a subprocess on 127.0.0.1, for end-to-end tests.

As :class:`UvicornServer` (``tests/uvicorn_server.py``), whose start, stop, log
and address helpers it keeps; only the command line and the line that says the
server is ready differ. hypercorn speaks HTTP/1.1 (h11) and, on the same port,
HTTP/2 over cleartext to a client that starts with the HTTP/2 preface (prior
knowledge), and runs the app under asyncio, uvloop or trio (``--worker-class``)::

    with HypercornServer("tests.apps.echo_app:app", worker_class="trio") as server:
        httpx.Client(http1=False, http2=True).get(server.url + "/_stats")

Its access log goes to the same log, so a 500 shows as it does for uvicorn.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from local_server import HOST
from uvicorn_server import UvicornServer

WORKER_CLASSES = ("asyncio", "uvloop", "trio")


class HypercornServer(UvicornServer):
    """A hypercorn subprocess serving ``app`` (an import string) on 127.0.0.1.

    Args:
        app: ``"package.module:attribute"``, importable from the repository root
            (the server's working directory).
        worker_class: ``"asyncio"``, ``"uvloop"`` or ``"trio"``.
        env: extra environment variables for the server process.
        log_level: ``--log-level`` (default ``info``).
        startup_timeout: seconds to wait for the server to accept connections.
    """

    name = "hypercorn"
    started = "Running on"

    def __init__(
        self,
        app: str,
        *,
        worker_class: str = "asyncio",
        env: Mapping[str, str] | None = None,
        log_level: str = "info",
        startup_timeout: float = 20.0,
    ) -> None:
        if worker_class not in WORKER_CLASSES:
            raise ValueError(f"worker_class is one of {WORKER_CLASSES}")
        super().__init__(app, env=env, log_level=log_level, startup_timeout=startup_timeout)
        self.worker_class = worker_class

    def __repr__(self) -> str:
        return (
            f"HypercornServer({self.app!r}, worker_class={self.worker_class!r}, port={self.port})"
        )

    def command(self) -> list[str]:
        """The command line that starts the server (one worker, access log on stdout)."""
        return [
            sys.executable,
            "-m",
            "hypercorn",
            self.app,
            "--bind",
            f"{HOST}:{self.port}",
            "--worker-class",
            self.worker_class,
            "--log-level",
            self.log_level,
            "--access-logfile",
            "-",
            "--error-logfile",
            "-",
        ]
