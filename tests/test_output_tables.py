"""_ext/output_tables.py: an HTML table printed by a notebook becomes a docutils table.

The parser is checked on the markup the chapters print (captions, header rows,
row names in <th>, <br> inside a cell, colspan); the built pages are checked in
test_book.py and the PDF in test_pdf.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from docutils import nodes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
from output_tables import parse_table, table_node  # noqa: E402

MARKUP = (
    "<table class='digits-table'><caption>Accuracy / Fréchet,\n  for 1000 digits</caption>"
    "<thead><tr><th></th><th>5 steps</th><th>10 steps</th></tr></thead>"
    "<tbody><tr><th>w = 0</th><td>91.2 %<br><small>12 ms</small></td><td>93.0 &amp; 1</td></tr>"
    "<tr><th>moons</th><td colspan='2'>0.012 (range 0.010 to 0.015)</td></tr></tbody></table>"
)


def test_caption_rows_and_cells() -> None:
    table = parse_table(MARKUP)
    assert table.caption == "Accuracy / Fréchet, for 1000 digits"
    assert table.classes == ["digits-table"]
    assert [[cell.lines for cell in row] for row in table.head] == [[[""], ["5 steps"], ["10 steps"]]]
    first, second = table.body
    assert [cell.lines for cell in first] == [["w = 0"], ["91.2 %", "12 ms"], ["93.0 & 1"]]
    assert [cell.header for cell in first] == [True, False, False]
    assert [cell.span for cell in second] == [1, 2]


def test_docutils_table() -> None:
    table = table_node(parse_table(MARKUP), "chapter.md", 7)
    assert table["classes"] == ["output-table", "digits-table"]
    title = table.next_node(nodes.title)
    assert title.astext() == "Accuracy / Fréchet, for 1000 digits" and title.source == "chapter.md"
    group = table.next_node(nodes.tgroup)
    assert group["cols"] == 3
    assert [spec.get("stub", False) for spec in group.findall(nodes.colspec)] == [True, False, False]
    rows = list(table.next_node(nodes.tbody).findall(nodes.row))
    assert rows[1].children[1]["morecols"] == 1
    # Cells with words reach the catalogues (they carry a source); numbers alone do not.
    paragraphs = {p.astext(): p.source for p in table.findall(nodes.paragraph)}
    assert paragraphs["5 steps"] == "chapter.md" and paragraphs["moons"] == "chapter.md"
    assert paragraphs["91.2 %"] is None and paragraphs["12 ms"] is None and paragraphs["w = 0"] is None


@pytest.mark.parametrize(
    "markup, message",
    [
        ("<table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>", "different widths"),
        ("<table><tr><td><table><tr><td>1</td></tr></table></td></tr></table>", "inside a table"),
    ],
)
def test_malformed_tables_are_refused(markup: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_table(markup)
