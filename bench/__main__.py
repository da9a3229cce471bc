"""Run every benchmark, keep the results as JSON, and render them into docs/benchmarks.md.

From the repository root::

    bench/run                            # core, webhooks and server (with Redis): about 8 minutes
    bench/run --skip server              # the others; the page's server sections stay as they are
    bench/run --no-render                # write bench/results/latest.json, leave the page alone
    bench/run --from bench/results/latest.json   # render again from a saved run
    bench/run --quick --docs /tmp/page.md        # a smoke run (its figures mean nothing)
    python -m bench ...                  # the same

Each script (``bench/core.py``, ``bench/webhooks.py``, ``bench/server.py``)
runs in turn with this interpreter and ``--json``; the server run includes the
``RedisNonceStore`` run when ``redis-server`` is installed, and is in process
only when ``wrk`` is not. One JSON document collects the machine, the commit,
the UTC time span and, for each script, its command and its JSON
(``bench/results/latest.json``).

Rendering changes only the regions of the page between marker comments, such
as ``<!-- bench:core:start -->`` and ``<!-- bench:core:end -->`` (see
``REGIONS``); the prose around them stays byte for byte. The tables and
target lists are the scripts' own printed format, made from their JSON, so a
rendered page reads like a pasted run. The chart (``img/benchmarks.svg``
beside the page) is drawn with matplotlib, with a fixed ``svg.hashsalt`` and
no date, so the same JSON always gives the same bytes.

Exit codes: 0 done; 1 a benchmark failed (nothing rendered); 2 a usage error,
a page without its markers, or matplotlib missing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_DOCS = ROOT / "docs" / "benchmarks.md"
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"
QUICK_JSON = ROOT / "bench" / "results" / "quick.json"
CHART = Path("img") / "benchmarks.svg"  # relative to the page
SCHEMA = 1

# In the order they run: core and webhooks are short, the server run is the longest.
BENCHMARKS = ("core", "webhooks", "server")
SKIPPABLE = (*BENCHMARKS, "redis")

# Every region the page must have: "run" (the command, date, commit and chart),
# then per benchmark its machine block, its command and tables, and its targets.
REGIONS = (
    "run",
    *(f"{name}{part}" for name in BENCHMARKS for part in ("-machine", "", "-targets")),
)
MARKER = re.compile(r"<!-- bench:([a-z][a-z-]*):(start|end) -->")

# The chart's colours: hmacguard, the peers and vendors, the floors.
OURS, PEER, FLOOR = "#1f5f99", "#d9822b", "#8c8c8c"
CORE_CASE = "verify 1 KiB POST"
CORE_BARS = (
    ("hmacguard", OURS),
    ("http-message-signatures", PEER),
    ("floor (hand-written)", FLOOR),
    ("bare crypto", FLOOR),
)


class PageError(Exception):
    """The page's marker comments are missing, repeated or out of order."""


# -- running -------------------------------------------------------------------------


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git(*args: str) -> str:
    """A read-only git query in the repository; "" when git is not there."""
    try:
        completed = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


