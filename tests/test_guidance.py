"""flowdiff.guidance: classifier guidance and classifier-free guidance against exact fields of a
labelled Gaussian mixture (Bayes' rule makes both equal the conditional field at w = 1 and equal to
each other for every w), and label dropout against its probability."""

from __future__ import annotations

import math

import pytest
import torch

from flowdiff.distributions import GaussianMixture
from flowdiff.dynamics import VectorFieldODE
from flowdiff.guidance import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    classifier_guidance_coefficient,
    drop_labels,
    exact_conditional_field,
    exact_noisy_log_likelihood,
    guided_vector_field,
    sample_with_guidance,
)
from flowdiff.labelled_mixtures import LabelledMixture
from flowdiff.models import ConditionalMLPVectorField
from flowdiff.paths import CosineScheduler, GaussianPath, LinearPath
from flowdiff.solvers import simulate, time_grid

CLASSES = [
    GaussianMixture.isotropic(torch.tensor([[-2.0, 0.0], [-1.0, 1.5]]), 0.4),
    GaussianMixture.isotropic(torch.tensor([[1.5, 0.5]]), 0.6),
]
PRIOR = torch.tensor([0.3, 0.7])
NULL = 2


def whole_mixture() -> GaussianMixture:
    """The unlabelled data law: the classes weighted by their prior."""
    means = torch.stack([g.mean for c in CLASSES for g in c.components])
    covariances = torch.stack([g.cov for c in CLASSES for g in c.components])
    weights = torch.cat([p * c.weights for p, c in zip(PRIOR, CLASSES)])
    return GaussianMixture(means, covariances, weights)


def exact_model(path: GaussianPath):
    """A 'network' (x, t, labels) -> exact u_t(x | y), with u_t(x | null) the unconditional field."""
    data = [*CLASSES, whole_mixture()]

    def model(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for label in labels.unique().tolist():
            rows = labels == label
            out[rows] = path.marginal_vector_field(data[label], x[rows], t[rows])
        return out

    return model


def exact_log_likelihood(path: GaussianPath, label: int):
    """log p_t(y | x) = log π_y + log p_t(x | y) - log p_t(x), by Bayes' rule."""

    def log_likelihood(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = t[0].item()
        joint = torch.log(PRIOR[label]) + path.marginal(CLASSES[label], time).log_density(x)
        return joint - path.marginal(whole_mixture(), time).log_density(x)

    return log_likelihood


PATHS = [LinearPath(), GaussianPath(CosineScheduler())]


@pytest.mark.parametrize("path", PATHS, ids=["linear", "cosine"])
@pytest.mark.parametrize("label", [0, 1])
def test_classifier_guidance_at_scale_one_is_the_conditional_field(path: GaussianPath, label: int) -> None:
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(label)) * 2
    t = torch.full((64,), 0.6)
    unconditional = lambda x, t: path.marginal_vector_field(whole_mixture(), x, t)  # noqa: E731
    guided = ClassifierGuidance(unconditional, exact_log_likelihood(path, label), path, 1.0).drift(x, t)
    expected = path.marginal_vector_field(CLASSES[label], x, t)
    # Two exact routes; float32 round-off in the gradients of log-densities of about -10 stays under 1e-4.
    torch.testing.assert_close(guided, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", PATHS, ids=["linear", "cosine"])
@pytest.mark.parametrize("scale", [0.0, 0.5, 3.0])
def test_cfg_with_exact_fields_equals_classifier_guidance(path: GaussianPath, scale: float) -> None:
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(7)) * 2
    t = torch.full((50,), 0.35)
    labels = torch.zeros(50, dtype=torch.long)
    cfg = ClassifierFreeGuidance(exact_model(path), labels, NULL, scale).drift(x, t)
    unconditional = lambda x, t: path.marginal_vector_field(whole_mixture(), x, t)  # noqa: E731
    classifier = ClassifierGuidance(unconditional, exact_log_likelihood(path, 0), path, scale).drift(x, t)
    # Two exact routes; float32 round-off in the gradients of log-densities, amplified by w b_t, stays under 1e-4.
    torch.testing.assert_close(cfg, classifier, rtol=1e-4, atol=1e-4)


def test_guided_field_is_the_affine_combination() -> None:
    generator = torch.Generator().manual_seed(0)
    conditional, unconditional = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    assert torch.equal(guided_vector_field(conditional, unconditional, 0.0), unconditional)
    # float32: the two ways of writing the combination round differently, by a few 1e-7 of its terms (about 5).
    torch.testing.assert_close(guided_vector_field(conditional, unconditional, 1.0), conditional, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(guided_vector_field(conditional, unconditional, 4.0), -3 * unconditional + 4 * conditional,
                               rtol=1e-5, atol=1e-5)


def test_classifier_guidance_coefficient_of_the_linear_path() -> None:
    """For α = t, β = 1 - t: b_t = (1-t)² / t + (1-t) = (1-t)/t."""
    t = torch.tensor([0.1, 0.5, 0.9])
    x = torch.zeros(3, 2)
    assert torch.allclose(classifier_guidance_coefficient(LinearPath(), x, t)[:, 0], (1 - t) / t)


@pytest.mark.parametrize("eta", [0.0, 0.1, 0.5, 1.0])
def test_drop_labels_drops_with_probability_eta(eta: float) -> None:
    n = 200_000
    labels = torch.randint(10, (n,), generator=torch.Generator().manual_seed(0))
    kept = drop_labels(labels, eta, 10, torch.Generator().manual_seed(1))
    fraction = (kept == 10).double().mean().item()
    assert abs(fraction - eta) <= 5 * math.sqrt(eta * (1 - eta) / n) + 1e-12
    assert torch.equal(kept[kept != 10], labels[kept != 10])


def test_cfg_scale_one_samples_the_conditional_network() -> None:
    torch.manual_seed(0)
    model = ConditionalMLPVectorField(2, 3, hidden=16, layers=2)
    labels = torch.tensor([0, 1, 2, 1])
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    times = time_grid(5, dtype=x0.dtype)
    guided = simulate(ClassifierFreeGuidance(model, labels, model.null_label, 1.0), x0, times)
    plain = simulate(VectorFieldODE(lambda x, t: model(x, t, labels)), x0, times)
    assert torch.allclose(guided, plain)
    samples = sample_with_guidance(model, labels, 1.0, 5, (2,), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(samples, plain)
    unconditional = simulate(ClassifierFreeGuidance(model, labels, model.null_label, 0.0), x0, times)
    null = torch.full_like(labels, model.null_label)
    assert torch.allclose(unconditional, simulate(VectorFieldODE(lambda x, t: model(x, t, null)), x0, times))


def test_sampling_in_batches_matches_one_batch() -> None:
    torch.manual_seed(0)
    model = ConditionalMLPVectorField(2, 3, hidden=16, layers=2)
    labels = torch.tensor([0, 1, 2, 1, 0])
    whole = sample_with_guidance(model, labels, 2.5, 4, (2,), generator=torch.Generator().manual_seed(3))
    parts = sample_with_guidance(model, labels, 2.5, 4, (2,), generator=torch.Generator().manual_seed(3), batch_size=2)
    assert torch.allclose(whole, parts)


def test_bad_inputs_name_the_argument() -> None:
    labels = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="eta"):
        drop_labels(labels, 1.5, 10)
    with pytest.raises(ValueError, match="labels"):
        drop_labels(labels.double(), 0.1, 10)
    with pytest.raises(ValueError, match="guidance_scale"):
        guided_vector_field(torch.zeros(2), torch.zeros(2), -1.0)
    with pytest.raises(ValueError, match="same shape"):
        guided_vector_field(torch.zeros(2), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="guidance_scale"):
        ClassifierFreeGuidance(lambda x, t, y: x, labels, 10, float("nan"))
    with pytest.raises(ValueError, match="path"):
        ClassifierGuidance(lambda x, t: x, lambda x, t: x.sum(1), "linear", 1.0)
    guided = ClassifierGuidance(lambda x, t: x, lambda x, t: x.sum(1), LinearPath(), 1.0)
    with pytest.raises(ValueError, match="t must be > 0"):
        guided.drift(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="steps"):
        sample_with_guidance(ConditionalMLPVectorField(2, 3), labels, 1.0, 0, (2,))


# --- labelled mixtures and their exact fields, against the hand-built references above ---------

LABELLED = LabelledMixture(CLASSES, PRIOR)


def test_labelled_mixture_is_the_prior_weighted_mixture_of_its_classes() -> None:
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0)) * 2
    assert torch.allclose(LABELLED.mixture.log_density(x), whole_mixture().log_density(x))
    by_hand = torch.stack([torch.log(PRIOR[y]) + CLASSES[y].log_density(x) for y in range(2)], dim=1)
    assert torch.allclose(LABELLED.posterior(x), torch.softmax(by_hand, dim=1))
    noised = LinearPath().marginal(LABELLED, 0.4)
    assert isinstance(noised, LabelledMixture)
    assert torch.allclose(noised.mixture.log_density(x), LinearPath().marginal(whole_mixture(), 0.4).log_density(x))


