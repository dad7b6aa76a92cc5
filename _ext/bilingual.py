"""Bilingual pages for the translated editions of the book.

Sphinx's i18n ``Locale`` transform (priority 20) replaces the text of every
translatable node by its entry in the gettext catalogue. The transform here
runs just before it: for each node whose message *has* a translation, it
inserts an English copy marked ``translatable = False`` and classed
``bilingual-en``. The Locale transform then translates the original and
leaves the copy alone, so the page shows each paragraph, heading, caption,
list item, table cell and proof title in the translation with its English
original under it. A message without a translation is left untouched, so it
appears once, in English. Code and outputs are never copied.

The extension also

* translates the part captions of the table of contents ("中文 / English");
* adds a language switch ("English | 中文") linking each page to its twin in
  the other edition, and on translated pages an "原文 EN" toggle that hides
  or shows the English (remembered in ``localStorage``);
* provides the ``{language-editions}`` directive, which lists both editions
  with links valid in whichever edition it is built;
* keeps the cross-references of the English copies English: a section,
  page, figure or proof referred to without an explicit text reads as on
  the English page ("Definition 1.4", "Fig. 3.1", "Probability paths"), not
  with the translated name the references of the translated text get;
* swaps the alt texts of HTML outputs (animations) for their translations
  in the figures' catalogue;
* lets glue roles (``{glue:text}`key```) work inside translated messages.
  Sphinx parses each translation as a separate small document, which has
  none of the notebook's glue data; the glue look-up falls back to the data
  of the page being translated.
"""

from __future__ import annotations

import gettext
import html
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import docname_join
from sphinx.util.i18n import docname_to_domain
from sphinx.util.nodes import clean_astext, extract_messages
from myst_nb.ext.glue import directives as glue_directives
from myst_nb.ext.glue import roles as glue_roles
from myst_nb.ext.glue.utils import RetrievalError, retrieve_glue_data

ENGLISH = "en"
# Each edition: language code -> (folder of its site relative to the English root, name in the switch).
EDITIONS = {"en": ("", "English"), "zh_CN": ("zh", "中文")}
THIS_EDITION = {"en": " (this edition)", "zh_CN": "（本版）"}
# The PDF editions (`make pdf`, tools/build_book.py), in this folder of the site.
PDF_FOLDER = "pdf"
PDF_FILES = {"en": "flowdiff-book-en.pdf", "zh_CN": "flowdiff-book-zh.pdf"}
ENGLISH_CLASS = "bilingual-en"
NOTEBOOK_RENDERER = "bilingual_nb_renderer"
PENDING = "bilingual_pending_copies"
# The catalogue of the figures' texts (flowdiff.translated_figures), and an alt attribute in HTML.
FIGURES_DOMAIN = "figures"
IMAGE_ALT = re.compile(r'(<img\b[^>]*?\balt=")([^"]*)(")')
# Titles of each document's sections, figures and tables, keyed by their ids, read
# before translation (the page's own title under ""): the English texts of references.
ENGLISH_TITLES = "bilingual_english_titles"
# Sphinx's and sphinx-exercise's numbering formats for numbered references, in English.
ENGLISH_NUMFIG_FORMAT = {"section": "Section %s", "figure": "Fig. %s", "table": "Table %s",
                         "code-block": "Listing %s", "exercise": "Exercise %s"}


def retrieve_glue_data_of_page(document: nodes.document, key: str) -> Any:
    """myst-nb's glue look-up, falling back to the glue data of the page being translated.

    The page's own roles are resolved first, while its notebook renderer is
    still attached; that renderer is remembered for the page (``temp_data``
    is cleared between pages) and lent to the translations parsed after it.
    """
    remembered = document.settings.env.temp_data
    try:
        data = retrieve_glue_data(document, key)
    except RetrievalError:
        if remembered.get(NOTEBOOK_RENDERER) is None:
            raise
        # Attached only for the look-up: a doctree holding it could not be pickled.
        document["nb_renderer"] = remembered[NOTEBOOK_RENDERER]
        try:
            return retrieve_glue_data(document, key)
        finally:
            del document["nb_renderer"]
    remembered.setdefault(NOTEBOOK_RENDERER, document["nb_renderer"])
    return data


