"""The ``hmacguard`` command: keygen, digest, sign, verify (with ``--explain``) and demo.

Only the standard library is imported here, so ``hmacguard --help`` and the
four offline subcommands start fast and work without any extra; ``demo``
imports httpx, starlette and uvicorn when it runs (``hmacguard[demo]``).

Exit codes, for every subcommand: 0 success (``verify``: the signature is
valid), 1 ``verify``: the request is rejected (``demo``: an outcome differed
from the script), 2 a usage error or input that cannot be read or parsed.

Secrets are read from ``--secret``, ``--secret-file`` or ``HMACGUARD_SECRET``
and never printed: not in output, errors or ``--explain``.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ._components import Component, component_from_spec, component_value
from ._content_digest import (
    ACTIVE_ALGORITHMS,
    make_content_digest,
    parse_content_digest,
    verify_content_digest,
)
from ._errors import (
    Expired,
    InvalidParameters,
    MalformedSignature,
    NotYetValid,
    VerificationError,
)
from ._keys import HMACKey
from ._message import Message
from ._signature_base import build_signature_base
from ._signature_fields import Candidate
from ._signer import Signer
from ._verifier import Verifier

__all__ = ["main", "parse_request"]

SECRET_ENV = "HMACGUARD_SECRET"  # noqa: S105  (a variable name, not a secret)
DEMO_PIP = 'pip install "hmacguard[demo]"'

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

_EXIT_CODES = """\
exit codes:
  0  success (verify: the signature is valid)
  1  verify: the request is rejected; demo: an outcome differed from the script
  2  usage error, unreadable input or a request that cannot be parsed"""

_SECRET_HELP = (
    "secrets: --secret S (base64; visible to other local users in the process list), "
    f"--secret-file F (safer), or the {SECRET_ENV} environment variable. "
    "A secret is never printed."
)


class CLIError(Exception):
    """A usage or input error: printed as ``hmacguard: error: ...``, exit 2."""


# -- secrets -------------------------------------------------------------------


def _secret_text(args: argparse.Namespace) -> str:
    """The secret's text from --secret, --secret-file or $HMACGUARD_SECRET (in that order)."""
    if args.secret is not None and args.secret_file is not None:
        raise CLIError("give --secret or --secret-file, not both")
    if args.secret_file is not None:
        try:
            text = Path(args.secret_file).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            # The reason only (no content): the file holds a secret.
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
            raise CLIError(f"cannot read --secret-file {args.secret_file}: {reason}") from None
    elif args.secret is not None:
        text = args.secret
    else:
        text = os.environ.get(SECRET_ENV, "")
        if not text:
            raise CLIError(f"no secret: pass --secret-file F, --secret S, or set {SECRET_ENV}")
    return text.strip()


def _load_key(args: argparse.Namespace) -> HMACKey:
    text = _secret_text(args)
    # A Standard Webhooks secret ("whsec_" + base64) is base64 too.
    text = text.removeprefix("whsec_")
    try:
        return HMACKey(args.key_id, text, args.algorithm)
    except (TypeError, ValueError) as exc:  # the messages never quote the secret
        raise CLIError(f"bad key: {exc}") from None


# -- keygen --------------------------------------------------------------------


def _cmd_keygen(args: argparse.Namespace, out: TextIO) -> int:
    size: int = args.bytes
    if args.format == "whsec":
        if not 24 <= size <= 64:
            raise CLIError("--format whsec takes 24 to 64 bytes (Standard Webhooks)")
    elif not 32 <= size <= 1024:
        raise CLIError("--bytes must be 32 to 1024 (hmac-sha256 needs 32, hmac-sha512 64)")
    raw = secrets.token_bytes(size)
    if args.format == "hex":
        text = raw.hex()
    else:
        text = base64.b64encode(raw).decode("ascii")
        if args.format == "whsec":
            text = "whsec_" + text
    out.write(text + "\n")
    return EXIT_OK


# -- digest --------------------------------------------------------------------


