"""The ``hmacguard`` command: keygen, fingerprint, digest, sign, verify (with ``--explain``)
and demo.

Only the standard library is imported here, so ``hmacguard --help`` and the
offline subcommands start fast and work without any extra; ``demo``
imports httpx, starlette and uvicorn when it runs (``hmacguard[demo]``).

Exit codes: 0 success (``verify``: the signature is valid), 1 only from
``verify`` (the request is rejected) and ``demo`` (an outcome differed from the
script), 2 a usage error or input that cannot be read or parsed. Each
subcommand's ``--help`` lists the codes it can return.

Secrets are read from ``--secret``, ``--secret-file`` or ``HMACGUARD_SECRET``
and never printed: not in output, errors or ``--explain``.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import re
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from ._content_digest import (
    ACTIVE_ALGORITHMS,
    make_content_digest,
)
from ._errors import (
    VerificationError,
)
from ._explain import Explainer
from ._keys import HMACKey, decode_secret, fingerprint
from ._raw_request import RequestError, parse_request, request_url
from ._signer import Signer
from ._verifier import Verifier

__all__ = ["main", "parse_request"]

SECRET_ENV = "HMACGUARD_SECRET"  # noqa: S105  (a variable name, not a secret)
DEMO_PIP = 'pip install "hmacguard[demo]"'

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

_STDIN = "-"  # a file argument that means standard input

_EXIT_CODES = """\
exit codes:
  0  success (verify: the signature is valid)
  1  verify: the request is rejected; demo: an outcome differed from the script
  2  usage error, unreadable input or a request that cannot be parsed"""


def _exit_codes(*lines: str) -> str:
    """A subcommand's exit-code table: only the codes it can return."""
    return "exit codes:\n" + "\n".join(f"  {line}" for line in lines)


_EXIT_DEMO = _exit_codes(
    "0  every outcome was as expected (--serve: stopped with Ctrl-C)",
    "1  an outcome differed from the script",
    "2  usage error, a missing extra, or HMACGUARD_REDIS_URL invalid or unreachable",
)
_EXIT_KEYGEN = _exit_codes("0  success", "2  usage error (e.g. --bytes out of range)")
_EXIT_FINGERPRINT = _exit_codes("0  success", "2  usage error, or a missing or bad secret")
_EXIT_DIGEST = _exit_codes("0  success", "2  usage error or unreadable file")
_EXIT_SIGN = _exit_codes(
    "0  success",
    "2  usage error, a missing or bad secret, or a request that cannot be signed",
)
_EXIT_VERIFY = _exit_codes(
    "0  the signature is valid",
    "1  the request is rejected (the reason follows INVALID:)",
    "2  usage error, a missing or bad secret, or input that is not a request",
)

# Wrapped by hand: the parsers use RawDescriptionHelpFormatter (_Formatter).
_SECRET_HELP = (
    "secrets: --secret S (base64; visible to other local users in the process\n"
    f"list), --secret-file F (safer), or the {SECRET_ENV} environment variable.\n"
    "A secret is never printed."
)


