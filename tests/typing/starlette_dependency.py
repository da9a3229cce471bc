"""User code that must pass mypy --strict: what the middleware verified, as a FastAPI
dependency and in a Starlette route, typed."""

from typing import Annotated

from fastapi import Depends, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

import hmacguard.fastapi as fastapi_deps
from hmacguard import VerifiedSignature
from hmacguard.starlette import verified_signature, verified_webhook
from hmacguard.webhooks import VerifiedWebhook

Signed = Annotated[VerifiedSignature, Depends(verified_signature)]
Delivery = Annotated[VerifiedWebhook, Depends(verified_webhook)]
app = FastAPI()


@app.post("/orders")
async def create_order(signature: Signed) -> dict[str, str]:
    key_id: str = signature.key_id
    return {"by": key_id}


@app.post("/hooks/orders")
async def hook(delivery: Delivery) -> dict[str, str | None]:
    return {"id": delivery.delivery_id}


async def starlette_route(request: Request) -> JSONResponse:
    created: int = verified_signature(request).created
    return JSONResponse({"created": created})


# hmacguard.fastapi: the same, as ready annotations whose dependencies are coroutines.
@app.post("/payments")
async def create_payment(signature: fastapi_deps.Signed) -> dict[str, str]:
    key_id: str = signature.key_id
    return {"by": key_id}


@app.post("/hooks/payments")
async def payment_hook(delivery: fastapi_deps.Delivery) -> dict[str, str | None]:
    return {"id": delivery.delivery_id}
