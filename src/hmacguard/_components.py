"""Covered components (RFC 9421 §2): what each identifier means and its value.

This is where a request is canonicalised. A component identifier is an
sf-string naming a header field (lowercased) or a derived component (``@...``),
with optional parameters. :func:`parse_component` validates one identifier;
:func:`component_value` computes its canonical value from a :class:`Message`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping

from ._errors import InvalidSignature, MalformedSignature
from ._message import Message
from ._structured_fields import (
    Item,
    StructuredFieldError,
    parse_dictionary,
    parse_item,
    parse_list,
    serialize_dictionary,
    serialize_item,
    serialize_list,
    serialize_member,
    serialize_params,
    serialize_string,
)

__all__ = [
    "DERIVED_COMPONENTS",
    "KNOWN_STRUCTURED_FIELDS",
    "Component",
    "component_from_spec",
    "component_value",
    "parse_component",
    "split_covered_field",
]

#: RFC 9421 §2.2: the derived components a request has. ``@status`` belongs to
#: responses and ``@signature-params`` may not be listed (§2.3).
DERIVED_COMPONENTS = frozenset(
    {
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
        "@query-param",
    }
)

#: Fields whose structured type is known (IANA HTTP Field Name registry,
#: "Structured Type" column), for the ``sf`` and ``key`` parameters. A
#: verifier or signer can add more with ``structured_fields={name: type}``.
KNOWN_STRUCTURED_FIELDS: dict[str, str] = {
    "accept-ch": "list",
    "accept-signature": "dictionary",
    "cache-status": "list",
    "cdn-cache-control": "dictionary",
    "client-cert": "item",
    "client-cert-chain": "list",
    "content-digest": "dictionary",
    "cross-origin-embedder-policy": "item",
    "cross-origin-embedder-policy-report-only": "item",
    "cross-origin-opener-policy": "item",
    "cross-origin-opener-policy-report-only": "item",
    "origin-agent-cluster": "item",
    "priority": "dictionary",
    "proxy-status": "list",
    "repr-digest": "dictionary",
    "signature": "dictionary",
    "signature-input": "dictionary",
    "want-content-digest": "dictionary",
    "want-repr-digest": "dictionary",
}
_SF_TYPES = frozenset({"item", "list", "dictionary"})


def structured_types(extra: Mapping[str, str] | None) -> dict[str, str]:
    """The known structured fields plus ``extra``, validated.

    Raises:
        ValueError: a type other than ``item``, ``list`` or ``dictionary``, or
            a field name that is not a lowercase token.
    """
    merged = dict(KNOWN_STRUCTURED_FIELDS)
    for name, kind in (extra or {}).items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"structured_fields: {name!r} is not a lowercase field name")
        if kind not in _SF_TYPES:
            raise ValueError(f"structured_fields: the type of {name!r} must be {sorted(_SF_TYPES)}")
        merged[name] = kind
    return merged


# RFC 9110 §5.1: field-name = token; RFC 9421 §2.1: component names are lowercased.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
# RFC 9112 §5.2 obs-fold: OWS CRLF RWS, replaced by a single SP (RFC 9421 §2.1).
_OBS_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")
_OWS = " \t"
# WHATWG URL "application/x-www-form-urlencoded percent-encode set": everything
# but ASCII alphanumerics and *-._ is escaped; RFC 9421 §2.2.8 encodes space as %20.
_QUERY_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._")
_ENCODED_BYTE = [chr(b) if b in _QUERY_SAFE else f"%{b:02X}" for b in range(256)]


_ATTRIBUTES = {"@method": "method", "@authority": "authority", "@path": "path", "@scheme": "scheme"}


class Component:
    """One validated component identifier.

    Attributes:
        name: the lowercased field name or derived name (``"@path"``).
        params: the identifier's parameters (``name``, ``sf``, ``key``, ``bs``).
        identifier: the sf-serialised identifier, as it appears in a signature
            base line and in ``Signature-Input`` (``'"@query-param";name="Pet"'``).
        spec: the short form used in configuration and results
            (``'@query-param;name="Pet"'``).
    """

    __slots__ = ("_hash", "attribute", "identifier", "name", "params", "plain_field", "spec")

    def __init__(self, name: str, params: Mapping[str, object]) -> None:
        self.name = name
        self.params = dict(params)
        # Shortcuts for the signature base's hot loop: a header with no
        # parameters, or a derived component that is a Message attribute as is.
        self.plain_field = not params and not name.startswith("@")
        self.attribute = _ATTRIBUTES.get(name)
        self._hash = hash((name, frozenset(self.params.items())))
        suffix = serialize_params(self.params)  # type: ignore[arg-type]
        self.identifier = serialize_string(name) + suffix
        self.spec = name + suffix

    def __repr__(self) -> str:
        return f"Component({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Component):
            return NotImplemented
        return self.name == other.name and self.params == other.params

    def __hash__(self) -> int:
        return self._hash


# Validated components, interned: policy sets and parsed signatures then hold the
# same objects, so set membership is an identity check. Bounded, since names
# come from requests.
_INTERNED: dict[tuple[object, ...], Component] = {}
_INTERNED_MAX = 1024


def parse_component(item: Item) -> Component:
    """Validate one member of a covered-components inner list.

    Raises:
        MalformedSignature: anything RFC 9421 §2.5 step 3 calls an error for a
            request, or a parameter hmacguard does not support.
    """
    if type(item.value) is str:
        # Types are part of the key: sf=?1 and sf=1 compare equal but are not.
        # Parameter values are bare items (RFC 9651 §3.1.2), all hashable.
        cache_key = (item.value, *((k, type(v), v) for k, v in item.params.items()))
        found = _INTERNED.get(cache_key)
        if found is not None:
            return found
        component = _parse_component(item)
        if len(_INTERNED) >= _INTERNED_MAX:
            _INTERNED.clear()
        _INTERNED[cache_key] = component
        return component
    return _parse_component(item)


def _parse_component(item: Item) -> Component:
    name = item.value
    if not isinstance(name, str) or type(name) is not str:
        raise MalformedSignature("a covered component identifier must be an sf-string")
    params = item.params
    if name.startswith("@"):
        # RFC 9421 §7.5.1: a name beginning with "@" is always a derived component.
        if name not in DERIVED_COMPONENTS:
            if name == "@status":
                raise MalformedSignature("@status is a response component")
            if name == "@signature-params":
                raise MalformedSignature("@signature-params cannot be a covered component")
            raise MalformedSignature(f"unknown derived component {name!r}")
        if name == "@query-param":
            if set(params) != {"name"} or type(params["name"]) is not str:
                raise MalformedSignature('@query-param needs exactly one string "name" parameter')
        elif params:
            # "req" (§2.4) only applies to responses; other parameters are undefined here.
            raise MalformedSignature(f"{name} takes no parameters")
        return Component(name, params)
    if not _FIELD_NAME.fullmatch(name):
        # RFC 9421 §2.1: "The component name for an HTTP field is the lowercased
        # form of its field name". Lowercasing silently would let
        # ("content-type" "Content-Type") dodge the duplicate check.
        raise MalformedSignature(f"{name!r} is not a lowercase HTTP field name")
    for param, value in params.items():
        if param in ("sf", "bs"):
            if value is not True:
                raise MalformedSignature(f"the {param} parameter is a boolean flag")
        elif param == "key":
            if type(value) is not str:
                raise MalformedSignature("the key parameter must be a string")
        elif param == "req":
            raise MalformedSignature("the req parameter is for responses")
        elif param == "tr":
            raise MalformedSignature("trailer fields are not supported")
        else:
            raise MalformedSignature(f"unknown component parameter {param!r}")
    # RFC 9421 §2.1.3: "bs" MUST NOT be combined with "sf" or "key".
    if "bs" in params and ("sf" in params or "key" in params):
        raise MalformedSignature("the bs parameter cannot be combined with sf or key")
    return Component(name, params)


def component_from_spec(spec: str) -> Component:
    """Parse a component from configuration: ``"@method"``, ``"content-type"``,
    ``'@query-param;name="Pet"'`` or ``'"example-dict";sf'``.

    Raises:
        ValueError: the text is not a valid request component identifier.
    """
    if not isinstance(spec, str):
        raise TypeError(f"a component is given as str, not {type(spec).__name__}")
    text = spec if spec.startswith('"') else '"' + spec.replace(";", '";', 1)
    if not spec.startswith('"') and ";" not in spec:
        text += '"'
    try:
        return parse_component(parse_item(text))
    except (StructuredFieldError, MalformedSignature) as exc:
        raise ValueError(f"invalid component {spec!r}: {exc}") from None


def _field_lines(component: Component, message: Message) -> list[str]:
    lines = message.headers.get(component.name)
    if lines is None:
        # RFC 9421 §2.5: a covered component that is absent means the base
        # cannot be built; never treat it as empty (THREATS C6).
        raise InvalidSignature(f"covered header {component.name!r} is absent from the request")
    return lines


def _field_value(component: Component, message: Message, sf_types: Mapping[str, str]) -> str:
    lines = _field_lines(component, message)
    params = component.params
    if not params and len(lines) == 1:
        # The common case: one line, no parameters, nothing to unfold.
        value = lines[0].strip(_OWS)
        if "\n" not in value and "\r" not in value:
            return value
    if "bs" in params:
        # RFC 9421 §2.1.3: each line, trimmed and unfolded ("Remove any obsolete
        # line folding within the line and replace it with a single space"), as a
        # Byte Sequence, joined with ", ". A field's bytes are read as Latin-1 (a
        # server's, or Message's for bytes given): a character above U+00FF was
        # never a byte on the wire.
        try:
            return ", ".join(
                ":"
                + base64.b64encode(_OBS_FOLD.sub(" ", line.strip(_OWS)).encode("latin-1")).decode(
                    "ascii"
                )
                + ":"
                for line in lines
            )
        except UnicodeEncodeError:
            raise MalformedSignature(
                f"covered header {component.name!r} holds a character above U+00FF, "
                "which no byte of a field value reads as: pass the field's bytes"
            ) from None
    values = []
    for line in lines:
        value = line.strip(_OWS)
        if "\n" in value or "\r" in value:
            value = _OBS_FOLD.sub(" ", value)
            if "\n" in value or "\r" in value:
                raise MalformedSignature(f"covered header {component.name!r} holds a line break")
        values.append(value)
    # RFC 9421 §2.1: "Concatenate the list of values together with a single
    # comma (",") and a single space (" ") between each item."
    combined = values[0] if len(values) == 1 else ", ".join(values)
    if "key" in params:
        kind = sf_types.get(component.name)
        if kind is not None and kind != "dictionary":
            # RFC 9421 §2.5: an error when "the component identifier is a
            # dictionary member identifier that references a field that is ...
            # not a Dictionary Structured Field" (Accept-CH is a List).
            raise InvalidSignature(
                f"covered header {component.name!r} is a structured {kind}, not a dictionary: "
                "it has no members for ;key"
            )
        try:
            members = parse_dictionary(combined)
        except StructuredFieldError:
            raise InvalidSignature(
                f"covered header {component.name!r} is not a structured dictionary"
            ) from None
        member = members.get(str(params["key"]))
        if member is None:
            raise InvalidSignature(
                f"covered dictionary {component.name!r} has no member {params['key']!r}"
            )
        return serialize_member(member)
    if "sf" in params:
        kind = sf_types.get(component.name)
        if kind is None:
            raise InvalidSignature(
                f"the structured type of {component.name!r} is unknown; "
                "declare it with structured_fields={name: 'item'|'list'|'dictionary'}"
            )
        try:
            if kind == "dictionary":
                return serialize_dictionary(parse_dictionary(combined))
            if kind == "list":
                return serialize_list(parse_list(combined))
            return serialize_item(parse_item(combined))
        except StructuredFieldError:
            raise InvalidSignature(
                f"covered header {component.name!r} is not a valid structured {kind}"
            ) from None
    return combined


def _form_decode(text: str) -> str:
    # WHATWG URL "percent-decode" after "+" -> SP: bytes, then UTF-8 with replacement.
    # The parser works on the query's bytes: a query read from the wire arrives
    # here as Latin-1 text (one character per byte, as Message and the middleware
    # read bytes), so raw UTF-8 octets sent unencoded (Go sends RawQuery as it
    # is) decode to what they say. Only text with a character above U+00FF,
    # which no byte reads as, is taken as Unicode and encoded as UTF-8.
    plus_as_space = text.replace("+", " ")
    try:
        raw = plus_as_space.encode("latin-1")
    except UnicodeEncodeError:
        raw = plus_as_space.encode("utf-8")
    if b"%" not in raw:
        return raw.decode("utf-8", "replace")
    out = bytearray()
    i, n = 0, len(raw)
    hexdigits = b"0123456789abcdefABCDEF"
    while i < n:
        byte = raw[i]
        if byte == 0x25 and i + 2 < n and raw[i + 1] in hexdigits and raw[i + 2] in hexdigits:
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    return out.decode("utf-8", "replace")


def _form_encode(text: str) -> str:
    return "".join([_ENCODED_BYTE[b] for b in text.encode("utf-8")])


def _query_param(component: Component, message: Message) -> str:
    # RFC 9421 §2.2.8: parse the query as application/x-www-form-urlencoded,
    # then re-encode names and values; the "name" parameter holds the encoded name.
    wanted = component.params["name"]
    found: list[str] = []
    for pair in (message.query or "").split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if _form_encode(_form_decode(name)) == wanted:
            found.append(_form_encode(_form_decode(value)))
    if not found:
        raise InvalidSignature(f"covered query parameter {wanted!r} is absent")
    if len(found) > 1:
        # "If a parameter name occurs multiple times in a request, the named query
        # parameter MUST NOT be included."
        raise InvalidSignature(f"covered query parameter {wanted!r} occurs more than once")
    return found[0]


def component_value(
    component: Component, message: Message, sf_types: Mapping[str, str] = KNOWN_STRUCTURED_FIELDS
) -> str:
    """Return the canonical value of ``component`` for ``message``.

    Raises:
        InvalidSignature: a covered header or query parameter is absent (or
            cannot be canonicalised), so no signature over it can verify.
        MalformedSignature: a value holds a line break, which would forge a
            signature-base line.
    """
    name = component.name
    if name[0] != "@":
        return _field_value(component, message, sf_types)
    if name == "@method":
        # RFC 9421 §2.2.1: the method "is case-sensitive"; no normalisation.
        return message.method
    if name == "@authority":
        return message.authority
    if name == "@path":
        return message.path
    if name == "@query":
        # RFC 9421 §2.2.7: "If the query string is absent from the request
        # message, the component value is the leading ? character alone".
        return "?" + (message.query or "")
    if name == "@scheme":
        return message.scheme
    if name == "@request-target":
        return message.path if message.query is None else f"{message.path}?{message.query}"
    if name == "@target-uri":
        target = f"{message.scheme}://{message.authority}{message.path}"
        return target if message.query is None else f"{target}?{message.query}"
    return _query_param(component, message)


def split_covered_field(specs: Iterable[str], lines: Mapping[str, int]) -> tuple[str, int] | None:
    """The first covered field sent on more than one line, and its line count, or None.

    ``specs`` are component specs (``"content-type"``, ``'x-a;bs'``); ``lines``
    counts a request's field lines by lowercase name. RFC 9421 §2.1 signs the
    lines joined with ", ", so "a, b" split into "a" and "b" still verifies,
    but an app reading one value (Starlette's ``request.headers["x"]``) sees
    only "a" (THREATS C4(b)). A field covered with ``bs`` signs each line
    apart (§2.1.3) and may repeat.
    """
    for spec in specs:
        name, _, params = spec.partition(";")
        if name.startswith("@") or "bs" in params.split(";"):
            continue
        count = lines.get(name, 0)
        if count > 1:
            return name, count
    return None
