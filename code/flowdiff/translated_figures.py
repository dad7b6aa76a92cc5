"""Figures in two languages from one execution (used by every chapter, from Chapter 1 on).

A notebook figure normally reaches the page as one PNG. With translations
installed, each figure shown in a notebook is rendered twice: as the usual
PNG, and again with every text (titles, axis labels, legends, annotations)
replaced by its translation. The second rendering travels in the same output
as an ``image/svg+xml`` document that wraps the translated PNG, so a book
built in two languages runs its notebooks once and lets each edition pick
its rendering by MIME type.

Texts that need a translation are those with a letter outside ``$...$``
maths; tick labels, numbers and pure formulas are left alone. The output's
metadata lists the texts of the figure that need translation and those that
had none (``texts``, ``untranslated``), so a build can check that the
translation is complete and collect new texts for translators.

The book's build switches this on through two environment variables, which
the notebook kernels inherit:

``FLOWDIFF_FIGURE_TRANSLATIONS``
    a JSON file mapping English figure texts to their translations;
``FLOWDIFF_FIGURE_FONT``
    a font file with the glyphs of the translation (for Chinese, a CJK font).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
from pathlib import Path
from typing import Mapping

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = ["needs_translation", "render_translated", "install", "install_from_environment"]

MIME_TYPE = "image/svg+xml"
_MATHS = re.compile(r"\$[^$]*\$")
_LETTER = re.compile(r"[A-Za-z]")


def needs_translation(text: str) -> bool:
    """Whether a figure text has words to translate: a letter outside ``$...$`` maths."""
    return bool(_LETTER.search(_MATHS.sub("", text)))


def _texts(fig: Figure) -> list[Text]:
    return [artist for artist in fig.findobj(Text) if artist.get_visible() and artist.get_text()]


def render_translated(fig: Figure, translations: Mapping[str, str], font: str | None = None) -> tuple[bytes, list[str], list[str]]:
    """Render ``fig`` as PNG with its texts translated, leaving the figure as it was.

    Returns the PNG bytes, the texts that need translation, and those of them
    that ``translations`` lacks (drawn in English).
    """
    texts = _texts(fig)
    wanted = sorted({t.get_text() for t in texts if needs_translation(t.get_text())})
    missing = [text for text in wanted if text not in translations]
    saved = [(t, t.get_text(), t.get_fontfamily()) for t in texts]
    try:
        for artist, original, families in saved:
            if original in translations:
                artist.set_text(translations[original])
                if font:
                    artist.set_fontfamily([font, *families])
        buffer = io.BytesIO()
        # Texts with $maths$ are laid out by mathtext, whose roman font must
        # then carry the translation's glyphs; maths symbols fall back to Computer Modern.
        maths_fonts = {"mathtext.fontset": "custom", "mathtext.rm": font, "mathtext.it": f"{font}:italic",
                       "mathtext.bf": f"{font}:bold", "mathtext.fallback": "cm"} if font else {}
        with matplotlib.rc_context(maths_fonts):
            # Framed like the notebook's own PNG (IPython's inline backend crops tightly).
            fig.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        for artist, original, families in saved:
            artist.set_text(original)
            artist.set_fontfamily(families)
    return buffer.getvalue(), wanted, missing


def _svg_wrapping(png: bytes) -> str:
    # A PNG's width and height are the two big-endian 32-bit integers after its 16-byte header.
    width, height = struct.unpack(">II", png[16:24])
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<image width="{width}" height="{height}" xlink:href="data:image/png;base64,{data}"/></svg>'
    )


def install(translations: Mapping[str, str], font: str | Path | None = None) -> bool:
    """Attach a translated rendering to every figure the running notebook displays.

    Returns ``False`` (and does nothing) outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    # Loading the backend now lets IPython's inline backend set up its own
    # figure formatters first; set up later, it would drop the one added here.
    import matplotlib.pyplot as plt

    plt.switch_backend(matplotlib.get_backend())
    family = None
    if font is not None:
        font_manager.fontManager.addfont(str(font))
        family = font_manager.FontProperties(fname=str(font)).get_name()

    def translated(fig: Figure) -> tuple[str, dict] | None:
        png, wanted, missing = render_translated(fig, translations, family)
        if not wanted:
            return None
        return _svg_wrapping(png), {"texts": wanted, "untranslated": missing}

    shell.display_formatter.formatters[MIME_TYPE].for_type(Figure, translated)
    return True


def install_from_environment() -> bool:
    """:func:`install` with the catalogue and font named by the environment, if any."""
    path = os.environ.get("FLOWDIFF_FIGURE_TRANSLATIONS")
    if not path or not Path(path).exists():
        return False
    translations = json.loads(Path(path).read_text(encoding="utf-8"))
    return install(translations, os.environ.get("FLOWDIFF_FIGURE_FONT") or None)
