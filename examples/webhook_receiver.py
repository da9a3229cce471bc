# Receive Stripe, GitHub, Slack and Standard Webhooks deliveries on one Starlette app.
#
# What it shows:
#   * SignatureMiddleware(webhooks={path: profile}): each path verified by its provider's
#     scheme over the raw body, before the handler runs; a tampered or unsigned delivery
#     gets 401, and a delivery seen before gets 200 {"status": "duplicate"} without
#     reaching the handler.
#   * request.state.webhook (a hmacguard.webhooks.VerifiedWebhook) in the handlers.
#   * A path is configured only when its secret is set:
#       POST /webhooks/events  Standard Webhooks  STANDARD_WEBHOOK_SECRET  (whsec_...)
#       POST /webhooks/stripe  Stripe             STRIPE_WEBHOOK_SECRET    (whsec_...)
#       POST /webhooks/github  GitHub             GITHUB_WEBHOOK_SECRET
#       POST /webhooks/slack   Slack              SLACK_SIGNING_SECRET
#     GET /health is exempt; every other path needs an RFC 9421 signature, and this app
#     knows no RFC 9421 key, so it refuses them all.
#   Deliveries are deduplicated in memory (one process); with several workers, pass a
#   shared nonce_store=RedisNonceStore(url) as examples/internal_api.py does.
#
# Run it (from the repository root):
#   pip install "hmacguard[httpx]" starlette uvicorn
#   export STANDARD_WEBHOOK_SECRET=$(hmacguard keygen --format whsec)  # and/or the others
#   python examples/webhook_receiver.py       # PORT (default 8000) sets the port
# then, in another shell with the same STANDARD_WEBHOOK_SECRET:
#   python examples/webhook_sender.py

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hmacguard import HMACKey, SignatureMiddleware
from hmacguard.webhooks import (
    GitHub,
    Slack,
    StandardWebhooks,
    Stripe,
    VerifiedWebhook,
    WebhookProfile,
)

# Stripe re-signs its retries, so the middleware cannot tell a retry from a new delivery:
# deduplicate on the event id (in a database, in a real service).
STRIPE_EVENTS_SEEN: set[str] = set()


async def _json(request: Request) -> dict[str, Any]:
    try:
        payload = json.loads(await request.body())
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _env(name: str, default: str) -> str:
    """Environment variable ``name``, stripped; ``default`` when unset or empty."""
    return os.environ.get(name, "").strip() or default


def _webhook(request: Request) -> VerifiedWebhook:
    webhook: VerifiedWebhook = request.state.webhook
    return webhook


async def standard_event(request: Request) -> JSONResponse:
    event = await _json(request)
    return JSONResponse(
        {"received": "standard-webhooks", "id": _webhook(request).delivery_id, **_type(event)}
    )


async def stripe_event(request: Request) -> JSONResponse:
    event = await _json(request)
    event_id = str(event.get("id", ""))
    if event_id and event_id in STRIPE_EVENTS_SEEN:
        return JSONResponse({"status": "duplicate", "id": event_id})
    STRIPE_EVENTS_SEEN.add(event_id)
    return JSONResponse({"received": "stripe", "id": event_id, **_type(event)})


async def github_event(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "received": "github",
            "event": request.headers.get("x-github-event", ""),
            "delivery": _webhook(request).delivery_id,
        }
    )


async def slack_event(request: Request) -> JSONResponse:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # A slash command or an interactivity payload: a form, answered to the user.
        form = parse_qs((await request.body()).decode())
        command = form.get("command", [""])[0]
        return JSONResponse({"response_type": "ephemeral", "text": f"received {command}"})
    event = await _json(request)
    if event.get("type") == "url_verification":  # Slack's check when you set the URL
        return JSONResponse({"challenge": event.get("challenge", "")})
    return JSONResponse({"received": "slack", "event_id": event.get("event_id"), **_type(event)})


def _type(event: dict[str, Any]) -> dict[str, Any]:
    return {"type": event.get("type")}


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _no_rfc9421_key(key_id: str) -> HMACKey | None:
    """This app takes webhooks only: no RFC 9421 key id is known."""
    return None


# path, environment variable, profile class, handler
PROVIDERS: list[
    tuple[str, str, Callable[[str], WebhookProfile], Callable[[Request], Awaitable[JSONResponse]]]
] = [
    ("/webhooks/events", "STANDARD_WEBHOOK_SECRET", StandardWebhooks, standard_event),
    ("/webhooks/stripe", "STRIPE_WEBHOOK_SECRET", Stripe, stripe_event),
    ("/webhooks/github", "GITHUB_WEBHOOK_SECRET", GitHub, github_event),
    ("/webhooks/slack", "SLACK_SIGNING_SECRET", Slack, slack_event),
]


def create_app() -> Starlette:
    """The receiver for every provider whose secret is in the environment."""
    routes = [Route("/health", health, methods=["GET"])]
    profiles: dict[str, WebhookProfile] = {}
    for path, variable, profile_class, handler in PROVIDERS:
        secret = _env(variable, "")
        if not secret:
            continue
        try:
            profiles[path] = profile_class(secret)
        except ValueError as exc:
            sys.exit(f"{variable} is not a usable secret: {exc}")
        routes.append(Route(path, handler, methods=["POST"]))
    if not profiles:
        names = ", ".join(variable for _, variable, _, _ in PROVIDERS)
        sys.exit(
            f"no webhook secret is set: set at least one of {names} "
            "(e.g. export STANDARD_WEBHOOK_SECRET=$(hmacguard keygen --format whsec))"
        )
    for path in profiles:
        print(f"receiving {path}", file=sys.stderr)
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                SignatureMiddleware,
                keys=_no_rfc9421_key,
                exempt=["/health"],
                webhooks=profiles,
            )
        ],
    )


app = create_app()


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(_env("PORT", "8000")))
