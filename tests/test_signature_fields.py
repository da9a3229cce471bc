"""Reading Signature-Input and Signature (RFC 9421 §4) into candidate signatures.

``read_signatures`` checks structure only; ``match_canonical`` is its shortcut for
the one shape nearly every signer emits. These tests pin what each returns, and
that the shortcut only recognises text the full parser would read the same way.
"""

from __future__ import annotations

import base64

import pytest

from hmacguard import MalformedSignature, MissingSignature
from hmacguard import _signature_fields as _signature_fields_module
from hmacguard._signature_fields import _fast, _full, match_canonical, read_signatures

MAC = bytes(range(32))
MAC_TEXT = base64.b64encode(MAC).decode()
INPUTS = 'sig1=("@method" "@path");created=1700000000;keyid="k1";nonce="n1"'
SIGNATURE = f"sig1=:{MAC_TEXT}:"
LIMITS = {"max_signatures": 4, "max_components": 32, "max_field_bytes": 8192}


def _read(inputs: str | list[str], signatures: str | list[str], **limits: int) -> list:
    lines = {
        "signature-input": [inputs] if isinstance(inputs, str) else inputs,
        "signature": [signatures] if isinstance(signatures, str) else signatures,
    }
    return read_signatures(lines, **{**LIMITS, **limits})


def test_rfc9421_4_canonical_pair_is_read_in_full() -> None:
    """A canonical pair gives label, parameters, components, MAC and the params text."""
    (candidate,) = _read(INPUTS, SIGNATURE)
    assert candidate.label == "sig1"
    assert candidate.params == {"created": 1700000000, "keyid": "k1", "nonce": "n1"}
    assert candidate.covered.specs == ("@method", "@path")
    assert candidate.signature == MAC
    assert candidate.signature_params == INPUTS.removeprefix("sig1=")
    assert candidate.error is None


def test_match_canonical_returns_every_part() -> None:
    """The shortcut reads each parameter of the canonical order, and the MAC, exactly."""
    _read(INPUTS, SIGNATURE)  # the full parser validates the component list first
    inputs = (
        'sig1=("@method" "@path");created=1700000000;keyid="k1";alg="hmac-sha256";'
        'expires=1700000300;nonce="n1";tag="t1"'
    )
    pair = match_canonical(inputs, SIGNATURE)
    assert pair is not None
    label, params, covered, created, keyid, alg, expires, nonce, tag, mac = pair
    assert (label, params) == ("sig1", inputs.removeprefix("sig1="))
    assert covered.specs == ("@method", "@path")
    assert (created, keyid, alg, expires, nonce, tag) == (
        "1700000000",
        "k1",
        "hmac-sha256",
        "1700000300",
        "n1",
        "t1",
    )
    assert mac == MAC
    (candidate,) = _read(inputs, SIGNATURE)
    assert candidate.params == {
        "created": 1700000000,
        "keyid": "k1",
        "alg": "hmac-sha256",
        "expires": 1700000300,
        "nonce": "n1",
        "tag": "t1",
    }


