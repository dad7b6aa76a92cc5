"""flowdiff.losses, flowdiff.models and flowdiff.training: the conditional losses have the
gradients of the marginal ones, their minimisers are posterior means, and a trained MLP
matches a marginal vector field known in closed form."""

from __future__ import annotations

import math

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


MEAN, STD = torch.tensor([1.0, -1.0]), 0.7
PERTURBATION = torch.tensor([[0.5, 0.2], [-0.1, 0.3]])  # trace 0.8: correlated with the noise inside x


def cosine_coefficients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha_t = sin(pi t / 2), beta_t = cos(pi t / 2), written out here, independent of flowdiff.paths."""
    return torch.sin(0.5 * math.pi * t)[:, None], torch.cos(0.5 * math.pi * t)[:, None]


def exact_noise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[eps | x_t = x] for z ~ N(m, s^2 I): x ~ N(alpha m, (alpha^2 s^2 + beta^2) I), so it is beta (x - alpha m) / v."""
    alpha, beta = cosine_coefficients(t)
    return beta * (x - alpha * MEAN) / (alpha**2 * STD**2 + beta**2)


def exact_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """grad log p_t(x) = -(x - alpha m) / (alpha^2 s^2 + beta^2) for the same Gaussian data."""
    alpha, beta = cosine_coefficients(t)
    return -(x - alpha * MEAN) / (alpha**2 * STD**2 + beta**2)


def perturbation(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """delta(x, t) = A x + t (1, -1): depends on x, so only the true conditional mean leaves no cross term."""
    return x @ PERTURBATION.T + t[:, None] * torch.tensor([1.0, -1.0])


class Recorder:
    """Wraps a predictor and keeps the inputs (x, t) the loss fed it."""

    def __init__(self, predictor) -> None:
        self.predictor, self.inputs = predictor, []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.inputs.append((x, t))
        return self.predictor(x, t)


def test_denoising_score_matching_is_minimised_by_the_posterior_mean_of_the_noise() -> None:
    """Gaussian data N(m, s^2 I) on the cosine path, everything in closed form (written out in this file):

    - the minimum of mean |eps_hat - eps|^2 / d is E[Var(eps | x)] = mean_t alpha^2 s^2 / (alpha^2 s^2 + beta^2);
    - a perturbation delta(x, t) raises it by exactly mean |delta|^2 / d (the cross term 2 E[(eps* - eps) . delta]
      vanishes only for eps* = E[eps | x, t]; a zero-mean predictor such as eps_hat = 0 leaves 2 beta tr A).

    400,000 samples: the loss's relative Monte Carlo error is about 0.2 %, the cross term's about 1e-3 against
    a rise of about 0.3, hence 1 % and 3 %."""
    data, path = Gaussian.isotropic(2, STD, MEAN), GaussianPath(CosineScheduler())
    n = 400_000
    # Times crowd towards the noise end (t = u^2), so that a loss reading the path at 1 - t shows.
    z, t = data.sample(n, gen(4)), torch.rand(n, generator=gen(5)) ** 2
    alpha, beta = cosine_coefficients(t)
    minimum = (alpha**2 * STD**2 / (alpha**2 * STD**2 + beta**2)).mean().item()
    at_best = denoising_score_matching_loss(exact_noise, path, z, t=t, generator=gen(6)).item()
    assert at_best == pytest.approx(minimum, rel=0.01)
    perturbed = Recorder(lambda x, s: exact_noise(x, s) + perturbation(x, s))
    shifted = denoising_score_matching_loss(perturbed, path, z, t=t, generator=gen(6)).item()
    ((x, times),) = perturbed.inputs
    assert torch.equal(times, t)
    rise = perturbation(x, times).pow(2).mean().item()
    assert shifted - at_best == pytest.approx(rise, rel=0.03)

    # The score form weights |s - grad log p_t(x | z)|^2 by beta_t^2: same minimum, a rise of mean beta^2 |delta|^2 / d.
    t = t * 0.99  # the score form needs beta_t > 0
    alpha, beta = cosine_coefficients(t)
    minimum = (alpha**2 * STD**2 / (alpha**2 * STD**2 + beta**2)).mean().item()
    at_best = denoising_score_matching_loss(exact_score, path, z, t=t, generator=gen(6), parameterization="score").item()
    assert at_best == pytest.approx(minimum, rel=0.01)
    perturbed = Recorder(lambda x, s: exact_score(x, s) + perturbation(x, s))
    shifted = denoising_score_matching_loss(perturbed, path, z, t=t, generator=gen(6), parameterization="score").item()
    ((x, times),) = perturbed.inputs
    assert torch.equal(times, t)
    rise = (cosine_coefficients(times)[1] ** 2 * perturbation(x, times).pow(2)).mean().item()
    assert shifted - at_best == pytest.approx(rise, rel=0.03)


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
