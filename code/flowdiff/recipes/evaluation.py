"""What the recipes' evaluators share: the judge, its features of the test digits, and guided-sample quality (Chapters 10 and 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from flowdiff.artifacts import load_or_train
from flowdiff.data import load_mnist
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.sweeps import guidance_sweep

__all__ = ["load_judge", "mnist_test_features", "guidance_quality"]


def load_judge(directory: Path) -> nn.Module:
    """The judge classifier of an evaluation, loaded only: training it here, under ``no_grad``, would fail after the run."""
    return load_or_train(CLASSIFIER, directory, allow_training=False).model


@torch.no_grad()
def mnist_test_features(classifier: nn.Module) -> Tensor:
    """The classifier's features of the 10,000 MNIST test images, the reference of the Fréchet distance."""
    classifier.eval()
    return torch.cat([classifier.features(chunk) for chunk in load_mnist(train=False).images.split(1000)])


def guidance_quality(model: nn.Module, config: Mapping[str, Any], directory: Path, **images: Any) -> dict[str, Any]:
    """The judged accuracy and Fréchet distance over the configured guidance scales; ``images`` as in :func:`~flowdiff.sweeps.guidance_sweep`."""
    judge = load_judge(directory)
    evaluation = config["evaluation"]
    rows = guidance_sweep(
        model, judge, mnist_test_features(judge), evaluation["guidance_scales"], [evaluation["steps"]], evaluation["per_class"], **images
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
