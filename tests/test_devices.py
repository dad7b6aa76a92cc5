"""Every public function runs on the device and dtype of its inputs (issue 14).

Each case below builds its inputs on the CPU from seeded generators, moves
them to the device under test, and runs one function of the package. The
test then checks that every output lives on that device, in the expected
dtype, and is finite; on a device other than the CPU it also runs the case
on the CPU and checks that both agree: random draws use CPU generators,
which :mod:`flowdiff._random` makes give the same numbers everywhere.

The devices are ``cpu`` always, ``cuda`` when it is available and ``mps``
on Apple silicon. Every case runs in float32, the book's dtype; the solvers
also run in bfloat16. Set ``FLOWDIFF_DEVICE_REPORT=report.json`` to write a
report of the run (see ``tests/device_report.py``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import pytest
import torch
from torch import Tensor

from flowdiff import _random
from flowdiff.coupling import pair_by_optimal_transport
from flowdiff.data import ImageDataset
from flowdiff.data import binarise, binary_images
from flowdiff.discrete_flows import (
    CosineKappa,
    MixturePath,
    bin_centres,
    histogram,
    quantise,
    total_variation,
    bits_per_token,
    discrete_flow_matching_loss,
    euler_jump_step,
    exact_posterior,
    forward_marginals,
    joint_rate_matrix,
    negative_elbo,
    sample_discrete,
    simulate_ctmc,
    step_transition_matrix,
    tau_leap_step,
    unmask_step,
)
from flowdiff.distributions import Empirical, Gaussian, GaussianMixture, PointMasses
from flowdiff.dynamics import (
    AffineGaussianFlow,
    BrownianMotion,
    LinearODE,
    MarginalPreservingSDE,
    OrnsteinUhlenbeck,
    OverdampedLangevin,
    VectorFieldODE,
)
from flowdiff.flowmaps import (
    consistency_loss,
    consistency_sample,
    flow_map,
    flow_map_regression_loss,
    flow_map_sample,
    meanflow_loss,
    meanflow_target,
    teacher_pairs,
)
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
from flowdiff.latent import LatentSpace
from flowdiff.losses import conditional_flow_matching_loss, denoising_score_matching_loss, flow_matching_loss
from flowdiff.metrics import frechet_distance, judge_samples, mmd, path_straightness, sliced_wasserstein, wasserstein
from flowdiff.models import ConditionalMLPVectorField, MLPFlowMap, MLPVectorField, MNISTClassifier, UNet
from flowdiff.paths import CosineScheduler, GaussianPath, LinearPath, LinearScheduler, VPScheduler
from flowdiff.solvers import simulate, simulate_trajectory, solve_adaptive, time_grid
from flowdiff.steering import GradientSteering, denoised_estimate
from flowdiff.text import CaptionScheme, PromptedMLPVectorField, TextEncoder, Vocabulary, stroke_classes
from flowdiff.toy_data import TOY_DATASETS
from flowdiff.transformer import (
    DiT,
    TokenTransformer,
    Attention,
    apply_rotary,
    grid_positions,
    multiply_adds,
    naive_attention,
    patchify,
    sincos_position_embedding_2d,
    unpatchify,
)
from flowdiff.vae import VAE, reparameterise, vae_loss

# The report's plugin (tests/device_report.py); imported by pytest, so the test below imports it lazily.
pytest_plugins = ["device_report"]


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


@pytest.fixture(params=available_devices())
def device(request: pytest.FixtureRequest) -> Iterator[torch.device]:
    """The device under test. TF32 is switched off on CUDA so that float32 there agrees with the CPU."""
    device = torch.device(request.param)
    if device.type != "cuda":
        yield device
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield device
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# --- inputs, built on the CPU and moved --------------------------------------------------------------


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def normal(*shape: int, seed: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float32).to(device=device, dtype=dtype)


def times(n: int, seed: int, device: torch.device, low: float = 0.05, high: float = 0.95) -> Tensor:
    """Times in ``[low, high]``, away from the ends where some fields are singular, in float32."""
    return (low + (high - low) * torch.rand(n, generator=gen(seed))).to(device)


def seeded(build: Callable[[], torch.nn.Module], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A network with the same weights on every device: built on the CPU from seed 0, then moved."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build()
    return model.to(device=device, dtype=dtype).eval()


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """The toy data sets sample in the default dtype: set it explicitly."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def mlp(device: torch.device, dtype: torch.dtype = torch.float32) -> MLPVectorField:
    return seeded(lambda: MLPVectorField(2, hidden=32, layers=3), device, dtype)


