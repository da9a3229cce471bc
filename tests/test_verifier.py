"""Verifier policy and API: reason codes, key resolvers, configuration and inputs.

The attack-driven cases live in test_threats_core.py; this module covers the rest of
the contract: every reason the core can raise with its status, sync and async key
resolution, constructor validation, the required-components policy, how bodies,
bytes and repeated header lines are accepted, and the VerifiedSignature it returns.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from hmacguard import (
    DEFAULT_REQUIRED_COMPONENTS,
    HMACKey,
    KeyLookupFailed,
    Keyring,
    MissingSignature,
    Signer,
    VerificationError,
    VerifiedSignature,
    Verifier,
    make_content_digest,
)

Headers = list[tuple[str, str]]

NOW = 1_700_000_000
URL = "https://api.example/v1/items?id=1"
BODY = b'{"amount": 10}'
KEY = HMACKey("client-1", b"k" * 32)
CT: Headers = [("content-type", "application/json")]
BASE4 = ["@method", "@authority", "@path", "@query"]


def signed(
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    method: str = "GET",
    url: str = URL,
    now: int = NOW,
    key: HMACKey = KEY,
    **options: Any,
) -> Headers:
    """Return ``headers`` plus the fields a Signer adds for this request."""
    headers = list(headers)
    return [*headers, *Signer(key, **options).sign(method, url, headers, body, now=now).items()]


def replace(headers: Headers, name: str, *values: str) -> Headers:
    """Drop every line named ``name`` and append ``values`` as new lines of it."""
    return [(n, v) for n, v in headers if n.lower() != name.lower()] + [(name, v) for v in values]


def field(headers: Headers, name: str) -> str:
    """The value of the single line ``name``."""
    (value,) = [v for n, v in headers if n.lower() == name.lower()]
    return value


def forge(components: list[str], headers: Headers, key: HMACKey = KEY) -> Headers:
    """Sign ``headers`` as given, covering ``components``, with a hand-computed MAC.

    Unlike Signer, this keeps a Content-Digest header the caller supplies, so a
    well-signed request can carry a malformed digest.
    """
    identifiers = " ".join(f'"{c}"' for c in components)
    params = f'({identifiers});created={NOW};keyid="{key.key_id}";nonce="n"'
    values = {
        "@method": "GET",
        "@authority": "api.example",
        "@path": "/v1/items",
        "@query": "?id=1",
        **{n.lower(): v for n, v in headers},
    }
    lines = [f'"{c}": {values[c]}' for c in components]
    base = "\n".join([*lines, f'"@signature-params": {params}']).encode()
    mac = base64.b64encode(hmac.digest(key.secret, base, "sha256")).decode()
    return [*headers, ("Signature-Input", f"sig1={params}"), ("Signature", f"sig1=:{mac}:")]


def rejection(call: Callable[[], object]) -> VerificationError:
    """Run ``call``, expect a VerificationError and return it."""
    with pytest.raises(VerificationError) as info:
        call()
    return info.value


@pytest.fixture
def verifier() -> Verifier:
    """The default policy over KEY."""
    return Verifier([KEY])


# -- reason codes -----------------------------------------------------------------


def _case_missing() -> tuple[Headers, bytes | None, float]:
    return [("content-type", "text/plain")], None, NOW


def _case_malformed() -> tuple[Headers, bytes | None, float]:
    return replace(signed(), "Signature", "sig1=:!!:"), None, NOW


def _case_invalid_parameters() -> tuple[Headers, bytes | None, float]:
    return signed(nonce=False), None, NOW


def _case_expired() -> tuple[Headers, bytes | None, float]:
    return signed(), None, NOW + 301


def _case_not_yet_valid() -> tuple[Headers, bytes | None, float]:
    return signed(), None, NOW - 31


def _case_unknown_key() -> tuple[Headers, bytes | None, float]:
    return signed(key=HMACKey("nobody", b"n" * 32)), None, NOW


def _case_invalid_signature() -> tuple[Headers, bytes | None, float]:
    return signed(key=HMACKey("client-1", b"x" * 32)), None, NOW


def _case_insufficient_coverage() -> tuple[Headers, bytes | None, float]:
    return signed(components=["@method", "@path"]), None, NOW


def _case_malformed_digest() -> tuple[Headers, bytes | None, float]:
    return forge([*BASE4, "content-digest"], [("content-digest", "sha-256=1")]), BODY, NOW


def _case_digest_mismatch() -> tuple[Headers, bytes | None, float]:
    return signed(CT, BODY, method="GET"), b"other", NOW


@pytest.mark.parametrize(
    ("case", "reason", "status"),
    [
        (_case_missing, "missing_signature", 401),
        (_case_malformed, "malformed_signature", 400),
        (_case_invalid_parameters, "invalid_parameters", 401),
        (_case_expired, "expired", 401),
        (_case_not_yet_valid, "not_yet_valid", 401),
        (_case_unknown_key, "unknown_key", 401),
        (_case_invalid_signature, "invalid_signature", 401),
        (_case_insufficient_coverage, "insufficient_coverage", 401),
        (_case_malformed_digest, "malformed_digest", 400),
        (_case_digest_mismatch, "digest_mismatch", 401),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_core_reason_is_reachable_with_its_status(
    case: Callable[[], tuple[Headers, bytes | None, float]],
    reason: str,
    status: int,
    verifier: Verifier,
) -> None:
    """Each reason the core raises comes with its documented HTTP status."""
    headers, body, now = case()
    exc = rejection(lambda: verifier.verify("GET", URL, headers, body, now=now))
    assert (exc.reason, exc.status) == (reason, status)


def test_key_lookup_failed_is_503() -> None:
    """A resolver that raises makes key_lookup_failed with status 503."""

    def broken(key_id: str) -> HMACKey:
        raise RuntimeError("vault down")

    exc = rejection(lambda: Verifier(broken).verify("GET", URL, signed(), now=NOW))
    assert (exc.reason, exc.status) == ("key_lookup_failed", 503)
    assert isinstance(exc, KeyLookupFailed)


def test_errors_carry_label_and_key_id(verifier: Verifier) -> None:
    """A failure after key selection names the label and the claimed key id."""
    headers = signed(key=HMACKey("client-1", b"x" * 32), label="mine")
    exc = rejection(lambda: verifier.verify("GET", URL, headers, now=NOW))
    assert (exc.label, exc.key_id) == ("mine", "client-1")


def test_digest_errors_carry_label_and_key_id(verifier: Verifier) -> None:
    """A digest_mismatch after a valid signature names its label and key id."""
    headers = signed(CT, BODY, method="POST")
    exc = rejection(lambda: verifier.verify("POST", URL, headers, b"x", now=NOW))
    assert (exc.reason, exc.label, exc.key_id) == ("digest_mismatch", "sig1", "client-1")


def test_only_signature_present_is_malformed(verifier: Verifier) -> None:
    """Signature without Signature-Input is malformed_signature."""
    headers = replace(signed(), "Signature-Input")
    assert rejection(lambda: verifier.verify("GET", URL, headers, now=NOW)).reason == (
        "malformed_signature"
    )


def test_empty_signature_fields_are_missing_signature(verifier: Verifier) -> None:
    """Empty Signature and Signature-Input values carry no signature: missing_signature."""
    headers = [("Signature-Input", ""), ("Signature", " ")]
    assert rejection(lambda: verifier.verify("GET", URL, headers, now=NOW)).reason == (
        "missing_signature"
    )


def test_covered_absent_query_param_is_invalid_signature(verifier: Verifier) -> None:
    """A covered @query-param that is absent from the URL is invalid_signature."""
    headers = signed(components=[*BASE4, '@query-param;name="id"'])
    assert verifier.verify("GET", URL, headers, now=NOW).covers('@query-param;name="id"')
    exc = rejection(
        lambda: verifier.verify("GET", "https://api.example/v1/items?", headers, now=NOW)
    )
    assert exc.reason == "invalid_signature"


# -- key resolvers ----------------------------------------------------------------


async def test_averify_awaits_an_async_resolver() -> None:
    """averify() resolves keys with an async callable."""

    async def resolve(key_id: str) -> HMACKey | None:
        return KEY if key_id == "client-1" else None

    verifier = Verifier(resolve)
    verified = await verifier.averify("GET", URL, signed(), now=NOW)
    assert verified.key_id == "client-1"
    other = signed(key=HMACKey("nobody", b"n" * 32))
    with pytest.raises(VerificationError) as info:
        await verifier.averify("GET", URL, other, now=NOW)
    assert info.value.reason == "unknown_key"


async def test_averify_accepts_static_keys_and_sync_resolvers() -> None:
    """averify() also works with a static keyring and with a sync resolver."""
    assert (await Verifier([KEY]).averify("GET", URL, signed(), now=NOW)).key_id == "client-1"
    verified = await Verifier({"client-1": KEY}.get).averify("GET", URL, signed(), now=NOW)
    assert verified.key_id == "client-1"


async def test_averify_applies_the_same_policy_as_verify() -> None:
    """averify() refuses what verify() refuses, with the same reason."""
    verifier = Verifier([KEY])
    headers = signed(CT, BODY, method="POST")
    with pytest.raises(VerificationError) as info:
        await verifier.averify("POST", URL, headers, b"tampered", now=NOW)
    assert info.value.reason == "digest_mismatch"
    with pytest.raises(VerificationError) as info:
        await verifier.averify("POST", URL, headers, BODY, now=NOW + 301)
    assert info.value.reason == "expired"


def test_sync_verify_with_async_resolver_is_a_type_error() -> None:
    """verify() with an async resolver is a programming error: TypeError naming averify()."""
    calls: list[str] = []

    async def resolve(key_id: str) -> HMACKey:
        calls.append(key_id)
        return KEY

    with pytest.raises(TypeError, match="averify"):
        Verifier(resolve).verify("GET", URL, signed(), now=NOW)
    assert calls == []


def test_sync_verify_with_async_callable_object_is_a_type_error() -> None:
    """An object with an async __call__ is detected as async too."""

    class Vault:
        async def __call__(self, key_id: str) -> HMACKey:
            return KEY

    keyring = Keyring(Vault())
    assert keyring.is_async
    with pytest.raises(TypeError, match="averify"):
        Verifier(keyring).verify("GET", URL, signed(), now=NOW)


@pytest.mark.parametrize(
    "answer",
    [
        HMACKey("someone-else", b"k" * 32),
        b"k" * 32,
        "a2trazJra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
        {"client-1": b"k" * 32},
    ],
    ids=["other-key-id", "bytes", "base64-text", "mapping"],
)
def test_resolver_returning_a_wrong_answer_fails_closed(answer: object) -> None:
    """A resolver answering another key id or a non-key is key_lookup_failed."""
    verifier = Verifier(lambda key_id: answer)  # type: ignore[arg-type]
    exc = rejection(lambda: verifier.verify("GET", URL, signed(), now=NOW))
    assert (exc.reason, exc.status) == ("key_lookup_failed", 503)


async def test_async_resolver_wrong_answers_fail_closed() -> None:
    """Under averify(), an async resolver that raises or answers another id is key_lookup_failed."""

    async def other(key_id: str) -> HMACKey:
        return HMACKey("someone-else", b"k" * 32)

    async def broken(key_id: str) -> HMACKey:
        raise ConnectionError("vault unreachable")

    for resolver in (other, broken):
        with pytest.raises(VerificationError) as info:
            await Verifier(resolver).averify("GET", URL, signed(), now=NOW)
        assert (info.value.reason, info.value.status) == ("key_lookup_failed", 503)


def test_resolver_exception_is_chained_not_swallowed() -> None:
    """A resolver's exception is the __cause__ of key_lookup_failed, for the operator's logs."""

    def broken(key_id: str) -> HMACKey:
        raise TimeoutError("vault timeout")

    exc = rejection(lambda: Verifier(broken).verify("GET", URL, signed(), now=NOW))
    assert isinstance(exc.__cause__, TimeoutError)
    assert "TimeoutError" in exc.detail


def test_resolver_is_not_called_before_parameters_pass() -> None:
    """An expired or malformed request never reaches the key resolver."""
    calls: list[str] = []

    def resolve(key_id: str) -> HMACKey:
        calls.append(key_id)
        return KEY

    verifier = Verifier(resolve)
    rejection(lambda: verifier.verify("GET", URL, signed(), now=NOW + 301))
    rejection(lambda: verifier.verify("GET", URL, signed(nonce=False), now=NOW))
    assert calls == []
    verifier.verify("GET", URL, signed(), now=NOW)
    assert calls == ["client-1"]


def test_verifier_accepts_a_keyring_instance() -> None:
    """A prebuilt Keyring is used as is."""
    keyring = Keyring([KEY])
    verifier = Verifier(keyring)
    assert verifier.keyring is keyring
    assert verifier.verify("GET", URL, signed(), now=NOW).key_id == "client-1"


def test_mapping_of_secrets_verifies() -> None:
    """keys may map key ids to raw secrets or base64 text."""
    text = base64.b64encode(b"k" * 32).decode()
    for keys in ({"client-1": b"k" * 32}, {"client-1": text}, {"client-1": KEY}):
        assert Verifier(keys).verify("GET", URL, signed(), now=NOW).key_id == "client-1"


# -- constructor validation -------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"keys": "client-1"}, TypeError),
        ({"keys": b"k" * 32}, TypeError),
        ({"keys": 42}, TypeError),
        ({"keys": {}}, ValueError),
        ({"keys": []}, ValueError),
        ({"keys": [b"k" * 32]}, TypeError),
        ({"max_age": 0}, ValueError),
        ({"max_age": -1}, ValueError),
        ({"max_age": 1.5}, TypeError),
        ({"max_age": True}, TypeError),
        ({"max_age": "300"}, TypeError),
        ({"clock_skew": -1}, ValueError),
        ({"clock_skew": 301}, ValueError),
        ({"max_signatures": 0}, ValueError),
        ({"max_components": 0}, ValueError),
        ({"max_field_bytes": 63}, ValueError),
        ({"max_field_bytes": None}, TypeError),
        ({"required_components": "@method"}, TypeError),
        ({"required_components": ["Content-Type"]}, ValueError),
        ({"required_components": ["@status"]}, ValueError),
        ({"required_components": ["@foo"]}, ValueError),
        ({"required_components": [1]}, TypeError),
        ({"tag": ""}, ValueError),
        ({"tag": 5}, ValueError),
        ({"structured_fields": {"x": "string"}}, ValueError),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else None,
)
def test_invalid_configuration_is_refused_at_construction(
    options: dict[str, Any], error: type[Exception]
) -> None:
    """Every invalid option is a TypeError or ValueError from the constructor."""
    keys = options.pop("keys", [KEY])
    with pytest.raises(error):
        Verifier(keys, **options)


def test_boundary_configuration_is_accepted() -> None:
    """The smallest valid limits and clock_skew == max_age are accepted."""
    Verifier(
        [KEY],
        max_age=1,
        clock_skew=1,
        max_signatures=1,
        max_components=1,
        max_field_bytes=64,
    )
    Verifier([KEY], clock_skew=0)


def test_repr_names_policy_not_secrets() -> None:
    """The verifier's repr shows key ids and windows, never a secret."""
    text = repr(Verifier([KEY]))
    assert "client-1" in text
    assert "max_age=300" in text
    assert "kkkk" not in text


