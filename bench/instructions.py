"""Instructions per request, counted by valgrind: a figure machine load does not move.

Run from the repository root (needs ``valgrind``: ``apt-get install valgrind``)::

    .venv/bin/python bench/instructions.py                  # every in-process app, 1,000 requests
    .venv/bin/python bench/instructions.py --requests 2000 "raw ASGI app + SignatureMiddleware"
    .venv/bin/python bench/instructions.py --through-uvicorn --simulate

On a shared two-vCPU machine a timing moves by ten percent from one run to the
next; an instruction count moves by well under one. For each app of
bench/server.py's in-process cases, this runs the same Python program twice
under ``valgrind --tool=cachegrind``: once signing N requests and calling the
app with each, once signing them only. The difference over N is the app's
instructions per request. Under valgrind, OpenSSL's SHA-256 runs without the
CPU's SHA extensions, so hashing weighs more here than natively (about 35,000
instructions for a 1 KiB body, 21,000 for the HMAC of a signature base).

``--through-uvicorn`` counts what the server process spends instead: uvicorn
(httptools, uvloop) serving bench/server.py's Starlette apps runs under
valgrind, and a client in this process sends it pre-signed 1 KiB POSTs one at
a time over one keep-alive connection, each of which must be answered 200. The
server is run twice, with W and with W + N requests (W warms it up); the
difference over N is the server's instructions per request, uvicorn and
Starlette included.

``--simulate`` turns on cachegrind's cache and branch simulation and adds its
first-level instruction and data cache misses and mispredicted branches per
request: what instructions alone do not show (a request that executes more
distinct code misses more). The simulated machine is valgrind's model, not
this CPU; read the columns as comparisons between rows.

``--worker`` is the program valgrind runs in process (internal).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from core import KIB, json_body  # noqa: E402  (bench/ on the path first)
from server import (  # noqa: E402
    BARE,
    HAND_WRITTEN,
    HOST,
    PATH,
    QUERY,
    SIGNED,
    RequestFactory,
    free_port,
    in_process_cases,
    run_direct,
    uvicorn_command,
)

#: The apps counted through uvicorn, and the ``module:attribute`` uvicorn serves.
SERVED = {
    BARE: "server:bare_app",
    SIGNED: "server:signed_app",
    HAND_WRITTEN: "server:yardstick_app",
}
#: Requests a server gets before the counted ones, so that none of them is its first.
WARM_UP = 100
#: What cachegrind reports, by the label it prints them under.
_EVENTS = {
    "instructions": r"I\s+refs:",
    "i1_misses": r"I1\s+misses:",
    "d1_misses": r"D1\s+misses:",
    "mispredicts": r"Mispredicts:",
}


@dataclass(frozen=True)
class Counts:
    """What one valgrind run counted; the simulated events only with ``--simulate``."""

    instructions: float
    i1_misses: float | None = None
    d1_misses: float | None = None
    mispredicts: float | None = None

    @classmethod
    def parse(cls, output: str, simulate: bool) -> Counts:
        """Read cachegrind's summary from valgrind's output."""
        found: dict[str, float] = {}
        for name, label in _EVENTS.items():
            if name != "instructions" and not simulate:
                continue
            match = re.search(label + r"\s+([\d,]+)", output)
            if match is None:
                raise SystemExit(f"no {name} in valgrind's output:\n{output[-4000:]}")
            found[name] = int(match.group(1).replace(",", ""))
        return cls(**found)

    def per_request(self, baseline: Counts, requests: int) -> Counts:
        """(self - baseline) / requests, event by event."""

        def each(mine: float | None, theirs: float | None) -> float | None:
            return None if mine is None or theirs is None else (mine - theirs) / requests

        return Counts(
            (self.instructions - baseline.instructions) / requests,
            each(self.i1_misses, baseline.i1_misses),
            each(self.d1_misses, baseline.d1_misses),
            each(self.mispredicts, baseline.mispredicts),
        )


def valgrind(simulate: bool) -> list[str]:
    """The valgrind command line, up to the program it runs."""
    simulation = ["--cache-sim=yes", "--branch-sim=yes"] if simulate else ["--cache-sim=no"]
    return [
        shutil.which("valgrind") or "valgrind",
        "--tool=cachegrind",
        *simulation,
        "--cachegrind-out-file=/dev/null",
    ]


# A fixed hash seed: str hashes (and so dict layouts) are the same in every run.
_ENV = {**os.environ, "PYTHONHASHSEED": "0"}


# -- in process --------------------------------------------------------------------


def worker(app: str, requests: int, call: bool) -> None:
    """Sign ``requests`` requests for ``app``; with ``call``, run the app on each."""
    case = next(case for case in in_process_cases() if case.name == app)
    case.refill(requests)
    gc.disable()
    if call:
        for scope in case.pool:
            run_direct(case.app, scope, case.receive, case.send)


def count(app: str, requests: int, call: bool, simulate: bool = False) -> Counts:
    """What the worker program executes, as cachegrind counts it."""
    command = [
        *valgrind(simulate),
        sys.executable, str(HERE), "--worker", app, str(requests), str(int(call)),
    ]  # fmt: skip
    completed = subprocess.run(  # noqa: S603  (valgrind, this interpreter, this script)
        command, capture_output=True, text=True, check=True, env=_ENV
    )
    return Counts.parse(completed.stderr, simulate)


def in_process(app: str, requests: int, simulate: bool) -> Counts:
    """The app's counts per request, in process: calling it, less signing only."""
    with ThreadPoolExecutor(2) as pool:
        called = pool.submit(count, app, requests, True, simulate)
        signed_only = pool.submit(count, app, requests, False, simulate)
        return called.result().per_request(signed_only.result(), requests)


