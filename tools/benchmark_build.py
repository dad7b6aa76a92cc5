"""Benchmark the book's build from an empty execution cache.

    python tools/benchmark_build.py     # or: make benchmark

Removes the execution cache and the built sites (the pinned downloads under
_build stay), then times the English edition (which runs every notebook) and
the Chinese edition (which reuses that execution), and reads each notebook's
execution time from the cache. Writes _build/benchmarks/build.json and a
Markdown table, build.md, and prints the table.

Target (issue "The Chinese edition"): the Chinese edition costs at most 50 %
of the English build time on top of it.
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


def main() -> int:
    for stale in (".jupyter_cache", "html", "editions", "doctrees", "jupyter_execute"):
        shutil.rmtree(BUILD / stale, ignore_errors=True)
    english = timed_build("--only", "en")
    chinese = timed_build("--only", "zh_CN")
    overhead = chinese / english
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
        "english_seconds": round(english, 1),
        "chinese_seconds": round(chinese, 1),
        "chinese_overhead": round(overhead, 3),
        "chinese_overhead_target": CHINESE_OVERHEAD_TARGET,
        "meets_target": overhead <= CHINESE_OVERHEAD_TARGET,
        "notebook_execution_seconds": notebook_times(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "build.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "| build | seconds |",
        "|---|---|",
        f"| English edition, empty execution cache | {english:.1f} |",
        f"| Chinese edition, reusing the execution | {chinese:.1f} ({100 * overhead:.0f} % of English; target <= {100 * CHINESE_OVERHEAD_TARGET:.0f} %) |",
        *[f"| executing `{name}` | {seconds} |" for name, seconds in report["notebook_execution_seconds"].items()],
    ]
    (OUT / "build.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
