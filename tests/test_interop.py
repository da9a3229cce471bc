"""Interoperability with an independent RFC 9421 implementation, the PyPI package
``http-message-signatures`` (3.x): each side verifies what the other signs, both verify the
RFC 9421 B.2.5 vector, and over random requests they produce byte-identical signatures and
agree on every accept/reject verdict after tampering.

Known divergences (each pinned by a ``test_divergence_*`` test below, and kept out of the
random requests of the differential test; everything else is compared strictly):

1. ``@target-uri``: the peer builds it from the URL's scheme and authority as written
   (``HTTPS://API.Example:443/p``); hmacguard normalises them as for ``@authority`` and
   ``@scheme`` (``https://api.example/p``): lowercase scheme and host, no default or empty
   port. RFC 9421 §2.2.2 does not say either way.
2. ``@target-uri`` of an ``OPTIONS`` request with an empty path: the peer keeps the path
   empty (``https://h``, RFC 9110 §4.2.3's OPTIONS exception); hmacguard writes ``https://h/``.
3. ``@authority`` with a default port written with leading zeros (``h:0443``): the peer
   drops it as the default port; hmacguard keeps ``h:0443``.
4. Tolerance, not canonicalisation: the peer refuses to sign or verify a lowercase method,
   a URL that is not strict RFC 3986 (raw spaces, ``[``, bad ``%`` escapes), and a field
   value with a bare LF; hmacguard signs all of these (a bare-LF fold ``a\\n b`` becomes
   ``a b``, like an obs-fold). Its short component form ``x;bs`` is read as a field named
   ``x;bs``; identifiers with parameters are passed to it in sf form (``"x";bs``).

The peer reads the real clock for ``created`` (no clock can be injected), so these tests
sign at a fixed past time and verify with ``max_age=None`` (its documented way to skip the
age check; ``created`` must then only not lie in the future), except the one test that
checks its default ``max_age`` and signs at the real current time for that reason.
"""

from __future__ import annotations

import datetime
import string
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from hmacguard import (
    DigestMismatch,
    HMACKey,
    Signer,
    VerificationError,
    Verifier,
    make_content_digest,
)
from hmacguard._components import component_from_spec, parse_component
from hmacguard._message import Message
from hmacguard._signature_base import build_signature_base
from hmacguard._structured_fields import parse_dictionary

NOW = 1_700_000_000
KEY_ID = "client-1"
SECRET = bytes(range(100, 132))
KEY = HMACKey(KEY_ID, SECRET)
URL = "https://api.example/v1/items?page=2&sort=name"
BODY = b'{"name": "widget", "qty": 3}'
JSON = {"Content-Type": "application/json"}
_HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=_HEALTH)
PER_KIND = settings(max_examples=40, deadline=None, suppress_health_check=_HEALTH)


def _created(now: float = NOW) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)


def _resolver(key_id: str = KEY_ID, secret: bytes = SECRET) -> MappingKeyResolver:
    return MappingKeyResolver(public_keys={key_id: secret}, private_keys={key_id: secret})


def _peer_signer() -> HTTPMessageSigner:
    return HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_resolver())


def _peer_verifier() -> HTTPMessageVerifier:
    return HTTPMessageVerifier(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_resolver())


class _Fields:
    """Header lines for the peer: repeated names kept, in order (its ``_Headers`` protocol)."""

    def __init__(self, lines: Any = ()) -> None:
        self.lines: list[tuple[str, str]] = list(lines)

    def items(self) -> list[tuple[str, str]]:
        return list(self.lines)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self.lines))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self.lines)

    def __setitem__(self, name: str, value: str) -> None:
        self.__delitem__(name)
        self.lines.append((name, value))

    def __delitem__(self, name: str) -> None:
        self.lines = [(n, v) for n, v in self.lines if n.lower() != name.lower()]


