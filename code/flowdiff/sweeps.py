"""Experiment sweeps: sample quality against solver, step count and guidance scale (Chapters 5 and 10).

- :func:`sampler_sweep` integrates a learned flow with each solver and
  number of steps from the same source points and measures the sliced
  ``W_2`` to held-out data (:func:`~flowdiff.metrics.sliced_wasserstein`),
  the table of Chapter 5 and of ``tools/benchmark_samplers.py``;
- :func:`guidance_sweep` samples a class-conditional model with
  classifier-free guidance over scales and step counts and lets a
  classifier judge the images (:func:`~flowdiff.metrics.judge_samples`:
  accuracy and Fréchet distance), the table of Chapter 10 and of
  ``tools/benchmark_guidance.py``.

Both count the network evaluations each solver spends per step
(:data:`EVALUATIONS_PER_STEP`) and time each cell, waiting for a GPU's
queued work so that the time measures the computation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from flowdiff._checks import check_batch, check_count
from flowdiff.distributions import Sampleable
from flowdiff.dynamics import ODE
from flowdiff.guidance import sample_with_guidance
from flowdiff.metrics import judge_samples, sliced_wasserstein
from flowdiff.solvers import simulate, time_grid

__all__ = ["EVALUATIONS_PER_STEP", "SweepResult", "sampler_sweep", "GuidanceResult", "guidance_sweep"]

EVALUATIONS_PER_STEP = {"euler": 1, "heun": 2, "midpoint": 2}
"""Evaluations of the vector field per step of each solver of :func:`flowdiff.solvers.simulate`."""


def _synchronise(device: torch.device) -> None:
    """Wait for the device's queued work, so that a wall-clock time measures the computation, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class SweepResult:
    """One cell of a sampler sweep: the method, its steps and network evaluations, the distance, the time."""

    method: str
    steps: int
    evaluations: int
    sliced_w2: float
    seconds: float


def sampler_sweep(
    ode: ODE,
    source: Sampleable,
    reference: Tensor,
    methods: Sequence[str] = ("euler", "heun"),
    steps: Sequence[int] = (1, 2, 4, 8, 16, 32, 100),
    n: int = 2000,
    seed: int = 0,
    projections: int = 256,
) -> list[SweepResult]:
    """Sample quality against solver and number of steps (Chapter 5).

    For every method and step count, integrates ``ode`` from the same ``n``
    source points over ``[0, 1]`` and measures the sliced ``W_2`` of the
    result to ``reference`` (held-out data) with the same directions.

    Args:
        ode: the learned flow, e.g. ``VectorFieldODE(model)``.
        source: the initial distribution.
        reference: held-out data, shape ``(m, d)``.
        methods: solver names of :func:`flowdiff.solvers.simulate` (``"euler"``, ``"heun"``).
        steps: step counts.
        n: number of generated points.
        seed: seeds the source points and the projection directions.
        projections: directions of the sliced distance.
    """
    if not isinstance(ode, ODE):
        raise ValueError(f"ode must be a flowdiff.dynamics.ODE, got {type(ode).__name__}")
    check_batch(reference, "reference", source.dim)
    check_count(n, "n")
    unknown = [m for m in methods if m not in EVALUATIONS_PER_STEP]
    if unknown:
        raise ValueError(f"methods must be among {sorted(EVALUATIONS_PER_STEP)}, got {unknown}")
    for count in steps:
        check_count(count, "steps")
    x0 = source.sample(n, torch.Generator().manual_seed(seed)).to(reference)
    results = []
    for method in methods:
        for count in steps:
            _synchronise(x0.device)
            start = time.perf_counter()
            samples = simulate(ode, x0, time_grid(count, device=x0.device), method=method)
            _synchronise(x0.device)
            seconds = time.perf_counter() - start
            distance = sliced_wasserstein(samples, reference, projections, torch.Generator().manual_seed(seed))
            results.append(SweepResult(method, count, count * EVALUATIONS_PER_STEP[method], distance, seconds))
    return results


@dataclass(frozen=True)
class GuidanceResult:
    """One cell of a guidance sweep: scale ``w``, solver, steps, solver evaluations of the guided field, the judgement, the time.

    ``evaluations`` counts calls of the guided field; at ``w != 1`` each runs the network twice (conditional and
    unconditional, in one batch), so the network evaluations (NFE, as the book counts them) are twice as many.
    """

    guidance_scale: float
    method: str
    steps: int
    evaluations: int
    accuracy: float
    frechet: float
    seconds: float


def guidance_sweep(
    model: nn.Module,
    classifier: nn.Module,
    reference_features: Tensor,
    guidance_scales: Sequence[float],
    steps: Sequence[int],
    per_class: int = 100,
    method: str = "euler",
    seed: int = 0,
    num_classes: int = 10,
    shape: tuple[int, ...] = (1, 28, 28),
    decode: Callable[[Tensor], Tensor] | None = None,
) -> list[GuidanceResult]:
    """Classifier-judged quality of guided samples over scales ``w`` and step counts (Chapter 10).

    For each ``(w, steps)`` draws ``per_class`` samples of every class from
    the same initial noise and judges them with :func:`judge_samples`. A
    guided evaluation at ``w != 1`` runs the network on a double batch;
    ``evaluations`` counts solver evaluations of the guided field, half the
    network evaluations (NFE) at ``w != 1``. A latent
    model (Chapter 11) passes ``shape=(k,)`` and ``decode``, which maps its
    samples to images; the time then includes decoding.
    """
    check_count(per_class, "per_class")
    if method not in EVALUATIONS_PER_STEP:
        raise ValueError(f"method must be one of {sorted(EVALUATIONS_PER_STEP)}, got {method!r}")
    device = next(model.parameters()).device
    labels = torch.arange(num_classes, device=device).repeat_interleave(per_class)
    results = []
    for scale in guidance_scales:
        for count in steps:
            _synchronise(device)
            start = time.perf_counter()
            images = sample_with_guidance(
                model, labels, scale, count, shape, method=method, generator=torch.Generator().manual_seed(seed)
            )
            if decode is not None:
                with torch.no_grad():
                    images = decode(images)
            _synchronise(device)
            seconds = time.perf_counter() - start
            verdict = judge_samples(classifier, images, labels, reference_features)
            results.append(
                GuidanceResult(
                    float(scale), method, count, count * EVALUATIONS_PER_STEP[method], verdict.accuracy, verdict.frechet, seconds
                )
            )
    return results
