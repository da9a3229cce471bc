"""One app receiving four webhook schemes and an RFC 9421 API, for the real-server tests.

uvicorn imports it by name from the repository root (see ``tests/uvicorn_server.py``)::

    python -m uvicorn tests.apps.webhooks_app:app --app-dir /path/to/repo

Paths: ``/webhooks/standard`` (Standard Webhooks), ``/webhooks/stripe``,
``/webhooks/github``, ``/webhooks/slack``, each verified by its profile, and
``/api/...`` verified as RFC 9421 by the same middleware. Every route echoes
which scheme verified the request (``scheme``, ``delivery_id``, or the RFC 9421
``key_id``), the body's sha256, and ``count``, the requests the app has served;
``GET /_stats`` (exempt) reports ``count`` without moving it. The secrets are
fixed test values, below.
"""

from __future__ import annotations

import hashlib
import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hmacguard import SignatureMiddleware
from hmacguard.webhooks import GitHub, Slack, StandardWebhooks, Stripe

API_KEY_ID = "client-1"
API_SECRET = b"k" * 32
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STRIPE_SECRET = "whsec_test_secret_for_vectors"
GITHUB_SECRET = "It's a Secret to Everybody"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

_served = 0


async def echo(request: Request) -> JSONResponse:
    """Report who verified the request and what body the app read, and count it."""
    global _served  # noqa: PLW0603  (one counter per server process, on purpose)
    body = await request.body()
    _served += 1
    state = request.scope.get("state", {})
    webhook = state.get("webhook")
    signature = state.get("signature")
    return JSONResponse(
        {
            "scheme": "rfc9421" if webhook is None else webhook.scheme,
            "delivery_id": None if webhook is None else webhook.delivery_id,
            "key_id": None if signature is None else signature.key_id,
            "sha256": hashlib.sha256(body).hexdigest(),
            "count": _served,
        }
    )


async def stats(request: Request) -> JSONResponse:
    """How many requests reached the app (exempt from verification)."""
    return JSONResponse({"count": _served, "pid": os.getpid()})


app = Starlette(
    routes=[
        Route("/_stats", stats, methods=["GET"]),
        Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
    ],
    middleware=[
        Middleware(
            SignatureMiddleware,
            keys={API_KEY_ID: API_SECRET},
            exempt=["/_stats"],
            webhooks={
                "/webhooks/standard": StandardWebhooks(STANDARD_SECRET),
                "/webhooks/stripe": Stripe(STRIPE_SECRET),
                "/webhooks/github": GitHub(GITHUB_SECRET),
                "/webhooks/slack": Slack(SLACK_SECRET),
            },
        )
    ],
)
