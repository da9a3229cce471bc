"""The clients against an independent RFC 9421 implementation, ``http-message-signatures``.

(a) A request signed by ``HMACAuth`` (httpx) or ``hmacguard.requests.HMACAuth``, captured
exactly as the client sends it, verifies with the peer's ``HTTPMessageVerifier``, body
digest included; with the same parameters both sign it byte for byte alike.
(b) The peer signs an httpx request (through a small ``httpx.Auth`` that calls the peer's
signer) and ``SignatureMiddleware`` accepts it end to end over ``httpx.ASGITransport``.

The peer reads ``created`` from its argument and checks it against the real clock, so the
tests sign at the fixed past time ``NOW`` and verify with ``max_age=None`` (as in
``tests/test_interop.py``, which pins the known divergences between the two libraries).
"""

from __future__ import annotations

import datetime
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)

from asgi_helpers import NOW, ORIGIN, SECRET, logged_reasons, protect
from hmacguard._httpx_auth import HMACAuth
from hmacguard.requests import HMACAuth as RequestsHMACAuth

KEY_ID = "client-1"
BODY = b'{"item": "widget", "qty": 3}'
COMPONENTS = ("@method", "@authority", "@path", "@query")


def _resolver() -> MappingKeyResolver:
    return MappingKeyResolver(public_keys={KEY_ID: SECRET}, private_keys={KEY_ID: SECRET})


class _Fields:
    """Header lines for the peer, repeated names kept in order (its headers protocol)."""

    def __init__(self, lines: Any = ()) -> None:
        self.lines: list[tuple[str, str]] = list(lines)

    def items(self) -> list[tuple[str, str]]:
        return list(self.lines)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self.lines))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self.lines)

    def __getitem__(self, name: str) -> str:
        return ", ".join(v for n, v in self.lines if n.lower() == name.lower())

    def __setitem__(self, name: str, value: str) -> None:
        self.__delitem__(name)
        self.lines.append((name, value))

    def __delitem__(self, name: str) -> None:
        self.lines = [(n, v) for n, v in self.lines if n.lower() != name.lower()]


@dataclass
class _PeerRequest:
    """The request interface the peer reads: ``method``, ``url``, ``headers``."""

    method: str
    url: str
    headers: _Fields


def as_peer(request: httpx.Request) -> _PeerRequest:
    """An httpx request as the peer sees it: its encoded URL and every header line sent."""
    lines = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers.raw]
    return _PeerRequest(request.method, str(request.url), _Fields(lines))


def captured(**send: Any) -> httpx.Request:
    """Send one request through HMACAuth and an httpx MockTransport; return it as sent."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    auth = HMACAuth(KEY_ID, SECRET, clock=lambda: NOW)
    with httpx.Client(transport=httpx.MockTransport(handler), base_url=ORIGIN, auth=auth) as c:
        c.request(**send)
    (request,) = seen
    return request


BODIES: dict[str, dict[str, Any]] = {
    "none": {},
    "content": {"content": BODY, "headers": {"content-type": "application/json"}},
    "json": {"json": {"a": [1, "é"]}},
    "data-form": {"data": {"a": "1 2", "b": "x&y"}},
    "files-multipart": {"files": {"f": ("a.txt", b"x" * 100, "text/plain")}},
    "generator": {"content": iter([b"one,", b"two"])},
}

TARGETS = ["/t", "/t/a b/café?q=a+b&q=c%20d", "/t/a%2Fb;v=1?", "/t?x=1&x=2&y="]


# -- (a) HMACAuth signs, the peer verifies -----------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("body", list(BODIES))
def test_interop_peer_verifies_an_httpx_request_signed_by_hmacauth(body: str, target: str) -> None:
    """The peer accepts HMACAuth's signature over the request httpx sent, digest included."""
    request = captured(method="POST", url=target, **BODIES[body])
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_resolver()
    )
    (result,) = verifier.verify(
        as_peer(request), max_age=None, require_components=COMPONENTS, body=request.content
    )
    assert result.parameters["keyid"] == KEY_ID
    assert result.covered_components['"@path"'] == request.url.raw_path.decode().split("?")[0]
    assert ('"content-digest"' in result.covered_components) == bool(request.content)
    assert result.body == (request.content or None)


