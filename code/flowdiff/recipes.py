r"""The recipes of the checkpoints the book ships (Chapters 10, 11, 13 and 14).

- ``mnist-classifier``: :class:`~flowdiff.models.MNISTClassifier`, the judge
  of generated digits (its test accuracy is in the manifest).
- ``mnist-cfg-unet``: a class-conditional :class:`~flowdiff.models.UNet`
  trained by conditional flow matching on the linear path with label
  dropout ``η`` (Chapter 8, eq. ``eq-guide-dropout``), ready for
  classifier-free guidance.
- ``mnist-vae`` and its KL-weight sweep ``mnist-vae-beta-0.1``,
  ``mnist-vae-beta-10``: :class:`~flowdiff.vae.VAE` (Chapter 11).
- ``mnist-latent-cfg``: a class-conditional flow on the VAE's codes (Chapter 11).
- ``mnist-latent-independent`` and ``mnist-latent-ot``: unconditional flows
  on the codes with the independent and the minibatch optimal-transport
  coupling (Chapter 14).
- ``mnist-latent-prompts``: a text-prompted flow on the codes with its
  text encoder (Chapter 13).

A latent recipe names its autoencoder and that autoencoder's configuration
hash, and requires its checkpoint: the manifest records the autoencoder's
SHA-256 the flow was trained with, so retraining the VAE makes the latent
checkpoints stale instead of silently decoding them with the wrong decoder.

``python -m flowdiff.train NAME`` retrains any of them from its configuration,
and ``torchrun --nproc_per_node=N -m flowdiff.train NAME`` on ``N`` processes:
each training loop draws its share of every batch (:func:`~flowdiff.distributed.per_rank_batch`).
Random draws are made on the CPU generator that :func:`~flowdiff.training.train`
hands over, then moved to the training device, so a batch is the same on every device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdiff import _random
from flowdiff.artifacts import CheckpointError, Recipe, TrainingRun, config_hash, load_or_train
from flowdiff.data import load_mnist
from flowdiff.coupling import pair_by_optimal_transport
from flowdiff.distributed import per_rank_batch
from flowdiff.dynamics import VectorFieldODE
from flowdiff.guidance import drop_labels, sample_with_guidance
from flowdiff.latent import LatentFlow, LatentSpace, encode_dataset
from flowdiff.losses import conditional_flow_matching_loss
from flowdiff.metrics import frechet_distance, guidance_sweep
from flowdiff.models import ConditionalMLPVectorField, MLPVectorField, MNISTClassifier, UNet
from flowdiff.paths import LinearPath
from flowdiff.solvers import simulate, time_grid
from flowdiff.text import CaptionScheme, PromptedMLPVectorField, Vocabulary, caption, caption_scheme, stroke_classes
from flowdiff.training import train
from flowdiff.vae import VAE, gaussian_kl, vae_loss

__all__ = [
    "CLASSIFIER",
    "CFG_UNET",
    "VAE_RECIPE",
    "VAE_KL_SWEEP",
    "LATENT_CFG",
    "LATENT_INDEPENDENT",
    "LATENT_OT",
    "PROMPTED",
    "RECIPES",
    "mnist_test_features",
    "training_captions",
    "prompt_following",
]


# --- the judge ------------------------------------------------------------------------------

def _build_classifier(config: Mapping[str, Any]) -> nn.Module:
    return MNISTClassifier(feature_dim=config["feature_dim"])


def _shift(images: Tensor, generator: torch.Generator, pixels: int) -> Tensor:
    """Translate a batch by a random offset of at most ``pixels`` in each direction (augmentation)."""
    # An offset in {0, …, 2p} shifted by -p: the same draws as torch.randint(-p, p + 1) on the CPU.
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


def _judge(directory: Path) -> nn.Module:
    """The judge classifier of an evaluation, loaded only: training it here, under ``no_grad``, would fail after the run."""
    return load_or_train(CLASSIFIER, directory, allow_training=False).model


@torch.no_grad()
def mnist_test_features(classifier: nn.Module) -> Tensor:
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


def _train_unet(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
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

    history = train(model, loss_fn, config["steps"], lr=config["lr"], seed=config["seed"], progress=progress, description="U-Net")
    return TrainingRun(history.losses)


def _guidance_quality(model: nn.Module, config: Mapping[str, Any], directory: Path, **images: Any) -> dict[str, Any]:
    """The judged accuracy and Fréchet distance over the configured guidance scales; ``images`` as in :func:`guidance_sweep`."""
    judge = _judge(directory)
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
    evaluate=_guidance_quality,
    uses=(CLASSIFIER,),
)


# --- the autoencoders of latent diffusion (Chapter 11) ---------------------------------------

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
    judge = _judge(directory)
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


def _autoencoder(config: Mapping[str, Any], directory: Path) -> VAE:
    """The autoencoder a latent recipe names, checked against the configuration hash it was trained with."""
    recipe = RECIPES[config["autoencoder"]["name"]]
    if config_hash(recipe.config) != config["autoencoder"]["config_hash"]:
        raise CheckpointError(f"the latent recipe was made for another configuration of {recipe.name!r}; update its config")
    return load_or_train(recipe, directory, allow_training=False).model


def _autoencoder_reference(recipe: Recipe) -> dict[str, str]:
    return {"name": recipe.name, "config_hash": config_hash(recipe.config)}


def _latent_codes(model: LatentFlow, config: Mapping[str, Any], directory: Path) -> Tensor:
    """Encode the training images with the named autoencoder and store the standardisation in ``model``."""
    codes, mean, std = encode_dataset(_autoencoder(config, directory), load_mnist(train=True).images)
    model.latent_mean.copy_(mean)
    model.latent_std.copy_(std)
    return codes


def _latent_space(model: LatentFlow, config: Mapping[str, Any], directory: Path) -> LatentSpace:
    return model.space(_autoencoder(config, directory))


# --- latent flows (Chapters 11 and 14) ------------------------------------------------------

def _build_latent_cfg(config: Mapping[str, Any]) -> nn.Module:
    return LatentFlow(ConditionalMLPVectorField(16, 10, hidden=config["hidden"], layers=config["layers"]), 16)


def _train_latent_cfg(model: nn.Module, config: Mapping[str, Any], device: torch.device, progress: bool | None, directory: Path) -> TrainingRun:
    codes = _latent_codes(model, config, directory).to(device)
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
    space = _latent_space(model, config, directory)
    return _guidance_quality(model, config, directory, shape=(space.dim,), decode=space.decode)


LATENT_CFG = Recipe(
    name="mnist-latent-cfg",
    description="class-conditional MLP flow in the 16-D latent space of mnist-vae, for classifier-free guidance",
    config={
        "model": "LatentFlow(ConditionalMLPVectorField)",
        "autoencoder": _autoencoder_reference(VAE_RECIPE),
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
    codes = _latent_codes(model, config, directory).to(device)
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
    judge = _judge(directory)
    space = _latent_space(model, config, directory)
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
            "autoencoder": _autoencoder_reference(VAE_RECIPE),
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


# --- text prompts (Chapter 13) --------------------------------------------------------------

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
    codes = _latent_codes(model, config, directory).to(device)
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
    judge = _judge(directory)
    space = _latent_space(model, config, directory)
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
        "autoencoder": _autoencoder_reference(VAE_RECIPE),
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


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (CLASSIFIER, CFG_UNET, *VAE_KL_SWEEP, LATENT_CFG, LATENT_INDEPENDENT, LATENT_OT, PROMPTED)
}
