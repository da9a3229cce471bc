"""THREATS.md at the core: every catalogue entry that the sans-IO Signer/Verifier can show.

Each test is named ``test_threat_<ID>_<what>`` after an entry of /work/shared/THREATS.md
sections 2 (C), 3 (D), 4 (K), 7 (T), 8 (P) and 9 (M). Requests are plain values
(method, absolute URL, header pairs, body) signed with :class:`Signer` and then
tampered with; where a case needs a *validly* signed but policy-breaking request, a lax
signer (fewer components) or :func:`forge` (a real MAC over an arbitrary
``Signature-Input`` member) makes it, so that the rejection proves the policy, not a
broken MAC.

Core behaviour, and readings of the policy, that differ from the catalogue's black-box wording:

- C4(b): the core joins repeated field lines with ``", "`` (RFC 9421 §2.1), so a
  covered one-line value ``a, b`` split into two lines ``a`` and ``b`` *verifies* at
  the core. Whether a covered non-list field may occur more than once, or the app must
  see the combined value, is a policy the adapter/middleware has to decide; the test
  below asserts the current core behaviour.
- K5: RFC 9651 §4.2.7 makes byte sequences malleable (missing padding, non-zero pad
  bits), so a re-encoded ``Signature`` still decodes to the same MAC and the core
  accepts it, reporting the same ``nonce``. Rejecting the replay is the nonce store's
  job, which is why its key must be (keyid, nonce) and never the signature text.
- C7: only line breaks and non-ASCII characters are refused in a covered value;
  other ASCII control bytes (NUL, DEL) are signed and verified as they are.
- M1: "checks run per candidate; the first that passes wins" is read as covering the
  per-member structure checks too (component identifiers, member shape, component
  count), so a second signer's signature that hmacguard cannot process (say, one
  covering a trailer) does not block a valid sig1. Field-level errors (SF syntax,
  label mismatch, duplicate labels, sizes, label count) still fail the whole request.

Left to the adapter issues (not coverable without a server, socket or nonce store):

- C3: the raw-socket ``@method: DELETE`` header line (here: a header named ``@method``
  never replaces the derived component).
- C4(b) policy for covered singleton fields; C4(e) two ``Host`` lines (HTTP parsing).
- C5: obs-fold as h11 and httptools deliver it (here: a folded value handed to the core).
- C9: the app acting on exactly the verified bytes and method (here: the core never
  normalises what it verifies).
- D2: Starlette reading a GET body; D4: the route matrix (sub-apps, HEAD, 404, 405,
  OPTIONS, websockets) and the debug/disable flag (here: no signature fields ->
  ``missing_signature``).
- K2: byte-identical 401 responses and latency distributions, and resolvers never
  dereferencing URL-like key ids (here: distinct reason codes for logs, a dummy MAC for
  unknown keys, long key ids refused before lookup).
- K3: the middleware and ``httpx.Auth`` configuration errors and ``whsec_`` decoding.
- K4/K5: the statistical timing test; the replay rejection of a re-encoded signature.
- T5: hosts with different clocks sharing Redis (here: ``nonce_ttl`` covers the
  acceptance window measured from the verifier's behaviour plus one clock skew).
- P1: 400/431 from the HTTP server and the CPU budget per request; P2: linear parse
  time (no timers here); P4/B9: the body not being read after a bad MAC (here: the
  digest is never computed).
- M4: trailers (ASGI exposes none; here: ``Trailer: Signature`` without a
  ``Signature`` field is unsigned).
- Sections 1 (replay), 5 (URI), 6 (body), 10 (responses) and 11 (webhooks) belong to
  the nonce store, adapter and webhook test modules.
"""

from __future__ import annotations

import base64
import hmac
import math
import string
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from hmacguard import (
    HMACKey,
    Keyring,
    Signer,
    VerificationError,
    VerifiedSignature,
    Verifier,
    make_content_digest,
    verify_content_digest,
)
from hmacguard import _structured_fields as sf
from hmacguard._components import parse_component
from hmacguard._message import Message
from hmacguard._signature_base import build_signature_base
from hmacguard._structured_fields import parse_inner_list, serialize_inner_list

Headers = list[tuple[str, str]]

NOW = 1_700_000_000
URL = "https://api.example/v1/items?id=1"
BODY = b'{"amount": 10}'
KEY = HMACKey("client-1", b"k" * 32)
ATTACKER = HMACKey("attacker", b"a" * 32)
CT: Headers = [("content-type", "application/json")]
BASE4 = ("@method", "@authority", "@path", "@query")
GET4 = '("@method" "@authority" "@path" "@query")'
PARAMS = f';created={NOW};keyid="client-1";nonce="nonce-1"'


# -- helpers ------------------------------------------------------------------


def signed(
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    *,
    method: str = "GET",
    url: str = URL,
    now: int = NOW,
    key: HMACKey = KEY,
    **signer_options: Any,
) -> Headers:
    """Return ``headers`` plus the fields a Signer adds for this request."""
    headers = list(headers)
    added = Signer(key, **signer_options).sign(method, url, headers, body, now=now)
    return [*headers, *added.items()]


def post_signed(headers: Iterable[tuple[str, str]] = CT, **options: Any) -> Headers:
    """Sign the standard POST with its JSON body."""
    return signed(headers, BODY, method="POST", **options)


def verify(
    headers: Sequence[tuple[Any, Any]] | None,
    body: bytes | None = None,
    *,
    method: str = "GET",
    url: str = URL,
    now: float = NOW,
    keys: Any = (KEY,),
    **verifier_options: Any,
) -> VerifiedSignature:
    """Verify a request with a Verifier built from ``keys`` and the options."""
    verifier = Verifier(list(keys) if isinstance(keys, tuple) else keys, **verifier_options)
    return verifier.verify(method, url, headers, body, now=now)


def post_verify(headers: Sequence[tuple[str, str]], **options: Any) -> VerifiedSignature:
    """Verify the standard POST with its JSON body."""
    return verify(headers, options.pop("body", BODY), method="POST", **options)


def rejection(call: Callable[[], object]) -> VerificationError:
    """Run ``call``, expect a VerificationError and return it."""
    with pytest.raises(VerificationError) as info:
        call()
    return info.value


def field(headers: Headers, name: str) -> str:
    """The value of the single line ``name`` (case-insensitive)."""
    (value,) = [v for n, v in headers if n.lower() == name.lower()]
    return value


def replace(headers: Headers, name: str, *values: str) -> Headers:
    """Drop every line named ``name`` and append ``values`` as new lines of it."""
    kept = [(n, v) for n, v in headers if n.lower() != name.lower()]
    return kept + [(name, v) for v in values]


def with_input(headers: Headers, member: str, label: str = "sig1") -> Headers:
    """Replace the Signature-Input with ``label=member``, keeping the Signature."""
    return replace(headers, "Signature-Input", f"{label}={member}")


def mac_of(headers: Headers, label: str = "sig1") -> bytes:
    """The MAC bytes of ``label`` in the Signature field."""
    value = field(headers, "Signature")
    prefix = f"{label}=:"
    assert value.startswith(prefix)
    return base64.b64decode(value[len(prefix) : -1])


def forge(
    member: str,
    headers: Iterable[tuple[str, str]] = (),
    *,
    method: str = "GET",
    url: str = URL,
    key: HMACKey = KEY,
    label: str = "sig1",
    hash_name: str | None = None,
) -> Headers:
    """Add a Signature-Input ``label=member`` with a real MAC over its signature base.

    This is what a lax or hostile client holding the key can send: the MAC is right,
    so only the policy can reject the request.
    """
    headers = list(headers)
    inner = parse_inner_list(member)
    components = [parse_component(item) for item in inner.items]
    base = build_signature_base(
        Message(method, url, headers), components, serialize_inner_list(inner)
    )
    mac = hmac.digest(key.secret, base, hash_name or key.alg.hash_name)
    return [
        *headers,
        ("Signature-Input", f"{label}={member}"),
        ("Signature", f"{label}=:{base64.b64encode(mac).decode()}:"),
    ]


