"""Property tests (Hypothesis) of SignatureMiddleware's webhook paths, over raw ASGI.

Every delivery is driven with :func:`asgi_helpers.drive` through a middleware that
protects one webhook path per provider (Standard Webhooks, and the same under Svix's
``svix-*`` names, Stripe, GitHub, Slack; see docs/webhooks/), so the header list, the
path and the body messages are exactly what a test built. Each provider has a small
adapter that signs a delivery the way the provider does (with the provider's own library
where it has one and the body is text, else with the standard library; the two must
agree) and says what the provider signs. The invariants (docs/webhooks/index.md,
docs/errors.md):

- one change to a valid delivery reaches the app once, with the very bytes sent, only
  when the change does not touch what the provider signs (a stray or unsigned header, a
  header's case or padding, a re-chunked body, a sub-path, a clock still inside the
  window, an entry of a scheme the profile ignores); otherwise it is refused without the
  app, with a documented problem+json 400/401/413 whose reason docs/errors.md lists,
  never a 500, never an exception; whether it must be refused is decided from what the
  change touches, and where either answer is defensible only the either/or invariant
  is asserted;
- a delivery sent again, in any acceptable form, is acknowledged as a duplicate
  (200 ``{"status": "duplicate"}``) without reaching the app again;
- how the body is cut into ``http.request`` messages never changes the outcome;
- random headers and bodies on a webhook path never reach the app, never get a 500,
  and nothing fails inside the middleware;
- a delivery the app did not answer with 2xx is processed again when it comes back
  (the same request, or the provider's own retry); one it answered 2xx is not, unless
  the provider's retry is a new delivery (Stripe's and Slack's re-signed ones, but a
  Slack event's ``event_id`` stays the same).

They found one defect: a delivery the app answered with a complete 2xx response was
forgotten when the app raised afterwards (a Starlette ``BackgroundTask`` that failed), so
a replay of it reached the app again; the sender, which had its 2xx, never retries
(:func:`test_property_a_delivery_answered_2xx_stays_handled_when_the_app_fails_after`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import re
import string
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import pytest
import stripe
import svix.webhooks
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook

import property_strategies as strategies
from asgi_helpers import KEYS, NOW, Exchange, Message, drive, http_scope, logged_reasons, protect
from hmacguard import MemoryNonceStore, SignatureMiddleware
from hmacguard.webhooks import GitHub, Slack, StandardWebhooks, Stripe
from test_middleware_properties import (
    Chunking,
    assert_nothing_unexpected,
    assert_one_answer,
    assert_refused,
    chunkings,
)

# About 1,900 examples in all: the file takes 25-35 s on two busy cores, under a minute.
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow explain
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
FEWER = settings(PROPERTY, max_examples=40)

#: The window of the timestamped profiles (their default), in both directions.
TOLERANCE = 300

# -- the providers -----------------------------------------------------------------------

STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-property-key-32").decode()
SVIX_SECRET = "whsec_" + base64.b64encode(b"svix-property-key-0123456789abcdef").decode()
STRIPE_SECRET = "whsec_stripe_property_secret_0123456789"
GITHUB_SECRET = "github-property-secret-0123456789"
SLACK_SECRET = "slack-property-signing-secret-0123"
#: A signature of a scheme the profiles ignore (Standard Webhooks' v1a is ed25519, 64 bytes).
IGNORED_V1A = "v1a," + base64.b64encode(bytes(range(64))).decode()
IGNORED_V0 = "v0=" + hashlib.sha256(b"stripe test-mode v0").hexdigest()


def _hex_mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _text(body: bytes) -> str | None:
    """The body as the text a vendor library signs, or None when it is not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _placed(entry: str, other: str, where: str, separator: str) -> str:
    """``entry``, with ``other`` before or after it (``where``), or alone."""
    if where == "before":
        return other + separator + entry
    if where == "after":
        return entry + separator + other
    return entry


Headers = list[tuple[str, str]]


def _standard_entry(secret: str, body: bytes, t: int, delivery_id: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{delivery_id}.{t}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign_standard(body: bytes, t: int, delivery_id: str, other: str) -> Headers:
    """Standard Webhooks: ``v1,`` + base64 HMAC of ``{id}.{t}.{body}`` (standardwebhooks)."""
    entry = _standard_entry(STANDARD_SECRET, body, t, delivery_id)
    text = _text(body)
    if text is not None:
        when = datetime.fromtimestamp(t, tz=timezone.utc)
        assert Webhook(STANDARD_SECRET).sign(delivery_id, when, text) == entry
    return [
        ("webhook-id", delivery_id),
        ("webhook-timestamp", str(t)),
        ("webhook-signature", _placed(entry, IGNORED_V1A, other, " ")),
    ]


def sign_svix(body: bytes, t: int, delivery_id: str, other: str) -> Headers:
    """Svix: Standard Webhooks under ``svix-*`` names (the svix library)."""
    entry = _standard_entry(SVIX_SECRET, body, t, delivery_id)
    text = _text(body)
    if text is not None:
        when = datetime.fromtimestamp(t, tz=timezone.utc)
        assert svix.webhooks.Webhook(SVIX_SECRET).sign(delivery_id, when, text) == entry
    return [
        ("svix-id", delivery_id),
        ("svix-timestamp", str(t)),
        ("svix-signature", _placed(entry, IGNORED_V1A, other, " ")),
    ]


def sign_stripe(body: bytes, t: int, delivery_id: str, other: str) -> Headers:
    """Stripe: ``t=...,v1=`` hex HMAC of ``{t}.{body}`` (stripe-python), maybe a v0 too."""
    value = f"t={t},v1={_hex_mac(STRIPE_SECRET, f'{t}.'.encode() + body)}"
    text = _text(body)
    if text is not None:
        assert stripe.WebhookSignature.generate_signature_header(text, STRIPE_SECRET, t) == value
    head, v1 = value.split(",")
    return [("stripe-signature", head + "," + _placed(v1, IGNORED_V0, other, ","))]


def sign_github(body: bytes, t: int, delivery_id: str, other: str) -> Headers:
    """GitHub: ``sha256=`` hex HMAC of the body alone; the delivery id is not signed."""
    return [
        ("x-hub-signature-256", "sha256=" + _hex_mac(GITHUB_SECRET, body)),
        ("x-github-delivery", delivery_id),
    ]


def sign_slack(body: bytes, t: int, delivery_id: str, other: str) -> Headers:
    """Slack: ``v0=`` hex HMAC of ``v0:{timestamp}:{body}`` (slack_sdk)."""
    signature = "v0=" + _hex_mac(SLACK_SECRET, f"v0:{t}:".encode() + body)
    if _text(body) is not None:
        vendor = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=str(t), body=body)
        assert vendor == signature
    return [("x-slack-request-timestamp", str(t)), ("x-slack-signature", signature)]


