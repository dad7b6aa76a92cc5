"""One- and few-step samplers (Chapter 16): the 2-D toys, and students of the guided latent flow on MNIST.

- ``toy-flowmaps``: for each of two 2-D toys, five networks trained on the
  CPU in a few minutes: the flow matching teacher, OT-CFM (Chapter 14),
  one reflow of the teacher, a consistency model distilled from it, and a
  MeanFlow model trained from the data alone. Their exact ``W₂`` against
  the number of network evaluations is the manifest's quality.
- ``mnist-latent-reflow``, ``mnist-latent-consistency``, ``mnist-latent-meanflow``:
  class-conditional students in the 16-D latent space of ``mnist-vae``.
  The first two learn from ``mnist-latent-cfg`` (Chapter 11) guided at
  ``w = 2``, integrated with 20 Euler steps; MeanFlow learns from the codes
  and carries the same guidance in its target. Each is judged at 1 and 2
  network evaluations, with 1,000 digits, as the teacher is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff.artifacts import Recipe, TrainingRun, load_or_train
from flowdiff.coupling import pair_by_optimal_transport
from flowdiff.data import load_mnist
from flowdiff.distributed import per_rank_batch
from flowdiff.distributions import GaussianMixture, Sampleable
from flowdiff.dynamics import VectorFieldODE
from flowdiff.flowmaps import (
    consistency_loss,
    consistency_sample,
    flow_map_sample,
    guided_meanflow_velocity,
    meanflow_loss,
    teacher_pairs,
)
from flowdiff.guidance import ClassifierFreeGuidance, drop_labels
from flowdiff.latent import LatentFlow
from flowdiff.losses import conditional_flow_matching_loss
from flowdiff.metrics import judge_samples, wasserstein
from flowdiff.models import ConditionalMLPVectorField, MLPFlowMap, MLPVectorField
from flowdiff.paths import LinearPath
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.recipes.evaluation import load_judge, mnist_test_features
from flowdiff.recipes.latent import LATENT_CFG, latent_codes, latent_space
from flowdiff.recipes.vae import VAE_RECIPE
from flowdiff.solvers import simulate, time_grid
from flowdiff.toy_data import toy_dataset
from flowdiff.training import train

__all__ = ["TOY_FLOWMAPS", "LATENT_REFLOW", "LATENT_CONSISTENCY", "LATENT_MEANFLOW", "FLOWMAP_METHODS", "toy_data", "sample_toy"]

FLOWMAP_METHODS = ("teacher", "ot-cfm", "reflow", "consistency", "meanflow")
"""The toy models of ``toy-flowmaps``, in the order the chapter shows them."""


def toy_data(name: str) -> Sampleable:
    """The two toys of Chapter 16 (those of Chapter 14): eight Gaussians on a circle of radius 4, and the moons."""
    if name == "8 gaussians":
        return GaussianMixture.on_circle(8, 4.0, 0.3)
    if name == "moons":
        return toy_dataset("moons")
    raise ValueError(f"name must be '8 gaussians' or 'moons', got {name!r}")


def _module_key(name: str) -> str:
    return name.replace(" ", "-")


def _build_toys(config: Mapping[str, Any]) -> nn.Module:
    hidden, layers = config["hidden"], config["layers"]

    def one(method: str) -> nn.Module:
        if method in ("consistency", "meanflow"):
            return MLPFlowMap(2, hidden=hidden, layers=layers)
        return MLPVectorField(2, hidden=hidden, layers=layers)

    return nn.ModuleDict({_module_key(toy): nn.ModuleDict({m.replace("-", "_"): one(m) for m in FLOWMAP_METHODS}) for toy in config["toys"]})


def _mean_flow_times(size: int, equal_fraction: float, like: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(s, t)`` with ``s ≤ t`` uniform on the triangle, and ``s = t`` (flow matching) for a fraction ``equal_fraction``."""
    a, b = _random.rand((2, size), like=like, generator=generator)
    s, t = torch.minimum(a, b), torch.maximum(a, b)
    equal = _random.rand((size,), like=like, generator=generator) < equal_fraction
    return s, torch.where(equal, s, t)


