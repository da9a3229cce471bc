"""The request as the core sees it: a method, the parts of its URL, its headers.

Adapters hand the core plain values. This module turns them into one small
object without interpreting anything: the URL is split, never decoded, and
header lines are grouped by lowercased name, never merged or trimmed here (that
is canonicalisation, done in ``_components`` for the headers a signature
covers, and only for those).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias

__all__ = [
    "GOOD_HOSTS",
    "MAX_HOST_PORT",
    "MAX_LENGTH_DIGITS",
    "HeadersLike",
    "Message",
    "check_body",
    "collect_headers",
    "is_host_port",
    "normalise_authority",
    "split_url",
]

_Text: TypeAlias = str | bytes
HeadersLike: TypeAlias = (
    Mapping[str, str]
    | Mapping[bytes, bytes]
    | Iterable[tuple[str, str]]
    | Iterable[tuple[bytes, bytes]]
)

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
# scheme "://" authority path ["?" query] ["#" fragment]; nothing is decoded.
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]+)([^?#]*)(\?[^#]*)?")


def _text(value: str | bytes) -> str:
    # HTTP field values are octets; latin-1 maps each octet to one code point and
    # back, so nothing is lost and non-ASCII bytes stay detectable.
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


def check_body(body: object) -> None:
    """Raise ``TypeError`` unless ``body`` is None or bytes-like (bytes, bytearray,
    memoryview or another buffer), naming what was given and how to fix it."""
    if body is None or isinstance(body, (bytes, bytearray, memoryview)):
        return
    name = type(body).__name__
    if isinstance(body, str):
        hint = "encode it, e.g. body.encode()"
    elif isinstance(body, (dict, list)):
        hint = "serialize it, e.g. json.dumps(body).encode()"
    else:
        try:
            memoryview(body)  # type: ignore[arg-type]
        except TypeError:
            hint = "pass the exact bytes that are sent"
        else:
            return  # another buffer (array.array, mmap): bytes(body) reads it
    raise TypeError(f"body must be bytes (got {name}): {hint}")


def collect_headers(headers: HeadersLike | None) -> dict[str, list[str]]:
    """Group header lines by lowercased name, keeping every line in order.

    ``headers`` is a mapping or a sequence of ``(name, value)`` pairs, as ``str``
    or ``bytes``. A mapping with ``multi_items()`` (httpx) gives all its lines.
    """
    grouped: dict[str, list[str]] = {}
    if headers is None:
        return grouped
    if type(headers) is dict:
        # The common case: a plain dict, one line per name, no two names
        # differing only in case (checked by the length).
        grouped = {
            (k if type(k) is str else _text(k)).lower(): [v if type(v) is str else _text(v)]
            for k, v in headers.items()
        }
        if len(grouped) == len(headers):
            return grouped
        grouped = {}
    items: Iterable[tuple[_Text, _Text]]
    if isinstance(headers, Mapping):
        multi = getattr(headers, "multi_items", None)
        items = multi() if callable(multi) else headers.items()
    else:
        items = headers
    for name, value in items:
        key = (name if type(name) is str else _text(name)).lower()
        text = value if type(value) is str else _text(value)
        found = grouped.get(key)
        if found is None:
            grouped[key] = [text]
        else:
            found.append(text)
    return grouped


# RFC 9110 §7.2: Host = uri-host [ ":" port ], the host being a bracketed IPv6
# literal (with an RFC 6874 zone, "%25" and its name) or a name or IPv4 address
# made of RFC 3986's unreserved, pct-encoded and sub-delims characters, and the
# port 1 to 5 digits. Nothing else: a "/", "?", "#" or "@" would move part of
# the Host into the path, query, fragment or userinfo of the URL a signature is
# checked against (a signature for "GET /" would pass "GET /admin" sent with
# "Host: example.com#"), an empty Host names no authority, and "host:" would
# be the same authority as "host" to the signature but not to the app.
_HOST_PORT = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+(?:%25[0-9A-Za-z._~-]+)?\]|[0-9A-Za-z.!$&'()*+,;=~_%-]+)"
    r"(?::[0-9]{1,5})?"
)
MAX_HOST_PORT = 262  # RFC 1035 names are at most 253 characters, plus ":" and a port
#: The most digits a ``Content-Length`` read as a size may have: it fits 64 bits.
MAX_LENGTH_DIGITS = 18
#: Values :func:`is_host_port` found well formed: a server's usual Host costs a
#: dict lookup, not a match. Bounded, since Host values come from clients.
GOOD_HOSTS: dict[str, None] = {}
_GOOD_HOSTS_SIZE = 64


def is_host_port(text: str) -> bool:
    """Whether ``text`` is a well-formed ``host[:port]`` (RFC 9110 §7.2).

    >>> [is_host_port(t) for t in ("api.example:8443", "[::1]", "a.example#", "a.example:")]
    [True, True, False, False]
    """
    if text in GOOD_HOSTS:
        return True
    if len(text) > MAX_HOST_PORT or _HOST_PORT.fullmatch(text) is None:
        return False
    if len(GOOD_HOSTS) >= _GOOD_HOSTS_SIZE:
        GOOD_HOSTS.clear()
    GOOD_HOSTS[text] = None
    return True


def normalise_authority(authority: str, scheme: str) -> str:
    """Lowercase a host[:port], dropping userinfo and the scheme's default port.

    RFC 9421 §2.2.3: "The value MUST be normalized according to the rules in
    Section 4.2.3 of [HTTP]", i.e. lowercase host, default port omitted.
    """
    if ":" not in authority and "@" not in authority:
        return authority.lower()
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
    match = _URL.match(url if type(url) is str else _text(url))
    if match is None:
        raise ValueError("url must be absolute: scheme://authority/path?query")
    scheme, authority, path, query = match.groups()
    scheme = scheme.lower()
    if query is not None:
        query = query[1:]
    # RFC 9421 §2.2.6: "An empty path string is normalized as a single slash".
    return scheme, normalise_authority(authority, scheme), path or "/", query


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