def machine_info() -> dict[str, str]:
    """The machine and the versions every benchmark shares (each script adds its own)."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        version = importlib.metadata.version("hmacguard")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": cpu,
        "cpu_count": str(os.cpu_count()),
        "openssl": ssl.OPENSSL_VERSION,
        "hmacguard": version,
    }


def script_args(name: str, quick: bool, skip: set[str], notes: list[str]) -> list[str]:
    """The arguments for one script (without --json)."""
    args = ["--quick"] if quick else []
    if name == "server":
        if shutil.which("wrk") is None:
            args.append("--in-process-only")
            notes.append(
                "wrk is not installed (apt-get install wrk): the server benchmark ran in "
                "process only, without uvicorn or Redis."
            )
        elif "redis" in skip:
            args.append("--no-redis")
            notes.append("The RedisNonceStore run was skipped (--skip redis).")
        elif shutil.which("redis-server") is None:
            notes.append("redis-server is not installed: the RedisNonceStore run was skipped.")
    return args


def run_benchmark(name: str, args: list[str], work: Path) -> dict[str, Any]:
    """Run one script with --json; its progress goes to stderr, its report to stdout."""
    out = work / f"{name}.json"
    script = BENCH_DIR / f"{name}.py"
    argv = [sys.executable, str(script), *args, "--json", str(out)]
    python = os.path.relpath(sys.executable, ROOT) if sys.executable else "python"
    command = shlex.join([python, f"bench/{name}.py", *args])
    print(f"$ {command}", file=sys.stderr, flush=True)
    started = utc_now()
    completed = subprocess.run(  # noqa: S603  (our own scripts, with this interpreter)
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )
    finished = utc_now()
    report = completed.stdout.decode("utf-8", "replace")
    print(report, end="", flush=True)
    if completed.returncode != 0 or not out.exists():
        raise RuntimeError(f"bench/{name}.py failed (exit {completed.returncode})")
    return {
        "command": command,
        "argv": [python, f"bench/{name}.py", *args, "--json", "PATH"],
        "started": started,
        "finished": finished,
        "results": json.loads(out.read_text(encoding="utf-8")),
    }


def run_all(argv: list[str], quick: bool, skip: set[str]) -> dict[str, Any]:
    """Run the benchmarks not skipped, one after the other; the combined results."""
    notes: list[str] = []
    combined: dict[str, Any] = {
        "schema": SCHEMA,
        "command": shlex.join(["bench/run", *argv]),
        "quick": quick,
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "started": utc_now(),
        "finished": "",
        "machine": machine_info(),
        "skipped": [name for name in BENCHMARKS if name in skip],
        "notes": notes,
        "benchmarks": {},
    }
    with tempfile.TemporaryDirectory(prefix="hmacguard-bench-run-") as tmp:
        for name in BENCHMARKS:
            if name in skip:
                continue
            args = script_args(name, quick, skip, notes)
            combined["benchmarks"][name] = run_benchmark(name, args, Path(tmp))
    combined["finished"] = utc_now()
    return combined


# -- the page ------------------------------------------------------------------------


def find_regions(text: str) -> dict[str, tuple[int, int]]:
    """Each region's content span (between its two markers); PageError unless all are there."""
    seen: dict[str, dict[str, list[re.Match[str]]]] = {}
    for match in MARKER.finditer(text):
        seen.setdefault(match.group(1), {"start": [], "end": []})[match.group(2)].append(match)
    unknown = sorted(set(seen) - set(REGIONS))
    if unknown:
        raise PageError(f"unknown marker: bench:{unknown[0]} (known: {', '.join(REGIONS)})")
    spans: dict[str, tuple[int, int]] = {}
    for name in REGIONS:
        for side in ("start", "end"):
            count = len(seen.get(name, {}).get(side, []))
            if count != 1:
                problem = "missing" if count == 0 else f"found {count} times"
                raise PageError(f"marker <!-- bench:{name}:{side} --> {problem}")
        start, end = seen[name]["start"][0], seen[name]["end"][0]
        if end.start() < start.end():
            raise PageError(f"marker <!-- bench:{name}:end --> comes before its start")
        spans[name] = (start.end(), end.start())
    ordered = sorted(spans.values())
    for (_, previous_end), (next_start, _) in itertools.pairwise(ordered):
        if next_start < previous_end:
            raise PageError("marker regions overlap or nest")
    return spans


