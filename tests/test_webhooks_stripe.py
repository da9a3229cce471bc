"""Stripe profile: the VECTORS.md section 7 example, THREATS W1/W2/W7, stripe-python interop."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _vectors import load_vector
from hmacguard import VerificationError
from hmacguard.webhooks import GitHub, StandardWebhooks, Stripe, VerifiedWebhook
from test_webhooks_standard import NOW, WebhookProfileContract

ST = load_vector("webhooks.json")["stripe"]
SECRET = "whsec_stripe_test_secret_0123456789"
OTHER_SECRET = "whsec_stripe_other_secret_987654321"


def v1(secret: str, body: bytes, t: int) -> str:
    """Hex HMAC-SHA256 of ``{t}.{body}`` keyed with the secret's UTF-8 text (stdlib)."""
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def stripe_headers(value: str) -> dict[str, str]:
    """The request headers with this Stripe-Signature."""
    return {"Stripe-Signature": value, "Content-Type": "application/json"}


def _reason(header: str, body: bytes = b"body", now: float = NOW, profile: Any = None) -> str:
    with pytest.raises(VerificationError) as info:
        (profile or Stripe(SECRET)).verify(stripe_headers(header), body, now=now)
    assert info.value.status in (400, 401)
    return info.value.reason


class TestStripeContract(WebhookProfileContract):
    """The shared profile contract, for Stripe."""

    scheme = "stripe"
    secret = SECRET
    other_secret = OTHER_SECRET
    signature_header = "Stripe-Signature"
    fuzz_headers = ("Stripe-Signature",)

    def make(self, secrets: Any) -> Stripe:
        """Build a Stripe profile."""
        return Stripe(secrets)

    def sign(self, secret: Any, body: bytes, now: int) -> dict[str, str]:
        """Sign as Stripe does, with the stdlib."""
        return stripe_headers(f"t={now},v1={v1(secret, body, now)}")


# -- vectors (VECTORS.md section 7) -----------------------------------------------------------


def test_vector_stripe_worked_example() -> None:
    """The worked example verifies; the dedupe key is ``{t}.`` and 32 hex digits."""
    result = Stripe(ST["secret"]).verify(
        stripe_headers(ST["header"]), ST["payload"].encode(), now=ST["timestamp"]
    )
    assert result == VerifiedWebhook("stripe", None, ST["timestamp"], result.dedupe_key, 0)
    assert re.fullmatch(rf"{ST['timestamp']}\.[0-9a-f]{{32}}", result.dedupe_key)


def test_vector_stripe_signed_payload_is_t_dot_body() -> None:
    """The example's v1 is the HMAC of exactly ``{t}.{body}`` under the secret text."""
    mac = hmac.new(ST["secret"].encode(), ST["signed_payload"].encode(), hashlib.sha256)
    assert mac.hexdigest() == ST["v1"]


def test_threat_W1_two_v1_values_during_rotation_one_valid() -> None:
    """The rotation header (old-secret v1, valid v1, fake v0) verifies under the new secret."""
    profile = Stripe(ST["secret"])
    body, now = ST["payload"].encode(), ST["timestamp"]
    result = profile.verify(stripe_headers(ST["rotation_header"]), body, now=now)
    assert (
        result.dedupe_key == profile.verify(stripe_headers(ST["header"]), body, now=now).dedupe_key
    )


def test_rotation_secret_order_does_not_change_dedupe_key() -> None:
    """The dedupe key is the same whichever secret is listed first."""
    body, now = ST["payload"].encode(), ST["timestamp"]
    old_first = Stripe([ST["rotation_old_secret"], ST["secret"]])
    new_first = Stripe([ST["secret"], ST["rotation_old_secret"]])
    a = old_first.verify(stripe_headers(ST["rotation_header"]), body, now=now)
    b = new_first.verify(stripe_headers(ST["rotation_header"]), body, now=now)
    assert a.dedupe_key == b.dedupe_key
    assert (a.secret_index, b.secret_index) == (0, 1)


