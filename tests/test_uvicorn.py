"""SignatureMiddleware behind a real uvicorn on 127.0.0.1: end to end, the replay race, raw sockets.

Every test runs against two servers, started once for the module
(``tests/uvicorn_server.py``) with the echo app of ``tests/apps/echo_app.py``
(``max_body_size`` raised to 16 MiB): ``--http h11 --loop asyncio`` and ``--http
httptools --loop uvloop``. Requests go over real sockets, with httpx or with
hand-written bytes when the case is about HTTP framing. After each test the
server's log must show no 500 and no "Exception in ASGI application".

What each server does with the raw-socket cases (uvicorn 0.54, h11 0.16,
httptools 0.9), as these tests found it:

==========================  ================================  =================================
case                        h11                               httptools
==========================  ================================  =================================
C5 obs-fold                 unfolds to ``a b``: 200           400 from the parser
C4(b) covered line split    400 ``malformed_request`` (ours)  the same
C4(e) two Host lines        400 from the parser               400 ``malformed_request`` (ours)
C3 ``@method:`` line        400 from the parser               400 from the parser
B3 CL + TE                  TE wins: 200, same digest         400 from the parser
B9 bad MAC, 100 MB          401, no ``100 Continue``          the same
B7 disconnect mid-body      no response, nonce unused         the same
B8 stalled body             408 after ``body_timeout``        the same
M4 signature in a trailer   400 ``malformed_request``         the same (see below)
C9 trailer after headers    dropped by h11                    400 ``malformed_request``
SP/HTAB after a value       stripped: 200                     kept in the value; read without
                                                              it (RFC 9110 §5.5): 200
absolute-form target        URI in ``raw_path``: 400 (ours;    path only: 200 (``@authority``
                            Starlette alone answers 404)      from ``Host``, as the app's)
==========================  ================================  =================================

uvicorn has no timeout for a request body (``--timeout-keep-alive`` only runs
between requests); the middleware's ``body_timeout`` answers 408 instead.

Trailers: uvicorn's httptools protocol hands the app the
very list it appends parsed header fields to (``scope["headers"] is
self.headers``), and llhttp reports request *trailer* fields through the same
``on_header`` callback. Trailer fields therefore join ``scope["headers"]``:
when they arrive with the body, before the request's task runs, the
middleware would verify a signature sent only as a trailer (M4); when they
arrive after the header phase, the app would see fields that were never
verified (C9). The middleware therefore refuses requests that announce
trailers, and requests whose header list grows while the body is read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.util
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from asgi_helpers import logged_reasons
from hmacguard import HMACKey, Signer
from uvicorn_server import UvicornServer, close_connections

KEY_ID = "client-1"
SECRET = b"uvicorn-end-to-end-secret-32byte"
MAX_BODY = 16 * 1024 * 1024
BODY_TIMEOUT = 2.0  # seconds; the B8 test waits for it
APP = "tests.apps.echo_app:app"
STATS = "/_stats"
JSON = "application/json"
TIMEOUT = 10.0

KEY = HMACKey(KEY_ID, SECRET)
SIGNER = Signer(KEY)


# -- the servers ----------------------------------------------------------------


@pytest.fixture(scope="module", params=["h11", "httptools"])
def server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    """A uvicorn server running the echo app, once with h11 and once with httptools."""
    if request.param == "httptools":
        for module in ("httptools", "uvloop"):
            if importlib.util.find_spec(module) is None:
                pytest.fail(f"{module} is not installed: pip install 'uvicorn[standard]'")
    env = {
        "HMACGUARD_TEST_KEY_ID": KEY_ID,
        "HMACGUARD_TEST_SECRET": SECRET.hex(),
        "HMACGUARD_TEST_MAX_BODY": str(MAX_BODY),
        "HMACGUARD_TEST_NONCE_STORE": "memory",
        "HMACGUARD_TEST_BODY_TIMEOUT": str(BODY_TIMEOUT),
    }
    with UvicornServer(APP, http=request.param, env=env) as running:
        assert "Uvicorn running on" in running.log()  # the log the tests inspect is captured
        yield running


@pytest.fixture(autouse=True)
def no_server_errors(server: UvicornServer) -> Iterator[None]:
    """Fail the test if the server logged a 500 or an unhandled exception meanwhile."""
    start = server.log_size()
    yield
    server.assert_no_server_errors(since=start)


# -- signing and raw HTTP ---------------------------------------------------------


def signed_headers(
    server: UvicornServer,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    headers: Sequence[tuple[str, str]] = (),
    signer: Signer = SIGNER,
) -> list[tuple[str, str]]:
    """``Host``, the given headers, ``Content-Length`` if there is a body, and the signature fields.

    Signed now, with a fresh nonce.
    """
    fields = [("Host", server.authority), *headers]
    if body:
        fields.append(("Content-Length", str(len(body))))
    signed = signer.sign(
        method, server.url + target, [(n.lower(), v) for n, v in fields], body or None
    )
    return fields + list(signed.items())


def without(headers: Sequence[tuple[str, str]], *names: str) -> list[tuple[str, str]]:
    """``headers`` without the fields called ``names``."""
    return [(n, v) for n, v in headers if n not in names]


def raw_request(
    method: str, target: str, headers: Sequence[tuple[str, str | bytes]], body: bytes = b""
) -> bytes:
    """An HTTP/1.1 request written out byte for byte (no header is added)."""
    lines = [f"{method} {target} HTTP/1.1".encode("ascii")]
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode("ascii") + b": " + raw)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    """A chunked body, each chunk as given, ending with ``trailer`` (field lines with CRLF)."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks if chunk)
    return out + b"0\r\n" + trailer + b"\r\n"


