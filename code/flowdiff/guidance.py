r"""Guidance: steering a flow toward a label (Chapter 8).

A conditional flow ``u_t(x | y)`` transports noise to ``p_data(· | y)``.
Two ways to sharpen it, both built from marginal fields of the same path:

Classifier guidance (eq. ``eq-guide-classifier``). For a Gaussian path
``u_t(x) = a_t x + b_t ∇log p_t(x)`` with ``a_t = α̇_t/α_t`` and
``b_t = β_t² α̇_t/α_t - β_t β̇_t``, and Bayes' rule
``∇log p_t(x|y) = ∇log p_t(x) + ∇log p_t(y|x)`` gives

    ũ_t(x | y) = u_t(x) + w b_t ∇_x log p_t(y | x),

exact at ``w = 1``; ``w > 1`` over-weights the classifier.

Classifier-free guidance (eq. ``eq-guide-cfg``). One network learns both
``u_t(x | y)`` and ``u_t(x | ∅)`` (the unconditional field) by replacing
each label with the null label ``∅`` with probability ``η`` during training
(eq. ``eq-guide-dropout``); sampling follows

    ũ_t(x | y) = (1 - w) u_t(x | ∅) + w u_t(x | y),

so ``w = 1`` is the conditional field and ``w = 0`` the unconditional one.
Other libraries write ``(1 + w') u(x|y) - w' u(x|∅)``: their ``w'`` is ``w - 1``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff._checks import check_count, check_positive
from flowdiff.dynamics import ODE
from flowdiff.labelled_mixtures import LabelledMixture
from flowdiff.paths import GaussianPath, _column
from flowdiff.solvers import simulate, time_grid

__all__ = [
    "guided_vector_field",
    "drop_labels",
    "classifier_guidance_coefficient",
    "ClassifierGuidance",
    "ClassifierFreeGuidance",
    "sample_with_guidance",
    "exact_conditional_field",
    "exact_noisy_log_likelihood",
]

ConditionalModel = Callable[[Tensor, Tensor, Tensor], Tensor]


def _check_scale(guidance_scale: float) -> None:
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise ValueError(f"guidance_scale must be a number, got {type(guidance_scale).__name__}")
    check_positive(guidance_scale, "guidance_scale", allow_zero=True)


def guided_vector_field(conditional: Tensor, unconditional: Tensor, guidance_scale: float) -> Tensor:
    r"""``(1 - w) u_t(x | ∅) + w u_t(x | y)`` (Chapter 8, eq. ``eq-guide-cfg``), shape of the inputs."""
    if not isinstance(conditional, Tensor) or not isinstance(unconditional, Tensor):
        raise ValueError("conditional and unconditional must be tensors")
    if conditional.shape != unconditional.shape:
        raise ValueError(
            f"conditional and unconditional must have the same shape, got "
            f"{tuple(conditional.shape)} and {tuple(unconditional.shape)}"
        )
    _check_scale(guidance_scale)
    return unconditional + guidance_scale * (conditional - unconditional)


def drop_labels(labels: Tensor, eta: float, null_label: int, generator: torch.Generator | None = None) -> Tensor:
    r"""Replace each label by ``null_label`` with probability ``eta`` (Chapter 8, eq. ``eq-guide-dropout``).

    Args:
        labels: class labels, a long tensor of shape ``(n,)``; or token ids
            ``(n, L)`` of prompts (Chapter 13), where a dropped row becomes all ``null_label``.
        eta: the label-dropout probability ``η`` in ``[0, 1]``.
        null_label: the index of ``∅``.
        generator: seeds the coin flips, one per row.

    Returns:
        A new tensor of the shape of ``labels``; on average a fraction ``η`` of its rows is ``null_label``.
    """
    if not isinstance(labels, Tensor) or labels.ndim < 1 or labels.dtype != torch.long:
        raise ValueError("labels must be a long tensor with one row per sample")
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
        raise ValueError(f"eta must be a probability in [0, 1], got {eta!r}")
    if isinstance(null_label, bool) or not isinstance(null_label, int):
        raise ValueError(f"null_label must be an int, got {type(null_label).__name__}")
    dropped = (_random.rand((labels.shape[0],), device=labels.device, generator=generator) < eta).reshape(-1, *([1] * (labels.ndim - 1)))
    return torch.where(dropped, torch.full_like(labels, null_label), labels)


def classifier_guidance_coefficient(path: GaussianPath, x: Tensor, t: Tensor) -> Tensor:
    r"""``b_t = β_t² α̇_t / α_t - β_t β̇_t``, the weight of a score in a vector field (Chapter 8, eq. ``eq-guide-classifier``).

    Returned with shape ``(n, 1, …)`` to broadcast against ``x``; infinite at ``t = 0``.
    """
    if not isinstance(path, GaussianPath):
        raise ValueError(f"path must be a flowdiff.paths.GaussianPath, got {type(path).__name__}")
    s = path.scheduler
    t = _column(t, x)
    return s.beta(t) ** 2 * s.alpha_dot(t) / s.alpha(t) - s.beta_beta_dot(t)


class ClassifierGuidance(ODE):
    r"""``ũ_t(x) = u_t(x) + w b_t ∇_x log p_t(y | x)`` as an ODE (Chapter 8, eq. ``eq-guide-classifier``).

    Args:
        vector_field: the unconditional field ``(x, t) -> u_t(x)``.
        log_likelihood: ``(x, t) -> log p_t(y | x)`` of shape ``(n,)`` for the
            target labels, differentiable in ``x``.
        path: the Gaussian path both were built for (it gives ``b_t``).
        guidance_scale: ``w >= 0``; ``w = 0`` is the unconditional flow.

    ``b_t`` is infinite at ``t = 0`` (``α_0 = 0``), so a guided integration
    must start at a small ``t > 0``; a drift evaluated at ``t = 0`` raises ``ValueError``.
    """

    def __init__(
        self,
        vector_field: Callable[[Tensor, Tensor], Tensor],
        log_likelihood: Callable[[Tensor, Tensor], Tensor],
        path: GaussianPath,
        guidance_scale: float,
    ) -> None:
        if not callable(vector_field) or not callable(log_likelihood):
            raise ValueError("vector_field and log_likelihood must be callable as f(x, t)")
        if not isinstance(path, GaussianPath):
            raise ValueError(f"path must be a flowdiff.paths.GaussianPath, got {type(path).__name__}")
        _check_scale(guidance_scale)
        self.vector_field, self.log_likelihood = vector_field, log_likelihood
        self.path, self.guidance_scale = path, guidance_scale

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        velocity = self.vector_field(x, t)
        if self.guidance_scale == 0:
            return velocity
        coefficient = classifier_guidance_coefficient(self.path, x, t)
        if not torch.all(torch.isfinite(coefficient)):
            raise ValueError(
                "t must be > 0 for classifier guidance: b_t is infinite where alpha_t = 0 (at t = 0); "
                "start the integration at a small positive time"
            )
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(self.log_likelihood(leaf, t).sum(), leaf)
        return velocity + self.guidance_scale * coefficient * gradient


class ClassifierFreeGuidance(ODE):
    r"""The classifier-free guided field of a conditional network as an ODE (Chapter 8, eq. ``eq-guide-cfg``).

    Both fields come from one forward pass on a batch of ``2n``: the images
    twice, once with their labels and once with the null label.

    Args:
        model: ``model(x, t, labels)``, e.g. :class:`~flowdiff.models.UNet`.
        labels: the target label of each sample, long tensor of shape ``(n,)``;
            or any long tensor ``(n, ...)`` of conditions, such as the token ids
            of prompts (Chapter 13), whose null condition is filled with ``null_label``.
        null_label: the index of ``∅`` the model was trained with.
        guidance_scale: ``w >= 0``; ``w = 1`` is the conditional field.
    """

    def __init__(self, model: ConditionalModel, labels: Tensor, null_label: int, guidance_scale: float) -> None:
        if not callable(model):
            raise ValueError("model must be callable as model(x, t, labels)")
        if not isinstance(labels, Tensor) or labels.ndim < 1 or labels.dtype != torch.long:
            raise ValueError("labels must be a long tensor with one row per sample (labels, or token ids of prompts)")
        _check_scale(guidance_scale)
        self.model, self.labels, self.null_label, self.guidance_scale = model, labels, null_label, guidance_scale

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        if x.shape[0] != self.labels.shape[0]:
            raise ValueError(f"x holds {x.shape[0]} samples but labels holds {self.labels.shape[0]}")
        if self.guidance_scale == 1:
            return self.model(x, t, self.labels)
        null = torch.full_like(self.labels, self.null_label)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([self.labels, null]))
        conditional, unconditional = both.chunk(2)
        return guided_vector_field(conditional, unconditional, self.guidance_scale)


@torch.no_grad()
def sample_with_guidance(
    model: nn.Module,
    labels: Tensor,
    guidance_scale: float,
    steps: int,
    shape: tuple[int, ...],
    method: str = "euler",
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> Tensor:
    r"""Draw ``x_0 ~ N(0, I)`` and integrate the guided field from ``t = 0`` to ``1`` (Chapter 10, Algorithm ``alg-digits-sampling``).

    Args:
        model: a conditional network with a ``null_label`` attribute (:class:`~flowdiff.models.UNet`).
        labels: target labels, shape ``(n,)``, or token ids ``(n, L)`` of prompts.
        guidance_scale: ``w``.
        steps: solver steps on a uniform grid (Heun uses two evaluations per step).
        shape: the shape of one sample, e.g. ``(1, 28, 28)``.
        method: ``"euler"``, ``"heun"`` or ``"midpoint"``.
        generator: seeds the initial noise.
        batch_size: samples integrated at once (bounds memory).

    Returns:
        Samples of shape ``(n, *shape)``, on the model's device and in its dtype (the
        time grid stays in float32, see :mod:`flowdiff.solvers`). The noise is drawn
        as :mod:`flowdiff._random` says: a CPU generator gives the same samples on every device.
    """
    if not hasattr(model, "null_label"):
        raise ValueError("model must have a null_label attribute (a classifier-free guided network)")
    if not isinstance(labels, Tensor) or labels.ndim < 1 or labels.dtype != torch.long:
        raise ValueError("labels must be a long tensor with one row per sample (labels, or token ids of prompts)")
    check_count(steps, "steps")
    check_count(batch_size, "batch_size")
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    noise = _random.randn((labels.shape[0], *shape), device=device, dtype=dtype, generator=generator)
    times = time_grid(steps, device=device)
    chunks = []
    for start in range(0, labels.shape[0], batch_size):
        ode = ClassifierFreeGuidance(model, labels[start : start + batch_size].to(device), model.null_label, guidance_scale)
        chunks.append(simulate(ode, noise[start : start + batch_size], times, method=method))
    return torch.cat(chunks)


# --- exact fields of labelled Gaussian mixtures ---------------------------------------------


def _check_labelled(path: GaussianPath, data: LabelledMixture) -> None:
    if not isinstance(path, GaussianPath):
        raise ValueError(f"path must be a flowdiff.paths.GaussianPath, got {type(path).__name__}")
    if not isinstance(data, LabelledMixture):
        raise ValueError(f"data must be a flowdiff.labelled_mixtures.LabelledMixture, got {type(data).__name__}")


def exact_conditional_field(path: GaussianPath, data: LabelledMixture) -> ConditionalModel:
    r"""The exact ``u_t(x | y)`` of labelled mixture data as a conditional "network" ``(x, t, labels)`` (Chapter 8).

    Label ``y < K`` gives the marginal field of class ``y``'s path, and the
    null label ``K = data.num_classes`` the unconditional field ``u_t(x | ∅)``
    of the whole data, so that :class:`ClassifierFreeGuidance` applied to it
    gives the exact guided field of eq. ``eq-guide-cfg``.
    """
    _check_labelled(path, data)
    laws = [*data.classes, data.mixture]

    def field(x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        if not isinstance(labels, Tensor) or labels.shape != (x.shape[0],):
            raise ValueError(f"labels must have shape ({x.shape[0]},)")
        if torch.any(labels < 0) or torch.any(labels > data.num_classes):
            raise ValueError(f"labels must lie in [0, {data.num_classes}] (the last is the null label)")
        velocity = torch.empty_like(x)
        for label in labels.unique().tolist():
            chosen = labels == label
            velocity[chosen] = path.marginal_vector_field(laws[label], x[chosen], t[chosen])
        return velocity

    return field


def exact_noisy_log_likelihood(path: GaussianPath, data: LabelledMixture, labels: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    r"""``(x, t) -> log p_t(y | x)`` for the target label of each sample, exact for labelled mixture data (Chapter 8, eq. ``eq-guide-noisy-posterior``).

    ``p_t(y | x) = π_y p_t(x | y) / p_t(x)`` from the path's marginals; the
    solver hands one time per sample, all equal within a step, so the first
    is used. Feed it to :class:`ClassifierGuidance`.
    """
    _check_labelled(path, data)
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.dtype != torch.long:
        raise ValueError("labels must be a 1-D long tensor")

    def log_likelihood(x: Tensor, t: Tensor) -> Tensor:
        noised = path.marginal(data, float(t[0]))
        log_joint = torch.log(noised.prior) + noised.class_log_densities(x)
        return (log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True)).gather(1, labels[:, None])[:, 0]

    return log_likelihood
