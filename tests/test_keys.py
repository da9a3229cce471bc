"""Keys: HMACKey hides and validates its secret; Keyring resolves key ids."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import pickle
import re
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from hmacguard import MIN_KEY_BYTES, HMACKey, KeyLookupFailed, Keyring, Verifier
from hmacguard._client import make_signer

SECRET = b"\xfb\xff\xbf" * 10 + b"\xfb\xff"  # 32 bytes whose base64 uses "+", "/" and "="
STANDARD = base64.b64encode(SECRET).decode()
URLSAFE = base64.urlsafe_b64encode(SECRET).decode()


def texts_of(exc: BaseException) -> str:
    """str and repr of an exception and of everything chained to it."""
    parts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current), *map(str, current.args)]
        pending += [current.__cause__, current.__context__]
    return "\n".join(parts)


def test_fixture_secret_exercises_both_alphabets() -> None:
    """The test secret's encodings contain the characters that differ between alphabets."""
    assert len(SECRET) == 32
    assert {"+", "/"} <= set(STANDARD)
    assert STANDARD.endswith("=")
    assert {"-", "_"} <= set(URLSAFE)


# -- HMACKey ----------------------------------------------------------------------


def test_repr_and_str_hide_the_secret() -> None:
    """repr and str show the key id and algorithm, never the secret."""
    key = HMACKey("client-1", b"topsecret-topsecret-topsecret-xy")
    expected = "HMACKey(key_id='client-1', algorithm='hmac-sha256', secret=<hidden>)"
    assert repr(key) == expected
    assert str(key) == expected
    for text in (repr(key), str(key), f"{key!r}", format(key)):
        assert "topsecret" not in text
        assert base64.b64encode(key.secret).decode()[:8] not in text


def test_repr_of_a_key_from_base64_text_hides_the_text() -> None:
    """A key made from base64 text shows neither the text nor the raw bytes."""
    key = HMACKey("client-1", STANDARD)
    assert STANDARD[:8] not in repr(key)
    assert URLSAFE[:8] not in repr(key)


@pytest.mark.parametrize(
    "text",
    [STANDARD, URLSAFE, STANDARD.rstrip("="), URLSAFE.rstrip("="), f"  {STANDARD}\n"],
    ids=["standard", "url-safe", "standard-unpadded", "url-safe-unpadded", "surrounding-space"],
)
def test_base64_text_secrets_decode(text: str) -> None:
    """Base64 text in either alphabet, padded or not, decodes to the raw secret."""
    key = HMACKey("client-1", text)
    assert key.secret == SECRET
    assert key == HMACKey("client-1", SECRET)


@pytest.mark.parametrize(
    "text",
    [
        "correct horse battery staple correct horse battery",
        "this-is-my-password!-this-is-my-password!-this-is",
        "pässwort-pässwort-pässwort-pässwort-pässwort-pässwort",
        STANDARD[:-2] + "*=",
        STANDARD + "A",
        STANDARD + "==",
    ],
    ids=["spaces", "punctuation", "non-ascii", "bad-char", "bad-length", "over-padded"],
)
def test_non_base64_text_is_refused_without_quoting_it(text: str) -> None:
    """Text that is not base64 is a ValueError whose message chain never contains the text."""
    with pytest.raises(ValueError, match="base64") as info:
        HMACKey("client-1", text)
    chain = texts_of(info.value)
    assert text not in chain
    assert text.strip()[:12] not in chain


@pytest.mark.parametrize(
    "secret",
    [
        b"",
        b"x",
        b"hunter2hunter2",
        b"s" * 16,
        b"s" * 31,
        base64.b64encode(b"s" * 31).decode(),
        "c2VjcmV0",
    ],
    ids=["empty", "1", "hunter2", "16", "31", "base64-31", "base64-secret"],
)
def test_short_secrets_refused(secret: bytes | str) -> None:
    """A secret under MIN_KEY_BYTES (32) is a ValueError that does not quote it."""
    with pytest.raises(ValueError, match="at least 32") as info:
        HMACKey("client-1", secret)
    if len(secret) >= 4:
        assert str(secret if isinstance(secret, str) else secret.decode()) not in str(info.value)


def test_min_key_bytes() -> None:
    """MIN_KEY_BYTES is 32 and exactly 32 bytes are accepted."""
    assert MIN_KEY_BYTES == 32
    assert HMACKey("client-1", b"\x00" * 32).secret == b"\x00" * 32


