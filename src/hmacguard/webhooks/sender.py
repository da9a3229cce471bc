"""StandardWebhooksAuth: an ``httpx.Auth`` that signs outgoing Standard Webhooks.

The flow does no I/O: httpx reads the body first (``requires_request_body``),
then the three headers are set over exactly the bytes httpx sends. One
generator serves ``Client`` and ``AsyncClient``.
"""

from __future__ import annotations

import base64
import secrets as _random
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING

try:
    from .._httpx_base import AuthBase
except ImportError as exc:  # pragma: no cover  (tested in a subprocess)
    raise ImportError(
        'StandardWebhooksAuth needs httpx (or httpx2): pip install "hmacguard[httpx]"'
    ) from exc

from .._keys import MAX_ID_BYTES
from ._profile import Mac, default_clock, secret_list
from .standard import decode_whsec

if TYPE_CHECKING:
    import httpx

__all__ = ["StandardWebhooksAuth"]


def _new_id() -> str:
    return "msg_" + _random.token_urlsafe(18)


class StandardWebhooksAuth(AuthBase):
    """Sign each request an httpx (or httpx2) client sends as a Standard Webhook.

    Sets ``webhook-id``, ``webhook-timestamp`` (now, in seconds) and
    ``webhook-signature`` (``v1,<base64>`` over ``{id}.{timestamp}.{body}``).

    Args:
        secret_or_secrets: the endpoint secret (``"whsec_..."`` or raw bytes
            of 24-64 bytes); several during a rotation, and each one adds a
            ``v1`` entry so the receiver accepts either.
        clock: the wall clock for ``webhook-timestamp``.
        id_factory: makes a fresh ``webhook-id`` (default ``msg_`` + 24
            random URL-safe characters).

    A ``webhook-id`` header already on the request is kept: set it yourself
    to send a retry of the same message under the same id, so the receiver
    deduplicates it. Example::

        auth = StandardWebhooksAuth("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        with httpx.Client(auth=auth) as client:
            client.post(url, json=event, headers={"webhook-id": "msg_42"})

    Raises:
        ValueError: a bad secret, or (when sending) a ``webhook-id`` that is
            empty, longer than 256 characters, not printable ASCII or holds ``.``.
    """

    requires_request_body = True

    def __init__(
        self,
        secret_or_secrets: str | bytes | Sequence[str | bytes],
        *,
        clock: Callable[[], float] = default_clock,
        id_factory: Callable[[], str] = _new_id,
    ) -> None:
        self._macs = tuple(
            Mac(decode_whsec(secret)) for secret in secret_list(secret_or_secrets, "secret")
        )
        self._clock = clock
        self._id_factory = id_factory

    def __repr__(self) -> str:
        return f"StandardWebhooksAuth(secrets=<{len(self._macs)} hidden>)"

    def sign(self, request: httpx.Request) -> dict[str, str]:
        """Set the three headers on ``request`` (its body must have been read); return them."""
        msg_id = request.headers.get("webhook-id") or self._id_factory()
        if (
            not msg_id
            or len(msg_id) > MAX_ID_BYTES
            or not msg_id.isascii()
            or not msg_id.isprintable()
            or "." in msg_id
            or msg_id != msg_id.strip(" \t")
        ):
            # Spaces at either end never reach the receiver (RFC 9110 §5.5
            # trims field values), so the id it verifies would not be this one.
            raise ValueError(
                "webhook-id must be 1-256 printable ASCII characters, without '.' "
                "and without spaces at either end"
            )
        timestamp = str(int(self._clock()))
        prefix = f"{msg_id}.{timestamp}.".encode("ascii")
        body = request.content
        signature = " ".join(
            "v1," + base64.b64encode(mac.digest(prefix, body)).decode("ascii") for mac in self._macs
        )
        fields = {
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
        }
        for name, value in fields.items():
            request.headers[name] = value
        return fields

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign the request and send it."""
        self.sign(request)
        yield request
