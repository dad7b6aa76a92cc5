"""Benchmark classifier-free guidance on MNIST (Chapter 10): scale w x solver steps -> judged quality.

    python tools/benchmark_guidance.py      # or: make benchmark-digits

Loads the shipped checkpoints (`mnist-cfg-unet` and the judge `mnist-classifier`;
it never trains), draws 100 digits of every class for each guidance scale and
step count from the same noise, and measures the fraction the judge classifies
as their label and the Frechet distance of the judge's features to the 10,000
test images (`flowdiff.sweeps.guidance_sweep`). The test set's own distance to
a disjoint half of itself is reported as the floor.

Target (issue 5): at <= 20 solver steps and the best w, >= 98 % of the 1,000
digits are classified as their label. Writes assets/benchmarks/digits-guidance.json
(the table Chapter 10 shows; committed with the checkpoints it measures) and
_build/benchmarks/digits-guidance.md, prints the table, and exits with status 1
if the target is missed.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

from flowdiff.artifacts import load_or_train, read_manifest
from flowdiff.metrics import frechet_distance
from flowdiff.recipes import CFG_UNET, CLASSIFIER, mnist_test_features
from flowdiff.sweeps import guidance_sweep

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "assets" / "checkpoints"
RESULT = ROOT / "assets" / "benchmarks" / "digits-guidance.json"
REPORT = ROOT / "_build" / "benchmarks" / "digits-guidance.md"
SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)
STEPS = (5, 10, 20)
PER_CLASS = 100
TARGET_ACCURACY = 0.98
TARGET_MAX_STEPS = 20


def main() -> int:
    unet = load_or_train(CFG_UNET, CHECKPOINTS, allow_training=False)
    judge = load_or_train(CLASSIFIER, CHECKPOINTS, allow_training=False).model
    reference = mnist_test_features(judge)
    halves = torch.randperm(reference.shape[0], generator=torch.Generator().manual_seed(0)).chunk(2)
    rows = guidance_sweep(unet.model, judge, reference, SCALES, STEPS, per_class=PER_CLASS)
    eligible = [r for r in rows if r.steps <= TARGET_MAX_STEPS]
    best = max(eligible, key=lambda r: (r.accuracy, -r.steps))
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "checkpoint": {"name": CFG_UNET.name, "sha256": unet.entry["sha256"]},
        "judge": {"name": CLASSIFIER.name, "test_accuracy": read_manifest(CHECKPOINTS)[CLASSIFIER.name]["quality"]["test_accuracy"]},
        "samples": 10 * PER_CLASS,
        "method": "euler",
        "frechet_floor": frechet_distance(reference[halves[0]], reference[halves[1]]),
        "rows": [r.__dict__ for r in rows],
        "best": best.__dict__,
        "meets_target": best.accuracy >= TARGET_ACCURACY,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")

    lines = [f"MNIST, classifier-free guidance, Euler, {result['samples']} digits per cell ({result['machine']}).", "",
             "| w | steps | field evaluations | NFE | accuracy | Frechet distance | seconds |",
             "|---|---|---|---|---|---|---|"]
    # A guided field evaluation runs the network twice (conditional and unconditional); w = 1 skips the second.
    lines += [f"| {r.guidance_scale:g} | {r.steps} | {r.evaluations} | {r.evaluations * (1 if r.guidance_scale == 1 else 2)} | "
              f"{100 * r.accuracy:.1f} % | {r.frechet:.2f} | {r.seconds:.0f} |" for r in rows]
    lines += ["", f"Floor (test set against itself): Frechet distance {result['frechet_floor']:.2f}.",
              f"Best at <= {TARGET_MAX_STEPS} steps: w = {best.guidance_scale:g}, {best.steps} steps, "
              f"{100 * best.accuracy:.1f} % (target >= {100 * TARGET_ACCURACY:.0f} %: "
              f"{'met' if result['meets_target'] else 'MISSED'})."]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
