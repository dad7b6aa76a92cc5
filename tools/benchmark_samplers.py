"""Benchmark the flow-matching samplers of Chapter 5: toy x sampler x steps -> sliced W2, wall time.

    python tools/benchmark_samplers.py      # or: make benchmark

Trains the book's flow on each 2-D toy with the recipe of Chapter 5
(`flowdiff.training.fit_flow_matching`, default settings), then integrates
it with Euler and Heun for several step counts from the same noise and
measures the sliced 2-Wasserstein distance of the samples to held-out data
(`flowdiff.sweeps.sampler_sweep`). The noise floor, the distance between
two independent data samples of the same size, is reported beside it.

Target (issue 4): on moons, Heun with 8 steps comes within 1.5x of the
distance reached by 100 Euler steps. Writes _build/benchmarks/samplers.json
and samplers.md, prints the table, and exits with status 1 if the target is missed.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from flowdiff.distributions import Gaussian
from flowdiff.dynamics import VectorFieldODE
from flowdiff.metrics import sliced_wasserstein
from flowdiff.sweeps import sampler_sweep
from flowdiff.toy_data import toy_dataset
from flowdiff.training import fit_flow_matching

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "benchmarks"
TOYS = ("moons", "checkerboard", "spiral")
METHODS = ("euler", "heun")
STEPS = (1, 2, 4, 8, 16, 32, 100)
SAMPLES = 2000
TARGET_RATIO = 1.5


def main() -> int:
    report = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
              "samples": SAMPLES, "toys": {}}
    for name in TOYS:
        data = toy_dataset(name)
        start = time.perf_counter()
        model, history = fit_flow_matching(data, seed=0)
        training_seconds = time.perf_counter() - start
        held_out = data.sample(SAMPLES, torch.Generator().manual_seed(1))
        floor = sliced_wasserstein(data.sample(SAMPLES, torch.Generator().manual_seed(2)), held_out,
                                   generator=torch.Generator().manual_seed(0))
        rows = sampler_sweep(VectorFieldODE(model), Gaussian.isotropic(2), held_out, METHODS, STEPS, n=SAMPLES)
        report["toys"][name] = {
            "training_seconds": round(training_seconds, 1),
            "final_loss": history.losses[-1],
            "noise_floor": floor,
            "rows": [row.__dict__ for row in rows],
        }
    moons = {(r["method"], r["steps"]): r["sliced_w2"] for r in report["toys"]["moons"]["rows"]}
    ratio = moons[("heun", 8)] / moons[("euler", 100)]
    report["moons_heun8_over_euler100"] = ratio
    report["meets_target"] = ratio <= TARGET_RATIO

    lines = [f"Sliced W2 to {SAMPLES} held-out points ({SAMPLES} samples; {report['machine']}).", "",
             "| toy | sampler | steps | evaluations | sliced W2 | seconds |", "|---|---|---|---|---|---|"]
    for name, toy in report["toys"].items():
        for r in toy["rows"]:
            lines.append(f"| {name} | {r['method']} | {r['steps']} | {r['evaluations']} | "
                         f"{r['sliced_w2']:.4f} | {r['seconds']:.3f} |")
        lines.append(f"| {name} | two data samples (noise floor) | | | {toy['noise_floor']:.4f} | |")
    lines += ["", f"Moons: W2(Heun, 8 steps) / W2(Euler, 100 steps) = {ratio:.2f} "
                  f"(target <= {TARGET_RATIO}: {'met' if report['meets_target'] else 'MISSED'})."]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "samplers.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "samplers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if report["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