def labelled_mixture(device: torch.device) -> LabelledMixture:
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], dtype=torch.float32, device=device)
    labels = torch.tensor([0, 1, 1], device=device)
    return LabelledMixture.isotropic(means, labels, std=0.5)


def mixture(device: torch.device) -> GaussianMixture:
    angles = torch.arange(4, dtype=torch.float32, device=device) * (torch.pi / 2)
    return GaussianMixture.isotropic(2 * torch.stack([angles.cos(), angles.sin()], dim=1), std=0.3)


SCHEDULED_PATHS = {
    "linear": lambda: GaussianPath(LinearScheduler()),
    "cosine": lambda: GaussianPath(CosineScheduler()),
    "vp": lambda: GaussianPath(VPScheduler()),
    "linear_path": LinearPath,
}


# --- the cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One call of the package: ``run(device, dtype)`` returns its outputs (tensors, numbers or tuples of them)."""

    name: str
    run: Callable[[torch.device, torch.dtype], object]
    dtypes: tuple[torch.dtype, ...] = (torch.float32,)


CASES: list[Case] = []


def case(name: str, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> Callable:
    def register(run: Callable[[torch.device, torch.dtype], object]) -> Callable:
        CASES.append(Case(name, run, dtypes))
        return run

    return register


BOTH = (torch.float32, torch.bfloat16)

# solvers


for _method in ("euler", "heun", "midpoint"):

    @case(f"solvers.simulate[{_method}]", BOTH)
    def _ode(device: torch.device, dtype: torch.dtype, method: str = _method) -> object:
        x0 = normal(64, 2, seed=1, device=device, dtype=dtype)
        return simulate(VectorFieldODE(mlp(device, dtype)), x0, time_grid(10), method=method)


@case("solvers.simulate[euler_maruyama]", BOTH)
def _sde(device: torch.device, dtype: torch.dtype) -> object:
    sde = MarginalPreservingSDE(mlp(device, dtype), lambda x, t: -x, diffusion=0.5)
    x0 = normal(64, 2, seed=2, device=device, dtype=dtype)
    return simulate(sde, x0, time_grid(10), generator=gen(3))


@case("solvers.simulate_trajectory", BOTH)
def _trajectory(device: torch.device, dtype: torch.dtype) -> object:
    trajectory = simulate_trajectory(OrnsteinUhlenbeck(1.0, 0.5), normal(32, 2, seed=4, device=device, dtype=dtype),
                                     time_grid(8), generator=gen(5))
    assert trajectory.times.device.type == device.type and trajectory.times.dtype == torch.float32
    return trajectory.states


@case("solvers.solve_adaptive")
def _adaptive(device: torch.device, dtype: torch.dtype) -> object:
    solution = solve_adaptive(VectorFieldODE(mlp(device, dtype)), normal(64, 2, seed=6, device=device, dtype=dtype), rtol=1e-4, atol=1e-4)
    return solution.final


# dynamics


@case("dynamics.LinearODE.flow")
def _linear(device: torch.device, dtype: torch.dtype) -> object:
    ode = LinearODE(torch.tensor([[0.0, -1.0], [1.0, -0.1]], dtype=torch.float32, device=device))
    return ode.flow(normal(16, 2, seed=7, device=device), 0.7), ode.drift(normal(16, 2, seed=8, device=device), times(16, 9, device))


@case("dynamics.AffineGaussianFlow")
def _affine(device: torch.device, dtype: torch.dtype) -> object:
    source = Gaussian.isotropic(2, 1.0, mean=torch.zeros(2, dtype=torch.float32, device=device))
    target = Gaussian.isotropic(2, 0.5, mean=torch.tensor([1.0, -1.0], dtype=torch.float32, device=device))
    flow, x = AffineGaussianFlow(source, target), normal(16, 2, seed=10, device=device)
    return flow.drift(x, times(16, 11, device)), flow.flow(x, times(16, 12, device)), flow.marginal(0.3).sample(8, gen(13))


@case("dynamics.BrownianMotion+OverdampedLangevin")
def _langevin(device: torch.device, dtype: torch.dtype) -> object:
    x0 = normal(32, 2, seed=14, device=device)
    brownian = simulate(BrownianMotion(0.7), x0, time_grid(5), generator=gen(15))
    langevin = simulate(OverdampedLangevin(mixture(device)), x0, time_grid(5), generator=gen(16))
    return brownian, langevin


# distributions


@case("distributions.Gaussian")
def _gaussian(device: torch.device, dtype: torch.dtype) -> object:
    cov = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float32, device=device)
    law, x = Gaussian(torch.tensor([0.5, -1.0], dtype=torch.float32, device=device), cov), normal(16, 2, seed=17, device=device)
    return law.sample(100, gen(18)), law.log_density(x), law.score(x)


