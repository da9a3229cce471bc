"""The verifier's fast path agrees with the general path on every input.

``Verifier._fast_accept`` handles the common shape in one pass and hands every
other input to the general path. Its contract: whatever it accepts, the general
path accepts with the same evidence; whatever it rejects, the general path
rejects with the same reason. These tests check that contract on signed
requests and on mutated copies of them.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmacguard import (
    DigestMismatch,
    HMACKey,
    InvalidSignature,
    Signer,
    VerificationError,
    Verifier,
    make_content_digest,
)
from hmacguard._verifier import _single_line_headers

NOW = 1_700_000_000
SECRET = b"s" * 32
URLS = [
    "https://api.example/v1/items",
    "https://API.Example:443/v1/items?x=1&y=2",
    "http://api.example:8080/a%2Fb/c?q=a+b&q=2",
    "https://api.example",
    "https://api.example/p?",
]


class GeneralOnly(Verifier):
    """A verifier with the fast path switched off."""

    def _fast_accept(self, *args: Any, **kwargs: Any) -> None:
        return None


def _outcome(verifier: Verifier, request: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", verifier.verify(**request, now=NOW)
    except VerificationError as exc:
        return "error", exc.reason


def _fast_outcome(verifier: Verifier, request: dict[str, Any]) -> tuple[str, Any] | None:
    grouped = _single_line_headers(request["headers"])
    if grouped is None:
        return None
    try:
        body = request["body"]
        result = verifier._fast_accept(
            request["method"], request["url"], grouped, NOW, bool(body), body, True
        )
    except VerificationError as exc:
        return "error", exc.reason
    return None if result is None else ("ok", result)


@st.composite
def signed_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request signed by Signer with random options, as verify() takes it."""
    url = draw(st.sampled_from(URLS))
    body = draw(st.sampled_from([None, b"", b'{"a": 1}', b"x" * 300]))
    headers = {"Content-Type": "application/json", "X-Extra": draw(st.sampled_from(["v", " v "]))}
    components = draw(
        st.sampled_from(
            [
                None,
                ("@method", "@authority", "@path", "@query", "content-digest"),
                ("@method", "@authority", "@path", "@query", "x-extra", "content-digest"),
                ("@target-uri", "@method", "@authority", "@path", "@query", "content-digest"),
            ]
        )
    )
    options: dict[str, Any] = {
        "nonce": draw(st.sampled_from([True, False])),
        "include_alg": draw(st.booleans()),
        "expires_in": draw(st.sampled_from([None, 60])),
        "tag": draw(st.sampled_from([None, "api"])),
    }
    if components is not None:
        options["components"] = components
    signer = Signer(HMACKey("client-1", SECRET), **options)
    created = NOW - draw(st.sampled_from([0, 10, 299, 300, 301, -29, -30, -31]))
    added = signer.sign("POST", url, headers, body, now=created)
    # Lowercase names, as servers hand them over: only then may the fast path run.
    lowered = {name.lower(): value for name, value in {**headers, **added}.items()}
    return {"method": "POST", "url": url, "headers": lowered, "body": body}


def _mutate(request: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    headers = dict(request["headers"])
    name = data.draw(st.sampled_from(sorted(headers)))
    value = headers[name]
    if value:
        at = data.draw(st.integers(0, len(value) - 1))
        # Mostly printable ASCII; sometimes a control or non-ASCII character,
        # which only the general path may judge.
        char = data.draw(
            st.one_of(
                st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                st.characters(max_codepoint=0x2FF, exclude_characters="\n\r"),
            )
        )
        headers[name] = value[:at] + char + value[at + 1 :]
    return {**request, "headers": headers}


@pytest.mark.parametrize("require_nonce", [True, False])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=signed_requests(), data=st.data())
def test_fast_path_agrees_with_general_path(
    require_nonce: bool, request: dict[str, Any], data: st.DataObject
) -> None:
    """On signed and mutated requests, the fast path never disagrees with the general path."""
    verifier = Verifier({"client-1": SECRET}, require_nonce=require_nonce)
    general = GeneralOnly({"client-1": SECRET}, require_nonce=require_nonce)
    for candidate in (request, _mutate(request, data)):
        expected = _outcome(general, candidate)
        fast = _fast_outcome(verifier, candidate)
        if fast is not None:
            assert fast == expected
        assert _outcome(verifier, candidate) == expected


