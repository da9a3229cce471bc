"""Core benchmark: sign and verify one request with hmacguard, its peer, and a floor.

Run from the repository root::

    .venv/bin/python bench/core.py                # full run, under a minute
    .venv/bin/python bench/core.py --json out.json
    .venv/bin/python bench/core.py --profile      # where hmacguard's verify spends its time

Every implementation works on the same request (a 1 KiB JSON POST, then the
same request with a 1 MiB body) and covers the same components: ``@method
@authority @path @query content-type content-digest`` with ``created``,
``keyid`` and ``nonce``. Before timing anything the script checks that the
three signers produce byte-identical headers and that every verifier accepts
them, so the figures compare the same job.

Implementations:

* hmacguard: ``Signer.sign`` and ``Verifier.verify`` with the default policy,
  full validation included (structure, parameters, time window, coverage, and
  ``Content-Digest`` against the body).
* http-message-signatures (PyPI), ``HMAC_SHA256`` on a ``requests``
  ``PreparedRequest`` built once outside the timed loop. Given ``body=``, the
  library computes ``Content-Digest`` when signing and checks it when verifying,
  so no extra hashing is added to its side.
* floor: a minimal hand-written RFC 9421 HMAC sign/verify with plain string
  operations, ``hmac.digest`` and ``hashlib.sha256``, validating nothing it does
  not need in order to compute: a lower bound for a pure-Python verifier.
* bare crypto: sha256 of the body plus one HMAC over the signature base.

Each figure is the best of many short timed runs, in µs per call of process
CPU time, with the implementations of a case timed in turns (see
``best_seconds``); compare ratios, not absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import cProfile
import datetime
import hashlib
import hmac
import importlib.metadata
import io
import json
import os
import platform
import pstats
import secrets
import ssl
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import http_sf
import requests
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)

from hmacguard import (
    DigestVerifier,
    HMACKey,
    Signer,
    Verifier,
    make_content_digest,
    verify_content_digest,
)
from hmacguard._structured_fields import parse_dictionary

KIB = 1024
MIB = 1024 * KIB
URL = "https://api.example.com/v1/orders?customer=42&expand=items"
KEY_ID = "client-1"
SECRET = bytes(range(32))  # 32 bytes, the minimum hmacguard accepts
LABEL = "sig1"
COMPONENTS = ("@method", "@authority", "@path", "@query", "content-type", "content-digest")
REQUIRED = ("@method", "@authority", "@path", "@query", "content-digest")
FIXED_NONCE = "bench-nonce-0123456789"  # only for the cross-check, never timed
THROUGHPUT_BYTES = 16 * MIB
CHUNK = 64 * KIB
NOW = float(int(time.time()))  # the signatures' created; hmacguard verifies at this time

# The headers as a server sees them (lowercase names, as in ASGI), before signing.
BASE_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json",
    "user-agent": "bench-client/1.0",
    "x-request-id": "7f3c2a8e-2b1d-4c55-9a0e-3d1f6b9c8e21",
}

# Targets from the issue, for the 1 KiB request.
TARGET_PEER_SPEEDUP = 10.0  # http-message-signatures verify / hmacguard verify
TARGET_FLOOR_RATIO = 1.5  # hmacguard verify / floor verify
TARGET_THROUGHPUT = 0.90  # hmacguard digest MB/s / raw hashlib.sha256 MB/s


def json_body(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes: an order with line items, padded."""
    head, tail, end = '{"customer": 42, "currency": "EUR", "items": [', '], "note": "', '"}'
    items: list[str] = []
    length = len(head) + len(tail) + len(end)
    while True:
        i = len(items)
        item = json.dumps({"sku": f"SKU-{i:06d}", "qty": i % 7 + 1, "price": "19.99"})
        extra = len(item) + (2 if items else 0)
        if length + extra > size:
            break
        items.append(item)
        length += extra
    text = head + ", ".join(items) + tail + "x" * (size - length) + end
    assert len(text) == size
    json.loads(text)
    return text.encode("ascii")


# -- the floor: a minimal hand-written RFC 9421 HMAC sign and verify ---------


def _url_parts(url: str) -> tuple[str, str, str]:
    rest = url.partition("://")[2]
    authority, _, target = rest.partition("/")
    path, _, query = target.partition("?")
    return authority, "/" + path, "?" + query


