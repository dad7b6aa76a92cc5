"""The printed (LaTeX) editions: what the HTML shows, in a form XeLaTeX can typeset.

* Animations as film strips. An animation (flowdiff.plotting.HTMLAnimation)
  reaches LaTeX as the text of its HTML, about a megabyte on one line, which
  xdvipdfmx cannot typeset. It becomes four of its frames side by side, taken
  from the PNG frames embedded in that HTML.
* Numbers as on the web. sphinx-jupyterbook-latex turns the parts into
  ``\\part`` and sets ``numfig_secnum_depth = 2`` so that LaTeX restarts its
  counters at each chapter; Sphinx also uses that setting for the numbers it
  computes itself (proof boxes and exercises), which then read "Definition
  1.2.1" where the HTML and LaTeX's own figures say "1.1". Sphinx computes its
  numbers with one level, as for the HTML; the LaTeX writer still gets two.
* Proof boxes titled in the edition's language. sphinx-proof translates
  "Definition" for HTML but writes it untranslated into LaTeX.
* Proofs as a book prints them. sphinx-proof makes a proof an admonition
  without a title, which LaTeX draws as a box under an empty coloured bar;
  in print it is the text itself ("Proof. ..."), closed by a square.
* Exercises referred to from another chapter. sphinx-exercise rewrites a
  reference to an exercise of the same page into a link to its label, and
  leaves those to other pages to Sphinx, whose ``\\ref`` finds no LaTeX counter
  there ("Exercise ??"); those get the same link, with the number Sphinx computed.
* Figures in the edition's language. A figure output carries its English
  PNG and, as ``image/svg+xml``, a wrapper of the PNG drawn with its texts
  translated (flowdiff.translated_figures); LaTeX includes no SVG, so a
  translated edition prints the wrapped PNG in place of the English one.
* The edition's title. Jupyter Book replaces the title in ``latex_documents``
  by the ``title`` of ``_config.yml`` (English) after Sphinx started;
  ``print_title`` sets it back for the edition being built.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform

ANIMATION_TEXT = "HTMLAnimation(html="
# A frame inside the repr of the HTML: base64, broken by escaped line continuations ("\\\n" in the repr).
FRAME = re.compile(r"data:image/png;base64,((?:[A-Za-z0-9+/=]|\\\\\\n|\\n)+)")
STRIP = 4
# The PNG inside flowdiff.translated_figures' SVG wrapper.
WRAPPED_PNG = re.compile(r'^<svg [^>]*><image [^>]*xlink:href="data:image/png;base64,([A-Za-z0-9+/=]+)"/></svg>$')
WEB_SECNUM_DEPTH = "print_edition_secnum_depth"


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


class TranslatedFigures(SphinxTransform):
    """In a translated LaTeX edition, each figure's PNG is the translated rendering its SVG wrapper holds."""

    default_priority = 100

    def apply(self, **kwargs: Any) -> None:
        if self.app.builder.name != "latex" or self.config.language in (None, "", "en"):
            return
        for bundle in self.document.findall(nodes.container):
            if bundle.get("nb_element") != "mime_bundle":
                continue
            outputs = {child.get("mime_type"): child for child in bundle.children}
            svg, png = outputs.get("image/svg+xml"), outputs.get("image/png")
            if svg is None or png is None or svg.next_node(nodes.image) is None or png.next_node(nodes.image) is None:
                continue
            image = png.next_node(nodes.image)
            wrapper = Path(self.app.srcdir, svg.next_node(nodes.image)["uri"].lstrip("/"))
            match = WRAPPED_PNG.match(wrapper.read_text(encoding="utf-8").strip())
            if match:
                translated = wrapper.with_suffix(f".{self.config.language}.png")
                translated.write_bytes(base64.b64decode(match.group(1)))
                image["uri"] = str(Path(image["uri"]).with_name(translated.name))


