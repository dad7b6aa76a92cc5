"""Probability distributions: what a generative model starts from and aims at.

Introduced in Chapter 1 (*Generation as sampling*). Every distribution
samples a batch, shape ``(n, d)``, from a seedable ``torch.Generator``;
those whose density is known in closed form (Gaussians and Gaussian
mixtures) also give the exact log-density and score, which Chapter 3 uses
to drive Langevin dynamics and later chapters use as ground truth. Gaussian
mixtures and point masses also know their exact posterior mean ``E[X | x]``
under Gaussian noise (Chapters 4 and 7).

The 2-D toy data sets are in :mod:`flowdiff.toy_data`; labelled data with
its exact classifier, in :mod:`flowdiff.labelled_mixtures`.

Devices: a distribution lives where its parameters (a Gaussian's mean, a
mixture's weights, stored points) live: it samples there, and its
log-density and score expect ``x`` there (build it from tensors on the
device you work on). Every draw goes through :mod:`flowdiff._random`, so a
CPU generator gives the same samples on every device.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_batch, check_count, check_positive

__all__ = [
    "Sampleable",
    "Density",
    "Gaussian",
    "GaussianMixture",
    "PointMasses",
    "Empirical",
]


class Sampleable(ABC):
    """A distribution we can draw samples from (Chapter 1, Definition 'data distribution')."""

    dim: int

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` independent samples, returned as a tensor of shape ``(n, dim)``."""


class Density(Sampleable):
    """A distribution with a known density ``p``: log-density and score ``∇ log p``."""

    @abstractmethod
    def log_density(self, x: Tensor) -> Tensor:
        """``log p(x)`` for a batch ``x`` of shape ``(n, dim)``; returns shape ``(n,)``."""

    @abstractmethod
    def score(self, x: Tensor) -> Tensor:
        """The score ``∇_x log p(x)`` for ``x`` of shape ``(n, dim)``; returns ``(n, dim)``."""


def _as_tensor(value: Tensor | list | float, name: str) -> Tensor:
    """A parameter as a floating tensor; a tensor keeps its device, a list or number lands on the CPU."""
    tensor = torch.as_tensor(value)
    if not torch.is_floating_point(tensor):
        tensor = tensor.to(torch.get_default_dtype())
    if not torch.all(torch.isfinite(tensor)):
        raise ValueError(f"{name} must be finite")
    return tensor


def _normalised_weights(weights: Tensor | None, k: int, like: Tensor) -> Tensor:
    """Mixture weights of shape ``(k,)``, positive, normalised to sum to one (uniform when ``None``), on ``like``'s device and dtype."""
    weights = torch.ones(k, dtype=like.dtype, device=like.device) if weights is None else _as_tensor(weights, "weights")
    if weights.shape != (k,):
        raise ValueError(f"weights must have shape ({k},), got shape {tuple(weights.shape)}")
    if torch.any(weights <= 0):
        raise ValueError("weights must be positive")
    return (weights / weights.sum()).to(like)


