"""Covered components (RFC 9421 §2): identifiers, values and their canonical forms.

The RFC's own examples are in test_rfc9421_vectors.py; these tests pin the edges
the examples do not reach: percent-decoding of query parameters (§2.2.8), the
structured-field shortcut of the signature base, and component equality.
"""

from __future__ import annotations

import base64

import pytest

from hmacguard import HMACKey, InvalidSignature, MalformedSignature, Signer, Verifier
from hmacguard._components import (
    KNOWN_STRUCTURED_FIELDS,
    Component,
    component_from_spec,
    component_value,
    parse_component,
    structured_types,
)
from hmacguard._message import Message
from hmacguard._signature_base import build_signature_base
from hmacguard._structured_fields import Item, parse_item


def _query_param(query: str, name: str) -> str:
    """The value of ``@query-param;name=<name>`` for a URL ending in ``query``."""
    message = Message("GET", f"https://example.com/p{query}", [])
    return component_value(component_from_spec(f'@query-param;name="{name}"'), message)


@pytest.mark.parametrize(
    ("query", "value"),
    [
        pytest.param("?x=%FF", "%EF%BF%BD", id="invalid-utf8-becomes-replacement-character"),
        pytest.param("?x=%ff%C3%a9", "%EF%BF%BD%C3%A9", id="lowercase-hex-is-decoded"),
        pytest.param("?x=%XA", "%25XA", id="non-hex-escape-kept"),
        pytest.param("?x=%G4", "%25G4", id="non-hex-first-digit-kept"),
        pytest.param("?x=%4G", "%254G", id="non-hex-second-digit-kept"),
        pytest.param("?x=1%", "1%25", id="percent-at-end"),
        pytest.param("?x=1%4", "1%254", id="one-digit-at-end"),
        pytest.param("?x=%41%42", "AB", id="two-escapes-at-end"),
        pytest.param("?a=1&&x=2", "2", id="after-an-empty-pair"),
        pytest.param("?x=b=c", "b%3Dc", id="value-holds-equals-sign"),
        pytest.param("?x", "", id="no-equals-sign"),
        pytest.param("?x=a+b%20c", "a%20b%20c", id="plus-and-space"),
    ],
)
def test_rfc9421_2_2_8_query_param_value_is_decoded_then_reencoded(query: str, value: str) -> None:
    """A query parameter's value is form-decoded, then percent-encoded again (§2.2.8)."""
    assert _query_param(query, "x") == value


def test_rfc9421_2_2_8_query_param_of_raw_utf8_bytes_decodes_them_once() -> None:
    """§2.2.8 parses the query's bytes: "café" sent as raw UTF-8 (as Go sends a
    RawQuery), read as bytes, is %C3%A9, as from its percent-encoded form. It was
    %C3%83%C2%A9: each byte, read as Latin-1, encoded again as UTF-8."""
    url = "https://example.com/p?q=caf\u00e9".encode()  # the bytes on the wire
    message = Message("GET", url, [])
    spec = '@query-param;name="q"'
    assert component_value(component_from_spec(spec), message) == "caf%C3%A9"
    assert _query_param("?q=caf%C3%A9", "q") == "caf%C3%A9"
    assert _query_param("?q=\u20ac", "q") == "%E2%82%AC"  # no byte reads as U+20AC: UTF-8


def test_rfc9421_2_2_8_query_param_name_is_matched_after_decoding() -> None:
    """A name written with escapes matches its re-encoded form (§2.2.8)."""
    assert _query_param("?na%6de=v", "name") == "v"
    assert _query_param("?caf%C3%A9=v", "caf%C3%A9") == "v"


@pytest.mark.parametrize(
    ("query", "name"),
    [
        pytest.param("", "XXXX", id="no-query"),
        pytest.param("?", "x", id="empty-query"),
        pytest.param("?y=1", "x", id="other-name"),
        pytest.param("?xx=1", "x", id="longer-name"),
    ],
)
def test_rfc9421_2_2_8_absent_query_param_is_invalid_signature(query: str, name: str) -> None:
    """A covered query parameter the URL does not hold cannot be signed over (§2.2.8)."""
    with pytest.raises(InvalidSignature) as caught:
        _query_param(query, name)
    assert caught.value.reason == "invalid_signature"
    assert caught.value.detail == f"covered query parameter {name!r} is absent"


