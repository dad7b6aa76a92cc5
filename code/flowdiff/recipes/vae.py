"""The autoencoders of latent diffusion: the VAE and its KL-weight sweep (Chapter 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff.artifacts import Recipe, TrainingRun
from flowdiff.data import load_mnist
from flowdiff.distributed import per_rank_batch
from flowdiff.metrics import frechet_distance
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.recipes.evaluation import load_judge, mnist_test_features
from flowdiff.training import train
from flowdiff.vae import VAE, gaussian_kl, vae_loss

__all__ = ["VAE_RECIPE", "VAE_KL_SWEEP"]


def _build_vae(config: Mapping[str, Any]) -> nn.Module:
    return VAE(latent_dim=config["latent_dim"], channels=tuple(config["channels"]))


def _train_vae(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    images = load_mnist(train=True).images.to(device)
    size = per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(len(images), (size,), like=images, generator=generator)
        return vae_loss(network, images[index], config["kl_weight"], generator).loss

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="VAE")
    return TrainingRun(history.losses)


def _evaluate_vae(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    judge = load_judge(directory)
    test = load_mnist(train=False)
    generator = torch.Generator().manual_seed(0)
    reconstruction, kl, correct = 0.0, 0.0, 0
    for images, labels in zip(test.images.split(1000), test.labels.split(1000)):
        mean, log_var = model.encode(images)
        decoded = model.decode(mean)
        reconstruction += (images - decoded).flatten(1).square().sum(dim=1).sum().item()
        kl += gaussian_kl(mean, log_var).sum().item()
        correct += (judge(decoded).argmax(1) == labels).sum().item()
    prior = model.decode(_random.randn((1000, model.latent_dim), like=next(model.parameters()), generator=generator))
    features = mnist_test_features(judge)
    return {
        "judge": CLASSIFIER.name,
        "test_reconstruction_error": round(reconstruction / len(test), 3),
        "test_kl": round(kl / len(test), 3),
        "reconstruction_accuracy": round(correct / len(test), 4),
        "prior_sample_frechet": round(frechet_distance(judge.features(prior), features), 3),
    }


def _vae_recipe(name: str, kl_weight: float) -> Recipe:
    return Recipe(
        name=name,
        description=f"convolutional VAE on MNIST, 16-D latent, KL weight β = {kl_weight:g}",
        config={
            "model": "VAE",
            "latent_dim": 16,
            "channels": [32, 64],
            "kl_weight": kl_weight,
            "steps": 4000,
            "batch_size": 128,
            "lr": 2e-3,
            "seed": 0,
        },
        build=_build_vae,
        train=_train_vae,
        evaluate=_evaluate_vae,
        uses=(CLASSIFIER,),
    )


VAE_RECIPE = _vae_recipe("mnist-vae", 1.0)
VAE_KL_SWEEP = (_vae_recipe("mnist-vae-beta-0.1", 0.1), VAE_RECIPE, _vae_recipe("mnist-vae-beta-10", 10.0))
