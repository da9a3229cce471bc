"""hmacguard.requests.HMACAuth: signing prepared requests, round trips, redirects.

Requests go through a ``requests`` session whose transport adapter hands each prepared
request to an ASGI app in process (``ASGIAdapter``): the method, ``path_url`` as the
target, the headers plus the ``Host`` urllib3 would add, and the body bytes. The app is
``TwoOrigins`` from ``tests/test_client.py``: ``api.example`` behind the middleware
(with ``/go?code=...&to=...`` redirecting anywhere) and ``evil.example`` recording what
it receives. The same adapter over a real socket is in ``tests/test_client_uvicorn.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

import hmacguard
from asgi_helpers import KEYS, NOW, SECRET, call, logged_reasons
from hmacguard import HMACKey, Signer, Verifier
from hmacguard.requests import HMACAuth
from test_client import TwoOrigins, _run

BODY = b'{"item": "widget", "qty": 3}'
ORIGIN = "http://api.example"
NONCE = re.compile(r';nonce="([^"]+)"')


def make_auth(**options: Any) -> HMACAuth:
    """An HMACAuth for client-1 that signs at ``NOW``."""
    options.setdefault("clock", lambda: NOW)
    return HMACAuth("client-1", SECRET, **options)


def wire_host(url: str) -> str:
    """The Host header urllib3 sends for ``url``: host (less trailing dots), and the port
    unless the default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


class ASGIAdapter(BaseAdapter):
    """A requests transport that calls an ASGI app in process with what urllib3 would send.

    ``sent`` keeps, for every request, the method, URL and a copy of the headers and body.
    """

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app
        self.sent: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        assert body is None or isinstance(body, bytes), "the auth sends bytes"
        url = request.url or ""
        host = request.headers.get("Host") or wire_host(url)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
        self.sent.append(
            {"method": request.method, "url": url, "headers": dict(request.headers), "body": body}
        )
        exchange = asyncio.run(
            call(self.app, request.method or "", request.path_url, headers, body or b"", host=host)
        )
        response = requests.Response()
        response.status_code = exchange.status_code or 500
        response.headers = CaseInsensitiveDict(exchange.headers)
        response._content = exchange.body
        response.encoding = "utf-8"
        response.url = url
        response.request = request
        response.connection = self
        return response

    def close(self) -> None:
        """Nothing to release."""


def session_for(app: Any, auth: HMACAuth | None = None) -> tuple[requests.Session, ASGIAdapter]:
    """A session whose http:// requests go to ``app`` in process, signed by ``auth``."""
    session = requests.Session()
    adapter = ASGIAdapter(app)
    session.mount("http://", adapter)
    session.auth = auth
    return session, adapter


def nonce_of(headers: Any) -> str:
    """The nonce in a Signature-Input header."""
    found = NONCE.search(headers["Signature-Input"])
    assert found is not None
    return found[1]


# -- signing a prepared request ----------------------------------------------------------


def verify(prepared: requests.PreparedRequest, **policy: Any) -> hmacguard.VerifiedSignature:
    """Verify a prepared request as the server rebuilds it from the wire."""
    url = prepared.url or ""
    host = prepared.headers.get("Host") or wire_host(url)
    target = f"{urlsplit(url).scheme}://{host}{prepared.path_url}"
    headers = list(prepared.headers.items())
    body = prepared.body
    assert body is None or isinstance(body, bytes)
    return Verifier(KEYS, **policy).verify(prepared.method, target, headers, body, now=NOW)


def test_prepared_request_is_signed_over_method_target_host_and_body() -> None:
    """prepare() with the auth adds the three fields over the encoded URL, Host and body."""
    prepared = requests.Request(
        "POST",
        "http://API.Example:80/t/a b/café?q=a+b&x=é",
        json={"a": 1},
        auth=make_auth(nonce=lambda: "n-1"),
    ).prepare()
    assert prepared.headers["Signature-Input"] == (
        'sig1=("@method" "@authority" "@path" "@query" "content-type" "content-digest")'
        f';created={NOW};keyid="client-1";nonce="n-1"'
    )
    assert prepared.path_url == "/t/a%20b/caf%C3%A9?q=a+b&x=%C3%A9"
    assert verify(prepared).components[-1] == "content-digest"