@pytest.fixture
def bases(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every signature base the Verifier builds during the test, in order."""
    seen: list[bytes] = []
    real = build_signature_base

    def spy(*args: Any, **kwargs: Any) -> bytes:
        base = real(*args, **kwargs)
        seen.append(base)
        return base

    monkeypatch.setattr("hmacguard._verifier.build_signature_base", spy)
    return seen


@pytest.fixture
def mac_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-element list counting the HMAC computations made after the fixture ran."""
    count = [0]
    real = HMACKey.mac

    def counting(self: HMACKey, data: bytes) -> bytes:
        count[0] += 1
        return real(self, data)

    monkeypatch.setattr(HMACKey, "mac", counting)
    return count


def test_helpers_forge_matches_the_signer() -> None:
    """forge() produces the same MAC as Signer for the same member, so it is a fair lax client."""
    headers = signed(nonce=lambda: "nonce-1")
    forged = forge(GET4 + PARAMS)
    assert field(forged, "Signature") == field(headers, "Signature")


# -- 2. Signature-base construction and canonicalisation ------------------------

XAB = [*BASE4, "content-digest", "x-a", "x-b"]


def test_threat_C1_swapped_values_with_reordered_identifiers_rejected() -> None:
    """Swapping two covered values and reordering their identifiers breaks the MAC."""
    headers = post_signed([("x-a", "alpha"), ("x-b", "beta")], components=XAB)
    assert post_verify(headers).components[-2:] == ("x-a", "x-b")
    swapped = replace(replace(headers, "x-a", "beta"), "x-b", "alpha")
    member = field(swapped, "Signature-Input").removeprefix("sig1=")
    swapped = with_input(swapped, member.replace('"x-a" "x-b"', '"x-b" "x-a"'))
    assert '"x-b" "x-a"' in field(swapped, "Signature-Input")
    assert rejection(lambda: post_verify(swapped)).reason == "invalid_signature"


def test_threat_C1_swapped_values_alone_rejected() -> None:
    """Swapping two covered values without touching Signature-Input breaks the MAC."""
    headers = post_signed([("x-a", "alpha"), ("x-b", "beta")], components=XAB)
    swapped = replace(replace(headers, "x-a", "beta"), "x-b", "alpha")
    assert rejection(lambda: post_verify(swapped)).reason == "invalid_signature"


def test_threat_C1_reordered_identifiers_alone_rejected() -> None:
    """Reordering covered identifiers changes @signature-params, so the MAC fails."""
    headers = post_signed([("x-a", "alpha"), ("x-b", "beta")], components=XAB)
    member = field(headers, "Signature-Input").removeprefix("sig1=")
    reordered = with_input(headers, member.replace('"x-a" "x-b"', '"x-b" "x-a"'))
    assert rejection(lambda: post_verify(reordered)).reason == "invalid_signature"


@pytest.mark.parametrize(
    "member",
    [
        pytest.param('("@method', id="unterminated-string"),
        pytest.param('("@method" "@path', id="unterminated-list"),
        pytest.param('("@method"\n"@path")' + PARAMS, id="raw-LF-between-items"),
        pytest.param('("@method\n" "@path")' + PARAMS, id="raw-LF-in-string"),
        pytest.param('("@method"\r"@path")' + PARAMS, id="raw-CR"),
        pytest.param('("@method")' + PARAMS + '\n"@path": /admin', id="LF-then-base-line"),
        pytest.param('("a\\"b")' + PARAMS, id="escaped-quote"),
        pytest.param('("x\x7f")' + PARAMS, id="DEL-in-string"),
        pytest.param('("caf\u00e9")' + PARAMS, id="non-ASCII-in-string"),
        pytest.param('("@method");created=1;keyid="k\n1";nonce="n"', id="LF-in-keyid"),
        pytest.param('("@method");created=1;keyid="k";nonce="n\x7f"', id="DEL-in-nonce"),
        pytest.param('("@method");created=1;keyid="\u00e9";nonce="n"', id="non-ASCII-keyid"),
    ],
)
def test_threat_C2_injection_in_signature_input_is_malformed(
    member: str, bases: list[bytes]
) -> None:
    """An injection attempt in Signature-Input is malformed_signature and never reaches a base."""
    headers = with_input(signed(), member)
    exc = rejection(lambda: verify(headers))
    assert exc.reason == "malformed_signature"
    assert exc.status == 400
    assert bases == []


def test_threat_C2_line_break_in_covered_value_never_reaches_a_base(bases: list[bytes]) -> None:
    """A covered value carrying LF plus a fake base line is malformed, and no base is built."""
    headers = signed([("x-f", "v")], components=[*BASE4, "x-f"])
    injected = replace(headers, "x-f", 'v\n"@method": DELETE')
    exc = rejection(lambda: verify(injected))
    assert exc.reason == "malformed_signature"
    assert bases == []


def test_threat_C2_whitespace_variants_are_reserialised(bases: list[bytes]) -> None:
    """Extra SP inside Signature-Input verifies, because the base uses its re-serialisation."""
    headers = signed(nonce=lambda: "nonce-1")
    loose = '(  "@method" "@authority"   "@path" "@query" );created=1700000000'
    loose += ';keyid="client-1";nonce="nonce-1"'
    verify(with_input(headers, loose))
    (base,) = bases
    assert base.split(b"\n")[-1] == b'"@signature-params": ' + (GET4 + PARAMS).encode()


@pytest.mark.parametrize(
    "identifiers",
    [
        pytest.param('"Content-Type"', id="uppercase-name"),
        pytest.param('"content-type" "Content-Type"', id="case-duplicate"),
        pytest.param('"@foo"', id="unknown-derived"),
        pytest.param('"@signature-params"', id="signature-params"),
        pytest.param('"@status"', id="status"),
        pytest.param('"x";req', id="req"),
        pytest.param('"@method";req', id="req-on-derived"),
        pytest.param('"x";foo', id="unknown-param"),
        pytest.param('"@method" "@method"', id="duplicate"),
        pytest.param('"x";bs;sf', id="bs-with-sf"),
        pytest.param('"x";bs;key="a"', id="bs-with-key"),
        pytest.param('"x";tr', id="trailer"),
        pytest.param('"x";sf=?0', id="sf-not-true"),
        pytest.param('"@query-param"', id="query-param-without-name"),
        pytest.param('"@query-param";name=id', id="query-param-token-name"),
        pytest.param('"x_y" "x y"', id="space-in-name"),
        pytest.param("1", id="integer"),
        pytest.param("x", id="token"),
        pytest.param(":eA==:", id="byte-sequence"),
    ],
)
def test_threat_C3_invalid_identifier_is_malformed(identifiers: str) -> None:
    """Each identifier RFC 9421 §2.1/§2.5/§7.5.1 forbids on a request is malformed_signature."""
    headers = with_input(
        signed([("content-type", "text/plain"), ("x", "1")]), f"({identifiers}){PARAMS}"
    )
    assert rejection(lambda: verify(headers)).reason == "malformed_signature"


def test_threat_C3_header_named_like_derived_component_is_ignored() -> None:
    """A header line named ``@method`` never replaces the real method in the base."""
    headers = signed(method="DELETE")
    spoofed = [*headers, ("@method", "DELETE")]
    assert verify(spoofed, method="DELETE").key_id == "client-1"
    assert rejection(lambda: verify(spoofed, method="POST")).reason == "invalid_signature"


def test_threat_C4a_appended_line_of_covered_header_rejected() -> None:
    """Appending a second line to a covered header changes its combined value."""
    headers = signed([("x-acct", "a")], components=[*BASE4, "x-acct"])
    assert rejection(lambda: verify([*headers, ("x-acct", "b")])).reason == "invalid_signature"


def test_threat_C4b_split_single_line_value_verifies_at_core() -> None:
    """Splitting a covered ``a, b`` into two lines verifies: the core joins lines with ", "."""
    headers = signed([("x-acct", "a, b")], components=[*BASE4, "x-acct"])
    split = replace(headers, "x-acct", "a", "b")
    assert split.count(("x-acct", "a")) == 1
    assert verify(split).covers("x-acct")


def test_threat_C4c_reordered_lines_rejected() -> None:
    """Swapping the order of two lines of a covered header breaks the MAC."""
    headers = signed([("x-acct", "a"), ("x-acct", "b")], components=[*BASE4, "x-acct"])
    assert verify(headers).covers("x-acct")
    reordered = replace(headers, "x-acct", "b", "a")
    assert rejection(lambda: verify(reordered)).reason == "invalid_signature"


def test_threat_C4d_label_reused_across_signature_input_lines_is_malformed() -> None:
    """Two Signature-Input lines with the same label are malformed_signature (RFC 9421 §4.1)."""
    headers = signed()
    member = field(headers, "Signature-Input")
    doubled = replace(headers, "Signature-Input", member, member)
    assert rejection(lambda: verify(doubled)).reason == "malformed_signature"


def test_threat_C4d_label_reused_across_signature_lines_is_malformed() -> None:
    """Two Signature lines with the same label are malformed_signature."""
    headers = signed()
    value = field(headers, "Signature")
    doubled = replace(headers, "Signature", value, value)
    assert rejection(lambda: verify(doubled)).reason == "malformed_signature"


def test_threat_C4d_content_digest_lines_repeating_algorithm_are_malformed() -> None:
    """Two signed Content-Digest lines repeating sha-256 are malformed_digest, not last-wins."""
    good = make_content_digest(BODY)
    other = make_content_digest(b"something else")
    headers = forge(
        '("@method" "@authority" "@path" "@query" "content-digest")' + PARAMS,
        [("content-digest", other), ("content-digest", good)],
        method="POST",
    )
    exc = rejection(lambda: post_verify(headers))
    assert exc.reason == "malformed_digest"
    assert exc.status == 400


@pytest.mark.parametrize(
    "folded",
    ["a\r\n  b", "a\r\n\tb", "a \r\n b", "a\n b"],
    ids=["CRLF-SP", "CRLF-HTAB", "OWS-CRLF-SP", "LF-SP"],
)
def test_threat_C5_obs_fold_canonicalises_to_one_space(folded: str, bases: list[bytes]) -> None:
    """An obs-folded covered value verifies as ``a b`` and the base gains no extra line."""
    components = [*BASE4, "x-f"]
    headers = replace(signed([("x-f", "a b")], components=components), "x-f", folded)
    verify(headers)
    (base,) = bases
    lines = base.split(b"\n")
    assert len(lines) == len(components) + 1
    assert b'"x-f": a b' in lines


@pytest.mark.parametrize(
    "broken",
    ["a\nb", "a\rb", "a\r\nb", "a\r\n", "a\n\nb"],
    ids=["bare-LF", "bare-CR", "CRLF-no-RWS", "trailing-CRLF", "double-LF"],
)
def test_threat_C5_line_break_that_is_not_obs_fold_is_malformed(
    broken: str, bases: list[bytes]
) -> None:
    """A line break not followed by whitespace is malformed_signature, with no base built."""
    headers = replace(signed([("x-f", "a b")], components=[*BASE4, "x-f"]), "x-f", broken)
    assert rejection(lambda: verify(headers)).reason == "malformed_signature"
    assert bases == []


def test_threat_C5_obs_fold_as_bytes_canonicalises(bases: list[bytes]) -> None:
    """An obs-fold in a raw bytes header value canonicalises the same way as in text."""
    headers: list[Any] = signed([("x-f", "a b")], components=[*BASE4, "x-f"])
    raw = [(n.encode(), v.encode()) for n, v in replace(headers, "x-f")] + [(b"x-f", b"a\r\n b")]
    verify(raw)
    assert b'\n"x-f": a b\n' in bases[0]


def test_threat_C6_surrounding_whitespace_is_trimmed() -> None:
    """``X-F:   v  `` verifies against a signature made over ``v``."""
    headers = signed([("x-f", "v")], components=[*BASE4, "x-f"])
    assert verify(replace(headers, "x-f", "   v  ")).covers("x-f")
    assert verify(replace(headers, "x-f", "\tv\t")).covers("x-f")


def test_threat_C6_inner_whitespace_is_significant() -> None:
    """A value signed as ``a  b`` (two spaces) and received as ``a b`` is rejected."""
    headers = signed([("x-f", "a  b")], components=[*BASE4, "x-f"])
    assert rejection(lambda: verify(replace(headers, "x-f", "a b"))).reason == "invalid_signature"


def test_threat_C6_empty_covered_header_has_trailing_space_line(bases: list[bytes]) -> None:
    """An empty covered header verifies with the base line ``"x-e": `` (trailing SP)."""
    headers = signed([("x-e", "")], components=[*BASE4, "x-e"])
    assert verify(headers).covers("x-e")
    assert b'"x-e": ' in bases[0].split(b"\n")


def test_threat_C6_absent_covered_header_is_not_empty() -> None:
    """A covered header that is absent is invalid_signature, not treated as an empty value."""
    headers = signed([("x-e", "")], components=[*BASE4, "x-e"])
    assert rejection(lambda: verify(replace(headers, "x-e"))).reason == "invalid_signature"


@pytest.mark.parametrize(
    "value",
    [b"caf\xe9", b"caf\xc3\xa9", b"\x80", b"\xff"],
    ids=["latin-1", "utf-8", "0x80", "0xFF"],
)
def test_threat_C7_obs_text_in_covered_value_is_malformed(value: bytes) -> None:
    """obs-text bytes 0x80-0xFF in a covered header are malformed_signature (RFC 9421 §2.5)."""
    headers = signed([("x-f", "cafe")], components=[*BASE4, "x-f"])
    raw: list[Any] = [*replace(headers, "x-f"), (b"x-f", value)]
    assert rejection(lambda: verify(raw)).reason == "malformed_signature"


def test_threat_C7_non_ascii_text_in_covered_value_is_malformed() -> None:
    """A non-ASCII str value in a covered header is malformed_signature."""
    headers = signed([("x-f", "cafe")], components=[*BASE4, "x-f"])
    exc = rejection(lambda: verify(replace(headers, "x-f", "caf\u00e9")))
    assert exc.reason == "malformed_signature"


def test_threat_C7_signer_refuses_non_ascii_value() -> None:
    """The signer refuses to sign a covered non-ASCII value with ValueError."""
    with pytest.raises(ValueError, match="non-ASCII"):
        signed([("x-f", "caf\u00e9")], components=[*BASE4, "x-f"])


def test_threat_C7_uncovered_non_ascii_header_is_harmless() -> None:
    """A non-ASCII value in a header the signature does not cover does not matter."""
    headers = signed()
    raw: list[Any] = [*headers, (b"x-other", b"\xff\xfe")]
    assert verify(raw).key_id == "client-1"


@pytest.mark.parametrize("control", ["\x00", "\x01", "\x7f"], ids=["NUL", "SOH", "DEL"])
def test_threat_C7_ascii_control_bytes_are_signed_as_is(control: str) -> None:
    """ASCII control bytes other than CR/LF are signed verbatim, and changing them fails."""
    headers = signed([("x-f", f"a{control}b")], components=[*BASE4, "x-f"])
    assert verify(headers).covers("x-f")
    assert rejection(lambda: verify(replace(headers, "x-f", "ab"))).reason == "invalid_signature"


def test_threat_C8_underscore_lookalike_does_not_satisfy_covered_header() -> None:
    """Covered ``x-api-key`` absent while ``x_api_key`` is present is invalid_signature."""
    headers = signed([("x-api-key", "k1")], components=[*BASE4, "x-api-key"])
    lookalike = [*replace(headers, "x-api-key"), ("x_api_key", "k1")]
    assert rejection(lambda: verify(lookalike)).reason == "invalid_signature"


def test_threat_C8_header_name_case_is_folded_only_by_lowercasing() -> None:
    """``X-API-KEY`` satisfies covered ``x-api-key``: names are lowercased, nothing else."""
    headers = signed([("x-api-key", "k1")], components=[*BASE4, "x-api-key"])
    upper = [*replace(headers, "x-api-key"), ("X-API-KEY", "k1")]
    assert verify(upper).covers("x-api-key")


def test_threat_C9_method_is_case_sensitive() -> None:
    """A request signed as ``POST`` does not verify as ``post`` (RFC 9421 §2.2.1)."""
    headers = post_signed()
    exc = rejection(lambda: verify(headers, BODY, method="post"))
    assert exc.reason == "invalid_signature"


@pytest.mark.parametrize(
    ("signed_url", "received_url"),
    [
        ("https://api.example/v1/a%2Fb", "https://api.example/v1/a/b"),
        ("https://api.example/v1/a%41", "https://api.example/v1/aA"),
        ("https://api.example/v1/x/../y", "https://api.example/v1/y"),
        ("https://api.example/v1?id=%31", "https://api.example/v1?id=1"),
        ("https://api.example/v1?a=1&b=2", "https://api.example/v1?b=2&a=1"),
        ("https://api.example/v1?a=b+c", "https://api.example/v1?a=b%20c"),
    ],
    ids=["encoded-slash", "encoded-letter", "dot-segment", "encoded-query", "reordered", "plus"],
)
def test_threat_C9_url_is_verified_raw_never_normalised(signed_url: str, received_url: str) -> None:
    """The core verifies the raw path and query; a decoded or normalised form does not match."""
    headers = signed(url=signed_url)
    assert verify(headers, url=signed_url).key_id == "client-1"
    assert rejection(lambda: verify(headers, url=received_url)).reason == "invalid_signature"


def test_threat_C9_body_is_verified_byte_for_byte() -> None:
    """A body differing in one byte from the signed one is digest_mismatch."""
    headers = post_signed()
    exc = rejection(lambda: post_verify(headers, body=BODY.replace(b"10", b"11")))
    assert exc.reason == "digest_mismatch"


# -- 3. Coverage downgrade and policy --------------------------------------------


def test_threat_D1_empty_component_list_rejected() -> None:
    """A validly MACed ``sig1=()`` is insufficient_coverage (GHSA-x9cc-346q-g27m)."""
    headers = forge("()" + PARAMS)
    exc = rejection(lambda: verify(headers))
    assert exc.reason == "insufficient_coverage"
    assert exc.status == 401


@pytest.mark.parametrize("missing", [*BASE4, "content-digest"])
def test_threat_D1_each_required_component_removed_rejected(missing: str) -> None:
    """A lax client's valid signature lacking one required component is insufficient_coverage."""
    components = [c for c in (*BASE4, "content-digest") if c != missing]
    headers = post_signed(components=components)
    exc = rejection(lambda: post_verify(headers))
    assert exc.reason == "insufficient_coverage"
    assert missing in exc.detail


def test_threat_D1_order_of_components_does_not_matter() -> None:
    """Required components are accepted in any order."""
    components = ["content-digest", "@query", "@path", "@authority", "@method"]
    verified = post_verify(post_signed(components=components))
    assert verified.components == tuple(components)


def test_threat_D1_extra_components_accepted() -> None:
    """Covering more than the required components is accepted."""
    components = [
        *BASE4,
        "content-digest",
        "content-type",
        "@target-uri",
        "@scheme",
        "@request-target",
        '@query-param;name="id"',
    ]
    verified = post_verify(post_signed(components=components))
    assert verified.components == tuple(components)


def test_threat_D2_body_without_content_digest_rejected() -> None:
    """A POST body whose signature does not cover content-digest is insufficient_coverage."""
    headers = post_signed(components=BASE4)
    exc = rejection(lambda: post_verify(headers))
    assert exc.reason == "insufficient_coverage"
    assert "content-digest" in exc.detail


def test_threat_D2_get_with_body_without_content_digest_rejected() -> None:
    """A GET carrying a body must cover content-digest too."""
    headers = signed(components=BASE4)
    assert verify(headers).key_id == "client-1"
    exc = rejection(lambda: verify(headers, b"smuggled"))
    assert exc.reason == "insufficient_coverage"


def test_threat_D2_covered_digest_with_swapped_body_rejected() -> None:
    """With content-digest covered, a different body is digest_mismatch."""
    headers = post_signed()
    assert rejection(lambda: post_verify(headers, body=b"{}")).reason == "digest_mismatch"


@pytest.mark.parametrize(
    "member",
    [
        pytest.param(GET4 + ';keyid="client-1";nonce="nonce-1"', id="no-created"),
        pytest.param(GET4 + f';created={NOW};nonce="nonce-1"', id="no-keyid"),
        pytest.param(GET4 + f';created={NOW};keyid="client-1"', id="no-nonce"),
        pytest.param(GET4 + PARAMS + ";foo=1", id="unknown-param"),
        pytest.param(GET4 + PARAMS + ';context="x"', id="unknown-string-param"),
        pytest.param(GET4 + f';expires={NOW + 10};keyid="client-1";nonce="n"', id="expires-only"),
    ],
)
def test_threat_D3_missing_or_unknown_parameter_rejected(member: str) -> None:
    """A missing created/keyid/nonce or an unknown parameter is invalid_parameters."""
    exc = rejection(lambda: verify(forge(member)))
    assert exc.reason == "invalid_parameters"
    assert exc.status == 401


def test_threat_D3_nonce_optional_only_when_configured() -> None:
    """Without a nonce the request is refused by default and accepted with require_nonce=False."""
    headers = signed(nonce=False)
    assert rejection(lambda: verify(headers)).reason == "invalid_parameters"
    assert verify(headers, require_nonce=False).nonce is None


@pytest.mark.parametrize("tag", [None, "web", "API"], ids=["missing", "different", "case"])
def test_threat_D3_configured_tag_missing_or_different_rejected(tag: str | None) -> None:
    """With tag="api" configured, a signature without it or with another tag is refused."""
    headers = signed(tag=tag)
    assert rejection(lambda: verify(headers, tag="api")).reason == "invalid_parameters"


def test_threat_D4_request_without_signature_fields_is_missing_signature() -> None:
    """No Signature and no Signature-Input is missing_signature, whatever else is present."""
    unsigned: list[Headers | None] = [
        None,
        [],
        [("authorization", "Bearer x"), ("content-type", "text/plain")],
    ]
    for headers in unsigned:
        with pytest.raises(VerificationError) as info:
            verify(headers)
        assert (info.value.reason, info.value.status) == ("missing_signature", 401)


# -- 4. Algorithms, keys, comparison ----------------------------------------------


@pytest.mark.parametrize(
    "alg",
    [
        '"rsa-pss-sha512"',
        '"ecdsa-p256-sha256"',
        '"ed25519"',
        '"hmac-sha512"',
        '"HMAC-SHA256"',
        '""',
        "hmac-sha256",
        "?1",
        "256",
    ],
    ids=[
        "rsa-pss",
        "ecdsa",
        "ed25519",
        "hmac-sha512",
        "uppercase",
        "empty",
        "token",
        "bool",
        "int",
    ],
)
def test_threat_K1_alg_other_than_the_keys_rejected(alg: str) -> None:
    """Any alg but the key's exact name is refused, even with a valid MAC: an unsupported
    one as invalid_parameters, a supported one that is not the key's like a bad MAC
    (invalid_signature, so that it does not tell known key ids apart: THREATS K2)."""
    headers = forge(GET4 + PARAMS + f";alg={alg}")
    exc = rejection(lambda: verify(headers))
    want = "invalid_signature" if alg == '"hmac-sha512"' else "invalid_parameters"
    assert exc.reason == want


def test_threat_K1_alg_upgrade_with_matching_mac_rejected() -> None:
    """alg="hmac-sha512" with a real HMAC-SHA512 MAC is refused on an hmac-sha256 key
    (invalid_signature: a supported alg that is not the key's is answered like a bad MAC)."""
    headers = forge(GET4 + PARAMS + ';alg="hmac-sha512"', hash_name="sha512")
    assert rejection(lambda: verify(headers)).reason == "invalid_signature"


def test_threat_K1_alg_downgrade_on_sha512_key_rejected() -> None:
    """alg="hmac-sha256" with a real HMAC-SHA256 MAC is refused on an hmac-sha512 key."""
    key512 = HMACKey("client-1", b"k" * 64, "hmac-sha512")
    headers = forge(GET4 + PARAMS + ';alg="hmac-sha256"', key=key512, hash_name="sha256")
    assert rejection(lambda: verify(headers, keys=(key512,))).reason == "invalid_signature"


def test_threat_K1_absent_alg_uses_the_keys_algorithm() -> None:
    """Without alg the key decides: an hmac-sha512 key verifies its own 64-byte MAC."""
    key512 = HMACKey("client-1", b"k" * 64, "hmac-sha512")
    headers = signed(key=key512)
    assert len(mac_of(headers)) == 64
    assert verify(headers, keys=(key512,)).algorithm == "hmac-sha512"
    sha256_mac = forge(GET4 + PARAMS, key=key512, hash_name="sha256")
    assert rejection(lambda: verify(sha256_mac, keys=(key512,))).reason == "invalid_signature"


def test_threat_K1_matching_alg_accepted() -> None:
    """An alg equal to the key's algorithm is accepted."""
    assert verify(signed(include_alg=True)).algorithm == "hmac-sha256"


def test_threat_K2_unknown_key_rejected_after_a_dummy_mac(mac_count: list[int]) -> None:
    """An unknown keyid is unknown_key, and one MAC is still computed (no timing shortcut)."""
    headers = signed(key=ATTACKER)
    mac_count[0] = 0
    exc = rejection(lambda: verify(headers))
    assert exc.reason == "unknown_key"
    assert exc.status == 401
    assert mac_count[0] == 1


def test_threat_K2_unknown_key_with_uncomputable_base_is_still_unknown_key() -> None:
    """An unknown keyid covering an absent header is unknown_key, like any unknown key."""
    headers = forge(
        '("@method" "x-absent")' + PARAMS.replace("client-1", "nobody"),
        [("x-absent", "1")],
        key=HMACKey("nobody", b"n" * 32),
    )
    assert rejection(lambda: verify(replace(headers, "x-absent"))).reason == "unknown_key"


def test_threat_K2_known_key_bad_mac_has_its_own_reason() -> None:
    """A known keyid with a bad MAC is invalid_signature (distinct codes are for logs only)."""
    headers = signed(key=HMACKey("client-1", b"x" * 32))
    assert rejection(lambda: verify(headers)).reason == "invalid_signature"


@pytest.mark.parametrize("length", [257, 10_000])
def test_threat_K2_overlong_keyid_is_malformed_before_lookup(length: int) -> None:
    """A keyid over 256 characters is malformed_signature and the resolver is never called."""
    calls: list[str] = []

    def resolver(key_id: str) -> HMACKey | None:
        calls.append(key_id)
        return None

    member = GET4 + f';created={NOW};keyid="{"k" * length}";nonce="n"'
    headers = with_input(signed(), member)
    verifier = Verifier(resolver, max_field_bytes=65536)
    exc = rejection(lambda: verifier.verify("GET", URL, headers, now=NOW))
    assert exc.reason == "malformed_signature"
    assert calls == []


def test_threat_K2_keyid_of_256_characters_is_looked_up() -> None:
    """A keyid of exactly 256 characters reaches the lookup."""
    long_key = HMACKey("k" * 256, b"k" * 32)
    assert verify(signed(key=long_key), keys=(long_key,)).key_id == "k" * 256
    assert rejection(lambda: verify(signed(key=long_key))).reason == "unknown_key"


def test_threat_K2_url_like_keyid_is_only_a_lookup_string() -> None:
    """A URL-like keyid is passed to the resolver as an opaque string and is unknown_key."""
    calls: list[str] = []

    def resolver(key_id: str) -> None:
        calls.append(key_id)

    url_key = HMACKey("https://evil.example/key", b"e" * 32)
    exc = rejection(lambda: verify(signed(key=url_key), keys=resolver))
    assert exc.reason == "unknown_key"
    assert calls == ["https://evil.example/key"]


@pytest.mark.parametrize(
    "secret",
    [b"", b"secret", b"s" * 16, b"s" * 31, base64.b64encode(b"s" * 16).decode()],
    ids=["empty", "secret", "16-bytes", "31-bytes", "base64-16-bytes"],
)
def test_threat_K3_short_secret_refused_everywhere(secret: bytes | str) -> None:
    """A secret under 32 bytes is a ValueError for HMACKey, Keyring and Verifier mappings."""
    with pytest.raises(ValueError, match="at least 32"):
        HMACKey("client-1", secret)
    with pytest.raises(ValueError, match="at least 32"):
        Keyring({"client-1": secret})
    with pytest.raises(ValueError, match="at least 32"):
        Verifier({"client-1": secret})


def test_threat_K3_passphrase_text_refused() -> None:
    """A text secret that is not base64 (a passphrase) is refused, not used as a weak key."""
    with pytest.raises(ValueError, match="base64"):
        HMACKey("client-1", "correct horse battery staple, 32+ chars long!")


def _with_signature(headers: Headers, raw: bytes) -> Headers:
    return replace(headers, "Signature", f"sig1=:{base64.b64encode(raw).decode()}:")


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_threat_K4_signature_of_wrong_length_rejected(length: int) -> None:
    """A decoded signature of 0, 1, 31, 33 or 64 bytes is invalid_signature (CVE-2024-21491)."""
    headers = signed()
    mac = mac_of(headers)
    raw = (mac * 2)[:length]
    exc = rejection(lambda: verify(_with_signature(headers, raw)))
    assert exc.reason == "invalid_signature"


def test_threat_K4_truncated_and_extended_mac_rejected() -> None:
    """The real MAC minus its last byte, or plus one byte, is invalid_signature."""
    headers = signed()
    mac = mac_of(headers)
    for raw in (mac[:-1], mac + b"\x00", mac[:1]):
        with pytest.raises(VerificationError) as info:
            verify(_with_signature(headers, raw))
        assert info.value.reason == "invalid_signature"


def test_threat_K4_empty_byte_sequence_rejected() -> None:
    """An empty ``sig1=::`` is invalid_signature."""
    headers = replace(signed(), "Signature", "sig1=::")
    assert rejection(lambda: verify(headers)).reason == "invalid_signature"


def test_threat_K4_full_length_comparison_is_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 32-byte wrong MAC is compared with hmac.compare_digest over both full 32 bytes."""
    headers = signed()
    wrong = bytes(b ^ 1 for b in mac_of(headers))
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr("hmacguard._keys.hmac.compare_digest", spy)
    exc = rejection(lambda: verify(_with_signature(headers, wrong)))
    assert exc.reason == "invalid_signature"
    assert compared == [(32, 32)]


def _flip_pad_bits(encoded: str) -> str:
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    body = encoded.rstrip("=")
    last = alphabet[alphabet.index(body[-1]) ^ 0b01]
    return body[:-1] + last + encoded[len(body) :]


def test_threat_K5_reencoded_signature_decodes_to_the_same_mac() -> None:
    """Dropped padding or flipped pad bits still verify, with the same nonce (replay = store)."""
    headers = signed()
    original = field(headers, "Signature")
    encoded = original[len("sig1=:") : -1]
    assert encoded.endswith("=")
    variants = [encoded.rstrip("="), _flip_pad_bits(encoded), _flip_pad_bits(encoded).rstrip("=")]
    first = verify(headers)
    for variant in variants:
        assert variant != encoded
        reencoded = replace(headers, "Signature", f"sig1=:{variant}:")
        again = verify(reencoded)
        assert (again.key_id, again.nonce, again.created) == (first.key_id, first.nonce, NOW)


def test_threat_K6_removed_key_is_unknown_immediately() -> None:
    """With a resolver, a key removed from the store is unknown_key on the very next request."""
    k1 = HMACKey("k1", b"1" * 32)
    k2 = HMACKey("k2", b"2" * 32)
    store = {"k1": k1, "k2": k2}
    verifier = Verifier(store.get)
    by_k1, by_k2 = signed(key=k1), signed(key=k2)
    assert verifier.verify("GET", URL, by_k1, now=NOW).key_id == "k1"
    del store["k1"]
    exc = rejection(lambda: verifier.verify("GET", URL, by_k1, now=NOW))
    assert exc.reason == "unknown_key"
    assert verifier.verify("GET", URL, by_k2, now=NOW).key_id == "k2"


def test_threat_K6_both_keys_accepted_during_overlap() -> None:
    """During rotation both the old and the new key verify; after it only the new one does."""
    k1 = HMACKey("k1", b"1" * 32)
    k2 = HMACKey("k2", b"2" * 32)
    by_k1, by_k2 = signed(key=k1), signed(key=k2)
    assert verify(by_k1, keys=(k1, k2)).key_id == "k1"
    assert verify(by_k2, keys=(k1, k2)).key_id == "k2"
    assert rejection(lambda: verify(by_k1, keys=(k2,))).reason == "unknown_key"


def test_threat_K6_same_keyid_new_secret_rejects_old_signatures() -> None:
    """Replacing a key id's secret makes requests signed with the old secret invalid_signature."""
    old = signed(key=HMACKey("client-1", b"o" * 32))
    assert rejection(lambda: verify(old)).reason == "invalid_signature"


# -- 7. Time ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "reason"),
    [
        (NOW + 29, None),
        (NOW + 30, None),
        (NOW + 31, "not_yet_valid"),
        (NOW + 3600, "not_yet_valid"),
        (NOW - 300, None),
        (NOW - 301, "expired"),
        (NOW - 86_400, "expired"),
    ],
    ids=["now+S-1", "now+S", "now+S+1", "now+1h", "now-max_age", "now-max_age-1", "now-1d"],
)
def test_threat_T1_created_window_boundaries(created: int, reason: str | None) -> None:
    """created in [now - max_age, now + clock_skew] verifies; outside it is refused."""
    headers = signed(now=created)
    if reason is None:
        assert verify(headers, now=NOW).created == created
    else:
        exc = rejection(lambda: verify(headers, now=NOW))
        assert exc.reason == reason
        assert exc.status == 401


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_threat_T1_a_time_that_is_not_finite_is_refused(now: float) -> None:
    """now=nan (or a clock reading NaN) would pass every window comparison, so a
    signature from 1970 was accepted: a non-finite time is a ValueError, on the fast
    path's request and the general one's, never a pass."""
    headers = signed(now=0)
    with pytest.raises(ValueError, match="finite"):
        verify(headers, now=now)
    with pytest.raises(ValueError, match="finite"):
        Verifier([KEY], clock=lambda: now).verify("GET", URL, headers)


