"""End to end through uvicorn: four webhook schemes and an RFC 9421 API on one app.

``tests/apps/webhooks_app.py`` runs under real uvicorn (httptools and uvloop)
on 127.0.0.1. Each delivery is signed by the provider's own library where one
exists (``standardwebhooks``, ``stripe``, ``slack_sdk``; GitHub's documented
HMAC otherwise), so these tests also prove interoperability over the wire.
Every path must accept its own scheme, refuse every other scheme's signature
(never a 200 for the wrong scheme, never a 500), acknowledge a redelivery
without reaching the app again, and leave the RFC 9421 API as it was.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import slack_sdk.signature
import standardwebhooks
import stripe

from apps.webhooks_app import (
    API_KEY_ID,
    API_SECRET,
    GITHUB_SECRET,
    SLACK_SECRET,
    STANDARD_SECRET,
    STRIPE_SECRET,
)
from hmacguard import HMACAuth
from uvicorn_server import UvicornServer

Signer = Callable[[bytes], dict[str, str]]


def standard(body: bytes) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    stamp = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
    signature = standardwebhooks.Webhook(STANDARD_SECRET).sign(msg_id, stamp, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}


def stripe_(body: bytes) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), STRIPE_SECRET, timestamp=int(time.time())
    )
    return {"stripe-signature": header}


def github(body: bytes) -> dict[str, str]:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"x-hub-signature-256": f"sha256={digest}", "x-github-delivery": str(uuid.uuid4())}


def slack(body: bytes) -> dict[str, str]:
    now = str(int(time.time()))
    signature = slack_sdk.signature.SignatureVerifier(SLACK_SECRET).generate_signature(
        timestamp=now, body=body
    )
    assert signature is not None
    return {"x-slack-request-timestamp": now, "x-slack-signature": signature}


SCHEMES: dict[str, tuple[str, Signer]] = {
    "standard-webhooks": ("/webhooks/standard", standard),
    "stripe": ("/webhooks/stripe", stripe_),
    "github": ("/webhooks/github", github),
    "slack": ("/webhooks/slack", slack),
}
BODY = json.dumps({"id": "evt_1", "type": "thing.happened", "data": {"n": 1}}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    with UvicornServer("tests.apps.webhooks_app:app", http="httptools") as running:
        yield running
        running.assert_no_server_errors()


def served(server: UvicornServer) -> int:
    return int(httpx.get(f"{server.url}/_stats").json()["count"])


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_each_path_accepts_its_own_scheme(server: UvicornServer, scheme: str) -> None:
    """A delivery signed by the provider's library reaches the app, verified by its profile."""
    path, sign = SCHEMES[scheme]
    response = httpx.post(f"{server.url}{path}", content=BODY, headers=sign(BODY))
    assert response.status_code == 200, response.text
    assert response.json()["scheme"] == scheme
    assert response.json()["sha256"] == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize(
    ("path_scheme", "signed_as"),
    [(a, b) for a in sorted(SCHEMES) for b in sorted(SCHEMES) if a != b],
)
def test_threat_W7_a_path_refuses_every_other_schemes_signature(
    server: UvicornServer, path_scheme: str, signed_as: str
) -> None:
    """A delivery signed for one provider is refused on another's path: 400/401, app untouched."""
    before = served(server)
    path, _ = SCHEMES[path_scheme]
    _, sign = SCHEMES[signed_as]
    response = httpx.post(f"{server.url}{path}", content=BODY, headers=sign(BODY))
    assert response.status_code in (400, 401), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert served(server) == before


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_a_redelivery_is_acknowledged_once(server: UvicornServer, scheme: str) -> None:
    """The same signed delivery sent twice: 200 both times, the app reached once."""
    path, sign = SCHEMES[scheme]
    headers = sign(BODY)
    before = served(server)
    first = httpx.post(f"{server.url}{path}", content=BODY, headers=headers)
    second = httpx.post(f"{server.url}{path}", content=BODY, headers=headers)
    assert first.status_code == 200
    assert (second.status_code, second.json()) == (200, {"status": "duplicate"})
    assert served(server) == before + 1


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_threat_W6_a_changed_body_is_refused(server: UvicornServer, scheme: str) -> None:
    """One byte of the body changed after signing: 401 invalid_signature, app untouched."""
    path, sign = SCHEMES[scheme]
    headers = sign(BODY)
    before = served(server)
    response = httpx.post(f"{server.url}{path}", content=BODY.replace(b"1", b"2"), headers=headers)
    assert (response.status_code, response.json()["reason"]) == (401, "invalid_signature")
    assert served(server) == before


def test_the_rfc9421_api_works_beside_the_webhook_paths(server: UvicornServer) -> None:
    """HMACAuth-signed API requests pass; webhook signatures do not open the API."""
    with httpx.Client(base_url=server.url, auth=HMACAuth(API_KEY_ID, API_SECRET)) as client:
        response = client.post("/api/orders?x=1", json={"n": 1})
    assert response.status_code == 200
    assert response.json()["scheme"] == "rfc9421"
    assert response.json()["key_id"] == API_KEY_ID
    for _, sign in SCHEMES.values():
        refused = httpx.post(f"{server.url}/api/orders", content=BODY, headers=sign(BODY))
        assert (refused.status_code, refused.json()["reason"]) == (401, "missing_signature")


def test_an_rfc9421_signature_does_not_open_a_webhook_path(server: UvicornServer) -> None:
    """A request signed for the API is refused on every webhook path."""
    with httpx.Client(base_url=server.url, auth=HMACAuth(API_KEY_ID, API_SECRET)) as client:
        for path, _ in SCHEMES.values():
            response = client.post(path, content=BODY)
            assert response.status_code in (400, 401), (path, response.text)


@pytest.mark.parametrize(
    "junk",
    [
        {"webhook-id": "msg_1", "webhook-timestamp": "1.7e9", "webhook-signature": "v1,"},
        {"stripe-signature": "t=1,t=2,v1=zz"},
        {"x-hub-signature-256": "sha256=", "x-github-delivery": "d"},
        {"x-slack-request-timestamp": "soon", "x-slack-signature": "v0="},
    ],
)
def test_malformed_headers_never_reach_the_app_or_crash_the_server(
    server: UvicornServer, junk: dict[str, str]
) -> None:
    """Malformed webhook headers on every path: 400 or 401, never 500, app untouched."""
    before = served(server)
    for path, _ in SCHEMES.values():
        response = httpx.post(f"{server.url}{path}", content=b"\xff\xfe not utf-8", headers=junk)
        assert response.status_code in (400, 401), (path, response.text)
    assert served(server) == before
