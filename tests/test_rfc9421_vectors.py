"""RFC 9421 conformance: the Appendix B vectors and the §2 canonicalisation examples."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from _vectors import load_vector
from hmacguard import HMACKey, InvalidSignature, Signer, Verifier
from hmacguard._components import (
    KNOWN_STRUCTURED_FIELDS,
    component_from_spec,
    component_value,
    parse_component,
)
from hmacguard._message import Message
from hmacguard._signature_base import build_signature_base
from hmacguard._structured_fields import parse_dictionary

B25_COMPONENTS = ("date", "@authority", "content-type")
B25_CREATED = 1618884473


def _request(vec: Any, **changes: Any) -> tuple[str, str, list[tuple[str, str]], bytes]:
    req = {**vec["test_request"], **changes}
    return req["method"], req["url"], [tuple(h) for h in req["headers"]], req["body"].encode()


def _base_for(message: Message, signature_input: str) -> bytes:
    (member,) = parse_dictionary(signature_input).values()
    components = [parse_component(item) for item in member.items]  # type: ignore[union-attr]
    params = signature_input.split("=", 1)[1]
    return build_signature_base(message, components, params)


def test_rfc9421_b_2_5_hmac_sha256_verifies(rfc9421: Any, rfc_secret: bytes) -> None:
    """The B.2.5 hmac-sha256 signature verifies bit for bit on the B.2 test request."""
    vec = rfc9421["b_2_5"]
    method, url, headers, body = _request(rfc9421)
    headers += [("Signature-Input", vec["signature_input"]), ("Signature", vec["signature"])]
    verifier = Verifier(
        {"test-shared-secret": rfc_secret},
        required_components=B25_COMPONENTS,
        require_nonce=False,
    )
    verified = verifier.verify(method, url, headers, body, now=B25_CREATED + 10)
    assert verified.label == "sig-b25"
    assert verified.key_id == "test-shared-secret"
    assert verified.created == B25_CREATED
    assert verified.nonce is None
    assert verified.components == B25_COMPONENTS
    assert verified.algorithm == "hmac-sha256"


def test_rfc9421_b_2_5_fails_when_content_type_changes(rfc9421: Any, rfc_secret: bytes) -> None:
    """Changing a covered header of the B.2.5 request breaks its signature."""
    vec = rfc9421["b_2_5"]
    method, url, headers, body = _request(rfc9421)
    headers = [(n, "text/plain" if n == "Content-Type" else v) for n, v in headers]
    headers += [("Signature-Input", vec["signature_input"]), ("Signature", vec["signature"])]
    verifier = Verifier(
        {"test-shared-secret": rfc_secret},
        required_components=B25_COMPONENTS,
        require_nonce=False,
    )
    with pytest.raises(InvalidSignature):
        verifier.verify(method, url, headers, body, now=B25_CREATED)


def test_rfc9421_b_2_5_recreated_by_signer(rfc9421: Any, rfc_secret: bytes) -> None:
    """Signer reproduces the B.2.5 Signature-Input and Signature byte for byte."""
    vec = rfc9421["b_2_5"]
    method, url, headers, body = _request(rfc9421)
    signer = Signer(
        HMACKey("test-shared-secret", rfc_secret),
        components=B25_COMPONENTS,
        label="sig-b25",
        nonce=False,
    )
    added = signer.sign(method, url, headers, body, now=B25_CREATED)
    assert added == {"Signature-Input": vec["signature_input"], "Signature": vec["signature"]}


def test_rfc9421_b_2_5_signature_base(rfc9421: Any) -> None:
    """The B.2.5 signature base is rebuilt exactly, down to its SHA-256."""
    vec = rfc9421["b_2_5"]
    method, url, headers, _ = _request(rfc9421)
    base = _base_for(Message(method, url, headers), vec["signature_input"])
    assert base.decode() == vec["base"]
    assert hashlib.sha256(base).hexdigest() == vec["base_sha256"]


@pytest.mark.parametrize("name", ["b_2_1", "b_2_2", "b_2_3", "b_2_6", "section_3_1"])
def test_rfc9421_b_2_signature_bases(rfc9421: Any, name: str) -> None:
    """Each B.2.x (and §3.1) request signature base is rebuilt byte for byte."""
    vec = rfc9421["request_bases"][name]
    method, url, headers, _ = _request(rfc9421)
    assert _base_for(Message(method, url, headers), vec["signature_input"]).decode() == vec["base"]


@pytest.mark.parametrize("index", range(8))
def test_rfc9421_2_1_field_canonicalisation(rfc9421: Any, index: int) -> None:
    """Header fields are trimmed, unfolded and joined as RFC 9421 §2.1 shows."""
    vec = rfc9421["canonicalization"]
    spec, line = vec["lines"][index]
    req = vec["request"]
    message = Message(req["method"], req["url"], [tuple(h) for h in req["headers"]])
    component = component_from_spec(spec)
    sf_types = {**KNOWN_STRUCTURED_FIELDS, "example-dict": "dictionary"}
    assert f"{component.identifier}: {component_value(component, message, sf_types)}" == line


@pytest.mark.parametrize("index", range(4))
def test_rfc9421_2_1_2_dictionary_members(rfc9421: Any, index: int) -> None:
    """The key parameter picks a dictionary member and re-serialises it (§2.1.2)."""
    vec = rfc9421["canonicalization"]
    spec, line = vec["dictionary_lines"][index]
    req = vec["dictionary_request"]
    message = Message(req["method"], req["url"], [tuple(h) for h in req["headers"]])
    component = component_from_spec(spec)
    assert f"{component.identifier}: {component_value(component, message)}" == line


@pytest.mark.parametrize("index", range(2))
def test_rfc9421_2_1_3_binary_wrapped(rfc9421: Any, index: int) -> None:
    """The bs parameter wraps each field line as a byte sequence (§2.1.3)."""
    case = rfc9421["canonicalization"]["binary"][index]
    message = Message("GET", "https://example.com/", [tuple(h) for h in case["headers"]])
    component = component_from_spec('"example-header";bs')
    assert f"{component.identifier}: {component_value(component, message)}" == case["line"]


def _derived_id(case: dict[str, str]) -> str:
    return f"{case['component']}<-{case['url'][-40:]}"


@pytest.mark.parametrize(
    "case",
    load_vector("rfc9421.json")["canonicalization"]["derived"],
    ids=_derived_id,
)
def test_rfc9421_2_2_derived_components(case: dict[str, str]) -> None:
    """Each derived component takes the raw value RFC 9421 §2.2 specifies."""
    message = Message(case["method"], case["url"], [])
    assert component_value(component_from_spec(case["component"]), message) == case["value"]


def test_rfc9421_2_2_8_repeated_query_param_is_refused() -> None:
    """A query parameter that occurs twice cannot be covered by name (§2.2.8)."""
    message = Message("GET", "https://example.com/p?a=1&a=2", [])
    with pytest.raises(InvalidSignature, match="more than once"):
        component_value(component_from_spec('@query-param;name="a"'), message)


def test_rfc9421_b_2_response_message_is_out_of_scope(rfc9421: Any) -> None:
    """The B.2 response's @status component is refused on a request (§2.2.9)."""
    vec = rfc9421["request_bases"]["b_2_1"]
    assert "@status" not in vec["signature_input"]
    with pytest.raises(ValueError, match="response"):
        component_from_spec("@status")
