"""Tests for bench/syscalls.py: strace's summary is read, the table is formed, and
through a real uvicorn the middleware adds no system call per request.

The last test is a behaviour check, not a timing: with hmacguard's own memory
store, verifying a request only computes, so the signed server makes the same
system calls per request as the bare one. (On Python 3.11 each lookup of the
running event loop is a ``getpid()`` call; the body read used to make one per
request.) It needs ``strace``, which ``.ci/run`` installs when it is missing, so
in CI it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench_helpers import run_script

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from syscalls import parse_summary, row

BARE = "bare Starlette"
SIGNED = "Starlette + SignatureMiddleware"

SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 41.20    0.004120           3      1204           write
 30.00    0.003000           2      1100        98 epoll_pwait
 20.00    0.002000           1       602           read
  8.80    0.000880           0         7         1 openat
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000           3      2913        99 total
"""


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_script("syscalls.py", *args, timeout=timeout)


def test_a_strace_summary_is_read_by_call() -> None:
    """Each call's count is read from the calls column, errors column or not; the total
    line and the headers are not calls."""
    assert parse_summary(SUMMARY) == {"write": 1204, "epoll_pwait": 1100, "read": 602, "openat": 7}


def test_a_summary_without_calls_is_an_error() -> None:
    """strace failing to trace leaves no table: that is an error, not zero calls."""
    with pytest.raises(ValueError, match="no strace summary"):
        parse_summary("strace: ptrace(PTRACE_TRACEME, ...): Operation not permitted\n")


def test_a_row_adds_up_the_calls_and_compares_with_the_bare_app() -> None:
    """Calls below the noise floor are left out of the total and the names; the added
    column is the difference from the bare app's total."""
    bare = {"write": 2.0, "read": 1.0, "epoll_pwait": 1.0, "openat": 0.01}
    signed = {"write": 2.0, "read": 1.0, "epoll_pwait": 1.0, "getpid": 1.0, "openat": 0.02}
    assert row(SIGNED, signed, bare) == (
        f"| {SIGNED} | 5.00 | +1.00 | write 2.00, read 1.00, epoll_pwait 1.00, getpid 1.00 |"
    )
    assert (
        row(BARE, bare, None) == f"| {BARE} | 4.00 |  | write 2.00, read 1.00, epoll_pwait 1.00 |"
    )


def test_an_unknown_app_is_an_error() -> None:
    """A name that is no served app is a usage error (2), not an empty table."""
    completed = _run("no such app")
    assert completed.returncode == 2
    assert "unknown app" in completed.stderr


def _by_call(cell: str) -> dict[str, float]:
    """The table's "by call" cell as counts by name, without the event loop's waits:
    how often it waits for the socket depends on timing, not on the app."""
    pairs = (entry.strip().rsplit(" ", 1) for entry in cell.split(",") if entry.strip())
    return {name.strip(): float(count) for name, count in pairs if "epoll" not in name}


def test_the_middleware_adds_no_system_call_per_request() -> None:
    """Through uvicorn, the signed server makes the same system calls per request as the
    bare one: verifying (memory store) computes and never enters the kernel."""
    if shutil.which("strace") is None:
        if os.environ.get("CI"):
            pytest.fail("strace is missing: .ci/run installs it")
        pytest.skip("strace is not installed (apt-get install strace)")
    completed = _run("--requests", "400", BARE, SIGNED)
    assert completed.returncode == 0, completed.stderr
    rows = {
        cells[1].strip(): _by_call(cells[4])
        for cells in (line.split("|") for line in completed.stdout.splitlines())
        if len(cells) == 6 and cells[1].strip() in (BARE, SIGNED)
    }
    assert set(rows) == {BARE, SIGNED}, completed.stdout
    bare, signed = rows[BARE], rows[SIGNED]
    assert bare["read"] >= 1, completed.stdout
    assert bare["write"] >= 1, completed.stdout
    assert signed.keys() == bare.keys(), completed.stdout
    assert all(abs(signed[name] - bare[name]) < 0.05 for name in bare), completed.stdout
