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

Training never starts where it is forbidden: with ``allow_training=False``,
or wherever the environment variable ``FLOWDIFF_NO_TRAINING`` is set (the
book's build sets it), a missing or stale checkpoint raises
:class:`CheckpointError` at once, naming ``python -m flowdiff.train NAME``.
The checkpoints a recipe loads while training or evaluating (its
autoencoder, its judge) are checked *before* training starts, so a stale
one stops the run at once instead of after it. Under ``torchrun`` every
rank trains and rank 0 alone evaluates and writes (:mod:`flowdiff.distributed`).
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

from flowdiff import distributed

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
    "training_forbidden",
]

MANIFEST = "manifest.json"
NO_TRAINING = "FLOWDIFF_NO_TRAINING"


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
        uses: the recipes of every checkpoint that ``train`` or ``evaluate`` loads (the autoencoder, the
            judge classifier). Each must verify before training starts; :func:`load_or_train` trains
            them first when training is allowed.
    """

    name: str
    description: str
    config: Mapping[str, Any]
    build: Callable[[Mapping[str, Any]], nn.Module]
    train: Callable[[nn.Module, Mapping[str, Any], torch.device, bool | None, Path], TrainingRun]
    evaluate: Callable[[nn.Module, Mapping[str, Any], Path], dict[str, Any]]
    requires: tuple[str, ...] = ()
    uses: tuple["Recipe", ...] = ()


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A model in evaluation mode with its manifest entry, and whether this call trained it.

    On the ranks other than 0 of a ``torchrun`` training the entry is empty: rank 0 alone evaluates and writes.
    """

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


def training_forbidden() -> bool:
    """Whether the environment forbids training: ``FLOWDIFF_NO_TRAINING`` set to anything but ``""`` or ``"0"`` (the book's build)."""
    return os.environ.get(NO_TRAINING, "") not in ("", "0")


def _check_dependencies(recipe: Recipe, directory: Path) -> None:
    """Stop before training when a checkpoint the recipe loads is not usable, rather than after the whole run."""
    for dependency in recipe.uses:
        status = checkpoint_status(dependency, directory)
        if status != "ok":
            raise CheckpointError(
                f"{recipe.name!r} is trained or evaluated with {dependency.name!r}, whose checkpoint in {directory} is "
                f"{status}: train that first with `python -m flowdiff.train {dependency.name}`"
            )
    manifest = read_manifest(directory)
    for name in recipe.requires:
        if name not in manifest:
            raise CheckpointError(
                f"{recipe.name!r} is built on the checkpoint {name!r}, which {directory} does not have: "
                f"train that first with `python -m flowdiff.train {name}`"
            )


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

    The global generator is seeded with the configuration's ``seed`` while
    the model is built (and restored after), so a retrain starts from the
    same weights and, on the same device and library versions, reproduces
    the checkpoint bit for bit. Under ``torchrun`` every rank trains its
    share of each batch and rank 0 alone evaluates and writes.

    Args:
        recipe: what to train.
        directory: the checkpoint folder (created if missing).
        device: where to train; a GPU when one is available (this rank's GPU under torchrun), else the CPU.
        progress: show progress bars; ``None`` shows them only in a terminal.

    Raises:
        CheckpointError: training is forbidden here (``FLOWDIFF_NO_TRAINING``), or a checkpoint the recipe
            uses or is built on is not usable; raised before any training.
    """
    from safetensors.torch import save_file

    _check_recipe(recipe)
    directory = Path(directory)
    if training_forbidden():
        raise CheckpointError(f"training is forbidden here ({NO_TRAINING} is set); {_retrain_hint(recipe.name)}")
    _check_dependencies(recipe, directory)
    directory.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else distributed.default_device()
    with torch.random.fork_rng(devices=[]):  # weights are initialised on the CPU, then moved
        torch.default_generator.manual_seed(recipe.config.get("seed", 0))
        model = recipe.build(recipe.config)
    model = model.to(device)
    start = time.perf_counter()
    run = recipe.train(model, recipe.config, device, progress, directory)
    seconds = time.perf_counter() - start
    model = model.cpu().eval()
    if distributed.rank_and_world_size()[0] != 0:
        return LoadedCheckpoint(model, {}, trained=True)
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
        allow_training: when ``False``, or wherever ``FLOWDIFF_NO_TRAINING`` is set
            (the book's build), a missing or stale checkpoint raises
            :class:`CheckpointError` instead of starting a long training run.
        device: where to train if training is needed.
        progress: show progress bars while training.

    When training is allowed and needed, the checkpoints the recipe uses
    (:attr:`Recipe.uses`) are loaded or trained first.

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
    if not allow_training or training_forbidden():
        reason = "its configuration or a checkpoint it is built on changed" if status == "stale" else "there is none"
        where = f"; training is forbidden here ({NO_TRAINING} is set)" if allow_training else ""
        raise CheckpointError(
            f"no usable checkpoint {recipe.name!r} in {directory} ({reason}{where}); {_retrain_hint(recipe.name)}"
        )
    for dependency in recipe.uses:
        load_or_train(dependency, directory, allow_training=True, device=device, progress=progress)
    return train_checkpoint(recipe, directory, device, progress)
