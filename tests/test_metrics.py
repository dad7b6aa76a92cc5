"""flowdiff.metrics: sliced and exact Wasserstein distances and MMD against closed forms,
SciPy's assignment solver and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from flowdiff.distributions import Gaussian, GaussianMixture
from flowdiff.dynamics import VectorFieldODE
from flowdiff.metrics import (
    frechet_distance,
    gaussian_frechet_distance,
    judge_samples,
    mmd,
    sliced_wasserstein,
    wasserstein,
)
from flowdiff.paths import LinearPath
from flowdiff.solvers import simulate, time_grid
from flowdiff.sweeps import sampler_sweep


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sliced_wasserstein_of_two_gaussians_in_closed_form() -> None:
    """SW2^2 = |m1 - m2|^2 / d + (s1 - s2)^2 for isotropic Gaussians; 20k points, 1000 directions, within 3 % (the direction average alone has a 1.2 % standard error)."""
    d, n = 3, 20_000
    m = torch.tensor([1.0, -2.0, 0.5])
    x = Gaussian.isotropic(d, 1.0).sample(n, gen(1))
    y = Gaussian.isotropic(d, 0.5, m).sample(n, gen(2))
    expected = math.sqrt(m.pow(2).sum().item() / d + 0.25)
    assert sliced_wasserstein(x, y, projections=1000, generator=gen(3)) == pytest.approx(expected, rel=0.03)


def test_sliced_wasserstein_in_one_dimension_is_the_exact_distance() -> None:
    x, y = torch.randn(300, 1, generator=gen(4)), 2 + 0.5 * torch.randn(300, 1, generator=gen(5))
    assert sliced_wasserstein(x, y, projections=4, generator=gen(6)) == pytest.approx(wasserstein(x, y), rel=1e-9)
    unequal = sliced_wasserstein(x, y[:200], projections=4, generator=gen(6))
    assert unequal == pytest.approx(wasserstein(x, y[:200]), rel=0.05)
    assert sliced_wasserstein(x, x, generator=gen(7)) == 0.0


@pytest.mark.usefixtures("float64")  # compares with SciPy's assignment at float64 round-off
def test_exact_wasserstein_matches_an_optimal_assignment() -> None:
    """Equal-size uniform samples: optimal transport is a permutation (Birkhoff), found by SciPy."""
    x, y = torch.randn(200, 2, generator=gen(8)), torch.rand(200, 2, generator=gen(9)) * 3
    cost = torch.cdist(x, y).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    assert wasserstein(x, y) == pytest.approx(math.sqrt(cost[rows, cols].mean()), rel=1e-9)


def test_mmd_of_two_gaussians_in_closed_form() -> None:
    r"""E k(X, X') = (h^2 / (h^2 + 2 s^2))^{d/2} for X, X' ~ N(m, s^2 I), and the cross term
    (h^2 / (h^2 + s1^2 + s2^2))^{d/2} exp(-|m1 - m2|^2 / (2 (h^2 + s1^2 + s2^2))).

    With 3000 points each the estimate's standard deviation is about 0.0095 (measured over
    eight seeds), so the tolerance is 0.035, under 4 standard deviations."""
    d, h, s1, s2 = 2, 1.0, 1.0, 0.5
    m = torch.tensor([1.0, 0.5])
    x = Gaussian.isotropic(d, s1).sample(3000, gen(10))
    y = Gaussian.isotropic(d, s2, m).sample(3000, gen(11))

    def term(a: float, b: float, shift: float) -> float:
        v = h**2 + a**2 + b**2
        return (h**2 / v) ** (d / 2) * math.exp(-shift / (2 * v))

    expected = term(s1, s1, 0) + term(s2, s2, 0) - 2 * term(s1, s2, m.pow(2).sum().item())
    assert mmd(x, y, bandwidth=h) == pytest.approx(expected, abs=0.035)
    same = Gaussian.isotropic(d, s1).sample(3000, gen(12))
    assert abs(mmd(x, same, bandwidth=h)) < 0.005


def numpy_mmd(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """The unbiased MMD^2 estimate written out with NumPy: k(a, b) = exp(-|a - b|^2 / (2 h^2)), no diagonal."""

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * bandwidth**2))

    n, m = len(x), len(y)
    within_x = (kernel(x, x).sum() - n) / (n * (n - 1))
    within_y = (kernel(y, y).sum() - m) / (m * (m - 1))
    return float(within_x + within_y - 2 * kernel(x, y).mean())


@pytest.mark.parametrize("bandwidth", [0.5, 1.0, 3.0])
def test_mmd_matches_a_numpy_reference(bandwidth: float) -> None:
    """Samples of different sizes, so that swapping n and m shows; mmd works in float64, hence 1e-9.
    A kernel with h^2 in place of 2 h^2 moves the estimate by more than 0.01 here."""
    x = torch.randn(200, 3, generator=gen(14))
    y = 0.8 * torch.randn(150, 3, generator=gen(15)) + torch.tensor([0.5, 0.0, -0.5])
    expected = numpy_mmd(x.double().numpy(), y.double().numpy(), bandwidth)
    assert mmd(x, y, bandwidth=bandwidth) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert abs(expected - numpy_mmd(x.double().numpy(), y.double().numpy(), bandwidth / math.sqrt(2))) > 0.01


def test_sampler_sweep_measures_the_discretisation_error() -> None:
    """On the exact marginal field of a mixture, more steps help and Heun beats Euler at equal evaluations.

    The reference is the sweep's own source points carried by a fine Heun solve, so the distance measures the
    discretisation error alone (against fresh data, sampling noise of 3000 points would swamp it)."""
    data = GaussianMixture.isotropic(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.3)
    path = LinearPath()
    ode = VectorFieldODE(lambda x, t: path.marginal_vector_field(data, x, t))
    source = Gaussian.isotropic(2)
    reference = simulate(ode, source.sample(3000, torch.Generator().manual_seed(0)), time_grid(400), "heun")
    rows = sampler_sweep(ode, source, reference, steps=(2, 8, 16, 32), n=3000, seed=0)
    table = {(r.method, r.steps): r for r in rows}
    assert len(rows) == 8 and table[("heun", 8)].evaluations == 16
    assert table[("euler", 32)].sliced_w2 < table[("euler", 2)].sliced_w2
    assert table[("heun", 8)].sliced_w2 < table[("euler", 16)].sliced_w2


def test_bad_input_names_the_argument() -> None:
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="y must have 2 columns"):
        sliced_wasserstein(x, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein(x, x, projections=0)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="max_points"):
        wasserstein(torch.zeros(20, 2), torch.zeros(20, 2), max_points=10)
    with pytest.raises(ValueError, match="ode"):
        sampler_sweep(lambda x, t: x, Gaussian.isotropic(2), x)
    with pytest.raises(ValueError, match="methods"):
        sampler_sweep(VectorFieldODE(lambda x, t: x), Gaussian.isotropic(2), x, methods=("rk4",))
    assert np.isfinite(mmd(torch.randn(4, 2, generator=gen(14)), torch.randn(4, 2, generator=gen(15))))


# --- Fréchet distance and the classifier's verdict (Chapter 10) ------------------------------

def random_covariance(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=gen(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_gaussian_frechet_distance_equals_pot_bures_wasserstein() -> None:
    """d_F is the 2-Wasserstein distance between Gaussians; POT computes it independently."""
    import ot.gaussian

    d = 6
    m1, m2 = torch.randn(d, generator=gen(1), dtype=torch.float64), torch.randn(d, generator=gen(2), dtype=torch.float64)
    c1, c2 = random_covariance(d, 3), random_covariance(d, 4)
    expected = float(ot.gaussian.bures_wasserstein_distance(m1.numpy(), m2.numpy(), c1.numpy(), c2.numpy()))
    assert gaussian_frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-8)


@pytest.mark.usefixtures("float64")  # compares with a closed form at float64 round-off
def test_gaussian_frechet_distance_of_commuting_covariances() -> None:
    """Diagonal covariances: d_F² = |Δμ|² + Σ (σ_i - τ_i)²."""
    s, r = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([2.0, 1.0, 0.5])
    m = torch.tensor([1.0, 0.0, -1.0])
    expected = math.sqrt(2.0 + ((s.sqrt() - r.sqrt()) ** 2).sum().item())
    assert gaussian_frechet_distance(m, torch.diag(s), torch.zeros(3), torch.diag(r)) == pytest.approx(expected, rel=1e-10)


def test_gaussian_frechet_distance_with_singular_covariances() -> None:
    """Rank-deficient covariances (dead features, few samples) give the exact answer without warnings:
    Σ_x = diag(1, 0), Σ_y = diag(4, 0) share a null direction, so d_F² = |Δμ|² + (1 - 2)²."""
    m = torch.tensor([0.0, 3.0])
    distance = gaussian_frechet_distance(m, torch.diag(torch.tensor([1.0, 0.0])), torch.zeros(2), torch.diag(torch.tensor([4.0, 0.0])))
    assert distance == pytest.approx(math.sqrt(9.0 + 1.0), rel=1e-12)


def test_frechet_distance_of_samples_converges_to_the_gaussian_one() -> None:
    """From 200k samples the fitted moments give d_F within 2 % of its value for the true laws."""
    mean = torch.tensor([0.5, -1.0, 0.0, 2.0])
    x = Gaussian.isotropic(4, 1.0).sample(200_000, gen(5))
    y = Gaussian.isotropic(4, 0.5, mean).sample(200_000, gen(6))
    expected = math.sqrt(mean.pow(2).sum().item() + 4 * 0.5**2)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-5)


class OracleClassifier(torch.nn.Module):
    """Classifies an image by its mean pixel: the label is round(mean * 10) clipped to 0..9."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], dim=1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        label = (features[:, 0] * 10).round().clamp(0, 9).long()
        return torch.nn.functional.one_hot(label, 10).double()


