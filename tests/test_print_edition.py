"""_ext/print_edition.py: the pieces of the PDF editions that read what flowdiff writes.

The film strip reads an animation's frames out of the ``text/plain`` repr that
myst-nb hands LaTeX; the translated edition reads the PNG out of the SVG
wrapper of a translated figure. Both formats belong to flowdiff, so each is
checked here on what flowdiff writes today.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from flowdiff.plotting import animate  # noqa: E402
from flowdiff.solvers import Trajectory  # noqa: E402
from flowdiff import translated_figures  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
from print_edition import ANIMATION_TEXT, FRAME, WRAPPED_PNG  # noqa: E402


def test_the_png_inside_a_translated_figure_is_found() -> None:
    figure = Figure(figsize=(2, 1))
    figure.add_subplot().set_title("density")
    png, _, _ = translated_figures.render_translated(figure, {"density": "Dichte"})
    match = WRAPPED_PNG.match(translated_figures._svg_wrapping(png))
    assert match is not None
    assert base64.b64decode(match.group(1)) == png


def test_the_frames_of_an_animation_are_found_in_its_text_repr() -> None:
    times = torch.linspace(0, 1, 5)
    trajectory = Trajectory(times=times, states=times[None, :, None] * torch.ones(3, 5, 2))
    animation = animate(trajectory, frames=5)
    # What myst-nb shows LaTeX: the repr of the dataclass, in which the HTML's newlines are escaped.
    text = repr(animation)
    assert text.startswith(ANIMATION_TEXT)
    frames = [re.sub(r"\\\\\\n|\\n|\\", "", match) for match in FRAME.findall(text)]
    assert len(frames) == 5
    for frame in frames:
        assert base64.b64decode(frame).startswith(b"\x89PNG\r\n\x1a\n")