def test_hex_is_compared_case_insensitively() -> None:
    """An upper-case v1 value verifies, with the dedupe key of the lower-case one."""
    header = ST["header"].replace(ST["v1"], ST["v1"].upper())
    profile, body, now = Stripe(ST["secret"]), ST["payload"].encode(), ST["timestamp"]
    result = profile.verify(stripe_headers(header), body, now=now)
    assert (
        result.dedupe_key == profile.verify(stripe_headers(ST["header"]), body, now=now).dedupe_key
    )


# -- the replay key: one delivery, one key -----------------------------------------------------


def _rotation_headers(body: bytes, t: int) -> list[str]:
    """Every header an attacker holding one rotation delivery could send for it."""
    new, old = v1(SECRET, body, t), v1(OTHER_SECRET, body, t)
    junk = "0" * 64
    return [
        f"t={t},v1={new},v1={old}",
        f"t={t},v1={old},v1={new}",
        f"t={t},v1={old}",
        f"t={t},v1={new}",
        f"t={t},v1={old.upper()}",
        f"t={t},v1={junk},v0={junk},v1={old},v1={junk}",
        f"v1={new},t={t},t={t}",
        f"t={t}, v1={old} ,v1={junk}",
    ]


@pytest.mark.parametrize("secrets", [[SECRET, OTHER_SECRET], [OTHER_SECRET, SECRET]])
def test_dedupe_key_depends_on_neither_the_header_nor_the_matching_secret(
    secrets: list[str],
) -> None:
    """Reordered, reduced, re-cased or padded v1 values of one delivery give one key."""
    profile = Stripe(secrets)
    keys = {
        profile.verify(stripe_headers(header), b"evt", now=NOW).dedupe_key
        for header in _rotation_headers(b"evt", NOW)
    }
    assert len(keys) == 1


def test_dedupe_key_holds_no_signature() -> None:
    """The key is ``{t}.`` and a one-way id: no v1 value of any configured secret appears."""
    profile = Stripe([SECRET, OTHER_SECRET])
    key = profile.verify(stripe_headers(f"t={NOW},v1={v1(SECRET, b'e', NOW)}"), b"e", now=NOW)
    assert re.fullmatch(rf"{NOW}\.[0-9a-f]{{32}}", key.dedupe_key)
    for secret in (SECRET, OTHER_SECRET):
        assert v1(secret, b"e", NOW)[:32] not in key.dedupe_key


def test_dedupe_key_tells_apart_bodies_timestamps_and_endpoints() -> None:
    """Another body, another t, or the same (t, body) at an endpoint with other secrets
    (Stripe sends one event to every endpoint) is another key."""
    profile = Stripe(SECRET)

    def key(p: Stripe, secret: str, body: bytes, t: int) -> str:
        return p.verify(stripe_headers(f"t={t},v1={v1(secret, body, t)}"), body, now=NOW).dedupe_key

    base = key(profile, SECRET, b"evt", NOW)
    assert base != key(profile, SECRET, b"evt2", NOW)
    assert base != key(profile, SECRET, b"evt", NOW + 1)
    assert base != key(Stripe(OTHER_SECRET), OTHER_SECRET, b"evt", NOW)


# -- THREATS W1 ---------------------------------------------------------------------------------


def test_threat_W1_timestamp_301_s_old_rejected() -> None:
    """``t = now - 301`` is expired."""
    t = NOW - 301
    assert _reason(f"t={t},v1={v1(SECRET, b'body', t)}") == "expired"


def test_threat_W1_timestamp_an_hour_ahead_rejected() -> None:
    """``t = now + 3600`` is not_yet_valid (stripe-python would accept it)."""
    t = NOW + 3600
    assert _reason(f"t={t},v1={v1(SECRET, b'body', t)}") == "not_yet_valid"


def test_threat_W1_window_edges_pass() -> None:
    """300 s old and 300 s ahead both pass."""
    for t in (NOW - 300, NOW + 300):
        header = f"t={t},v1={v1(SECRET, b'body', t)}"
        assert Stripe(SECRET).verify(stripe_headers(header), b"body", now=NOW).timestamp == t


