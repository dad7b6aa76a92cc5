r"""Neural networks for vector fields, scores and denoisers on vectors (Chapter 5).

A model of this module maps a batch of points ``x`` of shape ``(n, d)``
and their times ``t`` of shape ``(n,)`` to ``(n, d)``. Time enters through
random Fourier features (Chapter 5, eq. ``eq-fm-time-embedding``)

.. math::
    \gamma(t) = \bigl(\sin(2\pi \omega_1 t), \dots, \sin(2\pi \omega_m t),
                      \cos(2\pi \omega_1 t), \dots, \cos(2\pi \omega_m t)\bigr),

so that a small network can represent fields that change quickly in time
(near the data end, ``t → 1``) as easily as slowly varying ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowdiff._checks import check_batch, check_count, check_positive

__all__ = ["FourierTimeEmbedding", "MLPVectorField"]


class FourierTimeEmbedding(nn.Module):
    r"""Random Fourier features of the time, ``(n,) -> (n, features)`` (Chapter 5, eq. ``eq-fm-time-embedding``).

    Frequencies ``ω_j ~ N(0, scale²)`` are drawn once, from a fixed seed,
    and kept as a buffer, so a saved model reloads with the same features.

    Args:
        features: output width, even.
        scale: standard deviation of the frequencies.
    """

    def __init__(self, features: int = 32, scale: float = 4.0) -> None:
        super().__init__()
        check_count(features, "features")
        check_positive(scale, "scale")
        if features % 2:
            raise ValueError(f"features must be even, got {features}")
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("frequencies", scale * torch.randn(features // 2, generator=generator))

    def forward(self, t: Tensor) -> Tensor:
        angles = 2 * math.pi * t[:, None] * self.frequencies
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class MLPVectorField(nn.Module):
    r"""A multilayer perceptron ``(x, t) -> R^d`` with a Fourier time embedding (Chapter 5).

    ``[x, γ(t)] → Linear → SiLU → … → Linear``: ``layers`` linear maps, the
    hidden ones of width ``hidden``. It serves as a vector field ``u^θ_t``
    (flow matching), a noise predictor ``ε^θ_t`` (denoising score
    matching) or a denoiser ``E[x_0 | x_t]`` (DDPM), depending on the loss
    it is trained with.

    Args:
        dim: dimension ``d`` of the points.
        hidden: width of the hidden layers.
        layers: number of linear layers (at least 2).
        time_features: width of the time embedding.
    """

    def __init__(self, dim: int, hidden: int = 128, layers: int = 4, time_features: int = 32) -> None:
        super().__init__()
        check_count(dim, "dim")
        check_count(hidden, "hidden")
        check_count(layers, "layers")
        if layers < 2:
            raise ValueError(f"layers must be >= 2, got {layers}")
        self.dim = dim
        self.time_embedding = FourierTimeEmbedding(time_features)
        widths = [dim + time_features] + [hidden] * (layers - 1)
        blocks: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(width_in, width_out), nn.SiLU()]
        blocks.append(nn.Linear(widths[-1], dim))
        self.network = nn.Sequential(*blocks)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample, got {shape}")
        features = torch.cat([x, self.time_embedding(t.to(x.dtype)).to(x.dtype)], dim=1)
        return self.network(features)
