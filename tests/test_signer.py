"""Signer: the headers it emits, its options, and its round trip through Verifier."""

from __future__ import annotations

import array
import asyncio
import base64
import hashlib
import hmac
import re
from typing import Any

import pytest

from hmacguard import (
    DEFAULT_COMPONENTS,
    HMACKey,
    Signer,
    VerificationError,
    Verifier,
    _middleware,
    _signer,
    make_content_digest,
)
from hmacguard._structured_fields import parse_dictionary

NOW = 1_700_000_000
URL = "https://api.example/v1/items?id=1"
BODY = b'{"amount": 10}'
KEY = HMACKey("client-1", b"k" * 32)
BASE4 = ("@method", "@authority", "@path", "@query")
PARAM_ORDER = ("created", "keyid", "alg", "expires", "nonce", "tag")


def members(headers: dict[str, str]) -> tuple[list[str], dict[str, object]]:
    """The covered identifiers and the parameters of the single Signature-Input member."""
    (member,) = parse_dictionary(headers["Signature-Input"]).values()
    return [item.value for item in member.items], dict(member.params)  # type: ignore[union-attr,misc]


def sign(
    headers: Any = None,
    body: bytes | None = None,
    *,
    method: str = "GET",
    key: HMACKey = KEY,
    **options: Any,
) -> dict[str, str]:
    """Sign a request to URL at NOW with a Signer built from the options."""
    return Signer(key, **options).sign(method, URL, headers, body, now=NOW)


def round_trip(
    headers: dict[str, str],
    request_headers: Any = (),
    body: bytes | None = None,
    *,
    method: str = "GET",
    key: HMACKey = KEY,
    **verifier_options: Any,
) -> Any:
    """Verify the signed request with a Verifier over ``key``."""
    all_headers = [*dict(request_headers).items(), *headers.items()]
    verifier = Verifier([key], **verifier_options)
    return verifier.verify(method, URL, all_headers, body, now=NOW)


# -- default components -----------------------------------------------------------


def test_default_components_without_body() -> None:
    """Without a body the default covers @method @authority @path @query and adds no digest."""
    headers = sign({"content-type": "text/plain"})
    assert members(headers)[0] == list(BASE4)
    assert set(headers) == {"Signature-Input", "Signature"}


def test_default_components_with_body_without_content_type() -> None:
    """With a body but no content-type, content-digest is added."""
    headers = sign(None, BODY, method="POST")
    assert members(headers)[0] == [*BASE4, "content-digest"]
    assert headers["Content-Digest"] == make_content_digest(BODY)


def test_default_components_with_body_and_content_type() -> None:
    """With a body and a content-type, both content-type and content-digest are covered."""
    headers = sign({"Content-Type": "application/json"}, BODY, method="POST")
    assert members(headers)[0] == [*BASE4, "content-type", "content-digest"]


def test_empty_body_counts_as_no_body() -> None:
    """b"" gets the same default components as None."""
    assert members(sign(None, b""))[0] == list(BASE4)
    assert "Content-Digest" not in sign(None, b"")


@pytest.mark.parametrize("body", [None, b""])
def test_an_empty_chunked_body_is_covered_as_a_body(body: bytes | None) -> None:
    """Transfer-Encoding announces a body of unknown size, which the middleware holds to
    Content-Digest before reading it: with one, even an empty body gets content-digest
    (the sha-256 of nothing), so the defaults are not refused insufficient_coverage."""
    headers = sign({"Transfer-Encoding": "chunked"}, body, method="POST")
    assert members(headers)[0] == [*BASE4, "content-digest"]
    assert headers["Content-Digest"] == make_content_digest(b"")


@pytest.mark.parametrize("name", ["X-HTTP-Method-Override", "X-Method-Override", "X-HTTP-Method"])
@pytest.mark.parametrize("body", [None, BODY])
def test_threat_U6_default_components_cover_a_method_override_header(
    name: str, body: bytes | None
) -> None:
    """A method-override header the request has is covered by default, after the four, body
    or not (the middleware refuses one left uncovered)."""
    headers = {name: "DELETE", "Content-Type": "application/json"}
    signed = sign(headers, body, method="POST")
    body_part = ["content-type", "content-digest"] if body else []
    assert members(signed)[0] == [*BASE4, name.lower(), *body_part]
    assert round_trip(signed, headers, body, method="POST").components[4] == name.lower()