@case("distributions.GaussianMixture")
def _mixture(device: torch.device, dtype: torch.dtype) -> object:
    law, x = mixture(device), normal(16, 2, seed=19, device=device)
    samples, labels = law.sample_with_labels(100, gen(20))
    noised = law.noised(0.5, 0.8)
    return samples, labels, law.log_density(x), law.score(x), noised.score(x), law.noised_posterior(x, 0.5, 0.8)


@case("distributions.LabelledMixture+PointMasses+Empirical")
def _discrete_laws(device: torch.device, dtype: torch.dtype) -> object:
    labelled, x = labelled_mixture(device), normal(16, 2, seed=21, device=device)
    points = PointMasses(torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.0, 0.0]], dtype=torch.float32, device=device))
    empirical = Empirical(normal(50, 2, seed=22, device=device))
    return (labelled.sample(64, gen(23)), labelled.posterior(x), points.sample(64, gen(24)),
            points.noised_posterior(x, 0.6, 0.5), empirical.sample(32, gen(25)))


@case("distributions.toy_datasets")
def _toys(device: torch.device, dtype: torch.dtype) -> object:
    with default_dtype(dtype):
        return tuple(toy().sample(256, gen(26), device=device) for toy in TOY_DATASETS.values())


# paths


for _name in SCHEDULED_PATHS:

    @case(f"paths.GaussianPath[{_name}]", BOTH)
    def _path(device: torch.device, dtype: torch.dtype, name: str = _name) -> object:
        path = SCHEDULED_PATHS[name]()
        z, x = normal(32, 2, seed=27, device=device, dtype=dtype), normal(32, 2, seed=28, device=device, dtype=dtype)
        t = times(32, 29, device)
        noise = normal(32, 2, seed=30, device=device, dtype=dtype)
        return (path.sample(z, t, generator=gen(31)), path.sample(z, t, noise=noise), path.conditional_vector_field(x, z, t),
                path.conditional_velocity(z, noise, t), path.conditional_score(x, z, t),
                path.vector_field_from_score(x, z, t), path.score_from_vector_field(x, z, t), path.score_from_noise(noise, t))

    @case(f"paths.GaussianPath[{_name}].marginals")
    def _marginals(device: torch.device, dtype: torch.dtype, name: str = _name) -> object:
        path, x, t = SCHEDULED_PATHS[name](), normal(32, 2, seed=32, device=device), times(32, 33, device)
        data = mixture(device)
        return path.marginal_score(data, x, t), path.marginal_vector_field(data, x, t), path.marginal(data, 0.4).sample(16, gen(34))


# losses


@case("losses")
def _losses(device: torch.device, dtype: torch.dtype) -> object:
    model, path = mlp(device), GaussianPath(CosineScheduler())
    z, t = normal(64, 2, seed=35, device=device), times(64, 36, device)
    data = mixture(device)
    return (
        flow_matching_loss(model, lambda x, s: path.marginal_vector_field(data, x, s), z, t),
        conditional_flow_matching_loss(model, path, z, generator=gen(37)),
        conditional_flow_matching_loss(model, LinearPath(), z, x0=normal(64, 2, seed=38, device=device), t=t),
        denoising_score_matching_loss(model, path, z, generator=gen(39)),
        denoising_score_matching_loss(model, path, z, t=t, generator=gen(40), parameterization="score"),
    )


# guidance and steering


@case("guidance.fields")
def _guidance_fields(device: torch.device, dtype: torch.dtype) -> object:
    path, data = GaussianPath(LinearScheduler()), labelled_mixture(device)
    x, t = normal(24, 2, seed=41, device=device), times(24, 42, device)
    labels = torch.tensor([0, 1] * 12, device=device)
    cfg = ClassifierFreeGuidance(exact_conditional_field(path, data), labels, data.num_classes, 2.0)
    classifier = ClassifierGuidance(lambda y, s: path.marginal_vector_field(data.mixture, y, s),
                                    exact_noisy_log_likelihood(path, data, labels), path, 1.5)
    return (
        guided_vector_field(normal(24, 2, seed=43, device=device), x, 3.0),
        drop_labels(labels, 0.5, data.num_classes, generator=gen(44)),
        classifier_guidance_coefficient(path, x, t),
        cfg.drift(x, t),
        classifier.drift(x, torch.full_like(t, 0.5)),
    )


