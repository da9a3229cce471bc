"""The ``hmacguard`` command: keygen, digest, sign, verify (--explain) and demo.

Most tests run ``main(argv)`` in-process and read what it printed; a few run
``python -m hmacguard`` as a subprocess (import isolation, the demo).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import hmacguard
from asgi_helpers import logged_reasons
from hmacguard import HMACKey, Verifier
from hmacguard._cli import main, parse_request
from hmacguard.webhooks.standard import decode_whsec
from redis_server import RedisServer, require_redis_server

NOW = 1_700_000_000
SECRET = base64.b64encode(b"k" * 32).decode("ascii")
KEY_ID = "client-1"
ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ("demo", "keygen", "fingerprint", "digest", "sign", "verify")


@dataclass
class Result:
    """What one run of the command returned and printed."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run ``main(argv)`` in-process, optionally with bytes on stdin."""
    monkeypatch.delenv("HMACGUARD_SECRET", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)

    def run(*argv: str, stdin: bytes = b"") -> Result:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def _python(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HMACGUARD_SECRET", None)
    proc = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
        cwd=ROOT,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _sign(cli: Run, *extra: str, url: str = "https://api.example/orders?id=7") -> list[str]:
    """Sign a JSON POST at NOW; return the header lines printed."""
    result = cli(
        "sign", "POST", url, "-H", "Content-Type: application/json", "-d", '{"amount": 10}',
        "--key-id", KEY_ID, "--secret", SECRET, "--now", str(NOW), *extra,
    )  # fmt: skip
    assert result.code == 0, result.err
    return result.out.splitlines()


def _raw_request(header_lines: list[str], body: bytes = b'{"amount": 10}', **swap: str) -> bytes:
    """A raw HTTP/1.1 request as a proxy log shows it, with the signature lines."""
    target = swap.get("target", "/orders?id=7")
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {swap.get('host', 'api.example')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *header_lines,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _verify(cli: Run, request: bytes, *extra: str) -> Result:
    return cli(
        "verify", "--key-id", KEY_ID, "--secret", SECRET, "--now", str(NOW + 10), *extra,
        stdin=request,
    )  # fmt: skip


def _assert_no_secret(result: Result) -> None:
    for text in (SECRET, (b"k" * 32).hex(), "k" * 32):
        assert text not in result.out
        assert text not in result.err


# -- keygen --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "decode", "size"),
    [
        ((), base64.b64decode, 32),
        (("--bytes", "64"), base64.b64decode, 64),
        (("--format", "hex"), bytes.fromhex, 32),
        (("--format", "whsec"), decode_whsec, 32),
        (("--format", "whsec", "--bytes", "24"), decode_whsec, 24),
    ],
)
def test_keygen_formats_and_lengths(
    cli: Run, args: tuple[str, ...], decode: Callable[[str], bytes], size: int
):
    """keygen prints one secret of the asked length, in the asked encoding, fresh each time."""
    first = cli("keygen", *args)
    second = cli("keygen", *args)
    assert first.code == 0
    text = first.out.strip()
    assert first.out == text + "\n"
    assert len(decode(text)) == size
    assert args[:2] != ("--format", "whsec") or text.startswith("whsec_")
    assert first.out != second.out


@pytest.mark.parametrize(
    "args", [("--bytes", "16"), ("--format", "whsec", "--bytes", "65"), ("--bytes", "x")]
)
def test_keygen_refuses_unusable_lengths(cli: Run, args: tuple[str, ...]):
    """A key too short for hmac-sha256 (or outside whsec's 24-64 bytes) is a usage error."""
    result = cli("keygen", *args)
    assert result.code == 2
    assert result.out == ""
    assert "--bytes" in result.err or "whsec" in result.err


# -- fingerprint ---------------------------------------------------------------


def test_fingerprint_from_file_stdin_env_and_option_is_the_keys(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`fingerprint` prints HMACKey.fingerprint, reading the secret as sign does (and from
    stdin with --secret-file -), and never the secret."""
    expected = HMACKey(KEY_ID, b"k" * 32).fingerprint
    path = tmp_path / "client-1.key"
    path.write_text(SECRET + "\n")
    results = [
        cli("fingerprint", "--secret-file", str(path)),
        cli("fingerprint", "--secret-file", "-", stdin=(SECRET + "\n").encode()),
        cli("fingerprint", "--secret", "whsec_" + SECRET),
    ]
    monkeypatch.setenv("HMACGUARD_SECRET", SECRET)
    results.append(cli("fingerprint"))
    for result in results:
        assert (result.code, result.out, result.err) == (0, expected + "\n", "")
        _assert_no_secret(result)
    other = cli("fingerprint", "--secret", base64.b64encode(b"q" * 32).decode())
    assert other.out.strip() != expected


def test_fingerprint_of_a_new_key_matches_on_both_sides(cli: Run):
    """A key from keygen fingerprints the same through the command and through HMACKey."""
    text = cli("keygen").out.strip()
    assert cli("fingerprint", "--secret", text).out.strip() == HMACKey(KEY_ID, text).fingerprint


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        ((), b"", "no secret"),
        (("--secret-file", "-"), b"\n", "no secret on standard input"),
        (("--secret-file", "-", "--secret", SECRET), b"", "not both"),
        (("--secret", "not base64!"), b"", "base64"),
    ],
    ids=["none", "empty-stdin", "both", "not-base64"],
)
def test_fingerprint_without_a_usable_secret_is_a_usage_error(
    cli: Run, args: tuple[str, ...], stdin: bytes, message: str
):
    """No secret, two of them or one that is not base64 exits 2 with a reason."""
    result = cli("fingerprint", *args, stdin=stdin)
    assert result.code == 2
    assert result.out == ""
    assert message in result.err
    assert "not base64!" not in result.err


@pytest.mark.parametrize("command", ["fingerprint", "sign"])
def test_hex_key_file_is_refused_with_a_conversion_hint(cli: Run, tmp_path: Path, command: str):
    """A key from `keygen --format hex` is not read as base64 (another key): exit 2 with the
    way to convert it, never its text."""
    hex_text = cli("keygen", "--format", "hex").out.strip()
    path = tmp_path / "client-1.hex"
    path.write_text(hex_text + "\n")
    args = ("GET", "https://api.example/", "--key-id", KEY_ID) if command == "sign" else ()
    result = cli(command, *args, "--secret-file", str(path))
    assert result.code == 2
    assert "hex digits" in result.err
    assert "xxd -r -p F | base64" in result.err
    assert hex_text[:12] not in result.out + result.err


# -- digest --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "hasher"), [("sha-256", hashlib.sha256), ("sha-512", hashlib.sha512)]
)
def test_rfc9530_digest_of_file_and_stdin(
    cli: Run, tmp_path: Path, alg: str, hasher: Callable[[bytes], Any]
):
    """digest prints the Content-Digest of a file's bytes and of stdin, as hashlib computes it."""
    body = b'{"hello": "world"}\r\n\x00\xff'
    expected = f"{alg}=:{base64.b64encode(hasher(body).digest()).decode()}:\n"
    path = tmp_path / "body.bin"
    path.write_bytes(body)
    assert cli("digest", str(path), "--alg", alg).out == expected
    assert cli("digest", "-", "--alg", alg, stdin=body).out == expected
    assert cli("digest", "--alg", alg, stdin=body).out == expected


def test_digest_of_missing_file_is_usage_error(cli: Run, tmp_path: Path):
    """An unreadable file exits 2 and names the file."""
    result = cli("digest", str(tmp_path / "nope"))
    assert result.code == 2
    assert "nope" in result.err


# -- sign ----------------------------------------------------------------------


def test_sign_headers_verify_with_verifier(cli: Run):
    """The header lines sign prints make the request verify with the core Verifier."""
    lines = _sign(cli)
    added = dict(line.split(": ", 1) for line in lines)
    assert set(added) == {"Content-Digest", "Signature-Input", "Signature"}
    headers = {"content-type": "application/json", **added}
    verified = Verifier({KEY_ID: SECRET}).verify(
        "POST", "https://api.example/orders?id=7", headers, b'{"amount": 10}', now=NOW
    )
    assert verified.key_id == KEY_ID
    assert verified.created == NOW
    assert "content-digest" in verified.components


def test_sign_curl_command_parses_and_verifies(cli: Run):
    """--curl prints one shell-quoted curl command carrying every header and the exact body."""
    (line,) = _sign(cli, "--curl")
    words = shlex.split(line)
    assert words[0] == "curl"
    assert "https://api.example/orders?id=7" in words
    headers = [words[i + 1] for i, w in enumerate(words) if w == "-H"]
    names = [h.split(":", 1)[0] for h in headers]
    assert names == ["Content-Type", "Content-Digest", "Signature-Input", "Signature"]
    body = words[words.index("--data-binary") + 1]
    assert body == '{"amount": 10}'
    assert "-X" not in words  # curl infers POST from the body
    pairs = [tuple(h.split(": ", 1)) for h in headers]
    Verifier({KEY_ID: SECRET}).verify(
        "POST", "https://api.example/orders?id=7", pairs, body.encode(), now=NOW
    )


def test_sign_data_file_and_method_in_curl(cli: Run, tmp_path: Path):
    """A --data-file body is signed byte for byte and referenced as @file; -X names a non-POST."""
    path = tmp_path / "body.bin"
    path.write_bytes(b"\x00binary\r\n")
    result = cli(
        "sign", "PUT", "https://api.example/blob", "--data-file", str(path),
        "--key-id", KEY_ID, "--secret", SECRET, "--now", str(NOW), "--curl",
    )  # fmt: skip
    words = shlex.split(result.out)
    assert words[words.index("-X") + 1] == "PUT"
    assert words[words.index("--data-binary") + 1] == "@" + str(path)
    pairs = [tuple(words[i + 1].split(": ", 1)) for i, w in enumerate(words) if w == "-H"]
    Verifier({KEY_ID: SECRET}).verify(
        "PUT", "https://api.example/blob", pairs, path.read_bytes(), now=NOW
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-H", "no colon here"), "-H takes 'Name: value'"),
        (("-H", "Content-Type: caf\u00e9", "-d", "x"), "non-ASCII"),
        (("--secret", "not base64!"), "base64"),
        (("--secret", base64.b64encode(b"short").decode()), "at least 32"),
    ],
)
def test_sign_bad_input_is_usage_error(cli: Run, args: tuple[str, ...], message: str):
    """A malformed header, an unsignable value or a bad secret exits 2 with a clear message."""
    result = cli(
        "sign", "GET", "https://api.example/", "--key-id", KEY_ID, "--secret", SECRET, *args,
        "--now", str(NOW),
    )  # fmt: skip
    assert result.code == 2
    assert result.out == ""
    assert message in result.err
    assert "not base64!" not in result.err


def test_sign_url_not_percent_encoded_is_usage_error(cli: Run):
    """A space in the URL cannot be sent as it is: exit 2 naming its position, not the query."""
    result = cli(
        "sign", "GET", "https://api.example/a?token=t0k3n-value&q=x y", "--key-id", KEY_ID,
        "--secret", SECRET,
    )  # fmt: skip
    assert result.code == 2
    assert result.out == ""
    assert "url[43] is a space, in the query" in result.err
    assert "t0k3n-value" not in result.err


# -- secrets ---------------------------------------------------------------------


def test_secret_from_file_and_env(cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """--secret-file and HMACGUARD_SECRET give the same key as --secret; both flags is an error."""
    expected = _sign(cli)[0]  # Content-Digest is deterministic; compare whole verification
    path = tmp_path / "client-1.key"
    path.write_text(SECRET + "\n")
    args = ("sign", "GET", "https://api.example/x", "--key-id", KEY_ID, "--now", str(NOW))
    from_file = cli(*args, "--secret-file", str(path))
    monkeypatch.setenv("HMACGUARD_SECRET", SECRET)
    from_env = cli(*args)
    for result in (from_file, from_env):
        assert result.code == 0, result.err
        pairs = [tuple(line.split(": ", 1)) for line in result.out.splitlines()]
        Verifier({KEY_ID: SECRET}).verify("GET", "https://api.example/x", pairs, now=NOW)
    both = cli(*args, "--secret", SECRET, "--secret-file", str(path))
    assert both.code == 2
    assert "not both" in both.err
    assert expected.startswith("Content-Digest")
    _assert_no_secret(both)


def test_no_secret_is_usage_error(cli: Run):
    """Without --secret, --secret-file or HMACGUARD_SECRET the command says how to give one."""
    result = cli("sign", "GET", "https://api.example/", "--key-id", KEY_ID)
    assert result.code == 2
    assert "HMACGUARD_SECRET" in result.err


def test_secret_file_errors_never_quote_the_file(cli: Run, tmp_path: Path):
    """A secret file that is not base64 fails without its content appearing anywhere."""
    path = tmp_path / "bad.key"
    path.write_text("p@ssw0rd-not-base64!!\n")
    result = cli(
        "sign", "GET", "https://api.example/", "--key-id", KEY_ID, "--secret-file", str(path)
    )
    assert result.code == 2
    assert "p@ssw0rd" not in result.err + result.out


# -- verify ----------------------------------------------------------------------


def test_verify_signed_request_exits_0(cli: Run):
    """A raw request carrying sign's headers verifies: exit 0 and VALID with the key id."""
    result = _verify(cli, _raw_request(_sign(cli)))
    assert result.code == 0, result.out + result.err
    assert result.out.startswith("VALID: signature 'sig1' by key 'client-1'")
    _assert_no_secret(result)


@pytest.mark.parametrize(
    ("swap", "body", "reason"),
    [
        ({}, b'{"amount": 99}', "digest_mismatch"),
        ({"target": "/orders?id=8"}, b'{"amount": 10}', "invalid_signature"),
        ({"host": "evil.example"}, b'{"amount": 10}', "invalid_signature"),
    ],
)
def test_threat_tampered_request_exits_1_with_reason(
    cli: Run, swap: dict[str, str], body: bytes, reason: str
):
    """A tampered body, query or Host exits 1 and prints the verifier's exact reason."""
    result = _verify(cli, _raw_request(_sign(cli), body, **swap))
    assert result.code == 1
    assert result.out.startswith(f"INVALID: {reason} (HTTP 401)")
    assert "--explain" in result.out


def test_rfc9421_2_5_explain_shows_base_and_failing_mac(cli: Run):
    """--explain on a tampered query prints the base lines, their sources and the failed MAC."""
    result = _verify(cli, _raw_request(_sign(cli), target="/orders?id=8"), "--explain")
    assert result.code == 1
    out = result.out
    base = out.split("-----BEGIN SIGNATURE BASE-----\n")[1].split("\n  -----END")[0].splitlines()
    assert base[:6] == [
        '"@method": POST',
        '"@authority": api.example',
        '"@path": /orders',
        '"@query": ?id=8',
        '"content-type": application/json',
        '"content-digest": sha-256=:'
        + base64.b64encode(hashlib.sha256(b'{"amount": 10}').digest()).decode()
        + ":",
    ]
    assert base[6].startswith('"@signature-params": ("@method" "@authority"')
    assert re.search(r"FAIL MAC .*<- invalid_signature: the verifier stops here", out)
    assert re.search(r"ok   time +created 1700000000, now 1700000010: age 10 s", out)
    assert '"@authority"         the Host header (line 2)' in out
    assert "header line 3 (Content-Type)" in out
    assert out.rstrip().endswith(
        "INVALID: invalid_signature (HTTP 401): the signature does not match the request"
    )
    _assert_no_secret(result)


def test_explain_names_the_missing_header(cli: Run):
    """A covered header absent from the request is named, and the base still shows the rest."""
    raw = _raw_request(_sign(cli)).replace(b"Content-Type: application/json\r\n", b"")
    result = _verify(cli, raw, "--explain")
    assert result.code == 1
    assert "FAIL components  covered header 'content-type' is absent from the request" in result.out
    assert "ABSENT: the request has no 'content-type' header" in result.out
    assert '"@query": ?id=7' in result.out
    assert "INVALID: invalid_signature" in result.out


def test_explain_time_window_numbers_when_expired(cli: Run):
    """An old signature fails the time check with created, now, age and the window."""
    result = cli(
        "verify", "--key-id", KEY_ID, "--secret", SECRET, "--now", str(NOW + 3600), "--explain",
        stdin=_raw_request(_sign(cli)),
    )  # fmt: skip
    assert result.code == 1
    assert re.search(
        r"FAIL time +created 1700000000, now 1700003600: age 3600 s; accepted for "
        r"-30 s <= age <= 300 s .*<- expired",
        result.out,
    )
    assert "ok   MAC" in result.out  # later checks still shown, for diagnosis
    assert "INVALID: expired (HTTP 401): created is 3600 s old (max_age: 300 s)" in result.out


def test_explain_unsigned_request_lists_headers(cli: Run):
    """An unsigned request fails the structure check as missing_signature and lists its headers."""
    result = _verify(cli, b"GET / HTTP/1.1\nHost: api.example\nAccept: */*\n\n", "--explain")
    assert result.code == 1
    assert "FAIL structure   the request has neither Signature nor Signature-Input" in result.out
    assert "the request's headers: accept, host" in result.out
    assert "INVALID: missing_signature (HTTP 401)" in result.out


def test_explain_wrong_key_id_is_unknown_key(cli: Run):
    """A --key-id other than the signature's keyid fails as unknown_key and says both ids."""
    result = cli(
        "verify", "--key-id", "client-2", "--secret", SECRET, "--now", str(NOW + 10), "--explain",
        stdin=_raw_request(_sign(cli)),
    )  # fmt: skip
    assert result.code == 1
    assert "keyid 'client-1', the --key-id given is 'client-2'" in result.out
    assert "INVALID: unknown_key" in result.out


def test_explain_alg_disagreeing_with_the_key_is_invalid_signature(cli: Run):
    """An alg other than the key's fails the alg check as invalid_signature, the reason
    the verifier (and the verdict line, and docs/errors.md) gives, not invalid_parameters."""
    si = (
        'sig1=("@method" "@authority" "@path" "@query");created=1700000000;'
        'keyid="client-1";alg="hmac-sha512";nonce="n1"'
    )
    url = "https://api.example/orders?id=7"
    verifier = Verifier([HMACKey(KEY_ID, b"k" * 32)])
    placeholder = [("Host", "api.example"), ("Signature-Input", si), ("Signature", "sig1=:AA==:")]
    base = verifier.signature_base("GET", url, placeholder)
    mac = base64.b64encode(hmac.new(b"k" * 32, base, hashlib.sha256).digest()).decode()
    raw = (
        f"GET /orders?id=7 HTTP/1.1\r\nHost: api.example\r\nSignature-Input: {si}\r\n"
        f"Signature: sig1=:{mac}:\r\n\r\n"
    ).encode()
    result = _verify(cli, raw, "--explain")
    assert result.code == 1
    assert re.search(
        r"^  FAIL alg +alg 'hmac-sha512' disagrees with the key's hmac-sha256  "
        r"<- invalid_signature: the verifier stops here$",
        result.out,
        re.MULTILINE,
    ), result.out
    assert "invalid_parameters" not in result.out
    assert "INVALID: invalid_signature (HTTP 401): alg 'hmac-sha512' disagrees" in result.out


def test_explain_escapes_control_characters_from_the_request(cli: Run):
    """--explain never sends a control character of the capture to the terminal: ESC, BEL,
    DEL, a C1 CSI or a tab in the target, a header or Content-Digest is printed escaped
    (\\x1b), and ordinary text is printed as before."""
    digest = "sha-256=:" + "A" * 43 + "=:,\tsha-512=:" + "A" * 86 + "==:"
    raw = (
        "POST /a\x1b[2J HTTP/1.1\r\n"
        "Host: api.example\r\n"
        "X-Note: \x1b]0;owned\x07\x1b[31mSIGNATURE OK\x1b[0m \x7f \x9b2J\r\n"
        f"Content-Digest: {digest}\r\n"
        "Content-Length: 2\r\n"
        'Signature-Input: sig1=("@method" "@authority" "@path" "@query" "x-note" '
        '"content-digest");created=1700000000;keyid="client-1";nonce="n"\r\n'
        "Signature: sig1=:" + "A" * 43 + "=:\r\n\r\n{}"
    ).encode("latin-1")
    result = _verify(cli, raw, "--explain")
    assert result.code == 1
    for line in result.out.split("\n"):
        assert line.isprintable(), repr(line)
    out = result.out
    assert "  line 1: POST /a\\x1b[2J HTTP/1.1\n" in out
    assert "  url: https://api.example/a\\x1b[2J\n" in out
    assert '"x-note": \\x1b]0;owned\\x07\\x1b[31mSIGNATURE OK\\x1b[0m \\x7f \\x9b2J\n' in out
    assert "the header says sha-256=:" + "A" * 43 + "=:,\\x09sha-512=:" in out
    # ordinary text is unchanged
    assert '\n"@method": POST\n"@authority": api.example\n' in out
    assert re.search(r'^    "x-note" +header line 3 \(X-Note\)$', out, re.MULTILINE)


def test_verify_valid_explain_shows_all_checks_passing(cli: Run):
    """--explain on a valid request marks every check ok and ends VALID."""
    result = _verify(cli, _raw_request(_sign(cli)), "--explain")
    assert result.code == 0
    for name in ("structure", "parameters", "time", "key", "components", "MAC", "coverage"):
        assert re.search(rf"^  ok   {name} ", result.out, re.MULTILINE), name
    assert "FAIL" not in result.out
    assert result.out.rstrip().splitlines()[-1].startswith("VALID:")


def test_verify_curl_v_output(cli: Run):
    """curl -v output (its '> ' lines) is read as the request; a GET without a body verifies."""
    result = cli(
        "sign", "GET", "https://api.example/items?page=2", "--key-id", KEY_ID, "--secret", SECRET,
        "--now", str(NOW),
    )  # fmt: skip
    capture = "\n".join(
        [
            "*   Trying 127.0.0.1:443...",
            "> GET /items?page=2 HTTP/1.1",
            "> Host: api.example",
            "> User-Agent: curl/8.5.0",
            *("> " + line for line in result.out.splitlines()),
            ">",
            "< HTTP/1.1 200 OK",
            "< content-length: 2",
        ]
    )
    verified = _verify(cli, capture.encode())
    assert verified.code == 0, verified.out + verified.err
    parsed = parse_request(capture.encode())
    assert parsed.from_curl
    assert (parsed.method, parsed.target, parsed.line) == ("GET", "/items?page=2", 2)


def _curl_trace(cli: Run, target: str = "/items?page=2") -> list[str]:
    """The '> ' lines curl -v shows for a GET signed at NOW, ending with the blank '>'."""
    signed = cli(
        "sign", "GET", f"https://api.example{target}", "--key-id", KEY_ID, "--secret", SECRET,
        "--now", str(NOW),
    )  # fmt: skip
    head = [f"GET {target} HTTP/1.1", "Host: api.example", *signed.out.splitlines()]
    return [*("> " + line for line in head), ">"]


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_verify_curl_v_output_with_notes_and_tls_lines(cli: Run, eol: str):
    """A real curl -v trace verifies as it is: a 'Note:' line first, TLS '*' lines and
    '} [n bytes data]' lines before the request, CRLF ends on the '> ' lines."""
    capture = eol.join(
        [
            "Note: Unnecessary use of -X or --request, GET is already inferred.",
            "*   Trying 127.0.0.1:443...",
            "* TLSv1.3 (OUT), TLS handshake, Client hello (1):",
            "} [512 bytes data]",
            *_curl_trace(cli),
            "< HTTP/2 200",
            "{ [2 bytes data]",
            "",
            "ok",
        ]
    )
    parsed = parse_request(capture.encode())
    assert parsed.from_curl
    assert (parsed.method, parsed.target, parsed.line) == ("GET", "/items?page=2", 5)
    verified = _verify(cli, capture.encode())
    assert verified.code == 0, verified.out + verified.err


def test_verify_curl_trace_quoted_in_the_body_is_not_the_request(cli: Run):
    """Only the head (before the first blank line) makes the input a curl -v trace: a raw
    request whose body quotes the trace of a genuinely signed GET is still that request,
    and its own bad signature is what is verified (it read as the GET: VALID, exit 0)."""
    quoted = "\n".join(_curl_trace(cli, "/public")) + "\n"
    assert _verify(cli, quoted.encode()).code == 0  # the quoted trace alone is valid
    body = ("note for the ops team:\n" + quoted).encode()
    capture = (
        "DELETE /admin/users HTTP/1.1\r\nHost: api.example\r\n"
        f'Signature-Input: sig1=("@method");created={NOW};keyid="{KEY_ID}"\r\n'
        "Signature: sig1=:" + "A" * 43 + "=:\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    parsed = parse_request(capture)
    assert (parsed.method, parsed.target, parsed.from_curl) == ("DELETE", "/admin/users", False)
    assert parsed.body == body
    result = _verify(cli, capture)
    assert result.code == 1, result.out + result.err
    assert result.out.startswith("INVALID: ")


def test_verify_absolute_form_and_scheme(cli: Run):
    """An absolute-form target (proxy logs) supplies scheme and authority; --scheme overrides."""
    lines = _sign(cli, url="http://api.example/orders?id=7")
    raw = _raw_request(lines, target="http://api.example/orders?id=7", host="ignored.example")
    assert _verify(cli, raw).code == 0
    origin = _raw_request(lines)
    assert _verify(cli, origin, "--scheme", "http").code == 0
    assert _verify(cli, origin).code == 0  # @scheme is not covered, so https also verifies


def test_verify_request_file_and_chunked_body(cli: Run, tmp_path: Path):
    """--request reads a file, and a chunked body is decoded before the digest check."""
    head = (
        _raw_request(_sign(cli))
        .split(b"\r\n\r\n")[0]
        .replace(b"Content-Length: 14", b"Transfer-Encoding: chunked")
    )
    path = tmp_path / "req.http"
    path.write_bytes(head + b'\r\n\r\n6\r\n{"amou\r\n8\r\nnt": 10}\r\n0\r\n\r\n')
    result = cli(
        "verify", "--key-id", KEY_ID, "--secret", SECRET, "--now", str(NOW + 10),
        "--request", str(path),
    )  # fmt: skip
    assert result.code == 0, result.out + result.err


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"hello world\n", "line 1 is not a request line"),
        (b"GET /x HTTP/1.1\nbad header line\n\n", "line 2 is not a header line"),
        (b"GET /x HTTP/1.1\nAccept: */*\n\n", "no Host header"),
        (b"POST /x HTTP/1.1\nHost: a\nContent-Length: 10\n\nabc", "Content-Length says 10"),
        ("POST /x HTTP/1.1\nHost: a\nContent-Length: \xb2\n\nab".encode("latin-1"), "not a number"),
        (b"OPTIONS * HTTP/1.1\nHost: a\n\n", "not origin-form"),
        (b"", "no request found"),
    ],
)
def test_verify_unparseable_request_exits_2(cli: Run, raw: bytes, message: str):
    """Input that is not an HTTP request exits 2 with a message naming the problem."""
    result = _verify(cli, raw)
    assert result.code == 2
    assert message in result.err
    assert result.out == ""