# -- required components ----------------------------------------------------------


def test_default_required_components() -> None:
    """DEFAULT_REQUIRED_COMPONENTS is @method @authority @path @query."""
    assert DEFAULT_REQUIRED_COMPONENTS == ("@method", "@authority", "@path", "@query")


def test_explicit_required_components_replace_the_default() -> None:
    """With required_components=["@method"], a body without content-digest is accepted."""
    headers = signed(CT, BODY, method="POST", components=["@method"])
    verifier = Verifier([KEY], required_components=["@method"])
    verified = verifier.verify("POST", URL, headers, BODY, now=NOW)
    assert verified.components == ("@method",)
    exc = rejection(lambda: Verifier([KEY]).verify("POST", URL, headers, BODY, now=NOW))
    assert exc.reason == "insufficient_coverage"


def test_explicit_required_components_are_enforced() -> None:
    """An explicit required component that is not covered is insufficient_coverage."""
    headers = signed(components=["@method"])
    verifier = Verifier([KEY], required_components=["@method", "content-type"])
    exc = rejection(lambda: verifier.verify("GET", URL, headers, now=NOW))
    assert exc.reason == "insufficient_coverage"
    assert "content-type" in exc.detail


def test_threat_R10_empty_component_lists_are_refused() -> None:
    """A policy or a signer with no components is a ValueError: it would fit any request."""
    with pytest.raises(ValueError, match="empty"):
        Verifier([KEY], required_components=())
    with pytest.raises(ValueError, match="empty"):
        Signer(KEY, components=())


