"""User code typed against hmacguard passes mypy --strict (the package ships py.typed)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

TYPING = Path(__file__).parent / "typing"


def test_user_code_type_checks_under_mypy_strict() -> None:
    """Starlette's Middleware(SignatureMiddleware, keys=..., max_age=...) and the client
    auths with Signer options are well typed."""
    stdout, stderr, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", str(TYPING)]
    )
    assert status == 0, stdout + stderr


def test_a_misspelt_signer_option_is_a_type_error(tmp_path: Path) -> None:
    """HMACAuth's Signer options are typed: a misspelt one (``component=``) or a
    wrong type (``expires_in="60"``) fails mypy, not only at run time."""
    user_code = tmp_path / "typo.py"
    user_code.write_text(
        "from hmacguard import HMACAuth\n"
        'a = HMACAuth("client-1", b"k" * 32, component=["@method"])\n'
        'b = HMACAuth("client-1", b"k" * 32, expires_in="60")\n',
        encoding="utf-8",
    )
    stdout, stderr, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", str(user_code)]
    )
    assert status == 1, stdout + stderr
    assert 'Unexpected keyword argument "component"' in stdout, stdout
    assert 'Argument "expires_in"' in stdout, stdout
