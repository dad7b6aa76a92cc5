"""The judge: the MNIST classifier whose accuracy and features score generated digits (Chapter 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdiff import _random
from flowdiff.artifacts import Recipe, TrainingRun
from flowdiff.data import load_mnist
from flowdiff.distributed import per_rank_batch
from flowdiff.models import MNISTClassifier
from flowdiff.training import train

__all__ = ["CLASSIFIER"]


def _build_classifier(config: Mapping[str, Any]) -> nn.Module:
    return MNISTClassifier(feature_dim=config["feature_dim"])


def _shift(images: Tensor, generator: torch.Generator, pixels: int) -> Tensor:
    """Translate a batch by a random offset of at most ``pixels`` in each direction (augmentation)."""
    # An offset in {0, …, 2p} shifted by -p: on the CPU, the very draws the old offset in [-p, p] gave.
    dx, dy = (_random.randint(2 * pixels + 1, (2,), generator=generator) - pixels).tolist()
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


def _train_classifier(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    data = load_mnist(train=True)
    images, labels = data.images.to(device), data.labels.to(device)
    steps = config["epochs"] * len(data) // config["batch_size"]
    size = per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(len(data), (size,), device=device, generator=generator)
        batch = _shift(images[index], generator, config["shift"])
        return F.cross_entropy(network(batch), labels[index])

    history = train(model, loss_fn, steps, lr=config["lr"], seed=config["seed"], progress=progress, description="classifier")
    return TrainingRun(history.losses)


@torch.no_grad()
def _evaluate_classifier(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    test = load_mnist(train=False)
    predictions = torch.cat([model(chunk).argmax(1) for chunk in test.images.split(1000)])
    return {"test_accuracy": round((predictions == test.labels).double().mean().item(), 4)}


CLASSIFIER = Recipe(
    name="mnist-classifier",
    description="MNIST classifier that judges generated digits (accuracy, Fréchet distance of its features)",
    config={"model": "MNISTClassifier", "feature_dim": 128, "epochs": 3, "batch_size": 128, "lr": 1e-3, "shift": 2, "seed": 0},
    build=_build_classifier,
    train=_train_classifier,
    evaluate=_evaluate_classifier,
)