def _read_input(path: str, what: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read {what} {path}: {exc.strerror}") from None


def _cmd_digest(args: argparse.Namespace, out: TextIO) -> int:
    body = _read_input(args.file, "file")
    out.write(make_content_digest(body, args.alg) + "\n")
    return EXIT_OK


# -- sign ----------------------------------------------------------------------


def _header_pair(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or any(c in name for c in " \t"):
        raise CLIError(f"-H takes 'Name: value', not {text!r}")
    return name, value.strip(" \t")


def _cmd_sign(args: argparse.Namespace, out: TextIO) -> int:
    key = _load_key(args)
    headers = [_header_pair(h) for h in args.header]
    body: bytes | None = None
    if args.data is not None:
        body = args.data.encode("utf-8")
    elif args.data_file is not None:
        body = _read_input(args.data_file, "--data-file")
    signer = Signer(key)
    try:
        added = signer.sign(args.method, args.url, headers, body, now=args.now)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if not args.curl:
        for name, value in added.items():
            out.write(f"{name}: {value}\n")
        return EXIT_OK
    out.write(curl_command(args.method, args.url, [*headers, *added.items()], args) + "\n")
    return EXIT_OK


def curl_command(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    args: argparse.Namespace | None = None,
    *,
    data: bytes | None = None,
) -> str:
    """A ``curl`` command line sending exactly this request (one line, shell-quoted)."""
    words = ["curl"]
    has_body = data is not None or (
        args is not None and (args.data is not None or args.data_file is not None)
    )
    if method != ("POST" if has_body else "GET"):
        words += ["-X", method]
    if re.search(r"[\[\]{}]", url):
        words.append("--globoff")  # curl would expand [] and {} in the URL
    if "/." in url:
        words.append("--path-as-is")  # curl would squash dot segments
    words.append(url)
    for name, value in headers:
        words += ["-H", f"{name}: {value}"]
    if data is not None:
        words += ["--data-binary", data.decode("utf-8")]
    elif args is not None and args.data is not None:
        words += ["--data-binary", args.data]
    elif args is not None and args.data_file is not None:
        words += ["--data-binary", "@" + args.data_file]
    return " ".join(shlex.quote(w) for w in words)


# -- reading a raw request -----------------------------------------------------

_REQUEST_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/\d(?:\.\d)?)")
_CURL_REQUEST_LINE = re.compile(r"> ?[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/\d")
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PARAMS_ID = '"@signature-params"'
_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)


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
            raise CLIError("Transfer-Encoding: chunked, but the body is not valid chunked data")
        size = int(text, 16)
        if size == 0:
            return bytes(out)
        if len(rest) < size:
            raise CLIError("the chunked body is shorter than its chunk sizes say")
        out += rest[:size]
        rest = rest[size:]
        rest = (
            rest[2:] if rest.startswith(b"\r\n") else rest[1:] if rest.startswith(b"\n") else rest
        )