class Gaussian(Density):
    r"""The multivariate normal law ``N(mean, cov)`` (Chapter 1).

    .. math::
        \log p(x) = -\tfrac12 (x-\mu)^\top \Sigma^{-1} (x-\mu) - \tfrac12 \log\det(2\pi\Sigma),
        \qquad \nabla \log p(x) = -\Sigma^{-1}(x-\mu).

    Args:
        mean: shape ``(d,)``.
        cov: shape ``(d, d)``, symmetric positive definite.
    """

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        mean = _as_tensor(mean, "mean")
        if mean.ndim != 1:
            raise ValueError(f"mean must have shape (d,), got shape {tuple(mean.shape)}")
        cov = _as_tensor(cov, "cov").to(mean)
        d = mean.shape[0]
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}), got shape {tuple(cov.shape)}")
        if not torch.allclose(cov, cov.T):
            raise ValueError("cov must be symmetric")
        chol, info = torch.linalg.cholesky_ex(cov)
        if info.item() != 0:
            raise ValueError("cov must be positive definite")
        self.dim = d
        self.mean = mean
        self.cov = cov
        self._chol = chol
        self._precision = torch.cholesky_inverse(chol)
        self._log_normaliser = 0.5 * d * math.log(2 * math.pi) + torch.log(torch.diagonal(chol)).sum()

    @classmethod
    def isotropic(
        cls, dim: int, std: float = 1.0, mean: Tensor | None = None, device: torch.device | str | None = None
    ) -> "Gaussian":
        """``N(mean, std^2 I)`` in ``dim`` dimensions; ``mean`` defaults to the origin on ``device`` (default CPU)."""
        check_count(dim, "dim")
        check_positive(std, "std")
        mean = torch.zeros(dim, device=device) if mean is None else _as_tensor(mean, "mean")
        return cls(mean, std**2 * torch.eye(dim, dtype=mean.dtype, device=mean.device))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``x = mean + L z`` with ``L L^T = cov`` and ``z ~ N(0, I)``; shape ``(n, d)``."""
        check_count(n, "n")
        z = _random.randn((n, self.dim), like=self.mean, generator=generator)
        return self.mean + z @ self._chol.T

    def log_density(self, x: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        centred = x - self.mean
        quadratic = torch.einsum("ni,ij,nj->n", centred, self._precision, centred)
        return -0.5 * quadratic - self._log_normaliser

    def score(self, x: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        return -(x - self.mean) @ self._precision


class GaussianMixture(Density):
    r"""A mixture ``p(x) = Σ_k w_k N(x; μ_k, Σ_k)`` (Chapter 1; sampled by Langevin in Chapter 3).

    .. math::
        \nabla \log p(x) = \sum_k \gamma_k(x)\, \bigl(-\Sigma_k^{-1}(x-\mu_k)\bigr),
        \qquad \gamma_k(x) = \frac{w_k N(x;\mu_k,\Sigma_k)}{\sum_j w_j N(x;\mu_j,\Sigma_j)}.

    Args:
        means: shape ``(k, d)``.
        covs: shape ``(k, d, d)``.
        weights: shape ``(k,)``, positive; normalised to sum to one.
    """

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor | None = None) -> None:
        means = _as_tensor(means, "means")
        if means.ndim != 2:
            raise ValueError(f"means must have shape (k, d), got shape {tuple(means.shape)}")
        k, d = means.shape
        covs = _as_tensor(covs, "covs").to(means)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape ({k}, {d}, {d}), got shape {tuple(covs.shape)}")
        self.dim = d
        self.weights = _normalised_weights(weights, k, means)
        self.components = [Gaussian(means[i], covs[i]) for i in range(k)]

    @classmethod
    def isotropic(cls, means: Tensor, std: float, weights: Tensor | None = None) -> "GaussianMixture":
        """Components ``N(μ_k, std^2 I)`` with the given means, shape ``(k, d)``."""
        means = _as_tensor(means, "means")
        check_positive(std, "std")
        if means.ndim != 2:
            raise ValueError(f"means must have shape (k, d), got shape {tuple(means.shape)}")
        k, d = means.shape
        covs = std**2 * torch.eye(d, dtype=means.dtype, device=means.device).expand(k, d, d).clone()
        return cls(means, covs, weights)

    @classmethod
    def on_circle(
        cls, n_components: int, radius: float, std: float, device: torch.device | str | None = None
    ) -> "GaussianMixture":
        """Equal-weight 2-D mixture with means evenly spaced on a circle of the given radius, on ``device`` (default CPU)."""
        check_count(n_components, "n_components")
        check_positive(radius, "radius")
        angles = 2 * math.pi * torch.arange(n_components, device=device) / n_components
        means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        return cls.isotropic(means, std)

    @property
    def means(self) -> Tensor:
        """Component means, shape ``(k, d)``."""
        return torch.stack([c.mean for c in self.components])

    @property
    def mean(self) -> Tensor:
        """The mixture's mean ``E[X] = Σ_k w_k μ_k``, shape ``(d,)`` (Chapter 1, eq. ``eq-gen-mixture-moments``)."""
        return self.weights @ self.means

    @property
    def covariance(self) -> Tensor:
        r"""The mixture's covariance, shape ``(d, d)`` (Chapter 1, eq. ``eq-gen-mixture-moments``):

        .. math::
            \operatorname{Cov}[X] = \sum_k w_k (\Sigma_k + μ_k μ_k^\top) - E[X]\,E[X]^\top
        """
        second = sum(w * (c.cov + torch.outer(c.mean, c.mean)) for w, c in zip(self.weights, self.components))
        return second - torch.outer(self.mean, self.mean)

    def sample_with_labels(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Pairs ``(x, y)`` from the joint law: ``y ~ w``, then ``x ~ N(μ_y, Σ_y)`` (Chapter 1).

        Returns ``x`` of shape ``(n, d)`` and the component labels ``y`` of shape ``(n,)``,
        the data of conditional generation (Chapter 1, Definition ``def-gen-conditional``).
        """
        check_count(n, "n")
        labels = _random.multinomial(self.weights, n, generator=generator)
        out = torch.empty(n, self.dim, dtype=self.weights.dtype, device=self.weights.device)
        for k, component in enumerate(self.components):
            chosen = labels == k
            count = int(chosen.sum())
            if count:
                out[chosen] = component.sample(count, generator)
        return out, labels

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Pick a component ``k ~ w``, then ``x ~ N(μ_k, Σ_k)``; shape ``(n, d)``."""
        return self.sample_with_labels(n, generator)[0]

    def _log_joint(self, x: Tensor) -> Tensor:
        """``log w_k + log N(x; μ_k, Σ_k)`` for every component, shape ``(n, k)``."""
        return torch.stack(
            [torch.log(w) + c.log_density(x) for w, c in zip(self.weights, self.components)], dim=1
        )

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities ``γ_k(x)``, shape ``(n, k)``."""
        check_batch(x, "x", self.dim)
        return torch.softmax(self._log_joint(x), dim=1)

    def log_density(self, x: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        return torch.logsumexp(self._log_joint(x), dim=1)

    def score(self, x: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        gamma = torch.softmax(self._log_joint(x), dim=1)
        component_scores = torch.stack([c.score(x) for c in self.components], dim=1)
        return torch.einsum("nk,nkd->nd", gamma, component_scores)


    def noised(self, scale: float, noise_std: float) -> "GaussianMixture":
        r"""The law of ``scale · X + noise_std · ε`` for ``X`` from this mixture and ``ε ~ N(0, I)``.

        Each component ``N(μ_k, Σ_k)`` becomes ``N(scale μ_k, scale² Σ_k + noise_std² I)``
        with the same weight: this is the marginal ``p_t`` of a Gaussian
        probability path (Chapter 4, eq. ``eq-path-gaussian-mixture``).
        """
        scale, noise_std = _noise_arguments(scale, noise_std)
        eye = torch.eye(self.dim, dtype=self.weights.dtype, device=self.weights.device)
        means = scale * self.means
        covs = torch.stack([scale**2 * c.cov + noise_std**2 * eye for c in self.components])
        return GaussianMixture(means, covs, self.weights)

    def noised_posterior(self, x: Tensor, scale: float | Tensor, noise_std: float | Tensor) -> tuple[Tensor, Tensor]:
        r"""Denoiser and score of the noised law at ``x``: ``(E[X | x], ∇ log p(x))``, each ``(n, d)`` (Chapters 4 and 6).

        ``x = scale · X + noise_std · ε``; ``scale`` and ``noise_std`` are
        numbers or one value per sample (shape ``(n,)``), so a batch with
        different times costs one vectorised pass:

        .. math::
            E[X \mid x] = \sum_k \gamma_k(x)\,\bigl(\mu_k + s \Sigma_k S_k^{-1}(x - s\mu_k)\bigr),
            \qquad \nabla \log p(x) = -\sum_k \gamma_k(x)\, S_k^{-1}(x - s\mu_k),
            \qquad S_k = s^2 \Sigma_k + \sigma^2 I,

        with ``γ_k`` the responsibilities under the noised mixture.
        """
        covs = torch.stack([c.cov for c in self.components])
        return _mixture_posterior(self.means, covs, self.weights, x, scale, noise_std)

    def posterior_mean(self, x: Tensor, scale: float | Tensor, noise_std: float | Tensor) -> Tensor:
        r"""The denoiser ``E[X | scale · X + noise_std · ε = x]``, shape ``(n, d)`` (Chapter 6, Tweedie).

        See :meth:`noised_posterior` for the formula.
        """
        return self.noised_posterior(x, scale, noise_std)[0]


def _per_sample(value: float | Tensor, name: str, n: int, like: Tensor) -> Tensor:
    """A scale or noise level as one non-negative value per sample, shape ``(n,)``, on ``like``'s device and dtype."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.ndim == 0:
        value = value.expand(n)
    if value.shape != (n,):
        raise ValueError(f"{name} must be a number or have shape ({n},), got shape {tuple(value.shape)}")
    if torch.any(value < 0) or not torch.all(torch.isfinite(value)):
        raise ValueError(f"{name} must be finite and >= 0")
    return value


def _mixture_posterior(
    means: Tensor, covs: Tensor, weights: Tensor, x: Tensor, scale: float | Tensor, noise_std: float | Tensor
) -> tuple[Tensor, Tensor]:
    """``(E[X | x], ∇ log p(x))`` for ``x = scale X + noise_std ε``, ``X`` a mixture with ``(k, d)`` means, ``(k, d, d)`` covariances."""
    k, d = means.shape
    check_batch(x, "x", d)
    n = x.shape[0]
    scale = _per_sample(scale, "scale", n, x)[:, None, None, None]
    noise_std = _per_sample(noise_std, "noise_std", n, x)[:, None, None, None]
    means, covs, weights = means.to(x), covs.to(x), weights.to(x)
    noised_covs = scale**2 * covs + noise_std**2 * torch.eye(d, dtype=x.dtype, device=x.device)  # (n, k, d, d)
    chol, info = torch.linalg.cholesky_ex(noised_covs)
    if torch.any(info != 0):
        raise ValueError("noise_std must be > 0 where the data has no density (point masses, or scale = 0)")
    centred = x[:, None, :] - scale[..., 0] * means  # (n, k, d)
    solved = torch.cholesky_solve(centred[..., None], chol)[..., 0]  # S^{-1}(x - s μ)
    log_normal = (-0.5 * (centred * solved).sum(-1) - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
                  - 0.5 * d * math.log(2 * math.pi))
    gamma = torch.softmax(torch.log(weights) + log_normal, dim=1)  # (n, k)
    score = -torch.einsum("nk,nkd->nd", gamma, solved)
    denoised = means + scale[..., 0] * torch.einsum("kij,nkj->nki", covs, solved)
    return torch.einsum("nk,nkd->nd", gamma, denoised), score


def _noise_arguments(scale: float, noise_std: float) -> tuple[float, float]:
    check_positive(scale, "scale", allow_zero=True)
    check_positive(noise_std, "noise_std", allow_zero=True)
    return float(scale), float(noise_std)


class PointMasses(Sampleable):
    r"""A discrete distribution ``Σ_k w_k δ_{a_k}``: finitely many points with weights (Chapter 7).

    The simplest data set: the marginal of a Gaussian path started from it is
    a Gaussian mixture, and its denoiser ``E[X | x]`` weighs the points by
    their exact posterior probabilities.

    Args:
        points: shape ``(k, d)``.
        weights: shape ``(k,)``, positive; normalised to sum to one.
    """

    def __init__(self, points: Tensor, weights: Tensor | None = None) -> None:
        points = _as_tensor(points, "points")
        check_batch(points, "points")
        k = points.shape[0]
        self.points = points
        self.weights = _normalised_weights(weights, k, points)
        self.dim = points.shape[1]

    @property
    def mean(self) -> Tensor:
        """``Σ_k w_k a_k``, shape ``(d,)``."""
        return self.weights @ self.points

    @property
    def covariance(self) -> Tensor:
        """``Σ_k w_k (a_k - m)(a_k - m)^T``, shape ``(d, d)``."""
        centred = self.points - self.mean
        return torch.einsum("k,ki,kj->ij", self.weights, centred, centred)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        check_count(n, "n")
        index = _random.multinomial(self.weights, n, generator=generator)
        return self.points[index]

    def noised(self, scale: float, noise_std: float) -> GaussianMixture:
        """The law of ``scale · X + noise_std · ε``: the mixture of ``N(scale a_k, noise_std² I)``."""
        scale, noise_std = _noise_arguments(scale, noise_std)
        if noise_std == 0:
            raise ValueError("noise_std must be > 0 for point masses (the law has no density otherwise)")
        return GaussianMixture.isotropic(scale * self.points, noise_std, self.weights)

    def noised_posterior(self, x: Tensor, scale: float | Tensor, noise_std: float | Tensor) -> tuple[Tensor, Tensor]:
        r"""``(E[X | x], ∇ log p(x))`` for ``x = scale · X + noise_std · ε`` (Chapters 4 and 7).

        ``E[X | x] = Σ_k γ_k(x) a_k`` with the exact posterior weights
        ``γ_k(x) ∝ w_k N(x; scale a_k, noise_std² I)``; ``noise_std`` must be positive.
        """
        covs = self.points.new_zeros(self.points.shape[0], self.dim, self.dim)
        return _mixture_posterior(self.points, covs, self.weights, x, scale, noise_std)

    def posterior_mean(self, x: Tensor, scale: float | Tensor, noise_std: float | Tensor) -> Tensor:
        r"""``E[X | scale · X + noise_std · ε = x] = Σ_k γ_k(x) a_k``, shape ``(n, d)`` (Chapter 7)."""
        return self.noised_posterior(x, scale, noise_std)[0]


class Empirical(Sampleable):
    """The empirical distribution of a data set: each stored point with mass ``1/N`` (Chapter 1).

    Sampling draws rows with replacement, which is how a training loop sees
    a finite data set.

    Args:
        points: shape ``(N, d)``.
    """

    def __init__(self, points: Tensor) -> None:
        check_batch(points, "points")
        self.points = points
        self.dim = points.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        check_count(n, "n")
        index = _random.randint(self.points.shape[0], (n,), like=self.points, generator=generator)
        return self.points[index]
