r"""Train-or-load: heavy results cached as verified checkpoints (Chapter 10).

A :class:`Recipe` says how to build, train and evaluate a model from a
configuration (a JSON-serialisable mapping). Its checkpoint is two things
in one folder:

- ``NAME.safetensors``: the model's tensors (safetensors holds raw
  tensors only, so loading never unpickles, i.e. never runs, anything);
- an entry ``NAME`` in ``manifest.json``: the configuration and its hash,
  the file's SHA-256, the library versions, the device and wall time of
  training, the loss curve and the quality measured after training.

:func:`load_or_train` loads the checkpoint when the hash of the recipe's
configuration equals the manifest's and the file's SHA-256 matches;
otherwise it trains (on a GPU when there is one). The new file is written
to a temporary name and moved into place only after training and
evaluation have succeeded, so a failed or interrupted run never replaces a
good checkpoint.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "Recipe",
    "TrainingRun",
    "LoadedCheckpoint",
    "config_hash",
    "file_sha256",
    "read_manifest",
    "checkpoint_status",
    "load_or_train",
    "train_checkpoint",
    "evaluate_checkpoint",
]

MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupted or not matching its recipe. The message says how to retrain."""


@dataclass(frozen=True)
class TrainingRun:
    """What a recipe's training returns: the loss of every step, for the manifest's curve."""

    losses: list[float]