@pytest.mark.parametrize("secret", [bytearray(b"k" * 32), memoryview(b"k" * 32)])
def test_bytes_like_secrets(secret: bytearray | memoryview) -> None:
    """bytearray and memoryview secrets are copied to bytes."""
    key = HMACKey("client-1", secret)
    assert key.secret == b"k" * 32
    assert type(key.secret) is bytes


def test_secret_copied_from_mutable_buffer() -> None:
    """Mutating the bytearray after construction does not change the key."""
    buffer = bytearray(b"k" * 32)
    key = HMACKey("client-1", buffer)
    buffer[:] = b"x" * 32
    assert key.secret == b"k" * 32


@pytest.mark.parametrize("secret", [42, None, ["k"] * 32])
def test_secret_of_wrong_type(secret: object) -> None:
    """A secret that is neither bytes nor text is a TypeError."""
    with pytest.raises(TypeError, match="secret"):
        HMACKey("client-1", secret)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key_id",
    ["", "k" * 257, "cl\u00e9", "a\nb", "a\tb", "a\x00b", "a\x7fb"],
    ids=["empty", "257", "non-ascii", "LF", "tab", "NUL", "DEL"],
)
def test_invalid_key_ids(key_id: str) -> None:
    """A key id must be 1-256 printable ASCII characters."""
    with pytest.raises(ValueError, match="key_id"):
        HMACKey(key_id, b"k" * 32)


