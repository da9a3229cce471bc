"""User code that must pass mypy --strict: the client auths with Signer options."""

import httpx

import hmacguard.requests
from hmacguard import HMACAuth

auth = HMACAuth("client-1", b"k" * 32, components=["@method", "@path"], expires_in=60)
client = httpx.Client(auth=auth)
legacy = hmacguard.requests.HMACAuth("client-1", b"k" * 32, label="sig2", nonce=False)