@dataclass(frozen=True)
class Recipe:
    """How to make one checkpoint (Chapter 10).

    Attributes:
        name: the checkpoint's name, also its file name and CLI argument.
        description: one line for ``python -m flowdiff.train --list``.
        config: JSON-serialisable settings; their hash keys the checkpoint.
        build: ``build(config) -> model``, untrained.
        train: ``train(model, config, device, progress, directory) -> TrainingRun``, in place;
            ``directory`` lets it load the checkpoints it builds on (a latent flow's autoencoder).
        evaluate: ``evaluate(model, config, directory) -> dict`` of quality figures, run without autograd;
            ``directory`` lets it load other checkpoints (a judge classifier).
        requires: names of checkpoints in the same folder whose weights this one is built on (a latent
            flow's autoencoder). Their SHA-256 values are recorded at training time, and the checkpoint
            is stale once any of them is replaced, even by a run of the same configuration.
    """

    name: str
    description: str
    config: Mapping[str, Any]
    build: Callable[[Mapping[str, Any]], nn.Module]
    train: Callable[[nn.Module, Mapping[str, Any], torch.device, bool | None, Path], TrainingRun]
    evaluate: Callable[[nn.Module, Mapping[str, Any], Path], dict[str, Any]]
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model in evaluation mode with its manifest entry, and whether this call trained it."""

    model: nn.Module
    entry: dict[str, Any]
    trained: bool


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the configuration as canonical JSON (sorted keys), first 16 hex digits."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    except TypeError as error:
        raise ValueError(f"config must be JSON-serialisable: {error}") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The manifest of a checkpoint folder, ``{}`` when there is none yet."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers see the old file or the new one."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(descriptor)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes the file private; a checkpoint is an ordinary file
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _retrain_hint(name: str) -> str:
    return f"retrain it with `python -m flowdiff.train {name}` (see the manifest for how long that takes)"


def _check_recipe(recipe: Recipe) -> None:
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a flowdiff.artifacts.Recipe, got {type(recipe).__name__}")


def checkpoint_status(recipe: Recipe, directory: str | os.PathLike) -> str:
    """``"ok"``, ``"missing"``, ``"stale"`` (configuration or a required checkpoint changed) or ``"corrupted"`` (SHA-256 differs)."""
    _check_recipe(recipe)
    manifest = read_manifest(directory)
    entry = manifest.get(recipe.name)
    path = Path(directory) / f"{recipe.name}.safetensors"
    if entry is None or not path.exists():
        return "missing"
    if entry["config_hash"] != config_hash(recipe.config):
        return "stale"
    built_on = entry.get("requires", {})
    if any(built_on.get(name) != manifest.get(name, {}).get("sha256") for name in recipe.requires):
        return "stale"
    if file_sha256(path) != entry["sha256"]:
        return "corrupted"
    return "ok"


def _load(recipe: Recipe, directory: Path, entry: dict[str, Any]) -> nn.Module:
    from safetensors.torch import load_file

    path = directory / f"{recipe.name}.safetensors"
    model = recipe.build(recipe.config)
    try:
        model.load_state_dict(load_file(path), strict=True)
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"{path} does not fit the model its recipe builds ({error}); {_retrain_hint(recipe.name)}"
        ) from None
    return model.eval()


def _device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.machine()}, {torch.get_num_threads()} threads"


def train_checkpoint(
    recipe: Recipe, directory: str | os.PathLike, device: str | torch.device | None = None, progress: bool | None = None
) -> LoadedCheckpoint:
    """Train ``recipe`` from its configuration, evaluate it, and only then replace its checkpoint and manifest entry.

    Args:
        recipe: what to train.
        directory: the checkpoint folder (created if missing).
        device: where to train; a GPU when one is available, else the CPU.
        progress: show progress bars; ``None`` shows them only in a terminal.
    """
    from safetensors.torch import save_file

    _check_recipe(recipe)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = recipe.build(recipe.config).to(device)
    start = time.perf_counter()
    run = recipe.train(model, recipe.config, device, progress, directory)
    seconds = time.perf_counter() - start
    model = model.cpu().eval()
    with torch.no_grad():
        quality = recipe.evaluate(model, recipe.config, directory)
    requires = {name: read_manifest(directory)[name]["sha256"] for name in recipe.requires}
    tensors = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    path = directory / f"{recipe.name}.safetensors"
    _write_atomically(path, lambda temporary: save_file(tensors, str(temporary)))
    stride = max(1, len(run.losses) // 200)
    entry = {
        "file": path.name,
        "sha256": file_sha256(path),
        "config": dict(recipe.config),
        "config_hash": config_hash(recipe.config),
        "description": recipe.description,
        "parameters": sum(p.numel() for p in model.parameters()),
        "bytes": path.stat().st_size,
        "training": {
            "device": _device_description(device),
            "seconds": round(seconds, 1),
            "loss_every": stride,
            "losses": [round(sum(run.losses[i : i + stride]) / len(run.losses[i : i + stride]), 5) for i in range(0, len(run.losses), stride)],
        },
        "quality": quality,
        **({"requires": requires} if requires else {}),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "flowdiff": sys.modules["flowdiff"].__version__,
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_entry(directory, recipe.name, entry)
    return LoadedCheckpoint(model, entry, trained=True)


def _write_entry(directory: Path, name: str, entry: dict[str, Any]) -> None:
    manifest = read_manifest(directory)
    manifest[name] = entry
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _write_atomically(directory / MANIFEST, lambda temporary: temporary.write_text(text))


def evaluate_checkpoint(recipe: Recipe, directory: str | os.PathLike) -> LoadedCheckpoint:
    """Measure the quality of a verified checkpoint again and record it in the manifest; the weights are untouched.

    For when a quality measure changed, not the model: the entry's
    ``quality`` is replaced and ``evaluated`` records when.
    """
    loaded = load_or_train(recipe, directory, allow_training=False)
    with torch.no_grad():
        quality = recipe.evaluate(loaded.model, recipe.config, Path(directory))
    entry = dict(loaded.entry, quality=quality)
    entry["evaluated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    _write_entry(Path(directory), recipe.name, entry)
    return LoadedCheckpoint(loaded.model, entry, trained=False)


def load_or_train(
    recipe: Recipe,
    directory: str | os.PathLike,
    allow_training: bool = True,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> LoadedCheckpoint:
    """Load the checkpoint of ``recipe`` when it matches, train it otherwise (Chapter 10, Algorithm ``alg-digits-train-or-load``).

    Args:
        recipe: the model's recipe.
        directory: the checkpoint folder, e.g. ``assets/checkpoints``.
        allow_training: when ``False``, a missing or stale checkpoint raises
            :class:`CheckpointError` instead of starting a long training run.
        device: where to train if training is needed.
        progress: show progress bars while training.

    Raises:
        CheckpointError: the file's SHA-256 differs from the manifest's
            (corrupted), or its tensors do not fit the model, or training
            is needed and not allowed. The message says how to retrain.
    """
    _check_recipe(recipe)
    directory = Path(directory)
    status = checkpoint_status(recipe, directory)
    if status == "ok":
        entry = read_manifest(directory)[recipe.name]
        return LoadedCheckpoint(_load(recipe, directory, entry), entry, trained=False)
    if status == "corrupted":
        raise CheckpointError(
            f"{directory / recipe.name}.safetensors does not match the SHA-256 in {directory / MANIFEST} "
            f"(corrupted or replaced by hand); {_retrain_hint(recipe.name)}"
        )
    if not allow_training:
        reason = "its configuration or a checkpoint it is built on changed" if status == "stale" else "there is none"
        raise CheckpointError(f"no usable checkpoint {recipe.name!r} in {directory} ({reason}); {_retrain_hint(recipe.name)}")
    return train_checkpoint(recipe, directory, device, progress)