@pytest.mark.parametrize(
    ("digits", "message"),
    [
        ("0" * 4999 + "5", "Content-Length has 5000 digits, more than 18"),
        ("1" * 19, "Content-Length has 19 digits, more than 18"),
    ],
)
def test_verify_content_length_of_too_many_digits_exits_2(cli: Run, digits: str, message: str):
    """A Content-Length of more than 18 digits (as the server reads it) is unreadable input,
    exit 2; over 4300 digits int() raised ValueError: a traceback and exit 1."""
    raw = f"POST /x HTTP/1.1\nHost: a\nContent-Length: {digits}\n\nhello".encode()
    result = _verify(cli, raw)
    assert result.code == 2
    assert message in result.err
    assert result.out == ""
    eighteen = b"POST /x HTTP/1.1\nHost: a\nContent-Length: " + b"0" * 17 + b"5\n\nhello"
    assert parse_request(eighteen).body == b"hello"  # 18 digits are still read


@pytest.mark.parametrize(
    ("swap", "extra", "message"),
    [
        ({"host": "api.example#"}, (), "is not a host[:port]"),
        ({"host": "evil@api.example"}, (), "is not a host[:port]"),
        ({"host": "api.example:"}, (), "is not a host[:port]"),
        ({"target": "/orders?id=7#x"}, (), "holds a '#'"),
        ({"target": "http://u@api.example/orders?id=7"}, (), "is not a host[:port]"),
        ({}, ("--authority", ""), "--authority"),
        ({}, ("--authority", "api.example/x"), "--authority"),
        ({}, ("--scheme", "a b"), "--scheme"),
    ],
)
def test_verify_refuses_what_the_server_refuses_with_exit_2(
    cli: Run, swap: dict[str, str], extra: tuple[str, ...], message: str
):
    """A Host, target, --authority or --scheme the middleware would never verify (they
    would split differently once put into a URL) is a clear usage error, not a verdict
    or a traceback."""
    result = _verify(cli, _raw_request(_sign(cli), **swap), *extra)
    assert result.code == 2, result.out + result.err
    assert message in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("now", ["nan", "inf", "-inf", "soon"])
