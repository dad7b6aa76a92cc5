"""Benchmark the book's build from an empty execution cache.

    python tools/benchmark_build.py     # or: make benchmark

Works on a copy of the repository in a temporary folder (with the pinned
downloads of _build/vendor and _build/fonts), so it starts from an empty
execution cache and never edits a tracked chapter. There it times the
English edition (which runs every notebook) and the Chinese edition (which
reuses that execution), reads each notebook's execution time from the
cache, times a rebuild of both editions after one paragraph of the copy's
chapter changed, and weighs each chapter page (its HTML and images). It
adds the wall time of the last clean `.ci/run` (which writes
_build/ci-time.json). Writes _build/benchmarks/build.json and a Markdown
table, build.md, and prints the table.

Targets: the Chinese edition costs at most 50 % of the English build time on
top of it; a clean build takes under 15 minutes, a rebuild after editing one
paragraph under 30 s; a chapter page (HTML and images) weighs under 3 MB; a
clean `.ci/run` at most 45 minutes (half of CI's limit).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "benchmarks"
CI_TIME = ROOT / "_build" / "ci-time.json"
CI_TARGET_SECONDS = 45 * 60
CHINESE_OVERHEAD_TARGET = 0.5
CLEAN_BUILD_TARGET_SECONDS = 15 * 60
REBUILD_TARGET_SECONDS = 30
PAGE_WEIGHT_TARGET_BYTES = 3 * 2**20
EDITED_CHAPTER = Path("book") / "flows-and-odes.md"
# What the copy leaves out: version control, the environment, local data and every build output except
# the pinned downloads, which are copied separately so that the benchmark needs no network.
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "_build", "data", "__pycache__", ".pytest_cache", "*.egg-info")
DOWNLOADS = ("vendor", "fonts")


def copy_of_the_repository(destination: Path) -> Path:
    """The tracked sources and the pinned downloads under ``destination``: the benchmark's working tree."""
    shutil.copytree(ROOT, destination, ignore=NOT_COPIED, symlinks=True)
    for folder in DOWNLOADS:
        if (ROOT / "_build" / folder).exists():
            shutil.copytree(ROOT / "_build" / folder, destination / "_build" / folder)
    return destination


def timed_build(tree: Path, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(tree / "tools" / "build_book.py"), "html", *args], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def notebook_times(tree: Path) -> dict[str, float]:
    """Execution time of each notebook, from the jupyter-cache records of the English build."""
    from jupyter_cache import get_cache

    times = {}
    for record in get_cache(tree / "_build" / ".jupyter_cache").list_cache_records():
        name = Path(record.uri).relative_to(tree).as_posix()
        times[name] = round(float(record.data.get("execution_seconds", float("nan"))), 1)
    return dict(sorted(times.items()))


def rebuild_after_editing_a_paragraph(tree: Path) -> float:
    """Both editions rebuilt after one sentence was added to the copy's chapter.

    Starts from the state a writer is in after `make book`: one build of both
    editions together first (the first one after single-edition builds reads
    every page again), then the edit, then the timed rebuild.
    """
    timed_build(tree)
    chapter = tree / EDITED_CHAPTER
    marker = "\n## Summary\n"
    original = chapter.read_text(encoding="utf-8")
    if marker not in original:
        raise SystemExit(f"{EDITED_CHAPTER} has no '## Summary' heading to add the benchmark's sentence before")
    chapter.write_text(original.replace(marker, "\nThis sentence was added by the build benchmark.\n" + marker, 1), encoding="utf-8")
    return timed_build(tree)


def clean_ci_run() -> dict | None:
    """The wall time of the last `.ci/run` (it writes _build/ci-time.json), or None before the first."""
    return json.loads(CI_TIME.read_text()) if CI_TIME.exists() else None


def page_weights(tree: Path) -> dict[str, int]:
    """Bytes of each chapter page and the images it shows, in both editions."""
    from bs4 import BeautifulSoup

    sys.path.insert(0, str(ROOT / "tools"))
    from translation_status import toc_documents

    weights = {}
    for edition in ("", "zh/"):
        for docname in toc_documents():
            page = tree / "_build" / "html" / f"{edition}{docname}.html"
            soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
            images = {(page.parent / img["src"]).resolve() for img in soup.find_all("img", src=True)
                      if not img["src"].startswith(("data:", "http"))}
            weights[f"{edition}{docname}"] = page.stat().st_size + sum(i.stat().st_size for i in images if i.exists())
    return weights


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="flowdiff-benchmark-") as folder:
        tree = copy_of_the_repository(Path(folder) / "book")
        english = timed_build(tree, "--only", "en")
        chinese = timed_build(tree, "--only", "zh_CN")
        executions = notebook_times(tree)
        rebuild = rebuild_after_editing_a_paragraph(tree)
        weights = page_weights(tree)
    overhead = chinese / english
    ci = clean_ci_run()
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
        "english_seconds": round(english, 1),
        "chinese_seconds": round(chinese, 1),
        "chinese_overhead": round(overhead, 3),
        "chinese_overhead_target": CHINESE_OVERHEAD_TARGET,
        "meets_target": overhead <= CHINESE_OVERHEAD_TARGET,
        "clean_build_seconds": round(english + chinese, 1),
        "clean_build_target_seconds": CLEAN_BUILD_TARGET_SECONDS,
        "rebuild_after_one_paragraph_seconds": round(rebuild, 1),
        "rebuild_target_seconds": REBUILD_TARGET_SECONDS,
        "page_bytes": weights,
        "page_bytes_target": PAGE_WEIGHT_TARGET_BYTES,
        "notebook_execution_seconds": executions,
        "ci_run": ci,
        "ci_run_target_seconds": CI_TARGET_SECONDS,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "build.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "| build | seconds |",
        "|---|---|",
        f"| English edition, empty execution cache | {english:.1f} |",
        f"| Chinese edition, reusing the execution | {chinese:.1f} ({100 * overhead:.0f} % of English; target <= {100 * CHINESE_OVERHEAD_TARGET:.0f} %) |",
        f"| both editions, clean (target < {CLEAN_BUILD_TARGET_SECONDS} s) | {english + chinese:.1f} |",
        f"| both editions, after editing one paragraph (target < {REBUILD_TARGET_SECONDS} s) | {rebuild:.1f} |",
        f"| clean `.ci/run`: venv, build, all tests (target <= {CI_TARGET_SECONDS} s) | "
        + (f"{ci['seconds']} (finished {ci['finished']}) |" if ci else "not measured yet: run .ci/run |"),
        *[f"| executing `{name}` | {seconds} |" for name, seconds in report["notebook_execution_seconds"].items()],
        "",
        f"| page (HTML and images) | MB (target < {PAGE_WEIGHT_TARGET_BYTES / 2**20:.0f}) |",
        "|---|---|",
        *[f"| {page} | {size / 2**20:.2f} |" for page, size in weights.items()],
    ]
    (OUT / "build.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