@dataclass
class RawResponse:
    """One parsed response, and the interim (1xx) responses before it."""

    status: int
    headers: dict[str, str]
    body: bytes
    interim: list[int] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        """The problem document's ``reason``, or None for a response of another type."""
        if self.headers.get("content-type") != "application/problem+json":
            return None
        reason: str = self.json()["reason"]
        return reason


_STATUS = re.compile(rb"HTTP/1\.1 (\d{3})")


def read_response(sock: socket.socket, timeout: float = TIMEOUT) -> RawResponse:
    """Read one response (after any 1xx) from ``sock``; the body is Content-Length framed."""
    sock.settimeout(timeout)
    buffer = b""
    interim: list[int] = []
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before a full response: {buffer!r}")
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        match = _STATUS.match(status_line)
        assert match is not None, status_line
        status = int(match.group(1))
        if 100 <= status < 200:
            interim.append(status)
            continue
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        length = int(headers.get("content-length", "0"))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        return RawResponse(status, headers, buffer[:length], interim)


def read_interim(sock: socket.socket, timeout: float = TIMEOUT) -> bytes:
    """Read until the end of one response head: e.g. ``HTTP/1.1 100 Continue``."""
    sock.settimeout(timeout)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(1)
        if not chunk:
            break
        buffer += chunk
    return buffer


def connect(server: UvicornServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)


def closed_by_server(sock: socket.socket, within: float = 5.0) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (bytes it
    sends first are read and dropped); False if the connection stays open."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def exchange(server: UvicornServer, data: bytes) -> RawResponse:
    """Send ``data`` on a new connection and read the response."""
    with connect(server) as sock:
        sock.sendall(data)
        return read_response(sock)


def served(server: UvicornServer) -> int:
    """How many requests reached the app so far (the exempt stats route)."""
    with httpx.Client(trust_env=False, timeout=TIMEOUT) as client:
        count: int = client.get(server.url + STATS).json()["count"]
        return count


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def order(size: int = 64) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    head = b'{"customer":42,"note":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


# -- end to end with httpx --------------------------------------------------------


def post(
    server: UvicornServer, target: str, headers: Sequence[tuple[str, str]], body: bytes
) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=TIMEOUT) as client:
        return client.post(server.url + target, headers=list(headers), content=body)


def test_end_to_end_signed_request_is_echoed(server: UvicornServer) -> None:
    """A signed POST through uvicorn reaches the app, which sees its method, target and body."""
    body = order()
    target = "/v1/orders?customer=42&expand=items"
    headers = signed_headers(server, "POST", target, body, headers=[("Content-Type", JSON)])
    before = served(server)
    response = post(server, target, headers, body)
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["raw_path"] == "/v1/orders"
    assert echo["query"] == "customer=42&expand=items"
    assert echo["sha256"] == sha256(body)
    assert echo["key_id"] == KEY_ID
    assert echo["count"] == before + 1


