"""Reading ``Signature-Input`` and ``Signature`` (RFC 9421 §4) into candidates.

:func:`read_signatures` returns one :class:`Candidate` per label: its covered
components (validated), its parameters, the MAC bytes, and the serialised
signature parameters that end the signature base. It checks structure only;
what the parameters must say is the verifier's policy.

Nearly every client sends one signature of one shape: a label, a list of plain
component names, integer and string parameters, all in canonical form. That
shape is recognised by one anchored regular expression and read without the
general parser; anything else (several labels, parameters on components,
escapes, unusual spacing, errors) goes through the full RFC 9651 parser. The
fast path only accepts text whose canonical re-serialisation is the text itself,
so both paths yield the same candidate for the same input.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping

from ._components import Component, parse_component
from ._errors import MalformedSignature, MissingSignature
from ._structured_fields import (
    InnerList,
    Item,
    StructuredFieldError,
    parse_dictionary,
    serialize_inner_list,
)

__all__ = ["Candidate", "CoveredComponents", "read_signatures"]


# Positions of the derived values the fast path passes to a template.
DERIVED_SLOTS = {"@method": 0, "@authority": 1, "@path": 2, "@scheme": 3, "@query": 4}


class CoveredComponents:
    """A validated list of covered components, with what is derived from it once.

    ``header_names`` and ``template`` serve the verifier's fast path: when
    every component is a header without parameters or a derived component in
    ``DERIVED_SLOTS``, ``template`` is the signature base as a ``str.format``
    template whose arguments are the five derived values (in ``DERIVED_SLOTS``
    order), the values of the headers in ``header_names``, then the signature
    parameters. Otherwise both are None.
    """

    __slots__ = ("components", "covered", "covers_digest", "header_names", "specs", "template")

    def __init__(self, components: tuple[Component, ...]) -> None:
        self.components = components
        self.covered = frozenset(components)
        self.specs = tuple(c.spec for c in components)
        self.covers_digest = any(c.name == "content-digest" for c in components)
        self.header_names: tuple[str, ...] | None = None
        self.template: str | None = None
        names: list[str] = []
        lines: list[str] = []
        for component in components:
            if component.plain_field:
                slot = len(DERIVED_SLOTS) + len(names)
                names.append(component.name)
            elif component.name in DERIVED_SLOTS and not component.params:
                slot = DERIVED_SLOTS[component.name]
            else:
                return
            escaped = component.identifier.replace("{", "{{").replace("}", "}}")
            lines.append(f"{escaped}: {{{slot}}}")
        lines.append(f'"@signature-params": {{{len(DERIVED_SLOTS) + len(names)}}}')
        self.header_names = tuple(names)
        self.template = "\n".join(lines)


class Candidate:
    """One signature of a request, policy not yet checked.

    ``error`` is set when the signature itself is structurally broken; the
    verifier then fails this candidate and tries the next.
    """

    __slots__ = ("covered", "error", "label", "params", "signature", "signature_params")

    def __init__(
        self,
        label: str,
        covered: CoveredComponents,
        params: dict[str, object],
        signature: bytes,
        signature_params: str,
        *,
        error: MalformedSignature | None = None,
    ) -> None:
        self.label = label
        self.covered = covered
        self.params = params
        self.signature = signature
        self.signature_params = signature_params
        self.error = error

    @classmethod
    def failed(cls, label: str, error: MalformedSignature) -> Candidate:
        """A candidate that fails with ``error`` when checked."""
        return cls(label, _NOTHING_COVERED, {}, b"", "()", error=error)


# The shape nearly every signer emits, in RFC 9421's own parameter order:
# label=(...);created=N;keyid="..."[;alg="..."][;expires=N][;nonce="..."][;tag="..."]
# Integers without sign or leading zero and Strings without escapes are their
# own canonical serialisation, so the matched text is the @signature-params value.
_INT = r"(0|[1-9][0-9]{0,14})"
_STR = r'"([ !#-\[\]-~]*)"'
_ID = r'"([ !#-\[\]-~]{1,256})"'  # key ids, nonces and tags: 1-256 characters
_FAST_INPUT_TEXT = (
    rf"([a-z*][a-z0-9_.*-]*)=((\([^()\n]*\));created={_INT};keyid={_ID}"
    rf"(?:;alg={_STR})?(?:;expires={_INT})?(?:;nonce={_ID})?(?:;tag={_ID})?)"
)
_FAST_INPUT = re.compile(_FAST_INPUT_TEXT)
_FAST_SIGNATURE = re.compile(r"([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/]*={0,2}):")
#: Signature-Input, LF, Signature, for the same label (``\1``) in one match.
FAST_PAIR = re.compile(_FAST_INPUT_TEXT + r"\n\1=:([A-Za-z0-9+/]*={0,2}):")

_NOTHING_COVERED = CoveredComponents(())

# Validated component lists by their text, e.g. '("@method" "@path")'. Bounded:
# an attacker sending ever-new lists only ever costs the general path.
_COMPONENT_CACHE: dict[str, CoveredComponents] = {}
_COMPONENT_CACHE_SIZE = 256


def _components(items: list[Item], label: str) -> CoveredComponents:
    try:
        components = tuple(parse_component(item) for item in items)
    except MalformedSignature as exc:
        exc.label = label
        raise
    covered = CoveredComponents(components)
    if len(covered.covered) != len(components):
        # RFC 9421 §2.5: "If the component identifier ... has already been
        # included in the signature base, produce an error."
        raise MalformedSignature("a covered component is listed twice", label=label)
    return covered


def _fast(inputs: str, signatures: str, max_components: int) -> list[Candidate] | None:
    match = _FAST_INPUT.fullmatch(inputs)
    if match is None:
        return None
    label, signature_params, inner, created, keyid, alg, expires, nonce, tag = match.groups()
    # The component list must be one the full path has validated before.
    covered = _COMPONENT_CACHE.get(inner)
    if covered is None or len(covered.components) > max_components:
        return None
    sig_match = _FAST_SIGNATURE.fullmatch(signatures)
    if sig_match is None or sig_match.group(1) != label:
        return None
    encoded = sig_match.group(2)
    try:
        mac = binascii.a2b_base64(encoded)
    except binascii.Error:
        return None
    # Only canonical base64 (re-encoding gives the same text) takes this path.
    if binascii.b2a_base64(mac, newline=False) != encoded.encode("ascii"):
        return None
    params: dict[str, object] = {"created": int(created), "keyid": keyid}
    if alg is not None:
        params["alg"] = alg
    if expires is not None:
        params["expires"] = int(expires)
    if nonce is not None:
        params["nonce"] = nonce
    if tag is not None:
        params["tag"] = tag
    return [Candidate(label, covered, params, mac, signature_params)]


def _candidate(label: str, member: object, signature: object, max_components: int) -> Candidate:
    if not isinstance(member, InnerList):
        raise MalformedSignature("a Signature-Input member is not an inner list", label=label)
    if not isinstance(signature, Item) or not isinstance(signature.value, bytes):
        raise MalformedSignature("a Signature member is not a byte sequence", label=label)
    if len(member.items) > max_components:
        raise MalformedSignature(f"more than {max_components} covered components", label=label)
    covered = _components(member.items, label)
    inner = serialize_inner_list(InnerList(member.items))
    if len(_COMPONENT_CACHE) >= _COMPONENT_CACHE_SIZE:
        _COMPONENT_CACHE.clear()
    _COMPONENT_CACHE[inner] = covered
    return Candidate(
        label, covered, dict(member.params), signature.value, serialize_inner_list(member)
    )


def read_signatures(
    headers: Mapping[str, list[str]],
    *,
    max_signatures: int,
    max_components: int,
    max_field_bytes: int,
    tag: str | None = None,
) -> list[Candidate]:
    """Read the signatures of a request, in ``Signature-Input`` order.

    Args:
        headers: header lines by lowercased name.
        max_signatures: more labels than this is malformed.
        max_components: more covered components than this is malformed.
        max_field_bytes: a longer ``Signature-Input`` or ``Signature`` is malformed.
        tag: when set, only signatures with this ``tag`` parameter are returned.

    Raises:
        MissingSignature: neither field is present, or both are empty.
        MalformedSignature: anything structurally wrong (RFC 9421 §4, §2.5).
    """
    input_lines = headers.get("signature-input")
    signature_lines = headers.get("signature")
    if input_lines is None and signature_lines is None:
        raise MissingSignature("the request has neither Signature nor Signature-Input")
    if input_lines is None or signature_lines is None:
        present = "Signature" if input_lines is None else "Signature-Input"
        raise MalformedSignature(f"{present} is present without its counterpart")
    inputs = input_lines[0] if len(input_lines) == 1 else ", ".join(input_lines)
    signatures = signature_lines[0] if len(signature_lines) == 1 else ", ".join(signature_lines)
    for name, value in (("Signature-Input", inputs), ("Signature", signatures)):
        if len(value) > max_field_bytes:
            raise MalformedSignature(f"{name} is longer than {max_field_bytes} bytes")
    if tag is None:
        fast = _fast(inputs, signatures, max_components)
        if fast is not None:
            return fast
    return _full(inputs, signatures, max_signatures, max_components, tag)


def _full(
    inputs: str, signatures: str, max_signatures: int, max_components: int, tag: str | None
) -> list[Candidate]:
    try:
        # RFC 9421 §4.1: labels are unique; a label repeated across lines, or a
        # parameter given twice, is ambiguous and refused (THREATS C4, P3).
        input_members = parse_dictionary(inputs.strip(" \t"), reject_duplicates=True)
        signature_members = parse_dictionary(signatures.strip(" \t"), reject_duplicates=True)
    except StructuredFieldError as exc:
        raise MalformedSignature(f"not a valid structured dictionary: {exc}") from None
    if input_members.keys() != signature_members.keys():
        only = sorted(input_members.keys() ^ signature_members.keys())[:4]
        raise MalformedSignature(f"labels {only!r} appear in only one of the two fields")
    if not input_members:
        raise MissingSignature("Signature and Signature-Input are empty")
    if len(input_members) > max_signatures:
        raise MalformedSignature(f"more than {max_signatures} signatures")
    candidates = []
    for label, member in input_members.items():
        if tag is not None and (
            not isinstance(member, InnerList) or member.params.get("tag") != tag
        ):
            continue
        try:
            candidates.append(_candidate(label, member, signature_members[label], max_components))
        except MalformedSignature as exc:
            # One broken signature does not block another that verifies: a
            # second signer may use what this library does not support
            # (RFC 9421 §7.2.6 warns against "reject on any invalid").
            candidates.append(Candidate.failed(label, exc))
    return candidates