def test_fast_path_is_taken_for_the_common_shape() -> None:
    """A default-signed request is accepted by the fast path itself, not the fallback."""
    signer = Signer(HMACKey("client-1", SECRET))
    headers = {"content-type": "application/json"}
    headers |= signer.sign("POST", URLS[1], headers, b"{}", now=NOW)
    verifier = Verifier({"client-1": SECRET})
    verifier.verify("POST", URLS[1], headers, b"{}", now=NOW)  # caches the component list
    single = _single_line_headers({name.lower(): value for name, value in headers.items()})
    assert single is not None
    fast = verifier._fast_accept("POST", URLS[1], single, NOW, True, b"{}", True)
    assert fast is not None
    assert fast == GeneralOnly({"client-1": SECRET}).verify(
        "POST", URLS[1], headers, b"{}", now=NOW
    )


@pytest.mark.parametrize(
    "signature",
    [
        "sig1=:\xff\xfe:",  # non-ASCII (as latin-1 decoding gives it)
        "sig1=:YWJj",  # no closing colon
        "sig1=:YWJjZA:",  # unpadded: valid, for the full parser to read
        "sig1=:YW=j:",  # padding in the middle
        "sig1=:YWJj=:",  # a stray "=" after a whole group: malformed, not a bad MAC
        "sig1=::",  # empty
        "sig2=:YWJj:",  # another label
    ],
)
def test_fast_path_defers_odd_signature_values(signature: str) -> None:
    """Odd Signature values get exactly the general path's answer, never an exception."""
    signer = Signer(HMACKey("client-1", SECRET))
    signed = {
        name.lower(): value
        for name, value in signer.sign("GET", URLS[0], {}, None, now=NOW).items()
    }
    # Lowercase names, so that the fast path is offered the request at all.
    headers = signed | {"signature": signature}
    verifier = Verifier({"client-1": SECRET})
    verifier.verify("GET", URLS[0], signed, now=NOW)  # the general path validates the list once
    assert verifier._fast_accept("GET", URLS[0], signed, NOW, False, None, True) is not None
    try:
        fast = verifier._fast_accept("GET", URLS[0], headers, NOW, False, None, True)
    except VerificationError as exc:
        fast = ("error", exc.reason)
    expected = _outcome(
        GeneralOnly({"client-1": SECRET}),
        {"method": "GET", "url": URLS[0], "headers": headers, "body": None},
    )
    assert expected[0] == "error"
    assert fast in (None, expected)  # declined, or refused for the same reason
    assert (
        _outcome(verifier, {"method": "GET", "url": URLS[0], "headers": headers, "body": None})
        == expected
    )


def test_fast_path_defers_names_that_fold_together() -> None:
    """A dict with two spellings of one covered header is judged by the general path."""
    signer = Signer(HMACKey("client-1", SECRET))
    headers = {"content-type": "application/json"}
    added = signer.sign("POST", URLS[0], headers, b"{}", now=NOW)
    headers |= {name.lower(): value for name, value in added.items()}
    request = {"method": "POST", "url": URLS[0], "body": b"{}"}
    verifier = Verifier({"client-1": SECRET})
    assert _outcome(verifier, {**request, "headers": headers})[0] == "ok"
    doubled = {**headers, "Content-Type": "text/plain"}
    # Both lines count (RFC 9421 §2.1): the signed value was one line only.
    assert _outcome(verifier, {**request, "headers": doubled}) == ("error", "invalid_signature")


