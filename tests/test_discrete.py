"""flowdiff.discrete and the noised-data helpers: DDPM and DDIM on a 1-D Gaussian against the
closed form of the discrete chain, exact posteriors, and the marginal-preserving SDE."""

from __future__ import annotations

import math

import pytest
import torch

from flowdiff.discrete import (
    AlphaBarSchedule,
    VarianceExplodingChain,
    book_time,
    ddim_sample,
    ddim_sample_alpha_bar,
    ddim_step,
    ddpm_sample,
    ddpm_sample_alpha_bar,
    ddpm_step,
    denoiser_from_velocity,
    exact_denoiser,
    prediction_from_sample,
    sample_and_noise_from_prediction,
    standard_normal_like,
    velocity_from_denoiser,
)
from flowdiff.distributions import Gaussian, GaussianMixture, PointMasses
from flowdiff.dynamics import MarginalPreservingSDE, VectorFieldODE
from flowdiff.paths import CosineScheduler, GaussianPath, LinearPath, LinearScheduler, VPScheduler
from flowdiff.solvers import simulate, simulate_trajectory, time_grid

MEAN, VARIANCE, SIGMA = 1.5, 0.25, 2.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_1d() -> GaussianMixture:
    return GaussianMixture(torch.tensor([[MEAN]]), torch.tensor([[[VARIANCE]]]))


def chain_variance(steps: int, stochastic: bool) -> float:
    """Exact variance of the chain's output for Gaussian data, started from the exact p_1.

    Every step is affine, x <- c x + (1 - c) m (+ noise for DDPM, except at the last step), with
    c = 1 - r lam sigma^2 s / (v + sigma^2 s), r = ds / s, and lam = 1 for DDPM's mean,
    lam = sqrt(s) / (sqrt(s - ds) + sqrt(s)) for DDIM.
    """
    ds, variance = 1 / steps, VARIANCE + SIGMA**2
    for k in range(steps, 0, -1):
        s = k * ds
        lam = 1.0 if stochastic else math.sqrt(s) / (math.sqrt(s - ds) + math.sqrt(s))
        c = 1 - (ds / s) * lam * SIGMA**2 * s / (VARIANCE + SIGMA**2 * s)
        variance = c**2 * variance + (SIGMA**2 * ds if stochastic and k > 1 else 0.0)
    return variance


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_on_a_gaussian_match_the_closed_form(sampler: str) -> None:
    """Sample mean and variance (100k samples) within 5 standard errors of the chain's exact law,
    and that law within the discretisation error of the data law N(1.5, 0.25): 12 % at T = 200 steps
    (both too narrow, DDPM by 4 %, DDIM by 10 %), shrinking at least by half when T is four times larger."""
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


def test_ddpm_last_step_adds_no_noise() -> None:
    """With one step DDPM returns the posterior mean, here the single data point, exactly (Ho et al.'s z = 0)."""
    point = PointMasses(torch.tensor([[0.7, -0.3]]))
    chain = VarianceExplodingChain(2.0, 1)
    end = ddpm_sample(exact_denoiser(point, chain), chain, 2.0 * torch.randn(100, 2, generator=gen(15)), gen(16))
    torch.testing.assert_close(end, point.points.expand(100, 2))


def test_ddpm_steps_by_hand_with_the_same_noise() -> None:
    """Two steps of Algorithm alg-dd-ddpm written out: x_{1/2} = μ(x_1) + σ_q √Δs ξ with the generator's
    draw ξ, then the noiseless last step. The distribution alone cannot tell +ξ from −ξ; the seed can."""
    chain = VarianceExplodingChain(1.5, 2)
    mixture = GaussianMixture(torch.tensor([[1.0, -0.5], [-1.2, 0.8]]), 0.4 * torch.eye(2).expand(2, 2, 2), torch.tensor([0.3, 0.7]))
    denoiser = exact_denoiser(mixture, chain)
    x1 = 1.5 * torch.randn(64, 2, generator=gen(21))
    one, half = torch.ones(64), torch.full((64,), 0.5)
    noise = torch.randn(64, 2, generator=gen(22))
    x_half = chain.posterior_mean(x1, denoiser(x1, one), one) + 1.5 * math.sqrt(0.5) * noise
    expected = chain.posterior_mean(x_half, denoiser(x_half, half), half)
    torch.testing.assert_close(ddpm_sample(denoiser, chain, x1, gen(22)), expected)