@dataclass(frozen=True)
class Provider:
    """One provider: how it signs, what it signs, and what its profile reads."""

    name: str
    path: str
    sign: Callable[[bytes, int, str, str], Headers]
    #: The header holding the MAC, and the pattern of the MAC (group 1) in its value.
    signature: bytes
    mac: re.Pattern[bytes]
    #: The span of an entry of another scheme, which the profile skips (group 1).
    ignored: re.Pattern[bytes] | None
    #: The other headers whose values the provider signs.
    signed: frozenset[bytes]
    #: Headers the profile requires, though the provider does not sign them.
    unsigned_required: frozenset[bytes]
    timestamped: bool
    #: Unsigned headers the provider also sends.
    extras: tuple[tuple[str, str], ...]
    #: The header naming the delivery (its dedupe key), if any.
    id_header: bytes | None = None
    #: Whether the MAC is base64 (else hex, read in either case).
    base64_mac: bool = False
    #: Headers that, present, make the profile read another family of headers instead.
    shadowed_by: frozenset[bytes] = frozenset()

    @property
    def reads(self) -> frozenset[bytes]:
        """The header names the profile reads in a delivery of this provider."""
        return frozenset({self.signature, *self.signed, *self.unsigned_required})

    def __repr__(self) -> str:
        return self.name


STANDARD = Provider(
    "standard-webhooks",
    "/a/hooks/standard",
    sign_standard,
    b"webhook-signature",
    re.compile(rb"(?:^| )v1,([A-Za-z0-9+/]{43}=)"),
    re.compile(rb"(v1a,\S+)"),
    frozenset({b"webhook-id", b"webhook-timestamp"}),
    frozenset(),
    True,
    (("content-type", "application/json"), ("user-agent", "Standard-Webhooks/1.0")),
    id_header=b"webhook-id",
    base64_mac=True,
)
SVIX = Provider(
    "svix",
    "/a/hooks/svix",
    sign_svix,
    b"svix-signature",
    STANDARD.mac,
    STANDARD.ignored,
    frozenset({b"svix-id", b"svix-timestamp"}),
    frozenset(),
    True,
    (("content-type", "application/json"), ("user-agent", "Svix-Webhooks/1.24")),
    id_header=b"svix-id",
    base64_mac=True,
    # "It reads the webhook-* headers when any of them is present" (docs/webhooks).
    shadowed_by=frozenset({b"webhook-id", b"webhook-timestamp", b"webhook-signature"}),
)
STRIPE = Provider(
    "stripe",
    "/a/hooks/stripe",
    sign_stripe,
    b"stripe-signature",
    re.compile(rb"v1=([0-9a-f]{64})"),
    # The whole v0 item: Stripe's parser skips any item but t and v1, whatever its name.
    re.compile(rb"(v0=[0-9a-f]{64})"),
    frozenset(),
    frozenset(),
    True,
    (
        ("content-type", "application/json; charset=utf-8"),
        ("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)"),
    ),
)
GITHUB = Provider(
    "github",
    "/a/hooks/github",
    sign_github,
    b"x-hub-signature-256",
    re.compile(rb"^sha256=([0-9a-f]{64})"),
    None,
    frozenset(),
    frozenset({b"x-github-delivery"}),
    False,
    (
        ("content-type", "application/json"),
        ("user-agent", "GitHub-Hookshot/044aadd"),
        ("x-github-event", "push"),
        ("x-github-hook-id", "292430182"),
    ),
    id_header=b"x-github-delivery",
)
SLACK = Provider(
    "slack",
    "/a/hooks/slack",
    sign_slack,
    b"x-slack-signature",
    re.compile(rb"^v0=([0-9a-f]{64})"),
    None,
    frozenset({b"x-slack-request-timestamp"}),
    frozenset(),
    True,
    (
        ("content-type", "application/x-www-form-urlencoded"),
        ("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)"),
    ),
)
PROVIDERS = [STANDARD, SVIX, STRIPE, GITHUB, SLACK]
#: Every header name any profile reads: on another provider's path they are strays.
PROVIDER_NAMES = sorted(
    {name for provider in PROVIDERS for name in provider.reads}
    | {b"svix-id", b"svix-timestamp", b"svix-signature", b"x-hub-signature", b"x-slack-retry-num"}
)
FRAMING = frozenset({b"content-length", b"transfer-encoding"})
#: The headers holding the signed timestamp (Stripe's in its signature header).
TIMESTAMPS = frozenset(
    {b"webhook-timestamp", b"svix-timestamp", b"x-slack-request-timestamp", b"stripe-signature"}
)
BY_PROVIDER = pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)


def profiles() -> dict[str, Any]:
    """One profile per provider (Svix's is Standard Webhooks'), each on its own path."""
    return {
        STANDARD.path: StandardWebhooks(STANDARD_SECRET),
        SVIX.path: StandardWebhooks(SVIX_SECRET),
        STRIPE.path: Stripe(STRIPE_SECRET),
        GITHUB.path: GitHub(GITHUB_SECRET),
        SLACK.path: Slack(SLACK_SECRET),
    }


def is_event_callback(body: bytes) -> bool:
    """Whether a Slack body is an Events API callback with an event_id (its dedupe key)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("type") == "event_callback"


def retry_is_the_same_delivery(provider: Provider, body: bytes) -> bool:
    """Whether the provider's own retry of a delivery has the same dedupe key: Standard
    Webhooks keeps its webhook-id and GitHub its X-GitHub-Delivery; Stripe re-signs with
    a new t (a new delivery, to deduplicate on the event id in the app), and so does
    Slack, whose Events API callbacks keep their event_id."""
    if provider is SLACK:
        return is_event_callback(body)
    return provider is not STRIPE


# -- a valid delivery ----------------------------------------------------------------------

SEGMENT = string.ascii_letters + string.digits + "-_~"


@dataclass(frozen=True)
class Delivery:
    """A delivery a provider signs and sends, as a server hands it over."""

    provider: Provider
    body: bytes
    timestamp: int
    delivery_id: str
    other: str  # where an entry of a scheme the profile ignores goes: "", "before", "after"
    extras: tuple[tuple[str, str], ...]
    suffix: str  # a sub-path under the webhook path ("" for none)
    framing: str  # "length", "chunked" or "none": how the body is announced
    order: tuple[int, ...]  # the order of the header lines (host included), a permutation

    @property
    def target(self) -> str:
        return self.provider.path + self.suffix

    def lines(self) -> Headers:
        signed = self.provider.sign(self.body, self.timestamp, self.delivery_id, self.other)
        lines = [*signed, *self.extras]
        if self.framing == "length":
            lines.append(("content-length", str(len(self.body))))
        elif self.framing == "chunked":
            lines.append(("transfer-encoding", "chunked"))
        return lines

    def scope(self) -> dict[str, Any]:
        """The ASGI scope a server would hand over for this delivery."""
        scope = http_scope("POST", self.target, self.lines())
        assert len(scope["headers"]) == len(self.order)
        scope["headers"] = [scope["headers"][i] for i in self.order]
        return scope

    def resigned(self, timestamp: int, *extras: tuple[str, str]) -> Delivery:
        """The provider's retry: the same body (and id) signed again at ``timestamp``."""
        order = (*self.order, *range(len(self.order), len(self.order) + len(extras)))
        return replace(self, timestamp=timestamp, extras=(*self.extras, *extras), order=order)