BASE4 = '"@method" "@authority" "@path" "@query"'
PARAMS = f';created={NOW};keyid="client-1";nonce="n"'


def _hand_signed(
    url: str,
    inner: str = f"({BASE4}){PARAMS}",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    key: HMACKey | None = None,
) -> dict[str, str]:
    """Lowercase ``headers`` plus ``Signature-Input: sig1=<inner>`` and its correct MAC.

    The base comes from Verifier.signature_base (the general path), which also
    puts the component list in the cache the fast path reads.
    """
    key = key or HMACKey("client-1", SECRET)
    fields = {**(headers or {}), "signature-input": f"sig1={inner}", "signature": "sig1=:AAAA:"}
    base = Verifier({key.key_id: key}).signature_base(method, url, fields)
    return {**fields, "signature": f"sig1=:{base64.b64encode(key.mac(base)).decode()}:"}


def _fast_direct(
    verifier: Verifier,
    url: str,
    headers: dict[str, str],
    *,
    method: str = "GET",
    body: bytes | None = None,
    now: int = NOW,
    check_digest: bool = True,
) -> Any:
    """What ``_fast_accept`` itself answers (None: it leaves the request to the general path)."""
    return verifier._fast_accept(method, url, headers, now, bool(body), body, check_digest)


_SHA512_KEY = HMACKey("client-1", b"z" * 64, algorithm="hmac-sha512")


@pytest.mark.parametrize(
    ("url", "inner", "headers", "body", "now", "options"),
    [
        pytest.param(URLS[2], None, {}, None, NOW, {}, id="http-with-port"),
        pytest.param(
            "http://API.Example:80/p",
            f'({BASE4} "@scheme"){PARAMS}',
            {},
            None,
            NOW,
            {},
            id="http-default-port-and-scheme",
        ),
        pytest.param("https://api.example", None, {}, None, NOW, {}, id="no-path-no-query"),
        pytest.param("https://api.example/p?", None, {}, None, NOW, {}, id="empty-query"),
        pytest.param("https://api.example/p?a=1?b", None, {}, None, NOW, {}, id="two-marks"),
        pytest.param("https://user@API.example/p", None, {}, None, NOW, {}, id="userinfo"),
        pytest.param("https://API.Example/p", None, {}, None, NOW, {}, id="uppercase-host"),
        pytest.param("https://api.example:443/p", None, {}, None, NOW, {}, id="default-port"),
        pytest.param(
            URLS[0],
            f'({BASE4} "x-a"){PARAMS}',
            {"x-a": " \tX-ray\x0bX \t"},
            None,
            NOW,
            {},
            id="header-trimmed-of-sp-and-htab-only",
        ),
        pytest.param(
            URLS[0],
            f'({BASE4} "x-b" "x-a"){PARAMS}',
            {"x-a": "1", "x-b": "2"},
            None,
            NOW,
            {},
            id="two-headers",
        ),
        pytest.param(
            URLS[0],
            f'("x%y" {BASE4}){PARAMS}',
            {"x%y": "%s"},
            None,
            NOW,
            {},
            id="percent-sign-in-name-and-value",
        ),
        pytest.param(URLS[0], None, {}, None, NOW - 30, {}, id="created-at-the-skew-limit"),
        pytest.param(URLS[0], None, {}, None, NOW + 300, {}, id="created-at-max-age"),
        pytest.param(
            URLS[0],
            f'({BASE4});created={NOW - 10};keyid="client-1";expires={NOW};nonce="n"',
            {},
            None,
            NOW,
            {},
            id="expires-now",
        ),
        pytest.param(
            URLS[0],
            f'({BASE4});created={NOW};keyid="client-1";expires={NOW};nonce="n"',
            {},
            None,
            NOW,
            {},
            id="expires-equals-created",
        ),
        pytest.param(
            URLS[0],
            f'({BASE4});created={NOW};keyid="client-1";alg="hmac-sha256";nonce="n";tag="t"',
            {},
            None,
            NOW,
            {},
            id="alg-and-tag",
        ),
        pytest.param(URLS[0], None, {}, None, NOW, {"max_components": 4}, id="max-components"),
        pytest.param(
            URLS[0],
            None,
            {},
            None,
            NOW,
            {"max_field_bytes": len(f"sig1=({BASE4}){PARAMS}")},
            id="inputs-at-max-field-bytes",
        ),
        pytest.param(
            URLS[0],
            '("@method");created=1700000000;keyid="client-1"',
            {},
            None,
            NOW,
            {"key": _SHA512_KEY, "max_field_bytes": 95, "required_components": ["@method"]},
            id="signature-at-max-field-bytes",
        ),
        pytest.param(
            URLS[0],
            f'({BASE4} "content-digest"){PARAMS}',
            {"content-digest": make_content_digest(b"x")},
            b"x",
            NOW,
            {},
            id="body-with-digest",
        ),
        pytest.param(
            URLS[0],
            f'({BASE4} "content-digest"){PARAMS}',
            {"content-digest": make_content_digest(b"")},
            None,
            NOW,
            {},
            id="no-body-with-digest",
        ),
    ],
)
def test_fast_path_accepts_each_canonical_shape(
    url: str,
    inner: str | None,
    headers: dict[str, str],
    body: bytes | None,
    now: int,
    options: dict[str, Any],
) -> None:
    """The fast path itself accepts each canonical shape, with the general path's evidence."""
    options = dict(options)
    key = options.pop("key", HMACKey("client-1", SECRET))
    signed = _hand_signed(url, inner or f"({BASE4}){PARAMS}", headers=headers, key=key)
    require_nonce = "nonce=" in signed["signature-input"]
    verifier = Verifier([key], require_nonce=require_nonce, **options)
    fast = _fast_direct(verifier, url, signed, body=body, now=now)
    assert fast is not None
    expected = GeneralOnly([key], require_nonce=require_nonce, **options).verify(
        "GET", url, signed, body, now=now
    )
    assert fast == expected
    assert verifier.verify("GET", url, signed, body, now=now) == expected


