"""flowdiff.artifacts and the `python -m flowdiff.train` command: train-or-load with a tiny recipe,
verification by SHA-256, and nothing lost when training or evaluation fails; the checkpoints a recipe
uses are resolved before it trains, a retrain reproduces its file, the training loop leaves the caller's
random state alone and stops on non-finite gradients, and the book's build never trains. Then the
shipped checkpoints: they verify, and their recorded quality holds; one training step of every recipe
runs at a tiny size on every device."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
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
from flowdiff.training import train

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
    # The budget of a clone's weights: 30 MiB through Part IV, 40 MiB since Part V added three 5 MB transformers
    # (Chapters 17 and 18); it is not raised silently: a new checkpoint over it must make room first.
    assert total < 40 * 2**20, f"shipped weights total {total / 2**20:.1f} MiB"


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
    from flowdiff.recipes import LATENT_CFG, RECIPES, VAE_RECIPE
    from flowdiff.recipes.latent import _autoencoder

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


# --- checkpoints a recipe uses are resolved before it trains -------------------------------------

def learned_recipe(name: str, seed: int = 0, uses: tuple[Recipe, ...] = (), evaluate=None) -> Recipe:
    """A small regression network trained by the real loop (so it needs autograd), with dropout (so it draws
    from the global generator) and random batches (so it draws from the loop's generator)."""
    inputs = torch.linspace(-1, 1, 64, device="cpu")[:, None]
    targets = torch.sin(3 * inputs)

    def build(config) -> nn.Module:
        return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))

    def train_fn(model: nn.Module, config, device, progress, directory) -> TrainingRun:
        def loss_fn(network: nn.Module, generator: torch.Generator) -> torch.Tensor:
            index = torch.randint(64, (16,), generator=generator, device=generator.device)
            return (network(inputs[index]) - targets[index]).square().mean()

        return TrainingRun(train(model, loss_fn, config["steps"], lr=1e-2, seed=config["seed"]).losses)

    def quality(model: nn.Module, config, directory) -> dict:
        return {"error": round(float((model(inputs) - targets).square().mean()), 6)}

    return Recipe(name, "a learned test recipe", {"steps": 5, "seed": seed}, build, train_fn, evaluate or quality, uses=uses)


def test_a_stale_checkpoint_a_recipe_uses_stops_it_before_training(tmp_path: Path) -> None:
    """The judge of an evaluation is resolved first: a stale one stops the run at once, never after it."""
    train_checkpoint(learned_recipe("judge", seed=0), tmp_path)
    stale_judge = learned_recipe("judge", seed=1)  # another configuration: the shipped judge is stale for it
    trained = []

    def evaluate(model, config, directory) -> dict:
        return {"judge": load_or_train(stale_judge, directory).entry["sha256"]}  # as the recipes' evaluators load their judge

    plain = learned_recipe("flow", uses=(stale_judge,), evaluate=evaluate)
    flow = Recipe(plain.name, plain.description, plain.config, plain.build,
                  lambda *args: trained.append(1) or plain.train(*args), plain.evaluate, uses=plain.uses)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="'judge'.*stale.*python -m flowdiff.train judge"):
        train_checkpoint(flow, tmp_path)
    assert time.perf_counter() - started < 5 and trained == [], "it must fail before training, not after"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # Where training is allowed, load_or_train trains the judge first (with autograd), then the flow.
    loaded = load_or_train(flow, tmp_path)
    assert loaded.trained and trained == [1]
    assert checkpoint_status(stale_judge, tmp_path) == "ok" and checkpoint_status(flow, tmp_path) == "ok"


def test_training_works_inside_no_grad() -> None:
    """train() opens autograd itself, as train_checkpoint's evaluation runs under no_grad."""
    recipe = learned_recipe("anything")
    model = recipe.build(recipe.config)
    with torch.no_grad():
        run = recipe.train(model, recipe.config, torch.device("cpu"), False, Path("."))
    assert len(run.losses) == 5


# --- reproducible retrains, the caller's random state, non-finite gradients ----------------------

