r"""Diffusion in discrete time: DDPM and DDIM (Chapter 7).

**Time convention of this module.** Following DDPM and "Step-by-Step
Diffusion" (Nakkiran et al., 2024), time ``s`` runs the other way from the
rest of the book: data at ``s = 0``, noise at ``s = 1``. Convert with
:func:`book_time` (``t = 1 - s``).

The forward process is the variance-exploding random walk
(Chapter 7, eq. ``eq-dd-forward``)

.. math::
    x_{s + Δs} = x_s + \sigma_q \sqrt{Δs}\, \eta, \qquad\text{so}\qquad
    x_s = x_0 + \sigma_q \sqrt{s}\, \varepsilon,

on the grid ``s_k = k Δs``, ``Δs = 1/T``. Both samplers go backwards
through the grid and use the posterior mean of one step back
(Chapter 7, eq. ``eq-dd-posterior-mean``)

.. math::
    \mu(x_s) = E[x_{s-Δs} \mid x_s] = \frac{Δs}{s} E[x_0 \mid x_s] + \Bigl(1 - \frac{Δs}{s}\Bigr) x_s,

DDPM (Algorithm ``alg-dd-ddpm``) by sampling ``N(μ, σ_q² Δs)``, DDIM
(Algorithm ``alg-dd-ddim``) deterministically by
``x_s + λ (μ - x_s)``, ``λ = σ_s / (σ_{s-Δs} + σ_s)``, ``σ_s = σ_q √s``.
A *denoiser* is any callable ``(x, s) -> E[x_0 | x_s]`` with ``x`` of shape
``(n, d)`` and ``s`` of shape ``(n,)``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from flowdiff._checks import check_batch, check_count, check_positive
from flowdiff.paths import NoisableData
from flowdiff.solvers import Trajectory

__all__ = [
    "Denoiser",
    "book_time",
    "VarianceExplodingChain",
    "exact_denoiser",
    "ddpm_sample",
    "ddim_sample",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]


def book_time(s: Tensor) -> Tensor:
    """The book's time ``t = 1 - s`` (noise at 0, data at 1) of the diffusion time ``s`` (Chapter 7)."""
    if not isinstance(s, Tensor):
        raise ValueError(f"s must be a torch.Tensor, got {type(s).__name__}")
    return 1 - s


