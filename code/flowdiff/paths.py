r"""Probability paths: how noise turns into data, one data point at a time.

Introduced in Chapter 4 (*Probability paths*). A Gaussian conditional path
puts, at time ``t``, a data point ``z`` under Gaussian noise:

.. math::
    p_t(x \mid z) = \mathcal N(x;\ \alpha_t z,\ \beta_t^2 I), \qquad
    x_t = \alpha_t z + \beta_t \varepsilon, \quad \varepsilon \sim \mathcal N(0, I)
    \qquad \text{(eq. ``eq-path-gaussian``)}

with a *scheduler* ``α_0 = 0, β_0 = 1`` (pure noise) and ``α_1 = 1, β_1 = 0``
(the data). Its conditional vector field and score (eqs.
``eq-path-conditional-field`` and ``eq-path-conditional-score``)

.. math::
    u_t(x \mid z) = \Bigl(\dot\alpha_t - \frac{\dot\beta_t}{\beta_t}\alpha_t\Bigr) z
                    + \frac{\dot\beta_t}{\beta_t} x, \qquad
    \nabla \log p_t(x \mid z) = -\frac{x - \alpha_t z}{\beta_t^2}

are the regression targets of flow matching (Chapter 5) and denoising
score matching (Chapter 6); for Gaussian paths one determines the other
(eq. ``eq-sm-conversion``). For data whose law is a Gaussian mixture or a
set of points, the marginal path, its vector field and its score are known
exactly, which the book uses as ground truth.

Shapes: data ``z`` and states ``x`` are batches ``(n, ...)``; times ``t``
have shape ``(n,)``; schedulers map ``(n,)`` to ``(n,)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Protocol

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_positive, check_unit_time
from flowdiff.distributions import GaussianMixture

__all__ = [
    "Scheduler",
    "LinearScheduler",
    "CosineScheduler",
    "VPScheduler",
    "NoisableData",
    "GaussianPath",
    "LinearPath",
]


def _column(t: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample times ``(n,)`` to broadcast against a batch ``x`` of shape ``(n, ...)``.

    The times move to ``x``'s device in ``x``'s dtype, but at least ``float32``:
    ``1 - t`` near the data end would round to zero in ``bfloat16``.
    """
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample, got shape {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (x.ndim - 1))).to(device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))


def _check_pair(x: Tensor, z: Tensor, x_name: str = "x", z_name: str = "z") -> None:
    for value, name in ((x, x_name), (z, z_name)):
        if not isinstance(value, Tensor) or value.ndim < 2:
            raise ValueError(f"{name} must be a batch-first tensor of shape (n, ...)")
    if x.shape != z.shape:
        raise ValueError(f"{x_name} and {z_name} must have the same shape, got {tuple(x.shape)} and {tuple(z.shape)}")


class Scheduler(ABC):
    r"""A noise schedule ``(α_t, β_t)`` of a Gaussian path (Chapter 4, Definition ``def-path-scheduler``).

    ``α`` increases from 0 to 1 and ``β`` decreases from 1 to 0 on ``[0, 1]``.
    Subclasses give both and their time derivatives, all of shape ``(n,)`` for ``t`` of shape ``(n,)``.
    """

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """The signal coefficient ``α_t``."""

    @abstractmethod
    def beta(self, t: Tensor) -> Tensor:
        """The noise coefficient ``β_t``."""

    @abstractmethod
    def alpha_dot(self, t: Tensor) -> Tensor:
        """The derivative ``dα_t/dt``."""

    @abstractmethod
    def beta_dot(self, t: Tensor) -> Tensor:
        """The derivative ``dβ_t/dt``."""

    def beta_beta_dot(self, t: Tensor) -> Tensor:
        """``β_t β̇_t = ½ d(β_t²)/dt``, the product that the marginal formulas need.

        Finite even where ``β̇`` is not (the VP schedule at ``t = 1``).
        """
        return self.beta(t) * self.beta_dot(t)


