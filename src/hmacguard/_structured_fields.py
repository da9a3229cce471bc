"""Structured Field Values for HTTP (RFC 9651): parser and serialiser.

RFC 9421 carries its signature metadata in Structured Fields: ``Signature-Input``
and ``Signature`` are Dictionaries, ``Accept-Signature`` too, and RFC 9530's
``Content-Digest`` is a Dictionary of Byte Sequences. This module turns such a
field value (a ``str``; the caller decodes the raw bytes as latin-1) into Python
values and back:

=====================  ======================================================
RFC 9651 type          Python value
=====================  ======================================================
Integer                ``int``
Decimal                ``float``
String                 ``str``
Token                  :class:`Token` (a ``str`` subclass)
Byte Sequence          ``bytes``
Boolean                ``bool``
Date                   :class:`Date` (an ``int`` subclass)
Display String         :class:`DisplayString` (a ``str`` subclass)
Item                   :class:`Item` (bare value plus ordered parameters)
Inner List             :class:`InnerList` (items plus ordered parameters)
List                   ``list`` of :class:`Item` / :class:`InnerList`
Dictionary             ``dict`` of key to :class:`Item` / :class:`InnerList`
=====================  ======================================================

The parse functions raise :class:`StructuredFieldError`, and nothing else, for
any input string that is not a valid field value; the serialisers raise it for
values RFC 9651 cannot express.

The module is written by hand, on the standard library only, because it sits on
the hot path of request verification: every signed request has its
``Signature-Input`` and ``Signature`` parsed. Parsing a typical
``Signature-Input`` value (one label, six covered components, three
parameters) with :func:`parse_dictionary` takes about a third of the time the
PyPI ``http-sf`` package takes (6.7 µs against 20.8 µs with ``timeit`` on the
development machine; 53 against 161 thousand instructions under callgrind).
Parsing follows the algorithms of RFC 9651 Section 4.2, with these
implementation choices:

- Scanning is index-based over the input string: nothing is sliced off the
  front in a loop, so parsing is linear in the input length. The grammar nests
  only one level (an Inner List inside a List or Dictionary), and the code uses
  loops, never recursion.
- The common bare items (Strings without escapes, Integers, Decimals, Tokens,
  Booleans) are matched by one precompiled regular expression anchored at the
  current index, and so is a whole run of parameters with such values. An Inner
  List of plain Strings, the shape of RFC 9421's covered components, is checked
  and split with ``str`` methods, and a Dictionary member of that shape with its
  parameters is matched by one expression. Anything else (escaped Strings, Byte
  Sequences, Dates, Display Strings, errors) goes through the general code,
  which follows the RFC's steps one by one.
- No pattern has nested repetitions that can split the same text in more than
  one way, so a match, or a failed one, costs time linear in the text it looks
  at. Character classes are spelled out as ASCII ranges (never ``\\d`` or
  ``\\w``, which match non-ASCII digits and letters in ``str`` patterns).
"""

from __future__ import annotations

import binascii
import math
import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TypeAlias

__all__ = [
    "BareItem",
    "Date",
    "DisplayString",
    "InnerList",
    "Item",
    "Member",
    "Params",
    "StructuredFieldError",
    "Token",
    "TooLarge",
    "parse_dictionary",
    "parse_inner_list",
    "parse_item",
    "parse_list",
    "serialize_bare_item",
    "serialize_dictionary",
    "serialize_inner_list",
    "serialize_item",
    "serialize_key",
    "serialize_list",
    "serialize_member",
    "serialize_params",
    "serialize_string",
]


class StructuredFieldError(ValueError):
    """A field value could not be parsed, or a value could not be serialised."""


class TooLarge(StructuredFieldError):
    """A field value passed a bound the caller set (``max_members``, ``max_items``).

    Attributes:
        bound: which one, ``"max_members"`` or ``"max_items"``.
    """

    def __init__(self, message: str, bound: str) -> None:
        super().__init__(message)
        self.bound = bound


class Token(str):
    """An RFC 9651 Token (Section 3.3.4), such as ``foo`` or ``text/html``.

    A marker subclass of ``str``: as strings ``Token("a") == "a"``, but
    :class:`Item` equality tells them apart. The serialiser validates it.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Token({str.__repr__(self)})"


class DisplayString(str):
    """An RFC 9651 Display String (Section 3.3.8): Unicode text, ``%"..."`` on the wire."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"DisplayString({str.__repr__(self)})"


