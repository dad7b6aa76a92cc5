r"""Numerical solvers: Euler, Heun and Euler–Maruyama on a grid of times.

For an ODE ``dX = u_t(X) dt`` and a step ``h`` from ``t`` to ``t + h``
(Chapter 2, Algorithms ``alg-ode-euler`` and ``alg-ode-heun``):

    Euler:  x ← x + h u_t(x)                                     (global error O(h))
    Heun:   x̃ ← x + h u_t(x);  x ← x + h/2 (u_t(x) + u_{t+h}(x̃))   (global error O(h²))

Midpoint:  x ← x + h u_{t+h/2}(x + (h/2) u_t(x))                  (global error O(h²), Chapter 14)

An adaptive solver (:func:`solve_adaptive`, Dormand–Prince from
torchdiffeq) chooses its own steps to keep an error estimate below a
tolerance, and reports how many evaluations of the field that took.

For an SDE ``dX = u_t(X) dt + σ_t(X) dW`` (Chapter 3, Algorithm ``alg-sde-euler-maruyama``):

    Euler–Maruyama:  x ← x + h u_t(x) + σ_t(x) √h z,   z ~ N(0, I)

The noise enters once per step with standard deviation ``σ √h``, because
a Brownian increment over a step ``h`` has variance ``h``.

Devices and precision: the state may live on any device and in any floating
dtype. The time grid is moved to the state's device and kept in
:func:`grid_dtype` of the state, the state's dtype but never below
``float32``: in ``bfloat16`` (8 significant bits) a grid of 1000 steps would
round neighbouring times to the same number, and a field singular at
``t = 1`` would be evaluated there. The field therefore receives ``t`` in
that precision (models cast it to their own dtype when they embed it), and
each step casts the field's value back to the state's dtype, so the state
keeps its dtype from start to end. Brownian increments are drawn by
:mod:`flowdiff._random` (a CPU generator gives the same path on every device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Union

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_count, check_time_grid
from flowdiff.dynamics import ODE, SDE

__all__ = [
    "Trajectory",
    "time_grid",
    "grid_dtype",
    "euler_step",
    "heun_step",
    "midpoint_step",
    "euler_maruyama_step",
    "METHODS",
    "simulate",
    "simulate_trajectory",
    "AdaptiveSolution",
    "solve_adaptive",
]

Dynamics = Union[ODE, SDE]


@dataclass(frozen=True)
class Trajectory:
    """A simulated path: ``times`` of shape ``(T,)`` and ``states`` of shape ``(n, T, ...)``."""

    times: Tensor
    states: Tensor

    @property
    def final(self) -> Tensor:
        """The state at the last time, shape ``(n, ...)``."""
        return self.states[:, -1]


def time_grid(
    steps: int,
    start: float = 0.0,
    end: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """``steps + 1`` equally spaced times from ``start`` to ``end``, shape ``(steps + 1,)``, on ``device``.

    The solvers move the grid to the state's device and :func:`grid_dtype`
    themselves; ``device`` saves that copy.
    """
    check_count(steps, "steps")
    if not end > start:
        raise ValueError(f"end must exceed start, got start={start}, end={end}")
    return torch.linspace(start, end, steps + 1, dtype=dtype, device=device)


def grid_dtype(state_dtype: torch.dtype) -> torch.dtype:
    """The dtype the solvers keep times in: the state's, but at least ``float32`` (``float16``/``bfloat16`` give ``float32``)."""
    return torch.promote_types(state_dtype, torch.float32)


def _times_like(x: Tensor, t: Tensor) -> Tensor:
    """One time per sample, shape ``(n,)``, on ``x``'s device and in the grid's precision (see the module docstring)."""
    return t.to(device=x.device, dtype=grid_dtype(x.dtype)).expand(x.shape[0])


def _velocity(ode: ODE, x: Tensor, t: Tensor) -> Tensor:
    """``u_t(x)`` in the state's dtype (a field may answer in the times' higher precision)."""
    return ode.drift(x, _times_like(x, t)).to(x.dtype)