@dataclass
class _PeerRequest:
    """The request interface the peer reads: ``method``, ``url``, ``headers.items()``."""

    method: str
    url: str
    headers: _Fields


def _prepared(method: str = "POST", url: str = URL, body: bytes | None = BODY) -> Any:
    return requests.Request(method, url, headers=dict(JSON), data=body).prepare()


def _hg_verify(prepared: Any, **policy: Any) -> Any:
    verifier = Verifier({KEY_ID: SECRET}, **policy)
    headers = list(prepared.headers.items())
    return verifier.verify(prepared.method, prepared.url, headers, prepared.body, now=NOW + 5)


# -- (a) hmacguard signs, the peer verifies ---------------------------------------------------


def test_interop_hmacguard_default_signature_verifies_with_peer_default_max_age() -> None:
    """A default hmacguard signature, made now, passes the peer with its default max_age."""
    prepared = _prepared()
    signed = Signer(KEY).sign(
        prepared.method, prepared.url, prepared.headers.items(), prepared.body, now=time.time()
    )
    prepared.headers.update(signed)
    (result,) = _peer_verifier().verify(prepared, body=BODY)
    assert list(result.covered_components) == [
        '"@method"',
        '"@authority"',
        '"@path"',
        '"@query"',
        '"content-type"',
        '"content-digest"',
        '"@signature-params"',
    ]
    assert result.covered_components['"@query"'] == "?page=2&sort=name"
    assert result.parameters["keyid"] == KEY_ID
    assert result.nonce is not None
    assert result.body == BODY


@pytest.mark.parametrize("digest", ["sha-256", "sha-512"])
def test_interop_hmacguard_explicit_components_with_body_verify_with_peer(digest: str) -> None:
    """hmacguard's signature over a set with content-digest verifies with the peer's checks."""
    components = ("@method", "@target-uri", "content-type", "content-digest", "content-length")
    prepared = _prepared()
    signer = Signer(KEY, components=components, digest=digest, include_alg=True, tag="app")
    signed = signer.sign(
        prepared.method, prepared.url, prepared.headers.items(), prepared.body, now=NOW
    )
    prepared.headers.update(signed)
    (result,) = _peer_verifier().verify(
        prepared, max_age=None, expect_tag="app", require_components=components, body=BODY
    )
    assert result.parameters == {
        "created": NOW,
        "keyid": KEY_ID,
        "alg": "hmac-sha256",
        "nonce": result.nonce,
        "tag": "app",
    }
    assert result.covered_components['"content-digest"'].startswith(f"{digest}=:")
    assert result.covered_components['"content-length"'] == str(len(BODY))


def test_interop_peer_rejects_hmacguard_signature_on_changed_body() -> None:
    """With the body changed after hmacguard signed it, the peer rejects it as hmacguard does."""
    prepared = _prepared()
    prepared.headers.update(
        Signer(KEY).sign(
            prepared.method, prepared.url, prepared.headers.items(), prepared.body, now=NOW
        )
    )
    changed = BODY.replace(b"3", b"9")
    with pytest.raises(InvalidSignature, match="Content-Digest does not match"):
        _peer_verifier().verify(prepared, max_age=None, body=changed)
    prepared.body = changed
    with pytest.raises(DigestMismatch):
        _hg_verify(prepared)


# -- (b) the peer signs, hmacguard verifies ---------------------------------------------------

PEER_COMPONENTS = ("@method", "@authority", "@path", "@query", "content-digest")


@pytest.mark.parametrize("include_alg", [True, False])
def test_interop_peer_signature_with_content_digest_verifies_with_hmacguard(
    include_alg: bool,
) -> None:
    """A peer hmac-sha256 signature with nonce, keyid and Content-Digest passes hmacguard."""
    prepared = _prepared()
    _peer_signer().sign(
        prepared,
        key_id=KEY_ID,
        created=_created(),
        nonce="peer-nonce-1",
        label="peer",
        include_alg=include_alg,
        covered_component_ids=PEER_COMPONENTS,
        body=BODY,
    )
    assert prepared.headers["Content-Digest"] == make_content_digest(BODY)
    verified = _hg_verify(prepared)
    assert verified.components == PEER_COMPONENTS
    assert (verified.key_id, verified.label, verified.nonce) == (KEY_ID, "peer", "peer-nonce-1")
    assert (verified.created, verified.algorithm) == (NOW, "hmac-sha256")