def test_verify_now_must_be_a_finite_number(cli: Run, now: str):
    """--now nan would pass every time check (a 1970 signature printed VALID): exit 2."""
    result = cli(
        "verify", "--key-id", KEY_ID, "--secret", SECRET, f"--now={now}",
        stdin=_raw_request(_sign(cli)),
    )  # fmt: skip
    assert result.code == 2
    assert "--now" in result.err
    assert result.out == ""


# -- help and import isolation -------------------------------------------------------


def test_version_prints_the_package_version(cli: Run) -> None:
    """`hmacguard --version` prints the package's version and exits 0, with no COMMAND."""
    result = cli("--version")
    assert result.code == 0
    assert result.out == f"hmacguard {hmacguard.__version__}\n"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_help_has_example_and_exit_codes(cli: Run, command: str):
    """`hmacguard COMMAND --help` shows an example invocation and the exit codes."""
    result = cli(command, "--help")
    assert result.code == 0
    assert "examples:" in result.out
    assert f"hmacguard {command}" in result.out.split("examples:")[1]
    assert "exit codes:" in result.out


# The codes each subcommand can return: only verify and demo ever exit 1.
EXIT_CODES = {
    "demo": ["0", "1", "2"],
    "keygen": ["0", "2"],
    "fingerprint": ["0", "2"],
    "digest": ["0", "2"],
    "sign": ["0", "2"],
    "verify": ["0", "1", "2"],
}


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help_lists_only_its_own_exit_codes(cli: Run, command: str):
    """Each subcommand's exit-code table lists the codes it returns and no other
    subcommand's lines; the top-level --help keeps the whole table."""
    table = cli(command, "--help").out.split("exit codes:\n")[1]
    codes = [line.split()[0] for line in table.splitlines() if line.strip()]
    assert codes == EXIT_CODES[command]
    others = [name for name in SUBCOMMANDS if name != command]
    assert not [name for name in others if f"{name}:" in table]
    assert "verify: the request is rejected" in cli("--help").out


