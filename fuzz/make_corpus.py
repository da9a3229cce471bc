#!/usr/bin/env python3
"""(Re)generate the seed corpora in fuzz/corpus/<target>/ from the test vectors.

Sources: tests/vectors/rfc9421.json, rfc9530.json, webhooks.json and the httpwg
structured-field suite in tests/vectors/structured-field-tests/, plus requests
signed by hmacguard's own ``Signer`` for the verifier. Each seed is one file
named by the SHA-1 of its bytes (libFuzzer's convention), in the input format
the matching harness documents (a flags byte, then NUL-separated parts). Seeds
longer than 16 KiB are skipped, so the corpus stays small and fits -max_len.

Run: ``python fuzz/make_corpus.py`` (needs hmacguard importable, not atheris).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
CORPUS = Path(__file__).resolve().parent / "corpus"
MAX_LEN = 16384
SF_KINDS = {"item": 0, "list": 1, "dictionary": 2}

sys.path.insert(0, str(ROOT / "src"))

from hmacguard import HMACKey, Signer  # noqa: E402  after the path is set

# Keys and clock of fuzz/fuzz_verifier.py.
NOW = 1618884473
# The *-generated files of the suite hold hundreds of near-identical tests; a few of each will do.
GENERATED_SAMPLE = 24


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def _seed(flags: int, *parts: str) -> bytes:
    return bytes([flags]) + "\x00".join(parts).encode("latin-1")


def _pairs(headers: Iterable[tuple[str, str]]) -> list[str]:
    return [text for pair in headers for text in pair]


def _inner(signature_input: str) -> str:
    """The inner list of a one-member Signature-Input (what follows ``label=``)."""
    return signature_input.split("=", 1)[1]


def structured_fields() -> Iterator[bytes]:
    """Every parse test of the httpwg suite, plus the RFC 9421 Signature-Input values."""
    for path in sorted((VECTORS / "structured-field-tests").glob("*.json")):
        tests = json.loads(path.read_text(encoding="utf-8"))
        if path.stem.endswith("-generated"):
            tests = tests[:: max(1, len(tests) // GENERATED_SAMPLE)]
        for test in tests:
            kind = SF_KINDS.get(test.get("header_type", ""))
            if kind is None or "raw" not in test:
                continue
            value = ", ".join(test["raw"])
            try:
                yield bytes([kind]) + value.encode("latin-1")
            except UnicodeEncodeError:
                yield bytes([kind | 8]) + value.encode("utf-8")
    rfc = _load("rfc9421.json")
    for vector in [rfc["b_2_5"], *rfc["request_bases"].values()]:
        yield _seed(2, vector["signature_input"])
        yield _seed(6, vector["signature_input"])
        yield _seed(3, _inner(vector["signature_input"]))


def _signed_requests() -> Iterator[tuple[int, str, str, str, list[tuple[str, str]]]]:
    """(verifier flags, method, path, body, headers) of requests that verify."""
    rfc = _load("rfc9421.json")
    request = rfc["test_request"]
    target = request["url"].split("example.com", 1)[1]
    headers = [tuple(h) for h in request["headers"]]
    b25 = rfc["b_2_5"]
    yield (
        4,
        request["method"],
        target,
        request["body"],
        [*headers, ("Signature-Input", b25["signature_input"]), ("Signature", b25["signature"])],
    )
    key = HMACKey("fuzz-key", b"k" * 32)
    key512 = HMACKey("fuzz-512", b"s" * 64, algorithm="hmac-sha512")
    shapes = [
        (1, Signer(key), "POST", "/foo?param=Value&Pet=dog", '{"hello": "world"}'),
        (1, Signer(key, include_alg=True), "GET", "/a%2Fb/c?x=1&y=%20", ""),
        (3, Signer(key, tag="fuzz"), "PUT", "/items/1", "x" * 64),
        (1, Signer(key512, digest="sha-512"), "DELETE", "/", "body"),
        (0, Signer(key, nonce=False), "GET", "/plain", ""),
        (
            5,
            Signer(
                key,
                components=("@method", "@target-uri", '@query-param;name="Pet"', "content-type"),
                expires_in=60,
            ),
            "GET",
            "/q?Pet=dog&a=b",
            "",
        ),
    ]
    base_headers = [("Host", "example.com"), ("Content-Type", "application/json")]
    for index, (flags, signer, method, path, body) in enumerate(shapes):
        request_headers = [*base_headers, ("X-Dict", "a=1, b=(x y);q=2")]
        added = signer.sign(
            method,
            "https://example.com" + path,
            request_headers,
            body.encode("latin-1") or None,
            now=NOW,
            nonce=f"fuzz-nonce-{index}",
        )
        yield flags, method, path, body, [*request_headers, *added.items()]


def signature_fields() -> Iterator[bytes]:
    """RFC 9421 signature fields (with a dummy MAC where the RFC's is not HMAC), and signed ones."""
    rfc = _load("rfc9421.json")
    yield _seed(0, rfc["b_2_5"]["signature_input"], rfc["b_2_5"]["signature"])
    dummy = base64.b64encode(b"\x00" * 32).decode("ascii")
    for vector in rfc["request_bases"].values():
        label = vector["signature_input"].split("=", 1)[0]
        yield _seed(0, vector["signature_input"], f"{label}=:{dummy}:")
    for flags, _, _, _, headers in _signed_requests():
        found = dict(headers)
        if "Signature-Input" in found:
            yield _seed(flags & 2 and 4, found["Signature-Input"], found["Signature"])
    yield _seed(3)


def signature_base() -> Iterator[bytes]:
    """The RFC 9421 example requests with each of their covered-component lists."""
    rfc = _load("rfc9421.json")
    request = rfc["test_request"]
    rest = request["url"].split("://", 1)[1]
    headers = _pairs(tuple(h) for h in request["headers"])
    for vector in [rfc["b_2_5"], *rfc["request_bases"].values()]:
        yield _seed(0, request["method"], rest, _inner(vector["signature_input"]), *headers)
    for request_key, lines_key in (
        ("request", "lines"),
        ("dictionary_request", "dictionary_lines"),
    ):
        canon = rfc["canonicalization"][request_key]
        canon_rest = canon["url"].split("://", 1)[1]
        canon_headers = _pairs(tuple(h) for h in canon["headers"])
        identifiers = [line.split(": ", 1)[0] for _, line in rfc["canonicalization"][lines_key]]
        yield _seed(1, canon["method"], canon_rest, f"({' '.join(identifiers)})", *canon_headers)
        for identifier in identifiers:
            yield _seed(1, canon["method"], canon_rest, f"({identifier})", *canon_headers)


def content_digest() -> Iterator[bytes]:
    """RFC 9530's digests with their bodies, deprecated samples, and both algorithms at once."""
    digests = _load("rfc9530.json")
    fields = []
    for entry in digests["digests"]:
        body = base64.b64decode(entry["body_base64"]).decode("latin-1")
        fields.append((entry["field"], body))
        yield _seed(0, entry["field"], body)
        yield _seed(6, entry["field"], body)
    samples = digests["deprecated_samples"]
    body = samples["body"]
    for name, field in samples.items():
        if name != "body":
            yield _seed(0, field, body)
            yield _seed(0, f"{field}, {fields[0][0]}", body)
    if len(fields) > 1:
        yield _seed(1, f"{fields[0][0]}, {fields[1][0]}", fields[0][1])


def verifier() -> Iterator[bytes]:
    """Requests that verify, under the verifier policy each was signed for."""
    for flags, method, path, body, headers in _signed_requests():
        yield _seed(flags, method, path, body, *_pairs(headers))


def webhooks() -> Iterator[bytes]:
    """Each provider's vector delivery, including rotation and legacy variants."""
    vectors = _load("webhooks.json")
    standard = vectors["standard_webhooks"]
    for prefix in ("webhook", "svix"):
        for signature in (
            standard["expected"],
            standard["negative"],
            f"{standard['multi_prefix']} {standard['expected']}",
        ):
            headers = [
                (f"{prefix}-id", standard["msg_id"]),
                (f"{prefix}-timestamp", str(standard["timestamp"])),
                (f"{prefix}-signature", signature),
            ]
            yield _seed(0, standard["payload"], *_pairs(headers))
    stripe = vectors["stripe"]
    for header in (stripe["header"], stripe["rotation_header"]):
        yield _seed(1, stripe["payload"], "Stripe-Signature", header)
    github = vectors["github"]
    delivery = ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
    yield _seed(
        2, github["payload"], "X-Hub-Signature-256", github["x_hub_signature_256"], *delivery
    )
    yield _seed(6, github["payload"], "X-Hub-Signature", github["x_hub_signature"], *delivery)
    slack = vectors["slack"]
    yield _seed(
        3,
        slack["body"],
        "X-Slack-Request-Timestamp",
        str(slack["timestamp"]),
        "X-Slack-Signature",
        slack["signature"],
    )


TARGETS = {
    "structured_fields": structured_fields,
    "signature_fields": signature_fields,
    "signature_base": signature_base,
    "content_digest": content_digest,
    "verifier": verifier,
    "webhooks": webhooks,
}


def main() -> None:
    """Write every target's seeds, replacing what was there."""
    total = 0
    for target, seeds in TARGETS.items():
        directory = CORPUS / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        written = {seed for seed in seeds() if len(seed) <= MAX_LEN}
        for seed in written:
            (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)  # noqa: S324  a name
        size = sum(len(seed) for seed in written)
        total += size
        print(f"{target}: {len(written)} seeds, {size} bytes")
    print(f"total: {total} bytes")


if __name__ == "__main__":
    main()
