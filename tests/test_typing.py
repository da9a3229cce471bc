"""User code typed against hmacguard passes mypy --strict (the package ships py.typed)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

TYPING = Path(__file__).parent / "typing"


def test_user_code_type_checks_under_mypy_strict() -> None:
    """Starlette's Middleware(SignatureMiddleware, keys=..., max_age=...) is well typed."""
    stdout, stderr, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", str(TYPING)]
    )
    assert status == 0, stdout + stderr
