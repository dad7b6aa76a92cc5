"""flowdiff.discrete and the noised-data helpers: DDPM and DDIM on a 1-D Gaussian against the
closed form of the discrete chain, exact posteriors, and the marginal-preserving SDE."""

from __future__ import annotations

import math

import pytest
import torch

from flowdiff.discrete import VarianceExplodingChain, book_time, ddim_sample, ddpm_sample, exact_denoiser
from flowdiff.distributions import Gaussian, GaussianMixture, PointMasses
from flowdiff.dynamics import MarginalPreservingSDE, VectorFieldODE
from flowdiff.paths import CosineScheduler, GaussianPath, LinearPath
from flowdiff.solvers import simulate, time_grid

MEAN, VARIANCE, SIGMA = 1.5, 0.25, 2.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_1d() -> GaussianMixture:
    return GaussianMixture(torch.tensor([[MEAN]]), torch.tensor([[[VARIANCE]]]))


def chain_variance(steps: int, stochastic: bool) -> float:
    """Exact variance of the chain's output for Gaussian data, started from the exact p_1.

    Every step is affine, x <- c x + (1 - c) m (+ noise for DDPM), with
    c = 1 - r lam sigma^2 s / (v + sigma^2 s), r = ds / s, and lam = 1 for DDPM's mean,
    lam = sqrt(s) / (sqrt(s - ds) + sqrt(s)) for DDIM.
    """
    ds, variance = 1 / steps, VARIANCE + SIGMA**2
    for k in range(steps, 0, -1):
        s = k * ds
        lam = 1.0 if stochastic else math.sqrt(s) / (math.sqrt(s - ds) + math.sqrt(s))
        c = 1 - (ds / s) * lam * SIGMA**2 * s / (VARIANCE + SIGMA**2 * s)
        variance = c**2 * variance + (SIGMA**2 * ds if stochastic else 0.0)
    return variance


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_on_a_gaussian_match_the_closed_form(sampler: str) -> None:
    """Sample mean and variance (100k samples) within 5 standard errors of the chain's exact law,
    and that law within the discretisation error of the data law N(1.5, 0.25): 12 % at T = 200 steps
    (DDPM 4 %, DDIM 10 %), shrinking at least by half when T is four times larger."""
    data, chain, n = gaussian_1d(), VarianceExplodingChain(SIGMA, 200), 100_000
    start = MEAN + math.sqrt(VARIANCE + SIGMA**2) * torch.randn(n, 1, generator=gen(1))
    denoiser = exact_denoiser(data, chain)
    if sampler == "ddpm":
        x = ddpm_sample(denoiser, chain, start, generator=gen(2))
    else:
        x = ddim_sample(denoiser, chain, start)
    variance = chain_variance(200, sampler == "ddpm")
    assert abs(x.mean().item() - MEAN) < 5 * math.sqrt(variance / n)
    assert abs(x.var().item() - variance) < 5 * variance * math.sqrt(2 / n)
    assert abs(variance - VARIANCE) < 0.12 * VARIANCE
    assert abs(chain_variance(800, sampler == "ddpm") - VARIANCE) < 0.5 * abs(variance - VARIANCE)


def test_posterior_mean_of_one_step_back_in_closed_form() -> None:
    """E[x_{s-ds} | x_s] = m + (v + sigma^2 (s - ds)) / (v + sigma^2 s) (x - m) for Gaussian data."""
    chain = VarianceExplodingChain(SIGMA, 50)
    x = torch.linspace(-3, 5, 9)[:, None]
    s = torch.full((9,), 0.4)
    mean = chain.posterior_mean(x, exact_denoiser(gaussian_1d(), chain)(x, s), s)
    ds = chain.step_size
    gain = (VARIANCE + SIGMA**2 * (0.4 - ds)) / (VARIANCE + SIGMA**2 * 0.4)
    torch.testing.assert_close(mean, MEAN + gain * (x - MEAN))


def test_ddim_lands_on_a_point_mass_and_splits_between_two_points_by_their_weights() -> None:
    chain = VarianceExplodingChain(1.0, 100)
    start = torch.randn(4000, 2, generator=gen(3))
    single = PointMasses(torch.tensor([[0.5, -0.5]]))
    torch.testing.assert_close(ddim_sample(exact_denoiser(single, chain), chain, start),
                               single.points.expand(4000, 2))
    two = PointMasses(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.tensor([0.3, 0.7]))
    start = two.sample(4000, gen(4)) + torch.randn(4000, 2, generator=gen(5))
    end = ddim_sample(exact_denoiser(two, chain), chain, start)
    distance = torch.cdist(end, two.points).min(dim=1).values
    assert distance.max() < 1e-3
    share = (end[:, 0] > 0).double().mean().item()
    assert share == pytest.approx(0.7, abs=5 * math.sqrt(0.21 / 4000))


