"""flowdiff.flowmaps (Chapter 16) against the closed-form flow of a Gaussian-to-Gaussian linear path.

From ``x_0 ~ N(0, I)`` to data ``N(μ, diag σ²)`` along the linear path with
the independent coupling, the marginal at time ``t`` is ``N(m_t, diag s_t²)``
with ``m_t = t μ`` and ``s_t² = (1 − t)² + t² σ²``. The marginal field is
affine, ``v_t(x) = ṁ_t + (ṡ_t / s_t)(x − m_t)``, and so is its flow map:
``X_{s→t}(x) = m_t + (s_t / s_s)(x − m_s)`` (each coordinate is rescaled
about the moving mean). Everything the module computes has a closed form here.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from flowdiff.dynamics import VectorFieldODE
from flowdiff.flowmaps import (
    consistency_function,
    consistency_loss,
    consistency_sample,
    flow_map,
    flow_map_regression_loss,
    flow_map_sample,
    guided_meanflow_velocity,
    meanflow_loss,
    meanflow_target,
    teacher_pairs,
)
from flowdiff.models import MLPFlowMap

MU = torch.tensor([2.0, -1.0, 0.5])
SIGMA = torch.tensor([0.5, 1.5, 1.0])


def _mean(t: Tensor) -> Tensor:
    return t[:, None] * MU.to(t.dtype)


def _std(t: Tensor) -> Tensor:
    t = t[:, None]
    return torch.sqrt((1 - t) ** 2 + t**2 * SIGMA.to(t.dtype) ** 2)


def exact_velocity(x: Tensor, t: Tensor) -> Tensor:
    t_col = t[:, None]
    std_dot = (-(1 - t_col) + t_col * SIGMA.to(x.dtype) ** 2) / _std(t)
    return MU.to(x.dtype) + std_dot / _std(t) * (x - _mean(t))


def exact_map(x: Tensor, s: Tensor, t: Tensor) -> Tensor:
    return _mean(t) + _std(t) / _std(s) * (x - _mean(s))


def exact_average_velocity(x: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """``(X_{s→t}(x) − x) / (t − s)``, and ``v_s(x)`` where ``t = s``."""
    gap = (t - s)[:, None]
    safe = torch.where(gap == 0, torch.ones_like(gap), gap)
    return torch.where(gap == 0, exact_velocity(x, s), (exact_map(x, s, t) - x) / safe)


def _inputs(n: int = 256, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    a, b = torch.rand(2, n, generator=generator, dtype=torch.float64)
    return x, torch.minimum(a, b), torch.maximum(a, b)


# --- the flow map and its semigroup law -------------------------------------------------------------


def test_the_flow_map_of_the_average_velocity_is_the_exact_map() -> None:
    x, s, t = _inputs()
    torch.testing.assert_close(flow_map(exact_average_velocity, x, s, t), exact_map(x, s, t))


def test_the_exact_map_is_a_semigroup_and_solves_the_ode() -> None:
    """Guards the reference itself: X_{t→u} ∘ X_{s→t} = X_{s→u}, and a fine Heun solve of v lands on X_{0→1}."""
    x, s, t = _inputs()
    u = t + (1 - t) * 0.5
    torch.testing.assert_close(exact_map(exact_map(x, s, t), t, u), exact_map(x, s, u))
    pairs = teacher_pairs(VectorFieldODE(exact_velocity), x, steps=1000, method="heun")  # Heun: error O(h²) ≈ 1e-6 here
    ones, zeros = torch.ones(len(x), dtype=x.dtype), torch.zeros(len(x), dtype=x.dtype)
    torch.testing.assert_close(pairs.x1, exact_map(x, zeros, ones), rtol=0, atol=1e-5)


def test_the_sampler_follows_a_given_grid_of_jumps() -> None:
    x0, _, _ = _inputs(64)
    grid = torch.tensor([0.0, 0.1, 0.45, 1.0], dtype=torch.float64)
    stepped = flow_map_sample(lambda x, s, t: exact_velocity(x, s), x0, grid)  # Euler on this grid
    euler = x0
    for s, t in zip(grid[:-1], grid[1:]):
        euler = euler + (t - s) * exact_velocity(euler, s.expand(64))
    torch.testing.assert_close(stepped, euler)
    torch.testing.assert_close(flow_map_sample(exact_average_velocity, x0, torch.linspace(0, 1, 3, dtype=torch.float64)),
                               flow_map_sample(exact_average_velocity, x0, 2))


def test_one_jump_of_the_exact_map_samples_the_data_law() -> None:
    x0 = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    samples = flow_map_sample(exact_average_velocity, x0, 1)
    # Monte Carlo: the standard error of a mean is σ/√n ≈ 0.0034 at most; of a std about half that.
    torch.testing.assert_close(samples.mean(0), MU.double(), rtol=0, atol=0.015)
    torch.testing.assert_close(samples.std(0), SIGMA.double(), rtol=0, atol=0.01)
    torch.testing.assert_close(flow_map_sample(exact_average_velocity, x0[:100], 4), samples[:100])


# --- MeanFlow -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("float64")
def test_the_meanflow_identity_holds_for_the_exact_average_velocity() -> None:
    x, s, t = _inputs()
    target = meanflow_target(exact_average_velocity, x, s, t, exact_velocity(x, s))
    torch.testing.assert_close(target.prediction, target.target, rtol=0, atol=1e-6)
    assert meanflow_loss(exact_average_velocity, x, s, t, exact_velocity(x, s)).item() < 1e-10


@pytest.mark.usefixtures("float64")
def test_the_meanflow_loss_does_not_vanish_away_from_the_exact_average_velocity() -> None:
    x, s, t = _inputs()
    velocity = exact_velocity(x, s)
    # The instantaneous velocity at s is right where s = t, but a wrong average velocity for every jump.
    frozen = lambda x_, s_, t_: exact_velocity(x_, s_)  # noqa: E731
    assert meanflow_loss(frozen, x, s, t, velocity).item() > 0.1
    tilted = lambda x_, s_, t_: exact_average_velocity(x_, s_, t_) * (1 + 0.1 * (t_ - s_))[:, None]  # noqa: E731
    assert meanflow_loss(tilted, x, s, t, velocity).item() > 1e-3


@pytest.mark.usefixtures("float64")
def test_the_jvp_is_the_total_derivative_along_the_trajectory_by_finite_differences() -> None:
    torch.manual_seed(0)
    network = MLPFlowMap(3, hidden=32, layers=3).double()
    x, s, t = _inputs(64)
    s = 0.1 + 0.8 * s  # keep s ± h inside [0, 1]
    velocity = torch.randn(64, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = meanflow_target(network, x, s, t, velocity)
    h = 1e-5
    with torch.no_grad():
        forward = network(x + h * velocity, s + h, t)
        backward = network(x - h * velocity, s - h, t)
    torch.testing.assert_close(target.total_derivative, (forward - backward) / (2 * h), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(target.target, velocity + (t - s)[:, None] * target.total_derivative)


def test_the_meanflow_loss_trains_the_network_through_the_prediction_only() -> None:
    torch.manual_seed(0)
    network = MLPFlowMap(3, hidden=16, layers=2)
    x, s, t = (v.float() for v in _inputs(32))
    loss = meanflow_loss(network, x, s, t, torch.randn(32, 3))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())
    # The stop-gradient: the loss's gradient is that of ‖u − c‖² with c fixed at the target.
    target = meanflow_target(network, x, s, t, torch.randn(32, 3, generator=torch.Generator().manual_seed(3)))
    assert not target.target.requires_grad and target.prediction.requires_grad


def test_adaptive_weighting_reweights_but_keeps_a_squared_error() -> None:
    x, s, t = (v.float() for v in _inputs(64))
    wrong = lambda x_, s_, t_: torch.zeros_like(x_)  # noqa: E731 - error ‖target‖², the same under both weightings
    velocity = torch.ones(64, 3)
    plain = meanflow_loss(wrong, x, s, t, velocity)
    weighted = meanflow_loss(wrong, x, s, t, velocity, adaptive_power=1.0)
    torch.testing.assert_close(plain, torch.tensor(3.0))  # u ≡ 0: the target is v = 1 in each of 3 coordinates
    torch.testing.assert_close(weighted, torch.tensor(3.0))
    with pytest.raises(ValueError, match="adaptive_power"):
        meanflow_loss(wrong, x, s, t, velocity, adaptive_power=-1.0)


def test_the_meanflow_loss_is_the_squared_error_of_its_target_at_the_same_times() -> None:
    torch.manual_seed(0)
    network = MLPFlowMap(3, hidden=16, layers=2)
    x, s, t = (v.float() for v in _inputs(32))
    velocity = torch.randn(32, 3, generator=torch.Generator().manual_seed(8))
    target = meanflow_target(network, x, s, t, velocity)
    expected = (target.prediction - target.target).pow(2).sum(dim=1).mean()
    torch.testing.assert_close(meanflow_loss(network, x, s, t, velocity), expected)


@pytest.mark.parametrize(("power", "offset"), [(1.0, 1e-3), (0.5, 0.1)])
def test_adaptive_weights_are_one_over_the_error_plus_offset_to_the_power(power: float, offset: float) -> None:
    """At s = t and ū ≡ 0 the target is the velocity, so each sample's error is ‖v_i‖², chosen unequal here."""
    x = torch.zeros(4, 2)
    s = t = torch.full((4,), 0.5)
    velocity = torch.tensor([[0.1, 0.0], [1.0, 0.0], [2.0, 1.0], [0.0, 3.0]])
    zero = lambda x_, s_, t_: torch.zeros_like(x_)  # noqa: E731
    error = velocity.pow(2).sum(dim=1)
    weight = (error + offset) ** -power
    expected = (weight * error).sum() / weight.sum()
    torch.testing.assert_close(meanflow_loss(zero, x, s, t, velocity, adaptive_power=power, adaptive_offset=offset), expected)


