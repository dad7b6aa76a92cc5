"""Labelled data with an exact classifier: every class a Gaussian mixture (Chapter 8).

Classifier guidance needs the noisy classifier ``p_t(y | x)``; for a
:class:`LabelledMixture` it is known in closed form by Bayes' rule, so
Chapter 8 (and :mod:`flowdiff.guidance`'s exact fields) can compare a
guided sampler with the exact conditional law it aims at.

Devices: a labelled mixture lives where its classes' parameters live, as
in :mod:`flowdiff.distributions`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_batch, check_count
from flowdiff.distributions import GaussianMixture, _as_tensor, _normalised_weights

__all__ = ["LabelledMixture"]


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