def test_usage_error_exits_2(cli: Run):
    """An unknown subcommand or a missing argument is exit 2 (argparse's usage error)."""
    assert cli("frobnicate").code == 2
    assert cli("sign", "GET").code == 2


def test_cli_and_keygen_load_no_web_packages():
    """Importing the CLI and running keygen, sign and --help loads no httpx/starlette/uvicorn."""
    code = (
        "import sys, contextlib, io\n"
        "from hmacguard._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['keygen']); main(['--help'])\n"
        "    main(['sign', 'GET', 'https://a.example/', '--key-id', 'k', '--secret', 'k'*44])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('httpx', 'starlette', 'uvicorn', 'anyio', 'redis')))\n"
    )
    result = _python("-c", code)
    assert result.code == 0, result.err
    assert result.out.strip() == "[]"


def test_demo_without_extra_names_pip_line():
    """When uvicorn (or another demo dependency) is missing, demo exits 2 with the pip line."""
    code = (
        "import sys\n"
        "sys.modules['uvicorn'] = None\n"
        "from hmacguard._cli import main\n"
        "raise SystemExit(main(['demo']))\n"
    )
    result = _python("-c", code)
    assert result.code == 2
    assert 'pip install "hmacguard[demo]"' in result.err
    assert "uvicorn" in result.err


