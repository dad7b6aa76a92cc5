"""The text-prompted flow in the VAE's latent space, with its Transformer text encoder (Chapter 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff.artifacts import Recipe, TrainingRun
from flowdiff.data import load_mnist
from flowdiff.distributed import per_rank_batch
from flowdiff.guidance import drop_labels, sample_with_guidance
from flowdiff.latent import LatentFlow, LatentSpace
from flowdiff.losses import conditional_flow_matching_loss
from flowdiff.paths import LinearPath
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.recipes.evaluation import load_judge
from flowdiff.recipes.latent import autoencoder_reference, latent_codes, latent_space
from flowdiff.recipes.vae import VAE_RECIPE
from flowdiff.text import CaptionScheme, PromptedMLPVectorField, Vocabulary, caption, caption_scheme, stroke_classes
from flowdiff.training import train

__all__ = ["PROMPTED", "training_captions", "prompt_following"]


def _build_prompted(config: Mapping[str, Any]) -> nn.Module:
    field = PromptedMLPVectorField(16, len(Vocabulary.of_captions()), hidden=config["hidden"], layers=config["layers"])
    return LatentFlow(field, 16)


def training_captions(
    digits: Tensor, thickness: Tensor, slants: Tensor, scheme: CaptionScheme, drop: float, generator: torch.Generator
) -> list[str]:
    """Random captions of training images (Chapter 13): each property left out with probability ``drop``,
    and never both properties of a held-out (digit, thickness, slant) class, so its full sentences stay unseen."""
    n = digits.shape[0]
    keep_thickness = _random.rand((n,), device=digits.device, generator=generator) >= drop
    keep_slant = _random.rand((n,), device=digits.device, generator=generator) >= drop
    variants = _random.randint(12, (n,), like=digits, generator=generator)
    coin = _random.rand((n,), device=digits.device, generator=generator) < 0.5
    held_out = set(scheme.held_out)
    captions = []
    for i in range(n):
        digit, thick, lean = int(digits[i]), int(thickness[i]), int(slants[i])
        with_thickness, with_slant = bool(keep_thickness[i]), bool(keep_slant[i])
        if (digit, thick, lean) in held_out and with_thickness and with_slant:
            with_thickness, with_slant = bool(coin[i]), not bool(coin[i])
        captions.append(caption(digit, thick if with_thickness else None, lean if with_slant else None, int(variants[i])))
    return captions


def _train_prompted(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    codes = latent_codes(model, config, directory).to(device)
    data = load_mnist(train=True)
    scheme = caption_scheme(data.images)
    thickness, slants = stroke_classes(data.images, scheme)
    vocabulary = Vocabulary.of_captions()
    path, size = LinearPath(), per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(len(codes), (size,), like=data.labels, generator=generator)
        texts = training_captions(data.labels[index], thickness[index], slants[index], scheme, config["property_drop"], generator)
        tokens = drop_labels(vocabulary.encode(texts), config["eta"], network.null_label, generator).to(device)
        noise = _random.randn((size, codes.shape[1]), like=codes, generator=generator)
        t = _random.rand((size,), like=codes, generator=generator)
        return conditional_flow_matching_loss(lambda x, time: network(x, time, tokens), path, codes[index.to(device)], x0=noise, t=t)

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="prompts")
    return TrainingRun(history.losses)


def prompt_following(
    model: nn.Module, space: LatentSpace, judge: nn.Module, scheme: CaptionScheme, triples: Sequence[tuple[int, int, int]],
    guidance_scale: float, per_prompt: int = 100, steps: int = 20, seed: int = 0,
) -> dict[str, float]:
    """How often samples for the full prompt of each (digit, thickness, slant) show the digit, the thickness class and the slant class (Chapter 13)."""
    vocabulary = Vocabulary.of_captions()
    texts = [caption(*triple) for triple in triples for _ in range(per_prompt)]
    codes = sample_with_guidance(
        model, vocabulary.encode(texts), guidance_scale, steps, (space.dim,), generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():
        images = space.decode(codes).clamp(-1, 1)
        digits = torch.cat([judge(chunk).argmax(1) for chunk in images.split(1000)])
    thickness, slants = stroke_classes(images, scheme)
    wanted = torch.tensor([triple for triple in triples for _ in range(per_prompt)], device=digits.device)
    return {
        "digit": round((digits == wanted[:, 0]).double().mean().item(), 4),
        "thickness": round((thickness == wanted[:, 1]).double().mean().item(), 4),
        "slant": round((slants == wanted[:, 2]).double().mean().item(), 4),
    }


def _evaluate_prompted(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    judge = load_judge(directory)
    space = latent_space(model, config, directory)
    scheme = caption_scheme(load_mnist(train=True).images)
    corners = [(0, 0), (2, 2), (0, 2), (2, 0)]
    seen = [(digit, *corners[(digit + 1) % 4]) for digit in range(10)]
    evaluation = config["evaluation"]
    rows = []
    for scale in evaluation["guidance_scales"]:
        rows.append({
            "guidance_scale": scale,
            "held_out": prompt_following(model, space, judge, scheme, scheme.held_out, scale, evaluation["per_prompt"], evaluation["steps"]),
            "seen": prompt_following(model, space, judge, scheme, seen, scale, evaluation["per_prompt"], evaluation["steps"]),
        })
    return {"judge": CLASSIFIER.name, "per_prompt": evaluation["per_prompt"], "steps": evaluation["steps"], "by_guidance_scale": rows}


PROMPTED = Recipe(
    name="mnist-latent-prompts",
    description="text-prompted MLP flow in the latent space of mnist-vae, with its Transformer text encoder",
    config={
        "model": "LatentFlow(PromptedMLPVectorField)",
        "autoencoder": autoencoder_reference(VAE_RECIPE),
        "hidden": 256,
        "layers": 4,
        "path": "linear",
        "steps": 10000,
        "batch_size": 256,
        "lr": 1e-3,
        "eta": 0.1,
        "property_drop": 0.25,
        "seed": 0,
        "evaluation": {"guidance_scales": [1.0, 2.0, 3.0, 4.0], "steps": 20, "per_prompt": 100},
    },
    build=_build_prompted,
    train=_train_prompted,
    evaluate=_evaluate_prompted,
    requires=(VAE_RECIPE.name,),
    uses=(VAE_RECIPE, CLASSIFIER),
)
