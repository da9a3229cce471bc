"""Standard Webhooks (and Svix) profile: vectors, THREATS W2/W5/W6, vendor interop, fuzzing.

Also home of :class:`WebhookProfileContract`, the behaviour every profile shares;
each profile's test module runs it through a subclass.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _vectors import load_vector
from hmacguard import VerificationError
from hmacguard.webhooks import StandardWebhooks, Stripe, VerifiedWebhook, WebhookProfile

VECTORS = load_vector("webhooks.json")
SW = VECTORS["standard_webhooks"]
NOW = 1_700_000_000
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()

header_text = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80),
    st.sampled_from(["v1", "v1,", "v1,,", "1.7e9", "1700000000.5", "-1", "", " ", "t=1,t=2"]),
)


_CONTRACT_CHECKS = [HealthCheck.too_slow, HealthCheck.differing_executors]


class WebhookProfileContract:
    """What every webhook profile must do; a subclass per profile runs these tests.

    Subclasses set ``secret``/``other_secret``, the header names ``fuzz_headers``
    and ``signature_header``, and implement ``make`` and ``sign``.
    """

    scheme: ClassVar[str]
    secret: ClassVar[Any]
    other_secret: ClassVar[Any]
    signature_header: ClassVar[str]
    fuzz_headers: ClassVar[tuple[str, ...]]

    def make(self, secrets: Any) -> Any:
        """Build the profile under test."""
        raise NotImplementedError

    def sign(self, secret: Any, body: bytes, now: int) -> dict[str, str]:
        """Return the headers the provider would send for ``body`` at ``now``."""
        raise NotImplementedError

    def test_contract_valid_delivery_verifies(self) -> None:
        """A delivery signed with the configured secret verifies and says which scheme."""
        profile = self.make(self.secret)
        headers = self.sign(self.secret, b'{"a": 1}', NOW)
        profile.check_headers(headers, now=NOW)
        result = profile.verify(headers, b'{"a": 1}', now=NOW)
        assert isinstance(result, VerifiedWebhook)
        assert result.scheme == self.scheme == profile.scheme
        assert result.secret_index == 0
        assert result.dedupe_key

    def test_contract_profile_satisfies_protocol(self) -> None:
        """The profile is a runtime ``WebhookProfile`` with a positive ``dedupe_ttl``."""
        profile = self.make(self.secret)
        assert isinstance(profile, WebhookProfile)
        assert profile.dedupe_ttl > 0

    def test_contract_tampered_body_is_invalid_signature(self) -> None:
        """One changed body byte fails with invalid_signature (401)."""
        profile = self.make(self.secret)
        headers = self.sign(self.secret, b'{"a": 1}', NOW)
        with pytest.raises(VerificationError) as info:
            profile.verify(headers, b'{"a": 2}', now=NOW)
        assert info.value.reason == "invalid_signature"
        assert info.value.status == 401

    def test_contract_wrong_secret_is_invalid_signature(self) -> None:
        """A delivery signed with another secret fails with invalid_signature."""
        profile = self.make(self.secret)
        headers = self.sign(self.other_secret, b"body", NOW)
        with pytest.raises(VerificationError) as info:
            profile.verify(headers, b"body", now=NOW)
        assert info.value.reason == "invalid_signature"

    def test_contract_no_headers_is_missing_signature(self) -> None:
        """A request without the scheme's headers fails with missing_signature (401)."""
        profile = self.make(self.secret)
        with pytest.raises(VerificationError) as info:
            profile.verify({"content-type": "application/json"}, b"{}", now=NOW)
        assert info.value.reason == "missing_signature"
        assert info.value.status == 401

    def test_contract_rotation_any_secret_passes(self) -> None:
        """With two secrets configured, a delivery under the second passes with secret_index 1."""
        profile = self.make([self.other_secret, self.secret])
        headers = self.sign(self.secret, b"body", NOW)
        assert profile.verify(headers, b"body", now=NOW).secret_index == 1

    def test_contract_empty_secret_list_refused(self) -> None:
        """No secret at all is a configuration error."""
        with pytest.raises(ValueError, match="no"):
            self.make([])

    def test_contract_secret_never_in_repr_or_errors(self) -> None:
        """Neither repr nor any error message shows the secret or the expected MAC."""
        profile = self.make(self.secret)
        assert str(self.secret) not in repr(profile)
        headers = self.sign(self.other_secret, b"body", NOW)
        good = self.sign(self.secret, b"body", NOW)
        with pytest.raises(VerificationError) as info:
            profile.verify(headers, b"body", now=NOW)
        text = f"{info.value!s} {info.value!r} {info.value.detail}"
        assert str(self.secret) not in text
        assert good[self.signature_header] not in text

    def test_contract_repeated_header_with_different_values_is_malformed(self) -> None:
        """The signature header sent twice with different values is malformed (400)."""
        profile = self.make(self.secret)
        headers = list(self.sign(self.secret, b"body", NOW).items())
        other = self.sign(self.other_secret, b"body", NOW)[self.signature_header]
        headers.append((self.signature_header, other))
        with pytest.raises(VerificationError) as info:
            profile.verify(headers, b"body", now=NOW)
        assert info.value.reason == "malformed_signature"
        assert info.value.status == 400

    def test_contract_repeated_identical_header_is_accepted(self) -> None:
        """The same header line twice (a proxy duplicating it) is one value."""
        profile = self.make(self.secret)
        headers = list(self.sign(self.secret, b"body", NOW).items())
        headers.append((self.signature_header, dict(headers)[self.signature_header]))
        assert profile.verify(headers, b"body", now=NOW).scheme == self.scheme

    def test_contract_non_ascii_header_bytes_are_malformed(self) -> None:
        """Header bytes that are not ASCII (or not UTF-8) are malformed, never a crash."""
        profile = self.make(self.secret)
        signed = self.sign(self.secret, b"body", NOW)
        headers = [(k.encode(), v.encode()) for k, v in signed.items()]
        headers = [
            (k, v + b"\xff" if k == self.signature_header.encode() else v) for k, v in headers
        ]
        with pytest.raises(VerificationError) as info:
            profile.verify(headers, b"body", now=NOW)
        assert info.value.reason == "malformed_signature"

    def test_contract_headers_any_case_and_bytes(self) -> None:
        """Header names in any case, as str or bytes pairs, verify the same."""
        profile = self.make(self.secret)
        signed = self.sign(self.secret, b"body", NOW)
        pairs = [(k.upper().encode(), v.encode()) for k, v in signed.items()]
        assert profile.verify(pairs, b"body", now=NOW).scheme == self.scheme

    def test_contract_text_body_refused(self) -> None:
        """A str body is a programming error (TypeError): the MAC is over raw bytes."""
        profile = self.make(self.secret)
        with pytest.raises(TypeError, match="raw bytes"):
            profile.verify(self.sign(self.secret, b"body", NOW), "body", now=NOW)

    def test_threat_W6_raw_body_with_odd_json_verifies(self) -> None:
        """A JSON body with odd whitespace, key order and \\u escapes verifies on its raw bytes."""
        body = b'{ "z" :1,\n\t"a":"caf\\u00e9" ,"m":[ 1 ,2 ]}  '
        assert json.dumps(json.loads(body)).encode() != body
        profile = self.make(self.secret)
        assert profile.verify(self.sign(self.secret, body, NOW), body, now=NOW).scheme

    # Each profile's subclass runs these: one function, several executors, by design.
    @settings(max_examples=150, deadline=None, suppress_health_check=_CONTRACT_CHECKS)
    @given(data=st.data(), body=st.binary(max_size=64))
    def test_fuzz_any_header_values_give_only_400_or_401(self, data: Any, body: bytes) -> None:
        """Random values in the scheme's headers and a random body give only 400/401 leaves."""
        profile = self.make(self.secret)
        headers: list[tuple[Any, Any]] = []
        for name in self.fuzz_headers:
            if data.draw(st.booleans()):
                value = data.draw(header_text)
                headers.append(
                    (name.encode(), value) if isinstance(value, bytes) else (name, value)
                )
        headers = [
            (k.encode() if isinstance(v, bytes) and isinstance(k, str) else k, v)
            for k, v in headers
        ]
        with pytest.raises(VerificationError) as info:
            profile.verify(headers, body, now=NOW)
        assert info.value.status in (400, 401)
        assert type(info.value) is not VerificationError

    @settings(max_examples=100, deadline=None, suppress_health_check=_CONTRACT_CHECKS)
    @given(body=st.binary(max_size=256), flip=st.integers(min_value=0))
    def test_fuzz_any_flipped_body_byte_is_rejected(self, body: bytes, flip: int) -> None:
        """Flipping any one byte of any body is detected (invalid_signature)."""
        profile = self.make(self.secret)
        headers = self.sign(self.secret, body, NOW)
        assert profile.verify(headers, body, now=NOW).scheme == self.scheme
        if not body:
            return
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        with pytest.raises(VerificationError) as info:
            profile.verify(headers, tampered, now=NOW)
        assert info.value.reason == "invalid_signature"


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sw_sign(
    secret: str, body: bytes, now: int, msg_id: str = "msg_1", prefix: str = "webhook"
) -> dict[str, str]:
    """Sign as the Standard Webhooks spec says, with the stdlib only."""
    mac = hmac.new(_key(secret), f"{msg_id}.{now}.".encode() + body, hashlib.sha256).digest()
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(now),
        f"{prefix}-signature": "v1," + base64.b64encode(mac).decode(),
    }


