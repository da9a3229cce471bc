"""RFC 9530 Content-Digest: creating the field, and checking bodies against it.

The examples come from tests/vectors/rfc9530.json (RFC 9530, recomputed in the shared
VECTORS.md section 5). Each is created with make_content_digest and checked with both
verify_content_digest and DigestVerifier fed in small chunks.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from _vectors import load_vector
from hmacguard import (
    DigestMismatch,
    DigestVerifier,
    MalformedDigest,
    VerificationError,
    make_content_digest,
    verify_content_digest,
)
from hmacguard._content_digest import parse_content_digest

VECTORS = load_vector("rfc9530.json")
EXAMPLES = [
    pytest.param(base64.b64decode(v["body_base64"]), v["field"], id=f"{i}-{v['field'][:7]}")
    for i, v in enumerate(VECTORS["digests"])
]
DEPRECATED = VECTORS["deprecated_samples"]
HELLO = DEPRECATED["body"].encode()


def sha(name: str, body: bytes) -> str:
    """The base64 digest of ``body`` with hashlib's ``name``."""
    return base64.b64encode(hashlib.new(name, body).digest()).decode()


def check_everywhere(value: str, body: bytes) -> list[VerificationError | None]:
    """Check ``body`` with verify_content_digest and DigestVerifier in 1- and 7-byte chunks.

    Returns the error each way raised (None for success), so callers can demand the
    three agree.
    """
    outcomes: list[VerificationError | None] = []
    try:
        verify_content_digest(value, body)
    except VerificationError as exc:
        outcomes.append(exc)
    else:
        outcomes.append(None)
    for size in (1, 7):
        try:
            checker = DigestVerifier(value)
            for start in range(0, len(body), size):
                checker.update(body[start : start + size])
            checker.verify()
        except VerificationError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    return outcomes


def reasons(value: str, body: bytes) -> set[str | None]:
    """The set of outcomes (reason or None) over the three ways of checking."""
    return {None if e is None else e.reason for e in check_everywhere(value, body)}


def test_vectors_file_names_its_source() -> None:
    """The copied vector file says where its data comes from and holds every example."""
    assert "RFC 9530" in VECTORS["_source"]
    assert len(VECTORS["digests"]) == 12


@pytest.mark.parametrize(("body", "value"), EXAMPLES)
def test_rfc9530_example_created(body: bytes, value: str) -> None:
    """make_content_digest reproduces each RFC 9530 example exactly."""
    algorithm = value.split("=", 1)[0]
    assert make_content_digest(body, algorithm) == value


@pytest.mark.parametrize(("body", "value"), EXAMPLES)
def test_rfc9530_example_verified(body: bytes, value: str) -> None:
    """Each RFC 9530 example verifies whole and in 1-byte and 7-byte chunks."""
    assert reasons(value, body) == {None}


@pytest.mark.parametrize(("body", "value"), EXAMPLES)
def test_rfc9530_example_detects_a_changed_body(body: bytes, value: str) -> None:
    """Each RFC 9530 example fails for the body with one byte appended."""
    assert reasons(value, body + b"\n") == {"digest_mismatch"}


def test_make_content_digest_default_is_sha256() -> None:
    """The default algorithm is sha-256."""
    assert make_content_digest(HELLO) == f"sha-256=:{sha('sha256', HELLO)}:"


@pytest.mark.parametrize("algorithm", ["md5", "sha", "SHA-256", "sha256", ""])
def test_make_content_digest_refuses_other_algorithms(algorithm: str) -> None:
    """make_content_digest only produces Active algorithms."""
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        make_content_digest(HELLO, algorithm)


@pytest.mark.parametrize("name", ["md5", "sha", "adler"])
def test_deprecated_only_is_digest_mismatch(name: str) -> None:
    """A field holding only a deprecated algorithm proves nothing: digest_mismatch."""
    assert reasons(DEPRECATED[name], HELLO) == {"digest_mismatch"}


def test_all_deprecated_together_is_digest_mismatch() -> None:
    """Several deprecated algorithms together still prove nothing."""
    value = ", ".join(DEPRECATED[name] for name in ("md5", "sha", "adler"))
    assert reasons(value, HELLO) == {"digest_mismatch"}