def _json_bodies() -> st.SearchStrategy[bytes]:
    values = st.one_of(st.integers(), st.text(max_size=20), st.booleans(), st.none())
    return st.dictionaries(st.text(max_size=8), values, max_size=5).map(
        lambda payload: json.dumps(payload).encode()
    )


def bodies(provider: Provider) -> st.SearchStrategy[bytes]:
    """Bodies a provider sends, and bodies no provider would (any bytes, not UTF-8)."""
    kinds = [
        _json_bodies(),
        st.text(max_size=300).map(str.encode),
        st.binary(max_size=2048),
    ]
    if provider is SLACK:
        event_ids = st.from_regex(r"Ev[A-Z0-9]{8,12}", fullmatch=True)
        callbacks = st.builds(
            lambda event_id, text: json.dumps(
                {"type": "event_callback", "event_id": event_id, "event": {"text": text}}
            ).encode(),
            event_ids,
            st.text(max_size=40),
        )
        forms = st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4).map(
            lambda form: urllib.parse.urlencode(form).encode()
        )
        kinds += [callbacks, forms]
    return st.one_of(kinds)


@st.composite
def deliveries(draw: st.DrawFn, provider: Provider, *, fresh: bool = False) -> Delivery:
    """A valid delivery: a random body, a timestamp anywhere in the window (at NOW with
    ``fresh``), a delivery id, some of the provider's unsigned headers, a sub-path."""
    body = draw(bodies(provider))
    offset = 0 if fresh or not provider.timestamped else draw(st.integers(-TOLERANCE, TOLERANCE))
    if provider is GITHUB:
        delivery_id = str(draw(st.uuids()))
    else:
        delivery_id = "msg_" + draw(st.text(string.ascii_letters + string.digits, min_size=8))
    other = draw(st.sampled_from(["", "before", "after"])) if provider.ignored else ""
    extras = tuple(extra for extra in provider.extras if draw(st.booleans()))
    suffix = draw(
        st.one_of(st.just(""), st.text(SEGMENT, min_size=1, max_size=10).map("/".__add__))
    )
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    if not body and framing == "chunked":
        framing = "none"
    lines = 1 + len(provider.sign(b"", NOW, "x", other)) + len(extras) + (framing != "none")
    order = tuple(draw(st.permutations(range(lines))))
    return Delivery(
        provider, body, NOW + offset, delivery_id, other, extras, suffix, framing, order
    )


# -- one change to it ----------------------------------------------------------------------

ACCEPT, REJECT, EITHER = "accept", "reject", "either"
MALFORMED_REQUEST = frozenset({"malformed_request"})
FRAMING_REASONS = frozenset({"malformed_request", "body_too_large"})
BAD_SIGNATURE = frozenset({"malformed_signature", "invalid_signature"})
SHADOWED = frozenset({"missing_signature", "malformed_signature"})


@dataclass(frozen=True)
class Mutation:
    """One change to a valid delivery (``kind`` says which; the rest are its parameters)."""

    kind: str
    index: int = 0  # the header line changed, dropped, doubled or renamed
    position: int = 0  # the byte changed
    byte: int = 0  # its new value
    name: bytes = b""  # a stray header's name, a header's new name, a sub-path
    value: bytes = b""  # a stray header's value
    seconds: float = 0.0  # how far the clock moves
    chunking: Chunking = field(default_factory=Chunking)  # how the body is cut


@dataclass
class Plan:
    """A changed delivery, ready to drive: what is sent, how often, and what may happen."""

    scope: dict[str, Any]
    messages: list[Message]
    expect: str
    why: str
    sends: int = 1
    seconds: float = 0.0
    reasons: frozenset[str] | None = None  # the client-told reasons allowed on refusal
    new_id: bool = False  # the change gave the delivery another dedupe key


def _set_byte(data: bytes, position: int, byte: int) -> bytes:
    return data[:position] + bytes([byte]) + data[position + 1 :]


def _well_formed(value: bytes) -> bool:
    """Whether a header value reads as one (docs/webhooks "Reasons"): ASCII, not empty
    and without control characters once the SP/HTAB around it is taken off."""
    text = value.strip(b" \t").decode("latin-1")
    return bool(text) and text.isascii() and text.isprintable()


#: Every kind of change; the ones that keep what the provider signs come first.
KINDS = (
    "rechunk",
    "stray-header",
    "header-case",
    "header-whitespace",
    "sub-path",
    "header-byte",
    "other-id",
    "drop-header",
    "duplicate-header",
    "clock",
    "replay",
    "other-timestamp",
    "path-escape",
    "body-byte",
)
#: Changes a delivery can be sent again with, as a replay: each may keep it acceptable.
RESENDABLE = KINDS[:10]


