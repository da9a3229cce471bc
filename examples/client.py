# Call the signed API of examples/internal_api.py with httpx and HMACAuth.
#
# What it shows:
#   * httpx.Client and httpx.AsyncClient with auth=HMACAuth(key_id, secret): every request
#     is signed afresh (new created time, new nonce, Content-Digest of the exact body).
#   * Key rotation on the client: when HMACGUARD_NEXT_KEY_ID/HMACGUARD_NEXT_SECRET are set
#     (and the server knows both keys), the new key takes over and the server reports it.
#   * With --replay N: one signed request captured and sent N times, each on a new
#     connection, as an attacker would resend it: the first is accepted, the copies are
#     refused (across workers too, given a shared Redis nonce store). The client is told
#     401 "invalid_signature", exactly as for a bad MAC, so an attacker cannot learn
#     what the replay cache holds; the server's log says "replayed".
#
# Environment (the same as the server's):
#   HMACGUARD_URL           the server (default http://127.0.0.1:8000)
#   HMACGUARD_KEY_ID        default client-1
#   HMACGUARD_SECRET        base64 (required): `hmacguard keygen` makes one
#   HMACGUARD_NEXT_KEY_ID   optional: the key that takes over after a rotation
#   HMACGUARD_NEXT_SECRET
#
# Run it (from the repository root), with examples/internal_api.py running:
#   pip install "hmacguard[httpx]"
#   export HMACGUARD_SECRET=...           # the server's secret
#   python examples/client.py             # signed calls, sync and async: each prints 200
#   python examples/client.py --replay 5  # one request sent 5 times: 200, then four 401s
#
# Each call prints one line: [phase key-id] METHOD path -> status body
# The exit status is 0 when every call got what this script expects, 1 otherwise.

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import httpx

from hmacguard import HMACAuth, HMACKey

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
        HMACKey("check", value)
    except ValueError as exc:
        sys.exit(f"{name} is not a usable secret ({exc}): make one with {HOW_TO_MAKE_A_SECRET}")
    return value


def show(phase: str, response: httpx.Response) -> bool:
    """Print one call's outcome; True if it succeeded (2xx)."""
    path = response.request.url.raw_path.decode()
    print(f"[{phase}] {response.request.method} {path} -> {response.status_code} {response.text}")
    return response.is_success


def sync_calls(base_url: str, key_id: str, secret: str, phase: str) -> bool:
    """Create, list and delete an item with a synchronous client."""
    ok = True
    with httpx.Client(base_url=base_url, auth=HMACAuth(key_id, secret), timeout=10) as client:
        ok &= show(phase, client.get("/v1/whoami"))
        created = client.post("/v1/items", json={"name": "widget"})
        ok &= show(phase, created)
        ok &= show(phase, client.get("/v1/items", params={"limit": "10"}))
        item_id = created.json().get("id", "none") if created.is_success else "none"
        ok &= show(phase, client.delete(f"/v1/items/{item_id}"))
    return ok


async def async_calls(base_url: str, key_id: str, secret: str, phase: str) -> bool:
    """Send three requests at once with an async client: each is signed with its own nonce."""
    auth = HMACAuth(key_id, secret)
    async with httpx.AsyncClient(base_url=base_url, auth=auth, timeout=10) as client:
        responses = await asyncio.gather(
            client.post("/v1/items", json={"name": "gadget"}),
            client.post("/v1/items", json={"name": "gizmo"}),
            client.get("/v1/whoami"),
        )
    results = [show(phase, response) for response in responses]  # print every one
    return all(results)


def replay(base_url: str, key_id: str, secret: str, times: int) -> bool:
    """Sign one request, then send its exact bytes ``times`` times on new connections."""
    auth = HMACAuth(key_id, secret)
    with httpx.Client(base_url=base_url) as client:
        request = client.build_request("POST", "/v1/items", json={"name": "replayed"})
    auth.sign(request)  # the headers as they would go on the wire, captured once
    expected = True
    for attempt in range(1, times + 1):
        # A new client each time: a new TCP connection, which any worker may accept.
        response = httpx.request(
            "POST", str(request.url), headers=request.headers, content=request.content, timeout=10
        )
        worker = response.headers.get("x-worker-pid", "?")
        show(f"replay {attempt}/{times} worker {worker}", response)
        if attempt == 1:
            expected &= response.status_code == 200
        else:
            # A replay is answered like a bad MAC; the server logs the precise reason.
            expected &= response.status_code == 401 and _reason(response) == "invalid_signature"
    print("replays refused:", "yes" if expected else "NO")
    return expected


def _reason(response: httpx.Response) -> str | None:
    try:
        reason = response.json().get("reason")
    except ValueError:
        return None
    return reason if isinstance(reason, str) else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Call examples/internal_api.py with signed requests (httpx + HMACAuth)."
    )
    parser.add_argument(
        "--replay",
        type=int,
        metavar="N",
        help="send one signed request N times: the first is accepted, every copy refused",
    )
    args = parser.parse_args()
    base_url = _env("HMACGUARD_URL", "http://127.0.0.1:8000").rstrip("/")
    key_id = _env("HMACGUARD_KEY_ID", "client-1")
    secret = _secret("HMACGUARD_SECRET")

    if args.replay is not None:
        if args.replay < 2:
            parser.error("--replay needs N >= 2: the request, then at least one copy")
        return 0 if replay(base_url, key_id, secret, args.replay) else 1

    ok = sync_calls(base_url, key_id, secret, f"sync {key_id}")
    ok &= asyncio.run(async_calls(base_url, key_id, secret, f"async {key_id}"))

    # Rotation: the server accepts the old and the new key for a while; clients move to
    # the new one (here, right away), then the old key is removed from the server.
    next_id = _env("HMACGUARD_NEXT_KEY_ID", "")
    if next_id and _env("HMACGUARD_NEXT_SECRET", ""):
        next_secret = _secret("HMACGUARD_NEXT_SECRET")
        print(f"rotating: {key_id} -> {next_id}")
        ok &= sync_calls(base_url, next_id, next_secret, f"rotated {next_id}")
    else:
        print("no rotation: set HMACGUARD_NEXT_KEY_ID and HMACGUARD_NEXT_SECRET to show one")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
