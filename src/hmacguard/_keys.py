"""Keys: the secret wrapper and the keyring a verifier looks key ids up in."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeAlias, Union

from ._algorithms import MIN_KEY_BYTES, HMACAlgorithm, get_algorithm
from ._errors import KeyLookupFailed

__all__ = [
    "MAX_ID_BYTES",
    "SECRET_TEXT_CHARS",
    "HMACKey",
    "KeyLookup",
    "Keyring",
    "Keys",
    "check_id",
    "decode_secret",
    "fingerprint",
]

logger = logging.getLogger("hmacguard")

#: Key ids and nonces longer than this are refused before any lookup (THREATS P1, R9).
MAX_ID_BYTES = 256

# Text that is hex, not base64: only hex digits, maybe after "0x". Base64 text of
# 32 or 64 bytes (`hmacguard keygen`, base64.b64encode) ends in "=", not a hex
# digit; unpadded, 22 of the 64 base64 characters are hex digits, so the base64
# text of 32 or more random bytes is all hex less than once in 10**19.
_HEX_TEXT = re.compile(r"(?:0[xX])?[0-9a-fA-F]+")
# Bytes that are printable text and a line end: a key file read with read_bytes().
# 32 random bytes have this form about once in 10**16.
_TEXT_LINE = re.compile(rb"[\x21-\x7e]+\r?\n")
# The shortest text a valid secret has: 32 bytes in base64 without padding.
# A key id this long may be a secret passed in its place.
SECRET_TEXT_CHARS = 43
# Domain separation for HMACKey.fingerprint: never the plain hash of a secret.
_FINGERPRINT_PREFIX = b"hmacguard key fingerprint v1\0"

KeyLookup: TypeAlias = Callable[[str], Union["HMACKey", Awaitable[Union["HMACKey", None]], None]]
Keys: TypeAlias = (
    Mapping[str, Union[bytes, bytearray, memoryview, str, "HMACKey"]]
    | Iterable["HMACKey"]
    | KeyLookup
)


def decode_secret(secret: bytes | bytearray | memoryview | str) -> bytes:
    """Return the raw bytes of a secret given as bytes or as base64 text.

    Text is decoded strictly as base64 (standard or URL-safe alphabet, padding
    optional); anything else is a ``ValueError``. The error never quotes the
    secret. Note that a passphrase made only of letters and digits is valid
    base64 and decodes to bytes of the same low entropy: pass random bytes.

    Two mistakes that would otherwise give another key, and a server answering
    ``invalid_signature`` to every request, are refused with a ``ValueError``:

    * text made only of hex digits (``secrets.token_hex(32)``, ``hmacguard
      keygen --format hex``): as base64 it decodes to other bytes. Pass
      ``bytes.fromhex(text)``, or base64 text.
    * bytes that are printable text ending in a line break
      (``Path("client-1.key").read_bytes()``): the bytes of the base64 text and
      its newline, not the key. Pass ``Path(...).read_text()`` (read as base64).
    """
    if isinstance(secret, (bytes, bytearray, memoryview)):
        raw = bytes(secret)
        if _TEXT_LINE.fullmatch(raw):
            raise ValueError(
                "the secret is bytes of text ending in a line break, as read_bytes() returns "
                "for a key file: pass the file's text instead (Path(...).read_text()), which "
                "is read as base64, or the raw secret bytes"
            )
        return raw
    if not isinstance(secret, str):
        raise TypeError(f"a secret is bytes or base64 text, not {type(secret).__name__}")
    # A Standard Webhooks secret ("whsec_" + base64) is base64 too, as the CLI
    # reads it; left on, "whsec_" would decode as URL-safe base64 into other bytes.
    text = secret.strip().removeprefix("whsec_")
    if _HEX_TEXT.fullmatch(text):
        raise ValueError(
            "a text secret is read as base64, and this one is all hex digits (read as base64 "
            "it would be another key): pass the bytes the other side uses as the key, "
            "bytes.fromhex(text) if it decodes the hex, text.encode() if it uses the "
            "characters themselves (as Slack's signing secret does), or base64 text"
        )
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        # validate=True refuses characters outside the alphabet instead of skipping them.
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ValueError("a text secret must be base64 (standard or URL-safe)") from None


def fingerprint(secret: bytes) -> str:
    """A short, non-secret name for a secret: 16 hex digits.

    The first 8 bytes of SHA-256 over a fixed prefix and the secret. Two parties
    compare fingerprints to learn whether they hold the same secret without
    showing it; the fingerprint does not reveal the secret (a random secret of 32
    bytes cannot be searched for from it).
    """
    return hashlib.sha256(_FINGERPRINT_PREFIX + secret).digest()[:8].hex()


def check_id(what: str, value: object) -> str:
    """Return ``value`` if it is a valid key id, nonce or tag, else raise.

    Raises:
        TypeError: not a ``str``.
        ValueError: empty, longer than ``MAX_ID_BYTES``, or not printable ASCII.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_ID_BYTES:
        raise ValueError(f"{what} is longer than {MAX_ID_BYTES} bytes")
    # It travels as an sf-string (RFC 9651 §3.3.3): printable ASCII only.
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"{what} must be printable ASCII")
    return value


