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
    lines = []
    for component in components:
        value = component_value(component, message, sf_types)
        if "\n" in value or "\r" in value:
            raise MalformedSignature(f"component {component.spec} holds a line break")
        if not value.isascii():
            raise MalformedSignature(f"component {component.spec} holds non-ASCII characters")
        lines.append(f"{component.identifier}: {value}")
    if not signature_params.isascii():
        raise MalformedSignature("the signature parameters hold non-ASCII characters")
    lines.append(f'"@signature-params": {signature_params}')
    return "\n".join(lines).encode("ascii")
