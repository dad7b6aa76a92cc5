"""The whole book: a full build with warnings as errors, then checks on the HTML it wrote.

Runs with `make test` (or `pytest --run-book`); it builds into `_build/`, the
folder `make book` uses, so both share one execution cache.
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"

pytestmark = pytest.mark.book


def toc_entries() -> list[tuple[str, str]]:
    """``(part caption, file)`` for every page of the table of contents, the root included."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [("", toc["root"])]
    for part in toc.get("parts", []):
        entries += [(part["caption"], chapter["file"]) for chapter in part["chapters"]]
    return entries


CHAPTERS = [file for caption, file in toc_entries() if caption.startswith("Part")]


@pytest.fixture(scope="module")
def build() -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "--warningiserror", "--nitpick", "--keep-going"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        pytest.fail(f"the book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


@cache
def page(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def test_build_succeeds_without_warnings(build) -> None:
    assert "WARNING" not in build.stdout + build.stderr
    assert (HTML / "index.html").exists()


@pytest.mark.parametrize("_caption,file", toc_entries())
def test_every_page_of_the_toc_is_built(build, _caption: str, file: str) -> None:
    assert (HTML / f"{file}.html").exists()


@pytest.mark.parametrize("file", CHAPTERS)
def test_chapter_has_maths_figures_and_no_cell_errors(build, file: str) -> None:
    soup = page(HTML / f"{file}.html")
    article = soup.select_one("article") or soup
    assert article.select(".math"), "no typeset maths on the page"
    figures = [img for img in article.select(".cell_output img") if img.get("src", "").endswith(".png")]
    assert figures, "no figure produced by a cell"
    assert all(img.get("alt") for img in figures), "a figure without alt text"
    assert not article.select(".output.error, .output.traceback"), "a cell raised an error"
    assert not article.select(".output.stderr"), "a cell wrote to stderr"
    assert "{glue" not in article.get_text(), "an unresolved glue reference"


@pytest.mark.parametrize("file", CHAPTERS)
def test_chapter_ends_with_summary_exercises_and_references(build, file: str) -> None:
    soup = page(HTML / f"{file}.html")
    headings = [h.get_text(" ", strip=True).rstrip("#").strip() for h in soup.select("article h2")]
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
    broken = []
    for html_file in sorted(HTML.rglob("*.html")):
        if "_static" in html_file.parts or "_sources" in html_file.parts:
            continue
        for ref, target, fragment in internal_targets(html_file):
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{html_file.relative_to(HTML)}: {ref} (missing file)")
            elif fragment and target.suffix == ".html" and not page(target).find(id=fragment):
                broken.append(f"{html_file.relative_to(HTML)}: {ref} (missing anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:50])
