"""Discrete flow matching and masked diffusion (Chapter 18): a 2-D toy on a grid, a character model of prose, binarised digits.

All three learn the posterior ``p_{1|t}(x_1^i | x_t)`` of the masking path
with a :class:`~flowdiff.transformer.TokenTransformer`, and each trains on
one CPU thread in under 30 minutes:

- ``toy-grid-dfm``: the moons quantised to a 32 × 32 grid, two tokens per
  point. Quality: the total variation between the sampler's histogram and
  the data's, against the number of steps, beside the floor that a fresh
  data sample of the same size reaches.
- ``text-masked-diffusion``: characters of the book's own prose (a snapshot
  in ``assets/data/book-prose.txt``, pinned by its SHA-256), trained on the
  masked-diffusion ELBO, with rotary positions (with the sine-cosine
  embedding the same network stayed near the character frequencies'
  cross-entropy for 1,600 steps). Quality: bits per character on the held-out tail,
  against the character frequencies' cross-entropy, and the share of
  sampled words that occur in the training text, against the number of steps.
- ``mnist-binary-cfg``: class-conditional binarised MNIST, 784 binary
  tokens in patches of 4 × 4, with label dropout for classifier-free
  guidance. Quality: accuracy and Fréchet distance by the book's classifier
  on the binarised scale, against the guidance scale.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff.artifacts import Recipe, TrainingRun, file_sha256
from flowdiff.characters import CharacterVocabulary, consecutive_chunks, random_chunks, split_text
from flowdiff.data import binarise, binary_images, load_mnist
from flowdiff.discrete_flows import (
    MixturePath,
    bits_per_token,
    discrete_flow_matching_loss,
    histogram,
    quantise,
    sample_discrete,
    total_variation,
)
from flowdiff.distributed import per_rank_batch
from flowdiff.guidance import drop_labels
from flowdiff.metrics import judge_samples
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.recipes.evaluation import load_judge
from flowdiff.toy_data import toy_dataset
from flowdiff.training import train
from flowdiff.transformer import TokenTransformer

__all__ = ["GRID_DFM", "TEXT_MDM", "MNIST_BINARY", "grid_tokens", "prose_corpus", "binary_test_tokens"]


def _network(config: Mapping[str, Any], vocab_size: int, grid: int | tuple[int, int], num_classes: int = 0) -> nn.Module:
    return TokenTransformer(
        vocab_size, vocab_size + 1, grid, patch_size=config.get("patch_size", 1), width=config["width"],
        depth=config["depth"], heads=config["heads"], num_classes=num_classes, position=config["position"],
    )


# --- the 2-D toy on a grid ---------------------------------------------------------------------------


def grid_tokens(config: Mapping[str, Any], n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points of the toy, quantised: long ``(n, 2)`` in ``{0, …, bins − 1}``."""
    points = toy_dataset(config["data"], noise=config["noise"]).sample(n, generator)
    return quantise(points, config["bins"], config["low"], config["high"])


def _train_grid(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    path = MixturePath(config["bins"], "mask")
    size = per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        return discrete_flow_matching_loss(network, path, grid_tokens(config, size, generator).to(device), generator=generator)

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="grid")
    return TrainingRun(history.losses)