def replace_regions(text: str, contents: dict[str, str]) -> str:
    """The page with the given regions' contents replaced; everything else kept as is."""
    spans = find_regions(text)
    pieces, position = [], 0
    for name, (start, end) in sorted(spans.items(), key=lambda item: item[1]):
        if name not in contents:
            continue
        pieces += [text[position:start], "\n\n", contents[name].strip("\n"), "\n\n"]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def import_bench(name: str) -> Any:
    """One of the bench scripts as a module, for its result classes and its formatter."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return importlib.import_module(name)


def report_text(name: str, entry: dict[str, Any], quick: bool) -> str:
    """The script's printed report, rebuilt from its JSON with the script's own formatter."""
    data, command = entry["results"], entry["command"]
    module = import_bench(name)
    if name == "core":
        results = module.Results(
            machine=data["machine"],
            rows=[module.Row(**row) for row in data["rows"]],
            throughput=[module.Throughput(**item) for item in data["throughput"]],
            targets=[module.Target(**target) for target in data["targets"]],
        )
        return str(module.format_results(results, command, quick))
    if name == "server":
        results = module.Results(
            machine=data["machine"],
            in_process=[module.Row(**row) for row in data["in_process"]],
            runs=[module.WrkRun(**run) for run in data["runs"]],
            best={app: module.WrkRun(**run) for app, run in data["best"].items()},
            targets=[module.Target(**target) for target in data["targets"]],
        )
        return str(module.format_results(results, command, quick))
    rows = [module.Row(**row) for row in data["rows"]]
    return str(module.format_rows(rows, data["machine"], command, quick))


def report_regions(name: str, entry: dict[str, Any], quick: bool) -> dict[str, str]:
    """A report cut into the page's three regions: machine, command and tables, targets."""
    lines = report_text(name, entry, quick).rstrip("\n").split("\n")
    lines = lines[1:]  # "$ command": the page shows it as a sh block
    blank = lines.index("")
    targets = lines.index("targets:")
    tables = "\n".join(lines[blank + 1 : targets]).strip("\n")
    return {
        f"{name}-machine": "```text\n" + "\n".join(lines[:blank]) + "\n```",
        name: f"```sh\n{entry['command']}\n```\n\n{tables}",
        f"{name}-targets": "```text\n" + "\n".join(lines[targets:]) + "\n```",
    }


def time_span(started: str, finished: str) -> str:
    """``2026-11-27, 17:47-17:51 UTC``, with an en dash (both dates if it crossed midnight)."""
    begin = datetime.datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ")
    end = datetime.datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ")
    if f"{begin:%Y-%m-%d %H:%M}" == f"{end:%Y-%m-%d %H:%M}":
        return f"{begin:%Y-%m-%d}, {begin:%H:%M} UTC"
    if begin.date() == end.date():
        return f"{begin:%Y-%m-%d}, {begin:%H:%M}–{end:%H:%M} UTC"  # noqa: RUF001
    return f"{begin:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"  # noqa: RUF001


def describe_commit(combined: dict[str, Any]) -> str:
    dirty = " with uncommitted changes" if combined["dirty"] else ""
    return f"commit `{combined['commit']}`{dirty}"


def run_region(combined: dict[str, Any], chart: bool) -> str:
    machine = combined["machine"]
    ran = [name for name in BENCHMARKS if name in combined["benchmarks"]]
    lines = [
        f"The last `bench/run`: {time_span(combined['started'], combined['finished'])}, "
        f"source at {describe_commit(combined)}, on {machine['cpu']} "
        f"({machine['cpu_count']} CPUs, {machine['python']}, {machine['platform']}). "
        f"It ran {', '.join(f'`bench/{name}.py`' for name in ran)}."
    ]
    if combined["skipped"]:
        skipped = ", ".join(f"`{name}`" for name in combined["skipped"])
        lines[0] += f" Skipped: {skipped}; those sections show an earlier run."
    if combined["quick"]:
        lines[0] += " **A quick run: its figures mean nothing.**"
    lines = [textwrap.fill(lines[0], width=79, break_long_words=False, break_on_hyphens=False)]
    lines += ["", "```sh", combined["command"], "```"]
    if combined["notes"]:
        lines += ["", textwrap.fill(" ".join(combined["notes"]), width=79, break_long_words=False)]
    if chart:
        lines += [
            "",
            f"![Verify time per request for hmacguard and its peers, and webhook verify time "
            f"relative to raw hashing]({CHART.as_posix()})",
        ]
    return "\n".join(lines)


