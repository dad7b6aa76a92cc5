"""The class-conditional diffusion transformer (DiT) flow on MNIST pixels, the U-Net's rival of Chapter 17.

Same data, path, label dropout, batch, steps, learning-rate schedule and
seed as ``mnist-cfg-unet`` (:func:`~flowdiff.recipes.unet.train_pixel_flow`):
only the network differs. Patches of 4 × 4 pixels make 7 × 7 = 49 tokens,
and a width of 128 with 4 blocks puts one evaluation at about the U-Net's
multiply-adds (42 against 45 million), so equal steps are equal training compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from flowdiff.artifacts import Recipe, TrainingRun
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.recipes.evaluation import guidance_quality
from flowdiff.recipes.unet import CFG_UNET, train_pixel_flow
from flowdiff.transformer import DiT

__all__ = ["CFG_DIT"]


def _build_dit(config: Mapping[str, Any]) -> nn.Module:
    return DiT(
        image_size=28,
        channels=1,
        patch_size=config["patch_size"],
        width=config["width"],
        depth=config["depth"],
        heads=config["heads"],
        num_classes=10,
        position=config["position"],
        conditioning=config["conditioning"],
    )


def _train_dit(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    return train_pixel_flow(model, config, device, progress, "DiT")


_SHARED = {key: CFG_UNET.config[key] for key in ("path", "steps", "batch_size", "eta", "seed")}

CFG_DIT = Recipe(
    name="mnist-cfg-dit",
    description="class-conditional diffusion transformer (DiT) flow on MNIST with label dropout, trained as mnist-cfg-unet",
    config={
        "model": "DiT",
        "patch_size": 4,
        "width": 128,
        "depth": 4,
        "heads": 4,
        "position": "sincos",
        "conditioning": "adaln-zero",
        **_SHARED,
        "lr": 5e-3,
        "evaluation": {"guidance_scales": [1.0, 1.5, 2.0], "steps": 20, "per_class": 100},
    },
    build=_build_dit,
    train=_train_dit,
    evaluate=guidance_quality,
    uses=(CLASSIFIER,),
)
