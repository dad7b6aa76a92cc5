"""Drop the ``python-format`` flags that Babel guesses for the book's messages.

    python tools/drop_format_flags.py      # `make translations` runs it after sphinx-intl

Babel flags every message that looks like a %-format string, and a sentence
such as "98 % of the digits" does ("% o" reads as a conversion). No message
of the book is ever %-formatted, but `msgfmt -c` checks flagged messages and
rejects a translation such as "98 % 的数字". Only the flag lines change; the
rest of each catalogue stays byte for byte as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "locales"
FLAG = "python-format"


def without_python_format(text: str) -> str:
    """The catalogue ``text`` with ``python-format`` removed from its flag lines."""
    lines = []
    for line in text.split("\n"):
        if line.startswith("#,"):
            flags = [flag.strip() for flag in line[2:].split(",")]
            kept = [flag for flag in flags if flag and flag != FLAG]
            if not kept:
                continue  # the line held no other flag
            line = f"#, {', '.join(kept)}"
        lines.append(line)
    return "\n".join(lines)


def main(locales: Path = LOCALES) -> int:
    changed = 0
    for catalogue in sorted(locales.rglob("*.po")):
        text = catalogue.read_text(encoding="utf-8")
        cleaned = without_python_format(text)
        if cleaned != text:
            catalogue.write_text(cleaned, encoding="utf-8")
            changed += 1
    print(f"python-format flags dropped from {changed} catalogues")
    return 0


if __name__ == "__main__":
    sys.exit(main())
