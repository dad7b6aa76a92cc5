"""The whole book: a full build of both editions with warnings as errors, then
checks on the HTML it wrote.

Runs with `make test` (or `pytest --run-book`); it builds into `_build/`, the
folder `make book` uses, so both share one execution cache.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
ZH = HTML / "zh"

pytestmark = pytest.mark.book


def toc_entries() -> list[tuple[str, str]]:
    """``(part caption, file)`` for every page of the table of contents, the root included."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [("", toc["root"])]
    for part in toc.get("parts", []):
        entries += [(part["caption"], chapter["file"]) for chapter in part["chapters"]]
    return entries


CHAPTERS = [file for caption, file in toc_entries() if caption.startswith("Part")]


@cache
def page(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def test_build_succeeds_without_warnings(build) -> None:
    # Sphinx's warnings read "WARNING: ..."; the notebook kernels' own log lines ("WARNING |") are not the book's.
    assert "WARNING:" not in build.stdout + build.stderr
    assert (HTML / "index.html").exists()


@pytest.mark.parametrize("_caption,file", toc_entries())
def test_every_page_of_the_toc_is_built_in_both_editions(build, _caption: str, file: str) -> None:
    assert (HTML / f"{file}.html").exists()
    assert (ZH / f"{file}.html").exists()


@pytest.mark.parametrize("_caption,file", toc_entries())
def test_every_page_links_to_its_twin(build, _caption: str, file: str) -> None:
    for here, twin in ((HTML, ZH), (ZH, HTML)):
        html_file = here / f"{file}.html"
        switch = page(html_file).find("template", id="book-language-switch")
        assert switch is not None, f"{html_file} has no language switch"
        links = BeautifulSoup(switch.decode_contents(), "html.parser").find_all("a")
        targets = {(html_file.parent / a["href"]).resolve() for a in links}
        assert (twin / f"{file}.html").resolve() in targets


@pytest.mark.parametrize("file", CHAPTERS)
def test_chinese_chapter_is_bilingual(build, file: str) -> None:
    soup = page(ZH / f"{file}.html")
    assert soup.html.get("lang", "").startswith("zh")
    article = soup.select_one("article")
    english = article.select(".bilingual-en")
    assert english, "no English original next to the translation"
    original = page(HTML / f"{file}.html").select_one("article")
    paragraphs = [p for p in article.select("p") if "bilingual-en" not in p.get("class", [])]
    assert len(english) >= 0.5 * len(original.select("p")), "most paragraphs lack their translation"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in " ".join(p.get_text() for p in paragraphs))
    if article.select(".admonition-title .caption-number"):
        titles = [t.get_text() for t in article.select(".admonition-title .caption-number")]
        assert all(any(w in t for w in ("定义", "定理", "命题", "算法", "引理", "推论", "注", "例", "证明", "练习", "解答"))
                   for t in titles), titles


@pytest.mark.parametrize("edition", [HTML, ZH], ids=["en", "zh"])
def test_no_duplicate_anchor_on_any_page(build, edition: Path) -> None:
    for _, file in toc_entries():
        ids = [tag["id"] for tag in page(edition / f"{file}.html").find_all(id=True)]
        duplicates = {i for i in ids if ids.count(i) > 1}
        assert not duplicates, f"{file}: duplicate ids {sorted(duplicates)[:10]}"


@pytest.mark.parametrize("edition", [HTML, ZH], ids=["en", "zh"])
@pytest.mark.parametrize("file", CHAPTERS)
def test_chapter_has_maths_figures_and_no_cell_errors(build, file: str, edition: Path) -> None:
    soup = page(edition / f"{file}.html")
    article = soup.select_one("article") or soup
    assert article.select(".math"), "no typeset maths on the page"
    figures = [img for img in article.select(".cell_output img") if img.get("src", "").endswith((".png", ".svg"))]
    assert figures, "no figure produced by a cell"
    assert all(img.get("alt") for img in figures), "a figure without alt text"
    assert not article.select(".output.error, .output.traceback"), "a cell raised an error"
    assert not article.select(".output.stderr"), "a cell wrote to stderr"
    assert "{glue" not in article.get_text(), "an unresolved glue reference"


@pytest.mark.parametrize("file", CHAPTERS)
def test_chapter_ends_with_summary_exercises_and_references(build, file: str) -> None:
    soup = page(HTML / f"{file}.html")
    # Section headings carry their numbers ("1.7. Summary").
    headings = [re.sub(r"^[\d.]+\s*", "", h.get_text(" ", strip=True).rstrip("#").strip())
                for h in soup.select("article h2")]
    for wanted in ("Summary", "Exercises", "References"):
        assert any(h.startswith(wanted) for h in headings), f"no '{wanted}' section"
    assert soup.select(".exercise"), "no exercise box"
    assert soup.select("details.dropdown, .solution.dropdown, .dropdown"), "no hidden solution"


def internal_targets(html_file: Path) -> list[tuple[str, Path, str]]:
    """``(href, target file, fragment)`` for each link and image of a page that stays on the site."""
    soup = page(html_file)
    found = []
    for tag, attribute in (("a", "href"), ("img", "src"), ("link", "href"), ("script", "src")):
        for element in soup.find_all(tag):
            ref = element.get(attribute)
            if not ref or ref.startswith(("data:", "mailto:", "javascript:")):
                continue
            parts = urlsplit(ref)
            if parts.scheme or parts.netloc:
                continue
            target = html_file if not parts.path else (html_file.parent / unquote(parts.path)).resolve()
            found.append((ref, target, unquote(parts.fragment)))
    return found


def test_no_broken_internal_link_or_anchor(build) -> None:
    """Every link within the site resolves. The PDFs are placed by `make pdf`, which CI does not run: links
    to them count once they are built (test_pdf.py checks that every page links both)."""
    pdfs_built = (HTML / "pdf").is_dir()
    broken = []
    for html_file in sorted(HTML.rglob("*.html")):
        if "_static" in html_file.parts or "_sources" in html_file.parts:
            continue
        for ref, target, fragment in internal_targets(html_file):
            if target.is_dir():
                target = target / "index.html"
            if target.suffix == ".pdf" and target.parent == HTML / "pdf" and not pdfs_built:
                continue
            if not target.exists():
                broken.append(f"{html_file.relative_to(HTML)}: {ref} (missing file)")
            elif fragment and target.suffix == ".html" and not page(target).find(id=fragment):
                broken.append(f"{html_file.relative_to(HTML)}: {ref} (missing anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:50])


@pytest.mark.parametrize("file", CHAPTERS)
def test_chapter_downloads_as_source_and_executed_notebook(build, file: str) -> None:
    html_file = HTML / f"{file}.html"
    links = {a["href"] for a in page(html_file).select(".dropdown-download-buttons a[href]")}
    suffixes = {Path(href).suffix for href in links}
    assert {".md", ".ipynb"} <= suffixes, links
    # The whole book, both editions, as the site publishes it.
    pdfs = {(html_file.parent / href).resolve() for href in links if href.endswith(".pdf")}
    assert pdfs == {HTML / "pdf" / "flowdiff-book-en.pdf", HTML / "pdf" / "flowdiff-book-zh.pdf"}, links
    notebook_href = next(href for href in links if href.endswith(".ipynb"))
    notebook = json.loads((html_file.parent / notebook_href).read_text(encoding="utf-8"))
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code_cells and any(cell["outputs"] for cell in code_cells)
