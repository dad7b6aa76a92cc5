"""flowdiff.translated_figures: which texts need translating, and the translated rendering."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from flowdiff.translated_figures import install, needs_translation, render_translated


@pytest.mark.parametrize(
    ("text", "expected"),
    [("time", True), ("step size $h$", True), ("$h$", False), ("0.25", False), ("$10^{-3}$", False),
     ("−2", False), ("Heun ($p = 2$)", True), ("", False)],
)
def test_needs_translation(text: str, expected: bool) -> None:
    assert needs_translation(text) is expected


@pytest.fixture
def figure():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_title("Euler steps")
    ax.set_xlabel("$t$")
    ax.legend()
    yield fig
    plt.close(fig)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def test_render_translated_reports_texts_and_restores_the_figure(figure) -> None:
    png, wanted, missing = render_translated(figure, {"Euler steps": "Euler-Schritte"})
    assert wanted == ["Euler steps", "a line"]
    assert missing == ["a line"]
    assert png.startswith(b"\x89PNG")
    assert figure.axes[0].get_title() == "Euler steps"


def test_translation_changes_the_picture(figure) -> None:
    english, _, _ = render_translated(figure, {})
    translated, _, _ = render_translated(figure, {"Euler steps": "Backward steps", "a line": "a line"})
    untouched, _, _ = render_translated(figure, {})
    assert np.array_equal(pixels(english), pixels(untouched))
    first, second = pixels(english), pixels(translated)
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_install_outside_a_notebook_does_nothing() -> None:
    assert install({"a": "b"}) is False