def test_ddim_adds_no_noise_and_ddpm_does() -> None:
    chain, data = VarianceExplodingChain(1.0, 20), gaussian_1d()
    start = torch.randn(10, 1, generator=gen(6))
    denoiser = exact_denoiser(data, chain)
    torch.testing.assert_close(ddim_sample(denoiser, chain, start), ddim_sample(denoiser, chain, start))
    assert not torch.allclose(ddpm_sample(denoiser, chain, start, gen(7)), ddpm_sample(denoiser, chain, start, gen(8)))
    path = ddim_sample(denoiser, chain, start, trajectory=True)
    assert path.states.shape == (10, 21, 1) and path.times[0] == 1 and path.times[-1] == 0
    torch.testing.assert_close(book_time(path.times), 1 - path.times)


def test_noised_mixture_and_tweedie_posterior_mean() -> None:
    """posterior_mean = (x + sigma^2 grad log p_noised(x)) / scale (Tweedie), with autograd for the score."""
    for data in (GaussianMixture.isotropic(torch.tensor([[-1.0, 0.0], [2.0, 1.0]]), 0.4, torch.tensor([1.0, 3.0])),
                 PointMasses(torch.tensor([[-1.0, 0.0], [2.0, 1.0], [0.0, 1.0]]))):
        scale, noise_std = 0.7, 0.6
        x = torch.randn(25, 2, generator=gen(9)).requires_grad_(True)
        (score,) = torch.autograd.grad(data.noised(scale, noise_std).log_density(x).sum(), x)
        expected = (x.detach() + noise_std**2 * score) / scale
        torch.testing.assert_close(data.posterior_mean(x.detach(), scale, noise_std), expected)
    samples = PointMasses(torch.tensor([[0.0], [3.0]]), torch.tensor([1.0, 3.0])).sample(40_000, gen(10))
    assert samples.mean().item() == pytest.approx(2.25, abs=5 * math.sqrt(1.6875 / 40_000))


@pytest.mark.parametrize("sigma", [0.0, 0.8])
def test_marginal_preserving_sde_samples_the_data_for_every_noise_level(sigma: float) -> None:
    """Exact field and score of a Gaussian, Euler–Maruyama with sigma_t = sigma beta_t: mean and covariance within 0.03."""
    data = GaussianMixture(torch.tensor([[1.0, -1.0]]), torch.tensor([[[0.4, 0.1], [0.1, 0.2]]]))
    path = GaussianPath(CosineScheduler())
    sde = MarginalPreservingSDE(lambda x, t: path.marginal_vector_field(data, x, t),
                                lambda x, t: path.marginal_score(data, x, t),
                                lambda t: sigma * path.scheduler.beta(t))
    x1 = simulate(sde, torch.randn(40_000, 2, generator=gen(11)), time_grid(400, dtype=torch.float64), generator=gen(12))
    torch.testing.assert_close(x1.mean(0), data.mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x1.T), data.covariance, atol=0.03, rtol=0)


def test_marginal_preserving_sde_without_noise_is_the_flow() -> None:
    data, path = gaussian_1d(), LinearPath()
    field = lambda x, t: path.marginal_vector_field(data, x, t)  # noqa: E731
    start, grid = torch.randn(50, 1, generator=gen(13)), time_grid(20, dtype=torch.float64)
    sde = MarginalPreservingSDE(field, lambda x, t: 1 / 0, 0.0)
    torch.testing.assert_close(simulate(sde, start, grid, generator=gen(14)),
                               simulate(VectorFieldODE(field), start, grid))


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(ValueError, match="sigma"):
        VarianceExplodingChain(0.0, 10)
    with pytest.raises(ValueError, match="steps"):
        VarianceExplodingChain(1.0, 0)
    chain = VarianceExplodingChain(1.0, 10)
    with pytest.raises(ValueError, match="s must be >= the step size"):
        chain.posterior_mean(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="s must have shape"):
        chain.noised(torch.zeros(3, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="data"):
        exact_denoiser(Gaussian.isotropic(1), chain)
    with pytest.raises(ValueError, match="noise_std must be > 0"):
        PointMasses(torch.zeros(1, 2)).noised(1.0, 0.0)
    with pytest.raises(ValueError, match="scale"):
        GaussianMixture.isotropic(torch.zeros(1, 2), 1.0).noised(-1.0, 1.0)
    with pytest.raises(ValueError, match="weights"):
        PointMasses(torch.zeros(2, 2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="diffusion"):
        MarginalPreservingSDE(lambda x, t: x, lambda x, t: x, -1.0)