def _only(headers: dict[str, str], *names: str) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in names}


def _signed() -> dict[str, str]:
    """A canonical request to URLS[0], hand-signed (built when a test runs: at import
    time it would fill the component caches before a mutant is switched on)."""
    return _hand_signed(URLS[0])


def _signed_x() -> dict[str, str]:
    """The same, also covering the header x-a."""
    return _hand_signed(URLS[0], f'({BASE4} "x-a"){PARAMS}', headers={"x-a": "v"})


@pytest.mark.parametrize(
    ("request_", "options", "expected"),
    [
        pytest.param(
            {"headers": lambda: _only(_signed(), "signature")},
            {},
            "malformed_signature",
            id="signature-input-alone",
        ),
        pytest.param(
            {"headers": lambda: _only(_signed(), "signature-input")},
            {},
            "malformed_signature",
            id="signature-alone",
        ),
        pytest.param(
            {"headers": lambda: _only(_signed_x(), "x-a")},
            {},
            "invalid_signature",
            id="covered-header-absent",
        ),
        pytest.param(
            {"headers": _signed, "now": NOW + 301},
            {},
            "expired",
            id="created-too-old",
        ),
        pytest.param(
            {"headers": _signed, "now": NOW - 31},
            {},
            "not_yet_valid",
            id="created-too-far-ahead",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0], f'({BASE4});created={NOW - 10};keyid="client-1";expires={NOW - 1}'
                )
            },
            {"require_nonce": False},
            "expired",
            id="expires-passed",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0], f'({BASE4});created={NOW};keyid="client-1";expires={NOW - 1}'
                )
            },
            {"require_nonce": False},
            "invalid_parameters",
            id="expires-before-created",
        ),
        pytest.param(
            {"headers": lambda: _hand_signed(URLS[0], f'({BASE4});created={NOW};keyid="client-1"')},
            {},
            "invalid_parameters",
            id="nonce-missing",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0], f'({BASE4});created={NOW};keyid="client-1";alg="hmac-sha512"'
                )
            },
            {"require_nonce": False},
            "invalid_signature",
            id="alg-disagrees-with-key",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0], f'({BASE4});created={NOW};keyid="other";nonce="n"'
                )
            },
            {},
            "unknown_key",
            id="unknown-key",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0], f'({BASE4});created={NOW};keyid="other";alg="hmac-sha256";nonce="n"'
                )
            },
            {},
            "unknown_key",
            id="unknown-key-with-alg",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0], f'({BASE4});created={NOW};keyid="other";alg="rsa-pss-sha512";nonce="n"'
                )
            },
            {},
            "invalid_parameters",
            id="unknown-key-with-unsupported-alg",
        ),
        pytest.param(
            {"headers": _signed},
            {"max_components": 3},
            "malformed_signature",
            id="over-max-components",
        ),
        pytest.param(
            {"headers": _signed},
            {"max_field_bytes": 64},
            "malformed_signature",
            id="signature-input-over-max-field-bytes",
        ),
        pytest.param(
            {"headers": _signed},
            {"required_components": ["@method", "content-type"]},
            "insufficient_coverage",
            id="required-header-not-covered",
        ),
        pytest.param(
            {"headers": _signed, "body": b"x"},
            {},
            "insufficient_coverage",
            id="body-without-digest-coverage",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0],
                    f'({BASE4} "content-digest"){PARAMS}',
                    headers={"content-digest": make_content_digest(b"x")},
                ),
                "body": b"y",
            },
            {},
            "digest_mismatch",
            id="body-changed",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0], f'({BASE4} "x-a"){PARAMS}', headers={"x-a": "a\n b"}
                )
            },
            {},
            "ok",
            id="obs-fold-in-covered-header",
        ),
        pytest.param(
            {
                "headers": lambda: _hand_signed(
                    URLS[0], f'("@target-uri" {BASE4}){PARAMS}', headers={"content-type": "a"}
                )
            },
            {},
            "ok",
            id="component-without-template",
        ),
        pytest.param(
            {"headers": _signed, "url": URLS[0] + "#fragment"},
            {},
            "ok",
            id="url-with-fragment",
        ),
        pytest.param(
            {"headers": _signed, "method": b"GET"},
            {},
            "ok",
            id="bytes-method",
        ),
    ],
)
def test_fast_path_leaves_the_rest_to_the_general_path(
    request_: dict[str, Any], options: dict[str, Any], expected: str
) -> None:
    """Outside the canonical shape the fast path declines; verify() gives the general verdict."""
    request = {"method": "GET", "url": URLS[0], "body": None, "now": NOW, **request_}
    now = request.pop("now")
    request["headers"] = request["headers"]()
    verifier = Verifier({"client-1": SECRET}, **options)
    Verifier({"client-1": SECRET}).signature_base("GET", URLS[0], _signed())  # warm the cache
    try:
        fast = verifier._fast_accept(
            request["method"],
            request["url"],
            request["headers"],
            now,
            bool(request["body"]),
            request["body"],
            True,
        )
    except VerificationError as exc:
        fast = ("error", exc.reason)
    outcome = _outcome_at(verifier, request, now)
    assert outcome[0] == "ok" if expected == "ok" else outcome == ("error", expected)
    assert outcome == _outcome_at(GeneralOnly({"client-1": SECRET}, **options), request, now)
    # Only a body that fails its digest, and an unknown key id (refused after the same
    # MAC work as a bad MAC, THREATS K2), are judged on the fast path itself.
    judged_fast = expected in ("digest_mismatch", "unknown_key")
    assert fast == (("error", expected) if judged_fast else None)


