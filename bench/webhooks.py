"""Webhook benchmark: hmacguard's receivers against the vendors' own verifiers.

Run from the repository root::

    .venv/bin/python bench/webhooks.py                # full run, about a minute
    .venv/bin/python bench/webhooks.py --json out.json
    .venv/bin/python bench/webhooks.py --quick        # a smoke run: the figures mean nothing

For each scheme (Standard Webhooks, Stripe, GitHub, Slack) and each body (a
1 KiB and a 1 MiB JSON document), one delivery is signed once, then verified
over and over by:

* hmacguard: the scheme's profile, ``profile.verify(headers, body, now=...)``,
  on the raw body bytes (header parsing, the time window, every configured
  secret, constant-time comparison);
* the vendor's verifier: ``standardwebhooks.Webhook.verify`` (with
  ``json_parse=False``, so it does not parse the JSON), ``svix``'s
  ``Webhook.verify``, ``stripe.WebhookSignature.verify_header`` and
  ``slack_sdk``'s ``SignatureVerifier.is_valid``; GitHub publishes no Python
  library, so its row is the check GitHub's documentation shows
  (``hmac.new(...).hexdigest()`` and ``hmac.compare_digest``);
* raw hashing: one ``hmac.digest`` over exactly the bytes the scheme signs,
  the least any verifier must do.

Before timing, every verifier must accept the delivery and hmacguard must
reject it with one byte of the body changed. Timing is as in ``bench/core.py``:
the implementations of a case take turns, the best of many short runs is kept,
process CPU time, the garbage collector off.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import importlib.metadata
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import slack_sdk.signature
import standardwebhooks
import stripe
import svix.webhooks
from core import KIB, MIB, Report, Settings, best_seconds, json_body, machine_info

from hmacguard import VerificationError
from hmacguard.webhooks import GitHub, Slack, StandardWebhooks, Stripe

# The Standard Webhooks test secret (VECTORS.md section 6) and plain-text secrets
# for the schemes that use the secret's text as the key.
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STRIPE_SECRET = "whsec_test_secret_for_vectors"
GITHUB_SECRET = "It's a Secret to Everybody"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

TARGET_RAW_RATIO = 1.10  # hmacguard / raw hashing at 1 MiB, at most


@dataclass
class Case:
    scheme: str
    size: int
    ours: Callable[[], object]
    vendor_name: str
    vendor: Callable[[], object]
    raw: Callable[[], object]
    tampered: Callable[[], object]
    extra: list[tuple[str, Callable[[], object]]] = field(default_factory=list)


def _standard(body: bytes, now: int) -> Case:
    sender = standardwebhooks.Webhook(SW_SECRET)
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    stamp = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
    signature = sender.sign(msg_id, stamp, body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    svix_headers = {name.replace("webhook-", "svix-"): value for name, value in headers.items()}
    profile = StandardWebhooks(SW_SECRET)
    svix_verifier = svix.webhooks.Webhook(SW_SECRET)
    key = sender._whsecret  # the decoded key, for the raw row
    signed = f"{msg_id}.{now}.".encode() + body
    return Case(
        "Standard Webhooks",
        len(body),
        lambda: profile.verify(headers, body, now=now),
        "standardwebhooks",
        lambda: sender.verify(body, headers, json_parse=False),
        lambda: hmac.digest(key, signed, "sha256"),
        lambda: profile.verify(headers, body[:-1] + b" ", now=now),
        extra=[("svix", lambda: svix_verifier.verify(body, svix_headers))],
    )


def _stripe(body: bytes, now: int) -> Case:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), STRIPE_SECRET, timestamp=now
    )
    headers = {"stripe-signature": header}
    profile = Stripe(STRIPE_SECRET)
    key = STRIPE_SECRET.encode()
    signed = f"{now}.".encode() + body
    return Case(
        "Stripe",
        len(body),
        lambda: profile.verify(headers, body, now=now),
        "stripe",
        lambda: stripe.WebhookSignature.verify_header(body, header, STRIPE_SECRET, tolerance=300),
        lambda: hmac.digest(key, signed, "sha256"),
        lambda: profile.verify(headers, body[:-1] + b" ", now=now),
    )


def _github(body: bytes, now: int) -> Case:
    key = GITHUB_SECRET.encode()
    signature = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    headers = {"x-hub-signature-256": signature, "x-github-delivery": "72d3162e-cc78-11e3-81ab"}
    profile = GitHub(GITHUB_SECRET)

    def documented() -> bool:
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    return Case(
        "GitHub",
        len(body),
        lambda: profile.verify(headers, body, now=now),
        "GitHub docs' Python check",
        documented,
        lambda: hmac.digest(key, body, "sha256"),
        lambda: profile.verify(headers, body[:-1] + b" ", now=now),
    )


def _slack(body: bytes, now: int) -> Case:
    verifier = slack_sdk.signature.SignatureVerifier(SLACK_SECRET)
    signature = verifier.generate_signature(timestamp=str(now), body=body)
    assert signature is not None
    headers = {"x-slack-request-timestamp": str(now), "x-slack-signature": signature}
    profile = Slack(SLACK_SECRET)
    key = SLACK_SECRET.encode()
    signed = f"v0:{now}:".encode() + body
    return Case(
        "Slack",
        len(body),
        lambda: profile.verify(headers, body, now=now),
        "slack_sdk",
        lambda: verifier.is_valid(body, str(now), signature),
        lambda: hmac.digest(key, signed, "sha256"),
        lambda: profile.verify(headers, body[:-1] + b" ", now=now),
    )


@dataclass
class Row:
    scheme: str
    size: str
    implementation: str
    us_per_call: float
    ratio_to_raw: float


def build_cases(now: int) -> list[Case]:
    cases = []
    for size in (KIB, MIB):
        body = json_body(size)
        cases += [make(body, now) for make in (_standard, _stripe, _github, _slack)]
    return cases


def check(case: Case) -> None:
    """Every implementation accepts the delivery; hmacguard refuses it tampered."""
    for name, fn in [("hmacguard", case.ours), (case.vendor_name, case.vendor), *case.extra]:
        result = fn()
        if result is False:
            raise SystemExit(f"{case.scheme}: {name} rejected the delivery")
    try:
        case.tampered()
    except VerificationError:
        return
    raise SystemExit(f"{case.scheme}: hmacguard accepted a tampered body")


def run(settings: Settings, log: Callable[[str], None]) -> list[Row]:
    now = int(time.time())
    rows = []
    for case in build_cases(now):
        check(case)
        size = f"{case.size // MIB} MiB" if case.size >= MIB else f"{case.size // KIB} KiB"
        entries = [
            ("raw hashing", case.raw),
            ("hmacguard", case.ours),
            (case.vendor_name, case.vendor),
            *case.extra,
        ]
        log(f"  {case.scheme} {size}: {', '.join(name for name, _ in entries)}")
        timings = best_seconds([fn for _, fn in entries], settings)
        raw = timings[0][0]
        rows += [
            Row(case.scheme, size, name, seconds * 1e6, seconds / raw)
            for (name, _), (seconds, _) in zip(entries, timings, strict=True)
        ]
    return rows


def format_rows(rows: list[Row], machine: dict[str, str], command: str, quick: bool) -> str:
    report = Report(command, machine, quick)
    say = report.say
    say()
    say("| scheme | body | implementation | µs/op | ÷ raw hashing |")
    say("| --- | --- | --- | ---: | ---: |")
    for row in rows:
        say(
            f"| {row.scheme} | {row.size} | {row.implementation} | {row.us_per_call:,.2f} "
            f"| {row.ratio_to_raw:.2f} |"
        )
    say()
    say("targets:")
    for row in rows:
        if row.size == "1 MiB" and row.implementation == "hmacguard":
            verdict = "PASS" if row.ratio_to_raw <= TARGET_RAW_RATIO else "MISS"
            say(
                f"  {verdict}  {row.scheme} 1 MiB: hmacguard / raw hashing: "
                f"{row.ratio_to_raw:.2f}x (need <= {TARGET_RAW_RATIO:.2f}x)"
            )
    return report.text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: checks the script runs")
    parser.add_argument("--repeat", type=int, default=50, help="rounds (default 50)")
    parser.add_argument("--min-time", type=float, default=0.005, help="seconds per timed run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        settings = Settings(repeat=1, min_time=0.0, number=2)
    else:
        settings = Settings(repeat=args.repeat, min_time=args.min_time, number=1)
    machine = machine_info()
    for name in ("http-message-signatures", "http-sf"):
        machine.pop(name, None)
    for dist in ("standardwebhooks", "svix", "stripe", "slack_sdk"):
        try:
            machine[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            machine[dist] = "?"
    rows = run(settings, lambda text: print(text, file=sys.stderr, flush=True))
    command = " ".join(["bench/webhooks.py", *sys.argv[1:]])
    print(format_rows(rows, machine, command, args.quick), end="")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {"command": command, "machine": machine, "rows": [row.__dict__ for row in rows]},
                handle,
                indent=2,
            )
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