def test_user_set_host_header_is_signed() -> None:
    """A Host header set by the caller is what urllib3 sends, so it is the signed authority."""
    prepared = requests.Request(
        "GET", "http://10.0.0.7:8080/t", headers={"Host": "api.internal"}, auth=make_auth()
    ).prepare()
    assert verify(prepared).key_id == "client-1"
    headers = [(k, v) for k, v in prepared.headers.items() if k != "Host"]
    with pytest.raises(hmacguard.VerificationError) as caught:
        Verifier(KEYS).verify("GET", "http://10.0.0.7:8080/t", headers, now=NOW)
    assert caught.value.reason == "invalid_signature"


def test_userinfo_in_the_url_is_not_part_of_the_authority() -> None:
    """user:pass@ in the URL is not sent in Host, so the signed authority leaves it out."""
    prepared = requests.Request("GET", "http://u:p@api.example/t", auth=make_auth()).prepare()
    assert verify(prepared).key_id == "client-1"


@pytest.mark.parametrize(
    ("url", "as_sent"),
    [
        ("http://api.example./t", "http://api.example/t"),
        ("http://API.Example.:8080/t?q=1", "http://api.example:8080/t?q=1"),
        ("http://u:p@api.example.:81/t", "http://api.example:81/t"),
        ("http://[::1]:8080/t", "http://[::1]:8080/t"),
    ],
)
def test_trailing_dot_host_is_signed_as_urllib3_sends_it(url: str, as_sent: str) -> None:
    """urllib3 sends Host without a host name's trailing dot, so that is the authority signed."""
    prepared = requests.Request("GET", url, auth=make_auth()).prepare()
    headers = list(prepared.headers.items())
    verified = Verifier(KEYS).verify("GET", as_sent, headers, now=NOW)
    assert verified.key_id == "client-1"


def test_trailing_dot_host_round_trip_through_the_middleware() -> None:
    """A request to http://api.example./t is accepted by the middleware behind that Host."""
    origins = TwoOrigins()
    session, _ = session_for(origins, make_auth())
    response = session.post("http://api.example./t/x", data=BODY)
    assert response.status_code == 200, response.text
    assert origins.echo.seen[-1]["raw_path"] == "/t/x"


@pytest.mark.parametrize(
    "secret_text",
    [
        base64.b64encode(b"\xfb\xef" * 16).decode(),
        base64.urlsafe_b64encode(b"\xfb\xef" * 16).decode().rstrip("="),
        "aHVudGVyMg",  # a weak secret, shorter than a key id could be
    ],
    ids=["base64", "urlsafe", "weak"],
)
def test_swapped_key_id_and_secret_never_show_the_secret(secret_text: str) -> None:
    """HMACAuth(secret, "client-1") is refused without the secret (given as the key id)
    in the message or the repr; a secret-length key id asks whether they were swapped."""
    with pytest.raises(ValueError, match="needs at least") as caught:
        HMACAuth(secret_text, "client-1")
    shown = str(caught.value) + repr(caught.value) + repr(caught.value.__context__)
    assert secret_text not in shown
    assert ("did you swap key_id and secret?" in shown) == (len(secret_text) >= 43)


def test_generator_body_is_read_once_and_sent_as_bytes_with_a_length() -> None:
    """A generator body is consumed once and replaced by its bytes, Content-Length framed."""
    pulls: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        for chunk in (b"one,", b"two,", b"three"):
            pulls.append(chunk)
            yield chunk

    prepared = requests.Request("PUT", ORIGIN + "/t", data=chunks(), auth=make_auth()).prepare()
    assert pulls == [b"one,", b"two,", b"three"]
    assert prepared.body == b"one,two,three"
    assert "Transfer-Encoding" not in prepared.headers
    assert prepared.headers["Content-Length"] == "13"
    assert verify(prepared).components[-1] == "content-digest"