def _outcome_at(verifier: Verifier, request: dict[str, Any], now: int) -> tuple[str, Any]:
    try:
        return "ok", verifier.verify(**request, now=now)
    except VerificationError as exc:
        return "error", exc.reason


def test_fast_path_names_the_absent_header() -> None:
    """A covered header that is absent is reported by name, even when the fast path saw it first."""
    with pytest.raises(InvalidSignature) as caught:
        Verifier({"client-1": SECRET}).verify("GET", URLS[0], _only(_signed_x(), "x-a"), now=NOW)
    assert caught.value.detail == "covered header 'x-a' is absent from the request"


def test_fast_path_wrong_mac_is_invalid_signature_with_evidence() -> None:
    """A wrong MAC of the right length fails on the fast path, naming label and key."""
    forged = {**_signed(), "signature": "sig1=:" + base64.b64encode(b"\0" * 32).decode() + ":"}
    verifier = Verifier({"client-1": SECRET})
    with pytest.raises(InvalidSignature) as caught:
        _fast_direct(verifier, URLS[0], forged)
    assert caught.value.detail == "the signature does not match the request"
    assert (caught.value.label, caught.value.key_id) == ("sig1", "client-1")


def test_fast_path_digest_mismatch_names_label_and_key() -> None:
    """A body that fails its digest on the fast path raises with the signature's label and key."""
    signed = _hand_signed(
        URLS[0],
        f'({BASE4} "content-digest"){PARAMS}',
        headers={"content-digest": make_content_digest(b"x")},
    )
    with pytest.raises(DigestMismatch) as caught:
        _fast_direct(Verifier({"client-1": SECRET}), URLS[0], signed, body=b"y")
    assert (caught.value.label, caught.value.key_id) == ("sig1", "client-1")