@pytest.mark.parametrize("key_id", [1, b"client-1", None])
def test_key_id_must_be_text(key_id: object) -> None:
    """A non-str key id is a TypeError."""
    with pytest.raises(TypeError, match="key_id"):
        HMACKey(key_id, b"k" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize("key_id", ["a", "k" * 256, "client 1", 'we"ird\\id', "https://x/y"])
def test_valid_key_ids(key_id: str) -> None:
    """Any printable ASCII key id of 1-256 characters is accepted."""
    assert HMACKey(key_id, b"k" * 32).key_id == key_id


def test_algorithms() -> None:
    """hmac-sha256 is the default; hmac-sha512 is accepted; others are ValueError."""
    assert HMACKey("a", b"k" * 32).algorithm == "hmac-sha256"
    assert HMACKey("a", b"k" * 64, "hmac-sha512").algorithm == "hmac-sha512"
    for name in ("HMAC-SHA256", "hmac-sha1", "rsa-pss-sha512", "ed25519", ""):
        with pytest.raises(ValueError, match="unsupported algorithm"):
            HMACKey("a", b"k" * 32, name)


def test_equality() -> None:
    """Keys are equal when id, algorithm and secret all match."""
    key = HMACKey("client-1", b"k" * 32)
    assert key == HMACKey("client-1", b"k" * 32)
    assert key == HMACKey("client-1", base64.b64encode(b"k" * 32).decode())
    assert hash(key) == hash(HMACKey("client-1", b"k" * 32))
    assert key != HMACKey("client-1", b"x" * 32)
    assert key != HMACKey("client-2", b"k" * 32)
    assert key != HMACKey("client-1", b"k" * 64, "hmac-sha512")
    assert key != b"k" * 32
    assert key != "client-1"


def test_keys_work_in_sets() -> None:
    """Equal keys collapse in a set; different secrets do not."""
    keys = {
        HMACKey("a", b"k" * 32),
        HMACKey("a", b"k" * 32),
        HMACKey("a", b"x" * 32),
    }
    assert len(keys) == 2


def test_not_picklable() -> None:
    """Pickling a key is a TypeError whose message holds no secret."""
    key = HMACKey("client-1", b"topsecret-topsecret-topsecret-xy")
    with pytest.raises(TypeError, match="not picklable") as info:
        pickle.dumps(key)
    assert "topsecret" not in texts_of(info.value)


def test_not_copyable() -> None:
    """copy.copy and copy.deepcopy refuse too (they go through the same protocol)."""
    key = HMACKey("client-1", b"k" * 32)
    with pytest.raises(TypeError, match="not picklable"):
        copy.copy(key)
    with pytest.raises(TypeError, match="not picklable"):
        copy.deepcopy(key)


def test_no_instance_dict() -> None:
    """The key has no __dict__, so vars() cannot dump the secret."""
    key = HMACKey("client-1", b"k" * 32)
    assert not hasattr(key, "__dict__")


# -- Keyring ----------------------------------------------------------------------


def test_keyring_from_mapping() -> None:
    """A mapping may hold raw bytes, base64 text or HMACKey values."""
    keys: dict[str, bytes | str | HMACKey] = {
        "raw": b"r" * 32,
        "text": STANDARD,
        "key": HMACKey("key", b"h" * 64, "hmac-sha512"),
    }
    keyring = Keyring(keys)
    assert keyring.lookup("raw") == HMACKey("raw", b"r" * 32)
    assert keyring.lookup("text") == HMACKey("text", SECRET)
    assert keyring.lookup("key") == HMACKey("key", b"h" * 64, "hmac-sha512")
    assert keyring.lookup("missing") is None
    assert not keyring.is_async


def test_keyring_mapping_with_mismatched_key_id() -> None:
    """A mapping entry whose HMACKey has another id is a ValueError."""
    with pytest.raises(ValueError, match="holds HMACKey"):
        Keyring({"a": HMACKey("b", b"k" * 32)})


def test_keyring_mapping_with_short_secret() -> None:
    """A short secret in a mapping is refused when the keyring is built."""
    with pytest.raises(ValueError, match="at least 32"):
        Keyring({"a": b"k" * 32, "b": b"short"})


def test_keyring_mapping_error_names_the_entry_by_position() -> None:
    """An error about one entry of a {key_id: secret} mapping says which entry, by position."""
    with pytest.raises(
        ValueError, match=r"^keys, entry 2: the secret \(given with a key id of 1 ch"
    ):
        Keyring({"a": b"k" * 32, "b": b"short", "c": b"k" * 32})
    with pytest.raises(TypeError, match=r"^keys, entry 1: a secret is bytes or base64 text, not"):
        Keyring({"a": 42})  # type: ignore[dict-item]


# The secret texts a swapped call passes as the key id: base64 (standard, padded),
# URL-safe unpadded, 64 bytes for hmac-sha512, and a weak secret as short as a key id.
SWAPPED = [
    (STANDARD, "hmac-sha256"),
    (URLSAFE.rstrip("="), "hmac-sha256"),
    (base64.b64encode(bytes(range(64))).decode(), "hmac-sha512"),
    ("aHVudGVyMg", "hmac-sha256"),
]


def _make_signer(key_id: str, secret: str, algorithm: str) -> object:
    return make_signer(key_id, secret, None, algorithm, {})


def _keyring(key_id: str, secret: str, algorithm: str) -> object:
    return Keyring({"client-2": b"q" * 64, key_id: secret})


def _verifier(key_id: str, secret: str, algorithm: str) -> object:
    return Verifier({key_id: secret})


@pytest.mark.parametrize("make", [HMACKey, _make_signer, _keyring, _verifier])
@pytest.mark.parametrize(
    ("secret_text", "algorithm"), SWAPPED, ids=["base64", "urlsafe", "sha512", "weak"]
)
@pytest.mark.parametrize("given_as_secret", ["client-1", "c1", "client_1.key"])
def test_swapped_key_id_and_secret_never_show_the_secret(
    make: Any, secret_text: str, algorithm: str, given_as_secret: str
) -> None:
    """HMACKey(secret, "client-1") and every entry point built on it (make_signer, a
    Keyring or Verifier mapping) refuse the swap without quoting the key id, which is the
    secret; a key id as long as a secret asks whether the two were swapped."""
    with pytest.raises(ValueError, match=r"needs at least|base64") as caught:
        make(secret_text, given_as_secret, algorithm)
    shown = texts_of(caught.value) + "".join(traceback.format_exception(caught.value))
    assert secret_text not in shown
    assert ("did you swap key_id and secret?" in shown) == (len(secret_text) >= 43)


def test_keyring_from_list_and_generator() -> None:
    """An iterable of HMACKey (list or generator) is accepted."""
    keys = [HMACKey("a", b"a" * 32), HMACKey("b", b"b" * 32)]
    for source in (keys, (k for k in keys), tuple(keys)):
        keyring = Keyring(source)
        assert keyring.lookup("a") == keys[0]
        assert keyring.lookup("b") == keys[1]


def test_keyring_list_with_duplicate_ids() -> None:
    """Two keys with the same id in a list are a ValueError."""
    with pytest.raises(ValueError, match="appears twice"):
        Keyring([HMACKey("a", b"a" * 32), HMACKey("a", b"b" * 32)])


def test_keyring_list_with_non_keys() -> None:
    """A list holding raw secrets instead of HMACKey is a TypeError."""
    with pytest.raises(TypeError, match="HMACKey"):
        Keyring([b"a" * 32])  # type: ignore[list-item]


@pytest.mark.parametrize("keys", [{}, [], ()], ids=["mapping", "list", "tuple"])
def test_empty_keyring_refused(keys: object) -> None:
    """An empty keyring could never verify anything: ValueError."""
    with pytest.raises(ValueError, match="empty"):
        Keyring(keys)  # type: ignore[arg-type]


@pytest.mark.parametrize("keys", ["client-1", b"k" * 32, bytearray(32), 42, None])
def test_keyring_of_wrong_type(keys: object) -> None:
    """A string, bytes or other non-collection is a TypeError."""
    with pytest.raises(TypeError, match="keys must be"):
        Keyring(keys)  # type: ignore[arg-type]


def test_keyring_from_callable() -> None:
    """A sync callable is asked on every lookup, with the key id as given."""
    asked: list[str] = []
    key = HMACKey("a", b"a" * 32)

    def resolve(key_id: str) -> HMACKey | None:
        asked.append(key_id)
        return key if key_id == "a" else None

    keyring = Keyring(resolve)
    assert not keyring.is_async
    assert keyring.lookup("a") is key
    assert keyring.lookup("a") is key
    assert keyring.lookup("zzz") is None
    assert asked == ["a", "a", "zzz"]


def test_keyring_callable_answers_are_checked() -> None:
    """A resolver answer of the wrong type or id is KeyLookupFailed."""
    answers: list[object] = [b"a" * 32, HMACKey("other", b"a" * 32), "a"]
    for answer in answers:

        def resolve(key_id: str, answer: object = answer) -> object:
            return answer

        with pytest.raises(KeyLookupFailed):
            Keyring(resolve).lookup("a")  # type: ignore[arg-type]


async def test_keyring_async_callable() -> None:
    """An async resolver is flagged is_async, works with alookup and fails closed in lookup."""
    key = HMACKey("a", b"a" * 32)

    async def resolve(key_id: str) -> HMACKey | None:
        return key if key_id == "a" else None

    keyring = Keyring(resolve)
    assert keyring.is_async
    assert await keyring.alookup("a") is key
    assert await keyring.alookup("b") is None
    with pytest.raises(KeyLookupFailed, match="averify"):
        keyring.lookup("a")


async def test_alookup_with_static_keys() -> None:
    """alookup works on a static keyring too."""
    key = HMACKey("a", b"a" * 32)
    assert await Keyring([key]).alookup("a") is key
    assert await Keyring([key]).alookup("b") is None


def test_keyring_repr_shows_ids_only() -> None:
    """The keyring's repr lists key ids, never secrets."""
    keys: dict[str, bytes | str | HMACKey] = {
        "b": b"topsecret-topsecret-topsecret-xy",
        "a": STANDARD,
    }
    keyring = Keyring(keys)
    assert repr(keyring) == "Keyring(key_ids=['a', 'b'])"


def test_keyring_static_mapping_is_copied() -> None:
    """Changing the mapping after building the keyring does not change the keyring."""
    source = {"a": b"a" * 32}
    keyring = Keyring(source)
    source["b"] = b"b" * 32
    del source["a"]
    assert keyring.lookup("a") == HMACKey("a", b"a" * 32)
    assert keyring.lookup("b") is None


def test_dummy_key_is_random_and_not_configured() -> None:
    """The dummy key for unknown ids is a fresh random 32-byte key of its own."""
    first, second = Keyring([HMACKey("a", b"a" * 32)]), Keyring([HMACKey("a", b"a" * 32)])
    assert len(first.dummy.secret) == 32
    assert first.dummy.secret != second.dummy.secret
    assert first.lookup(first.dummy.key_id) is None


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        pytest.param(b"a" * 32, "key resolver returned bytes, not HMACKey", id="bytes"),
        pytest.param("a", "key resolver returned str, not HMACKey", id="str"),
        pytest.param(
            HMACKey("other", b"a" * 32),
            "key resolver returned a key with another key id",
            id="other-id",
        ),
        pytest.param(ValueError("vault"), "key resolver raised ValueError", id="raises"),
    ],
)
async def test_keyring_resolver_failures_are_named(answer: object, detail: str) -> None:
    """A resolver's wrong answer or exception is KeyLookupFailed naming what went wrong."""

    def resolve(key_id: str) -> object:
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aresolve(key_id: str) -> object:
        return resolve(key_id)

    with pytest.raises(KeyLookupFailed) as caught:
        Keyring(resolve).lookup("a")  # type: ignore[arg-type]
    assert caught.value.detail == detail
    for keyring in (Keyring(resolve), Keyring(aresolve)):  # type: ignore[arg-type]
        with pytest.raises(KeyLookupFailed) as caught:
            await keyring.alookup("a")
        assert caught.value.detail == detail


