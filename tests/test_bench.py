"""Smoke test for bench/core.py: it runs, cross-checks the signers, and prints its tables.

Timing is not asserted here: ``--quick`` makes two calls per case, far too few for
the figures to mean anything. Real numbers come from a full run (docs/benchmarks.md).
"""

from __future__ import annotations

import json

import pytest

from bench_helpers import QuickRun
from bench_helpers import quick_run as run_bench


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """One ``bench/core.py --quick --json`` run: (exit code, stdout, stderr, JSON path)."""
    return run_bench("core.py", tmp_path_factory.mktemp("bench") / "results.json")


def test_bench_core_quick_run_prints_tables_and_targets(
    quick_run: QuickRun,
) -> None:
    """A --quick run exits 0 and prints the timing table, the throughput table and the targets."""
    returncode, stdout, stderr, _ = quick_run
    assert returncode == 0, stderr
    assert "| case | implementation | µs/op | ÷ hmacguard | note |" in stdout
    assert "| digest throughput | implementation | MB/s | % of raw sha256 |" in stdout
    assert "targets:" in stdout
    for case in ("sign 1 KiB POST", "verify 1 KiB POST", "verify 1 MiB POST"):
        assert f"| {case} | http-message-signatures |" in stdout
        assert f"| {case} | floor (hand-written) |" in stdout
    assert "| parse Signature-Input | http_sf.parse |" in stdout


def test_bench_core_json_output_lists_every_case_and_target(
    quick_run: QuickRun,
) -> None:
    """--json writes the machine, one row per measured case and the four targets."""
    returncode, _, stderr, out = quick_run
    assert returncode == 0, stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["quick"] is True
    assert {"platform", "python", "cpu_count"} <= results["machine"].keys()
    cases = {row["case"] for row in results["rows"]}
    assert cases == {
        "sign 1 KiB POST",
        "verify 1 KiB POST",
        "sign 1 MiB POST",
        "verify 1 MiB POST",
        "parse Signature-Input",
        "digest 16 MiB",
    }
    assert all(row["us_per_op"] > 0 for row in results["rows"])
    assert len(results["targets"]) == 4
    assert all(isinstance(target["passed"], bool) for target in results["targets"])