def test_threat_T1_fractional_now_is_compared_exactly() -> None:
    """Half a second past the max_age boundary is expired; half a second inside is not."""
    headers = signed(now=NOW)
    assert verify(headers, now=NOW + 300.0).created == NOW
    assert rejection(lambda: verify(headers, now=NOW + 300.5)).reason == "expired"
    assert rejection(lambda: verify(headers, now=NOW - 30.5)).reason == "not_yet_valid"


def test_threat_T2_expires_passed_rejected() -> None:
    """A signature is expired one second after its expires, and valid at it."""
    headers = signed(expires_in=10)
    assert verify(headers, now=NOW + 10).expires == NOW + 10
    assert rejection(lambda: verify(headers, now=NOW + 11)).reason == "expired"


def test_threat_T2_expires_before_created_rejected() -> None:
    """expires < created is invalid_parameters."""
    headers = forge(GET4 + PARAMS + f";expires={NOW - 1}")
    assert rejection(lambda: verify(headers, now=NOW - 2)).reason == "invalid_parameters"


def test_threat_T2_far_expires_is_capped_by_max_age() -> None:
    """expires one year ahead does not extend acceptance past max_age."""
    headers = signed(expires_in=365 * 86_400)
    assert verify(headers, now=NOW + 300).expires == NOW + 365 * 86_400
    assert rejection(lambda: verify(headers, now=NOW + 301)).reason == "expired"