def test_rfc9421_2_1_3_structured_field_is_reserialised_in_the_signature_base() -> None:
    """A field covered with ``sf`` appears re-serialised in the base, not as sent (§2.1.1)."""
    message = Message(
        "GET",
        "https://example.com/",
        [("Example-Dict", "  a=1,    b=2;x=1;y=2,   c=(a   b   c)  ")],
    )
    components = [component_from_spec('"example-dict";sf'), component_from_spec("example-dict")]
    base = build_signature_base(
        message,
        components,
        '("example-dict";sf "example-dict")',
        {"example-dict": "dictionary"},
    )
    assert base == (
        b'"example-dict";sf: a=1, b=2;x=1;y=2, c=(a b c)\n'
        b'"example-dict": a=1,    b=2;x=1;y=2,   c=(a   b   c)\n'
        b'"@signature-params": ("example-dict";sf "example-dict")'
    )


def test_components_compare_by_name_and_parameters() -> None:
    """Two components are equal exactly when their names and parameters are."""
    plain = Component("x-a", {})
    assert plain == Component("x-a", {})
    assert hash(plain) == hash(Component("x-a", {}))
    assert plain != Component("x-b", {})
    assert plain != Component("x-a", {"sf": True})
    assert Component("x-a", {"key": "k"}) == Component("x-a", {"key": "k"})
    assert Component("x-a", {"key": "k"}) != Component("x-a", {"key": "j"})
    assert plain.__eq__("x-a") is NotImplemented
    assert plain != "x-a"


def _field(spec: str, *lines: str, sf_types: dict[str, str] | None = None) -> str:
    """The value of component ``spec`` over header lines named x-a."""
    message = Message("GET", "https://example.com/", [("x-a", line) for line in lines])
    return component_value(component_from_spec(spec), message, sf_types or KNOWN_STRUCTURED_FIELDS)


@pytest.mark.parametrize(
    ("lines", "value"),
    [
        pytest.param(("a\n b",), "a b", id="lf-fold"),
        pytest.param(("a \r\n\tb",), "a b", id="crlf-fold"),
        pytest.param(("x", " a\n b "), "x, a b", id="fold-in-second-line"),
    ],
)
def test_rfc9421_2_1_obs_fold_is_unfolded(lines: tuple[str, ...], value: str) -> None:
    """An obs-fold (line break then whitespace) becomes a single space (§2.1)."""
    assert _field("x-a", *lines) == value


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(("a\rb",), id="cr"),
        pytest.param(("a\nb",), id="lf-without-fold"),
        pytest.param(("ok", "a\rb"), id="cr-in-second-line"),
        pytest.param(("ok", "a\nb"), id="lf-in-second-line"),
    ],
)
def test_rfc9421_2_1_line_break_in_a_field_is_malformed(lines: tuple[str, ...]) -> None:
    """A line break that is not an obs-fold cannot be canonicalised: malformed, naming the field."""
    with pytest.raises(MalformedSignature) as caught:
        _field("x-a", *lines)
    assert caught.value.detail == "covered header 'x-a' holds a line break"


def test_rfc9421_2_1_3_bs_trims_only_sp_and_htab() -> None:
    """The bs parameter wraps each line trimmed of SP and HTAB only, as Latin-1 bytes (§2.1.3)."""
    value = _field('"x-a";bs', " \ta\x0b ", "\u00e9")
    assert value == ":YQs=:, :6Q==:"
    assert [base64.b64decode(v) for v in ("YQs=", "6Q==")] == [b"a\x0b", b"\xe9"]


def test_rfc9421_2_1_3_bs_unfolds_obs_fold_before_wrapping() -> None:
    """§2.1.3 step 2: "Remove any obsolete line-folding within the line and replace it
    with a single space", then wrap the bytes: the RFC's own example value."""
    value = _field('"x-a";bs', "Obsolete\r\n    line folding.")
    assert value == ":T2Jzb2xldGUgbGluZSBmb2xkaW5nLg==:"
    assert base64.b64decode(value[1:-1]) == b"Obsolete line folding."