def _swap_hint(key_id: str) -> str:
    """The end of an error about a secret: a question when the key id may be the secret.

    ``HMACKey(secret_text, "client-1")`` passes check_id (base64 is printable
    ASCII) and fails on "client-1" as the secret; the error must then name the
    mistake without quoting the key id, which is the real secret.
    """
    if len(key_id) < SECRET_TEXT_CHARS:
        return ""
    return (
        f"; a key id of {len(key_id)} characters may be a secret: did you swap key_id and secret?"
    )


def _keyed_states(secret: bytes, hash_name: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    """The inner and outer hash states of HMAC (RFC 2104 §2) after the padded key."""
    block = hashlib.new(hash_name).block_size
    # "Applications that use keys longer than B bytes will first hash the key."
    key = secret if len(secret) <= block else hashlib.new(hash_name, secret).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.new(hash_name, bytes(b ^ 0x36 for b in key))
    outer = hashlib.new(hash_name, bytes(b ^ 0x5C for b in key))
    return inner, outer


class HMACKey:
    """A shared secret with its key id and algorithm.

    Args:
        key_id: the ``keyid`` a signature names (printable ASCII, 1-256 bytes).
        secret: the raw secret bytes, or base64 text. At least 32 bytes for
            ``hmac-sha256`` and 64 for ``hmac-sha512`` (the hash output length,
            RFC 2104 §3).
        algorithm: ``"hmac-sha256"`` (default) or ``"hmac-sha512"``.

    Raises:
        ValueError: a short secret, an unknown algorithm or a bad key id.

    The secret never appears in ``repr``, ``str`` or any exception::

        >>> HMACKey("client-1", b"k" * 32)
        HMACKey(key_id='client-1', algorithm='hmac-sha256', secret=<hidden>)
    """

    __slots__ = ("_inner", "_outer", "_secret", "alg", "key_id")

    def __init__(
        self,
        key_id: str,
        secret: bytes | bytearray | memoryview | str,
        algorithm: str = "hmac-sha256",
    ) -> None:
        self.key_id: str = check_id("key_id", key_id)
        if isinstance(secret, str) and secret.strip() == key_id:
            # HMACAuth(secret, secret): the key id would carry the secret into
            # every request, log line and repr.
            raise ValueError("the key id and the secret are the same text: the key id is public")
        self.alg: HMACAlgorithm = get_algorithm(algorithm)
        try:
            raw = decode_secret(secret)
        except ValueError as exc:
            raise ValueError(f"{exc}{_swap_hint(key_id)}") from None
        minimum = self.alg.min_key_bytes
        if len(raw) < minimum:
            # The key id is not quoted: with the arguments swapped it is the secret.
            raise ValueError(
                f"the secret (given with a key id of {len(key_id)} characters) is {len(raw)} "
                f"bytes; {self.alg.name} needs at least {minimum} random bytes "
                f"(secrets.token_bytes({minimum})){_swap_hint(key_id)}"
            )
        self._secret = raw
        # RFC 2104 §2: HMAC(K, m) = H(K ^ opad || H(K ^ ipad || m)). The two
        # keyed hash states are computed once here and copied for each MAC,
        # instead of re-deriving the padded key every time as hmac.digest()
        # does (measured: a MAC over a 369-byte base in 1.6 µs instead of 3.7).
        self._inner, self._outer = _keyed_states(raw, self.alg.hash_name)

    @property
    def algorithm(self) -> str:
        """The RFC 9421 algorithm name, e.g. ``"hmac-sha256"``."""
        return self.alg.name

    @property
    def secret(self) -> bytes:
        """The raw secret bytes."""
        return self._secret

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming the secret, safe to log and compare (never the secret).

        Equal secrets have equal fingerprints; compare them between client and
        server, or with ``hmacguard fingerprint``, to find a key mismatch. The
        key id and algorithm are not part of it.
        """
        return fingerprint(self._secret)

    def mac(self, data: bytes) -> bytes:
        """Return the HMAC of ``data`` under this key."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def verify_mac(self, data: bytes, signature: bytes) -> bool:
        """Tell whether ``signature`` is the HMAC of ``data`` under this key.

        A signature that is not exactly the digest length fails (a truncated
        or extended MAC must never pass: CVE-2024-21491), after the same work
        as any other: the HMAC, then one constant-time comparison, which
        refuses unequal lengths itself (a separate length test first saved
        60 ns on the wrong length, a measurable difference).
        """
        return hmac.compare_digest(self.mac(data), signature)

    def __repr__(self) -> str:
        return f"HMACKey(key_id={self.key_id!r}, algorithm={self.alg.name!r}, secret=<hidden>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HMACKey):
            return NotImplemented
        return (
            self.key_id == other.key_id
            and self.alg is other.alg
            and hmac.compare_digest(self._secret, other._secret)
        )

    def __hash__(self) -> int:
        return hash((self.key_id, self.alg.name))

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("HMACKey holds a secret and is not picklable")


def _mapped_key(
    position: int, key_id: str, secret: bytes | bytearray | memoryview | str
) -> HMACKey:
    """The HMACKey of one ``{key_id: secret}`` entry; an error says which entry.

    HMACKey's errors never quote the key id (it may be a secret passed in its
    place), so the entry's position is what finds it in the mapping.
    """
    try:
        return HMACKey(key_id, secret)
    except ValueError as exc:
        raise ValueError(f"keys, entry {position}: {exc}") from None
    except TypeError as exc:
        raise TypeError(f"keys, entry {position}: {exc}") from None


def _note_key_error(key_id: str, exc: KeyError) -> None:
    """A resolver's ``KeyError`` means "unknown key", like None (THREATS K2: were
    some a 503, the difference would tell which key ids exist). One that does not
    name this key id (``os.environ["VAULT_TOKEN"]`` missing inside the resolver)
    is most likely a bug that would pass for an unknown key on every request:
    it is logged, naming what the ``KeyError`` said."""
    if exc.args != (key_id,):
        said = repr(exc.args[0]) if len(exc.args) == 1 else repr(exc.args)
        logger.warning(
            "hmacguard: the key resolver raised KeyError(%s), not KeyError(key_id): the "
            "request is refused as an unknown key; if the resolver's own lookup failed "
            "(a missing setting), fix it",
            said[:80],
        )


def _failed(key_id: str, exc: Exception) -> KeyLookupFailed:
    return KeyLookupFailed(f"key resolver raised {type(exc).__name__}", key_id=key_id)


class Keyring:
    """Resolves a key id to an :class:`HMACKey` for a verifier.

    ``keys`` is a mapping ``{key_id: secret}`` (secrets as bytes, base64 text or
    ``HMACKey``), an iterable of ``HMACKey``, or a callable ``key_id -> HMACKey |
    None`` that may be ``async`` (for keys held in a vault). Static keys are
    checked once, here; a callable's answers are checked on every lookup.
    """

    __slots__ = ("_dummy", "_is_async", "_keys", "_resolver")

    def __init__(self, keys: Keys) -> None:
        self._keys: dict[str, HMACKey] | None = None
        self._resolver: KeyLookup | None = None
        self._is_async = False
        # Used for a MAC computation when a key id is unknown, so that an unknown
        # key costs the same time as a bad MAC (THREATS K2).
        self._dummy = HMACKey("unknown", os.urandom(MIN_KEY_BYTES))
        if isinstance(keys, (str, bytes, bytearray, memoryview)):
            raise TypeError("keys must be a mapping, a list of HMACKey or a callable")
        if isinstance(keys, Mapping):
            self._keys = {}
            for position, (key_id, value) in enumerate(keys.items(), 1):
                key = value if isinstance(value, HMACKey) else _mapped_key(position, key_id, value)
                if key.key_id != key_id:
                    raise ValueError(f"mapping key {key_id!r} holds HMACKey {key.key_id!r}")
                self._keys[key_id] = key
        elif callable(keys):
            self._resolver = keys
            import inspect  # noqa: PLC0415  (only resolvers need it: `import hmacguard` stays light)

            call = getattr(keys, "__call__", None)  # noqa: B004  an object with async __call__
            self._is_async = inspect.iscoroutinefunction(keys) or inspect.iscoroutinefunction(call)
        elif isinstance(keys, Iterable):
            self._keys = {}
            for key in keys:
                if not isinstance(key, HMACKey):
                    raise TypeError(f"keys must hold HMACKey items, not {type(key).__name__}")
                if key.key_id in self._keys:
                    raise ValueError(f"key id {key.key_id!r} appears twice")
                self._keys[key.key_id] = key
        else:
            raise TypeError("keys must be a mapping, a list of HMACKey or a callable")
        if self._keys is not None and not self._keys:
            raise ValueError("keys is empty: no request could ever verify")

    def __repr__(self) -> str:
        if self._keys is not None:
            return f"Keyring(key_ids={sorted(self._keys)!r})"
        return f"Keyring(resolver={self._resolver!r})"

    @property
    def static_keys(self) -> Mapping[str, HMACKey] | None:
        """The keys by id when they were given up front, else None (a resolver)."""
        return self._keys

    @property
    def dummy(self) -> HMACKey:
        """A random key to spend a MAC on when the key id is unknown."""
        return self._dummy

    @property
    def is_async(self) -> bool:
        """True when the resolver is a coroutine function."""
        return self._is_async

    def holds(self, key_id: str) -> bool:
        """Whether ``key_id`` is one of the static keys (never asks a resolver)."""
        return self._keys is not None and key_id in self._keys

    def lookup(self, key_id: str) -> HMACKey | None:
        """Return the key for ``key_id``, or None when it is unknown.

        A resolver says "unknown" by returning None or raising ``KeyError``
        (a resolver written as ``keys[key_id]``). Were ``KeyError`` a 503
        while known ids get 401, the difference would tell which key ids
        exist (THREATS K2).

        Raises:
            KeyLookupFailed: the resolver raised, is async, or returned
                something other than an ``HMACKey`` with that id.
        """
        if self._keys is not None:
            return self._keys.get(key_id)
        assert self._resolver is not None  # noqa: S101  (set whenever _keys is None)
        try:
            found = self._resolver(key_id)
        except KeyError as exc:
            _note_key_error(key_id, exc)
            return None
        except Exception as exc:
            raise _failed(key_id, exc) from exc
        if isinstance(found, Awaitable):
            close = getattr(found, "close", None)
            if close is not None:
                close()  # do not leave "coroutine was never awaited" behind
            raise KeyLookupFailed("the key resolver is async: use averify()")
        return self._check(key_id, found)

    async def alookup(self, key_id: str) -> HMACKey | None:
        """Like :meth:`lookup`, awaiting an async resolver."""
        if self._keys is not None:
            return self._keys.get(key_id)
        assert self._resolver is not None  # noqa: S101  (set whenever _keys is None)
        try:
            found = self._resolver(key_id)
            if isinstance(found, Awaitable):
                found = await found
        except KeyError as exc:
            _note_key_error(key_id, exc)
            return None
        except Exception as exc:
            raise _failed(key_id, exc) from exc
        return self._check(key_id, found)

    @staticmethod
    def _check(key_id: str, found: object) -> HMACKey | None:
        if found is None:
            return None
        if not isinstance(found, HMACKey):
            raise KeyLookupFailed(
                f"key resolver returned {type(found).__name__}, not HMACKey", key_id=key_id
            )
        if found.key_id != key_id:
            raise KeyLookupFailed("key resolver returned a key with another key id", key_id=key_id)
        return found