def test_fast_path_of_verify_headers_leaves_the_digest_to_the_caller() -> None:
    """verify_headers() accepts a covered digest without a body to check it against."""
    signed = _hand_signed(
        URLS[0],
        f'({BASE4} "content-digest"){PARAMS}',
        headers={"content-digest": make_content_digest(b"x")},
    )
    verifier = Verifier({"client-1": SECRET})
    fast = _fast_direct(verifier, URLS[0], signed, body=None, check_digest=False)
    assert fast is not None
    assert fast.components[-1] == "content-digest"
    assert verifier.verify_headers("GET", URLS[0], signed, has_body=True, now=NOW) == fast


def _asgi_headers(headers: dict[str, str]) -> dict[bytes, bytes]:
    return {name.encode("latin-1"): value.encode("latin-1") for name, value in headers.items()}


@pytest.mark.parametrize(
    ("parts", "extra", "taken"),
    [
        pytest.param(("https", "api.example", "/v1/items", None), {}, True, id="plain"),
        pytest.param(("http", "API.example:80", "/v1", "?x=1"), {}, True, id="query"),
        pytest.param(
            ("https", "api.example", "/v1", None),
            {"x-a": " \tX-ray\x0bX \t"},
            True,
            id="covered-header-trimmed",
        ),
        pytest.param(("https", "api.example/x", "/v1", None), {}, False, id="slash-in-authority"),
        pytest.param(("https", "api.example?x", "/v1", None), {}, False, id="mark-in-authority"),
        pytest.param(("https", "api.example#x", "/v1", None), {}, False, id="hash-in-authority"),
        pytest.param(("https", "api.example", "", None), {}, False, id="empty-path"),
        pytest.param(("https", "api.example", "v1", None), {}, False, id="relative-path"),
        pytest.param(("https", "api.example", "/v1?x=1", None), {}, False, id="mark-in-path"),
        pytest.param(("https", "api.example", "/v1#x", None), {}, False, id="hash-in-path"),
        pytest.param(("https", "api.example", "/v1", "?x#y"), {}, False, id="hash-in-query"),
    ],
)
def test_asgi_fast_path_judges_the_url_the_general_path_judges(
    parts: tuple[str, str, str, str | None], extra: dict[str, str], taken: bool
) -> None:
    """A request in ASGI parts is accepted on the fast path only where the parts join into the
    URL the general path reads, and the middleware's entry point accepts it either way."""
    scheme, authority, path, query = parts
    url = f"{scheme}://{authority}{path}{query or ''}"
    components = f'({BASE4} "x-a")' if extra else f"({BASE4})"
    signed = _hand_signed(url, components + PARAMS, headers=extra)
    verifier = Verifier({"client-1": SECRET}, clock=lambda: NOW)
    fast = verifier._fast_asgi(
        "GET", scheme, authority, path, query, _asgi_headers(signed), NOW, False
    )
    expected = GeneralOnly({"client-1": SECRET}).verify_headers(
        "GET", url, signed, has_body=False, now=NOW
    )
    assert (fast == expected) if taken else (fast is None)
    raw = list(_asgi_headers(signed).items())
    prepared = verifier._verify_headers_prepared(
        "GET", scheme, authority, path, query, _asgi_headers(signed), raw, False
    )
    assert prepared == expected