@pytest.mark.parametrize(
    ("data", "sent"),
    [
        ("héllo wörld", "héllo wörld".encode()),
        (io.BytesIO(b"file body"), b"file body"),
        (io.StringIO("text file é"), "text file é".encode()),
        (bytearray(b"buffer"), b"buffer"),
        (iter(["str ", "chunks é"]), "str chunks é".encode()),
    ],
    ids=["str", "binary-file", "text-file", "bytearray", "str-iterator"],
)
def test_non_bytes_bodies_are_signed_as_urllib3_encodes_them(data: Any, sent: bytes) -> None:
    """str, file, buffer and str-chunk bodies become the bytes urllib3 would send (UTF-8)."""
    prepared = requests.Request("POST", ORIGIN + "/t", data=data, auth=make_auth()).prepare()
    assert prepared.body == sent
    assert prepared.headers["Content-Length"] == str(len(sent))
    assert verify(prepared).key_id == "client-1"


def test_calling_the_auth_again_replaces_the_signature() -> None:
    """Signing one prepared request twice leaves one signature, with a new nonce."""
    auth = make_auth()
    prepared = requests.Request("POST", ORIGIN + "/t", data=BODY, auth=auth).prepare()
    first = nonce_of(prepared.headers)
    auth(prepared)
    assert nonce_of(prepared.headers) != first
    assert verify(prepared).key_id == "client-1"
    guards = [
        hook for hook in prepared.hooks["response"] if type(hook).__name__ == "_RedirectGuard"
    ]
    assert len(guards) == 1


def test_repr_hides_the_secret_and_construction_rules_are_shared() -> None:
    """repr shows the key id only; a short key and two kinds of key material are refused."""
    assert repr(make_auth()) == "HMACAuth(key_id='client-1', follow_redirects=False)"
    with pytest.raises(ValueError, match="needs at least 32"):
        HMACAuth("client-1", b"short")
    with pytest.raises(TypeError, match="not both"):
        HMACAuth("client-1", SECRET, signer=Signer(HMACKey("client-1", SECRET)))
    assert HMACAuth(signer=make_auth().signer).signer.key.key_id == "client-1"


def test_used_with_httpx_it_names_the_httpx_auth() -> None:
    """httpx calls a callable auth with its own Request: the requests HMACAuth says which
    class to use instead of "'Request' object has no attribute 'hooks'"."""
    import httpx  # noqa: PLC0415  (the other client library)

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
        pytest.raises(TypeError, match=r"for httpx use hmacguard\.HMACAuth"),
    ):
        client.get("http://api.example/t", auth=make_auth())  # type: ignore[arg-type]
    assert sent == []
    assert isinstance(make_auth(), requests.auth.AuthBase)


def test_called_with_an_unprepared_request_it_says_what_it_signs() -> None:
    """Anything but a PreparedRequest is a TypeError naming what the auth expects."""
    with pytest.raises(TypeError, match=r"signs a requests\.PreparedRequest, not Request"):
        make_auth()(requests.Request("GET", "http://api.example/t"))  # type: ignore[arg-type]