def _catalogue(app: Sphinx, docname: str) -> dict[str, str]:
    """The compiled translations of one document: msgid -> msgstr (fuzzy entries excluded)."""
    return _domain_catalogue(app, docname_to_domain(docname, app.config.gettext_compact))


def _domain_catalogue(app: Sphinx, domain: str) -> dict[str, str]:
    """The compiled translations of one gettext domain: msgid -> msgstr (fuzzy entries excluded)."""
    merged: dict[str, str] = {}
    for directory in app.config.locale_dirs:
        localedir = Path(app.srcdir, directory)
        translation = gettext.translation(domain, localedir, [app.config.language], fallback=True)
        merged |= getattr(translation, "_catalog", {})
    return {msgid: msgstr for msgid, msgstr in merged.items() if isinstance(msgid, str) and msgid}


def _strip_ids(node: nodes.Element) -> None:
    """Anchors must stay unique: the copy keeps none of the original's ids or targets.

    Only the copy itself is marked untranslatable: Sphinx unwraps every inline
    node that carries a ``translatable`` attribute (RemoveTranslatableInline).
    """
    for element in list(node.findall(nodes.Element)):
        if isinstance(element, nodes.target) and element is not node:
            element.parent.remove(element)
            continue
        element["ids"] = []
        element["names"] = []


def _english_copy(node: nodes.TextElement, tag: type[nodes.Element], extra_class: str) -> nodes.Element:
    copy = tag("", "", *[child.deepcopy() for child in node.children], classes=[ENGLISH_CLASS, extra_class])
    copy.source, copy.line = node.source, node.line
    _strip_ids(copy)
    if not isinstance(copy, nodes.Inline):
        # Inline copies are added after the Locale transform, and Sphinx would
        # unwrap an inline node carrying this attribute.
        copy["translatable"] = False
    return copy


class TranslateTocCaptions(SphinxTransform):
    """Part captions of the table of contents, as "中文 / English".

    sphinx-external-toc inserts the toctrees (priority 100) after Sphinx's
    i18n transform has run, so their captions would stay English; their
    messages are in the root page's catalogue.
    """

    default_priority = 101

    def apply(self, **kwargs: Any) -> None:
        if self.config.language in (None, "", ENGLISH):
            return
        toctrees = list(self.document.findall(addnodes.toctree))
        translations = _catalogue(self.app, self.env.docname) if toctrees else {}
        for toctree in toctrees:
            caption = toctree.get("caption")
            if caption and translations.get(caption, caption) != caption:
                english = "" if self.app.builder.name == "latex" else f" / {caption}"
                toctree["caption"] = f"{translations[caption]}{english}"


class TranslateAnimationAlts(SphinxTransform):
    """The alt texts of HTML outputs (flowdiff.plotting's animations), from the figures' catalogue.

    An animation reaches the page as one HTML output shared by both editions,
    its alt text inside; the build collects that text into the figures'
    catalogue (tools/build_book.py), and the translated edition swaps it here.
    """

    default_priority = 20

    def apply(self, **kwargs: Any) -> None:
        if self.config.language in (None, "", ENGLISH):
            return
        outputs = [node for node in self.document.findall(nodes.raw)
                   if "html" in node.get("format", "").split() and "<img" in node.astext()]
        translations = _domain_catalogue(self.app, FIGURES_DOMAIN) if outputs else {}

        def translated(match: re.Match[str]) -> str:
            alt = html.unescape(match.group(2))
            return f"{match.group(1)}{html.escape(translations.get(alt, alt))}{match.group(3)}"

        for node in outputs:
            source = node.astext()
            replaced = IMAGE_ALT.sub(translated, source)
            if replaced != source:
                node.children = [nodes.Text(replaced)]


