"""hmacguard.starlette: what the middleware verified, typed, in Starlette and FastAPI routes.

Every request is real: signed by the client auths, sent through ``httpx.ASGITransport``
to an app behind ``SignatureMiddleware``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hmacguard import HMACAuth, HMACKey, SignatureMiddleware, Signer, VerifiedSignature
from hmacguard.starlette import NotVerified, verified_signature, verified_webhook
from hmacguard.webhooks import StandardWebhooks, StandardWebhooksAuth, VerifiedWebhook

SECRET = b"s" * 32
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0" * 5
ORIGIN = "https://api.example"

Signed = Annotated[VerifiedSignature, Depends(verified_signature)]
Delivery = Annotated[VerifiedWebhook, Depends(verified_webhook)]


def fastapi_app() -> FastAPI:
    """A FastAPI app whose routes take what the middleware verified as dependencies."""
    app = FastAPI()

    @app.post("/orders")
    async def create_order(signature: Signed) -> dict[str, Any]:
        return {"key_id": signature.key_id, "components": list(signature.components)}

    @app.get("/health")
    async def health(signature: Signed) -> dict[str, str]:  # exempt: a setup mistake
        return {"key_id": signature.key_id}

    @app.post("/hooks/orders")
    async def hook(delivery: Delivery) -> dict[str, str]:
        return {"delivery": delivery.delivery_id or ""}

    @app.post("/hooks/misused")
    async def misused(signature: Signed) -> dict[str, str]:  # a webhook path
        return {"key_id": signature.key_id}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, signature: Signed) -> None:
        await websocket.accept()
        await websocket.send_json({"key_id": signature.key_id})
        await websocket.close()

    app.add_middleware(
        SignatureMiddleware,
        keys={"client-1": SECRET},
        exempt=["/health"],
        webhooks={"/hooks": StandardWebhooks(WEBHOOK_SECRET)},
    )
    return app


def client(app: Any, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN, **options)


async def test_a_fastapi_dependency_gives_the_verified_signature() -> None:
    """``Annotated[VerifiedSignature, Depends(verified_signature)]`` hands the route
    the signature the middleware verified; an unsigned request never reaches it."""
    app = fastapi_app()
    async with client(app, auth=HMACAuth("client-1", SECRET)) as signed:
        response = await signed.post("/orders", json={"item": "widget"})
    assert response.status_code == 200, response.text
    assert response.json()["key_id"] == "client-1"
    assert "content-digest" in response.json()["components"]
    async with client(app) as unsigned:
        assert (await unsigned.post("/orders", json={"item": "widget"})).status_code == 401


async def test_a_route_that_needs_a_signature_on_an_exempt_path_raises() -> None:
    """On an exempt path nothing was verified: the dependency raises NotVerified (a
    setup mistake, answered 500) instead of letting the route run as if it had been."""
    async with client(fastapi_app()) as unsigned:
        with pytest.raises(NotVerified, match=r"'/health'.*exempt"):
            await unsigned.get("/health")


async def test_a_webhook_dependency_gives_the_verified_delivery() -> None:
    """``verified_webhook`` on a webhook path gives the delivery; ``verified_signature``
    there raises, as no RFC 9421 signature was verified."""
    app = fastapi_app()
    async with client(app, auth=StandardWebhooksAuth(WEBHOOK_SECRET)) as sender:
        response = await sender.post("/hooks/orders", json={"type": "order.paid"})
        assert response.status_code == 200, response.text
        assert response.json()["delivery"].startswith("msg_")
        with pytest.raises(NotVerified, match="'/hooks/misused'"):
            await sender.post("/hooks/misused", json={"type": "order.paid"})


async def test_a_starlette_route_and_no_middleware() -> None:
    """In a plain Starlette route too; an app without the middleware raises NotVerified
    for both, naming the path."""

    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"key_id": verified_signature(request).key_id})

    async def hook(request: Request) -> JSONResponse:
        return JSONResponse({"delivery": verified_webhook(request).delivery_id})

    routes = [Route("/orders", orders, methods=["POST"]), Route("/hook", hook, methods=["POST"])]
    protected = SignatureMiddleware(Starlette(routes=routes), keys={"client-1": SECRET})
    async with client(protected, auth=HMACAuth("client-1", SECRET)) as signed:
        response = await signed.post("/orders", content=b"{}")
    assert response.json() == {"key_id": "client-1"}
    async with client(Starlette(routes=routes)) as bare:
        with pytest.raises(NotVerified, match="'/orders'"):
            await bare.post("/orders", content=b"{}")
        with pytest.raises(NotVerified, match="'/hook'"):
            await bare.post("/hook", content=b"{}")


def sharing_state(app: Any) -> Any:
    """``app`` served as hypercorn served it until pgjones/hypercorn#274: one ``state``
    dict for the requests of a connection, where ASGI gives each request a copy."""
    shared: dict[str, Any] = {}

    async def served(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["state"] = shared
        await app(scope, receive, send)

    return served


async def test_a_state_shared_between_requests_lends_no_signature() -> None:
    """On a server that shares ``scope["state"]`` between requests, a request the
    middleware did not verify does not find an earlier request's signature there:
    the dependency reads the request's own scope."""
    app = sharing_state(fastapi_app())
    async with client(app, auth=HMACAuth("client-1", SECRET)) as signed:
        assert (await signed.post("/orders", json={"item": "widget"})).status_code == 200
    async with client(app) as unsigned:
        with pytest.raises(NotVerified, match="'/health'"):
            await unsigned.get("/health")
    async with client(app, auth=StandardWebhooksAuth(WEBHOOK_SECRET)) as sender:
        assert (await sender.post("/hooks/orders", json={"type": "order.paid"})).status_code == 200
    async with client(app) as unsigned:
        with pytest.raises(NotVerified, match="'/health'"):
            await unsigned.get("/health")


