"""Likelihoods of the book's MNIST models (Chapter 15).

    OMP_NUM_THREADS=1 python tools/benchmark_likelihood.py [--digits N]

Loads the shipped checkpoints (it never trains) and measures, with
flowdiff.likelihood, one section after another (the JSON is rewritten after
each, so a long run can be watched and an interrupted one keeps what it did):

- latent: the exact log-likelihood (exact divergence, Dormand-Prince) of
  standardised test codes under the unconditional latent flows with the
  independent and the optimal-transport coupling (Chapter 14) and under the
  class-conditional latent flow at guidance scales 1, 2, 3 (Chapter 11),
  beside the sample quality their manifests record;
- tolerance: bits per dimension of a few dequantised test digits under the
  pixel U-Net (null label, Hutchinson) against the solver's tolerance;
- out_of_distribution: bits per dimension of images the book makes from
  MNIST (blank, constant grey, smoothed, inverted, shrunk to half size, a
  vertical bar, random bytes) and of the test ones and eights;
- guidance: bits per dimension of test digits under the pixel U-Net's
  guided field at w = 1, 2, 3 with their true labels, beside the judged
  accuracy and Frechet distance of the manifest;
- pixel: bits per dimension of the first N test digits (default 1,000)
  under the pixel U-Net's unconditional field (null label), dequantised,
  Hutchinson's estimator with one Rademacher probe, dopri5 at rtol = atol
  = 1e-5, with the wall time and the process's CPU time it took (the
  issue's target: 1,000 digits in 10 minutes; on a shared machine the CPU
  time of the single-threaded process is the fair measure).

Writes assets/benchmarks/likelihood-mnist.json with the SHA-256 of every
checkpoint it used; Chapter 15 checks them against the checkpoints it loads.
`--sections NAME ...` reruns only the named sections and keeps the others
of the existing file (which must have measured the same checkpoints).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from flowdiff.artifacts import LoadedCheckpoint, load_or_train
from flowdiff.data import ImageDataset, load_mnist
from flowdiff.guidance import ClassifierFreeGuidance
from flowdiff.likelihood import PIXEL_SCALE, bits_per_dimension, dequantize, log_likelihood
from flowdiff.recipes import CFG_UNET, LATENT_CFG, LATENT_INDEPENDENT, LATENT_OT, VAE_RECIPE

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "assets" / "checkpoints"
RESULT = ROOT / "assets" / "benchmarks" / "likelihood-mnist.json"
PIXELS = 784
RTOL = ATOL = 1e-5
PROBE_KIND = "rademacher"
BATCH = 100
LATENT_CODES = 500
TOLERANCE_DIGITS = 10
TOLERANCES = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
OOD_IMAGES = 20
GUIDANCE_DIGITS = 20
GUIDANCE_SCALES = (1.0, 2.0, 3.0)
TARGET_DIGITS = 1000
TARGET_SECONDS = 600.0


def _on_grid(images: Tensor) -> Tensor:
    """Round images to the 8-bit grid ``b / 127.5 − 1``."""
    return ((images + 1) * PIXEL_SCALE).round().clamp(0, 255) / PIXEL_SCALE - 1


def vertical_bar(like: Tensor) -> Tensor:
    """A white vertical bar, two pixels wide and 16 high, in the middle of a black image: the simplest "1"."""
    bar = -torch.ones_like(like)
    bar[:, :, 6:22, 13:15] = 1
    return bar


def _transforms(test_images: Tensor, test_labels: Tensor, count: int, generator: torch.Generator) -> dict[str, Tensor]:
    """Images made from MNIST test digits: the digits, and what a density model may wrongly prefer."""
    digits = test_images[:count]
    box = torch.ones(1, 1, 3, 3) / 9
    return {
        "test digits": digits,
        "test ones": test_images[test_labels == 1][:count],
        "test eights": test_images[test_labels == 8][:count],
        "blank": -torch.ones_like(digits),
        "constant grey": _on_grid(torch.zeros_like(digits)),
        # Padded with the background value, so that the border stays black.
        "smoothed digits": _on_grid(F.conv2d(F.pad(digits, (1, 1, 1, 1), value=-1), box)),
        "shrunk digits": _on_grid(F.pad(F.avg_pool2d(digits, 2), (7, 7, 7, 7), value=-1)),
        "vertical bar": vertical_bar(digits),
        "inverted digits": -digits,
        "random bytes": _on_grid(torch.randint(0, 256, digits.shape, generator=generator) / PIXEL_SCALE - 1),
    }


def _summary(values: Tensor) -> dict[str, float]:
    return {"mean": values.mean().item(), "standard_error": (values.std() / math.sqrt(values.numel())).item() if values.numel() > 1 else 0.0}


def _pixel_bits(field: Callable[..., Tensor], images: Tensor, labels: Tensor, generator: torch.Generator, **solver: Any) -> tuple[Tensor, int]:
    """Bits per dimension of dequantised images, batch by batch; returns the values and the mean NFE per batch."""
    values, evaluations = [], []
    for chunk, chunk_labels in zip(images.split(BATCH), labels.split(BATCH)):
        result = log_likelihood(field, dequantize(chunk, generator), chunk_labels, divergence="hutchinson",
                                probe_kind=PROBE_KIND, generator=generator, **solver)
        values.append(bits_per_dimension(result.log_likelihood, PIXELS))
        evaluations.append(result.evaluations)
    return torch.cat(values), round(sum(evaluations) / len(evaluations))


def _guided(model: torch.nn.Module, scale: float) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    def field(x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        return ClassifierFreeGuidance(model, labels, model.null_label, scale).drift(x, t)
    return field


def _write(result: dict[str, Any]) -> None:
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULT.relative_to(ROOT)}", flush=True)


def _latent_section(runs: dict[str, LoadedCheckpoint], codes: Tensor, labels: Tensor) -> list[dict[str, Any]]:
    rows = []
    for name in (LATENT_INDEPENDENT.name, LATENT_OT.name):
        start = time.perf_counter()
        result = log_likelihood(runs[name].model, codes, rtol=RTOL, atol=ATOL)
        quality = runs[name].entry["quality"]["by_steps"][-1]
        rows.append({"model": name, "guidance_scale": None, "nll": _summary(-result.log_likelihood), "evaluations": result.evaluations,
                     "seconds": time.perf_counter() - start, "frechet": quality["frechet"], "accuracy": None,
                     "quality_steps": quality["steps"]})
        print(rows[-1], flush=True)
    cfg = runs[LATENT_CFG.name]
    for scale in GUIDANCE_SCALES:
        start = time.perf_counter()
        result = log_likelihood(_guided(cfg.model, scale), codes, labels, rtol=RTOL, atol=ATOL)
        quality = next(r for r in cfg.entry["quality"]["by_guidance_scale"] if r["guidance_scale"] == scale)
        rows.append({"model": LATENT_CFG.name, "guidance_scale": scale, "nll": _summary(-result.log_likelihood),
                     "evaluations": result.evaluations, "seconds": time.perf_counter() - start,
                     "frechet": quality["frechet"], "accuracy": quality["accuracy"], "quality_steps": cfg.entry["quality"]["steps"]})
        print(rows[-1], flush=True)
    return rows


def _tolerance_section(unet: LoadedCheckpoint, test: ImageDataset, null: Tensor, generator: torch.Generator) -> dict[str, Any]:
    digits, rows = test.images[:TOLERANCE_DIGITS], []
    for tolerance in TOLERANCES:
        start = time.perf_counter()
        values, evaluations = _pixel_bits(unet.model, digits, null[:TOLERANCE_DIGITS], torch.Generator().manual_seed(1), rtol=tolerance, atol=tolerance)
        rows.append({"rtol": tolerance, "bits_per_dim": _summary(values), "evaluations": evaluations, "seconds": time.perf_counter() - start})
        print(rows[-1], flush=True)
    for steps in (10, 50):
        values, evaluations = _pixel_bits(unet.model, digits, null[:TOLERANCE_DIGITS], torch.Generator().manual_seed(1), method="heun", steps=steps)
        rows.append({"heun_steps": steps, "bits_per_dim": _summary(values), "evaluations": evaluations})
        print(rows[-1], flush=True)
    return {"digits": TOLERANCE_DIGITS, "rows": rows}


def _ood_section(unet: LoadedCheckpoint, test: ImageDataset, null: Tensor, generator: torch.Generator) -> dict[str, Any]:
    rows = []
    for name, images in _transforms(test.images, test.labels, OOD_IMAGES, torch.Generator().manual_seed(2)).items():
        values, evaluations = _pixel_bits(unet.model, images, null[:OOD_IMAGES], generator, rtol=RTOL, atol=ATOL)
        rows.append({"images": name, "bits_per_dim": _summary(values), "evaluations": evaluations})
        print(rows[-1], flush=True)
    return {"images_per_row": OOD_IMAGES, "rows": rows}


def _guidance_section(unet: LoadedCheckpoint, test: ImageDataset) -> dict[str, Any]:
    """The same dequantised digits and the same probes at every guidance scale, so that differences are paired."""
    images = dequantize(test.images[:GUIDANCE_DIGITS], torch.Generator().manual_seed(3))
    labels, quality = test.labels[:GUIDANCE_DIGITS], unet.entry["quality"]
    rows, conditional = [], None
    for scale in GUIDANCE_SCALES:
        result = log_likelihood(_guided(unet.model, scale), images, labels, divergence="hutchinson", probe_kind=PROBE_KIND,
                                generator=torch.Generator().manual_seed(4), rtol=RTOL, atol=ATOL)
        values = bits_per_dimension(result.log_likelihood, PIXELS)
        conditional = values if conditional is None else conditional
        measured = next(r for r in quality["by_guidance_scale"] if r["guidance_scale"] == scale)
        rows.append({"guidance_scale": scale, "bits_per_dim": _summary(values), "minus_first_scale": _summary(values - conditional),
                     "evaluations": result.evaluations, "accuracy": measured["accuracy"], "frechet": measured["frechet"],
                     "quality_steps": quality["steps"]})
        print(rows[-1], flush=True)
    return {"digits": GUIDANCE_DIGITS, "rows": rows}


def _pixel_section(unet: LoadedCheckpoint, test: ImageDataset, null: Tensor, generator: torch.Generator, digits: int, result: dict[str, Any]) -> dict[str, Any]:
    """The bits-per-dimension figure, written after every batch so that a long run can be watched."""
    values, evaluations, start, cpu_start = [], [], time.perf_counter(), time.process_time()
    for begin in range(0, digits, BATCH):
        end = min(begin + BATCH, digits)
        chunk, nfe = _pixel_bits(unet.model, test.images[begin:end], null[begin:end], generator, rtol=RTOL, atol=ATOL)
        values.append(chunk)
        evaluations.append(nfe)
        bits = torch.cat(values)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        # On a shared machine the wall time depends on the other processes; the process's own CPU time
        # (one thread) is what the same run costs on one idle core.
        projected = TARGET_DIGITS * cpu_seconds / bits.numel()
        result["pixel"] = {"digits": bits.numel(), "bits_per_dim": _summary(bits), "evaluations_per_batch": evaluations,
                           "seconds": seconds, "seconds_per_digit": seconds / bits.numel(),
                           "cpu_seconds": cpu_seconds, "cpu_seconds_per_digit": cpu_seconds / bits.numel(),
                           "target": {"digits": TARGET_DIGITS, "seconds": TARGET_SECONDS, "projected_cpu_seconds": projected,
                                      "met": bits.numel() >= TARGET_DIGITS and projected <= TARGET_SECONDS}}
        _write(result)
        print(result["pixel"], flush=True)
    return result["pixel"]


SECTIONS = ("latent", "tolerance", "out_of_distribution", "guidance", "pixel")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=TARGET_DIGITS, help="test digits of the bits-per-dimension figure")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to (re)run")
    arguments = parser.parse_args()
    torch.manual_seed(0)
    runs = {recipe.name: load_or_train(recipe, CHECKPOINTS, allow_training=False)
            for recipe in (CFG_UNET, VAE_RECIPE, LATENT_CFG, LATENT_INDEPENDENT, LATENT_OT)}
    unet = runs[CFG_UNET.name]
    test = load_mnist(train=False)
    generator = torch.Generator().manual_seed(0)
    checkpoints = {name: run.entry["sha256"] for name, run in runs.items()}
    result: dict[str, Any] = json.loads(RESULT.read_text()) if set(arguments.sections) != set(SECTIONS) else {}
    if result and result["checkpoints"] != checkpoints:
        raise RuntimeError(f"{RESULT} measured other checkpoints: rerun every section")
    result |= {
        "settings": {"divergence": "hutchinson", "probes": 1, "probe_kind": PROBE_KIND, "method": "dopri5", "rtol": RTOL, "atol": ATOL,
                     "dequantisation": "uniform", "pixel_scale": PIXEL_SCALE, "batch_size": BATCH, "latent_codes": LATENT_CODES,
                     "device": f"cpu: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"},
        "checkpoints": checkpoints,
        "published": {"ffjord_mnist_bits_per_dim": 0.99, "realnvp_mnist_bits_per_dim": 1.06, "glow_mnist_bits_per_dim": 1.05},
    }
    null = torch.full((test.labels.shape[0],), unet.model.null_label, dtype=torch.long)
    for section in arguments.sections:
        if section == "latent":
            with torch.no_grad():
                latent_cfg = runs[LATENT_CFG.name].model
                space = latent_cfg.space(runs[VAE_RECIPE.name].model)
                codes, code_labels = space.encode(test.images[:LATENT_CODES]), test.labels[:LATENT_CODES]
            for name in (LATENT_INDEPENDENT.name, LATENT_OT.name):
                model = runs[name].model
                if not (torch.equal(model.latent_mean, latent_cfg.latent_mean) and torch.equal(model.latent_std, latent_cfg.latent_std)):
                    raise RuntimeError(f"{name} standardises the codes differently from {LATENT_CFG.name}: their likelihoods are not comparable")
            result["latent"] = _latent_section(runs, codes, code_labels)
        elif section == "tolerance":
            result["tolerance"] = _tolerance_section(unet, test, null, generator)
        elif section == "out_of_distribution":
            result["out_of_distribution"] = _ood_section(unet, test, null, generator)
        elif section == "guidance":
            result["guidance"] = _guidance_section(unet, test)
        else:
            result["pixel"] = _pixel_section(unet, test, null, generator, arguments.digits, result)
        _write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
