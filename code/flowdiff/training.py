r"""One small, readable training loop (Chapter 5, Algorithm ``alg-fm-training``).

Every model of the book is trained by the same loop: draw a batch, compute
a loss, take an Adam step. The loss function draws its own batch (so one
loop serves flow matching, score matching and denoisers alike) from the
generator it is given, which makes a run reproducible from its seed.

The progress bar (tqdm) shows in a terminal and stays silent where the
output is not a terminal, such as a notebook executed by the book's build.
Under ``torchrun`` the same loop trains on several processes
(:mod:`flowdiff.distributed`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from tqdm.std import tqdm

from flowdiff import _random, distributed
from flowdiff._checks import check_count, check_positive
from flowdiff.coupling import pair_by_optimal_transport
from flowdiff.distributions import Sampleable
from flowdiff.losses import conditional_flow_matching_loss
from flowdiff.models import MLPVectorField
from flowdiff.paths import GaussianPath, LinearPath

__all__ = ["TrainingHistory", "train", "fit_flow_matching"]

LossFunction = Callable[[nn.Module, torch.Generator], Tensor]


@dataclass
class TrainingHistory:
    """What a training run leaves behind: the loss of every step and the wall time in seconds."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def smoothed(self, window: int = 50) -> list[float]:
        """The losses averaged over a sliding ``window`` of steps (for plotting a noisy curve)."""
        check_count(window, "window")
        losses = torch.tensor(self.losses, dtype=torch.float64, device="cpu")
        if losses.numel() < window:
            return self.losses[:]
        kernel = torch.ones(1, 1, window, dtype=torch.float64, device="cpu") / window
        return torch.nn.functional.conv1d(losses[None, None], kernel)[0, 0].tolist()


