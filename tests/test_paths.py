"""flowdiff.paths: schedulers against autograd, conditional fields and scores against the
conditional density, exact marginals against closed forms and Monte Carlo, conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowdiff.distributions import GaussianMixture, PointMasses
from flowdiff.dynamics import VectorFieldODE
from flowdiff.paths import CosineScheduler, GaussianPath, LinearPath, LinearScheduler, VPScheduler
from flowdiff.solvers import simulate, time_grid

SCHEDULERS = [LinearScheduler(), CosineScheduler(), VPScheduler()]
IDS = ["linear", "cosine", "vp"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_data() -> GaussianMixture:
    """A single correlated Gaussian N(mu, Sigma), as a one-component mixture."""
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]])
    return GaussianMixture(torch.tensor([[1.0, -0.5]]), cov[None])


def mixture() -> GaussianMixture:
    return GaussianMixture.isotropic(torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, 2.5]]), 0.3,
                                     torch.tensor([0.5, 0.3, 0.2]))


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_scheduler_derivatives_match_autograd(scheduler) -> None:
    t = torch.linspace(0.01, 0.99, 41).requires_grad_(True)
    for value, derivative in ((scheduler.alpha, scheduler.alpha_dot), (scheduler.beta, scheduler.beta_dot)):
        (grad,) = torch.autograd.grad(value(t).sum(), t)
        # float32: a few roundings of about 6e-8 each.
        torch.testing.assert_close(derivative(t.detach()), grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scheduler", SCHEDULERS[:2], ids=IDS[:2])
def test_scheduler_endpoints(scheduler) -> None:
    ends = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(scheduler.alpha(ends), torch.tensor([0.0, 1.0]), atol=1e-15, rtol=0)
    torch.testing.assert_close(scheduler.beta(ends), torch.tensor([1.0, 0.0]), atol=1e-15, rtol=0)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_scheduler_is_never_negative_in_single_precision(scheduler) -> None:
    t = torch.linspace(0, 1, 1001, dtype=torch.float32)
    assert torch.all(scheduler.beta(t) >= 0) and torch.all(scheduler.alpha(t) >= 0)
    assert scheduler.beta(torch.ones(1, dtype=torch.float32)).item() == 0.0


def test_vp_scheduler_is_variance_preserving_and_starts_near_noise() -> None:
    vp = VPScheduler(0.1, 20.0)
    t = torch.linspace(0, 1, 11)
    torch.testing.assert_close(vp.alpha(t) ** 2 + vp.beta(t) ** 2, torch.ones(11))
    assert vp.alpha(torch.tensor([0.0])).item() == pytest.approx(math.exp(-0.5 * (0.1 + 0.5 * 19.9)))
    assert vp.alpha(torch.tensor([1.0])).item() == 1.0 and vp.beta(torch.tensor([1.0])).item() == 0.0


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_conditional_field_is_the_time_derivative_of_the_conditional_flow(scheduler) -> None:
    """d/dt (alpha_t z + beta_t eps) = u_t(x_t | z): the conditional path follows its field."""
    path = GaussianPath(scheduler)
    z, eps = torch.randn(64, 3, generator=gen(1)), torch.randn(64, 3, generator=gen(2))
    t = torch.rand(64, generator=gen(3)) * 0.9 + 0.05
    t.requires_grad_(True)
    moved = path.sample(z, t, noise=eps)
    tangent = torch.stack([torch.autograd.grad(moved[:, i].sum(), t, retain_graph=True)[0] for i in range(3)], 1)
    t = t.detach()
    x = path.sample(z, t, noise=eps)
    torch.testing.assert_close(path.conditional_vector_field(x, z, t), tangent)
    torch.testing.assert_close(path.conditional_velocity(z, eps, t), tangent)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_conditional_score_is_the_gradient_of_the_conditional_log_density(scheduler) -> None:
    path = GaussianPath(scheduler)
    z = torch.randn(32, 2, generator=gen(4))
    x = torch.randn(32, 2, generator=gen(5)).requires_grad_(True)
    t = torch.rand(32, generator=gen(6)) * 0.9 + 0.05
    alpha, beta = scheduler.alpha(t)[:, None], scheduler.beta(t)[:, None]
    log_density = torch.distributions.Normal(alpha * z, beta).log_prob(x).sum()
    (grad,) = torch.autograd.grad(log_density, x)
    torch.testing.assert_close(path.conditional_score(x.detach(), z, t), grad)


def test_linear_path_moves_any_source_point_straight_to_its_target() -> None:
    path = LinearPath()
    x0, z = torch.rand(10, 2, generator=gen(7)), torch.randn(10, 2, generator=gen(8))
    t = torch.rand(10, generator=gen(9))
    torch.testing.assert_close(path.sample(z, t, noise=x0), (1 - t)[:, None] * x0 + t[:, None] * z)
    torch.testing.assert_close(path.conditional_velocity(z, x0, t), z - x0)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.8, 1.0])
def test_marginal_law_matches_monte_carlo(t: float) -> None:
    """Mean and covariance of alpha Z + beta eps from 400k samples, within 5 standard errors."""
    data, path = mixture(), GaussianPath(CosineScheduler())
    n = 400_000
    z = data.sample(n, gen(10))
    x = path.sample(z, torch.full((n,), t), generator=gen(11))
    marginal = path.marginal(data, t)
    mean_error = (x.mean(0) - marginal.mean).abs().max().item()
    assert mean_error < 5 * x.std(0).max().item() / math.sqrt(n)
    torch.testing.assert_close(torch.cov(x.T), marginal.covariance, atol=0.02, rtol=0.01)


def closed_form_gaussian_field(data: GaussianMixture, scheduler, x: torch.Tensor, t: float) -> torch.Tensor:
    """u_t(x) = alpha' mu + (alpha' alpha Sigma + beta' beta I) S^{-1} (x - alpha mu), S = alpha^2 Sigma + beta^2 I.

    For the VP schedule beta' is infinite at t = 1, but beta' beta = -alpha alpha' (from alpha^2 + beta^2 = 1)."""
    tt = torch.tensor([t])
    a, b, ad = (f(tt).item() for f in (scheduler.alpha, scheduler.beta, scheduler.alpha_dot))
    bd_b = -a * ad if isinstance(scheduler, VPScheduler) else scheduler.beta_dot(tt).item() * b
    mu, sigma = data.means[0].numpy(), data.components[0].cov.numpy()
    s = a**2 * sigma + b**2 * np.eye(2)
    gain = (ad * a * sigma + bd_b * np.eye(2)) @ np.linalg.inv(s)
    return torch.from_numpy(ad * mu + (x.numpy() - a * mu) @ gain.T).to(x.dtype)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