def floor_sign(
    method: str, url: str, headers: dict[str, str], body: bytes, secret: bytes, *, nonce: str
) -> dict[str, str]:
    """Sign with string concatenation: the least work that yields valid headers."""
    authority, path, query = _url_parts(url)
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    params = (
        '("@method" "@authority" "@path" "@query" "content-type" "content-digest")'
        f';created={int(NOW)};keyid="{KEY_ID}";nonce="{nonce}"'
    )
    base = (
        f'"@method": {method}\n"@authority": {authority}\n"@path": {path}\n'
        f'"@query": {query}\n"content-type": {headers["content-type"]}\n'
        f'"content-digest": {digest}\n"@signature-params": {params}'
    ).encode()
    mac = base64.b64encode(hmac.digest(secret, base, "sha256")).decode()
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{mac}:",
    }


def floor_verify(
    method: str, url: str, headers: dict[str, str], body: bytes, secret: bytes
) -> bool:
    """Verify with plain string operations: split, concatenate, HMAC, compare."""
    label, _, params = headers["signature-input"].partition("=")
    names = params[1 : params.index(")")].split(" ")
    signature = binascii.a2b_base64(headers["signature"][len(label) + 2 : -1])
    authority, path, query = _url_parts(url)
    derived = {'"@method"': method, '"@authority"': authority, '"@path"': path, '"@query"': query}
    lines = []
    for name in names:
        value = derived.get(name)
        if value is None:
            value = headers[name[1:-1]]
        lines.append(f"{name}: {value}")
    lines.append(f'"@signature-params": {params}')
    base = "\n".join(lines).encode()
    if not hmac.compare_digest(hmac.digest(secret, base, "sha256"), signature):
        return False
    expected = binascii.a2b_base64(headers["content-digest"][9:-1])
    return hmac.compare_digest(hashlib.sha256(body).digest(), expected)


# -- measurement -------------------------------------------------------------


@dataclass
class Settings:
    repeat: int  # rounds
    min_time: float  # seconds per timed run; 0 means "use number as given"
    number: int
    # Process CPU time by default: time other processes take on a shared machine
    # does not count. --wall switches to time.perf_counter.
    clock: Callable[[], float] = time.process_time


def calibrate(fn: Callable[[], object], settings: Settings) -> int:
    """Return how many calls make one repeat last at least ``settings.min_time``."""
    if settings.min_time <= 0:
        return settings.number
    timer = timeit.Timer(fn, timer=settings.clock)
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= settings.min_time:
            return number
        scale = settings.min_time / elapsed if elapsed > 0 else 10.0
        number = max(number * 2, int(number * scale * 1.1))


def best_seconds(fns: list[Callable[[], object]], settings: Settings) -> list[tuple[float, int]]:
    """Time ``fns`` interleaved; return (best seconds per call, calls per repeat) for each.

    Each round times every function once, in turn, so a slow spell on a shared
    machine hits all of them alike and their ratios stay fair. Runs are short
    (a few ms) and many, so some fit between the scheduler's interruptions; the
    best is kept (timeit's advice: the minimum is the least disturbed run).
    """
    timers = [timeit.Timer(fn, timer=settings.clock) for fn in fns]
    numbers = [calibrate(fn, settings) for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(settings.repeat):
        for i, (timer, number) in enumerate(zip(timers, numbers, strict=True)):
            best[i] = min(best[i], timer.timeit(number) / number)
    return list(zip(best, numbers, strict=True))


@dataclass
class Row:
    case: str
    implementation: str
    us_per_op: float
    number: int
    ratio: float | None = None  # this row / the case's reference row
    note: str = ""


@dataclass
class Throughput:
    implementation: str
    mb_per_s: float
    fraction_of_raw: float | None = None


@dataclass
class Target:
    name: str
    value: float
    need: str
    passed: bool


@dataclass
class Results:
    machine: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": cpu or "unknown",
        "cpu_count": str(os.cpu_count()),
        "openssl": ssl.OPENSSL_VERSION,
        "hmacguard": version("hmacguard"),
        "http-message-signatures": version("http-message-signatures"),
        "http-sf": version("http-sf"),
    }


# -- the request and the three implementations -------------------------------