def _reason(
    profile: StandardWebhooks, headers: Any, body: bytes = b"body", now: float = NOW
) -> str:
    with pytest.raises(VerificationError) as info:
        profile.verify(headers, body, now=now)
    assert info.value.status in (400, 401)
    return info.value.reason


class TestStandardWebhooksContract(WebhookProfileContract):
    """The shared profile contract, for Standard Webhooks."""

    scheme = "standard-webhooks"
    secret = SECRET
    other_secret = OTHER_SECRET
    signature_header = "webhook-signature"
    fuzz_headers = ("webhook-id", "webhook-timestamp", "webhook-signature", "svix-signature")

    def make(self, secrets: Any) -> StandardWebhooks:
        """Build a StandardWebhooks profile."""
        return StandardWebhooks(secrets)

    def sign(self, secret: Any, body: bytes, now: int) -> dict[str, str]:
        """Sign with the stdlib, as the spec describes."""
        return sw_sign(secret, body, now)


# -- vectors (VECTORS.md section 6) -----------------------------------------------------------


def _vector_headers(signature: str) -> dict[str, str]:
    return {
        "webhook-id": SW["msg_id"],
        "webhook-timestamp": str(SW["timestamp"]),
        "webhook-signature": signature,
    }


def test_vector_standard_webhooks_sign_function() -> None:
    """The standard-webhooks libraries' test_sign_function vector verifies."""
    profile = StandardWebhooks(SW["secret"])
    result = profile.verify(
        _vector_headers(SW["expected"]), SW["payload"].encode(), now=SW["timestamp"]
    )
    assert result == VerifiedWebhook(
        "standard-webhooks", SW["msg_id"], SW["timestamp"], SW["msg_id"], 0
    )