class KeepMathsOutOfCatalogues(SphinxTransform):
    """Display maths reads the same in every language: no catalogue entry for it."""

    default_priority = 18

    def apply(self, **kwargs: Any) -> None:
        for node in self.document.findall(nodes.math_block):
            node["translatable"] = False


class BilingualCopies(SphinxTransform):
    """Insert an untranslatable English copy next to every translated node."""

    default_priority = 19  # just before sphinx.transforms.i18n.Locale (20)

    def apply(self, **kwargs: Any) -> None:
        if self.config.language in (None, "", ENGLISH):
            return
        _remember_english_titles(self.env, self.document)
        if self.app.builder.name == "latex":  # a printed edition is in one language; the toggle is a web feature
            return
        translations = _catalogue(self.app, self.env.docname)
        if not translations:
            return
        for node, message in list(extract_messages(self.document)):
            translated = translations.get(message, "")
            if not translated.strip() or translated == message:
                continue
            if isinstance(node, (nodes.literal_block, nodes.math_block, nodes.raw, nodes.image, nodes.meta)):
                continue
            self._place_copy(node)

    def _place_copy(self, node: nodes.Element) -> None:
        parent = node.parent
        if parent is None:
            return
        if isinstance(node, nodes.title):
            # A heading, or the title of a proof box or admonition: an English line under it.
            tag = nodes.paragraph if isinstance(parent, nodes.section) else nodes.inline
            copy = _english_copy(node, tag, "bilingual-title")
            if isinstance(parent, nodes.section):
                parent.insert(parent.index(node) + 1, copy)
            else:
                self._append_after_translation(node, copy)
        elif isinstance(node, nodes.caption):
            legend = nodes.legend("", _english_copy(node, nodes.paragraph, "bilingual-caption"))
            parent.insert(parent.index(node) + 1, legend)
        elif isinstance(node, (nodes.paragraph, nodes.rubric)):
            parent.insert(parent.index(node) + 1, _english_copy(node, type(node), "bilingual-block"))
        elif isinstance(node, nodes.term):
            self._append_after_translation(node, _english_copy(node, nodes.inline, "bilingual-term"))

    def _append_after_translation(self, node: nodes.Element, copy: nodes.Element) -> None:
        # The Locale transform replaces all children of a translated title or
        # term, so an English line inside it is added after that transform.
        self.document.setdefault(PENDING, []).append((node, copy))


class AppendEnglishInsideTranslated(SphinxTransform):
    """Put the English copies of proof titles and terms inside the translated nodes,
    and attach the translated nodes to the page's document."""

    default_priority = 21  # just after sphinx.transforms.i18n.Locale (20)

    def apply(self, **kwargs: Any) -> None:
        for node, copy in self.document.attributes.pop(PENDING, []):
            node += nodes.Text(" ")
            node += copy
        # Translated nodes come from small documents parsed for each message, and
        # still point to them, and through their settings to the whole build
        # environment: each page's pickled doctree grew by megabytes, which made
        # the Chinese build slower than the English one. Adopt them.
        for node in self.document.findall():
            if getattr(node, "document", None) not in (None, self.document):
                node.document = self.document


TITLED = (nodes.section, nodes.figure, nodes.table)


def _heading(node: nodes.Element) -> str | None:
    """The title of a section, or the caption of a figure or table, as Sphinx names it in references."""
    heading = next((child for child in node.children if isinstance(child, (nodes.title, nodes.caption))), None)
    return None if heading is None else clean_astext(heading)


