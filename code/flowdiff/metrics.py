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

For images (Chapter 10) a trained classifier judges the samples: the
fraction it assigns to the label they were generated for, and the
**Fréchet distance** between Gaussians fitted to its features of the
samples and of held-out data (eq. ``eq-digits-frechet``),

.. math::
    d_F^2 = \|\mu_x - \mu_y\|^2 + \operatorname{tr}\bigl(\Sigma_x + \Sigma_y - 2 (\Sigma_x^{1/2} \Sigma_y \Sigma_x^{1/2})^{1/2}\bigr),

FID's formula with the book's own MNIST classifier in place of Inception.

:func:`path_straightness` (Chapter 14) measures how far simulated paths
are from straight lines, the property that lets few solver steps suffice.

Devices: the distances are computed in float64 on the samples' device
(on the CPU for Apple's ``mps``, which has no float64), and returned as
Python floats. The exact ``W_2`` and the Fréchet distance hand their small
matrices to POT and NumPy, so those two copy to the CPU, explicitly, at
that boundary.

The experiments that apply these measures over solvers, step counts and
guidance scales are in :mod:`flowdiff.sweeps`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ot
import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff._checks import check_batch, check_count, check_positive
from flowdiff.solvers import Trajectory

__all__ = [
    "sliced_wasserstein",
    "mmd",
    "wasserstein",
    "gaussian_frechet_distance",
    "frechet_distance",
    "ClassifierJudgement",
    "judge_samples",
    "path_straightness",
]

def _check_samples(x: Tensor, y: Tensor) -> None:
    check_batch(x, "x")
    check_batch(y, "y", x.shape[1])


def _float64(x: Tensor) -> Tensor:
    """``x`` in float64 for an accurate distance: on its own device, or on the CPU for ``mps`` (no float64 there)."""
    if x.device.type == "mps":
        x = x.cpu()
    return x.detach().double()


def _numpy(x: Tensor) -> np.ndarray:
    """``x`` as a float64 NumPy array, for the libraries (POT, NumPy's eigensolver) that run on the CPU."""
    return x.detach().cpu().double().numpy()


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
    x = _float64(x)
    y = _float64(y).to(x.device)
    directions = _random.randn((x.shape[1], projections), like=x, generator=generator)
    directions = directions / directions.norm(dim=0, keepdim=True)
    px, py = x @ directions, y @ directions
    if px.shape[0] == py.shape[0]:
        squared = (px.sort(dim=0).values - py.sort(dim=0).values) ** 2
    else:
        size = max(px.shape[0], py.shape[0])
        levels = (torch.arange(size, dtype=x.dtype, device=x.device) + 0.5) / size
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
    x = _float64(x)
    y = _float64(y).to(x.device)

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
    a, b = _numpy(x), _numpy(y)
    cost = ot.dist(a, b, metric="sqeuclidean")
    weights_a = np.full(a.shape[0], 1 / a.shape[0])
    weights_b = np.full(b.shape[0], 1 / b.shape[0])
    return math.sqrt(max(float(ot.emd2(weights_a, weights_b, cost, numItermax=10**7)), 0.0))


def path_straightness(trajectory: Trajectory) -> float:
    r"""The straightness ``S = E ∫_0^1 ‖(X_1 − X_0) − Ẋ_t‖² dt`` of simulated paths (Chapter 14, eq. ``eq-fast-straightness``).

    ``S = 0`` exactly when every path is a straight line travelled at
    constant speed, which one Euler step integrates without error. The
    velocity ``Ẋ_t`` is the finite difference of consecutive states, so
    the trajectory should come from a fine grid.

    Args:
        trajectory: states of shape ``(n, T, ...)`` at times ``(T,)``, as from
            :func:`~flowdiff.solvers.simulate_trajectory`.
    """
    if not isinstance(trajectory, Trajectory):
        raise ValueError(f"trajectory must be a flowdiff.solvers.Trajectory, got {type(trajectory).__name__}")
    if trajectory.times.shape[0] < 2:
        raise ValueError("trajectory must hold at least two times")
    states = _float64(trajectory.states.flatten(2))
    times = _float64(trajectory.times).to(states.device)
    steps = times.diff()
    span = times[-1] - times[0]
    velocities = states.diff(dim=1) / steps[None, :, None]
    chord = (states[:, -1] - states[:, 0]) / span
    deviation = (chord[:, None] - velocities).square().sum(dim=2)
    return (deviation * steps).sum(dim=1).mean().item()


def _psd_square_root(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix, by its eigendecomposition."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def gaussian_frechet_distance(mean_x: Tensor, cov_x: Tensor, mean_y: Tensor, cov_y: Tensor) -> float:
    r"""The Fréchet (2-Wasserstein) distance ``d_F`` between ``N(μ_x, Σ_x)`` and ``N(μ_y, Σ_y)`` (Chapter 10, eq. ``eq-digits-frechet``).

    Computed in float64. The trace of ``(Σ_x^{1/2} Σ_y Σ_x^{1/2})^{1/2}`` is
    the sum of the square roots of the eigenvalues of that symmetric
    positive semi-definite matrix, so singular covariances (features that
    are always zero, fewer samples than dimensions) need no regularisation.
    """
    d = mean_x.shape[0] if isinstance(mean_x, Tensor) and mean_x.ndim == 1 else None
    for value, name in ((mean_x, "mean_x"), (mean_y, "mean_y")):
        if not isinstance(value, Tensor) or value.ndim != 1 or value.shape[0] != d:
            raise ValueError(f"{name} must be a vector of the length of mean_x")
    for value, name in ((cov_x, "cov_x"), (cov_y, "cov_y")):
        if not isinstance(value, Tensor) or value.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d})")
    mx, my = _numpy(mean_x), _numpy(mean_y)
    sx, sy = _numpy(cov_x), _numpy(cov_y)
    root_x = _psd_square_root(sx)
    product = root_x @ sy @ root_x
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    squared = float(np.sum((mx - my) ** 2) + np.trace(sx) + np.trace(sy) - 2 * cross)
    return math.sqrt(max(squared, 0.0))