def test_asgi_fast_path_leaves_an_absent_header_to_the_general_path() -> None:
    """A covered header missing from an ASGI request is declined, then named by the general path."""
    signed = _hand_signed(URLS[0], f'({BASE4} "x-a"){PARAMS}', headers={"x-a": "v"})
    headers = _asgi_headers(_only(signed, "x-a"))
    verifier = Verifier({"client-1": SECRET}, clock=lambda: NOW)
    parts = ("https", "api.example", "/v1/items", None)
    assert verifier._fast_asgi("GET", *parts, headers, NOW, False) is None
    with pytest.raises(InvalidSignature) as caught:
        verifier._verify_headers_prepared("GET", *parts, headers, list(headers.items()), False)
    assert caught.value.detail == "covered header 'x-a' is absent from the request"


def test_fast_path_needs_static_keys_and_an_authority() -> None:
    """Without static keys (a tag policy) or with an empty authority, the fast path declines."""
    tagged = Verifier({"client-1": SECRET}, tag="t")
    assert _fast_direct(tagged, URLS[0], _signed()) is None
    verifier = Verifier({"client-1": SECRET})
    assert _fast_direct(verifier, "https:///v1/items", _signed()) is None
    with pytest.raises(ValueError, match="absolute"):
        verifier.verify("GET", "https:///v1/items", _signed(), now=NOW)


def test_asgi_entry_point_without_a_header_dict_or_with_a_body() -> None:
    """The middleware's entry point judges a header list alone (no dict), and a request that
    announces a body, exactly as verify_headers() does."""
    verifier = Verifier({"client-1": SECRET}, clock=lambda: NOW)
    parts = ("https", "api.example", "/v1/items", None)
    signed = _signed()
    raw = list(_asgi_headers(signed).items())
    expected = verifier.verify_headers("GET", URLS[0], signed, has_body=False, now=NOW)
    assert verifier._verify_headers_prepared("GET", *parts, None, raw, False) == expected
    # A body the signature does not bind: the default policy wants content-digest covered.
    for headers in (None, _asgi_headers(signed)):
        with pytest.raises(VerificationError) as caught:
            verifier._verify_headers_prepared("GET", *parts, headers, raw, True)
        assert caught.value.reason == "insufficient_coverage"
    # A covered digest is the caller's to check against the body it streams.
    digested = _hand_signed(
        URLS[0],
        f'({BASE4} "content-digest"){PARAMS}',
        headers={"content-digest": make_content_digest(b"x")},
    )
    fast = verifier._fast_asgi("GET", *parts, _asgi_headers(digested), NOW, True)
    assert fast is not None
    assert fast == verifier.verify_headers("GET", URLS[0], digested, has_body=True, now=NOW)


