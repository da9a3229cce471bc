"""The echo app the real-server tests run: a Starlette app behind SignatureMiddleware.

uvicorn imports it by name, from the repository root::

    python -m uvicorn tests.apps.echo_app:app --app-dir /path/to/repo

(``tests`` and ``tests/apps`` are namespace packages; ``--app-dir`` puts the
repository root on ``sys.path``). ``tests/uvicorn_server.py`` does this for the
tests. The configuration comes from environment variables, read at import:

==============================  =====================================================
``HMACGUARD_TEST_KEY_ID``       key id (default ``client-1``)
``HMACGUARD_TEST_SECRET``       the secret, hex (default: 32 bytes ``k``)
``HMACGUARD_TEST_MAX_BODY``     ``max_body_size`` in bytes (default: the middleware's)
``HMACGUARD_TEST_BODY_TIMEOUT`` ``body_timeout`` in seconds (default: the middleware's)
``HMACGUARD_TEST_NONCE_STORE``  ``memory`` (default), or ``module:factory``: a
                                zero-argument callable returning the NonceStore
==============================  =====================================================

Every route answers every method with what the app received: the method, the
raw path and query, the length and sha256 of the body it read, the verified
key id and nonce, the header lines it sees, and ``count``, the number of
requests the app has served in this process (the middleware must keep it still
on every rejection). The one
exempt route, ``GET /_stats``, reports ``count`` without moving it, so a test
can read it from outside the process.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hmacguard import SignatureMiddleware

KEY_ID = os.environ.get("HMACGUARD_TEST_KEY_ID", "client-1")
SECRET = bytes.fromhex(os.environ.get("HMACGUARD_TEST_SECRET", (b"k" * 32).hex()))
STATS_PATH = "/_stats"

_served = 0


def _nonce_store() -> Any:
    spec = os.environ.get("HMACGUARD_TEST_NONCE_STORE", "memory")
    if spec == "memory":
        return None  # the middleware's default MemoryNonceStore
    # "package.module:factory": a zero-argument callable returning a NonceStore,
    # e.g. a Redis store built from the test's own environment variables.
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise RuntimeError(
            f"HMACGUARD_TEST_NONCE_STORE is 'memory' or 'module:factory', not {spec!r}"
        )
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory()


def _middleware_options() -> dict[str, Any]:
    options: dict[str, Any] = {"keys": {KEY_ID: SECRET}, "exempt": [STATS_PATH]}
    max_body = os.environ.get("HMACGUARD_TEST_MAX_BODY")
    if max_body:
        options["max_body_size"] = int(max_body)
    body_timeout = os.environ.get("HMACGUARD_TEST_BODY_TIMEOUT")
    if body_timeout:
        options["body_timeout"] = float(body_timeout)
    store = _nonce_store()
    if store is not None:
        options["nonce_store"] = store
    return options


async def echo(request: Request) -> JSONResponse:
    """Report what the app received, and count it."""
    global _served  # noqa: PLW0603  (one counter per server process, on purpose)
    body = await request.body()
    _served += 1
    signature = request.state.signature
    return JSONResponse(
        {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "key_id": signature.key_id,
            "nonce": signature.nonce,
            "count": _served,
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.headers.raw],
        }
    )


async def stats(request: Request) -> JSONResponse:
    """Report how many requests reached the app (exempt from verification)."""
    return JSONResponse({"count": _served, "pid": os.getpid()})


_ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

app = Starlette(
    routes=[
        Route(STATS_PATH, stats, methods=["GET"]),
        Route("/{path:path}", echo, methods=_ALL),
    ],
    middleware=[Middleware(SignatureMiddleware, **_middleware_options())],
)