def frechet_distance(x: Tensor, y: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two samples of features, each ``(n, d)`` (Chapter 10, eq. ``eq-digits-frechet``).

    Means and unbiased covariances of ``x`` and ``y``, then :func:`gaussian_frechet_distance`.
    """
    _check_samples(x, y)
    if min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("x and y must hold at least two samples each to estimate a covariance")
    x, y = _float64(x), _float64(y)
    return gaussian_frechet_distance(x.mean(0), torch.cov(x.T).reshape(x.shape[1], -1), y.mean(0), torch.cov(y.T).reshape(y.shape[1], -1))


@dataclass(frozen=True)
class ClassifierJudgement:
    """A classifier's verdict on generated images: the fraction classified as their target label, and ``d_F`` of its features."""

    accuracy: float
    frechet: float


@torch.no_grad()
def judge_samples(
    classifier: nn.Module, images: Tensor, labels: Tensor, reference_features: Tensor, batch_size: int = 1000
) -> ClassifierJudgement:
    """Score generated ``images`` (``(n, 1, h, w)`` in ``[-1, 1]``) made for ``labels`` (Chapter 10).

    Args:
        classifier: a network with ``features(x)`` and ``forward(x) -> logits``,
            such as :class:`~flowdiff.models.MNISTClassifier`, in evaluation mode.
        images: generated images; values outside ``[-1, 1]`` are clamped first.
        labels: the label each image was generated for, shape ``(n,)``.
        reference_features: the classifier's features of held-out data, ``(m, feature_dim)``.
        batch_size: images classified at once.
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError("images must have shape (n, c, h, w)")
    if not isinstance(labels, Tensor) or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},)")
    check_count(batch_size, "batch_size")
    classifier.eval()
    features, predictions = [], []
    for chunk in images.clamp(-1, 1).split(batch_size):
        feature = classifier.features(chunk)
        features.append(feature)
        predictions.append(classifier.head(feature).argmax(1))
    accuracy = (torch.cat(predictions) == labels.to(images.device)).sum().item() / labels.shape[0]
    return ClassifierJudgement(accuracy, frechet_distance(torch.cat(features), reference_features))
