"""The documentation stays true: its Python examples run and print what the pages show.

Every ```python block in docs/**/*.md is a complete example and runs here in a
fresh namespace; a block whose first line is ``# doctest: skip`` is a fragment
and is left out. When a ```text title="Output"``` block follows a Python block
(only blank lines between), the example's standard output must equal it exactly.
The tables of component values in docs/concepts/components.md are checked
against the library, docs/api.md must mention every public name, every problem
``type`` URI the middleware answers with lands on an anchor of docs/errors.md, and
the Python block of README.md's Quickstart runs and prints what its comment shows.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import markdown
import pytest
from mkdocs.config import load_config

import hmacguard
from hmacguard._components import component_from_spec, component_value
from hmacguard._error_response import _MESSAGES, ErrorResponder
from hmacguard._error_response import DOCS as PROBLEM_DOCS
from hmacguard._message import Message

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

if not (ROOT / "mkdocs.yml").exists():  # pragma: no cover  (an sdist ships no docs)
    pytest.skip("the docs are not part of this distribution", allow_module_level=True)

SKIP_MARKER = "# doctest: skip"
OUTPUT_INFO = 'text title="Output"'
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a docs page."""

    page: str
    line: int
    info: str
    code: str


@dataclass(frozen=True)
class Example:
    """A Python block, and the output block that follows it, if any."""

    block: Block
    output: str | None

    @property
    def id(self) -> str:
        """A test id such as ``quickstart.md:12``."""
        return f"{self.block.page}:{self.block.line}"


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def fenced_blocks(path: Path) -> list[tuple[Block, int]]:
    """Return the fenced blocks of a page, each with the line number its fence closes on."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(DOCS).as_posix()
    blocks: list[tuple[Block, int]] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            # A block nested in a list or admonition: drop the fence's indentation.
            line = lines[j]
            body.append(line[indent:] if line[:indent] == " " * indent else line.lstrip(" "))
            j += 1
        else:
            raise AssertionError(f"{page}:{i + 1}: unterminated code fence")
        code = "\n".join(body) + "\n"
        blocks.append((Block(page, i + 1, opening["info"].strip(), code), j))
        i = j + 1
    return blocks


def examples(path: Path) -> list[Example]:
    """Return the runnable Python examples of a page, each with its expected output."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = fenced_blocks(path)
    found = []
    for index, (block, end) in enumerate(blocks):
        if block.info != "python" or block.code.startswith(SKIP_MARKER):
            continue
        output = None
        if index + 1 < len(blocks):
            following, _ = blocks[index + 1]
            between = lines[end + 1 : following.line - 1]
            if following.info == OUTPUT_INFO and not any(line.strip() for line in between):
                output = following.code
        found.append(Example(block, output))
    return found


ALL_EXAMPLES = [example for page in _pages() for example in examples(page)]


def run(example: Example) -> str:
    """Run an example in a fresh namespace and return what it printed.

    The loggers' levels are put back afterwards: an example that configures
    logging (``setLevel``) would otherwise quiet the records later tests read.
    """
    namespace = {"__name__": "__docs_example__"}
    code = compile(example.block.code, f"docs/{example.id}", "exec")
    out = io.StringIO()
    manager = logging.Logger.manager
    levels = {
        name: logger.level
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root_level = logging.root.level
    try:
        with contextlib.redirect_stdout(out):
            exec(code, namespace)  # noqa: S102  (the docs' own examples, from this repository)
    finally:
        for name, logger in list(manager.loggerDict.items()):
            if isinstance(logger, logging.Logger):
                logger.setLevel(levels.get(name, logging.NOTSET))
        logging.root.setLevel(root_level)
    return out.getvalue()


def test_docs_have_examples_on_every_concept_page() -> None:
    """Each page that teaches the API carries at least one runnable example."""
    pages = {example.block.page for example in ALL_EXAMPLES}
    for page in (
        "index.md",
        "quickstart.md",
        "concepts/signature-base.md",
        "concepts/components.md",
        "concepts/replay.md",
        "concepts/keys.md",
        "errors.md",
    ):
        assert page in pages, f"{page} has no runnable Python example"


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=lambda example: example.id)
def test_docs_example_runs_and_prints_what_the_page_shows(example: Example) -> None:
    """A docs example raises nothing and, where output is shown, prints exactly that."""
    if "starlette.testclient" in example.block.code and sys.version_info < (3, 11):
        pytest.skip("Starlette's TestClient runs on httpx2, which needs Python 3.11")
    printed = run(example)
    if example.output is not None:
        assert printed == example.output


