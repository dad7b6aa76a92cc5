"""Training under torchrun (flowdiff.distributed, flowdiff.train.run): two CPU processes with gloo train a
tiny recipe (a) to the model one process trains on the combined batch, and (b) leave the shipped
checkpoint byte-identical when one of them dies mid-run."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from torch import nn

from flowdiff.artifacts import Recipe, TrainingRun, file_sha256, read_manifest, train_checkpoint
from flowdiff.distributed import per_rank_batch, rank_and_world_size, rank_seed
from flowdiff.training import train

WORLD_SIZE = 2
CONFIG = {"batch_size": 16, "steps": 30, "seed": 3}


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed data set of 256 points, the same in every process."""
    inputs = torch.randn(256, 4, generator=torch.Generator().manual_seed(0), device="cpu", dtype=torch.float32)
    return inputs, torch.sin(inputs.sum(dim=1, keepdim=True))


def tiny_recipe(combine_ranks: int = 1, die_at_step: int | None = None) -> Recipe:
    """A small network fitted to ``regression_data``, each rank drawing its share of a batch of 16.

    ``combine_ranks = 2`` is the single-process reference: one batch made of the shares the two ranks
    would draw, from the two ranks' generators. ``die_at_step`` makes rank 1 exit abruptly at that step.
    """

    def build(config) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 32, dtype=torch.float32), nn.Tanh(), nn.Linear(32, 1, dtype=torch.float32))

    def train_fn(model: nn.Module, config, device, progress, directory) -> TrainingRun:
        inputs, targets = regression_data()
        share = per_rank_batch(config["batch_size"]) // combine_ranks
        others = [torch.Generator().manual_seed(rank_seed(config["seed"], rank)) for rank in range(1, combine_ranks)]
        steps = []

        def loss_fn(network: nn.Module, generator: torch.Generator) -> torch.Tensor:
            steps.append(1)
            if die_at_step is not None and len(steps) == die_at_step and rank_and_world_size()[0] == 1:
                os._exit(17)  # a crash, without any clean-up
            index = torch.cat([torch.randint(256, (share,), generator=g, device="cpu") for g in (generator, *others)])
            return (network(inputs[index]) - targets[index]).square().mean()

        return TrainingRun(train(model, loss_fn, config["steps"], lr=1e-2, seed=config["seed"]).losses)

    def evaluate(model: nn.Module, config, directory) -> dict:
        inputs, targets = regression_data()
        return {"error": round(float((model(inputs) - targets).square().mean()), 6)}

    return Recipe("tiny-regression", "a test recipe", dict(CONFIG), build, train_fn, evaluate)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_main(rank: int, port: int, directory: str, die_at_step: int | None) -> None:
    """One rank, with the variables torchrun would set, running what `python -m flowdiff.train` runs."""
    from flowdiff.train import run

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE))
    run(tiny_recipe(die_at_step=die_at_step), directory, device="cpu", progress=False)


def run_two_ranks(directory: Path, die_at_step: int | None = None) -> None:
    mp.spawn(rank_main, args=(free_port(), str(directory), die_at_step), nprocs=WORLD_SIZE, join=True)


def test_two_ranks_train_the_model_one_process_trains_on_the_combined_batch(tmp_path: Path) -> None:
    """Tolerance 1e-5: the ranks' gradients are averaged by a float32 all-reduce, while the reference sums
    the same terms in another order inside one backward pass, so the two differ by float32 rounding
    (about 1e-7 relative per step; after 30 Adam steps the largest difference measured was 6e-8). Training
    on other data (ranks without gradient averaging, or drawing the same examples) moves the weights
    by 5e-3 to 8e-2."""
    run_two_ranks(tmp_path / "two-ranks")
    reference = train_checkpoint(tiny_recipe(combine_ranks=WORLD_SIZE), tmp_path / "one-process")
    distributed = load_file(tmp_path / "two-ranks" / "tiny-regression.safetensors")
    assert distributed.keys() == reference.model.state_dict().keys()
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-5, atol=1e-5, msg=name)
    moved = max((value - distributed[name]).abs().max() for name, value in tiny_recipe().build({}).state_dict().items())
    assert moved > 1e-3, "training moved the weights"
    # rank 0 recorded the loss of the combined batch, the mean over the ranks
    recorded = read_manifest(tmp_path / "two-ranks")["tiny-regression"]["training"]["losses"]
    assert recorded == pytest.approx(reference.entry["training"]["losses"], abs=1e-4)


def test_every_rank_draws_its_own_data_and_rank_0_the_single_process_data() -> None:
    draws = [torch.randint(1000, (8,), generator=torch.Generator().manual_seed(rank_seed(5, rank)), device="cpu")
             for rank in range(4)]
    assert torch.equal(draws[0], torch.randint(1000, (8,), generator=torch.Generator().manual_seed(5), device="cpu"))
    assert all(not torch.equal(draws[i], draws[j]) for i in range(4) for j in range(i))


def test_a_rank_that_dies_mid_run_leaves_the_shipped_checkpoint_untouched(tmp_path: Path) -> None:
    shipped = tmp_path / "checkpoints"
    train_checkpoint(tiny_recipe(combine_ranks=WORLD_SIZE), shipped)
    before = {path.name: file_sha256(path) for path in shipped.iterdir()}
    with pytest.raises(mp.ProcessExitedException):
        run_two_ranks(shipped, die_at_step=5)
    assert {path.name: file_sha256(path) for path in shipped.iterdir()} == before