@case("guidance.sample_with_guidance")
def _sample_with_guidance(device: torch.device, dtype: torch.dtype) -> object:
    model = seeded(lambda: ConditionalMLPVectorField(2, num_classes=3, hidden=32, layers=3), device, dtype)
    labels = torch.arange(3, device=device).repeat_interleave(4)
    return sample_with_guidance(model, labels, 2.0, 6, (2,), method="heun", generator=gen(45), batch_size=5)


@case("steering")
def _steering(device: torch.device, dtype: torch.dtype) -> object:
    path, model = GaussianPath(LinearScheduler()), mlp(device)
    x, t = normal(16, 2, seed=46, device=device), times(16, 47, device)
    steering = GradientSteering(model, path, lambda z: -(z - 1).square().sum(dim=1), strength=1.0)
    cheap = GradientSteering(model, path, lambda z: -(z - 1).square().sum(dim=1), strength=1.0, through_model=False)
    with torch.no_grad():
        estimate = denoised_estimate(path, model(x, t), x, t)
    return estimate, steering.drift(x, t), cheap.drift(x, t), simulate(steering, x, time_grid(5))


# metrics


@case("metrics.distances")
def _distances(device: torch.device, dtype: torch.dtype) -> object:
    x, y = normal(200, 2, seed=48, device=device), normal(150, 2, seed=49, device=device) + 0.3
    trajectory = simulate_trajectory(VectorFieldODE(mlp(device)), normal(32, 2, seed=50, device=device), time_grid(20))
    return (sliced_wasserstein(x, y, 64, gen(51)), sliced_wasserstein(x, x.flip(0), 64, gen(52)), mmd(x, y, 0.7),
            wasserstein(x, y), frechet_distance(x, y), path_straightness(trajectory))


@case("metrics.judge_samples")
def _judge(device: torch.device, dtype: torch.dtype) -> object:
    classifier = seeded(lambda: MNISTClassifier(feature_dim=16), device)
    images = normal(12, 1, 28, 28, seed=53, device=device).clamp(-1, 1)
    labels = torch.arange(12, device=device) % 10
    verdict = judge_samples(classifier, images, labels, normal(30, 16, seed=54, device=device), batch_size=5)
    return verdict.accuracy, verdict.frechet


# models, the autoencoder, text


@case("models.MLP")
def _mlps(device: torch.device, dtype: torch.dtype) -> object:
    x, t = normal(16, 2, seed=55, device=device), times(16, 56, device)
    conditional = seeded(lambda: ConditionalMLPVectorField(2, num_classes=3, hidden=32, layers=3), device)
    return mlp(device)(x, t), conditional(x, t, torch.arange(16, device=device) % 4)


@case("models.UNet")
def _unet(device: torch.device, dtype: torch.dtype) -> object:
    unet = seeded(lambda: UNet(channels=(8, 16), layers=1, num_classes=3, embedding_dim=16), device)
    images = normal(4, 1, 28, 28, seed=57, device=device)
    return unet(images, times(4, 58, device), torch.tensor([0, 1, 2, 3], device=device))


def dit(device: torch.device, dtype: torch.dtype = torch.float32, position: str = "sincos") -> DiT:
    """A tiny DiT with random weights: a fresh one is the zero field (adaLN-Zero), which any device gets right."""

    def build() -> DiT:
        model = DiT(image_size=28, channels=1, patch_size=7, width=16, depth=2, heads=2, num_classes=3, position=position)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_(0.0, 0.2)
        return model

    return seeded(build, device, dtype)


for _position in ("sincos", "rope"):

    @case(f"transformer.DiT[{_position}]", BOTH)
    def _dit(device: torch.device, dtype: torch.dtype, position: str = _position) -> object:
        model = dit(device, dtype, position)
        images = normal(4, 1, 28, 28, seed=80, device=device, dtype=dtype)
        labels = torch.tensor([0, 1, 2, 3], device=device)
        return model(images, times(4, 81, device), labels), sample_with_guidance(model, labels[:2], 2.0, 2, (1, 28, 28), generator=gen(82))


@case("transformer.patches+positions+attention", BOTH)
def _transformer_parts(device: torch.device, dtype: torch.dtype) -> object:
    images = normal(2, 3, 8, 12, seed=83, device=device, dtype=dtype)
    tokens = patchify(images, 4)
    q, k, v = (normal(2, 2, 6, 8, seed=seed, device=device, dtype=dtype) for seed in (84, 85, 86))
    positions = grid_positions(2, 3, device=device, dtype=dtype)
    attention = seeded(lambda: Attention(16, 2), device, dtype)
    x = normal(2, 6, 16, seed=87, device=device, dtype=dtype)
    model = dit(device, dtype)
    cost = multiply_adds(model, normal(2, 1, 28, 28, seed=88, device=device, dtype=dtype), times(2, 89, device),
                         torch.tensor([0, 3], device=device))
    return (tokens, unpatchify(tokens, 4, 3, 8, 12), sincos_position_embedding_2d(2, 3, 8, device=device, dtype=dtype),
            positions, apply_rotary(q, positions), naive_attention(q, k, v), attention(x), attention(x, positions), cost)


