r"""Training losses: regress a network on conditional targets (Chapters 5 and 6).

Flow matching (Chapter 5) regresses a vector field on the conditional
velocity of a path; denoising score matching (Chapter 6) regresses a score
(or the noise) on the conditional score. Both draw, per sample, a time
``t ~ U[0, 1]``, a data point ``z`` and a source point ``ε``, and form
``x_t = α_t z + β_t ε``:

.. math::
    \mathcal L_{\mathrm{CFM}}(\theta) = E\,\bigl\|u^\theta_t(x_t) - (\dot\alpha_t z + \dot\beta_t \varepsilon)\bigr\|^2
    \qquad \text{(eq. ``eq-fm-cfm``)}

.. math::
    \mathcal L_{\mathrm{DSM}}(\theta) = E\,\bigl\|\varepsilon^\theta_t(x_t) - \varepsilon\bigr\|^2
    = E\,\beta_t^2 \bigl\|s^\theta_t(x_t) - \nabla \log p_t(x_t \mid z)\bigr\|^2
    \qquad \text{(eq. ``eq-sm-dsm``)}

A model is any callable ``model(x, t)`` with ``x`` of shape ``(n, ...)``
and ``t`` of shape ``(n,)`` that returns the shape of ``x``.
Losses are means over the batch and over coordinates, so their scale does
not depend on the dimension.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_unit_time
from flowdiff.paths import GaussianPath

__all__ = [
    "Model",
    "flow_matching_loss",
    "conditional_flow_matching_loss",
    "denoising_score_matching_loss",
]

Model = Callable[[Tensor, Tensor], Tensor]
"""A network ``(x, t) -> output`` with ``x`` of shape ``(n, ...)`` and ``t`` of shape ``(n,)``."""


def _check_batch(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a batch-first tensor of shape (n, ...), got {shape}")


def _times(z: Tensor, t: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """The given times, or times uniform on ``[0, 1)`` on ``z``'s device, in at least float32 (as the solvers' grids)."""
    if t is None:
        dtype = torch.promote_types(z.dtype, torch.float32)
        return _random.rand((z.shape[0],), like=z, dtype=dtype, generator=generator)
    if not isinstance(t, Tensor) or t.shape != (z.shape[0],):
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"t must have shape ({z.shape[0]},), one time per sample, got {shape}")
    check_unit_time(t)
    return t


def _check_path(path: GaussianPath) -> None:
    if not isinstance(path, GaussianPath):
        raise ValueError(f"path must be a flowdiff.paths.GaussianPath, got {type(path).__name__}")


def flow_matching_loss(model: Model, target_vector_field: Model, x: Tensor, t: Tensor) -> Tensor:
    r"""The flow matching loss ``mean ‖u^θ_t(x) - u_t(x)‖²`` for a known marginal field (Chapter 5, eq. ``eq-fm-loss``).

    Args:
        model: the network ``u^θ``.
        target_vector_field: the marginal field ``u_t``, a callable ``(x, t)``.
        x: points drawn from the marginal path, ``x ~ p_t``, shape ``(n, ...)``.
        t: their times, shape ``(n,)``.

    Only computable when ``u_t`` is known in closed form, e.g. for mixture
    data (:meth:`flowdiff.paths.GaussianPath.marginal_vector_field`); the
    conditional loss below has the same gradient and needs no ``u_t``.
    """
    _check_batch(x, "x")
    t = _times(x, t, None)
    with torch.no_grad():
        target = target_vector_field(x, t)
    return torch.mean((model(x, t) - target) ** 2)


def conditional_flow_matching_loss(
    model: Model,
    path: GaussianPath,
    z: Tensor,
    x0: Tensor | None = None,
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The conditional flow matching loss (Chapter 5, eq. ``eq-fm-cfm``).

    ``mean ‖u^θ_t(x_t) - (α̇_t z + β̇_t x_0)‖²`` with ``x_t = α_t z + β_t x_0``.

    Args:
        model: the network ``u^θ``.
        path: the Gaussian path (its scheduler sets ``α``, ``β``).
        z: a batch of data, shape ``(n, ...)``.
        x0: a batch from the source, same shape; ``N(0, I)`` noise when omitted.
            With :class:`~flowdiff.paths.LinearPath` any source works and the
            target is ``z - x_0``.
        t: times, shape ``(n,)``; uniform on ``[0, 1]`` when omitted.
        generator: seeds the times and the noise.
    """
    _check_path(path)
    _check_batch(z, "z")
    if x0 is None:
        x0 = _random.randn(z.shape, like=z, generator=generator)
    elif not isinstance(x0, Tensor) or x0.shape != z.shape:
        shape = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"x0 must have the shape of z, {tuple(z.shape)}, got {shape}")
    t = _times(z, t, generator)
    x = path.sample(z, t, noise=x0)
    target = path.conditional_velocity(z, x0, t)
    return torch.mean((model(x, t) - target) ** 2)


def denoising_score_matching_loss(
    model: Model,
    path: GaussianPath,
    z: Tensor,
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
    parameterization: str = "noise",
) -> Tensor:
    r"""Denoising score matching (Chapter 6, eq. ``eq-sm-dsm``).

    With ``parameterization="noise"`` the model predicts the noise ``ε̂``
    and the loss is ``mean ‖ε̂_t(x_t) - ε‖²``, which is the score-matching
    loss weighted by ``β_t²`` (the score is ``-ε̂/β_t``,
    :meth:`~flowdiff.paths.GaussianPath.score_from_noise`). With
    ``parameterization="score"`` the model predicts the score and the loss
    is ``mean β_t² ‖s^θ_t(x_t) + ε/β_t‖²``, the same weighting written for
    a score network; ``t`` must then avoid 1, where ``β_1 = 0``.

    Args:
        model: the network.
        path: the Gaussian path.
        z: a batch of data, shape ``(n, ...)``.
        t: times, shape ``(n,)``; uniform on ``[0, 1]`` when omitted.
        generator: seeds the times and the noise.
        parameterization: ``"noise"`` or ``"score"``.
    """
    _check_path(path)
    _check_batch(z, "z")
    if parameterization not in ("noise", "score"):
        raise ValueError(f"parameterization must be 'noise' or 'score', got {parameterization!r}")
    t = _times(z, t, generator)
    noise = _random.randn(z.shape, like=z, generator=generator)
    x = path.sample(z, t, noise=noise)
    if parameterization == "noise":
        return torch.mean((model(x, t) - noise) ** 2)
    beta = path.scheduler.beta(t).to(z).reshape(-1, *([1] * (z.ndim - 1)))
    return torch.mean((beta * model(x, t) + noise) ** 2)