def test_interop_peer_signature_over_hmacguard_content_digest_verifies() -> None:
    """The peer signs a Content-Digest made by make_content_digest; hmacguard verifies all."""
    prepared = _prepared()
    prepared.headers["Content-Digest"] = make_content_digest(BODY, "sha-512")
    _peer_signer().sign(
        prepared,
        key_id=KEY_ID,
        created=_created(),
        nonce="n2",
        covered_component_ids=PEER_COMPONENTS,
        use_existing_digest=True,
    )
    verified = _hg_verify(prepared, required_components=PEER_COMPONENTS)
    assert verified.components == PEER_COMPONENTS
    assert verified.label == "pyhms"


def test_interop_hmacguard_rejects_peer_signature_on_changed_query() -> None:
    """hmacguard rejects a peer signature after the query changed, as invalid_signature."""
    prepared = _prepared()
    _peer_signer().sign(
        prepared,
        key_id=KEY_ID,
        created=_created(),
        nonce="n3",
        covered_component_ids=PEER_COMPONENTS,
        body=BODY,
    )
    prepared.url = prepared.url.replace("page=2", "page=3")
    with pytest.raises(VerificationError) as caught:
        _hg_verify(prepared)
    assert caught.value.reason == "invalid_signature"


# -- (c) the RFC 9421 B.2.5 vector ------------------------------------------------------------

B25_COMPONENTS = ("date", "@authority", "content-type")


def test_rfc9421_b_2_5_verifies_with_both(rfc9421: Any, rfc_secret: bytes) -> None:
    """The B.2.5 hmac-sha256 signature verifies with the peer and with hmacguard."""
    req, vec = rfc9421["test_request"], rfc9421["b_2_5"]
    lines = [
        *map(tuple, req["headers"]),
        ("Signature-Input", vec["signature_input"]),
        ("Signature", vec["signature"]),
    ]
    peer = HTTPMessageVerifier(
        signature_algorithm=algorithms.HMAC_SHA256,
        key_resolver=_resolver("test-shared-secret", rfc_secret),
    )
    (result,) = peer.verify(_PeerRequest(req["method"], req["url"], _Fields(lines)), max_age=None)
    assert result.label == "sig-b25"
    base = "\n".join(f"{k}: {v}" for k, v in result.covered_components.items())
    assert base == vec["base"]
    verified = Verifier(
        {"test-shared-secret": rfc_secret},
        required_components=B25_COMPONENTS,
        require_nonce=False,
    ).verify(req["method"], req["url"], lines, req["body"].encode(), now=1618884473)
    assert (verified.label, verified.components) == ("sig-b25", B25_COMPONENTS)


def test_rfc9421_b_2_5_signed_identically_by_both(rfc9421: Any, rfc_secret: bytes) -> None:
    """Both implementations reproduce the B.2.5 Signature-Input and Signature exactly."""
    req, vec = rfc9421["test_request"], rfc9421["b_2_5"]
    message = _PeerRequest(req["method"], req["url"], _Fields(map(tuple, req["headers"])))
    HTTPMessageSigner(
        signature_algorithm=algorithms.HMAC_SHA256,
        key_resolver=_resolver("test-shared-secret", rfc_secret),
    ).sign(
        message,
        key_id="test-shared-secret",
        created=_created(1618884473),
        label="sig-b25",
        include_alg=False,
        covered_component_ids=B25_COMPONENTS,
        use_existing_digest=True,  # the B.2 request already has a Content-Digest
    )
    ours = Signer(
        HMACKey("test-shared-secret", rfc_secret),
        components=B25_COMPONENTS,
        label="sig-b25",
        nonce=False,
    ).sign(req["method"], req["url"], req["headers"], req["body"].encode(), now=1618884473)
    peer = dict(message.headers.items())
    assert peer["Signature-Input"] == ours["Signature-Input"] == vec["signature_input"]
    assert peer["Signature"] == ours["Signature"] == vec["signature"]