def test_deprecated_samples_are_correct_digests() -> None:
    """The md5 and sha samples are the real digests of the body (so ignoring them is a choice)."""
    assert DEPRECATED["md5"] == f"md5=:{sha('md5', HELLO)}:"
    assert DEPRECATED["sha"] == f"sha=:{sha('sha1', HELLO)}:"


def test_bad_sha256_with_good_sha512_is_mismatch() -> None:
    """Every Active algorithm present must match: a bad sha-256 fails a good sha-512."""
    bad = sha("sha256", b"something else")
    value = f"sha-256=:{bad}:, sha-512=:{sha('sha512', HELLO)}:"
    assert reasons(value, HELLO) == {"digest_mismatch"}


def test_good_sha256_with_bad_sha512_is_mismatch() -> None:
    """The order of the members does not matter: a bad sha-512 after a good sha-256 fails."""
    value = f"sha-256=:{sha('sha256', HELLO)}:, sha-512=:{sha('sha512', b'other')}:"
    assert reasons(value, HELLO) == {"digest_mismatch"}


def test_good_sha256_with_deprecated_member_is_ok() -> None:
    """A deprecated member next to a good sha-256 is ignored, even when it is wrong."""
    wrong_md5 = base64.b64encode(bytes(16)).decode()
    value = f"sha-256=:{sha('sha256', HELLO)}:, md5=:{wrong_md5}:"
    assert reasons(value, HELLO) == {None}
    value = f"md5=:{wrong_md5}:, sha=:{wrong_md5}:, sha-256=:{sha('sha256', HELLO)}:"
    assert reasons(value, HELLO) == {None}


def test_deprecated_member_with_invalid_byte_sequence_is_malformed() -> None:
    """Ignoring md5 does not mean skipping syntax: ``md5=:x:`` is not a byte sequence."""
    value = f"sha-256=:{sha('sha256', HELLO)}:, md5=:x:"
    assert reasons(value, HELLO) == {"malformed_digest"}


def test_unknown_algorithm_only_is_mismatch() -> None:
    """A field with only an unregistered algorithm is digest_mismatch."""
    value = f"sha-384=:{sha('sha384', HELLO)}:"
    assert reasons(value, HELLO) == {"digest_mismatch"}
    assert reasons("foo=:AAAA:", HELLO) == {"digest_mismatch"}


def test_unknown_algorithm_next_to_good_one_is_ignored() -> None:
    """An unknown algorithm next to a good sha-256 is ignored."""
    value = f"sha-3-256=:AAAA:, sha-256=:{sha('sha256', HELLO)}:"
    assert reasons(value, HELLO) == {None}


@pytest.mark.parametrize(
    "value",
    [
        "sha-256=:AAAA:",
        f"sha-256=:{sha('sha512', HELLO)}:",
        f"sha-512=:{sha('sha256', HELLO)}:",
        f"sha-256=:{base64.b64encode(hashlib.sha256(HELLO).digest()[:31]).decode()}:",
        f"sha-256=:{base64.b64encode(hashlib.sha256(HELLO).digest() + b'0').decode()}:",
        "sha-256=::",
    ],
    ids=["4-bytes", "sha512-as-sha256", "sha256-as-sha512", "31-bytes", "33-bytes", "empty"],
)
def test_wrong_length_is_mismatch(value: str) -> None:
    """A digest of the wrong length for its algorithm is digest_mismatch."""
    assert reasons(value, HELLO) == {"digest_mismatch"}


@pytest.mark.parametrize(
    "lines",
    [
        [make_content_digest(HELLO), make_content_digest(HELLO)],
        [make_content_digest(b"other"), make_content_digest(HELLO)],
        [make_content_digest(HELLO), make_content_digest(b"other")],
        [make_content_digest(HELLO, "sha-512"), make_content_digest(HELLO, "sha-512")],
    ],
    ids=["identical", "bad-then-good", "good-then-bad", "sha-512"],
)
def test_repeated_algorithm_across_lines_is_malformed(lines: list[str]) -> None:
    """Two lines repeating an algorithm, joined with ", ", are malformed_digest (no last-wins)."""
    value = ", ".join(lines)
    outcomes = check_everywhere(value, HELLO)
    assert {None if e is None else e.reason for e in outcomes} == {"malformed_digest"}
    assert all(e is not None and e.status == 400 for e in outcomes)