def test_threat_U6_default_components_cover_every_override_in_the_middlewares_order() -> None:
    """Two override headers are both covered, in the order of the list the middleware
    checks (one list, the signer's: a header added to it is covered and checked alike)."""
    assert _middleware.METHOD_OVERRIDES is _signer.METHOD_OVERRIDES
    headers = {"x-http-method": "PUT", "x-http-method-override": "DELETE"}
    assert members(sign(headers))[0] == [*BASE4, "x-http-method-override", "x-http-method"]


def test_default_components_marker_repr() -> None:
    """DEFAULT_COMPONENTS is a named marker."""
    assert repr(DEFAULT_COMPONENTS) == "DEFAULT_COMPONENTS"


# -- exact output -----------------------------------------------------------------


def test_signature_is_hmac_of_the_hand_built_base() -> None:
    """The Signature is HMAC-SHA256 over the RFC 9421 §2.5 base, built here independently."""
    headers = sign(nonce=lambda: "n-1")
    params = '("@method" "@authority" "@path" "@query");created=1700000000;keyid="client-1"'
    params += ';nonce="n-1"'
    assert headers["Signature-Input"] == f"sig1={params}"
    base = "\n".join(
        [
            '"@method": GET',
            '"@authority": api.example',
            '"@path": /v1/items',
            '"@query": ?id=1',
            f'"@signature-params": {params}',
        ]
    ).encode()
    mac = hmac.new(b"k" * 32, base, hashlib.sha256).digest()
    assert headers["Signature"] == f"sig1=:{base64.b64encode(mac).decode()}:"


def test_parameter_order() -> None:
    """Parameters come in the order created, keyid, alg, expires, nonce, tag."""
    headers = sign(include_alg=True, expires_in=60, tag="api", nonce=lambda: "n-1")
    _, params = members(headers)
    assert tuple(params) == PARAM_ORDER
    assert params == {
        "created": NOW,
        "keyid": "client-1",
        "alg": "hmac-sha256",
        "expires": NOW + 60,
        "nonce": "n-1",
        "tag": "api",
    }
    assert headers["Signature-Input"].endswith(
        ';created=1700000000;keyid="client-1";alg="hmac-sha256";expires=1700000060'
        ';nonce="n-1";tag="api"'
    )


def test_minimal_parameters() -> None:
    """By default only created, keyid and nonce are emitted."""
    _, params = members(sign())
    assert tuple(params) == ("created", "keyid", "nonce")


def test_created_is_the_integer_part_of_now() -> None:
    """A fractional now is truncated to whole seconds."""
    headers = Signer(KEY).sign("GET", URL, None, None, now=NOW + 0.9)
    assert members(headers)[1]["created"] == NOW


def test_clock_is_used_when_now_is_omitted() -> None:
    """Without now=, the signer asks its clock."""
    headers = Signer(KEY, clock=lambda: NOW + 5).sign("GET", URL)
    assert members(headers)[1]["created"] == NOW + 5


def test_keyid_is_serialised_as_a_string() -> None:
    """A key id with a quote and a backslash is escaped and still round-trips."""
    odd = HMACKey('we"ird\\id', b"k" * 32)
    headers = sign(key=odd)
    assert ';keyid="we\\"ird\\\\id"' in headers["Signature-Input"]
    assert round_trip(headers, key=odd).key_id == 'we"ird\\id'


def test_sign_does_not_mutate_the_request_headers() -> None:
    """The caller's headers are left as they were."""
    request = {"content-type": "application/json"}
    sign(request, BODY, method="POST")
    assert request == {"content-type": "application/json"}


# -- options ----------------------------------------------------------------------