@pytest.mark.parametrize("t", [0.0, 0.4, 0.9, 1.0])
def test_marginal_field_of_gaussian_data_in_closed_form(scheduler, t: float) -> None:
    data, path = gaussian_data(), GaussianPath(scheduler)
    x = torch.randn(50, 2, generator=gen(12)) * 2
    expected = closed_form_gaussian_field(data, scheduler, x, t)
    torch.testing.assert_close(path.marginal_vector_field(data, x, torch.full((50,), t)), expected)


def test_marginal_field_carries_noise_to_the_data() -> None:
    """Integrating the exact marginal field from N(0, I) ends at the data law (the marginalization trick)."""
    data, path = gaussian_data(), LinearPath()
    ode = VectorFieldODE(lambda x, t: path.marginal_vector_field(data, x, t))
    x1 = simulate(ode, torch.randn(100_000, 2, generator=gen(13)), time_grid(100, dtype=torch.float64), "heun")
    torch.testing.assert_close(x1.mean(0), data.mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x1.T), data.covariance, atol=0.01, rtol=0.02)


def test_marginal_score_is_the_gradient_of_the_marginal_log_density() -> None:
    data, path = mixture(), GaussianPath(LinearScheduler())
    x = torch.randn(40, 2, generator=gen(14)).requires_grad_(True)
    t = torch.full((40,), 0.6)
    (grad,) = torch.autograd.grad(path.marginal(data, 0.6).log_density(x).sum(), x)
    torch.testing.assert_close(path.marginal_score(data, x.detach(), t), grad)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_marginal_field_is_the_posterior_average_of_conditional_fields(scheduler) -> None:
    """u_t(x) = E[u_t(x|Z) | X_t = x] by self-normalised importance weights over the data points."""
    points = PointMasses(torch.tensor([[-1.0, 0.0], [1.5, 1.0], [0.0, -2.0]]), torch.tensor([0.2, 0.5, 0.3]))
    path, t = GaussianPath(scheduler), 0.55
    x = torch.randn(20, 2, generator=gen(15))
    tt = torch.full((20,), t)
    gamma = path.marginal(points, t).responsibilities(x)
    conditional = torch.stack([path.conditional_vector_field(x, p.expand(20, 2), tt) for p in points.points], 1)
    expected = torch.einsum("nk,nkd->nd", gamma, conditional)
    torch.testing.assert_close(path.marginal_vector_field(points, x, tt), expected)


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=IDS)
def test_score_and_vector_field_conversions(scheduler) -> None:
    data, path = mixture(), GaussianPath(scheduler)
    x = torch.randn(30, 2, generator=gen(16)) * 2
    t = torch.rand(30, generator=gen(17)) * 0.9 + 0.05
    score = path.marginal_score(data, x, t)
    field = path.vector_field_from_score(score, x, t)
    torch.testing.assert_close(field, path.marginal_vector_field(data, x, t))
    torch.testing.assert_close(path.score_from_vector_field(field, x, t), score)
    z, eps = torch.randn(30, 2, generator=gen(18)), torch.randn(30, 2, generator=gen(19))
    xt = path.sample(z, t, noise=eps)
    torch.testing.assert_close(path.score_from_noise(eps, t), path.conditional_score(xt, z, t))
    torch.testing.assert_close(path.vector_field_from_score(path.conditional_score(xt, z, t), xt, t),
                               path.conditional_vector_field(xt, z, t))


def test_bad_input_names_the_argument() -> None:
    path = LinearPath()
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="t must lie in"):
        path.sample(z, torch.full((4,), 1.5))
    with pytest.raises(ValueError, match="t must have shape"):
        path.sample(z, torch.zeros(3))
    with pytest.raises(ValueError, match="x and z"):
        path.conditional_score(torch.zeros(4, 3), z, torch.zeros(4))
    with pytest.raises(ValueError, match="scheduler"):
        GaussianPath("linear")
    with pytest.raises(ValueError, match="beta_max"):
        VPScheduler(1.0, 0.5)
    with pytest.raises(ValueError, match="beta_min"):
        VPScheduler(-1.0, 0.5)
