"""`make publish` pushes the site, both editions and nothing else, to gh-pages.

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
    subprocess.run([sys.executable, str(ROOT / "tools" / "publish.py"), "--remote", "pages", "--repository", str(work)],
                   check=True, capture_output=True, text=True)
    return git("ls-tree", "-r", "--name-only", "gh-pages", cwd=target).splitlines()


def test_both_editions_land_on_gh_pages(published: list[str]) -> None:
    files = set(published)
    assert {"index.html", ".nojekyll", "zh/index.html", "book/flows-and-odes.html", "zh/book/flows-and-odes.html"} <= files
    assert "_static/mathjax/tex-chtml.js" in files, "the site's own MathJax is missing"


def test_nothing_but_the_site_is_published(published: list[str]) -> None:
    unwanted = [
        name for name in published
        if name.endswith((".buildinfo", ".doctree", ".pickle", ".safetensors", ".pt", ".ckpt"))
        or any(part in {".jupyter_cache", ".doctrees", "doctrees", "jupyter_execute", "editions", "gettext"}
               for part in Path(name).parts)
    ]
    assert not unwanted, unwanted[:20]