@st.composite
def mutations(draw: st.DrawFn, delivery: Delivery, kinds: tuple[str, ...] = KINDS) -> Mutation:
    """One random change (of one of ``kinds``) that applies to ``delivery``."""
    headers = delivery.scope()["headers"]
    provider = delivery.provider
    kinds = tuple(
        kind
        for kind in kinds
        if (kind != "body-byte" or delivery.body)
        and (kind != "other-id" or provider.id_header is not None)
        and (kind != "other-timestamp" or provider.timestamped)
    )
    kind = draw(st.sampled_from(kinds))
    # Any header line, or as often one the profile reads (the signature, timestamp, id).
    read = [i for i, (name, _) in enumerate(headers) if name in delivery.provider.reads]
    lines = st.one_of(st.integers(0, len(headers) - 1), st.sampled_from(read))
    if kind in ("header-byte", "drop-header", "duplicate-header", "header-case"):
        index = draw(lines)
        name, value = headers[index]
        if kind == "header-byte":
            # Any byte, or as often one at the value's edges or by a separator.
            marks = [i for i, c in enumerate(value) if not chr(c).isalnum()]
            near = {j for i in marks for j in (i - 1, i, i + 1)} | {0, len(value) - 1}
            edges = sorted(j for j in near if 0 <= j < len(value))
            position = draw(st.integers(0, len(value) - 1) | st.sampled_from(edges))
            return Mutation(kind, index, position, draw(strategies.other_byte(value, position)))
        if kind == "header-case":
            mask = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
            mask[draw(st.integers(0, len(name) - 1))] = True  # one letter at least...
            flipped = strategies.flip_case(name, mask)
            if flipped == name:  # ...unless the flipped one was not a letter
                flipped = strategies.flip_case(name, [True] * len(name))
            return Mutation(kind, index, name=flipped)
        return Mutation(kind, index)
    if kind == "header-whitespace":
        index = draw(lines)
        before, after = draw(st.text(" \t", max_size=3)), draw(st.text(" \t", max_size=3))
        if not before + after:
            before = " "
        return Mutation(kind, index, name=before.encode(), value=after.encode())
    if kind == "stray-header":
        present = {n for n, _ in headers}
        special = [
            b"host",
            b"trailer",
            b"transfer-encoding",
            b"x-http-method-override",
            b"content-digest",
            b"signature",
            b"signature-input",
            *PROVIDER_NAMES,
        ]
        special += [b"content-length"] if b"content-length" not in present else []
        name = draw(
            st.one_of(
                st.text(string.ascii_lowercase, min_size=1, max_size=8).map(
                    lambda s: f"x-stray-{s}".encode()
                ),
                st.text(string.ascii_letters, min_size=1, max_size=8).map(
                    lambda s: f"X-Stray-{s}".encode()
                ),
                st.sampled_from(special),
            )
        )
        return Mutation(kind, name=name, value=draw(st.binary(max_size=40)))
    if kind == "sub-path":
        segment = draw(st.text(SEGMENT, min_size=1, max_size=12))
        return Mutation(kind, name=f"/{segment}".encode())
    if kind == "path-escape":
        escape = draw(st.sampled_from(["/..", "/../..", "/./x", "/%2e%2e/x", "/x/../../t"]))
        return Mutation(kind, name=escape.encode())
    if kind == "rechunk":
        return Mutation(kind, chunking=draw(chunkings))
    if kind == "clock":
        # How old the delivery is when it arrives: anywhere, or at the window's edges.
        age = draw(
            st.one_of(
                st.floats(-1000, 1000, allow_nan=False),
                st.integers(-1000, 1000).map(float),
                st.sampled_from([-301.0, -300.5, -300.0, -299.5, 299.5, 300.0, 300.5, 301.0]),
            )
        )
        return Mutation(kind, seconds=delivery.timestamp - NOW + age)
    if kind == "other-id":
        ids = st.uuids().map(str) if delivery.provider is GITHUB else st.just("msg_other")
        return Mutation(kind, value=draw(ids.filter(lambda i: i != delivery.delivery_id)).encode())
    if kind == "other-timestamp":
        window = st.integers(NOW - TOLERANCE, NOW + TOLERANCE)
        return Mutation(kind, value=b"%d" % draw(window.filter(lambda t: t != delivery.timestamp)))
    if kind == "replay":
        return Mutation(kind, chunking=draw(chunkings))
    position = draw(st.integers(0, len(delivery.body) - 1))
    return Mutation(
        kind, position=position, byte=draw(strategies.other_byte(delivery.body, position))
    )


@st.composite
def mutated_deliveries(
    draw: st.DrawFn, provider: Provider, kinds: tuple[str, ...] = KINDS
) -> tuple[Delivery, Mutation]:
    """A valid delivery and one change to it."""
    delivery = draw(deliveries(provider))
    return delivery, draw(mutations(delivery, kinds))


def _set_path(scope: dict[str, Any], target: bytes) -> None:
    """A new raw path, and the decoded ``path`` a server would give with it."""
    scope["raw_path"] = target
    scope["path"] = urllib.parse.unquote(target.decode("latin-1"), encoding="latin-1")


def _signature_byte(provider: Provider, value: bytes, changed: bytes, position: int) -> Plan:
    """What one changed byte of the signature header may do (the plan's scope is unset)."""
    mac = provider.mac.search(value)
    assert mac is not None, value
    ignored = provider.ignored.search(value) if provider.ignored else None
    if mac.start(1) <= position < mac.end(1):
        if provider.base64_mac:
            # Base64: a last character that differs only in its pad bits is the same MAC.
            after = provider.mac.search(changed)
            same = after is not None and base64.b64decode(after.group(1)) == base64.b64decode(
                mac.group(1)
            )
            if same:
                return Plan({}, [], EITHER, "the same MAC, other pad bits")
        elif changed[position : position + 1].lower() == value[position : position + 1]:
            # Hex digits are read in either case (docs/webhooks: "hex ... in either case").
            return Plan({}, [], ACCEPT, "the same hex MAC in another case")
        return Plan({}, [], REJECT, "the MAC changed", reasons=BAD_SIGNATURE)
    if ignored is not None and ignored.start(1) <= position < ignored.end(1):
        # An entry of a scheme the profile skips, "whatever their form" (docs/webhooks):
        # it matters only when the header no longer reads as a header value, or when it
        # became an entry of the scheme the profile reads (Standard Webhooks' "v1,...").
        v1 = [e for e in changed.split(b" ") if e.partition(b",")[0] == b"v1"]
        if _well_formed(changed) and (not provider.base64_mac or v1 == [mac.group(0).strip()]):
            return Plan({}, [], ACCEPT, "an entry of an ignored scheme changed")
        return Plan({}, [], REJECT, "the header no longer reads", reasons=BAD_SIGNATURE)
    return Plan({}, [], REJECT, "the signature's syntax changed", reasons=BAD_SIGNATURE)


