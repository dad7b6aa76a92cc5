"""Serve MathJax from the site itself, so that a built book renders its maths offline.

`tools/build_book.py` installs a pinned MathJax under `_build/vendor/mathjax`;
this extension adds that folder to `html_static_path` once Sphinx has read its
configuration. Jupyter Book links every script found in the static paths of
`_config.yml` into every page, so the folder is added here, after that scan,
and `mathjax_path` points at the one script MathJax needs (it loads its fonts
and extensions itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

VENDOR = Path("_build", "vendor")


def add_vendored_assets(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    vendor = Path(app.srcdir, VENDOR)
    if not (vendor / "mathjax" / "tex-chtml.js").exists():
        raise ExtensionError(f"MathJax is missing from {vendor}: build with `make book` (tools/build_book.py installs it)")
    app.config.html_static_path.append(str(vendor))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", add_vendored_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
