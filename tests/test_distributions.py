"""flowdiff.distributions against SciPy, autograd and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from flowdiff.distributions import Empirical, Gaussian, GaussianMixture
from flowdiff.toy_data import TOY_DATASETS, Annulus, Checkerboard, Circles, Moons, Spiral, SwissRoll, toy_dataset



def autograd_score(log_density, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_density(x).sum(), x)
    return grad


@pytest.fixture
def gaussian() -> Gaussian:
    return Gaussian(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]]))


@pytest.fixture
def mixture() -> GaussianMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
    covs = torch.stack([torch.eye(2) * 0.3, torch.tensor([[0.5, 0.2], [0.2, 0.4]]), torch.eye(2) * 0.8])
    return GaussianMixture(means, covs, torch.tensor([0.2, 0.5, 0.3]))


@pytest.mark.usefixtures("float64")  # compares with SciPy at float64 round-off
def test_gaussian_log_density_matches_scipy(gaussian: Gaussian) -> None:
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1)) * 2
    expected = stats.multivariate_normal(gaussian.mean.numpy(), gaussian.cov.numpy()).logpdf(x.numpy())
    np.testing.assert_allclose(gaussian.log_density(x).numpy(), expected, rtol=1e-10)


def test_gaussian_score_is_gradient_of_log_density(gaussian: Gaussian) -> None:
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(gaussian.score(x), autograd_score(gaussian.log_density, x))


def test_gaussian_samples_have_its_mean_and_covariance(gaussian: Gaussian) -> None:
    n = 200_000
    x = gaussian.sample(n, torch.Generator().manual_seed(3))
    # Standard errors: sqrt(var / n) for the mean, about sqrt(2/n) * var for the covariance.
    assert torch.allclose(x.mean(0), gaussian.mean, atol=5 * math.sqrt(2.0 / n))
    assert torch.allclose(torch.cov(x.T), gaussian.cov, atol=5 * math.sqrt(2.0 / n) * 2.0)


def test_isotropic_gaussian() -> None:
    law = Gaussian.isotropic(4, std=0.5, mean=torch.ones(4))
    torch.testing.assert_close(law.cov, 0.25 * torch.eye(4))
    torch.testing.assert_close(law.score(torch.ones(1, 4)), torch.zeros(1, 4))


@pytest.mark.usefixtures("float64")  # compares with SciPy at float64 round-off
def test_mixture_log_density_matches_scipy(mixture: GaussianMixture) -> None:
    x = torch.randn(60, 2, generator=torch.Generator().manual_seed(4)) * 2
    pdf = sum(
        w.item() * stats.multivariate_normal(c.mean.numpy(), c.cov.numpy()).pdf(x.numpy())
        for w, c in zip(mixture.weights, mixture.components)
    )
    np.testing.assert_allclose(mixture.log_density(x).numpy(), np.log(pdf), rtol=1e-10)


def test_mixture_score_is_gradient_of_log_density(mixture: GaussianMixture) -> None:
    x = torch.randn(80, 2, generator=torch.Generator().manual_seed(5)) * 3
    torch.testing.assert_close(mixture.score(x), autograd_score(mixture.log_density, x))


def test_mixture_samples_match_weights_and_moments(mixture: GaussianMixture) -> None:
    n = 100_000
    x = mixture.sample(n, torch.Generator().manual_seed(6))
    labels = mixture.responsibilities(x).argmax(1)
    # Components are well separated: the nearest-component label recovers the weights
    # up to the overlap (< 1 %) and the binomial error 5 * sqrt(0.25 / n).
    freq = torch.bincount(labels, minlength=3) / n
    assert torch.allclose(freq, mixture.weights, atol=0.01 + 5 * math.sqrt(0.25 / n))
    w = mixture.weights
    means = mixture.means
    mean = w @ means
    second = sum(wk * (c.cov + torch.outer(c.mean, c.mean)) for wk, c in zip(w, mixture.components))
    cov = second - torch.outer(mean, mean)
    assert torch.allclose(x.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.06)
    torch.testing.assert_close(mixture.mean, mean)
    torch.testing.assert_close(mixture.covariance, cov)


def test_mixture_on_circle_geometry() -> None:
    mixture = GaussianMixture.on_circle(5, radius=3.0, std=0.2)
    torch.testing.assert_close(mixture.means.norm(dim=1), torch.full((5,), 3.0))
    torch.testing.assert_close(mixture.weights, torch.full((5,), 0.2))


def test_empirical_returns_rows_of_the_data_set() -> None:
    points = torch.arange(20.0).reshape(10, 2)
    draws = Empirical(points).sample(500, torch.Generator().manual_seed(7))
    assert set(map(tuple, draws.tolist())) == set(map(tuple, points.tolist()))


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_sets_are_seeded_batches(name: str) -> None:
    data = toy_dataset(name)
    first = data.sample(500, torch.Generator().manual_seed(8))
    again = data.sample(500, torch.Generator().manual_seed(8))
    other = data.sample(500, torch.Generator().manual_seed(9))
    assert first.shape == (500, 2)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.abs().max() < 3.5


def test_moons_lie_on_two_unit_half_circles() -> None:
    x = Moons(noise=0.0).sample(2000, torch.Generator().manual_seed(10)) / 2 + torch.tensor([0.5, 0.25])
    upper = torch.abs(x.norm(dim=1) - 1) < 1e-5
    lower = torch.abs((x - torch.tensor([1.0, 0.5])).norm(dim=1) - 1) < 1e-5
    assert torch.all(upper | lower)
    assert torch.all(x[upper, 1] >= -1e-6) and torch.all(x[lower & ~upper, 1] <= 0.5 + 1e-6)
    assert 0.45 < upper.double().mean() < 0.55


def test_circles_radii() -> None:
    radius = Circles(noise=0.0, factor=0.3).sample(2000, torch.Generator().manual_seed(11)).norm(dim=1)
    on_outer = torch.isclose(radius, torch.tensor(2.0))
    assert torch.all(on_outer | torch.isclose(radius, torch.tensor(0.6)))
    assert 0.45 < on_outer.double().mean() < 0.55


def test_annulus_is_uniform_in_area() -> None:
    inner, outer = 1.0, 2.0
    radius = Annulus(inner, outer).sample(40_000, torch.Generator().manual_seed(12)).norm(dim=1)
    assert radius.min() >= inner - 1e-6 and radius.max() <= outer + 1e-6
    # Half the area lies inside radius sqrt((inner^2 + outer^2) / 2).
    median = math.sqrt((inner**2 + outer**2) / 2)
    assert abs((radius < median).double().mean().item() - 0.5) < 5 * math.sqrt(0.25 / 40_000)


def test_checkerboard_uses_only_dark_squares() -> None:
    x = Checkerboard(squares=4).sample(5000, torch.Generator().manual_seed(13))
    cell = torch.floor(x + 2.0).long()
    assert torch.all((cell[:, 0] + cell[:, 1]) % 2 == 0)
    assert len(set(map(tuple, cell.tolist()))) == 8


def test_spiral_radius_grows_with_angle() -> None:
    spiral = Spiral(noise=0.0, turns=1.0)
    x = spiral.sample(3000, torch.Generator().manual_seed(14))
    radius = x.norm(dim=1)
    angle = torch.atan2(x[:, 1], x[:, 0]) % (2 * math.pi)
    # With one turn, r = 2.5 * angle / (2 pi) up to the wrap-around at angle 0.
    torch.testing.assert_close(torch.remainder(radius / 2.5 * 2 * math.pi, 2 * math.pi), angle, atol=1e-4, rtol=0)


def test_swiss_roll_radius_equals_angle_over_five() -> None:
    x = SwissRoll(noise=0.0).sample(2000, torch.Generator().manual_seed(15))
    s = 5 * x.norm(dim=1)
    assert s.min() >= 1.5 * math.pi - 1e-4 and s.max() <= 4.5 * math.pi + 1e-4
    torch.testing.assert_close(torch.cos(s) * s / 5, x[:, 0], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: Gaussian(torch.zeros(2, 1), torch.eye(2)), "mean"),
        (lambda: Gaussian(torch.zeros(2), torch.eye(3)), "cov"),
        (lambda: Gaussian(torch.zeros(2), -torch.eye(2)), "cov"),
        (lambda: Gaussian.isotropic(2, std=-1.0), "std"),
        (lambda: Gaussian.isotropic(0), "dim"),
        (lambda: GaussianMixture(torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2), torch.tensor([1.0, -1.0])), "weights"),
        (lambda: GaussianMixture(torch.zeros(2, 2), torch.eye(2)), "covs"),
        (lambda: GaussianMixture.on_circle(3, radius=0.0, std=1.0), "radius"),
        (lambda: Gaussian.isotropic(2).sample(-5), r"^n must be >= 1"),
        (lambda: Gaussian.isotropic(2).log_density(torch.zeros(4, 3)), r"^x must have 2 columns"),
        (lambda: Gaussian.isotropic(2).score(torch.zeros(4)), r"^x must have shape \(n, d\)"),
        (lambda: Moons(noise=-0.1), "noise"),
        (lambda: Annulus(inner=2.0, outer=1.0), "outer"),
        (lambda: Checkerboard(squares=1), "squares"),
        (lambda: toy_dataset("banana"), "name"),
        (lambda: Empirical(torch.zeros(3)), "points"),
    ],
)
def test_bad_input_names_the_argument(build, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        build()


def test_mixture_labels_name_the_component_each_point_came_from(mixture: GaussianMixture) -> None:
    x, labels = mixture.sample_with_labels(30_000, torch.Generator().manual_seed(16))
    assert x.shape == (30_000, 2) and labels.shape == (30_000,)
    for k, component in enumerate(mixture.components):
        chosen = x[labels == k]
        assert torch.allclose(chosen.mean(0), component.mean, atol=5 * 0.9 / math.sqrt(len(chosen)))
    torch.testing.assert_close(mixture.sample(100, torch.Generator().manual_seed(17)),
                               mixture.sample_with_labels(100, torch.Generator().manual_seed(17))[0])
