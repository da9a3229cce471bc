"""``hmacguard demo``: a protected API on 127.0.0.1, and the attacks it turns away.

A Starlette app behind :class:`SignatureMiddleware` runs under uvicorn in a
background thread, on a free port of 127.0.0.1, with the built-in defaults:
a generated key, a :class:`MemoryNonceStore` (or Redis when
``HMACGUARD_REDIS_URL`` is set), a Standard Webhooks endpoint. A real httpx
client then plays a script and each answer is checked against the expected
one, so the demo doubles as a smoke test (exit 1 on any difference).

The client is told ``invalid_signature`` for a replay, a stale signature and an
unknown key, exactly as for a bad MAC (RFC 9421 §8.3, THREATS K2/E1); the
precise reason goes to the ``hmacguard`` logger. The server runs in this
process, so the demo reads that log and shows both: what the client was told
and why the server refused.

Needs the ``demo`` extra (httpx, starlette, uvicorn); the CLI imports this
module only when ``demo`` runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO

# The three extras first, so a missing one is named in the ImportError.
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ._cli import CLIError, curl_command
from ._errors import NonceStoreUnavailable
from ._httpx_auth import HMACAuth
from ._keys import HMACKey
from ._middleware import SignatureMiddleware
from ._nonce_store import MemoryNonceStore, NonceStore
from ._signer import Signer
from .webhooks import StandardWebhooks
from .webhooks.sender import StandardWebhooksAuth

__all__ = ["DemoServer", "build_app", "run"]

KEY_ID = "demo-client"
MAX_BODY = 64 * 1024  # small, so the oversize row is quick
REDIS_ENV = "HMACGUARD_REDIS_URL"
REDIS_PIP = 'pip install "hmacguard[redis]"'
HOST = "127.0.0.1"


def make_store() -> tuple[NonceStore, str]:
    """The nonce store (Redis when ``HMACGUARD_REDIS_URL`` is set) and its description.

    Raises:
        CLIError: the redis extra is missing, or the URL is invalid or Redis at
            it does not answer (checked here, before the demo starts).
    """
    url = os.environ.get(REDIS_ENV)
    if not url:
        return MemoryNonceStore(), "in memory (set HMACGUARD_REDIS_URL for Redis)"
    try:
        from ._redis_nonce_store import RedisNonceStore  # noqa: PLC0415  (the redis extra)
    except ImportError:
        raise CLIError(
            f"{REDIS_ENV} is set, and a Redis nonce store needs redis: {REDIS_PIP} "
            f"(or unset {REDIS_ENV} for the in-memory store)"
        ) from None
    try:
        store = RedisNonceStore(url)
    except ValueError as exc:  # the message shows the URL with its password masked
        raise CLIError(f"{REDIS_ENV}: {exc}") from None
    _check_redis(store)
    return store, f"Redis ({REDIS_ENV})"


def _check_redis(store: NonceStore) -> None:
    """Record one throw-away nonce, so an unreachable Redis is reported up front
    instead of as a 503 on every row."""

    async def probe() -> None:
        try:
            await store.add("hmacguard-demo-probe:" + secrets.token_urlsafe(16), 1.0)
        finally:
            close = getattr(store, "aclose", None)
            if close is not None:
                await close()  # this event loop's connection: the server opens its own

    try:
        asyncio.run(probe())
    except NonceStoreUnavailable as exc:  # "Redis at <URL, password masked> did not answer: ..."
        raise CLIError(
            f"{REDIS_ENV}: {exc.detail}; start Redis there, or unset {REDIS_ENV} for the "
            "in-memory store"
        ) from None


def build_app(secret: bytes, webhook_secret: str, store: NonceStore) -> SignatureMiddleware:
    """The demo API: ``POST /orders`` (signed), ``POST /webhooks/events``
    (Standard Webhooks) and ``GET /health`` (exempt), behind the middleware."""

    async def orders(request: Request) -> Response:
        body = await request.body()
        verified = request.scope["state"]["signature"]
        return JSONResponse({"status": "accepted", "key_id": verified.key_id, "bytes": len(body)})

    async def events(request: Request) -> Response:
        delivery = request.scope["state"]["webhook"]
        return JSONResponse({"status": "received", "id": delivery.delivery_id})

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        close = getattr(store, "aclose", None)
        if close is not None:
            await close()

    app = Starlette(
        routes=[
            Route("/orders", orders, methods=["POST"]),
            Route("/webhooks/events", events, methods=["POST"]),
            Route("/health", health),
        ],
        lifespan=lifespan,
    )
    return SignatureMiddleware(
        app,
        keys={KEY_ID: secret},
        nonce_store=store,
        exempt=["/health"],
        max_body_size=MAX_BODY,
        webhooks={"/webhooks": StandardWebhooks(webhook_secret)},
    )


class DemoServer:
    """uvicorn serving ``app`` in a background thread on a free port of 127.0.0.1.

    The socket is bound before uvicorn starts, so the port is known and no
    other process can take it in between; leaving the ``with`` block asks
    uvicorn to exit and waits for the thread.
    """

    def __init__(self, app: Any) -> None:
        # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off
        # (TCP_NODELAY) only on connections whose socket says it is TCP, and an
        # accepted connection inherits this socket's protocol number. With 0,
        # without uvloop, every answer after the first on a keep-alive
        # connection waited about 40 ms: its head and body went out as two
        # writes, and the second waited for the client's delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind((HOST, 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        # log_config=None: leave the process's logging alone (the demo may run in-process).
        # h11, which uvicorn always installs: the demo runs the same with or
        # without uvicorn[standard]. (httptools had been set aside for stalls of
        # about 40 ms; with Nagle's algorithm off, above, this script shows
        # none under httptools either, on asyncio or uvloop.)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", http="h11")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> DemoServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the demo server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for it, close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)


@dataclass
class Row:
    """One step of the script: what was sent, what should come back, what did.

    ``reason`` is what the client was told; ``logged`` is the precise reason the
    server logged for its refusal (``-`` when it logged none, e.g. on a 2xx).
    """

    sent: str
    want_status: int
    want_reason: str
    want_logged: str
    status: int = 0
    reason: str = ""
    logged: str = "-"
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.status, self.reason, self.logged) == (
            self.want_status,
            self.want_reason,
            self.want_logged,
        )


class _Rejections(logging.Handler):
    """Collects the precise reason of every rejection logged on the ``hmacguard`` logger
    (the record's ``hmacguard_reason`` field)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        reason = getattr(record, "hmacguard_reason", None)
        if isinstance(reason, str):
            self.reasons.append(reason)  # list.append: safe from the server thread


@contextlib.contextmanager
def _logged_reasons() -> Iterator[_Rejections]:
    """Capture the ``hmacguard`` logger's rejections instead of printing them."""
    logger = logging.getLogger("hmacguard")
    handler = _Rejections()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _reason(response: httpx.Response) -> str:
    """The problem's ``reason``, or the ``status`` of a JSON success body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:40]
    if isinstance(data, dict):
        return str(data.get("reason") or data.get("status") or "")
    return ""


def _timed(row: Row, log: _Rejections, send: Callable[[], httpx.Response]) -> httpx.Response:
    seen = len(log.reasons)
    start = time.perf_counter()
    response = send()
    row.ms = (time.perf_counter() - start) * 1000
    row.status, row.reason = response.status_code, _reason(response)
    # The server logs a rejection before it answers, so the line is there by now.
    row.logged = ", ".join(log.reasons[seen:]) or "-"
    return response


def play(url: str, secret: bytes, webhook_secret: str) -> list[Row]:
    """Send the scripted requests to the demo server at ``url``; return the rows."""
    order = b'{"sku": "A-1", "amount": 10}'
    json_type = {"content-type": "application/json"}
    rows = [
        Row("signed POST /orders", 200, "accepted", "-"),
        Row("the same request, replayed", 401, "invalid_signature", "replayed"),
        Row("its body tampered (amount 10 -> 1000)", 401, "digest_mismatch", "digest_mismatch"),
        Row("unsigned POST /orders", 401, "missing_signature", "missing_signature"),
        Row("signed an hour ago", 401, "invalid_signature", "expired"),
        Row("signed with the wrong key", 401, "invalid_signature", "invalid_signature"),
        Row(f"signed, {4 * MAX_BODY // 1024} KiB body (limit {MAX_BODY // 1024} KiB)", 413,
            "body_too_large", "body_too_large"),
        Row("Standard Webhooks delivery", 200, "received", "-"),
        Row("the same delivery, redelivered", 200, "duplicate", "-"),
    ]  # fmt: skip
    auth = HMACAuth(KEY_ID, secret)
    hour_ago = HMACAuth(KEY_ID, secret, clock=lambda: time.time() - 3600)
    wrong = HMACAuth(KEY_ID, secrets.token_bytes(32))
    hooks = StandardWebhooksAuth(webhook_secret)
    delivery = {"webhook-id": "msg_demo_" + secrets.token_urlsafe(8), **json_type}
    event = b'{"type": "order.paid", "order": "A-1"}'
    with _logged_reasons() as log, httpx.Client(base_url=url, timeout=10) as client:
        first = _timed(
            rows[0],
            log,
            lambda: client.post("/orders", content=order, headers=json_type, auth=auth),
        )
        signed = first.request
        _timed(rows[1], log, lambda: client.send(signed))
        tampered_headers = {k: v for k, v in signed.headers.items() if k != "content-length"}
        tampered = client.build_request(
            "POST", "/orders", headers=tampered_headers, content=order.replace(b"10", b"1000")
        )
        _timed(rows[2], log, lambda: client.send(tampered))
        _timed(rows[3], log, lambda: client.post("/orders", content=order, headers=json_type))
        _timed(
            rows[4],
            log,
            lambda: client.post("/orders", content=order, headers=json_type, auth=hour_ago),
        )
        _timed(
            rows[5],
            log,
            lambda: client.post("/orders", content=order, headers=json_type, auth=wrong),
        )
        big = b"x" * (4 * MAX_BODY)
        _timed(
            rows[6], log, lambda: client.post("/orders", content=big, headers=json_type, auth=auth)
        )

        def deliver() -> httpx.Response:
            return client.post("/webhooks/events", content=event, headers=delivery, auth=hooks)

        _timed(rows[7], log, deliver)
        _timed(rows[8], log, deliver)  # a retry: the same webhook-id, signed afresh
    return rows


def _painter(out: TextIO) -> Callable[[str, str], str]:
    # https://no-color.org: colour only on a terminal, and never when NO_COLOR is set.
    colour = out.isatty() and not os.environ.get("NO_COLOR")
    codes = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}

    def paint(text: str, style: str) -> str:
        return f"\033[{codes[style]}m{text}\033[0m" if colour else text

    return paint


def render(rows: list[Row], out: TextIO) -> None:
    """Print the table: what was sent, status, the reason the client was told, the
    reason the server logged, time (ms), and the check."""
    paint = _painter(out)
    header = ("what was sent", "status", "client was told", "server logged", "ms")
    cells = [(r.sent, str(r.status), r.reason, r.logged, f"{r.ms:.1f}") for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(5)]

    def line(row: tuple[str, ...]) -> str:
        return (
            f"  {row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  "
            f"{row[3]:<{widths[3]}}  {row[4]:>{widths[4]}}"
        )

    out.write(paint(line(header), "bold") + "\n")
    for row, cell in zip(rows, cells, strict=True):
        text = line(cell)
        if not row.ok:
            wanted = f"{row.want_status} {row.want_reason}"
            if row.want_logged != "-":
                wanted += f" (logged {row.want_logged})"
            text = paint(text, "red") + paint(f"  UNEXPECTED: wanted {wanted}", "red")
        elif row.status < 300:
            text = paint(text, "green")
        else:
            text = paint(text, "yellow")
        out.write(text + "\n")


@contextlib.contextmanager
def _rejections_to(stream: TextIO) -> Iterator[None]:
    """Print the ``hmacguard`` logger's warnings (each rejection's precise reason) to ``stream``."""
    logger = logging.getLogger("hmacguard")
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """In the main thread, let SIGTERM stop ``--serve`` as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(*, serve: bool, out: TextIO) -> int:
    """Run the demo (or, with ``serve``, keep the server up); return the exit code."""
    secret = secrets.token_bytes(32)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    store, store_name = make_store()
    app = build_app(secret, webhook_secret, store)
    paint = _painter(out)
    with DemoServer(app) as server:
        out.write(
            f"hmacguard demo: a Starlette app behind SignatureMiddleware at {server.url}\n"
            f"  key {KEY_ID!r} (generated), nonce store {store_name}, "
            f"body limit {MAX_BODY // 1024} KiB\n"
        )
        if serve:
            return _serve(server, secret, out)
        out.write("  sending the script with httpx...\n\n")
        rows = play(server.url, secret, webhook_secret)  # reads the rejection log itself
    render(rows, out)
    failed = [r for r in rows if not r.ok]
    out.write("\n")
    if failed:
        out.write(paint(f"{len(failed)} of {len(rows)} outcomes were not as expected", "red"))
        out.write("\n")
        return 1
    out.write(f"all {len(rows)} outcomes as expected: every tampered request was turned away\n")
    out.write(
        "a replay, a stale signature and a wrong key all answer invalid_signature (no oracle\n"
        "for an attacker, RFC 9421 section 8.3); the server's log names the precise reason\n"
    )
    out.write(
        "next: `hmacguard demo --serve` to try it with curl; "
        "`hmacguard verify --explain` to debug a signature\n"
    )
    return 0


