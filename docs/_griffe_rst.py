"""A griffe extension that renders hmacguard's reST-flavoured docstrings as Markdown.

The source docstrings use a few Sphinx habits that Markdown shows literally:
``:class:`X``` roles, a paragraph ending in ``::`` before an indented code block,
and bare ``>>>`` examples (which Markdown reads as nested block quotes). This
rewrites them, for the API reference only, into code spans and fenced blocks.
It changes no meaning; once the docstrings are plain Markdown it does nothing.

Loaded by mkdocs.yml (``extensions`` of the mkdocstrings python handler) and
excluded from the built site by ``exclude_docs``.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

# :class:`HMACKey`, :meth:`Keyring.lookup`, :exc:`~hmacguard.Expired`
_ROLE = re.compile(r":(?:class|meth|func|attr|exc|data|obj|mod):`~?([^`]+)`")


def _code_span(match: re.Match[str]) -> str:
    return f"`{match.group(1)}`"


def _fence(lines: list[str], language: str) -> list[str]:
    body = textwrap.dedent("\n".join(lines)).splitlines()
    return [f"```{language}", *body, "```"]


def rewrite(text: str) -> str:
    """Return ``text`` with reST roles, ``::`` blocks and bare doctests made Markdown."""
    lines = _ROLE.sub(_code_span, text).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            # An existing fence: copy it through untouched.
            end = i + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            out.extend(lines[i : end + 1])
            i = end + 1
            continue
        if line.rstrip().endswith("::") and not line.strip().startswith(">>>"):
            # "Some text::" + blank line + indented block -> "Some text:" + fence.
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block: list[str] = []
            while j < len(lines) and (
                not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                language = "pycon" if block[0].strip().startswith(">>>") else "python"
                out.append(line.rstrip()[:-1])
                out.append("")
                out.extend(" " * indent + fenced for fenced in _fence(block, language))
                out.append("")
                i = j
                continue
        if line.lstrip().startswith(">>>"):
            # A bare doctest paragraph: fence it so it is not read as a block quote.
            j = i
            block = []
            while j < len(lines) and lines[j].strip():
                block.append(lines[j])
                j += 1
            indent = len(line) - len(line.lstrip())
            out.extend(" " * indent + fenced for fenced in _fence(block, "pycon"))
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RestDocstrings(griffe.Extension):
    """Rewrite every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring in place (runs before docstrings are parsed)."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
