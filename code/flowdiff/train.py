"""Retrain a shipped checkpoint from its recipe: ``python -m flowdiff.train NAME`` (Chapters 10 and 11).

    python -m flowdiff.train --list                 # the recipes and the state of their checkpoints
    python -m flowdiff.train mnist-cfg-unet         # retrain, evaluate, then replace the checkpoint
    python -m flowdiff.train mnist-classifier --device cuda
    python -m flowdiff.train mnist-cfg-unet --evaluate   # measure the shipped weights again, no training
    python -m flowdiff.train mnist-vae              # an autoencoder; the latent flows that name it become stale
    torchrun --nproc_per_node=8 -m flowdiff.train mnist-cfg-unet   # eight GPUs (or CPU processes) of one machine

The checkpoint and its manifest entry are replaced only when training and
evaluation have finished; an interrupted run leaves the old files as they were.
Under ``torchrun`` (one machine or several, ``--nnodes``) every rank trains its
share of each batch with ``DistributedDataParallel`` (``nccl`` on GPUs, ``gloo``
on CPUs), rank 0 alone evaluates and writes, and a crash of any rank leaves
the old checkpoint as it was (:mod:`flowdiff.distributed`).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from flowdiff import distributed
from flowdiff.artifacts import LoadedCheckpoint, Recipe, checkpoint_status, evaluate_checkpoint, read_manifest, train_checkpoint


def run(
    recipe: Recipe, directory: str | os.PathLike, device: str | torch.device | None = None, progress: bool | None = None
) -> LoadedCheckpoint:
    """Train ``recipe`` as ``python -m flowdiff.train`` does: in one process, or as one rank of a torchrun job,
    joining and leaving the process group described by torchrun's environment variables (Chapter 10)."""
    distributed.start()
    try:
        return train_checkpoint(recipe, directory, device=device, progress=progress)
    finally:
        distributed.stop()


def main(argv: list[str] | None = None) -> int:
    from flowdiff.recipes import RECIPES  # here, not at the top: `run` alone (a test's ranks) need not import every model

    parser = argparse.ArgumentParser(prog="python -m flowdiff.train", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=sorted(RECIPES), help="the checkpoint to retrain")
    parser.add_argument("--list", action="store_true", help="list the recipes and the state of their checkpoints")
    parser.add_argument("--directory", default="assets/checkpoints", help="checkpoint folder (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--evaluate", action="store_true", help="only measure the quality of the shipped weights again")
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        manifest = read_manifest(args.directory)
        for name, recipe in sorted(RECIPES.items()):
            seconds = manifest.get(name, {}).get("training", {}).get("seconds")
            took = f", trained in {seconds:.0f} s" if seconds is not None else ""
            print(f"{name:26s} {checkpoint_status(recipe, args.directory):9s} {recipe.description}{took}")
        return 0
    if args.evaluate:
        result = evaluate_checkpoint(RECIPES[args.name], args.directory)
        print(f"{args.name}: quality {result.entry['quality']}")
        return 0
    result = run(RECIPES[args.name], args.directory, device=args.device, progress=True)
    if not result.entry:  # a rank other than 0: rank 0 reports
        return 0
    training = result.entry["training"]
    print(f"{args.name}: trained on {training['device']} in {training['seconds']:.0f} s; quality {result.entry['quality']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
