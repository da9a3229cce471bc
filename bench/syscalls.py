"""System calls per request through uvicorn, counted by strace: what valgrind cannot see.

Run from the repository root (needs ``strace``: ``apt-get install strace``)::

    .venv/bin/python bench/syscalls.py
    .venv/bin/python bench/syscalls.py --requests 5000 "Starlette + SignatureMiddleware"
    .venv/bin/python bench/syscalls.py --redis-url redis://127.0.0.1:6379/0

bench/instructions.py counts what a server executes in user space; the time
spent in the kernel on its behalf is not in that count. This script serves
each of bench/server.py's Starlette apps with uvicorn (httptools, uvloop)
under ``strace -f -c``, sends it pre-signed 1 KiB POSTs one at a time over one
keep-alive connection (as ``instructions.py --through-uvicorn`` does, each
answered 200), and runs it twice, with W and with W + N requests. The
difference over N is each system call's count per request; start-up and
shutdown cancel out. With ``--redis-url``, the app behind ``RedisNonceStore``
(on that Redis) is counted too.

A middleware that only computes should add no system call: every one it adds
is a trip into the kernel per request, which no in-process benchmark and no
instruction count shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from core import KIB, json_body  # noqa: E402  (bench/ on the path first)
from instructions import SERVED, WARM_UP, raw_requests, send_one_at_a_time  # noqa: E402
from server import (  # noqa: E402
    BARE,
    HOST,
    SIGNED_REDIS,
    RequestFactory,
    free_port,
    uvicorn_command,
)

#: Per-request counts below this are start-up or timer noise, not the request's.
SHOWN = 0.05


def parse_summary(text: str) -> dict[str, int]:
    """The calls of each system call in a ``strace -c`` summary.

    >>> parse_summary('''% time     seconds  usecs/call     calls    errors syscall
    ... ------ ----------- ----------- --------- --------- ----------------
    ...  52.10    0.001234           1      1200           write
    ...  10.00    0.000100           0       400        12 read
    ... ------ ----------- ----------- --------- --------- ----------------
    ... 100.00    0.001334           0      1600        12 total''')
    {'write': 1200, 'read': 400}
    """
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0][0].isdigit() or fields[-1] == "total":
            continue
        calls[fields[-1]] = int(fields[3])
    if not calls:
        raise ValueError(f"no strace summary in: {text[:300]!r}")
    return calls


def count_served(target: str, requests: int) -> dict[str, int]:
    """The system calls of uvicorn serving ``target`` for ``requests`` requests."""
    port = free_port()
    signed = raw_requests(RequestFactory(f"{HOST}:{port}", json_body(KIB)), requests)
    with tempfile.TemporaryDirectory() as scratch:
        summary = Path(scratch) / "strace.txt"
        command = ["strace", "-f", "-c", "-o", str(summary), *uvicorn_command(target, port)]
        tracer = subprocess.Popen(  # noqa: S603  (strace, this interpreter, uvicorn)
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        try:
            send_one_at_a_time(port, signed, time.monotonic() + 120)
        finally:
            _stop(tracer)
        return parse_summary(summary.read_text())


def _stop(tracer: subprocess.Popen[bytes]) -> None:
    """Stop uvicorn (strace's child) with SIGINT, as a terminal would; strace then
    writes its summary and exits."""
    children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children")
    for child in children.read_text().split():
        os.kill(int(child), signal.SIGINT)
    try:
        tracer.wait(60)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()


#: The apps, and the ``module:attribute`` uvicorn serves (the Redis one needs a URL).
APPS = {**SERVED, SIGNED_REDIS: "server:signed_redis_app"}


def per_request(app: str, requests: int) -> dict[str, float]:
    """Each system call's count per request for ``app``: W + N requests, less W."""
    target = APPS[app]
    with ThreadPoolExecutor(2) as pool:
        more = pool.submit(count_served, target, WARM_UP + requests)
        fewer = pool.submit(count_served, target, WARM_UP)
        more_calls, fewer_calls = more.result(), fewer.result()
    return {
        name: (more_calls.get(name, 0) - fewer_calls.get(name, 0)) / requests
        for name in sorted(more_calls.keys() | fewer_calls.keys())
    }


def shown(calls: dict[str, float]) -> dict[str, float]:
    """The calls made per request, without the noise below :data:`SHOWN`."""
    return {name: count for name, count in calls.items() if abs(count) >= SHOWN}


def row(app: str, calls: dict[str, float], bare: dict[str, float] | None) -> str:
    """One line of the table: the total per request, what it adds to the bare app, by call."""
    mine = shown(calls)
    total = sum(mine.values())
    added = "" if bare is None else f"{total - sum(shown(bare).values()):+.2f}"
    names = ", ".join(
        f"{name} {count:.2f}" for name, count in sorted(mine.items(), key=lambda kv: -kv[1])
    )
    return f"| {app} | {total:.2f} | {added} | {names} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("apps", nargs="*", help="app names (default: all)")
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per app")
    parser.add_argument("--redis-url", help="also count the RedisNonceStore app, on this Redis")
    args = parser.parse_args(argv)
    if shutil.which("strace") is None:
        parser.error("strace is not installed (apt-get install strace)")
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    names = [*SERVED, SIGNED_REDIS] if args.redis_url else list(SERVED)
    unknown = [app for app in args.apps if app not in names]
    if unknown:
        parser.error(f"unknown app {unknown[0]!r}; choose from: {', '.join(names)}")
    if args.redis_url:
        os.environ["HMACGUARD_REDIS_URL"] = args.redis_url  # read by server:signed_redis_app
    print(f"$ {' '.join([Path(sys.executable).name, 'bench/syscalls.py', *sys.argv[1:]])}")
    print("| app | system calls per request | added | by call |")
    print("| --- | ---: | ---: | --- |")
    bare: dict[str, float] | None = None
    for app in args.apps or names:
        calls = per_request(app, args.requests)
        if app == BARE:
            bare = calls
        print(row(app, calls, None if app == BARE else bare), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