# --- the ᾱ form, against diffusers' schedulers (a test-only oracle; no weights are downloaded) ---------------

PREDICTIONS = ["epsilon", "sample", "v_prediction"]


def toy_network(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """A smooth stand-in for a trained network: any output of the right shape exercises the update."""
    return torch.tanh(x) * (1 + k[:, None] / 1000) - 0.3 * x


def oracle_alpha_bar(scheduler, schedule: AlphaBarSchedule) -> None:
    """Give the oracle our float64 ᾱ, so that the comparison tests the update and not float32 round-off."""
    scheduler.alphas_cumprod = schedule.alpha_bar.clone()


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_schedules_match_diffusers(name: str) -> None:
    from diffusers import DDPMScheduler

    ours = AlphaBarSchedule.linear() if name == "linear" else AlphaBarSchedule.cosine()
    theirs = DDPMScheduler(beta_schedule="linear" if name == "linear" else "squaredcos_cap_v2").alphas_cumprod
    torch.testing.assert_close(ours.alpha_bar, theirs.double(), atol=1e-6, rtol=0)
    assert ours.steps == 1000 and ours.book_time()[-1] == 0 and ours.book_time()[0] == 1 - 1 / 1000


def test_alpha_bar_noising_and_timesteps_match_diffusers() -> None:
    """eq-dd-vp against diffusers' add_noise at several levels, and the levels of a full and a 50-step loop."""
    from diffusers import DDPMScheduler

    schedule = AlphaBarSchedule.linear()
    oracle = DDPMScheduler()
    oracle_alpha_bar(oracle, schedule)
    x0 = torch.randn(8, 3, generator=gen(24), dtype=torch.float64)
    noise = torch.randn(8, 3, generator=gen(25), dtype=torch.float64)
    for k in (999, 500, 10, 0):
        expected = oracle.add_noise(x0, noise, torch.full((8,), k))
        torch.testing.assert_close(schedule.noised(x0, k, noise), expected, atol=1e-12, rtol=0)
    assert schedule.timesteps() == oracle.timesteps.tolist()
    oracle.set_timesteps(50)
    assert schedule.timesteps(50) == oracle.timesteps.tolist()


@pytest.mark.parametrize("variance", ["posterior", "beta"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddpm_step_matches_diffusers(prediction: str, variance: str) -> None:
    """One step at several levels, the last (to the data) included, with the same noise, to 1e-6 in float64."""
    from diffusers import DDPMScheduler

    schedule = AlphaBarSchedule.linear()
    oracle = DDPMScheduler(prediction_type=prediction, clip_sample=False,
                           variance_type="fixed_small" if variance == "posterior" else "fixed_large")
    oracle_alpha_bar(oracle, schedule)
    x = torch.randn(8, 3, generator=gen(20), dtype=torch.float64)
    for k in (999, 500, 10, 1, 0):
        output = toy_network(x, torch.full((8,), k))
        expected = oracle.step(output, k, x, generator=gen(21 + k)).prev_sample
        ours = ddpm_step(output, x, schedule.at(k), schedule.at(k - 1), prediction, variance, generator=gen(21 + k))
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("eta", [0.0, 0.6])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddim_step_matches_diffusers(prediction: str, eta: float) -> None:
    """One step of the 50-step DDIM at several levels, with the same variance noise, to 1e-6 in float64."""
    from diffusers import DDIMScheduler

    schedule = AlphaBarSchedule.cosine()
    oracle = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction, clip_sample=False)
    oracle_alpha_bar(oracle, schedule)
    oracle.set_timesteps(50)
    x = torch.randn(8, 3, generator=gen(22), dtype=torch.float64)
    noise = torch.randn(8, 3, generator=gen(23), dtype=torch.float64)
    for k in (980, 500, 20, 0):
        output = toy_network(x, torch.full((8,), k))
        expected = oracle.step(output, k, x, eta=eta, variance_noise=noise if eta else None).prev_sample
        ours = ddim_step(output, x, schedule.at(k), schedule.at(max(k - 20, -1)), prediction, eta, noise=noise)
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_in_alpha_bar_form_match_diffusers_loops(sampler: str) -> None:
    """Whole 50-step loops (diffusers' "leading" timesteps), the noise drawn from one seeded generator."""
    from diffusers import DDIMScheduler, DDPMScheduler

    schedule = AlphaBarSchedule.linear()
    oracle = (DDPMScheduler if sampler == "ddpm" else DDIMScheduler)(prediction_type="v_prediction", clip_sample=False)
    oracle_alpha_bar(oracle, schedule)
    oracle.set_timesteps(50)
    start = torch.randn(16, 2, generator=gen(24), dtype=torch.float64)
    x, generator = start, gen(25)
    for k in oracle.timesteps:
        output = toy_network(x, torch.full((16,), int(k)))
        x = oracle.step(output, k, x, generator=generator, **({} if sampler == "ddpm" else {"eta": 1.0})).prev_sample
    if sampler == "ddpm":
        ours = ddpm_sample_alpha_bar(toy_network, schedule, start, "v_prediction", 50, generator=gen(25))
    else:
        ours = ddim_sample_alpha_bar(toy_network, schedule, start, "v_prediction", 50, eta=1.0, generator=gen(25))
    assert schedule.timesteps(50) == oracle.timesteps.tolist()
    torch.testing.assert_close(ours, x, atol=1e-6, rtol=0)


def mixture_2d() -> GaussianMixture:
    return GaussianMixture.isotropic(torch.tensor([[-1.0, 0.5], [1.5, -0.5]], dtype=torch.float64), 0.3,
                                     torch.tensor([1.0, 2.0], dtype=torch.float64))


def exact_network(data: GaussianMixture, schedule: AlphaBarSchedule, prediction: str):
    """The exact network of each kind at level k: x_k = √ᾱ_k x_0 + √(1-ᾱ_k) ε, E[x_0 | x_k] in closed form."""

    def network(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        alpha_bar = schedule.at(int(k[0]))
        denoised, _ = data.noised_posterior(x, torch.tensor(alpha_bar).sqrt(), torch.tensor(1 - alpha_bar).sqrt())
        return prediction_from_sample(denoised, x, alpha_bar, prediction)

    return network


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_predictions_convert_to_the_books_denoiser_and_vector_field(prediction: str) -> None:
    """ε, x_0 and v outputs give back the denoiser; the denoiser gives the book's exact marginal field and back."""
    data, x = mixture_2d(), torch.randn(30, 2, generator=gen(26), dtype=torch.float64)
    alpha_bar = 0.37
    denoised, _ = data.noised_posterior(x, torch.tensor(alpha_bar).sqrt(), torch.tensor(1 - alpha_bar).sqrt())
    output = prediction_from_sample(denoised, x, alpha_bar, prediction)
    x0_hat, eps_hat = sample_and_noise_from_prediction(output, x, alpha_bar, prediction)
    torch.testing.assert_close(x0_hat, denoised)
    torch.testing.assert_close(math.sqrt(alpha_bar) * x0_hat + math.sqrt(1 - alpha_bar) * eps_hat, x)
    for scheduler in (LinearScheduler(), CosineScheduler(), VPScheduler()):
        t = torch.linspace(0.05, 0.95, 30, dtype=torch.float64)
        path = GaussianPath(scheduler)
        book_denoised, _ = data.noised_posterior(x, scheduler.alpha(t), scheduler.beta(t))
        field = velocity_from_denoiser(book_denoised, x, scheduler, t)
        torch.testing.assert_close(field, path.marginal_vector_field(data, x, t))
        torch.testing.assert_close(denoiser_from_velocity(field, x, scheduler, t), book_denoised)


def linear_path_alpha_bar(t: torch.Tensor) -> torch.Tensor:
    """x_t = t z + (1 - t) ε is √ᾱ z + √(1-ᾱ) ε after division by n_t = √(t² + (1-t)²), with ᾱ = t²/n_t²."""
    return t**2 / (t**2 + (1 - t) ** 2)


def test_ddim_on_the_linear_path_is_the_flow_matching_euler_step() -> None:
    """DDIM (η = 0) in the ᾱ form, x̂_0-parameterised, run on the linear path's levels and states rescaled by
    n_t, reproduces the book's Euler trajectory of the exact marginal field to 1e-10 (float64)."""
    data, path = mixture_2d(), LinearPath()
    grid = time_grid(12, dtype=torch.float64)
    start = torch.randn(200, 2, generator=gen(27), dtype=torch.float64)
    euler = simulate_trajectory(VectorFieldODE(lambda x, t: path.marginal_vector_field(data, x, t)), start, grid)
    levels, scale = linear_path_alpha_bar(grid), torch.sqrt(grid**2 + (1 - grid) ** 2)
    x = start / scale[0]
    for i in range(len(grid) - 1):
        denoised, _ = data.noised_posterior(x * scale[i], grid[i], 1 - grid[i])
        x = ddim_step(denoised, x, levels[i].item(), levels[i + 1].item(), "sample")
        torch.testing.assert_close(x * scale[i + 1], euler.states[:, i + 1], atol=1e-10, rtol=0)


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddim_step_is_euler_in_the_noise_level(prediction: str) -> None:
    """With y = x/√ᾱ and σ = √((1-ᾱ)/ᾱ), one DDIM step is y' = y + (σ' - σ)(y - D(y; σ))/σ, the Euler step of the
    probability-flow ODE dy/dσ = (y - D)/σ, with D the variance-exploding denoiser; to 1e-10 in float64."""
    data, schedule = mixture_2d(), AlphaBarSchedule.cosine()
    network = exact_network(data, schedule, prediction)
    sigmas = schedule.noise_level()
    x = torch.randn(100, 2, generator=gen(28), dtype=torch.float64)
    for k, k_prev in ((999, 979), (600, 580), (100, 99), (3, -1)):
        output = network(x, torch.full((100,), k))
        stepped = ddim_step(output, x, schedule.at(k), schedule.at(k_prev), prediction)
        y, sigma = x / math.sqrt(schedule.at(k)), sigmas[k].item()
        sigma_prev = 0.0 if k_prev < 0 else sigmas[k_prev].item()
        denoised, _ = data.noised_posterior(y, torch.tensor(1.0, dtype=torch.float64), torch.tensor(sigma))
        euler = y + (sigma_prev - sigma) * (y - denoised) / sigma
        torch.testing.assert_close(stepped / math.sqrt(schedule.at(k_prev)), euler, atol=1e-10, rtol=1e-10)


def test_ddim_with_an_exact_network_follows_the_books_probability_flow() -> None:
    """Ho et al.'s schedule (T = 1000) and the book's VP path (β_min = 0.1, β_max = 20) are the same process
    to O(1/T): DDIM from the same starts ends within 0.02 of the book's Heun solution of the exact flow
    (0.009 measured)."""
    data, schedule = mixture_2d(), AlphaBarSchedule.linear()
    start = torch.randn(300, 2, generator=gen(29), dtype=torch.float64)
    ours = ddim_sample_alpha_bar(exact_network(data, schedule, "epsilon"), schedule, start)
    path = GaussianPath(VPScheduler())
    book = simulate(VectorFieldODE(lambda x, t: path.marginal_vector_field(data, x, t)), start,
                    time_grid(400, dtype=torch.float64), method="heun")
    assert (ours - book).abs().max() < 0.02


def test_ddpm_with_an_exact_network_samples_the_data() -> None:
    """Ho et al.'s sampler on their schedule (250 of the T = 1000 levels, to keep the test short), exact ε
    network: mean and covariance of 10k samples within 0.05 of the data's (about 4 standard errors)."""
    data, schedule = mixture_2d(), AlphaBarSchedule.linear()
    start = torch.randn(10_000, 2, generator=gen(30), dtype=torch.float64)
    network = exact_network(data, schedule, "epsilon")
    x = ddpm_sample_alpha_bar(network, schedule, start, sampling_steps=250, generator=gen(31))
    torch.testing.assert_close(x.mean(0), data.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), data.covariance, atol=0.05, rtol=0)


def test_alpha_bar_functions_keep_device_and_dtype_and_name_bad_arguments() -> None:
    x = torch.randn(4, 2, generator=gen(32), dtype=torch.float64)
    assert ddpm_step(x, x, 0.5, 0.7, generator=gen(33)).dtype == torch.float64
    assert standard_normal_like(x, gen(34)).dtype == torch.float64
    with pytest.raises(ValueError, match="prediction"):
        ddim_step(x, x, 0.5, 0.7, "score")
    with pytest.raises(ValueError, match="alpha_bar_prev"):
        ddim_step(x, x, 0.5, 0.4)
    with pytest.raises(ValueError, match="alpha_bar"):
        ddpm_step(x, x, 1.0, 1.0)
    with pytest.raises(ValueError, match="eta"):
        ddim_step(x, x, 0.5, 0.7, eta=-1.0)
    with pytest.raises(ValueError, match="noise"):
        ddpm_step(x, x, 0.5, 0.7, noise=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="alpha_bar must be strictly decreasing"):
        AlphaBarSchedule(torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="sampling_steps"):
        AlphaBarSchedule.linear(10).timesteps(11)
    with pytest.raises(ValueError, match="t must lie"):
        velocity_from_denoiser(x, x, LinearScheduler(), torch.ones(4, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_alpha_bar_samplers_stay_on_cuda() -> None:
    schedule, start = AlphaBarSchedule.linear(50), torch.randn(8, 2, device="cuda")
    cpu = ddpm_sample_alpha_bar(toy_network, schedule, start.cpu(), generator=gen(35))
    cuda = ddpm_sample_alpha_bar(toy_network, schedule, start, generator=gen(35))
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddim_with_eta_one_is_ddpm_with_the_posterior_variance(prediction: str) -> None:
    schedule, x = AlphaBarSchedule.linear(), torch.randn(6, 2, generator=gen(36), dtype=torch.float64)
    noise = torch.randn(6, 2, generator=gen(37), dtype=torch.float64)
    for k, k_prev in ((900, 880), (40, 39), (0, -1)):
        output = toy_network(x, torch.full((6,), k))
        a, a_prev = schedule.at(k), schedule.at(k_prev)
        torch.testing.assert_close(ddim_step(output, x, a, a_prev, prediction, eta=1.0, noise=noise),
                                   ddpm_step(output, x, a, a_prev, prediction, "posterior", noise=noise))


def test_the_chain_noises_data_by_its_closed_form() -> None:
    """x_s = x_0 + σ_q √s ε (eq-dd-forward): the same generator gives the same ε, and the draws have the law N(x_0, σ_q² s)."""
    chain, x0 = VarianceExplodingChain(sigma=2.0, steps=10), torch.tensor([[1.0, -3.0], [0.5, 2.0]])
    s = torch.tensor([0.25, 0.81])
    expected = x0 + 2.0 * s.sqrt()[:, None] * torch.randn(2, 2, generator=gen(40))
    torch.testing.assert_close(chain.noised(x0, s, generator=gen(40)), expected)
    many = chain.noised(x0[:1].expand(40_000, 2), torch.full((40_000,), 0.25), generator=gen(41))
    # Standard errors: 1/200 of σ = 1 for the mean, about 1/140 of σ² = 1 for the variance.
    torch.testing.assert_close(many.mean(0), x0[0], atol=0.02, rtol=0)
    torch.testing.assert_close(many.var(0), torch.ones(2), atol=0.03, rtol=0)
