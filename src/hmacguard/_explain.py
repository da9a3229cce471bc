"""Where a failing signature is explained: ``hmacguard verify --explain``.

:class:`Explainer` reruns the verifier's own steps on a captured request with
the core's functions and prints each result: the signature base line by line,
where each value came from, and every policy check passed or failed. It never
canonicalises anything itself, and never prints the secret. Every line it
prints goes through :func:`printable`: a control character taken from the
request (an ESC or BEL in a header, the target, the base) is shown as an
escape such as ``\\x1b``, never sent to the operator's terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from ._components import Component, component_from_spec, component_value
from ._content_digest import make_content_digest, parse_content_digest, verify_content_digest
from ._errors import (
    Expired,
    InvalidParameters,
    MalformedSignature,
    NotYetValid,
    VerificationError,
)
from ._keys import HMACKey
from ._message import Message
from ._raw_request import RawRequest, Target
from ._signature_base import build_signature_base
from ._signature_fields import Candidate
from ._verifier import Verifier

__all__ = ["Check", "Explainer", "printable"]

_PARAMS_ID = '"@signature-params"'


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped, e.g. ESC as ``\\x1b``.

    C0 controls (tab, CR and LF included), DEL, C1 controls and the other
    characters :meth:`str.isprintable` refuses are written as ``\\xNN``
    (``\\uNNNN`` beyond Latin-1); any other text, ordinary ASCII included,
    is unchanged.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


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
        """Print one line; request-derived text in it is escaped (:func:`printable`)."""
        self.out.write(printable(text) + "\n")

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
            f"  policy: max_age {verifier.max_age} s, clock_skew {verifier.clock_skew} s, "
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
            f"-{v.clock_skew} s <= age <= {v.max_age} s (clock_skew, max_age)"
        )
        if type(expires) is int:
            text += f"; expires {expires} ({expires - self.now:+.0f} s from now)"
        if isinstance(error, (Expired, NotYetValid)):
            return Check("time", False, text, error.reason)
        if created > self.now + v.clock_skew:
            return Check("time", False, text, "not_yet_valid")
        if age > v.max_age or (type(expires) is int and self.now > expires):
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
            "invalid_signature",  # as the verifier reports it (docs/errors.md)
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