def test_pickling_error_message() -> None:
    """The pickling refusal says why, in one fixed sentence."""
    with pytest.raises(TypeError) as info:
        pickle.dumps(HMACKey("client-1", b"k" * 32))
    assert str(info.value) == "HMACKey holds a secret and is not picklable"


class _AwaitableWithoutClose:
    """An awaitable that is not a coroutine (no close() method)."""

    def __await__(self) -> Iterator[None]:
        yield from ()


def test_sync_lookup_refuses_any_awaitable_answer() -> None:
    """lookup() refuses an awaitable answer, coroutine or not, telling to use averify()."""
    keyring = Keyring(lambda key_id: _AwaitableWithoutClose())  # type: ignore[arg-type, return-value]
    with pytest.raises(KeyLookupFailed) as caught:
        keyring.lookup("a")
    assert caught.value.detail == "the key resolver is async: use averify()"


@pytest.mark.parametrize(
    ("algorithm", "length"),
    [("hmac-sha256", 65), ("hmac-sha256", 200), ("hmac-sha512", 129), ("hmac-sha512", 300)],
)
def test_rfc2104_secret_longer_than_the_block_is_hashed_first(algorithm: str, length: int) -> None:
    """A secret longer than the hash block gives the MAC that RFC 2104 (hmac) gives."""
    secret = bytes(range(256))[:length] if length <= 256 else b"q" * length
    key = HMACKey("a", secret, algorithm=algorithm)
    digest = "sha256" if algorithm == "hmac-sha256" else "sha512"
    assert key.mac(b"data") == hmac.new(secret, b"data", digest).digest()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: HMACKey(1, b"k" * 32), TypeError, "key_id must be str, not int"),  # type: ignore[arg-type]
        (lambda: HMACKey("a", 42), TypeError, "a secret is bytes or base64 text, not int"),  # type: ignore[arg-type]
        (
            lambda: HMACKey("a", "not base64!"),
            ValueError,
            "a text secret must be base64 (standard or URL-safe)",
        ),
        (
            lambda: Keyring("a"),  # type: ignore[arg-type]
            TypeError,
            "keys must be a mapping, a list of HMACKey or a callable",
        ),
        (
            lambda: Keyring(42),  # type: ignore[arg-type]
            TypeError,
            "keys must be a mapping, a list of HMACKey or a callable",
        ),
        (lambda: Keyring([b"k" * 32]), TypeError, "keys must hold HMACKey items, not bytes"),  # type: ignore[list-item]
        (lambda: Keyring([]), ValueError, "keys is empty: no request could ever verify"),
    ],
)
def test_key_configuration_errors_say_what_is_wrong(
    make: Any, error: type[Exception], message: str
) -> None:
    """Each refused key or keyring names the problem in a fixed sentence."""
    with pytest.raises(error) as caught:
        make()
    assert str(caught.value) == message


