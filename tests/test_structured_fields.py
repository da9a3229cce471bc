"""RFC 9651 Structured Fields: the httpwg test suite, plus duplicates, hostile input and properties.

The suite lives in tests/vectors/structured-field-tests (httpwg/structured-field-tests,
commit in its SOURCE file). Its JSON form: an Item is ``[bare, params]``, an Inner List
``[[item, ...], params]``, params and Dictionaries are lists of ``[key, value]`` pairs,
and Tokens, Byte Sequences (base32), Dates and Display Strings are
``{"__type": ..., "value": ...}``. Several ``raw`` field lines are joined with ", ";
without ``canonical``, serialising the result must give the raw value back.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmacguard._structured_fields import (
    BareItem,
    Date,
    DisplayString,
    InnerList,
    Item,
    Member,
    Params,
    StructuredFieldError,
    Token,
    TooLarge,
    parse_dictionary,
    parse_inner_list,
    parse_item,
    parse_list,
    serialize_bare_item,
    serialize_dictionary,
    serialize_inner_list,
    serialize_item,
    serialize_key,
    serialize_list,
    serialize_member,
    serialize_params,
    serialize_string,
)

SUITE = Path(__file__).parent / "vectors" / "structured-field-tests"

PARSERS: dict[str, Callable[[str], Any]] = {
    "item": parse_item,
    "list": parse_list,
    "dictionary": parse_dictionary,
}
SERIALIZERS: dict[str, Callable[[Any], str]] = {
    "item": serialize_item,
    "list": serialize_list,
    "dictionary": serialize_dictionary,
}


def _load(folder: Path) -> list[Any]:
    cases = []
    for path in sorted(folder.glob("*.json")):
        stem = path.relative_to(SUITE).with_suffix("").as_posix()
        for case in json.loads(path.read_text(encoding="utf-8")):
            cases.append(pytest.param(case, id=f"{stem}::{case['name']}"))
    return cases


PARSE_CASES = _load(SUITE)
SERIALISE_CASES = _load(SUITE / "serialisation-tests")


# --- the suite's JSON form to our values ------------------------------------


def _bare(value: Any) -> BareItem:
    if isinstance(value, dict):
        kind, inner = value["__type"], value["value"]
        if kind == "token":
            return Token(inner)
        if kind == "binary":
            return base64.b32decode(inner)
        if kind == "date":
            return Date(inner)
        if kind == "displaystring":
            return DisplayString(inner)
        raise AssertionError(f"unknown __type {kind!r}")
    assert isinstance(value, (int, float, str, bool))
    return value


def _params(pairs: list[Any]) -> Params:
    return {key: _bare(value) for key, value in pairs}


def _member(member: list[Any]) -> Member:
    value, params = member
    if isinstance(value, list):
        return InnerList([Item(_bare(v), _params(p)) for v, p in value], _params(params))
    return Item(_bare(value), _params(params))


def _expected(case: dict[str, Any]) -> Any:
    kind, expected = case["header_type"], case["expected"]
    if kind == "item":
        return _member(expected)
    if kind == "list":
        return [_member(m) for m in expected]
    return {key: _member(m) for key, m in expected}


# --- a type-exact view, independent of Item.__eq__ --------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Item):
        return ("item", _plain_bare(value.value), _plain_params(value.params))
    if isinstance(value, InnerList):
        return ("inner", [_plain(i) for i in value.items], _plain_params(value.params))
    if isinstance(value, dict):
        return ("dict", [(k, _plain(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_plain(m) for m in value])
    raise AssertionError(f"unexpected {value!r}")


def _plain_bare(value: object) -> tuple[str, object]:
    return (type(value).__name__, value)


def _plain_params(params: Params) -> list[tuple[str, tuple[str, object]]]:
    return [(k, _plain_bare(v)) for k, v in params.items()]


# --- the httpwg suite --------------------------------------------------------


def test_suite_is_present() -> None:
    """The copied httpwg suite is all there: 20 parsing and 4 serialisation files."""
    assert len(list(SUITE.glob("*.json"))) == 20
    assert len(list((SUITE / "serialisation-tests").glob("*.json"))) == 4
    assert len(PARSE_CASES) == 1591
    assert len(SERIALISE_CASES) == 544
    assert (SUITE / "LICENSE.md").is_file()
    assert (SUITE / "SOURCE").read_text().startswith("commit ")


@pytest.mark.parametrize("case", PARSE_CASES)
def test_httpwg_parse(case: dict[str, Any]) -> None:
    """Each httpwg case parses to its value (type-exact) and serialises canonically, or fails."""
    raw = ", ".join(case["raw"])
    kind = case["header_type"]
    if case.get("must_fail"):
        with pytest.raises(StructuredFieldError):
            PARSERS[kind](raw)
        return
    try:
        result = PARSERS[kind](raw)
    except StructuredFieldError:
        if case.get("can_fail"):
            return
        raise
    expected = _expected(case)
    assert _plain(result) == _plain(expected)
    assert result == expected
    # "canonical": [] means the field is not sent at all; we serialise that as "".
    canonical = case.get("canonical", [raw])
    want = canonical[0] if canonical else ""
    assert SERIALIZERS[kind](result) == want
    assert SERIALIZERS[kind](expected) == want


@pytest.mark.parametrize("case", SERIALISE_CASES)
def test_httpwg_serialise(case: dict[str, Any]) -> None:
    """Each httpwg serialisation-only case serialises to its canonical form, or is refused."""
    value = _expected(case)
    serialize = SERIALIZERS[case["header_type"]]
    if case.get("must_fail"):
        with pytest.raises(StructuredFieldError):
            serialize(value)
    else:
        assert serialize(value) == case["canonical"][0]


# --- duplicates --------------------------------------------------------------


def test_duplicates_last_value_wins_at_first_position_by_default() -> None:
    """By default a repeated key keeps its first position and takes the last value (4.2.2)."""
    assert list(parse_dictionary("a=1, b=2, a=3").items()) == [("a", Item(3)), ("b", Item(2))]
    assert parse_item("x;a=1;b=2;a=3").params == {"a": 3, "b": 2}
    assert list(parse_item("x;a=1;b=2;a=3").params) == ["a", "b"]


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        pytest.param(parse_dictionary, "a=1, b=2, a=3", id="dict-key"),
        pytest.param(parse_dictionary, "a, a", id="dict-key-bare-true"),
        pytest.param(parse_dictionary, 'sig=("a");k=1, sig=("b");k=2', id="dict-key-inner-list"),
        pytest.param(parse_dictionary, "a=1;p;p=2", id="dict-item-params"),
        pytest.param(parse_dictionary, "a;p=1;p=2", id="dict-bare-true-params"),
        pytest.param(parse_dictionary, 'a=("x" "y");k=1;k=2', id="dict-inner-list-params"),
        pytest.param(parse_dictionary, 'a=("x";k=1;k=2)', id="dict-params-of-item-in-inner-list"),
        pytest.param(parse_dictionary, 'a=(x);k=";";k=1', id="params-with-semicolon-in-string"),
        pytest.param(parse_dictionary, "a=1;k=1;x=@1;k=2", id="params-fast-then-general"),
        pytest.param(parse_dictionary, "a=1;x=@1;k=1;k=2", id="params-general-only"),
        pytest.param(parse_list, "x;k=1;k=?0", id="list-item-params"),
        pytest.param(parse_list, "(x y);k=1;k=2", id="list-inner-list-params"),
        pytest.param(parse_list, '("x" "y");k=1;k=2', id="list-plain-inner-list-params"),
        pytest.param(parse_list, "(x y;k=1;k=2)", id="list-params-of-item-in-inner-list"),
        pytest.param(parse_list, "(x;k=:AA==:;k=1)", id="list-inner-item-general-params"),
    ],
)
def test_reject_duplicates(parse: Callable[..., Any], value: str) -> None:
    """reject_duplicates=True refuses a repeated Dictionary or parameter key anywhere."""
    parse(value)
    with pytest.raises(StructuredFieldError, match="duplicate"):
        parse(value, reject_duplicates=True)


def test_reject_duplicates_accepts_distinct_keys() -> None:
    """reject_duplicates=True parses a value without repeats exactly as the default does."""
    value = 'sig1=("@method" "x";k=1);created=1;keyid="a";p=@5, sig2=:AA==:;k=?1'
    assert parse_dictionary(value, reject_duplicates=True) == parse_dictionary(value)


# --- inner lists on their own ------------------------------------------------


def test_parse_inner_list() -> None:
    """parse_inner_list reads one Inner List with parameters, as in RFC 9421 signature params."""
    inner = parse_inner_list('  ("@method" "x";req);created=1;keyid="k"  ')
    assert inner == InnerList(
        [Item("@method"), Item("x", {"req": True})], {"created": 1, "keyid": "k"}
    )
    assert serialize_inner_list(inner) == '("@method" "x";req);created=1;keyid="k"'
    assert parse_inner_list("()") == InnerList([])


@pytest.mark.parametrize(
    "value",
    ['"a"', "", "   ", '("a") x', '("a"), ("b")', '("a"', '("a""b")', "(\t)", '("a"\t"b")'],
)
def test_parse_inner_list_rejects(value: str) -> None:
    """parse_inner_list refuses anything but exactly one Inner List."""
    with pytest.raises(StructuredFieldError):
        parse_inner_list(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('("a" "b")', ["a", "b"]),
        ('(   "a"    "b"   )', ["a", "b"]),
        ('("a" "")', ["a", ""]),
        ('("" "")', ["", ""]),
        ('("a)" "b")', ["a)", "b"]),
        ('(")" ")")', [")", ")"]),
        ('("a\\"b" "c")', ['a"b', "c"]),
        ('("a(" "b" x)', ["a(", "b", Token("x")]),
    ],
)
def test_inner_list_string_edge_cases(value: str, expected: list[object]) -> None:
    """Inner Lists of Strings parse the same on the fast paths and in the general code."""
    want = [Item(v) for v in expected]  # type: ignore[arg-type]
    assert parse_inner_list(value).items == want
    assert parse_list(value)[0] == InnerList(want)
    assert parse_dictionary("k=" + value)["k"] == InnerList(want)
    assert parse_dictionary("k=" + value + ";p=1")["k"] == InnerList(want, {"p": 1})


@pytest.mark.parametrize(
    "value",
    ['("a""b")', '("a" "b"x)', '("a" "b";)', '("a" "b"', '("a" "\\x")', '("a"\t"b")', '("é")'],
)
def test_inner_list_string_errors(value: str) -> None:
    """Malformed Inner Lists of Strings are refused in every context."""
    for parse in (parse_inner_list, parse_list, lambda v: parse_dictionary("k=" + v)):
        with pytest.raises(StructuredFieldError):
            parse(value)


def test_parameters_with_semicolons_inside_strings() -> None:
    """A ";" or "=" inside a String parameter value does not split the parameter."""
    value = 'k=("a");x=";";y="=;=";z=1, m=2;a=";b=1"'
    assert parse_dictionary(value) == {
        "k": InnerList([Item("a")], {"x": ";", "y": "=;=", "z": 1}),
        "m": Item(2, {"a": ";b=1"}),
    }
    assert serialize_dictionary(parse_dictionary(value)) == value


def test_parameters_of_every_type() -> None:
    """Parameters take every bare item type, in fast and general form, in order."""
    value = 'x;a=1;b=-1.5;c="s";d=tok;e=?0;f;g=:AQI=:;h=@-5;i=%"%c3%bc";j="q\\"";k=*t/x:y'
    item = parse_item(value)
    assert _plain_params(item.params) == _plain_params(
        {
            "a": 1,
            "b": -1.5,
            "c": "s",
            "d": Token("tok"),
            "e": False,
            "f": True,
            "g": b"\x01\x02",
            "h": Date(-5),
            "i": DisplayString("ü"),
            "j": 'q"',
            "k": Token("*t/x:y"),
        }
    )
    assert serialize_item(item) == value


# --- hostile input -----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["\x00", "\u0100", "\ud800", "a\ud800", '"\ud800"', "a=\x00", "(\x7f)", "é", "a;é", "\x85"],
)
def test_garbage_raises_structured_field_error(value: str) -> None:
    """Characters outside the grammar (NUL, non-latin-1, lone surrogates) raise the error."""
    for parse in (parse_item, parse_list, parse_dictionary, parse_inner_list):
        with pytest.raises(StructuredFieldError):
            parse(value)


PATHOLOGICAL = {
    "open-parens": "(" * 10_000,
    "backslashes": "\\\\" * 10_000,
    "escaped-string": '"' + "\\\\" * 50_000 + '"',
    "unterminated-string": '"' + "a" * 16_000,
    "a;b": "a;b" * 5_000,
    "many-params": "a" + ";b" * 100_000,
    "many-params-with-values": "a" + ";b=1" * 100_000,
    "many-spaced-params": "a" + "; b" * 50_000,
    "tab-in-inner-list": "(a\tb)",
    "tabs": "\t" * 100_000,
    "spaces-then-garbage": " " * 100_000 + "!",
    "paren-spaces": "(" + " " * 100_000 + "x",
    "paren-strings-then-garbage": "(" + '"a" ' * 30_000 + "x",
    "strings-without-sp": "(" + '"a"' * 30_000 + ")",
    "plain-member-then-garbage": "k=(" + '"a" ' * 30_000 + ")" + ";p=1" * 10_000 + "!",
    "members": "a=1, " * 20_000 + "a",
    "inner-lists": "(a b), " * 20_000 + "()",
    "digits": "1" * 100_000,
    "dashes": "-" * 100_000,
    "decimal-dots": "1." * 50_000,
    "unterminated-bytes": ":" + "A" * 100_000,
    "bytes-equals": ":" + "=" * 100_000 + ":",
    "display-percents": '%"' + "%" * 100_000,
    "display-escapes": '%"' + "%c3%bc" * 20_000 + '"',
    "params-then-bad-value": "a" + ";k=1" * 50_000 + ";k=" + '"' + "x" * 50_000,
    "keys": "a" * 100_000 + "=1",
    "equals": "=" * 100_000,
    "commas": "," * 100_000,
    "semicolons": "a" + ";" * 100_000,
    "quotes": '"' * 100_001,
    "nested-quote-parens": '("' + ')"' * 50_000 + ")",
}


@pytest.mark.parametrize("value", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_pathological_input_is_fast_and_raises_only_structured_field_error(value: str) -> None:
    """Large hostile inputs parse or raise StructuredFieldError, and in linear time."""
    for parse in (parse_item, parse_list, parse_dictionary, parse_inner_list):
        for reject in (False, True):
            started = time.perf_counter()
            try:
                if parse is parse_list or parse is parse_dictionary:
                    parse(value, reject_duplicates=reject)
                else:
                    parse(value)
            except StructuredFieldError:
                pass
            # Linear work on 100 KB takes milliseconds; quadratic work takes minutes.
            assert time.perf_counter() - started < 2.0


# --- serialisation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (-0, "0"),
        (999_999_999_999_999, "999999999999999"),
        (-999_999_999_999_999, "-999999999999999"),
        (1.0, "1.0"),
        (-0.0, "0.0"),
        (1.5, "1.5"),
        (0.0001, "0.0"),
        (-0.0001, "0.0"),
        (0.0005, "0.0"),
        (0.0015, "0.002"),
        (2.5e-5, "0.0"),
        (1.23456, "1.235"),
        (999_999_999_999.999, "999999999999.999"),
        (123.4, "123.4"),
        (True, "?1"),
        (False, "?0"),
        ("", '""'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        (Token("*foo/bar:baz"), "*foo/bar:baz"),
        (b"", "::"),
        (b"hello", ":aGVsbG8=:"),
        (Date(0), "@0"),
        (Date(-1), "@-1"),
        (DisplayString('ü % " x'), '%"%c3%bc %25 %22 x"'),
        (DisplayString("\t\x7f"), '%"%09%7f"'),
    ],
)
def test_serialize_bare_item(value: BareItem, text: str) -> None:
    """Bare values serialise as RFC 9651 Section 4.1 says, by their exact Python type."""
    assert serialize_bare_item(value) == text


@pytest.mark.parametrize(
    "value",
    [
        1_000_000_000_000_000,
        -1_000_000_000_000_000,
        1e12,
        999_999_999_999.9996,
        -1e300,
        float("nan"),
        float("inf"),
        "é",
        "\x7f",
        "a\nb",
        Token(""),
        Token("1a"),
        Token("a b"),
        Token("é"),
        DisplayString("\ud800"),
        Date(10**15),
        None,
        [1],
        object(),
    ],
)
def test_serialize_bare_item_refuses(value: Any) -> None:
    """Values RFC 9651 cannot express raise StructuredFieldError."""
    with pytest.raises(StructuredFieldError):
        serialize_bare_item(value)


@pytest.mark.parametrize("key", ["", "A", "1a", "a b", "a=", "é", "_a"])
def test_serialize_key_refuses(key: str) -> None:
    """Invalid keys are refused by serialize_key and wherever a key is serialised."""
    with pytest.raises(StructuredFieldError):
        serialize_key(key)
    with pytest.raises(StructuredFieldError):
        serialize_params({key: 1})
    with pytest.raises(StructuredFieldError):
        serialize_dictionary({key: Item(1)})


def test_serialize_helpers() -> None:
    """The small serialisers produce the canonical forms the signer relies on."""
    assert serialize_key("*a-b_c.d9") == "*a-b_c.d9"
    assert serialize_string("@method") == '"@method"'
    assert serialize_params({"a": True, "b": False, "c": Token("t")}) == ";a;b=?0;c=t"
    assert serialize_member(InnerList([Item(1), Item(Token("x"))], {"q": 0.5})) == "(1 x);q=0.5"
    assert serialize_member(Item("s", {"p": 1})) == '"s";p=1'
    assert serialize_list([]) == ""
    assert serialize_dictionary({}) == ""
    assert serialize_dictionary({"a": Item(True, {"x": 1}), "b": Item(False)}) == "a;x=1, b=?0"


@pytest.mark.parametrize(
    ("function", "value"),
    [
        (serialize_item, InnerList([])),
        (serialize_item, "a"),
        (serialize_inner_list, Item(1)),
        (serialize_member, 1),
        (serialize_list, [1]),
        (serialize_dictionary, {"a": 1}),
        (serialize_inner_list, InnerList([InnerList([])])),  # type: ignore[list-item]
    ],
)
def test_serializers_refuse_wrong_types(function: Callable[[Any], str], value: Any) -> None:
    """Serialisers raise StructuredFieldError, not AttributeError, for the wrong kind of value."""
    with pytest.raises(StructuredFieldError):
        function(value)


# --- the value types ---------------------------------------------------------


def test_equality_is_type_exact() -> None:
    """Equality tells Token from str, bool/Date/float from int, and minds param order."""
    assert Item("a") == Item("a")
    assert Item(Token("a")) != Item("a")
    assert Item(True) != Item(1)
    assert Item(Date(1)) != Item(1)
    assert Item(1.0) != Item(1)
    assert Item(DisplayString("a")) != Item("a")
    assert Item(1, {"a": True}) != Item(1, {"a": 1})
    assert Item(1, {"a": 1, "b": 2}) != Item(1, {"b": 2, "a": 1})
    assert InnerList([Item(1)], {"p": Token("x")}) == InnerList([Item(1)], {"p": Token("x")})
    assert InnerList([Item(1)]) != InnerList([Item(True)])
    assert InnerList([]) != Item(1)
    assert Item(1) != 1


def test_reprs_name_the_types() -> None:
    """The reprs show the RFC 9651 type of each value."""
    assert repr(Token("a")) == "Token('a')"
    assert repr(Date(5)) == "Date(5)"
    assert repr(DisplayString("ü")) == "DisplayString('ü')"
    assert repr(Item(Token("a"), {"q": 1})) == "Item(Token('a'), {'q': 1})"
    assert repr(InnerList([Item(1)])) == "InnerList([Item(1)])"
    assert repr(InnerList([], {"a": True})) == "InnerList([], {'a': True})"


def test_values_are_unhashable() -> None:
    """Items and Inner Lists hold a dict of parameters, so they are not hashable."""
    with pytest.raises(TypeError):
        hash(Item(1))
    with pytest.raises(TypeError):
        hash(InnerList([]))


# --- properties --------------------------------------------------------------

_keys = st.from_regex(r"[a-z*][a-z0-9_.*-]{0,6}", fullmatch=True)
_tokens = st.from_regex(r"[A-Za-z*][!#$%&'*+.^_`|~0-9A-Za-z:/-]{0,8}", fullmatch=True).map(Token)
_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
_bare_items: st.SearchStrategy[BareItem] = st.one_of(
    st.integers(-999_999_999_999_999, 999_999_999_999_999),
    st.integers(-999_999_999_999_999, 999_999_999_999_999).map(lambda k: k / 1000),
    _printable,
    _tokens,
    st.binary(max_size=12),
    st.booleans(),
    st.integers(-999_999_999_999_999, 999_999_999_999_999).map(Date),
    st.text(st.characters(codec="utf-8"), max_size=8).map(DisplayString),
)
_params_st = st.dictionaries(_keys, _bare_items, max_size=4)
_items = st.builds(Item, _bare_items, _params_st)
# Strings only: the shape of RFC 9421's covered components, which has fast paths.
_plain_items = st.builds(Item, _printable)
_inner_lists = st.builds(
    InnerList, st.lists(st.one_of(_items, _plain_items), max_size=5), _params_st
) | st.builds(InnerList, st.lists(_plain_items, max_size=6), _params_st)
_members: st.SearchStrategy[Member] = st.one_of(_items, _inner_lists)
_lists = st.lists(_members, max_size=5)
_dicts = st.dictionaries(_keys, _members, max_size=5)


@settings(deadline=None)
@given(_items)
def test_item_round_trip(item: Item) -> None:
    """Any valid Item serialises, parses back to itself, and re-serialises identically."""
    text = serialize_item(item)
    parsed = parse_item(text)
    assert _plain(parsed) == _plain(item)
    assert serialize_item(parsed) == text


@settings(deadline=None)
@given(_inner_lists)
def test_inner_list_round_trip(inner: InnerList) -> None:
    """Any valid Inner List serialises, parses back to itself, and re-serialises identically."""
    text = serialize_inner_list(inner)
    parsed = parse_inner_list(text)
    assert _plain(parsed) == _plain(inner)
    assert serialize_inner_list(parsed) == text
    assert _plain(parse_list(text)) == _plain([inner])


@settings(deadline=None)
@given(_lists)
def test_list_round_trip(members: list[Member]) -> None:
    """Any valid List serialises, parses back to itself, and re-serialises identically."""
    text = serialize_list(members)
    parsed = parse_list(text)
    assert _plain(parsed) == _plain(members)
    assert serialize_list(parsed) == text


@settings(deadline=None)
@given(_dicts)
def test_dictionary_round_trip(members: dict[str, Member]) -> None:
    """Any valid Dictionary serialises, parses back to itself, and re-serialises identically."""
    text = serialize_dictionary(members)
    parsed = parse_dictionary(text)
    assert _plain(parsed) == _plain(members)
    assert serialize_dictionary(parsed) == text


@settings(deadline=None)
@given(st.floats(min_value=-999_999_999_999.0, max_value=999_999_999_999.0))
def test_decimal_serialisation_is_idempotent(value: float) -> None:
    """Any float in range serialises to a Decimal that parses and re-serialises to the same text."""
    text = serialize_bare_item(value)
    parsed = parse_item(text).value
    assert type(parsed) is float
    assert abs(parsed - value) <= 0.0005 + abs(value) * 1e-15
    assert serialize_bare_item(parsed) == text


# Serialisations with the optional whitespace RFC 9651 allows: SP after ";",
# SP inside the parentheses of an Inner List, OWS around the commas of a
# Dictionary, SP before and after the whole value.


def _noisy_params(params: Params, draw: st.DrawFn) -> str:
    return "".join(
        ";" + " " * draw(st.integers(0, 2)) + serialize_params({k: v})[1:]
        for k, v in params.items()
    )


def _noisy_member(member: Member, draw: st.DrawFn) -> str:
    if isinstance(member, Item):
        return serialize_bare_item(member.value) + _noisy_params(member.params, draw)
    pad = [" " * draw(st.integers(0, 2)) for _ in range(2)]
    body = "".join(
        " " * draw(st.integers(1, 3)) + _noisy_member(item, draw) for item in member.items
    )
    return f"({pad[0]}{body[1:] if body else ''}{pad[1]}){_noisy_params(member.params, draw)}"


@st.composite
def _noisy_dictionaries(draw: st.DrawFn) -> tuple[dict[str, Member], str]:
    members = draw(_dicts)
    ows = st.sampled_from(["", " ", "\t", "  ", " \t "])
    parts = []
    for key, member in members.items():
        if isinstance(member, Item) and member.value is True:
            parts.append(key + _noisy_params(member.params, draw))
        else:
            parts.append(f"{key}={_noisy_member(member, draw)}")
    text = "".join(draw(ows) + "," + draw(ows) + part for part in parts)[1:].lstrip(" \t,")
    return members, " " * draw(st.integers(0, 2)) + text + draw(ows).replace("\t", " ")


@settings(deadline=None)
@given(_noisy_dictionaries())
def test_whitespace_variants_parse_to_the_same_value(case: tuple[dict[str, Member], str]) -> None:
    """OWS around commas and SP inside Inner Lists and after ";" change nothing."""
    members, text = case
    assert _plain(parse_dictionary(text)) == _plain(members)


@settings(deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_arbitrary_text_raises_only_structured_field_error(text: str) -> None:
    """Every parse function raises nothing but StructuredFieldError, whatever the text."""
    for parse in (parse_item, parse_list, parse_dictionary, parse_inner_list):
        with contextlib.suppress(StructuredFieldError):
            parse(text)


_REPARSE: dict[Callable[..., Any], Callable[[Any], Any]] = {
    parse_item: lambda v: parse_item(serialize_item(v)),
    parse_list: lambda v: parse_list(serialize_list(v)),
    parse_dictionary: lambda v: parse_dictionary(serialize_dictionary(v)),
    parse_inner_list: lambda v: parse_inner_list(serialize_inner_list(v)),
}


@settings(deadline=None)
@given(_dicts, st.data())
def test_mutated_fields_raise_only_structured_field_error(
    members: dict[str, Member], data: st.DataObject
) -> None:
    """A valid field with one character changed parses (stably) or raises the error."""
    text = serialize_dictionary(members)
    position = data.draw(st.integers(0, len(text)))
    char = data.draw(st.sampled_from(list(' \t,;=()"\\:?@%*-.0aA\x00\x7f\xff')))
    mutation = data.draw(st.sampled_from(["insert", "replace", "delete"]))
    if mutation == "insert":
        text = text[:position] + char + text[position:]
    elif mutation == "replace":
        text = text[:position] + char + text[position + 1 :]
    else:
        text = text[:position] + text[position + 1 :]
    for parse in (parse_item, parse_list, parse_dictionary, parse_inner_list):
        try:
            result = parse(text)
        except StructuredFieldError:
            continue
        # Whatever parses, serialises, and parses back to the same value.
        assert _plain(_REPARSE[parse](result)) == _plain(result)


# -- bounds set by the caller (THREATS P1) -----------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["a=(x y z)", 'a=("x" "y" "z")', "a=(x;p=1 y z)", 'a=("x" "y" "z");q=1', "a=(x y z), b=1"],
)
def test_an_inner_list_past_max_items_is_too_large(value: str) -> None:
    """Three items where two are allowed: TooLarge (a StructuredFieldError), naming
    the bound; at the bound it parses as usual."""
    with pytest.raises(TooLarge, match="more than 2 items") as caught:
        parse_dictionary(value, max_items=2)
    assert caught.value.bound == "max_items"
    assert isinstance(caught.value, StructuredFieldError)
    assert len(parse_dictionary(value, max_items=3)["a"].items) == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["a=1, b=2, c=3", "a, b, c", "a=(), b=(), c=()"])
def test_a_dictionary_past_max_members_is_too_large(value: str) -> None:
    """A third key where two are allowed is TooLarge; a repeated key is not a new member."""
    with pytest.raises(TooLarge, match="more than 2 Dictionary members") as caught:
        parse_dictionary(value, max_members=2)
    assert caught.value.bound == "max_members"
    assert list(parse_dictionary(value, max_members=3)) == ["a", "b", "c"]
    assert list(parse_dictionary("a=1, b=2, a=3", max_members=2)) == ["a", "b"]
