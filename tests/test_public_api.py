"""Guards on hmacguard's public surface: ``__all__``, typing marker, import cost, version."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import hmacguard
from hmacguard import RedirectWarning

ROOT = Path(__file__).resolve().parent.parent
# Frameworks and clients the core must never import (THREATS/DESIGN: the core is stdlib only).
FORBIDDEN = ("starlette", "httpx", "redis", "requests", "anyio", "uvicorn")


def _ruff_isort_key(name: str) -> tuple[int, str]:
    # Ruff RUF022 ("isort-style"), which the project's lint enforces on __all__:
    # SCREAMING_SNAKE_CASE constants, then CamelCase classes, then everything else.
    if name.isupper():
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


def test_all_is_sorted() -> None:
    """``__all__`` is in the ruff isort-style order: constants, classes, then functions."""
    assert hmacguard.__all__ == sorted(hmacguard.__all__, key=_ruff_isort_key)
    assert len(set(hmacguard.__all__)) == len(hmacguard.__all__)


def test_all_lists_exactly_the_public_names() -> None:
    """Every public name in the package namespace is exported, and nothing else."""
    public = {
        name
        for name, value in vars(hmacguard).items()
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(value, types.ModuleType)
    }
    # Names whose modules need an extra are loaded on first use (then kept in the
    # namespace), and are not in __all__: a star import must work without extras.
    lazy = set(hmacguard._LAZY)
    assert set(hmacguard.__all__) == public - lazy
    assert not lazy & set(hmacguard.__all__)


@pytest.mark.parametrize("package", ["hmacguard", "hmacguard.webhooks"])
def test_star_import_needs_no_extra(package: str) -> None:
    """``from hmacguard import *`` works with no extra installed (httpx, httpx2 and
    redis hidden), and the names that need one still say which when imported."""
    code = (
        "import sys\n"
        "for name in ('httpx', 'httpx2', 'redis'):\n"
        "    sys.modules[name] = None\n"
        f"from {package} import *\n"
        f"import {package} as package\n"
        "for name in package._LAZY:\n"
        "    try:\n"
        "        getattr(package, name)\n"
        "    except ImportError as exc:\n"
        "        assert 'pip install' in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError(name)\n"
        "print('ok')\n"
    )
    result = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout == "ok\n", result.stderr


def test_every_exported_name_is_importable() -> None:
    """``from hmacguard import <name>`` works for each name in ``__all__``."""
    module = importlib.import_module("hmacguard")
    for name in hmacguard.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from hmacguard import *", namespace)  # noqa: S102  (the star import is the test)
    assert set(hmacguard.__all__) <= set(namespace)


def test_redirect_warning_is_exported_as_a_user_warning() -> None:
    """``RedirectWarning``, which docs/client.md names, comes from ``hmacguard`` itself."""
    assert issubclass(RedirectWarning, UserWarning)


def test_pep561_py_typed_ships() -> None:
    """The package directory holds the PEP 561 ``py.typed`` marker."""
    assert (Path(hmacguard.__file__).parent / "py.typed").is_file()


def _modules_loaded(code: str) -> list[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(result.stdout)


def test_import_loads_no_framework_or_client() -> None:
    """A fresh ``import hmacguard`` loads no web framework, HTTP client, redis or event loop."""
    loaded = _modules_loaded("import hmacguard")
    assert "hmacguard" in loaded
    tops = {name.partition(".")[0] for name in loaded}
    assert sorted(tops & set(FORBIDDEN)) == []


def test_import_loads_only_the_standard_library() -> None:
    """Everything ``import hmacguard`` adds to ``sys.modules`` is stdlib or hmacguard itself."""
    before = {name.partition(".")[0] for name in _modules_loaded("")}
    after = {name.partition(".")[0] for name in _modules_loaded("import hmacguard")}
    added = after - before - {"hmacguard"}
    assert sorted(added - set(sys.stdlib_module_names)) == []


def test_version_matches_pyproject() -> None:
    """``hmacguard.__version__`` is the ``[project] version`` of pyproject.toml."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = text.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"\s*$', project, re.MULTILINE)
    assert match is not None, "pyproject.toml [project] has no version line"
    assert hmacguard.__version__ == match.group(1)
