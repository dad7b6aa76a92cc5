"""Static forms, for the printed (LaTeX) editions, of outputs that only a browser can show.

An animation (flowdiff.plotting.HTMLAnimation) reaches LaTeX as the text of its
HTML, about a megabyte on one line, which xdvipdfmx cannot typeset. For the
LaTeX builder it becomes a film strip: four of its frames side by side, taken
from the PNG frames embedded in that HTML.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

ANIMATION_TEXT = "HTMLAnimation(html="
# A frame inside the repr of the HTML: base64, broken by escaped line continuations ("\\\n" in the repr).
FRAME = re.compile(r"data:image/png;base64,((?:[A-Za-z0-9+/=]|\\\\\\n|\\n)+)")
STRIP = 4


def film_strip(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    if app.builder.name != "latex":
        return
    for index, block in enumerate(list(doctree.findall(nodes.literal_block))):
        text = block.astext()
        if not text.startswith(ANIMATION_TEXT):
            continue
        frames = [re.sub(r"\\\\\\n|\\n|\\", "", match) for match in FRAME.findall(text)]
        if not frames:
            continue
        chosen = sorted({round(k * (len(frames) - 1) / (STRIP - 1)) for k in range(STRIP)})
        names = []
        for frame in chosen:
            name = f"film-{docname.replace('/', '-')}-{index}-{frame}.png"
            Path(app.outdir, name).write_bytes(base64.b64decode(frames[frame]))
            names.append(name)
        width = 0.95 / len(names)
        pictures = "\\hfill".join(f"\\includegraphics[width={width:.3f}\\linewidth]{{{name}}}" for name in names)
        block.replace_self(nodes.raw("", f"\n\\begin{{center}}{pictures}\\end{{center}}\n", format="latex"))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("doctree-resolved", film_strip)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
