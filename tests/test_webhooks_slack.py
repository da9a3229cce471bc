"""Slack profile: the docs' worked example (VECTORS.md section 9), THREATS W4, slack_sdk interop."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _vectors import load_vector
from hmacguard import VerificationError
from hmacguard.webhooks import Slack, VerifiedWebhook
from test_webhooks_standard import NOW, WebhookProfileContract

SL = load_vector("webhooks.json")["slack"]
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
OTHER_SECRET = "0000000000000000aaaaaaaaaaaaaaaa"


def slack_sign(secret: str, body: bytes, ts: int | str) -> dict[str, str]:
    """The headers Slack sends, signed with the stdlib."""
    mac = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Signature": f"v0={mac}", "X-Slack-Request-Timestamp": str(ts)}


def _reason(headers: Any, body: bytes = b"body", now: float = NOW) -> str:
    with pytest.raises(VerificationError) as info:
        Slack(SECRET).verify(headers, body, now=now)
    assert info.value.status in (400, 401)
    return info.value.reason


class TestSlackContract(WebhookProfileContract):
    """The shared profile contract, for Slack."""

    scheme = "slack"
    secret = SECRET
    other_secret = OTHER_SECRET
    signature_header = "X-Slack-Signature"
    fuzz_headers = ("X-Slack-Signature", "X-Slack-Request-Timestamp")

    def make(self, secrets: Any) -> Slack:
        """Build a Slack profile."""
        return Slack(secrets)

    def sign(self, secret: Any, body: bytes, now: int) -> dict[str, str]:
        """Sign as Slack does."""
        return slack_sign(secret, body, now)


def test_vector_slack_docs_worked_example() -> None:
    """The docs' slash-command example verifies; the dedupe key is ``{ts}.`` and 32 hex digits."""
    headers = {
        "X-Slack-Signature": SL["signature"],
        "X-Slack-Request-Timestamp": str(SL["timestamp"]),
    }
    result = Slack(SL["signing_secret"]).verify(headers, SL["body"].encode(), now=SL["timestamp"])
    assert result == VerifiedWebhook("slack", None, SL["timestamp"], result.dedupe_key, 0)
    assert re.fullmatch(rf"{SL['timestamp']}\.[0-9a-f]{{32}}", result.dedupe_key)
    assert SL["signature"][3:35] not in result.dedupe_key


def test_threat_W4_timestamp_301_s_old_rejected() -> None:
    """``ts = now - 301`` is expired."""
    assert _reason(slack_sign(SECRET, b"body", NOW - 301)) == "expired"


def test_threat_W4_future_timestamp_rejected() -> None:
    """``ts = now + 301`` is not_yet_valid."""
    assert _reason(slack_sign(SECRET, b"body", NOW + 301)) == "not_yet_valid"


@pytest.mark.parametrize("ts", ["1.7e9", "1700000000.0", "abc", "-5", "١٢٣"])
def test_threat_W4_non_numeric_timestamp_malformed(ts: str) -> None:
    """Non-numeric, fractional, exponent or non-ASCII-digit timestamps are malformed."""
    headers = slack_sign(SECRET, b"body", NOW) | {"X-Slack-Request-Timestamp": ts}
    assert _reason(headers) == "malformed_signature"


def test_threat_W4_form_body_verified_on_raw_bytes_before_parsing() -> None:
    """A form body with lower-case escapes verifies on its raw bytes; re-encoding would not."""
    body = b"text=caf%c3%a9%20%2B1&text=two&payload=%7b%22a%22%3a1%7d"
    from urllib.parse import urlencode  # noqa: PLC0415

    assert urlencode(parse_qs(body.decode()), doseq=True).encode() != body
    assert Slack(SECRET).verify(slack_sign(SECRET, body, NOW), body, now=NOW).scheme == "slack"


def test_threat_W4_a_retry_of_an_event_has_the_same_dedupe_key() -> None:
    """A re-signed retry of an Events API callback dedupes on its event_id, not the signature."""
    body = b'{"token":"t","event":{"type":"app_mention"},"type":"event_callback","event_id":"Ev1"}'
    first = Slack(SECRET).verify(slack_sign(SECRET, body, NOW), body, now=NOW)
    headers = slack_sign(SECRET, body, NOW + 60) | {"X-Slack-Retry-Num": "1"}
    retry = Slack(SECRET).verify(headers, body, now=NOW + 60)
    assert first.dedupe_key == retry.dedupe_key == "event:Ev1"
    assert first.delivery_id == retry.delivery_id == "Ev1"


def test_threat_W4_an_event_id_inside_message_text_is_not_the_callbacks() -> None:
    """Only the top-level event_id counts: one quoted inside a message's text is ignored."""
    body = (
        b'{"event":{"type":"message","text":"\\"event_id\\": \\"EvFORGED\\""},'
        b'"type":"event_callback","event_id":"EvREAL"}'
    )
    verified = Slack(SECRET).verify(slack_sign(SECRET, body, NOW), body, now=NOW)
    assert verified.dedupe_key == "event:EvREAL"