def test_include_alg_names_the_keys_algorithm() -> None:
    """include_alg emits the key's algorithm, hmac-sha256."""
    headers = sign(include_alg=True)
    assert ';alg="hmac-sha256"' in headers["Signature-Input"]
    assert round_trip(headers).algorithm == "hmac-sha256"


def test_include_alg_with_an_unregistered_algorithm_is_refused() -> None:
    """RFC 9421 §3.3: alg values "MUST use values from the HTTP Message Signature
    Algorithms Registry", which has no hmac-sha512: the signer will not write it (the
    key decides; a sha512 signature without alg verifies)."""
    key512 = HMACKey("client-1", b"k" * 64, "hmac-sha512")
    with pytest.raises(ValueError, match="not in the HTTP Signature Algorithms registry"):
        Signer(key512, include_alg=True)
    headers = sign(key=key512)
    assert "alg=" not in headers["Signature-Input"]
    assert round_trip(headers, key=key512).algorithm == "hmac-sha512"


def test_expires_in() -> None:
    """expires_in sets expires to created plus that many seconds."""
    assert members(sign(expires_in=30))[1]["expires"] == NOW + 30


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "60"])
def test_expires_in_must_be_a_positive_int(value: object) -> None:
    """expires_in must be a positive integer."""
    with pytest.raises(ValueError, match="expires_in"):
        Signer(KEY, expires_in=value)  # type: ignore[arg-type]


def test_tag() -> None:
    """tag is emitted as a string parameter."""
    assert members(sign(tag="api"))[1]["tag"] == "api"


@pytest.mark.parametrize("tag", ["", "caf\u00e9", "a\nb", "t" * 257])
def test_tag_must_be_printable_ascii(tag: str) -> None:
    """tag must be 1-256 printable ASCII characters."""
    with pytest.raises(ValueError, match="tag"):
        Signer(KEY, tag=tag)


def test_tag_must_be_text() -> None:
    """A non-str tag is a TypeError."""
    with pytest.raises(TypeError, match="tag"):
        Signer(KEY, tag=5)  # type: ignore[arg-type]


def test_nonce_false_omits_it() -> None:
    """nonce=False emits no nonce parameter."""
    assert "nonce" not in members(sign(nonce=False))[1]


def test_nonce_callable_is_used() -> None:
    """A nonce callable supplies the nonce of each request."""
    values = iter(["first", "second"])
    signer = Signer(KEY, nonce=lambda: next(values))
    nonces = [members(signer.sign("GET", URL, now=NOW))[1]["nonce"] for _ in range(2)]
    assert nonces == ["first", "second"]


def test_explicit_nonce_overrides_the_option() -> None:
    """sign(nonce=...) wins over the generator, even when the signer has nonce=False."""
    assert members(Signer(KEY).sign("GET", URL, now=NOW, nonce="mine"))[1]["nonce"] == "mine"
    no_nonce = Signer(KEY, nonce=False)
    assert members(no_nonce.sign("GET", URL, now=NOW, nonce="mine"))[1]["nonce"] == "mine"


@pytest.mark.parametrize("nonce", ["", "a\nb", "caf\u00e9", "n" * 257])
def test_invalid_nonce_is_refused(nonce: str) -> None:
    """An explicit or generated nonce that is not 1-256 printable ASCII is a ValueError."""
    with pytest.raises(ValueError, match="nonce"):
        Signer(KEY).sign("GET", URL, now=NOW, nonce=nonce)
    with pytest.raises(ValueError, match="nonce"):
        Signer(KEY, nonce=lambda: nonce).sign("GET", URL, now=NOW)


def test_nonce_option_type() -> None:
    """nonce must be a bool or a callable."""
    with pytest.raises(TypeError, match="nonce"):
        Signer(KEY, nonce="fixed")  # type: ignore[arg-type]


