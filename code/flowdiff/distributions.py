"""Probability distributions: what a generative model starts from and aims at.

Introduced in Chapter 1 (*Generation as sampling*). Every distribution
samples a batch, shape ``(n, d)``, from a seedable ``torch.Generator``;
those whose density is known in closed form (Gaussians and Gaussian
mixtures) also give the exact log-density and score, which Chapter 3 uses
to drive Langevin dynamics and later chapters use as ground truth.

Devices: a distribution with parameters (a Gaussian's mean, a mixture's
weights, stored points) lives where its parameters live: it samples there,
and its log-density and score expect ``x`` there (build it from tensors on
the device you work on). The 2-D toy sets have no parameters: they sample
on ``device`` (default: the generator's device, else the CPU). Every draw goes through :mod:`flowdiff._random`, so a CPU
generator gives the same samples on every device.

The 2-D toy sets are scaled to lie roughly in ``[-3, 3]^2``, the region where
a standard Gaussian puts almost all its mass, so that a flow from
``N(0, I)`` to any of them has comparable work to do.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

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
    "LabelledMixture",
    "Empirical",
    "Moons",
    "Circles",
    "Spiral",
    "Checkerboard",
    "Annulus",
    "SwissRoll",
    "TOY_DATASETS",
    "toy_dataset",
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


class LabelledMixture:
    r"""Labelled data whose every class is a Gaussian mixture (Chapter 8).

    Class ``y ∈ {0, …, K-1}`` has frequency ``π_y`` and law ``p(x | y)``, a
    :class:`GaussianMixture`; the unlabelled law is
    ``p(x) = Σ_y π_y p(x | y)`` (:attr:`mixture`) and Bayes' rule gives the
    exact classifier ``p(y | x) = π_y p(x | y) / p(x)`` (:meth:`posterior`).
    :meth:`noised` keeps the labels, so a Gaussian path's ``marginal`` of
    labelled data is labelled again, and its ``posterior`` is the noisy
    classifier ``p_t(y | x)`` of classifier guidance.

    Args:
        classes: one mixture per class, all of the same dimension.
        prior: the class frequencies ``π``, shape ``(K,)``; uniform when omitted.
    """

    def __init__(self, classes: Sequence[GaussianMixture], prior: Tensor | None = None) -> None:
        classes = list(classes)
        if not classes or not all(isinstance(c, GaussianMixture) for c in classes):
            raise ValueError("classes must be a non-empty sequence of GaussianMixture")
        if len({c.dim for c in classes}) != 1:
            raise ValueError("classes must all have the same dimension")
        self.classes = classes
        self.dim = classes[0].dim
        self.num_classes = len(classes)
        self.prior = _normalised_weights(prior, self.num_classes, classes[0].weights)

    @classmethod
    def isotropic(cls, means: Tensor, labels: Tensor, std: float, prior: Tensor | None = None) -> "LabelledMixture":
        """Components ``N(μ_k, std² I)``, component ``k`` in class ``labels[k]``, equal weights within a class."""
        means = _as_tensor(means, "means")
        if not isinstance(labels, Tensor) or labels.shape != (means.shape[0],) or labels.dtype != torch.long:
            raise ValueError(f"labels must be a long tensor of shape ({means.shape[0]},), one class per mean")
        count = int(labels.max()) + 1
        if labels.min() < 0 or any(not torch.any(labels == y) for y in range(count)):
            raise ValueError("labels must use every class 0, ..., K-1 at least once")
        return cls([GaussianMixture.isotropic(means[labels == y], std) for y in range(count)], prior)

    @property
    def mixture(self) -> GaussianMixture:
        """The unlabelled law ``Σ_y π_y p(x | y)`` as one mixture."""
        means = torch.cat([c.means for c in self.classes])
        covs = torch.stack([g.cov for c in self.classes for g in c.components])
        weights = torch.cat([p * c.weights for p, c in zip(self.prior, self.classes)])
        return GaussianMixture(means, covs, weights)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Pairs ``(x, y)``: ``y ~ π``, then ``x ~ p(· | y)``; shapes ``(n, d)`` and ``(n,)``."""
        check_count(n, "n")
        labels = _random.multinomial(self.prior, n, generator=generator)
        x = torch.empty(n, self.dim, dtype=self.prior.dtype, device=self.prior.device)
        for y, law in enumerate(self.classes):
            chosen = labels == y
            if chosen.any():
                x[chosen] = law.sample(int(chosen.sum()), generator)
        return x, labels

    def class_log_densities(self, x: Tensor) -> Tensor:
        """``log p(x | y)`` for every class, shape ``(n, K)``."""
        check_batch(x, "x", self.dim)
        return torch.stack([law.log_density(x) for law in self.classes], dim=1)

    def posterior(self, x: Tensor) -> Tensor:
        """The exact classifier ``p(y | x) = π_y p(x | y) / p(x)``, shape ``(n, K)`` (Chapter 8, eq. ``eq-guide-noisy-posterior``)."""
        return torch.softmax(torch.log(self.prior) + self.class_log_densities(x), dim=1)

    def noised(self, scale: float, noise_std: float) -> "LabelledMixture":
        """The labelled law of ``(scale · X + noise_std · ε, Y)``: every class noised, the prior kept."""
        return LabelledMixture([law.noised(scale, noise_std) for law in self.classes], self.prior)


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


