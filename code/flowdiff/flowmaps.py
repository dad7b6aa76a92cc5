r"""Flow maps: sampling in one or a few steps (Chapter 16).

An ODE ``dX_t = u_t(X_t) dt`` with times in ``[0, 1]`` (noise at 0, data at
1) has a *flow map* ``X_{s→t}``: the point at time ``t`` of the solution that
passes through ``x`` at time ``s`` (eq. ``eq-onestep-flow-map``). It obeys
the semigroup law ``X_{t→r} ∘ X_{s→t} = X_{s→r}``, and a network that learns
it samples with one evaluation: ``x_1 = X_{0→1}(x_0)``. Every method here
writes the map through its *average velocity* (eq. ``eq-onestep-average``)

.. math::
    X_{s\to t}(x) = x + (t - s)\, ū(x, s, t), \qquad
    ū(x_s, s, t) = \frac{1}{t - s} \int_s^t u_\tau(x_\tau)\, d\tau,

so ``ū(x, s, s) = u_s(x)`` and the boundary condition ``X_{s→s} = id`` holds
by construction. An *average velocity* is any callable ``ū(x, s, t)`` on a
batch: ``x`` of shape ``(n, d)``, ``s`` and ``t`` of shape ``(n,)``.

- **Reflow and distillation** (eq. ``eq-onestep-reflow``): :func:`teacher_pairs`
  integrates a teacher's ODE from fixed noise, a deterministic coupling; a new
  flow trained on these pairs is straighter, and :func:`flow_map_regression_loss`
  fits a map to the teacher's endpoints directly.
- **Consistency models** (eq. ``eq-onestep-consistency-loss``): the consistency
  function ``f(x, s) = X_{s→1}(x)`` (:func:`consistency_function`) is constant
  along each trajectory; :func:`consistency_loss` asks it to agree at two
  neighbouring points of one trajectory, those of a teacher's ODE step
  (distillation) or of one conditional path (training).
- **MeanFlow** (eq. ``eq-onestep-meanflow-identity``): differentiating the definition
  of ``ū`` along the trajectory gives ``ū = u + (t − s) d/ds ū``, a target
  that needs the instantaneous velocity ``u`` and one Jacobian-vector product
  (:func:`meanflow_target`, with ``torch.func.jvp``), and no teacher.

Samplers: :func:`flow_map_sample` chains jumps on a grid (one jump is one
network evaluation); :func:`consistency_sample` jumps to the data end and
re-noises in between. Every function works on the device and dtype of its inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_batch, check_count, check_positive, check_time_grid, check_unit_time
from flowdiff.dynamics import ODE
from flowdiff.guidance import guided_vector_field
from flowdiff.solvers import simulate, simulate_trajectory, time_grid

__all__ = [
    "AverageVelocity",
    "TeacherPairs",
    "MeanFlowTarget",
    "flow_map",
    "teacher_pairs",
    "flow_map_regression_loss",
    "consistency_function",
    "consistency_loss",
    "meanflow_target",
    "meanflow_loss",
    "guided_meanflow_velocity",
    "flow_map_sample",
    "consistency_sample",
]

AverageVelocity = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``ū(x, s, t)``: ``x`` of shape ``(n, d)``, ``s`` and ``t`` of shape ``(n,)``, returns ``(n, d)``."""


def _check_times(x: Tensor, s: Tensor, t: Tensor) -> None:
    check_batch(x, "x")
    for value, name in ((s, "s"), (t, "t")):
        check_unit_time(value, name)
        if value.shape != (x.shape[0],):
            raise ValueError(f"{name} must have shape ({x.shape[0]},), one time per sample, got {tuple(value.shape)}")


def _column(t: Tensor, x: Tensor) -> Tensor:
    """Times ``(n,)`` as a column that broadcasts against ``x`` of shape ``(n, ...)``, in ``x``'s dtype."""
    return t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def _squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    """``mean over the batch of ‖prediction − target‖²``, summed over each sample's coordinates."""
    return (prediction - target).pow(2).flatten(1).sum(dim=1).mean()