def test_docs_output_blocks_follow_a_python_example() -> None:
    """Every output block on a page belongs to the Python example just above it."""
    for page in _pages():
        shown = {example.output for example in examples(page) if example.output is not None}
        outputs = [block for block, _ in fenced_blocks(page) if block.info == OUTPUT_INFO]
        for block in outputs:
            assert block.code in shown, f"{block.page}:{block.line} shows output of no example"


def test_docs_python_blocks_use_the_python_tag() -> None:
    """No Python block hides from these tests behind another tag (py, python3, pycon)."""
    for page in _pages():
        for block, _ in fenced_blocks(page):
            tag = block.info.split(" ", 1)[0].lstrip(".{")
            assert tag not in {"py", "python3", "py3", "pycon"}, f"{block.page}:{block.line}"


def test_docs_skip_marker_is_used_sparingly() -> None:
    """Fragments marked ``# doctest: skip`` stay rare, so the docs stay runnable."""
    skipped = [
        f"{block.page}:{block.line}"
        for page in _pages()
        for block, _ in fenced_blocks(page)
        if block.info == "python" and block.code.startswith(SKIP_MARKER)
    ]
    assert len(skipped) <= 3, skipped


# -- component tables in concepts/components.md ---------------------------------

_ROW = re.compile(r"^\| `(?P<identifier>[^`]+)` \|.*\| `(?P<value>[^`]*)` \|$")