# -- through uvicorn ---------------------------------------------------------------


def raw_requests(factory: RequestFactory, number: int) -> list[bytes]:
    """``number`` freshly signed 1 KiB POSTs, as the bytes a client sends."""
    requests = []
    for _ in range(number):
        fields = [*factory.headers, *factory.sign().items()]
        head = [f"POST {PATH}?{QUERY} HTTP/1.1", *(f"{name}: {value}" for name, value in fields)]
        requests.append(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + factory.body)
    return requests


def send_one_at_a_time(port: int, requests: list[bytes], deadline: float) -> None:
    """Send each request on one keep-alive connection and read its answer, which must be 200."""
    while True:
        try:
            sock = socket.create_connection((HOST, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the server on port {port} did not start") from None
            time.sleep(0.2)
    with sock:
        sock.settimeout(120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        for request in requests:
            sock.sendall(request)
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            answer = reader.read(length)
            if not status.startswith(b"HTTP/1.1 200 "):
                raise SystemExit(f"the server answered {status!r}: {answer[:300]!r}")


def count_served(target: str, requests: int, simulate: bool) -> Counts:
    """What uvicorn serving ``target`` executes for ``requests`` requests, start-up included."""
    port = free_port()
    command = [*valgrind(simulate), *uvicorn_command(target, port)]
    signed = raw_requests(RequestFactory(f"{HOST}:{port}", json_body(KIB)), requests)
    with tempfile.TemporaryFile("w+") as output:
        server = subprocess.Popen(  # noqa: S603  (valgrind, this interpreter, uvicorn)
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_ENV
        )
        try:
            send_one_at_a_time(port, signed, time.monotonic() + 300)
        finally:
            server.send_signal(signal.SIGINT)  # uvicorn shuts down; valgrind then reports
            try:
                server.wait(120)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        output.seek(0)
        return Counts.parse(output.read(), simulate)


def through_uvicorn(app: str, requests: int, simulate: bool) -> Counts:
    """The server's counts per request: W + N requests, less W."""
    target = SERVED[app]
    with ThreadPoolExecutor(2) as pool:
        more = pool.submit(count_served, target, WARM_UP + requests, simulate)
        fewer = pool.submit(count_served, target, WARM_UP, simulate)
        return more.result().per_request(fewer.result(), requests)


# -- the table ---------------------------------------------------------------------


def row(app: str, counts: Counts, baseline: Counts | None, simulate: bool) -> str:
    """One line of the table: the counts, and what they add to ``baseline`` (if any)."""

    def cell(mine: float | None, theirs: float | None, added_only: bool = False) -> str:
        if mine is None:
            return ""
        added = "" if theirs is None else f"{mine - theirs:+,.0f}"
        if added_only:
            return added
        return f"{mine:,.0f}" + (f" ({added})" if added else "")

    def pair(event: str) -> tuple[float | None, float | None]:
        return getattr(counts, event), None if baseline is None else getattr(baseline, event)

    cells = [app, cell(counts.instructions, None), cell(*pair("instructions"), added_only=True)]
    if simulate:
        cells += [cell(*pair(event)) for event in ("i1_misses", "d1_misses", "mispredicts")]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("apps", nargs="*", help="app names (default: all of the mode's apps)")
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per app")
    parser.add_argument(
        "--through-uvicorn", action="store_true", help="count the uvicorn server, not the app"
    )
    parser.add_argument(
        "--simulate", action="store_true", help="add cache misses and mispredicted branches"
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        app, requests, call = args.worker
        worker(app, int(requests), call == "1")
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    names = list(SERVED) if args.through_uvicorn else [case.name for case in in_process_cases()]
    unknown = [app for app in args.apps if app not in names]
    if unknown:
        parser.error(f"unknown app {unknown[0]!r}; choose from: {', '.join(names)}")
    measure = through_uvicorn if args.through_uvicorn else in_process
    print(f"$ {' '.join([Path(sys.executable).name, 'bench/instructions.py', *sys.argv[1:]])}")
    where = "through uvicorn" if args.through_uvicorn else "in process"
    header = ["app", f"instructions per request, {where}", "added"]
    if args.simulate:
        header += ["I1 misses", "D1 misses", "mispredicted branches"]
    print("| " + " | ".join(header) + " |")
    print("| --- |" + " ---: |" * (len(header) - 1))
    # Each wrapped app is compared with the bare app it wraps, as bench/server.py does.
    bare: dict[str, Counts] = {}
    for app in args.apps or names:
        counts = measure(app, args.requests, args.simulate)
        if " + " not in app:
            bare[app] = counts
        baseline = bare.get(BARE if args.through_uvicorn else app.split(" + ")[0])
        print(row(app, counts, None if baseline is counts else baseline, args.simulate), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
