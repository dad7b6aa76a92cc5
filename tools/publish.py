"""Publish the built site (both editions) to a gh-pages branch with ghp-import.

    python tools/publish.py                          # push _build/html to origin's gh-pages
    python tools/publish.py --remote NAME --no-push  # commit the branch locally only

The site must hold both editions, and `_build/pdf` their PDFs (`make
publish` builds them all), which land in the site's `pdf/` folder, where
every page's download menu links them. Copies the site into a staging
folder first, leaving out Sphinx's build records (`.buildinfo`,
`.doctrees`), so the branch holds the site and nothing else; ghp-import
adds `.nojekyll`, without which GitHub Pages would not serve `_static/`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
from bilingual import PDF_FILES, PDF_FOLDER  # noqa: E402  (the names the pages link)

SITE = ROOT / "_build" / "html"
PDFS = ROOT / "_build" / "pdf"
LEFT_OUT = shutil.ignore_patterns(".buildinfo", ".doctrees", "__pycache__")


def publish(site: Path, pdfs: Path, remote: str, branch: str, push: bool, repository: Path) -> None:
    if not (site / "index.html").exists() or not (site / "zh" / "index.html").exists():
        raise SystemExit(f"{site} holds no complete site (both editions): run `make book` first")
    missing = [name for name in PDF_FILES.values() if not (pdfs / name).exists()]
    if missing:
        raise SystemExit(f"{pdfs} lacks {', '.join(missing)}, which every page links: run `make pdf` first")
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp, "site")
        shutil.copytree(site, staging, ignore=LEFT_OUT)
        (staging / PDF_FOLDER).mkdir(exist_ok=True)
        for name in PDF_FILES.values():
            shutil.copy2(pdfs / name, staging / PDF_FOLDER / name)
        command = [sys.executable, "-m", "ghp_import", "--no-jekyll", "--force", "--remote", remote,
                   "--branch", branch, "--message", "Publish the book", str(staging)]
        if push:
            command.insert(3, "--push")
        subprocess.run(command, cwd=repository, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--branch", default="gh-pages")
    parser.add_argument("--no-push", action="store_true", help="update the local branch only")
    parser.add_argument("--site", type=Path, default=SITE)
    parser.add_argument("--pdfs", type=Path, default=PDFS, help="the folder holding both editions' PDFs")
    parser.add_argument("--repository", type=Path, default=ROOT, help="the git repository that gets the branch")
    args = parser.parse_args()
    publish(args.site, args.pdfs, args.remote, args.branch, not args.no_push, args.repository)


if __name__ == "__main__":
    main()