def render_page(text: str, combined: dict[str, Any], chart: bool) -> str:
    """The page with the regions of every benchmark that ran (and the run region) replaced."""
    contents = {"run": run_region(combined, chart)}
    for name, entry in combined["benchmarks"].items():
        contents.update(report_regions(name, entry, combined["quick"]))
    return replace_regions(text, contents)


# -- the chart -----------------------------------------------------------------------


def chart_caption(combined: dict[str, Any]) -> str:
    machine = combined["machine"]
    dirty = " + uncommitted changes" if combined["dirty"] else ""
    quick = "   QUICK RUN: THE FIGURES MEAN NOTHING" if combined["quick"] else ""
    return (
        f"{machine['cpu']}, {machine['cpu_count']} CPUs, {machine['python']}, "
        f"{machine['openssl']}\n"
        f"hmacguard {machine['hmacguard']} at commit {combined['commit']}{dirty}; "
        f"bench/run, {time_span(combined['started'], combined['finished'])}.{quick}\n"
        "Process CPU time, best of many short runs; compare ratios, not µs, across machines."
    )


def core_bars(combined: dict[str, Any]) -> list[tuple[str, float, str]]:
    entry = combined["benchmarks"].get("core")
    if entry is None:
        return []
    rows = {
        row["implementation"]: row["us_per_op"]
        for row in entry["results"]["rows"]
        if row["case"] == CORE_CASE
    }
    return [(name, rows[name], colour) for name, colour in CORE_BARS if name in rows]


def webhook_bars(combined: dict[str, Any]) -> list[tuple[str, float, str]]:
    entry = combined["benchmarks"].get("webhooks")
    if entry is None:
        return []
    return [
        (
            f"{row['scheme']}: {row['implementation']}",
            row["ratio_to_raw"],
            OURS if row["implementation"] == "hmacguard" else PEER,
        )
        for row in entry["results"]["rows"]
        if row["size"] == "1 MiB" and row["implementation"] != "raw hashing"
    ]


def render_chart(combined: dict[str, Any], path: Path) -> bool:
    """Draw the chart into ``path`` (SVG); False when neither core nor webhooks ran."""
    import matplotlib  # noqa: PLC0415  (only rendering needs it)
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

    core, hooks = core_bars(combined), webhook_bars(combined)
    panels = [bars for bars in (core, hooks) if bars]
    if not panels:
        return False
    rc: Any = {  # matplotlib types its keys as literals
        "svg.hashsalt": "hmacguard-benchmarks",
        "svg.fonttype": "none",
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
    heights = [len(bars) + 1.5 for bars in panels]
    with matplotlib.rc_context(rc):
        figure = Figure(figsize=(9, 0.32 * sum(heights) + 2.2), layout="constrained")
        axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, bars in zip(axes, panels, strict=True):
            labels = [label for label, _, _ in bars]
            values = [value for _, value, _ in bars]
            positions = list(range(len(bars)))[::-1]
            ax.barh(positions, values, color=[colour for _, _, colour in bars], height=0.65)
            ax.set_yticks(positions, labels)
            ax.tick_params(axis="y", length=0)
            if bars is core:
                ours = values[0]
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                ax.set_xlim(min(values) / 2, max(values) * 15)
                for y, value in zip(positions, values, strict=True):
                    note = "" if value == ours else f"  ({value / ours:.2f}x hmacguard)"
                    ax.text(value * 1.08, y, f"{value:,.2f} µs{note}", va="center")
                ax.set_xlabel("µs per verify, log scale (lower is faster)")
                ax.set_title(
                    "RFC 9421: verify one signed 1 KiB POST",
                    loc="left",
                    fontweight="bold",
                )
            else:
                top = max(*values, 1.1)
                ax.set_xlim(0, top * 1.25)
                ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
                ax.axvline(1.1, color=OURS, linewidth=0.8, linestyle=":")
                ax.text(1.0, len(bars) - 0.3, "raw hashing = 1 ", fontsize=8, ha="right")
                ax.text(1.1, len(bars) - 0.3, " target ≤ 1.10", fontsize=8, color=OURS)
                for y, value in zip(positions, values, strict=True):
                    ax.text(max(value, 1.1) + top * 0.015, y, f"{value:.2f}x", va="center")
                ax.set_ylim(-0.6, len(bars))
                ax.set_xlabel(
                    "time ÷ raw hashing (one HMAC over exactly the signed bytes; lower is better)"
                )
                ax.set_title(
                    "Webhooks: verify one 1 MiB delivery, against each vendor's verifier",
                    loc="left",
                    fontweight="bold",
                )
        figure.supxlabel(chart_caption(combined), fontsize=7.5, color="#444444", x=0.01, ha="left")
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="svg", metadata={"Date": None})
    return True