def test_judge_samples_counts_the_labels_the_classifier_gives() -> None:
    labels = torch.arange(10).repeat(3)
    images = (labels.double() / 10)[:, None, None, None] + 0.01 * torch.randn(30, 1, 4, 4, generator=gen(0), dtype=torch.float64)
    images[:6] = 0.95  # made for labels 0..5, but the oracle sees a 9 in each
    reference = OracleClassifier().features(images)
    verdict = judge_samples(OracleClassifier(), images, labels, reference)
    assert verdict.accuracy == pytest.approx(24 / 30)
    assert verdict.frechet == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="labels"):
        judge_samples(OracleClassifier(), images, labels[:5], reference)


# --- straightness of paths (Chapter 14) -------------------------------------------------------

def test_straight_paths_at_constant_speed_have_zero_straightness() -> None:
    from flowdiff.metrics import path_straightness
    from flowdiff.solvers import Trajectory

    times = torch.linspace(0, 1, 11)
    start, end = torch.randn(5, 2), torch.randn(5, 2)
    states = start[:, None] + times[None, :, None] * (end - start)[:, None]
    assert path_straightness(Trajectory(times, states)) == pytest.approx(0.0, abs=1e-12)


def test_straightness_of_a_circular_arc_in_closed_form() -> None:
    """x(t) = r (cos θt, sin θt): S = r²θ² − |chord|² = r²θ² − 4 r² sin²(θ/2); finite differences on 4,000 steps."""
    from flowdiff.metrics import path_straightness
    from flowdiff.solvers import Trajectory

    radius, angle = 2.0, 2.5
    times = torch.linspace(0, 1, 4001)
    states = radius * torch.stack([torch.cos(angle * times), torch.sin(angle * times)], dim=1)[None]
    expected = radius**2 * angle**2 - 4 * radius**2 * math.sin(angle / 2) ** 2
    assert path_straightness(Trajectory(times, states)) == pytest.approx(expected, rel=1e-4)


def test_straightness_refuses_what_is_not_a_trajectory() -> None:
    from flowdiff.metrics import path_straightness
    from flowdiff.solvers import Trajectory

    with pytest.raises(ValueError, match="trajectory"):
        path_straightness(torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match="trajectory"):
        path_straightness(Trajectory(torch.zeros(1), torch.zeros(3, 1, 2)))
