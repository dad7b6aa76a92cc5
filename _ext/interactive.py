"""Interactive figures: a figure a reader can move, with a static image for print and for readers without JavaScript.

The ``{interactive-figure}`` directive is myst-nb's ``{glue:figure}`` with a
widget: its argument is the glue key of a static figure that a chapter cell
made (the fallback), its content the caption, and ``:widget:`` names the
widget of ``_static/interactive-figures.js`` that replaces the image when
JavaScript runs::

    ```{interactive-figure} ode-euler-heun-still
    :widget: euler-heun
    :name: fig-ode-euler-heun-live
    :alt: What the static image shows.

    The caption, which the catalogues translate like any other.
    ```

``:payload: KEY`` hands the widget a glued string (JSON: precomputed frames
of a learned model, for instance) as ``data-payload``. The figure is numbered
and referenced like any other; in print, the static image stands in.

The widgets' texts are written ``tr("...")`` in the JavaScript.
:func:`interactive_strings` collects them for the figures' catalogue
(``tools/build_book.py gettext``), and each translated page that has a
widget carries their translations in ``<script id="flowdiff-figure-strings">``.
The scripts load only on pages that have an interactive figure. The build
also writes ``_static/interactive-reference.json``: the formulas' values from
flowdiff, at which the browser tests check the JavaScript module.
"""

from __future__ import annotations

import ast
import html
import json
import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives as spec
from myst_nb.ext.glue.directives import PasteFigureDirective
from myst_nb.ext.glue.utils import RetrievalError
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

STATIC = Path(__file__).parent / "static"
SCRIPTS = ("flowdiff-exact.js", "interactive.js", "interactive-figures.js")
STRING = re.compile(r'\btr\("((?:[^"\\]|\\.)*)"\)')
HAS_WIDGET = "interactive_figure_pages"
REFERENCE = "interactive-reference.json"


def interactive_strings() -> list[str]:
    """Every ``tr("...")`` literal of the widgets' scripts, in order of first appearance."""
    found: dict[str, None] = {}
    for script in SCRIPTS:
        for match in STRING.finditer((STATIC / script).read_text(encoding="utf-8")):
            found[json.loads(f'"{match.group(1)}"')] = None
    return list(found)


class InteractiveFigure(PasteFigureDirective):
    option_spec = PasteFigureDirective.option_spec | {"widget": spec.unchanged_required, "payload": spec.unchanged}

    def run(self) -> list[nodes.Node]:
        widget = self.options.pop("widget", None)
        if not widget:
            raise self.error("interactive-figure needs :widget: NAME (a widget of _static/interactive-figures.js)")
        payload_key = self.options.pop("payload", None)
        payload = ""
        if payload_key:
            from bilingual import retrieve_glue_data_of_page

            try:
                data = retrieve_glue_data_of_page(self.state.document, payload_key).data
            except RetrievalError as exc:
                raise self.error(f"interactive-figure :payload: {exc}") from exc
            # glue() of a string keeps its repr as text/plain.
            payload = ast.literal_eval(data["text/plain"])
        result = super().run()
        figure = next((node for node in result if isinstance(node, nodes.figure)), None)
        if figure is None:
            return result
        env = self.state.document.settings.env
        pages = getattr(env, HAS_WIDGET, set())
        pages.add(env.docname)
        setattr(env, HAS_WIDGET, pages)
        figure["classes"].append("interactive-figure")
        fallback = nodes.container(classes=["fd-fallback"])
        for child in [child for child in figure.children if not isinstance(child, (nodes.caption, nodes.legend))]:
            figure.remove(child)
            fallback += child
        anchor = figure["ids"][0] if figure["ids"] else widget
        attributes = f'class="fd-live" id="{html.escape(anchor)}-live" data-widget="{html.escape(widget)}" hidden'
        if payload:
            attributes += f' data-payload="{html.escape(payload)}"'
        live = nodes.raw("", f"<div {attributes}></div>", format="html")
        figure.insert(0, fallback)
        figure.insert(0, live)
        return result


# Printed under an interactive figure's caption, whose controls the page describes.
PRINTED_NOTE = {
    "en": "Interactive in the web edition; printed here in the state it opens in.",
    "zh_CN": "网页版中此图可交互；此处印出的是它打开时的状态。",
}


def strip_for_other_builders(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Only HTML can run the widget: other builders keep the static image alone, and a printed
    caption says where the controls it describes are."""
    if app.builder.format == "html":
        return
    note = PRINTED_NOTE.get(app.config.language or "en", PRINTED_NOTE["en"])
    for node in list(doctree.findall(nodes.raw)):
        if 'class="fd-live"' in node.astext():
            figure = node.parent
            figure.remove(node)
            caption = figure.next_node(nodes.caption)
            if caption is not None and app.builder.format == "latex":
                caption += nodes.Text(f" {note}")


def add_assets(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if doctree is None or pagename not in getattr(app.env, HAS_WIDGET, set()):
        return
    for script in SCRIPTS:
        app.add_js_file(script, loading_method="defer")
    app.add_css_file("interactive.css")
    language = app.config.language or "en"
    if language != "en":
        from bilingual import FIGURES_DOMAIN, _domain_catalogue

        catalogue = _domain_catalogue(app, FIGURES_DOMAIN)
        translations = {text: catalogue[text] for text in interactive_strings() if catalogue.get(text)}
        # "</" cannot end the script element early: JSON escapes the slash.
        payload = json.dumps(translations, ensure_ascii=False).replace("</", "<\\/")
        context["metatags"] = context.get("metatags", "") + (
            f'\n<script type="application/json" id="flowdiff-figure-strings">{payload}</script>')


def write_reference(app: Sphinx, exception: Exception | None) -> None:
    """The formulas' values from flowdiff, for the browser tests (tools/interactive_reference.py)."""
    if exception is not None or app.builder.format != "html":
        return
    tools = str(Path(app.srcdir, "tools"))
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from interactive_reference import write_reference as write

    write(Path(app.outdir, "_static", REFERENCE))


def purge_page(app: Sphinx, env: Any, docname: str) -> None:
    getattr(env, HAS_WIDGET, set()).discard(docname)


def merge_pages(app: Sphinx, env: Any, docnames: set[str], other: Any) -> None:
    setattr(env, HAS_WIDGET, getattr(env, HAS_WIDGET, set()) | (getattr(other, HAS_WIDGET, set()) & docnames))


def check_scripts(app: Sphinx) -> None:
    for script in SCRIPTS:
        if not (STATIC / script).exists():
            raise ExtensionError(f"interactive figures: {STATIC / script} is missing")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("interactive-figure", InteractiveFigure)
    app.connect("builder-inited", check_scripts)
    app.connect("env-purge-doc", purge_page)
    app.connect("env-merge-info", merge_pages)
    app.connect("doctree-resolved", strip_for_other_builders)
    app.connect("html-page-context", add_assets)
    app.connect("build-finished", write_reference)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
