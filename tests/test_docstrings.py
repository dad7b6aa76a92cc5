"""The package points to the book: every public object is documented, and the
labels its docstrings cite (``eq-ode``, ``alg-ode-heun``, ...) exist in the chapters."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import flowdiff

ROOT = Path(__file__).resolve().parents[1]
MODULES = [importlib.import_module(info.name) for info in pkgutil.walk_packages(flowdiff.__path__, "flowdiff.")
           if not info.name.rsplit(".", 1)[-1].startswith("_")]
LABEL = re.compile(r"``((?:eq|alg|prop|thm|def|lem)-[a-z0-9-]+)``")


def public_objects():
    for module in MODULES:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_module_names_its_chapter(module) -> None:
    assert re.search(r"Chapters? \d+", module.__doc__ or ""), f"{module.__name__} does not name its chapter"


@pytest.mark.parametrize(("name", "obj"), list(public_objects()), ids=lambda v: v if isinstance(v, str) else "")
def test_public_object_is_documented_and_typed(name: str, obj) -> None:
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if inspect.isfunction(obj):
        signature = inspect.signature(obj)
        assert signature.return_annotation is not inspect.Signature.empty, f"{name} has no return type"
        for parameter in signature.parameters.values():
            assert parameter.annotation is not inspect.Parameter.empty, f"{name}({parameter.name}) has no type"


def test_cited_labels_exist_in_the_book() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "code" / "flowdiff").rglob("*.py"))
    book = "\n".join(p.read_text() for p in (ROOT / "book").rglob("*.md"))
    cited = set(LABEL.findall(source))
    assert cited, "the package cites no label of the book"
    missing = sorted(label for label in cited if f":label: {label}" not in book)
    assert not missing, f"labels cited by docstrings but missing from the book: {missing}"
