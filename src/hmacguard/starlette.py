"""What ``SignatureMiddleware`` verified, typed, for Starlette and FastAPI routes.

Needs Starlette (FastAPI installs it). Each function takes the route's request
(or WebSocket) and returns what the middleware verified for it (also in
``request.state``), typed for the type checker::

    async def create_order(request: Request) -> JSONResponse:
        return JSONResponse({"by": verified_signature(request).key_id})

In FastAPI, :mod:`hmacguard.fastapi` has them as ready annotations
(``signature: Signed``), run on the event loop rather than in FastAPI's thread
pool.

A request the middleware did not verify (its path is exempt, or the middleware
is not installed in front of this app) has nothing to return: that is a
mistake in the application's setup, not in the request, and it raises
:class:`NotVerified` (a ``RuntimeError``; the server answers 500) rather than
let the route run as if the request had been verified.
"""

from __future__ import annotations

from typing import TypeVar

try:
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover  (tested in a subprocess)
    raise ImportError("hmacguard.starlette needs Starlette: pip install starlette") from exc

from ._middleware import SCOPE_SIGNATURE, SCOPE_WEBHOOK
from ._verifier import VerifiedSignature
from .webhooks._profile import VerifiedWebhook

__all__ = ["NotVerified", "verified_signature", "verified_webhook"]

_T = TypeVar("_T")


class NotVerified(RuntimeError):
    """The route asked for what the middleware verified, and it verified nothing:
    the path is exempt, is not a webhook path, or no ``SignatureMiddleware`` runs
    in front of the app."""


def verified_signature(conn: HTTPConnection) -> VerifiedSignature:
    """The request's :class:`VerifiedSignature` (``request.state.signature``).

    Raises:
        NotVerified: ``SignatureMiddleware`` did not verify this request by
            RFC 9421 (an exempt path, a webhook path, or no middleware).
    """
    return _verified(
        conn,
        SCOPE_SIGNATURE,
        VerifiedSignature,
        "is SignatureMiddleware in front of this app, and is the path neither exempt "
        "nor a webhook path?",
    )


def verified_webhook(conn: HTTPConnection) -> VerifiedWebhook:
    """The delivery's :class:`~hmacguard.webhooks.VerifiedWebhook`
    (``request.state.webhook``).

    Raises:
        NotVerified: the path is not one of the middleware's ``webhooks=``
            paths, or no ``SignatureMiddleware`` runs in front of the app.
    """
    return _verified(
        conn, SCOPE_WEBHOOK, VerifiedWebhook, "is it one of SignatureMiddleware's webhooks= paths?"
    )


def _verified(conn: HTTPConnection, key: str, kind: type[_T], hint: str) -> _T:
    """What the middleware put in the request's scope under ``key``, if a ``kind``.

    Read from the scope, not from ``request.state``: the scope is this
    request's alone, where a server may share the state between requests
    (hypercorn did, one per connection, until pgjones/hypercorn#274 was fixed).
    """
    found = conn.scope.get(key)
    if not isinstance(found, kind):
        name = kind.__name__
        raise NotVerified(f"no {name} for {conn.url.path!r}: {hint}")
    return found