class Scenario:
    """One request (method, URL, headers, body), signed once by each implementation."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.method = "POST"
        self.url = URL
        self.headers = {**BASE_HEADERS, "content-length": str(len(body))}

        self.key = HMACKey(KEY_ID, SECRET)
        self.signer = Signer(self.key)
        self.verifier = Verifier({KEY_ID: self.key})

        resolver = MappingKeyResolver(public_keys={KEY_ID: SECRET}, private_keys={KEY_ID: SECRET})
        self.hms_signer = HTTPMessageSigner(
            signature_algorithm=algorithms.HMAC_SHA256, key_resolver=resolver
        )
        self.hms_verifier = HTTPMessageVerifier(
            signature_algorithm=algorithms.HMAC_SHA256, key_resolver=resolver
        )
        self.hms_created = datetime.datetime.fromtimestamp(NOW, tz=datetime.timezone.utc)
        self.hms_max_age = datetime.timedelta(seconds=300)
        self.sign_request = self._prepared({})

        # Cross-check: with the same nonce, the three signers agree byte for byte.
        ours = self.signer.sign(
            self.method, self.url, self.headers, body, now=NOW, nonce=FIXED_NONCE
        )
        self.hms_sign(FIXED_NONCE)
        theirs = {
            name: self.sign_request.headers[name]
            for name in ("Content-Digest", "Signature-Input", "Signature")
        }
        floor = floor_sign(self.method, self.url, self.headers, body, SECRET, nonce=FIXED_NONCE)
        if not ours == theirs == floor:
            raise SystemExit(
                f"the signers disagree:\n  hmacguard {ours}\n  peer      {theirs}\n"
                f"  floor     {floor}"
            )
        self.signed = ours
        self.signed_headers = {**self.headers, **{k.lower(): v for k, v in ours.items()}}
        self.asgi_headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in self.signed_headers.items()
        ]
        self.verify_request = self._prepared(ours)
        self.signature_base = self._signature_base()

        # Cross-check: every verifier accepts the request, and rejects a changed body.
        self.verify()
        self.verify_asgi()
        self.hms_verify()
        if not self.floor_verify():
            raise SystemExit("the floor verifier rejected a valid request")
        tampered = body[:-1] + b" "
        if floor_verify(self.method, self.url, self.signed_headers, tampered, SECRET):
            raise SystemExit("the floor verifier accepted a changed body")

    def _prepared(self, extra: dict[str, str]) -> requests.PreparedRequest:
        headers = {**self.headers, **extra}
        return requests.Request(self.method, self.url, headers=headers, data=self.body).prepare()

    def _signature_base(self) -> bytes:
        authority, path, query = _url_parts(self.url)
        params = self.signed["Signature-Input"].partition("=")[2]
        return (
            f'"@method": {self.method}\n"@authority": {authority}\n"@path": {path}\n'
            f'"@query": {query}\n"content-type": {self.headers["content-type"]}\n'
            f'"content-digest": {self.signed["Content-Digest"]}\n"@signature-params": {params}'
        ).encode()

    # hmacguard
    def sign(self) -> object:
        return self.signer.sign(self.method, self.url, self.headers, self.body, now=NOW)

    def verify(self) -> object:
        return self.verifier.verify(self.method, self.url, self.signed_headers, self.body, now=NOW)

    def verify_asgi(self) -> object:
        return self.verifier.verify(self.method, self.url, self.asgi_headers, self.body, now=NOW)

    # http-message-signatures
    def hms_sign(self, nonce: str | None = None) -> None:
        request = self.sign_request
        # The library refuses to overwrite a Content-Digest it did not make; a real
        # client signs a fresh request, so drop the one from the previous call.
        request.headers.pop("Content-Digest", None)
        self.hms_signer.sign(
            request,
            key_id=KEY_ID,
            created=self.hms_created,
            nonce=secrets.token_urlsafe(16) if nonce is None else nonce,
            label=LABEL,
            include_alg=False,
            covered_component_ids=COMPONENTS,
            body=self.body,
        )

    def hms_verify(self) -> object:
        return self.hms_verifier.verify(
            self.verify_request,
            max_age=self.hms_max_age,
            require_components=REQUIRED,
            body=self.body,
        )

    # floor
    def floor_sign(self) -> object:
        return floor_sign(
            self.method, self.url, self.headers, self.body, SECRET, nonce=secrets.token_urlsafe(16)
        )

    def floor_verify(self) -> bool:
        return floor_verify(self.method, self.url, self.signed_headers, self.body, SECRET)

    # bare crypto
    def bare_crypto(self) -> object:
        hashlib.sha256(self.body).digest()
        return hmac.digest(SECRET, self.signature_base, "sha256")


# -- the run -----------------------------------------------------------------


def size_name(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def run(settings: Settings, log: Callable[[str], None]) -> Results:
    results = Results(machine=machine_info())

    def group(case: str, entries: list[tuple[str, Callable[[], object], str]]) -> list[Row]:
        """Measure one case's implementations; ratios are against the first entry."""
        log(f"  {case}: {', '.join(name for name, _, _ in entries)}")
        timings = best_seconds([fn for _, fn, _ in entries], settings)
        rows = [
            Row(case, name, seconds * 1e6, number, note=note)
            for (name, _, note), (seconds, number) in zip(entries, timings, strict=True)
        ]
        for row in rows:
            row.ratio = row.us_per_op / rows[0].us_per_op
        results.rows.extend(rows)
        return rows

    for size in (KIB, MIB):
        scenario = Scenario(json_body(size))
        name = size_name(size)
        group(
            f"sign {name} POST",
            [
                ("hmacguard", scenario.sign, ""),
                ("http-message-signatures", scenario.hms_sign, ""),
                ("floor (hand-written)", scenario.floor_sign, ""),
            ],
        )
        group(
            f"verify {name} POST",
            [
                ("hmacguard", scenario.verify, "headers as dict[str, str]"),
                ("hmacguard, ASGI byte pairs", scenario.verify_asgi, "[(bytes, bytes)]"),
                ("http-message-signatures", scenario.hms_verify, "body= checks Content-Digest"),
                ("floor (hand-written)", scenario.floor_verify, ""),
                (
                    "bare crypto",
                    scenario.bare_crypto,
                    f"sha256(body) + HMAC({len(scenario.signature_base)} B)",
                ),
            ],
        )

    # Structured fields: one Signature-Input value, as the verifier parses it.
    value = Scenario(json_body(KIB)).signed["Signature-Input"]
    raw = value.encode("ascii")
    group(
        "parse Signature-Input",
        [
            ("hmacguard", lambda: parse_dictionary(value, reject_duplicates=True), ""),
            ("http_sf.parse", lambda: http_sf.parse(raw, tltype="dictionary"), "given bytes"),
            (
                "str.partition/split",
                lambda: value.partition("=")[2].partition(")")[0][1:].split(" "),
                "no validation",
            ),
        ],
    )

    # Content-Digest throughput on a large body, whole and in 64 KiB chunks.
    body = bytes(range(256)) * (THROUGHPUT_BYTES // 256)
    digest = make_content_digest(body)
    view = memoryview(body)

    def chunked() -> None:
        checker = DigestVerifier(digest)
        for start in range(0, len(body), CHUNK):
            checker.update(view[start : start + CHUNK])
        checker.verify()

    def raw_chunked() -> bytes:
        hasher = hashlib.sha256()
        for start in range(0, len(body), CHUNK):
            hasher.update(view[start : start + CHUNK])
        return hasher.digest()

    verify_content_digest(digest, body)
    chunked()
    mib = size_name(THROUGHPUT_BYTES)
    rows = group(
        f"digest {mib}",
        [
            ("hashlib.sha256(body).digest()", lambda: hashlib.sha256(body).digest(), ""),
            ("hashlib.sha256, 64 KiB chunks", raw_chunked, ""),
            ("hmacguard.verify_content_digest", lambda: verify_content_digest(digest, body), ""),
            ("hmacguard.DigestVerifier, 64 KiB chunks", chunked, ""),
        ],
    )
    raw_rate = THROUGHPUT_BYTES / rows[0].us_per_op  # bytes per µs == MB/s
    for row in rows:
        rate = THROUGHPUT_BYTES / row.us_per_op
        results.throughput.append(Throughput(row.implementation, rate, rate / raw_rate))

    # Targets.
    def us(case: str, implementation: str) -> float:
        for row in results.rows:
            if row.case == case and row.implementation == implementation:
                return row.us_per_op
        raise KeyError((case, implementation))

    ours = us("verify 1 KiB POST", "hmacguard")
    peer = us("verify 1 KiB POST", "http-message-signatures")
    floor = us("verify 1 KiB POST", "floor (hand-written)")
    results.targets.append(
        Target(
            "verify 1 KiB: http-message-signatures / hmacguard",
            peer / ours,
            f">= {TARGET_PEER_SPEEDUP:g}x",
            peer / ours >= TARGET_PEER_SPEEDUP,
        )
    )
    results.targets.append(
        Target(
            "verify 1 KiB: hmacguard / floor",
            ours / floor,
            f"<= {TARGET_FLOOR_RATIO:g}x",
            ours / floor <= TARGET_FLOOR_RATIO,
        )
    )
    for item in results.throughput:
        if item.implementation.startswith("hmacguard"):
            fraction = item.fraction_of_raw or 0.0
            results.targets.append(
                Target(
                    f"digest {mib}: {item.implementation.removeprefix('hmacguard.')} / raw sha256",
                    fraction,
                    f">= {TARGET_THROUGHPUT:.0%}",
                    fraction >= TARGET_THROUGHPUT,
                )
            )
    return results


# -- output ------------------------------------------------------------------


class Report:
    """A benchmark's printed report: the command and machine first, then what ``say`` adds."""

    def __init__(self, command: str, machine: dict[str, str], quick: bool) -> None:
        self._out = io.StringIO()
        self.say(f"$ {command}")
        for name, value in machine.items():
            self.say(f"{name + ':':<25}{value}")
        if quick:
            self.say("quick run: too few iterations for the figures to mean anything")

    def say(self, text: str = "") -> None:
        self._out.write(text + "\n")

    def text(self) -> str:
        return self._out.getvalue()


def format_results(results: Results, command: str, quick: bool) -> str:
    report = Report(command, results.machine, quick)
    say = report.say
    say()
    say("| case | implementation | µs/op | ÷ hmacguard | note |")
    say("| --- | --- | ---: | ---: | --- |")
    for row in results.rows:
        if row.case.startswith("digest"):
            continue
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        say(f"| {row.case} | {row.implementation} | {row.us_per_op:.2f} | {ratio} | {row.note} |")
    say()
    say("| digest throughput | implementation | MB/s | % of raw sha256 |")
    say("| --- | --- | ---: | ---: |")
    mib = size_name(THROUGHPUT_BYTES)
    for item in results.throughput:
        fraction = "" if item.fraction_of_raw is None else f"{item.fraction_of_raw:.1%}"
        say(f"| {mib} body | {item.implementation} | {item.mb_per_s:,.0f} | {fraction} |")
    say()
    say("targets:")
    for target in results.targets:
        verdict = "PASS" if target.passed else "MISS"
        value = f"{target.value:.1%}" if target.need.endswith("%") else f"{target.value:.2f}x"
        say(f"  {verdict}  {target.name}: {value} (need {target.need})")
    return report.text()


def profile_verify(calls: int) -> str:
    """Profile hmacguard's verify of the 1 KiB request; top functions by tottime."""
    scenario = Scenario(json_body(KIB))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        scenario.verify()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(15)
    return f"cProfile of {calls} x hmacguard verify, 1 KiB POST\n{out.getvalue()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a few calls per case: checks the script runs"
    )
    parser.add_argument("--repeat", type=int, default=200, help="rounds per case (default 200)")
    parser.add_argument(
        "--min-time",
        type=float,
        default=0.002,
        help="seconds each timed run lasts at least (default 0.002)",
    )
    parser.add_argument(
        "--wall",
        action="store_true",
        help="time with time.perf_counter (wall clock) instead of process CPU time",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print a cProfile of hmacguard's 1 KiB verify and exit",
    )
    args = parser.parse_args(argv)

    if args.profile:
        print(profile_verify(20_000))
        return 0

    clock = time.perf_counter if args.wall else time.process_time
    if args.quick:
        settings = Settings(repeat=1, min_time=0.0, number=2, clock=clock)
    else:
        if args.repeat < 1 or args.min_time <= 0:
            parser.error("--repeat must be >= 1 and --min-time > 0")
        settings = Settings(repeat=args.repeat, min_time=args.min_time, number=1, clock=clock)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results = run(settings, log)
    results.machine["timer"] = (
        "time.perf_counter (wall clock)" if args.wall else "time.process_time (CPU time)"
    )
    results.machine["rounds"] = (
        f"{settings.repeat} x {settings.number} calls"
        if args.quick
        else f"best of {settings.repeat} runs of >= {settings.min_time * 1000:g} ms each"
    )
    python = os.path.relpath(sys.executable) if sys.executable else "python"
    command = " ".join([python, "bench/core.py", *sys.argv[1:]])
    print(format_results(results, command, args.quick), end="")
    if args.json:
        payload: dict[str, Any] = {
            "command": command,
            "quick": args.quick,
            "machine": results.machine,
            "rows": [row.__dict__ for row in results.rows],
            "throughput": [item.__dict__ for item in results.throughput],
            "targets": [target.__dict__ for target in results.targets],
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