def test_required_components_with_parameters() -> None:
    """A required @query-param must be covered with the same name parameter."""
    verifier = Verifier([KEY], required_components=['@query-param;name="id"'])
    good = signed(components=['@query-param;name="id"'])
    assert verifier.verify("GET", URL, good, now=NOW).covers('@query-param;name="id"')
    other = signed(url=URL + "&x=2", components=['@query-param;name="x"'])
    exc = rejection(lambda: verifier.verify("GET", URL + "&x=2", other, now=NOW))
    assert exc.reason == "insufficient_coverage"


def test_content_digest_as_explicit_requirement_without_body() -> None:
    """Explicitly requiring content-digest applies even to an empty body."""
    verifier = Verifier([KEY], required_components=[*BASE4, "content-digest"])
    exc = rejection(lambda: verifier.verify("GET", URL, signed(), now=NOW))
    assert exc.reason == "insufficient_coverage"
    covered = signed(components=[*BASE4, "content-digest"])
    assert verifier.verify("GET", URL, covered, now=NOW).covers("content-digest")


# -- bodies, bytes and header lines -----------------------------------------------


@pytest.mark.parametrize("sign_body", [None, b""], ids=["signed-None", "signed-empty"])
@pytest.mark.parametrize("verify_body", [None, b""], ids=["verified-None", "verified-empty"])
def test_body_none_and_empty_are_equivalent(
    sign_body: bytes | None, verify_body: bytes | None
) -> None:
    """A body of None and b"" are the same empty body, with or without content-digest."""
    plain = signed(body=sign_body)
    assert Verifier([KEY]).verify("GET", URL, plain, verify_body, now=NOW).key_id == "client-1"
    digested = signed(body=sign_body, components=[*BASE4, "content-digest"])
    assert field(digested, "Content-Digest") == make_content_digest(b"")
    verified = Verifier([KEY]).verify("GET", URL, digested, verify_body, now=NOW)
    assert verified.covers("content-digest")


