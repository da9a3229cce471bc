"""Errors: the tree, each leaf's reason and status, and that no error leaks a secret.

RFC 9421 §8.3: an error that echoes the expected signature or the signature base is an
oracle. The leak tests run failing verifications and search everything an exception
shows (str, repr, detail, args, attributes, and its ``__cause__``/``__context__``
chain) for the secrets, the Signature value, the MAC the verifier expected (computed
here independently) and every line of the signature base (built here by hand).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest

import hmacguard
from hmacguard import (
    BodyTimeout,
    BodyTooLarge,
    DigestMismatch,
    Expired,
    HMACKey,
    InsufficientCoverage,
    InvalidParameters,
    InvalidSignature,
    KeyLookupFailed,
    MalformedDigest,
    MalformedRequest,
    MalformedSignature,
    MissingSignature,
    NonceStoreUnavailable,
    NotYetValid,
    Replayed,
    Signer,
    UnknownKey,
    VerificationError,
    VerificationUnavailable,
    Verifier,
)

LEAVES: list[tuple[type[VerificationError], str, int]] = [
    (MissingSignature, "missing_signature", 401),
    (MalformedSignature, "malformed_signature", 400),
    (InvalidParameters, "invalid_parameters", 401),
    (Expired, "expired", 401),
    (NotYetValid, "not_yet_valid", 401),
    (UnknownKey, "unknown_key", 401),
    (InvalidSignature, "invalid_signature", 401),
    (InsufficientCoverage, "insufficient_coverage", 401),
    (MalformedDigest, "malformed_digest", 400),
    (DigestMismatch, "digest_mismatch", 401),
    (Replayed, "replayed", 401),
    (BodyTooLarge, "body_too_large", 413),
    (BodyTimeout, "body_timeout", 408),
    (KeyLookupFailed, "key_lookup_failed", 503),
    (MalformedRequest, "malformed_request", 400),
    (NonceStoreUnavailable, "nonce_store_unavailable", 503),
    (VerificationUnavailable, "verification_unavailable", 503),
]


# -- the tree ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "reason", "status"), LEAVES, ids=lambda v: getattr(v, "__name__", None)
)
def test_leaf_reason_and_status(cls: type[VerificationError], reason: str, status: int) -> None:
    """Each leaf carries its stable reason code and HTTP status, on the class and instances."""
    assert (cls.reason, cls.status) == (reason, status)
    exc = cls()
    assert (exc.reason, exc.status) == (reason, status)
    assert exc.detail == reason.replace("_", " ")
    assert str(exc) == f"{reason}: {reason.replace('_', ' ')}"


def test_every_leaf_is_a_verification_error() -> None:
    """All leaves derive directly from VerificationError, which is an Exception."""
    assert issubclass(VerificationError, Exception)
    for cls, _, _ in LEAVES:
        assert cls.__bases__ == (VerificationError,)
        with pytest.raises(VerificationError):
            raise cls("x")


def test_the_tree_has_exactly_these_leaves() -> None:
    """VerificationError has exactly the 14 documented leaves, and they have no subclasses."""
    assert set(VerificationError.__subclasses__()) == {cls for cls, _, _ in LEAVES}
    for cls, _, _ in LEAVES:
        assert cls.__subclasses__() == []


def test_reasons_are_unique() -> None:
    """No two leaves share a reason code."""
    assert len({reason for _, reason, _ in LEAVES}) == len(LEAVES)


def test_statuses_are_in_the_documented_set() -> None:
    """Statuses are only 400, 401, 408 (slow body), 413 and 503 (THREATS E2, B8)."""
    assert {status for _, _, status in LEAVES} == {400, 401, 408, 413, 503}


def test_every_error_is_exported() -> None:
    """The root and every leaf are public names of hmacguard."""
    classes: list[type[VerificationError]] = [VerificationError, *(c for c, _, _ in LEAVES)]
    for cls in classes:
        assert cls.__name__ in hmacguard.__all__
        assert getattr(hmacguard, cls.__name__) is cls


def test_root_defaults() -> None:
    """The root has a generic reason and status 401."""
    exc = VerificationError()
    assert (exc.reason, exc.status, exc.detail) == (
        "verification_failed",
        401,
        "verification failed",
    )
    assert (exc.label, exc.key_id) == (None, None)


def test_detail_label_and_key_id() -> None:
    """detail, label and key_id are kept; str shows reason and detail only."""
    exc = InvalidSignature("the MAC does not match", label="sig1", key_id="client-1")
    assert (exc.detail, exc.label, exc.key_id) == ("the MAC does not match", "sig1", "client-1")
    assert str(exc) == "invalid_signature: the MAC does not match"
    assert exc.args == ("the MAC does not match",)
    assert (
        repr(exc) == "InvalidSignature('the MAC does not match', label='sig1', key_id='client-1')"
    )


def test_repr_escapes_attacker_controlled_context() -> None:
    """label and key_id appear in repr escaped, so they cannot forge log lines."""
    exc = UnknownKey("no such key", label="a\nb", key_id="x\r\nFAKE LOG LINE")
    text = repr(exc)
    assert "\n" not in text
    assert "\r" not in text
    assert "key_id='x\\r\\nFAKE LOG LINE'" in text
    assert "FAKE" not in str(exc)


def test_repr_omits_absent_context() -> None:
    """repr lists only the context that is set."""
    assert repr(Expired("too old")) == "Expired('too old')"
    assert repr(Expired("too old", key_id="k")) == "Expired('too old', key_id='k')"


# -- no leaks ---------------------------------------------------------------------

NOW = 1_700_000_000
URL = "https://api.example/v1/items?id=1"
BODY = b'{"amount": 10}'
SECRET = b"Sup3r-S3cret-Value-0123456789-AB"
OTHER = b"0ther-S3cret-Value-9876543210-ZY"
KEY = HMACKey("client-1", SECRET)


def texts(exc: BaseException) -> str:
    """Everything an exception and its cause/context chain can show, as one string."""
    parts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current), *map(repr, current.args), *map(str, current.args)]
        parts += [repr(v) for v in getattr(current, "__dict__", {}).values()]
        parts += [str(v) for v in getattr(current, "__dict__", {}).values()]
        pending += [current.__cause__, current.__context__]
    return "\n".join(parts)


def secret_forms(secret: bytes) -> list[str]:
    """The textual forms a leaked secret could take."""
    forms = [
        secret.decode("latin-1"),
        secret.hex(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        repr(secret),
    ]
    return forms + [form[:16] for form in forms]


def mac_forms(mac: bytes) -> list[str]:
    """The textual forms of a MAC."""
    encoded = base64.b64encode(mac).decode()
    return [encoded, encoded[:16], mac.hex(), mac.hex()[:16], repr(mac)]


def hand_base(method: str, headers: dict[str, str], signature_input: str) -> list[str]:
    """The signature base lines for the default POST, built without hmacguard."""
    params = signature_input.split("=", 1)[1]
    values: dict[str, str] = {
        "@method": method,
        "@authority": "api.example",
        "@path": "/v1/items",
        "@query": "?id=1",
        **{
            name: headers[name].strip()
            for name in ("content-type", "content-digest")
            if name in headers
        },
    }
    inner = params[1 : params.index(")")]
    components = [c.strip('"') for c in inner.split(" ") if c]
    return [f'"{c}": {values[c]}' for c in components] + [f'"@signature-params": {params}']


class Scenario:
    """A failing verification: what was signed, what arrived, and who checks it."""

    def __init__(
        self,
        reason: str,
        *,
        signer_key: HMACKey = KEY,
        signer_options: dict[str, Any] | None = None,
        change: Callable[[dict[str, str]], None] = lambda headers: None,
        body: bytes = BODY,
        now: int = NOW,
        keys: Any = None,
        verifier_secret: bytes = SECRET,
    ) -> None:
        self.reason = reason
        request = {"content-type": "application/json"}
        self.signed = Signer(signer_key, **(signer_options or {})).sign(
            "POST", URL, request, BODY, now=NOW
        )
        self.sent = {**request, **{k.lower(): v for k, v in self.signed.items()}}
        self.received = dict(self.sent)
        change(self.received)
        self.body = body
        self.now = now
        self.keys = [KEY] if keys is None else keys
        self.signer_secret = signer_key.secret
        self.signer_hash = signer_key.alg.hash_name
        self.verifier_secret = verifier_secret

    def run(self) -> VerificationError:
        """Verify and return the error."""
        with pytest.raises(VerificationError) as info:
            Verifier(self.keys).verify("POST", URL, self.received, self.body, now=self.now)
        return info.value

    def forbidden(self) -> list[str]:
        """Every string that must not appear in the error."""
        sent_lines = hand_base("POST", self.sent, self.sent["signature-input"])
        signed_mac = base64.b64decode(self.sent["signature"].split("=:", 1)[1][:-1])
        # The hand-built base is right: it reproduces the signer's MAC.
        sent_base = "\n".join(sent_lines).encode()
        assert hmac.new(self.signer_secret, sent_base, self.signer_hash).digest() == signed_mac
        found = [*secret_forms(SECRET), *secret_forms(OTHER), *sent_lines, *mac_forms(signed_mac)]
        try:
            received_lines = hand_base("POST", self.received, self.received["signature-input"])
        except (KeyError, ValueError):
            received_lines = []
        for lines in (sent_lines, received_lines):
            if lines:
                base = "\n".join(lines).encode()
                found += lines
                for secret in (self.verifier_secret, OTHER, SECRET):
                    for digest in (hashlib.sha256, hashlib.sha512):
                        found += mac_forms(hmac.new(secret, base, digest).digest())
        found.append(self.sent["signature"].split("=:", 1)[1][:-1])
        return found


def _set(name: str, value: str) -> Callable[[dict[str, str]], None]:
    def change(headers: dict[str, str]) -> None:
        headers[name] = value

    return change


def _raise(key_id: str) -> HMACKey:
    raise RuntimeError("vault is down")


SCENARIOS = [
    pytest.param(
        lambda: Scenario("invalid_signature", signer_key=HMACKey("client-1", OTHER)),
        id="wrong-key",
    ),
    pytest.param(lambda: Scenario("digest_mismatch", body=b'{"amount": 99}'), id="tampered-body"),
    pytest.param(
        lambda: Scenario("invalid_signature", change=_set("content-type", "text/plain")),
        id="tampered-header",
    ),
    pytest.param(
        lambda: Scenario("invalid_signature", change=_set("content-digest", "sha-256=:AAAA:")),
        id="tampered-digest-header",
    ),
    pytest.param(
        lambda: Scenario("unknown_key", signer_key=HMACKey("nobody", SECRET)), id="unknown-key"
    ),
    pytest.param(lambda: Scenario("expired", now=NOW + 301), id="expired"),
    pytest.param(lambda: Scenario("not_yet_valid", now=NOW - 31), id="not-yet-valid"),
    pytest.param(
        lambda: Scenario(
            "malformed_signature",
            change=lambda h: h.update(signature=h["signature"][:-3] + "!:"),
        ),
        id="malformed",
    ),
    pytest.param(
        lambda: Scenario("malformed_signature", change=_set("content-type", "caf\u00e9")),
        id="non-ascii-covered",
    ),
    pytest.param(
        lambda: Scenario(
            "insufficient_coverage",
            signer_options={"components": ["@method", "@authority", "@path", "content-type"]},
        ),
        id="insufficient-coverage",
    ),
    pytest.param(
        lambda: Scenario(
            "invalid_signature",
            signer_options={"include_alg": True},  # alg="hmac-sha256", to an sha512 key
            keys=[HMACKey("client-1", SECRET * 2, "hmac-sha512")],
            verifier_secret=SECRET * 2,
        ),
        id="alg-mismatch",
    ),
    pytest.param(lambda: Scenario("key_lookup_failed", keys=_raise), id="resolver-raises"),
    pytest.param(
        lambda: Scenario("key_lookup_failed", keys=lambda key_id: HMACKey("someone-else", SECRET)),
        id="resolver-other-id",
    ),
]


@pytest.mark.parametrize("make", SCENARIOS)
def test_failed_verification_leaks_nothing(make: Callable[[], Scenario]) -> None:
    """The error and its chain hold no secret, Signature value, expected MAC or base line."""
    scenario = make()
    exc = scenario.run()
    assert exc.reason == scenario.reason
    shown = texts(exc)
    for needle in scenario.forbidden():
        assert needle not in shown, f"{exc.reason} error shows {needle!r}"


def test_resolver_exception_text_is_not_copied_into_detail() -> None:
    """A resolver's own message (which may hold vault details) stays in the chained cause."""

    def resolver(key_id: str) -> HMACKey:
        raise RuntimeError("token=abc123 for vault")

    scenario = Scenario("key_lookup_failed", keys=resolver)
    exc = scenario.run()
    assert "abc123" not in exc.detail
    assert "abc123" not in str(exc)
    assert isinstance(exc.__cause__, RuntimeError)


def test_signer_errors_leak_no_base_or_secret() -> None:
    """A Signer refusing a value says why without showing the secret or the base."""
    with pytest.raises(ValueError, match="cannot sign") as info:
        Signer(KEY, components=["@method", "x-f"]).sign(
            "POST", URL, {"x-f": "caf\u00e9"}, b"", now=NOW
        )
    shown = texts(info.value)
    for needle in secret_forms(SECRET):
        assert needle not in shown
    assert '"@method": POST' not in shown
    assert "@signature-params" not in shown