def test_guidance_enters_the_target_as_classifier_free_guidance() -> None:
    conditional, unconditional = torch.full((4, 2), 3.0), torch.full((4, 2), 1.0)
    torch.testing.assert_close(guided_meanflow_velocity(conditional, unconditional, 2.0), torch.full((4, 2), 5.0))
    torch.testing.assert_close(guided_meanflow_velocity(conditional, unconditional, 1.0), conditional)


# --- consistency ------------------------------------------------------------------------------


def test_the_exact_consistency_function_meets_its_boundary_and_self_consistency() -> None:
    x, s, t = _inputs()
    ones = torch.ones_like(s)
    torch.testing.assert_close(consistency_function(exact_average_velocity, x, ones), x)
    # f(X_{s→t}(x), t) = f(x, s): every point of one trajectory has the same image.
    torch.testing.assert_close(
        consistency_function(exact_average_velocity, exact_map(x, s, t), t), consistency_function(exact_average_velocity, x, s)
    )


@pytest.mark.usefixtures("float64")
def test_the_consistency_loss_vanishes_on_a_trajectory_and_not_off_it() -> None:
    x, s, _ = _inputs()
    s = 0.9 * s
    s_next = s + 0.05
    on = exact_map(x, s, s_next)
    assert consistency_loss(exact_average_velocity, x, s, on, s_next).item() < 1e-20
    off = on + 0.1
    assert consistency_loss(exact_average_velocity, x, s, off, s_next).item() > 1e-3
    # A network that is not the flow map is penalised even on the exact trajectory.
    shrunk = lambda x_, a, b: 0.9 * exact_average_velocity(x_, a, b)  # noqa: E731
    assert consistency_loss(shrunk, x, s, on, s_next).item() > 1e-4


