"""Retrain a shipped checkpoint from its recipe: ``python -m flowdiff.train NAME`` (Chapters 10 and 11).

    python -m flowdiff.train --list                 # the recipes and the state of their checkpoints
    python -m flowdiff.train mnist-cfg-unet         # retrain, evaluate, then replace the checkpoint
    python -m flowdiff.train mnist-classifier --device cuda
    python -m flowdiff.train mnist-cfg-unet --evaluate   # measure the shipped weights again, no training
    python -m flowdiff.train mnist-vae              # an autoencoder; the latent flows that name it become stale

The checkpoint and its manifest entry are replaced only when training and
evaluation have finished; an interrupted run leaves the old files as they were.
"""

from __future__ import annotations

import argparse
import sys

from flowdiff.artifacts import checkpoint_status, evaluate_checkpoint, read_manifest, train_checkpoint
from flowdiff.recipes import RECIPES


def main(argv: list[str] | None = None) -> int:
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
    result = train_checkpoint(RECIPES[args.name], args.directory, device=args.device, progress=True)
    training = result.entry["training"]
    print(f"{args.name}: trained on {training['device']} in {training['seconds']:.0f} s; quality {result.entry['quality']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
