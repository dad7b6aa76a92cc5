"""Ordinary and stochastic differential equations (Chapters 2, 3 and 6).

An ODE is a drift (a time-dependent vector field) ``u_t(x)``:

    dX_t = u_t(X_t) dt                       (Chapter 2, eq. ``eq-ode``)

and an SDE adds a diffusion coefficient ``σ_t(X_t)`` times Brownian noise:

    dX_t = u_t(X_t) dt + σ_t(X_t) dW_t       (Chapter 3, eq. ``eq-sde``)

Both take a batch ``x`` of shape ``(n, ...)`` and one time per sample,
``t`` of shape ``(n,)``; the drift has the shape of ``x`` and the (scalar)
diffusion coefficient has shape ``(n,)``. The solvers in
:mod:`flowdiff.solvers` only ever call these two methods.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor

from flowdiff._checks import check_batch, check_positive, check_unit_time
from flowdiff.distributions import Density, Gaussian

__all__ = [
    "ODE",
    "SDE",
    "VectorFieldODE",
    "LinearODE",
    "AffineGaussianFlow",
    "BrownianMotion",
    "OrnsteinUhlenbeck",
    "OverdampedLangevin",
    "MarginalPreservingSDE",
]


def _column(t: Tensor, x: Tensor) -> Tensor:
    """Reshape one-time-per-sample ``t`` (shape ``(n,)``) to broadcast against ``x``."""
    return t.reshape(-1, *([1] * (x.ndim - 1)))


class ODE(ABC):
    """An ordinary differential equation ``dX_t = u_t(X_t) dt`` (Chapter 2)."""

    @abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """The vector field ``u_t(x)``: ``x`` of shape ``(n, ...)``, ``t`` of shape ``(n,)``."""


class SDE(ABC):
    """A stochastic differential equation ``dX_t = u_t(X_t) dt + σ_t(X_t) dW_t`` (Chapter 3)."""

    @abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """The drift ``u_t(x)``, same shape as ``x``."""

    @abstractmethod
    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        """The scalar diffusion coefficient ``σ_t(x)`` of each sample, shape ``(n,)``."""


class VectorFieldODE(ODE):
    """An ODE whose vector field is any function ``(x, t) -> u_t(x)`` (Chapter 2)."""

    def __init__(self, vector_field: Callable[[Tensor, Tensor], Tensor]) -> None:
        if not callable(vector_field):
            raise ValueError("vector_field must be callable as vector_field(x, t)")
        self.vector_field = vector_field

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return self.vector_field(x, t)


class LinearODE(ODE):
    r"""The linear, time-invariant ODE ``dx/dt = A x`` (Chapter 2, eq. ``eq-linear-ode``).

    Its flow is the matrix exponential, ``ψ_t(x_0) = e^{tA} x_0``, which makes
    it the reference against which the solvers' errors are measured.

    Args:
        matrix: ``A``, shape ``(d, d)``.
    """

    def __init__(self, matrix: Tensor) -> None:
        matrix = torch.as_tensor(matrix)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
        self.matrix = matrix
        self.dim = matrix.shape[0]

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        return x @ self.matrix.to(x).T

    def flow(self, x0: Tensor, t: float) -> Tensor:
        """The exact solution ``ψ_t(x_0) = e^{tA} x_0`` for a batch ``x0`` of shape ``(n, d)``."""
        check_batch(x0, "x0", self.dim)
        return x0 @ torch.linalg.matrix_exp(t * self.matrix.to(x0)).T


class AffineGaussianFlow(ODE):
    r"""The straight-line flow that carries ``N(μ_0, σ_0^2 I)`` to ``N(μ_1, σ_1^2 I)`` (Chapter 2).

    With ``μ_t = (1-t) μ_0 + t μ_1`` and ``σ_t = (1-t) σ_0 + t σ_1``, the flow
    and its vector field are (Chapter 2, eq. ``eq-affine-flow``)

    .. math::
        ψ_t(x_0) = μ_t + \frac{σ_t}{σ_0}(x_0 - μ_0), \qquad
        u_t(x) = μ_1 - μ_0 + \frac{σ_1 - σ_0}{σ_t}(x - μ_t),

    and ``ψ_t`` pushes the source to ``N(μ_t, σ_t^2 I)`` for every ``t`` in ``[0, 1]``.
    """

    def __init__(self, source: Gaussian, target: Gaussian) -> None:
        for name, law in (("source", source), ("target", target)):
            if not isinstance(law, Gaussian):
                raise ValueError(f"{name} must be a Gaussian, got {type(law).__name__}")
            variances = torch.diagonal(law.cov)
            if not torch.allclose(law.cov, torch.diag_embed(variances)) or not torch.allclose(
                variances, variances[0].expand_as(variances)
            ):
                raise ValueError(f"{name} must be isotropic (covariance s^2 I)")
        if source.dim != target.dim:
            raise ValueError(f"target must have dimension {source.dim}, got {target.dim}")
        self.dim = source.dim
        self.source, self.target = source, target
        self.mean0, self.mean1 = source.mean, target.mean
        self.std0 = math.sqrt(source.cov[0, 0].item())
        self.std1 = math.sqrt(target.cov[0, 0].item())

    def _mean_std(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        t = _column(t.to(x), x)
        mean = (1 - t) * self.mean0.to(x) + t * self.mean1.to(x)
        return mean, (1 - t) * self.std0 + t * self.std1

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        check_unit_time(t)
        mean, std = self._mean_std(t, x)
        return (self.mean1 - self.mean0).to(x) + (self.std1 - self.std0) / std * (x - mean)

    def flow(self, x0: Tensor, t: Tensor) -> Tensor:
        """``ψ_t(x_0)`` for ``x0`` of shape ``(n, d)`` and ``t`` of shape ``(n,)``."""
        check_batch(x0, "x0", self.dim)
        check_unit_time(t)
        mean, std = self._mean_std(t, x0)
        return mean + std / self.std0 * (x0 - self.mean0.to(x0))

    def marginal(self, t: float) -> Gaussian:
        """The law ``N(μ_t, σ_t^2 I)`` of ``X_t`` when ``X_0`` follows the source."""
        if not 0 <= t <= 1:
            raise ValueError(f"t must lie in [0, 1], got {t}")
        std = (1 - t) * self.std0 + t * self.std1
        return Gaussian.isotropic(self.dim, std, (1 - t) * self.mean0 + t * self.mean1)


class BrownianMotion(SDE):
    r"""Scaled Brownian motion ``dX_t = σ dW_t`` (Chapter 3, eq. ``eq-brownian``).

    Started at ``x_0``, ``X_t ~ N(x_0, σ^2 t I)``.
    """

    def __init__(self, sigma: float = 1.0) -> None:
        check_positive(sigma, "sigma")
        self.sigma = float(sigma)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return x.new_full((x.shape[0],), self.sigma)


class OrnsteinUhlenbeck(SDE):
    r"""The Ornstein–Uhlenbeck process ``dX_t = -θ X_t dt + σ dW_t`` (Chapter 3, eq. ``eq-ou``).

    Started at ``x_0`` it is Gaussian with (Chapter 3, Proposition ``prop-sde-ou-law``)

    .. math::
        E[X_t] = e^{-θ t} x_0, \qquad
        \operatorname{Var}[X_t] = \frac{σ^2}{2θ}\,(1 - e^{-2θ t})\, I,

    and its stationary law is ``N(0, σ^2/(2θ) I)``.
    """

    def __init__(self, theta: float = 1.0, sigma: float = 1.0) -> None:
        check_positive(theta, "theta")
        check_positive(sigma, "sigma", allow_zero=True)
        self.theta, self.sigma = float(theta), float(sigma)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -self.theta * x

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return x.new_full((x.shape[0],), self.sigma)

    def mean(self, x0: Tensor, t: float) -> Tensor:
        """``E[X_t | X_0 = x_0] = e^{-θt} x_0``."""
        check_positive(t, "t", allow_zero=True)
        return math.exp(-self.theta * t) * x0

    def variance(self, t: float) -> float:
        """``Var[X_t | X_0]`` per coordinate: ``σ^2 (1 - e^{-2θt}) / (2θ)``."""
        check_positive(t, "t", allow_zero=True)
        return self.sigma**2 * (1 - math.exp(-2 * self.theta * t)) / (2 * self.theta)

    @property
    def stationary_variance(self) -> float:
        """Variance of the stationary law ``N(0, σ^2/(2θ) I)``."""
        return self.sigma**2 / (2 * self.theta)


class OverdampedLangevin(SDE):
    r"""Overdamped Langevin dynamics for a target density ``p`` (Chapter 3, eq. ``eq-langevin``):

    .. math::
        dX_t = \frac{σ^2}{2} \nabla \log p(X_t)\, dt + σ\, dW_t,

    whose stationary law is ``p`` for every ``σ > 0`` (Chapter 3, Theorem ``thm-sde-langevin``).
    """

    def __init__(self, target: Density, sigma: float = 1.0) -> None:
        if not hasattr(target, "score"):
            raise ValueError("target must have a score(x) method")
        check_positive(sigma, "sigma")
        self.target, self.sigma = target, float(sigma)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.5 * self.sigma**2 * self.target.score(x)

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return x.new_full((x.shape[0],), self.sigma)


class MarginalPreservingSDE(SDE):
    r"""The SDE that follows the same probability path as a flow, for any noise level (Chapter 4, eq. ``eq-path-sde-extension``; sampled in Chapter 6):

    .. math::
        dX_t = \Bigl[u_t(X_t) + \frac{σ_t^2}{2} \nabla \log p_t(X_t)\Bigr] dt + σ_t\, dW_t.

    If ``u`` is the marginal vector field of a path ``p_t`` and ``score`` its
    marginal score, then ``X_t ~ p_t`` for all ``t`` whenever ``X_0 ~ p_0``
    (Chapter 4, Theorem ``thm-path-sde-extension``); ``σ = 0`` is the flow ODE.

    Args:
        vector_field: ``(x, t) -> u_t(x)``.
        score: ``(x, t) -> ∇ log p_t(x)``; not called where ``σ_t = 0``.
        diffusion: the coefficient ``σ_t``: a number ``>= 0``, or a function of
            the times ``t`` (shape ``(n,)``) returning shape ``(n,)``.
    """

    def __init__(
        self,
        vector_field: Callable[[Tensor, Tensor], Tensor],
        score: Callable[[Tensor, Tensor], Tensor],
        diffusion: float | Callable[[Tensor], Tensor],
    ) -> None:
        if not callable(vector_field):
            raise ValueError("vector_field must be callable as vector_field(x, t)")
        if not callable(score):
            raise ValueError("score must be callable as score(x, t)")
        if not callable(diffusion):
            check_positive(diffusion, "diffusion", allow_zero=True)
        self.vector_field, self.score, self._diffusion = vector_field, score, diffusion

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        if callable(self._diffusion):
            sigma = self._diffusion(t)
            if not isinstance(sigma, Tensor) or sigma.shape != t.shape or torch.any(sigma < 0):
                raise ValueError("diffusion(t) must return a non-negative tensor of the shape of t")
            return sigma.to(x)
        return x.new_full((x.shape[0],), float(self._diffusion))

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        sigma = self.diffusion(x, t)
        drift = self.vector_field(x, t)
        if torch.all(sigma == 0):
            return drift
        return drift + 0.5 * _column(sigma, x) ** 2 * self.score(x, t)