def test_missing_requests_extra_names_the_pip_install() -> None:
    """Without requests, importing hmacguard.requests names the extra to install."""
    result = _run(
        """
        import sys
        sys.modules["requests"] = None
        import hmacguard
        try:
            import hmacguard.requests
        except ImportError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'HMACAuth needs requests: pip install "hmacguard[requests]"'


# -- round trips -----------------------------------------------------------------------------


def _files() -> dict[str, Any]:
    return {"upload": ("notes.txt", b"line one\nline two\n", "text/plain")}


BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "none": dict,
    "data-bytes": lambda: {"data": BODY},
    "data-str": lambda: {"data": "héllo"},
    "json": lambda: {"json": {"a": [1, "é"]}},
    "data-form": lambda: {"data": {"a": "1 2", "b": ["x", "y&z"]}},
    "files-multipart": lambda: {"files": _files(), "data": {"k": "v"}},
    "generator": lambda: {"data": (chunk for chunk in (b"a", b"bc", b""))},
    "file": lambda: {"data": io.BytesIO(BODY * 100)},
}


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def test_round_trip_every_method_and_body_kind(method: str, body: str) -> None:
    """Each method with each body kind is accepted, and the app gets the bytes sent."""
    origins = TwoOrigins()
    session, adapter = session_for(origins, make_auth())
    response = session.request(method, ORIGIN + "/t/a b?x=1&x=2", **BODIES[body]())
    assert response.status_code == 200, response.text
    seen = origins.echo.seen[-1]
    assert (seen["method"], seen["raw_path"], seen["query"]) == (method, "/t/a%20b", "x=1&x=2")
    assert seen["sha256"] == hashlib.sha256(adapter.sent[-1]["body"] or b"").hexdigest()


@pytest.mark.parametrize(
    ("url", "raw_path", "query"),
    [
        ("/t/café", "/t/caf%C3%A9", ""),
        ("/t/a%2Fb;c=d", "/t/a%2Fb;c=d", ""),
        ("/t?q=a+b&q=a%20b", "/t", "q=a+b&q=a%20b"),
        ("/t?", "/t", ""),
    ],
)
def test_threat_U1_U2_paths_and_queries_round_trip(url: str, raw_path: str, query: str) -> None:
    """Unicode, %2F, ';', '+' and an empty query verify as requests sends them."""
    origins = TwoOrigins()
    session, _ = session_for(origins, make_auth())
    response = session.post(ORIGIN + url, data=BODY)
    assert response.status_code == 200, response.text
    seen = origins.echo.seen[-1]
    assert (seen["raw_path"], seen["query"]) == (raw_path, query)


def test_two_requests_never_share_a_nonce_and_a_replay_is_rejected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twenty sends carry twenty nonces; re-sending one prepared request unchanged is replayed."""
    origins = TwoOrigins()
    session, adapter = session_for(origins, make_auth())
    responses = [session.post(ORIGIN + "/t", data=BODY) for _ in range(20)]
    assert [r.status_code for r in responses] == [200] * 20
    assert len({nonce_of(sent["headers"]) for sent in adapter.sent}) == 20
    replay = session.send(responses[0].request)  # send() does not run the auth again
    # Told invalid_signature, as for a bad MAC (THREATS K2); the log has the cause.
    assert (replay.status_code, replay.json()["reason"]) == (401, "invalid_signature")
    assert logged_reasons(caplog) == ["replayed"]
    assert origins.echo.count == 20


# -- redirects -----------------------------------------------------------------------------


def test_redirect_default_sends_every_hop_unsigned() -> None:
    """Default: requests follows, the hop goes out without the first request's signature."""
    origins = TwoOrigins()
    session, adapter = session_for(origins, make_auth())
    response = session.post(ORIGIN + "/go?to=/t/next", data=BODY)
    assert (response.status_code, response.json()["reason"]) == (401, "missing_signature")
    hop = adapter.sent[-1]["headers"]
    assert not {"Signature", "Signature-Input", "Content-Digest"} & set(hop)
    assert origins.echo.untouched()


def test_follow_redirects_re_signs_a_same_origin_307_with_its_body() -> None:
    """follow_redirects=True: the 307 hop to the same target with a slash added is signed
    afresh over the same body and accepted."""
    origins = TwoOrigins()
    session, adapter = session_for(origins, make_auth(follow_redirects=True))
    response = session.post(ORIGIN + "/t/dir?z=1", data=BODY)
    assert response.status_code == 200, response.text
    seen = origins.echo.seen[-1]
    assert (seen["method"], seen["raw_path"], seen["query"]) == ("POST", "/t/dir/", "z=1")
    assert seen["sha256"] == hashlib.sha256(BODY).hexdigest()
    first, hop = adapter.sent
    assert nonce_of(first["headers"]) != nonce_of(hop["headers"])
    assert [r.status_code for r in response.history] == [307]


def test_follow_redirects_re_signs_a_file_body_without_rewinding() -> None:
    """A file body, read once into bytes, is re-sent on a 307 without requests rewinding it."""
    origins = TwoOrigins()
    session, _ = session_for(origins, make_auth(follow_redirects=True))
    response = session.put(ORIGIN + "/t/dir", data=io.BytesIO(BODY))
    assert response.status_code == 200, response.text
    assert origins.echo.seen[-1]["sha256"] == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize("code", [307, 308])
def test_follow_redirects_never_re_signs_a_body_for_another_target(code: int) -> None:
    """A 307/308 to a target the (unauthenticated) redirect picked is not signed again:
    a POST /pay never becomes a signed POST /admin/...; the hop is refused unsigned."""
    origins = TwoOrigins()
    session, adapter = session_for(origins, make_auth(follow_redirects=True))
    target = "/t/admin/users/42?action=delete"
    response = session.post(ORIGIN + "/go", params={"to": target, "code": code}, data=BODY)
    assert (response.status_code, response.json()["reason"]) == (401, "missing_signature")
    assert "Signature" not in adapter.sent[-1]["headers"]
    assert origins.echo.untouched()


def test_follow_redirects_303_becomes_a_signed_get() -> None:
    """A 303 hop is a GET without body, signed without Content-Digest."""
    origins = TwoOrigins()
    session, adapter = session_for(origins, make_auth(follow_redirects=True))
    response = session.post(ORIGIN + "/go?code=303&to=/t/done", json={"a": 1})
    assert response.status_code == 200, response.text
    assert origins.echo.seen[-1]["method"] == "GET"
    assert "Content-Digest" not in adapter.sent[-1]["headers"]


@pytest.mark.parametrize("follow", [False, True])
def test_hop_to_another_origin_never_carries_the_signature(follow: bool) -> None:
    """A redirect to another origin is sent without any signature field, in both modes."""
    origins = TwoOrigins()
    session, _ = session_for(origins, make_auth(follow_redirects=follow))
    response = session.post(
        ORIGIN + "/go?to=http://evil.example/steal", data=BODY, headers={"X-Keep": "1"}
    )
    assert response.json() == {"evil": True}
    assert not origins.evil_saw_signature()
    assert origins.received[0]["x-keep"] == "1"


def test_follow_redirects_never_signs_after_the_chain_left_the_origin() -> None:
    """A foreign origin redirecting back to the API gets an unsigned hop, which is refused."""
    origins = TwoOrigins()
    session, _ = session_for(origins, make_auth(follow_redirects=True))
    back = "http://evil.example/back?to=http://api.example/t/admin"
    response = session.post(ORIGIN + "/go", params={"to": back}, data=BODY)
    assert (response.status_code, response.json()["reason"]) == (401, "missing_signature")
    assert origins.echo.untouched()


def test_manual_follow_sends_a_next_request_signed_for_the_hop() -> None:
    """allow_redirects=False with follow_redirects=True: response.next is signed and accepted."""
    origins = TwoOrigins()
    session, _ = session_for(origins, make_auth(follow_redirects=True))
    response = session.post(ORIGIN + "/t/dir", data=BODY, allow_redirects=False)
    assert response.status_code == 307
    assert response.next is not None
    assert "Signature" in response.next.headers
    followed = session.send(response.next, allow_redirects=False)
    assert followed.status_code == 200, followed.text
    assert json.loads(followed.content)["raw_path"] == "/t/dir/"


def test_manual_follow_without_follow_redirects_gets_an_unsigned_next() -> None:
    """allow_redirects=False by default: response.next carries no signature to misuse."""
    origins = TwoOrigins()
    session, _ = session_for(origins, make_auth())
    response = session.post(ORIGIN + "/go?to=/t/next", data=BODY, allow_redirects=False)
    assert response.next is not None
    assert "Signature" not in response.next.headers
