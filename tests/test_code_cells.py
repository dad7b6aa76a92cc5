"""The chapters' code cells, read from their sources (no build needed).

Bookkeeping stays out of the reader's sight: a cell that only records values
for the text (`glue(...)`) carries the `remove-cell` tag, so the page shows
the code that teaches. Removed cells still run, and the notebook offered for
download (_ext/notebook_downloads.py, which reads the page with jupytext and
pairs its code cells with those myst-nb executed) must keep them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import pytest
from myst_nb.core.read import read_myst_markdown_notebook

from test_book import CHAPTERS, ROOT

HIDDEN = {"remove-cell", "remove-input"}


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def is_glue_only(source: str) -> bool:
    """True when every top-level statement of ``source`` is a call of a function named `glue`."""
    body = ast.parse(source).body
    return bool(body) and all(
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name)
        and statement.value.func.id == "glue"
        for statement in body
    )


def test_is_glue_only() -> None:
    assert is_glue_only('glue("a", 1, display=False)\nglue("b", x.item(), display=False)')
    assert not is_glue_only('x = 1\nglue("a", x, display=False)')
    assert not is_glue_only("for k in ks:\n    glue(k, 1)")
    assert not is_glue_only("")


@pytest.mark.parametrize("file", CHAPTERS)
def test_no_visible_cell_is_only_glue(file: str) -> None:
    offenders = [
        cell.source.splitlines()[0]
        for cell in code_cells(jupytext.read(ROOT / f"{file}.md"))
        if not HIDDEN & set(cell.metadata.get("tags", [])) and is_glue_only(cell.source)
    ]
    assert not offenders, f"{file}: visible cells of glue(...) calls only (tag them remove-cell): {offenders}"


@pytest.mark.parametrize("file", CHAPTERS)
def test_the_download_keeps_every_cell(file: str) -> None:
    """jupytext (the download) and myst-nb (the execution) read the same code cells, tags and removed cells included."""
    path = ROOT / f"{file}.md"
    downloaded = code_cells(jupytext.read(path))
    executed = code_cells(read_myst_markdown_notebook(path.read_text(encoding="utf-8"), path=path))
    assert len(downloaded) == len(executed) == path.read_text(encoding="utf-8").count("```{code-cell}")
    for mine, theirs in zip(downloaded, executed):
        assert mine.source.strip() == theirs.source.strip()
        assert mine.metadata.get("tags", []) == theirs.metadata.get("tags", [])
