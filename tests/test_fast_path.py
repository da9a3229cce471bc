"""The verifier's fast path agrees with the general path on every input.

``Verifier._fast_accept`` handles the common shape in one pass and hands every
other input to the general path. Its contract: whatever it accepts, the general
path accepts with the same evidence; whatever it rejects, the general path
rejects with the same reason. These tests check that contract on signed
requests and on mutated copies of them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmacguard import HMACKey, Signer, VerificationError, Verifier
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
    created = NOW - draw(st.sampled_from([0, 10, 299, 301, -29, -31]))
    added = signer.sign("POST", url, headers, body, now=created)
    return {"method": "POST", "url": url, "headers": {**headers, **added}, "body": body}


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
        "sig1=::",  # empty
        "sig2=:YWJj:",  # another label
    ],
)
def test_fast_path_defers_odd_signature_values(signature: str) -> None:
    """Odd Signature values get exactly the general path's answer, never an exception."""
    signer = Signer(HMACKey("client-1", SECRET))
    headers = signer.sign("GET", URLS[0], {}, None, now=NOW) | {"Signature": signature}
    verifier = Verifier({"client-1": SECRET})
    verifier.verify("GET", URLS[0], signer.sign("GET", URLS[0], {}, None, now=NOW), now=NOW)
    expected = _outcome(
        GeneralOnly({"client-1": SECRET}),
        {"method": "GET", "url": URLS[0], "headers": headers, "body": None},
    )
    assert expected[0] == "error"
    assert (
        _outcome(verifier, {"method": "GET", "url": URLS[0], "headers": headers, "body": None})
        == expected
    )


def test_fast_path_defers_names_that_fold_together() -> None:
    """A dict with two spellings of one covered header is judged by the general path."""
    signer = Signer(HMACKey("client-1", SECRET))
    headers = {"content-type": "application/json"}
    headers |= signer.sign("POST", URLS[0], headers, b"{}", now=NOW)
    request = {"method": "POST", "url": URLS[0], "body": b"{}"}
    verifier = Verifier({"client-1": SECRET})
    assert _outcome(verifier, {**request, "headers": headers})[0] == "ok"
    doubled = {**headers, "Content-Type": "text/plain"}
    # Both lines count (RFC 9421 §2.1): the signed value was one line only.
    assert _outcome(verifier, {**request, "headers": doubled}) == ("error", "invalid_signature")
