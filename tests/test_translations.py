"""The Chinese edition is complete and current: every message of every page of the
table of contents, and every text of every figure, has a non-fuzzy translation,
and the built Chinese pages show no English prose beyond what they show on purpose.

Extracts the messages of the English text as it is now (a gettext build, which
reuses the execution cache) and compares them with the catalogues in locales/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup, Comment

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


# ---------------------------------------------------------------------------
# English that leaks into the built Chinese pages.

ZH_SITE = ROOT / "_build" / "html" / "zh"
# A run of four or more English words reads as an untranslated sentence; shorter
# runs are names, terms kept in English on purpose (U-Net, Stable Diffusion), or units.
ENGLISH_RUN = re.compile(r"[A-Za-z][\w'’-]*(?:[ \t\n\xa0,;:]+[A-Za-z][\w'’-]*){3,}")
# What a Chinese page shows in English on purpose: code and its outputs, maths
# (MathJax's source and output), citations and the bibliography, the English
# original beside each translation (class given by _ext/bilingual.py), and the
# machinery of the page that no reader sees.
EXEMPT = ", ".join([
    "script", "style", "template", "noscript", "code", "pre", "kbd", "samp",
    ".highlight", ".cell_input", ".cell_output .output", ".math", "mjx-container",
    ".citation", ".bibliography", ".bibtex-citation", "[role=doc-biblioref]", ".footnote",
    ".bilingual-en",
])
# Proper names of four or more words, kept in English in the Chinese text because
# that is how readers will find them.
PROPER_NAMES = [
    "An Introduction to Flow Matching and Diffusion Models",  # the MIT 6.S184 notes the book follows
    "Flow Matching Guide and Code",  # Meta's guide, whose code the package's design borrows from
]
INLINE = {"span", "a", "em", "strong", "b", "i", "sub", "sup", "small", "abbr", "cite", "q", "mark", "u", "s"}
QUOTED = re.compile(r'"[^"]*"|“[^”]*”')
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+")


def english_leaks(html: str) -> list[str]:
    """Texts of the Chinese page ``html`` that hold a run of English prose, one entry per text.

    The page's visible text outside the exempt parts is read block by block
    (inline markup does not break a sentence), and so are the figures' alt
    texts, which a screen reader speaks. Part captions of the table of
    contents read "中文 / English" by design (_ext/bilingual.py), and quoted
    English ("a thin zero leaning left", “a thick seven”) is the data the
    book talks about, the sentences its text-conditioned model reads: both
    stay as they are.
    """
    soup = BeautifulSoup(html, "html.parser")
    alts = [img.get("alt", "") for img in soup.find_all("img")]
    for element in soup.select(EXEMPT):
        element.decompose()
    for caption in soup.select(".caption-text"):
        translated, slash, _ = caption.get_text().partition(" / ")
        if slash and CJK.search(translated):
            caption.string = translated
    blocks: dict[int, list[str]] = {}
    for string in soup.find_all(string=True):
        if isinstance(string, Comment):
            continue
        block = next(parent for parent in string.parents if parent.name not in INLINE)
        blocks.setdefault(id(block), []).append(str(string))
    leaks = []
    for text in ["".join(parts) for parts in blocks.values()] + alts:
        text = QUOTED.sub(" · ", " ".join(text.split()))
        for name in PROPER_NAMES:
            text = text.replace(name, " · ")
        if ENGLISH_RUN.search(text):
            leaks.append(text if len(text) <= 150 else text[:147] + "...")
    return list(dict.fromkeys(leaks))


def chinese_pages() -> list[Path]:
    """The Chinese twin of every page of the table of contents."""
    return [ZH_SITE / f"{name}.html" for name in toc_documents()]


def test_english_leaks_finds_prose_and_spares_what_is_english_on_purpose() -> None:
    page_html = (
        '<p>样本<em>向量场</em>。The model <a href="#">is trained</a> here.</p>'
        '<p>中文<span class="math">\\(x = a b c d\\)</span> <code>load the data now</code></p>'
        '<p class="bilingual-en">The English original stays visible.</p>'
        '<p>提示词“a thick seven leaning left”。</p>'
        '<figure><img alt=\'三幅图，提示词 "a thin zero leaning left"。\'><img alt="Two rows of digits here"></figure>'
        '<table><tr><td>classifier guidance of a model</td><td>分类器引导</td></tr></table>'
    )
    assert english_leaks(page_html) == ["样本向量场。The model is trained here.", "classifier guidance of a model",
                                        "Two rows of digits here"]
    caption = '<p class="caption"><span class="caption-text">第二部分：训练 / Part II: Training flow and diffusion models</span></p>'
    assert english_leaks(caption) == []
    assert english_leaks(caption.replace("第二部分：训练 / ", "")) == ["Part II: Training flow and diffusion models"]


def test_no_english_prose_on_chinese_pages(build) -> None:
    pages = chinese_pages()
    assert pages, f"no Chinese page under {ZH_SITE}"
    leaks = [f"{page.relative_to(ZH_SITE)}: {leak}"
             for page in pages for leak in english_leaks(page.read_text(encoding="utf-8"))]
    assert not leaks, f"{len(leaks)} runs of English prose on Chinese pages:\n" + "\n".join(leaks)


def test_english_originals_read_as_on_the_english_page(build) -> None:
    """The English copies carry no Chinese the English page lacks: cross-references
    name sections, pages and proofs in English (the glossary's "中文：" names are on both)."""
    found = []
    for page in chinese_pages():
        twin = ZH_SITE.parent / page.relative_to(ZH_SITE)
        on_english_page = set(CJK.findall(BeautifulSoup(twin.read_text(encoding="utf-8"), "html.parser").get_text()))
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for copy in soup.select(".bilingual-en"):
            for element in copy.select(EXEMPT.replace(".bilingual-en", "script")):
                element.decompose()
            text = " ".join(copy.get_text().split())
            if set(CJK.findall(text)) - on_english_page:
                found.append(f"{page.relative_to(ZH_SITE)}: {text[:160]}")
    assert not found, f"{len(found)} English originals show Chinese:\n" + "\n".join(found[:40])
