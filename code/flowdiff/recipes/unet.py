"""The class-conditional U-Net flow on MNIST pixels, trained with label dropout for classifier-free guidance (Chapters 8 and 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff.artifacts import Recipe, TrainingRun
from flowdiff.data import load_mnist
from flowdiff.distributed import per_rank_batch
from flowdiff.guidance import drop_labels
from flowdiff.losses import conditional_flow_matching_loss
from flowdiff.models import UNet
from flowdiff.paths import LinearPath
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.recipes.evaluation import guidance_quality
from flowdiff.training import train

__all__ = ["CFG_UNET", "train_pixel_flow"]


def _build_unet(config: Mapping[str, Any]) -> nn.Module:
    return UNet(
        channels=tuple(config["channels"]),
        layers=config["layers"],
        num_classes=10,
        embedding_dim=config["embedding_dim"],
    )


def train_pixel_flow(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, description: str) -> TrainingRun:
    """Train a class-conditional network ``model(x, t, labels)`` on MNIST pixels by conditional flow matching on the linear path,
    with label dropout ``config["eta"]`` for classifier-free guidance (Chapters 8 and 10).

    Shared by the U-Net and the DiT of Chapter 17 (:mod:`~flowdiff.recipes.dit`), so that the two see the same batches,
    times and dropped labels: only the network differs.
    """
    data = load_mnist(train=True)
    images, labels = data.images.to(device), data.labels.to(device)
    path = LinearPath()
    size = per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(len(data), (size,), like=data.labels, generator=generator)
        kept = drop_labels(data.labels[index], config["eta"], network.null_label, generator).to(device)
        noise = _random.randn((size, 1, 28, 28), like=images, generator=generator)
        t = _random.rand((size,), like=images, generator=generator)
        return conditional_flow_matching_loss(
            lambda x, time: network(x, time, kept), path, images[index.to(device)], x0=noise, t=t
        )

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description=description)
    return TrainingRun(history.losses)


def _train_unet(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    return train_pixel_flow(model, config, device, progress, "U-Net")


CFG_UNET = Recipe(
    name="mnist-cfg-unet",
    description="class-conditional U-Net flow on MNIST with label dropout, for classifier-free guidance",
    config={
        "model": "UNet",
        "channels": [16, 32, 64],
        "layers": 2,
        "embedding_dim": 64,
        "path": "linear",
        "steps": 3500,
        "batch_size": 128,
        "lr": 2e-3,
        "eta": 0.1,
        "seed": 0,
        "evaluation": {"guidance_scales": [1.0, 2.0, 3.0], "steps": 20, "per_class": 100},
    },
    build=_build_unet,
    train=_train_unet,
    evaluate=guidance_quality,
    uses=(CLASSIFIER,),
)