def test_threat_T2_expires_without_created_rejected() -> None:
    """expires present but created missing is invalid_parameters."""
    headers = forge(GET4 + f';keyid="client-1";nonce="n";expires={NOW + 60}')
    assert rejection(lambda: verify(headers)).reason == "invalid_parameters"


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (GET4 + ';created=1.5;keyid="client-1";nonce="n"', "invalid_parameters"),
        (GET4 + f';created={NOW}.0;keyid="client-1";nonce="n"', "invalid_parameters"),
        (GET4 + f';created="{NOW}";keyid="client-1";nonce="n"', "invalid_parameters"),
        (GET4 + ';created=-1;keyid="client-1";nonce="n"', "invalid_parameters"),
        (GET4 + ';created=?1;keyid="client-1";nonce="n"', "invalid_parameters"),
        (GET4 + f';created=@{NOW};keyid="client-1";nonce="n"', "invalid_parameters"),
        (GET4 + ';created=now;keyid="client-1";nonce="n"', "invalid_parameters"),
        (GET4 + ';created;keyid="client-1";nonce="n"', "invalid_parameters"),
        (GET4 + ';created=1700000000000000;keyid="client-1";nonce="n"', "malformed_signature"),
        (GET4 + ';created=1_700_000_000;keyid="client-1";nonce="n"', "malformed_signature"),
        (GET4 + ';created=1.7e9;keyid="client-1";nonce="n"', "malformed_signature"),
        (GET4 + ';created=999999999999999;keyid="client-1";nonce="n"', "not_yet_valid"),
        (GET4 + ';created=0;keyid="client-1";nonce="n"', "expired"),
        (GET4 + PARAMS + ";expires=1.5", "invalid_parameters"),
        (GET4 + PARAMS + ";expires=-1", "invalid_parameters"),
        (GET4 + PARAMS + ";expires=1700000000000000", "malformed_signature"),
    ],
    ids=[
        "decimal",
        "decimal-integral",
        "string",
        "negative",
        "boolean",
        "date",
        "token",
        "bare-flag",
        "16-digits",
        "underscores",
        "exponent",
        "15-digits",
        "zero",
        "expires-decimal",
        "expires-negative",
        "expires-16-digits",
    ],
)
def test_threat_T3_bad_timestamp_types_are_400_or_401(member: str, reason: str) -> None:
    """A created/expires of the wrong type or size is a 400/401 reason, never another error."""
    headers = with_input(signed(), member)
    exc = rejection(lambda: verify(headers))
    assert exc.reason == reason
    assert exc.status in (400, 401)