def test_fresh_nonce_every_call() -> None:
    """1000 calls give 1000 distinct URL-safe nonces of at least 22 characters."""
    signer = Signer(KEY)
    nonces = [members(signer.sign("GET", URL, now=NOW))[1]["nonce"] for _ in range(1000)]
    assert len(set(nonces)) == 1000
    for nonce in nonces:
        assert isinstance(nonce, str)
        assert len(nonce) >= 22
        assert re.fullmatch(r"[A-Za-z0-9_-]+", nonce)


@pytest.mark.parametrize("label", ["sig1", "a", "*x", "x.y-z_1*"])
def test_valid_labels(label: str) -> None:
    """Any structured-field key is a valid label, and it round-trips."""
    headers = sign(label=label)
    assert headers["Signature-Input"].startswith(f"{label}=(")
    assert headers["Signature"].startswith(f"{label}=:")
    assert round_trip(headers).label == label


@pytest.mark.parametrize("label", ["", "Sig1", "1sig", "sig 1", "sig=1", "s\u00e9g", "-a"])
def test_invalid_labels(label: str) -> None:
    """A label that is not a structured-field key is a ValueError."""
    with pytest.raises(ValueError, match="label"):
        Signer(KEY, label=label)


def test_label_must_be_text() -> None:
    """A non-str label is a ValueError too."""
    with pytest.raises(ValueError, match="label"):
        Signer(KEY, label=1)  # type: ignore[arg-type]


def test_digest_sha512() -> None:
    """digest="sha-512" emits a SHA-512 Content-Digest that verifies."""
    headers = sign(None, BODY, method="POST", digest="sha-512")
    expected = base64.b64encode(hashlib.sha512(BODY).digest()).decode()
    assert headers["Content-Digest"] == f"sha-512=:{expected}:"
    assert round_trip(headers, body=BODY, method="POST").covers("content-digest")


@pytest.mark.parametrize("digest", ["md5", "sha", "SHA-256", "sha256", ""])
def test_unsupported_digest_refused(digest: str) -> None:
    """Only the Active algorithms sha-256 and sha-512 are accepted."""
    with pytest.raises(ValueError, match="digest"):
        Signer(KEY, digest=digest)


def test_content_digest_matches_the_body() -> None:
    """The returned Content-Digest is sha-256 of the exact body bytes."""
    body = bytes(range(256)) * 3
    headers = sign(None, body, method="PUT")
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert headers["Content-Digest"] == f"sha-256=:{expected}:"


def test_signer_replaces_a_stale_content_digest() -> None:
    """A Content-Digest already on the request is recomputed from the body, not trusted."""
    stale = {"content-digest": make_content_digest(b"old")}
    headers = sign(stale, BODY, method="POST")
    assert headers["Content-Digest"] == make_content_digest(BODY)


def test_content_digest_covered_on_empty_body() -> None:
    """Covering content-digest explicitly with no body digests the empty body."""
    headers = sign(components=[*BASE4, "content-digest"])
    assert headers["Content-Digest"] == make_content_digest(b"")


def test_signing_an_absent_header_is_refused() -> None:
    """Covering a header the request does not have is a ValueError naming it."""
    with pytest.raises(ValueError, match="x-missing"):
        sign({"x-present": "1"}, components=[*BASE4, "x-missing"])


def test_signing_a_line_break_is_refused() -> None:
    """A covered value with a bare line break cannot be signed."""
    with pytest.raises(ValueError, match="line break"):
        sign({"x-f": "a\nb"}, components=["x-f"])


@pytest.mark.parametrize(
    "components",
    [
        ["Content-Type"],
        ["@status"],
        ["@signature-params"],
        ["@foo"],
        ['"x";req'],
        ["@query-param"],
    ],
)
def test_invalid_components_refused_at_construction(components: list[str]) -> None:
    """An invalid component identifier is a ValueError from the constructor."""
    with pytest.raises(ValueError, match="invalid component"):
        Signer(KEY, components=components)


def test_duplicate_components_refused() -> None:
    """Listing the same component twice is a ValueError."""
    with pytest.raises(ValueError, match="twice"):
        Signer(KEY, components=["@method", "@method"])