def test_a_retrain_reproduces_its_checkpoint_bit_for_bit(tmp_path: Path) -> None:
    recipe = learned_recipe("tiny-net")
    torch.manual_seed(123)  # whatever state the caller's global generator is in
    train_checkpoint(recipe, tmp_path / "first")
    torch.randn(7)
    train_checkpoint(recipe, tmp_path / "second")
    assert file_sha256(tmp_path / "first" / "tiny-net.safetensors") == file_sha256(tmp_path / "second" / "tiny-net.safetensors")


def test_training_leaves_the_callers_random_state_alone() -> None:
    recipe = learned_recipe("tiny-net")
    model = recipe.build(recipe.config)
    torch.manual_seed(7)
    state = torch.random.get_rng_state()
    recipe.train(model, recipe.config, torch.device("cpu"), False, Path("."))
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_a_non_finite_loss_or_gradient_stops_training_and_keeps_the_old_parameters(what: str) -> None:
    model = nn.Linear(2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps_taken = []

    def loss_fn(network: nn.Module, generator: torch.Generator) -> torch.Tensor:
        steps_taken.append(1)
        loss = network(torch.ones(4, 2, device="cpu")).square().mean()
        if len(steps_taken) < 3:
            return loss
        if what == "loss":
            return loss * float("nan")
        # A finite loss (0 added) whose gradient is not: d sqrt(u)/du is infinite at u = 0.
        return loss + torch.sqrt((network.weight - network.weight.detach()).square().sum())

    with pytest.raises(FloatingPointError, match="step 2.*keeps the parameters"):
        train(model, loss_fn, steps=10)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


# --- the book's build never trains -------------------------------------------------------------

def test_training_is_refused_where_the_environment_forbids_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_or_train(tiny_recipe(2.0), tmp_path)
    monkeypatch.setenv("FLOWDIFF_NO_TRAINING", "1")
    with pytest.raises(CheckpointError, match="FLOWDIFF_NO_TRAINING.*python -m flowdiff.train tiny"):
        load_or_train(tiny_recipe(3.0), tmp_path)  # the default, allow_training=True, cannot override it
    with pytest.raises(CheckpointError, match="forbidden"):
        train_checkpoint(tiny_recipe(3.0), tmp_path)
    assert load_or_train(tiny_recipe(2.0), tmp_path).model is not None  # loading is fine


def test_a_stale_checkpoint_fails_a_chapter_of_the_build_in_seconds(tmp_path: Path) -> None:
    """As a chapter's kernel runs in the build: the build driver's environment, a stale manifest entry."""
    manifest = read_manifest(SHIPPED)
    manifest["mnist-cfg-unet"]["config_hash"] = "0" * 16
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    for path in SHIPPED.glob("*.safetensors"):
        (tmp_path / path.name).symlink_to(path)
    chapter = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tools")!r})
        import build_book
        build_book.forbid_training()
        from flowdiff.artifacts import load_or_train
        from flowdiff.recipes import CFG_UNET
        load_or_train(CFG_UNET, {str(tmp_path)!r})  # as book/generating-digits.md loads it
    """)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", chapter], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    assert result.returncode != 0 and "CheckpointError" in result.stderr
    assert "python -m flowdiff.train mnist-cfg-unet" in result.stderr
    assert seconds < 60, f"a stale checkpoint took {seconds:.0f} s to stop the chapter"


def test_the_build_driver_clears_the_execution_cache_when_the_package_changes(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from build_book import guard_execution_cache

    for name, text in {
        "code/flowdiff/solvers.py": "x = 1", "code/flowdiff/__pycache__/solvers.cpython-312.pyc": "bytes",
        "assets/checkpoints/manifest.json": "{}", "locales/zh_CN/LC_MESSAGES/figures.po": "a",
        "locales/zh_CN/LC_MESSAGES/book/intro.po": "b",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    cache = tmp_path / "_build" / ".jupyter_cache"

    def fill_cache() -> None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "record").write_text("executed")

    fill_cache()
    assert guard_execution_cache(tmp_path) and not cache.exists()
    for unrelated in ("code/flowdiff/__pycache__/solvers.cpython-312.pyc", "locales/zh_CN/LC_MESSAGES/book/intro.po"):
        fill_cache()
        (tmp_path / unrelated).write_text("changed")
        assert not guard_execution_cache(tmp_path) and cache.exists(), unrelated
    for relevant in ("code/flowdiff/solvers.py", "assets/checkpoints/manifest.json", "locales/zh_CN/LC_MESSAGES/figures.po"):
        fill_cache()
        (tmp_path / relevant).write_text("changed")
        assert guard_execution_cache(tmp_path) and not cache.exists(), relevant


# --- one training step of every recipe, at a tiny size, on every device ----------------------------

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here"))]
TINY_SETTINGS = {"steps": 1, "epochs": 1, "batch_size": 16, "hidden": 32, "layers": 2, "feature_dim": 16, "embedding_dim": 16,
                 # Chapter 16: a few pairs from a few teacher steps (the MNIST teacher is the shipped one).
                 # Chapters 17 and 18: one block of width 16.
                 "width": 16, "depth": 1, "heads": 2,
                 "reflow_pairs": 32, "teacher_steps": 2, "flow_map_steps": {"consistency": 1, "meanflow": 1}, "teacher": {"name": "mnist-latent-cfg", "guidance_scale": 2.0, "steps": 2, "pairs": 20}}


def tiny_version(recipe: Recipe) -> Recipe:
    """The recipe with a tiny configuration (one step, small widths), under another name: the shipped
    recipe, its configuration and so its checkpoint's hash stay as they are."""
    config = {key: TINY_SETTINGS.get(key, value) for key, value in recipe.config.items()}
    if "channels" in config:
        config["channels"] = [8] * len(config["channels"])
    return Recipe(f"{recipe.name}-tiny", recipe.description, config, recipe.build, recipe.train, recipe.evaluate,
                  recipe.requires, recipe.uses)


def stroke_digits(n: int = 16):
    """Sixteen synthetic 'digits' (bars of several widths and slants) standing in for MNIST: the step
    needs images, not the 60,000 of them, and runs where MNIST is not downloaded."""
    from flowdiff.data import ImageDataset

    images = -torch.ones(n, 1, 28, 28, device="cpu")
    for i in range(n):
        for row in range(5, 23):
            column = 10 + i % 6 + (row - 14) * (i % 3 - 1) // 4
            images[i, 0, row, column : column + 1 + i % 3] = 1.0
    return ImageDataset(images=images, labels=torch.arange(n, device="cpu") % 10)


RECIPE_NAMES = ["mnist-classifier", "mnist-cfg-unet", "mnist-vae", "mnist-vae-beta-0.1", "mnist-vae-beta-10",
                "mnist-latent-cfg", "mnist-latent-independent", "mnist-latent-ot", "mnist-latent-prompts",
                "toy-flowmaps", "mnist-latent-reflow", "mnist-latent-consistency", "mnist-latent-meanflow", "mnist-cfg-dit",
                "toy-grid-dfm", "text-masked-diffusion", "mnist-binary-cfg"]


def test_the_device_test_covers_every_recipe() -> None:
    from flowdiff.recipes import RECIPES

    assert sorted(RECIPE_NAMES) == sorted(RECIPES)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_one_training_step_of_every_recipe_runs_on_every_device(name: str, device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every parameter gets a gradient: torchrun's DistributedDataParallel needs that (flowdiff.distributed)."""
    from flowdiff import recipes
    from flowdiff.recipes import classifier, discrete_flows, flowmaps, latent, prompted, unet, vae

    shipped_hash = config_hash(recipes.RECIPES[name].config)
    for family in (classifier, unet, vae, latent, prompted, flowmaps, discrete_flows):
        monkeypatch.setattr(family, "load_mnist", lambda train=True: stroke_digits())
    recipe = tiny_version(recipes.RECIPES[name])
    model = recipe.build(recipe.config).to(device)
    run = recipe.train(model, recipe.config, torch.device(device), False, SHIPPED)  # SHIPPED: the autoencoder, read only
    networks = 10 if name == "toy-flowmaps" else 1  # toy-flowmaps trains five networks on each of two toys, one after another
    assert len(run.losses) == networks and all(map(torch.isfinite, torch.tensor(run.losses)))
    assert all(p.device.type == device for p in model.parameters())
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    assert config_hash(recipes.RECIPES[name].config) == shipped_hash and checkpoint_status(recipes.RECIPES[name], SHIPPED) == "ok"
