"""Smoke tests for bench/instructions.py: its valgrind worker runs every in-process app,
and its client is accepted by uvicorn serving the signed app.

The default run checks the programs valgrind would run (no valgrind needed):
the worker signs the requests and calls each app on them without an error, and
the client's pre-signed requests get 200 from a real uvicorn (a replay gets a
failure, not a count). cachegrind's summary is parsed from a sample. The
counting itself runs under valgrind, which takes 20 s to a minute per app, so
it is marked slow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench_helpers import run_script
from uvicorn_server import UvicornServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from core import KIB, json_body
from instructions import Counts, raw_requests, send_one_at_a_time
from server import RequestFactory

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "instructions.py"
APPS = ["raw ASGI app", "raw ASGI app + SignatureMiddleware"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_script("instructions.py", *args, timeout=timeout)


def _instructions(table: str) -> dict[str, int]:
    """The instructions-per-request column of the script's table, by app."""
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| ")]
    return {cells[1].strip(): int(cells[2].strip().replace(",", "")) for cells in rows[2:]}


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
    counts = _instructions(completed.stdout)
    assert set(counts) == set(APPS)
    assert counts["raw ASGI app + SignatureMiddleware"] > counts["raw ASGI app"] > 0


# What cachegrind prints with --cache-sim=yes --branch-sim=yes (abridged).
CACHEGRIND = """\
==7648== I   refs:      1,446,638,802
==7648== I1  misses:       19,981,051
==7648== D1  misses:       16,262,845  ( 14,180,511 rd   +   2,082,334 wr)
==7648== Mispredicts:      25,726,932  ( 14,638,041 cond +  11,088,891 ind)
"""


def test_cachegrind_summary_is_read() -> None:
    """Every event is read from cachegrind's summary, and per-request counts subtract."""
    more = Counts.parse(CACHEGRIND, simulate=True)
    assert more == Counts(1_446_638_802, 19_981_051, 16_262_845, 25_726_932)
    fewer = Counts(1_446_638_802 - 2_000, 19_981_051 - 20, 16_262_845 - 10, 25_726_932 - 4)
    assert more.per_request(fewer, 2) == Counts(1_000, 10, 5, 2)
    assert Counts.parse(CACHEGRIND, simulate=False) == Counts(1_446_638_802)


def test_a_summary_without_the_count_is_an_error() -> None:
    """valgrind output without the events (a crash, say) stops the script, not a zero."""
    with pytest.raises(SystemExit, match="mispredicts"):
        Counts.parse(CACHEGRIND.replace("Mispredicts", "Mispredicted"), simulate=True)


@pytest.fixture(scope="module")
def signed_server() -> Iterator[UvicornServer]:
    with UvicornServer("server:signed_app", http="httptools", app_dir=SCRIPT.parent) as server:
        yield server


def test_the_client_is_answered_200_by_the_signed_app(signed_server: UvicornServer) -> None:
    """The requests the server is counted on are signed well enough to pass the middleware."""
    factory = RequestFactory(signed_server.authority, json_body(KIB))
    send_one_at_a_time(signed_server.port, raw_requests(factory, 5), deadline=0.0)


def test_a_refused_request_stops_the_client(signed_server: UvicornServer) -> None:
    """A replayed request is refused (401), and the client says so instead of counting it."""
    factory = RequestFactory(signed_server.authority, json_body(KIB))
    request = raw_requests(factory, 1)
    with pytest.raises(SystemExit, match="401"):
        send_one_at_a_time(signed_server.port, request * 2, deadline=0.0)


@pytest.mark.slow
def test_instructions_per_request_are_counted_through_uvicorn() -> None:
    """Under valgrind, the signed server spends more instructions per request than the bare one."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    apps = ["bare Starlette", "Starlette + SignatureMiddleware"]
    completed = _run("--requests", "20", "--through-uvicorn", *apps, timeout=900)
    assert completed.returncode == 0, completed.stderr
    counts = _instructions(completed.stdout)
    assert set(counts) == set(apps)
    assert counts["Starlette + SignatureMiddleware"] > counts["bare Starlette"] > 0
