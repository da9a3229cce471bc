"""GitHub profile: the docs' test values (VECTORS.md section 8), THREATS W3 and W7."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from _vectors import load_vector
from hmacguard import VerificationError
from hmacguard.webhooks import GitHub, Slack, VerifiedWebhook
from test_webhooks_standard import NOW, WebhookProfileContract

GH = load_vector("webhooks.json")["github"]
SECRET = "github-webhook-secret"
OTHER_SECRET = "another-github-secret"


def gh_sign(
    secret: str, body: bytes, delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
) -> dict[str, str]:
    """The headers GitHub sends, signed with the stdlib."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={mac}",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": "push",
    }


def _reason(headers: Any, body: bytes = b"body", profile: Any = None) -> str:
    with pytest.raises(VerificationError) as info:
        (profile or GitHub(SECRET)).verify(headers, body)
    assert info.value.status in (400, 401)
    return info.value.reason


class TestGitHubContract(WebhookProfileContract):
    """The shared profile contract, for GitHub."""

    scheme = "github"
    secret = SECRET
    other_secret = OTHER_SECRET
    signature_header = "X-Hub-Signature-256"
    fuzz_headers = ("X-Hub-Signature-256", "X-Hub-Signature", "X-GitHub-Delivery")

    def make(self, secrets: Any) -> GitHub:
        """Build a GitHub profile (SHA-1 allowed, so the fuzzer reaches that path too)."""
        return GitHub(secrets, allow_sha1=True)

    def sign(self, secret: Any, body: bytes, now: int) -> dict[str, str]:
        """Sign as GitHub does (no timestamp)."""
        return gh_sign(secret, body)


def test_vector_github_docs_test_values() -> None:
    """The docs' secret, payload and X-Hub-Signature-256 verify."""
    headers = {"X-Hub-Signature-256": GH["x_hub_signature_256"], "X-GitHub-Delivery": "d-1"}
    result = GitHub(GH["secret"]).verify(headers, GH["payload"].encode())
    assert result == VerifiedWebhook("github", "d-1", None, "d-1", 0)


def test_vector_github_legacy_sha1_when_enabled() -> None:
    """The SHA-1 value verifies when allow_sha1=True."""
    headers = {"X-Hub-Signature": GH["x_hub_signature"], "X-GitHub-Delivery": "d-1"}
    assert (
        GitHub(GH["secret"], allow_sha1=True).verify(headers, GH["payload"].encode()).delivery_id
        == "d-1"
    )


def test_threat_W3_sha1_only_rejected_unless_enabled() -> None:
    """Only X-Hub-Signature (SHA-1), SHA-1 not enabled: invalid_signature naming the option."""
    headers = {"X-Hub-Signature": GH["x_hub_signature"], "X-GitHub-Delivery": "d-1"}
    with pytest.raises(VerificationError) as info:
        GitHub(GH["secret"]).verify(headers, GH["payload"].encode())
    assert info.value.reason == "invalid_signature"
    assert "allow_sha1" in info.value.detail


def test_threat_W3_sha256_is_used_when_both_present() -> None:
    """With both headers, only SHA-256 counts: a wrong SHA-256 fails even if SHA-1 is right."""
    headers = {
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
        "X-Hub-Signature": GH["x_hub_signature"],
        "X-GitHub-Delivery": "d-1",
    }
    profile = GitHub(GH["secret"], allow_sha1=True)
    assert _reason(headers, GH["payload"].encode(), profile) == "invalid_signature"


def test_threat_W3_same_delivery_twice_has_same_dedupe_key() -> None:
    """A redelivery keeps its X-GitHub-Delivery, so both share the dedupe key that is stored."""
    profile = GitHub(SECRET)
    first = profile.verify(gh_sign(SECRET, b"{}", "abc"), b"{}")
    again = profile.verify(gh_sign(SECRET, b"{}", "abc"), b"{}")
    assert first.dedupe_key == again.dedupe_key == "abc"


