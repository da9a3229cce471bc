# An internal JSON API that only accepts requests signed with HMAC (RFC 9421).
#
# What it shows:
#   * SignatureMiddleware in front of a Starlette app: every route is verified before
#     the app sees it, except the exempt GET /health.
#   * Keys from the environment, including a second key for rotation.
#   * request.state.signature: the verified key id, used by the routes.
#   * Replay protection in memory (one process) or in Redis (several workers).
#
# Environment:
#   HMACGUARD_SECRET        the shared secret, base64 (required); make one with
#                           `hmacguard keygen`, or without the CLI:
#     python -c "import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())"
#   HMACGUARD_KEY_ID        its key id (default client-1)
#   HMACGUARD_NEXT_KEY_ID   optional second key, for a rotation: the server accepts both
#   HMACGUARD_NEXT_SECRET
#   HMACGUARD_REDIS_URL     optional, e.g. redis://127.0.0.1:6379/0: share the nonce store
#                           between workers (pip install "hmacguard[redis]")
#   PORT                    the port for `python examples/internal_api.py` (default 8000)
#
# Run it (from the repository root):
#   pip install "hmacguard[httpx]" starlette uvicorn
#   export HMACGUARD_SECRET=$(hmacguard keygen)
#   python examples/internal_api.py
# then, in another shell with the same HMACGUARD_SECRET:
#   python examples/client.py
#   curl -i http://127.0.0.1:8000/health        # exempt: 200
#   curl -i http://127.0.0.1:8000/v1/items      # unsigned: 401 missing_signature
# With several workers and Redis, see examples/multi_worker.md:
#   uvicorn internal_api:app --app-dir examples --workers 4

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hmacguard import HMACKey, SignatureMiddleware, VerifiedSignature

if TYPE_CHECKING:
    from hmacguard import RedisNonceStore

HOW_TO_MAKE_A_SECRET = (
    "export HMACGUARD_SECRET=$(hmacguard keygen)  (or: python -c "
    '"import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())")'
)


def _env(name: str, default: str) -> str:
    """Environment variable ``name``, stripped; ``default`` when unset or empty."""
    return os.environ.get(name, "").strip() or default


def _secret(name: str) -> str:
    """The base64 secret in environment variable ``name``; exit with a how-to if unusable."""
    value = _env(name, "")
    if not value:
        sys.exit(f"{name} is not set: {HOW_TO_MAKE_A_SECRET.replace('HMACGUARD_SECRET', name)}")
    try:
        HMACKey("check", value)  # base64, at least 32 bytes; the error never quotes the secret
    except ValueError as exc:
        sys.exit(f"{name} is not a usable secret ({exc}): make one with {HOW_TO_MAKE_A_SECRET}")
    return value


def keys_from_env() -> dict[str, str]:
    """The key ids and secrets this server accepts: the current key, and the next one if set."""
    keys = {_env("HMACGUARD_KEY_ID", "client-1"): _secret("HMACGUARD_SECRET")}
    next_id = _env("HMACGUARD_NEXT_KEY_ID", "")
    if _env("HMACGUARD_NEXT_SECRET", ""):
        if not next_id or next_id in keys:
            sys.exit(
                "HMACGUARD_NEXT_SECRET is set: also set HMACGUARD_NEXT_KEY_ID to the new key's id, "
                "other than HMACGUARD_KEY_ID (e.g. export HMACGUARD_NEXT_KEY_ID=client-1-v2)"
            )
        keys[next_id] = _secret("HMACGUARD_NEXT_SECRET")
    elif next_id:
        sys.exit(f"HMACGUARD_NEXT_KEY_ID is set but HMACGUARD_NEXT_SECRET is not: {next_id!r}")
    return keys


def nonce_store_from_env() -> RedisNonceStore | None:
    """A RedisNonceStore when HMACGUARD_REDIS_URL is set; None keeps the in-memory default."""
    url = _env("HMACGUARD_REDIS_URL", "")
    if not url:
        return None
    from hmacguard import RedisNonceStore  # noqa: PLC0415  (needs the redis extra)

    # Building the store opens no connection: each worker connects on its first request.
    return RedisNonceStore(url)


class WorkerPID:
    """Add ``X-Worker-PID`` to every answer, rejections included.

    Only so that examples/multi_worker.md can show which process answered;
    leave it out of a real service.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pid = str(os.getpid())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_pid(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-worker-pid", self.pid)
            await send(message)

        await self.app(scope, receive, send_with_pid)


# Each worker keeps its own list: a real service would use a database.
ITEMS: dict[str, dict[str, Any]] = {}


def caller(request: Request) -> VerifiedSignature:
    """The signature the middleware verified for this request."""
    signature: VerifiedSignature = request.state.signature
    return signature


async def health(request: Request) -> JSONResponse:
    """Exempt from verification: load balancers call it unsigned."""
    return JSONResponse({"status": "ok"})


async def whoami(request: Request) -> JSONResponse:
    """Which key signed this request, and what the signature covered."""
    signature = caller(request)
    return JSONResponse(
        {
            "key_id": signature.key_id,
            "created": signature.created,
            "components": list(signature.components),
        }
    )


async def list_items(request: Request) -> JSONResponse:
    return JSONResponse({"items": list(ITEMS.values())})


async def create_item(request: Request) -> JSONResponse:
    payload = await request.json()  # the exact bytes whose Content-Digest was verified
    name = payload.get("name") if isinstance(payload, dict) else None
    if not isinstance(name, str) or not name:
        return JSONResponse({"error": 'send {"name": "..."}'}, status_code=422)
    item = {"id": uuid.uuid4().hex[:8], "name": name, "created_by": caller(request).key_id}
    ITEMS[item["id"]] = item
    return JSONResponse(item)


async def delete_item(request: Request) -> JSONResponse:
    item_id = request.path_params["item_id"]
    # Idempotent: with several workers the item may live in another worker's list.
    existed = ITEMS.pop(item_id, None) is not None
    return JSONResponse(
        {"deleted": item_id, "existed": existed, "deleted_by": caller(request).key_id}
    )


KEYS = keys_from_env()
STORE = nonce_store_from_env()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    if STORE is not None:
        await STORE.aclose()  # this worker's connection to Redis


app = Starlette(
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/v1/whoami", whoami, methods=["GET"]),
        Route("/v1/items", list_items, methods=["GET"]),
        Route("/v1/items", create_item, methods=["POST"]),
        Route("/v1/items/{item_id}", delete_item, methods=["DELETE"]),
    ],
    middleware=[
        Middleware(WorkerPID),  # the outermost: it sees the middleware's rejections too
        Middleware(SignatureMiddleware, keys=KEYS, nonce_store=STORE, exempt=["/health"]),
    ],
    lifespan=lifespan,
)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(_env("PORT", "8000")))