@pytest.mark.parametrize(
    "value",
    [
        "sha-256",
        'sha-256="X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="',
        "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE",
        "sha-256=(:AAAA:)",
        "sha-256=1",
        ":X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:,",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:;a=1;a=2",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE!:",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\tsha-512=:AA==:",
    ],
    ids=[
        "bare-key",
        "string",
        "token",
        "inner-list",
        "integer",
        "no-key",
        "uppercase-key",
        "unterminated",
        "trailing-comma",
        "duplicate-param",
        "bad-base64",
        "tab-separator",
    ],
)
def test_not_a_dictionary_of_byte_sequences_is_malformed(value: str) -> None:
    """A field that is not an SF dictionary of byte sequences is malformed_digest (400)."""
    outcomes = check_everywhere(value, HELLO)
    for outcome in outcomes:
        assert isinstance(outcome, MalformedDigest)
        assert outcome.status == 400


def test_empty_field_is_mismatch() -> None:
    """An empty Content-Digest is a valid empty dictionary that proves nothing: digest_mismatch."""
    assert reasons("", b"") == {"digest_mismatch"}
    assert reasons("   ", HELLO) == {"digest_mismatch"}


def test_multi_algorithm_both_valid() -> None:
    """sha-256 and sha-512 both present and both right verifies."""
    value = f"{make_content_digest(HELLO)}, {make_content_digest(HELLO, 'sha-512')}"
    assert reasons(value, HELLO) == {None}


def test_parameters_on_members_are_tolerated() -> None:
    """Parameters on a digest member do not change the digest check."""
    value = f"sha-256=:{sha('sha256', HELLO)}:;note=1"
    assert reasons(value, HELLO) == {None}


def test_unpadded_digest_is_accepted() -> None:
    """A digest whose base64 padding is missing still decodes (RFC 9651 §4.2.7)."""
    value = f"sha-256=:{sha('sha256', HELLO).rstrip('=')}:"
    assert reasons(value, HELLO) == {None}


def test_surrounding_whitespace_is_tolerated() -> None:
    """Leading and trailing SP around the field value are allowed."""
    assert reasons(f"  {make_content_digest(HELLO)}  ", HELLO) == {None}


def test_errors_are_the_documented_classes() -> None:
    """Mismatch raises DigestMismatch (401); malformed raises MalformedDigest (400)."""
    with pytest.raises(DigestMismatch) as mismatch:
        verify_content_digest(make_content_digest(b"a"), b"b")
    assert mismatch.value.status == 401
    with pytest.raises(MalformedDigest) as malformed:
        verify_content_digest("nope nope", b"b")
    assert malformed.value.status == 400


def test_digest_verifier_accepts_bytes_like_chunks() -> None:
    """DigestVerifier.update takes bytes, bytearray and memoryview."""
    checker = DigestVerifier(make_content_digest(HELLO))
    checker.update(bytearray(HELLO[:5]))
    checker.update(memoryview(HELLO)[5:10])
    checker.update(HELLO[10:])
    checker.verify()


def test_digest_verifier_with_no_chunks_is_the_empty_body() -> None:
    """A DigestVerifier fed nothing checks the empty body."""
    DigestVerifier(make_content_digest(b"")).verify()
    with pytest.raises(DigestMismatch):
        DigestVerifier(make_content_digest(b"x")).verify()


def test_digest_verifier_rejects_bad_fields_at_construction() -> None:
    """A malformed field fails when the DigestVerifier is built, before any body is read."""
    with pytest.raises(MalformedDigest):
        DigestVerifier("sha-256=(")
    with pytest.raises(DigestMismatch):
        DigestVerifier(DEPRECATED["md5"])


