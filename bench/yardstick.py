"""A yardstick for bench/server.py: the least a verifying middleware can do.

Issue 3 set its in-process target (at most 20 µs added per 1 KiB POST) next to
a reference: "a minimal hand-written verifying middleware" added about 20 µs
on the machine where the target was written, and kept about 74% of bare
throughput through uvicorn. Machines differ, so bench/server.py measures such
a middleware in the same run as ``SignatureMiddleware``: its figures say what
"minimal" costs here and now, which the targets' own figures can be read
against.

``HandWrittenVerifier`` checks the benchmark's request and nothing more: one
regular expression over ``Signature-Input`` (one label, a fixed parameter
order), the signature base from the listed names, ``hmac.digest``, the
``created`` time within 300 s either way, the body's SHA-256 against
``Content-Digest``, and (key id, nonce) pairs in a dict that never forgets.

It is **not** a verifier to deploy: it parses no Structured Fields, checks no
required coverage, no ``expires``, no duplicate or mixed-case headers, no
header or body size, no trailers, no method override, normalises no
authority, bounds no memory, holds no lock, and tells the client nothing
useful. Those are what ``SignatureMiddleware`` adds (docs/security.md).

``FloorWork`` is not a verifier at all: it does the work no verifier can
skip and nothing else, to show what is left of a budget once that work is
paid. It buffers the body and hands it on, computes one HMAC-SHA256 with
keyed states prepared once (as ``HMACKey`` does) over the request's raw
header values (about the size of a signature base), checks the body's
SHA-256 against ``Content-Digest`` and refuses a ``Signature-Input`` it has
seen. It parses nothing, so it has no base to build and no MAC to compare
its own with: the MAC is computed and dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_INPUT = re.compile(
    r'sig1=\(("[^"]+"(?: "[^"]+")*)\);created=(\d+);keyid="([^"]+)";nonce="([^"]+)"'
)


class HandWrittenVerifier:
    """Verify the benchmark's signed request in the fewest steps (see the module docstring)."""

    def __init__(self, app: ASGIApp, keys: Mapping[str, bytes]) -> None:
        self.app = app
        self.keys = dict(keys)
        self.seen: dict[tuple[str, str], float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            inputs = headers[b"signature-input"].decode("ascii")
            match = _INPUT.fullmatch(inputs)
            if match is None:
                raise ValueError
            names, created, key_id, nonce = match.groups()
            if abs(time.time() - int(created)) > 300:
                raise ValueError
            lines = []
            for quoted in names.split(" "):
                name = quoted[1:-1]
                if name == "@method":
                    value = scope["method"]
                elif name == "@authority":
                    value = headers[b"host"].decode("ascii").lower()
                elif name == "@path":
                    value = scope["raw_path"].decode("ascii")
                elif name == "@query":
                    value = "?" + scope["query_string"].decode("ascii")
                else:
                    value = headers[name.encode("ascii")].decode("ascii").strip()
                lines.append(f"{quoted}: {value}")
            lines.append(f'"@signature-params": {inputs[5:]}')
            base = "\n".join(lines).encode("ascii")
            mac = base64.b64decode(headers[b"signature"][6:-1], validate=True)
            secret = self.keys[key_id]
            digest = base64.b64decode(headers[b"content-digest"][9:-1], validate=True)
        except (KeyError, ValueError, UnicodeError):
            await _deny(send)
            return
        if not hmac.compare_digest(hmac.digest(secret, base, "sha256"), mac):
            await _deny(send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
            await _deny(send)
            return
        if (key_id, nonce) in self.seen:
            await _deny(send)
            return
        self.seen[key_id, nonce] = time.time()
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _deny(send: Send) -> None:
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class FloorWork:
    """The work every verifier does, without the parsing (see the module docstring)."""

    def __init__(self, app: ASGIApp, secret: bytes) -> None:
        self.app = app
        # RFC 2104 §2, as HMACKey keeps it: the padded key's two hash states.
        padded = secret.ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
        self.seen: set[bytes] = set()
        self.macs = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        inner = self.inner.copy()
        inner.update(b"\n".join(headers.values()))
        outer = self.outer.copy()
        outer.update(inner.digest())
        if outer.digest():
            self.macs += 1
        try:
            digest = base64.b64decode(headers[b"content-digest"][9:-1], validate=True)
            label = headers[b"signature-input"]
        except (KeyError, ValueError):
            await _deny(send)
            return
        # The body is read and handed on as HandWrittenVerifier does it, written out
        # again rather than shared: a helper would add a call to both references.
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not hmac.compare_digest(hashlib.sha256(body).digest(), digest) or label in self.seen:
            await _deny(send)
            return
        self.seen.add(label)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
