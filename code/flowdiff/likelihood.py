r"""The likelihood of a flow: the log-density its samples have, computed exactly or by Hutchinson's estimator (Chapter 15).

A flow ``dX_t = u_t(X_t) dt`` that carries a source ``p_0`` (noise, ``t = 0``)
to ``p_1`` (data, ``t = 1``) changes the log-density along each trajectory
at the rate of minus the divergence of its field, the instantaneous change
of variables (Chapter 4, proof of Theorem ``thm-path-continuity``;
Chapter 15, eq. ``eq-like-change``):

.. math::
    \frac{d}{dt} \log p_t(X_t) = -\nabla \cdot u_t(X_t)
    \quad\Longrightarrow\quad
    \log p_1(x) = \log p_0(x_0) - \int_0^1 \nabla \cdot u_t(x_t)\, dt ,

where ``x_t`` is the trajectory through ``x_1 = x``. :func:`log_likelihood`
integrates the augmented ODE of ``(x_t, λ_t)`` with ``λ_t = log p_t(x_t) −
log p_1(x)`` (Algorithm ``alg-like-augmented``)

.. math::
    \frac{d}{dt} \begin{pmatrix} x_t \\ \lambda_t \end{pmatrix}
    = \begin{pmatrix} u_t(x_t) \\ -\nabla\cdot u_t(x_t) \end{pmatrix},
    \qquad x_1 = x,\ \lambda_1 = 0,

*backwards*, from the data at ``t = 1`` to the noise at ``t = 0``, and
returns ``log p_0(x_0) − λ_0``. The divergence is exact (one backward pass
per coordinate, ``d`` in all) or Hutchinson's unbiased estimate
``ε^T (∂u/∂x) ε`` with ``E[ε ε^T] = I`` (one backward pass per probe,
eq. ``eq-like-hutchinson``).

For images of 8-bit pixels, a density is compared across models in bits
per dimension of the *dequantised* data (Theis et al., 2016): add
uniform noise inside each pixel's cell (:func:`dequantize`) and convert the
log-density of the ``[-1, 1]`` scale to the ``[0, 256)`` scale of the bytes
(:func:`bits_per_dimension`, eq. ``eq-like-bpd``).

Shapes: samples are batch-first, ``(n, d)`` or ``(n, c, h, w)``; ``d`` is
the number of entries of one sample. Every tensor is made on the device
and in the dtype of the samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_count, check_positive
from flowdiff.distributions import Density

__all__ = [
    "PIXEL_SCALE",
    "LikelihoodResult",
    "exact_divergence",
    "hutchinson_divergence",
    "draw_probes",
    "standard_normal_log_density",
    "log_likelihood",
    "dequantize",
    "bits_per_dimension",
]

PIXEL_SCALE = 127.5
"""Bytes per unit of the book's image scale: a byte ``b`` is the pixel value ``b / 127.5 − 1`` (Chapter 10, eq. ``eq-digits-scaling``)."""

FIXED_STEP_METHODS = ("euler", "heun", "midpoint")
ADAPTIVE_METHODS = ("dopri5", "bosh3", "adaptive_heun")
PROBES = ("gaussian", "rademacher")


@dataclass(frozen=True)
class LikelihoodResult:
    r"""The log-likelihood of a batch under a flow, and its parts (Chapter 15, Algorithm ``alg-like-augmented``).

    Attributes:
        log_likelihood: ``log p_1(x) = log p_0(x_0) − ∫_0^1 ∇·u_t(x_t) dt``, shape ``(n,)``, in nats.
        source_log_density: ``log p_0(x_0)``, shape ``(n,)``.
        divergence_integral: ``∫_0^1 ∇·u_t(x_t) dt``, shape ``(n,)`` (an estimate with Hutchinson probes).
        noise: ``x_0``, where the flow's trajectories through the samples start, shape of the samples.
        evaluations: the number of evaluations of the field (NFE); each one also costs ``d``
            backward passes (exact divergence) or ``k`` (Hutchinson with ``k`` probes).
    """

    log_likelihood: Tensor
    source_log_density: Tensor
    divergence_integral: Tensor
    noise: Tensor
    evaluations: int


VectorField = Callable[..., Tensor]