def test_interop_peer_rejects_hmacauth_signature_after_a_body_change() -> None:
    """Control: the peer rejects the same request once one body byte changed."""
    request = captured(method="PUT", url="/t", content=BODY)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_resolver()
    )
    with pytest.raises(InvalidSignature, match="Content-Digest does not match"):
        verifier.verify(as_peer(request), max_age=None, body=BODY.replace(b"3", b"4"))


def test_interop_hmacauth_and_peer_sign_an_httpx_request_byte_for_byte_alike() -> None:
    """With the same label, parameters and components, both produce the same signature fields."""
    request = captured(method="POST", url="/t/a b?q=1", content=BODY)
    theirs = as_peer(request)
    del theirs.headers["signature"]
    del theirs.headers["signature-input"]
    del theirs.headers["content-digest"]
    HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_resolver()).sign(
        theirs,
        key_id=KEY_ID,
        created=datetime.datetime.fromtimestamp(NOW, tz=datetime.timezone.utc),
        nonce=_nonce(request),
        label="sig1",
        include_alg=False,
        covered_component_ids=COMPONENTS,
        body=BODY,
    )
    for name in ("signature-input", "signature", "content-digest"):
        assert theirs.headers[name] == request.headers[name], name


def _nonce(request: httpx.Request) -> str:
    return request.headers["signature-input"].split(';nonce="')[1].split('"')[0]


@pytest.mark.parametrize("body", ["none", "content", "json", "data-form", "files-multipart"])
def test_interop_peer_verifies_a_requests_request_signed_by_hmacauth(body: str) -> None:
    """The peer accepts hmacguard.requests.HMACAuth's signature on the prepared request."""
    send = dict(BODIES[body])
    if "content" in send:
        send["data"] = send.pop("content")
    auth = RequestsHMACAuth(KEY_ID, SECRET, clock=lambda: NOW)
    prepared = requests.Request("POST", ORIGIN + "/t/a b?x=1", auth=auth, **send).prepare()
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_resolver()
    )
    content = prepared.body or b""
    assert isinstance(content, bytes)
    (result,) = verifier.verify(prepared, max_age=None, require_components=COMPONENTS, body=content)
    assert result.covered_components['"@path"'] == "/t/a%20b"


# -- (b) the peer signs an httpx request, the middleware verifies ------------------------------


class PeerAuth(httpx.Auth):
    """An httpx auth that signs with the peer library: its label, its alg parameter."""

    requires_request_body = True

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self.signer = HTTPMessageSigner(
            signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_resolver()
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        message = as_peer(request)
        self.signer.sign(
            message,
            key_id=KEY_ID,
            created=datetime.datetime.fromtimestamp(NOW, tz=datetime.timezone.utc),
            nonce=self.nonce,
            covered_component_ids=COMPONENTS,
            body=request.content or None,
        )
        for name in ("Signature-Input", "Signature", "Content-Digest"):
            if name in message.headers:
                request.headers[name] = message.headers[name]
        yield request


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("body", [b for b in BODIES if b != "generator"])
async def test_interop_middleware_accepts_a_peer_signed_httpx_request(
    body: str, target: str
) -> None:
    """The peer's signature of an httpx request passes SignatureMiddleware end to end."""
    protected = protect()
    async with protected.client(auth=PeerAuth(nonce=f"peer-{body}")) as client:
        response = await client.post(target, **BODIES[body])
    assert response.status_code == 200, response.text
    assert response.request.headers["signature-input"].startswith("pyhms=")
    assert protected.echo.seen[-1]["key_id"] == KEY_ID


async def test_interop_middleware_rejects_a_replayed_peer_nonce(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two peer signatures with one nonce: the second request is a 401, logged as replayed."""
    protected = protect()
    async with protected.client(auth=PeerAuth(nonce="same")) as client:
        first = await client.post("/t", content=BODY)
        second = await client.post("/t/other", content=BODY)
    assert first.status_code == 200
    # Told invalid_signature, as for a bad MAC (THREATS K2); the log has the cause.
    assert (second.status_code, second.json()["reason"]) == (401, "invalid_signature")
    assert logged_reasons(caplog) == ["replayed"]
    assert protected.echo.count == 1
