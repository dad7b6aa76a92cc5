"""Benchmark the book's build from an empty execution cache.

    python tools/benchmark_build.py     # or: make benchmark

Removes the execution cache and the built sites (the pinned downloads under
_build stay), then times the English edition (which runs every notebook) and
the Chinese edition (which reuses that execution), reads each notebook's
execution time from the cache, times a rebuild of both editions after one
paragraph of a chapter changed, and weighs each chapter page (its HTML and
images). Writes _build/benchmarks/build.json and a Markdown table, build.md,
and prints the table.

Targets: the Chinese edition costs at most 50 % of the English build time on
top of it; a clean build takes under 15 minutes, a rebuild after editing one
paragraph under 30 s; a chapter page (HTML and images) weighs under 3 MB.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
OUT = BUILD / "benchmarks"
CHINESE_OVERHEAD_TARGET = 0.5
CLEAN_BUILD_TARGET_SECONDS = 15 * 60
REBUILD_TARGET_SECONDS = 30
PAGE_WEIGHT_TARGET_BYTES = 3 * 2**20
EDITED_CHAPTER = ROOT / "book" / "flows-and-odes.md"


def timed_build(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), "html", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def notebook_times() -> dict[str, float]:
    """Execution time of each notebook, from the jupyter-cache records of the English build."""
    from jupyter_cache import get_cache

    times = {}
    for record in get_cache(BUILD / ".jupyter_cache").list_cache_records():
        name = Path(record.uri).relative_to(ROOT).as_posix()
        times[name] = round(float(record.data.get("execution_seconds", float("nan"))), 1)
    return dict(sorted(times.items()))


def rebuild_after_editing_a_paragraph() -> float:
    """Both editions rebuilt after one sentence was added to a chapter (then taken out again).

    Starts from the state a writer is in after `make book`: one build of both
    editions together first (the first one after single-edition builds reads
    every page again), then the edit, then the timed rebuild.
    """
    timed_build()
    original = EDITED_CHAPTER.read_text(encoding="utf-8")
    marker = "\n## Summary\n"
    edited = original.replace(marker, "\nThis sentence was added by the build benchmark.\n" + marker, 1)
    try:
        EDITED_CHAPTER.write_text(edited, encoding="utf-8")
        return timed_build()
    finally:
        EDITED_CHAPTER.write_text(original, encoding="utf-8")
        timed_build()


def page_weights() -> dict[str, int]:
    """Bytes of each chapter page and the images it shows, in both editions."""
    from bs4 import BeautifulSoup

    sys.path.insert(0, str(ROOT / "tools"))
    from translation_status import toc_documents

    weights = {}
    for edition in ("", "zh/"):
        for docname in toc_documents():
            page = BUILD / "html" / f"{edition}{docname}.html"
            soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
            images = {(page.parent / img["src"]).resolve() for img in soup.find_all("img", src=True)
                      if not img["src"].startswith(("data:", "http"))}
            weights[f"{edition}{docname}"] = page.stat().st_size + sum(i.stat().st_size for i in images if i.exists())
    return weights


def main() -> int:
    for stale in (".jupyter_cache", "html", "editions", "doctrees", "jupyter_execute"):
        shutil.rmtree(BUILD / stale, ignore_errors=True)
    english = timed_build("--only", "en")
    chinese = timed_build("--only", "zh_CN")
    overhead = chinese / english
    rebuild = rebuild_after_editing_a_paragraph()
    weights = page_weights()
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
        "notebook_execution_seconds": notebook_times(),
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
