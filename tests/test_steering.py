"""flowdiff.steering: the denoised estimate against the Gaussian posterior mean, and steering that is exact for Gaussian data and a linear log-reward."""

from __future__ import annotations

import pytest
import torch

from flowdiff.distributions import GaussianMixture
from flowdiff.dynamics import VectorFieldODE
from flowdiff.paths import CosineScheduler, GaussianPath, LinearPath
from flowdiff.solvers import simulate, time_grid
from flowdiff.steering import GradientSteering, denoised_estimate

MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[0.5, 0.2], [0.2, 0.3]])
DIRECTION = torch.tensor([1.5, -1.0])


def gaussian(mean: torch.Tensor = MEAN) -> GaussianMixture:
    return GaussianMixture(mean[None], COV[None])


@pytest.mark.parametrize("path", [LinearPath(), GaussianPath(CosineScheduler())], ids=["linear", "cosine"])
def test_denoised_estimate_of_the_exact_field_is_the_posterior_mean(path: GaussianPath) -> None:
    """For z ~ N(μ, Σ) and x = α z + β ε: E[z | x] = μ + α Σ (α² Σ + β² I)⁻¹ (x − α μ)."""
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)) * 2
    for time in (0.2, 0.5, 0.9):
        t = torch.full((6,), time)
        alpha, beta = path.scheduler.alpha(t[:1]), path.scheduler.beta(t[:1])
        gain = alpha * COV @ torch.linalg.inv(alpha**2 * COV + beta**2 * torch.eye(2))
        expected = MEAN + (x - alpha * MEAN) @ gain.T
        velocity = path.marginal_vector_field(gaussian(), x, t)
        torch.testing.assert_close(denoised_estimate(path, velocity, x, t), expected)


def test_linear_path_estimate_is_one_euler_step_to_the_end() -> None:
    x, u, t = torch.randn(4, 3), torch.randn(4, 3), torch.rand(4)
    torch.testing.assert_close(denoised_estimate(LinearPath(), u, x, t), x + (1 - t)[:, None] * u)


def exact_field(path: GaussianPath):
    return lambda x, t: path.marginal_vector_field(gaussian(), x, t)


def test_strength_zero_is_the_unsteered_flow() -> None:
    path = LinearPath()
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    steered = GradientSteering(exact_field(path), path, lambda z: z @ DIRECTION, 0.0)
    torch.testing.assert_close(
        simulate(steered, x0, time_grid(20)), simulate(VectorFieldODE(exact_field(path)), x0, time_grid(20))
    )


def test_before_start_the_field_is_not_steered() -> None:
    path = LinearPath()
    x, early, late = torch.randn(5, 2), torch.full((5,), 0.1), torch.full((5,), 0.5)
    steered = GradientSteering(exact_field(path), path, lambda z: z @ DIRECTION, 2.0, start=0.3)
    torch.testing.assert_close(steered.drift(x, early), exact_field(path)(x, early))
    assert (steered.drift(x, late) - exact_field(path)(x, late)).abs().max() > 0.1


def test_steering_gaussian_data_with_a_linear_reward_samples_the_tilted_law() -> None:
    """p(z) e^{a·z} with p = N(μ, Σ) is N(μ + Σa, Σ). Started from the tilted marginal at t = 0.05, the
    steered exact field must carry it to the tilted law; Monte Carlo with 20,000 samples (standard error ≈ 0.005)."""
    path = LinearPath()
    tilted_mean = MEAN + COV @ DIRECTION
    start = path.marginal(gaussian(tilted_mean), 0.05).sample(20_000, torch.Generator().manual_seed(2))
    steered = GradientSteering(exact_field(path), path, lambda z: z @ DIRECTION, 1.0, start=0.05)
    samples = simulate(steered, start, torch.linspace(0.05, 1.0, 101), method="heun")
    torch.testing.assert_close(samples.mean(0), tilted_mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), COV, atol=0.02, rtol=0)
    # Without the network's Jacobian the same strength overshoots the tilted mean.
    cheap = GradientSteering(exact_field(path), path, lambda z: z @ DIRECTION, 1.0, start=0.05, through_model=False)
    overshoot = simulate(cheap, start, torch.linspace(0.05, 1.0, 101), method="heun").mean(0)
    assert (overshoot - MEAN).norm() > 1.5 * (tilted_mean - MEAN).norm()


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: GradientSteering(exact_field(LinearPath()), LinearPath(), lambda z: z.sum(1), -1.0), "strength"),
        (lambda: GradientSteering(exact_field(LinearPath()), LinearPath(), lambda z: z.sum(1), 1.0, start=0.0), "start"),
        (lambda: GradientSteering(exact_field(LinearPath()), "linear", lambda z: z.sum(1), 1.0), "path"),
        (lambda: GradientSteering(exact_field(LinearPath()), LinearPath(), 3.0, 1.0), "log_reward"),
        (lambda: GradientSteering(None, LinearPath(), lambda z: z.sum(1), 1.0), "vector_field"),
        (lambda: GradientSteering(exact_field(LinearPath()), LinearPath(), lambda z: z, 1.0).drift(torch.zeros(3, 2), torch.full((3,), 0.5)), "log_reward"),
        (lambda: denoised_estimate(LinearPath(), torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3)), "velocity"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()