# -- (d) the differential test ----------------------------------------------------------------

UNRESERVED = string.ascii_letters + string.digits + "-._~"
PCHAR = UNRESERVED + "!$&'()*+,;=" + ":@"
QTEXT = "".join(c for c in PCHAR + "/?" if c not in "&=+")
VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))
FIELD_TEXT = " \t" + VISIBLE
# Replacement bytes that keep a URL strict RFC 3986 (the peer refuses anything else).
METHOD_CHARS = string.ascii_uppercase + string.digits + "!#$%&'*+-.^_`|~"
PATH_CHARS = PCHAR + "/?"
QUERY_CHARS = PCHAR + "/?"
HOST_CHARS = string.ascii_lowercase + string.digits + "-"
DERIVED = ("@method", "@authority", "@path", "@query", "@scheme", "@target-uri", "@request-target")
EXCLUDED_FIELDS = frozenset({"signature", "signature-input", "content-digest", "set-cookie"})

percent_escapes = st.one_of(
    st.sampled_from(["%2F", "%2f", "%20", "%25", "%3F", "%23", "%7E", "%2e%2E"]),
    st.integers(0, 255).map(lambda b: f"%{b:02X}"),
    st.text(min_size=1, max_size=3).map(lambda s: urllib.parse.quote(s, safe="")),
)
segments = st.one_of(
    st.sampled_from([".", "..", ""]),
    st.lists(
        st.one_of(st.text(PCHAR, min_size=1, max_size=5), percent_escapes), min_size=1, max_size=4
    ).map("".join),
)
query_text = st.lists(
    st.one_of(
        st.text(QTEXT, min_size=1, max_size=4), st.just("+"), st.just("%20"), percent_escapes
    ),
    max_size=3,
).map("".join)
query_keys = st.one_of(st.sampled_from(["a", "b", "id", "a+b", "x%20y", "%C3%A9"]), query_text)
query_pairs = st.one_of(st.tuples(query_keys, query_text).map("=".join), query_keys, st.just(""))
field_names = st.one_of(
    st.sampled_from(["x-a", "x-b", "date", "content-type", "accept"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
).filter(lambda n: n not in EXCLUDED_FIELDS)


@dataclass(frozen=True)
class Wire:
    """One request as both libraries see it."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None

    def peer(self) -> _PeerRequest:
        return _PeerRequest(self.method, self.url, _Fields(self.headers))


@dataclass(frozen=True)
class Plan:
    """A request and the options both sides sign it with."""

    wire: Wire
    components: tuple[str, ...]
    label: str
    nonce: str | None
    tag: str | None
    include_alg: bool
    expires_in: int | None


def _peer_id(spec: str) -> str:
    # hmacguard's short form '@query-param;name="a"' is '"@query-param";name="a"' for the peer.
    return spec if ";" not in spec else '"' + spec.replace(";", '";', 1)


def _form(text: str) -> str:
    return urllib.parse.quote(text, safe="*").replace("~", "%7E")


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A strict RFC 3986 request with an uppercase method, and a component set to sign."""
    method = draw(
        st.one_of(
            st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
            st.text(string.ascii_uppercase, min_size=1, max_size=10),
        )
    )
    labels = st.lists(
        st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6), max_size=2
    )
    host = ".".join([*draw(labels), "example"])
    canonical = draw(st.booleans())
    if canonical:
        scheme, authority = "https", host + draw(st.sampled_from(["", ":8443"]))
    else:
        # Divergence 1: a non-normalised scheme or authority only without @target-uri.
        scheme = draw(st.sampled_from(["https", "HTTPS", "Https"]))
        authority = draw(st.sampled_from([str.upper, str.title]))(host) + draw(
            st.sampled_from(["", ":", ":443", ":8443"])
        )
    path = "/" + "/".join(draw(st.lists(segments, max_size=5)))
    query = draw(
        st.one_of(
            st.none(), st.just(""), st.lists(query_pairs, min_size=1, max_size=5).map("&".join)
        )
    )
    url = f"{scheme}://{authority}{path}" + ("" if query is None else "?" + query)
    lines = st.tuples(
        field_names,
        st.sampled_from([str.lower, str.upper, str.title]),
        st.text(FIELD_TEXT, max_size=20),
    )
    headers = tuple((case(name), value) for name, case, value in draw(st.lists(lines, max_size=5)))
    body = draw(st.one_of(st.none(), st.just(b""), st.binary(min_size=1, max_size=2048)))
    pairs = urllib.parse.parse_qsl(query or "", keep_blank_values=True)
    names = [_form(k) for k, _ in pairs]
    fields = list(dict.fromkeys(n.lower() for n, _ in headers))
    candidates = [
        *(d for d in DERIVED if canonical or d != "@target-uri"),
        *(f'@query-param;name="{n}"' for n in names if names.count(n) == 1),
        *fields,
        *(f"{f};bs" for f in fields),
    ]
    components = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=7, unique=True))
    if body is not None:
        # The peer covers content-digest whenever it is given a body; so does the plan.
        at = draw(st.integers(0, len(components)))
        components = [*components[:at], "content-digest", *components[at:]]
    return Plan(
        wire=Wire(method, url, headers, body),
        components=tuple(components),
        label=draw(st.from_regex(r"[a-z][a-z0-9_.*-]{0,5}", fullmatch=True)),
        nonce=draw(st.one_of(st.none(), st.text(VISIBLE + " ", min_size=1, max_size=24))),
        tag=draw(st.one_of(st.none(), st.text(VISIBLE + " ", min_size=1, max_size=12))),
        include_alg=draw(st.booleans()),
        # The peer checks expires against the real clock, so only far-future values.
        expires_in=draw(st.sampled_from([None, 2_000_000_000])),
    )