def _epoch_seconds(text: str) -> float:
    """``--now``: a finite number of epoch seconds (NaN would pass every time check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number of seconds: {text!r}")
    return value


class CLIError(Exception):
    """A usage or input error: printed as ``hmacguard: error: ...``, exit 2."""


# -- secrets -------------------------------------------------------------------


def _secret_text(args: argparse.Namespace, *, stdin: bool = False) -> str:
    """The secret's text from --secret, --secret-file or $HMACGUARD_SECRET (in that
    order); with ``stdin``, ``--secret-file -`` reads standard input."""
    if args.secret is not None and args.secret_file is not None:
        raise CLIError("give --secret or --secret-file, not both")
    if stdin and args.secret_file == _STDIN:
        text = sys.stdin.read()
        if not text.strip():
            raise CLIError("no secret on standard input")
    elif args.secret_file is not None:
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


def _bad_key(exc: Exception) -> CLIError:
    message = f"bad key: {exc}"  # the messages never quote the secret
    if "hex digits" in message:
        message += "; to convert a hex key file to base64: xxd -r -p F | base64"
    return CLIError(message)


def _load_key(args: argparse.Namespace) -> HMACKey:
    text = _secret_text(args)  # a "whsec_" prefix is dropped by decode_secret
    try:
        return HMACKey(args.key_id, text, args.algorithm)
    except (TypeError, ValueError) as exc:
        raise _bad_key(exc) from None


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


# -- fingerprint ---------------------------------------------------------------


def _cmd_fingerprint(args: argparse.Namespace, out: TextIO) -> int:
    text = _secret_text(args, stdin=True)
    try:
        raw = decode_secret(text)  # a "whsec_" prefix is dropped there
    except ValueError as exc:
        raise _bad_key(exc) from None
    out.write(fingerprint(raw) + "\n")
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
    parser.add_argument("--secret", metavar="S", help="the secret, base64 (see above)")
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
    from . import __version__  # noqa: PLC0415  (the package imports this module's callers)

    parser.add_argument("--version", action="version", version=f"hmacguard {__version__}")
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
        epilog="examples:\n  hmacguard demo\n  hmacguard demo --serve\n\n" + _EXIT_DEMO,
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
            "  hmacguard keygen --format whsec     # a Standard Webhooks secret\n\n" + _EXIT_KEYGEN
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

    finger = sub.add_parser(
        "fingerprint",
        help="print a secret's fingerprint: compare keys, never secrets",
        description=(
            "Print the fingerprint of a secret: 16 hex digits (SHA-256 over a fixed prefix\n"
            "and the secret, cut to 8 bytes) that HMACKey(...).fingerprint also gives. Equal\n"
            "secrets have equal fingerprints: compare them between client and server to\n"
            "find a key mismatch without copying the secret. The fingerprint is safe to\n"
            "paste in a ticket; the secret is never printed.\n\n"
            "secrets: --secret-file F ('-' for standard input), --secret S (base64; visible\n"
            f"to other local users in the process list), or the {SECRET_ENV} environment\n"
            "variable. A whsec_ prefix is accepted."
        ),
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  hmacguard fingerprint --secret-file client-1.key\n"
            "  hmacguard keygen | tee client-2.key | hmacguard fingerprint --secret-file -\n\n"
            + _EXIT_FINGERPRINT
        ),
    )
    finger.add_argument("--secret", metavar="S", help="the secret, base64 (see above)")
    finger.add_argument(
        "--secret-file", metavar="F", help="a file holding the secret, base64; '-': stdin"
    )
    finger.set_defaults(handler=_cmd_fingerprint)

    digest = sub.add_parser(
        "digest",
        help="print the Content-Digest of a body",
        description="Print the RFC 9530 Content-Digest field value of a file or of stdin.",
        formatter_class=_Formatter,
        epilog=(
            "examples:\n"
            "  hmacguard digest body.json\n"
            "  printf '{\"a\": 1}' | hmacguard digest --alg sha-512\n\n" + _EXIT_DIGEST
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
            + _EXIT_SIGN
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
            "      hmacguard verify --key-id client-1 --now 1700000000\n\n" + _EXIT_VERIFY
        ),
    )
    _add_secret_options(verify)
    verify.add_argument(
        "--request", default="-", metavar="FILE", help="the raw request (default: stdin)"
    )
    verify.add_argument("--body-file", metavar="F", help="the body, when the capture lacks it")
    verify.add_argument(
        "--now", type=_epoch_seconds, metavar="TS", help="verify as of this epoch time"
    )
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
    except (CLIError, RequestError) as exc:
        sys.stderr.write(f"hmacguard {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:  # pragma: no cover  (the reader went away, e.g. | head)
        return EXIT_OK
