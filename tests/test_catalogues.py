"""The Chinese catalogues as files: they compile cleanly and their Markdown renders as meant.

Needs no build of the book: these checks read locales/ only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

ROOT = Path(__file__).resolve().parents[1]
CATALOGUES = sorted((ROOT / "locales").rglob("*.po"))
sys.path.insert(0, str(ROOT / "tools"))

from drop_format_flags import without_python_format  # noqa: E402


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="needs GNU gettext's msgfmt")
@pytest.mark.parametrize("catalogue", CATALOGUES, ids=lambda path: path.stem)
def test_catalogue_passes_msgfmt_check(catalogue: Path) -> None:
    result = subprocess.run(["msgfmt", "-c", "-o", "/dev/null", str(catalogue)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def literal_asterisks(markdown: str) -> list[str]:
    """Text runs of ``markdown`` that show an asterisk, i.e. emphasis markers that did not pair up.

    CommonMark opens emphasis only when ``*`` is not followed by punctuation
    unless preceded by a space or punctuation, so ``的*（标准）…*`` prints its
    asterisks; Chinese full-width brackets and commas are punctuation.
    """
    parser = MarkdownIt("commonmark").use(dollarmath_plugin)
    return [child.content for token in parser.parse(markdown) for child in token.children or []
            if child.type == "text" and "*" in child.content]


def test_literal_asterisks_finds_emphasis_that_does_not_open() -> None:
    assert literal_asterisks("中的*（标准）布朗运动*，也称为") != []
    assert literal_asterisks("中的（标准）*布朗运动*，也称为 *Wiener 过程*。") == []


@pytest.mark.parametrize("catalogue", CATALOGUES, ids=lambda path: path.stem)
def test_translations_show_no_emphasis_markers(catalogue: Path) -> None:
    with catalogue.open("rb") as handle:
        messages = [m for m in read_po(handle) if m.id and m.string]
    broken = [(m.string, literal_asterisks(m.string)) for m in messages
              if "*" in m.string and not literal_asterisks(m.id) and literal_asterisks(m.string)]
    assert not broken, f"emphasis markers shown literally (move them off CJK punctuation): {broken[:5]}"


def test_python_format_flags_are_dropped_and_nothing_else() -> None:
    catalogue = (
        '#: ../../book/a.md:3\n#, python-brace-format, python-format\nmsgid "98 % of {glue:text}`x`"\nmsgstr "x"\n\n'
        '#: ../../book/a.md:5\n#, python-format\nmsgid "10 % of"\nmsgstr "10 %"\n\n#, fuzzy\nmsgid "b"\nmsgstr ""\n'
    )
    assert without_python_format(catalogue) == (
        '#: ../../book/a.md:3\n#, python-brace-format\nmsgid "98 % of {glue:text}`x`"\nmsgstr "x"\n\n'
        '#: ../../book/a.md:5\nmsgid "10 % of"\nmsgstr "10 %"\n\n#, fuzzy\nmsgid "b"\nmsgstr ""\n'
    )
