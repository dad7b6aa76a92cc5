"""A ".ipynb" entry in each chapter's download menu.

myst-nb executes every MyST notebook and writes the executed notebook (code
and outputs) next to the build's output folder, in `jupyter_execute/`.
sphinx-book-theme lists a notebook in the download menu when the page
context names one (`ipynb_source`, relative to `_sources/`), but nothing
sets it; this extension copies each executed notebook into `_sources/` and
names it, so a reader downloads the chapter as a notebook that runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx


def offer_notebook(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if doctree is None or not executed.exists():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app: Sphinx) -> dict[str, Any]:
    # Before sphinx-book-theme builds its header buttons (priority 501).
    app.connect("html-page-context", offer_notebook, priority=400)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