def flow_map(average_velocity: AverageVelocity, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
    r"""``X_{s→t}(x) = x + (t − s) ū(x, s, t)`` (Chapter 16, eq. ``eq-onestep-flow-map``).

    Args:
        average_velocity: ``ū(x, s, t)``.
        x: points at time ``s``, shape ``(n, d)``.
        s, t: start and end times, shape ``(n,)``, in ``[0, 1]``; ``t < s`` jumps backwards.

    Returns:
        The points at time ``t``, shape ``(n, d)``.
    """
    _check_times(x, s, t)
    return x + _column(t - s, x) * average_velocity(x, s, t)


@dataclass(frozen=True)
class TeacherPairs:
    """Noise and the point a teacher's ODE carries it to (Chapter 16, eq. ``eq-onestep-reflow``).

    Attributes:
        x0: the noise, shape ``(n, d)``.
        x1: the teacher's endpoint at ``t = 1``, shape ``(n, d)``.
        trajectory: the states on the solver's grid, ``(n, steps + 1, d)`` (batch-first, as :class:`~flowdiff.solvers.Trajectory`), when asked for; else ``None``.
        times: that grid, ``(steps + 1,)``, when asked for; else ``None``.
    """

    x0: Tensor
    x1: Tensor
    trajectory: Tensor | None = None
    times: Tensor | None = None


@torch.no_grad()
def teacher_pairs(teacher: ODE, x0: Tensor, steps: int, method: str = "heun", keep_trajectory: bool = False) -> TeacherPairs:
    r"""The coupling ``(x_0, ψ_1(x_0))`` of a teacher's ODE: reflow's training pairs (Chapter 16, eq. ``eq-onestep-reflow``).

    The endpoint is a deterministic function of the noise: the same ``x0``
    gives the same pair, which is what makes the coupling a map and the
    retrained flow straighter (Liu et al., 2023).

    Args:
        teacher: the ODE, e.g. :class:`~flowdiff.dynamics.VectorFieldODE` of a trained
            field or :class:`~flowdiff.guidance.ClassifierFreeGuidance`.
        x0: the noise, shape ``(n, d)``.
        steps: solver steps on a uniform grid from 0 to 1.
        method: ``"euler"``, ``"heun"`` or ``"midpoint"``.
        keep_trajectory: also return every state on the grid (for distillation at intermediate times).
    """
    check_batch(x0, "x0")
    check_count(steps, "steps")
    times = time_grid(steps, device=x0.device)
    if not keep_trajectory:
        return TeacherPairs(x0, simulate(teacher, x0, times, method=method))
    trajectory = simulate_trajectory(teacher, x0, times, method=method)
    return TeacherPairs(x0, trajectory.final, trajectory.states, trajectory.times)


def flow_map_regression_loss(average_velocity: AverageVelocity, x_s: Tensor, s: Tensor, t: Tensor, x_t: Tensor) -> Tensor:
    r"""``mean ‖X_{s→t}(x_s) − x_t‖²``: fit a flow map to a teacher's trajectory points (Chapter 16, eq. ``eq-onestep-distillation``).

    With ``s = 0, t = 1`` and reflow pairs this is one-step distillation
    (Luhman and Luhman, 2021); with grid times of the teacher's trajectory it
    teaches the map every jump of a ``k``-step sampler.

    Args:
        average_velocity: the student ``ū(x, s, t)``.
        x_s: points at time ``s``, shape ``(n, d)``.
        s, t: shape ``(n,)``.
        x_t: the teacher's points at time ``t`` on the same trajectories, shape ``(n, d)``.
    """
    if not isinstance(x_t, Tensor) or x_t.shape != x_s.shape:
        raise ValueError(f"x_t must have the shape of x_s {tuple(x_s.shape)}")
    return _squared_error(flow_map(average_velocity, x_s, s, t), x_t)


def consistency_function(average_velocity: AverageVelocity, x: Tensor, s: Tensor) -> Tensor:
    r"""``f(x, s) = X_{s→1}(x) = x + (1 − s) ū(x, s, 1)`` (Chapter 16, eq. ``eq-onestep-consistency``).

    The boundary condition ``f(x, 1) = x`` holds for every network: Song et
    al. (2023) impose it with skip coefficients ``c_skip``, ``c_out``; the
    factor ``1 − s`` is the same device in the flow-map form.
    """
    return flow_map(average_velocity, x, s, torch.ones_like(s))


def consistency_loss(average_velocity: AverageVelocity, x_s: Tensor, s: Tensor, x_next: Tensor, s_next: Tensor) -> Tensor:
    r"""``mean ‖f_θ(x_s, s) − sg f_θ(x_next, s_next)‖²`` (Chapter 16, eq. ``eq-onestep-consistency-loss``).

    ``x_next`` lies on the same trajectory as ``x_s``, a little nearer the
    data: one step of a teacher's ODE (consistency distillation), or the same
    noise and data point on the conditional path (consistency training). The
    target is the network's own prediction with the gradient stopped (``sg``,
    the choice of Song and Dhariwal's improved consistency training), which
    anchors the chain at ``s = 1``, where ``f`` is the identity.

    Args:
        average_velocity: ``ū(x, s, t)``.
        x_s, x_next: shape ``(n, d)``.
        s, s_next: shape ``(n,)`` with ``s < s_next``.
    """
    if not isinstance(x_next, Tensor) or x_next.shape != x_s.shape:
        raise ValueError(f"x_next must have the shape of x_s {tuple(x_s.shape)}")
    _check_times(x_next, s_next, s_next)
    if torch.any(s_next <= s):
        raise ValueError("s_next must be later than s: the target lies nearer the data end")
    with torch.no_grad():
        target = consistency_function(average_velocity, x_next, s_next)
    return _squared_error(consistency_function(average_velocity, x_s, s), target)


@dataclass(frozen=True)
class MeanFlowTarget:
    r"""The MeanFlow regression target at ``(x, s, t)`` (Chapter 16, eq. ``eq-onestep-meanflow-identity``).

    Attributes:
        prediction: ``ū_θ(x, s, t)``, attached to the graph, shape ``(n, d)``.
        total_derivative: ``d/ds ū_θ(x_s, s, t) = ∂_x ū_θ · u + ∂_s ū_θ``, detached.
        target: ``u + (t − s) · d/ds ū_θ``, detached.
    """

    prediction: Tensor
    total_derivative: Tensor
    target: Tensor


def meanflow_target(average_velocity: AverageVelocity, x: Tensor, s: Tensor, t: Tensor, velocity: Tensor) -> MeanFlowTarget:
    r"""``ū_tgt = u + (t − s) (∂_x ū · u + ∂_s ū)`` with one forward-mode JVP (Chapter 16, eq. ``eq-onestep-meanflow-target``).

    Along a trajectory ``x_s`` of the field ``u``, differentiating
    ``(t − s) ū(x_s, s, t) = ∫_s^t u`` in ``s`` gives ``ū = u + (t − s) d/ds ū``.
    The total derivative is the Jacobian-vector product of ``ū`` with the
    tangent ``(u, 1, 0)`` in ``(x, s, t)``, which ``torch.func.jvp`` computes
    in one forward pass alongside ``ū`` itself. In MeanFlow's own convention
    (data at 0, the point at time ``t``, the jump back to ``r``) the same
    identity reads, in its letters (``u`` the average, ``v`` the field), ``u = v − (t − r) d/dt u``.

    Args:
        average_velocity: ``ū(x, s, t)``, typically a network.
        x: points at time ``s``, shape ``(n, d)``.
        s, t: shape ``(n,)``.
        velocity: ``u_s(x)``: the marginal field, a teacher's, or the conditional
            velocity ``x_1 − x_0`` of the linear path (the target is affine in it, so its
            conditional expectation is the marginal target).
    """
    _check_times(x, s, t)
    if not isinstance(velocity, Tensor) or velocity.shape != x.shape:
        raise ValueError(f"velocity must have the shape of x {tuple(x.shape)}")
    velocity = velocity.detach()
    with warnings.catch_warnings():
        # The first JVP of a process makes torch compile its forward-mode rules with its own deprecated
        # torch.jit.script, which warns; the warning is about torch's internals, not about this call.
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
        prediction, total_derivative = torch.func.jvp(
            average_velocity, (x, s, t), (velocity, torch.ones_like(s), torch.zeros_like(t))
        )
    target = velocity + _column(t - s, x) * total_derivative.detach()
    return MeanFlowTarget(prediction, total_derivative.detach(), target.detach())


def meanflow_loss(
    average_velocity: AverageVelocity, x: Tensor, s: Tensor, t: Tensor, velocity: Tensor, adaptive_power: float = 0.0, adaptive_offset: float = 1e-3
) -> Tensor:
    r"""``Σ w ‖ū_θ(x, s, t) − sg(ū_tgt)‖² / Σ w`` (Chapter 16, eq. ``eq-onestep-meanflow-loss``); see :func:`meanflow_target`.

    At ``s = t`` the target is ``u_s(x)`` and the loss is flow matching's. With
    ``adaptive_power = p > 0`` each sample's squared error ``e`` is weighted by
    ``w = sg(1 / (e + c)^p)``, Geng et al.'s adaptive weighting: at ``p = 1``
    the loss behaves like ``log e``, and the few samples whose JVP target is
    large (jumps far from the data) no longer dominate the gradient. ``p = 0`` is the plain squared error.

    Args:
        adaptive_power: ``p >= 0``.
        adaptive_offset: ``c > 0``.
    """
    check_positive(adaptive_power, "adaptive_power", allow_zero=True)
    check_positive(adaptive_offset, "adaptive_offset")
    target = meanflow_target(average_velocity, x, s, t, velocity)
    error = (target.prediction - target.target).pow(2).flatten(1).sum(dim=1)
    weight = (error.detach() + adaptive_offset).pow(-adaptive_power)
    # Divided by the (constant) mean weight, the value stays a mean squared error that a loss curve can show;
    # Adam's steps do not change with a constant factor of the loss.
    return (weight * error).sum() / weight.sum()


def guided_meanflow_velocity(conditional_velocity: Tensor, unconditional_field: Tensor, guidance_scale: float) -> Tensor:
    r"""``ũ = w u(· | y) + (1 − w) ū_θ(x, s, s | ∅)``: guidance inside the MeanFlow target (Chapter 16, eq. ``eq-onestep-cfg``).

    The conditional velocity ``x_1 − x_0`` of a labelled sample stands for
    ``u(x | y)``, and the network's own instantaneous velocity at ``t = s``
    with the null label for ``u(x | ∅)``; the map trained on ``ũ`` is the map
    of the guided field, so guidance costs no extra evaluation at sampling time (Geng et al., 2025).
    """
    return guided_vector_field(conditional_velocity, unconditional_field.detach(), guidance_scale)


def _check_grid(times: Tensor | int, x0: Tensor) -> Tensor:
    if isinstance(times, int):
        check_count(times, "times")
        return time_grid(times, device=x0.device)
    check_time_grid(times)
    check_unit_time(times, "times")
    if times[0] != 0 or times[-1] != 1:
        raise ValueError("times must run from 0 to 1")
    return times.to(x0.device)


@torch.no_grad()
def flow_map_sample(average_velocity: AverageVelocity, x0: Tensor, times: Tensor | int = 1) -> Tensor:
    r"""``x ← X_{t_k→t_{k+1}}(x)`` on a grid from 0 to 1: one network evaluation per jump (Chapter 16, Algorithm ``alg-onestep-flow-map``).

    Args:
        average_velocity: ``ū(x, s, t)``.
        x0: the noise, shape ``(n, d)``.
        times: the number of uniform jumps, or a grid ``0 = t_0 < … < t_K = 1``.
    """
    check_batch(x0, "x0")
    grid = _check_grid(times, x0)
    x = x0
    for s, t in zip(grid[:-1], grid[1:]):
        x = flow_map(average_velocity, x, s.expand(x.shape[0]), t.expand(x.shape[0]))
    return x


@torch.no_grad()
def consistency_sample(
    average_velocity: AverageVelocity, x0: Tensor, times: Tensor | int = 1, generator: torch.Generator | None = None
) -> Tensor:
    r"""Multistep consistency sampling (Chapter 16, Algorithm ``alg-onestep-consistency-sampling``).

    ``x ← f(x_0, 0)``; then at each later grid time ``s``: re-noise along the
    linear path, ``x_s = (1 − s) ε + s x`` with fresh ``ε ~ N(0, I)``, and
    jump to the end again, ``x ← f(x_s, s)``. Unlike :func:`flow_map_sample`,
    each step forgets the previous noise: an imperfect jump is corrected by
    the next, at the price of a stochastic sampler.

    Args:
        average_velocity: ``ū(x, s, t)``; only ``t = 1`` is used.
        x0: the noise, shape ``(n, d)``.
        times: the number of network evaluations, or a grid ``0 = t_0 < … < t_K = 1``
            whose times ``t_0, …, t_{K−1}`` are where the sampler jumps from.
        generator: seeds the fresh noise of the later steps.
    """
    check_batch(x0, "x0")
    grid = _check_grid(times, x0)
    n = x0.shape[0]
    x = consistency_function(average_velocity, x0, grid[0].expand(n))
    for s in grid[1:-1]:
        noise = _random.randn(x.shape, like=x, generator=generator)
        x_s = (1 - s).to(x.dtype) * noise + s.to(x.dtype) * x
        x = consistency_function(average_velocity, x_s, s.expand(n))
    return x