def test_vector_standard_webhooks_signed_content_is_id_timestamp_body() -> None:
    """The signed content of the vector is exactly ``{id}.{timestamp}.{body}``."""
    mac = hmac.new(_key(SW["secret"]), SW["signed"].encode(), hashlib.sha256).digest()
    assert "v1," + base64.b64encode(mac).decode() == SW["expected"]


def test_vector_standard_webhooks_negative() -> None:
    """The vector with its last base64 character changed fails."""
    profile = StandardWebhooks(SW["secret"])
    assert _reason(
        profile, _vector_headers(SW["negative"]), SW["payload"].encode(), SW["timestamp"]
    ) == ("invalid_signature")


def test_vector_standard_webhooks_multi_signature_skips_unknown_versions() -> None:
    """v1 garbage, a v2 entry, the valid v1 and v1 garbage again: passes."""
    first = SW["multi_prefix"].split()[0]
    header = f"{SW['multi_prefix']} {SW['expected']} {first}"
    profile = StandardWebhooks(SW["secret"])
    assert (
        profile.verify(
            _vector_headers(header), SW["payload"].encode(), now=SW["timestamp"]
        ).secret_index
        == 0
    )


def test_vector_standard_webhooks_unpadded_secret_accepted() -> None:
    """A secret whose base64 lacks two '=' is accepted and matches the vendor library."""
    from standardwebhooks.webhooks import Webhook  # noqa: PLC0415

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr"  # 34 characters: 25 bytes
    stamp = datetime.fromtimestamp(NOW, tz=timezone.utc)
    signature = Webhook(secret).sign("msg_x", stamp, "hi")
    headers = {"webhook-id": "msg_x", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    assert StandardWebhooks(secret).verify(headers, b"hi", now=NOW).delivery_id == "msg_x"


def test_vector_standard_webhooks_unpadded_short_secret_refused() -> None:
    """The vector's one-'=' secret decodes to 23 bytes: below the spec's 24, so refused."""
    with pytest.raises(ValueError, match="not 23"):
        StandardWebhooks("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS")


def test_svix_header_names_accepted() -> None:
    """The svix-id/svix-timestamp/svix-signature names verify like webhook-*."""
    profile = StandardWebhooks(SECRET)
    headers = sw_sign(SECRET, b"body", NOW, prefix="svix")
    assert profile.verify(headers, b"body", now=NOW).delivery_id == "msg_1"


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [0, None, -1, float("nan")])
def test_threat_W1_zero_or_none_tolerance_refused(tolerance: Any) -> None:
    """A tolerance that would disable the freshness check is a ValueError."""
    with pytest.raises(ValueError, match="tolerance"):
        StandardWebhooks(SECRET, tolerance=tolerance)