def test_threat_T4_max_age_over_15_minutes_needs_override() -> None:
    """max_age=901 is a ValueError unless allow_long_max_age=True; 900 is allowed."""
    with pytest.raises(ValueError, match="allow_long_max_age"):
        Verifier([KEY], max_age=901)
    Verifier([KEY], max_age=900)
    assert verify(signed(now=NOW - 3000), max_age=3600, allow_long_max_age=True).created == (
        NOW - 3000
    )


@pytest.mark.parametrize(
    ("max_age", "clock_skew"), [(300, 30), (300, 0), (60, 60), (900, 120), (1, 1)]
)
def test_threat_T4_nonce_ttl_covers_the_window(max_age: int, clock_skew: int) -> None:
    """nonce_ttl is at least max_age + 2 * clock_skew for every configuration."""
    verifier = Verifier([KEY], max_age=max_age, clock_skew=clock_skew)
    assert verifier.nonce_ttl >= max_age + 2 * clock_skew


def test_threat_T5_nonce_ttl_outlasts_the_observed_window_plus_skew() -> None:
    """The acceptance window the verifier shows, plus one clock skew, fits in nonce_ttl."""
    verifier = Verifier([KEY], max_age=300, clock_skew=30)
    headers = signed()
    accepted = []
    for now in range(NOW - 40, NOW + 311):
        try:
            verifier.verify("GET", URL, headers, now=now)
        except VerificationError:
            continue
        accepted.append(now)
    first, last = accepted[0], accepted[-1]
    assert (first, last) == (NOW - 30, NOW + 300)
    assert len(accepted) == last - first + 1
    assert verifier.nonce_ttl >= (last - first) + 30