class LinearScheduler(Scheduler):
    """``α_t = t``, ``β_t = 1 - t``: the conditional optimal-transport path (Chapter 4, eq. ``eq-path-schedulers``)."""

    def alpha(self, t: Tensor) -> Tensor:
        return t

    def beta(self, t: Tensor) -> Tensor:
        return 1 - t

    def alpha_dot(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def beta_dot(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)


class CosineScheduler(Scheduler):
    """``α_t = sin(πt/2)``, ``β_t = cos(πt/2)``, so ``α_t² + β_t² = 1`` (Chapter 4, eq. ``eq-path-schedulers``)."""

    def alpha(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * t)

    def beta(self, t: Tensor) -> Tensor:
        # cos(π/2) rounds to -4e-8 in float32: clamp so that β_1 = 0 exactly, never negative.
        return torch.cos(0.5 * math.pi * t).clamp_min(0)

    def alpha_dot(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def beta_dot(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


class VPScheduler(Scheduler):
    r"""The variance-preserving schedule of the VP SDE with a linear ``β(s)`` (Chapter 4, eq. ``eq-path-schedulers``).

    In diffusion time ``s = 1 - t`` the VP SDE (Song et al., 2021) has
    ``B(s) = ∫_0^s β(r) dr = β_min s + (β_max - β_min) s²/2``, and

    .. math::
        \alpha_t = e^{-B(1-t)/2}, \qquad \beta_t = \sqrt{1 - \alpha_t^2}.

    ``β_t`` behaves like ``√(β_min (1 - t))`` near the data, so ``β̇_1`` is infinite.
    ``α_0 = e^{-B(1)/2}`` is small (about 0.0066 with the default
    ``β_min = 0.1``, ``β_max = 20``) but not zero: the path starts close to,
    not exactly at, ``N(0, I)``.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        check_positive(beta_min, "beta_min")
        check_positive(beta_max, "beta_max")
        if beta_max < beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def _integral(self, s: Tensor) -> Tensor:
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2

    def _rate(self, s: Tensor) -> Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * s

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-0.5 * self._integral(1 - t))

    def beta(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(-self._integral(1 - t)))

    def alpha_dot(self, t: Tensor) -> Tensor:
        return 0.5 * self._rate(1 - t) * self.alpha(t)

    def beta_dot(self, t: Tensor) -> Tensor:
        return -self.alpha(t) * self.alpha_dot(t) / self.beta(t)

    def beta_beta_dot(self, t: Tensor) -> Tensor:
        # From α² + β² = 1; finite at t = 1 where β̇ is not.
        return -self.alpha(t) * self.alpha_dot(t)


class NoisableData(Protocol):
    """Data whose Gaussian-path marginals are known: :class:`~flowdiff.distributions.GaussianMixture`,
    :class:`~flowdiff.distributions.PointMasses`."""

    dim: int

    def noised(self, scale: float, noise_std: float) -> GaussianMixture: ...

    def noised_posterior(self, x: Tensor, scale: Tensor, noise_std: Tensor) -> tuple[Tensor, Tensor]: ...


class GaussianPath:
    r"""The Gaussian conditional probability path ``N(α_t z, β_t² I)`` of a scheduler (Chapter 4).

    Args:
        scheduler: the ``(α_t, β_t)`` schedule.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        if not isinstance(scheduler, Scheduler):
            raise ValueError(f"scheduler must be a flowdiff.paths.Scheduler, got {type(scheduler).__name__}")
        self.scheduler = scheduler

    def _coefficients(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        check_unit_time(t)
        s = self.scheduler
        t = _column(t, x)
        # Evaluated in at least float32 (see _column), then given the batch's dtype.
        return tuple(c.to(x.dtype) for c in (s.alpha(t), s.beta(t), s.alpha_dot(t), s.beta_dot(t)))

    def sample(
        self, z: Tensor, t: Tensor, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""``x_t = α_t z + β_t ε`` (eq. ``eq-path-gaussian``), shape of ``z``.

        ``noise`` is ``ε`` (drawn from ``N(0, I)`` when omitted); any source
        sample may stand in for it, which is how :class:`LinearPath` moves
        one distribution onto another.
        """
        if noise is None:
            if not isinstance(z, Tensor) or z.ndim < 2:
                raise ValueError("z must be a batch-first tensor of shape (n, ...)")
            noise = _random.randn(z.shape, like=z, generator=generator)
        _check_pair(noise, z, "noise", "z")
        alpha, beta, _, _ = self._coefficients(t, z)
        return alpha * z + beta * noise

    def conditional_vector_field(self, x: Tensor, z: Tensor, t: Tensor) -> Tensor:
        r"""``u_t(x | z) = (α̇_t - β̇_t α_t / β_t) z + (β̇_t / β_t) x`` (eq. ``eq-path-conditional-field``).

        Undefined at ``t = 1`` (``β_1 = 0``), where every conditional path has arrived at ``z``.
        """
        _check_pair(x, z)
        alpha, beta, alpha_dot, beta_dot = self._coefficients(t, x)
        return (alpha_dot - beta_dot * alpha / beta) * z + (beta_dot / beta) * x

    def conditional_velocity(self, z: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        r"""The same field along the path, ``α̇_t z + β̇_t ε`` at ``x = α_t z + β_t ε``; finite at every ``t``.

        This is the regression target of conditional flow matching (Chapter 5, eq. ``eq-fm-cfm-target``).
        """
        _check_pair(noise, z, "noise", "z")
        _, _, alpha_dot, beta_dot = self._coefficients(t, z)
        return alpha_dot * z + beta_dot * noise

    def conditional_score(self, x: Tensor, z: Tensor, t: Tensor) -> Tensor:
        r"""``∇_x log p_t(x | z) = -(x - α_t z) / β_t²`` (eq. ``eq-path-conditional-score``); undefined at ``t = 1``."""
        _check_pair(x, z)
        alpha, beta, _, _ = self._coefficients(t, x)
        return -(x - alpha * z) / beta**2

    # --- exact marginals for mixture data -------------------------------------------------------

    def marginal(self, data: NoisableData, t: float) -> GaussianMixture:
        r"""The marginal ``p_t``: the law of ``α_t Z + β_t ε`` with ``Z ~ data`` (Chapter 4, eq. ``eq-path-gaussian-mixture``)."""
        time = torch.as_tensor([float(t)], dtype=torch.float64)
        check_unit_time(time)
        s = self.scheduler
        return data.noised(s.alpha(time).item(), s.beta(time).item())

    def _posterior(self, data: NoisableData, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``E[Z | X_t = x]``, ``∇ log p_t(x)``, ``α̇_t`` and ``β_t β̇_t`` for every sample, in one vectorised pass."""
        if not isinstance(x, Tensor) or x.ndim != 2:
            raise ValueError("x must have shape (n, d)")
        check_unit_time(t)
        _column(t, x)
        s, t = self.scheduler, t.to(x)
        denoised, score = data.noised_posterior(x, s.alpha(t), s.beta(t))
        return denoised, score, s.alpha_dot(t)[:, None], s.beta_beta_dot(t)[:, None]

    def marginal_score(self, data: NoisableData, x: Tensor, t: Tensor) -> Tensor:
        r"""The exact marginal score ``∇ log p_t(x)`` for mixture data (Chapter 4, eq. ``eq-path-marginal-score``).

        ``x`` of shape ``(n, d)``, ``t`` of shape ``(n,)``; for point masses ``t`` must stay below 1.
        """
        return self._posterior(data, x, t)[1]

    def marginal_vector_field(self, data: NoisableData, x: Tensor, t: Tensor) -> Tensor:
        r"""The exact marginal vector field for mixture data (Chapter 4, Theorem ``thm-path-marginalization``):

        .. math::
            u_t(x) = E[\dot\alpha_t Z + \dot\beta_t \varepsilon \mid X_t = x]
                   = \dot\alpha_t\, E[Z \mid x] - \dot\beta_t \beta_t \nabla \log p_t(x),

        using ``E[ε | x] = -β_t ∇ log p_t(x)`` (Tweedie), which stays finite
        at ``t = 0`` and, for data with a density, at ``t = 1``. ``x`` of
        shape ``(n, d)``, ``t`` of shape ``(n,)``, any mix of times.
        """
        denoised, score, alpha_dot, beta_beta_dot = self._posterior(data, x, t)
        return alpha_dot * denoised - beta_beta_dot * score

    # --- conversions between parameterisations (Chapter 6) --------------------------------------

    def vector_field_from_score(self, score: Tensor, x: Tensor, t: Tensor) -> Tensor:
        r"""``u_t(x) = (β_t² α̇_t/α_t - β̇_t β_t) ∇log p_t(x) + (α̇_t/α_t) x`` (Chapter 6, eq. ``eq-sm-conversion``).

        Holds for conditional and marginal fields alike; undefined at ``t = 0`` where ``α_0 = 0``.
        """
        _check_pair(x, score, "x", "score")
        alpha, beta, alpha_dot, beta_dot = self._coefficients(t, x)
        beta_beta_dot = self.scheduler.beta_beta_dot(_column(t, x)).to(x.dtype)
        return (beta**2 * alpha_dot / alpha - beta_beta_dot) * score + (alpha_dot / alpha) * x

    def score_from_vector_field(self, vector_field: Tensor, x: Tensor, t: Tensor) -> Tensor:
        r"""The inverse of :meth:`vector_field_from_score` (Chapter 6, eq. ``eq-sm-conversion``):

        .. math::
            \nabla \log p_t(x) = \frac{\alpha_t u_t(x) - \dot\alpha_t x}{\beta_t^2 \dot\alpha_t - \alpha_t \dot\beta_t \beta_t},

        undefined at ``t = 1`` where ``β_1 = 0``.
        """
        _check_pair(x, vector_field, "x", "vector_field")
        alpha, beta, alpha_dot, beta_dot = self._coefficients(t, x)
        beta_beta_dot = self.scheduler.beta_beta_dot(_column(t, x)).to(x.dtype)
        return (alpha * vector_field - alpha_dot * x) / (beta**2 * alpha_dot - alpha * beta_beta_dot)

    def score_from_noise(self, noise: Tensor, t: Tensor) -> Tensor:
        r"""``∇ log p_t(x) = -ε̂ / β_t`` for a noise prediction ``ε̂ = E[ε | x_t = x]`` (Chapter 6, eq. ``eq-sm-noise``)."""
        if not isinstance(noise, Tensor) or noise.ndim < 2:
            raise ValueError("noise must be a batch-first tensor of shape (n, ...)")
        _, beta, _, _ = self._coefficients(t, noise)
        return -noise / beta


class LinearPath(GaussianPath):
    r"""The linear (conditional optimal-transport) path ``x_t = (1 - t) x_0 + t z`` (Chapter 4, eq. ``eq-path-linear``).

    The Gaussian path of :class:`LinearScheduler`. The source point ``x_0``
    (passed as ``noise``) may come from *any* distribution, not only
    ``N(0, I)``: conditioned on the pair ``(x_0, z)`` the particle moves on a
    straight line at the constant velocity ``z - x_0`` (Chapter 5).
    """

    def __init__(self) -> None:
        super().__init__(LinearScheduler())