def _remember_english_titles(env: Any, document: nodes.document) -> None:
    """Record the English titles of the page, its sections, figures and tables (before translation)."""
    titles: dict[str, str] = {}
    for node in document.findall(lambda n: isinstance(n, TITLED)):
        heading = _heading(node)
        if heading is None:
            continue
        for identifier in node["ids"]:
            titles.setdefault(identifier, heading)
        if isinstance(node, nodes.section):
            titles.setdefault("", heading)
    # A label written before a heading, (label)=, is still a target of its own here:
    # docutils moves its id onto the section later (PropagateTargets, priority 260).
    for target in document.findall(nodes.target):
        if target.get("refuri") or target.get("refid") or not target["ids"]:
            continue
        following = target.next_node(ascend=True)
        while isinstance(following, nodes.target):
            following = following.next_node(ascend=True)
        heading = _heading(following) if isinstance(following, TITLED) else None
        for identifier in target["ids"] if heading else ():
            titles.setdefault(identifier, heading)
    if not hasattr(env, ENGLISH_TITLES):
        setattr(env, ENGLISH_TITLES, {})
    getattr(env, ENGLISH_TITLES)[env.docname] = titles


def _read_pages_without_english_titles(app: Sphinx, env: Any, added: set, changed: set, removed: set) -> list[str]:
    """Every page again when one page has no English titles recorded (an environment from before them).

    A page's English copies name the sections of other pages, so all pages are
    read once, not only those without titles; the notebooks come from the cache.
    """
    if app.config.language in (None, "", ENGLISH):
        return []
    recorded = getattr(env, ENGLISH_TITLES, {})
    return sorted(env.found_docs) if any(docname not in recorded for docname in env.found_docs) else []


def _purge_english_titles(app: Sphinx, env: Any, docname: str) -> None:
    getattr(env, ENGLISH_TITLES, {}).pop(docname, None)


def _merge_english_titles(app: Sphinx, env: Any, docnames: set[str], other: Any) -> None:
    if not hasattr(env, ENGLISH_TITLES):
        setattr(env, ENGLISH_TITLES, {})
    for docname in docnames:
        if docname in getattr(other, ENGLISH_TITLES, {}):
            getattr(env, ENGLISH_TITLES)[docname] = getattr(other, ENGLISH_TITLES)[docname]


def _in_english_copy(node: nodes.Node) -> bool:
    parent = node.parent
    while parent is not None:
        if ENGLISH_CLASS in parent.get("classes", []):
            return True
        parent = parent.parent
    return False


def _set_text(node: nodes.Element, text: str) -> None:
    """Give a reference (pending or resolved) the text ``text``, keeping its innermost node."""
    inner = node
    while len(inner.children) == 1 and isinstance(inner[0], nodes.Element):
        inner = inner[0]
    inner.children = []
    inner += nodes.Text(text)


class EnglishReferenceTexts(SphinxPostTransform):
    """References without an explicit text, in the English copies, get their English text.

    Sphinx names a section or page by its (translated) title and a proof by its
    (translated) kind, so the English copy would read "of 定义 1.4". Before the
    references are resolved (priority 10), the text a resolver would compute
    from translated data is replaced by the English one and made explicit.
    """

    default_priority = 5

    def run(self, **kwargs: Any) -> None:
        if self.config.language in (None, "", ENGLISH):
            return
        titles = getattr(self.env, ENGLISH_TITLES, {})
        std = self.env.get_domain("std")
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("refexplicit") or not _in_english_copy(node):
                continue
            domain, kind, target = node.get("refdomain"), node.get("reftype"), node.get("reftarget", "")
            english = None
            if (domain, kind) == ("std", "ref") and target in std.labels:
                docname, labelid, _ = std.labels[target]
                english = titles.get(docname, {}).get(labelid)
            elif (domain, kind) == ("std", "doc"):
                english = titles.get(docname_join(node.get("refdoc", self.env.docname), target), {}).get("")
            elif domain == "prf" and target in getattr(self.env, "proof_list", {}):
                proof = self.env.proof_list[target]
                number = "" if proof["nonumber"] else ".".join(
                    map(str, self.env.toc_fignumbers.get(proof["docname"], {}).get(proof["countertype"], {}).get(target, ())))
                english = f"{proof['realtype'].title()} {number}".strip()
            if english:
                _set_text(node, english)
                if domain == "std":
                    node["refexplicit"] = True


