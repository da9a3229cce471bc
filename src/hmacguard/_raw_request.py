"""Where a captured request is read: raw HTTP/1.1, as ``curl -v``, a proxy or a log shows it.

:func:`parse_request` turns the bytes into a :class:`RawRequest` (method,
target, header lines with their line numbers, body), and :func:`request_url`
rebuilds the absolute URL a client signed, the way the middleware rebuilds it
from a server's scope. Input that cannot be read raises :class:`RequestError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._message import MAX_LENGTH_DIGITS, is_host_port

__all__ = ["RawRequest", "RequestError", "Target", "parse_request", "request_url"]


class RequestError(ValueError):
    """The input is not a request that can be read; the message says where."""


_REQUEST_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/\d(?:\.\d)?)")
_CURL_REQUEST_LINE = re.compile(r"> ?[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/\d")
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SCHEME_TEXT = r"[A-Za-z][A-Za-z0-9+.-]*"  # RFC 3986 §3.1
_SCHEME = re.compile(_SCHEME_TEXT)
_ABSOLUTE = re.compile(rf"({_SCHEME_TEXT})://([^/?#]*)(.*)", re.DOTALL)


@dataclass
class RawRequest:
    """A request read from a capture: what ``verify`` checks, with line numbers."""

    method: str
    target: str
    version: str
    line: int  # the request line's number in the input (1-based)
    headers: list[tuple[str, str]]
    header_lines: list[int]  # each header's line number
    body: bytes
    from_curl: bool = False
    notes: list[str] = field(default_factory=list)

    def lines_of(self, name: str) -> list[int]:
        """The input line numbers of the header ``name`` (any case)."""
        wanted = name.lower()
        return [
            n
            for (h, _), n in zip(self.headers, self.header_lines, strict=True)
            if h.lower() == wanted
        ]

    def header(self, name: str) -> list[str]:
        """The values of the header ``name``, one per line."""
        wanted = name.lower()
        return [v for h, v in self.headers if h.lower() == wanted]


def _decode_chunked(data: bytes) -> bytes:
    out = bytearray()
    rest = data
    while True:
        size_line, sep, rest = rest.partition(b"\n")
        text = size_line.strip().split(b";", 1)[0]
        if not sep or not re.fullmatch(rb"[0-9A-Fa-f]+", text):
            raise RequestError("Transfer-Encoding: chunked, but the body is not valid chunked data")
        size = int(text, 16)
        if size == 0:
            return bytes(out)
        if len(rest) < size:
            raise RequestError("the chunked body is shorter than its chunk sizes say")
        out += rest[:size]
        rest = rest[size:]
        rest = (
            rest[2:] if rest.startswith(b"\r\n") else rest[1:] if rest.startswith(b"\n") else rest
        )


def parse_request(data: bytes) -> RawRequest:
    """Read a raw HTTP/1.1 request: a request line, header lines, a blank line, the body.

    Line ends may be CRLF or LF. ``curl -v`` output is accepted too: its
    ``> ``-prefixed lines are the request (curl does not show the body).
    Only the head, the lines before the first blank line, decides which of
    the two the input is: a body quoting a ``curl -v`` trace stays a body.

    Raises:
        RequestError: no request line, a malformed header line, or a body that
            disagrees with ``Content-Length`` or chunked framing.
    """
    text = data.decode("latin-1")  # octets as code points: nothing is lost
    lines = text.split("\n")
    if any(_CURL_REQUEST_LINE.match(line) for line in _head_lines(lines)):
        return _parse_curl(lines)
    # RFC 9112 §2.2: a server "SHOULD ignore at least one empty line (CRLF)
    # received prior to the request-line".
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start == len(lines):
        raise RequestError("no request found: the input is empty")
    offset = sum(len(line) + 1 for line in lines[:start])
    head_end = len(text)
    body_start = len(text)
    for sep in ("\r\n\r\n", "\n\n", "\n\r\n"):
        found = text.find(sep, offset)
        if found != -1 and found < head_end:
            head_end, body_start = found, found + len(sep)
    head = text[offset:head_end].split("\n")
    numbered = [(start + i + 1, line.removesuffix("\r")) for i, line in enumerate(head)]
    request = _parse_head(numbered, from_curl=False)
    request.body = _frame_body(request, data[body_start:])
    return request


def _head_lines(lines: list[str]) -> list[str]:
    """The lines of the head: from the first non-blank line to the first empty one.

    The head ends where a raw request's body starts (an empty line, CRLF or
    LF). A ``curl -v`` trace has no empty line before its ``> `` request
    lines (``*``, ``{``/``}`` and ``Note:`` lines may come first); in a raw
    request a ``> `` line can only be in the body, which is not read for it.
    """
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = start
    while end < len(lines) and lines[end] not in ("", "\r"):
        end += 1
    return lines[start:end]


def _parse_curl(lines: list[str]) -> RawRequest:
    numbered: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, 1):
        line = raw.removesuffix("\r")
        if not line.startswith(">"):
            if numbered:
                break
            continue
        content = line[2:] if line.startswith("> ") else line[1:]
        if not content.strip():
            break  # the blank line that ends the request head
        numbered.append((number, content))
    request = _parse_head(numbered, from_curl=True)
    request.notes.append("curl -v shows no body: give it with --body-file if there is one")
    return request


def _parse_head(numbered: list[tuple[int, str]], *, from_curl: bool) -> RawRequest:
    if not numbered:
        raise RequestError("no request found: expected 'METHOD /target HTTP/1.1' on the first line")
    number, first = numbered[0]
    match = _REQUEST_LINE.fullmatch(first)
    if match is None:
        raise RequestError(
            f"line {number} is not a request line: expected 'METHOD /target HTTP/1.1', "
            f"got {first[:80]!r}"
        )
    method, target, version = match.groups()
    headers: list[tuple[str, str]] = []
    header_lines: list[int] = []
    for number, line in numbered[1:]:
        if line[:1] in (" ", "\t"):
            # RFC 9112 §5.2 obs-fold: the core unfolds it (RFC 9421 §2.1).
            if not headers:
                raise RequestError(f"line {number} continues a header, but none precedes it")
            name, value = headers[-1]
            headers[-1] = (name, value + "\r\n" + line.rstrip(" \t"))
            continue
        name, colon, value = line.partition(":")
        # RFC 9112 §5.1: "No whitespace is allowed between the field name and colon."
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise RequestError(f"line {number} is not a header line ('Name: value'): {line[:80]!r}")
        # RFC 9112 §5.1: the field value excludes leading and trailing whitespace.
        headers.append((name, value.strip(" \t")))
        header_lines.append(number)
    return RawRequest(
        method, target, version, numbered[0][0], headers, header_lines, b"", from_curl
    )


def _frame_body(request: RawRequest, rest: bytes) -> bytes:
    encodings = ",".join(request.header("transfer-encoding")).lower()
    if "chunked" in encodings:
        body = _decode_chunked(rest)
        request.notes.append(f"body: {len(body)} bytes, decoded from chunked framing")
        return body
    lengths = {v.strip() for v in request.header("content-length")}
    if len(lengths) > 1:
        raise RequestError("Content-Length is given twice with different values")
    if lengths:
        (text,) = lengths
        # As the server reads it (RFC 9110 §8.6): ASCII digits only, at most
        # MAX_LENGTH_DIGITS of them; int() refuses more than 4300 digits.
        if not (text.isascii() and text.isdigit()):
            raise RequestError(f"Content-Length is not a number: {text[:40]!r}")
        if len(text) > MAX_LENGTH_DIGITS:
            raise RequestError(
                f"Content-Length has {len(text)} digits, more than {MAX_LENGTH_DIGITS}: "
                f"{text[:40]!r}"
            )
        size = int(text)
        if len(rest) < size:
            raise RequestError(
                f"the body has {len(rest)} bytes but Content-Length says {size}: "
                "the capture is incomplete (or its line ends were converted)"
            )
        if len(rest) > size:
            request.notes.append(
                f"body: {size} bytes (Content-Length); {len(rest) - size} trailing bytes ignored"
            )
        return rest[:size]
    if rest:
        request.notes.append(
            f"body: no Content-Length, so every byte after the blank line ({len(rest)} bytes)"
        )
    return rest


@dataclass
class Target:
    """The absolute URL rebuilt from a request, and where its parts came from."""

    url: str
    scheme_from: str
    authority_from: str
    raw_authority: str


def request_url(request: RawRequest, scheme: str | None, authority: str | None) -> Target:
    """Rebuild the absolute URL the signer signed, from the request line and Host.

    Raises:
        RequestError: no usable Host header for an origin-form target, or a
            target form that requests do not sign (``*``, authority-form).
    """
    # The server's own checks (SignatureMiddleware): a value that is not a
    # host[:port], or a "#" in the target, would be split differently once put
    # into a URL than the server would ever take it.
    if scheme is not None and _SCHEME.fullmatch(scheme) is None:
        raise RequestError(f"--scheme {scheme[:40]!r} is not a URL scheme, e.g. https")
    if authority is not None and not is_host_port(authority):
        raise RequestError(f"--authority {authority[:80]!r} is not a host[:port]")
    target = request.target
    if "#" in target:
        raise RequestError(f"the request target {target[:80]!r} holds a '#': nothing sends one")
    absolute = _ABSOLUTE.fullmatch(target)
    line = f"line {request.line}"
    if absolute is not None:
        # RFC 9112 §3.2.2 absolute-form, as sent to a proxy.
        own_scheme, own_authority, rest = absolute.groups()
        used_scheme = scheme or own_scheme
        scheme_from = "--scheme" if scheme else f"the absolute-form target ({line})"
        if authority is not None:
            return Target(
                f"{used_scheme}://{authority}{rest}", scheme_from, "--authority", authority
            )
        if not is_host_port(own_authority):
            raise RequestError(
                f"the target's authority {own_authority[:80]!r} is not a host[:port]"
            )
        return Target(
            f"{used_scheme}://{own_authority}{rest}",
            scheme_from,
            f"the absolute-form target ({line})",
            own_authority,
        )
    if not target.startswith("/"):
        raise RequestError(
            f"the request target {target[:80]!r} is not origin-form ('/path?query') or "
            "absolute-form ('https://host/path'): nothing to verify"
        )
    used_scheme = scheme or "https"
    scheme_from = "--scheme" if scheme else "the default, https (change it with --scheme)"
    if authority is not None:
        return Target(f"{used_scheme}://{authority}{target}", scheme_from, "--authority", authority)
    hosts = request.header("host")
    if not hosts:
        raise RequestError("the request has no Host header: give the authority with --authority")
    if len(hosts) > 1:
        raise RequestError(
            "the request has several Host headers: give the authority with --authority"
        )
    host = hosts[0].strip(" \t")
    if not is_host_port(host):
        raise RequestError(f"the Host header {host[:80]!r} is not a host[:port]")
    lines = request.lines_of("host")
    return Target(
        f"{used_scheme}://{host}{target}", scheme_from, f"the Host header (line {lines[0]})", host
    )
