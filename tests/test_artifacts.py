"""flowdiff.artifacts and the `python -m flowdiff.train` command: train-or-load with a tiny recipe,
verification by SHA-256, and nothing lost when training or evaluation fails. Then the shipped
checkpoints: they verify, and their recorded quality holds."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from flowdiff.artifacts import (
    CheckpointError,
    Recipe,
    TrainingRun,
    checkpoint_status,
    config_hash,
    evaluate_checkpoint,
    file_sha256,
    load_or_train,
    read_manifest,
    train_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "checkpoints"


def tiny_recipe(scale: float = 2.0, fail_in: str | None = None) -> Recipe:
    """A linear map trained in closed form to multiply by ``scale``; optionally failing in one phase."""

    def train(model: nn.Module, config, device, progress, directory) -> TrainingRun:
        if fail_in == "train":
            raise FloatingPointError("diverged")
        with torch.no_grad():
            model.weight.copy_(config["scale"] * torch.eye(3))
            model.bias.zero_()
        return TrainingRun([3.0, 2.0, 1.0])

    def evaluate(model: nn.Module, config, directory) -> dict:
        if fail_in == "evaluate":
            raise RuntimeError("judge missing")
        return {"error": float((model(torch.ones(1, 3)) - config["scale"]).abs().max())}

    return Recipe("tiny", "a test recipe", {"scale": scale}, lambda config: nn.Linear(3, 3), train, evaluate)


def test_train_then_load(tmp_path: Path) -> None:
    first = load_or_train(tiny_recipe(), tmp_path)
    assert first.trained and first.entry["quality"] == {"error": 0.0}
    entry = read_manifest(tmp_path)["tiny"]
    assert entry["sha256"] == file_sha256(tmp_path / "tiny.safetensors")
    assert entry["config_hash"] == config_hash({"scale": 2.0})
    assert entry["training"]["losses"] == [3.0, 2.0, 1.0] and entry["training"]["device"].startswith("cpu")
    assert {"python", "torch", "flowdiff"} <= set(entry["versions"])
    second = load_or_train(tiny_recipe(), tmp_path)
    assert not second.trained and not second.model.training
    assert torch.equal(second.model.weight, 2 * torch.eye(3))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in tmp_path.iterdir()), "permissions as for any new file"


def test_the_file_is_plain_safetensors(tmp_path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header and raw bytes: nothing to unpickle."""
    load_or_train(tiny_recipe(), tmp_path)
    raw = (tmp_path / "tiny.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert set(header) - {"__metadata__"} == {"weight", "bias"}


def test_config_hash_ignores_key_order_and_rejects_non_json() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    with pytest.raises(ValueError, match="config"):
        config_hash({"a": object()})


def test_a_changed_configuration_retrains(tmp_path: Path) -> None:
    load_or_train(tiny_recipe(2.0), tmp_path)
    assert checkpoint_status(tiny_recipe(3.0), tmp_path) == "stale"
    with pytest.raises(CheckpointError, match="python -m flowdiff.train tiny"):
        load_or_train(tiny_recipe(3.0), tmp_path, allow_training=False)
    again = load_or_train(tiny_recipe(3.0), tmp_path)
    assert again.trained and torch.equal(again.model.weight, 3 * torch.eye(3))


def test_a_corrupted_file_is_refused_with_the_way_to_retrain(tmp_path: Path) -> None:
    load_or_train(tiny_recipe(), tmp_path)
    path = tmp_path / "tiny.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert checkpoint_status(tiny_recipe(), tmp_path) == "corrupted"
    with pytest.raises(CheckpointError, match="SHA-256.*python -m flowdiff.train tiny"):
        load_or_train(tiny_recipe(), tmp_path)


def test_a_file_that_does_not_fit_the_model_is_refused(tmp_path: Path) -> None:
    load_or_train(tiny_recipe(), tmp_path)
    wider = Recipe("tiny", "", {"scale": 2.0}, lambda config: nn.Linear(3, 4), tiny_recipe().train, tiny_recipe().evaluate)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_or_train(wider, tmp_path)


@pytest.mark.parametrize("phase", ["train", "evaluate"])
def test_a_failed_run_never_replaces_a_good_checkpoint(tmp_path: Path, phase: str) -> None:
    load_or_train(tiny_recipe(2.0), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises((FloatingPointError, RuntimeError)):
        load_or_train(tiny_recipe(5.0, fail_in=phase), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert checkpoint_status(tiny_recipe(2.0), tmp_path) == "ok"


def test_evaluating_again_rewrites_only_the_quality(tmp_path: Path) -> None:
    load_or_train(tiny_recipe(), tmp_path)
    weights = (tmp_path / "tiny.safetensors").read_bytes()
    before = read_manifest(tmp_path)["tiny"]
    stricter = tiny_recipe()
    stricter = Recipe("tiny", "", stricter.config, stricter.build, stricter.train, lambda model, config, directory: {"error": -1.0})
    entry = evaluate_checkpoint(stricter, tmp_path).entry
    assert entry["quality"] == {"error": -1.0} and "evaluated" in entry
    after = read_manifest(tmp_path)["tiny"]
    assert {k: v for k, v in after.items() if k not in ("quality", "evaluated")} == {k: v for k, v in before.items() if k != "quality"}
    assert (tmp_path / "tiny.safetensors").read_bytes() == weights


def test_bad_recipe_is_named() -> None:
    with pytest.raises(ValueError, match="recipe"):
        load_or_train("mnist-cfg-unet", SHIPPED)


def test_cli_lists_the_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    from flowdiff.train import main

    assert main(["--list", "--directory", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "mnist-classifier" in out and "mnist-cfg-unet" in out
    with pytest.raises(SystemExit):
        main(["no-such-model"])


# --- the shipped checkpoints ---------------------------------------------------------------

def test_shipped_checkpoints_verify_and_are_small() -> None:
    from flowdiff.recipes import RECIPES

    for recipe in RECIPES.values():
        assert checkpoint_status(recipe, SHIPPED) == "ok", f"{recipe.name}: retrain with python -m flowdiff.train {recipe.name}"
    total = sum(p.stat().st_size for p in SHIPPED.glob("*.safetensors"))
    assert total < 30 * 2**20


def test_shipped_classifier_is_accurate_on_held_out_digits() -> None:
    """The manifest records >= 99 % test accuracy; re-measured here on the 10,000 test images."""
    from flowdiff.data import data_root, load_mnist
    from flowdiff.recipes import CLASSIFIER

    entry = read_manifest(SHIPPED)["mnist-classifier"]
    assert entry["quality"]["test_accuracy"] >= 0.99
    if not (data_root() / "MNIST" / "raw").exists():
        pytest.skip("MNIST not found: set FLOWDIFF_DATA")
    model = load_or_train(CLASSIFIER, SHIPPED, allow_training=False).model.float()
    test = load_mnist(train=False)
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in test.images.split(2000)])
    assert (predictions == test.labels).double().mean().item() == pytest.approx(entry["quality"]["test_accuracy"], abs=1e-4)


def test_a_latent_recipe_refuses_an_autoencoder_of_another_configuration() -> None:
    from flowdiff.recipes import LATENT_CFG, RECIPES, VAE_RECIPE, _autoencoder

    assert LATENT_CFG.config["autoencoder"] == {"name": VAE_RECIPE.name, "config_hash": config_hash(VAE_RECIPE.config)}
    for recipe in RECIPES.values():
        if "autoencoder" in recipe.config:
            assert recipe.config["autoencoder"]["config_hash"] == config_hash(RECIPES[recipe.config["autoencoder"]["name"]].config)
    other = dict(LATENT_CFG.config, autoencoder={"name": VAE_RECIPE.name, "config_hash": "0" * 16})
    with pytest.raises(CheckpointError, match="mnist-vae"):
        _autoencoder(other, SHIPPED)


def test_a_checkpoint_is_stale_once_a_checkpoint_it_requires_is_replaced(tmp_path: Path) -> None:
    base = tiny_recipe(2.0)
    derived = Recipe("derived", "built on tiny", {"scale": 5.0}, base.build, base.train, base.evaluate, requires=("tiny",))
    train_checkpoint(base, tmp_path)
    train_checkpoint(derived, tmp_path)
    assert read_manifest(tmp_path)["derived"]["requires"] == {"tiny": file_sha256(tmp_path / "tiny.safetensors")}
    assert checkpoint_status(derived, tmp_path) == "ok"
    train_checkpoint(base, tmp_path)  # the same weights again: nothing the derived model depends on changed
    assert checkpoint_status(derived, tmp_path) == "ok"
    train_checkpoint(tiny_recipe(3.0), tmp_path)  # other weights under the same name
    assert checkpoint_status(derived, tmp_path) == "stale"
    with pytest.raises(CheckpointError, match="built on changed"):
        load_or_train(derived, tmp_path, allow_training=False)