def test_bytes_method_url_and_headers_verify() -> None:
    """Method, URL, header names and values may all be bytes."""
    headers = signed(CT, BODY, method="POST")
    raw = [(n.encode(), v.encode()) for n, v in headers]
    verified = Verifier([KEY]).verify(b"POST", URL.encode(), raw, BODY, now=NOW)
    assert verified.key_id == "client-1"


def test_mapping_headers_with_mixed_case_names_verify() -> None:
    """A header mapping with any name case verifies (names are lowercased)."""
    headers = dict(signed(CT, BODY, method="POST"))
    shouting = {name.upper(): value for name, value in headers.items()}
    assert Verifier([KEY]).verify("POST", URL, shouting, BODY, now=NOW).key_id == "client-1"


def test_repeated_covered_header_lines_verify_in_order() -> None:
    """A covered header sent as several lines verifies when the lines arrive in order."""
    lines = [("x-list", "a"), ("content-type", "text/plain"), ("x-list", "b")]
    headers = signed(lines, components=[*BASE4, "x-list"])
    assert Verifier([KEY]).verify("GET", URL, headers, now=NOW).covers("x-list")


def test_signature_fields_split_across_lines_verify() -> None:
    """Signature-Input and Signature may each arrive as one line per label."""
    sig1 = signed()
    sig2 = signed(label="sig2", key=HMACKey("nobody", b"n" * 32))
    headers = replace(
        replace(
            sig1, "Signature-Input", field(sig2, "Signature-Input"), field(sig1, "Signature-Input")
        ),
        "Signature",
        field(sig1, "Signature"),
        field(sig2, "Signature"),
    )
    assert Verifier([KEY]).verify("GET", URL, headers, now=NOW).label == "sig1"


def test_uncovered_headers_may_change() -> None:
    """Headers outside the signature may be added or changed freely."""
    headers = signed([("x-trace", "1")])
    changed = [*replace(headers, "x-trace", "2"), ("x-new", "v")]
    assert Verifier([KEY]).verify("GET", URL, changed, now=NOW).key_id == "client-1"


def test_default_port_and_host_case_are_normalised() -> None:
    """@authority ignores the default port and host case (RFC 9421 §2.2.3)."""
    headers = signed(url="https://API.example:443/v1/items?id=1")
    assert Verifier([KEY]).verify("GET", URL, headers, now=NOW).key_id == "client-1"
    other_port = "https://api.example:8443/v1/items?id=1"
    exc = rejection(lambda: Verifier([KEY]).verify("GET", other_port, headers, now=NOW))
    assert exc.reason == "invalid_signature"


def test_clock_is_used_when_now_is_omitted() -> None:
    """Without now=, the verifier asks its clock."""
    headers = signed()
    assert Verifier([KEY], clock=lambda: NOW + 10).verify("GET", URL, headers).created == NOW
    exc = rejection(lambda: Verifier([KEY], clock=lambda: NOW + 301).verify("GET", URL, headers))
    assert exc.reason == "expired"


def test_relative_url_is_a_caller_error() -> None:
    """A URL that is not absolute is a ValueError from the caller, not a verification failure."""
    with pytest.raises(ValueError, match="absolute"):
        Verifier([KEY]).verify("GET", "/v1/items", signed(), now=NOW)


# -- VerifiedSignature ------------------------------------------------------------


def test_verified_signature_reports_what_was_proven() -> None:
    """VerifiedSignature carries key id, label, times, nonce, components, algorithm and tag."""
    headers = signed(
        CT, BODY, method="POST", label="req", expires_in=60, tag="api", nonce=lambda: "n-1"
    )
    verified = Verifier([KEY]).verify("POST", URL, headers, BODY, now=NOW)
    assert verified == VerifiedSignature(
        key_id="client-1",
        label="req",
        created=NOW,
        expires=NOW + 60,
        nonce="n-1",
        components=(*BASE4, "content-type", "content-digest"),
        algorithm="hmac-sha256",
        tag="api",
    )