def test_sixteen_mib_body() -> None:
    """A 16 MiB body verifies whole and streamed, and one changed byte is caught."""
    body = bytes(range(256)) * (16 * 2**20 // 256)
    assert len(body) == 16 * 2**20
    value = f"{make_content_digest(body)}, {make_content_digest(body, 'sha-512')}"
    verify_content_digest(value, body)
    verify_content_digest(value, memoryview(body))
    checker = DigestVerifier(value)
    view = memoryview(body)
    for start in range(0, len(body), 2**20):
        checker.update(view[start : start + 2**20])
    checker.verify()
    changed = bytearray(body)
    changed[-1] ^= 1
    with pytest.raises(DigestMismatch):
        verify_content_digest(value, changed)


def test_digest_error_details_hold_no_digest_values() -> None:
    """A mismatch names the algorithm but neither the expected nor the actual digest."""
    expected = sha("sha256", b"a")
    with pytest.raises(DigestMismatch) as info:
        verify_content_digest(f"sha-256=:{expected}:", b"b")
    text = f"{info.value} {info.value!r}"
    assert "sha-256" in text
    assert expected not in text
    assert sha("sha256", b"b") not in text


_SHA256_HELLO = make_content_digest(b"hello")


@pytest.mark.parametrize(
    ("value", "error", "detail"),
    [
        pytest.param(
            "sha-256=:AAAA",
            MalformedDigest,
            "Content-Digest is not a valid dictionary: ",
            id="not-a-dictionary",
        ),
        pytest.param(
            "sha-256=1",
            MalformedDigest,
            "Content-Digest member 'sha-256' is not a byte sequence",
            id="not-a-byte-sequence",
        ),
        pytest.param(
            "sha-512=:AAAA:",
            DigestMismatch,
            "the sha-512 digest has the wrong length",
            id="wrong-length",
        ),
        pytest.param(
            "md5=:AAAA:",
            DigestMismatch,
            "Content-Digest holds no supported algorithm (sha-256, sha-512)",
            id="no-active-algorithm",
        ),
        pytest.param(
            make_content_digest(b"other", "sha-512"),
            DigestMismatch,
            "the body does not match its sha-512 Content-Digest",
            id="body-changed",
        ),
    ],
)
def test_rfc9530_digest_errors_say_what_failed(
    value: str, error: type[VerificationError], detail: str
) -> None:
    """Each Content-Digest failure has a detail naming the problem (and never a digest value)."""
    with pytest.raises(error) as caught:
        verify_content_digest(value, b"hello")
    assert caught.value.detail.startswith(detail)
    if error is DigestMismatch and "body" in detail:
        checker = DigestVerifier(value)
        checker.update(b"hello")
        with pytest.raises(DigestMismatch) as streamed:
            checker.verify()
        assert streamed.value.detail == detail
    else:
        with pytest.raises(error) as parsed:
            parse_content_digest(value)
        assert parsed.value.detail.startswith(detail)


def test_rfc9530_canonical_value_parses_to_its_digest() -> None:
    """A canonical sha-256 or sha-512 value parses to exactly its decoded digest."""
    assert parse_content_digest(_SHA256_HELLO) == {"sha-256": hashlib.sha256(b"hello").digest()}
    value = make_content_digest(b"hello", "sha-512")
    assert parse_content_digest(value) == {"sha-512": hashlib.sha512(b"hello").digest()}


def test_make_content_digest_names_the_supported_algorithms() -> None:
    """Asking for an unsupported digest algorithm says which ones exist."""
    with pytest.raises(ValueError, match=r"^unsupported digest algorithm") as caught:
        make_content_digest(b"", "md5")
    assert str(caught.value) == "unsupported digest algorithm 'md5'; use sha-256, sha-512"


@pytest.mark.parametrize("before", ["", " ", "\t", " \t ", "\t\t"])
@pytest.mark.parametrize("after", ["", " ", "\t", "\t "])
def test_whitespace_around_the_value_is_not_part_of_it(before: str, after: str) -> None:
    """SP and HTAB before or after a field value are not part of it (RFC 9110 §5.5): a
    server that hands them over (uvicorn strips them) gets the digest checked as usual.
    A tab in front once made the structured-field parser refuse the value."""
    body = b'{"a": 1}'
    value = before + make_content_digest(body) + after
    assert parse_content_digest(value) == {"sha-256": hashlib.sha256(body).digest()}
    verify_content_digest(value, body)
    checker = DigestVerifier(value)
    checker.update(body)
    checker.verify()
    with pytest.raises(DigestMismatch):
        verify_content_digest(value, body + b" ")
