"""User code that must pass mypy --strict: SignatureMiddleware in a Starlette app."""

from starlette.applications import Starlette
from starlette.middleware import Middleware

from hmacguard import SignatureMiddleware

app = Starlette(middleware=[Middleware(SignatureMiddleware, keys={"c": b"k" * 32}, max_age=120)])
