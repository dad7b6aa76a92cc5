"""flowdiff.likelihood against independent references: closed-form Gaussians, exact mixture paths,
the moments of Hutchinson's estimator, and the bits per dimension of a uniform model (Chapter 15)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from flowdiff.distributions import Density, Gaussian, GaussianMixture
from flowdiff.likelihood import (
    PIXEL_SCALE,
    bits_per_dimension,
    dequantize,
    draw_probes,
    exact_divergence,
    hutchinson_divergence,
    log_likelihood,
    standard_normal_log_density,
)
from flowdiff.paths import GaussianPath, LinearScheduler

# The comparisons with closed forms (1e-4 nats), exact divergences and convergence orders are made in float64,
# where solver error rather than round-off is what they see; test_results_live_on_the_samples_device_and_dtype
# also runs the float32 path that the chapter uses.
pytestmark = pytest.mark.usefixtures("float64")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# The affine flow ψ_t(x_0) = M_t x_0 + t m with M_t = I + t (A − I), A symmetric positive definite, so M_t is
# invertible for every t: it carries N(μ_0, Σ_0) to N(A μ_0 + m, A Σ_0 A) at t = 1 (Chapter 2, eq. eq-affine-flow).
MATRIX = torch.tensor([[1.5, 0.4, 0.0], [0.4, 0.8, -0.2], [0.0, -0.2, 2.0]], dtype=torch.float64)
SHIFT = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)


def affine_field(x: Tensor, t: Tensor) -> Tensor:
    """``u_t(x) = (A − I) M_t^{-1} (x − t m) + m``: the velocity of ψ_t at the point ``x = ψ_t(x_0)``."""
    flat = x.reshape(x.shape[0], -1)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    matrix, shift = MATRIX.to(x), SHIFT.to(x)
    along = t.to(x)[:, None, None]
    start = torch.linalg.solve(eye + along * (matrix - eye), flat - t.to(x)[:, None] * shift)
    return (start @ (matrix - eye).T + shift).reshape(x.shape)


def affine_target(source_mean: Tensor, source_cov: Tensor) -> Gaussian:
    return Gaussian(MATRIX @ source_mean + SHIFT, MATRIX @ source_cov @ MATRIX)


@pytest.mark.parametrize("method,options", [("dopri5", {"rtol": 1e-9, "atol": 1e-9}), ("heun", {"steps": 400}), ("midpoint", {"steps": 400})])
def test_affine_flow_likelihood_is_the_closed_form_gaussian(method: str, options: dict) -> None:
    target = affine_target(torch.zeros(3), torch.eye(3))
    x = target.sample(64, torch.Generator().manual_seed(0))
    result = log_likelihood(affine_field, x, method=method, **options)
    assert (result.log_likelihood - target.log_density(x)).abs().max().item() <= 1e-4
    # The trajectories end where the inverse flow sends the samples: x_0 = A^{-1}(x − m).
    assert torch.allclose(result.noise, torch.linalg.solve(MATRIX, (x - SHIFT).T).T, atol=1e-5)


def test_any_density_serves_as_the_source() -> None:
    source_mean, source_cov = torch.tensor([0.5, 0.0, -1.0]), torch.diag(torch.tensor([0.5, 2.0, 1.0]))
    target = affine_target(source_mean, source_cov)
    x = target.sample(32, torch.Generator().manual_seed(1))
    result = log_likelihood(affine_field, x, source=Gaussian(source_mean, source_cov), rtol=1e-9, atol=1e-9)
    assert (result.log_likelihood - target.log_density(x)).abs().max().item() <= 1e-4


def test_image_shaped_samples_are_flattened_for_the_divergence_and_the_source() -> None:
    target = affine_target(torch.zeros(3), torch.eye(3))
    x = target.sample(8, torch.Generator().manual_seed(2))
    images = log_likelihood(affine_field, x.reshape(8, 1, 3, 1), rtol=1e-9, atol=1e-9)
    assert images.noise.shape == (8, 1, 3, 1)
    assert (images.log_likelihood - target.log_density(x)).abs().max().item() <= 1e-4


def test_fixed_step_methods_report_their_evaluations_and_converge_in_order() -> None:
    target = affine_target(torch.zeros(3), torch.eye(3))
    x = target.sample(16, torch.Generator().manual_seed(3))
    errors = {}
    for method, per_step in (("euler", 1), ("heun", 2), ("midpoint", 2)):
        result = log_likelihood(affine_field, x, method=method, steps=20)
        assert result.evaluations == 20 * per_step
        errors[method] = (result.log_likelihood - target.log_density(x)).abs().max().item()
    assert errors["heun"] < errors["euler"] / 10 and errors["midpoint"] < errors["euler"] / 10


def test_the_field_is_evaluated_only_on_the_unit_interval() -> None:
    seen: list[float] = []

    def recording(x: Tensor, t: Tensor) -> Tensor:
        seen.extend(t.tolist())
        return affine_field(x, t)

    x = affine_target(torch.zeros(3), torch.eye(3)).sample(4, torch.Generator().manual_seed(4))
    for method in ("dopri5", "heun", "midpoint"):
        log_likelihood(recording, x, method=method, steps=7, rtol=1e-3, atol=1e-3)
    assert min(seen) >= 0.0 and max(seen) <= 1.0


# --- the exact marginal field of a Gaussian-mixture path ---------------------------------------

MIXTURE = GaussianMixture.isotropic(torch.tensor([[-2.0, 0.0], [1.5, 1.5], [1.0, -2.0]]), std=0.5, weights=torch.tensor([0.5, 0.3, 0.2]))
MIXTURE_TOLERANCE = 1e-4
"""Nats: dopri5 at rtol = atol = 1e-8 on the exact field; the error measured is about 1e-6."""


def test_flow_of_the_exact_marginal_field_has_the_mixture_density() -> None:
    path = GaussianPath(LinearScheduler())
    x = MIXTURE.sample(64, torch.Generator().manual_seed(5))

    def field(points: Tensor, t: Tensor) -> Tensor:
        return path.marginal_vector_field(MIXTURE, points, t)

    result = log_likelihood(field, x, rtol=1e-8, atol=1e-8)
    assert (result.log_likelihood - MIXTURE.log_density(x)).abs().max().item() <= MIXTURE_TOLERANCE


# --- Hutchinson's estimator ----------------------------------------------------------------------

WEIGHT = torch.tensor([[0.9, -1.3, 0.2, 0.0], [0.7, 0.4, -0.8, 1.1], [-0.5, 0.6, 1.2, 0.3], [0.1, -0.9, 0.4, -1.0]], dtype=torch.float64)


def nonlinear_field(x: Tensor) -> Tensor:
    """``tanh(W x) + x²/4``, with a non-symmetric Jacobian ``diag(1 − tanh²(W x)) W + diag(x/2)``."""
    return torch.tanh(x @ WEIGHT.to(x).T) + x**2 / 4


def jacobian_at(point: Tensor) -> Tensor:
    return torch.autograd.functional.jacobian(lambda p: nonlinear_field(p[None])[0], point)


POINT = torch.tensor([0.3, -0.7, 1.1, 0.2], dtype=torch.float64)
REPEATS = 4000


def test_exact_divergence_is_the_trace_of_the_jacobian() -> None:
    points = torch.randn(5, 4, generator=torch.Generator().manual_seed(6))
    _, divergence = exact_divergence(nonlinear_field, points)
    traces = torch.stack([torch.trace(jacobian_at(p)) for p in points])
    assert torch.allclose(divergence, traces, atol=1e-12)


def hutchinson_estimates(kind: str, count: int, seed: int) -> Tensor:
    """``REPEATS`` independent estimates at ``POINT``: a batch of copies, each with its own probes."""
    points = POINT.expand(REPEATS, 4)
    probes = draw_probes(points, count, kind, torch.Generator().manual_seed(seed))
    return hutchinson_divergence(nonlinear_field, points, probes)[1]


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased_within_three_standard_errors(kind: str) -> None:
    estimates = hutchinson_estimates(kind, 1, seed=7)
    exact = torch.trace(jacobian_at(POINT))
    standard_error = estimates.std() / math.sqrt(REPEATS)
    assert (estimates.mean() - exact).abs() <= 3 * standard_error


VARIANCE_TOLERANCE = 0.15
"""Relative: the sample variance of 4,000 estimates has a relative standard deviation of a few per cent."""


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_variance_is_the_closed_form_over_k(kind: str) -> None:
    jacobian = jacobian_at(POINT)
    # Var(ε^T A ε) = Σ_ij A_ij (A_ij + A_ji) for Gaussian probes, 2 Σ_i A_ii² less for Rademacher ones (eq-like-hutchinson-variance).
    single = (jacobian * (jacobian + jacobian.T)).sum()
    if kind == "rademacher":
        single = single - 2 * (torch.diagonal(jacobian) ** 2).sum()
    for count in (1, 4, 16):
        variance = hutchinson_estimates(kind, count, seed=8 + count).var()
        assert abs(variance / (single / count) - 1) <= VARIANCE_TOLERANCE, (count, variance.item(), (single / count).item())


def test_probes_have_identity_second_moment_and_the_right_values() -> None:
    x = torch.zeros(2000, 3)
    for kind in ("gaussian", "rademacher"):
        probes = draw_probes(x, 2, kind, torch.Generator().manual_seed(9))
        assert probes.shape == (2, 2000, 3)
        moment = torch.einsum("kni,knj->ij", probes, probes) / 4000
        assert torch.allclose(moment, torch.eye(3), atol=0.1)
    assert set(draw_probes(x, 1, "rademacher").unique().tolist()) == {-1.0, 1.0}


def test_hutchinson_likelihood_is_close_to_the_exact_one_and_seeded() -> None:
    target = affine_target(torch.zeros(3), torch.eye(3))
    x = target.sample(200, torch.Generator().manual_seed(10))
    exact = log_likelihood(affine_field, x, method="heun", steps=50).log_likelihood
    runs = [log_likelihood(affine_field, x, divergence="hutchinson", probes=4, method="heun", steps=50,
                           generator=torch.Generator().manual_seed(seed)).log_likelihood for seed in (11, 11, 12)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    error = runs[0] - exact
    assert error.mean().abs() <= 3 * error.std() / math.sqrt(200)


# --- dequantisation and bits per dimension --------------------------------------------------------

class UniformOnCells(Density):
    """The uniform density on the union of the 256 cells of the dequantised pixels, ``[−1 − 1/255, 1 + 1/255]^d``."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.half_width = 128 / PIXEL_SCALE

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return (2 * torch.rand(n, self.dim, generator=generator) - 1) * self.half_width

    def log_density(self, x: Tensor) -> Tensor:
        inside = (x.abs() <= self.half_width).all(dim=1)
        value = torch.full((x.shape[0],), -self.dim * math.log(2 * self.half_width), dtype=x.dtype)
        return torch.where(inside, value, torch.full_like(value, -math.inf))

    def score(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


def random_bytes(n: int, seed: int) -> Tensor:
    return torch.randint(0, 256, (n, 1, 4, 4), generator=torch.Generator().manual_seed(seed)) / PIXEL_SCALE - 1


def test_uniform_model_of_uniform_bytes_costs_eight_bits_per_dimension() -> None:
    images = dequantize(random_bytes(50, 12), torch.Generator().manual_seed(13))

    def still(x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    result = log_likelihood(still, images, source=UniformOnCells(16), method="euler", steps=1)
    assert torch.allclose(bits_per_dimension(result.log_likelihood, 16), torch.full((50,), 8.0), atol=1e-12)


def test_dequantisation_fills_each_pixel_cell_uniformly() -> None:
    images = random_bytes(500, 14)
    noisy = dequantize(images, torch.Generator().manual_seed(15))
    offset = (noisy - images) * PIXEL_SCALE
    assert offset.min() >= -0.5 and offset.max() < 0.5
    assert abs(offset.mean().item()) < 0.01 and abs(offset.var().item() - 1 / 12) < 0.005


def test_bits_per_dimension_changes_variables_from_the_model_scale_to_bytes() -> None:
    # A Gaussian of standard deviation σ on the [-1, 1] scale is one of σ · 127.5 on the byte scale:
    # its log-density there is lower by d log 127.5, whatever the point.
    sigma, d = 0.3, 5
    x = torch.randn(10, d, generator=torch.Generator().manual_seed(16)) * sigma
    model_scale = Gaussian.isotropic(d, sigma).log_density(x)
    byte_scale = Gaussian.isotropic(d, sigma * PIXEL_SCALE).log_density(x * PIXEL_SCALE)
    assert torch.allclose(bits_per_dimension(model_scale, d), -byte_scale / (d * math.log(2)))


# --- devices, dtypes, and arguments ---------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_live_on_the_samples_device_and_dtype(device: str, dtype: torch.dtype) -> None:
    x = affine_target(torch.zeros(3), torch.eye(3)).sample(4).to(device=device, dtype=dtype)
    for divergence in ("exact", "hutchinson"):
        result = log_likelihood(affine_field, x, divergence=divergence, method="heun", steps=4, generator=torch.Generator().manual_seed(0))
        for tensor in (result.log_likelihood, result.source_log_density, result.divergence_integral, result.noise):
            assert tensor.device.type == device and tensor.dtype == dtype
    assert dequantize(random_bytes(2, 0).to(device=device, dtype=dtype), torch.Generator().manual_seed(0)).device.type == device


def test_a_cpu_generator_draws_the_same_probes_for_every_device() -> None:
    x = torch.zeros(3, 2)
    first = draw_probes(x, 2, generator=torch.Generator().manual_seed(0))
    again = draw_probes(x.to(torch.float32), 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(first, again.double(), atol=1e-6)


def test_standard_normal_log_density_matches_the_gaussian_class() -> None:
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(17))
    assert torch.allclose(standard_normal_log_density(x), Gaussian.isotropic(4).log_density(x))


def test_a_conditional_model_receives_its_labels() -> None:
    received = []

    def model(x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        received.append(labels)
        return affine_field(x, t)

    x = affine_target(torch.zeros(3), torch.eye(3)).sample(3)
    labels = torch.tensor([0, 1, 2])
    log_likelihood(model, x, labels, method="euler", steps=2)
    assert all(torch.equal(r, labels) for r in received) and len(received) == 2


X = torch.zeros(4, 3)
BAD_CALLS = [
    (lambda: log_likelihood(affine_field, X, divergence="trace"), "divergence"),
    (lambda: log_likelihood(affine_field, X, method="rk4"), "method"),
    (lambda: log_likelihood(affine_field, X, probes=0), "probes"),
    (lambda: log_likelihood(affine_field, X, steps=0), "steps"),
    (lambda: log_likelihood(affine_field, X, rtol=-1.0), "rtol"),
    (lambda: log_likelihood(affine_field, X, atol=0.0), "atol"),
    (lambda: log_likelihood(affine_field, torch.zeros(3)), "x"),
    (lambda: log_likelihood(affine_field, X, torch.zeros(3)), "condition"),
    (lambda: log_likelihood(affine_field, X, source=Gaussian.isotropic(2)), "source"),
    (lambda: log_likelihood(affine_field, X, source="normal"), "source"),
    (lambda: log_likelihood("field", X), "vector_field"),
    (lambda: log_likelihood(lambda x, t: x[:, :2], X, method="euler", steps=1), "vector_field"),
    (lambda: log_likelihood(affine_field, X, divergence="hutchinson", probe_kind="sphere"), "kind"),
    (lambda: hutchinson_divergence(nonlinear_field, torch.zeros(2, 4), torch.zeros(2, 4)), "probes"),
    (lambda: dequantize(torch.full((2, 1, 2, 2), 0.001)), "images"),
    (lambda: bits_per_dimension(torch.zeros(2), 0), "dim"),
    (lambda: bits_per_dimension(torch.zeros(2), 4, scale=-1.0), "scale"),
    (lambda: bits_per_dimension([0.0], 4), "log_likelihood"),
]


@pytest.mark.parametrize("call,argument", BAD_CALLS)
def test_bad_input_names_the_argument(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()