def test_threat_W3_dedupe_ttl_is_days_not_minutes_and_configurable() -> None:
    """The delivery id is remembered for GitHub's redelivery window (the past 3 days)
    and an hour by default; the TTL is configurable."""
    assert GitHub(SECRET).dedupe_ttl == 3 * 86_400 + 3_600
    assert GitHub(SECRET, dedupe_ttl=3 * 86_400).dedupe_ttl == 259_200
    for bad in (0, -1, None):
        with pytest.raises(ValueError, match="dedupe_ttl"):
            GitHub(SECRET, dedupe_ttl=bad)  # type: ignore[arg-type]


def test_threat_W3_body_cap_is_githubs_25_mb() -> None:
    """The profile's body cap is 25 MiB (covers GitHub's 25 MB cap), configurable or None."""
    assert GitHub(SECRET).max_body_size == 25 * 1024 * 1024 >= 25_000_000
    assert GitHub(SECRET, max_body_size=1024).max_body_size == 1024
    assert GitHub(SECRET, max_body_size=None).max_body_size is None
    with pytest.raises(ValueError, match="max_body_size"):
        GitHub(SECRET, max_body_size=0)


def test_threat_W3_delivery_id_required() -> None:
    """A valid signature without X-GitHub-Delivery is missing_signature: it cannot be deduped."""
    headers = gh_sign(SECRET, b"body")
    del headers["X-GitHub-Delivery"]
    with pytest.raises(VerificationError) as info:
        GitHub(SECRET).verify(headers, b"body")
    assert info.value.reason == "missing_signature"
    assert "X-GitHub-Delivery" in info.value.detail


def test_over_long_delivery_id_malformed() -> None:
    """A delivery id over 256 characters is malformed (it would be a store key)."""
    assert _reason(gh_sign(SECRET, b"body", "d" * 257)) == "malformed_signature"


@pytest.mark.parametrize(
    "value",
    [
        "sha256=",
        "sha256",
        "sha256=" + "a" * 63,
        "sha256=" + "z" * 64,
        "SHA256=" + "a" * 64,
        "sha1=" + "a" * 40,
    ],
)
def test_malformed_signature_values(value: str) -> None:
    """A value that is not ``sha256=`` + 64 hex digits is malformed."""
    headers = gh_sign(SECRET, b"body") | {"X-Hub-Signature-256": value}
    assert _reason(headers) == "malformed_signature"


def test_hex_compared_case_insensitively() -> None:
    """Upper-case hex digits verify."""
    headers = gh_sign(SECRET, b"body")
    headers["X-Hub-Signature-256"] = "sha256=" + headers["X-Hub-Signature-256"][7:].upper()
    assert GitHub(SECRET).verify(headers, b"body").scheme == "github"


def test_check_headers_ignores_now() -> None:
    """GitHub signs no time, so check_headers passes whatever ``now`` is."""
    GitHub(SECRET).check_headers(gh_sign(SECRET, b""), now=0)
    assert GitHub(SECRET).verify(gh_sign(SECRET, b""), b"", now=NOW * 10).timestamp is None


def test_threat_W7_slack_request_posted_to_github_profile_rejected() -> None:
    """A Slack-signed request fails the GitHub profile with missing_signature, and vice versa."""
    mac = hmac.new(SECRET.encode(), f"v0:{NOW}:body".encode(), hashlib.sha256).hexdigest()
    slack = {"X-Slack-Signature": f"v0={mac}", "X-Slack-Request-Timestamp": str(NOW)}
    assert _reason(slack) == "missing_signature"
    with pytest.raises(VerificationError) as info:
        Slack(SECRET).verify(gh_sign(SECRET, b"body"), b"body", now=NOW)
    assert info.value.reason == "missing_signature"


def test_large_body_verifies_without_copy_semantics_changing() -> None:
    """A 5 MB body verifies (the MAC is fed the raw bytes)."""
    body = bytes(range(256)) * 20_000
    assert GitHub(SECRET).verify(gh_sign(SECRET, body), body).scheme == "github"