# -- 8. Parser and resource exhaustion --------------------------------------------


def _components(n: int) -> str:
    return "(" + " ".join(f'"x{i}"' for i in range(n)) + ")" + PARAMS


def _labels(n: int) -> tuple[str, str]:
    inputs = ", ".join(f"l{i}={GET4}{PARAMS}" for i in range(n))
    signatures = ", ".join(f"l{i}=:{'A' * 43}=:" for i in range(n))
    return inputs, signatures


def _p1_cases() -> list[Any]:
    big_inputs, big_signatures = _labels(5000)
    return [
        pytest.param(f"sig1={GET4}" + ";p=1" * 16_000, None, id="64KiB-input"),
        pytest.param(f'sig1={GET4};keyid="{"k" * 2**20}"', None, id="1MiB-input"),
        pytest.param("sig1=" + _components(10_000), None, id="10^4-components"),
        pytest.param(
            f"sig1={GET4}" + "".join(f";p{i}={i}" for i in range(10_000)), None, id="10^4-params"
        ),
        pytest.param(big_inputs, big_signatures, id="5000-labels"),
        pytest.param(None, f"sig1=:{'A' * (2**20 * 4 // 3)}:", id="1MiB-byte-sequence"),
    ]


@pytest.mark.parametrize(("inputs", "signatures"), _p1_cases())
def test_threat_P1_huge_fields_are_malformed(inputs: str | None, signatures: str | None) -> None:
    """A Signature-Input or Signature over 8 KiB is malformed_signature before parsing."""
    headers = signed()
    if inputs is not None:
        headers = replace(headers, "Signature-Input", inputs)
    if signatures is not None:
        headers = replace(headers, "Signature", signatures)
    exc = rejection(lambda: verify(headers))
    assert exc.reason == "malformed_signature"
    assert exc.status == 400


def test_threat_P1_field_size_limit_boundary() -> None:
    """Signature-Input of exactly max_field_bytes verifies; one more byte is malformed."""
    headers = signed()
    member = field(headers, "Signature-Input")
    assert verify(replace(headers, "Signature-Input", member.ljust(8192))).key_id == "client-1"
    exc = rejection(lambda: verify(replace(headers, "Signature-Input", member.ljust(8193))))
    assert exc.reason == "malformed_signature"
    signature = field(headers, "Signature")
    exc = rejection(lambda: verify(replace(headers, "Signature", signature.ljust(8193))))
    assert exc.reason == "malformed_signature"


def test_threat_P1_size_is_counted_over_all_lines() -> None:
    """Splitting an oversized Signature-Input across lines does not evade the limit."""
    labels = [f"f{i}" for i in range(120)]
    headers = replace(
        replace(signed(), "Signature-Input", *[f"{label}={GET4}{PARAMS}" for label in labels]),
        "Signature",
        *[f"{label}=:{'A' * 43}=:" for label in labels],
    )
    assert all(len(value) < 8192 for _, value in headers)
    exc = rejection(lambda: verify(headers, max_signatures=200))
    assert exc.reason == "malformed_signature"
    assert "longer than 8192" in exc.detail


def test_threat_P1_component_cap_applies_under_a_raised_size_limit() -> None:
    """With a huge size limit, 10^4 components still hit max_components (32)."""
    headers = with_input(signed(), _components(10_000))
    exc = rejection(lambda: verify(headers, max_field_bytes=10**7))
    assert exc.reason == "malformed_signature"
    assert "components" in exc.detail


def test_threat_P1_component_cap_boundary() -> None:
    """32 covered components are allowed; 33 are malformed_signature."""
    names = [f"x{i}" for i in range(33)]
    lines = [(name, "v") for name in names]
    assert verify(signed(lines, components=names[:32]), required_components=["x0"]).covers("x31")
    exc = rejection(lambda: verify(signed(lines, components=names), required_components=["x0"]))
    assert exc.reason == "malformed_signature"


def test_threat_P1_label_cap_applies_under_a_raised_size_limit(mac_count: list[int]) -> None:
    """With a huge size limit, 5000 labels hit max_signatures before any MAC is computed."""
    inputs, signatures = _labels(5000)
    headers = replace(replace(signed(), "Signature-Input", inputs), "Signature", signatures)
    mac_count[0] = 0
    exc = rejection(lambda: verify(headers, max_field_bytes=10**8))
    assert exc.reason == "malformed_signature"
    assert "more than 4 signatures" in exc.detail
    assert mac_count[0] == 0