def _sign_hmacguard(plan: Plan) -> Wire:
    wire = plan.wire
    added = Signer(
        KEY,
        components=plan.components,
        label=plan.label,
        nonce=plan.nonce is not None,
        tag=plan.tag,
        include_alg=plan.include_alg,
        expires_in=plan.expires_in,
    ).sign(wire.method, wire.url, wire.headers, wire.body, now=NOW, nonce=plan.nonce)
    return replace(wire, headers=wire.headers + tuple(added.items()))


def _sign_peer(plan: Plan) -> Wire:
    wire = plan.wire
    message = wire.peer()
    _peer_signer().sign(
        message,
        key_id=KEY_ID,
        created=_created(),
        expires=None if plan.expires_in is None else _created(NOW + plan.expires_in),
        nonce=plan.nonce,
        label=plan.label,
        tag=plan.tag,
        include_alg=plan.include_alg,
        covered_component_ids=[_peer_id(c) for c in plan.components],
        body=wire.body,
    )
    return replace(wire, headers=tuple(message.headers.items()))


def _hmacguard_accepts(plan: Plan, wire: Wire) -> bool:
    verifier = Verifier(
        [KEY],
        required_components=plan.components,
        require_nonce=plan.nonce is not None,
        tag=plan.tag,
    )
    try:
        verifier.verify(wire.method, wire.url, wire.headers, wire.body, now=NOW + 1)
    except VerificationError:
        return False
    return True