class _Toy2D(Sampleable):
    """A 2-D toy data set, defined only through its sampler."""

    dim = 2

    def __init__(self, noise: float) -> None:
        check_positive(noise, "noise", allow_zero=True)
        self.noise = noise

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """``n`` points, shape ``(n, 2)``, in the default dtype, on ``device`` (default: the generator's device, else the CPU)."""
        check_count(n, "n")
        if device is None:
            device = generator.device if generator is not None else "cpu"
        uniform = _Uniform(generator, torch.device(device))
        clean = self._sample_clean(n, uniform)
        return clean + self.noise * _random.randn((n, 2), device=uniform.device, generator=generator)

    @abstractmethod
    def _sample_clean(self, n: int, uniform: "_Uniform") -> Tensor:
        """Points on the noise-free shape, shape ``(n, 2)``, from the uniform draws of ``uniform``."""


class _Uniform:
    """Uniform draws of a toy set on one device from one generator (see :mod:`flowdiff._random`)."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.generator, self.device = generator, device

    def __call__(self, *shape: int) -> Tensor:
        """Draws uniform on ``[0, 1)`` of the given shape, in the default dtype."""
        return _random.rand(shape, device=self.device, generator=self.generator)

    def integers(self, high: int, n: int) -> Tensor:
        """``n`` integers uniform on ``{0, …, high − 1}``."""
        return _random.randint(high, (n,), device=self.device, generator=self.generator)


class Moons(_Toy2D):
    """Two interleaving half circles (the 'moons' of scikit-learn), centred and scaled by 2."""

    def __init__(self, noise: float = 0.05) -> None:
        super().__init__(noise)

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        angle = math.pi * uniform(n)
        upper = uniform(n) < 0.5
        x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
        y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
        return 2 * (torch.stack([x, y], dim=1) - x.new_tensor([0.5, 0.25]))


class Circles(_Toy2D):
    """Two concentric circles of radii 2 and ``2 * factor``, each chosen with probability 1/2."""

    def __init__(self, noise: float = 0.05, factor: float = 0.5) -> None:
        super().__init__(noise)
        check_positive(factor, "factor")
        self.factor = factor

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        angle = 2 * math.pi * uniform(n)
        inner = uniform(n) < 0.5
        radius = torch.where(inner, 2 * self.factor, 2.0)
        return radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


class Spiral(_Toy2D):
    """An Archimedean spiral ``r ∝ θ`` with ``turns`` windings, reaching radius 2.5."""

    def __init__(self, noise: float = 0.05, turns: float = 1.5) -> None:
        super().__init__(noise)
        check_positive(turns, "turns")
        self.turns = turns

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        # sqrt makes the points uniform along the arc rather than in angle.
        fraction = torch.sqrt(uniform(n))
        angle = 2 * math.pi * self.turns * fraction
        radius = 2.5 * fraction
        return radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


class Checkerboard(_Toy2D):
    """Uniform on the dark squares of a ``squares x squares`` board covering ``[-2, 2]^2``."""

    def __init__(self, squares: int = 4, noise: float = 0.0) -> None:
        super().__init__(noise)
        check_count(squares, "squares")
        if squares < 2:
            raise ValueError(f"squares must be >= 2, got {squares}")
        self.squares = squares

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        side = 4.0 / self.squares
        cells = self.squares**2
        dark = torch.tensor([c for c in range(cells) if (c // self.squares + c % self.squares) % 2 == 0], device=uniform.device)
        cell = dark[uniform.integers(len(dark), n)]
        offset = uniform(n, 2)
        corner = torch.stack([cell % self.squares, cell // self.squares], dim=1).to(offset.dtype)
        return -2.0 + side * (corner + offset)


class Annulus(_Toy2D):
    """Uniform on the ring ``inner <= |x| <= outer``: a non-Gaussian *source* (Chapter 5)."""

    def __init__(self, inner: float = 1.0, outer: float = 1.5, noise: float = 0.0) -> None:
        super().__init__(noise)
        check_positive(inner, "inner", allow_zero=True)
        check_positive(outer, "outer")
        if outer <= inner:
            raise ValueError(f"outer must exceed inner, got inner={inner}, outer={outer}")
        self.inner, self.outer = inner, outer

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        # Uniform in area: r^2 is uniform between the squared radii.
        u = uniform(n)
        radius = torch.sqrt(self.inner**2 + u * (self.outer**2 - self.inner**2))
        angle = 2 * math.pi * uniform(n)
        return radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


class SwissRoll(_Toy2D):
    """The 2-D Swiss roll ``(s cos s, s sin s)`` for ``s`` in ``[1.5π, 4.5π]``, scaled by 1/5."""

    def __init__(self, noise: float = 0.1) -> None:
        super().__init__(noise)

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        s = 1.5 * math.pi * (1 + 2 * uniform(n))
        return torch.stack([s * torch.cos(s), s * torch.sin(s)], dim=1) / 5


TOY_DATASETS: dict[str, type[_Toy2D]] = {
    "moons": Moons,
    "circles": Circles,
    "spiral": Spiral,
    "checkerboard": Checkerboard,
    "annulus": Annulus,
    "swiss_roll": SwissRoll,
}


def toy_dataset(name: str, **kwargs: float) -> Sampleable:
    """The 2-D toy set called ``name`` (a key of ``TOY_DATASETS``), built with ``kwargs``."""
    if name not in TOY_DATASETS:
        raise ValueError(f"name must be one of {sorted(TOY_DATASETS)}, got {name!r}")
    return TOY_DATASETS[name](**kwargs)