def test_static_keyring_is_not_async_and_its_dummy_is_named_unknown() -> None:
    """A static keyring reports is_async as False; its dummy key is the id "unknown"."""
    keyring = Keyring([HMACKey("a", b"a" * 32)])
    assert keyring.is_async is False
    assert keyring.dummy.key_id == "unknown"


# -- text and bytes that would silently give another key -----------------------------


@pytest.mark.parametrize(
    "text",
    [SECRET.hex(), SECRET.hex().upper(), "0x" + SECRET.hex(), f" {SECRET.hex()}\n", "a" * 44],
    ids=["lower", "upper", "0x-prefix", "surrounding-space", "a-times-44"],
)
def test_hex_text_secret_is_refused_with_the_fix(text: str) -> None:
    """Text made only of hex digits is refused, not read as base64 (another key), and the
    error says what to pass instead, without quoting the text."""
    with pytest.raises(ValueError, match="hex digits") as info:
        HMACKey("client-1", text)
    assert "bytes.fromhex" in str(info.value)
    chain = texts_of(info.value)
    assert text.strip()[:12] not in chain
    assert text.strip()[-12:] not in chain


def test_hex_secret_as_bytes_is_the_same_key() -> None:
    """bytes.fromhex(text), as the error suggests, is the key the hex text names."""
    assert HMACKey("client-1", bytes.fromhex(SECRET.hex())) == HMACKey("client-1", SECRET)