def test_threat_R1_same_bytes_twice_rejected_as_replayed(server: UvicornServer) -> None:
    """The byte-identical request sent again is refused, logged as replayed; the app is not run."""
    body = order()
    headers = signed_headers(server, "POST", "/orders", body, headers=[("Content-Type", JSON)])
    assert post(server, "/orders", headers, body).status_code == 200
    before = served(server)
    since = server.log_size()
    again = post(server, "/orders", headers, body)
    assert again.status_code == 401
    # Told like a bad MAC (THREATS K2); the middleware's WARNING in the server log says why.
    assert again.json()["reason"] == "invalid_signature"
    assert logged_reasons(server.log()[since:]) == ["replayed"]
    assert served(server) == before


def test_threat_B1_tampered_body_rejected_as_digest_mismatch(server: UvicornServer) -> None:
    """One body byte changed after signing gives 401 digest_mismatch and the app is not called."""
    body = order()
    headers = signed_headers(server, "POST", "/orders", body, headers=[("Content-Type", JSON)])
    tampered = body.replace(b"42", b"43")
    before = served(server)
    response = post(server, "/orders", headers, tampered)
    assert response.status_code == 401
    assert response.json()["reason"] == "digest_mismatch"
    assert served(server) == before


def test_threat_D4_unsigned_request_rejected(server: UvicornServer) -> None:
    """A request without signature fields gets 401 missing_signature with WWW-Authenticate."""
    before = served(server)
    response = post(server, "/orders", [("Content-Type", JSON)], order())
    assert response.status_code == 401
    assert response.json()["reason"] == "missing_signature"
    assert response.headers["www-authenticate"] == 'Signature realm="hmacguard"'
    assert served(server) == before


def test_threat_B4_ten_mib_body_under_a_raised_limit_is_accepted(server: UvicornServer) -> None:
    """A 10 MiB body under a 16 MiB max_body_size is accepted and the app reads every byte."""
    body = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    headers = signed_headers(
        server, "PUT", "/blobs/1", body, headers=[("Content-Type", "application/octet-stream")]
    )
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        response = client.put(server.url + "/blobs/1", headers=headers, content=body)
    assert response.status_code == 200
    assert response.json()["length"] == len(body)
    assert response.json()["sha256"] == sha256(body)


def test_threat_B4_content_length_ten_gigabytes_rejected_at_once(server: UvicornServer) -> None:
    """Content-Length 10,000,000,000 on a signed request gets 413 before any body is sent."""
    body = order()
    headers = signed_headers(server, "POST", "/orders", body, headers=[("Content-Type", JSON)])
    headers = without(headers, "Content-Length")
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(raw_request("POST", "/orders", [*headers, ("Content-Length", "10000000000")]))
        response = read_response(sock)
        assert response.status == 413
        assert response.reason == "body_too_large"
        assert time.monotonic() - started < 2.0
        # Connection: close, and closed: the server does not read 10 GB to drop them.
        assert response.headers["connection"] == "close"
        assert closed_by_server(sock)


# -- the race (issue 3, THREATS R5) ----------------------------------------------------

ROUNDS = 50
COPIES = 100


