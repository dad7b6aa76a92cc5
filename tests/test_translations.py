"""The Chinese edition is complete and current: every message of every page of the
table of contents, and every text of every figure, has a non-fuzzy translation.

Extracts the messages of the English text as it is now (a gettext build, which
reuses the execution cache) and compares them with the catalogues in locales/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from translation_status import markup_mismatches, missing_translations, toc_documents  # noqa: E402

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def templates(build) -> Path:
    """Message templates of the current English text (after the HTML build of test_book)."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_book.py"), "gettext"], cwd=ROOT,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        pytest.fail(f"the gettext build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return ROOT / "_build" / "gettext" / "templates"


@pytest.fixture(scope="module")
def missing(templates: Path) -> dict[str, list[str]]:
    return missing_translations("zh_CN", templates)


@pytest.mark.parametrize("domain", [*toc_documents(), "figures"])
def test_every_message_is_translated(missing: dict[str, list[str]], domain: str) -> None:
    assert not missing[domain], (
        f"{len(missing[domain])} messages of {domain} lack a Chinese translation (or are fuzzy); "
        f"run `make translations` and translate them in locales/zh_CN/LC_MESSAGES/{domain}.po. "
        f"First ones: {missing[domain][:5]}"
    )


def test_every_figure_was_drawn_in_chinese(templates: Path) -> None:
    untranslated = []
    for notebook in sorted((ROOT / "_build" / "jupyter_execute").rglob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            for output in cell.get("outputs", []):
                meta = output.get("metadata", {}).get("image/svg+xml", {})
                untranslated += [(notebook.name, text) for text in meta.get("untranslated", [])]
    assert not untranslated, f"figure texts drawn in English in the Chinese edition: {untranslated[:10]}"


def test_translations_keep_roles_references_and_maths() -> None:
    problems = markup_mismatches("zh_CN")
    assert not problems, "\n".join(problems[:20])
