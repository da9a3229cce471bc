"""The examples run as documented and show what they claim to."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(
    r"^(?P<case>\S.*?)\s+"
    r"(?:(?P<accepted>accepted)\s+key=|REJECTED\s+(?P<status>\d{3}) (?P<reason>[a-z_]+): )"
)


def test_sign_and_verify_example_shows_every_outcome() -> None:
    """examples/sign_and_verify.py accepts the signed request and prints each rejection reason."""
    result = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, str(ROOT / "examples" / "sign_and_verify.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.stderr == ""
    rows = [m for m in map(ROW.match, result.stdout.splitlines()) if m]
    assert rows, result.stdout
    accepted = [row["case"] for row in rows if row["accepted"]]
    assert accepted == ["the request as signed"]
    assert rows[0]["accepted"]
    outcomes = {(row["reason"], row["status"]) for row in rows if not row["accepted"]}
    assert {
        ("digest_mismatch", "401"),
        ("invalid_signature", "401"),
        ("expired", "401"),
        ("missing_signature", "401"),
    } <= outcomes
    for name in ("Content-Digest", "Signature-Input", "Signature"):
        assert re.search(rf"^  {name}: \S", result.stdout, re.MULTILINE), name
