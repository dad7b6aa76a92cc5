r"""Measurable properties of a handwritten digit: ink, stroke thickness, slant (Chapters 12 and 13).

All three are smooth functions of the pixels, so they can both describe an
image (the captions of Chapter 13) and be steered toward by their gradient
(Chapter 12). Images are ``(n, 1, h, w)`` in ``[-1, 1]``; the ink of a
pixel is ``ρ = (x + 1) / 2 ∈ [0, 1]``.

- **Thickness** (eq. ``eq-prompt-thickness``): a stroke of width ``w`` and
  length ``ℓ`` has area ``A ≈ w ℓ`` and perimeter ``P ≈ 2 ℓ``, so
  ``w ≈ 2 A / P``. The area is the total ink ``Σ ρ`` and the perimeter the
  total variation ``Σ ‖∇ρ‖`` (finite differences), in pixels.
- **Slant** (eq. ``eq-prompt-slant``): with ink-weighted moments of the
  column ``c`` and the row ``r`` (rows grow downward), the shear
  ``−Cov(c, r) / Var(r)`` is how many columns the ink moves right per row
  upward: positive for a digit leaning right, ``0`` for an upright one.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ink", "stroke_thickness", "slant"]


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (n, 1, h, w), got {shape}")


def ink(images: Tensor) -> Tensor:
    """The ink ``ρ = (x + 1) / 2`` of each pixel, clamped to ``[0, 1]``, shape of ``images``."""
    _check_images(images)
    return ((images + 1) / 2).clamp(0, 1)


def stroke_thickness(images: Tensor, eps: float = 1e-3) -> Tensor:
    r"""Mean stroke width in pixels, ``2 Σρ / Σ‖∇ρ‖`` (Chapter 13, eq. ``eq-prompt-thickness``), shape ``(n,)``.

    ``eps`` smooths the gradient norm at zero so that the measure is differentiable.
    """
    rho = ink(images)[:, 0]
    rows = torch.nn.functional.pad(rho.diff(dim=1), (0, 0, 0, 1))
    columns = torch.nn.functional.pad(rho.diff(dim=2), (0, 1, 0, 0))
    perimeter = (rows.square() + columns.square() + eps**2).sqrt().sum(dim=(1, 2)) - eps * rho[0].numel()
    return 2 * rho.sum(dim=(1, 2)) / perimeter.clamp_min(1e-6)


def slant(images: Tensor) -> Tensor:
    r"""The shear ``−Cov(c, r) / Var(r)`` of the ink (Chapter 13, eq. ``eq-prompt-slant``), shape ``(n,)``; ``> 0`` leans right."""
    rho = ink(images)[:, 0]
    height, width = rho.shape[1:]
    mass = rho.sum(dim=(1, 2)).clamp_min(1e-6)
    rows = torch.arange(height, dtype=rho.dtype, device=rho.device)[None, :, None]
    columns = torch.arange(width, dtype=rho.dtype, device=rho.device)[None, None, :]
    mean_row = (rho * rows).sum(dim=(1, 2)) / mass
    mean_column = (rho * columns).sum(dim=(1, 2)) / mass
    centred_row = rows - mean_row[:, None, None]
    centred_column = columns - mean_column[:, None, None]
    covariance = (rho * centred_row * centred_column).sum(dim=(1, 2)) / mass
    variance = (rho * centred_row.square()).sum(dim=(1, 2)) / mass
    return -covariance / variance.clamp_min(1e-6)
