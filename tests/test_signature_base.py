"""The signature base (RFC 9421 §2.5): the exact bytes the MAC covers, and what it refuses.

A value with a line break or a non-ASCII character would let one component forge
another's line, so the base refuses it (§2.5 step 4) and names the component; the
verifier answers ``malformed_signature``.
"""

from __future__ import annotations

import pytest

from hmacguard import HMACKey, InvalidSignature, MalformedSignature, Signer, Verifier
from hmacguard._components import component_from_spec
from hmacguard._message import Message
from hmacguard._signature_base import build_signature_base

NOW = 1_700_000_000
SECRET = b"s" * 32


@pytest.mark.parametrize(
    ("path", "char"),
    [
        pytest.param("/a\nb", "a line break", id="lf"),
        pytest.param("/a\rb", "a line break", id="cr"),
        pytest.param("/a\u00e9b", "non-ASCII characters", id="non-ascii"),
    ],
)
def test_rfc9421_2_5_path_with_forbidden_character_is_malformed(path: str, char: str) -> None:
    """A covered @path holding a line break or non-ASCII character is malformed_signature."""
    url = "https://api.example" + path
    headers = Signer(HMACKey("k", SECRET)).sign("GET", "https://api.example/ab", {}, None, now=NOW)
    with pytest.raises(MalformedSignature) as caught:
        Verifier({"k": SECRET}).verify("GET", url, headers, now=NOW)
    assert caught.value.reason == "malformed_signature"
    assert caught.value.detail == f"component @path holds {char}"
    assert (caught.value.label, caught.value.key_id) == ("sig1", "k")


@pytest.mark.parametrize(
    "params",
    [
        pytest.param('("@method");nonce="a\nb"', id="lf"),
        pytest.param('("@method");nonce="a\rb"', id="cr"),
        pytest.param('("@method");nonce="a\u00e9b"', id="non-ascii"),
    ],
)
def test_rfc9421_2_5_signature_params_with_forbidden_character_is_malformed(params: str) -> None:
    """Signature parameters holding a line break or non-ASCII character cannot end a base."""
    message = Message("GET", "https://api.example/", [])
    with pytest.raises(MalformedSignature) as caught:
        build_signature_base(message, [component_from_spec("@method")], params)
    assert caught.value.detail == "the signature parameters hold forbidden characters"


def test_rfc9421_2_5_structured_types_reach_the_careful_path() -> None:
    """On the careful path, an ``sf`` field is still read with the caller's structured types."""
    message = Message(
        "GET", "https://api.example/", [("x-dict", "a=1,  b=2"), ("x-b", "caf\u00e9")]
    )
    components = [component_from_spec('"x-dict";sf'), component_from_spec("x-b")]
    with pytest.raises(MalformedSignature) as caught:
        build_signature_base(message, components, '("x-dict";sf "x-b")', {"x-dict": "dictionary"})
    assert caught.value.detail == "component x-b holds non-ASCII characters"
    with pytest.raises(InvalidSignature, match="structured type of 'x-dict' is unknown"):
        build_signature_base(message, components, '("x-dict";sf "x-b")')


def test_rfc9421_2_5_base_lines_in_signature_order() -> None:
    """The base is one ``identifier: value`` line per component, then @signature-params."""
    message = Message("POST", "https://API.example:443/a/b?q=1", [("X-A", " v ")])
    components = [component_from_spec(c) for c in ("x-a", "@query", "@authority", "@method")]
    params = '("x-a" "@query" "@authority" "@method");created=1'
    assert build_signature_base(message, components, params) == (
        b'"x-a": v\n"@query": ?q=1\n"@authority": api.example\n"@method": POST\n'
        b'"@signature-params": ("x-a" "@query" "@authority" "@method");created=1'
    )