def _peer_accepts(plan: Plan, wire: Wire) -> bool:
    try:
        _peer_verifier().verify(
            wire.peer(),
            max_age=None,
            expect_tag=plan.tag,
            require_components=[_peer_id(c) for c in plan.components],
            body=wire.body,
        )
    except InvalidSignature:
        return False
    return True


def _swap(text: str, at: int, alphabet: str, data: st.DataObject) -> str:
    char = data.draw(st.sampled_from([c for c in alphabet if c != text[at]]))
    return text[:at] + char + text[at + 1 :]


def _tamper(wire: Wire, data: st.DataObject, kind: str) -> Wire:
    """Change one byte of the method, the host, path or query, a field value, or the body."""
    start = wire.url.index("://") + 3
    slash, q_at = wire.url.index("/", start), wire.url.find("?", start)
    path_end = len(wire.url) if q_at == -1 else q_at
    host_end = wire.url.find(":", start, slash)
    lines = [i for i, (_, v) in enumerate(wire.headers) if v.strip(" \t")]
    assume(
        {
            "path": path_end - slash > 1,
            "query": q_at != -1 and q_at < len(wire.url) - 1,
            "body": bool(wire.body),
            "field": bool(lines),
        }.get(kind, True)
    )
    if kind == "method":
        at = data.draw(st.integers(0, len(wire.method) - 1))
        return replace(wire, method=_swap(wire.method, at, METHOD_CHARS, data))
    if kind in ("host", "path", "query"):
        first, end, alphabet = {
            "host": (start, slash if host_end == -1 else host_end, HOST_CHARS),
            "path": (slash + 1, path_end, PATH_CHARS),
            "query": (q_at + 1, len(wire.url), QUERY_CHARS),
        }[kind]
        at = data.draw(st.integers(first, end - 1))
        if "%" in (wire.url[at - 1], wire.url[at - 2]):
            # Inside a %XX escape only another hex digit keeps the URL valid for the peer.
            alphabet = string.hexdigits
        return replace(wire, url=_swap(wire.url, at, alphabet, data))
    if kind == "body":
        assert wire.body
        at = data.draw(st.integers(0, len(wire.body) - 1))
        body = bytearray(wire.body)
        body[at] ^= data.draw(st.integers(1, 255))
        return replace(wire, body=bytes(body))
    line = data.draw(st.sampled_from(lines))
    name, value = wire.headers[line]
    at = data.draw(st.integers(0, len(value) - 1))
    headers = list(wire.headers)
    headers[line] = (name, _swap(value, at, VISIBLE, data))
    return replace(wire, headers=tuple(headers))


def _fields(wire: Wire) -> dict[str, str]:
    return {
        n: v for n, v in wire.headers if n in ("Signature-Input", "Signature", "Content-Digest")
    }


@SETTINGS
@given(plan=plans())
def test_interop_differential_sign_and_cross_verify(plan: Plan) -> None:
    """Both sides sign a random request byte-identically and each verifies the other's."""
    ours, theirs = _sign_hmacguard(plan), _sign_peer(plan)
    assert _fields(ours) == _fields(theirs)
    for wire in (ours, theirs):
        assert _hmacguard_accepts(plan, wire)
        assert _peer_accepts(plan, wire)


@pytest.mark.parametrize("kind", ["method", "host", "path", "query", "field", "body"])
@PER_KIND
@given(plan=plans(), data=st.data())
def test_interop_differential_tamper_verdicts_agree(
    kind: str, plan: Plan, data: st.DataObject
) -> None:
    """After one changed byte of a signed request, both sides accept it or both reject it."""
    tampered = _tamper(_sign_hmacguard(plan), data, kind)
    verdict = _hmacguard_accepts(plan, tampered)
    event("accepted" if verdict else "rejected")
    assert _peer_accepts(plan, tampered) == verdict, tampered


