"""The request as the core sees it: a method, the parts of its URL, its headers.

Adapters hand the core plain values. This module turns them into one small
object without interpreting anything: the URL is split, never decoded, and
header lines are grouped by lowercased name, never merged or trimmed here (that
is canonicalisation, done in ``_components`` for the headers a signature
covers, and only for those).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

__all__ = ["HeadersLike", "Message", "collect_headers", "normalise_authority", "split_url"]

_Text: TypeAlias = str | bytes
HeadersLike: TypeAlias = Mapping[_Text, _Text] | Iterable[tuple[_Text, _Text]]

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _text(value: str | bytes) -> str:
    # HTTP field values are octets; latin-1 maps each octet to one code point and
    # back, so nothing is lost and non-ASCII bytes stay detectable.
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


def collect_headers(headers: HeadersLike | None) -> dict[str, list[str]]:
    """Group header lines by lowercased name, keeping every line in order.

    ``headers`` is a mapping or a sequence of ``(name, value)`` pairs, as ``str``
    or ``bytes``. A mapping with ``multi_items()`` (httpx) gives all its lines.
    """
    grouped: dict[str, list[str]] = {}
    if headers is None:
        return grouped
    items: Iterable[tuple[_Text, _Text]]
    if isinstance(headers, Mapping):
        multi = getattr(headers, "multi_items", None)
        items = multi() if callable(multi) else headers.items()
    else:
        items = headers
    for name, value in items:
        key = _text(name).lower()
        found = grouped.get(key)
        if found is None:
            grouped[key] = [_text(value)]
        else:
            found.append(_text(value))
    return grouped


def normalise_authority(authority: str, scheme: str) -> str:
    """Lowercase a host[:port], dropping userinfo and the scheme's default port.

    RFC 9421 §2.2.3: "The value MUST be normalized according to the rules in
    Section 4.2.3 of [HTTP]", i.e. lowercase host, default port omitted.
    """
    at = authority.rfind("@")
    if at != -1:
        authority = authority[at + 1 :]
    authority = authority.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is not None and authority.endswith(default):
        authority = authority[: -len(default)]
    elif authority.endswith(":"):
        authority = authority[:-1]
    return authority


def split_url(url: str | bytes) -> tuple[str, str, str, str | None]:
    """Split an absolute URL into ``(scheme, authority, path, query)``.

    Nothing is decoded: path and query stay exactly as sent, percent-escapes
    included (RFC 9421 §2.2.6, §2.2.7). ``query`` is None when the URL has no
    ``?``. A fragment is not part of the request target and is dropped. The
    authority is normalised; an empty path becomes ``/``.

    Raises:
        ValueError: the URL is not absolute (``scheme://authority...``).
    """
    text = _text(url)
    sep = text.find("://")
    if sep <= 0:
        raise ValueError("url must be absolute: scheme://authority/path?query")
    scheme = text[:sep].lower()
    start = sep + 3
    end = len(text)
    hash_at = text.find("#", start)
    if hash_at != -1:
        end = hash_at
    query: str | None = None
    q_at = text.find("?", start, end)
    if q_at != -1:
        query = text[q_at + 1 : end]
        end = q_at
    slash = text.find("/", start, end)
    if slash == -1:
        authority, path = text[start:end], "/"
    else:
        authority, path = text[start:slash], text[slash:end]
    if not authority:
        raise ValueError("url must be absolute: scheme://authority/path?query")
    return scheme, normalise_authority(authority, scheme), path, query


class Message:
    """A request: method, URL parts and headers, ready for canonicalisation."""

    __slots__ = ("authority", "headers", "method", "path", "query", "scheme")

    def __init__(self, method: str | bytes, url: str | bytes, headers: HeadersLike | None) -> None:
        self.method = _text(method)
        self.scheme, self.authority, self.path, self.query = split_url(url)
        self.headers = collect_headers(headers)

    def header(self, name: str) -> str | None:
        """All lines of a header joined with ``", "`` as received, or None."""
        lines = self.headers.get(name)
        if lines is None:
            return None
        return lines[0] if len(lines) == 1 else ", ".join(lines)