@contextlib.contextmanager
def _global_rng_seeded(model: nn.Module, seed: int) -> Iterator[None]:
    """Seed the global generators (of the CPU and of the model's GPUs) for the ``with`` block and restore them after it.

    Layers such as dropout draw from the global generators; seeding them makes
    a run reproducible, restoring them leaves the caller's random state as it was.
    """
    gpus = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=gpus):
        torch.default_generator.manual_seed(seed)
        for index in gpus:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def train(
    model: nn.Module,
    loss_fn: LossFunction,
    steps: int,
    lr: float = 1e-3,
    seed: int = 0,
    final_lr_fraction: float = 0.1,
    grad_clip: float | None = 1.0,
    progress: bool | None = None,
    description: str = "training",
) -> TrainingHistory:
    """Train ``model`` in place with Adam for ``steps`` steps (Chapter 5, Algorithm ``alg-fm-training``).

    Args:
        model: the network; its parameters are updated in place.
        loss_fn: ``loss_fn(model, generator)`` draws a batch with ``generator``
            and returns the scalar loss.
        steps: number of optimisation steps.
        lr: Adam's initial learning rate, decayed along a cosine to
            ``final_lr_fraction * lr`` at the last step.
        seed: seeds the generator handed to ``loss_fn``; the global
            generators (dropout) are seeded for the run and restored after it.
        final_lr_fraction: the last learning rate as a fraction of ``lr``, in ``(0, 1]``.
        grad_clip: maximal gradient norm, or ``None`` for no clipping.
        progress: show a tqdm bar; ``None`` shows it only in a terminal.
        description: the bar's label.

    Under ``torchrun`` each rank draws its own data (:func:`~flowdiff.distributed.rank_seed`)
    and the gradients are averaged over the ranks (:func:`~flowdiff.distributed.data_parallel`).

    Returns:
        The :class:`TrainingHistory`. A loss or gradient that is not finite
        stops the run with ``FloatingPointError`` and restores the parameters
        the model had before training, so a diverged run never leaves a
        broken model behind.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable as loss_fn(model, generator)")
    check_count(steps, "steps")
    check_positive(lr, "lr")
    check_positive(final_lr_fraction, "final_lr_fraction")
    if final_lr_fraction > 1:
        raise ValueError(f"final_lr_fraction must be <= 1, got {final_lr_fraction}")
    if grad_clip is not None:
        check_positive(grad_clip, "grad_clip")

    rank, _ = distributed.rank_and_world_size()
    generator = torch.Generator().manual_seed(distributed.rank_seed(seed, rank))
    step_loss = distributed.data_parallel(model, loss_fn)
    before = copy.deepcopy(model.state_dict())
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps, eta_min=final_lr_fraction * lr)
    history = TrainingHistory()
    start = time.perf_counter()
    model.train()
    silent = rank != 0 or (None if progress is None else not progress)
    with torch.enable_grad(), _global_rng_seeded(model, distributed.rank_seed(seed, rank)), tqdm(
        total=steps, desc=description, disable=silent
    ) as bar:
        for _ in range(steps):
            loss = step_loss(generator)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            # The norm of the (rank-averaged) gradient; an infinite bound measures without clipping.
            norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip is not None else math.inf)
            if not (torch.isfinite(loss) and torch.isfinite(norm)):
                model.load_state_dict(before)
                raise FloatingPointError(
                    f"training stopped at step {len(history.losses)}: the loss is {loss.item()} and the gradient norm "
                    f"{norm.item()}; the model keeps the parameters it had before training"
                )
            optimiser.step()
            schedule.step()
            history.losses.append(distributed.mean_over_ranks(loss.detach()).item())
            bar.update()
            if bar.n % 100 == 0:
                bar.set_postfix(loss=f"{history.losses[-1]:.4f}")
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


COUPLINGS = ("independent", "optimal-transport")


def fit_flow_matching(
    data: Sampleable,
    source: Sampleable | None = None,
    path: GaussianPath | None = None,
    steps: int = 3000,
    batch_size: int = 512,
    hidden: int = 128,
    layers: int = 4,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool | None = None,
    coupling: str = "independent",
) -> tuple[MLPVectorField, TrainingHistory]:
    r"""The book's recipe for a flow on low-dimensional data (Chapter 5, Algorithm ``alg-fm-training``).

    Trains an :class:`~flowdiff.models.MLPVectorField` with the conditional
    flow matching loss (eq. ``eq-fm-cfm``) on batches of ``data`` and of
    ``source`` (``N(0, I)`` when omitted), along ``path`` (the linear path
    when omitted). ``coupling="optimal-transport"`` pairs each batch of
    source points with its data batch by minibatch optimal transport
    (Chapter 14, Algorithm ``alg-fast-ot-cfm``) instead of at random.

    Returns:
        The trained model (in evaluation mode) and its :class:`TrainingHistory`.
    """
    if not isinstance(data, Sampleable):
        raise ValueError(f"data must be a flowdiff.distributions.Sampleable, got {type(data).__name__}")
    if source is not None and (not isinstance(source, Sampleable) or source.dim != data.dim):
        raise ValueError(f"source must be a Sampleable of dimension {data.dim}")
    check_count(batch_size, "batch_size")
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    path = LinearPath() if path is None else path
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's generator untouched
        torch.default_generator.manual_seed(seed)
        model = MLPVectorField(data.dim, hidden=hidden, layers=layers)
    dtype = next(model.parameters()).dtype

    def loss_fn(network: nn.Module, generator: torch.Generator) -> Tensor:
        z = data.sample(batch_size, generator).to(dtype)
        x0 = None if source is None else source.sample(batch_size, generator).to(dtype)
        if coupling == "optimal-transport":
            x0 = _random.randn(z.shape, like=z, generator=generator) if x0 is None else x0
            x0 = pair_by_optimal_transport(x0, z)
        return conditional_flow_matching_loss(network, path, z, x0=x0, generator=generator)

    history = train(model, loss_fn, steps, lr=lr, seed=seed, progress=progress, description="flow matching")
    return model, history