def test_asgi_fast_path_leaves_a_lone_field_to_the_general_path() -> None:
    """An ASGI request with only one of the two signature fields is malformed_signature."""
    verifier = Verifier({"client-1": SECRET}, clock=lambda: NOW)
    parts = ("https", "api.example", "/v1/items", None)
    for missing in ("signature", "signature-input"):
        headers = _asgi_headers(_only(_signed(), missing))
        assert verifier._fast_asgi("GET", *parts, headers, NOW, False) is None
        with pytest.raises(VerificationError) as caught:
            verifier._verify_headers_prepared("GET", *parts, headers, list(headers.items()), False)
        assert caught.value.reason == "malformed_signature"


def test_single_line_headers_decodes_pairs_and_refuses_what_it_would_lose() -> None:
    """Header pairs become a dict only when nothing is lost: no repeat, no upper case."""
    pairs = [(b"x-a", b"\xff v"), (b"signature", b"s")]
    assert _single_line_headers(pairs) == {"x-a": "\xff v", "signature": "s"}
    lowercase = {"x-a": "1", "signature": "s"}
    assert _single_line_headers(lowercase) is lowercase
    assert _single_line_headers([(b"x-a", b"1"), (b"x-a", b"2")]) is None
    assert _single_line_headers([(b"X-A", b"1")]) is None
    assert _single_line_headers({"X-A": "1"}) is None
    assert _single_line_headers({b"x-a": b"1"}) is None
    assert _single_line_headers([("x-a", "1")]) is None
    assert _single_line_headers((("x-a", "1"),)) is None


def test_repeated_covered_header_in_pairs_is_judged_on_all_its_lines() -> None:
    """A covered header sent twice as byte pairs counts both lines, never just the last."""
    signed = _hand_signed(URLS[0], f'({BASE4} "x-a"){PARAMS}', headers={"x-a": "b"})
    pairs = [(name.encode(), value.encode()) for name, value in signed.items()]
    verifier = Verifier({"client-1": SECRET})
    assert verifier.verify("GET", URLS[0], pairs, now=NOW).covers("x-a")
    doubled = [(b"x-a", b"a"), *pairs]
    with pytest.raises(InvalidSignature):
        verifier.verify("GET", URLS[0], doubled, now=NOW)


class _Spy(Verifier):
    """A verifier that records what its fast path answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: list[Any] = []

    def _fast_core(self, *args: Any) -> Any:
        answer = super()._fast_core(*args)
        self.answers.append(answer)
        return answer


@pytest.mark.parametrize(
    "entry", ["verify", "averify", "verify_headers", "averify_headers", "middleware"]
)
async def test_every_entry_point_accepts_the_common_shape_on_the_fast_path(entry: str) -> None:
    """Each entry point hands a canonical request to the fast path, which accepts it there:
    a change that quietly sends everything the general way is a regression too."""
    signed = _signed()
    verifier = _Spy({"client-1": SECRET}, clock=lambda: NOW)
    expected = GeneralOnly({"client-1": SECRET}).verify("GET", URLS[0], signed, now=NOW)
    if entry == "verify":
        verified = verifier.verify("GET", URLS[0], signed)
    elif entry == "averify":
        verified = await verifier.averify("GET", URLS[0], signed)
    elif entry == "verify_headers":
        verified = verifier.verify_headers("GET", URLS[0], signed, has_body=False)
    elif entry == "averify_headers":
        verified = await verifier.averify_headers("GET", URLS[0], signed, has_body=False)
    else:
        headers = _asgi_headers(signed)
        parts = ("https", "api.example", "/v1/items", None)
        verified = verifier._verify_headers_prepared(
            "GET", *parts, headers, list(headers.items()), False
        )
    assert verified == expected
    assert verifier.answers == [expected]