@case("vae")
def _vae(device: torch.device, dtype: torch.dtype) -> object:
    vae = seeded(lambda: VAE(latent_dim=4, channels=(8, 8)), device)
    images = normal(6, 1, 28, 28, seed=59, device=device).clamp(-1, 1)
    mean, log_var = vae.encode(images)
    loss = vae_loss(vae, images, kl_weight=0.5, generator=gen(60))
    space = LatentSpace(vae, mean.detach().mean(0), torch.ones(4, dtype=torch.float32, device=device))
    return vae(images), reparameterise(mean, log_var, generator=gen(61)), loss.loss, space.encode(images), space.decode(mean)


@case("text")
def _text(device: torch.device, dtype: torch.dtype) -> object:
    vocabulary = Vocabulary.of_captions()
    tokens = vocabulary.encode(["a thin digit three", "the digit 7", ""], length=6, device=device)
    encoder = seeded(lambda: TextEncoder(len(vocabulary), features=16, heads=2, layers=1, length=6), device)
    field = seeded(lambda: PromptedMLPVectorField(4, len(vocabulary), hidden=32, layers=3, text_features=16, length=6), device)
    x, t = normal(3, 4, seed=62, device=device), times(3, 63, device)
    scheme = CaptionScheme((0.4, 0.6), (-0.1, 0.1), ())
    thickness, slants = stroke_classes(normal(5, 1, 28, 28, seed=64, device=device).clamp(-1, 1), scheme)
    return tokens, encoder(tokens), field(x, t, tokens), thickness, slants


@case("data+coupling")
def _data(device: torch.device, dtype: torch.dtype) -> object:
    dataset = ImageDataset(normal(20, 1, 28, 28, seed=65, device=device), torch.arange(20, device=device) % 10)
    images, labels = dataset.batch(8, generator=gen(66))
    noise, data = normal(16, 2, seed=67, device=device), normal(16, 2, seed=68, device=device)
    return images, labels, pair_by_optimal_transport(noise, data)


# flow maps (Chapter 16)


def flow_map_network(device: torch.device, num_classes: int | None = None) -> MLPFlowMap:
    return seeded(lambda: MLPFlowMap(2, hidden=32, layers=3, num_classes=num_classes), device)


@case("flowmaps.losses")
def _flowmap_losses(device: torch.device, dtype: torch.dtype) -> object:
    network = flow_map_network(device)
    x, velocity = normal(32, 2, seed=69, device=device), normal(32, 2, seed=70, device=device)
    s, t = times(32, 71, device, high=0.5), times(32, 72, device, low=0.5)
    teacher = teacher_pairs(VectorFieldODE(mlp(device)), x, 5, keep_trajectory=True)
    return (
        flow_map(network, x, s, t),
        meanflow_loss(network, x, s, t, velocity),
        meanflow_loss(network, x, s, t, velocity, adaptive_power=1.0),
        meanflow_target(network, x, s, t, velocity).target,
        consistency_loss(network, x, s, x + 0.1, t),
        flow_map_regression_loss(network, x, s, t, velocity),
        teacher.x1,
        teacher.trajectory,
    )


@case("flowmaps.samplers")
def _flowmap_samplers(device: torch.device, dtype: torch.dtype) -> object:
    network = flow_map_network(device, num_classes=3)
    labels = torch.arange(16, device=device) % 4  # 3 is the null label
    x0 = normal(16, 2, seed=73, device=device)
    u = lambda x, s, t: network(x, s, t, labels)  # noqa: E731
    return flow_map_sample(u, x0, 2), consistency_sample(u, x0, 3, generator=gen(74))


# discrete state (Chapter 18)