def plan(delivery: Delivery, mutation: Mutation) -> Plan:
    """Apply ``mutation`` to ``delivery`` and decide from what it touches whether the
    result must be accepted, must be refused, or may be either."""
    provider = delivery.provider
    scope = delivery.scope()
    messages = Chunking().messages(delivery.body)
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    reads = provider.reads
    kind = mutation.kind
    if kind == "rechunk":
        messages = mutation.chunking.messages(delivery.body)
        return Plan(scope, messages, ACCEPT, "the body cut into other messages")
    if kind == "replay":
        messages = mutation.chunking.messages(delivery.body)
        return Plan(scope, messages, REJECT, "sent a second time", sends=2)
    if kind == "clock":
        seconds = mutation.seconds
        now = float(NOW) + seconds  # as FakeClock.advance computes it
        age = now - delivery.timestamp
        inside = not provider.timestamped or -TOLERANCE <= age <= TOLERANCE
        why = f"received {age} s after it was signed"
        told = frozenset({"invalid_signature"})  # expired and not_yet_valid are not told
        return Plan(
            scope, messages, ACCEPT if inside else REJECT, why, seconds=seconds, reasons=told
        )
    if kind == "body-byte":
        body = _set_byte(delivery.body, mutation.position, mutation.byte)
        why = "a changed body (every provider signs it)"
        told = frozenset({"invalid_signature"})
        return Plan(scope, Chunking().messages(body), REJECT, why, reasons=told)
    if kind == "other-id":
        # Another delivery id: Standard Webhooks signs it, GitHub does not (there it is
        # another delivery of the same body, docs/webhooks/github.md "Gotchas").
        name = provider.id_header
        assert name is not None
        headers[:] = [(n, mutation.value if n == name else v) for n, v in headers]
        why = f"{name.decode()} changed to {mutation.value!r}"
        if name in provider.signed:
            told = frozenset({"invalid_signature"})
            return Plan(scope, messages, REJECT, why + ", which is signed", reasons=told)
        return Plan(scope, messages, ACCEPT, why + ", not signed", new_id=True)
    if kind == "other-timestamp":
        # Another time inside the window, in place of the signed one (unsigned re-stamp).
        stamp, new = str(delivery.timestamp).encode(), mutation.value
        if provider is STRIPE:  # t= in Stripe-Signature
            stamp, new = b"t=" + stamp + b",", b"t=" + new + b","
        for i, (name, value) in enumerate(headers):
            if name in TIMESTAMPS:
                assert value.startswith(stamp), value
                headers[i] = (name, new + value[len(stamp) :])
        why = f"the timestamp changed to {mutation.value.decode()}, which is signed"
        return Plan(scope, messages, REJECT, why, reasons=frozenset({"invalid_signature"}))
    if kind == "sub-path":
        _set_path(scope, scope["raw_path"] + mutation.name)
        # A delivery's MAC covers its body, not its path: the paths under a webhook
        # path are verified by its profile and share its record (docs/webhooks).
        return Plan(scope, messages, ACCEPT, f"sent to {scope['raw_path']!r}")
    if kind == "path-escape":
        _set_path(scope, scope["raw_path"] + mutation.name)
        # A "." or ".." segment is no webhook path: verified as any other (RFC 9421).
        return Plan(scope, messages, REJECT, f"sent to {scope['raw_path']!r}, out of the path")
    if kind == "stray-header":
        name, value = mutation.name, mutation.value
        present = dict(headers)
        headers.append((name, value))
        why = f"a stray {name!r} header"
        if name in (b"host", b"trailer"):
            # Two Hosts (RFC 9112 §3.2), or a trailer that is never verified.
            return Plan(scope, messages, REJECT, why, reasons=MALFORMED_REQUEST)
        if name in FRAMING:
            if {n for n, _ in headers} >= FRAMING:  # Content-Length and Transfer-Encoding
                return Plan(scope, messages, REJECT, why, reasons=MALFORMED_REQUEST)
            return Plan(scope, messages, EITHER, why + ": the framing changed", reasons=None)
        if name in (b"x-http-method-override", b"content-digest"):
            # No provider signs the method, nor a Content-Digest: refusing one is defensible.
            return Plan(scope, messages, EITHER, why)
        if name in provider.shadowed_by:
            # The profile reads that family instead, in which the others are missing.
            why += ", of the family the profile reads first"
            return Plan(scope, messages, REJECT, why, reasons=SHADOWED)
        if name in reads:
            if value == present[name]:
                return Plan(scope, messages, ACCEPT, why + ", the same value again")
            if value.strip(b" \t") == present[name].strip(b" \t"):
                return Plan(scope, messages, EITHER, why + ", the same value padded")
            why += ", another value of a header the profile reads"
            return Plan(scope, messages, REJECT, why, reasons=frozenset({"malformed_signature"}))
        return Plan(scope, messages, ACCEPT, why + ", which the profile does not read")
    name, value = headers[mutation.index]
    what = f"the {name.decode()} header"
    if kind == "header-byte":
        changed = _set_byte(value, mutation.position, mutation.byte)
        headers[mutation.index] = (name, changed)
        why = f"{what} changed from {value!r} to {changed!r}"
        if name in FRAMING:
            return Plan(scope, messages, EITHER, why + ": the framing changed", reasons=None)
        if name == b"host":
            # Not signed, but checked as on any path: 400 unless still a host[:port].
            return Plan(scope, messages, EITHER, why, reasons=MALFORMED_REQUEST)
        if name == provider.signature:
            verdict = _signature_byte(provider, value, changed, mutation.position)
            verdict.scope, verdict.messages, verdict.why = scope, messages, f"{why}: {verdict.why}"
            return verdict
        if name in provider.signed:
            return Plan(scope, messages, REJECT, why + ", which is signed", reasons=BAD_SIGNATURE)
        if name in provider.unsigned_required:
            # GitHub's X-GitHub-Delivery is not signed: any well-formed id passes, as
            # another delivery (it is the dedupe key).
            if _well_formed(changed):
                return Plan(scope, messages, ACCEPT, why + ", not signed", new_id=True)
            told = frozenset({"malformed_signature"})
            return Plan(scope, messages, REJECT, why + ", not a header value", reasons=told)
        return Plan(scope, messages, ACCEPT, why + ", not signed")
    if kind == "drop-header":
        del headers[mutation.index]
        why = f"{what} dropped"
        if name in FRAMING:
            return Plan(scope, messages, EITHER, why + ": the framing changed", reasons=None)
        if name == b"host":
            return Plan(scope, messages, ACCEPT, why + ": HTTP/1.0 may send none")
        if name in reads:
            told = frozenset({"missing_signature"})
            return Plan(scope, messages, REJECT, why + ", which the profile needs", reasons=told)
        return Plan(scope, messages, ACCEPT, why + ", not signed")
    if kind == "duplicate-header":
        headers.insert(mutation.index, (name, value))
        why = f"{what} sent on two lines"
        if name == b"host":
            return Plan(scope, messages, REJECT, why, reasons=MALFORMED_REQUEST)
        if name in FRAMING:
            return Plan(scope, messages, EITHER, why + ": the framing is repeated")
        # The same value twice is one value (a proxy duplicating a line).
        return Plan(scope, messages, ACCEPT, why)
    if kind == "header-whitespace":
        before, after = mutation.name, mutation.value
        headers[mutation.index] = (name, before + value + after)
        why = f"{what} padded with {before!r} and {after!r}"
        # OWS around a field value is not part of it (RFC 9110 §5.5). httptools keeps
        # what follows a value, so the framing headers are read without it too.
        return Plan(scope, messages, ACCEPT, why)
    assert kind == "header-case"
    headers[mutation.index] = (mutation.name, value)
    why = f"{what} renamed {mutation.name!r}"
    # Field names are case-insensitive (RFC 9110 §5.1), and every profile reads them so.
    if name in FRAMING:
        return Plan(scope, messages, EITHER, why + ": the framing")
    return Plan(scope, messages, ACCEPT, why)