def test_components_as_one_string_refused() -> None:
    """components="@method" (a str, not a list) is a TypeError."""
    with pytest.raises(TypeError, match="components"):
        Signer(KEY, components="@method")


def test_key_must_be_an_hmac_key() -> None:
    """The signer takes an HMACKey, not raw bytes."""
    with pytest.raises(TypeError, match="HMACKey"):
        Signer(b"k" * 32)  # type: ignore[arg-type]


def test_repr_hides_the_secret() -> None:
    """The signer's repr names the key id and label only."""
    signer = Signer(KEY)
    assert repr(signer) == "Signer(key_id='client-1', label='sig1')"
    assert signer.key is KEY


# -- bodies that are not bytes -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"amount": 10}', "body must be bytes (got str): encode it, e.g. body.encode()"),
        (
            {"amount": 10},
            "body must be bytes (got dict): serialize it, e.g. json.dumps(body).encode()",
        ),
        ([1, 2], "body must be bytes (got list): serialize it, e.g. json.dumps(body).encode()"),
        (14, "body must be bytes (got int): pass the exact bytes that are sent"),
    ],
    ids=["str", "dict", "list", "int"],
)
def test_a_body_that_is_not_bytes_is_a_clear_type_error(body: object, message: str) -> None:
    """A str, a dict or an int body is refused with a sentence saying how to fix it, not
    Python's own "string argument without an encoding" (or 14 zero bytes signed)."""
    with pytest.raises(TypeError) as info:
        sign(body=body, method="POST")  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    "body",
    [bytearray(BODY), memoryview(BODY), array.array("B", BODY)],
    ids=["bytearray", "memoryview", "array"],
)
def test_bytes_like_bodies_sign_as_their_bytes(body: Any) -> None:
    """bytearray, memoryview and other buffers sign exactly like the bytes they hold."""
    assert sign(body=body, method="POST", nonce=False) == sign(
        body=BODY, method="POST", nonce=False
    )


def test_verifier_refuses_a_str_body_with_the_same_clear_error() -> None:
    """Verifier.verify and averify refuse a str body by name, not with hashlib's message."""
    headers = sign(body=BODY, method="POST")
    verifier = Verifier([KEY])
    with pytest.raises(TypeError, match=re.escape("body must be bytes (got str): encode it")):
        verifier.verify("POST", URL, headers, BODY.decode(), now=NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("body must be bytes (got dict)")):
        asyncio.run(verifier.averify("POST", URL, headers, {"amount": 10}, now=NOW))  # type: ignore[arg-type]
    for body in (BODY, bytearray(BODY), memoryview(BODY)):
        assert verifier.verify("POST", URL, headers, body, now=NOW).key_id == "client-1"  # type: ignore[arg-type]


# -- URLs that are not as sent -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://api.example/a b", "url[21] is a space, in the path"),
        ("https://api.example/a?q=x y", "url[25] is a space, in the query"),
        ("https://api.example/caf\u00e9", "url[23] is a non-ASCII character (U+00E9), in the path"),
        (b"https://api.example/caf\xc3\xa9", "url[23] is a non-ASCII character (U+00C3), in the"),
        ("https://api.example/a?q=\x00", "url[24] is a control character (U+0000), in the query"),
        ("https://api.example/a\tb", "url[21] is a control character (U+0009), in the path"),
        ("https://api.example/a?q=\x7f", "url[24] is a control character (U+007F), in the query"),
        (
            "https://b\u00fccher.example/",
            "url[9] is a non-ASCII character (U+00FC), in the authority",
        ),
    ],
    ids=["space-path", "space-query", "non-ascii", "non-ascii-bytes", "nul", "tab", "del", "idn"],
)
def test_a_url_not_encoded_as_sent_is_refused_by_position(url: str | bytes, message: str) -> None:
    """A space, a control or a non-ASCII character cannot be sent as it is: the signer
    refuses it, naming its index and part, instead of signing what the server never sees."""
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        Signer(KEY).sign("GET", url, {})
    assert "sign the URL exactly as it is sent" in str(info.value)


