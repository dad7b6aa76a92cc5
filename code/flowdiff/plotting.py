"""The few plotting helpers the chapters share (Chapters 1–3 onwards).

Every helper draws on a Matplotlib ``Axes`` that the caller owns, so a
chapter composes its figures from them and keeps control of layout and
captions. :func:`animate` turns a :class:`~flowdiff.solvers.Trajectory`
into a self-contained HTML animation (JavaScript and PNG frames inlined)
that a notebook and the built web page both display.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from torch import Tensor

from flowdiff._checks import check_batch, check_count
from flowdiff.solvers import Trajectory
from flowdiff.translated_figures import install_from_environment

__all__ = [
    "Bounds",
    "use_book_style",
    "grid_points",
    "plot_density",
    "plot_samples",
    "plot_vector_field",
    "plot_trajectories",
    "tile_images",
    "image_sprite",
    "HTMLAnimation",
    "animate",
    "plot_image_grid",
]

Bounds = tuple[float, float, float, float]
"""A plotting window ``(xmin, xmax, ymin, ymax)``."""

DEFAULT_BOUNDS: Bounds = (-3.5, 3.5, -3.5, 3.5)

# A colour-blind-safe palette (Okabe & Ito), used for every figure of the book.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def use_book_style() -> None:
    """Set Matplotlib defaults shared by every figure of the book: size, fonts, colours.

    In a notebook run by the book's build, figures are also rendered with their
    texts translated for the other edition (see :mod:`flowdiff.translated_figures`).
    """
    plt.rcParams.update(
        {
            "figure.figsize": (7.0, 3.2),
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "figure.constrained_layout.use": True,
            "axes.prop_cycle": plt.cycler(color=PALETTE),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "image.cmap": "Blues",
            "animation.embed_limit": 20.0,
        }
    )
    install_from_environment()


def _check_bounds(bounds: Sequence[float]) -> Bounds:
    if len(bounds) != 4:
        raise ValueError(f"bounds must be (xmin, xmax, ymin, ymax), got {bounds!r}")
    xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"bounds must satisfy xmin < xmax and ymin < ymax, got {bounds!r}")
    return xmin, xmax, ymin, ymax


def _frame(ax: Axes, bounds: Bounds) -> None:
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    ax.set_aspect("equal")


def grid_points(
    bounds: Bounds = DEFAULT_BOUNDS, resolution: int = 150, device: torch.device | str | None = None
) -> tuple[np.ndarray, np.ndarray, Tensor]:
    """A ``resolution x resolution`` grid over ``bounds``.

    Returns the mesh ``X, Y`` (NumPy arrays for Matplotlib) and the same points
    as a batch of shape ``(resolution**2, 2)`` on ``device`` (default CPU) to
    feed a density or a vector field that lives there.
    """
    xmin, xmax, ymin, ymax = _check_bounds(bounds)
    check_count(resolution, "resolution")
    xs = torch.linspace(xmin, xmax, resolution, device=device)
    ys = torch.linspace(ymin, ymax, resolution, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    return grid_x.cpu().numpy(), grid_y.cpu().numpy(), points


def plot_density(
    ax: Axes,
    log_density: Callable[[Tensor], Tensor],
    bounds: Bounds = DEFAULT_BOUNDS,
    resolution: int = 150,
    levels: int = 12,
    cmap: str = "Blues",
    device: torch.device | str | None = None,
) -> None:
    """Filled contours of ``exp(log_density(x))`` over a 2-D window; the points are made on ``device``."""
    grid_x, grid_y, points = grid_points(bounds, resolution, device)
    with torch.no_grad():
        density = torch.exp(log_density(points)).reshape(grid_x.shape).detach().cpu().numpy()
    ax.contourf(grid_x, grid_y, density, levels=levels, cmap=cmap)
    _frame(ax, _check_bounds(bounds))


def plot_samples(ax: Axes, x: Tensor, bounds: Bounds | None = DEFAULT_BOUNDS, **scatter_kwargs: object) -> None:
    """A scatter plot of a batch of 2-D points, shape ``(n, 2)``."""
    check_batch(x, "x", 2)
    style = {"s": 3, "alpha": 0.5, "linewidths": 0, "rasterized": True} | scatter_kwargs
    points = x.detach().cpu().numpy()
    ax.scatter(points[:, 0], points[:, 1], **style)
    if bounds is not None:
        _frame(ax, _check_bounds(bounds))


def plot_vector_field(
    ax: Axes,
    vector_field: Callable[[Tensor, Tensor], Tensor],
    t: float = 0.0,
    bounds: Bounds = DEFAULT_BOUNDS,
    resolution: int = 17,
    color: str = "0.35",
    device: torch.device | str | None = None,
) -> None:
    """Arrows of a 2-D vector field ``u_t(x)`` at time ``t`` on a coarse grid; the points are made on ``device``."""
    grid_x, grid_y, points = grid_points(bounds, resolution, device)
    with torch.no_grad():
        velocity = vector_field(points, points.new_full((points.shape[0],), float(t))).detach().cpu().numpy()
    ax.quiver(grid_x, grid_y, velocity[:, 0].reshape(grid_x.shape), velocity[:, 1].reshape(grid_x.shape),
              color=color, angles="xy", pivot="mid", width=0.004)
    _frame(ax, _check_bounds(bounds))


def plot_trajectories(
    ax: Axes,
    trajectory: Trajectory,
    count: int = 50,
    bounds: Bounds | None = DEFAULT_BOUNDS,
    color: str = PALETTE[0],
    linewidth: float = 0.7,
) -> None:
    """The paths of the first ``count`` particles of a 2-D trajectory, start and end marked."""
    check_count(count, "count")
    states = trajectory.states[:count].detach().cpu().numpy()
    if states.ndim != 3 or states.shape[2] != 2:
        raise ValueError(f"trajectory.states must have shape (n, T, 2), got {states.shape}")
    for path in states:
        ax.plot(path[:, 0], path[:, 1], color=color, linewidth=linewidth, alpha=0.6)
    ax.scatter(states[:, 0, 0], states[:, 0, 1], s=8, color="0.3", zorder=3, label="start")
    ax.scatter(states[:, -1, 0], states[:, -1, 1], s=8, color=PALETTE[1], zorder=3, label="end")
    if bounds is not None:
        _frame(ax, _check_bounds(bounds))


_CDN_STYLESHEET = re.compile(r'<link rel="stylesheet"\s+href="https?://[^"]*font-awesome[^"]*"\s*/?>')
# Matplotlib breaks a frame's base64 into lines continued by a backslash inside the JavaScript string.
_PNG_FRAME = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)")
ANIMATION_COLOURS = 64


def _palette_frames(html: str, colours: int = ANIMATION_COLOURS) -> str:
    """Re-encode every PNG frame of an animation with a palette of ``colours`` colours.

    A frame is a scatter plot over a smooth background (a density's filled
    contours): a 64-colour palette keeps it indistinguishable and makes the
    frames about three times smaller, which keeps a chapter with animations
    within a page weight of 3 MB.
    """
    from PIL import Image

    def quantised(match: re.Match[str]) -> str:
        encoded = match.group(1).replace("\\", "").replace("\n", "")
        frame = Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")
        buffer = io.BytesIO()
        frame.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    return _PNG_FRAME.sub(quantised, html)


@dataclass(frozen=True)
class HTMLAnimation:
    """An animation as self-contained HTML; Jupyter and myst-nb display it through ``_repr_html_``.

    Displayed in a notebook, the output's metadata lists its alt text under
    ``texts``, as :mod:`flowdiff.translated_figures` does for a figure's texts, so
    that a book build can collect it for translators.
    """

    html: str
    alt: str = ""

    def _repr_html_(self) -> str:
        return self.html

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> tuple[dict, dict]:
        metadata = {"text/html": {"texts": [self.alt]}} if self.alt else {}
        return {"text/html": self.html}, metadata


def animate(
    trajectory: Trajectory,
    bounds: Bounds = DEFAULT_BOUNDS,
    frames: int = 40,
    interval_ms: int = 80,
    title: str = "t = {t:.2f}",
    background: Callable[[Axes], None] | None = None,
    size: float = 3.6,
    alt: str = "Animation of particles moving along their simulated trajectories",
) -> HTMLAnimation:
    """Animate the particles of a 2-D trajectory as a scatter plot evolving in time.

    Args:
        trajectory: states of shape ``(n, T, 2)``.
        frames: how many of the ``T`` time steps to show, evenly spaced.
        title: a format string receiving the current time ``t``.
        background: draws static content (a target density, say) on the axes first.
        size: figure width and height in inches.
        alt: the text that describes the animation to a reader who cannot see it.
    """
    check_count(frames, "frames")
    check_count(interval_ms, "interval_ms")
    bounds = _check_bounds(bounds)
    states = trajectory.states.detach().cpu().numpy()
    if states.ndim != 3 or states.shape[2] != 2:
        raise ValueError(f"trajectory.states must have shape (n, T, 2), got {states.shape}")
    times = trajectory.times.detach().cpu().numpy()
    shown = np.unique(np.linspace(0, len(times) - 1, min(frames, len(times))).round().astype(int))

    fig, ax = plt.subplots(figsize=(size, size), dpi=72)
    if background is not None:
        background(ax)
    scatter = ax.scatter(states[:, 0, 0], states[:, 0, 1], s=3, alpha=0.6, linewidths=0, color=PALETTE[0])
    _frame(ax, bounds)
    ax.set_xticks([])
    ax.set_yticks([])

    def draw(frame: int) -> tuple:
        index = shown[frame]
        scatter.set_offsets(states[:, index])
        ax.set_title(title.format(t=times[index]))
        return (scatter,)

    animation = FuncAnimation(fig, draw, frames=len(shown), interval=interval_ms, blit=False)
    html = _palette_frames(animation.to_jshtml(default_mode="once"))
    plt.close(fig)
    # Matplotlib links Font Awesome 4 from a CDN for the player's buttons; Jupyter and
    # the book's theme ship Font Awesome already, and a page must not depend on the network.
    html = _CDN_STYLESHEET.sub("", html)
    html = html.replace('<img id="_anim_img', f'<img alt="{escape(alt)}" id="_anim_img', 1)
    return HTMLAnimation(html, alt)


def tile_images(images: Tensor, columns: int, padding: int = 2) -> np.ndarray:
    """Grey images ``(n, 1, h, w)`` in ``[-1, 1]`` tiled row by row, ``columns`` per row, as one array in ``[0, 1]`` (Chapter 10).

    Ink is dark: a pixel of value 1 becomes 0. Values outside ``[-1, 1]`` (a
    sampler's overshoot) are clipped, and the tiles are separated by
    ``padding`` pixels of white (1).
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (n, 1, h, w), got {shape}")
    check_count(columns, "columns")
    n, _, h, w = images.shape
    rows = -(-n // columns)
    canvas = np.ones((rows * (h + padding) - padding, columns * (w + padding) - padding))
    tiles = ((images[:, 0].detach().cpu().double().clamp(-1, 1) + 1) / 2).numpy()
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        canvas[r * (h + padding) : r * (h + padding) + h, c * (w + padding) : c * (w + padding) + w] = 1 - tile
    return canvas


def plot_image_grid(ax: Axes, images: Tensor, columns: int, padding: int = 2) -> None:
    """Tile a batch of grey images ``(n, 1, h, w)`` in ``[-1, 1]`` row by row, ``columns`` per row (Chapter 10).

    See :func:`tile_images`; the axes are hidden.
    """
    ax.imshow(tile_images(images, columns, padding), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()


def image_sprite(frames: Tensor, columns: int, padding: int = 2) -> str:
    """Frames of image grids as one PNG sprite sheet, a ``data:`` URI (Chapter 10's interactive figures).

    ``frames`` of shape ``(R, C, n, 1, h, w)``: ``R × C`` frames, each a batch
    of ``n`` grey images in ``[-1, 1]`` tiled by :func:`tile_images` with
    ``columns`` per row. Frame ``(r, c)`` is the tile in row ``r`` and column
    ``c`` of the sheet, all tiles of one size, so a browser can cut them out.
    """
    if not isinstance(frames, Tensor) or frames.ndim != 6 or frames.shape[3] != 1:
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames must have shape (R, C, n, 1, h, w), got {shape}")
    rows = [np.concatenate([tile_images(frame, columns, padding) for frame in row], axis=1) for row in frames]
    sheet = np.concatenate(rows, axis=0)
    buffer = io.BytesIO()
    plt.imsave(buffer, sheet, cmap="gray", vmin=0, vmax=1, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
