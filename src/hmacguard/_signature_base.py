"""The signature base (RFC 9421 §2.5): the exact bytes an HMAC is computed over.

One line per covered component, ``<identifier>: <value>``, in the order the
signature lists them, then the ``@signature-params`` line, separated by LF with
no trailing LF. The ``@signature-params`` value is the serialised
``Signature-Input`` member, so the parameters are bound as well as the values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._components import KNOWN_STRUCTURED_FIELDS, Component, component_value
from ._errors import MalformedSignature
from ._message import Message

__all__ = ["build_signature_base"]


def build_signature_base(
    message: Message,
    components: Sequence[Component],
    signature_params: str,
    sf_types: Mapping[str, str] = KNOWN_STRUCTURED_FIELDS,
) -> bytes:
    """Return the signature base for ``message`` as ASCII bytes.

    Args:
        message: the request.
        components: the covered components, validated, in signature order.
        signature_params: the serialised inner list with its parameters,
            e.g. ``'("@method");created=1618884473;keyid="k"'``.
        sf_types: structured types of fields, for ``sf`` and ``key``.

    Raises:
        InvalidSignature: a covered component is absent.
        MalformedSignature: a component value contains a line break or the
            base is not ASCII (RFC 9421 §2.5 step 4: "If the signature base
            contains any non-ASCII characters ... fail").
    """
    headers = message.headers
    lines = []
    for component in components:
        if component.plain_field:
            found = headers.get(component.name)
            if found is not None and len(found) == 1:
                value = found[0].strip(" \t")
            else:
                value = component_value(component, message, sf_types)
        elif component.attribute is not None:
            value = getattr(message, component.attribute)
        else:
            value = component_value(component, message, sf_types)
        lines.append(f"{component.identifier}: {value}")
    lines.append(f'"@signature-params": {signature_params}')
    base = "\n".join(lines)
    # One scan each over the whole base. A line break or non-ASCII character
    # takes the careful path, which unfolds obs-fold and names the culprit.
    if base.count("\n") != len(components) or "\r" in base or not base.isascii():
        base = _careful_base(message, components, signature_params, sf_types)
    return base.encode("ascii")


def _careful_base(
    message: Message,
    components: Sequence[Component],
    signature_params: str,
    sf_types: Mapping[str, str],
) -> str:
    lines = []
    for component in components:
        value = component_value(component, message, sf_types)
        if "\n" in value or "\r" in value:
            raise MalformedSignature(f"component {component.spec} holds a line break")
        if not value.isascii():
            raise MalformedSignature(f"component {component.spec} holds non-ASCII characters")
        lines.append(f"{component.identifier}: {value}")
    if not signature_params.isascii() or "\n" in signature_params or "\r" in signature_params:
        raise MalformedSignature("the signature parameters hold forbidden characters")
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines)