class _CountingInnerList(sf.InnerList):
    """An InnerList that counts how many the parser made, and their items."""

    made = 0
    items = 0

    def __init__(self, items: list[Any], params: Any = None) -> None:
        type(self).made += 1
        type(self).items += len(items)
        super().__init__(items, params or {})


def _parsed_items(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the Items of value "a" the structured-field parser makes (the list holds
    the count): the attack's items, not the verifier's own components."""
    count = [0]
    item = sf.Item

    def counting(*args: Any, **kwargs: Any) -> sf.Item:
        count[0] += args[0] == "a"
        return item(*args, **kwargs)

    monkeypatch.setattr(sf, "Item", counting)
    return count


@pytest.mark.parametrize(
    "inner", ["a " * 4000, '"a" ' * 2700, "a;x=1 " * 1300], ids=["tokens", "strings", "params"]
)
def test_threat_P1_an_8_kib_list_is_not_parsed_past_the_component_bound(
    inner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 8 KiB Signature-Input of thousands of one-letter items (4,000 Tokens parsed in
    about 14 ms before the bound) stops at 4 x max_components items: the work, not only
    the answer, is bounded."""
    headers = with_input(signed(), "(" + inner.strip()[:8000] + ")" + PARAMS)
    count = _parsed_items(monkeypatch)
    exc = rejection(lambda: verify(headers))
    assert exc.reason == "malformed_signature"
    assert exc.detail == "a signature covers more than 32 components"
    # The 129th is refused before it is made (Strings: the count comes first).
    assert count[0] == (0 if inner.startswith('"') else 4 * 32)


def test_threat_P1_a_list_just_past_the_bound_fails_only_its_own_signature() -> None:
    """A second signer's list of 33 to 128 components is that signature's problem (M1):
    the valid sig1 beside it still verifies."""
    headers = signed()
    long_list = "(" + " ".join(f'"x{i}"' for i in range(100)) + ")" + PARAMS
    inputs = field(headers, "Signature-Input") + f", other={long_list}"
    signatures = field(headers, "Signature") + f", other=:{'A' * 43}=:"
    both = replace(replace(headers, "Signature-Input", inputs), "Signature", signatures)
    assert verify(both).label == "sig1"


def test_threat_P1_an_8_kib_field_of_labels_stops_at_the_label_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,500 empty labels in 8 KiB stop at the fifth (parsed, then refused):
    max_signatures bounds the parse."""
    monkeypatch.setattr(sf, "InnerList", _CountingInnerList)
    _CountingInnerList.made = 0
    inputs = ",".join(f"s{i}=()" for i in range(1500))[:8000].rpartition(",")[0]
    headers = replace(signed(), "Signature-Input", inputs)
    exc = rejection(lambda: verify(headers))
    assert exc.reason == "malformed_signature"
    assert exc.detail == "more than 4 signatures"
    assert _CountingInnerList.made == 4 + 1


def test_threat_P1_megabyte_keyid_under_a_raised_size_limit() -> None:
    """With a huge size limit, a 1 MiB keyid is still malformed_signature."""
    member = GET4 + f';created={NOW};keyid="{"k" * 2**20}";nonce="n"'
    exc = rejection(lambda: verify(with_input(signed(), member), max_field_bytes=10**7))
    assert exc.reason == "malformed_signature"
    assert "keyid" in exc.detail


def test_threat_P1_overlong_nonce_is_malformed() -> None:
    """A nonce over 256 characters is malformed_signature; 256 is accepted."""
    assert verify(signed(nonce=lambda: "n" * 256)).nonce == "n" * 256
    member = GET4 + f';created={NOW};keyid="client-1";nonce="{"n" * 257}"'
    assert rejection(lambda: verify(forge(member))).reason == "malformed_signature"


P2_CASES = [
    pytest.param("sig1=" + "(" * 5000, None, id="open-parens"),
    pytest.param('sig1=("' + "\\\\" * 3000, None, id="backslash-run"),
    pytest.param('sig1=("' + "\\" * 3001, None, id="odd-backslash-run"),
    pytest.param('sig1=("@method', None, id="unterminated-string"),
    pytest.param(f"sig1={GET4}" + ";a" * 3000, None, id="repeated-params"),
    pytest.param("sig1=(" + '"a" ' * 1000 + ")" + PARAMS, None, id="repeated-identifier"),
    pytest.param('sig1=("a" "a")' + PARAMS, None, id="two-identical"),
    pytest.param('sig1=("@method"\t"@path")' + PARAMS, None, id="tab-in-inner-list"),
    pytest.param('sig1=(\t"@method")' + PARAMS, None, id="leading-tab"),
    pytest.param(None, "sig1=:!!!!:", id="bad-base64-chars"),
    pytest.param(None, "sig1=:abcde:", id="bad-base64-length"),
    pytest.param(None, "sig1=:ab=c:", id="padding-inside"),
    pytest.param(None, "sig1=:abc", id="unterminated-byte-sequence"),
    pytest.param(None, "sig1=:" + "A" * 5000, id="long-unterminated-byte-sequence"),
    pytest.param("sig1=abc", None, id="input-not-inner-list"),
    pytest.param(None, 'sig1="abc"', id="signature-not-bytes"),
    pytest.param(None, "sig1=(:AAAA:)", id="signature-inner-list"),
    pytest.param("SIG1=" + GET4 + PARAMS, None, id="uppercase-label"),
    pytest.param("sig1=" + GET4 + PARAMS + ",", None, id="trailing-comma"),
]


@pytest.mark.parametrize(("inputs", "signatures"), P2_CASES)
def test_threat_P2_pathological_structured_field_is_malformed(
    inputs: str | None, signatures: str | None
) -> None:
    """Each pathological Signature-Input/Signature is malformed_signature."""
    headers = signed()
    if inputs is not None:
        headers = replace(headers, "Signature-Input", inputs)
    if signatures is not None:
        headers = replace(headers, "Signature", signatures)
    exc = rejection(lambda: verify(headers))
    assert exc.reason == "malformed_signature"


@pytest.mark.parametrize(
    "inputs",
    [
        "sig1=" + "(" * 100_000,
        'sig1=("' + "\\\\" * 100_000,
        f"sig1={GET4}" + ";a" * 100_000,
        "sig1=(" + '"a" ' * 100_000 + ")",
    ],
    ids=["open-parens", "backslash-run", "10^5-params", "10^5-identifiers"],
)
def test_threat_P2_large_pathological_input_under_raised_limit(inputs: str) -> None:
    """With a raised size limit the parser itself refuses 10^5-scale input (no recursion error)."""
    headers = replace(signed(), "Signature-Input", inputs)
    exc = rejection(lambda: verify(headers, max_field_bytes=10**7))
    assert exc.reason == "malformed_signature"


@pytest.mark.parametrize(
    ("inputs", "signatures"),
    [
        (GET4 + f";created=1;created={NOW}" + ';keyid="client-1";nonce="n"', None),
        (GET4 + PARAMS + ';nonce="other"', None),
        (GET4 + PARAMS + ';keyid="client-1"', None),
        ('("@method" "content-type";sf;sf)' + PARAMS, None),
        (None, "sig1=:{mac}:;a=1;a=2"),
    ],
    ids=["created", "nonce", "keyid", "component-param", "signature-param"],
)
def test_threat_P3_duplicate_parameters_are_malformed(
    inputs: str | None, signatures: str | None
) -> None:
    """A parameter given twice is malformed_signature, never last-wins."""
    headers = signed()
    if inputs is not None:
        headers = with_input(headers, inputs)
    if signatures is not None:
        encoded = base64.b64encode(mac_of(headers)).decode()
        headers = replace(headers, "Signature", signatures.format(mac=encoded))
    assert rejection(lambda: verify(headers)).reason == "malformed_signature"


def _bad_labels(n: int) -> Headers:
    inputs = ", ".join(f"s{i}={GET4}{PARAMS}" for i in range(n))
    signatures = ", ".join(f"s{i}=:{base64.b64encode(bytes([i]) * 32).decode()}:" for i in range(n))
    return replace(replace(signed(), "Signature-Input", inputs), "Signature", signatures)


@pytest.mark.parametrize("max_signatures", [1, 2, 4])
def test_threat_P4_at_most_max_signatures_macs(max_signatures: int, mac_count: list[int]) -> None:
    """max_signatures bad signatures cost exactly that many MACs; one more costs none."""
    headers = _bad_labels(max_signatures)
    mac_count[0] = 0
    exc = rejection(lambda: verify(headers, max_signatures=max_signatures))
    assert exc.reason == "invalid_signature"
    assert mac_count[0] == max_signatures
    headers = _bad_labels(max_signatures + 1)
    mac_count[0] = 0
    exc = rejection(lambda: verify(headers, max_signatures=max_signatures))
    assert exc.reason == "malformed_signature"
    assert mac_count[0] == 0


def test_threat_P4_bad_mac_never_hashes_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad MAC on a large body is invalid_signature and the body digest is never computed."""
    calls: list[int] = []

    def spy(value: str, body: bytes) -> None:
        calls.append(len(body))
        verify_content_digest(value, body)

    monkeypatch.setattr("hmacguard._verifier.verify_content_digest", spy)
    body = b"x" * 2**20
    headers = signed(CT, body, method="POST")
    bad = _with_signature(headers, bytes(32))
    exc = rejection(lambda: verify(bad, body, method="POST"))
    assert exc.reason == "invalid_signature"
    assert calls == []
    verify(headers, body, method="POST")
    assert calls == [2**20]


# -- 9. Multiple signatures and labels -------------------------------------------


def _combine(*requests: Headers) -> Headers:
    """Merge the signature fields of several signed copies of one request, in order."""
    inputs = ", ".join(field(h, "Signature-Input") for h in requests)
    signatures = ", ".join(field(h, "Signature") for h in requests)
    return replace(replace(requests[0], "Signature-Input", inputs), "Signature", signatures)


def _garbage_sig2() -> Headers:
    return replace(
        with_input(signed(), GET4 + PARAMS, label="sig2"),
        "Signature",
        f"sig2=:{base64.b64encode(bytes(32)).decode()}:",
    )


@pytest.mark.parametrize("valid_first", [True, False], ids=["valid-first", "valid-second"])
@pytest.mark.parametrize("kind", ["attacker-key", "wrong-secret", "garbage", "expired"])
def test_threat_M1_added_signature_does_not_block_or_authorise(
    kind: str, valid_first: bool
) -> None:
    """A valid sig1 plus an attacker's sig2, in either order, is accepted as sig1."""
    makers: dict[str, Callable[[], Headers]] = {
        "attacker-key": lambda: signed(key=ATTACKER, label="sig2"),
        "wrong-secret": lambda: signed(key=HMACKey("client-1", b"x" * 32), label="sig2"),
        "garbage": _garbage_sig2,
        "expired": lambda: signed(now=NOW - 10_000, label="sig2"),
    }
    sig2 = makers[kind]()
    sig1 = signed()
    headers = _combine(sig1, sig2) if valid_first else _combine(sig2, sig1)
    verified = verify(headers)
    assert verified.label == "sig1"
    assert verified.key_id == "client-1"


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("attacker-key", "unknown_key"),
        ("wrong-secret", "invalid_signature"),
        ("garbage", "invalid_signature"),
    ],
)
def test_threat_M1_attacker_signature_alone_rejected(kind: str, reason: str) -> None:
    """sig2 from an unexpected signer, alone, authorises nothing."""
    makers: dict[str, Callable[[], Headers]] = {
        "attacker-key": lambda: signed(key=ATTACKER, label="sig2"),
        "wrong-secret": lambda: signed(key=HMACKey("client-1", b"x" * 32), label="sig2"),
        "garbage": _garbage_sig2,
    }
    headers = makers[kind]()
    assert rejection(lambda: verify(headers)).reason == reason


