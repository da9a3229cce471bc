# Send a Standard Webhooks delivery, then redeliver it, and watch the receiver deduplicate it.
#
# What it shows:
#   * httpx with auth=StandardWebhooksAuth(secret): webhook-id, webhook-timestamp and
#     webhook-signature (v1, HMAC-SHA256 over "{id}.{timestamp}.{body}") on each send.
#   * Retrying a message under the same webhook-id: the retry is signed afresh (a new
#     timestamp), and an hmacguard receiver answers 200 {"status": "duplicate"} without
#     running its handler again.
#
# Environment:
#   STANDARD_WEBHOOK_SECRET  the endpoint secret, "whsec_..." (required), the receiver's
#   WEBHOOK_URL              default http://127.0.0.1:8000/webhooks/events
#
# Run it (from the repository root), with examples/webhook_receiver.py running:
#   pip install "hmacguard[httpx]"
#   export STANDARD_WEBHOOK_SECRET=whsec_...     # the receiver's
#   python examples/webhook_sender.py
#
# The exit status is 0 when the delivery is accepted and the redelivery deduplicated.

from __future__ import annotations

import os
import secrets
import sys

import httpx

from hmacguard.webhooks import StandardWebhooksAuth


def _env(name: str, default: str) -> str:
    """Environment variable ``name``, stripped; ``default`` when unset or empty."""
    return os.environ.get(name, "").strip() or default


def main() -> int:
    secret = _env("STANDARD_WEBHOOK_SECRET", "")
    if not secret:
        sys.exit(
            "STANDARD_WEBHOOK_SECRET is not set: use the receiver's secret "
            "(make one with: export STANDARD_WEBHOOK_SECRET=$(hmacguard keygen --format whsec))"
        )
    url = _env("WEBHOOK_URL", "http://127.0.0.1:8000/webhooks/events")
    try:
        auth = StandardWebhooksAuth(secret)
    except ValueError as exc:
        sys.exit(f"STANDARD_WEBHOOK_SECRET is not a usable secret: {exc}")

    message_id = "msg_" + secrets.token_hex(12)  # one message: every attempt carries this id
    event = {"type": "invoice.paid", "id": "in_" + secrets.token_hex(6), "amount": 1200}
    outcomes = []
    with httpx.Client(auth=auth, timeout=10) as client:
        for attempt in ("delivery", "redelivery"):
            response = client.post(url, json=event, headers={"webhook-id": message_id})
            stamp = response.request.headers["webhook-timestamp"]
            print(
                f"{attempt} {message_id} (webhook-timestamp {stamp}) -> "
                f"{response.status_code} {response.text}"
            )
            outcomes.append(response)

    first, second = outcomes
    accepted = first.is_success and _body(first).get("status") != "duplicate"
    deduplicated = second.status_code == 200 and _body(second).get("status") == "duplicate"
    print("accepted:", "yes" if accepted else "NO")
    print("redelivery deduplicated:", "yes" if deduplicated else "NO")
    return 0 if accepted and deduplicated else 1


def _body(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


if __name__ == "__main__":
    sys.exit(main())