def test_labelled_samples_follow_the_prior_and_the_classes() -> None:
    n = 40_000
    x, labels = LABELLED.sample(n, torch.Generator().manual_seed(1))
    frequency = (labels == 1).double().mean().item()
    assert abs(frequency - 0.7) < 5 * math.sqrt(0.21 / n)
    assert torch.allclose(x[labels == 1].mean(0), torch.tensor([1.5, 0.5]), atol=0.03)
    assert torch.allclose(x[labels == 0].mean(0), torch.tensor([-1.5, 0.75]), atol=0.05)


@pytest.mark.parametrize("path", PATHS, ids=["linear", "cosine"])
def test_exact_fields_of_a_labelled_mixture_match_the_references(path: GaussianPath) -> None:
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(2)) * 2
    t = torch.full((30,), 0.45)
    labels = torch.tensor([0, 1, 2] * 10)
    assert torch.allclose(exact_conditional_field(path, LABELLED)(x, t, labels), exact_model(path)(x, t, labels))
    targets = torch.tensor([0, 1] * 15)
    expected = torch.stack([exact_log_likelihood(path, y)(x[i : i + 1], t[:1])[0] for i, y in enumerate(targets.tolist())])
    # log p(y | x) near 0 is a difference of log densities of about -10: float32 leaves about 1e-6 absolute.
    torch.testing.assert_close(exact_noisy_log_likelihood(path, LABELLED, targets)(x, t), expected, rtol=0, atol=1e-5)


def test_labelled_mixture_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="classes"):
        LabelledMixture([])
    with pytest.raises(ValueError, match="labels"):
        LabelledMixture.isotropic(torch.zeros(3, 2), torch.tensor([0, 2, 2]), 0.5)
    with pytest.raises(ValueError, match="data"):
        exact_conditional_field(LinearPath(), whole_mixture())
    with pytest.raises(ValueError, match="labels"):
        exact_conditional_field(LinearPath(), LABELLED)(torch.zeros(2, 2), torch.ones(2) / 2, torch.tensor([0, 3]))
