"""The download menu of each page: the chapter as an executed notebook, and the whole book as PDF.

sphinx-book-theme lists a notebook in the download menu when the page
context names one (``ipynb_source``, relative to ``_sources/``), but nothing
sets it. This extension writes each notebook page as a notebook, text,
code and outputs, into ``_sources/`` and names it. The text and code come
from the page's source (read with jupytext), the outputs from the execution
cache that every build shares (its newest record of the page); the copy
myst-nb leaves in ``jupyter_execute/`` lacks the outputs when the notebook
was not run by that very build.

The menu also links the PDF of each edition (`make pdf` places them in the
site's ``pdf/`` folder, see _ext/bilingual.py), after the theme's entry that
prints the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jupytext
import nbformat
from sphinx.application import Sphinx


def executed_notebook(app: Sphinx, pagename: str) -> nbformat.NotebookNode | None:
    from jupyter_cache import get_cache

    cache_path = Path(app.config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache")
    if pagename not in app.env.found_docs or not cache_path.exists():
        return None
    source = str(Path(app.env.doc2path(pagename)).resolve())
    cache = get_cache(cache_path)
    records = [record for record in cache.list_cache_records() if record.uri == source]
    if not records:
        return None
    newest = max(records, key=lambda record: record.created)
    executed = [cell for cell in cache.get_cache_bundle(newest.pk).nb.cells if cell.cell_type == "code"]
    notebook = jupytext.read(source)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if len(code) != len(executed):
        return None
    for cell, run in zip(code, executed):
        cell.outputs, cell.execution_count = run.outputs, run.get("execution_count")
    return notebook


def offer_notebook(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if doctree is None:
        return
    notebook = executed_notebook(app, pagename)
    if notebook is None:
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


# The entries' tooltips, in the edition's language; the entry itself names the edition ("PDF · 中文").
BOOK_PDF_TOOLTIP = {"en": "The whole book as PDF", "zh_CN": "全书 PDF"}


def offer_book_pdfs(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    from bilingual import ENGLISH, pdf_links

    language = app.config.language or ENGLISH
    group = next((b for b in context.get("header_buttons", []) if b.get("label") == "download-buttons"), None)
    if group is None:
        return
    tooltip = BOOK_PDF_TOOLTIP.get(language, BOOK_PDF_TOOLTIP[ENGLISH])
    for name, href in pdf_links(pagename, language):
        group["buttons"].append(
            {"type": "link", "url": href, "text": f"PDF · {name}", "tooltip": tooltip, "icon": "fas fa-book", "label": "download-book-pdf-button"}
        )


def setup(app: Sphinx) -> dict[str, Any]:
    # Before sphinx-book-theme builds its header buttons (priority 501).
    app.connect("html-page-context", offer_notebook, priority=400)
    # After sphinx-book-theme built them (priority 501).
    app.connect("html-page-context", offer_book_pdfs, priority=600)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