def test_verified_signature_is_frozen() -> None:
    """VerifiedSignature cannot be modified after the fact."""
    verified = Verifier([KEY]).verify("GET", URL, signed(), now=NOW)
    with pytest.raises(AttributeError):
        verified.key_id = "admin"  # type: ignore[misc]


def test_verified_signature_covers() -> None:
    """covers() answers for derived components, headers and parameterised identifiers."""
    components = [*BASE4, "content-type", '@query-param;name="id"', '"x-dict";key="a"']
    headers = signed([*CT, ("x-dict", "a=1, b=2")], components=components)
    verified = Verifier([KEY]).verify("GET", URL, headers, now=NOW)
    assert verified.covers("@method")
    assert verified.covers("content-type")
    assert verified.covers('@query-param;name="id"')
    assert verified.covers('"x-dict";key="a"')
    assert verified.covers('x-dict;key="a"')
    assert not verified.covers("x-dict")
    assert not verified.covers('@query-param;name="other"')
    assert not verified.covers("content-digest")
    assert not verified.covers("@target-uri")


def test_verified_signature_covers_refuses_invalid_spec() -> None:
    """covers() with an invalid component spec raises ValueError instead of answering False."""
    verified = Verifier([KEY]).verify("GET", URL, signed(), now=NOW)
    with pytest.raises(ValueError, match="invalid component"):
        verified.covers("Content-Type")


def test_first_passing_signature_wins() -> None:
    """With two valid signatures, the first one listed is returned."""
    sig_a = signed(label="a")
    sig_b = signed(label="b", nonce=lambda: "other")
    headers = replace(
        replace(
            sig_a,
            "Signature-Input",
            field(sig_b, "Signature-Input") + ", " + field(sig_a, "Signature-Input"),
        ),
        "Signature",
        field(sig_a, "Signature") + ", " + field(sig_b, "Signature"),
    )
    verified = Verifier([KEY]).verify("GET", URL, headers, now=NOW)
    assert (verified.label, verified.nonce) == ("b", "other")


def test_verifier_is_reusable_and_stateless() -> None:
    """The same verifier accepts the same request twice: replay is the nonce store's job."""
    verifier = Verifier([KEY])
    headers = signed()
    assert verifier.verify("GET", URL, headers, now=NOW) == verifier.verify(
        "GET", URL, headers, now=NOW
    )


def test_policy_is_readable() -> None:
    """max_age, clock_skew and clock are read-only views of the policy the verifier applies."""
    clock = lambda: 1_700_000_000.0  # noqa: E731  (a fixed clock)
    verifier = Verifier({"client-1": b"k" * 32}, max_age=120, clock_skew=10, clock=clock)
    assert (verifier.max_age, verifier.clock_skew, verifier.clock) == (120, 10, clock)
    assert verifier.nonce_ttl == 120 + 2 * 10 + 1


# -- the four entry points ---------------------------------------------------------


def _case_ok() -> tuple[Headers, bytes | None, float]:
    return signed(), None, NOW


def _case_ok_with_body() -> tuple[Headers, bytes | None, float]:
    return signed(CT, BODY), BODY, NOW


def _case_body_not_covered() -> tuple[Headers, bytes | None, float]:
    return signed(CT, components=[*BASE4, "content-type"]), BODY, NOW


_ENTRY_CASES = [
    # (case, verdict of verify()/averify(), verdict of verify_headers()/averify_headers())
    pytest.param(_case_ok, "ok", "ok", id="ok"),
    pytest.param(_case_ok_with_body, "ok", "ok", id="ok-with-body"),
    pytest.param(_case_missing, "missing_signature", "missing_signature", id="missing"),
    pytest.param(_case_malformed, "malformed_signature", "malformed_signature", id="malformed"),
    pytest.param(
        _case_invalid_parameters, "invalid_parameters", "invalid_parameters", id="parameters"
    ),
    pytest.param(_case_expired, "expired", "expired", id="expired"),
    pytest.param(_case_not_yet_valid, "not_yet_valid", "not_yet_valid", id="not-yet-valid"),
    pytest.param(_case_unknown_key, "unknown_key", "unknown_key", id="unknown-key"),
    pytest.param(_case_invalid_signature, "invalid_signature", "invalid_signature", id="mac"),
    pytest.param(
        _case_insufficient_coverage, "insufficient_coverage", "insufficient_coverage", id="cover"
    ),
    pytest.param(
        _case_body_not_covered, "insufficient_coverage", "insufficient_coverage", id="body"
    ),
    # The body is the caller's to check after verify_headers(): the digest is not read.
    pytest.param(_case_malformed_digest, "malformed_digest", "ok", id="malformed-digest"),
    pytest.param(_case_digest_mismatch, "digest_mismatch", "ok", id="digest-mismatch"),
]


async def _resolve(key_id: str) -> HMACKey | None:
    return KEY if key_id == KEY.key_id else None