class EnglishNumberedReferences(SphinxPostTransform):
    """Numbered references ({numref}) in the English copies read "Fig. 3.1", not "图 3.1"."""

    default_priority = 11  # just after the references are resolved (10)

    def run(self, **kwargs: Any) -> None:
        if self.config.language in (None, "", ENGLISH):
            return
        translated = self.config.numfig_format
        english = {translated[kind]: fmt for kind, fmt in ENGLISH_NUMFIG_FORMAT.items()
                   if kind in translated and translated[kind] != fmt}
        for node in list(self.document.findall(addnodes.number_reference)):
            fmt = node.get("title")
            if fmt not in english or not _in_english_copy(node):
                continue
            prefix, _, suffix = fmt.partition("%s")
            text = node.astext()
            if text.startswith(prefix) and text.endswith(suffix):
                _set_text(node, english[fmt] % text[len(prefix):len(text) - len(suffix)])


def twin_links(pagename: str, language: str) -> list[tuple[str, str, bool]]:
    """``(name, relative href, is this edition)`` of the page ``pagename`` in every edition."""
    to_english_root = site_root(pagename, language)
    return [
        (name, f"{to_english_root}{other + '/' if other else ''}{pagename}.html", code == language)
        for code, (other, name) in EDITIONS.items()
    ]


def site_root(pagename: str, language: str) -> str:
    """The relative path from a page of an edition to the root of the whole site (the English edition's)."""
    folder = EDITIONS.get(language, EDITIONS[ENGLISH])[0]
    return "../" * (pagename.count("/") + (folder.count("/") + 1 if folder else 0))


def pdf_links(pagename: str, language: str) -> list[tuple[str, str]]:
    """``(name of the edition, relative href)`` of the PDF of every edition, as `make pdf` places them in the site."""
    root = site_root(pagename, language)
    return [(name, f"{root}{PDF_FOLDER}/{PDF_FILES[code]}") for code, (_, name) in EDITIONS.items()]


def add_page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    language = app.config.language or ENGLISH
    switch = " | ".join(
        f'<strong aria-current="page">{name}</strong>' if current else f'<a href="{href}" hreflang="{code}">{name}</a>'
        for (name, href, current), code in zip(twin_links(pagename, language), EDITIONS)
    )
    context["metatags"] = context.get("metatags", "") + (
        f'\n<meta name="book:language" content="{language}">'
        f'\n<template id="book-language-switch">{switch}</template>'
    )


class LanguageEditions(Directive):
    """``{language-editions}``: links to the book's home in every edition, and to its PDF."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        language = env.config.language or ENGLISH
        this_edition = THIS_EDITION.get(language, THIS_EDITION[ENGLISH])
        items = "".join(
            f'<li><a href="{href}">{name}</a>{this_edition if current else ""} · <a href="{pdf}">PDF</a></li>'
            for (name, href, current), (_, pdf) in zip(twin_links(env.docname, language), pdf_links(env.docname, language))
        )
        return [nodes.raw("", f'<ul class="language-editions">{items}</ul>', format="html")]


def add_static_path(app: Sphinx) -> None:
    static = str(Path(__file__).parent / "static")
    if static not in app.config.html_static_path:
        app.config.html_static_path.append(static)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", add_static_path)
    glue_roles.retrieve_glue_data = retrieve_glue_data_of_page
    glue_directives.retrieve_glue_data = retrieve_glue_data_of_page
    app.add_transform(KeepMathsOutOfCatalogues)
    app.add_transform(TranslateTocCaptions)
    app.add_transform(BilingualCopies)
    app.add_transform(AppendEnglishInsideTranslated)
    app.add_transform(TranslateAnimationAlts)
    app.add_post_transform(EnglishReferenceTexts)
    app.add_post_transform(EnglishNumberedReferences)
    app.connect("env-get-outdated", _read_pages_without_english_titles)
    app.connect("env-purge-doc", _purge_english_titles)
    app.connect("env-merge-info", _merge_english_titles)
    app.add_directive("language-editions", LanguageEditions)
    app.connect("html-page-context", add_page_context)
    app.add_css_file("bilingual.css")
    app.add_js_file("bilingual.js")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