@pytest.mark.parametrize("name", ["accept-ch", "cross-origin-opener-policy", "cache-status"])
def test_rfc9421_2_5_key_on_a_field_known_not_to_be_a_dictionary_is_an_error(name: str) -> None:
    """§2.5: an error when a dictionary member identifier "references a field that is
    ... not a Dictionary Structured Field", even when its value would parse as one."""
    message = Message("GET", "https://example.com/", [(name, "viewport-width")])
    with pytest.raises(InvalidSignature, match="not a dictionary"):
        component_value(
            component_from_spec(f'"{name}";key="viewport-width"'),
            message,
            KNOWN_STRUCTURED_FIELDS,
        )


def test_rfc9421_2_1_3_bs_of_a_character_no_byte_reads_as_is_malformed() -> None:
    """A str value with a character above U+00FF (a field decoded as UTF-8 by a
    framework) has no bytes to wrap: malformed, as without bs, not a UnicodeEncodeError."""
    with pytest.raises(MalformedSignature, match=r"covered header 'x-a' holds a character above"):
        _field('"x-a";bs', "caf\u00e9 \u20ac")


def test_rfc9421_2_1_3_bs_character_no_byte_reads_as_through_verify_and_sign() -> None:
    """verify() answers malformed_signature, and Signer.sign() a ValueError."""
    headers = {
        "x-a": "\u20ac",
        "signature-input": 'sig1=("@method" "x-a";bs);created=1700000000;keyid="k1"',
        "signature": "sig1=:" + "A" * 43 + "=:",
    }
    verifier = Verifier({"k1": b"k" * 32}, required_components=["@method"], require_nonce=False)
    with pytest.raises(MalformedSignature):
        verifier.verify("GET", "https://api.example/", headers, now=1_700_000_000)
    signer = Signer(HMACKey("k1", b"k" * 32), components=['"x-a";bs'])
    with pytest.raises(ValueError, match="cannot sign this request: covered header 'x-a'"):
        signer.sign("GET", "https://api.example/", {"x-a": "\u20ac"})


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        pytest.param("item", "  abc;a=1  ", "abc;a=1", id="item"),
        pytest.param("list", "a,   (b  c);x", "a, (b c);x", id="list"),
        pytest.param("dictionary", "a=1,   b", "a=1, b", id="dictionary"),
    ],
)
def test_rfc9421_2_1_1_sf_reserialises_each_structured_type(
    kind: str, text: str, value: str
) -> None:
    """With ``sf``, a field of each declared type is parsed and serialised again (§2.1.1)."""
    assert _field('"x-a";sf', text, sf_types={"x-a": kind}) == value


@pytest.mark.parametrize(
    ("spec", "text", "sf_types", "detail"),
    [
        pytest.param(
            '"x-a";sf',
            "a",
            None,
            "the structured type of 'x-a' is unknown; "
            "declare it with structured_fields={name: 'item'|'list'|'dictionary'}",
            id="sf-type-unknown",
        ),
        pytest.param(
            '"x-a";sf',
            "a,",
            {"x-a": "item"},
            "covered header 'x-a' is not a valid structured item",
            id="sf-invalid-item",
        ),
        pytest.param(
            '"x-a";key="b"',
            "a=(",
            None,
            "covered header 'x-a' is not a structured dictionary",
            id="key-not-a-dictionary",
        ),
        pytest.param(
            '"x-a";key="b"',
            "a=1",
            None,
            "covered dictionary 'x-a' has no member 'b'",
            id="key-member-absent",
        ),
    ],
)
def test_rfc9421_2_1_uncanonicalisable_field_is_invalid_signature(
    spec: str, text: str, sf_types: dict[str, str] | None, detail: str
) -> None:
    """A field that cannot take its sf or key form fails the signature, saying why."""
    with pytest.raises(InvalidSignature) as caught:
        _field(spec, text, sf_types=sf_types)
    assert caught.value.detail == detail


def test_rfc9421_2_1_component_identifier_must_be_a_string() -> None:
    """A covered component that is not an sf-string is malformed, in those words."""
    with pytest.raises(MalformedSignature) as caught:
        parse_component(Item(1, {}))
    assert caught.value.detail == "a covered component identifier must be an sf-string"


