"""Smoke test for bench/server.py: the in-process part runs and prints its table and targets.

Timing is not asserted: ``--quick`` makes two calls per app, far too few for the
figures to mean anything, and ``--in-process-only`` needs neither wrk nor a
server. Real numbers come from a full run (docs/benchmarks.md, "Server").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench_helpers import QuickRun
from bench_helpers import quick_run as run_bench


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """One ``bench/server.py --quick --in-process-only --json`` run: code, stdout, stderr, JSON."""
    out = tmp_path_factory.mktemp("bench-server") / "results.json"
    return run_bench("server.py", out, "--in-process-only")


def test_bench_server_quick_in_process_run_prints_table_and_target(
    quick_run: QuickRun,
) -> None:
    """The quick in-process run exits 0 and prints the in-process table and the µs target."""
    code, stdout, stderr, _ = quick_run
    assert code == 0, stderr
    assert "| in process, 1 KiB POST | µs/call | added by the middleware, µs |" in stdout
    for app in (
        "| Starlette app |",
        "| Starlette app + SignatureMiddleware |",
        "| raw ASGI app |",
        "| raw ASGI app + SignatureMiddleware |",
        "| Starlette app + hand-written verifier |",
        "| raw ASGI app + hand-written verifier |",
        "| Starlette app + floor work |",
        "| raw ASGI app + floor work |",
    ):
        assert app in stdout
    assert "the yardstick (bench/yardstick.py), measured in this run:" in stdout
    assert "the floor work (bench/yardstick.py: body, HMAC, SHA-256, no parsing)" in stdout
    assert "targets:" in stdout
    for app in ("Starlette app", "raw ASGI app"):
        assert f"in process 1 KiB POST ({app}): µs added by SignatureMiddleware" in stdout
    assert "through uvicorn" not in stdout  # --in-process-only starts no server


def test_bench_server_quick_run_writes_json(quick_run: QuickRun) -> None:
    """The JSON output has the eight in-process rows, each wrapped app measured against its own
    bare app, no server runs, and the two in-process targets as booleans."""
    code, _, stderr, out = quick_run
    assert code == 0, stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["quick"] is True
    rows = {row["app"]: row for row in results["in_process"]}
    assert list(rows) == [
        "Starlette app",
        "Starlette app + SignatureMiddleware",
        "raw ASGI app",
        "raw ASGI app + SignatureMiddleware",
        "Starlette app + hand-written verifier",
        "raw ASGI app + hand-written verifier",
        "Starlette app + floor work",
        "raw ASGI app + floor work",
    ]
    assert all(row["us_per_call"] > 0 for row in rows.values())
    for name, row in rows.items():
        if " + " not in name:
            assert row["added_us"] is None
            continue
        base = rows[name.partition(" + ")[0]]
        assert row["added_us"] == pytest.approx(row["us_per_call"] - base["us_per_call"])
    assert results["runs"] == []
    assert len(results["targets"]) == 2
    assert all(isinstance(target["passed"], bool) for target in results["targets"])


def test_budget_lines_show_what_the_throughput_target_leaves_past_the_floor_work() -> None:
    """From each app's server CPU per request: the 80% budget (a quarter of bare), what the
    floor work leaves of it, each verifier's cost past the floor work, and the ratio."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import server  # noqa: PLC0415  (bench/ is not a package)

    cpu = {server.BARE: 64.0, server.SIGNED: 112.0, server.HAND_WRITTEN: 96.0, server.FLOOR: 80.0}
    assert server.budget_lines(cpu) == [
        "server CPU added per request, against the references (lowest run of each):",
        "  for 80% of bare throughput a verifier may add 16.0 µs (bare: 64 µs)",
        "  the floor work adds 16.0 µs, leaving 0.0 µs for parsing and checking",
        f"  {server.HAND_WRITTEN}: +32.0 µs, +16.0 µs past the floor work",
        f"  {server.SIGNED}: +48.0 µs, +32.0 µs past the floor work",
        "  SignatureMiddleware / yardstick, added: 1.50x",
    ]
    del cpu[server.FLOOR]  # a run without a reference: no budget to show
    assert server.budget_lines(cpu) == []
