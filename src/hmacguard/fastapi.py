"""What ``SignatureMiddleware`` verified, as FastAPI dependencies.

Needs FastAPI. Annotate a route's parameter with :data:`Signed` (or, on a
``webhooks=`` path, :data:`Delivery`)::

    from hmacguard.fastapi import Signed

    @app.post("/orders")
    async def create_order(signature: Signed) -> dict[str, str]:
        return {"by": signature.key_id}

``Signed`` is ``Annotated[VerifiedSignature, Depends(signature)]`` and
``Delivery`` is ``Annotated[VerifiedWebhook, Depends(webhook)]``. The
dependencies are :mod:`hmacguard.starlette`'s functions as coroutines:
FastAPI runs a plain function dependency in its thread pool, a thread hop on
every request, and awaits a coroutine on the event loop. Like those functions,
they raise :class:`~hmacguard.starlette.NotVerified` where the middleware
verified nothing.
"""

from __future__ import annotations

from typing import Annotated

try:
    from fastapi import Depends
except ImportError as exc:  # pragma: no cover  (tested in a subprocess)
    raise ImportError("hmacguard.fastapi needs FastAPI: pip install fastapi") from exc
from starlette.requests import HTTPConnection

from ._verifier import VerifiedSignature
from .starlette import verified_signature, verified_webhook
from .webhooks._profile import VerifiedWebhook

__all__ = ["Delivery", "Signed", "signature", "webhook"]


async def signature(conn: HTTPConnection) -> VerifiedSignature:
    """:func:`hmacguard.starlette.verified_signature`, awaited on the event loop."""
    return verified_signature(conn)


async def webhook(conn: HTTPConnection) -> VerifiedWebhook:
    """:func:`hmacguard.starlette.verified_webhook`, awaited on the event loop."""
    return verified_webhook(conn)


Signed = Annotated[VerifiedSignature, Depends(signature)]
"""A route parameter that receives the request's :class:`~hmacguard.VerifiedSignature`."""

Delivery = Annotated[VerifiedWebhook, Depends(webhook)]
"""A route parameter that receives the delivery's :class:`~hmacguard.webhooks.VerifiedWebhook`."""
