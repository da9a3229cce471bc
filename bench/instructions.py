"""Instructions per request, counted by valgrind: a figure machine load does not move.

Run from the repository root (needs ``valgrind``: ``apt-get install valgrind``)::

    .venv/bin/python bench/instructions.py                  # every app, 1,000 requests each
    .venv/bin/python bench/instructions.py --requests 2000 "raw ASGI app + SignatureMiddleware"

On a shared two-vCPU machine a timing moves by ten percent from one run to the
next; an instruction count moves by well under one. For each app of
bench/server.py's in-process cases, this runs the same Python program twice
under ``valgrind --tool=cachegrind`` (cache simulation off): once signing N
requests and calling the app with each, once signing them only. The
difference over N is the app's instructions per request. Under valgrind,
OpenSSL's SHA-256 runs without the CPU's SHA extensions, so hashing weighs
more here than natively (about 35,000 instructions for a 1 KiB body, 21,000
for the HMAC of a signature base).

``--worker`` is the program valgrind runs (internal).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()


def worker(app: str, requests: int, call: bool) -> None:
    """Sign ``requests`` requests for ``app``; with ``call``, run the app on each."""
    sys.path.insert(0, str(HERE.parent))
    from server import in_process_cases, run_direct  # noqa: PLC0415  (bench/ on the path)

    case = next(case for case in in_process_cases() if case.name == app)
    case.refill(requests)
    gc.disable()
    if call:
        for scope in case.pool:
            run_direct(case.app, scope, case.receive, case.send)


def count(app: str, requests: int, call: bool) -> int:
    """Instructions the worker program executes, as cachegrind counts them."""
    valgrind = shutil.which("valgrind") or "valgrind"
    command = [
        valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        sys.executable, str(HERE), "--worker", app, str(requests), str(int(call)),
    ]  # fmt: skip
    # A fixed hash seed: str hashes (and so dict layouts) are the same in every run.
    completed = subprocess.run(  # noqa: S603  (valgrind, this interpreter, this script)
        command,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    match = re.search(r"I\s+refs:\s+([\d,]+)", completed.stderr)
    if match is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{completed.stderr}")
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("apps", nargs="*", help="in-process case names (default: all)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per app")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        app, requests, call = args.worker
        worker(app, int(requests), call == "1")
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    sys.path.insert(0, str(HERE.parent))
    from server import in_process_cases  # noqa: PLC0415  (bench/ on the path)

    apps = args.apps or [case.name for case in in_process_cases()]
    print(f"$ {' '.join([Path(sys.executable).name, 'bench/instructions.py', *sys.argv[1:]])}")
    print("| app | instructions per request |")
    print("| --- | ---: |")
    for app in apps:
        per_request = (count(app, args.requests, True) - count(app, args.requests, False)) / (
            args.requests
        )
        print(f"| {app} | {per_request:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
