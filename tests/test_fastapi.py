"""hmacguard.fastapi: ``Signed`` and ``Delivery``, what the middleware verified as
FastAPI dependencies that run on the event loop.

Every request is real: signed by the client auths, sent through ``httpx.ASGITransport``
to a FastAPI app behind ``SignatureMiddleware``.
"""

# No "from __future__ import annotations": FastAPI reads a route's annotations at
# run time, and app_with() annotates with a local.
import threading
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, WebSocket
from starlette.requests import HTTPConnection

import hmacguard.fastapi
from hmacguard import HMACAuth, SignatureMiddleware, VerifiedSignature
from hmacguard.fastapi import Delivery, Signed
from hmacguard.starlette import NotVerified, verified_signature
from hmacguard.webhooks import StandardWebhooks, StandardWebhooksAuth
from test_starlette import SECRET, WEBHOOK_SECRET, client, handshake_key_id


def app_with(signed: Any = Signed) -> FastAPI:
    """Routes that take ``signed`` (``Signed`` unless given) and ``Delivery``."""
    app = FastAPI()

    @app.post("/orders")
    async def create_order(signature: signed) -> dict[str, str]:  # type: ignore[valid-type]
        return {"key_id": signature.key_id}

    @app.get("/health")
    async def health(signature: Signed) -> dict[str, str]:  # exempt: a setup mistake
        return {"key_id": signature.key_id}

    @app.post("/hooks/orders")
    async def hook(delivery: Delivery) -> dict[str, str]:
        return {"delivery": delivery.delivery_id or ""}

    app.add_middleware(
        SignatureMiddleware,
        keys={"client-1": SECRET},
        exempt=["/health"],
        webhooks={"/hooks": StandardWebhooks(WEBHOOK_SECRET)},
    )
    return app


async def test_signed_and_delivery_give_what_the_middleware_verified() -> None:
    """``Signed`` hands the route the verified signature, ``Delivery`` the verified
    delivery; an unsigned request never reaches the route, and an exempt path that
    asks for a signature raises NotVerified."""
    app = app_with()
    async with client(app, auth=HMACAuth("client-1", SECRET)) as signed:
        response = await signed.post("/orders", json={"item": "widget"})
    assert response.status_code == 200, response.text
    assert response.json() == {"key_id": "client-1"}
    async with client(app, auth=StandardWebhooksAuth(WEBHOOK_SECRET)) as sender:
        delivered = await sender.post("/hooks/orders", json={"type": "order.paid"})
    assert delivered.json()["delivery"].startswith("msg_")
    async with client(app) as unsigned:
        assert (await unsigned.post("/orders", json={"item": "widget"})).status_code == 401
        with pytest.raises(NotVerified, match="'/health'"):
            await unsigned.get("/health")


async def test_the_dependency_runs_on_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Signed`` reads the signature in the event loop's thread; the plain function
    as a dependency is run in FastAPI's thread pool, a thread hop per request."""
    threads: list[str] = []

    def recording(conn: HTTPConnection) -> VerifiedSignature:
        threads.append(threading.current_thread().name)
        return verified_signature(conn)

    monkeypatch.setattr(hmacguard.fastapi, "verified_signature", recording)
    plain = Annotated[VerifiedSignature, Depends(recording)]
    for signed in (Signed, plain):
        async with client(app_with(signed), auth=HMACAuth("client-1", SECRET)) as http:
            assert (await http.post("/orders", json={})).json() == {"key_id": "client-1"}
    loop_thread = threading.current_thread().name
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread


def test_a_websocket_route_gets_the_signature_of_its_handshake() -> None:
    """A WebSocket endpoint takes ``Signed`` too, from the verified handshake."""
    app = app_with()

    @app.websocket("/ws")
    async def handshake(websocket: WebSocket, signature: Signed) -> None:
        await websocket.accept()
        await websocket.send_json({"key_id": signature.key_id})
        await websocket.close()

    assert handshake_key_id(app) == {"key_id": "client-1"}
