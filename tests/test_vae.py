"""flowdiff.vae: the KL in closed form against torch.distributions, the ELBO against the exact log-likelihood of a linear Gaussian model."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from flowdiff.vae import VAE, gaussian_elbo, gaussian_kl, reparameterise, vae_loss


def test_gaussian_kl_matches_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(0)
    mean, log_var = torch.randn(7, 5, generator=generator), torch.randn(7, 5, generator=generator)
    reference = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(torch.zeros(5), torch.ones(5))).sum(dim=1)
    torch.testing.assert_close(gaussian_kl(mean, log_var), reference)
    assert torch.all(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)) == 0)


def test_reparameterised_draws_have_the_right_moments_and_gradients() -> None:
    mean = torch.tensor([[1.0, -2.0]], requires_grad=True)
    log_var = torch.tensor([[0.5, -1.0]], requires_grad=True)
    draws = reparameterise(mean.expand(200_000, 2), log_var.expand(200_000, 2), torch.Generator().manual_seed(1))
    # Monte Carlo with 200,000 draws: standard errors below 0.004.
    torch.testing.assert_close(draws.mean(0), mean[0].detach(), atol=0.01, rtol=0)
    torch.testing.assert_close(draws.var(0), log_var[0].detach().exp(), atol=0.02, rtol=0)
    draws.sum().backward()
    torch.testing.assert_close(mean.grad, torch.full((1, 2), 200_000.0))
    assert log_var.grad is not None and torch.all(log_var.grad.abs() > 0)


def test_the_elbo_of_the_exact_posterior_is_the_log_likelihood() -> None:
    """Linear decoder x = W z + b + s ε with orthogonal columns, so the exact posterior is a diagonal Gaussian."""
    generator = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(6, 3, generator=generator))
    weights = q * torch.tensor([2.0, 1.0, 0.5])
    bias, s = torch.randn(6, generator=generator), 0.7
    x = torch.randn(4, 6, generator=generator) * 2
    precision = 1 + (weights**2).sum(dim=0) / s**2  # W^T W is diagonal
    post_var = 1 / precision
    post_mean = ((x - bias) @ weights) / s**2 * post_var
    log_px = MultivariateNormal(bias, weights @ weights.T + s**2 * torch.eye(6)).log_prob(x)
    draws = 20_000
    z = reparameterise(post_mean.repeat(draws, 1), post_var.log().expand(4, 3).repeat(draws, 1), generator)
    decoded = z @ weights.T + bias
    elbo = gaussian_elbo(x.repeat(draws, 1), decoded, s, post_mean.repeat(draws, 1), post_var.log().expand(4, 3).repeat(draws, 1))
    estimate = elbo.reshape(draws, 4).mean(0)
    torch.testing.assert_close(estimate, log_px, atol=0.05, rtol=0)  # MC standard error ≈ 0.01
    # Any other encoder gives a strictly lower bound (the gap is KL(q ‖ posterior)).
    shifted = (post_mean + 0.5).repeat(draws, 1)
    z_shifted = reparameterise(shifted, post_var.log().expand(4, 3).repeat(draws, 1), generator)
    worse = gaussian_elbo(x.repeat(draws, 1), z_shifted @ weights.T + bias, s, shifted, post_var.log().expand(4, 3).repeat(draws, 1))
    assert torch.all(worse.reshape(draws, 4).mean(0) < log_px - 0.1)


def test_the_beta_loss_with_beta_two_s_squared_is_the_scaled_negative_elbo() -> None:
    torch.manual_seed(0)
    vae, s = VAE(latent_dim=4, channels=(4, 8)), 0.3
    images = torch.rand(5, 1, 28, 28) * 2 - 1
    loss = vae_loss(vae, images, 2 * s**2, torch.Generator().manual_seed(3))
    mean, log_var = vae.encode(images)
    decoded = vae.decode(reparameterise(mean, log_var, torch.Generator().manual_seed(3)))
    elbo = gaussian_elbo(images, decoded, s, mean, log_var).mean()
    constant = 784 * math.log(s * math.sqrt(2 * math.pi))
    torch.testing.assert_close(loss.loss, -2 * s**2 * (elbo + constant))
    torch.testing.assert_close(loss.loss, loss.reconstruction + 2 * s**2 * loss.kl)


def test_vae_shapes_and_range() -> None:
    vae = VAE(latent_dim=8)
    mean, log_var = vae.encode(torch.zeros(3, 1, 28, 28))
    assert mean.shape == log_var.shape == (3, 8)
    out = vae.decode(torch.randn(3, 8) * 10)
    assert out.shape == (3, 1, 28, 28) and out.abs().max() <= 1
    assert vae(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: VAE(latent_dim=0), "latent_dim"),
        (lambda: VAE(channels=(8,)), "channels"),
        (lambda: VAE().encode(torch.zeros(2, 28, 28)), "images"),
        (lambda: VAE(latent_dim=4).decode(torch.zeros(2, 5)), "latents"),
        (lambda: gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4)), "log_var"),
        (lambda: gaussian_elbo(torch.zeros(2, 3), torch.zeros(2, 3), 0.0, torch.zeros(2, 1), torch.zeros(2, 1)), "decoder_std"),
        (lambda: gaussian_elbo(torch.zeros(2, 3), torch.zeros(2, 4), 1.0, torch.zeros(2, 1), torch.zeros(2, 1)), "decoded"),
        (lambda: vae_loss(VAE(latent_dim=2), torch.zeros(2, 1, 28, 28), -1.0), "kl_weight"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()