@pytest.mark.parametrize(
    ("inputs", "signature"),
    [
        pytest.param('sig1=("@method" "@path");keyid="k1"', SIGNATURE, id="no-created"),
        pytest.param(INPUTS.replace("sig1=", "sig1 ="), SIGNATURE, id="space-after-label"),
        pytest.param(INPUTS + ";foo=1", SIGNATURE, id="unknown-parameter"),
        pytest.param(INPUTS, f"sig2=:{MAC_TEXT}:", id="other-label"),
        pytest.param(INPUTS, f"sig1=:{MAC_TEXT}", id="no-closing-colon"),
        pytest.param(INPUTS, "sig1=:", id="shorter-than-prefix"),
        pytest.param(INPUTS, "sig1=:YWJjZA:", id="unpadded"),
        pytest.param(INPUTS, "sig1=:YW=j:", id="padding-inside"),
        pytest.param(INPUTS, "sig1=:YWJjZA==YWJj:", id="data-after-padding"),
        pytest.param(INPUTS, "sig1=:YWJj=:", id="stray-padding-after-a-group"),
        pytest.param(INPUTS, "sig1=:YWJj==:", id="stray-padding-pair"),
        pytest.param(INPUTS, "sig1=:YW Jj:", id="space-inside"),
        pytest.param(
            'sig1=("@query" "@method");created=1700000000;keyid="k1"',
            SIGNATURE,
            id="list-not-validated-yet",
        ),
    ],
)
def test_match_canonical_declines_other_shapes(
    inputs: str, signature: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything but the canonical shape of a validated list is left to the full parser."""
    # Start from empty caches: a list validated by an earlier test in this process would
    # no longer be "not validated yet".
    monkeypatch.setattr(_signature_fields_module, "_COMPONENT_CACHE", {})
    monkeypatch.setattr(_signature_fields_module, "_HEAD_CACHE", {})
    _read(INPUTS, SIGNATURE)
    assert match_canonical(inputs, signature) is None


@pytest.mark.parametrize(
    ("field", "inputs", "signature"),
    [
        pytest.param("Signature-Input", INPUTS + " " * 40, SIGNATURE, id="signature-input"),
        pytest.param("Signature", INPUTS, SIGNATURE + " " * 40, id="signature"),
    ],
)
def test_rfc9421_4_field_longer_than_the_limit_is_malformed(
    field: str, inputs: str, signature: str
) -> None:
    """Either field over max_field_bytes is malformed, and the detail names it."""
    limit = max(len(INPUTS), len(SIGNATURE)) + 10
    with pytest.raises(MalformedSignature) as caught:
        _read(inputs, signature, max_field_bytes=limit)
    assert caught.value.detail == f"{field} is longer than {limit} bytes"
    assert len(_read(INPUTS, SIGNATURE, max_field_bytes=len(INPUTS))) == 1


def test_rfc9421_4_lines_of_one_field_are_joined() -> None:
    """Several lines of each field are read as one comma-joined dictionary."""
    second = INPUTS.replace("sig1", "sig2")
    candidates = _read([INPUTS, second], [SIGNATURE, SIGNATURE.replace("sig1", "sig2")])
    assert [c.label for c in candidates] == ["sig1", "sig2"]


@pytest.mark.parametrize(
    ("inputs", "signature", "error", "detail"),
    [
        pytest.param(
            None, None, MissingSignature, "the request has neither Signature nor Signature-Input"
        ),
        pytest.param(
            INPUTS, None, MalformedSignature, "Signature-Input is present without its counterpart"
        ),
        pytest.param(
            None, SIGNATURE, MalformedSignature, "Signature is present without its counterpart"
        ),
        pytest.param("", "", MissingSignature, "Signature and Signature-Input are empty"),
    ],
)
def test_rfc9421_4_missing_fields(
    inputs: str | None, signature: str | None, error: type[Exception], detail: str
) -> None:
    """Absent fields are missing_signature; one without the other is malformed."""
    lines = {}
    if inputs is not None:
        lines["signature-input"] = [inputs]
    if signature is not None:
        lines["signature"] = [signature]
    with pytest.raises(error) as caught:
        read_signatures(lines, **LIMITS)
    assert str(caught.value.detail) == detail


@pytest.mark.parametrize(
    ("inputs", "signature", "limit", "detail"),
    [
        pytest.param(
            "sig1=a;created=1",
            SIGNATURE,
            32,
            "a Signature-Input member is not an inner list",
            id="input-not-inner-list",
        ),
        pytest.param(
            INPUTS, "sig1=abc", 32, "a Signature member is not a byte sequence", id="not-bytes"
        ),
        pytest.param(INPUTS, SIGNATURE, 1, "more than 1 covered components", id="too-many"),
        pytest.param(
            'sig1=("@path" "@path");created=1',
            SIGNATURE,
            32,
            "a covered component is listed twice",
            id="duplicate",
        ),
        pytest.param(
            'sig1=("X-A");created=1',
            SIGNATURE,
            32,
            "'X-A' is not a lowercase HTTP field name",
            id="invalid-identifier",
        ),
    ],
)
def test_rfc9421_4_broken_signature_fails_alone_naming_its_label(
    inputs: str, signature: str, limit: int, detail: str
) -> None:
    """A structurally broken signature becomes a failed candidate whose error names its label."""
    good_inputs = INPUTS.replace("sig1=", "ok=")
    good_signature = SIGNATURE.replace("sig1=", "ok=")
    broken, good = _read(
        f"{inputs}, {good_inputs}", f"{signature}, {good_signature}", max_components=limit
    )
    assert broken.error is not None
    assert (broken.label, broken.error.label, broken.error.detail) == ("sig1", "sig1", detail)
    assert broken.error.reason == "malformed_signature"
    assert good.error is None if limit > 1 else good.error is not None


def test_canonical_pair_is_read_by_the_shortcut_itself() -> None:
    """The shortcut of read_signatures reads a canonical pair, as the full parser would."""
    _read(INPUTS, SIGNATURE)
    fast = _fast(INPUTS, SIGNATURE, 2)
    assert fast is not None
    (candidate,) = fast
    (full,) = _full(INPUTS, SIGNATURE, 4, 2, None)
    assert (candidate.label, candidate.params, candidate.signature) == (
        full.label,
        full.params,
        full.signature,
    )
    assert (candidate.covered.specs, candidate.signature_params) == (
        full.covered.specs,
        full.signature_params,
    )
    assert _fast(INPUTS, SIGNATURE, 1) is None  # over the component limit
    assert _fast(INPUTS, "sig1=:YR==:", 2) is None  # decodes, but is not canonical


@pytest.mark.parametrize(
    ("inputs", "signature"),
    [
        pytest.param(INPUTS + ";p=X", SIGNATURE, id="token-parameter-on-input"),
        pytest.param(INPUTS, SIGNATURE + ";p=X", id="token-parameter-on-signature"),
        pytest.param(" \t" + INPUTS + " \t", "\t " + SIGNATURE + "\t ", id="sp-and-htab"),
    ],
)
def test_rfc9421_4_fields_are_trimmed_of_sp_and_htab_only(inputs: str, signature: str) -> None:
    """Surrounding SP and HTAB are ignored; a parameter ending in X is kept as it is."""
    (candidate,) = _read(inputs, signature)
    assert candidate.error is None
    assert candidate.signature == MAC


@pytest.mark.parametrize(
    ("inputs", "signature"),
    [
        pytest.param(INPUTS + "\x0b", SIGNATURE, id="vt-after-input"),
        pytest.param(INPUTS, SIGNATURE + "\x0b", id="vt-after-signature"),
    ],
)
def test_rfc9421_4_other_whitespace_is_malformed(inputs: str, signature: str) -> None:
    """Whitespace other than SP and HTAB around a field is a syntax error, not trimmed."""
    with pytest.raises(MalformedSignature) as caught:
        _read(inputs, signature)
    assert caught.value.detail.startswith("not a valid structured dictionary: ")


def test_rfc9421_4_labels_in_one_field_only_are_listed() -> None:
    """Labels present in only one of the two fields are named, at most four of them."""
    inputs = ", ".join(INPUTS.replace("sig1", label) for label in ("a", "b", "c", "d", "e"))
    with pytest.raises(MalformedSignature) as caught:
        _read(inputs, SIGNATURE.replace("sig1", "f"), max_signatures=8)
    assert caught.value.detail == (
        "labels ['a', 'b', 'c', 'd'] appear in only one of the two fields"
    )


def test_rfc9421_4_tag_selects_signatures_even_of_the_canonical_shape() -> None:
    """With a tag, a canonical signature without that tag is not a candidate."""
    assert _read(INPUTS, SIGNATURE) != []
    assert (
        read_signatures({"signature-input": [INPUTS], "signature": [SIGNATURE]}, **LIMITS, tag="t")
        == []
    )
    tagged = INPUTS + ';tag="t"'
    (candidate,) = read_signatures(
        {"signature-input": [tagged], "signature": [SIGNATURE]}, **LIMITS, tag="t"
    )
    assert candidate.params["tag"] == "t"