@pytest.mark.parametrize("raw", [b"k" * 23, b"k" * 65])
def test_secret_outside_24_to_64_bytes_refused(raw: bytes) -> None:
    """A key shorter than 24 or longer than 64 bytes is refused, as the spec says."""
    with pytest.raises(ValueError, match="24 to 64"):
        StandardWebhooks("whsec_" + base64.b64encode(raw).decode())


def test_secret_not_base64_refused_without_quoting_it() -> None:
    """A secret that is not base64 is a ValueError that does not show the secret."""
    with pytest.raises(ValueError, match="base64") as info:
        StandardWebhooks("whsec_not*base64*at*all*here")
    assert "not*base64" not in str(info.value)


def test_dedupe_ttl_covers_the_window_both_ways() -> None:
    """dedupe_ttl is 2 x tolerance + 60 s; there is no body cap of its own."""
    profile = StandardWebhooks(SECRET, tolerance=120)
    assert profile.dedupe_ttl == 300
    assert profile.max_body_size is None


# -- THREATS W5 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "v1",
        "v1,",
        "v1,,",
        "v1,abc",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",
        "v1 ,x",
    ],
)
def test_threat_W5_empty_or_truncated_v1_is_malformed(signature: str) -> None:
    """``v1``, ``v1,`` (CVE-2024-21491), ``v1,,`` and truncated values are rejected as malformed."""
    headers = sw_sign(SECRET, b"body", NOW) | {"webhook-signature": signature}
    assert _reason(StandardWebhooks(SECRET), headers) == "malformed_signature"


@pytest.mark.parametrize("other", ["v1a,abc", "V2,abc", "v2,a,b", "v1b_x,abc", ",abc", "V1,x"])
def test_entries_of_other_versions_are_skipped_whatever_their_shape(other: str) -> None:
    """Only v1 entries are read, as the spec's libraries do: an entry of another
    version (a future one, in any spelling) beside a valid v1 passes, and alone
    it is no signature at all (401), never a 400 that would block the v1."""
    good = sw_sign(SECRET, b"body", NOW)
    headers = good | {"webhook-signature": f"{other} {good['webhook-signature']}"}
    assert StandardWebhooks(SECRET).verify(headers, b"body", now=NOW).delivery_id == "msg_1"
    alone = good | {"webhook-signature": other}
    assert _reason(StandardWebhooks(SECRET), alone) == "invalid_signature"


def test_threat_W5_old_key_valid_new_key_garbage_passes() -> None:
    """During rotation, a valid old-key entry next to a wrong new-key entry passes."""
    good = sw_sign(SECRET, b"body", NOW)
    wrong = sw_sign(OTHER_SECRET, b"garbage", NOW)["webhook-signature"]
    headers = good | {"webhook-signature": f"{wrong} {good['webhook-signature']}"}
    assert StandardWebhooks(SECRET).verify(headers, b"body", now=NOW).secret_index == 0


def test_threat_W5_fifty_entries_are_capped() -> None:
    """A list of 50 entries (more than 8) is malformed before any MAC is computed."""
    good = sw_sign(SECRET, b"body", NOW)
    headers = good | {"webhook-signature": " ".join([good["webhook-signature"]] * 50)}
    assert _reason(StandardWebhooks(SECRET), headers) == "malformed_signature"