class Date(int):
    """An RFC 9651 Date (Section 3.3.7): integer seconds since the Unix epoch, ``@...``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Date({int.__repr__(self)})"


BareItem: TypeAlias = int | float | str | bytes | bool
Params: TypeAlias = dict[str, BareItem]


def _same_value(a: object, b: object) -> bool:
    # Type-exact: Token("a") != "a", True != 1, Date(1) != 1, 1.0 != 1.
    return type(a) is type(b) and a == b


def _same_params(a: Params, b: Params) -> bool:
    # Parameters are an ordered map (RFC 9651 Section 3.1.2): order is compared too.
    if len(a) != len(b):
        return False
    for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
        if ka != kb or not _same_value(va, vb):
            return False
    return True


class Item:
    """An RFC 9651 Item: a bare value with (possibly empty) ordered parameters.

    Equality is type-exact on the value and the parameter values, and respects
    parameter order, because all of those change the serialisation.
    """

    __slots__ = ("params", "value")

    value: BareItem
    params: Params

    # Mutable (the parameters are a dict), so not hashable.
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: BareItem, params: Params | None = None) -> None:
        self.value = value
        self.params = {} if params is None else params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return _same_value(self.value, other.value) and _same_params(self.params, other.params)

    def __repr__(self) -> str:
        if self.params:
            return f"Item({self.value!r}, {self.params!r})"
        return f"Item({self.value!r})"


class InnerList:
    """An RFC 9651 Inner List: a list of :class:`Item` with (possibly empty) parameters."""

    __slots__ = ("items", "params")

    items: list[Item]
    params: Params

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, items: list[Item], params: Params | None = None) -> None:
        self.items = items
        self.params = {} if params is None else params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InnerList):
            return NotImplemented
        return self.items == other.items and _same_params(self.params, other.params)

    def __repr__(self) -> str:
        if self.params:
            return f"InnerList({self.items!r}, {self.params!r})"
        return f"InnerList({self.items!r})"


Member: TypeAlias = Item | InnerList


# ---------------------------------------------------------------------------
# Patterns. None has a quantifier inside a quantified group that could match
# the same text in more than one way, so matching is linear in the input.

# RFC 9651 Section 3.1.2: key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
_KEY = r"[a-z*][a-z0-9_.*-]*"
# Section 3.3.4: sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" ), with RFC 9110's
# tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
#         / DIGIT / ALPHA
_TOKEN = r"[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]*"  # noqa: S105  a regex, not a secret
# Section 3.3.3: unescaped = %x20-21 / %x23-5B / %x5D-7E (printable ASCII but DQUOTE, "\")
_UNESCAPED = r"[ !#-\[\]-~]"
# Section 4.2.4: an Integer has at most 15 digits ("If type is "integer" and
# input_number contains more than 15 characters, fail parsing."); a Decimal at
# most 12 before the "." ("If input_number contains more than 12 characters, fail
# parsing." when the "." is reached) and one to three after it ("If the final
# character of input_number is ".", fail parsing. If the number of characters
# after "." in input_number is greater than three, fail parsing."). The
# lookaheads make a longer number not match at all, rather than match a prefix.
_INTEGER = r"-?[0-9]{1,15}(?![0-9.])"
_DECIMAL = r"-?[0-9]{1,12}\.[0-9]{1,3}(?![0-9])"
# The fast bare items: a String without escapes, an Integer, a Decimal, a Token,
# a Boolean. The first character of a match says which one it is. Anything else
# (an escaped String, a Byte Sequence, a Date, a Display String, an error) goes
# through _parse_bare_general().
_FAST_BARE = rf'"{_UNESCAPED}*"|{_INTEGER}|{_DECIMAL}|{_TOKEN}|\?[01]'
_BARE_RE = re.compile(_FAST_BARE)
# One parameter whose value, if any, is a fast bare item. The lookahead after the
# key stops the key from giving back characters, and "(?!=)" keeps a parameter
# with any other value from matching, so that a run of these parameters ends at
# that parameter's ";" and the general code takes over from there.
_FAST_PARAM = rf"; *{_KEY}(?![a-z0-9_.*-])(?:=(?:{_FAST_BARE})|(?!=))"
_PARAM_RUN_RE = re.compile(rf"(?:{_FAST_PARAM})+")
# A Dictionary member that is an Inner List of Strings without escapes or
# parameters, with fast parameters, such as RFC 9421's Signature-Input member
# sig1=("@method" "@path");created=1;keyid="k". Groups: key, the inside of the
# parentheses, the parameters. Items must be separated by SP (Section 4.2.1.2,
# step 3.5: "If the first character of input_string is not SP or ")", fail
# parsing."). Splitting the inside on DQUOTE gives the Strings at odd positions.
_PLAIN_MEMBER_RE = re.compile(
    rf'({_KEY})=\(( *(?:"{_UNESCAPED}*"(?: +"{_UNESCAPED}*")* *)?)\)((?:{_FAST_PARAM})*)'
)
# Splits such a run into (key, raw value) pairs, raw being "" without a value.
_PARAM_PAIR_RE = re.compile(rf"; *({_KEY})(?:=({_FAST_BARE}))?")
# The start of any one parameter: ";", SP, key (Section 4.2.3.2, steps 2.2-2.4).
_PARAM_KEY_RE = re.compile(rf"; *({_KEY})")
_KEY_RE = re.compile(_KEY)
_INTEGER_RE = re.compile(_INTEGER)
_STRING_RUN_RE = re.compile(_UNESCAPED + "*")
# Section 4.2.7, step 6: only ALPHA, DIGIT, "+", "/" and "="; "=" only at the end.
_BYTES_RE = re.compile(r":([A-Za-z0-9+/]*)(={0,2}):")
# Section 4.2.10: printable ASCII other than "%" and DQUOTE stands for itself.
_DISPLAY_RUN_RE = re.compile(r"[ !#$&-~]*")
_SP_RE = re.compile(r" *")
_OWS_RE = re.compile(r"[ \t]*")
_LOWER_HEX = frozenset("0123456789abcdef")
_NUMBER_START = frozenset("-0123456789")
# For the serialisers.
_KEY_FULL_RE = re.compile(_KEY + r"\Z")
_TOKEN_FULL_RE = re.compile(_TOKEN + r"\Z")


def _fail(message: str, pos: int) -> StructuredFieldError:
    return StructuredFieldError(f"{message} at offset {pos}")


def _too_large(message: str, pos: int, bound: str) -> TooLarge:
    return TooLarge(f"{message} at offset {pos}", bound)


# ---------------------------------------------------------------------------
# Parsing (RFC 9651 Section 4.2). Each function takes the input s, the index i
# to start at and n = len(s), and returns what it parsed with the index after it.


def _fast_value(raw: str) -> BareItem:
    """Convert a match of _FAST_BARE; its first character says which type it is."""
    c = raw[0]
    if c == '"':
        return raw[1:-1]
    if c in _NUMBER_START:
        return float(raw) if "." in raw else int(raw)
    if c == "?":
        return raw == "?1"
    return Token(raw)


def _parse_bare(s: str, i: int, n: int) -> tuple[BareItem, int]:
    """Parse a bare item (Section 4.2.3.1) at s[i]."""
    m = _BARE_RE.match(s, i)
    if m is not None:
        return _fast_value(m.group()), m.end()
    return _parse_bare_general(s, i, n)


def _parse_bare_general(s: str, i: int, n: int) -> tuple[BareItem, int]:
    """Parse a bare item that _BARE_RE did not match (Section 4.2.3.1)."""
    c = s[i] if i < n else ""
    if c == '"':
        return _parse_string(s, i, n)
    if c == ":":
        return _parse_byte_sequence(s, i)
    if c == "@":
        # Section 4.2.9: "Let output_date be the result of running Parsing an
        # Integer or Decimal ... If output_date is a Decimal, fail parsing."
        m = _INTEGER_RE.match(s, i + 1)
        if m is None:
            raise _fail("Date must be an Integer of at most 15 digits", i + 1)
        return Date(m.group()), m.end()
    if c == "%":
        return _parse_display_string(s, i, n)
    if c == "?":
        # Section 4.2.8, step 5: "No value has matched; fail parsing."
        raise _fail('Boolean must be "?1" or "?0"', i)
    if c in _NUMBER_START:
        # Section 4.2.4: a "-" not followed by a DIGIT, or a number beyond the
        # limits quoted above _INTEGER.
        raise _fail(
            "Integer (at most 15 digits) or Decimal (at most 12 digits, a dot, "
            "1 to 3 digits) expected",
            i,
        )
    if c:
        # Section 4.2.3.1, step 8: "Otherwise, the item type is unrecognized; fail
        # parsing."
        raise _fail(f"unexpected character {c!r}, an item was expected", i)
    raise _fail("unexpected end of input, an item was expected", i)


def _parse_string(s: str, i: int, n: int) -> tuple[str, int]:
    """Parse a String that may contain escapes (Section 4.2.5); s[i] is DQUOTE."""
    parts: list[str] = []
    i += 1
    run = _STRING_RUN_RE.match
    while True:
        m = run(s, i)
        j = m.end() if m is not None else i
        if j > i:
            parts.append(s[i:j])
        if j >= n:
            # Step 5: "Reached the end of input_string without finding a closing
            # DQUOTE; fail parsing."
            raise _fail("String is not terminated", j)
        c = s[j]
        if c == '"':
            return "".join(parts), j + 1
        if c != "\\":
            # Step 4.4: "Else, if char is in the range %x00-1f or %x7f-ff (i.e., it
            # is not in VCHAR or SP), fail parsing." (and anything beyond latin-1)
            raise _fail(f"invalid character {c!r} in String", j)
        # Step 4.2: a backslash: "If input_string is now empty, fail parsing." ...
        # "If next_char is not DQUOTE or "\", fail parsing."
        if j + 1 >= n:
            raise _fail("String is not terminated", j + 1)
        c = s[j + 1]
        if c not in '"\\':
            raise _fail(f"invalid escape {c!r} in String", j + 1)
        parts.append(c)
        i = j + 2


def _parse_byte_sequence(s: str, i: int) -> tuple[bytes, int]:
    """Parse a Byte Sequence (Section 4.2.7); s[i] is ":"."""
    # Steps 3-6: find the closing ":"; "If b64_content contains a character not
    # included in ALPHA, DIGIT, "+", "/", and "=", fail parsing." The pattern also
    # refuses "=" anywhere but at the end, which base64 decoding would reject.
    m = _BYTES_RE.match(s, i)
    if m is None:
        raise _fail("invalid Byte Sequence", i)
    body, pad = m.group(1), m.group(2)
    size = len(body)
    # Step 7: "Let binary_content be the result of base64-decoding [RFC4648]
    # b64_content, synthesizing padding if necessary ... If base64 decoding fails,
    # parsing fails." and "parsers SHOULD NOT fail when "=" padding is not
    # present". Padding that is present must be complete, and one character
    # beyond a multiple of four can never be valid base64.
    if (pad and (size + len(pad)) % 4) or size % 4 == 1:
        raise _fail("invalid base64 in Byte Sequence", i)
    # Non-strict decoding, as "parsers SHOULD NOT fail when non-zero pad bits are
    # present"; the pattern has already limited the alphabet.
    return binascii.a2b_base64(body + "=" * (-size % 4)), m.end()


def _parse_display_string(s: str, i: int, n: int) -> tuple[DisplayString, int]:
    """Parse a Display String (Section 4.2.10); s[i] is "%"."""
    # Step 1: "If the first two characters of input_string are not "%" followed by
    # DQUOTE, fail parsing."
    if i + 1 >= n or s[i + 1] != '"':
        raise _fail('Display String must start with %"', i)
    i += 2
    buffer = bytearray()
    run = _DISPLAY_RUN_RE.match
    while True:
        m = run(s, i)
        j = m.end() if m is not None else i
        if j > i:
            buffer += s[i:j].encode("ascii")
        if j >= n:
            # Step 5: "Reached the end of input_string without finding a closing
            # DQUOTE; fail parsing."
            raise _fail("Display String is not terminated", j)
        c = s[j]
        if c == '"':
            # Step 4.4.1: "Let unicode_sequence be the result of decoding byte_array
            # as a UTF-8 string ... Fail parsing if decoding fails."
            try:
                text = buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise _fail("Display String is not valid UTF-8", j) from None
            return DisplayString(text), j + 1
        if c != "%":
            # Step 4.2: "If char is in the range %x00-1f or %x7f-ff (i.e., it is not
            # in VCHAR or SP), fail parsing."
            raise _fail(f"invalid character {c!r} in Display String", j)
        # Step 4.3: "Let octet_hex be the result of consuming two characters from
        # input_string. If there are not two characters, fail parsing. If octet_hex
        # contains characters outside the range %x30-39 or %x61-66 (i.e., it is not
        # in 0-9 or lowercase a-f), fail parsing."
        if j + 2 >= n or s[j + 1] not in _LOWER_HEX or s[j + 2] not in _LOWER_HEX:
            raise _fail("invalid percent-encoding in Display String", j)
        buffer.append(int(s[j + 1 : j + 3], 16))
        i = j + 3


def _params_from_run(text: str, pos: int, reject_duplicates: bool) -> Params:
    """Convert ``text``, a run of _FAST_PARAM, into parameters (Section 4.2.3.2)."""
    params: Params = {}
    value: BareItem
    # The run is split on ";" and each part on its first "=". A String value holding
    # a ";" shows up as a part with an unterminated String; the run is then split
    # with _PARAM_PAIR_RE instead.
    strip = "; " in text
    for part in text[1:].split(";"):
        key, eq, raw = part.partition("=")
        if strip:
            # Step 2.3: "Discard any leading SP characters from input_string."
            key = key.lstrip(" ")
        # Step 2.5: "Let param_value be Boolean true." unless "=" follows.
        if not eq:
            value = True
        else:
            c = raw[0]
            if c == '"':
                if not raw.endswith('"', 1):
                    return _split_params(text, pos, reject_duplicates)
                value = raw[1:-1]
            elif c in _NUMBER_START:
                value = float(raw) if "." in raw else int(raw)
            elif c == "?":
                value = raw == "?1"
            else:
                value = Token(raw)
        if reject_duplicates and key in params:
            raise _fail(f"duplicate parameter {key!r}", pos)
        # Steps 2.7-2.8: "If parameters already contains a key param_key (comparing
        # character for character), overwrite its value with param_value."
        # Assigning to a dict key keeps its first position, as the ordered map of
        # the RFC does.
        params[key] = value
    return params


def _split_params(text: str, pos: int, reject_duplicates: bool) -> Params:
    """Convert a run of _FAST_PARAM that has a ";" inside a String value."""
    params: Params = {}
    for key, raw in _PARAM_PAIR_RE.findall(text):
        if reject_duplicates and key in params:
            raise _fail(f"duplicate parameter {key!r}", pos)
        params[key] = _fast_value(raw) if raw else True
    return params


def _parse_params(s: str, i: int, n: int, reject_duplicates: bool) -> tuple[Params, int]:
    """Parse Parameters (Section 4.2.3.2) starting at s[i] == ";"."""
    # The common case first: a run of parameters with fast values.
    m = _PARAM_RUN_RE.match(s, i)
    if m is None:
        return _more_params(s, i, n, reject_duplicates, {})
    params = _params_from_run(m.group(), i, reject_duplicates)
    i = m.end()
    if i < n and s[i] == ";":
        return _more_params(s, i, n, reject_duplicates, params)
    return params, i


def _more_params(
    s: str, i: int, n: int, reject_duplicates: bool, params: Params
) -> tuple[Params, int]:
    """Parse parameters one by one from s[i] on, into ``params``."""
    value: BareItem
    # Step 2.1: "If the first character of input_string is not ";", exit the loop."
    while i < n and s[i] == ";":
        # Steps 2.2-2.4: consume ";", discard leading SP, parse a key.
        m = _PARAM_KEY_RE.match(s, i)
        if m is None:
            raise _fail("parameter key expected", i + 1)
        key = m.group(1)
        i = m.end()
        # Step 2.6: "If the first character of input_string is "=": Consume the "="
        # character ... Let param_value be the result of running Parsing a Bare
        # Item".
        if i < n and s[i] == "=":
            value, i = _parse_bare(s, i + 1, n)
        else:
            value = True
        if reject_duplicates and key in params:
            raise _fail(f"duplicate parameter {key!r}", m.start(1))
        params[key] = value
    return params, i


def _parse_item(s: str, i: int, n: int, reject_duplicates: bool) -> tuple[Item, int]:
    """Parse an Item (Section 4.2.3): a bare item, then parameters."""
    value: BareItem
    m = _BARE_RE.match(s, i)
    if m is not None:
        value = _fast_value(m.group())
        i = m.end()
    else:
        value, i = _parse_bare_general(s, i, n)
    if i < n and s[i] == ";":
        params, i = _parse_params(s, i, n, reject_duplicates)
        return Item(value, params), i
    return Item(value), i


def _parse_inner_list(
    s: str, i: int, n: int, reject_duplicates: bool, max_items: int | None = None
) -> tuple[InnerList, int]:
    """Parse an Inner List (Section 4.2.1.2); s[i] is "(". More than ``max_items``
    items (when set) is an error, raised before the rest is parsed."""
    params: Params
    # The common case first: only Strings without escapes or parameters, such as
    # RFC 9421's covered components ("@method" "@path"). Up to the first ")", the
    # text must be printable ASCII without "\"; split on DQUOTE, it must have the
    # Strings at the odd positions and only SP around them. (An even number of
    # parts means that ")" was inside a String. '""' is an empty String or two
    # Strings with no SP between them: the general code tells which.)
    close = s.find(")", i)
    if close > i:
        text = s[i + 1 : close]
        if text.isascii() and text.isprintable() and "\\" not in text and '""' not in text:
            parts = text.split('"')
            if len(parts) & 1 and not "".join(parts[::2]).strip(" "):
                if max_items is not None and len(parts) // 2 > max_items:
                    raise _too_large(
                        f"more than {max_items} items in an Inner List", i, "max_items"
                    )
                items = list(map(Item, parts[1::2]))
                i = close + 1
                if i < n and s[i] == ";":
                    params, i = _parse_params(s, i, n, reject_duplicates)
                    return InnerList(items, params), i
                return InnerList(items), i
    # Step 1: "Consume the first character of input_string; if it is not "(",
    # fail parsing."
    i += 1
    items = []
    while True:
        # Step 3.1: "Discard any leading SP characters from input_string."
        if i < n and s[i] == " ":
            i = _SP_RE.match(s, i).end()  # type: ignore[union-attr]  # " *" always matches
        if i >= n:
            # Step 4: "The end of the Inner List was not found; fail parsing."
            raise _fail("Inner List is not terminated", i)
        if s[i] == ")":
            i += 1
            break
        if max_items is not None and len(items) >= max_items:
            # Parsing is linear, but an 8 KiB field of one-letter Tokens is
            # 4,000 Items: stop at the caller's bound (THREATS P1).
            raise _too_large(f"more than {max_items} items in an Inner List", i, "max_items")
        item, i = _parse_item(s, i, n, reject_duplicates)
        items.append(item)
        # Step 3.5: "If the first character of input_string is not SP or ")", fail
        # parsing." (so items are separated by SP only, never HTAB)
        if i >= n:
            raise _fail("Inner List is not terminated", i)
        c = s[i]
        if c not in " )":
            raise _fail(f"unexpected character {c!r} in Inner List", i)
    # Step 3.2.2: "Let parameters be the result of running Parsing Parameters"
    if i < n and s[i] == ";":
        params, i = _parse_params(s, i, n, reject_duplicates)
        return InnerList(items, params), i
    return InnerList(items), i


def _skip_sp(s: str, i: int, n: int) -> int:
    if i < n and s[i] == " ":
        return _SP_RE.match(s, i).end()  # type: ignore[union-attr]  # " *" always matches
    return i


def _check_end(s: str, i: int, n: int) -> None:
    # Section 4.2, steps 6-7: "Discard any leading SP characters from
    # input_string. If input_string is not empty, fail parsing."
    i = _skip_sp(s, i, n)
    if i != n:
        raise _fail(f"unexpected character {s[i]!r}", i)


def parse_item(value: str) -> Item:
    """Parse a field value that is an Item, such as ``1;a=?0``.

    Leading and trailing SP are discarded (RFC 9651 Section 4.2).

    Raises:
        StructuredFieldError: ``value`` is not a valid Item.
    """
    n = len(value)
    # Section 4.2, step 2: "Discard any leading SP characters from input_string."
    item, i = _parse_item(value, _skip_sp(value, 0, n), n, False)
    _check_end(value, i, n)
    return item


def parse_inner_list(value: str) -> InnerList:
    """Parse a field value that is exactly one Inner List, such as ``("a" "b");created=1``.

    This is the shape of RFC 9421's ``@signature-params`` value. Leading and
    trailing SP are discarded as for the field types of RFC 9651 Section 4.2.

    Raises:
        StructuredFieldError: ``value`` is not a valid Inner List.
    """
    n = len(value)
    i = _skip_sp(value, 0, n)
    if i >= n or value[i] != "(":
        raise _fail('Inner List must start with "("', i)
    inner, i = _parse_inner_list(value, i, n, False)
    _check_end(value, i, n)
    return inner


def parse_list(value: str, *, reject_duplicates: bool = False) -> list[Member]:
    """Parse a field value that is a List, such as ``a, (b c);q=1``.

    Several field lines must be joined with ``", "`` first. An empty (or all-SP)
    value is an empty List. With ``reject_duplicates``, a parameter key repeated
    on one Item or Inner List is an error instead of overwriting the earlier one.

    Raises:
        StructuredFieldError: ``value`` is not a valid List.
    """
    s = value
    n = len(s)
    members: list[Member] = []
    member: Member
    # Section 4.2, step 2: "Discard any leading SP characters from input_string."
    i = _skip_sp(s, 0, n)
    # Section 4.2.1, step 2: "While input_string is not empty:"
    while i < n:
        # Section 4.2.1.1: "If the first character of input_string is "(", return
        # the result of running Parsing an Inner List"; otherwise parse an Item.
        if s[i] == "(":
            member, i = _parse_inner_list(s, i, n, reject_duplicates)
        else:
            member, i = _parse_item(s, i, n, reject_duplicates)
        members.append(member)
        # Step 2.2: "Discard any leading OWS characters from input_string."
        if i < n and s[i] in " \t":
            i = _OWS_RE.match(s, i).end()  # type: ignore[union-attr]  # always matches
        # Step 2.3: "If input_string is empty, return members."
        if i >= n:
            return members
        # Step 2.4: "Consume the first character of input_string; if it is not ",",
        # fail parsing."
        if s[i] != ",":
            raise _fail(f"unexpected character {s[i]!r} after a List member", i)
        i += 1
        # Step 2.5: "Discard any leading OWS characters from input_string."
        if i < n and s[i] in " \t":
            i = _OWS_RE.match(s, i).end()  # type: ignore[union-attr]  # always matches
        # Step 2.6: "If input_string is empty, there is a trailing comma; fail parsing."
        if i >= n:
            raise _fail("trailing comma in List", i)
    # Step 3: "No structured data has been found; return members (which is empty)."
    return members


def parse_dictionary(
    value: str,
    *,
    reject_duplicates: bool = False,
    max_members: int | None = None,
    max_items: int | None = None,
) -> dict[str, Member]:
    """Parse a field value that is a Dictionary, such as ``sig1=("@method");created=1``.

    Several field lines must be joined with ``", "`` first. An empty (or all-SP)
    value is an empty Dictionary. A repeated key keeps its first position and
    takes the last value (RFC 9651 Section 4.2.2); with ``reject_duplicates`` a
    repeated key, or a parameter key repeated on one Item or Inner List, is an
    error instead. More than ``max_members`` keys, or an Inner List of more than
    ``max_items`` items (each when set), is an error too, raised as soon as it
    is seen: the caller's bounds also bound the work.

    Raises:
        StructuredFieldError: ``value`` is not a valid Dictionary.
    """
    s = value
    n = len(s)
    dictionary: dict[str, Member] = {}
    member: Member
    # Section 4.2, step 2: "Discard any leading SP characters from input_string."
    i = _SP_RE.match(s).end() if n and s[0] == " " else 0  # type: ignore[union-attr]
    # Section 4.2.2, step 2: "While input_string is not empty:"
    while i < n:
        m = _PLAIN_MEMBER_RE.match(s, i)
        if m is not None and (m.end() >= n or s[m.end()] != ";"):
            # The fast path, for Signature-Input-like members (unless a parameter
            # the pattern does not cover follows: then the general code below
            # parses the member from its start).
            key, inside, run = m.groups()
            strings = inside.split('"')[1::2]
            if max_items is not None and len(strings) > max_items:
                raise _too_large(
                    f"more than {max_items} items in an Inner List", m.start(2), "max_items"
                )
            member = InnerList(
                list(map(Item, strings)),
                _params_from_run(run, m.start(3), reject_duplicates) if run else {},
            )
            i = m.end()
        else:
            # Step 2.1: "Let this_key be the result of running Parsing a Key";
            # Section 4.2.3.3, step 1: "If the first character of input_string is
            # not lcalpha or "*", fail parsing."
            m = _KEY_RE.match(s, i)
            if m is None:
                raise _fail("Dictionary key expected", i)
            key = m.group()
            i = m.end()
            if i < n and s[i] == "=":
                # Step 2.2: "If the first character of input_string is "=": Consume
                # the first character of input_string. Let member be the result of
                # running Parsing an Item or Inner List".
                i += 1
                if i < n and s[i] == "(":
                    member, i = _parse_inner_list(s, i, n, reject_duplicates, max_items)
                else:
                    member, i = _parse_item(s, i, n, reject_duplicates)
            # Step 2.3: "Otherwise: Let value be Boolean true. Let parameters be the
            # result of running Parsing Parameters".
            elif i < n and s[i] == ";":
                params, i = _parse_params(s, i, n, reject_duplicates)
                member = Item(True, params)
            else:
                member = Item(True)
        if key in dictionary:
            if reject_duplicates:
                raise _fail(f"duplicate Dictionary key {key!r}", m.start())
        elif max_members is not None and len(dictionary) >= max_members:
            raise _too_large(
                f"more than {max_members} Dictionary members", m.start(), "max_members"
            )
        # Steps 2.4-2.5: "If dictionary already contains a key this_key (comparing
        # character for character), overwrite its value with member." Assigning to
        # a dict key keeps its first position, as the ordered map of the RFC does.
        dictionary[key] = member
        # Steps 2.6-2.10: discard OWS; done at the end of input; otherwise a ","
        # and OWS must follow, and then more input ("there is a trailing comma").
        if i >= n:
            return dictionary
        if s[i] in " \t":
            i = _OWS_RE.match(s, i).end()  # type: ignore[union-attr]  # always matches
            if i >= n:
                return dictionary
        if s[i] != ",":
            raise _fail(f"unexpected character {s[i]!r} after a Dictionary member", i)
        i += 1
        if i < n and s[i] in " \t":
            i = _OWS_RE.match(s, i).end()  # type: ignore[union-attr]  # always matches
        if i >= n:
            raise _fail("trailing comma in Dictionary", i)
    # Step 3: "No structured data has been found; return dictionary (which is empty)."
    return dictionary


# ---------------------------------------------------------------------------
# Serialising (RFC 9651 Section 4.1)

_THOUSANDTH = Decimal("0.001")
# Section 4.1.11, step 4.1: "%" (0x25), DQUOTE (0x22) and bytes outside
# printable ASCII are percent-encoded "with any alphabetic characters converted
# to lowercase"; every other byte stands for itself.
_DISPLAY_BYTE = tuple(
    f"%{b:02x}" if b in (0x22, 0x25) or b < 0x20 or b >= 0x7F else chr(b) for b in range(256)
)


def serialize_key(key: str) -> str:
    """Return ``key`` if it is a valid Dictionary or parameter key (Section 4.1.1.3).

    Raises:
        StructuredFieldError: ``key`` is not lcalpha or "*" followed by lcalpha,
            DIGIT, "_", "-", "." or "*".
    """
    # Section 4.1.1.3, steps 2-3: "If input_key contains characters not in lcalpha,
    # DIGIT, "_", "-", ".", or "*", fail serialization. If the first character of
    # input_key is not lcalpha or "*", fail serialization."
    if not isinstance(key, str):
        raise StructuredFieldError(f"key must be a str, not {type(key).__name__}")
    if _KEY_FULL_RE.match(key) is None:
        raise StructuredFieldError(f"invalid key {key!r}")
    return str(key)


def serialize_string(value: str) -> str:
    """Serialise an RFC 9651 String: ``"..."`` with ``\\`` and DQUOTE escaped (Section 4.1.6).

    Raises:
        StructuredFieldError: ``value`` has a character outside printable ASCII.
    """
    if not isinstance(value, str):
        raise StructuredFieldError(f"String must be a str, not {type(value).__name__}")
    # Section 4.1.6, step 2: "If input_string contains characters in the range
    # %x00-1f or %x7f-ff (i.e., not in VCHAR or SP), fail serialization."
    # For ASCII text, isprintable() is exactly %x20-7E.
    if not (value.isascii() and value.isprintable()):
        raise StructuredFieldError("String may only contain printable ASCII (%x20-7E)")
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def _serialize_integer(value: int) -> str:
    # Section 4.1.4, step 1: "If input_integer is not an integer in the range of
    # -999,999,999,999,999 to 999,999,999,999,999 inclusive, fail serialization."
    if not -999_999_999_999_999 <= value <= 999_999_999_999_999:
        raise StructuredFieldError(f"Integer {value} is out of range (at most 15 digits)")
    return int.__repr__(value)


def _serialize_decimal(value: float) -> str:
    # Python's repr is the shortest decimal string that reads back as the same
    # float, and that string is what the rounding below applies to: 0.0025 is
    # rounded as the decimal 0.0025 (to 0.002), not as the binary double just
    # above it (which would round to 0.003). The httpwg tests expect this.
    text = float.__repr__(value)
    if "e" not in text and "n" not in text:  # not exponent form, inf or nan
        whole, _, fraction = text.partition(".")
        if len(fraction) <= 3:
            # Nothing to round. Section 4.1.5, step 3: "If input_decimal has more
            # than 12 significant digits to the left of the decimal point after
            # rounding, fail serialization."
            digits = whole.lstrip("-")
            if len(digits) > 12:
                raise StructuredFieldError(f"Decimal {text} has more than 12 integer digits")
            # Step 5: "If input_decimal is less than (but not equal to) 0, append
            # "-" to output." (so -0.0 is "0.0")
            sign = "-" if value < 0 else ""
            # Step 9: only the significant fractional digits; repr has no trailing
            # zeros beyond the single "0" of an integral value.
            return f"{sign}{digits}.{fraction}"
    if not math.isfinite(value):
        raise StructuredFieldError(f"Decimal {text} is not a finite number")
    if abs(value) >= 1e13:
        raise StructuredFieldError(f"Decimal {text} has more than 12 integer digits")
    # Section 4.1.5, step 2: "If input_decimal has more than three significant
    # digits to the right of the decimal point, round it to three decimal places,
    # rounding the final digit to the nearest value, or to the even value if it is
    # equidistant."
    rounded = Decimal(text).quantize(_THOUSANDTH, rounding=ROUND_HALF_EVEN)
    if abs(rounded) >= 1_000_000_000_000:
        raise StructuredFieldError(f"Decimal {text} has more than 12 integer digits")
    whole, _, fraction = f"{abs(rounded):f}".partition(".")
    sign = "-" if rounded < 0 else ""
    # Steps 8-9: "If input_decimal's fractional component is zero, append "0" to
    # output. Otherwise, append the significant digits".
    return f"{sign}{whole}.{fraction.rstrip('0') or '0'}"


def _serialize_token(value: str) -> str:
    # Section 4.1.7, step 2: "If the first character of input_token is not ALPHA or
    # "*", or the remaining portion contains a character not in tchar, ":", or "/",
    # fail serialization."
    if _TOKEN_FULL_RE.match(value) is None:
        raise StructuredFieldError(f"invalid Token {value!r}")
    return str.__str__(value)


def _serialize_display_string(value: str) -> str:
    # Section 4.1.11, step 2: "Let byte_array be the result of applying UTF-8
    # encoding ... If encoding fails, fail serialization." (lone surrogates)
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise StructuredFieldError("Display String is not encodable as UTF-8") from None
    return '%"' + "".join(map(_DISPLAY_BYTE.__getitem__, data)) + '"'


def _serialize_byte_sequence(value: bytes) -> str:
    # Section 4.1.8: ":" base64 ":"; "The encoded data is required to be padded
    # with "=", as per [RFC4648], Section 3.2."
    return ":" + binascii.b2a_base64(value, newline=False).decode("ascii") + ":"


def serialize_bare_item(value: BareItem) -> str:
    """Serialise a bare value (Section 4.1.3.1) by its Python type.

    ``bool`` is a Boolean, :class:`Date` a Date, other ``int`` an Integer,
    ``float`` a Decimal, :class:`Token` a Token, :class:`DisplayString` a Display
    String, other ``str`` a String and ``bytes`` a Byte Sequence.

    Raises:
        StructuredFieldError: the value has another type or is out of range.
    """
    kind = type(value)
    # Exact types first (the common case), then subclasses in an order where
    # bool and Date come before int, and Token and DisplayString before str.
    if kind is str:
        return serialize_string(value)  # type: ignore[arg-type]
    if kind is Token:
        return _serialize_token(value)  # type: ignore[arg-type]
    if kind is int:
        return _serialize_integer(value)  # type: ignore[arg-type]
    if kind is bool:
        return "?1" if value else "?0"
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, Date):
        # Section 4.1.10: "@" followed by the Integer serialisation.
        return "@" + _serialize_integer(value)
    if isinstance(value, int):
        return _serialize_integer(value)
    if isinstance(value, float):
        return _serialize_decimal(value)
    if isinstance(value, Token):
        return _serialize_token(value)
    if isinstance(value, DisplayString):
        return _serialize_display_string(value)
    if isinstance(value, str):
        return serialize_string(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _serialize_byte_sequence(bytes(value))
    # Section 4.1.3.1, step 9: "Otherwise, fail serialization."
    raise StructuredFieldError(f"cannot serialise a {kind.__name__} as a bare item")


def serialize_params(params: Params) -> str:
    """Serialise parameters as ``;key=value`` pairs in order (Section 4.1.1.2).

    Raises:
        StructuredFieldError: a key or value cannot be serialised.
    """
    if not params:
        return ""
    out: list[str] = []
    for key, value in params.items():
        out.append(";")
        out.append(serialize_key(key))
        # Section 4.1.1.2, step 2.3: "If param_value is not Boolean true: Append
        # "=" to output. Append the result of running Serializing a bare Item"
        if value is not True:
            out.append("=")
            out.append(serialize_bare_item(value))
    return "".join(out)


def serialize_item(item: Item) -> str:
    """Serialise an :class:`Item`: bare value then parameters (Section 4.1.3).

    Raises:
        StructuredFieldError: ``item`` is not an Item or cannot be serialised.
    """
    if not isinstance(item, Item):
        raise StructuredFieldError(f"expected an Item, not {type(item).__name__}")
    if item.params:
        return serialize_bare_item(item.value) + serialize_params(item.params)
    return serialize_bare_item(item.value)


def serialize_inner_list(inner: InnerList) -> str:
    """Serialise an :class:`InnerList`: ``(a b);params`` (Section 4.1.1.1).

    Raises:
        StructuredFieldError: ``inner`` is not an InnerList or cannot be serialised.
    """
    if not isinstance(inner, InnerList):
        raise StructuredFieldError(f"expected an InnerList, not {type(inner).__name__}")
    # Section 4.1.1.1: "(", the items separated by a single SP, ")", then the
    # parameters.
    body = " ".join([serialize_item(item) for item in inner.items])
    return f"({body}){serialize_params(inner.params)}"


def serialize_member(member: Member) -> str:
    """Serialise a List or Dictionary member: an :class:`Item` or :class:`InnerList`.

    Raises:
        StructuredFieldError: ``member`` is neither, or cannot be serialised.
    """
    if isinstance(member, InnerList):
        return serialize_inner_list(member)
    return serialize_item(member)


def serialize_list(members: list[Member]) -> str:
    """Serialise a List: members separated by ``", "`` (Section 4.1.1).

    An empty List serialises to ``""``: RFC 9651 Section 4.1 says such a field
    is not sent at all, which the caller decides.

    Raises:
        StructuredFieldError: a member cannot be serialised.
    """
    return ", ".join([serialize_member(member) for member in members])


def serialize_dictionary(members: dict[str, Member]) -> str:
    """Serialise a Dictionary: ``key=member`` separated by ``", "`` (Section 4.1.2).

    A member that is an Item whose value is ``True`` is written as the key and
    its parameters alone. An empty Dictionary serialises to ``""`` (the field is
    then not sent, RFC 9651 Section 4.1).

    Raises:
        StructuredFieldError: a key or member cannot be serialised.
    """
    out: list[str] = []
    for key, member in members.items():
        key_text = serialize_key(key)
        # Section 4.1.2, step 2.2: "If member_value is Boolean true: Append the
        # result of running Serializing Parameters with parameters to output."
        if isinstance(member, Item) and member.value is True:
            out.append(key_text + serialize_params(member.params))
        else:
            out.append(f"{key_text}={serialize_member(member)}")
    return ", ".join(out)