async def read_async_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one Content-Length framed response: (status, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert match is not None, head
    return int(head[9:12]), await reader.readexactly(int(match.group(1)))


@pytest.mark.parametrize(
    "rounds", [ROUNDS, pytest.param(1000, marks=pytest.mark.slow, id="1000 rounds")]
)
async def test_threat_R5_hundred_concurrent_copies_one_accepted_per_round(
    server: UvicornServer, rounds: int
) -> None:
    """100 identical signed requests at once on 100 connections, 50 rounds (1,000, as
    THREATS R5 asks, with -m slow): one 2xx per round.

    The copies are written back to back on 100 connections opened beforehand, so
    they reach the server within a millisecond or so (an httpx client spends
    about 2 ms of CPU per request, which would spread a round over 200 ms). Each
    round opens its own: a refusal of a request with a body closes its
    connection.
    """
    body = order(1024)
    before = served(server)
    since = server.log_size()
    for _ in range(rounds):
        connections = [
            await asyncio.open_connection("127.0.0.1", server.port) for _ in range(COPIES)
        ]
        try:
            headers = signed_headers(
                server, "POST", "/race", body, headers=[("Content-Type", JSON)]
            )
            request = raw_request("POST", "/race", headers, body)
            for _, writer in connections:
                writer.write(request)
            responses = await asyncio.wait_for(
                asyncio.gather(*(read_async_response(reader) for reader, _ in connections)),
                TIMEOUT,
            )
            statuses = Counter(status for status, _ in responses)
            assert statuses == {200: 1, 401: COPIES - 1}
            reasons = Counter(
                json.loads(data)["reason"] for status, data in responses if status == 401
            )
            assert reasons == {"invalid_signature": COPIES - 1}  # told like a bad MAC (K2)
        finally:
            await close_connections(connections)
    assert served(server) - before == rounds
    # The server logged every refused copy as a replay: nothing else went wrong.
    assert Counter(logged_reasons(server.log()[since:])) == {"replayed": rounds * (COPIES - 1)}


# -- raw sockets: framing and parsing as each server does it -------------------------


def test_threat_C5_obs_fold_in_covered_header_gives_2xx_or_400(server: UvicornServer) -> None:
    """A covered header folded (obs-fold) gets 2xx with the value unfolded, or 400; never 500."""
    signer = Signer(KEY, components=["@method", "@authority", "@path", "@query", "x-f"])
    headers = signed_headers(server, "GET", "/fold", headers=[("X-F", "a b")], signer=signer)
    folded = [(n, "a\r\n  b") if n == "X-F" else (n, v) for n, v in headers]
    response = exchange(server, raw_request("GET", "/fold", folded))
    assert response.status in (200, 400)
    if response.status == 200:
        seen = [v for n, v in response.json()["headers"] if n == "x-f"]
        assert seen == ["a b"]  # the value verified is the value the app sees, without LF
    if server.http == "h11":
        assert response.status == 200  # h11 unfolds with one SP (RFC 9112 §5.2)
    else:
        assert response.status == 400  # llhttp refuses obs-fold


def test_threat_C4e_two_host_lines_rejected_400(server: UvicornServer) -> None:
    """A request with two Host lines gets 400, from the server's parser or from the middleware."""
    headers = signed_headers(server, "GET", "/hosts")
    doubled = [("Host", server.authority), *headers]
    before = served(server)
    response = exchange(server, raw_request("GET", "/hosts", doubled))
    assert response.status == 400
    assert response.reason in (None, "malformed_request")  # None: the parser's plain-text 400
    assert served(server) == before


@pytest.mark.parametrize(
    ("signed", "sent"),
    [
        ("/frag?amount=10", "/frag?amount=10#&amount=999&admin=1"),
        ("/frag", "/frag?#&to=mallory"),
        ("/frag/bob", "/frag/bob#x?admin=1"),
    ],
)
def test_threat_U2_a_fragment_in_the_target_never_reaches_the_app_unsigned(
    server: UvicornServer, signed: str, sent: str
) -> None:
    """A "#" in the request target: h11 splits the target at "?" only, so the "#..." stays in
    the path or query the app reads; the URL checked must never drop it. 400 (ours) or the
    parser's answer without the "#" part, never the unsigned part reaching the app."""
    headers = signed_headers(server, "GET", signed)
    before = served(server)
    response = exchange(server, raw_request("GET", sent, headers))
    if response.status == 200:  # httptools drops the fragment itself: the app sees `signed`
        echoed = response.json()
        target = echoed["raw_path"] + ("?" + echoed["query"] if echoed["query"] else "")
        assert target == signed
    else:
        assert response.status == 400
        assert response.reason in (None, "malformed_request")
        assert served(server) == before
    if server.http == "h11":
        assert response.reason == "malformed_request"


@pytest.mark.parametrize(
    ("signed", "sent", "host"),
    [
        ("/", "/admin?x=1", "{authority}#"),
        ("/users/admin", "/admin", "{authority}/users"),
        ("/?/admin", "/admin", "{authority}?"),
        ("/", "/", "evil.example@{authority}"),
        ("/", "/", ""),
    ],
)
def test_threat_U4_a_host_that_is_not_host_port_is_a_400(
    server: UvicornServer, signed: str, sent: str, host: str
) -> None:
    """A "#", "/", "?" or "@" in Host would move part of it into the URL's fragment, path,
    query or userinfo when the signature is checked; such a Host (or an empty one) is a
    400, on both servers, and the app is not reached."""
    headers = without(signed_headers(server, "GET", signed), "Host")
    before = served(server)
    forged = [("Host", host.format(authority=server.authority)), *headers]
    response = exchange(server, raw_request("GET", sent, forged))
    assert response.status == 400
    assert response.reason in (None, "malformed_request")
    assert served(server) == before


def test_threat_C4b_a_covered_value_split_over_two_lines_is_a_400(server: UvicornServer) -> None:
    """Signed "X-Role: viewer, admin" sent as two lines verifies as the joined value, but
    the app would read "viewer" alone: 400 on both servers, the app not reached."""
    signer = Signer(KEY, components=["@method", "@authority", "@path", "@query", "x-role"])
    headers = signed_headers(
        server, "GET", "/roles", headers=[("X-Role", "viewer, admin")], signer=signer
    )
    split = [*without(headers, "X-Role"), ("X-Role", "viewer"), ("X-Role", "admin")]
    before = served(server)
    response = exchange(server, raw_request("GET", "/roles", split))
    assert (response.status, response.reason) == (400, "malformed_request")
    assert served(server) == before


def test_threat_C3_header_named_at_method_never_overrides_the_method(
    server: UvicornServer,
) -> None:
    """A header line ``@method: DELETE`` gets 400, or the real method is the one verified."""
    headers = signed_headers(server, "POST", "/items/1", headers=[("Content-Length", "0")])
    injected = [*headers, ("@method", "DELETE")]
    response = exchange(server, raw_request("POST", "/items/1", injected))
    assert response.status == 400 or (
        response.status == 200 and response.json()["method"] == "POST"
    )
    # The same line cannot make a request signed as DELETE pass as a POST.
    forged = signed_headers(server, "DELETE", "/items/1", headers=[("Content-Length", "0")])
    response = exchange(server, raw_request("POST", "/items/1", [*forged, ("@method", "DELETE")]))
    assert response.status in (400, 401)


def test_threat_B3_content_length_and_chunked_never_split_verified_from_consumed(
    server: UvicornServer,
) -> None:
    """CL and TE together get 400 from both servers (RFC 9112 §6.3), and never reach the app."""
    body = b'{"customer":42,"items":[1,2,3]}'
    headers = signed_headers(server, "POST", "/smuggle", body, headers=[("Content-Type", JSON)])
    # A Content-Length shorter than the chunked body: a server framing by CL
    # would see a different body, and the rest as a second request.
    framed = [
        *without(headers, "Content-Length"),
        ("Content-Length", "5"),
        ("Transfer-Encoding", "chunked"),
    ]
    # Behind the chunked body, a second request, validly signed: h11 frames by
    # Transfer-Encoding, so on a connection kept open it would be served (RFC
    # 9112 §6.1: the server MUST close the connection after such a request).
    smuggled = raw_request("GET", "/smuggled", signed_headers(server, "GET", "/smuggled"))
    before = served(server)
    with connect(server) as sock:
        sock.sendall(
            raw_request("POST", "/smuggle", framed, chunked(body[:10], body[10:])) + smuggled
        )
        response = read_response(sock)
        # llhttp refuses CL + TE itself; h11 frames by Transfer-Encoding and passes
        # both headers on, and the middleware refuses them, closing the connection.
        assert response.status == 400
        if server.http == "h11":
            assert response.json()["reason"] == "malformed_request"
            assert response.headers["connection"] == "close"
        assert closed_by_server(sock)
    assert served(server) == before  # neither the POST nor the smuggled GET


def test_threat_B9_bad_mac_on_100_mb_body_rejected_before_the_body(server: UvicornServer) -> None:
    """A bad MAC announcing 100 MB gets 401 before any body byte is sent, with no 100 Continue."""
    body = order()
    headers = signed_headers(server, "POST", "/upload", body, headers=[("Content-Type", JSON)])
    bad = [
        (n, "sig1=:" + base64.b64encode(bytes(32)).decode() + ":") if n == "Signature" else (n, v)
        for n, v in without(headers, "Content-Length")
    ]
    request = raw_request(
        "POST",
        "/upload",
        [*bad, ("Content-Length", str(100_000_000)), ("Expect", "100-continue")],
    )
    with connect(server) as sock:
        sock.sendall(request)  # the head only: not one byte of the body
        response = read_response(sock)
        # The body will not be read: the answer says so, and the connection closes,
        # so a client that then skips the body cannot have its next request taken
        # for it (RFC 9110 §10.1.1).
        assert response.headers["connection"] == "close"
        assert closed_by_server(sock)
    assert response.interim == []  # no 100 Continue: the server never asked for the body
    assert response.status == 401
    assert response.reason == "invalid_signature"


def test_threat_B8_a_refused_client_cannot_hold_its_connection_by_trickling(
    server: UvicornServer,
) -> None:
    """An unsigned POST announcing a body gets 401 before the body; a byte sent after it,
    then silence, does not keep the connection open: the server has closed it."""
    request = raw_request("POST", "/held", [("Host", server.authority), ("Content-Length", "100")])
    with connect(server) as sock:
        sock.sendall(request)
        response = read_response(sock)
        assert (response.status, response.reason) == (401, "missing_signature")
        assert response.headers["connection"] == "close"
        with contextlib.suppress(OSError):  # closed already
            sock.sendall(b"x")
        assert closed_by_server(sock, within=5.0)


def test_threat_B7_disconnect_mid_body_leaves_nonce_unused(server: UvicornServer) -> None:
    """A client leaving mid-body reaches no app and burns no nonce: a resend then gets 2xx."""
    body = order(10_000)
    headers = signed_headers(server, "POST", "/half", body, headers=[("Content-Type", JSON)])
    before = served(server)
    with connect(server) as sock:
        sock.sendall(raw_request("POST", "/half", [*headers, ("Expect", "100-continue")]))
        # 100 Continue: the headers verified and the middleware is reading the body.
        assert read_interim(sock).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body[: len(body) // 2])
    response = exchange(server, raw_request("POST", "/half", headers, body))
    assert response.status == 200
    assert response.json()["sha256"] == sha256(body)
    assert served(server) == before + 1


def test_threat_B8_slow_bodies_do_not_delay_a_normal_request(server: UvicornServer) -> None:
    """20 clients stalled mid-body do not delay a normal signed request (loose bound: < 2 s)."""
    slow_body = order(1000)
    sockets: list[socket.socket] = []
    try:
        for i in range(20):
            headers = signed_headers(
                server, "POST", f"/slow/{i}", slow_body, headers=[("Content-Type", JSON)]
            )
            sock = connect(server)
            sockets.append(sock)
            sock.sendall(raw_request("POST", f"/slow/{i}", [*headers, ("Expect", "100-continue")]))
            assert read_interim(sock).startswith(b"HTTP/1.1 100 ")
            sock.sendall(slow_body[:1])  # one byte, then nothing: uvicorn has no body timeout
        before = served(server)
        body = order()
        headers = signed_headers(server, "POST", "/fast", body, headers=[("Content-Type", JSON)])
        started = time.monotonic()
        response = post(server, "/fast", headers, body)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert elapsed < 2.0
        assert served(server) == before + 1  # the stalled requests never reached the app
    finally:
        for sock in sockets:
            sock.close()


def test_threat_B8_stalled_body_is_cut_off_with_408(server: UvicornServer) -> None:
    """A client that stops sending its body gets 408 body_timeout; the app is not called."""
    body = order(1000)
    headers = signed_headers(server, "POST", "/stalled", body, headers=[("Content-Type", JSON)])
    before = served(server)
    with connect(server) as sock:
        sock.sendall(raw_request("POST", "/stalled", headers) + body[:10])
        started = time.monotonic()
        response = read_response(sock, timeout=BODY_TIMEOUT + 5)
        waited = time.monotonic() - started
        # Closed after the 408, even if the client goes on trickling: uvicorn
        # would otherwise keep reading what it sends, with no timeout.
        assert response.headers["connection"] == "close"
        sock.sendall(body[10:11])
        assert closed_by_server(sock)
    assert (response.status, response.reason) == (408, "body_timeout")
    assert BODY_TIMEOUT - 0.5 < waited < BODY_TIMEOUT + 3
    assert served(server) == before


def test_threat_M4_signature_only_in_a_trailer_is_unsigned(
    server: UvicornServer,
) -> None:
    """A chunked request with its signature fields only in a trailer is refused, app untouched.

    Requests announcing trailers are refused with 400 malformed_request (trailer
    fields cannot be verified); without that, h11 drops the trailer and the request
    is unsigned (401 missing_signature). Either way the app is not called.
    """
    body = order()
    headers = signed_headers(server, "POST", "/trailer", body, headers=[("Content-Type", JSON)])
    names = ("Signature", "Signature-Input", "Content-Digest")
    head = without(headers, "Content-Length", *names)
    trailer = b"".join(f"{n}: {v}\r\n".encode() for n, v in headers if n in names)
    framed = [*head, ("Transfer-Encoding", "chunked"), ("Trailer", ", ".join(names))]
    before = served(server)
    response = exchange(
        server, raw_request("POST", "/trailer", framed, chunked(body, trailer=trailer))
    )
    assert (response.status, response.reason) == (400, "malformed_request")
    assert served(server) == before


def test_threat_C9_trailer_fields_never_reach_the_app_unverified(
    server: UvicornServer,
) -> None:
    """Trailer fields sent after the header phase never reach the app as request headers."""
    signer = Signer(
        KEY, components=["@method", "@authority", "@path", "@query", "x-acct", "content-digest"]
    )
    body = order()
    headers = signed_headers(
        server, "POST", "/acct", body, headers=[("X-Acct", "a")], signer=signer
    )
    framed = [*without(headers, "Content-Length"), ("Transfer-Encoding", "chunked")]
    with connect(server) as sock:
        sock.sendall(raw_request("POST", "/acct", [*framed, ("Expect", "100-continue")]))
        assert read_interim(sock).startswith(b"HTTP/1.1 100 ")  # the header phase passed
        sock.sendall(chunked(body, trailer=b"X-Acct: evil\r\n"))
        response = read_response(sock)
    if response.status == 200:
        seen = [v for n, v in response.json()["headers"] if n == "x-acct"]
        assert seen == ["a"]
    else:
        assert response.status in (400, 401)


def test_whitespace_around_field_values_is_not_part_of_them(server: UvicornServer) -> None:
    """RFC 9110 §5.5: SP and HTAB before or after a field value are not part of it.
    h11 strips them; httptools (llhttp) keeps those after the value. A signed POST whose
    every field, ``Host`` and ``Content-Length`` included, is padded so reaches the app
    on both servers, with its body, exactly once."""
    body = order()
    target = "/orders?customer=42"
    headers = signed_headers(server, "POST", target, body, headers=[("Content-Type", JSON)])
    padded = [(name, f" {value} \t") for name, value in headers]
    before = served(server)
    with connect(server) as sock:
        sock.sendall(raw_request("POST", target, padded, body))
        response = read_response(sock)
        assert response.status == 200, response.body
        assert response.json()["sha256"] == sha256(body)
        assert served(server) == before + 1
        since = server.log_size()
        sock.sendall(raw_request("POST", target, padded, body))  # the same bytes again
        again = read_response(sock)
    assert (again.status, again.reason) == (401, "invalid_signature")  # told as a bad MAC
    assert logged_reasons(server.log()[since:]) == ["replayed"]
    assert served(server) == before + 1


def test_an_absolute_form_target_is_verified_as_the_app_routes_it(server: UvicornServer) -> None:
    """``POST http://host/orders HTTP/1.1`` (RFC 9112 §3.2.2): httptools gives the app
    the path alone and the middleware verifies the request as signed for ``Host``; h11
    leaves the whole URI in ``raw_path``, which is no absolute path: 400, the app not
    reached (Starlette alone would answer 404 there)."""
    body = order()
    headers = signed_headers(server, "POST", "/orders", body, headers=[("Content-Type", JSON)])
    before = served(server)
    target = f"http://{server.authority}/orders"
    response = exchange(server, raw_request("POST", target, headers, body))
    if server.http == "h11":
        assert (response.status, response.reason) == (400, "malformed_request")
        assert served(server) == before
    else:
        assert response.status == 200, response.body
        assert (response.json()["raw_path"], response.json()["sha256"]) == ("/orders", sha256(body))
        assert served(server) == before + 1
