"""The PDF editions (`make pdf`): fonts, text, figures, equations and code as a reader of the PDF gets them.

These tests read `_build/pdf/flowdiff-book-{en,zh}.pdf` with poppler's `pdffonts`
and `pdftotext`; they are skipped until `make pdf` has written the files
(CI builds the HTML editions only).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_book import CHAPTERS, HTML, ROOT

PDF = ROOT / "_build" / "pdf"
EDITIONS = {"en": PDF / "flowdiff-book-en.pdf", "zh": PDF / "flowdiff-book-zh.pdf"}
# What MyST or LaTeX leave behind when something was not rendered.
RESIDUE = ["{eq}", "{ref}", "{numref}", "{prf:", "{glue:", ":::", "$$", "\\(", "\\)", "```", "??"]

pytestmark = pytest.mark.skipif(
    not all(path.exists() for path in EDITIONS.values()) or shutil.which("pdftotext") is None,
    reason="build the PDF editions first: `make pdf`",
)


def run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout


def text_of(edition: str, layout: bool = False) -> str:
    return run("pdftotext", *(["-layout"] if layout else []), str(EDITIONS[edition]), "-")


@pytest.mark.parametrize("edition", EDITIONS)
def test_fonts_are_embedded_outline_fonts(edition: str) -> None:
    rows = run("pdffonts", str(EDITIONS[edition])).splitlines()[2:]
    assert rows, "no fonts"
    assert not [row for row in rows if " Type 3 " in row], "bitmap (Type 3) fonts for text"
    assert not [row for row in rows if re.search(r"\bno\s+(yes|no)\s+(yes|no)\s+\d+\s+\d+\s*$", row)], "a font is not embedded"
    if edition == "zh":
        assert any("CJK" in row for row in rows), "no CJK font in the Chinese edition"


def chapter_titles(edition: str) -> list[str]:
    """Each chapter's title as its HTML page shows it (the <h1>)."""
    site = HTML if edition == "en" else HTML / "zh"
    titles = []
    for chapter in CHAPTERS:
        page = (site / f"{chapter}.html").read_text(encoding="utf-8")
        heading = re.search(r"<h1[^>]*>(.*?)</h1>", page, re.S).group(1)
        # The first text of the heading: the title in this edition (the bilingual copy follows it).
        title = re.sub(r"<[^>]+>", " ", heading.split('class="bilingual-en')[0])
        titles.append(" ".join(title.replace("#", "").split()))
    return titles


@pytest.mark.parametrize("edition", EDITIONS)
def test_every_chapter_title_and_no_markup_residue(edition: str) -> None:
    text = " ".join(text_of(edition).split())
    missing = [title for title in chapter_titles(edition) if title not in text]
    assert not missing, missing
    found = {mark: text.count(mark) for mark in RESIDUE if mark in text}
    assert not found, found


def html_counts(edition: str) -> tuple[int, int]:
    """Numbered figures and numbered equations over all chapters of an edition's HTML."""
    site = HTML if edition == "en" else HTML / "zh"
    figures = equations = 0
    for chapter in CHAPTERS:
        page = (site / f"{chapter}.html").read_text(encoding="utf-8")
        figures += len(re.findall(r'<figcaption>\s*<p><span class="caption-number">', page))
        equations += len(re.findall(r'<span class="eqno">', page))
    return figures, equations


@pytest.mark.parametrize("edition", EDITIONS)
def test_figures_and_equations_match_the_html(edition: str) -> None:
    text = text_of(edition)
    figure_word = "Fig." if edition == "en" else "图"
    pdf_figures = len(set(re.findall(rf"^{re.escape(figure_word)}\s*(\d+\.\d+)[:：]", text, re.M)))
    pdf_equations = len(set(re.findall(r"\((\d+\.\d+)\)\s*$", text, re.M)))
    figures, equations = html_counts(edition)
    assert (pdf_figures, pdf_equations) == (figures, equations)


def test_code_copied_from_the_pdf_runs_through_compile() -> None:
    """Three code cells, as pdftotext extracts them, compile: no curly quotes, ligatures or lost indentation."""
    text = text_of("en", layout=True)
    cells = [
        "test = load_mnist(train=False)",
        "def network_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:",
        "grid_scales = (0.0, 1.0, 2.0, 3.0, 5.0)",
    ]
    for first_line in cells:
        start = text.index(first_line)
        indent = len(text[text.rindex("\n", 0, start) + 1 : start])
        block = []
        for line in text[start - indent :].splitlines():
            if block and line.strip() and len(line) - len(line.lstrip()) < indent:
                break
            if block and not line.strip() and not block[-1].strip():
                break
            block.append(line[indent:])
        compile("\n".join(block).strip() + "\n", first_line, "exec")
