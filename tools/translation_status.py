"""How complete each translation is, measured against the current English text.

    python tools/translation_status.py          # after `make translations`

Compares each message template of `_build/gettext/templates` (what the English book
says now, figures included) with the catalogue under `locales/<language>/`,
and lists per page the messages that are missing, untranslated or fuzzy,
and the translations whose roles, cross-references or maths differ from the
English. Exits with status 1 when anything is left to do.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import yaml
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "_build" / "gettext" / "templates"
LOCALES = ROOT / "locales"
LANGUAGES = ["zh_CN"]


def toc_documents() -> list[str]:
    """Every page of `_toc.yml`, root included, as Sphinx docnames."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]]
    for part in toc.get("parts", []):
        names += [chapter["file"] for chapter in part["chapters"]]
    return [name.removesuffix(".md") for name in names]


def _read(path: Path):
    with path.open("rb") as handle:
        return read_po(handle)


def missing_translations(language: str, templates: Path = TEMPLATES, locales: Path = LOCALES) -> dict[str, list[str]]:
    """For each page of the table of contents (and the figures), the messages lacking a translation."""
    report: dict[str, list[str]] = {}
    for domain in [*toc_documents(), "figures"]:
        template = templates / f"{domain}.pot"
        if not template.exists():
            report[domain] = [f"(no template {template.relative_to(ROOT)}: run `make translations`)"]
            continue
        catalogue_path = locales / language / "LC_MESSAGES" / f"{domain}.po"
        catalogue = _read(catalogue_path) if catalogue_path.exists() else None
        missing = []
        for message in _read(template):
            if not message.id:
                continue
            entry = catalogue.get(message.id) if catalogue is not None else None
            if entry is None or not entry.string or entry.fuzzy:
                missing.append(message.id)
        report[domain] = missing
    return report


ROLE = re.compile(r"\{[a-z:]+\}`[^`]*`")
MATHS = re.compile(r"\$\$.+?\$\$|\$[^$]+\$", re.S)


def markup(text: str) -> Counter:
    """What a translation must carry over verbatim: roles with their targets, and maths."""
    return Counter(ROLE.findall(text)) + Counter(m.strip() for m in MATHS.findall(ROLE.sub("", text)))


def markup_mismatches(language: str, locales: Path = LOCALES) -> list[str]:
    """Translated messages whose roles, cross-references or maths differ from the English."""
    problems = []
    for catalogue_path in sorted((locales / language / "LC_MESSAGES").rglob("*.po")):
        for message in _read(catalogue_path):
            if not message.id or not message.string or message.fuzzy:
                continue
            lost, added = markup(message.id) - markup(message.string), markup(message.string) - markup(message.id)
            if lost or added:
                where = catalogue_path.relative_to(locales)
                problems.append(f"{where}: {message.id[:60]!r} lost {sorted(lost)} added {sorted(added)}")
    return problems


def main() -> int:
    complete = True
    for language in LANGUAGES:
        print(f"{language}:")
        for domain, missing in missing_translations(language).items():
            template = TEMPLATES / f"{domain}.pot"
            total = sum(1 for m in _read(template) if m.id) if template.exists() else 0
            print(f"  {domain:40s} {total - len(missing):5d} / {total:<5d} translated")
            for message in missing[:5]:
                print(f"      missing: {message[:90]!r}")
            complete &= not missing
        for problem in markup_mismatches(language):
            print(f"  markup differs: {problem}")
            complete = False
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