# -- the invariant -----------------------------------------------------------------------


def _run(middleware: Any, scope: dict[str, Any], messages: list[Message]) -> Exchange:
    """Drive one request through ``middleware`` on a fresh event loop; nothing escapes."""
    return asyncio.run(drive(middleware, copy.deepcopy(scope), messages, timeout=10.0))


def assert_reached_app(
    exchange: Exchange, scope: dict[str, Any], body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """The app's answer (the echo app's), about exactly the delivery sent."""
    assert_one_answer(exchange)
    assert exchange.status_code == 200, exchange.body
    echoed = exchange.json()
    assert "status" not in echoed, echoed
    assert echoed["sha256"] == hashlib.sha256(body).hexdigest()
    assert echoed["method"] == scope["method"]
    assert echoed["raw_path"] == scope["raw_path"].decode("latin-1")
    assert logged_reasons(caplog) == []
    event("accepted")


def assert_duplicate(exchange: Exchange, caplog: pytest.LogCaptureFixture) -> None:
    """The acknowledgement of a delivery already handled: 200 {"status": "duplicate"}."""
    assert_one_answer(exchange)
    assert exchange.status_code == 200, exchange.body
    assert exchange.headers["content-type"] == "application/json"
    assert exchange.json() == {"status": "duplicate"}
    assert logged_reasons(caplog) == []
    event("duplicate")


def _is_webhook_path(scope: dict[str, Any]) -> bool:
    """Whether the middleware takes ``scope`` for a delivery to one of the webhook paths."""
    path = scope["path"]
    if any(segment in (".", "..") for segment in path.split("/")):
        return False
    return any(path == p.path or path.startswith(p.path + "/") for p in PROVIDERS)


def refused(
    exchange: Exchange,
    scope: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    reasons: frozenset[str] | None = None,
) -> None:
    """A refusal as docs/errors.md describes it; a 401 on a webhook path challenges
    with ``Webhook`` (the sender signs with its provider's scheme, not RFC 9421)."""
    assert_refused(exchange, caplog, reasons)
    if exchange.status_code == 401 and _is_webhook_path(scope):
        assert exchange.headers["www-authenticate"] == 'Webhook realm="hmacguard"'
        assert "accept-signature" not in exchange.headers


# -- the properties ------------------------------------------------------------------------


@BY_PROVIDER
@PROPERTY
@given(data=st.data())
def test_property_one_change_is_refused_or_harmless(
    provider: Provider, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    """One change to a valid delivery (a byte of the body, of the signature header, of
    the timestamp or id headers, of any other; a header dropped, doubled, recased,
    padded with SP/HTAB or added; the body re-chunked; a sub-path; the clock moved; the
    delivery sent twice) either reaches the app exactly once, with exactly the bytes
    sent, which only a change the provider does not sign may do, or is refused without
    the app, with a documented problem+json, never a 500, never an exception; a
    delivery sent twice is acknowledged as a duplicate without reaching the app."""
    caplog.clear()
    delivery, mutation = data.draw(mutated_deliveries(provider))
    planned = plan(delivery, mutation)
    note(f"expected: {planned.expect} ({planned.why})")
    event(f"mutation: {mutation.kind}")
    protected = protect(webhooks=profiles())
    protected.clock.advance(planned.seconds)
    body = b"".join(m["body"] for m in planned.messages)
    if planned.sends == 2:  # the first delivery is the genuine one
        first = _run(protected.middleware, planned.scope, planned.messages)
        assert_reached_app(first, planned.scope, body, caplog)
        again = _run(protected.middleware, planned.scope, planned.messages)
        assert protected.echo.calls == protected.echo.count == 1, again.body
        assert_duplicate(again, caplog)
        assert_nothing_unexpected(caplog)
        return
    exchange = _run(protected.middleware, planned.scope, planned.messages)
    if protected.echo.calls:
        assert planned.expect != REJECT, f"reached the app: {planned.why}"
        assert protected.echo.calls == protected.echo.count == 1
        assert_reached_app(exchange, planned.scope, body, caplog)
    else:
        assert planned.expect != ACCEPT, f"refused: {planned.why}: {exchange.body!r}"
        refused(exchange, planned.scope, caplog, planned.reasons)
    assert_nothing_unexpected(caplog)


@st.composite
def resent_deliveries(draw: st.DrawFn, provider: Provider) -> tuple[Delivery, Plan]:
    """A valid delivery, and a change that keeps it acceptable to send it again with:
    re-chunked, a stray header, a header recased, padded, doubled or changed (or
    dropped) that the provider does not sign, a sub-path, later in the window..."""
    delivery = draw(deliveries(provider))
    again = draw(
        mutations(delivery, RESENDABLE).filter(lambda m: plan(delivery, m).expect == ACCEPT)
    )
    return delivery, plan(delivery, again)


@BY_PROVIDER
@FEWER
@given(data=st.data(), first=chunkings)
def test_property_a_delivery_sent_again_is_a_duplicate(
    provider: Provider, data: st.DataObject, first: Chunking, caplog: pytest.LogCaptureFixture
) -> None:
    """A delivery that reached the app, sent again (the same, or changed in any way that
    leaves it acceptable, later inside its window) is answered 200 duplicate and never
    reaches the app again; only GitHub's unsigned X-GitHub-Delivery, changed, makes it
    another delivery."""
    caplog.clear()
    delivery, resent = data.draw(resent_deliveries(provider))
    note(f"sent again: {resent.why}")
    protected = protect(webhooks=profiles())
    scope = delivery.scope()
    accepted = _run(protected.middleware, scope, first.messages(delivery.body))
    assert_reached_app(accepted, scope, delivery.body, caplog)
    protected.clock.advance(resent.seconds)
    again = _run(protected.middleware, resent.scope, resent.messages)
    if resent.new_id:
        assert protected.echo.count == 2
        assert_reached_app(again, resent.scope, delivery.body, caplog)
    else:
        assert protected.echo.calls == protected.echo.count == 1, again.body
        assert_duplicate(again, caplog)
    assert_nothing_unexpected(caplog)


@BY_PROVIDER
@FEWER
@given(data=st.data(), cuts=st.lists(chunkings, min_size=1, max_size=3))
def test_property_chunking_never_changes_the_outcome(
    provider: Provider,
    data: st.DataObject,
    cuts: list[Chunking],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same delivery, valid or changed once, its body cut into any messages (one,
    one byte each, empty ones anywhere), gets the same answer every time, reaches the
    app as often, and logs the same reasons."""
    kinds = tuple(kind for kind in KINDS if kind not in ("replay", "rechunk"))
    delivery, mutation = data.draw(mutated_deliveries(provider, kinds))
    planned = plan(delivery, mutation)
    note(f"{planned.expect}: {planned.why}")
    body = b"".join(m["body"] for m in planned.messages)
    outcomes = []
    everything = Chunking(byte_by_byte=True, empty_before=True, trailing_empty=True)
    for chunking in [Chunking(), everything, *cuts]:
        caplog.clear()
        protected = protect(webhooks=profiles())  # a fresh store: each delivery is a first one
        protected.clock.advance(planned.seconds)
        exchange = _run(protected.middleware, planned.scope, chunking.messages(body))
        assert_one_answer(exchange)
        outcomes.append(
            (exchange.status_code, exchange.body, protected.echo.count, logged_reasons(caplog))
        )
        assert_nothing_unexpected(caplog)
    assert all(outcome == outcomes[0] for outcome in outcomes), outcomes


# Genuine deliveries that fit no request drawn below, for garbage to carry so that it gets
# past the parsers: of a body longer than any drawn, under another provider's secret, too
# old or too far ahead. Each is its provider's headers.
_LONG_BODY = b"x" * 600


def _genuine_but_wrong(provider: Provider) -> list[Headers]:
    wrong = [provider.sign(_LONG_BODY, NOW, "msg_elsewhere", "after")]
    if provider.timestamped:
        wrong += [
            provider.sign(b"{}", NOW - 1000, "msg_old", ""),
            provider.sign(b"", NOW + 1000, "msg_ahead", ""),
        ]
    else:
        forged = "sha256=" + _hex_mac("not-the-secret", b"{}")
        wrong.append([(provider.signature.decode(), forged), ("x-github-delivery", "d-1")])
    return wrong


_WRONG = [lines for provider in PROVIDERS for lines in _genuine_but_wrong(provider)]
_VALUES = [
    b"0",
    b"12",
    b"99999999999999999999",
    b"chunked",
    str(NOW).encode(),
    str(NOW - 1000).encode(),
    b"v1," + b"A" * 43 + b"=",
    b"t=1700000000,v1=" + b"0" * 64,
    b"sha256=" + b"0" * 64,
    b"v0=" + b"f" * 64,
    b"msg_1",
    b"v1 v1, v1,,",
    b"t=1,t=2",
]
_NAMES = [
    b"Host",
    b"content-length",
    b"Content-Length",
    b"transfer-encoding",
    b"trailer",
    b"content-type",
    *PROVIDER_NAMES,
    *(name.upper() for name in PROVIDER_NAMES[:4]),
]
_HOSTS = [b"api.example", b"API.example:80", b"127.0.0.1:8000", b"[::1]"]


garbage_values = strategies.garbage_values(_VALUES, max_long=9000)
garbage_names = strategies.garbage_names(_NAMES)


@st.composite
def _edited(draw: st.DrawFn, value: bytes) -> bytes:
    """``value`` with one to three bytes changed, inserted or deleted."""
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(value)))
        byte = bytes([draw(st.integers(0, 255))])
        edit = draw(st.sampled_from(["replace", "insert", "delete"]))
        if edit == "insert" or position == len(value):
            value = value[:position] + byte + value[position:]
        elif edit == "replace":
            value = value[:position] + byte + value[position + 1 :]
        else:
            value = value[:position] + value[position + 1 :]
    return value


#: Values shaped like the providers' (digits, hex, base64, their separators).
syntax_values = st.text("0123456789abcdefABCDEF+/= ,.:tv\t", max_size=80).map(str.encode)


@st.composite
def garbage_headers(draw: st.DrawFn, provider: Provider) -> list[tuple[bytes, bytes]]:
    """Random header lines, mostly with a good Host and often with genuine headers of the
    path's provider (or another's) of no delivery drawn here, edited or not, in any order."""
    names = garbage_names | st.sampled_from(sorted(provider.reads))
    values = garbage_values | syntax_values
    lines = draw(st.lists(st.tuples(names, values), max_size=4))
    host = draw(st.integers(0, 9))  # mostly a good one, else none or garbage
    if host > 1:
        lines.append((b"host", draw(st.sampled_from(_HOSTS))))
    elif host == 1:
        lines.append((b"host", draw(garbage_values)))
    if draw(st.integers(0, 4)):
        own = st.sampled_from(_genuine_but_wrong(provider))
        wrong = draw(st.one_of(own, own, st.sampled_from(_WRONG)))
        fields = [(n.encode(), v.encode()) for n, v in wrong]
        for index in draw(st.lists(st.integers(0, len(fields) - 1), max_size=2)):
            name, value = fields[index]
            fields[index] = (name, draw(_edited(value)))
        lines += fields
    order = draw(st.permutations(range(len(lines))))
    return [lines[i] for i in order]


@BY_PROVIDER
@PROPERTY
@given(
    method=st.one_of(
        st.sampled_from(["POST", "GET", "PUT", "HEAD", "OPTIONS", "DELETE"]),
        st.text(string.ascii_letters + "!#$%&'*+-.^_`|~", min_size=1, max_size=10),
    ),
    data=st.data(),
    suffix=st.one_of(
        st.just(b""),
        st.text(SEGMENT, min_size=1, max_size=12).map(lambda s: b"/" + s.encode()),
        # Mostly a webhook path still; sometimes one a "." segment or a byte takes it out of.
        st.text(SEGMENT + "/%.", max_size=24).map(lambda s: b"/" + s.encode()),
        st.binary(max_size=24),
    ),
    query=st.one_of(st.just(b""), st.binary(max_size=32)),
    body=st.binary(max_size=512),
    chunking=chunkings,
    http_version=st.sampled_from(["1.0", "1.1", "2"]),
)
def test_property_garbage_never_reaches_the_app_nor_a_500(
    provider: Provider,
    method: str,
    data: st.DataObject,
    suffix: bytes,
    query: bytes,
    body: bytes,
    chunking: Chunking,
    http_version: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Random header lists on a webhook path (any bytes for names and values: empty,
    non-ASCII, a few KiB long, any provider's header names, genuine provider headers of
    some other delivery), any method, sub-path, query and body: the app is never called,
    the answer is a documented 4xx or 503 problem, nothing escapes, and nothing fails
    inside the middleware (no ERROR log)."""
    caplog.clear()
    headers = data.draw(garbage_headers(provider))
    protected = protect(webhooks=profiles())
    scope = http_scope(method, provider.path, headers, host=None, keep_case=True)
    _set_path(scope, provider.path.encode() + suffix)
    scope["query_string"] = query
    scope["http_version"] = http_version
    exchange = _run(protected.middleware, scope, chunking.messages(body))
    assert protected.echo.untouched(), exchange.body
    refused(exchange, scope, caplog)
    assert_nothing_unexpected(caplog)


class Handler:
    """An app that answers its n-th delivery with ``outcomes[n]``: a status, an
    exception (``"raise"``), nothing (``"silent"``), or with ``after`` a status and
    then an exception (a Starlette ``BackgroundTask`` that fails after the response)."""

    def __init__(self, outcomes: list[int | str], *, after: bool = False) -> None:
        self.outcomes = outcomes
        self.after = after
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        outcome = self.outcomes[len(self.bodies) - 1]
        if outcome == "raise":
            raise RuntimeError("the handler failed")
        if outcome == "silent":
            return
        await send({"type": "http.response.start", "status": outcome, "headers": []})
        await send({"type": "http.response.body", "body": b"handled"})
        if self.after:
            raise RuntimeError("the work after the response failed")


outcomes = st.one_of(
    st.sampled_from([200, 201, 202, 204, 299, 301, 307, 400, 404, 409, 422, 429, 500, 503]),
    st.integers(200, 599),
    st.sampled_from(["raise", "silent"]),
)


@BY_PROVIDER
@FEWER
@given(
    data=st.data(),
    attempts=st.lists(
        st.tuples(st.sampled_from(["same", "retry"]), st.integers(1, 90), chunkings, outcomes),
        min_size=1,
        max_size=3,
    ),
    answer=outcomes,
)
def test_property_a_delivery_is_processed_again_until_the_app_answers_2xx(
    provider: Provider,
    data: st.DataObject,
    attempts: list[tuple[str, int, Chunking, int | str]],
    answer: int | str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A delivery the app failed on (it answered anything but 2xx, nothing, or raised)
    is forgotten, so that it is processed again when it comes back: sent again as it
    was, or retried by the provider (signed again later, the same id); once the app has
    answered one with 2xx, the same delivery is acknowledged as a duplicate without
    reaching the app. A provider's retry that is a new delivery (Stripe's, Slack's
    other than an Events API callback) reaches the app each time."""
    caplog.clear()
    delivery = data.draw(deliveries(provider, fresh=True))
    clock_now = [float(NOW)]
    store = MemoryNonceStore(clock=lambda: clock_now[0])
    handler = Handler([answer] + [outcome for *_, outcome in attempts])
    middleware = SignatureMiddleware(
        handler, keys=KEYS, webhooks=profiles(), nonce_store=store, clock=lambda: clock_now[0]
    )
    handled: set[int] = set()  # the model: dedupe keys the app answered 2xx
    sends = [("first", 0, Chunking(), answer), *attempts]
    elapsed = 0
    for number, (how, gap, chunking, _) in enumerate(sends):
        elapsed += gap
        clock_now[0] = float(NOW + elapsed)
        sent, key = delivery, 0
        if how == "retry":
            again = (("x-slack-retry-num", str(number)),) if provider is SLACK else ()
            sent = delivery.resigned(NOW + elapsed, *again) if provider.timestamped else delivery
            key = 0 if retry_is_the_same_delivery(provider, delivery.body) else number
        note(f"attempt {number}: {how} at +{elapsed} s (key {key}), handled: {handled}")
        reached = len(handler.bodies)
        scope = sent.scope()
        try:
            exchange = _run(middleware, scope, chunking.messages(delivery.body))
        except RuntimeError:
            assert handler.outcomes[reached] == "raise"
            assert len(handler.bodies) == reached + 1
            continue
        if key in handled:
            assert len(handler.bodies) == reached, f"attempt {number} reached the app again"
            assert_duplicate(exchange, caplog)
            continue
        assert len(handler.bodies) == reached + 1, f"attempt {number}: {exchange.body!r}"
        assert handler.bodies[-1] == delivery.body
        outcome = handler.outcomes[reached]
        if outcome == "silent":
            assert exchange.sent == []
            continue
        assert (exchange.status_code, exchange.body) == (outcome, b"handled")
        if 200 <= int(outcome) < 300:
            handled.add(key)
    assert logged_reasons(caplog) == []


@BY_PROVIDER
@settings(PROPERTY, max_examples=10)
@given(data=st.data(), status=st.integers(200, 299), first=chunkings, later=chunkings)
def test_property_a_delivery_answered_2xx_stays_handled_when_the_app_fails_after(
    provider: Provider,
    data: st.DataObject,
    status: int,
    first: Chunking,
    later: Chunking,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A delivery the app answered with a complete 2xx response, and then raised (work
    after the response, such as a Starlette ``BackgroundTask``, failed; the server logs
    it, but the sender already has its 2xx and will not retry), was answered 2xx: it
    stays recorded, and the same delivery sent again is acknowledged as a duplicate
    without reaching the app (docs/webhooks: "Only a 2xx counts as handled")."""
    caplog.clear()
    delivery = data.draw(deliveries(provider, fresh=True))
    handler = Handler([status, 200], after=True)
    middleware = SignatureMiddleware(
        handler,
        keys=KEYS,
        webhooks=profiles(),
        nonce_store=MemoryNonceStore(clock=lambda: NOW),
        clock=lambda: NOW,
    )
    sent: list[Message] = []

    async def server(scope: Any, receive: Any, send: Any) -> None:
        async def record(message: Message) -> None:
            sent.append(message)
            await send(message)

        await middleware(scope, receive, record)

    scope = delivery.scope()
    with pytest.raises(RuntimeError, match="after the response"):
        _run(server, scope, first.messages(delivery.body))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == status
    assert not sent[1].get("more_body", False)  # the sender has its complete 2xx answer
    handler.after = False
    again = _run(middleware, scope, later.messages(delivery.body))
    assert len(handler.bodies) == 1, f"processed again, answered {again.status_code}"
    assert_duplicate(again, caplog)