def _train_toys(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    size, steps, lr, path = per_rank_batch(config["batch_size"]), config["steps"], config["lr"], LinearPath()
    losses: list[float] = []

    def fit(network: nn.Module, loss_fn: Callable[[nn.Module, torch.Generator], Tensor], description: str, steps: int = steps) -> None:
        history = train(network, loss_fn, steps, lr=lr, seed=config["seed"], progress=progress, description=description)
        losses.extend(history.losses)
        network.eval()

    for toy in config["toys"]:
        data, models = toy_data(toy), model[_module_key(toy)]
        like = next(model.parameters())

        def batch(generator: torch.Generator) -> tuple[Tensor, Tensor]:
            return _random.randn((size, 2), like=like, generator=generator), data.sample(size, generator=generator).to(like)

        def flow_matching(coupling: str):
            def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
                noise, x1 = batch(generator)
                if coupling == "optimal-transport":
                    noise = pair_by_optimal_transport(noise, x1)
                return conditional_flow_matching_loss(network, path, x1, x0=noise, t=_random.rand((size,), like=like, generator=generator))

            return loss_fn

        fit(models["teacher"], flow_matching("independent"), f"{toy}: teacher")
        fit(models["ot_cfm"], flow_matching("optimal-transport"), f"{toy}: OT-CFM")
        teacher = VectorFieldODE(models["teacher"])

        # Reflow: the teacher's deterministic coupling, computed once; the student starts from the teacher.
        pairs = teacher_pairs(teacher, _random.randn((config["reflow_pairs"], 2), like=like, generator=torch.Generator().manual_seed(1)),
                              config["teacher_steps"], method="heun")
        models["reflow"].load_state_dict(models["teacher"].state_dict())

        def reflow_loss(network: nn.Module, generator: torch.Generator) -> Tensor:
            index = _random.randint(pairs.x0.shape[0], (size,), like=pairs.x0, generator=generator)
            t = _random.rand((size,), like=like, generator=generator)
            return conditional_flow_matching_loss(network, path, pairs.x1[index], x0=pairs.x0[index], t=t)

        fit(models["reflow"], reflow_loss, f"{toy}: reflow")

        # Consistency distillation: neighbouring points of one teacher trajectory, one Heun step apart.
        grid = time_grid(config["consistency_intervals"], device=like.device)

        def consistency_distillation(network: nn.Module, generator: torch.Generator) -> Tensor:
            noise, x1 = batch(generator)
            k = _random.randint(len(grid) - 1, (size,), like=grid, generator=generator)
            s, s_next = grid[k], grid[k + 1]
            x_s = path.sample(x1, s, noise=noise)
            with torch.no_grad():
                x_next = _heun_step(teacher, x_s, s, s_next)
            return consistency_loss(network, x_s, s, x_next, s_next)

        fit(models["consistency"], consistency_distillation, f"{toy}: consistency", config["flow_map_steps"]["consistency"])

        def meanflow(network: nn.Module, generator: torch.Generator) -> Tensor:
            noise, x1 = batch(generator)
            s, t = _mean_flow_times(size, config["meanflow_equal_fraction"], like, generator)
            x_s = path.sample(x1, s, noise=noise)
            return meanflow_loss(network, x_s, s, t, x1 - noise, adaptive_power=config["meanflow_adaptive_power"])

        fit(models["meanflow"], meanflow, f"{toy}: MeanFlow", config["flow_map_steps"]["meanflow"])
    return TrainingRun(losses)


def _heun_step(ode: VectorFieldODE, x: Tensor, s: Tensor, s_next: Tensor) -> Tensor:
    """One Heun step of ``ode`` from ``s`` to ``s_next`` (per-sample times), the teacher's move in consistency distillation."""
    h = (s_next - s).to(x.dtype)[:, None]
    slope = ode.drift(x, s)
    return x + h / 2 * (slope + ode.drift(x + h * slope, s_next))


def sample_toy(models: nn.Module, method: str, noise: Tensor, evaluations: int, generator: torch.Generator | None = None) -> Tensor:
    """Samples of one model of ``toy-flowmaps`` with ``evaluations`` network evaluations (Chapter 16).

    The flows (teacher, OT-CFM, reflow) take Euler steps; MeanFlow chains
    jumps of its flow map; the consistency model jumps to the end and re-noises.
    """
    if method not in FLOWMAP_METHODS:
        raise ValueError(f"method must be one of {FLOWMAP_METHODS}, got {method!r}")
    network = models[method.replace("-", "_")]
    if method == "meanflow":
        return flow_map_sample(network, noise, evaluations)
    if method == "consistency":
        return consistency_sample(network, noise, evaluations, generator=generator)
    with torch.no_grad():
        return simulate(VectorFieldODE(network), noise, time_grid(evaluations), method="euler")


@torch.no_grad()
def _evaluate_toys(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    evaluation = config["evaluation"]
    n, rows = evaluation["samples"], []
    for number, toy in enumerate(config["toys"]):
        models = model[_module_key(toy)]
        reference = toy_data(toy).sample(n, generator=torch.Generator().manual_seed(100 + number))
        noise = _random.randn((n, 2), generator=torch.Generator().manual_seed(200 + number))
        floor = wasserstein(toy_data(toy).sample(n, generator=torch.Generator().manual_seed(300 + number)), reference)
        teacher = wasserstein(sample_toy(models, "teacher", noise, evaluation["teacher_steps"]), reference)
        row: dict[str, Any] = {"toy": toy, "sampling_floor": round(floor, 4), "teacher_reference": round(teacher, 4), "by_method": {}}
        for method in FLOWMAP_METHODS:
            row["by_method"][method] = [
                {"evaluations": k, "w2": round(wasserstein(sample_toy(models, method, noise, k, torch.Generator().manual_seed(7)), reference), 4)}
                for k in evaluation["evaluations"]
            ]
        rows.append(row)
    return {"samples": n, "teacher_steps": evaluation["teacher_steps"], "by_toy": rows}


TOY_FLOWMAPS = Recipe(
    name="toy-flowmaps",
    description="2-D toys: flow matching teacher, OT-CFM, reflow, consistency distillation and MeanFlow",
    config={
        "model": "ModuleDict(MLPVectorField, MLPFlowMap)",
        "toys": ["8 gaussians", "moons"],
        "hidden": 128,
        "layers": 4,
        "steps": 3000,
        # The flow maps learn a function of one more time, and their targets move with the network: more steps.
        "flow_map_steps": {"consistency": 12000, "meanflow": 24000},
        "batch_size": 512,
        "lr": 2e-3,
        "seed": 0,
        "reflow_pairs": 20000,
        "teacher_steps": 100,
        "consistency_intervals": 20,
        "meanflow_equal_fraction": 0.25,
        "meanflow_adaptive_power": 1.0,
        "evaluation": {"samples": 2000, "evaluations": [1, 2, 4, 8], "teacher_steps": 100},
    },
    build=_build_toys,
    train=_train_toys,
    evaluate=_evaluate_toys,
)


# --- MNIST: students of the guided latent flow --------------------------------------------------


def _teacher(config: Mapping[str, Any], directory: Path) -> LatentFlow:
    return load_or_train(LATENT_CFG, directory, allow_training=False).model


def _copy_standardisation(student: LatentFlow, teacher: LatentFlow) -> None:
    student.latent_mean.copy_(teacher.latent_mean)
    student.latent_std.copy_(teacher.latent_std)


def _teacher_run(config: Mapping[str, Any], teacher: LatentFlow, device: torch.device, keep_trajectory: bool):
    """The guided teacher integrated from ``teacher_pairs`` noise draws of every class (labels cycle through 0–9)."""
    count = config["teacher"]["pairs"]
    labels = torch.arange(count, device=device) % 10
    noise = _random.randn((count, 16), device=device, generator=torch.Generator().manual_seed(config["seed"] + 1))
    teacher = teacher.to(device)
    chunks = []
    for start in range(0, count, 5000):
        part = slice(start, start + 5000)
        ode = ClassifierFreeGuidance(teacher, labels[part], teacher.null_label, config["teacher"]["guidance_scale"])
        chunks.append(teacher_pairs(ode, noise[part], config["teacher"]["steps"], method="euler", keep_trajectory=keep_trajectory))
    if keep_trajectory:
        return labels, torch.cat([c.trajectory for c in chunks]), chunks[0].times
    return labels, torch.cat([c.x0 for c in chunks]), torch.cat([c.x1 for c in chunks])


def _build_latent_reflow(config: Mapping[str, Any]) -> nn.Module:
    return LATENT_CFG.build(LATENT_CFG.config)  # reflow fine-tunes the teacher: its architecture, its widths


def _train_latent_reflow(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    teacher = _teacher(config, directory)
    _copy_standardisation(model, teacher)
    model.field.load_state_dict(teacher.field.state_dict())  # reflow fine-tunes the teacher on its own coupling
    labels, x0, x1 = _teacher_run(config, teacher, device, keep_trajectory=False)
    path, size = LinearPath(), per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(x0.shape[0], (size,), like=x0, generator=generator)
        t = _random.rand((size,), like=x0, generator=generator)
        return conditional_flow_matching_loss(lambda x, time: network(x, time, labels[index]), path, x1[index], x0=x0[index], t=t)

    return TrainingRun(train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="reflow").losses)


def _build_latent_flow_map(config: Mapping[str, Any]) -> nn.Module:
    return LatentFlow(MLPFlowMap(16, hidden=config["hidden"], layers=config["layers"], num_classes=10), 16)


def _train_latent_consistency(
    model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path
) -> TrainingRun:
    teacher = _teacher(config, directory)
    _copy_standardisation(model, teacher)
    labels, trajectory, times = _teacher_run(config, teacher, device, keep_trajectory=True)
    count, intervals, size = trajectory.shape[0], trajectory.shape[1] - 1, per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(count, (size,), like=labels, generator=generator)
        k = _random.randint(intervals, (size,), like=labels, generator=generator)
        y = labels[index]
        u = lambda x, s, t: network(x, s, t, y)  # noqa: E731 - the map of these samples' labels
        return consistency_loss(u, trajectory[index, k], times[k], trajectory[index, k + 1], times[k + 1])

    return TrainingRun(
        train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="consistency").losses
    )


def _train_latent_meanflow(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    codes = latent_codes(model, config, directory).to(device)
    all_labels = load_mnist(train=True).labels.to(device)
    path, size, scale = LinearPath(), per_rank_batch(config["batch_size"]), config["guidance_scale"]

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(len(codes), (size,), like=codes, generator=generator)
        x1, labels = codes[index], drop_labels(all_labels[index], config["eta"], network.null_label, generator).to(device)
        noise = _random.randn(x1.shape, like=x1, generator=generator)
        s, t = _mean_flow_times(size, config["equal_fraction"], x1, generator)
        x_s = path.sample(x1, s, noise=noise)
        velocity = x1 - noise
        with torch.no_grad():  # guidance in the target: the network's own unconditional velocity at s
            unconditional = network(x_s, s, s, torch.full_like(labels, network.null_label))
        guided = guided_meanflow_velocity(velocity, unconditional, scale)
        velocity = torch.where((labels == network.null_label)[:, None], velocity, guided)
        return meanflow_loss(lambda x, a, b: network(x, a, b, labels), x_s, s, t, velocity, adaptive_power=config["adaptive_power"])

    return TrainingRun(train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="MeanFlow").losses)


@torch.no_grad()
def _evaluate_student(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    judge = load_judge(directory)
    space = latent_space(model, config, directory)
    reference = mnist_test_features(judge)
    evaluation, like = config["evaluation"], next(model.parameters())
    labels = torch.arange(10, device=like.device).repeat_interleave(evaluation["per_class"])
    noise = _random.randn((labels.shape[0], 16), like=like, generator=torch.Generator().manual_seed(0))
    rows = []
    for evaluations in evaluation["evaluations"]:
        codes = sample_latent_student(model, config["method"], noise, labels, evaluations, torch.Generator().manual_seed(1))
        judgement = judge_samples(judge, space.decode(codes).clamp(-1, 1), labels, reference)
        rows.append({"evaluations": evaluations, "accuracy": round(judgement.accuracy, 4), "frechet": round(judgement.frechet, 3)})
    return {"judge": CLASSIFIER.name, "samples": labels.shape[0], "by_evaluations": rows}


def sample_latent_student(
    model: nn.Module, method: str, noise: Tensor, labels: Tensor, evaluations: int, generator: torch.Generator | None = None
) -> Tensor:
    """Latent codes of a Chapter 16 MNIST student for ``labels`` with ``evaluations`` network evaluations."""
    if method == "reflow":
        return simulate(VectorFieldODE(lambda x, t: model(x, t, labels)), noise, time_grid(evaluations), method="euler")
    u = lambda x, s, t: model(x, s, t, labels)  # noqa: E731
    if method == "consistency":
        return consistency_sample(u, noise, evaluations, generator=generator)
    if method == "meanflow":
        return flow_map_sample(u, noise, evaluations)
    raise ValueError(f"method must be 'reflow', 'consistency' or 'meanflow', got {method!r}")


def _latent_student(method: str, description: str, build, train_fn, **settings: Any) -> Recipe:
    config = {
        "method": method,
        "autoencoder": LATENT_CFG.config["autoencoder"],
        "batch_size": 256,
        "lr": 1e-3,
        "seed": 0,
        **settings,
        "evaluation": {"evaluations": [1, 2], "per_class": 100},
    }
    return Recipe(
        name=f"mnist-latent-{method}",
        description=description,
        config=config,
        build=build,
        train=train_fn,
        evaluate=_evaluate_student,
        requires=(LATENT_CFG.name,) if "teacher" in settings else (VAE_RECIPE.name,),
        uses=(LATENT_CFG, VAE_RECIPE, CLASSIFIER) if "teacher" in settings else (VAE_RECIPE, CLASSIFIER),
    )


TEACHER = {"name": LATENT_CFG.name, "guidance_scale": 2.0, "steps": 20, "pairs": 60000}

LATENT_REFLOW = _latent_student(
    "reflow", "one reflow of mnist-latent-cfg guided at w = 2, in the latent space of mnist-vae",
    _build_latent_reflow, _train_latent_reflow, model="the teacher's LatentFlow(ConditionalMLPVectorField)", teacher=TEACHER, steps=6000,
)
LATENT_CONSISTENCY = _latent_student(
    "consistency", "consistency model distilled from mnist-latent-cfg guided at w = 2, in the latent space of mnist-vae",
    _build_latent_flow_map, _train_latent_consistency, model="LatentFlow(MLPFlowMap)", hidden=512, layers=4, teacher=TEACHER, steps=8000,
)
LATENT_MEANFLOW = _latent_student(
    "meanflow", "class-conditional MeanFlow with guidance w = 2 in its target, in the latent space of mnist-vae",
    _build_latent_flow_map, _train_latent_meanflow, model="LatentFlow(MLPFlowMap)", hidden=512, layers=4, steps=20000,
    guidance_scale=2.0, eta=0.1, equal_fraction=0.5, adaptive_power=1.0,
)