def test_threat_W1_v0_only_rejected() -> None:
    """A header with only a (test-mode) ``v0`` signature is invalid_signature, naming v0."""
    with pytest.raises(VerificationError) as info:
        Stripe(SECRET).verify(
            stripe_headers(f"t={NOW},v0={v1(SECRET, b'body', NOW)}"), b"body", now=NOW
        )
    assert info.value.reason == "invalid_signature"
    assert "v0" in info.value.detail


def test_threat_W1_conflicting_t_values_malformed() -> None:
    """Two different ``t=`` values are malformed (stripe-python silently uses the first)."""
    header = f"t={NOW},t={NOW + 1},v1={v1(SECRET, b'body', NOW)}"
    assert _reason(header) == "malformed_signature"


def test_repeated_identical_t_value_accepted() -> None:
    """The same ``t=`` twice is one timestamp."""
    header = f"t={NOW},t={NOW},v1={v1(SECRET, b'body', NOW)}"
    assert Stripe(SECRET).verify(stripe_headers(header), b"body", now=NOW).timestamp == NOW


@pytest.mark.parametrize("tolerance", [0, None, -300])
def test_threat_W1_zero_or_none_tolerance_refused(tolerance: Any) -> None:
    """Tolerance 0, None or negative (which disables stripe-python's check) is a ValueError."""
    with pytest.raises(ValueError, match="tolerance"):
        Stripe(SECRET, tolerance=tolerance)


@pytest.mark.parametrize(
    "header",
    [
        "v1=" + "a" * 64,  # no t=
        "t=1700000000",  # nothing but t: not malformed, but no v1 (see below)
        "t=1.7e9,v1=" + "a" * 64,
        "t=1700000000.0,v1=" + "a" * 64,
        "t=,v1=" + "a" * 64,
        "t=1700000000,v1=",
        "t=1700000000,v1",
        "t=1700000000,v1=" + "a" * 63,
        "t=1700000000,v1=" + "g" * 64,
        "t=1700000000,v1=" + "a" * 65,
        "garbage",
    ],
)
def test_malformed_headers_are_400_or_no_v1(header: str) -> None:
    """Broken syntax is malformed_signature; a header with no v1 at all is invalid_signature."""
    expected = "invalid_signature" if header == "t=1700000000" else "malformed_signature"
    assert _reason(header) == expected


@pytest.mark.parametrize(
    "other", ["v0=abc", "v1_beta=abc", "V1=abc", "s" * 40 + "=x", "", "garbage", "v2"]
)
def test_items_of_other_schemes_are_ignored_whatever_their_shape(other: str) -> None:
    """Only t and v1 are read, as Stripe's libraries do ("ignore other schemes"): any
    other item beside a valid v1 passes, and with no v1 the answer is 401, not 400."""
    good = v1(SECRET, b"body", NOW)
    header = f"t={NOW},{other},v1={good}"
    assert Stripe(SECRET).verify(stripe_headers(header), b"body", now=NOW).timestamp == NOW
    assert _reason(f"t={NOW},{other}") == "invalid_signature"


def test_more_than_eight_v1_values_malformed() -> None:
    """Nine v1 values exceed the cap of 8: malformed, before any MAC."""
    good = v1(SECRET, b"body", NOW)
    assert _reason(f"t={NOW}," + ",".join([f"v1={good}"] * 9)) == "malformed_signature"
    header = f"t={NOW}," + ",".join([f"v1={v1(OTHER_SECRET, b'body', NOW)}"] * 7 + [f"v1={good}"])
    assert Stripe(SECRET).verify(stripe_headers(header), b"body", now=NOW).secret_index == 0


def test_dedupe_ttl_covers_the_window_both_ways() -> None:
    """dedupe_ttl is 2 x tolerance + 60 s; no body cap of its own."""
    profile = Stripe(SECRET)
    assert profile.dedupe_ttl == 660
    assert profile.max_body_size is None