def _verdict(call: Callable[[], VerifiedSignature]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except VerificationError as exc:
        return exc.reason, (exc.label, exc.key_id, exc.detail)


async def _averdict(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", await call()
    except VerificationError as exc:
        return exc.reason, (exc.label, exc.key_id, exc.detail)


@pytest.mark.parametrize("form", ["pairs", "lowercase-dict"])
@pytest.mark.parametrize(("case", "full", "headers_only"), _ENTRY_CASES)
async def test_entry_points_agree(
    case: Callable[[], tuple[Headers, bytes | None, float]],
    full: str,
    headers_only: str,
    form: str,
) -> None:
    """verify, averify, verify_headers and averify_headers give one verdict per request,
    with static, sync and async keys, whichever header form (and so path) is taken."""
    pairs, body, now = case()
    headers: Any = pairs if form == "pairs" else {n.lower(): v for n, v in pairs}
    clock = lambda: now  # noqa: E731  (a fixed clock: no now= below)
    static = Verifier([KEY], clock=clock)
    sync = Verifier({"client-1": KEY}.get, clock=clock)
    asynchronous = Verifier(_resolve, clock=clock)
    has_body = bool(body)
    expected = _verdict(lambda: static.verify("GET", URL, headers, body))
    assert expected[0] == full
    reference = _verdict(lambda: static.verify_headers("GET", URL, headers, has_body=has_body))
    assert reference[0] == headers_only
    for verifier in (static, sync):
        assert _verdict(lambda v=verifier: v.verify("GET", URL, headers, body)) == expected
        assert (
            _verdict(lambda v=verifier: v.verify_headers("GET", URL, headers, has_body=has_body))
            == reference
        )
    for verifier in (static, sync, asynchronous):
        assert await _averdict(lambda v=verifier: v.averify("GET", URL, headers, body)) == expected
        assert (
            await _averdict(
                lambda v=verifier: v.averify_headers("GET", URL, headers, has_body=has_body)
            )
            == reference
        )


def test_verify_headers_with_async_resolver_is_a_type_error() -> None:
    """verify_headers() with an async resolver is a programming error naming averify_headers()."""
    with pytest.raises(TypeError, match=r"averify_headers\(\)"):
        Verifier(_resolve).verify_headers("GET", URL, signed(), has_body=False, now=NOW)


def test_signature_base_shows_the_base_of_the_chosen_signature() -> None:
    """signature_base() rebuilds the base of the first signature, or of the one labelled."""
    first = signed()
    second = signed(label="two", components=["@method", "@path"], nonce=False)
    headers = replace(
        first,
        "Signature-Input",
        field(first, "Signature-Input"),
        field(second, "Signature-Input"),
    )
    headers = replace(headers, "Signature", field(first, "Signature"), field(second, "Signature"))
    verifier = Verifier([KEY])
    params_one = field(first, "Signature-Input").removeprefix("sig1=")
    assert (
        verifier.signature_base("GET", URL, headers)
        == (
            '"@method": GET\n"@authority": api.example\n"@path": /v1/items\n"@query": ?id=1\n'
            f'"@signature-params": {params_one}'
        ).encode()
    )
    assert verifier.signature_base("GET", URL, headers, label="sig1") == (
        verifier.signature_base("GET", URL, headers)
    )
    params_two = field(second, "Signature-Input").removeprefix("two=")
    assert verifier.signature_base("GET", URL, headers, label="two") == (
        f'"@method": GET\n"@path": /v1/items\n"@signature-params": {params_two}'.encode()
    )
    # A label the request does not carry is said so, never another signature's base.
    with pytest.raises(MissingSignature, match="no signature labelled 'absent'"):
        verifier.signature_base("GET", URL, headers, label="absent")
    with pytest.raises(MissingSignature, match="no signature labelled ''"):
        verifier.signature_base("GET", URL, headers, label="")


def test_signature_base_raises_the_error_of_a_broken_signature() -> None:
    """signature_base() of a signature that cannot be read raises why, instead of a base."""
    headers = replace(signed(), "Signature-Input", 'sig1=("@method" "@method");created=1')
    with pytest.raises(VerificationError) as info:
        Verifier([KEY]).signature_base("GET", URL, headers)
    assert (info.value.reason, info.value.detail) == (
        "malformed_signature",
        "a covered component is listed twice",
    )


def test_signature_base_reads_structured_fields_with_the_verifiers_types() -> None:
    """signature_base() re-serialises an ``sf`` field with the structured_fields it was given."""
    headers = signed(
        [("x-dict", "a=1,   b=2")],
        components=["@method", '"x-dict";sf'],
        structured_fields={"x-dict": "dictionary"},
    )
    verifier = Verifier(
        [KEY], structured_fields={"x-dict": "dictionary"}, required_components=["@method"]
    )
    params = field(headers, "Signature-Input").removeprefix("sig1=")
    assert verifier.signature_base("GET", URL, headers) == (
        f'"@method": GET\n"x-dict";sf: a=1, b=2\n"@signature-params": {params}'.encode()
    )
    assert verifier.verify("GET", URL, headers, now=NOW).covers('"x-dict";sf')


def test_signature_base_of_a_broken_labelled_signature_raises_its_error() -> None:
    """signature_base(label=...) of a broken signature raises that signature's error."""
    good = signed()
    headers = replace(
        good,
        "Signature-Input",
        field(good, "Signature-Input"),
        'two=("@method" "@method");created=1',
    )
    headers = replace(headers, "Signature", field(good, "Signature"), "two=:AAAA:")
    verifier = Verifier([KEY])
    assert verifier.signature_base("GET", URL, headers).startswith(b'"@method": GET')
    with pytest.raises(VerificationError) as info:
        verifier.signature_base("GET", URL, headers, label="two")
    assert (info.value.reason, info.value.label) == ("malformed_signature", "two")


# -- what each failure says --------------------------------------------------------

_LIST = '("@method" "@authority" "@path" "@query")'
_OK = f'created={NOW};keyid="client-1";nonce="n"'


@pytest.mark.parametrize(
    ("params", "reason", "detail", "key_id"),
    [
        pytest.param(
            f"{_OK};foo=1",
            "invalid_parameters",
            "unknown signature parameter 'foo'",
            None,
            id="unknown",
        ),
        pytest.param(
            'keyid="client-1";nonce="n"',
            "invalid_parameters",
            "the signature has no created parameter",
            None,
            id="no-created",
        ),
        pytest.param(
            f'created={NOW};nonce="n"',
            "invalid_parameters",
            "the signature has no keyid parameter",
            None,
            id="no-keyid",
        ),
        pytest.param(
            f'created={NOW};keyid="client-1"',
            "invalid_parameters",
            "the signature has no nonce parameter",
            None,
            id="no-nonce",
        ),
        pytest.param(
            'created="1";keyid="client-1";nonce="n"',
            "invalid_parameters",
            "the created parameter must be a non-negative integer",
            None,
            id="created-text",
        ),
        pytest.param(
            'created=-1;keyid="client-1";nonce="n"',
            "invalid_parameters",
            "the created parameter must be a non-negative integer",
            None,
            id="created-negative",
        ),
        pytest.param(
            f'{_OK};expires="1"',
            "invalid_parameters",
            "the expires parameter must be a non-negative integer",
            None,
            id="expires-text",
        ),
        pytest.param(
            f'created={NOW};keyid=1;nonce="n"',
            "invalid_parameters",
            "the keyid parameter must be a string",
            None,
            id="keyid-integer",
        ),
        pytest.param(
            f'created={NOW};keyid="client-1";nonce=""',
            "invalid_parameters",
            "the nonce parameter is empty",
            None,
            id="nonce-empty",
        ),
        pytest.param(
            f"{_OK};alg=1",
            "invalid_parameters",
            "the alg parameter must be a string",
            None,
            id="alg-integer",
        ),
        pytest.param(
            f"{_OK};tag=1",
            "invalid_parameters",
            "the tag parameter must be a string",
            None,
            id="tag-integer",
        ),
        pytest.param(
            f'{_OK};tag=""',
            "invalid_parameters",
            "the tag parameter is empty",
            None,
            id="tag-empty",
        ),
        pytest.param(
            f'created={NOW};keyid="{"k" * 257}";nonce="n"',
            "malformed_signature",
            "the keyid parameter is longer than 256 bytes",
            None,
            id="keyid-long",
        ),
        pytest.param(
            f'{_OK};alg="rsa-pss-sha512"',
            "invalid_parameters",
            "unsupported alg 'rsa-pss-sha512'",
            "client-1",
            id="alg-unsupported",
        ),
        pytest.param(
            f"{_OK};expires={NOW - 1}",
            "invalid_parameters",
            "expires precedes created",
            "client-1",
            id="expires-before-created",
        ),
        pytest.param(
            f'created={NOW + 31};keyid="client-1";nonce="n"',
            "not_yet_valid",
            "created is 31 s in the future (clock skew allowed: 30 s)",
            "client-1",
            id="future",
        ),
        pytest.param(
            f'created={NOW - 301};keyid="client-1";nonce="n"',
            "expired",
            "created is 301 s old (max_age: 300 s)",
            "client-1",
            id="too-old",
        ),
        pytest.param(
            f'created={NOW - 10};keyid="client-1";nonce="n";expires={NOW - 2}',
            "expired",
            "expires passed 2 s ago",
            "client-1",
            id="expires-passed",
        ),
    ],
)
def test_rfc9421_3_2_parameter_failures_name_label_key_and_cause(
    params: str, reason: str, detail: str, key_id: str | None
) -> None:
    """Each parameter check fails with its own reason and detail, naming the label (and the
    key id once it has been read)."""
    headers = [("Signature-Input", f"lbl={_LIST};{params}"), ("Signature", "lbl=:AAAA:")]
    exc = rejection(lambda: Verifier([KEY]).verify("GET", URL, headers, now=NOW))
    assert (exc.reason, exc.detail, exc.label, exc.key_id) == (reason, detail, "lbl", key_id)


def test_unknown_key_is_named_by_label_without_a_detail_about_the_id() -> None:
    """An unknown key id fails with its label, whether or not the base could be built."""
    stranger = HMACKey("nobody", b"n" * 32)
    for headers in (
        signed(key=stranger, label="lbl"),
        replace(
            signed(CT, key=stranger, label="lbl", components=[*BASE4, "content-type"]),
            "content-type",
        ),
    ):
        exc = rejection(lambda h=headers: Verifier([KEY]).verify("GET", URL, h, now=NOW))
        assert (exc.reason, exc.label, exc.key_id) == ("unknown_key", "lbl", "nobody")
        assert exc.detail == "no key is known by this key id"


def test_wrong_alg_for_the_key_is_named() -> None:
    """An alg that is not the key's algorithm fails with a detail naming it, label and key id."""
    # hmacguard's signer will not write the unregistered alg="hmac-sha512"; another
    # implementation may, with a valid MAC: reach past the check to make one.
    signer = Signer(HMACKey("client-1", b"k" * 64, algorithm="hmac-sha512"), label="lbl")
    signer._include_alg = True
    headers = signer.sign("GET", URL, [], None, now=NOW)
    exc = rejection(lambda: Verifier([KEY]).verify("GET", URL, headers, now=NOW))
    assert (exc.detail, exc.label, exc.key_id) == (
        "alg 'hmac-sha512' disagrees with the key's algorithm",
        "lbl",
        "client-1",
    )


@pytest.mark.parametrize(
    ("components", "required", "body", "detail"),
    [
        pytest.param(
            ["@method", "@path"],
            None,
            None,
            "the signature does not cover @authority, @query",
            id="default",
        ),
        pytest.param(
            ["@method"],
            None,
            BODY,
            "the signature does not cover @authority, @path, @query, content-digest",
            id="default-with-body",
        ),
        pytest.param(
            [*BASE4, "content-digest"], None, None, None, id="digest-covered-without-body"
        ),
        pytest.param(
            ["@method"],
            ["@method", "@path"],
            BODY,
            "the signature does not cover @path",
            id="explicit-with-body",
        ),
    ],
)
def test_insufficient_coverage_lists_what_is_missing(
    components: list[str], required: list[str] | None, body: bytes | None, detail: str | None
) -> None:
    """Insufficient coverage lists exactly the required components the signature lacks."""
    headers = signed(CT, body, components=components, label="lbl")
    verifier = Verifier([KEY], required_components=required)
    if detail is None:
        assert verifier.verify("GET", URL, headers, body, now=NOW).label == "lbl"
        return
    exc = rejection(lambda: verifier.verify("GET", URL, headers, body, now=NOW))
    assert (exc.reason, exc.detail, exc.label, exc.key_id) == (
        "insufficient_coverage",
        detail,
        "lbl",
        "client-1",
    )


def test_content_digest_covered_with_parameters_still_binds_the_body() -> None:
    """A signature covering ``content-digest`` with a parameter still has the body checked."""
    headers = signed(CT, BODY, components=[*BASE4, '"content-digest";sf'], label="lbl")
    verifier = Verifier([KEY], required_components=BASE4)
    assert verifier.verify("GET", URL, headers, BODY, now=NOW).covers('"content-digest";sf')
    exc = rejection(lambda: verifier.verify("GET", URL, headers, b"other", now=NOW))
    assert (exc.reason, exc.label, exc.key_id) == ("digest_mismatch", "lbl", "client-1")


def test_now_argument_overrides_the_clock_everywhere() -> None:
    """An explicit now= is used instead of the clock by every entry point."""
    verifier = Verifier([KEY], clock=lambda: NOW + 10_000)
    headers = signed()
    assert verifier.verify("GET", URL, headers, now=NOW).created == NOW
    assert verifier.verify_headers("GET", URL, headers, has_body=False, now=NOW).created == NOW


async def test_now_argument_overrides_the_clock_in_async_entry_points() -> None:
    """averify() and averify_headers() use now= too, not the clock."""
    verifier = Verifier([KEY], clock=lambda: NOW + 10_000)
    headers = signed()
    assert (await verifier.averify("GET", URL, headers, now=NOW)).created == NOW
    verified = await verifier.averify_headers("GET", URL, headers, has_body=False, now=NOW)
    assert verified.created == NOW


def test_async_resolver_errors_say_which_method_to_call() -> None:
    """Calling a sync entry point with an async resolver names the async one to call."""
    with pytest.raises(TypeError) as caught:
        Verifier(_resolve).verify_headers("GET", URL, signed(), has_body=False, now=NOW)
    assert str(caught.value) == "the key resolver is async: call averify_headers() instead"


def test_unknown_key_with_a_malformed_component_names_no_key() -> None:
    """A covered value that cannot be put in a base, under an unknown key id, is
    malformed_signature without a key id (the key was never found)."""
    stranger = HMACKey("nobody", b"n" * 32)
    headers = signed([("x-a", "v")], key=stranger, label="lbl", components=[*BASE4, "x-a"])
    broken = replace(headers, "x-a", "a\nb")
    exc = rejection(lambda: Verifier([KEY]).verify("GET", URL, broken, now=NOW))
    assert (exc.reason, exc.label, exc.key_id) == ("malformed_signature", "lbl", None)


def test_sync_verify_with_async_resolver_names_averify() -> None:
    """verify() with an async resolver says to call averify(), in one fixed sentence."""
    with pytest.raises(TypeError) as caught:
        Verifier(_resolve).verify("GET", URL, signed(), now=NOW)
    assert str(caught.value) == "the key resolver is async: call averify() instead of verify()"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"required_components": "@method"},
            "required_components is a sequence of strings, not one string",
        ),
        ({"required_components": []}, "required_components is empty: any signature would do"),
        ({"max_age": 0}, "max_age must be at least 1"),
        ({"max_age": "300"}, "max_age must be an int"),
        ({"clock_skew": -1}, "clock_skew must be at least 0"),
        ({"clock_skew": 1.0}, "clock_skew must be an int"),
        ({"max_signatures": 0}, "max_signatures must be at least 1"),
        ({"max_signatures": None}, "max_signatures must be an int"),
        ({"max_components": 0}, "max_components must be at least 1"),
        ({"max_components": False}, "max_components must be an int"),
        ({"max_field_bytes": 63}, "max_field_bytes must be at least 64"),
        ({"max_field_bytes": "8192"}, "max_field_bytes must be an int"),
        (
            {"max_age": 901},
            "max_age=901 is longer than 900 s, which widens the replay window; "
            "pass allow_long_max_age=True if you mean it",
        ),
        ({"max_age": 60, "clock_skew": 61}, "clock_skew must not exceed max_age"),
        ({"tag": ""}, "tag must be a non-empty string"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else None,
)
def test_invalid_configuration_says_what_to_change(options: dict[str, Any], message: str) -> None:
    """Each invalid policy option is refused with a message naming the option and its limit."""
    with pytest.raises((TypeError, ValueError)) as caught:
        Verifier([KEY], **options)
    assert str(caught.value) == message


def test_requires_digest_with_body_is_a_boolean() -> None:
    """requires_digest_with_body is True for the default policy and False for an explicit one."""
    assert Verifier([KEY]).requires_digest_with_body is True
    assert Verifier([KEY], required_components=["@method"]).requires_digest_with_body is False


def test_tag_policy_without_a_tagged_signature_says_so() -> None:
    """With a tag configured, a request whose signatures lack it fails naming the tag."""
    exc = rejection(lambda: Verifier([KEY], tag="app").verify("GET", URL, signed(), now=NOW))
    assert (exc.reason, exc.detail) == ("invalid_parameters", "no signature carries the tag 'app'")
