r"""The recipes of the checkpoints the book ships (Chapter 10).

- ``mnist-classifier``: :class:`~flowdiff.models.MNISTClassifier`, the judge
  of generated digits (its test accuracy is in the manifest).
- ``mnist-cfg-unet``: a class-conditional :class:`~flowdiff.models.UNet`
  trained by conditional flow matching on the linear path with label
  dropout ``η`` (Chapter 8, eq. ``eq-guide-dropout``), ready for
  classifier-free guidance.

``python -m flowdiff.train NAME`` retrains either from its configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdiff.artifacts import Recipe, TrainingRun, load_or_train
from flowdiff.data import load_mnist
from flowdiff.guidance import drop_labels
from flowdiff.losses import conditional_flow_matching_loss
from flowdiff.metrics import guidance_sweep
from flowdiff.models import MNISTClassifier, UNet
from flowdiff.paths import LinearPath
from flowdiff.training import train

__all__ = ["CLASSIFIER", "CFG_UNET", "RECIPES", "test_features"]


# --- the judge ------------------------------------------------------------------------------

def _build_classifier(config: Mapping[str, Any]) -> nn.Module:
    return MNISTClassifier(feature_dim=config["feature_dim"])


def _shift(images: Tensor, generator: torch.Generator, pixels: int) -> Tensor:
    """Translate a batch by a random offset of at most ``pixels`` in each direction (augmentation)."""
    dx, dy = torch.randint(-pixels, pixels + 1, (2,), generator=generator).tolist()
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


def _train_classifier(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None) -> TrainingRun:
    data = load_mnist(train=True)
    images, labels = data.images.to(device), data.labels.to(device)
    steps = config["epochs"] * len(data) // config["batch_size"]

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = torch.randint(len(data), (config["batch_size"],), generator=generator).to(device)
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


@torch.no_grad()
def test_features(classifier: nn.Module) -> Tensor:
    """The classifier's features of the 10,000 MNIST test images, the reference of the Fréchet distance."""
    classifier.eval()
    return torch.cat([classifier.features(chunk) for chunk in load_mnist(train=False).images.split(1000)])


# --- the class-conditional flow -------------------------------------------------------------

def _build_unet(config: Mapping[str, Any]) -> nn.Module:
    return UNet(
        channels=tuple(config["channels"]),
        layers=config["layers"],
        num_classes=10,
        embedding_dim=config["embedding_dim"],
    )


def _train_unet(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None) -> TrainingRun:
    data = load_mnist(train=True)
    images, labels = data.images.to(device), data.labels.to(device)
    path = LinearPath()
    size = config["batch_size"]

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = torch.randint(len(data), (size,), generator=generator)
        kept = drop_labels(data.labels[index], config["eta"], network.null_label, generator).to(device)
        noise = torch.randn((size, 1, 28, 28), generator=generator).to(device)
        t = torch.rand(size, generator=generator).to(device)
        return conditional_flow_matching_loss(
            lambda x, time: network(x, time, kept), path, images[index.to(device)], x0=noise, t=t
        )

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="U-Net")
    return TrainingRun(history.losses)


def _evaluate_unet(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    judge = load_or_train(CLASSIFIER, directory).model
    evaluation = config["evaluation"]
    rows = guidance_sweep(
        model, judge, test_features(judge), evaluation["guidance_scales"], [evaluation["steps"]], evaluation["per_class"]
    )
    return {
        "judge": CLASSIFIER.name,
        "samples": 10 * evaluation["per_class"],
        "method": "euler",
        "steps": evaluation["steps"],
        "by_guidance_scale": [
            {"guidance_scale": r.guidance_scale, "accuracy": round(r.accuracy, 4), "frechet": round(r.frechet, 3)} for r in rows
        ],
    }


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
    evaluate=_evaluate_unet,
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (CLASSIFIER, CFG_UNET)}