# -- the command ---------------------------------------------------------------------


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def render(combined: dict[str, Any], docs: Path) -> list[Path]:
    """Render the chart and the page from the combined results; the files written."""
    text = docs.read_text(encoding="utf-8")
    find_regions(text)  # a page without its markers fails before anything is written
    chart = docs.parent / CHART
    written = [chart] if render_chart(combined, chart) else []
    write_text(docs, render_page(text, combined, chart=bool(written)))
    return [docs, *written]


def parse_skip(values: list[str]) -> set[str]:
    skip = {item.strip() for value in values for item in value.split(",") if item.strip()}
    unknown = skip - set(SKIPPABLE)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"--skip: unknown {', '.join(sorted(unknown))} (choose from {', '.join(SKIPPABLE)})"
        )
    return skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description=(__doc__ or "").splitlines()[0],
        epilog="example: bench/run --quick --skip server --docs /tmp/benchmarks.md",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="pass --quick to each script (a smoke run); needs --docs PATH or --no-render, "
        "so the real page never shows its figures",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="NAME",
        help=f"skip a benchmark: {', '.join(SKIPPABLE)} (repeat, or separate with commas)",
    )
    parser.add_argument(
        "--docs", type=Path, help="the page to render into (default docs/benchmarks.md)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the combined results (default bench/results/latest.json; "
        "bench/results/quick.json with --quick)",
    )
    parser.add_argument("--no-render", action="store_true", help="run and write the JSON only")
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="JSON",
        help="run nothing: render the page and chart from a saved combined JSON",
    )
    args = parser.parse_args(argv)
    try:
        skip = parse_skip(args.skip)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if args.quick and args.docs is None and not args.no_render:
        parser.error("--quick figures mean nothing: give --docs PATH (a copy) or --no-render")
    if args.source is not None and (args.quick or skip or args.no_render or args.json):
        parser.error("--from renders a saved run: it takes only --docs")
    docs = args.docs if args.docs is not None else DEFAULT_DOCS

    def fail(message: str) -> int:
        print(f"bench/run: error: {message}", file=sys.stderr)
        return 2

    if not args.no_render:
        try:
            find_regions(docs.read_text(encoding="utf-8"))
        except OSError as error:
            return fail(f"cannot read {docs}: {error}")
        except PageError as error:
            return fail(f"{docs}: {error}")
        try:
            import matplotlib  # noqa: F401, PLC0415
        except ImportError:
            return fail("matplotlib is not installed (.venv/bin/pip install matplotlib)")

    if args.source is not None:
        try:
            combined = json.loads(args.source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            return fail(f"cannot read {args.source}: {error}")
        if combined.get("schema") != SCHEMA:
            return fail(f"{args.source}: not a bench/run result (schema {SCHEMA})")
    else:
        try:
            combined = run_all(argv, args.quick, skip)
        except RuntimeError as error:
            print(f"bench/run: {error}; nothing rendered", file=sys.stderr)
            return 1
        out = args.json or (QUICK_JSON if args.quick else DEFAULT_JSON)
        write_text(out, json.dumps(combined, indent=2, ensure_ascii=False) + "\n")
        print(f"bench/run: results in {out}", file=sys.stderr)

    if not args.no_render:
        try:
            written = render(combined, docs)
        except PageError as error:  # the page changed while the benchmarks ran
            return fail(f"{docs}: {error}")
        print(f"bench/run: rendered {', '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