def _check_samples(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 1 or x.numel() == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a non-empty batch-first tensor of shape (n, ...), got {shape}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _check_velocity(velocity: Tensor, x: Tensor) -> None:
    if not isinstance(velocity, Tensor) or velocity.shape != x.shape:
        shape = tuple(velocity.shape) if isinstance(velocity, Tensor) else type(velocity).__name__
        raise ValueError(f"vector_field must return a tensor of the samples' shape {tuple(x.shape)}, got {shape}")


def exact_divergence(vector_field: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    r"""The field at ``x`` and its exact divergence ``∇·u(x) = Σ_i ∂u_i/∂x_i`` (Chapter 15, eq. ``eq-like-divergence``).

    One forward pass and ``d`` backward passes, one per coordinate ``i``,
    each giving row ``i`` of the Jacobian of every sample at once (the
    samples of a batch do not interact, so the gradient of the batch sum is
    the per-sample gradient).

    Args:
        vector_field: ``x -> u(x)`` with the time fixed, shape of ``x`` in and out.
        x: samples, shape ``(n, ...)``.

    Returns:
        ``(u(x), ∇·u(x))`` of shapes ``(n, ...)`` and ``(n,)``, detached.
    """
    _check_samples(x)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        velocity = vector_field(x)
        _check_velocity(velocity, x)
        flat = velocity.reshape(x.shape[0], -1)
        divergence = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        # A field that does not depend on x (a constant) has no graph, and zero divergence.
        for i in range(flat.shape[1] if velocity.requires_grad else 0):
            (row,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
            divergence = divergence + row.reshape(x.shape[0], -1)[:, i]
    return velocity.detach(), divergence


def hutchinson_divergence(vector_field: Callable[[Tensor], Tensor], x: Tensor, probes: Tensor) -> tuple[Tensor, Tensor]:
    r"""The field at ``x`` and Hutchinson's estimate of its divergence (Chapter 15, eq. ``eq-like-hutchinson``):

    .. math::
        \widehat{\nabla\cdot u}(x) = \frac1k \sum_{j=1}^k \varepsilon_j^\top \frac{\partial u}{\partial x}(x)\, \varepsilon_j,
        \qquad E[\varepsilon_j \varepsilon_j^\top] = I,

    unbiased for any probes with identity second moment (Gaussian or
    Rademacher, :func:`draw_probes`). Each term is one vector–Jacobian
    product, one backward pass: ``k`` in all, whatever ``d``.

    Args:
        vector_field: ``x -> u(x)`` with the time fixed.
        x: samples, shape ``(n, ...)``.
        probes: ``ε_1, …, ε_k``, shape ``(k, n, ...)``.

    Returns:
        ``(u(x), estimate)`` of shapes ``(n, ...)`` and ``(n,)``, detached.
    """
    _check_samples(x)
    if not isinstance(probes, Tensor) or probes.ndim != x.ndim + 1 or probes.shape[1:] != x.shape or probes.shape[0] < 1:
        shape = tuple(probes.shape) if isinstance(probes, Tensor) else type(probes).__name__
        raise ValueError(f"probes must have shape (k, {', '.join(map(str, x.shape))}), got {shape}")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        velocity = vector_field(x)
        _check_velocity(velocity, x)
        estimate = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for probe in probes if velocity.requires_grad else ():
            (probe_jacobian,) = torch.autograd.grad(velocity, x, grad_outputs=probe, retain_graph=True)
            estimate = estimate + (probe_jacobian * probe).reshape(x.shape[0], -1).sum(dim=1)
    return velocity.detach(), estimate / probes.shape[0]


def draw_probes(
    x: Tensor, count: int, kind: str = "gaussian", generator: torch.Generator | None = None
) -> Tensor:
    r"""``count`` Hutchinson probes for each sample of ``x``, shape ``(count, n, ...)`` (Chapter 15, eq. ``eq-like-hutchinson``).

    ``"gaussian"``: entries ``N(0, 1)``; ``"rademacher"``: entries ``±1``
    with probability ½ each. Both have ``E[ε ε^T] = I``. For a Jacobian
    ``A`` one Gaussian probe's estimate has variance ``Σ_ij A_ij (A_ij + A_ji)``
    and a Rademacher probe's ``2 Σ_i A_ii²`` less (eq.
    ``eq-like-hutchinson-variance``). A CPU ``generator`` draws on the
    CPU and the probes are moved to ``x``'s device.
    """
    _check_samples(x)
    check_count(count, "count")
    if kind not in PROBES:
        raise ValueError(f"kind must be one of {PROBES}, got {kind!r}")
    shape = (count, *x.shape)
    if kind == "gaussian":
        return _random.randn(shape, like=x, generator=generator)
    return (_random.randint(2, shape, like=x, generator=generator) * 2 - 1).to(x.dtype)


def standard_normal_log_density(x: Tensor) -> Tensor:
    r"""``log N(x; 0, I) = −½ |x|² − (d/2) log 2π`` per sample, shape ``(n,)``, on ``x``'s device."""
    _check_samples(x)
    flat = x.reshape(x.shape[0], -1)
    return -0.5 * (flat**2).sum(dim=1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def _source_log_density(source: Density | None, x0: Tensor) -> Tensor:
    if source is None:
        return standard_normal_log_density(x0)
    flat = x0.reshape(x0.shape[0], -1)
    if flat.shape[1] != source.dim:
        raise ValueError(f"source must have dimension {flat.shape[1]} (the samples' size), got {source.dim}")
    return source.log_density(flat).to(device=x0.device, dtype=x0.dtype)


def _check_tolerance(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    check_positive(value, name)


def log_likelihood(
    vector_field: VectorField,
    x: Tensor,
    condition: Tensor | None = None,
    source: Density | None = None,
    divergence: str = "exact",
    probes: int = 1,
    probe_kind: str = "gaussian",
    method: str = "dopri5",
    steps: int = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
) -> LikelihoodResult:
    r"""The log-likelihood ``log p_1(x)`` of samples under the flow of a vector field (Chapter 15, Algorithm ``alg-like-augmented``).

    Integrates the augmented ODE of ``(x_t, λ_t)`` (eq. ``eq-like-augmented``)
    backwards from ``x_1 = x``, ``λ_1 = 0`` at ``t = 1`` to ``t = 0``, and
    returns ``log p_0(x_0) − λ_0``, where ``λ_0 = ∫_0^1 ∇·u_t(x_t) dt``.
    The field is only ever evaluated at times in ``[0, 1]``.

    Args:
        vector_field: ``u(x, t)``, or ``u(x, t, condition)`` when ``condition`` is given (a model
            with labels; pass its null label for the unconditional density). ``t`` has shape ``(n,)``.
        x: samples, shape ``(n, ...)``; the result's device and dtype are theirs.
        condition: labels or token ids, passed to the field unchanged.
        source: the density ``p_0`` of the noise, any :class:`~flowdiff.distributions.Density`
            of dimension ``d`` (samples are flattened for it); ``N(0, I)`` when omitted.
        divergence: ``"exact"`` (``d`` backward passes per evaluation) or ``"hutchinson"``.
        probes: ``k``, the number of Hutchinson probes per sample. They are drawn once and kept
            for the whole trajectory, so that the augmented field is a smooth ODE (what an
            adaptive solver needs) and the integral's estimate stays unbiased.
        probe_kind: ``"gaussian"`` or ``"rademacher"``.
        method: ``"euler"``, ``"heun"``, ``"midpoint"`` (``steps`` equal steps) or an adaptive
            method of torchdiffeq, ``"dopri5"``, ``"bosh3"``, ``"adaptive_heun"`` (``rtol``, ``atol``).
        steps: the number of steps of a fixed-step method.
        rtol, atol: the adaptive solver's tolerances, on the whole batch's state ``(x, λ)``.
        generator: draws the probes (see :func:`draw_probes` for devices).

    Returns:
        A :class:`LikelihoodResult`.
    """
    if not callable(vector_field):
        raise ValueError("vector_field must be callable as vector_field(x, t) or vector_field(x, t, condition)")
    _check_samples(x)
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    check_count(probes, "probes")
    if method not in FIXED_STEP_METHODS + ADAPTIVE_METHODS:
        raise ValueError(f"method must be one of {sorted(FIXED_STEP_METHODS + ADAPTIVE_METHODS)}, got {method!r}")
    check_count(steps, "steps")
    _check_tolerance(rtol, "rtol")
    _check_tolerance(atol, "atol")
    if condition is not None and (not isinstance(condition, Tensor) or condition.shape[0] != x.shape[0]):
        raise ValueError(f"condition must be a tensor with one row per sample ({x.shape[0]})")
    if source is not None and not isinstance(source, Density):
        raise ValueError(f"source must be a flowdiff.distributions.Density, got {type(source).__name__}")
    arguments = () if condition is None else (condition,)
    probe_set = draw_probes(x, probes, probe_kind, generator) if divergence == "hutchinson" else None
    evaluations = 0

    def augmented_field(t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """``(u_t(x), −∇·u_t(x))`` at book time ``t`` (eq. ``eq-like-augmented``)."""
        nonlocal evaluations
        evaluations += 1
        times = t.to(dtype=x.dtype, device=x.device).expand(x.shape[0])
        field_at_t = lambda points: vector_field(points, times, *arguments)  # noqa: E731
        if probe_set is None:
            velocity, div = exact_divergence(field_at_t, state)
        else:
            velocity, div = hutchinson_divergence(field_at_t, state, probe_set)
        return velocity, -div

    x1 = x.detach()
    lambda1 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    if method in FIXED_STEP_METHODS:
        x0, lambda0 = _integrate_fixed(augmented_field, x1, lambda1, method, steps)
    else:
        x0, lambda0 = _integrate_adaptive(augmented_field, x1, lambda1, method, rtol, atol)
    source_log_density = _source_log_density(source, x0)
    return LikelihoodResult(
        log_likelihood=source_log_density - lambda0,
        source_log_density=source_log_density,
        divergence_integral=lambda0,
        noise=x0,
        evaluations=evaluations,
    )


AugmentedField = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _integrate_fixed(field: AugmentedField, x: Tensor, lam: Tensor, method: str, steps: int) -> tuple[Tensor, Tensor]:
    """Euler, Heun or midpoint (Chapters 2 and 14) on ``(x, λ)`` with ``steps`` equal steps ``h = −1/steps`` from ``t = 1`` to ``0``."""
    times = torch.linspace(1.0, 0.0, steps + 1, dtype=x.dtype, device=x.device)
    for t, t_next in zip(times[:-1], times[1:]):
        h = t_next - t
        velocity, rate = field(t, x)
        if method == "euler":
            x, lam = x + h * velocity, lam + h * rate
        elif method == "heun":
            velocity_end, rate_end = field(t_next, x + h * velocity)
            x, lam = x + 0.5 * h * (velocity + velocity_end), lam + 0.5 * h * (rate + rate_end)
        else:
            velocity_mid, rate_mid = field(t + 0.5 * h, x + 0.5 * h * velocity)
            x, lam = x + h * velocity_mid, lam + h * rate_mid
    return x, lam


def _integrate_adaptive(
    field: AugmentedField, x: Tensor, lam: Tensor, method: str, rtol: float, atol: float
) -> tuple[Tensor, Tensor]:
    """An adaptive torchdiffeq solver on ``(x, λ)`` in reversed time ``s = 1 − t``, from ``s = 0`` to ``1``.

    Reversing time by hand keeps the conventions of
    :func:`~flowdiff.solvers.solve_adaptive`: the first step is fixed at
    1/100 (the automatic choice probes beyond the interval) and no step
    passes ``s = 1``, so the field is evaluated only at ``t ∈ [0, 1]``.
    """
    from torchdiffeq import odeint

    def reversed_field(s: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        velocity, rate = field(1 - s, state[0])
        return -velocity, -rate

    span = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
    options = {"first_step": 0.01, "step_t": span[1:]}
    xs, lams = odeint(reversed_field, (x, lam), span, rtol=rtol, atol=atol, method=method, options=options)
    return xs[-1], lams[-1]


def dequantize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""Uniform dequantisation of 8-bit images on the book's scale (Chapter 15, eq. ``eq-like-dequantize``).

    A pixel value ``x = b / 127.5 − 1`` of a byte ``b`` becomes
    ``x + (u − ½) / 127.5`` with ``u ~ U[0, 1)``: a uniform point of the
    pixel's cell, the image of ``[b, b + 1)`` centred on ``x``. Shape and
    device of ``images``; a CPU ``generator`` draws on the CPU and the noise is moved.

    Raises:
        ValueError: ``images`` are not on the grid ``{b / 127.5 − 1 : b = 0, …, 255}``.
    """
    _check_samples(images, "images")
    bytes_ = (images + 1) * PIXEL_SCALE
    if torch.any((bytes_ - bytes_.round()).abs() > 1e-3) or torch.any(bytes_.round() < 0) or torch.any(bytes_.round() > 255):
        raise ValueError("images must hold 8-bit pixel values b / 127.5 - 1, b in {0, ..., 255}")
    uniform = _random.rand(images.shape, like=images, generator=generator)
    return images + (uniform - 0.5) / PIXEL_SCALE


def bits_per_dimension(log_likelihood: Tensor, dim: int, scale: float = PIXEL_SCALE) -> Tensor:
    r"""Bits per dimension of dequantised 8-bit data from a log-density on the model's scale (Chapter 15, eq. ``eq-like-bpd``).

    A model's data ``x = y / scale + c`` are an affine image of the
    dequantised bytes ``y ∈ [0, 256)^d``, so ``p_Y(y) = p_X(x) / scale^d``
    and

    .. math::
        \text{bits/dim} = \frac{-\log p_Y(y)}{d \ln 2}
                        = \frac{-\log p_X(x) + d \log(\text{scale})}{d \ln 2},

    ``scale = 127.5`` for the book's ``[-1, 1]`` images. A uniform density
    on the cube of the 256 cells gives 8 bits/dim, the cost of storing the
    bytes raw.

    Args:
        log_likelihood: ``log p_X(x)`` in nats, any shape.
        dim: ``d``, the number of pixels (784 for MNIST).
        scale: bytes per unit of the model's scale.
    """
    if not isinstance(log_likelihood, Tensor):
        raise ValueError(f"log_likelihood must be a torch.Tensor, got {type(log_likelihood).__name__}")
    check_count(dim, "dim")
    check_positive(scale, "scale")
    return (-log_likelihood + dim * math.log(scale)) / (dim * math.log(2))