@pytest.mark.parametrize(
    "body",
    [
        b"token=x&command=%2Fdo&text=",  # a slash command: form-encoded
        b'{"type":"url_verification","challenge":"c","event_id":"Ev1"}',  # not a callback
        b'{"type":"event_callback"}',  # no event_id
        b'{"type":"event_callback","event_id":17}',  # not a string
        b'{"type":"event_callback","event_id":"Ev 1"}',  # not an id
        b'{"type":"event_callback", "event_id": "Ev1"',  # broken JSON
        b"[" * 100_000 + b'"event_callback"',  # too deep, and too large
    ],
)
def test_threat_W4_other_bodies_dedupe_on_the_signature(body: bytes) -> None:
    """Without a callback's event_id, the dedupe key is the timestamp and signature."""
    verified = Slack(SECRET).verify(slack_sign(SECRET, body, NOW), body, now=NOW)
    assert verified.delivery_id is None
    assert verified.dedupe_key.startswith(f"{NOW}.")


def test_threat_W4_a_large_callback_is_not_parsed() -> None:
    """A JSON body over 64 KiB is not parsed for an event id (bounded work per request)."""
    padding = "x" * (64 * 1024)
    body = f'{{"type":"event_callback","event_id":"Ev1","pad":"{padding}"}}'.encode()
    verified = Slack(SECRET).verify(slack_sign(SECRET, body, NOW), body, now=NOW)
    assert verified.delivery_id is None


def test_replayed_request_has_same_dedupe_key() -> None:
    """The same captured request sent again inside the window has the same dedupe key."""
    headers = slack_sign(SECRET, b"x", NOW)
    a = Slack(SECRET).verify(headers, b"x", now=NOW)
    b = Slack(SECRET).verify(headers, b"x", now=NOW + 100)
    assert a.dedupe_key == b.dedupe_key
    assert Slack(SECRET).dedupe_ttl == 660


@pytest.mark.parametrize("secrets", [[SECRET, OTHER_SECRET], [OTHER_SECRET, SECRET]])
def test_one_request_signed_under_either_secret_has_one_dedupe_key(secrets: list[str]) -> None:
    """The same timestamp and body signed under the old or the new secret (or in upper-case
    hex) is one delivery: one key, whatever the secrets' order; another timestamp is another."""
    profile = Slack(secrets)
    old, new = slack_sign(OTHER_SECRET, b"x", NOW), slack_sign(SECRET, b"x", NOW)
    upper = old | {"X-Slack-Signature": "v0=" + old["X-Slack-Signature"][3:].upper()}
    keys = {profile.verify(h, b"x", now=NOW).dedupe_key for h in (old, new, upper)}
    assert len(keys) == 1
    assert keys != {profile.verify(slack_sign(SECRET, b"x", NOW + 1), b"x", now=NOW).dedupe_key}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("v1=" + "a" * 64, "invalid_signature"),
        ("v0=" + "a" * 63, "malformed_signature"),
        ("v0=", "malformed_signature"),
        ("v0", "malformed_signature"),
        ("a" * 64, "malformed_signature"),
        ("v0=" + "a" * 64 + ",v0=" + "b" * 64, "malformed_signature"),
    ],
)
def test_signature_syntax(value: str, reason: str) -> None:
    """Another version is invalid_signature; anything not ``v0=`` + 64 hex is malformed."""
    headers = slack_sign(SECRET, b"body", NOW) | {"X-Slack-Signature": value}
    assert _reason(headers) == reason


@pytest.mark.parametrize("tolerance", [0, None, -1])
def test_zero_or_none_tolerance_refused(tolerance: Any) -> None:
    """A tolerance that disables the window is a ValueError."""
    with pytest.raises(ValueError, match="tolerance"):
        Slack(SECRET, tolerance=tolerance)


def test_injected_clock_is_used_without_now() -> None:
    """Without ``now``, the profile's clock decides freshness."""
    headers = slack_sign(SECRET, b"b", NOW)
    assert Slack(SECRET, clock=lambda: NOW + 10).verify(headers, b"b").timestamp == NOW
    with pytest.raises(VerificationError) as info:
        Slack(SECRET, clock=lambda: NOW + 1000).verify(headers, b"b")
    assert info.value.reason == "expired"


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=300), ts=st.integers(min_value=NOW - 300, max_value=NOW + 300))
def test_interop_slack_sdk_generate_signature_is_accepted(text: str, ts: int) -> None:
    """Whatever ``slack_sdk``'s ``SignatureVerifier.generate_signature`` makes, we accept."""
    body = text.encode()  # slack_sdk decodes bytes as UTF-8, so it can only sign text
    from slack_sdk.signature import SignatureVerifier  # noqa: PLC0415

    signature = SignatureVerifier(SECRET).generate_signature(timestamp=str(ts), body=body)
    assert signature is not None
    headers = {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": str(ts)}
    assert Slack(SECRET).verify(headers, body, now=NOW).timestamp == ts
