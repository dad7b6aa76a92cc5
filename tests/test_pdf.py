"""The PDF editions (`make pdf`): fonts, text, figures, equations and code as a reader of the PDF gets them.

These tests read `_build/pdf/flowdiff-book-{en,zh}.pdf` with poppler's `pdffonts`
and `pdftotext`; they are skipped until `make pdf` has written the files
(CI builds the HTML editions only).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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


def test_each_interactive_figure_prints_its_static_image_with_a_note() -> None:
    """The web's interactive figures print as their static images, each caption saying so."""
    sys.path.insert(0, str(ROOT / "_ext"))
    from interactive import PRINTED_NOTE

    figures = sum(source.read_text(encoding="utf-8").count("```{interactive-figure}") for source in (ROOT / "book").glob("*.md"))
    assert figures >= 20
    for edition, language in (("en", "en"), ("zh", "zh_CN")):
        text = "".join(text_of(edition).split())
        assert text.count("".join(PRINTED_NOTE[language].split())) == figures, edition


@pytest.mark.parametrize("edition", EDITIONS)
def test_every_proof_ends_with_its_square(edition: str) -> None:
    """Proofs print as text closed by a square (_ext/print_edition.py), one per proof of the sources."""
    proofs = sum(source.read_text(encoding="utf-8").count("{prf:proof}") for source in (ROOT / "book").glob("*.md"))
    assert proofs >= 50
    assert text_of(edition).count("\u25a1") == proofs


def html_counts(edition: str) -> dict[str, int]:
    """Numbered figures, tables and equations over all chapters of an edition's HTML."""
    site = HTML if edition == "en" else HTML / "zh"
    counts = {"figures": 0, "tables": 0, "equations": 0}
    for chapter in CHAPTERS:
        page = (site / f"{chapter}.html").read_text(encoding="utf-8")
        counts["figures"] += len(re.findall(r'<figcaption>\s*<p><span class="caption-number">', page))
        counts["tables"] += len(re.findall(r'<caption><span class="caption-number">', page))
        counts["equations"] += len(re.findall(r'<span class="eqno">', page))
    return counts


# The running foot of a page: "Chapter 3. SDEs, ..." or "第 3 章 ..." on even pages, "3.3. The Ornstein-..." on odd ones.
RUNNING_FOOT = re.compile(r"^(?:Chapter (\d+)\.|第 (\d+) 章|(\d+)\.\d+\. )")


def equation_numbers(text: str) -> set[str]:
    """The numbers "(c.n)" that end a line on a page of chapter c (or on the opening page of chapter c + 1,
    which has no running foot): a number in the prose, "random bytes (10.23)" in Chapter 15, is no equation."""
    numbers, chapter = set(), 0
    for page in text.split("\f"):
        foot = [line.strip() for line in page.splitlines() if line.strip()][-3:]
        for line in foot:
            match = RUNNING_FOOT.match(line)
            if match:
                chapter = int(next(group for group in match.groups() if group))
        for prefix, number in re.findall(r"\((\d+)\.(\d+)\)\s*$", page, re.M):
            if int(prefix) in (chapter, chapter + 1):
                numbers.add(f"{prefix}.{number}")
    return numbers


@pytest.mark.parametrize("edition", EDITIONS)
def test_figures_tables_and_equations_match_the_html(edition: str) -> None:
    text = text_of(edition)
    figure, table = ("Fig.", "Table") if edition == "en" else ("图", "表")
    pdf = {
        "figures": len(set(re.findall(rf"^{figure}\s*(\d+\.\d+)[:：]", text, re.M))),
        "tables": len(set(re.findall(rf"^{table}\s*(\d+\.\d+)[:：]", text, re.M))),
        "equations": len(equation_numbers(text)),
    }
    assert pdf == html_counts(edition)


@pytest.mark.parametrize("edition", EDITIONS)
def test_the_site_links_both_pdfs_where_make_pdf_put_them(edition: str) -> None:
    site = HTML if edition == "en" else HTML / "zh"
    landing = (site / "book" / "index.html").read_text(encoding="utf-8")
    linked = {href for href in re.findall(r'href="([^"]+\.pdf)"', landing)}
    assert {(site / "book" / href).resolve() for href in linked} == {HTML / "pdf" / path.name for path in EDITIONS.values()}
    for path in EDITIONS.values():
        assert (HTML / "pdf" / path.name).read_bytes() == path.read_bytes(), f"the site's {path.name} is stale"


def printed_code_cells(width: int = 90) -> list[str]:
    """The first three visible code cells of each chapter that hold an indented block and fit the printed line."""
    import jupytext

    cells = []
    for chapter in CHAPTERS:
        of_chapter = []
        for cell in jupytext.read(ROOT / f"{chapter}.md").cells:
            tags = set(cell.metadata.get("tags", []))
            lines = cell.source.splitlines()
            if (
                cell.cell_type == "code" and not tags & {"remove-cell", "remove-input", "hide-input"}
                and 3 <= len(lines) <= 25 and max(map(len, lines)) <= width
                and any(line.startswith("    ") for line in lines) and not lines[0].startswith(("%", "!"))
            ):
                of_chapter.append(cell.source)
        cells += of_chapter[:3]
    return cells


def test_code_copied_from_the_pdf_runs_through_compile() -> None:
    """Code cells as pdftotext extracts them compile to the book's code: the same syntax tree (so no lost
    indentation) and the same characters (no curly quotes or ligatures; pdftotext, like a PDF viewer's
    copy, may render runs of spaces differently, which only matters to Python in the indentation the tree
    records). A cell that a page break splits is left out; at least fifteen must be whole."""
    import ast

    text = text_of("en", layout=True).splitlines()
    checked, split = [], []
    for source in printed_code_cells():
        wanted = [line for line in source.splitlines() if line.strip()]
        copies = []
        for start in (i for i, line in enumerate(text) if line.strip() == wanted[0].strip()):
            indent = len(text[start]) - len(text[start].lstrip())
            copies.append("\n".join([line[indent:] for line in text[start:] if line.strip()][: len(wanted)]) + "\n")
        assert copies, f"not in the PDF: {wanted[0]!r}"
        if any("continues on next page" in copy for copy in copies):
            split.append(wanted[0])
            continue
        copy = copies[0] if len(copies) == 1 else next((c for c in copies if c.split() == source.split()), copies[0])
        assert set(copy) - {" ", "\n"} == set(source) - {" ", "\n"}, f"characters changed in {wanted[0]!r}"
        assert ast.dump(ast.parse(copy)) == ast.dump(ast.parse(source)), f"the PDF's copy of {wanted[0]!r} differs"
        checked.append(wanted[0])
    assert len(checked) >= 15, (checked, split)