def _table_rows(marker: str) -> list[tuple[str, str]]:
    """Return (identifier, value) rows of the table that follows ``<!-- marker -->``."""
    lines = (DOCS / "concepts" / "components.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(f"<!-- {marker} -->")
    rows: list[tuple[str, str]] = []
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        match = _ROW.match(line)
        if match:
            rows.append((match["identifier"], match["value"]))
    return rows


def _spec(identifier: str) -> str:
    # '"@query-param";name="q"' -> '@query-param;name="q"', the configuration form.
    name, _, params = identifier[1:].partition('"')
    return name + params


def test_rfc9421_2_2_derived_component_table_matches_the_library() -> None:
    """The derived-component values shown in the docs are the ones the library computes."""
    message = Message("GET", "https://API.Example:443/items/a%2Fb?sort=name&q=two+words", [])
    rows = _table_rows("derived-components")
    assert len(rows) == 8
    for identifier, value in rows:
        component = component_from_spec(_spec(identifier))
        assert component.identifier == identifier
        assert component_value(component, message) == value, identifier


def test_rfc9421_2_1_field_component_table_matches_the_library() -> None:
    """The header-field values shown in the docs (sf, key, bs) are the library's."""
    message = Message(
        "GET",
        "https://api.example/",
        [("X-Tag", "  one "), ("x-tag", "two"), ("Example-Dict", " a=1,  b=2;x=1 ")],
    )
    rows = _table_rows("field-components")
    assert len(rows) == 5
    for identifier, value in rows:
        component = component_from_spec(_spec(identifier))
        assert component.identifier == identifier
        actual = component_value(component, message, {"example-dict": "dictionary"})
        assert actual == value, identifier


# -- API reference ---------------------------------------------------------------


def test_api_reference_documents_every_public_name() -> None:
    """docs/api.md renders or describes every name in ``hmacguard.__all__``."""
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    for name in [*hmacguard.__all__, *hmacguard._LAZY]:
        assert f"::: hmacguard.{name}\n" in text or f"### `{name}`" in text, name


# -- problem type links ------------------------------------------------------------


def _rendered_ids(page: str) -> set[str]:
    """The ids of a page's HTML, rendered with the site's own Markdown extensions.

    The same extensions and options mkdocs builds with (mkdocs.yml, plus mkdocs's
    built-in toc, tables and fenced_code): heading slugs and ``{ #id }`` anchors.
    """
    config = load_config(str(ROOT / "mkdocs.yml"))
    assert config.use_directory_urls, "problem type URIs assume errors.md is served at errors/"
    converter = markdown.Markdown(
        extensions=config.markdown_extensions, extension_configs=config.mdx_configs
    )
    html = converter.convert((DOCS / page).read_text(encoding="utf-8"))
    return set(re.findall(r'\bid="([^"]+)"', html))


def test_every_problem_type_uri_lands_on_an_anchor_of_the_errors_page() -> None:
    """Each reason's problem ``type`` (``.../errors/#invalid-signature``) has its anchor.

    Every VerificationError class is rendered by the middleware's ErrorResponder
    (the four hidden reasons are told ``invalid_signature``), and so is every reason
    the responder has a message for; each URI must point at docs/errors.md's page
    and at an id that page's HTML has.
    """
    assert PROBLEM_DOCS.endswith("/errors/"), PROBLEM_DOCS
    ids = _rendered_ids("errors.md")
    errors = [
        obj
        for obj in vars(hmacguard).values()
        if isinstance(obj, type)
        and issubclass(obj, hmacguard.VerificationError)
        and obj is not hmacguard.VerificationError
    ]
    assert len(errors) >= 17
    responder = ErrorResponder(None)
    reasons = {error.reason for error in errors} | set(_MESSAGES)

    def named(reason: str) -> hmacguard.VerificationError:
        # An instance's own reason, not a new subclass: test_errors holds the
        # class tree to exactly its documented leaves.
        error = hmacguard.VerificationError("x")
        error.reason = reason
        return error

    instances = [error("x") for error in errors] + [named(reason) for reason in reasons]
    for error in instances:
        _, _, body = responder.render(error)
        uri = json.loads(body)["type"]
        page, _, anchor = uri.partition("#")
        assert page == PROBLEM_DOCS, uri
        assert anchor in ids, f"{uri}: docs/errors.md has no id {anchor!r}"
    # Each reason, hidden or not, also has an anchor of its own on the page.
    for reason in reasons:
        assert reason.replace("_", "-") in ids, reason


# -- README.md -------------------------------------------------------------------


def readme_quickstart() -> str:
    """Return the Python block of README.md's Quickstart section."""
    text = README.read_text(encoding="utf-8")
    _, found, rest = text.partition("\n## Quickstart\n")
    assert found, "README.md has no Quickstart section"
    section = rest.split("\n## ", 1)[0]
    match = re.search(r"^```python\n(?P<code>.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert match, "README.md's Quickstart has no ```python block"
    return match["code"]


def _shown(comment: str) -> re.Pattern[str]:
    # "client-1 ('@method', ...)": the text as shown, "..." standing for anything.
    return re.compile(".*".join(re.escape(part) for part in comment.split("...")))


def test_readme_quickstart_runs_and_prints_what_its_comments_show() -> None:
    """README.md's Quickstart runs as shown, and each print prints what its comment says."""
    code = readme_quickstart()
    shown = [line.partition("  # ")[2] for line in code.splitlines() if line.startswith("print(")]
    assert shown, "the Quickstart prints nothing"
    assert all(shown), "each print() in the Quickstart shows its output in a comment"
    namespace = {"__name__": "__readme_quickstart__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md:Quickstart", "exec"), namespace)  # noqa: S102  (our own README)
    printed = out.getvalue().splitlines()
    assert len(printed) == len(shown), printed
    for line, comment in zip(printed, shown, strict=True):
        assert _shown(comment).fullmatch(line), (line, comment)
    verified = namespace["verified"]
    assert isinstance(verified, hmacguard.VerifiedSignature)
    assert verified.key_id == "client-1"
    assert "content-digest" in verified.components
