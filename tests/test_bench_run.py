"""Smoke test for bench/run: it runs the benchmarks, keeps their JSON and renders the page.

Only quick runs (``--quick``, the figures mean nothing) without the server
benchmark: the render is checked against a copy of docs/benchmarks.md, never
the real page. The full run is for a quiet machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run"
PAGE = ROOT / "docs" / "benchmarks.md"
MARKER = re.compile(r"<!-- bench:([a-z-]+):(start|end) -->")
REGIONS = {
    "run",
    *(
        f"{name}{part}"
        for name in ("core", "webhooks", "server")
        for part in ("-machine", "", "-targets")
    ),
}


def bench_run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run bench/run (the shell wrapper) with this interpreter."""
    return subprocess.run(  # noqa: S603  (our own script)
        [str(RUN), *args],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, "PYTHONIOENCODING": "utf-8"},
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def split_page(text: str) -> tuple[list[str], dict[str, str]]:
    """The page's prose outside the regions (in order) and each region's content."""
    outside, regions, position, current = [], {}, 0, None
    for match in MARKER.finditer(text):
        name, side = match.groups()
        if side == "start":
            outside.append(text[position : match.end()])
            current = name
        else:
            assert current == name, (current, name)
            regions[name] = text[position : match.start()]
            outside.append(match.group(0))
            current = None
        position = match.end()
    outside.append(text[position:])
    return outside, regions


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One ``bench/run --quick --skip server`` into a copy of the page: (process, directory)."""
    work = tmp_path_factory.mktemp("bench-run")
    (work / "docs").mkdir()
    (work / "docs" / "benchmarks.md").write_bytes(PAGE.read_bytes())
    completed = bench_run(
        "--quick",
        "--skip",
        "server",
        "--docs",
        str(work / "docs" / "benchmarks.md"),
        "--json",
        str(work / "latest.json"),
    )
    return completed, work


def test_real_page_has_every_marker_once() -> None:
    """docs/benchmarks.md carries each region's start and end marker exactly once, in order."""
    found = MARKER.findall(PAGE.read_text(encoding="utf-8"))
    assert sorted(found) == sorted((name, side) for name in REGIONS for side in ("start", "end"))
    _, regions = split_page(PAGE.read_text(encoding="utf-8"))
    assert set(regions) == REGIONS


def test_quick_run_writes_combined_json(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The combined JSON has the commit, the time span, and each script's command and JSON."""
    completed, work = quick_run
    assert completed.returncode == 0, completed.stderr
    combined = json.loads((work / "latest.json").read_text(encoding="utf-8"))
    assert combined["quick"] is True
    assert combined["skipped"] == ["server"]
    assert re.fullmatch(r"[0-9a-f]{4,40}|unknown", combined["commit"])
    assert combined["started"] <= combined["finished"]
    assert {"platform", "python", "cpu", "cpu_count"} <= combined["machine"].keys()
    assert set(combined["benchmarks"]) == {"core", "webhooks"}
    core = combined["benchmarks"]["core"]
    assert core["command"].endswith("bench/core.py --quick")
    assert {row["case"] for row in core["results"]["rows"]} >= {"verify 1 KiB POST"}
    webhooks = combined["benchmarks"]["webhooks"]
    assert webhooks["command"].endswith("bench/webhooks.py --quick")
    assert len(webhooks["results"]["rows"]) > 0


def test_quick_run_replaces_only_the_regions(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Prose outside the markers stays byte for byte; the core, webhooks and run regions change."""
    completed, work = quick_run
    assert completed.returncode == 0, completed.stderr
    before_outside, before = split_page(PAGE.read_text(encoding="utf-8"))
    after_outside, after = split_page((work / "docs" / "benchmarks.md").read_text(encoding="utf-8"))
    assert after_outside == before_outside
    for name in ("server-machine", "server", "server-targets"):  # skipped: left as they were
        assert after[name] == before[name]
    for name in REGIONS - {"server-machine", "server", "server-targets"}:
        assert after[name] != before[name], name
    assert "quick run: too few iterations" in after["core-machine"]
    assert "| verify 1 KiB POST | hmacguard |" in after["core"]
    assert after["core"].strip().startswith("```sh\n")
    assert "bench/core.py --quick\n```" in after["core"]
    assert after["core-targets"].strip().startswith("```text\ntargets:")
    assert "| Stripe | 1 MiB | hmacguard |" in after["webhooks"]
    assert "](img/benchmarks.svg)" in after["run"]
    assert "quick run" in after["run"]


def test_quick_run_writes_a_dateless_svg(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The chart is an SVG beside the page, labelled, with no date in its metadata."""
    completed, work = quick_run
    assert completed.returncode == 0, completed.stderr
    svg = (work / "docs" / "img" / "benchmarks.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    assert "<dc:date>" not in svg
    for label in ("hmacguard", "http-message-signatures", "raw hashing"):
        assert label in svg


def test_rendering_the_same_json_twice_gives_identical_files(
    quick_run: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    """Two renders from the saved JSON give byte-identical pages and SVGs, as the run's own."""
    completed, work = quick_run
    assert completed.returncode == 0, completed.stderr
    outputs = []
    for name in ("a", "b"):
        page = tmp_path / name / "benchmarks.md"
        page.parent.mkdir()
        page.write_bytes(PAGE.read_bytes())
        rendered = bench_run("--from", str(work / "latest.json"), "--docs", str(page))
        assert rendered.returncode == 0, rendered.stderr
        outputs.append((page.read_bytes(), (page.parent / "img" / "benchmarks.svg").read_bytes()))
    assert outputs[0] == outputs[1]
    run_page = (work / "docs" / "benchmarks.md").read_bytes()
    run_svg = (work / "docs" / "img" / "benchmarks.svg").read_bytes()
    assert outputs[0] == (run_page, run_svg)


def test_page_missing_a_marker_is_refused_with_exit_2(
    quick_run: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    """A page without one of its markers is a clear error (exit 2) and is left untouched."""
    completed, work = quick_run
    assert completed.returncode == 0, completed.stderr
    page = tmp_path / "benchmarks.md"
    text = PAGE.read_text(encoding="utf-8").replace("<!-- bench:webhooks-targets:end -->", "")
    page.write_text(text, encoding="utf-8")
    rendered = bench_run("--from", str(work / "latest.json"), "--docs", str(page))
    assert rendered.returncode == 2
    assert "<!-- bench:webhooks-targets:end --> missing" in rendered.stderr
    assert page.read_text(encoding="utf-8") == text
    assert not (tmp_path / "img").exists()


def test_quick_without_a_docs_copy_is_refused() -> None:
    """--quick never renders into the real page: without --docs or --no-render it exits 2."""
    completed = bench_run("--quick", "--skip", "core,webhooks,server")
    assert completed.returncode == 2
    assert "--docs PATH" in completed.stderr


def test_unknown_skip_name_is_refused() -> None:
    """--skip names a benchmark that exists, or bench/run exits 2 before running anything."""
    completed = bench_run("--skip", "cores", "--no-render")
    assert completed.returncode == 2
    assert "unknown cores" in completed.stderr
