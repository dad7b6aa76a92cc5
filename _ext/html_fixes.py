"""Four repairs to the HTML that the tool chain writes, so pages are valid and quiet.

* Unique anchors. sphinx-proof and sphinx-exercise give every box the same
  ids (``proof``, ``proof-content``, ``exercise-content``, ...), so a page
  with two boxes has duplicate ids. The second and later uses of an id get a
  numbered suffix; the first keeps it, so links to it still work.
* No duplicated inline scripts. Sphinx 7.4 adds an inline script registered
  after the builder started (sphinx-togglebutton's and sphinx-thebe's) to
  every page twice, and the second ``const`` declaration is a JavaScript
  error in the reader's console.
* Readable links in tinted boxes: a darker link colour inside proof,
  exercise and admonition boxes in the light theme (book.css).
* A theme mode from the start. Jupyter Book leaves pydata-sphinx-theme's
  ``default_mode`` empty, and the theme reports the empty mode as an error
  in the console of every first visit; the book follows the reader's system
  setting ("auto") and offers the light/dark switch in the header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx


def make_ids_unique(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    # LaTeX prefixes every id with its document's name, and the whole book is one
    # doctree there: renaming the ":doc" target of each chapter would break links to it.
    if app.builder.format != "html":
        return
    seen: dict[str, int] = {}
    for element in doctree.findall(nodes.Element):
        renamed = []
        for identifier in element.get("ids", []):
            count = seen.get(identifier, 0)
            seen[identifier] = count + 1
            renamed.append(identifier if count == 0 else f"{identifier}-{count + 1}")
        if renamed:
            element["ids"] = renamed


def drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts, seen = [], set()
    for script in context.get("script_files", []):
        # The same script once named None and once "": compare what the page would load or run.
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    context["script_files"] = scripts


def default_theme_mode(app: Sphinx, config: Any) -> None:
    # A template variable of the theme's layout, which reads it from the page context.
    config.html_context = {"default_mode": "auto", **(config.html_context or {})}


def add_stylesheet(app: Sphinx) -> None:
    static = str(Path(__file__).parent / "static")
    if static not in app.config.html_static_path:
        app.config.html_static_path.append(static)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", default_theme_mode)
    app.connect("builder-inited", add_stylesheet)
    app.add_css_file("book.css")
    app.connect("doctree-resolved", make_ids_unique)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