class VarianceExplodingChain:
    r"""The discrete forward process ``x_s = x_0 + σ_q √s ε`` on ``T`` steps (Chapter 7, eq. ``eq-dd-forward``).

    Args:
        sigma: the noise scale ``σ_q``; at ``s = 1`` the data is buried under ``N(0, σ_q² I)``.
        steps: the number of steps ``T`` (``Δs = 1/T``).
    """

    def __init__(self, sigma: float, steps: int) -> None:
        check_positive(sigma, "sigma")
        check_count(steps, "steps")
        self.sigma = float(sigma)
        self.steps = steps

    @property
    def step_size(self) -> float:
        """``Δs = 1/T``."""
        return 1.0 / self.steps

    @property
    def times(self) -> Tensor:
        """The grid ``s_k = k/T``, ``k = 0, …, T``, shape ``(T + 1,)``, in float64."""
        return torch.arange(self.steps + 1, dtype=torch.float64) / self.steps

    def noise_std(self, s: Tensor) -> Tensor:
        """``σ_s = σ_q √s``, the standard deviation of ``x_s - x_0``."""
        if not isinstance(s, Tensor) or torch.any(s < 0):
            raise ValueError("s must be a tensor of times >= 0")
        return self.sigma * torch.sqrt(s)

    def noised(self, x0: Tensor, s: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A draw of ``x_s = x_0 + σ_q √s ε``; ``x0`` of shape ``(n, d)``, ``s`` of shape ``(n,)``."""
        check_batch(x0, "x0")
        _check_times(s, x0)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        return x0 + self.noise_std(s.to(x0.dtype))[:, None] * noise

    def posterior_mean(self, x: Tensor, denoised: Tensor, s: Tensor) -> Tensor:
        r"""``E[x_{s-Δs} | x_s] = (Δs/s) E[x_0 | x_s] + (1 - Δs/s) x_s`` (Chapter 7, eq. ``eq-dd-posterior-mean``).

        ``s`` (shape ``(n,)``) must be a grid time ``>= Δs``.
        """
        check_batch(x, "x")
        check_batch(denoised, "denoised", x.shape[1])
        _check_times(s, x)
        if torch.any(s < self.step_size - 1e-12):
            raise ValueError(f"s must be >= the step size {self.step_size} (there is no step back from s = 0)")
        ratio = (self.step_size / s.to(x.dtype))[:, None]
        return ratio * denoised + (1 - ratio) * x


def _check_times(s: Tensor, x: Tensor) -> None:
    if not isinstance(s, Tensor) or s.shape != (x.shape[0],):
        shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"s must have shape ({x.shape[0]},), one time per sample, got {shape}")
    if torch.any(s < 0) or torch.any(s > 1):
        raise ValueError("s must lie in [0, 1]")


def exact_denoiser(data: NoisableData, chain: VarianceExplodingChain) -> Denoiser:
    r"""The exact ``E[x_0 | x_s]`` when the data is a Gaussian mixture or a set of points (Chapter 7).

    ``x_s = x_0 + σ_q √s ε`` is the data noised with scale 1 and noise
    ``σ_q √s``, so this is ``data.posterior_mean(x, 1, σ_q √s)``: for points
    ``a_k``, the average of the points weighted by their exact posterior
    probabilities.
    """
    if not hasattr(data, "posterior_mean"):
        raise ValueError("data must be a GaussianMixture or PointMasses (with posterior_mean)")
    if not isinstance(chain, VarianceExplodingChain):
        raise ValueError(f"chain must be a VarianceExplodingChain, got {type(chain).__name__}")

    def denoiser(x: Tensor, s: Tensor) -> Tensor:
        _check_times(s, x)
        return data.posterior_mean(x, 1.0, chain.noise_std(s.to(x.dtype)))

    return denoiser


def _sample(
    denoiser: Denoiser,
    chain: VarianceExplodingChain,
    x_start: Tensor,
    generator: torch.Generator | None,
    trajectory: bool,
    stochastic: bool,
) -> Tensor | Trajectory:
    if not callable(denoiser):
        raise ValueError("denoiser must be callable as denoiser(x, s)")
    if not isinstance(chain, VarianceExplodingChain):
        raise ValueError(f"chain must be a VarianceExplodingChain, got {type(chain).__name__}")
    check_batch(x_start, "x_start")
    times = chain.times.to(x_start.dtype)
    x = x_start
    states = [x] if trajectory else []
    for k in range(chain.steps, 0, -1):
        s = times[k].expand(x.shape[0])
        mean = chain.posterior_mean(x, denoiser(x, s), s)
        if stochastic:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = mean + chain.sigma * math.sqrt(chain.step_size) * noise
        else:
            sigma_now, sigma_before = math.sqrt(times[k].item()), math.sqrt(times[k - 1].item())
            x = x + sigma_now / (sigma_before + sigma_now) * (mean - x)
        if trajectory:
            states.append(x)
    if trajectory:
        return Trajectory(times=times.flip(0), states=torch.stack(states, dim=1))
    return x


@torch.no_grad()
def ddpm_sample(
    denoiser: Denoiser,
    chain: VarianceExplodingChain,
    x_start: Tensor,
    generator: torch.Generator | None = None,
    trajectory: bool = False,
) -> Tensor | Trajectory:
    r"""DDPM sampling (Chapter 7, Algorithm ``alg-dd-ddpm``): ``x_{s-Δs} ~ N(μ(x_s), σ_q² Δs I)`` from ``s = 1`` to 0.

    Args:
        denoiser: ``(x, s) -> E[x_0 | x_s]``.
        chain: the forward process (``σ_q``, ``T``).
        x_start: samples at ``s = 1``, usually ``N(0, σ_q² I)``, shape ``(n, d)``.
        generator: seeds the noise of each step.
        trajectory: return a :class:`~flowdiff.solvers.Trajectory` whose
            ``times`` are the diffusion times ``s`` in the order visited (1 down to 0).
    """
    return _sample(denoiser, chain, x_start, generator, trajectory, stochastic=True)


@torch.no_grad()
def ddim_sample(
    denoiser: Denoiser,
    chain: VarianceExplodingChain,
    x_start: Tensor,
    trajectory: bool = False,
) -> Tensor | Trajectory:
    r"""DDIM sampling (Chapter 7, Algorithm ``alg-dd-ddim``): deterministic, ``x ← x + λ (μ(x) - x)``.

    ``λ = σ_s / (σ_{s-Δs} + σ_s)`` with ``σ_s = σ_q √s``; equivalently
    ``x_{s-Δs} = \hat x_0 + (σ_{s-Δs}/σ_s)(x_s - \hat x_0)`` with
    ``\hat x_0 = E[x_0 | x_s]``. No noise is added: the same start always gives the same sample.
    """
    return _sample(denoiser, chain, x_start, None, trajectory, stochastic=False)