async def test_requests_at_once_on_a_shared_state_each_get_their_own_signature() -> None:
    """Two signed requests in flight at once, sharing one ``state`` (two HTTP/2 streams
    of a connection): each route gets its own request's signature, whichever request
    the middleware verified last."""
    release = asyncio.Event()
    arrived: list[str] = []

    async def wait_for_both() -> None:
        arrived.append("one")
        if len(arrived) == 2:
            release.set()
        await release.wait()

    app = FastAPI()

    @app.post("/orders", dependencies=[Depends(wait_for_both)])
    async def create_order(signature: Signed) -> dict[str, str]:
        return {"key_id": signature.key_id}

    app.add_middleware(SignatureMiddleware, keys={"alice": SECRET, "mallory": b"m" * 32})
    shared = sharing_state(app)
    async with (
        client(shared, auth=HMACAuth("alice", SECRET)) as alice,
        client(shared, auth=HMACAuth("mallory", b"m" * 32)) as mallory,
    ):
        answers = await asyncio.gather(
            alice.post("/orders", json={"item": "a"}), mallory.post("/orders", json={"item": "m"})
        )
    assert [answer.json() for answer in answers] == [{"key_id": "alice"}, {"key_id": "mallory"}]


def handshake_key_id(app: Any) -> Any:
    """What ``app``'s ``/ws`` endpoint sends first, after a handshake signed by client-1."""
    pytest.importorskip("httpx2", reason="Starlette's TestClient runs on httpx2 (Python 3.11+)")
    from starlette.testclient import TestClient  # noqa: PLC0415  (after the skip)

    headers = {"upgrade": "websocket"}
    headers |= Signer(HMACKey("client-1", SECRET)).sign("GET", "http://testserver/ws", headers)
    with (
        TestClient(app) as test_client,
        test_client.websocket_connect("/ws", headers=headers) as websocket,
    ):
        return websocket.receive_json()


def test_a_websocket_route_gets_the_signature_of_its_handshake() -> None:
    """A WebSocket endpoint takes it too, from the verified handshake."""
    assert handshake_key_id(fastapi_app()) == {"key_id": "client-1"}


@pytest.mark.parametrize(
    ("module", "framework", "message"),
    [
        ("hmacguard.starlette", "starlette", "needs Starlette: pip install starlette"),
        ("hmacguard.fastapi", "fastapi", "needs FastAPI: pip install fastapi"),
    ],
)
def test_importing_it_without_its_framework_names_what_to_install(
    module: str, framework: str, message: str
) -> None:
    """Without Starlette (or FastAPI) the import fails with what to install;
    ``import hmacguard`` itself never loads either."""
    code = (
        "import sys\n"
        f"sys.modules[{framework!r}] = None\n"
        "import hmacguard\n"
        "try:\n"
        f"    import {module}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"{module} {message}"
