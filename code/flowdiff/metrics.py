r"""How close are generated samples to the data? (Chapter 5.)

Three distances between two samples ``x`` (generated) and ``y`` (held-out
data), each a batch of shape ``(n, d)``:

- the **sliced Wasserstein distance** (eq. ``eq-fm-sliced-w2``): the 2-Wasserstein
  distance of 1-D projections, averaged over random directions ``θ``,

  .. math::
      SW_2(x, y)^2 = E_{\theta \sim U(S^{d-1})}\, W_2\bigl(\theta^\top x, \theta^\top y\bigr)^2,

  where a 1-D ``W_2`` between equal-size samples pairs the sorted values;
- the **maximum mean discrepancy** with a Gaussian kernel (unbiased estimate of ``MMD²``);
- the exact **2-Wasserstein distance** by optimal transport (the POT
  library), affordable for a few thousand points.

:func:`sampler_sweep` measures sample quality against the number of
solver steps, the table of Chapter 5 and of ``tools/benchmark_samplers.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import ot
import torch
from torch import Tensor

from flowdiff._checks import check_batch, check_count, check_positive
from flowdiff.distributions import Sampleable
from flowdiff.dynamics import ODE
from flowdiff.solvers import simulate, time_grid

__all__ = ["sliced_wasserstein", "mmd", "wasserstein", "SweepResult", "sampler_sweep"]

EVALUATIONS_PER_STEP = {"euler": 1, "heun": 2}


def _check_samples(x: Tensor, y: Tensor) -> None:
    check_batch(x, "x")
    check_batch(y, "y", x.shape[1])


def _quantiles(values: Tensor, levels: Tensor) -> Tensor:
    """Empirical quantile functions of each column of ``values`` (shape ``(n, k)``) at ``levels``."""
    return torch.quantile(values, levels, dim=0, interpolation="linear")


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int = 256, generator: torch.Generator | None = None) -> float:
    r"""The sliced 2-Wasserstein distance ``SW_2(x, y)`` (Chapter 5, eq. ``eq-fm-sliced-w2``).

    Directions are uniform on the sphere. For samples of equal size each
    projected 1-D distance pairs sorted values exactly; for unequal sizes
    both empirical quantile functions are compared on a common grid.

    Args:
        x, y: samples, shapes ``(n, d)`` and ``(m, d)``.
        projections: number of random directions.
        generator: seeds the directions.
    """
    _check_samples(x, y)
    check_count(projections, "projections")
    x, y = x.double(), y.double()
    directions = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    px, py = x @ directions, y @ directions
    if px.shape[0] == py.shape[0]:
        squared = (px.sort(dim=0).values - py.sort(dim=0).values) ** 2
    else:
        size = max(px.shape[0], py.shape[0])
        levels = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        squared = (_quantiles(px, levels) - _quantiles(py, levels)) ** 2
    return math.sqrt(squared.mean().item())


def mmd(x: Tensor, y: Tensor, bandwidth: float = 1.0) -> float:
    r"""Unbiased estimate of ``MMD²`` with the kernel ``k(a, b) = exp(-‖a - b‖² / (2 h²))`` (Chapter 5).

    .. math::
        \widehat{\mathrm{MMD}}^2 = \frac{1}{n(n-1)}\sum_{i \ne j} k(x_i, x_j)
          + \frac{1}{m(m-1)}\sum_{i \ne j} k(y_i, y_j) - \frac{2}{nm}\sum_{i, j} k(x_i, y_j).

    Unbiased, so it can be slightly negative when the laws agree. Needs at least two points in each sample.
    """
    _check_samples(x, y)
    check_positive(bandwidth, "bandwidth")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("x and y must each hold at least two samples")
    x, y = x.double(), y.double()

    def kernel_mean(a: Tensor, b: Tensor, same: bool) -> Tensor:
        k = torch.exp(-torch.cdist(a, b) ** 2 / (2 * bandwidth**2))
        if same:
            n = a.shape[0]
            return (k.sum() - k.diagonal().sum()) / (n * (n - 1))
        return k.mean()

    return (kernel_mean(x, x, True) + kernel_mean(y, y, True) - 2 * kernel_mean(x, y, False)).item()


def wasserstein(x: Tensor, y: Tensor, max_points: int = 5000) -> float:
    r"""The exact 2-Wasserstein distance between two empirical laws, by optimal transport (Chapter 5).

    .. math::
        W_2(x, y)^2 = \min_{\pi \in \Pi(x, y)} \sum_{i, j} \pi_{ij} \|x_i - y_j\|^2,

    solved as a linear programme by POT's network simplex (``ot.emd2``),
    uniform weights on both samples. Its cost grows like ``n³``, hence the
    ``max_points`` guard.
    """
    _check_samples(x, y)
    check_count(max_points, "max_points")
    if max(x.shape[0], y.shape[0]) > max_points:
        raise ValueError(f"x and y must hold at most max_points={max_points} points (exact OT is cubic)")
    a, b = x.double().numpy(), y.double().numpy()
    cost = ot.dist(a, b, metric="sqeuclidean")
    weights_a = torch.full((a.shape[0],), 1 / a.shape[0], dtype=torch.float64).numpy()
    weights_b = torch.full((b.shape[0],), 1 / b.shape[0], dtype=torch.float64).numpy()
    return math.sqrt(max(float(ot.emd2(weights_a, weights_b, cost, numItermax=10**7)), 0.0))


@dataclass(frozen=True)
class SweepResult:
    """One cell of a sampler sweep: the method, its steps and network evaluations, the distance, the time."""

    method: str
    steps: int
    evaluations: int
    sliced_w2: float
    seconds: float


def sampler_sweep(
    ode: ODE,
    source: Sampleable,
    reference: Tensor,
    methods: Sequence[str] = ("euler", "heun"),
    steps: Sequence[int] = (1, 2, 4, 8, 16, 32, 100),
    n: int = 2000,
    seed: int = 0,
    projections: int = 256,
) -> list[SweepResult]:
    """Sample quality against solver and number of steps (Chapter 5).

    For every method and step count, integrates ``ode`` from the same ``n``
    source points over ``[0, 1]`` and measures the sliced ``W_2`` of the
    result to ``reference`` (held-out data) with the same directions.

    Args:
        ode: the learned flow, e.g. ``VectorFieldODE(model)``.
        source: the initial distribution.
        reference: held-out data, shape ``(m, d)``.
        methods: solver names of :func:`flowdiff.solvers.simulate` (``"euler"``, ``"heun"``).
        steps: step counts.
        n: number of generated points.
        seed: seeds the source points and the projection directions.
        projections: directions of the sliced distance.
    """
    if not isinstance(ode, ODE):
        raise ValueError(f"ode must be a flowdiff.dynamics.ODE, got {type(ode).__name__}")
    check_batch(reference, "reference", source.dim)
    check_count(n, "n")
    unknown = [m for m in methods if m not in EVALUATIONS_PER_STEP]
    if unknown:
        raise ValueError(f"methods must be among {sorted(EVALUATIONS_PER_STEP)}, got {unknown}")
    for count in steps:
        check_count(count, "steps")
    x0 = source.sample(n, torch.Generator().manual_seed(seed)).to(reference.dtype)
    results = []
    for method in methods:
        for count in steps:
            start = time.perf_counter()
            samples = simulate(ode, x0, time_grid(count, dtype=x0.dtype), method=method)
            seconds = time.perf_counter() - start
            distance = sliced_wasserstein(samples, reference, projections, torch.Generator().manual_seed(seed))
            results.append(SweepResult(method, count, count * EVALUATIONS_PER_STEP[method], distance, seconds))
    return results