def test_threat_M1_first_candidates_error_is_reported() -> None:
    """When no signature passes, the first candidate's error is raised."""
    expired = signed(now=NOW - 10_000, label="a")
    unknown = signed(key=ATTACKER, label="b")
    assert rejection(lambda: verify(_combine(expired, unknown))).reason == "expired"
    assert rejection(lambda: verify(_combine(unknown, expired))).reason == "unknown_key"


@pytest.mark.parametrize("only_in", ["Signature-Input", "Signature"])
def test_threat_M2_label_in_only_one_field_is_malformed(only_in: str) -> None:
    """A label present in only one of the two fields is malformed_signature."""
    sig1 = signed()
    sig2 = signed(label="sig2")
    headers = replace(sig1, only_in, field(sig1, only_in) + ", " + field(sig2, only_in))
    assert rejection(lambda: verify(headers)).reason == "malformed_signature"


def test_threat_M2_mismatched_labels_are_malformed() -> None:
    """Signature-Input labelled sig1 with Signature labelled sig2 is malformed_signature."""
    sig1 = signed()
    headers = replace(sig1, "Signature", field(sig1, "Signature").replace("sig1=", "sig2="))
    assert rejection(lambda: verify(headers)).reason == "malformed_signature"


def test_threat_M2_duplicate_label_across_lines_is_malformed() -> None:
    """The same label on two lines of both fields, even with different values, is malformed."""
    first = signed(nonce=lambda: "one")
    second = signed(nonce=lambda: "two")
    headers = replace(
        replace(
            first,
            "Signature-Input",
            field(first, "Signature-Input"),
            field(second, "Signature-Input"),
        ),
        "Signature",
        field(first, "Signature"),
        field(second, "Signature"),
    )
    assert rejection(lambda: verify(headers)).reason == "malformed_signature"


def test_threat_M2_relabelled_signature_still_verifies() -> None:
    """Labels carry no meaning: renaming sig1 to x in both fields still verifies (§7.2.5)."""
    sig1 = signed()
    headers = replace(
        replace(sig1, "Signature-Input", field(sig1, "Signature-Input").replace("sig1=", "x=", 1)),
        "Signature",
        field(sig1, "Signature").replace("sig1=", "x=", 1),
    )
    assert verify(headers).label == "x"


def test_threat_M3_tag_configured_and_absent_rejected() -> None:
    """With tag="api", a valid signature without a tag is invalid_parameters."""
    assert rejection(lambda: verify(signed(), tag="api")).reason == "invalid_parameters"


def test_threat_M3_right_tag_with_insufficient_coverage_rejected() -> None:
    """The right tag does not excuse missing coverage: insufficient_coverage."""
    headers = signed(tag="api", components=["@method", "@path"])
    assert rejection(lambda: verify(headers, tag="api")).reason == "insufficient_coverage"


def test_threat_M3_tag_selects_the_signature_not_the_label() -> None:
    """With tag="api", the tagged sig2 is chosen even though an untagged sig1 comes first."""
    untagged = signed(key=ATTACKER)
    tagged = signed(tag="api", label="sig2")
    verified = verify(_combine(untagged, tagged), tag="api")
    assert (verified.label, verified.tag) == ("sig2", "api")


def test_threat_M4_trailer_announcement_without_signature_is_unsigned() -> None:
    """A request announcing ``Trailer: Signature`` but carrying no signature fields is unsigned."""
    headers = [("trailer", "Signature, Signature-Input"), ("transfer-encoding", "chunked")]
    exc = rejection(lambda: verify(headers))
    assert exc.reason == "missing_signature"


def test_threat_M4_signature_input_without_signature_is_malformed() -> None:
    """Signature-Input whose Signature was dropped (e.g. a lost trailer) is malformed_signature."""
    headers = replace(signed(), "Signature")
    assert rejection(lambda: verify(headers)).reason == "malformed_signature"


M1_BROKEN_SIG2 = [
    pytest.param(f'sig2=("x";tr){PARAMS}', None, id="trailer-component"),
    pytest.param("sig2=" + _components(33), None, id="33-components"),
    pytest.param("sig2=abc", None, id="input-not-inner-list"),
    pytest.param(f'sig2={GET4};created={NOW};keyid="{"k" * 300}";nonce="n"', None, id="long-keyid"),
]


@pytest.mark.parametrize("valid_first", [True, False], ids=["valid-first", "valid-second"])
@pytest.mark.parametrize(("sig2_input", "sig2_signature"), M1_BROKEN_SIG2)
def test_threat_M1_structurally_broken_second_signature_does_not_block(
    sig2_input: str | None, sig2_signature: str | None, valid_first: bool
) -> None:
    """A sig2 whose own member is malformed (unsupported components, bad shape) does not
    block a valid sig1: checks are per candidate and the first that passes wins (§7.2.6)."""
    sig1 = signed(nonce=lambda: "nonce-1")
    inputs = sig2_input or f"sig2={GET4}{PARAMS}"
    signatures = sig2_signature or f"sig2=:{base64.b64encode(bytes(32)).decode()}:"
    pair_in = [field(sig1, "Signature-Input"), inputs]
    pair_sig = [field(sig1, "Signature"), signatures]
    if not valid_first:
        pair_in.reverse()
        pair_sig.reverse()
    headers = replace(
        replace(sig1, "Signature-Input", ", ".join(pair_in)), "Signature", ", ".join(pair_sig)
    )
    assert verify(headers).label == "sig1"
