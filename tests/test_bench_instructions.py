"""Smoke tests for bench/instructions.py: its valgrind worker runs every in-process app.

The default run checks the program valgrind would run (no valgrind needed): it
signs the requests and calls each app on them without an error. The counting
itself runs under valgrind, which takes about 20 s per app, so it is marked slow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "instructions.py"
APPS = ["raw ASGI app", "raw ASGI app + SignatureMiddleware"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  (our own script, run with this interpreter)
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=SCRIPT.parent.parent,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("call", ["0", "1"])
def test_the_worker_signs_and_calls_the_app(app: str, call: str) -> None:
    """The program valgrind runs signs the requests and, with call=1, runs the app on each
    (an app answering anything but 200 would raise)."""
    completed = _run("--worker", app, "5", call)
    assert completed.returncode == 0, completed.stderr


def test_an_unknown_app_is_an_error() -> None:
    """A name that is no in-process case fails rather than counting nothing."""
    completed = _run("--worker", "no such app", "5", "1")
    assert completed.returncode != 0


@pytest.mark.slow
def test_instructions_per_request_are_counted() -> None:
    """Under valgrind, the middleware's request costs more instructions than the bare app's."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    completed = _run("--requests", "50", *APPS, timeout=600)
    assert completed.returncode == 0, completed.stderr
    counts = {
        line.split("|")[1].strip(): int(line.split("|")[2].strip().replace(",", ""))
        for line in completed.stdout.splitlines()
        if line.startswith("| raw")
    }
    assert set(counts) == set(APPS)
    assert counts["raw ASGI app + SignatureMiddleware"] > counts["raw ASGI app"] > 0
