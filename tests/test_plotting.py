"""flowdiff.plotting draws what it is given, and refuses what it cannot draw."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import re

import pytest
import torch

from flowdiff.distributions import Gaussian
from flowdiff.dynamics import LinearODE
from flowdiff.plotting import (
    animate,
    grid_points,
    plot_density,
    plot_image_grid,
    plot_samples,
    plot_trajectories,
    plot_vector_field,
)
from flowdiff.solvers import simulate_trajectory, time_grid


@pytest.fixture
def ax():
    fig, axes = plt.subplots()
    yield axes
    plt.close(fig)


def trajectory(n: int = 12, steps: int = 30):
    rotation = LinearODE(torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    return simulate_trajectory(rotation, torch.randn(n, 2), time_grid(steps), "heun")


def test_grid_points_cover_the_window_row_by_row() -> None:
    grid_x, grid_y, points = grid_points((-1.0, 2.0, 0.0, 1.0), resolution=4)
    assert points.shape == (16, 2)
    assert points[:, 0].min() == -1.0 and points[:, 0].max() == 2.0
    assert (grid_x.reshape(-1) == points[:, 0].numpy()).all() and (grid_y.reshape(-1) == points[:, 1].numpy()).all()


def test_plot_samples_draws_every_point(ax) -> None:
    x = torch.randn(123, 2)
    plot_samples(ax, x)
    (collection,) = ax.collections
    assert collection.get_offsets().shape == (123, 2)


def test_plot_density_peaks_at_the_mean(ax) -> None:
    law = Gaussian.isotropic(2, 0.5, torch.tensor([1.0, -1.0]))
    plot_density(ax, law.log_density, resolution=41)
    assert ax.get_xlim() == (-3.5, 3.5)
    (contours,) = ax.collections
    # The levels bracket the peak density 1 / (2 pi s^2): the exponential of the log-density is drawn.
    peak = 1 / (2 * math.pi * 0.25)
    assert contours.levels[-2] <= peak <= contours.levels[-1]
    # The highest band surrounds the mean (1, -1), not its mirror image: the grid is not transposed.
    top = [path for path in contours.get_paths() if len(path.vertices)][-1].vertices
    assert abs(top.mean(0) - [1.0, -1.0]).max() < 0.1
    assert (top.min(0) < [1.0, -1.0]).all() and (top.max(0) > [1.0, -1.0]).all()


def test_plot_vector_field_evaluates_the_field_at_its_time(ax) -> None:
    seen = []

    def field(x, t):
        seen.append(t)
        return -x

    plot_vector_field(ax, field, t=0.25, resolution=5)
    assert torch.all(seen[0] == 0.25) and seen[0].shape == (25,)


def test_plot_trajectories_draws_count_paths(ax) -> None:
    plot_trajectories(ax, trajectory(), count=5)
    assert len(ax.lines) == 5


def test_animate_inlines_one_frame_per_shown_time() -> None:
    html = animate(trajectory(steps=30), frames=10).html
    assert "<script" in html
    assert html.count("data:image/png;base64") == 10
    assert "https://" not in html and "http://" not in html, "the animation loads something from the network"
    assert '<img alt="Animation of particles' in html


def test_animation_frames_use_a_small_palette() -> None:
    """Each frame is a palette PNG of at most 64 colours, the same picture as the full-colour frame."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from flowdiff.plotting import ANIMATION_COLOURS, _palette_frames

    colourful = Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8))
    smooth = Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8)[:, None, None], (1, 40, 3)))
    frames = []
    for image in (colourful, smooth):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        frames.append(base64.b64encode(buffer.getvalue()).decode())
    html = "".join(f'frames[{i}] = "data:image/png;base64,{frame}"' for i, frame in enumerate(frames))
    decoded = [Image.open(io.BytesIO(base64.b64decode(frame))) for frame in re.findall(r"base64,([^\"]+)", _palette_frames(html))]
    assert len(decoded) == 2 and all(frame.mode == "P" for frame in decoded)
    assert all(len(frame.getcolors(256)) <= ANIMATION_COLOURS for frame in decoded)
    # A smooth background survives: every pixel within a few levels of the original.
    gap = np.abs(np.asarray(decoded[1].convert("RGB"), dtype=int) - np.asarray(smooth, dtype=int)).max()
    assert gap <= 4, gap
    assert "data:image/png;base64" in animate(trajectory(steps=3), frames=2).html


def test_animation_lists_its_alt_text_for_translators() -> None:
    animation = animate(trajectory(steps=3), frames=2, alt='Dots "move" & settle')
    data, metadata = animation._repr_mimebundle_()
    assert data == {"text/html": animation.html}
    assert '<img alt="Dots &quot;move&quot; &amp; settle"' in animation.html
    assert metadata == {"text/html": {"texts": ['Dots "move" & settle']}}


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda ax: plot_samples(ax, torch.randn(5, 3)), r"^x must have 2 columns"),
        (lambda ax: plot_density(ax, lambda x: x[:, 0], bounds=(1.0, 0.0, 0.0, 1.0)), "bounds"),
        (lambda ax: plot_trajectories(ax, trajectory(), count=0), "count"),
        (lambda ax: grid_points(resolution=-2), "resolution"),
        (lambda ax: animate(trajectory(), frames=0), "frames"),
        (lambda ax: plot_image_grid(ax, torch.zeros(4, 28, 28), 2), "images"),
        (lambda ax: plot_image_grid(ax, torch.zeros(4, 1, 28, 28), 0), "columns"),
    ],
)
def test_bad_input_names_the_argument(ax, call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call(ax)


def test_image_grid_tiles_dark_ink_on_white(ax) -> None:
    """Two 2x2 images side by side with 1 pixel of padding: ink (+1) is black, background (-1) white."""
    images = torch.full((2, 1, 2, 2), -1.0)
    images[0, 0, 0, 0] = 1.0
    images[1, 0, 1, 1] = 3.0  # overshoot is clipped to ink
    plot_image_grid(ax, images, columns=2, padding=1)
    canvas = ax.get_images()[0].get_array()
    assert canvas.shape == (2, 5)
    assert canvas[0, 0] == 0 and canvas[1, 4] == 0 and canvas[:, 2].tolist() == [1, 1]
    assert canvas.sum() == 10 - 2


def test_image_sprite_places_each_frame_in_its_tile() -> None:
    """Frame (r, c) of the sheet is tile (r, c): a frame of all-ink images is black exactly there."""
    import base64
    import io

    import matplotlib.image

    from flowdiff.plotting import image_sprite, tile_images

    frames = -torch.ones(2, 3, 4, 1, 5, 5)  # blank paper everywhere
    frames[1, 2] = 1.0  # ink in frame (1, 2) only
    uri = image_sprite(frames, columns=2, padding=1)
    assert uri.startswith("data:image/png;base64,")
    sheet = matplotlib.image.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))[..., 0]
    tile = tile_images(frames[0, 0], columns=2, padding=1)
    height, width = tile.shape
    assert sheet.shape == (2 * height, 3 * width)
    inked = sheet < 0.5
    assert inked[height:, 2 * width:].sum() == 4 * 5 * 5
    assert inked.sum() == 4 * 5 * 5


def test_image_sprite_names_a_bad_shape() -> None:
    from flowdiff.plotting import image_sprite

    with pytest.raises(ValueError, match="frames must have shape"):
        image_sprite(torch.zeros(2, 4, 1, 5, 5), columns=2)