class TokenPosterior(torch.nn.Module):
    """A tiny posterior network ``(x_t, t, labels) -> logits (n, L, V)``: token and label embeddings, one layer."""

    def __init__(self, num_states: int, vocab_size: int, num_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        self.null_label = num_classes
        self.tokens = torch.nn.Embedding(num_states, width)
        self.labels = torch.nn.Embedding(num_classes + 1, width)
        self.out = torch.nn.Linear(width, vocab_size)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.tokens(x) + t[:, None, None].to(self.out.weight.dtype)
        if labels is not None:
            h = h + self.labels(labels)[:, None]
        return self.out(torch.tanh(h))


def discrete_toy(device: torch.device) -> tuple[Tensor, Tensor]:
    """Four sequences of length 2 over 3 tokens, and their weights per class (two classes)."""
    support = torch.tensor([[0, 1], [1, 1], [2, 0], [0, 2]], device=device)
    return support, torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.1, 0.5, 0.4]], device=device)


@case("discrete_flows.ctmc")
def _ctmc(device: torch.device, dtype: torch.dtype) -> object:
    Q = torch.tensor([[-1.0, 0.6, 0.4], [0.2, -0.5, 0.3], [0.5, 0.5, -1.0]], device=device)
    p0 = torch.tensor([0.6, 0.3, 0.1], device=device)
    x = torch.randint(0, 3, (64, 5), generator=gen(90)).to(device)
    rates = Q[x]
    return (
        forward_marginals(p0, Q, torch.tensor([0.5, 1.0], device=device)),
        step_transition_matrix(Q, 0.2, "tau_leaping"),
        euler_jump_step(x, rates, 0.3, gen(91)),
        tau_leap_step(x, rates, 0.3, gen(92)),
        simulate_ctmc(x, lambda x, t: Q[x], torch.linspace(0, 1, 5, device=device), generator=gen(93)),
        joint_rate_matrix(Q[torch.tensor([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2]], device=device)]),
    )


@case("discrete_flows.paths+loss")
def _discrete_paths(device: torch.device, dtype: torch.dtype) -> object:
    support, weights = discrete_toy(device)
    masking, uniform = MixturePath(3, "mask", CosineKappa()), MixturePath(3, "uniform")
    x1 = support[torch.randint(0, 4, (32,), generator=gen(94))].to(device)
    labels = torch.arange(32, device=device) % 3  # 2 is the null label
    null = torch.full((32,), 2, device=device)  # the exact posterior of the whole data: x1 may lie outside a class
    t = times(32, 95, device)
    xt = masking.sample(x1, t, gen(96))
    exact = exact_posterior(masking, support, weights)
    network = seeded(lambda: TokenPosterior(4, 3), device)
    return (
        xt,
        uniform.sample(x1, t, gen(97)),
        masking.conditional_probabilities(x1, t),
        masking.conditional_rates(xt, x1, t),
        masking.marginal_rates(xt, exact(xt, t, null).exp(), t),
        discrete_flow_matching_loss(network, masking, x1, labels=labels, weighting="elbo", generator=gen(98)),
        discrete_flow_matching_loss(network, uniform, x1, labels=labels, generator=gen(99)),
        negative_elbo(exact, masking, x1, samples=2, labels=null, generator=gen(100)),
        bits_per_token(network, masking, x1, samples=2, labels=labels, generator=gen(101)),
    )


@case("discrete_flows.samplers")
def _discrete_samplers(device: torch.device, dtype: torch.dtype) -> object:
    support, weights = discrete_toy(device)
    masking, uniform = MixturePath(3, "mask"), MixturePath(3, "uniform")
    labels = torch.arange(16, device=device) % 2
    network = seeded(lambda: TokenPosterior(4, 3), device)
    x = torch.full((16, 2), 3, device=device)
    posterior = torch.softmax(normal(16, 2, 3, seed=102, device=device), dim=-1)
    return (
        sample_discrete(exact_posterior(masking, support, weights), masking, 16, 2, 4, labels=labels, guidance_scale=2.0,
                        null_label=2, generator=gen(103)),
        sample_discrete(network, masking, 16, 2, 4, labels=labels, guidance_scale=1.5, generator=gen(104)),
        sample_discrete(seeded(lambda: TokenPosterior(3, 3), device), uniform, 16, 2, 4, labels=labels, method="tau_leaping",
                        generator=gen(105)),
        unmask_step(x, posterior, masking, times(16, 106, device, high=0.5), times(16, 107, device, low=0.6), gen(108)),
    )


@case("transformer.TokenTransformer+discrete samplers", BOTH)
def _token_transformer(device: torch.device, dtype: torch.dtype) -> object:
    def build() -> TokenTransformer:
        model = TokenTransformer(3, 4, (4, 4), patch_size=2, width=16, depth=1, heads=2, num_classes=2)
        with torch.no_grad():  # the zero-initialised final layer would hide a misplaced tensor
            model.final_layer.linear.weight.normal_()
        return model

    model = seeded(build, device, dtype)
    x = torch.arange(32, device=device).reshape(2, 16) % 4
    labels = torch.tensor([0, 2], device=device)
    masking = MixturePath(3, "mask")
    return (
        model(x, times(2, 120, device), labels),
        sample_discrete(model, masking, 2, 16, 3, labels=labels, guidance_scale=2.0, generator=gen(121)),
    )