@pytest.mark.parametrize(
    ("identifier", "detail"),
    [
        ('"@status"', "@status is a response component"),
        ('"@signature-params"', "@signature-params cannot be a covered component"),
        ('"@foo"', "unknown derived component '@foo'"),
        ('"@query-param"', '@query-param needs exactly one string "name" parameter'),
        ('"@query-param";name=id', '@query-param needs exactly one string "name" parameter'),
        ('"@query-param";name="a";x', '@query-param needs exactly one string "name" parameter'),
        ('"@method";req', "@method takes no parameters"),
        ('"X-A"', "'X-A' is not a lowercase HTTP field name"),
        ('"x-a";sf=?0', "the sf parameter is a boolean flag"),
        ('"x-a";bs=1', "the bs parameter is a boolean flag"),
        ('"x-a";key=1', "the key parameter must be a string"),
        ('"x-a";req', "the req parameter is for responses"),
        ('"x-a";tr', "trailer fields are not supported"),
        ('"x-a";foo', "unknown component parameter 'foo'"),
        ('"x-a";bs;sf', "the bs parameter cannot be combined with sf or key"),
        ('"x-a";key="k";bs', "the bs parameter cannot be combined with sf or key"),
    ],
)
def test_rfc9421_2_5_invalid_identifier_is_malformed_and_named(
    identifier: str, detail: str
) -> None:
    """Each identifier RFC 9421 §2.5 (or hmacguard) refuses is malformed, with its own detail."""
    with pytest.raises(MalformedSignature) as caught:
        parse_component(parse_item(identifier))
    assert caught.value.detail == detail


@pytest.mark.parametrize(
    ("spec", "identifier"),
    [
        ("@method", '"@method"'),
        ('"x-a"', '"x-a"'),
        ('"x-a";sf', '"x-a";sf'),
        ("x-a;bs", '"x-a";bs'),
        ('@query-param;name="a;b"', '"@query-param";name="a;b"'),
    ],
)
def test_component_from_spec_reads_short_and_quoted_forms(spec: str, identifier: str) -> None:
    """Configuration may name a component bare or quoted; a ";" inside a parameter stays."""
    assert component_from_spec(spec).identifier == identifier


def test_component_from_spec_refuses_what_is_not_text() -> None:
    """A component given as anything but str is a TypeError naming the type."""
    with pytest.raises(TypeError) as caught:
        component_from_spec(1)  # type: ignore[arg-type]
    assert str(caught.value) == "a component is given as str, not int"


@pytest.mark.parametrize(
    ("spec", "value"),
    [("@request-target", "/p"), ("@target-uri", "https://example.com/p")],
)
def test_rfc9421_2_2_targets_without_a_query_have_no_question_mark(spec: str, value: str) -> None:
    """@request-target and @target-uri of a URL without a query end at the path (§2.2)."""
    message = Message("GET", "https://example.com/p", [])
    assert component_value(component_from_spec(spec), message) == value


def test_rfc9421_2_1_boolean_flag_and_integer_one_are_different_identifiers() -> None:
    """``sf`` (true) is valid and ``sf=1`` is not, even after ``sf`` was seen and remembered."""
    assert parse_component(parse_item('"x-a";sf')).spec == "x-a;sf"
    with pytest.raises(MalformedSignature) as caught:
        parse_component(parse_item('"x-a";sf=1'))
    assert caught.value.detail == "the sf parameter is a boolean flag"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"X-A": "item"}, "structured_fields: 'X-A' is not a lowercase field name"),
        ({"x a": "item"}, "structured_fields: 'x a' is not a lowercase field name"),
        ({1: "item"}, "structured_fields: 1 is not a lowercase field name"),
        (
            {"x-a": "string"},
            "structured_fields: the type of 'x-a' must be ['dictionary', 'item', 'list']",
        ),
    ],
)
def test_structured_fields_option_is_validated(extra: dict[object, str], message: str) -> None:
    """structured_fields names must be lowercase field names, and types one of three."""
    with pytest.raises(ValueError, match=r"^structured_fields: ") as caught:
        structured_types(extra)  # type: ignore[arg-type]
    assert str(caught.value) == message
