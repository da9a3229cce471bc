"""Smoke test for bench/webhooks.py: it runs, cross-checks every verifier, and prints its table.

Timing is not asserted: ``--quick`` makes two calls per case. Real figures come
from a full run (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench_helpers import quick_run as run_bench


def test_bench_webhooks_quick_run_covers_every_scheme_and_size(tmp_path: Path) -> None:
    """A quick run exits 0 and reports hmacguard, the vendor and raw hashing for each case."""
    returncode, stdout, stderr, out = run_bench("webhooks.py", tmp_path / "results.json")
    assert returncode == 0, stderr
    assert "quick run" in stdout
    assert "targets:" in stdout
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    cases = {(row["scheme"], row["size"]) for row in rows}
    assert cases == {
        (scheme, size)
        for scheme in ("Standard Webhooks", "Stripe", "GitHub", "Slack")
        for size in ("1 KiB", "1 MiB")
    }
    for scheme, size in cases:
        names = {r["implementation"] for r in rows if (r["scheme"], r["size"]) == (scheme, size)}
        assert {"raw hashing", "hmacguard"} < names, (scheme, size, names)