@torch.no_grad()
def _evaluate_grid(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    evaluation, bins = config["evaluation"], config["bins"]
    path = MixturePath(bins, "mask")
    reference = histogram(grid_tokens(config, evaluation["reference"], torch.Generator().manual_seed(1)), bins)
    fresh = histogram(grid_tokens(config, evaluation["samples"], torch.Generator().manual_seed(2)), bins)
    rows = []
    for steps in evaluation["steps"]:
        tokens = sample_discrete(model, path, evaluation["samples"], 2, steps, generator=torch.Generator().manual_seed(3))
        rows.append({"steps": steps, "total_variation": round(float(total_variation(histogram(tokens, bins), reference)), 4)})
    return {
        "samples": evaluation["samples"],
        "reference_samples": evaluation["reference"],
        "data_floor": round(float(total_variation(fresh, reference)), 4),
        "by_steps": rows,
    }


GRID_DFM = Recipe(
    name="toy-grid-dfm",
    description="masked discrete flow on the moons quantised to a 32 x 32 grid (two tokens per point)",
    config={
        "model": "TokenTransformer",
        "data": "moons",
        "noise": 0.05,
        "bins": 32,
        "low": -3.5,
        "high": 3.5,
        "width": 64,
        "depth": 2,
        "heads": 4,
        "position": "sincos",
        "steps": 3000,
        "batch_size": 512,
        "lr": 3e-3,
        "seed": 0,
        "evaluation": {"steps": [1, 2, 4, 8, 16, 32, 64], "samples": 100_000, "reference": 1_000_000},
    },
    build=lambda config: _network(config, config["bins"], 2),
    train=_train_grid,
    evaluate=_evaluate_grid,
)


# --- characters of the book's prose ------------------------------------------------------------------


def prose_corpus(config: Mapping[str, Any], directory: Path) -> tuple[CharacterVocabulary, Tensor, Tensor]:
    """The vocabulary and the training and held-out tokens of the corpus next to the checkpoints (``<directory>/../data``).

    The corpus file must have the SHA-256 the recipe pins: another text would make another model.
    """
    corpus = Path(directory).parent / "data" / config["corpus"]
    if not corpus.exists():
        raise FileNotFoundError(f"the corpus {corpus} is missing (tools/make_prose_corpus.py writes it)")
    if file_sha256(corpus) != config["corpus_sha256"]:
        raise ValueError(f"{corpus} is not the text the recipe was made for (its SHA-256 differs); retrain or restore the file")
    vocabulary, tokens = CharacterVocabulary.read(corpus)
    training, held_out = split_text(tokens, config["held_out"])
    return vocabulary, training, held_out


def _train_text(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    vocabulary, training, _ = prose_corpus(config, directory)
    path = MixturePath(vocabulary.size, "mask")
    size = per_rank_batch(config["batch_size"])
    training = training.to(device)

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        x1 = random_chunks(training, config["length"], size, generator)
        return discrete_flow_matching_loss(network, path, x1, weighting=config["weighting"], generator=generator)

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="text")
    return TrainingRun(history.losses)


def _words(texts: list[str]) -> list[str]:
    return [word for text in texts for word in re.findall(r"[a-z]+", text)]


@torch.no_grad()
def _evaluate_text(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    vocabulary, training, held_out = prose_corpus(config, directory)
    evaluation, length = config["evaluation"], config["length"]
    path = MixturePath(vocabulary.size, "mask")

    def bits(tokens: Tensor) -> float:
        chunks = consecutive_chunks(tokens, length)
        generator = torch.Generator().manual_seed(0)
        total = sum(float(bits_per_token(model, path, chunk, evaluation["elbo_samples"], generator=generator)) * len(chunk)
                    for chunk in chunks.split(64))
        return total / len(chunks)

    frequencies = torch.bincount(training, minlength=vocabulary.size).double() / len(training)
    unigram = float(-frequencies.log2()[held_out].mean())
    known = set(_words([vocabulary.decode(training)]))
    rows = []
    for steps in evaluation["sample_steps"]:
        tokens = sample_discrete(model, path, evaluation["samples"], length, steps, generator=torch.Generator().manual_seed(steps))
        texts = vocabulary.decode(tokens)
        words = _words(texts)
        rows.append({
            "steps": steps,
            "known_words": round(sum(word in known for word in words) / max(len(words), 1), 4),
            "examples": texts[: evaluation["examples"]],
        })
    return {
        "held_out_characters": len(consecutive_chunks(held_out, length)) * length,
        "bits_per_character_held_out": round(bits(held_out), 4),
        "bits_per_character_training": round(bits(training[: len(held_out)]), 4),
        "bits_per_character_unigram": round(unigram, 4),
        "bits_per_character_uniform": round(math.log2(vocabulary.size), 4),
        "elbo_samples": evaluation["elbo_samples"],
        "samples": evaluation["samples"],
        "by_steps": rows,
    }


TEXT_MDM = Recipe(
    name="text-masked-diffusion",
    description="character-level masked diffusion on the book's English prose (128 characters per sequence)",
    config={
        "model": "TokenTransformer",
        "corpus": "book-prose.txt",
        "corpus_sha256": "0d6ccde3cedc168317be8ddcbfea0c26c5fd57940c72b4541a9f3f156760c142",
        "held_out": 0.1,
        "length": 128,
        "width": 128,
        "depth": 4,
        "heads": 4,
        "position": "rope",
        "weighting": "elbo",
        "steps": 1600,
        "batch_size": 64,
        "lr": 3e-3,
        "seed": 0,
        "evaluation": {"elbo_samples": 16, "sample_steps": [8, 32, 128], "samples": 64, "examples": 4},
    },
    build=lambda config: _network(config, len(CharacterVocabulary().alphabet), config["length"]),
    train=_train_text,
    evaluate=_evaluate_text,
)


# --- binarised digits ----------------------------------------------------------------------------------


def binary_test_tokens(config: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    """The binarised MNIST test set: tokens ``(10000, 784)`` and labels."""
    data = load_mnist(train=False)
    return binarise(data.images, config["threshold"]), data.labels


def _train_binary(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    data = load_mnist(train=True)
    tokens = binarise(data.images, config["threshold"]).to(device)
    path = MixturePath(2, "mask")
    size = per_rank_batch(config["batch_size"])

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        index = _random.randint(len(data), (size,), like=data.labels, generator=generator)
        kept = drop_labels(data.labels[index], config["eta"], network.null_label, generator).to(device)
        return discrete_flow_matching_loss(network, path, tokens[index.to(device)], labels=kept, generator=generator)

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="binary MNIST")
    return TrainingRun(history.losses)


@torch.no_grad()
def _evaluate_binary(model: nn.Module, config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    judge = load_judge(directory)
    evaluation = config["evaluation"]
    test_tokens, test_labels = binary_test_tokens(config)
    reference = torch.cat([judge.features(chunk) for chunk in binary_images(test_tokens).split(1000)])
    data_judgement = judge_samples(judge, binary_images(test_tokens[:1000]), test_labels[:1000], reference)
    path = MixturePath(2, "mask")
    labels = torch.arange(10, device=next(model.parameters()).device).repeat_interleave(evaluation["per_class"])
    rows = []
    for scale in evaluation["guidance_scales"]:
        tokens = sample_discrete(model, path, len(labels), 784, evaluation["steps"], labels=labels, guidance_scale=scale,
                                 generator=torch.Generator().manual_seed(0))
        judgement = judge_samples(judge, binary_images(tokens), labels, reference)
        rows.append({"guidance_scale": scale, "accuracy": round(judgement.accuracy, 4), "frechet": round(judgement.frechet, 3)})
    return {
        "judge": CLASSIFIER.name,
        "samples": len(labels),
        "method": "unmask",
        "steps": evaluation["steps"],
        "binarised_test_accuracy": round(data_judgement.accuracy, 4),
        "binarised_test_frechet": round(data_judgement.frechet, 3),
        "by_guidance_scale": rows,
    }


MNIST_BINARY = Recipe(
    name="mnist-binary-cfg",
    description="class-conditional masked diffusion on binarised MNIST (784 binary tokens) with label dropout",
    config={
        "model": "TokenTransformer",
        "threshold": 0.0,
        "patch_size": 4,
        "width": 128,
        "depth": 4,
        "heads": 4,
        "position": "sincos",
        "eta": 0.1,
        "steps": 2000,
        "batch_size": 128,
        "lr": 3e-3,
        "seed": 0,
        "evaluation": {"guidance_scales": [1.0, 2.0, 3.0], "steps": 25, "per_class": 100},
    },
    build=lambda config: _network(config, 2, (28, 28), num_classes=10),
    train=_train_binary,
    evaluate=_evaluate_binary,
    uses=(CLASSIFIER,),
)
