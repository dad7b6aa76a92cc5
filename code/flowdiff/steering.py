r"""Steering a trained flow at inference time by the gradient of a reward on its predicted data (Chapter 12).

A flow trained without a label cannot be conditioned by CFG, and a
classifier trained on noisy images (classifier guidance) may not exist.
What a trained field does give, at every ``(x, t)``, is its prediction of
the clean end point (eq. ``eq-steer-denoised``): from ``x = α_t z + β_t ε``
and ``u = α̇_t z + β̇_t ε``,

.. math::
    \hat z_t(x) = \frac{\dot\beta_t x - \beta_t u_t(x)}{\alpha_t \dot\beta_t - \dot\alpha_t \beta_t}
                \quad (= x + (1 - t) u_t(x) \text{ on the linear path}),

which is ``E[z | X_t = x]`` for the exact field. Any differentiable
log-reward ``log r(z)`` on clean data (a classifier's log-probability, a
measured stroke property) then steers the flow as a noisy classifier
would (eq. ``eq-steer-field``):

.. math::
    \tilde u_t(x) = u_t(x) + λ\, b_t\, \nabla_x \log r\bigl(\hat z_t(x)\bigr),

with the score-to-field weight ``b_t`` of classifier guidance. It replaces
``log p_t(y | x) = log E[r(Z) | X_t = x]`` by ``log r(E[Z | X_t = x])``;
the two agree when ``log r`` is linear and the data Gaussian.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from flowdiff.dynamics import ODE
from flowdiff.guidance import classifier_guidance_coefficient
from flowdiff.paths import GaussianPath, _column

__all__ = ["denoised_estimate", "GradientSteering"]

VectorField = Callable[[Tensor, Tensor], Tensor]


def _check_path(path: GaussianPath) -> None:
    if not isinstance(path, GaussianPath):
        raise ValueError(f"path must be a flowdiff.paths.GaussianPath, got {type(path).__name__}")


def denoised_estimate(path: GaussianPath, velocity: Tensor, x: Tensor, t: Tensor) -> Tensor:
    r"""The clean end point ``ẑ_t(x)`` a field's velocity points to (Chapter 12, eq. ``eq-steer-denoised``), shape of ``x``.

    Args:
        path: the Gaussian path the field was trained on.
        velocity: ``u_t(x)``, shape of ``x``.
        x: points, shape ``(n, ...)``.
        t: times, shape ``(n,)``.
    """
    _check_path(path)
    if not isinstance(velocity, Tensor) or velocity.shape != x.shape:
        raise ValueError(f"velocity must have the shape of x {tuple(x.shape)}")
    s = path.scheduler
    t = _column(t, x)
    alpha, beta, alpha_dot, beta_dot = s.alpha(t), s.beta(t), s.alpha_dot(t), s.beta_dot(t)
    return (beta_dot * x - beta * velocity) / (alpha * beta_dot - alpha_dot * beta)


class GradientSteering(ODE):
    r"""``ũ_t(x) = u_t(x) + λ b_t ∇_x log r(ẑ_t(x))`` as an ODE (Chapter 12, eq. ``eq-steer-field``).

    Args:
        vector_field: the trained field ``(x, t) -> u_t(x)``.
        path: the path it was trained on.
        log_reward: ``z -> log r(z)`` of shape ``(n,)``, differentiable, on clean data.
        strength: ``λ >= 0``; ``λ = 0`` is the unsteered flow.
        start: steering acts only for ``t >= start > 0``: ``b_t`` is infinite
            at ``t = 0``, where ``ẑ_t`` is still the data mean.
        through_model: differentiate through the network's ``u_t(x)`` in
            ``ẑ_t`` (exact gradient, one backward pass through the network);
            ``False`` treats ``u`` as a constant, ``∇_x ẑ_t ≈ β̇_t / (α_t β̇_t − α̇_t β_t) I``,
            which is cheaper and only needs the reward's gradient.
    """

    def __init__(
        self,
        vector_field: VectorField,
        path: GaussianPath,
        log_reward: Callable[[Tensor], Tensor],
        strength: float,
        start: float = 0.05,
        through_model: bool = True,
    ) -> None:
        if not callable(vector_field):
            raise ValueError("vector_field must be callable as vector_field(x, t)")
        if not callable(log_reward):
            raise ValueError("log_reward must be callable as log_reward(z)")
        _check_path(path)
        if not isinstance(strength, (int, float)) or not strength >= 0:
            raise ValueError(f"strength must be a number >= 0, got {strength!r}")
        if not isinstance(start, (int, float)) or not 0 < start < 1:
            raise ValueError(f"start must be in (0, 1), got {start!r}")
        self.vector_field, self.path, self.log_reward = vector_field, path, log_reward
        self.strength, self.start, self.through_model = float(strength), float(start), through_model

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        if self.strength == 0:
            return self.vector_field(x, t)
        active = t >= self.start
        if not bool(active.any()):
            return self.vector_field(x, t)
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            velocity = self.vector_field(leaf, t)
            estimate = denoised_estimate(self.path, velocity if self.through_model else velocity.detach(), leaf, t)
            log_reward = self.log_reward(estimate)
            if not isinstance(log_reward, Tensor) or log_reward.shape != (x.shape[0],):
                raise ValueError(f"log_reward must return shape ({x.shape[0]},), one value per sample")
            (gradient,) = torch.autograd.grad(log_reward.sum(), leaf)
        coefficient = classifier_guidance_coefficient(self.path, x, torch.where(active, t, torch.ones_like(t)))
        steer = torch.where(active.reshape(-1, *([1] * (x.ndim - 1))), self.strength * coefficient * gradient, torch.zeros_like(gradient))
        return velocity.detach() + steer
