"""Write the character corpus of Chapter 18: the English prose of chapters 1–17, lower-cased, as plain text.

The corpus is a snapshot: ``assets/data/book-prose.txt`` is committed and the
recipe ``text-masked-diffusion`` pins its SHA-256, so later edits of the book
do not make the checkpoint stale. Rerun this script only to refresh the
snapshot (and then retrain). What is kept: paragraphs of prose. What is
dropped: code cells, directives' options, display maths, tables, headings'
markup, inline maths, roles' markup (``{ref}`label``` keeps nothing, ``{term}`x```
keeps ``x``), links' targets, and every character outside the alphabet of
:data:`flowdiff.characters.PROSE_ALPHABET`.

Usage: ``python tools/make_prose_corpus.py [--output assets/data/book-prose.txt]``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from flowdiff.characters import PROSE_ALPHABET

ROOT = Path(__file__).resolve().parent.parent
TEXT_ROLES = ("term", "index", "doc")  # roles whose content is prose; others ({ref}, {eq}, {cite:p}, ...) are dropped


def chapters() -> list[Path]:
    """The chapters' files in the order of the table of contents, up to Chapter 17."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [entry["file"] for part in toc.get("parts", []) for entry in part.get("chapters", [])]
    paths = [ROOT / f"{name}.md" for name in files]
    return [p for p in paths if p.exists() and p.stem not in ("glossary", "notation", "bibliography", "reproducibility", "discrete-data")]


def prose(markdown: str) -> str:
    """The prose paragraphs of one MyST notebook, lower-cased, on one line each."""
    text = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.S)  # jupytext header
    text = re.sub(r"^(`{3,}|:{3,})\{code-cell\}.*?^\1\s*$", "", text, flags=re.S | re.M)
    text = re.sub(r"^\s*(`{3,}|~{3,}).*?^\s*\1\s*$", "", text, flags=re.S | re.M)  # every other fenced block
    text = re.sub(r"^\$\$.*?\$\$", "", text, flags=re.S | re.M)
    text = re.sub(r"\(\([a-z0-9-]+\)\)=", "", text)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if not re.match(r"\s*(:::|```|:[a-z-]+:|\||#|\(|\+\+\+|<|!\[|\{)", line)]
        paragraph = " ".join(line.strip().lstrip("-*0123456789. ") if re.match(r"\s*([-*]|\d+\.)\s", line) else line.strip() for line in lines)
        paragraph = re.sub(r"\$[^$]*\$", "", paragraph)
        paragraph = re.sub(r"\{(" + "|".join(TEXT_ROLES) + r")\}`([^`<]*?)(\s*<[^>]*>)?`", r"\2", paragraph)
        paragraph = re.sub(r"\{[a-z:]+\}`[^`]*`", "", paragraph)
        paragraph = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", paragraph)
        paragraph = re.sub(r"[*_`]", "", paragraph).lower()
        paragraph = "".join(c for c in paragraph if c in PROSE_ALPHABET)
        paragraph = re.sub(r"\s+", " ", paragraph).strip()
        paragraph = re.sub(r"\s+([.,;:?!)])", r"\1", paragraph)
        paragraph = re.sub(r"\(\s*\)", "", paragraph)
        letters = sum(c.isalpha() or c == " " for c in paragraph)
        if len(paragraph.split()) >= 8 and letters >= 0.9 * len(paragraph):  # a sentence, not a stub or a line of code
            paragraphs.append(paragraph)
    return "\n".join(paragraphs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "assets" / "data" / "book-prose.txt")
    output = parser.parse_args().output
    output.write_text("\n".join(prose(path.read_text()) for path in chapters()) + "\n")
    print(f"{output}: {output.stat().st_size:,} characters from {len(chapters())} chapters")


if __name__ == "__main__":
    main()