def test_retry_is_resigned_so_dedupe_key_differs_but_replay_matches() -> None:
    """A Stripe retry (new t, new v1) has a new key; a replay of the same request has the same."""
    profile = Stripe(SECRET)
    first = f"t={NOW},v1={v1(SECRET, b'evt', NOW)}"
    retry = f"t={NOW + 60},v1={v1(SECRET, b'evt', NOW + 60)}"
    a = profile.verify(stripe_headers(first), b"evt", now=NOW)
    b = profile.verify(stripe_headers(first), b"evt", now=NOW + 10)
    c = profile.verify(stripe_headers(retry), b"evt", now=NOW + 60)
    assert a.dedupe_key == b.dedupe_key != c.dedupe_key


# -- THREATS W2, W7 -----------------------------------------------------------------------------


def test_threat_W2_stripe_secret_is_text_not_base64() -> None:
    """A Stripe signature fails under a Standard Webhooks profile with the same whsec_ secret."""
    import base64  # noqa: PLC0415

    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = b"{}"
    header = f"t={NOW},v1={v1(secret, body, NOW)}"
    assert Stripe(secret).verify(stripe_headers(header), body, now=NOW).scheme == "stripe"
    sw = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": "v1,"
        + base64.b64encode(bytes.fromhex(v1(secret, body, NOW))).decode(),
    }
    with pytest.raises(VerificationError) as info:
        StandardWebhooks(secret).verify(sw, body, now=NOW)
    assert info.value.reason == "invalid_signature"


def test_threat_W7_stripe_payload_posted_to_github_profile_rejected() -> None:
    """A Stripe-signed request fails the GitHub profile with missing_signature."""
    header = f"t={NOW},v1={v1(SECRET, b'body', NOW)}"
    with pytest.raises(VerificationError) as info:
        GitHub(SECRET).verify(stripe_headers(header) | {"X-GitHub-Delivery": "d"}, b"body")
    assert info.value.reason == "missing_signature"


def test_threat_W7_stripe_mac_in_github_header_rejected() -> None:
    """A Stripe v1 copied into X-Hub-Signature-256 fails: it covers ``{t}.{body}``, not the body."""
    headers = {
        "X-Hub-Signature-256": "sha256=" + v1(SECRET, b"body", NOW),
        "X-GitHub-Delivery": "d",
    }
    with pytest.raises(VerificationError) as info:
        GitHub(SECRET).verify(headers, b"body")
    assert info.value.reason == "invalid_signature"


# -- stripe-python interop ----------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(payload=st.text(max_size=300), t=st.integers(min_value=NOW - 300, max_value=NOW + 300))
def test_interop_stripe_generate_signature_header_is_accepted(payload: str, t: int) -> None:
    """Whatever ``stripe.WebhookSignature.generate_signature_header`` makes, we accept."""
    import stripe  # noqa: PLC0415

    header = stripe.WebhookSignature.generate_signature_header(payload, SECRET, timestamp=t)
    result = Stripe(SECRET).verify(stripe_headers(header), payload.encode(), now=NOW)
    assert result.timestamp == t


def test_interop_stripe_vector_header_is_what_stripe_generates() -> None:
    """stripe-python produces the vector's header byte for byte."""
    import stripe  # noqa: PLC0415

    header = stripe.WebhookSignature.generate_signature_header(
        ST["payload"], ST["secret"], timestamp=ST["timestamp"]
    )
    assert header == ST["header"]


@pytest.mark.parametrize("body", [b"\xff\xfe", b'{"a":"\xc3"}'])
def test_non_utf8_body_is_verified_as_bytes(body: bytes) -> None:
    """A body that is not UTF-8 (stripe-python raises UnicodeDecodeError) is MACed as bytes."""
    header = f"t={NOW},v1={v1(SECRET, body, NOW)}"
    assert Stripe(SECRET).verify(stripe_headers(header), body, now=NOW).scheme == "stripe"


def test_stripe_secret_must_be_text() -> None:
    """A bytes secret is a TypeError: Stripe secrets are text used as UTF-8."""
    with pytest.raises(TypeError, match="text"):
        Stripe(b"whsec_x")  # type: ignore[arg-type]
