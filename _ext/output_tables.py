"""Tables that a notebook prints as HTML become tables of the document.

A cell that measures something and shows the numbers as an HTML table
(``IPython.display.HTML('<table><caption>...')``) gives myst-nb a mime bundle
of ``text/html`` and ``text/plain``. In the HTML editions the table passes
through as raw HTML, which no catalogue translates; the LaTeX builder knows no
HTML and prints the ``text/plain`` repr, ``<IPython.core.display.HTML
object>``.

The transform here runs when a page is read, before Sphinx's i18n ``Locale``
transform (priority 20), and replaces each such output by a docutils table:
the ``<caption>`` becomes its title (so the table is numbered, "Table 5.1",
in every edition), header cells (``<th>``) become stubs or the header row,
``colspan`` is kept, and ``<br>`` splits a cell into lines. Every builder then
renders the table natively, and the message catalogues see its title and the
cells that hold words (numbers, units and symbols alone are left out of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

# A cell worth translating holds a word; "12 ms", "w = 2" or "91.2 %" read the same in every edition.
HAS_WORDS = re.compile(r"[^\W\d_]{3,}")


@dataclass
class Cell:
    lines: list[str] = field(default_factory=lambda: [""])
    header: bool = False
    span: int = 1


@dataclass
class ParsedTable:
    caption: str = ""
    classes: list[str] = field(default_factory=list)
    head: list[list[Cell]] = field(default_factory=list)
    body: list[list[Cell]] = field(default_factory=list)


class TableParser(HTMLParser):
    """The caption, rows and cells of one HTML table; inline markup (``<small>``, ``<b>``) keeps its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.table = ParsedTable()
        self.section = "body"
        self.cell: Cell | None = None
        self.in_caption = False
        self.nested = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self.nested += 1
            if self.nested > 1:
                raise ValueError("a table inside a table")
            self.table.classes = (attributes.get("class") or "").split()
        elif tag == "caption":
            self.in_caption = True
        elif tag == "thead":
            self.section = "head"
        elif tag == "tbody":
            self.section = "body"
        elif tag == "tr":
            (self.table.head if self.section == "head" else self.table.body).append([])
        elif tag in ("td", "th"):
            self.cell = Cell(header=tag == "th", span=int(attributes.get("colspan") or 1))
        elif tag == "br" and self.cell is not None:
            self.cell.lines.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self.in_caption = False
        elif tag in ("td", "th") and self.cell is not None:
            rows = self.table.head if self.section == "head" else self.table.body
            if not rows:
                raise ValueError(f"<{tag}> outside a row")
            rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.in_caption:
            self.table.caption += data
        elif self.cell is not None:
            self.cell.lines[-1] += data


def parse_table(markup: str) -> ParsedTable:
    parser = TableParser()
    parser.feed(markup)
    parser.close()
    table = parser.table
    table.caption = " ".join(table.caption.split())
    for row in table.head + table.body:
        for cell in row:
            cell.lines = [" ".join(line.split()) for line in cell.lines if line.strip()] or [""]
    widths = {sum(cell.span for cell in row) for row in table.head + table.body}
    if len(widths) != 1:
        raise ValueError(f"rows of different widths {sorted(widths)}")
    return table


def table_node(table: ParsedTable, source: str | None, line: int | None) -> nodes.table:
    """A docutils table; its title and the cells with words carry the source, which makes them translatable."""
    columns = sum(cell.span for cell in (table.head or table.body)[0])
    # A leading column of <th> in every body row is a column of row names (a "stub").
    stubs = 1 if table.body and all(row and row[0].header for row in table.body) else 0
    group = nodes.tgroup(cols=columns)
    for index in range(columns):
        group += nodes.colspec(colwidth=1, stub=index < stubs)

    def entry(cell: Cell) -> nodes.entry:
        element = nodes.entry(morecols=cell.span - 1) if cell.span > 1 else nodes.entry()
        for text in cell.lines:
            paragraph = nodes.paragraph(text, text)
            if HAS_WORDS.search(text):
                paragraph.source, paragraph.line = source, line
            element += paragraph
        return element

    for rows, part in ((table.head, nodes.thead), (table.body, nodes.tbody)):
        if rows:
            section = part()
            for row in rows:
                section += nodes.row("", *(entry(cell) for cell in row))
            group += section
    result = nodes.table(classes=["output-table", *table.classes])
    if table.caption:
        title = nodes.title(table.caption, table.caption)
        title.source, title.line = source, line
        result += title
    result += group
    result.source, result.line = source, line
    return result


def html_table(bundle: nodes.Element) -> str | None:
    """The markup of a mime bundle's ``text/html`` output when that output is one table, else None."""
    for child in bundle.children:
        if child.get("mime_type") == "text/html":
            raw = [node for node in child.findall(nodes.raw)]
            if len(raw) == 1:
                markup = raw[0].astext().strip()
                if markup.startswith("<table") and markup.endswith("</table>"):
                    return markup
    return None


class OutputTables(SphinxTransform):
    """Replace each notebook output that is an HTML table by a docutils table."""

    default_priority = 15  # before bilingual.BilingualCopies (19) and sphinx.transforms.i18n.Locale (20)

    def apply(self, **kwargs: Any) -> None:
        for bundle in list(self.document.findall(nodes.container)):
            if bundle.get("nb_element") != "mime_bundle":
                continue
            markup = html_table(bundle)
            if markup is None:
                continue
            table = table_node(parse_table(markup), bundle.source or self.document["source"], bundle.line)
            self.document.set_id(table)
            bundle.replace_self(table)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_transform(OutputTables)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
