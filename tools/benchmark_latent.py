"""Benchmark latent against pixel-space generation of MNIST digits (Chapter 11).

    python tools/benchmark_latent.py      # or: make benchmark-latent

Loads the shipped checkpoints (it never trains): the pixel-space U-Net of
Chapter 10 (`mnist-cfg-unet`), the latent flow of Chapter 11
(`mnist-latent-cfg`) with its autoencoder (`mnist-vae`), and the judge
(`mnist-classifier`). For each guidance scale both draw 100 digits of every
class from the same settings (Euler, 20 steps, classifier-free guidance); the
judge measures the fraction classified as their label and the Frechet
distance of its features to the 10,000 test images. The latent model's time
includes decoding. Both run on the same CPU threads, one after the other.

Target (issue 7): at w = 2 the latent model's accuracy is within 2 points of
the pixel model's, at less than half its sampling time. Writes
assets/benchmarks/latent-vs-pixel.json (the table of Chapter 11; committed with
the checkpoints it measures) and _build/benchmarks/latent-vs-pixel.md, prints
the table, and exits with status 1 if the target is missed.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

from flowdiff.artifacts import load_or_train
from flowdiff.recipes import CFG_UNET, CLASSIFIER, LATENT_CFG, VAE_RECIPE, mnist_test_features
from flowdiff.sweeps import guidance_sweep

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "assets" / "checkpoints"
RESULT = ROOT / "assets" / "benchmarks" / "latent-vs-pixel.json"
REPORT = ROOT / "_build" / "benchmarks" / "latent-vs-pixel.md"
SCALES = (1.0, 2.0)
STEPS = 20
PER_CLASS = 100
TARGET_SCALE = 2.0
TARGET_GAP_POINTS = 2.0
TARGET_TIME_RATIO = 0.5


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> int:
    pixel = load_or_train(CFG_UNET, CHECKPOINTS, allow_training=False)
    latent = load_or_train(LATENT_CFG, CHECKPOINTS, allow_training=False)
    autoencoder = load_or_train(VAE_RECIPE, CHECKPOINTS, allow_training=False)
    judge = load_or_train(CLASSIFIER, CHECKPOINTS, allow_training=False).model
    reference = mnist_test_features(judge)
    space = latent.model.space(autoencoder.model)
    rows = []
    for name, model, extra in (
        ("pixel", pixel.model, {}),
        ("latent", latent.model, {"shape": (space.dim,), "decode": space.decode}),
    ):
        for r in guidance_sweep(model, judge, reference, SCALES, [STEPS], per_class=PER_CLASS, **extra):
            rows.append({"model": name, "guidance_scale": r.guidance_scale, "accuracy": r.accuracy, "frechet": r.frechet,
                         "seconds_per_1000": 1000 * r.seconds / (10 * PER_CLASS)})
    at = {row["model"]: row for row in rows if row["guidance_scale"] == TARGET_SCALE}
    gap = 100 * (at["pixel"]["accuracy"] - at["latent"]["accuracy"])
    ratio = at["latent"]["seconds_per_1000"] / at["pixel"]["seconds_per_1000"]
    vae = autoencoder.model
    result = {
        "settings": {"guidance_scales": list(SCALES), "steps": STEPS, "method": "euler", "samples": 10 * PER_CLASS,
                     "device": f"cpu: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"},
        "checkpoints": {c.entry["file"].removesuffix(".safetensors"): c.entry["sha256"] for c in (pixel, latent, autoencoder)},
        "models": {
            "pixel": {"parameters": pixel.entry["parameters"], "training_seconds": pixel.entry["training"]["seconds"]},
            "latent": {"parameters_flow": latent.entry["parameters"], "parameters_decoder": _parameters(vae.decoder),
                       "parameters_encoder": _parameters(vae.encoder), "training_seconds_flow": latent.entry["training"]["seconds"],
                       "training_seconds_autoencoder": autoencoder.entry["training"]["seconds"]},
        },
        "rows": rows,
        "target": {"guidance_scale": TARGET_SCALE, "pixel_accuracy": at["pixel"]["accuracy"], "latent_accuracy": at["latent"]["accuracy"],
                   "accuracy_gap_points": gap, "time_ratio": ratio,
                   "met": gap <= TARGET_GAP_POINTS and ratio < TARGET_TIME_RATIO},
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")

    lines = [f"MNIST, pixel-space U-Net vs latent flow, Euler {STEPS} steps, {10 * PER_CLASS} digits per row ({result['settings']['device']}).", "",
             "| model | w | accuracy | Frechet distance | seconds per 1000 |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['guidance_scale']:g} | {100 * r['accuracy']:.1f} % | {r['frechet']:.2f} | {r['seconds_per_1000']:.2f} |" for r in rows]
    lines += ["", f"At w = {TARGET_SCALE:g}: accuracy gap {gap:.1f} points (target <= {TARGET_GAP_POINTS:g}), "
              f"time ratio {ratio:.3f} (target < {TARGET_TIME_RATIO:g}): {'met' if result['target']['met'] else 'MISSED'}."]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if result["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
