"""Running a benchmark script the way a user does, for the benchmarks' smoke tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"

#: What one run gives: exit code, stdout, stderr (decoded), and the --json file.
QuickRun = tuple[int, str, str, Path]


def quick_run(script: str, out: Path, *args: str) -> QuickRun:
    """``bench/<script> --quick --json <out> <args>`` with this interpreter, from the root."""
    completed = subprocess.run(  # noqa: S603  (our own script, run with this interpreter)
        [sys.executable, str(BENCH_DIR / script), "--quick", *args, "--json", str(out)],
        capture_output=True,
        cwd=BENCH_DIR.parent,
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


def run_script(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``bench/<script> <args>`` with this interpreter, from the root, as text."""
    return subprocess.run(  # noqa: S603  (our own script, run with this interpreter)
        [sys.executable, str(BENCH_DIR / script), *args],
        capture_output=True,
        text=True,
        cwd=BENCH_DIR.parent,
        timeout=timeout,
        check=False,
    )
