"""Flows in the VAE's latent space: class-conditional (Chapter 11), and unconditional with the independent
and the optimal-transport coupling (Chapter 14).

A latent recipe names its autoencoder and that autoencoder's configuration
hash, and requires its checkpoint: the manifest records the autoencoder's
SHA-256 the flow was trained with, so retraining the VAE makes the latent
checkpoints stale instead of silently decoding them with the wrong decoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff.artifacts import CheckpointError, Recipe, TrainingRun, config_hash, load_or_train
from flowdiff.coupling import pair_by_optimal_transport
from flowdiff.data import load_mnist
from flowdiff.distributed import per_rank_batch
from flowdiff.dynamics import VectorFieldODE
from flowdiff.guidance import drop_labels
from flowdiff.latent import LatentFlow, LatentSpace, encode_dataset
from flowdiff.losses import conditional_flow_matching_loss
from flowdiff.metrics import frechet_distance
from flowdiff.models import ConditionalMLPVectorField, MLPVectorField
from flowdiff.paths import LinearPath
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.recipes.evaluation import load_judge, guidance_quality, mnist_test_features
from flowdiff.recipes.vae import VAE_KL_SWEEP, VAE_RECIPE
from flowdiff.solvers import simulate, time_grid
from flowdiff.training import train
from flowdiff.vae import VAE

__all__ = ["LATENT_CFG", "LATENT_INDEPENDENT", "LATENT_OT", "AUTOENCODERS", "autoencoder_reference", "latent_codes", "latent_space"]

AUTOENCODERS: dict[str, Recipe] = {recipe.name: recipe for recipe in VAE_KL_SWEEP}
"""The recipes a latent recipe may name as its autoencoder."""


def _autoencoder(config: Mapping[str, Any], directory: Path) -> VAE:
    """The autoencoder a latent recipe names, checked against the configuration hash it was trained with."""
    recipe = AUTOENCODERS[config["autoencoder"]["name"]]
    if config_hash(recipe.config) != config["autoencoder"]["config_hash"]:
        raise CheckpointError(f"the latent recipe was made for another configuration of {recipe.name!r}; update its config")
    return load_or_train(recipe, directory, allow_training=False).model


def autoencoder_reference(recipe: Recipe) -> dict[str, str]:
    """The entry of a latent recipe's config that names its autoencoder and pins that autoencoder's configuration."""
    return {"name": recipe.name, "config_hash": config_hash(recipe.config)}


def latent_codes(model: LatentFlow, config: Mapping[str, Any], directory: Path) -> Tensor:
    """Encode the training images with the named autoencoder and store the standardisation in ``model``."""
    codes, mean, std = encode_dataset(_autoencoder(config, directory), load_mnist(train=True).images)
    model.latent_mean.copy_(mean)
    model.latent_std.copy_(std)
    return codes


def latent_space(model: LatentFlow, config: Mapping[str, Any], directory: Path) -> LatentSpace:
    """The latent space of ``model`` with the decoder of the autoencoder its config names."""
    return model.space(_autoencoder(config, directory))


def _build_latent_cfg(config: Mapping[str, Any]) -> nn.Module:
    return LatentFlow(ConditionalMLPVectorField(16, 10, hidden=config["hidden"], layers=config["layers"]), 16)


def _train_latent_cfg(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    codes = latent_codes(model, config, directory).to(device)
    labels = load_mnist(train=True).labels
    path, size = LinearPath(), per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(len(codes), (size,), like=labels, generator=generator)
        kept = drop_labels(labels[index], config["eta"], network.null_label, generator).to(device)
        noise = _random.randn((size, codes.shape[1]), like=codes, generator=generator)
        t = _random.rand((size,), like=codes, generator=generator)
        return conditional_flow_matching_loss(lambda x, time: network(x, time, kept), path, codes[index.to(device)], x0=noise, t=t)

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="latent flow")
    return TrainingRun(history.losses)


def _evaluate_latent_cfg(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    space = latent_space(model, config, directory)
    return guidance_quality(model, config, directory, shape=(space.dim,), decode=space.decode)


LATENT_CFG = Recipe(
    name="mnist-latent-cfg",
    description="class-conditional MLP flow in the 16-D latent space of mnist-vae, for classifier-free guidance",
    config={
        "model": "LatentFlow(ConditionalMLPVectorField)",
        "autoencoder": autoencoder_reference(VAE_RECIPE),
        "hidden": 512,
        "layers": 4,
        "path": "linear",
        "steps": 12000,
        "batch_size": 256,
        "lr": 2e-3,
        "eta": 0.1,
        "seed": 0,
        "evaluation": {"guidance_scales": [1.0, 2.0, 3.0], "steps": 20, "per_class": 100},
    },
    build=_build_latent_cfg,
    train=_train_latent_cfg,
    evaluate=_evaluate_latent_cfg,
    requires=(VAE_RECIPE.name,),
    uses=(VAE_RECIPE, CLASSIFIER),
)


def _build_latent_unconditional(config: Mapping[str, Any]) -> nn.Module:
    return LatentFlow(MLPVectorField(16, hidden=config["hidden"], layers=config["layers"]), 16)


def _train_latent_unconditional(
    model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path
) -> TrainingRun:
    codes = latent_codes(model, config, directory).to(device)
    path, size = LinearPath(), per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        batch = codes[_random.randint(len(codes), (size,), like=codes, generator=generator)]
        noise = _random.randn((size, codes.shape[1]), like=codes, generator=generator)
        if config["coupling"] == "optimal-transport":
            noise = pair_by_optimal_transport(noise, batch)
        t = _random.rand((size,), like=codes, generator=generator)
        return conditional_flow_matching_loss(network, path, batch, x0=noise, t=t)

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description=config["coupling"])
    return TrainingRun(history.losses)


def _evaluate_latent_unconditional(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    judge = load_judge(directory)
    space = latent_space(model, config, directory)
    reference = mnist_test_features(judge)
    evaluation = config["evaluation"]
    noise = _random.randn((evaluation["samples"], space.dim), like=next(model.parameters()), generator=torch.Generator().manual_seed(0))
    rows = []
    for steps in evaluation["euler_steps"]:
        codes = simulate(VectorFieldODE(model), noise, time_grid(steps), method="euler")
        rows.append({"steps": steps, "frechet": round(frechet_distance(judge.features(space.decode(codes).clamp(-1, 1)), reference), 3)})
    return {"judge": CLASSIFIER.name, "samples": evaluation["samples"], "method": "euler", "by_steps": rows}


def _latent_unconditional_recipe(coupling: str) -> Recipe:
    return Recipe(
        name=f"mnist-latent-{'ot' if coupling == 'optimal-transport' else 'independent'}",
        description=f"unconditional MLP flow in the latent space of mnist-vae, {coupling} coupling",
        config={
            "model": "LatentFlow(MLPVectorField)",
            "autoencoder": autoencoder_reference(VAE_RECIPE),
            "coupling": coupling,
            "hidden": 256,
            "layers": 4,
            "path": "linear",
            "steps": 8000,
            "batch_size": 256,
            "lr": 2e-3,
            "seed": 0,
            "evaluation": {"euler_steps": [1, 2, 4, 8, 20], "samples": 2000},
        },
        build=_build_latent_unconditional,
        train=_train_latent_unconditional,
        evaluate=_evaluate_latent_unconditional,
        requires=(VAE_RECIPE.name,),
        uses=(VAE_RECIPE, CLASSIFIER),
    )


LATENT_INDEPENDENT = _latent_unconditional_recipe("independent")
LATENT_OT = _latent_unconditional_recipe("optimal-transport")
