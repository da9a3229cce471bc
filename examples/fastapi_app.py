# A FastAPI service with two clients, each with its own key: the route knows which one called.
#
# What it shows:
#   * app.add_middleware(SignatureMiddleware, ...) on FastAPI; GET /health stays exempt
#     (everything else, /docs and /openapi.json included, needs a signature).
#   * hmacguard.fastapi.Signed: the request's hmacguard.VerifiedSignature as a route
#     parameter. The key id that signed the request is the caller's identity, so
#     GET /orders only returns the calling client's orders.
#
# Environment:
#   HMACGUARD_SECRET     base64 secret of the first client (required): `hmacguard keygen`
#   HMACGUARD_KEY_ID     its key id (default client-1)
#   HMACGUARD_SECRET_2   base64 secret of a second client (optional)
#   HMACGUARD_KEY_ID_2   its key id (default client-2)
#   PORT                 the port for `python examples/fastapi_app.py` (default 8000)
#
# Run it (from the repository root):
#   pip install "hmacguard[httpx]" fastapi uvicorn
#   export HMACGUARD_SECRET=$(hmacguard keygen) HMACGUARD_SECRET_2=$(hmacguard keygen)
#   python examples/fastapi_app.py            # or: uvicorn fastapi_app:app --app-dir examples
# then call it as each client (HMACAuth signs the request):
#   python -c "import httpx,os; from hmacguard import HMACAuth
#   auth = HMACAuth('client-2', os.environ['HMACGUARD_SECRET_2'])
#   print(httpx.get('http://127.0.0.1:8000/whoami', auth=auth).json())"

from __future__ import annotations

import os
import sys
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from hmacguard import HMACKey, SignatureMiddleware
from hmacguard.fastapi import Signed

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


def keys_from_env() -> dict[str, str]:
    """One key per client: client-1 always, client-2 when HMACGUARD_SECRET_2 is set."""
    keys = {_env("HMACGUARD_KEY_ID", "client-1"): _secret("HMACGUARD_SECRET")}
    if _env("HMACGUARD_SECRET_2", ""):
        second = _env("HMACGUARD_KEY_ID_2", "client-2")
        if second in keys:
            sys.exit("HMACGUARD_KEY_ID_2 must differ from HMACGUARD_KEY_ID")
        keys[second] = _secret("HMACGUARD_SECRET_2")
    return keys


class Order(BaseModel):
    sku: str
    quantity: int = 1


# Orders per client (in memory: one process).
ORDERS: dict[str, list[dict[str, Any]]] = {}

app = FastAPI(title="hmacguard FastAPI example")
app.add_middleware(SignatureMiddleware, keys=keys_from_env(), exempt=["/health"])


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/whoami")
def whoami(sig: Signed) -> dict[str, Any]:
    return {"client": sig.key_id, "covered": list(sig.components)}


@app.post("/orders")
def place_order(order: Order, sig: Signed) -> dict[str, Any]:
    placed = {"sku": order.sku, "quantity": order.quantity, "client": sig.key_id}
    ORDERS.setdefault(sig.key_id, []).append(placed)
    return placed


@app.get("/orders")
def my_orders(sig: Signed) -> dict[str, Any]:
    # The key id is the identity: a client sees its own orders, never another's.
    return {"client": sig.key_id, "orders": ORDERS.get(sig.key_id, [])}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(_env("PORT", "8000")))