@case("discrete_flows.grid+histograms, data.binarise")
def _grid_tokens(device: torch.device, dtype: torch.dtype) -> object:
    points = normal(64, 2, seed=122, device=device)
    tokens = quantise(points, 8, -2.0, 2.0)
    law = histogram(tokens, 8)
    images = normal(2, 1, 4, 4, seed=123, device=device).clamp(-1, 1)
    assert law.dtype == torch.float64 and law.device.type == device.type  # exact frequencies, by design
    return bin_centres(tokens, 8, -2.0, 2.0), total_variation(law, law.flip(0)).float(), binary_images(binarise(images), 4, 4)


# --- the checks ------------------------------------------------------------------------------------


def _leaves(outputs: object) -> list[object]:
    if isinstance(outputs, (tuple, list)):
        return [leaf for item in outputs for leaf in _leaves(item)]
    return [outputs]


def _check_placement(outputs: object, device: torch.device, dtype: torch.dtype) -> None:
    for leaf in _leaves(outputs):
        if isinstance(leaf, Tensor):
            assert leaf.device.type == device.type, f"an output lives on {leaf.device}, not on {device}"
            if leaf.is_floating_point():
                assert leaf.dtype == dtype, f"an output has dtype {leaf.dtype}, not {dtype}"
                assert torch.isfinite(leaf).all(), "an output is not finite"
        else:
            assert isinstance(leaf, (int, float)) and torch.isfinite(torch.tensor(float(leaf))), f"output {leaf!r}"


def _check_agreement(on_device: object, on_cpu: object, dtype: torch.dtype) -> None:
    tolerance = {"rtol": 1e-3, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 0.1, "atol": 0.1}
    for ours, reference in zip(_leaves(on_device), _leaves(on_cpu), strict=True):
        if isinstance(ours, Tensor):
            torch.testing.assert_close(ours.detach().cpu(), reference.detach(), **tolerance)
        else:
            assert ours == pytest.approx(reference, rel=1e-4, abs=1e-6)


PARAMETERS = [pytest.param(c, dtype, id=f"{c.name}-{str(dtype).removeprefix('torch.')}") for c in CASES for dtype in c.dtypes]


@pytest.mark.parametrize(("case_", "dtype"), PARAMETERS)
def test_runs_on_the_device_of_its_inputs(case_: Case, dtype: torch.dtype, device: torch.device) -> None:
    outputs = case_.run(device, dtype)
    _check_placement(outputs, device, dtype)
    if device.type != "cpu":
        _check_agreement(outputs, case_.run(torch.device("cpu"), dtype), dtype)


def test_every_case_runs_at_least_once() -> None:
    """Guards the loop-built cases: a broken registration would silently drop solvers or paths."""
    names = {c.name for c in CASES}
    for expected in ("solvers.simulate[euler]", "solvers.simulate[heun]", "solvers.simulate[midpoint]",
                     "solvers.simulate[euler_maruyama]", "solvers.solve_adaptive", "paths.GaussianPath[vp]"):
        assert expected in names


# --- time grids keep their resolution ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_low_precision_state_gets_a_float32_grid_with_distinct_times(dtype: torch.dtype, device: torch.device) -> None:
    """bfloat16 has 8 significant bits: a bf16 grid of 1000 steps would repeat times and reach t = 1 early.

    The field answers in the times' float32 (as a hand-written field does); the state keeps its own dtype.
    """
    seen: list[Tensor] = []

    def field(x: Tensor, t: Tensor) -> Tensor:
        seen.append(t[0])
        return -x * (1 - t)[:, None]

    x0 = normal(8, 2, seed=69, device=device, dtype=dtype)
    trajectory = simulate_trajectory(VectorFieldODE(field), x0, time_grid(1000))
    assert trajectory.states.dtype == dtype and trajectory.states.device.type == device.type
    assert trajectory.times.dtype == torch.float32 and trajectory.times.device.type == device.type
    assert trajectory.times.unique().numel() == 1001
    field_times = torch.stack(seen)
    assert field_times.dtype == torch.float32 and field_times.unique().numel() == 1000
    assert field_times.max().item() < 1.0


