"""HMACAuth and StandardWebhooksAuth with httpx2, httpx's successor, and Starlette's TestClient.

httpx2 takes as an auth class only a subclass of its own ``Auth``, and calls
anything else as a function; Starlette's ``TestClient`` uses httpx2 whenever it
is installed (``fastapi[standard]`` installs it). Before the auths derived from
both ``Auth`` classes, ``TestClient(app).get(..., auth=HMACAuth(...))`` raised
``TypeError: hmacguard.HMACAuth is the httpx auth; for requests use
hmacguard.requests.HMACAuth``. Every request here goes through the real
``SignatureMiddleware``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

if sys.version_info < (3, 11):  # pragma: no cover  (httpx2 2.16 needs Python 3.11)
    pytest.skip("httpx2 needs Python 3.11", allow_module_level=True)

import httpx2  # the dev extra installs it on 3.11+: these tests must not be skipped there

from asgi_helpers import NOW, ORIGIN, SECRET, protect
from hmacguard import HMACAuth
from hmacguard.webhooks import StandardWebhooks, StandardWebhooksAuth
from test_client import _run

BODY = b'{"item": "widget", "qty": 3}'


def _auth() -> HMACAuth:
    """client-1's auth, signing at the middleware's (fake) time."""
    return HMACAuth("client-1", SECRET, clock=lambda: NOW)


def test_the_auths_are_auth_classes_of_both_clients() -> None:
    """One object serves httpx and httpx2: each client takes it as its own Auth."""
    for auth in (_auth(), StandardWebhooksAuth("whsec_" + "c2VjcmV0" * 5)):
        assert isinstance(auth, httpx.Auth)
        assert isinstance(auth, httpx2.Auth)


async def test_httpx2_async_client_requests_verify_through_the_middleware() -> None:
    """httpx2.AsyncClient over ASGITransport: GET, JSON POST and a streamed body all 200."""
    protected = protect()

    async def chunks() -> AsyncIterator[bytes]:
        yield BODY[:5]
        yield BODY[5:]

    transport = httpx2.ASGITransport(app=protected.middleware)
    async with httpx2.AsyncClient(transport=transport, base_url=ORIGIN, auth=_auth()) as client:
        got = await client.get("/t/items?page=2")
        posted = await client.post("/t/orders", json={"item": "widget"})
        streamed = await client.post("/t/upload", content=chunks())
    assert [got.status_code, posted.status_code, streamed.status_code] == [200, 200, 200]
    assert streamed.json()["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert protected.echo.count == 3


def test_starlette_test_client_signs_with_hmac_auth() -> None:
    """The FastAPI way of testing: TestClient (httpx2 under it) with auth=HMACAuth.
    Each request verifies; an unsigned one is refused; a resend is signed afresh."""
    from starlette.testclient import TestClient  # noqa: PLC0415  (httpx2 chosen at import)

    protected = protect()
    with TestClient(protected.middleware, base_url=ORIGIN) as client:
        assert isinstance(client, httpx2.Client)
        auth = _auth()
        assert client.get("/t/items", auth=auth).status_code == 200
        assert client.post("/t/orders", content=BODY, auth=auth).status_code == 200
        assert client.post("/t/orders", content=BODY, auth=auth).status_code == 200  # new nonce
        assert client.get("/t/items").status_code == 401
    assert protected.echo.count == 3


def test_starlette_test_client_signs_a_streamed_body() -> None:
    """A generator body through TestClient: read once, signed, sent with its length."""
    from starlette.testclient import TestClient  # noqa: PLC0415

    def chunks() -> Iterator[bytes]:
        yield BODY[:7]
        yield BODY[7:]

    protected = protect()
    with TestClient(protected.middleware, base_url=ORIGIN) as client:
        response = client.post("/t/upload", content=chunks(), auth=_auth())
    assert response.status_code == 200
    assert response.json()["sha256"] == hashlib.sha256(BODY).hexdigest()


def test_standard_webhooks_auth_signs_for_httpx2() -> None:
    """StandardWebhooksAuth on an httpx2 client: the delivery verifies."""
    secret = "whsec_" + "c2VjcmV0" * 5
    sent: list[Any] = []

    def handler(request: Any) -> Any:
        sent.append(request)
        return httpx2.Response(204)

    with httpx2.Client(
        transport=httpx2.MockTransport(handler), auth=StandardWebhooksAuth(secret)
    ) as client:
        assert client.post("https://hooks.example/in", content=BODY).status_code == 204
    request = sent[0]
    verified = StandardWebhooks(secret).verify(request.headers, request.content)
    assert verified.delivery_id == request.headers["webhook-id"]


@pytest.mark.parametrize(("blocked", "used"), [("httpx2", "httpx"), ("httpx", "httpx2")])
def test_the_auths_work_with_either_client_alone(blocked: str, used: str) -> None:
    """With only one of the two installed (hmacguard[httpx], as the demo extra, or
    hmacguard[httpx2]), both auths import and sign for that client."""
    result = _run(
        f"""
        import sys
        sys.modules[{blocked!r}] = None
        import {used} as client_lib
        from hmacguard import HMACAuth, Verifier
        from hmacguard.webhooks import StandardWebhooks, StandardWebhooksAuth

        auth = HMACAuth("client-1", b"k" * 32)
        hook = StandardWebhooksAuth("whsec_" + "c2VjcmV0" * 5)
        assert isinstance(auth, client_lib.Auth) and isinstance(hook, client_lib.Auth)
        sent = []

        def handler(request):
            sent.append(request)
            return client_lib.Response(200)

        transport = client_lib.MockTransport(handler)
        with client_lib.Client(transport=transport, auth=auth) as client:
            client.post("https://api.example/orders", content=b'{{"a": 1}}')
        with client_lib.Client(transport=transport, auth=hook) as client:
            client.post("https://hooks.example/in", content=b"{{}}")
        request, delivery = sent
        url = "https://" + request.headers["host"] + request.url.raw_path.decode()
        verified = Verifier({{"client-1": b"k" * 32}}).verify(
            request.method, url, request.headers.raw, request.content
        )
        StandardWebhooks("whsec_" + "c2VjcmV0" * 5).verify(delivery.headers, delivery.content)
        print(type(auth).__mro__[2].__module__, verified.key_id, {blocked!r} in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hmacguard._httpx_base", "client-1", "True"]