def euler_step(ode: ODE, x: Tensor, t: Tensor, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One explicit Euler step ``x + h u_t(x)`` (Chapter 2, Algorithm ``alg-ode-euler``)."""
    return x + h * _velocity(ode, x, t)


def heun_step(ode: ODE, x: Tensor, t: Tensor, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One Heun (explicit trapezoidal) step (Chapter 2, Algorithm ``alg-ode-heun``).

    ``x̃ = x + h u_t(x)``, then ``x + (h/2) (u_t(x) + u_{t+h}(x̃))``.
    """
    velocity = _velocity(ode, x, t)
    predictor = x + h * velocity
    corrector = _velocity(ode, predictor, t + h)
    return x + 0.5 * h * (velocity + corrector)


def midpoint_step(ode: ODE, x: Tensor, t: Tensor, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One explicit midpoint step ``x + h u_{t+h/2}(x + (h/2) u_t(x))`` (Chapter 14, eq. ``eq-fast-midpoint``)."""
    half = x + 0.5 * h * _velocity(ode, x, t)
    return x + h * _velocity(ode, half, t + 0.5 * h)


def euler_maruyama_step(
    sde: SDE, x: Tensor, t: Tensor, h: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """One Euler–Maruyama step ``x + h u_t(x) + σ_t(x) √h z`` (Chapter 3, Algorithm ``alg-sde-euler-maruyama``)."""
    times = _times_like(x, t)
    sigma = sde.diffusion(x, times).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    noise = _random.randn(x.shape, like=x, generator=generator)
    return x + h * sde.drift(x, times).to(x.dtype) + sigma * torch.sqrt(h) * noise


Step = Callable[..., Tensor]
METHODS: dict[str, tuple[Step, type]] = {
    "euler": (euler_step, ODE),
    "heun": (heun_step, ODE),
    "midpoint": (midpoint_step, ODE),
    "euler_maruyama": (euler_maruyama_step, SDE),
}


def _resolve(dynamics: Dynamics, method: str | None) -> Step:
    if method is None:
        method = "euler_maruyama" if isinstance(dynamics, SDE) else "euler"
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    step, kind = METHODS[method]
    if not isinstance(dynamics, kind):
        raise ValueError(
            f"method {method!r} integrates an {kind.__name__}, but dynamics is a {type(dynamics).__name__}"
        )
    return step


def _check_start(x0: Tensor) -> None:
    if not isinstance(x0, Tensor) or x0.ndim < 2 or x0.shape[0] < 1:
        shape = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
        raise ValueError(f"x0 must be a batch-first tensor of shape (n, ...), got {shape}")


def _states(
    dynamics: Dynamics, x0: Tensor, times: Tensor, method: str | None, generator: torch.Generator | None
) -> Iterator[Tensor]:
    """Yield the state at every time of the grid, starting with ``x0``."""
    step = _resolve(dynamics, method)
    _check_start(x0)
    check_time_grid(times)
    times = times.to(device=x0.device, dtype=grid_dtype(x0.dtype))
    check_time_grid(times)  # again: a grid given in float64 must not collapse in float32
    x = x0
    yield x
    for t, t_next in zip(times[:-1], times[1:]):
        x = step(dynamics, x, t, t_next - t, generator)
        yield x


@torch.no_grad()
def simulate_trajectory(
    dynamics: Dynamics,
    x0: Tensor,
    times: Tensor,
    method: str | None = None,
    generator: torch.Generator | None = None,
) -> Trajectory:
    """Integrate from ``x0`` at ``times[0]`` through every time in ``times``, keeping each state.

    Args:
        dynamics: an :class:`~flowdiff.dynamics.ODE` or :class:`~flowdiff.dynamics.SDE`.
        x0: initial states, shape ``(n, ...)``.
        times: strictly increasing grid, shape ``(T,)`` (see :func:`time_grid`).
        method: ``"euler"``, ``"heun"`` or ``"midpoint"`` for an ODE (default Euler),
            ``"euler_maruyama"`` for an SDE (the default there).
        generator: seeds the Brownian increments of an SDE (see :mod:`flowdiff._random`
            for how its device meets the state's).

    Returns:
        A :class:`Trajectory` with ``states`` of shape ``(n, T, ...)`` and ``times`` on the
        states' device, in :func:`grid_dtype` of the states.

    Runs without autograd; a drift that needs gradients (such as gradient
    guidance) opens ``torch.enable_grad()`` itself.
    """
    states = list(_states(dynamics, x0, times, method, generator))
    return Trajectory(times=times.to(device=x0.device, dtype=grid_dtype(x0.dtype)), states=torch.stack(states, dim=1))


@torch.no_grad()
def simulate(
    dynamics: Dynamics,
    x0: Tensor,
    times: Tensor,
    method: str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Like :func:`simulate_trajectory`, but return only the final state, shape ``(n, ...)``.

    Keeps a single state in memory, so it suits long grids and large batches.
    """
    final = x0
    for final in _states(dynamics, x0, times, method, generator):
        pass
    return final


@dataclass(frozen=True)
class AdaptiveSolution:
    """The state at the final time and ``evaluations``, the number of evaluations of the field (NFE) the solver spent."""

    final: Tensor
    evaluations: int


@torch.no_grad()
def solve_adaptive(
    ode: ODE, x0: Tensor, rtol: float = 1e-5, atol: float = 1e-5, start: float = 0.0, end: float = 1.0, method: str = "dopri5"
) -> AdaptiveSolution:
    """Integrate an ODE from ``start`` to ``end`` with an adaptive solver of torchdiffeq, counting evaluations (Chapter 14).

    The whole batch is one state: the solver's step sizes are shared by all
    samples, and its error control is on the batch. The field is evaluated
    only at times in ``[start, end]``: the first step is ``(end − start) / 100``
    and steps stop at ``end``.

    Args:
        ode: an :class:`~flowdiff.dynamics.ODE`.
        x0: initial states, shape ``(n, ...)``.
        rtol, atol: relative and absolute tolerances of the local error estimate.
        start, end: the time interval.
        method: an adaptive method of ``torchdiffeq.odeint`` (``"dopri5"``, ``"bosh3"``, ``"adaptive_heun"``).
    """
    from torchdiffeq import odeint

    if not isinstance(ode, ODE):
        raise ValueError(f"ode must be a flowdiff.dynamics.ODE, got {type(ode).__name__}")
    _check_start(x0)
    for value, name in ((rtol, "rtol"), (atol, "atol")):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not end > start:
        raise ValueError(f"end must exceed start, got start={start}, end={end}")
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"method must be one of {sorted(ADAPTIVE_METHODS)}, got {method!r}")
    evaluations = 0

    def field(t: Tensor, x: Tensor) -> Tensor:
        nonlocal evaluations
        evaluations += 1
        return _velocity(ode, x, t)

    times = torch.tensor([start, end], dtype=grid_dtype(x0.dtype), device=x0.device)
    # A learned field is only defined on [start, end]: the first step is fixed (the automatic choice probes
    # beyond the interval) and no step may pass the end.
    options = {"first_step": (end - start) / 100, "step_t": times[1:]}
    states = odeint(field, x0, times, rtol=rtol, atol=atol, method=method, options=options)
    return AdaptiveSolution(states[-1], evaluations)


ADAPTIVE_METHODS = ("dopri5", "bosh3", "adaptive_heun")