def test_a_url_error_never_quotes_the_query() -> None:
    """The query may hold a token: the error names a position, not the URL."""
    token = "tok_4f9a8b7c6d5e"
    with pytest.raises(ValueError, match="in the query") as info:
        Signer(KEY).sign("GET", f"https://api.example/a?token={token}&q=x y", {})
    assert token not in str(info.value)
    assert "api.example" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example/a%20b?q=x%20y",
        "https://api.example/caf%C3%A9",
        "https://api.example/{x}|^?q=[]",
        "https://api.example/a#a fragment is not sent",
    ],
    ids=["percent-encoded", "utf-8-encoded", "other-printable", "fragment"],
)
def test_urls_that_can_be_sent_as_they_are_are_signed(url: str) -> None:
    """Percent-encoded URLs, printable characters and a fragment's content are fine."""
    headers = Signer(KEY).sign("GET", url, {}, now=NOW)
    assert Verifier([KEY]).verify("GET", url, headers, now=NOW).key_id == "client-1"


# -- round trips ------------------------------------------------------------------

ROUND_TRIPS: list[Any] = [
    pytest.param({}, {}, id="defaults"),
    pytest.param({"include_alg": True}, {}, id="include_alg"),
    pytest.param({"expires_in": 60}, {}, id="expires_in"),
    pytest.param({"tag": "api"}, {"tag": "api"}, id="tag"),
    pytest.param({"nonce": False}, {"require_nonce": False}, id="no-nonce"),
    pytest.param({"nonce": lambda: "custom-nonce"}, {}, id="nonce-callable"),
    pytest.param({"label": "req"}, {}, id="label"),
    pytest.param({"digest": "sha-512"}, {}, id="sha-512"),
    pytest.param(
        {
            "components": [*BASE4, "content-digest", "x-dict;sf", '"x-dict";key="b"'],
            "structured_fields": {"x-dict": "dictionary"},
        },
        {"structured_fields": {"x-dict": "dictionary"}},
        id="sf-and-key",
    ),
    pytest.param(
        {"components": [*BASE4, "content-digest", "x-list;bs"]},
        {},
        id="bs",
    ),
    pytest.param(
        {
            "components": [*BASE4, "content-digest", "x-custom;sf"],
            "structured_fields": {"x-custom": "list"},
        },
        {"structured_fields": {"x-custom": "list"}},
        id="structured_fields",
    ),
    pytest.param(
        {
            "components": [
                "@target-uri",
                "@scheme",
                "@request-target",
                '@query-param;name="id"',
                *BASE4,
                "content-digest",
            ]
        },
        {},
        id="all-derived",
    ),
    pytest.param(
        {"include_alg": True, "expires_in": 5, "tag": "t", "label": "all", "digest": "sha-512"},
        {"tag": "t"},
        id="everything",
    ),
]


@pytest.mark.parametrize(("signer_options", "verifier_options"), ROUND_TRIPS)
def test_round_trip(signer_options: dict[str, Any], verifier_options: dict[str, Any]) -> None:
    """A request signed with each option verifies, and the result reflects the option."""
    request = {
        "content-type": "application/json",
        "x-dict": "a=1,   b=2;q",
        "x-list": "one",
        "x-custom": "a,b",
    }
    headers = sign(request, BODY, method="POST", **signer_options)
    verified = round_trip(headers, request, BODY, method="POST", **verifier_options)
    identifiers, params = members(headers)
    assert verified.created == NOW
    assert verified.nonce == params.get("nonce")
    assert verified.expires == params.get("expires")
    assert verified.tag == params.get("tag")
    assert verified.label == signer_options.get("label", "sig1")
    assert len(verified.components) == len(identifiers)
    with pytest.raises(VerificationError) as info:
        round_trip(headers, request, BODY + b" ", method="POST", **verifier_options)
    assert info.value.reason == "digest_mismatch"
    with pytest.raises(VerificationError) as info:
        round_trip(headers, request, BODY, method="PUT", **verifier_options)
    assert info.value.reason == "invalid_signature"
