"""Smoke test for bench/server.py: the in-process part runs and prints its table and targets.

Timing is not asserted: ``--quick`` makes two calls per app, far too few for the
figures to mean anything, and ``--in-process-only`` needs neither wrk nor a
server. Real numbers come from a full run (docs/benchmarks.md, "Server").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "server.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, str, Path]:
    """One ``bench/server.py --quick --in-process-only --json`` run: code, stdout, stderr, JSON."""
    out = tmp_path_factory.mktemp("bench-server") / "results.json"
    completed = subprocess.run(  # noqa: S603  (our own script, run with this interpreter)
        [sys.executable, str(BENCH), "--quick", "--in-process-only", "--json", str(out)],
        capture_output=True,
        cwd=BENCH.parent.parent,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
        check=False,
    )
    return (
        completed.returncode,
        completed.stdout.decode("utf-8"),
        completed.stderr.decode("utf-8", "replace"),
        out,
    )


def test_bench_server_quick_in_process_run_prints_table_and_target(
    quick_run: tuple[int, str, str, Path],
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
    ):
        assert app in stdout
    assert "targets:" in stdout
    assert "in process 1 KiB POST: µs added by SignatureMiddleware" in stdout
    assert "through uvicorn" not in stdout  # --in-process-only starts no server


def test_bench_server_quick_run_writes_json(quick_run: tuple[int, str, str, Path]) -> None:
    """The JSON output has the four in-process rows, no server runs, and one boolean target."""
    code, _, stderr, out = quick_run
    assert code == 0, stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["quick"] is True
    assert [row["app"] for row in results["in_process"]] == [
        "Starlette app",
        "Starlette app + SignatureMiddleware",
        "raw ASGI app",
        "raw ASGI app + SignatureMiddleware",
    ]
    assert all(row["us_per_call"] > 0 for row in results["in_process"])
    assert results["runs"] == []
    assert len(results["targets"]) == 1
    assert isinstance(results["targets"][0]["passed"], bool)