@SETTINGS
@given(plan=plans())
def test_interop_differential_signature_base(plan: Plan) -> None:
    """hmacguard's signature base is the peer's prepare() base, byte for byte."""
    wire = plan.wire
    message = wire.peer()
    prepared = _peer_signer().prepare(
        message,
        key_id=KEY_ID,
        created=_created(),
        nonce=plan.nonce,
        include_alg=False,
        covered_component_ids=[_peer_id(c) for c in plan.components],
        body=wire.body,
    )
    (member,) = parse_dictionary("x=" + prepared.signature_params).values()
    components = [parse_component(item) for item in member.items]  # type: ignore[union-attr]
    ours = build_signature_base(
        Message(wire.method, wire.url, message.headers.items()),
        components,
        prepared.signature_params,
    )
    assert ours == prepared.signature_base


# -- the known divergences, pinned ------------------------------------------------------------


def _bases(method: str, url: str, components: tuple[str, ...]) -> tuple[str, str]:
    """The first signature-base line for ``components`` from each side."""
    message = _PeerRequest(method, url, _Fields())
    prepared = _peer_signer().prepare(
        message, key_id=KEY_ID, created=_created(), covered_component_ids=components
    )
    signed = Signer(KEY, components=components, nonce=False).sign(method, url, [], now=NOW)
    params = signed["Signature-Input"].partition("=")[2]
    ours = build_signature_base(
        Message(method, url, []), [component_from_spec(c) for c in components], params
    )
    return ours.decode().splitlines()[0], prepared.signature_base.decode().splitlines()[0]


def test_divergence_target_uri_scheme_and_authority_normalisation() -> None:
    """Divergence 1: hmacguard normalises @target-uri's scheme and authority; the peer does not."""
    ours, peer = _bases("GET", "HTTPS://API.Example:443/p?q=1", ("@target-uri",))
    assert ours == '"@target-uri": https://api.example/p?q=1'
    assert peer == '"@target-uri": HTTPS://API.Example:443/p?q=1'
    # Both agree on @authority and @scheme for the same URL.
    assert len(set(_bases("GET", "HTTPS://API.Example:443/p", ("@authority",)))) == 1
    assert len(set(_bases("GET", "HTTPS://API.Example:443/p", ("@scheme",)))) == 1


def test_divergence_options_empty_path_target_uri() -> None:
    """Divergence 2: for OPTIONS with no path, the peer's @target-uri has none; hmacguard's '/'."""
    ours, peer = _bases("OPTIONS", "https://h.example", ("@target-uri",))
    assert (ours, peer) == ('"@target-uri": https://h.example/', '"@target-uri": https://h.example')
    # Every other method, and @path for OPTIONS, agree.
    assert len(set(_bases("GET", "https://h.example", ("@target-uri",)))) == 1
    assert len(set(_bases("OPTIONS", "https://h.example", ("@path",)))) == 1


def test_divergence_default_port_with_leading_zeros() -> None:
    """Divergence 3: the peer drops a default port written as 0443; hmacguard keeps it."""
    ours, peer = _bases("GET", "https://h.example:0443/", ("@authority",))
    assert (ours, peer) == ('"@authority": h.example:0443', '"@authority": h.example')


def test_divergence_peer_refuses_what_hmacguard_signs() -> None:
    """Divergence 4: the peer refuses a lowercase method and a bare-LF fold hmacguard accepts."""
    with pytest.raises(HTTPMessageSignaturesException, match="uppercase"):
        _bases("get", "https://h.example/", ("@method",))
    headers = [("X-Folded", "a\n b")]
    message = _PeerRequest("GET", "https://h.example/", _Fields(headers))
    with pytest.raises(HTTPMessageSignaturesException, match="newline"):
        _peer_signer().prepare(message, key_id=KEY_ID, covered_component_ids=("x-folded",))
    base = build_signature_base(
        Message("GET", "https://h.example/", headers),
        [component_from_spec("x-folded")],
        "()",
    )
    assert base.startswith(b'"x-folded": a b\n')