@pytest.mark.parametrize("size", [32, 64])
def test_padded_base64_of_keygen_sizes_is_never_taken_for_hex(size: int) -> None:
    """base64 of 32 or 64 bytes ends in "=", so even text otherwise all hex digits decodes."""
    padding = "=" * (-size % 3)
    text = "a" * (len(base64.b64encode(bytes(size))) - len(padding)) + padding
    assert len(HMACKey("client-1", text, f"hmac-sha{size * 8}").secret) == size


@pytest.mark.parametrize("end", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize(
    "encoding", [STANDARD, URLSAFE, SECRET.hex()], ids=["standard", "url-safe", "hex"]
)
def test_bytes_of_a_key_file_with_its_line_end_are_refused(encoding: str, end: str) -> None:
    """The bytes of a key file (Path(...).read_bytes(): text and a newline) are not a key."""
    with pytest.raises(ValueError, match="read_bytes") as info:
        HMACKey("client-1", (encoding + end).encode())
    assert "read_text" in str(info.value)
    assert encoding[:12] not in texts_of(info.value)


@pytest.mark.parametrize(
    "secret",
    [
        SECRET + b"\n",
        b"k" * 32,
        STANDARD.encode(),
        b"\n" + b"k" * 32,
        b"k" * 16 + b"\n" + b"k" * 16,
    ],
    ids=["binary-then-newline", "printable", "base64-without-newline", "leading", "middle"],
)
def test_raw_bytes_with_or_without_a_newline_are_accepted(secret: bytes) -> None:
    """Only text ending in a line end is refused: binary bytes, or text without one, stay keys."""
    assert HMACKey("client-1", secret).secret == secret


# -- fingerprint ----------------------------------------------------------------------


def test_fingerprint_names_the_secret_without_showing_it() -> None:
    """16 hex digits, equal for every form of one secret, different for another secret,
    domain-separated (not a prefix of the secret's plain SHA-256) and not in repr."""
    key = HMACKey("client-1", SECRET)
    assert re.fullmatch(r"[0-9a-f]{16}", key.fingerprint)
    for same in (HMACKey("server-side", STANDARD), HMACKey("x", URLSAFE, "hmac-sha256")):
        assert same.fingerprint == key.fingerprint
    assert HMACKey("client-1", b"k" * 32).fingerprint != key.fingerprint
    assert key.fingerprint not in hashlib.sha256(SECRET).hexdigest()
    assert key.fingerprint not in repr(key)
    for form in (SECRET.hex(), STANDARD, URLSAFE):
        assert form[:8] not in key.fingerprint


def test_fingerprint_value_is_stable() -> None:
    """The fingerprint is a published format: this value must never change."""
    assert (
        HMACKey("client-1", b"k" * 32).fingerprint
        == (hashlib.sha256(b"hmacguard key fingerprint v1\0" + b"k" * 32).hexdigest()[:16])
    )


def test_fingerprint_is_read_only() -> None:
    """A fingerprint cannot be set."""
    key = HMACKey("client-1", SECRET)
    with pytest.raises(AttributeError):
        key.fingerprint = "0" * 16  # type: ignore[misc]


def test_a_whsec_secret_is_read_as_its_base64() -> None:
    """ "whsec_" + base64 (hmacguard keygen --format whsec) is the key the base64 says,
    as the CLI reads it; the prefix was decoded as URL-safe base64 into other bytes."""
    raw = bytes(range(32))
    text = "whsec_" + base64.b64encode(raw).decode()
    assert HMACKey("c", text).secret == raw
    with pytest.raises(ValueError, match="is 24 bytes"):
        HMACKey("c", "whsec_" + base64.b64encode(raw[:24]).decode())


def test_a_key_id_that_is_the_secret_is_refused_without_showing_it() -> None:
    """HMACAuth(secret, secret): the key id would carry the secret into every request."""
    text = base64.b64encode(bytes(range(32))).decode()
    with pytest.raises(ValueError, match="the key id and the secret are the same text") as info:
        HMACKey(text, text)
    assert text not in str(info.value)
