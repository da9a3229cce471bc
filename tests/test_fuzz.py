"""Issue 8 item 3: the Atheris harnesses in fuzz/ run, and the seed corpus passes them.

Two layers: every harness fuzzes for a few seconds through ``fuzz/run`` (as CI
does), and every seed of ``fuzz/corpus/<target>/`` is replayed in-process
through the harness's ``TestOneInput`` (deterministic: no coverage guidance,
no wall-clock budget). Without atheris the module skips, except in CI
(``CI=true``) where the dev extra installs Atheris (CPython 3.11+ on
Linux), where a missing fuzzer is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from hmacguard import VerificationError

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = (
    "structured_fields",
    "signature_fields",
    "signature_base",
    "content_digest",
    "verifier",
    "webhooks",
)
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None
# Atheris 3 has wheels for CPython 3.11-3.13 on Linux (the dev extra installs it there only).
ATHERIS_SUPPORTED = sys.version_info >= (3, 11) and sys.platform == "linux"
RUN_LINE = re.compile(r"^(\w+)\s+(\d+) s\s+(\d+) execs\s+(\d+) exec/s\s+(\S+)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _require_atheris() -> None:
    if HAVE_ATHERIS:
        return
    message = "atheris is not installed (pip install atheris; it is in the dev extra)"
    if os.environ.get("CI") == "true" and ATHERIS_SUPPORTED:
        pytest.fail(f"{message}: CI must run the fuzz harnesses")
    pytest.skip(message)


def _shared(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """fuzz/_harness.py, what every harness shares (the time budget)."""
    monkeypatch.syspath_prepend(str(FUZZ))
    return importlib.import_module("_harness")


def _harness(target: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import fuzz/fuzz_<target>.py without coverage instrumentation."""
    monkeypatch.setenv("HMACGUARD_FUZZ_UNINSTRUMENTED", "1")
    monkeypatch.syspath_prepend(str(FUZZ))
    name = f"_hmacguard_fuzz_{target}"
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"fuzz_{target}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seeds(target: str) -> list[bytes]:
    return [path.read_bytes() for path in sorted((FUZZ / "corpus" / target).iterdir())]


# Slow-marked: .ci/run fuzzes every harness for a fixed time itself
# (`fuzz/run --seconds 10`); the seed replay below runs with every test run.
@pytest.mark.slow
def test_issue8_fuzz_run_every_harness_executes() -> None:
    """``fuzz/run --seconds 3`` fuzzes all six harnesses, each executing inputs, with no finding."""
    completed = subprocess.run(  # noqa: S603  our own interpreter and script
        [sys.executable, str(FUZZ / "run"), "--seconds", "3", "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-4000:]
    runs = {m.group(1): (int(m.group(3)), m.group(5)) for m in RUN_LINE.finditer(completed.stdout)}
    assert set(runs) == set(TARGETS), completed.stdout
    for target, (executions, status) in runs.items():
        assert executions > 0, f"{target} executed nothing"
        assert status == "ok", target


@pytest.mark.parametrize("target", TARGETS)
def test_issue8_seed_corpus_replays_clean(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every seed of the target's corpus goes through ``TestOneInput`` with no finding."""
    module = _harness(target, monkeypatch)
    monkeypatch.setattr(module, "BUDGET_SECONDS", float("inf"))  # timing is fuzz/run's job
    seeds = _seeds(target)
    assert seeds, f"fuzz/corpus/{target} is empty: run fuzz/make_corpus.py"
    for seed in seeds:
        module.TestOneInput(seed)


@pytest.mark.parametrize("target", ["verifier", "webhooks"])
def test_issue8_seed_corpus_reaches_successful_verification(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some seeds verify, so mutations start from requests that pass every check."""
    module = _harness(target, monkeypatch)
    outcomes = [module._target(seed) for seed in _seeds(target)]
    passed = [o for o in outcomes if not isinstance(o, VerificationError)]
    assert len(passed) >= 3, outcomes


@pytest.mark.parametrize("target", TARGETS)
def test_issue8_time_budget_overrun_is_a_finding(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An input of at most 16 KiB timed over 10 ms is a finding; a longer input is not timed."""
    module = _harness(target, monkeypatch)
    ticks = iter(range(0, 10**6, 20))  # every clock reading is 20 ms after the last

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return next(ticks) / 1000

        thread_time = perf_counter

    shared = _shared(monkeypatch)
    monkeypatch.setattr(shared, "time", FakeTime)
    seed = _seeds(target)[0]
    with pytest.raises(shared.BudgetExceeded):
        module.TestOneInput(seed)
    module.TestOneInput(seed[:1] + b"\x00" * shared.BUDGET_MAX_LEN)


def test_issue8_foreign_exception_escapes_the_harness(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception that is not one of ours propagates out of ``TestOneInput`` as a finding."""
    module = _harness("structured_fields", monkeypatch)

    def broken_parse(text: str, **kwargs: object) -> object:
        raise KeyError(text)

    monkeypatch.setattr(module, "PARSERS", ((broken_parse, str, False),) * 4)
    with pytest.raises(KeyError):
        module.TestOneInput(b"\x00a")