def _serve(server: DemoServer, secret: bytes, out: TextIO) -> int:
    url = f"{server.url}/orders"
    body = b'{"sku": "A-1", "amount": 10}'
    headers = [("Content-Type", "application/json")]
    signed = Signer(HMACKey(KEY_ID, secret)).sign("POST", url, headers, body)
    secret_b64 = base64.b64encode(secret).decode("ascii")
    command = curl_command("POST", url, [*headers, *signed.items()], data=body)
    out.write(
        f"\nserving on {server.url} until Ctrl-C\n"
        f"  key id:  {KEY_ID}\n"
        f"  secret:  {secret_b64}\n"
        "           (a throw-away key generated for this run: never use it for anything real)\n"
        "\nA signed request (good once, for 5 minutes: a second send is a replay, told\n"
        "401 invalid_signature; each refusal's precise reason is logged to standard error):\n\n"
        f"{command}\n\n"
        "Sign more:\n\n"
        f"  export HMACGUARD_SECRET={secret_b64}\n"
        f"  hmacguard sign POST {url} -H 'Content-Type: application/json' "
        f'-d \'{{"sku": "B-2"}}\' --key-id {KEY_ID} --curl\n'
    )
    out.flush()
    try:
        with _sigterm_as_interrupt(), _rejections_to(sys.stderr):
            server.wait()
    except KeyboardInterrupt:
        out.write("\nstopping\n")
    return 0