@pytest.mark.parametrize("network", ["mlp", "unet", "dit"])
def test_a_bfloat16_network_tells_times_apart_that_bfloat16_cannot(network: str, device: torch.device) -> None:
    """0.999 and 1 are the same bfloat16 number; the time embedding works in float32, so the field still differs."""
    t = torch.tensor([0.999, 1.0], dtype=torch.float32, device=device)
    assert t.to(torch.bfloat16).unique().numel() == 1
    if network == "mlp":
        x = normal(1, 2, seed=74, device=device, dtype=torch.bfloat16).expand(2, 2)
        output = mlp(device, torch.bfloat16)(x, t)
    else:
        if network == "unet":
            model = seeded(lambda: UNet(channels=(8, 16), layers=1, num_classes=3, embedding_dim=16), device, torch.bfloat16)
        else:
            model = dit(device, torch.bfloat16)
        x = normal(1, 1, 28, 28, seed=75, device=device, dtype=torch.bfloat16).expand(2, 1, 28, 28)
        output = model(x, t, torch.tensor([1, 1], device=device))
    assert output.dtype == torch.bfloat16
    assert not torch.equal(output[0], output[1])


def test_random_draws_are_made_on_the_generators_device_then_moved(device: torch.device) -> None:
    """flowdiff._random's rule, draw by draw: a CPU generator's numbers, on the device of ``like``."""
    like = torch.zeros(3, dtype=torch.float32, device=device)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float32, device=device)
    draws = {
        "randn": (_random.randn((4, 3), like=like, generator=gen(76)), torch.randn(4, 3, generator=gen(76), dtype=torch.float32)),
        "rand": (_random.rand((4, 3), like=like, generator=gen(77)), torch.rand(4, 3, generator=gen(77), dtype=torch.float32)),
        "randint": (_random.randint(9, (5,), like=like, generator=gen(78)), torch.randint(9, (5,), generator=gen(78))),
        "multinomial": (_random.multinomial(weights, 6, generator=gen(79)),
                        torch.multinomial(weights.cpu(), 6, replacement=True, generator=gen(79))),
    }
    for name, (ours, reference) in draws.items():
        assert ours.device.type == device.type, name
        torch.testing.assert_close(ours.cpu(), reference, msg=name)
    without_generator = _random.randn((2,), like=like)
    assert without_generator.device.type == device.type and without_generator.dtype == torch.float32


def test_a_cpu_generator_gives_the_same_noise_on_every_device(device: torch.device) -> None:
    """The rule of flowdiff._random: a CPU generator's draws are made on the CPU, then moved."""
    x0 = torch.zeros(100, 3, dtype=torch.float32, device=device)
    end = simulate(BrownianMotion(1.0), x0, time_grid(4), generator=gen(70))
    reference = simulate(BrownianMotion(1.0), x0.cpu(), time_grid(4), generator=gen(70))
    assert end.device.type == device.type
    torch.testing.assert_close(end.cpu(), reference)


# --- timings for the report ------------------------------------------------------------------------


def _seconds(run: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """The best wall-clock time of ``repeats`` runs, after one warm-up, waiting for the device's queue."""
    run()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def test_timings_for_the_report(device: torch.device) -> None:
    """Euler and Heun with 100 steps on 10,000 2-D points (an MLP field), a U-Net forward pass and a training step
    (forward, backward, Adam) on 64 digits."""
    import device_report

    if device_report.requested_path() is None:
        pytest.skip(f"timings are measured only for the report (set {device_report.REPORT_VARIABLE})")
    ode = VectorFieldODE(mlp(device))
    x0 = normal(10_000, 2, seed=71, device=device)
    unet = seeded(lambda: UNet(channels=(32, 64, 128)), device)
    images, t = normal(64, 1, 28, 28, seed=72, device=device), times(64, 73, device)
    labels = torch.arange(64, device=device) % 10
    with torch.no_grad():
        device_report.timings[device.type] = {
            "euler_100_steps_10k_points_2d": _seconds(lambda: simulate(ode, x0, time_grid(100), "euler"), device),
            "heun_100_steps_10k_points_2d": _seconds(lambda: simulate(ode, x0, time_grid(100), "heun"), device),
            "unet_forward_64_digits": _seconds(lambda: unet(images, t, labels), device),
        }
    optimizer = torch.optim.Adam(unet.parameters(), lr=1e-4)

    def training_step() -> None:
        optimizer.zero_grad()
        unet(images, t, labels).square().mean().backward()
        optimizer.step()

    device_report.timings[device.type]["unet_training_step_64_digits"] = _seconds(training_step, device)
    assert all(value > 0 for value in device_report.timings[device.type].values())
