"""flowdiff.losses, flowdiff.models and flowdiff.training: the conditional losses have the
gradients of the marginal ones, their minimisers are posterior means, and a trained MLP
matches a marginal vector field known in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flowdiff.distributions import Gaussian, GaussianMixture
from flowdiff.losses import conditional_flow_matching_loss, denoising_score_matching_loss, flow_matching_loss
from flowdiff.models import FourierTimeEmbedding, MLPVectorField
from flowdiff.paths import CosineScheduler, GaussianPath, LinearPath
from flowdiff.toy_data import Moons
from flowdiff.training import TrainingHistory, fit_flow_matching, train


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class AffineField(nn.Module):
    """u(x, t) = A x + b + c t: small enough for exact gradient comparisons."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(2, 2)
        self.time = nn.Parameter(torch.randn(2))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + t[:, None] * self.time


def gradient(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])


@pytest.mark.parametrize("scheduler", [None, CosineScheduler()], ids=["linear", "cosine"])
def test_conditional_flow_matching_has_the_gradient_of_flow_matching(scheduler) -> None:
    """Theorem: grad L_CFM = grad L_FM. Same (z, eps, t) for both; 400k samples, Monte Carlo within 3 %."""
    data = GaussianMixture.isotropic(torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), 0.5)
    path = LinearPath() if scheduler is None else GaussianPath(scheduler)
    model, n = AffineField(), 400_000
    z, eps = data.sample(n, gen(1)), torch.randn(n, 2, generator=gen(2))
    t = torch.rand(n, generator=gen(3)) * 0.98
    x = path.sample(z, t, noise=eps)
    marginal = gradient(model, flow_matching_loss(model, lambda y, s: path.marginal_vector_field(data, y, s), x, t))
    conditional = gradient(model, conditional_flow_matching_loss(model, path, z, x0=eps, t=t))
    assert torch.linalg.norm(conditional - marginal) < 0.03 * torch.linalg.norm(marginal)
    # The comparison can tell fields apart: the field of slightly different data has another gradient.
    other = GaussianMixture.isotropic(torch.tensor([[-2.0, 0.5], [2.0, 1.0]]), 0.5)
    wrong = gradient(model, flow_matching_loss(model, lambda y, s: path.marginal_vector_field(other, y, s), x, t))
    assert torch.linalg.norm(wrong - marginal) > 0.1 * torch.linalg.norm(marginal)


def test_denoising_score_matching_is_minimised_by_the_posterior_mean_of_the_noise() -> None:
    """L(eps* + delta) - L(eps*) = |delta|^2 / d when eps* = E[eps | x] = -beta grad log p_t (Tweedie)."""
    data, path = Gaussian.isotropic(2, 0.7, torch.tensor([1.0, -1.0])), GaussianPath(CosineScheduler())
    mixture = GaussianMixture(data.mean[None], data.cov[None])
    delta = torch.tensor([0.3, -0.2])

    def best(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -path.scheduler.beta(t)[:, None] * path.marginal_score(mixture, x, t)

    n = 400_000
    z, t = data.sample(n, gen(4)), torch.rand(n, generator=gen(5))
    at_best = denoising_score_matching_loss(best, path, z, t=t, generator=gen(6))
    shifted = denoising_score_matching_loss(lambda x, s: best(x, s) + delta, path, z, t=t, generator=gen(6))
    assert (shifted - at_best).item() == pytest.approx(delta.pow(2).mean().item(), rel=0.05)
    score_form = denoising_score_matching_loss(lambda x, s: path.marginal_score(mixture, x, s), path, z,
                                               t=t * 0.99, generator=gen(6), parameterization="score")
    noise_form = denoising_score_matching_loss(best, path, z, t=t * 0.99, generator=gen(6))
    torch.testing.assert_close(score_form, noise_form)


def test_time_embedding_and_mlp_shapes() -> None:
    embedding = FourierTimeEmbedding(16)
    features = embedding(torch.rand(5))
    assert features.shape == (5, 16)
    torch.testing.assert_close(features[:, :8] ** 2 + features[:, 8:] ** 2, torch.ones(5, 8))
    model = MLPVectorField(3, hidden=32, layers=3)
    assert model(torch.randn(7, 3), torch.rand(7)).shape == (7, 3)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 3


def test_training_is_reproducible_and_reduces_the_loss() -> None:
    def loss_fn(model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        x = torch.randn(64, 2, generator=generator)
        return ((model(x, torch.zeros(64)) - torch.tensor([1.0, -2.0])) ** 2).mean()

    histories = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MLPVectorField(2, hidden=16, layers=2)
        histories.append(train(model, loss_fn, steps=300, lr=1e-2, seed=3))
    assert isinstance(histories[0], TrainingHistory) and len(histories[0].losses) == 300
    assert histories[0].losses == histories[1].losses
    assert histories[0].losses[-1] < 0.01 * histories[0].losses[0]
    assert len(histories[0].smoothed(50)) == 251


def test_a_diverged_run_restores_the_model() -> None:
    model = MLPVectorField(2, hidden=8, layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def exploding(net: nn.Module, generator: torch.Generator) -> torch.Tensor:
        calls.append(1)
        loss = net(torch.ones(4, 2), torch.zeros(4)).pow(2).mean()
        return loss if len(calls) < 5 else loss * float("nan")

    with pytest.raises(FloatingPointError, match="step 4"):
        train(model, exploding, steps=10)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_flow_matching_learns_the_closed_form_marginal_field() -> None:
    """An MLP trained by CFM on Gaussian data matches the exact field within 10 % (relative L2, x ~ p_t, t <= 0.9)."""
    mean, cov = torch.tensor([1.0, -0.5]), torch.tensor([[0.5, 0.2], [0.2, 0.3]])
    data = Gaussian(mean, cov)
    path = LinearPath()
    model, history = fit_flow_matching(data, steps=1500, batch_size=256, hidden=64, layers=3, seed=0)
    mixture = GaussianMixture(mean[None], cov[None])
    n = 4000
    t = torch.rand(n, generator=gen(7)) * 0.9
    x = path.sample(data.sample(n, gen(8)), t, generator=gen(9))
    with torch.no_grad():
        learned = model(x, t)
    exact = path.marginal_vector_field(mixture, x, t)
    relative = torch.linalg.norm(learned - exact) / torch.linalg.norm(exact)
    assert relative < 0.1, f"relative L2 error {relative:.3f}"
    assert history.losses[-1] < history.losses[0]


def test_bad_input_names_the_argument() -> None:
    model, path, z = MLPVectorField(2, hidden=8, layers=2), LinearPath(), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="x0 must have the shape"):
        conditional_flow_matching_loss(model, path, z, x0=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="path must be"):
        conditional_flow_matching_loss(model, "linear", z)
    with pytest.raises(ValueError, match="t must have shape"):
        denoising_score_matching_loss(model, path, z, t=torch.zeros(2))
    with pytest.raises(ValueError, match="parameterization"):
        denoising_score_matching_loss(model, path, z, parameterization="velocity")
    with pytest.raises(ValueError, match="t must have shape"):
        model(z, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="features must be even"):
        FourierTimeEmbedding(7)
    with pytest.raises(ValueError, match="layers"):
        MLPVectorField(2, layers=1)
    with pytest.raises(ValueError, match="steps"):
        train(model, lambda m, g: m(z, torch.zeros(4)).sum(), steps=0)
    with pytest.raises(ValueError, match="model"):
        train(lambda x: x, lambda m, g: torch.zeros(()), steps=1)
    with pytest.raises(ValueError, match="source"):
        fit_flow_matching(Moons(), source=Gaussian.isotropic(3))
