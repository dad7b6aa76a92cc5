"""Build the book's editions with Jupyter Book 1's Sphinx driver.

    python tools/build_book.py html            # English at _build/html, Chinese at _build/html/zh
    python tools/build_book.py html --only en  # one edition
    python tools/build_book.py linkcheck       # check external links (needs the network)
    python tools/build_book.py gettext         # message templates (.pot) at _build/gettext/templates,
                                               # figures.pot with the figures' texts
    python tools/build_book.py pdf             # both editions as PDF (XeLaTeX) at _build/pdf

Every edition reads `_config.yml` and `_toc.yml` exactly as `jupyter-book
build` does, but each builder gets its own doctree folder (sharing one
breaks the second build) and all of them share one execution cache, so the
notebooks run once, for the English edition, and the Chinese edition and the
gettext extraction reuse those outputs. Timings go to _build/build-times.json.

The build never trains: it sets FLOWDIFF_NO_TRAINING for the notebooks'
kernels, so a chapter that finds its checkpoint missing or stale stops the
build at once with the `python -m flowdiff.train NAME` command that
retrains it. The execution cache is keyed on code cells only, so the build
clears it (and the doctrees) whenever the package, assets/ or the figures'
translations changed since the last build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The book's Sphinx extensions, which also own names this driver shares (the PDFs' file names, the
# interactive figures' texts): importable as Sphinx imports them.
sys.path.insert(0, str(ROOT / "_ext"))
BUILD = ROOT / "_build"
CACHE = BUILD / ".jupyter_cache"
LOCALES = ROOT / "locales"
VENDOR = BUILD / "vendor"
TEMPLATES = BUILD / "gettext" / "templates"

# MathJax is served by the site itself, so that maths renders offline. The
# pinned release comes from the npm registry; only the parts the pages use
# (TeX input with its extensions, CommonHTML output and fonts, the menu,
# assistive MathML) are copied, not the 4 MB speech engine.
MATHJAX_VERSION = "3.2.2"
MATHJAX_SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
MATHJAX_PARTS = ["tex-chtml.js", "output/chtml", "input/tex/extensions", "a11y", "ui"]

# Figures of the Chinese edition are drawn with Noto Sans SC (SIL Open Font
# Licence), taken from the npm registry, so no system font is needed.
FONT_PACKAGE = "@expo-google-fonts/noto-sans-sc@0.4.3"
FONT_SHA256 = "0d69d0f4971d2ff574e3d93cbc218dc950bf3f3f8f8e2c008d97687ed53aee59"
FONT_MEMBER = "package/400Regular/NotoSansSC_400Regular.ttf"
FONT = BUILD / "fonts" / "NotoSansSC-Regular.ttf"

FINGERPRINT = BUILD / ".inputs-fingerprint"

# The PDF editions: Sphinx's LaTeX builder through the same driver and execution cache, then XeLaTeX.
PDF = BUILD / "pdf"
LATEX_SUPPORT = ROOT / "_ext" / "latex"
AUTHOR = "The flowdiff authors"

SITE = BUILD / "html"
EDITIONS = {
    # language code -> (Sphinx output folder, folder in the site, html title)
    "en": (SITE, SITE, "Flow Matching and Diffusion Models"),
    "zh_CN": (BUILD / "editions" / "zh", SITE / "zh", "流匹配与扩散模型"),
}


def npm_package(spec: str, sha256: str, destination: str) -> Path:
    """Download the npm package ``spec`` into ``destination``, check its SHA-256, unpack it."""
    if shutil.which("npm") is None:
        raise SystemExit(f"npm is needed once to fetch {spec} for the site: install Node.js and npm")
    before = set(Path(destination).glob("*.tgz"))
    subprocess.run(["npm", "pack", spec, "--pack-destination", destination, "--silent"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tarball,) = set(Path(destination).glob("*.tgz")) - before
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{spec} has SHA-256 {digest}, expected {sha256}")
    with tarfile.open(tarball) as archive:
        archive.extractall(destination, filter="data")
    return Path(destination, "package")


def vendor_mathjax() -> None:
    """Install the pinned MathJax under _build/vendor/mathjax (a static path of the site) once."""
    target = VENDOR / "mathjax"
    if (target / "tex-chtml.js").exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        package = npm_package(f"mathjax@{MATHJAX_VERSION}", MATHJAX_SHA256, tmp)
        staging = VENDOR / "mathjax.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for part in MATHJAX_PARTS:
            source, destination = package / "es5" / part, staging / part
            destination.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, destination)
        staging.rename(target)


def vendor_font() -> None:
    """Install the CJK font that the Chinese figures are drawn with, once."""
    if FONT.exists():
        return
    FONT.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        package = npm_package(FONT_PACKAGE, FONT_SHA256, tmp)
        shutil.copy2(package.parent / FONT_MEMBER, FONT.with_suffix(".partial"))
    FONT.with_suffix(".partial").rename(FONT)


def figure_translations() -> None:
    """Hand the figures' catalogue to the notebook kernels (see flowdiff.translated_figures)."""
    from babel.messages.pofile import read_po

    catalogue = LOCALES / "zh_CN" / "LC_MESSAGES" / "figures.po"
    translations = {}
    if catalogue.exists():
        with catalogue.open("rb") as handle:
            translations = {m.id: m.string for m in read_po(handle) if m.id and m.string and not m.fuzzy}
    target = BUILD / "figure-translations.zh_CN.json"
    target.write_text(json.dumps(translations, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    os.environ["FLOWDIFF_FIGURE_TRANSLATIONS"] = str(target)
    os.environ["FLOWDIFF_FIGURE_FONT"] = str(FONT)


def write_figures_template() -> None:
    """Collect the figures' texts from the executed notebooks into <templates>/figures.pot.

    flowdiff.translated_figures records, in each figure's output metadata, the
    texts that need a translation, and flowdiff.plotting the alt text of each
    animation (which the Chinese edition swaps in, see _ext/bilingual.py). The notebooks come from the execution cache
    (the newest record of each), which every builder shares. The interactive figures' texts come from their
    scripts (_ext/interactive.py).
    """
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po
    from jupyter_cache import get_cache

    cache = get_cache(CACHE)
    newest = {}
    for record in cache.list_cache_records():
        if record.uri not in newest or record.created > newest[record.uri].created:
            newest[record.uri] = record
    catalogue = Catalog(project="figures", charset="utf-8")
    for uri, record in sorted(newest.items()):
        location = Path(uri).relative_to(ROOT).as_posix()
        for cell in cache.get_cache_bundle(record.pk).nb.cells:
            for output in cell.get("outputs", []):
                metadata = output.get("metadata", {})
                # A figure's texts (flowdiff.translated_figures), an animation's alt text (flowdiff.plotting).
                for mime_type in ("image/svg+xml", "text/html"):
                    for text in metadata.get(mime_type, {}).get("texts", []):
                        catalogue.add(text, locations=[(location, 0)])
    # The texts of the interactive figures' controls and read-outs (_ext/interactive.py).
    from interactive import interactive_strings

    for text in interactive_strings():
        catalogue.add(text, locations=[("_ext/static/interactive-figures.js", 0)])
    with (TEMPLATES / "figures.pot").open("wb") as handle:
        write_po(handle, catalogue, omit_header=False, sort_output=True)


def inputs_fingerprint(root: Path = ROOT) -> str:
    """SHA-256 over the files the notebooks' outputs depend on besides their code cells: the package
    (code/flowdiff), assets/ (checkpoints, benchmarks) and the figures' translations (locales/**/figures.po)."""
    files = [p for p in (root / "code" / "flowdiff").rglob("*") if p.is_file() and p.suffix != ".pyc"]
    files += [p for p in (root / "assets").rglob("*") if p.is_file()]
    files += list((root / "locales").rglob("figures.po"))
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def guard_execution_cache(root: Path = ROOT) -> bool:
    """Clear the execution cache and the doctrees (so every page is read and its notebook run again) when
    the package, assets/ or the figures' translations changed since the last build; return whether it did."""
    build = root / "_build"
    fingerprint, recorded = inputs_fingerprint(root), build / FINGERPRINT.name
    if recorded.exists() and recorded.read_text().strip() == fingerprint:
        return False
    print("flowdiff, assets/ or the figure translations changed: clearing the execution cache")
    shutil.rmtree(build / CACHE.name, ignore_errors=True)
    shutil.rmtree(build / "doctrees", ignore_errors=True)
    build.mkdir(exist_ok=True)
    recorded.write_text(fingerprint + "\n")
    return True


def forbid_training() -> None:
    """The notebooks' kernels inherit FLOWDIFF_NO_TRAINING: a missing or stale checkpoint fails the build in
    seconds (flowdiff.artifacts.load_or_train) instead of starting an hour of training inside it."""
    os.environ["FLOWDIFF_NO_TRAINING"] = "1"


def sphinx_build(builder: str, outdir: Path, language: str) -> float:
    """Run one Sphinx build with warnings as errors; return its wall time in seconds."""
    from jupyter_book.sphinx import build_sphinx

    overrides = {
        "external_toc_path": (ROOT / "_toc.yml").as_posix(),
        "nitpicky": True,
        "language": language,
        "locale_dirs": [LOCALES.as_posix()],
        "gettext_compact": False,
        "nb_execution_cache_path": CACHE.as_posix(),
        "latex_individualpages": False,
    }
    if builder == "html":
        overrides["html_title"] = EDITIONS[language][2]
        # Figures carry their translated rendering as SVG (flowdiff.translated_figures):
        # the English edition ranks it after the PNG, the others keep myst-nb's order.
        if language == "en":
            overrides["nb_mime_priority_overrides"] = [("html", "image/svg+xml", 60)]
        elif language == "zh_CN":
            # The toggle of a `hide-input` cell; myst-nb fills "{type}" with an English
            # word ("source"), so the Chinese prompts leave it out.
            overrides["nb_code_prompt_show"] = "显示代码"
            overrides["nb_code_prompt_hide"] = "隐藏代码"
    elif builder == "latex":
        overrides |= latex_settings(language)
    elif builder == "gettext":
        # myst-nb's gettext builder keeps only the text outputs of a cell, so the
        # figures' alt texts (their image nodes) would never reach the catalogues.
        # Ranked first, the PNG keeps its image node, and Sphinx extracts its alt.
        overrides["nb_mime_priority_overrides"] = [("gettext", "image/png", 5)]
    start = time.perf_counter()
    result = build_sphinx(
        ROOT,
        outdir,
        noconfig=True,
        path_config=str(ROOT / "_config.yml"),
        confoverrides=overrides,
        builder=builder,
        doctreedir=BUILD / "doctrees" / f"{builder}-{language}",
        warningiserror=True,
        keep_going=True,
    )
    if result != 0:
        raise SystemExit(f"the {builder} build ({language}) failed: see the warnings above")
    return time.perf_counter() - start


# The Chinese edition's headings: "第 1 章" over a chapter and in the running heads, and the names LaTeX
# writes itself. Babel knows no Chinese and sets the English names when the document begins, so these are
# set after it.
CHINESE_PREAMBLE = r"""\makeatletter
\renewcommand{\DOCH}{\raggedleft\CNV\FmN{第}\,\CNoV\thechapter\,\CNV\FmN{章}\par\nobreak\vskip 40\p@}
\def\@chappos{章\quad}
\AtBeginDocument{%
  \renewcommand{\chaptername}{第}\renewcommand{\appendixname}{附录}%
  \renewcommand{\contentsname}{目录}\renewcommand{\bibname}{参考文献}\renewcommand{\indexname}{索引}}
\makeatother
"""


def latex_settings(language: str) -> dict:
    """The LaTeX builder's settings of one edition: XeLaTeX, the CJK fonts (the English edition's glossary
    holds Chinese too), PNG figures, and a stub for a package jupyterBook.cls loads but the book never uses."""
    from bilingual import PDF_FILES

    cjk = (
        # Noto Serif CJK has no italic: emphasis in Chinese is set in the sans (黑体), as Chinese books do.
        "\\usepackage{xeCJK}\n\\setCJKmainfont{Noto Serif CJK SC}[ItalicFont=Noto Sans CJK SC]\n"
        "\\setCJKsansfont{Noto Sans CJK SC}\n\\setCJKmonofont{Noto Sans Mono CJK SC}\n"
        # The running heads hold CJK text, taller than the 12pt fancyhdr expects.
        "\\setlength{\\headheight}{14pt}\n"
        # The parts' titles carry their numbers ("Part I: Foundations", "第一部分：基础"): no "Part I" above them.
        "\\AtBeginDocument{\\renewcommand{\\partname}{}\\renewcommand{\\thepart}{}}\n"
    )
    if language == "en":
        # Curly quotes in English text are Western punctuation, not CJK (xeCJK would widen them).
        cjk += "\\xeCJKDeclareCharClass{Default}{\"2018,\"2019,\"201C,\"201D}\n"
    else:
        cjk += CHINESE_PREAMBLE
    return {
        "latex_engine": "xelatex",
        "latex_documents": [("book/index", f"{Path(PDF_FILES[language]).stem}.tex", EDITIONS[language][2], AUTHOR, "jupyterBook")],
        "latex_additional_files": [str(LATEX_SUPPORT / "bbm.sty")],
        # Code in a smaller type than Sphinx's \small: a line of 100 characters fits the page unbroken,
        # so code copied out of the PDF runs (a broken line reaches the clipboard with its "↪").
        "latex_elements": {"preamble": cjk, "fvset": "\\fvset{fontsize=\\footnotesize" + (
            "}" if language == "en" else ",formatcom=\\xeCJKVerbAddon}")},
        "print_title": EDITIONS[language][2],
        # LaTeX cannot include the SVG wrapper of a translated figure: the PNG comes first.
        "nb_mime_priority_overrides": [("latex", "image/png", 5)],
    }


def build_pdf(language: str) -> float:
    """One edition as PDF: the LaTeX sources, then XeLaTeX through the Makefile Sphinx writes; return seconds."""
    outdir = BUILD / "latex" / language
    from bilingual import PDF_FILES, PDF_FOLDER

    start = time.perf_counter()
    sphinx_build("latex", outdir, language)
    name = Path(PDF_FILES[language]).stem
    log = outdir / "xelatex.log"
    with log.open("w") as handle:
        result = subprocess.run(["make", "all-pdf"], cwd=outdir, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0 or not (outdir / f"{name}.pdf").exists():
        raise SystemExit(f"XeLaTeX failed on {outdir / name}.tex: see {log}")
    # At _build/pdf, and where the site's download menus and landing page link it (_ext/bilingual.py).
    for folder in (PDF, SITE / PDF_FOLDER):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(outdir / f"{name}.pdf", folder / f"{name}.pdf")
    print(f"The {language} PDF is at {PDF / name}.pdf")
    return time.perf_counter() - start


def record(times: dict[str, float]) -> None:
    path = BUILD / "build-times.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(previous | {k: round(v, 1) for k, v in times.items()}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=["html", "gettext", "linkcheck", "pdf"])
    parser.add_argument("--only", choices=sorted(EDITIONS), help="build a single edition")
    args = parser.parse_args(argv)

    BUILD.mkdir(exist_ok=True)
    # The notebooks' tensors are small (2-D toys, small batches): one thread per
    # kernel avoids thread start-up and contention costs that, on a busy 2-core
    # machine, made a 2x2 Cholesky factorisation take milliseconds instead of microseconds.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Kernels run in book/, so a relative MNIST root (flowdiff.data) is made absolute here.
    os.environ["FLOWDIFF_DATA"] = str(Path(os.environ.get("FLOWDIFF_DATA", ROOT / "data")).resolve())
    forbid_training()
    guard_execution_cache()
    vendor_mathjax()
    vendor_font()
    figure_translations()
    times = {}
    if args.target == "pdf":
        for language in EDITIONS:
            if args.only in (None, language):
                times[f"pdf-{language}"] = build_pdf(language)
    elif args.target == "linkcheck":
        # Needs the network: checks every external link of the English text.
        times["linkcheck"] = sphinx_build("linkcheck", BUILD / "linkcheck", "en")
    elif args.target == "gettext":
        # In its own folder: myst-nb writes executed notebooks next to the output
        # folder, and the gettext builder's (without outputs) must not replace the
        # English edition's, which the pages offer for download.
        times["gettext"] = sphinx_build("gettext", TEMPLATES, "en")
        write_figures_template()
    else:
        for language, (outdir, folder, _) in EDITIONS.items():
            if args.only in (None, language):
                times[f"html-{language}"] = sphinx_build("html", outdir, language)
                if outdir != folder:
                    # Built beside the site (myst-nb writes its executed notebooks
                    # next to the output folder), then copied into it.
                    shutil.copytree(outdir, folder, dirs_exist_ok=True)
        print(f"The book is at {SITE / 'index.html'}")
        if args.only in (None, "zh_CN"):
            print(f"The Chinese edition is at {EDITIONS['zh_CN'][1] / 'index.html'}")
    record(times)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