def test_the_consistency_target_carries_no_gradient() -> None:
    torch.manual_seed(0)
    network = MLPFlowMap(3, hidden=16, layers=2)
    x, s, _ = (v.float() for v in _inputs(16))
    s = 0.9 * s
    x_next, s_next = x.clone().requires_grad_(True), s + 0.05
    consistency_loss(network, x, s, x_next, s_next).backward()
    assert x_next.grad is None


def test_multistep_consistency_sampling_with_the_exact_function_samples_the_data_law() -> None:
    x0 = torch.randn(100_000, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    samples = consistency_sample(exact_average_velocity, x0, 3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(samples.mean(0), MU.double(), rtol=0, atol=0.02)
    torch.testing.assert_close(samples.std(0), SIGMA.double(), rtol=0, atol=0.015)
    again = consistency_sample(exact_average_velocity, x0, 3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(again, samples, rtol=0, atol=0)  # the generator alone decides the fresh noise


# --- reflow and distillation ------------------------------------------------------------------


def test_reflow_pairs_are_a_deterministic_function_of_the_noise() -> None:
    teacher = VectorFieldODE(lambda x, t: torch.sin(3 * x) + t[:, None])  # nonlinear: the endpoint depends on the noise
    noise = torch.randn(32, 3, generator=torch.Generator().manual_seed(6))
    first, second = teacher_pairs(teacher, noise, 10), teacher_pairs(teacher, noise.clone(), 10)
    torch.testing.assert_close(first.x1, second.x1, rtol=0, atol=0)
    other = teacher_pairs(teacher, noise + 1e-3, 10)
    assert not torch.equal(other.x1, first.x1)
    kept = teacher_pairs(teacher, noise, 10, keep_trajectory=True)
    assert kept.trajectory.shape == (32, 11, 3) and kept.times.shape == (11,)
    torch.testing.assert_close(kept.trajectory[:, -1], first.x1)
    torch.testing.assert_close(kept.trajectory[:, 0], noise)


@pytest.mark.usefixtures("float64")
def test_the_regression_loss_vanishes_at_the_exact_map_and_not_elsewhere() -> None:
    x, s, t = _inputs()
    x_t = exact_map(x, s, t)
    assert flow_map_regression_loss(exact_average_velocity, x, s, t, x_t).item() < 1e-20
    frozen = lambda x_, a, b: exact_velocity(x_, a)  # noqa: E731 - one Euler step, not the map
    assert flow_map_regression_loss(frozen, x, s, t, x_t).item() > 1e-3


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_names_the_argument() -> None:
    x, s, t = (v.float() for v in _inputs(8))
    with pytest.raises(ValueError, match="s must lie in"):
        flow_map(exact_average_velocity, x, s - 2, t)
    with pytest.raises(ValueError, match="t must have shape"):
        flow_map(exact_average_velocity, x, s, t[:4])
    with pytest.raises(ValueError, match="velocity must have the shape"):
        meanflow_target(exact_average_velocity, x, s, t, x[:, :2])
    with pytest.raises(ValueError, match="s_next must be later"):
        consistency_loss(exact_average_velocity, x, t, x, s)
    with pytest.raises(ValueError, match="x_t must have the shape"):
        flow_map_regression_loss(exact_average_velocity, x, s, t, x[:4])
    with pytest.raises(ValueError, match="times must run from 0 to 1"):
        flow_map_sample(exact_average_velocity, x, torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="steps"):
        teacher_pairs(VectorFieldODE(exact_velocity), x, 0)
    with pytest.raises(ValueError, match="labels must be given"):
        MLPFlowMap(3, num_classes=2)(x, s, t)
