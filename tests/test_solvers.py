"""flowdiff.solvers and flowdiff.dynamics: known flows, SciPy, convergence orders, Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from flowdiff.distributions import Gaussian, GaussianMixture
from flowdiff.dynamics import (
    SDE,
    AffineGaussianFlow,
    BrownianMotion,
    LinearODE,
    OrnsteinUhlenbeck,
    OverdampedLangevin,
    VectorFieldODE,
)
from flowdiff.solvers import simulate, simulate_trajectory, solve_adaptive, time_grid


SPIRAL = torch.tensor([[-0.3, -2.0], [2.0, -0.3]], dtype=torch.float64)


def affine_flow() -> AffineGaussianFlow:
    return AffineGaussianFlow(
        Gaussian.isotropic(2, 1.0), Gaussian.isotropic(2, 0.4, torch.tensor([3.0, -1.0]))
    )


@pytest.mark.usefixtures("float64")  # compares with SciPy's expm at float64 round-off
def test_linear_flow_is_the_matrix_exponential() -> None:
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    expected = x0.numpy() @ expm(0.7 * SPIRAL.numpy()).T
    np.testing.assert_allclose(LinearODE(SPIRAL).flow(x0, 0.7).numpy(), expected, rtol=1e-12)


def test_affine_flow_endpoints_and_velocity() -> None:
    flow = affine_flow()
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(flow.flow(x0, torch.zeros(6)), x0)
    target = flow.mean1 + 0.4 * x0
    torch.testing.assert_close(flow.flow(x0, torch.ones(6)), target)
    # The drift at psi_t(x0) is the time derivative of psi_t(x0) (central differences). The flow is
    # linear in t, so the quotient has no truncation error; its float32 round-off is about 1e-7 |psi| / eps.
    t, eps = torch.full((6,), 0.3), 1e-2
    derivative = (flow.flow(x0, t + eps) - flow.flow(x0, t - eps)) / (2 * eps)
    torch.testing.assert_close(flow.drift(flow.flow(x0, t), t), derivative, atol=1e-4, rtol=1e-5)


def test_affine_flow_marginal_is_the_pushforward() -> None:
    flow = affine_flow()
    x0 = flow.source.sample(100_000, torch.Generator().manual_seed(2))
    xt = flow.flow(x0, torch.full((x0.shape[0],), 0.6))
    marginal = flow.marginal(0.6)
    assert torch.allclose(xt.mean(0), marginal.mean, atol=0.02)
    assert torch.allclose(torch.cov(xt.T), marginal.cov, atol=0.02)


def known_flow(case: str, x0: torch.Tensor):
    """An ODE with its exact solution at t = 1: the rotating linear field, or the affine flow between two Gaussians."""
    if case == "linear":
        return LinearODE(SPIRAL), LinearODE(SPIRAL).flow(x0, 1.0)
    ode = affine_flow()
    return ode, ode.flow(x0, torch.ones(x0.shape[0]))


@pytest.mark.parametrize("method", ["euler", "heun", "midpoint"])
@pytest.mark.parametrize("case", ["linear", "affine"])
def test_every_ode_solver_integrates_a_known_velocity_to_its_flow(method: str, case: str) -> None:
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    ode, exact = known_flow(case, x0)
    error = (simulate(ode, x0, time_grid(400, dtype=torch.float64), method) - exact).abs().max().item()
    assert error < {"euler": 2e-2, "heun": 1e-4, "midpoint": 1e-4}[method]


def field_with_exact_flow(case: str):
    """An ODE and its exact solution x(1) from x0: the rotating linear field (autonomous), or two fields
    that depend on time, dx/dt = cos(t) x with x(t) = x0 exp(sin t), and dx/dt = -x + t^2 with
    x(t) = (x0 - 2) e^{-t} + t^2 - 2t + 2. A step that reads the field at the wrong time loses an order on those."""
    if case == "linear":
        return LinearODE(SPIRAL), lambda x0: LinearODE(SPIRAL).flow(x0, 1.0)
    if case == "cos(t) x":
        return VectorFieldODE(lambda x, t: torch.cos(t)[:, None] * x), lambda x0: x0 * math.exp(math.sin(1.0))
    return VectorFieldODE(lambda x, t: -x + t[:, None] ** 2), lambda x0: (x0 - 2) * math.exp(-1.0) + 1.0


def measured_order(method: str, case: str) -> float:
    """Slope of log error against log step; float64 so that round-off stays far below the smallest error."""
    ode, exact = field_with_exact_flow(case)
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    steps = np.array([20, 40, 80, 160, 320])
    errors = [(simulate(ode, x0, time_grid(int(n), dtype=torch.float64), method) - exact(x0)).abs().max().item() for n in steps]
    slope, _ = np.polyfit(np.log(1.0 / steps), np.log(errors), 1)
    return slope


CASES = ["linear", "cos(t) x", "-x + t^2"]


@pytest.mark.parametrize("case", CASES)
def test_euler_converges_with_order_one(case: str) -> None:
    assert abs(measured_order("euler", case) - 1.0) < 0.1


@pytest.mark.parametrize("case", CASES)
def test_heun_converges_with_order_two(case: str) -> None:
    assert abs(measured_order("heun", case) - 2.0) < 0.1


@pytest.mark.parametrize("case", CASES)
def test_midpoint_converges_with_order_two(case: str) -> None:
    assert abs(measured_order("midpoint", case) - 2.0) < 0.1


@pytest.mark.parametrize(
    "method, in_time, in_state",
    [
        # One step from t = 0.25 with h = 0.5 of dx/dt = t (exact: x + 0.25) and of dx/dt = x (exact: x e^h).
        ("euler", 0.5 * 0.25, 1 + 0.5),  # x + h u_t(x): reads the field at the start of the step
        ("heun", 0.5 * (0.25 + 0.75) / 2, 1 + 0.5 + 0.5**2 / 2),  # trapezoid: exact for a field linear in t
        ("midpoint", 0.5 * 0.5, 1 + 0.5 + 0.5**2 / 2),  # the field at t + h/2: exact for a field linear in t
    ],
)
def test_one_step_of_each_method_by_hand(method: str, in_time: float, in_state: float) -> None:
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    times = torch.tensor([0.25, 0.75])
    clock = VectorFieldODE(lambda x, t: t[:, None].expand_as(x))
    torch.testing.assert_close(simulate(clock, x, times, method), x + in_time)
    growth = VectorFieldODE(lambda x, t: x)
    torch.testing.assert_close(simulate(growth, x, times, method), x * in_state)


@pytest.mark.usefixtures("float64")  # a tolerance of 1e-9 is below float32's resolution
@pytest.mark.parametrize("case", ["linear", "affine", "-x + t^2"])
def test_adaptive_solver_integrates_a_known_velocity_to_its_flow(case: str) -> None:
    """The last field is not symmetric under t -> 1 - t (the first two end at the same point either way)."""
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    if case == "-x + t^2":
        ode, solution = field_with_exact_flow(case)
        exact = solution(x0)
    else:
        ode, exact = known_flow(case, x0)
    loose, tight = solve_adaptive(ode, x0, rtol=1e-4, atol=1e-4), solve_adaptive(ode, x0, rtol=1e-9, atol=1e-9)
    assert (tight.final - exact).abs().max().item() < 1e-7
    assert (loose.final - exact).abs().max().item() < 1e-2
    # Dormand-Prince spends 6 evaluations per step (first-same-as-last), plus the initial one and rejected steps.
    assert 7 <= loose.evaluations <= tight.evaluations
    if case == "linear":  # the rotating field needs more steps for a tighter tolerance (the affine one is polynomial in t)
        assert loose.evaluations < tight.evaluations


@pytest.mark.usefixtures("float64")  # a tolerance of 1e-9 is below float32's resolution
def test_adaptive_solver_on_a_later_interval() -> None:
    """dx/dt = -x + t^2 from t = 0.6 to 1: x(1) = (x0 - p(0.6)) e^{-0.4} + p(1) with p(t) = t^2 - 2t + 2."""
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    ode = VectorFieldODE(lambda x, t: -x + t[:, None] ** 2)
    solution = solve_adaptive(ode, x0, rtol=1e-9, atol=1e-9, start=0.6, end=1.0)
    torch.testing.assert_close(solution.final, (x0 - 1.16) * math.exp(-0.4) + 1.0, rtol=1e-7, atol=1e-7)


def test_adaptive_solver_counts_every_evaluation() -> None:
    calls = []

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return -x

    solution = solve_adaptive(VectorFieldODE(field), torch.ones(3, 2), rtol=1e-6, atol=1e-6)
    assert solution.evaluations == len(calls)
    torch.testing.assert_close(solution.final, torch.full((3, 2), math.exp(-1.0)), rtol=1e-5, atol=1e-6)


def test_heun_matches_scipy_on_a_nonlinear_time_dependent_field() -> None:
    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.sin(3 * t) * x[:, 1], -x[:, 0] + 0.5 * torch.cos(x[:, 1])], dim=1)

    def field_np(t: float, y: np.ndarray) -> np.ndarray:
        return np.array([math.sin(3 * t) * y[1], -y[0] + 0.5 * math.cos(y[1])])

    x0 = torch.tensor([[1.0, -0.5], [0.2, 0.8]])
    ours = simulate(VectorFieldODE(field), x0, time_grid(500, dtype=torch.float64), "heun")
    for start, end in zip(x0.numpy(), ours.numpy()):
        ref = solve_ivp(field_np, (0.0, 1.0), start, rtol=1e-11, atol=1e-12).y[:, -1]
        np.testing.assert_allclose(end, ref, atol=1e-5)


def test_trajectory_keeps_every_state() -> None:
    x0 = torch.randn(7, 2)
    times = time_grid(10, dtype=torch.float64)
    trajectory = simulate_trajectory(LinearODE(SPIRAL), x0, times, "heun")
    assert trajectory.states.shape == (7, 11, 2)
    torch.testing.assert_close(trajectory.states[:, 0], x0)
    torch.testing.assert_close(trajectory.final, simulate(LinearODE(SPIRAL), x0, times, "heun"))


def test_solvers_accept_image_shaped_batches() -> None:
    x0 = torch.ones(3, 1, 4, 4)
    decay = VectorFieldODE(lambda x, t: -x)
    end = simulate(decay, x0, time_grid(1000, dtype=torch.float64), "heun")
    torch.testing.assert_close(end, torch.full_like(x0, math.exp(-1.0)), atol=1e-6, rtol=0)
    noisy = simulate(OrnsteinUhlenbeck(1.0, 0.5), x0, time_grid(5), generator=torch.Generator().manual_seed(0))
    # Euler-Maruyama written out: x += h (-x) + 0.5 sqrt(h) z, one N(0, I) image per step, the same draws.
    generator, expected = torch.Generator().manual_seed(0), x0
    for _ in range(5):
        expected = expected - 0.2 * expected + 0.5 * math.sqrt(0.2) * torch.randn(x0.shape, generator=generator)
    torch.testing.assert_close(noisy, expected)


def test_brownian_increments_are_independent_gaussians() -> None:
    sigma, n, steps = 0.7, 20_000, 50
    times = time_grid(steps, 0.0, 2.0, dtype=torch.float64)
    paths = simulate_trajectory(BrownianMotion(sigma), torch.zeros(n, 1), times, generator=torch.Generator().manual_seed(4))
    increments = paths.states.diff(dim=1)[..., 0]  # (n, steps)
    h = 2.0 / steps
    # Each increment ~ N(0, sigma^2 h): check mean, variance (chi-square error sqrt(2/n)) and lag-1 correlation.
    assert increments.mean().abs() < 5 * sigma * math.sqrt(h / (n * steps))
    assert abs(increments.var().item() / (sigma**2 * h) - 1) < 5 * math.sqrt(2 / (n * steps))
    lag = torch.corrcoef(torch.stack([increments[:, :-1].reshape(-1), increments[:, 1:].reshape(-1)]))[0, 1]
    assert lag.abs() < 5 / math.sqrt(n * (steps - 1))
    # And W_2 ~ N(0, 2 sigma^2).
    assert abs(paths.final.var().item() / (2 * sigma**2) - 1) < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("horizon", [0.5, 2.0, 8.0])
def test_ornstein_uhlenbeck_mean_and_variance_match_closed_form(horizon: float) -> None:
    ou = OrnsteinUhlenbeck(theta=1.5, sigma=0.8)
    n, x0 = 40_000, 2.0
    end = simulate(ou, torch.full((n, 1), x0), time_grid(int(400 * horizon), 0.0, horizon, dtype=torch.float64),
                   generator=torch.Generator().manual_seed(5))
    mean, var = ou.mean(torch.tensor(x0), horizon).item(), ou.variance(horizon)
    # Monte Carlo: 5 standard errors; Euler–Maruyama's weak error with h = 1/400 is below 1 %.
    assert abs(end.mean().item() - mean) < 5 * math.sqrt(var / n) + 0.01 * abs(mean)
    assert abs(end.var().item() / var - 1) < 5 * math.sqrt(2 / n) + 0.01


def test_ornstein_uhlenbeck_forgets_its_start() -> None:
    ou = OrnsteinUhlenbeck(theta=2.0, sigma=1.0)
    assert ou.variance(50.0) == pytest.approx(ou.stationary_variance)
    assert ou.stationary_variance == pytest.approx(0.25)


def test_langevin_reaches_a_gaussian_mixture() -> None:
    target = GaussianMixture.isotropic(torch.tensor([[-1.2], [1.5]]), std=0.6, weights=torch.tensor([0.35, 0.65]))
    n = 20_000
    start = 3.0 * torch.randn(n, 1, generator=torch.Generator().manual_seed(6))
    end = simulate(OverdampedLangevin(target, sigma=1.0), start, time_grid(2000, 0.0, 20.0, dtype=torch.float64),
                   generator=torch.Generator().manual_seed(7))
    exact_mean = (target.weights @ target.means).item()
    second = sum(w * (0.36 + m**2) for w, m in zip(target.weights, target.means[:, 0]))
    exact_var = (second - exact_mean**2).item()
    # Unadjusted Langevin with h = 0.01 is biased by O(h); 0.05 covers bias and Monte Carlo error.
    assert abs(end.mean().item() - exact_mean) < 0.05
    assert abs(end.var().item() - exact_var) < 0.05
    right = (end > 0.0).double().mean().item()
    exact_right = sum(w * (1 - torch.special.ndtr(-m / 0.6)) for w, m in zip(target.weights, target.means[:, 0])).item()
    assert abs(right - exact_right) < 0.02


def test_same_seed_same_sample_path() -> None:
    ou, x0, times = OrnsteinUhlenbeck(), torch.zeros(10, 2), time_grid(20)
    first = simulate(ou, x0, times, generator=torch.Generator().manual_seed(8))
    again = simulate(ou, x0, times, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: time_grid(-3), "steps"),
        (lambda: time_grid(0), "steps"),
        (lambda: time_grid(10, 1.0, 0.0), "end"),
        (lambda: simulate(LinearODE(SPIRAL), torch.zeros(2), time_grid(3)), "x0"),
        (lambda: simulate(LinearODE(SPIRAL), torch.zeros(2, 2), torch.tensor([0.0, 0.5, 0.2])), "times"),
        (lambda: simulate(LinearODE(SPIRAL), torch.zeros(2, 2), torch.tensor([[0.0, 1.0]])), "times"),
        (lambda: simulate(LinearODE(SPIRAL), torch.zeros(2, 2), time_grid(3), "rk4"), "method"),
        (lambda: simulate(LinearODE(SPIRAL), torch.zeros(2, 2), time_grid(3), "euler_maruyama"), "method"),
        (lambda: simulate(OrnsteinUhlenbeck(), torch.zeros(2, 2), time_grid(3), "heun"), "method"),
        (lambda: solve_adaptive(LinearODE(SPIRAL), torch.zeros(2, 2), rtol=0.0), "rtol"),
        (lambda: solve_adaptive(LinearODE(SPIRAL), torch.zeros(2, 2), method="rk4"), "method"),
        (lambda: solve_adaptive(lambda x, t: x, torch.zeros(2, 2)), "ode"),
        (lambda: affine_flow().drift(torch.zeros(2, 2), torch.tensor([0.5, 1.5])), r"^t must lie in \[0, 1\]"),
        (lambda: affine_flow().flow(torch.zeros(2, 2), torch.tensor([-0.1, 0.5])), r"^t must lie in \[0, 1\]"),
        (lambda: affine_flow().marginal(2.0), r"^t must lie in \[0, 1\]"),
        (lambda: AffineGaussianFlow(Gaussian(torch.zeros(2), torch.diag(torch.tensor([1.0, 2.0]))), Gaussian.isotropic(2)), "source"),
        (lambda: LinearODE(torch.zeros(2, 3)), "matrix"),
        (lambda: LinearODE(SPIRAL).drift(torch.zeros(4, 3), torch.zeros(4)), r"^x must have 2 columns"),
        (lambda: BrownianMotion(sigma=-1.0), "sigma"),
        (lambda: OrnsteinUhlenbeck(theta=0.0), "theta"),
        (lambda: OrnsteinUhlenbeck(sigma=-0.5), "sigma"),
        (lambda: OrnsteinUhlenbeck().variance(-1.0), r"^t must be >= 0"),
        (lambda: OverdampedLangevin(Gaussian.isotropic(1), sigma=0.0), "sigma"),
        (lambda: VectorFieldODE(3.0), "vector_field"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()


class ClockSDE(SDE):
    """dX = (t - X) dt + (0.5 + t) dW: drift and diffusion both depend on time."""

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return t[:, None] - x

    def diffusion(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.5 + t


def test_euler_maruyama_by_hand_on_a_time_dependent_sde() -> None:
    """x += h (t - x) + (0.5 + t) sqrt(h) z on an uneven grid, with the same draws z: each step reads its start time."""
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0], [0.0, 0.0]])
    times = torch.tensor([0.2, 0.5, 0.6, 1.0])
    trajectory = simulate_trajectory(ClockSDE(), x0, times, generator=torch.Generator().manual_seed(5))
    generator, x, expected = torch.Generator().manual_seed(5), x0, [x0]
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        h = t_next - t
        x = x + h * (t - x) + (0.5 + t) * math.sqrt(h) * torch.randn(x.shape, generator=generator)
        expected.append(x)
    torch.testing.assert_close(trajectory.states, torch.stack(expected, dim=1))
    torch.testing.assert_close(trajectory.times, times)