def test_threat_W5_eight_entries_are_examined() -> None:
    """Exactly 8 entries are examined, the valid one last."""
    good = sw_sign(SECRET, b"body", NOW)
    wrong = sw_sign(OTHER_SECRET, b"body", NOW)["webhook-signature"]
    headers = good | {"webhook-signature": " ".join([wrong] * 7 + [good["webhook-signature"]])}
    assert StandardWebhooks(SECRET).verify(headers, b"body", now=NOW).scheme == "standard-webhooks"


def test_threat_W5_v1a_only_with_hmac_secret_rejected() -> None:
    """Only an ed25519 ``v1a`` entry, with an HMAC secret, is invalid_signature."""
    headers = sw_sign(SECRET, b"body", NOW) | {
        "webhook-signature": "v1a," + base64.b64encode(b"x" * 64).decode()
    }
    with pytest.raises(VerificationError) as info:
        StandardWebhooks(SECRET).verify(headers, b"body", now=NOW)
    assert info.value.reason == "invalid_signature"
    assert "v1a" in info.value.detail


@pytest.mark.parametrize(
    "timestamp", ["1.7e9", "1700000000.5", "abc", "-1700000000", "+1700000000", "0x65", "1" * 16]
)
def test_threat_W5_non_digit_timestamp_is_malformed(timestamp: str) -> None:
    """Fractional, exponent, signed, hex or over-long timestamps are malformed."""
    headers = sw_sign(SECRET, b"body", NOW) | {"webhook-timestamp": timestamp}
    assert _reason(StandardWebhooks(SECRET), headers) == "malformed_signature"


def test_threat_W5_webhook_id_with_dot_is_malformed() -> None:
    """A ``webhook-id`` holding ``.`` could shift the signed content: malformed."""
    headers = sw_sign(SECRET, b"body", NOW, msg_id="msg.1")
    assert _reason(StandardWebhooks(SECRET), headers) == "malformed_signature"


def test_threat_W5_same_webhook_id_gives_same_dedupe_key() -> None:
    """Two deliveries with one webhook-id share a dedupe key (the middleware drops the second)."""
    profile = StandardWebhooks(SECRET)
    first = profile.verify(sw_sign(SECRET, b"a", NOW, msg_id="msg_7"), b"a", now=NOW)
    second = profile.verify(sw_sign(SECRET, b"b", NOW + 5, msg_id="msg_7"), b"b", now=NOW + 5)
    assert first.dedupe_key == second.dedupe_key == "msg_7"


def test_dedupe_key_depends_on_neither_the_signature_list_nor_the_secret() -> None:
    """One delivery (a signed webhook-id) has one key: v1 entries reordered, dropped or
    padded with other versions, signed under either secret, or sent as svix-* headers."""
    profile = StandardWebhooks([SECRET, OTHER_SECRET])
    new = sw_sign(SECRET, b"e", NOW, msg_id="msg_9")["webhook-signature"]
    old = sw_sign(OTHER_SECRET, b"e", NOW, msg_id="msg_9")["webhook-signature"]
    lists = [f"{new} {old}", f"{old} {new}", old, new, f"v1a,{'A' * 86}== {old}  "]
    keys = set()
    for signature in lists:
        for prefix in ("webhook", "svix"):
            headers = {
                f"{prefix}-id": "msg_9",
                f"{prefix}-timestamp": str(NOW),
                f"{prefix}-signature": signature,
            }
            keys.add(profile.verify(headers, b"e", now=NOW).dedupe_key)
    assert keys == {"msg_9"}


def test_threat_W5_timestamp_window_both_directions() -> None:
    """301 s old is expired, 301 s ahead is not_yet_valid, 300 s either way passes."""
    profile = StandardWebhooks(SECRET)
    headers = sw_sign(SECRET, b"body", NOW)
    assert _reason(profile, headers, now=NOW + 301) == "expired"
    assert _reason(profile, headers, now=NOW - 301) == "not_yet_valid"
    assert profile.verify(headers, b"body", now=NOW + 300).timestamp == NOW
    assert profile.verify(headers, b"body", now=NOW - 300).timestamp == NOW


def test_check_headers_rejects_stale_request_before_the_body() -> None:
    """check_headers alone rejects a stale timestamp (the body need not be read)."""
    with pytest.raises(VerificationError) as info:
        StandardWebhooks(SECRET).check_headers(sw_sign(SECRET, b"", NOW), now=NOW + 1000)
    assert info.value.reason == "expired"