def number_by_chapter(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """Before Sphinx's toctree collector numbers figures, proofs and exercises (priority 500): one level."""
    if app.builder.name == "latex":
        setattr(env, WEB_SECNUM_DEPTH, app.config.numfig_secnum_depth)
        app.config.numfig_secnum_depth = 1
    return []


def restore_secnum_depth(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """After it: the LaTeX writer derives its counters' reset level from the setting it had."""
    if hasattr(env, WEB_SECNUM_DEPTH):
        app.config.numfig_secnum_depth = getattr(env, WEB_SECNUM_DEPTH)
        delattr(env, WEB_SECNUM_DEPTH)
    return []


def translated_proof_titles(app: Sphinx) -> None:
    """sphinx-proof's LaTeX title, "Definition 1.1", with the kind translated as in its HTML."""
    from sphinx.writers.latex import LaTeXTranslator
    from sphinx_proof import nodes as proof_nodes

    def depart_enumerable(self: LaTeXTranslator, node: nodes.Element) -> None:
        number = proof_nodes.get_node_number(self, node, node.attributes.get("countertype", ""))
        index = proof_nodes.list_rindex(self.body, proof_nodes.latex_admonition_start) + 2
        self.body.insert(index, f"{proof_nodes._(node.attributes.get('realtype', '').title())} {number}")
        self.body.append(proof_nodes.latex_admonition_end)

    def depart_unenumerable(self: LaTeXTranslator, node: nodes.Element) -> None:
        index = proof_nodes.list_rindex(self.body, proof_nodes.latex_admonition_start) + 2
        self.body.insert(index, proof_nodes._(node.attributes.get("realtype", "").title()))
        self.body.append(proof_nodes.latex_admonition_end)

    for node_type in proof_nodes.NODE_TYPES.values():
        app.registry.add_translation_handlers(node_type, latex=(proof_nodes.visit_enumerable_node, depart_enumerable))
    app.registry.add_translation_handlers(
        proof_nodes.unenumerable_node, latex=(proof_nodes.visit_unenumerable_node, depart_unenumerable)
    )


class PlainProofs(SphinxPostTransform):
    """A proof prints as its paragraphs and a closing square, not as an untitled box."""

    default_priority = 900
    formats = ("latex",)

    def run(self, **kwargs: Any) -> None:
        for box in list(self.document.findall(nodes.admonition)):
            if "proof" not in box["classes"] or any(isinstance(child, nodes.title) for child in box.children):
                continue
            block = nodes.container(classes=["proof"])
            block.extend(box.children)
            # At the end of the last line when the proof ends with text, on a line of its own after a display.
            last = block.children[-1] if block.children else None
            if isinstance(last, nodes.paragraph):
                last += nodes.raw("", "\\nobreak\\hfill$\\square$", format="latex")
            else:
                block += nodes.raw("", "\\par\\nobreak\\hfill$\\square$\\par\n", format="latex")
            box.replace_self(block)


class ExerciseReferencesAcrossChapters(SphinxPostTransform):
    """A numbered reference to an exercise of another page: a link to sphinx-exercise's label."""

    default_priority = 900  # after Sphinx resolved the reference and sphinx-exercise rewrote those in the page
    formats = ("latex",)

    def run(self, **kwargs: Any) -> None:
        from sphinx_exercise.nodes import exercise_latex_number_reference

        registry = getattr(self.env, "sphinx_exercise_registry", {})
        for reference in list(self.document.findall(addnodes.number_reference)):
            if isinstance(reference, exercise_latex_number_reference) or "#" not in reference.get("refuri", ""):
                continue
            label = reference["refuri"].split("#", 1)[1]
            if label in registry:
                link = exercise_latex_number_reference(refid=label)
                link += nodes.Text(reference.astext())
                reference.replace_self(link)


def edition_title(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    title = app.config.print_title
    if app.builder.name == "latex" and title:
        app.config.latex_documents = [(start, target, title, *rest) for start, target, _, *rest in app.config.latex_documents]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("print_title", "", "env")
    app.connect("doctree-resolved", film_strip)
    app.connect("env-get-updated", number_by_chapter, priority=400)
    app.connect("env-get-updated", restore_secnum_depth, priority=600)
    app.connect("builder-inited", translated_proof_titles)
    app.connect("env-before-read-docs", edition_title)
    app.add_post_transform(ExerciseReferencesAcrossChapters)
    app.add_post_transform(PlainProofs)
    app.add_transform(TranslatedFigures)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
