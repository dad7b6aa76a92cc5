"""`make publish` pushes the site, both editions with their PDFs and nothing else, to gh-pages.

Publishes the built site with tools/publish.py to a local bare repository and
inspects the branch that landed there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.book


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def stand_in_pdfs(folder: Path) -> Path:
    """Two one-page PDFs under the editions' names (the real ones take `make pdf`, which CI does not run)."""
    from matplotlib.figure import Figure

    sys.path.insert(0, str(ROOT / "_ext"))
    from bilingual import PDF_FILES

    folder.mkdir()
    for language, name in PDF_FILES.items():
        figure = Figure()
        figure.text(0.5, 0.5, language)
        figure.savefig(folder / name)
    return folder


def run_publish(work: Path, pdfs: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "publish.py"), "--remote", "pages", "--repository", str(work), "--pdfs", str(pdfs)],
        capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def published(build, tmp_path_factory) -> list[str]:
    base = tmp_path_factory.mktemp("publish")
    target = base / "target.git"
    work = base / "work"
    git("init", "--bare", "--quiet", str(target), cwd=base)
    git("init", "--quiet", str(work), cwd=base)
    git("config", "user.name", "Book", cwd=work)
    git("config", "user.email", "book@localhost", cwd=work)
    git("commit", "--quiet", "--allow-empty", "-m", "start", cwd=work)
    git("remote", "add", "pages", str(target), cwd=work)
    refused = run_publish(work, base / "no-pdfs")
    assert refused.returncode != 0 and "flowdiff-book-en.pdf" in refused.stderr, "published without the PDFs"
    run_publish(work, stand_in_pdfs(base / "pdfs")).check_returncode()
    return git("ls-tree", "-r", "--name-only", "gh-pages", cwd=target).splitlines()


def test_both_editions_land_on_gh_pages(published: list[str]) -> None:
    files = set(published)
    assert {"index.html", ".nojekyll", "zh/index.html", "book/flows-and-odes.html", "zh/book/flows-and-odes.html"} <= files
    assert "_static/mathjax/tex-chtml.js" in files, "the site's own MathJax is missing"
    assert {"pdf/flowdiff-book-en.pdf", "pdf/flowdiff-book-zh.pdf"} <= files, "the PDFs the pages link are missing"


def test_nothing_but_the_site_is_published(published: list[str]) -> None:
    unwanted = [
        name for name in published
        if name.endswith((".buildinfo", ".doctree", ".pickle", ".safetensors", ".pt", ".ckpt"))
        or any(part in {".jupyter_cache", ".doctrees", "doctrees", "jupyter_execute", "editions", "gettext"}
               for part in Path(name).parts)
    ]
    assert not unwanted, unwanted[:20]