# -- demo ---------------------------------------------------------------------------

# (what was sent, status, what the client was told, what the server logged). A replay, an
# expired signature and a wrong key are all told invalid_signature (THREATS K2/E1); the
# demo's server runs in its process, so its table shows the logged reason beside it.
DEMO_ROWS = [
    ("signed POST /orders", "200", "accepted", "-"),
    ("the same request, replayed", "401", "invalid_signature", "replayed"),
    ("its body tampered", "401", "digest_mismatch", "digest_mismatch"),
    ("unsigned POST /orders", "401", "missing_signature", "missing_signature"),
    ("signed an hour ago", "401", "invalid_signature", "expired"),
    ("signed with the wrong key", "401", "invalid_signature", "invalid_signature"),
    ("signed, 256 KiB body", "413", "body_too_large", "body_too_large"),
    ("Standard Webhooks delivery", "200", "received", "-"),
    ("the same delivery, redelivered", "200", "duplicate", "-"),
]


def test_demo_end_to_end_subprocess():
    """`python -m hmacguard demo` plays every row with its expected outcome, plainly, in 30 s."""
    env = {"NO_COLOR": "", "HMACGUARD_REDIS_URL": ""}
    start = time.monotonic()
    result = _python("-m", "hmacguard", "demo", env=env, timeout=30)
    assert time.monotonic() - start < 30
    assert result.code == 0, result.out + result.err
    assert "\x1b[" not in result.out  # not a TTY: no colours
    lines = result.out.splitlines()
    assert re.search(r"\sstatus\s+client was told\s+server logged\s+ms$", lines[4]), lines[4]
    for sent, status, reason, logged in DEMO_ROWS:
        (row,) = [line for line in lines if line.strip().startswith(sent)]
        assert re.search(rf"\s{status}\s+{reason}\s+{logged}\s+\d+\.\d$", row), row
    assert "all 9 outcomes as expected" in result.out
    assert "UNEXPECTED" not in result.out
    assert "hmacguard rejected" not in result.err  # the log is read into the table, not printed


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_demo_server_connections_have_nagle_off(loop: str, monkeypatch: pytest.MonkeyPatch):
    """Every connection the demo's server accepts has TCP_NODELAY set, on either event loop.

    With Nagle's algorithm on, an answer's head and body (two writes) waited for the
    client's delayed ACK: about 40 ms on each request after the first of a keep-alive
    connection, which the demo's table showed as the middleware's time. asyncio sets
    TCP_NODELAY only on a socket whose protocol number is TCP, and the demo bound its
    socket with the default 0 (uvloop sets it regardless).
    """
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    from hmacguard import _demo  # noqa: PLC0415

    config = _demo.uvicorn.Config
    monkeypatch.setattr(
        _demo.uvicorn, "Config", lambda app, **options: config(app, **options, loop=loop)
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with _demo.DemoServer(app) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(3):  # one keep-alive connection
            assert client.post("/", content=b"{}").text == "ok"
        connections = list(server._server.server_state.connections)
        assert len(connections) == 1
        (connection,) = connections
        sock = connection.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_demo_exits_1_when_an_outcome_differs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    """The demo is a smoke test: a row whose answer differs from the script fails it (exit 1)."""
    from hmacguard import _demo  # noqa: PLC0415

    monkeypatch.setattr(
        _demo,
        "play",
        lambda *a: [
            _demo.Row("signed POST /orders", 200, "accepted", "-", 401, "x", "x"),
            # The client's answer as scripted, but the server logged another reason.
            _demo.Row(
                "signed an hour ago",
                401,
                "invalid_signature",
                "expired",
                401,
                "invalid_signature",
                "not_yet_valid",
            ),
        ],
    )
    monkeypatch.delenv("HMACGUARD_REDIS_URL", raising=False)
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "UNEXPECTED: wanted 200 accepted\n" in out
    assert "UNEXPECTED: wanted 401 invalid_signature (logged expired)\n" in out
    assert "2 of 2 outcomes were not as expected" in out


def test_demo_with_redis_url_but_without_the_redis_extra_exits_2_with_the_pip_line():
    """HMACGUARD_REDIS_URL set without redis installed: exit 2 and the install line, as
    docs/cli.md promises, not an ImportError traceback."""
    code = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "from hmacguard._cli import main\n"
        "raise SystemExit(main(['demo']))\n"
    )
    result = _python("-c", code, env={"HMACGUARD_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert result.code == 2, result.err
    assert 'pip install "hmacguard[redis]"' in result.err
    assert "Traceback" not in result.err
    assert result.out == ""


def test_demo_with_unreachable_redis_exits_2_naming_the_url_without_its_password(
    cli: Run, monkeypatch: pytest.MonkeyPatch
):
    """Redis that does not answer is reported before the demo starts (not as four
    unexpected 503 rows): exit 2, the URL with its password masked, and what to do."""
    with socket.socket() as closed:  # bound but not listening: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        monkeypatch.setenv("HMACGUARD_REDIS_URL", f"redis://demo:hunter2@127.0.0.1:{port}/0")
        result = cli("demo")
    assert result.code == 2
    assert result.out == ""
    assert f"redis://demo:***@127.0.0.1:{port}/0 did not answer" in result.err
    assert "unset HMACGUARD_REDIS_URL" in result.err
    assert "hunter2" not in result.err


def test_demo_with_an_invalid_redis_url_exits_2_without_its_password(
    cli: Run, monkeypatch: pytest.MonkeyPatch
):
    """A Redis URL the store cannot use is a usage error that masks the password."""
    monkeypatch.setenv("HMACGUARD_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0?frobnicate=1")
    result = cli("demo")
    assert result.code == 2
    assert "frobnicate" in result.err
    assert "hunter2" not in result.err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_demo_table_colours_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch):
    """ANSI colours appear on a TTY, and not when NO_COLOR is set or output is a pipe."""
    from hmacguard import _demo  # noqa: PLC0415

    rows = [_demo.Row("signed POST /orders", 200, "accepted", "-", 200, "accepted", "-", 1.0)]
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = _Terminal()
    _demo.render(rows, tty)
    assert "\x1b[32m" in tty.getvalue()
    pipe = io.StringIO()
    _demo.render(rows, pipe)
    assert "\x1b[" not in pipe.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = _Terminal()
    _demo.render(rows, tty)
    assert "\x1b[" not in tty.getvalue()


def test_demo_serve_prints_a_curl_command_the_server_accepts():
    """`demo --serve` prints the throw-away key and a signed curl command the server accepts."""
    env = {**os.environ, "HMACGUARD_REDIS_URL": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hmacguard", "demo", "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("curl "):
                break
        text = "".join(seen)
        assert "throw-away" in text
        secret = re.search(r"secret: +(\S+)", text)
        assert secret is not None
        assert len(base64.b64decode(secret.group(1))) == 32
        words = shlex.split(seen[-1])
        url = next(w for w in words if w.startswith("http://127.0.0.1:"))
        headers = [tuple(words[i + 1].split(": ", 1)) for i, w in enumerate(words) if w == "-H"]
        body = words[words.index("--data-binary") + 1].encode()
        response = httpx.post(url, headers=headers, content=body, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"
        again = httpx.post(url, headers=headers, content=body, timeout=10)
        # Told like a bad MAC (THREATS K2); the server's log on stderr names the replay.
        assert (again.status_code, again.json()["reason"]) == (401, "invalid_signature")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:  # pragma: no cover
                proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0
    assert logged_reasons(err) == ["replayed"], err


@pytest.mark.redis
def test_demo_with_redis_nonce_store():
    """With HMACGUARD_REDIS_URL set, the demo uses Redis and still sees the replay rejected."""
    require_redis_server()
    with RedisServer() as redis_server:
        result = _python(
            "-m", "hmacguard", "demo", env={"HMACGUARD_REDIS_URL": redis_server.url}, timeout=30
        )
    assert result.code == 0, result.out + result.err
    assert "nonce store Redis (HMACGUARD_REDIS_URL)" in result.out
    assert re.search(
        r"the same request, replayed\s+401\s+invalid_signature\s+replayed\s", result.out
    )
