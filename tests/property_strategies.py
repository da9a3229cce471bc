"""Hypothesis strategies shared by the property suites of the middleware
(tests/test_middleware_properties.py) and of the webhook receivers
(tests/test_webhooks_properties.py): byte edits and garbage header lines."""

from __future__ import annotations

import string

from hypothesis import strategies as st

__all__ = ["flip_case", "garbage_names", "garbage_values", "long_values", "other_byte"]


def other_byte(data: bytes, position: int) -> st.SearchStrategy[int]:
    """A byte other than the one at ``position`` of ``data``."""
    return st.integers(0, 255).filter(lambda b: b != data[position])


def flip_case(name: bytes, mask: list[bool]) -> bytes:
    """``name`` with the case of each letter flipped where ``mask`` says so."""
    return bytes(
        (c ^ 0x20) if flip and chr(c).isalpha() else c for c, flip in zip(name, mask, strict=True)
    )


@st.composite
def long_values(draw: st.DrawFn, max_size: int) -> bytes:
    """A value of a few hundred bytes up to ``max_size``, a short random pattern repeated."""
    unit = draw(st.binary(min_size=1, max_size=8))
    size = draw(st.integers(256, max_size))
    return (unit * (size // len(unit) + 1))[:size]


def garbage_values(known: list[bytes], max_long: int) -> st.SearchStrategy[bytes]:
    """Header values: random bytes, random text (any code point), ``known`` values the
    code under test reads, or long ones."""
    return st.one_of(
        st.binary(max_size=48),
        st.text(max_size=24).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.sampled_from(known),
        long_values(max_long),
    )


def garbage_names(known: list[bytes]) -> st.SearchStrategy[bytes]:
    """Header names: random bytes, name-like text, or ``known`` names the code reads."""
    return st.one_of(
        st.binary(max_size=24),
        st.text(string.ascii_letters + "-", max_size=24).map(str.encode),
        st.sampled_from(known),
    )
