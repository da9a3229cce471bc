"""StandardWebhooksAuth: what it sends over httpx verifies with standardwebhooks and our profile."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest

import hmacguard.webhooks
from hmacguard import VerificationError
from hmacguard.webhooks import StandardWebhooks, StandardWebhooksAuth
from test_webhooks_standard import NOW, OTHER_SECRET, SECRET


def _send(auth: StandardWebhooksAuth, **kwargs: Any) -> httpx.Request:
    """Send one POST through a MockTransport and return the request as it went out."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        client.post("https://receiver.example/webhooks/events", **kwargs)
    assert len(seen) == 1
    return seen[0]


def test_interop_what_auth_sends_is_accepted_by_standardwebhooks() -> None:
    """``standardwebhooks.Webhook.verify`` accepts the request StandardWebhooksAuth sends."""
    from standardwebhooks.webhooks import Webhook  # noqa: PLC0415

    event = {"type": "invoice.paid", "data": {"id": "in_1", "note": "café"}}
    sent = _send(StandardWebhooksAuth(SECRET), json=event)
    assert Webhook(SECRET).verify(sent.content, dict(sent.headers)) == event


def test_what_auth_sends_is_accepted_by_our_profile() -> None:
    """Our StandardWebhooks profile accepts what the sender sends, at the sender's time."""
    auth = StandardWebhooksAuth(SECRET, clock=lambda: NOW + 0.9)
    sent = _send(auth, content=b"\x00raw bytes\xff")
    result = StandardWebhooks(SECRET).verify(sent.headers.multi_items(), sent.content, now=NOW)
    assert result.timestamp == NOW
    assert result.delivery_id is not None
    assert result.delivery_id.startswith("msg_")


def test_fresh_id_per_request() -> None:
    """Each send gets a new ``msg_`` id when none was given."""
    auth = StandardWebhooksAuth(SECRET)
    ids = {_send(auth, content=b"x").headers["webhook-id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(i.startswith("msg_") and "." not in i for i in ids)


def test_given_webhook_id_header_is_kept_for_retries() -> None:
    """A ``webhook-id`` set by the caller is signed and sent unchanged (retries share it)."""
    auth = StandardWebhooksAuth(SECRET, clock=lambda: NOW)
    sent = _send(auth, content=b"x", headers={"webhook-id": "msg_retry_1"})
    assert sent.headers["webhook-id"] == "msg_retry_1"
    assert StandardWebhooks(SECRET).verify(sent.headers, b"x", now=NOW).dedupe_key == "msg_retry_1"


@pytest.mark.parametrize("msg_id", ["msg.1", "x" * 257, " msg_leading", "msg_trailing "])
def test_bad_webhook_id_refused(msg_id: str) -> None:
    """An id with ``.``, over 256 characters, or with a space at either end (which
    HTTP trims in transit, so no receiver could verify it) is a ValueError before
    sending."""
    with pytest.raises(ValueError, match="webhook-id"):
        _send(StandardWebhooksAuth(SECRET), content=b"x", headers={"webhook-id": msg_id})


def test_rotation_signs_with_every_secret() -> None:
    """With two secrets, two v1 entries are sent; a receiver knowing either one accepts."""
    auth = StandardWebhooksAuth([SECRET, OTHER_SECRET], clock=lambda: NOW)
    sent = _send(auth, content=b"x")
    assert len(sent.headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OTHER_SECRET):
        assert StandardWebhooks(secret).verify(sent.headers, b"x", now=NOW).secret_index == 0


def test_tampered_body_fails() -> None:
    """The signature covers the exact bytes sent: a changed body fails."""
    sent = _send(StandardWebhooksAuth(SECRET, clock=lambda: NOW), content=b"x")
    with pytest.raises(VerificationError) as info:
        StandardWebhooks(SECRET).verify(sent.headers, b"y", now=NOW)
    assert info.value.reason == "invalid_signature"


def test_auth_flow_works_with_async_client() -> None:
    """The same auth signs an AsyncClient's requests."""
    import asyncio  # noqa: PLC0415

    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def main() -> None:
        transport = httpx.MockTransport(handler)
        auth = StandardWebhooksAuth(SECRET, clock=lambda: NOW)
        async with httpx.AsyncClient(transport=transport, auth=auth) as client:
            await client.post("https://r.example/", content=b"async")

    asyncio.run(main())
    assert StandardWebhooks(SECRET).verify(seen[0].headers, b"async", now=NOW).scheme


def test_repr_hides_secret() -> None:
    """repr shows how many secrets, never their value."""
    assert SECRET not in repr(StandardWebhooksAuth(SECRET))
    assert repr(StandardWebhooksAuth(SECRET)) == "StandardWebhooksAuth(secrets=<1 hidden>)"


def test_sender_is_an_httpx_auth_needing_the_body() -> None:
    """It is an httpx.Auth that asks for the body before signing."""
    assert issubclass(StandardWebhooksAuth, httpx.Auth)
    assert StandardWebhooksAuth.requires_request_body is True
    assert hmacguard.webhooks.StandardWebhooksAuth is StandardWebhooksAuth


def test_webhooks_all_is_sorted_and_complete() -> None:
    """``hmacguard.webhooks.__all__`` is sorted and lists exactly the public names
    that need no extra; ``StandardWebhooksAuth`` (httpx) is loaded on first use."""
    names = hmacguard.webhooks.__all__
    assert names == sorted(names)
    assert set(hmacguard.webhooks._LAZY) == {"StandardWebhooksAuth"}
    assert set(names) == {
        "GitHub",
        "Slack",
        "StandardWebhooks",
        "Stripe",
        "VerifiedWebhook",
        "WebhookProfile",
    }


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  (our interpreter, our code)
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_webhooks_loads_no_httpx() -> None:
    """``import hmacguard.webhooks`` loads no httpx, starlette or other third-party client."""
    result = _run(
        """
        import json, sys
        import hmacguard.webhooks
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert result.returncode == 0, result.stderr
    tops = {name.partition(".")[0] for name in json.loads(result.stdout)}
    assert sorted(tops & {"httpx", "starlette", "redis", "requests", "anyio"}) == []


def test_missing_httpx_names_the_pip_install() -> None:
    """Without httpx the profiles work; StandardWebhooksAuth raises ImportError naming the extra."""
    result = _run(
        """
        import sys
        sys.modules["httpx"] = sys.modules["httpx2"] = None
        from hmacguard.webhooks import Stripe
        assert Stripe("whsec_x").scheme == "stripe"
        try:
            from hmacguard.webhooks import StandardWebhooksAuth
        except ImportError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        'StandardWebhooksAuth needs httpx (or httpx2): pip install "hmacguard[httpx]"'
    ]