def parse_request(data: bytes) -> RawRequest:
    """Read a raw HTTP/1.1 request: a request line, header lines, a blank line, the body.

    Line ends may be CRLF or LF. ``curl -v`` output is accepted too: its
    ``> ``-prefixed lines are the request (curl does not show the body).

    Raises:
        CLIError: no request line, a malformed header line, or a body that
            disagrees with ``Content-Length`` or chunked framing.
    """
    text = data.decode("latin-1")  # octets as code points: nothing is lost
    lines = text.split("\n")
    if any(_CURL_REQUEST_LINE.match(line) for line in lines):
        return _parse_curl(lines)
    # RFC 9112 §2.2: a server "SHOULD ignore at least one empty line (CRLF)
    # received prior to the request-line".
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start == len(lines):
        raise CLIError("no request found: the input is empty")
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
        raise CLIError("no request found: expected 'METHOD /target HTTP/1.1' on the first line")
    number, first = numbered[0]
    match = _REQUEST_LINE.fullmatch(first)
    if match is None:
        raise CLIError(
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
                raise CLIError(f"line {number} continues a header, but none precedes it")
            name, value = headers[-1]
            headers[-1] = (name, value + "\r\n" + line.rstrip(" \t"))
            continue
        name, colon, value = line.partition(":")
        # RFC 9112 §5.1: "No whitespace is allowed between the field name and colon."
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise CLIError(f"line {number} is not a header line ('Name: value'): {line[:80]!r}")
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
        raise CLIError("Content-Length is given twice with different values")
    if lengths:
        (text,) = lengths
        if not text.isdigit():
            raise CLIError(f"Content-Length is not a number: {text[:40]!r}")
        size = int(text)
        if len(rest) < size:
            raise CLIError(
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
        CLIError: no usable Host header for an origin-form target, or a
            target form that requests do not sign (``*``, authority-form).
    """
    target = request.target
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
        return Target(
            f"{used_scheme}://{own_authority}{rest}",
            scheme_from,
            f"the absolute-form target ({line})",
            own_authority,
        )
    if not target.startswith("/"):
        raise CLIError(
            f"the request target {target[:80]!r} is not origin-form ('/path?query') or "
            "absolute-form ('https://host/path'): nothing to verify"
        )
    used_scheme = scheme or "https"
    scheme_from = "--scheme" if scheme else "the default, https (change it with --scheme)"
    if authority is not None:
        return Target(f"{used_scheme}://{authority}{target}", scheme_from, "--authority", authority)
    hosts = request.header("host")
    if not hosts:
        raise CLIError("the request has no Host header: give the authority with --authority")
    if len(hosts) > 1:
        raise CLIError("the request has several Host headers: give the authority with --authority")
    host = hosts[0].strip(" \t")
    if not host or any(c in host for c in "/?# \t\r\n"):
        raise CLIError(f"the Host header {host[:80]!r} is not a host[:port]")
    lines = request.lines_of("host")
    return Target(
        f"{used_scheme}://{host}{target}", scheme_from, f"the Host header (line {lines[0]})", host
    )


# -- verify --------------------------------------------------------------------


def _verifier(args: argparse.Namespace, key: HMACKey) -> Verifier:
    try:
        return Verifier(
            [key],
            max_age=args.max_age,
            clock_skew=args.clock_skew,
            require_nonce=not args.no_nonce,
            allow_long_max_age=True,  # an operator's tool: their window, their call
        )
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    key = _load_key(args)
    verifier = _verifier(args, key)
    request = parse_request(_read_input(args.request, "--request"))
    if args.body_file is not None:
        request.body = _read_input(args.body_file, "--body-file")
        request.notes.append(f"body: {len(request.body)} bytes from --body-file")
    target = request_url(request, args.scheme, args.authority)
    now = time.time() if args.now is None else args.now
    try:
        verified = verifier.verify(
            request.method, target.url, request.headers, request.body, now=now
        )
    except VerificationError as error:
        if args.explain:
            Explainer(request, target, verifier, key, now, args.now is not None, out).run()
        out.write(f"INVALID: {error.reason} (HTTP {error.status}): {error.detail}\n")
        if not args.explain:
            out.write("run again with --explain to see the signature base and every check\n")
        return EXIT_INVALID
    if args.explain:
        Explainer(request, target, verifier, key, now, args.now is not None, out).run()
    out.write(
        f"VALID: signature {verified.label!r} by key {verified.key_id!r}, "
        f"created {verified.created}, covers {' '.join(verified.components)}\n"
    )
    return EXIT_OK


# -- verify --explain ------------------------------------------------------------


@dataclass
class Check:
    """One policy check of one signature, as ``--explain`` reports it."""

    name: str
    ok: bool | None  # None: not evaluated
    text: str
    reason: str | None = None


class Explainer:
    """The operator's view of a verification: what the verifier computed, and why.

    It reruns the verifier's own steps (reading the signature fields,
    checking parameters and time, building the base, the MAC, coverage and
    the body digest) with the core's functions, and prints each result; it
    never canonicalises anything itself. The verdict printed after it is the
    one :meth:`Verifier.verify` returned.
    """

    def __init__(
        self,
        request: RawRequest,
        target: Target,
        verifier: Verifier,
        key: HMACKey,
        now: float,
        fixed_now: bool,
        out: TextIO,
    ) -> None:
        self.request = request
        self.target = target
        self.verifier = verifier
        self.key = key
        self.now = now
        self.fixed_now = fixed_now
        self.out = out
        self.message = Message(request.method, target.url, request.headers)

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def run(self) -> None:
        request, message = self.request, self.message
        self.say("request")
        self.say(f"  line {request.line}: {request.method} {request.target} {request.version}")
        self.say(f"  url: {self.target.url}")
        self.say(f"    scheme {message.scheme!r}: {self.target.scheme_from}")
        authority_note = ""
        if message.authority != self.target.raw_authority:
            authority_note = f" (normalised from {self.target.raw_authority!r})"
        self.say(
            f"    authority {message.authority!r}: {self.target.authority_from}{authority_note}"
        )
        self.say(f"  headers: {len(request.headers)}; body: {len(request.body)} bytes")
        for note in request.notes:
            self.say(f"  note: {note}")
        verifier = self.verifier
        required = " ".join(verifier.required_components)
        if verifier.requires_digest_with_body:
            required += " (+ content-digest when there is a body)"
        self.say(
            f"  policy: max_age {verifier._max_age} s, clock_skew {verifier._clock_skew} s, "
            f"nonce {'required' if verifier.require_nonce else 'optional'}, "
            f"required components {required}"
        )
        when = "--now" if self.fixed_now else "this machine's clock"
        self.say(f"  now: {self.now:.0f} ({when})")
        try:
            candidates = verifier._candidates(message)
        except VerificationError as exc:
            self.say()
            self.say("checks")
            self._show([Check("structure", False, exc.detail, exc.reason)])
            present = [
                n for n in ("Signature-Input", "Signature") if message.headers.get(n.lower())
            ]
            if exc.reason == "missing_signature":
                names = sorted({h.lower() for h, _ in request.headers})
                self.say(f"  the request's headers: {', '.join(names) or '(none)'}")
            elif present:
                self.say(f"  present: {', '.join(present)}")
            return
        for number, candidate in enumerate(candidates, 1):
            self.say()
            self.say(f"signature {candidate.label!r} ({number} of {len(candidates)})")
            self._candidate(candidate)
        self.say()
        self.say("replay: not checked here (the CLI keeps no nonce store; a server does)")

    def _show(self, checks: list[Check]) -> None:
        stopped = False
        for check in checks:
            mark = "  --  " if check.ok is None else "  ok  " if check.ok else "  FAIL"
            suffix = ""
            if check.ok is False and not stopped:
                suffix = f"  <- {check.reason}: the verifier stops here"
                stopped = True
            elif check.ok is False:
                suffix = f"  ({check.reason}; shown for diagnosis)"
            self.say(f"{mark} {check.name:<11} {check.text}{suffix}")

    def _candidate(self, candidate: Candidate) -> None:
        if candidate.error is not None:
            self._show([Check("structure", False, candidate.error.detail, candidate.error.reason)])
            return
        checks = [
            Check(
                "structure",
                True,
                "Signature-Input and Signature parse; covers "
                + " ".join(c.identifier for c in candidate.covered.components),
            )
        ]
        params = candidate.params
        try:
            self.verifier._check_parameters(candidate, self.now)
            params_error: VerificationError | None = None
        except VerificationError as exc:
            params_error = exc
        shown = ";".join(
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in params.items()
        )
        if isinstance(params_error, (InvalidParameters, MalformedSignature)):
            checks.append(Check("parameters", False, params_error.detail, params_error.reason))
        else:
            checks.append(Check("parameters", True, shown))
        checks.append(self._time_check(params, params_error))
        checks.append(self._key_check(params))
        base, base_check = self._base(candidate)
        checks.append(base_check)
        checks.append(self._alg_check(params))
        checks.append(self._mac_check(candidate, base))
        checks.append(self._coverage_check(candidate))
        checks.append(self._digest_check(candidate))
        self._show(checks)
        self._show_base(candidate, base)

    def _time_check(self, params: dict[str, object], error: VerificationError | None) -> Check:
        created = params.get("created")
        expires = params.get("expires")
        if type(created) is not int:
            return Check("time", None, "no valid created parameter to check")
        v = self.verifier
        age = self.now - created
        text = (
            f"created {created}, now {self.now:.0f}: age {age:.0f} s; accepted for "
            f"-{v._clock_skew} s <= age <= {v._max_age} s (clock_skew, max_age)"
        )
        if type(expires) is int:
            text += f"; expires {expires} ({expires - self.now:+.0f} s from now)"
        if isinstance(error, (Expired, NotYetValid)):
            return Check("time", False, text, error.reason)
        if created > self.now + v._clock_skew:
            return Check("time", False, text, "not_yet_valid")
        if age > v._max_age or (type(expires) is int and self.now > expires):
            return Check("time", False, text, "expired")
        return Check("time", True, text)

    def _key_check(self, params: dict[str, object]) -> Check:
        keyid = params.get("keyid")
        if keyid == self.key.key_id:
            return Check(
                "key", True, f"keyid {keyid!r} is the --key-id given ({self.key.algorithm})"
            )
        return Check(
            "key",
            False,
            f"the signature names keyid {keyid!r}, the --key-id given is {self.key.key_id!r} "
            "(the MAC below is still checked with the secret given)",
            "unknown_key",
        )

    def _base(self, candidate: Candidate) -> tuple[bytes | None, Check]:
        components = candidate.covered.components
        try:
            base = build_signature_base(self.message, components, candidate.signature_params)
        except VerificationError as exc:
            return None, Check("components", False, exc.detail, exc.reason)
        return base, Check(
            "components", True, f"all {len(components)} covered components are in the request"
        )

    def _alg_check(self, params: dict[str, object]) -> Check:
        alg = params.get("alg")
        if alg is None:
            return Check("alg", True, f"no alg parameter: the key's {self.key.algorithm} applies")
        if alg == self.key.algorithm:
            return Check("alg", True, f"alg {alg!r} is the key's algorithm")
        return Check(
            "alg",
            False,
            f"alg {alg!r} disagrees with the key's {self.key.algorithm}",
            "invalid_parameters",
        )

    def _mac_check(self, candidate: Candidate, base: bytes | None) -> Check:
        size = self.key.alg.digest_size
        got = len(candidate.signature)
        if base is None:
            return Check("MAC", None, "not computed: there is no signature base")
        if got != size:
            return Check(
                "MAC",
                False,
                f"the Signature is {got} bytes; {self.key.algorithm} MACs are {size}",
                "invalid_signature",
            )
        if self.key.verify_mac(base, candidate.signature):
            return Check("MAC", True, f"{self.key.algorithm} over the base below matches Signature")
        return Check(
            "MAC",
            False,
            f"{self.key.algorithm} over the base below, with the secret given, does not match "
            "Signature: compare this base with the signer's, line by line (or the secret differs)",
            "invalid_signature",
        )

    def _coverage_check(self, candidate: Candidate) -> Check:
        required: list[Component] = [
            component_from_spec(s) for s in self.verifier.required_components
        ]
        if self.request.body and self.verifier.requires_digest_with_body:
            required.append(component_from_spec("content-digest"))
        missing = [c.spec for c in required if c not in candidate.covered.covered]
        names = " ".join(c.spec for c in required)
        if missing:
            return Check(
                "coverage",
                False,
                f"required {names}; not covered: {' '.join(missing)}",
                "insufficient_coverage",
            )
        return Check("coverage", True, f"covers every required component ({names})")

    def _digest_check(self, candidate: Candidate) -> Check:
        body = self.request.body
        value = self.message.header("content-digest")
        if not candidate.covered.covers_digest:
            if value is not None:
                return Check("digest", None, "Content-Digest is not covered, so not checked")
            return Check("digest", None, "content-digest is not covered; the body is not checked")
        if value is None:
            return Check("digest", None, "no Content-Digest header (see components)")
        try:
            algorithms = list(parse_content_digest(value))
        except VerificationError as exc:
            return Check("digest", False, exc.detail, exc.reason)
        computed = ", ".join(make_content_digest(body, alg) for alg in algorithms)
        try:
            verify_content_digest(value, body)
        except VerificationError as exc:
            return Check(
                "digest",
                False,
                f"the {len(body)}-byte body hashes to {computed}; the header says {value}",
                exc.reason,
            )
        return Check("digest", True, f"the {len(body)}-byte body matches {value}")

    def _show_base(self, candidate: Candidate, base: bytes | None) -> None:
        components = candidate.covered.components
        if base is not None:
            lines = base.decode("ascii").split("\n")
            self.say(f"  signature base, as the verifier computed it ({len(base)} bytes):")
        else:
            # No base: show each line that could be computed, and what failed.
            lines = []
            for component in components:
                try:
                    lines.append(
                        f"{component.identifier}: {component_value(component, self.message)}"
                    )
                except VerificationError as exc:
                    lines.append(f"{component.identifier}: <{exc.detail}>")
            lines.append(f'"@signature-params": {candidate.signature_params}')
            self.say("  signature base: cannot be built; the lines it would have:")
        self.say("  -----BEGIN SIGNATURE BASE-----")
        for line in lines:
            self.say(line)
        self.say("  -----END SIGNATURE BASE-----")
        self.say("  where each value came from:")
        width = max(len(c.identifier) for c in components) if components else 0
        width = max(width, len(_PARAMS_ID))
        for component in components:
            self.say(f"    {component.identifier:<{width}}  {self._source(component)}")
        lines_text = ", ".join(map(str, self.request.lines_of("signature-input")))
        self.say(
            f"    {_PARAMS_ID:<{width}}  the Signature-Input member {candidate.label!r} "
            f"(line {lines_text})"
        )

    def _source(self, component: Component) -> str:
        name = component.name
        line = f"line {self.request.line}"
        target = self.target
        if name == "@method":
            return f"the request line's method ({line})"
        if name == "@authority":
            return target.authority_from
        if name == "@scheme":
            return target.scheme_from
        if name == "@path":
            return f"the request target's path ({line})"
        if name == "@query":
            return f"the request target's query, '?' alone when there is none ({line})"
        if name == "@request-target":
            return f"the request target, path and query ({line})"
        if name == "@target-uri":
            return f"scheme ({target.scheme_from}) + authority ({target.authority_from}) + target"
        if name == "@query-param":
            return f"the query parameter {component.params['name']!r} of the target ({line})"
        numbers = self.request.lines_of(name)
        if not numbers:
            return f"ABSENT: the request has no {name!r} header"
        where = ", ".join(map(str, numbers))
        how = " (the lines joined with ', ')" if len(numbers) > 1 else ""
        if "sf" in component.params or "key" in component.params:
            how += " (re-serialised as a structured field)"
        if "bs" in component.params:
            how += " (each line as a byte sequence)"
        names = sorted({h for h, _ in self.request.headers if h.lower() == name})
        plural = "s" if len(numbers) > 1 else ""
        return f"header line{plural} {where} ({', '.join(names)}){how}"


# -- demo ----------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    try:
        from . import _demo  # noqa: PLC0415  (needs the demo extra: imported only here)
    except ImportError as exc:
        missing = exc.name or "a dependency"
        raise CLIError(f"the demo needs {missing}: {DEMO_PIP}") from None
    return _demo.run(serve=args.serve, out=out)


# -- the parser ----------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's examples as written."""


def _add_secret_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key-id", required=True, metavar="ID", help="the key id (keyid)")
    parser.add_argument("--secret", metavar="S", help="the secret, base64 (see below)")
    parser.add_argument("--secret-file", metavar="F", help="a file holding the secret, base64")
    parser.add_argument(
        "--algorithm",
        choices=("hmac-sha256", "hmac-sha512"),
        default="hmac-sha256",
        help="the key's algorithm (default hmac-sha256)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``hmacguard`` argument parser, with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="hmacguard",
        description="Sign, verify and debug RFC 9421 HMAC request signatures.",
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  hmacguard demo                      # see it work: a signed API, attacks rejected\n"
            "  hmacguard keygen > client-1.key\n"
            "  hmacguard sign POST https://api.example/orders -d '{}' --key-id client-1 \\\n"
            "      --secret-file client-1.key --curl\n"
            "  hmacguard verify --key-id client-1 --secret-file client-1.key \\\n"
            "      --request captured.http --explain\n\n" + _EXIT_CODES
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="run a protected API on 127.0.0.1 and show attacks being rejected",
        description=(
            "Start a Starlette app protected by SignatureMiddleware under uvicorn on a free\n"
            "port of 127.0.0.1 (a generated key, an in-memory nonce store, or Redis when\n"
            "HMACGUARD_REDIS_URL is set), send it signed, replayed, tampered, expired,\n"
            "unsigned and oversize requests and two webhook deliveries with httpx, and print\n"
            "what the server answered. Needs the demo extra: " + DEMO_PIP
        ),
        formatter_class=_Formatter,
        epilog="examples:\n  hmacguard demo\n  hmacguard demo --serve\n\n" + _EXIT_CODES,
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the server running; print its key and a signed curl command (Ctrl-C stops)",
    )
    demo.set_defaults(handler=_cmd_demo)

    keygen = sub.add_parser(
        "keygen",
        help="print a new random secret",
        description="Print a new random secret from the operating system's CSPRNG.",
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  hmacguard keygen                    # 32 bytes, base64\n"
            "  hmacguard keygen --bytes 64         # for hmac-sha512\n"
            "  hmacguard keygen --format whsec     # a Standard Webhooks secret\n\n" + _EXIT_CODES
        ),
    )
    keygen.add_argument(
        "--bytes", type=int, default=32, metavar="N", help="random bytes (default 32)"
    )
    keygen.add_argument(
        "--format",
        choices=("base64", "hex", "whsec"),
        default="base64",
        help="base64 (default), hex, or whsec_ + base64 (Standard Webhooks; 24-64 bytes)",
    )
    keygen.set_defaults(handler=_cmd_keygen)

    digest = sub.add_parser(
        "digest",
        help="print the Content-Digest of a body",
        description="Print the RFC 9530 Content-Digest field value of a file or of stdin.",
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  hmacguard digest body.json\n"
            "  printf '{\"a\": 1}' | hmacguard digest --alg sha-512\n\n" + _EXIT_CODES
        ),
    )
    digest.add_argument("file", nargs="?", default="-", metavar="FILE", help="default: stdin")
    digest.add_argument("--alg", choices=tuple(ACTIVE_ALGORITHMS), default="sha-256")
    digest.set_defaults(handler=_cmd_digest)

    sign = sub.add_parser(
        "sign",
        help="sign a request: print the headers to add, or a curl command",
        description=(
            "Sign a request with the default components (@method @authority @path @query,\n"
            "and content-type and content-digest when there is a body) and print the\n"
            "headers to add, or with --curl a complete curl command.\n\n" + _SECRET_HELP
        ),
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  export HMACGUARD_SECRET=$(hmacguard keygen)\n"
            "  hmacguard sign GET 'https://api.example/items?page=2' --key-id client-1\n"
            "  hmacguard sign POST https://api.example/orders \\\n"
            "      -H 'Content-Type: application/json' \\\n"
            '      -d \'{"sku": "A-1"}\' --key-id client-1 --secret-file client-1.key --curl\n\n'
            + _EXIT_CODES
        ),
    )
    sign.add_argument("method", metavar="METHOD", help="the method, as sent (case-sensitive)")
    sign.add_argument("url", metavar="URL", help="the absolute URL, percent-encoded as sent")
    sign.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="a request header (repeatable)",
    )
    body = sign.add_mutually_exclusive_group()
    body.add_argument("-d", "--data", metavar="DATA", help="the body, as UTF-8 text")
    body.add_argument("--data-file", metavar="F", help="the body: the bytes of this file")
    _add_secret_options(sign)
    sign.add_argument("--curl", action="store_true", help="print a complete curl command")
    sign.add_argument("--now", type=int, metavar="TS", help="the signing time (epoch seconds)")
    sign.set_defaults(handler=_cmd_sign)

    verify = sub.add_parser(
        "verify",
        help="verify a captured raw HTTP request; --explain shows why it fails",
        description=(
            "Verify a raw HTTP/1.1 request as curl -v, a proxy or a log shows it: the request\n"
            "line ('POST /path?query HTTP/1.1'), header lines, a blank line, the body.\n"
            "Lines of curl -v output ('> '-prefixed) are accepted too. The URL is rebuilt from\n"
            "the target and the Host header, with the scheme https unless --scheme says\n"
            "otherwise. --explain prints the signature base the verifier computed, where each\n"
            "value came from, every policy check and the precise reason.\n\n" + _SECRET_HELP
        ),
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  hmacguard verify --key-id client-1 --secret-file client-1.key \\\n"
            "      --request captured.http --explain\n"
            "  curl -sv https://api.example/items 2>&1 >/dev/null | \\\n"
            "      hmacguard verify --key-id client-1 --now 1700000000\n\n" + _EXIT_CODES
        ),
    )
    _add_secret_options(verify)
    verify.add_argument(
        "--request", default="-", metavar="FILE", help="the raw request (default: stdin)"
    )
    verify.add_argument("--body-file", metavar="F", help="the body, when the capture lacks it")
    verify.add_argument("--now", type=float, metavar="TS", help="verify as of this epoch time")
    verify.add_argument("--scheme", help="the scheme the client used (default https)")
    verify.add_argument("--authority", help="the host[:port] the client signed (default: Host)")
    verify.add_argument("--max-age", type=int, default=300, metavar="S", help="default 300")
    verify.add_argument("--clock-skew", type=int, default=30, metavar="S", help="default 30")
    verify.add_argument("--no-nonce", action="store_true", help="do not require a nonce")
    verify.add_argument("--explain", action="store_true", help="show the base and every check")
    verify.set_defaults(handler=_cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hmacguard`` command; return its exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace, TextIO], int] = args.handler
    try:
        return handler(args, sys.stdout)
    except CLIError as exc:
        sys.stderr.write(f"hmacguard {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:  # pragma: no cover  (the reader went away, e.g. | head)
        return EXIT_OK
