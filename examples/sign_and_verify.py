"""Sign a request with hmacguard's core, verify it, and watch tampering fail.

Run: python examples/sign_and_verify.py
"""

from __future__ import annotations

import secrets
import time

from hmacguard import HMACKey, Signer, VerificationError, Verifier

URL = "https://api.example/v1/payments?to=bob"


def main() -> None:
    """Sign one POST and verify it, then six requests that must be rejected: three
    altered copies (body, query, method), one signed an hour ago, one signed with
    another key and one with no signature."""
    secret = secrets.token_bytes(32)
    signer = Signer(HMACKey("client-1", secret))
    verifier = Verifier({"client-1": secret})

    body = b'{"amount": 10, "currency": "EUR"}'
    headers = {"host": "api.example", "content-type": "application/json"}
    headers |= signer.sign("POST", URL, headers, body)
    print("Signed headers:")
    for name in ("Content-Digest", "Signature-Input", "Signature"):
        print(f"  {name}: {headers[name]}")
    print()

    other = Signer(HMACKey("client-1", secrets.token_bytes(32)))
    cases = [
        ("the request as signed", "POST", URL, headers, body),
        ("body changed", "POST", URL, headers, body.replace(b"10", b"99")),
        ("query changed", "POST", URL.replace("bob", "eve"), headers, body),
        ("method changed", "PUT", URL, headers, body),
        ("signed an hour ago", "POST", URL, _signed(signer, body, time.time() - 3600), body),
        ("signed with another key", "POST", URL, _signed(other, body, None), body),
        ("no signature", "POST", URL, {"content-type": "application/json"}, body),
    ]
    width = max(len(case[0]) for case in cases)
    for label, method, url, hdrs, data in cases:
        try:
            verified = verifier.verify(method, url, hdrs, data)
        except VerificationError as exc:
            print(f"{label:<{width}}  REJECTED  {exc.status} {exc.reason}: {exc.detail}")
        else:
            print(f"{label:<{width}}  accepted  key={verified.key_id} covers {verified.components}")


def _signed(signer: Signer, body: bytes, now: float | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    return headers | signer.sign("POST", URL, headers, body, now=now)


if __name__ == "__main__":
    main()