def test_missing_one_header_names_it() -> None:
    """A missing webhook-timestamp is missing_signature, and the detail names it."""
    headers = sw_sign(SECRET, b"body", NOW)
    del headers["webhook-timestamp"]
    with pytest.raises(VerificationError) as info:
        StandardWebhooks(SECRET).verify(headers, b"body", now=NOW)
    assert info.value.reason == "missing_signature"
    assert "webhook-timestamp" in info.value.detail


# -- THREATS W2, W7 -----------------------------------------------------------------------------


def test_threat_W2_standard_secret_is_base64_decoded_not_text() -> None:
    """A signature keyed with the whsec_ text (Stripe's way) fails under the SW profile."""
    mac = hmac.new(SECRET.encode(), f"msg_1.{NOW}.body".encode(), hashlib.sha256).digest()
    headers = sw_sign(SECRET, b"body", NOW) | {
        "webhook-signature": "v1," + base64.b64encode(mac).decode()
    }
    assert _reason(StandardWebhooks(SECRET), headers) == "invalid_signature"


def test_threat_W7_standard_webhook_posted_to_stripe_profile_rejected() -> None:
    """A Standard Webhooks delivery is missing_signature for the Stripe profile."""
    with pytest.raises(VerificationError) as info:
        Stripe(SECRET).verify(sw_sign(SECRET, b"body", NOW), b"body", now=NOW)
    assert info.value.reason == "missing_signature"


# -- vendor interop -----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(body=st.text(max_size=200), msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,30}", fullmatch=True))
def test_interop_standardwebhooks_sign_is_accepted(body: str, msg_id: str) -> None:
    """Whatever ``standardwebhooks.Webhook.sign`` produces, our profile accepts."""
    from standardwebhooks.webhooks import Webhook  # noqa: PLC0415

    stamp = datetime.fromtimestamp(NOW, tz=timezone.utc)
    signature = Webhook(SECRET).sign(msg_id, stamp, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(NOW), "webhook-signature": signature}
    assert StandardWebhooks(SECRET).verify(headers, body.encode(), now=NOW).delivery_id == msg_id


def test_interop_svix_sign_is_accepted() -> None:
    """A signature made by ``svix.webhooks.Webhook.sign`` verifies under svix-* names."""
    from svix.webhooks import Webhook  # noqa: PLC0415

    stamp = datetime.fromtimestamp(NOW, tz=timezone.utc)
    body = '{"type":"contact.created","data":{"id":"1"}}'
    signature = Webhook(SECRET).sign("msg_svix", stamp, body)
    headers = {"svix-id": "msg_svix", "svix-timestamp": str(NOW), "svix-signature": signature}
    assert (
        StandardWebhooks(SECRET).verify(headers, body.encode(), now=NOW).delivery_id == "msg_svix"
    )


@pytest.mark.parametrize("body", [b"\xff\xfe not utf-8", b"\x80"])
def test_non_utf8_body_verifies_on_raw_bytes(body: bytes) -> None:
    """A body that is not UTF-8 (which crashes the vendor library) is MACed as bytes."""
    profile = StandardWebhooks(SECRET)
    assert profile.verify(sw_sign(SECRET, body, NOW), body, now=NOW).scheme == "standard-webhooks"
    with pytest.raises(VerificationError) as info:
        profile.verify(sw_sign(SECRET, body, NOW), body + b"!", now=NOW)
    assert info.value.reason == "invalid_signature"


@pytest.mark.parametrize("make", ["standard", "stripe", "slack"])
def test_threat_T4_a_tolerance_over_15_minutes_needs_an_explicit_override(make: str) -> None:
    """tolerance=10**9 (a window of decades) was accepted, with a dedupe_ttl to match:
    over 900 s is refused unless allow_long_tolerance=True, as the core's max_age is."""
    from hmacguard.webhooks import Slack  # noqa: PLC0415  (this test only)

    profile: Any = {"standard": StandardWebhooks, "stripe": Stripe, "slack": Slack}[make]
    secret = SECRET if make == "standard" else "whsec_or_slack_signing_secret_0123"
    assert profile(secret, tolerance=900).tolerance == 900
    for too_long in (901, 3_600, 10**9):
        with pytest.raises(ValueError, match="allow_long_tolerance=True"):
            profile(secret, tolerance=too_long)
    long = profile(secret, tolerance=3_600, allow_long_tolerance=True)
    assert long.tolerance == 3_600
    assert long.dedupe_ttl == 2 * 3_600 + 60
