r"""Training on several processes: ``torchrun`` and ``DistributedDataParallel`` (Chapter 10).

``torchrun --nproc_per_node=N -m flowdiff.train NAME`` starts ``N`` copies
of the training command (per machine; ``--nnodes`` adds machines). Each
copy, a *rank*, reads its place from the environment variables torchrun
sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``) and joins one process group: ``nccl`` on GPUs, ``gloo``
on CPUs. Without those variables everything here describes a single
process, and training runs exactly as before.

The rule that makes ``N`` ranks train the model one process would train on
the combined batch:

- each rank draws its own share of every batch, ``B / N`` examples, from a
  generator seeded with :func:`rank_seed` (rank 0 keeps the single-process
  stream, the others are offset so no two ranks draw the same data);
- :func:`data_parallel` wraps the loss in ``DistributedDataParallel``,
  which averages the gradients of the ranks during ``backward()``: the
  mean of ``N`` per-rank mean losses over ``B / N`` examples is the mean
  loss over the ``B`` examples, so every rank takes the step that one
  process takes on the whole batch;
- rank 0 alone evaluates the model and writes the checkpoint
  (:func:`flowdiff.artifacts.train_checkpoint`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "launched_by_torchrun",
    "start",
    "stop",
    "rank_and_world_size",
    "default_device",
    "per_rank_batch",
    "rank_seed",
    "data_parallel",
    "mean_over_ranks",
]

LossFunction = Callable[[nn.Module, torch.Generator], Tensor]


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def start() -> None:
    """Join the process group torchrun describes: ``nccl`` when this machine has GPUs, ``gloo`` otherwise.

    Does nothing for a single process or when the group exists already.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, number of ranks)``; ``(0, 1)`` for a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_device() -> torch.device:
    """Where this rank trains by default: its own GPU (``LOCAL_RANK``) when there are GPUs, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if launched_by_torchrun() else torch.cuda.current_device())


def per_rank_batch(batch_size: int) -> int:
    """This rank's share ``B / N`` of a global batch of ``batch_size`` examples.

    Raises:
        ValueError: ``batch_size`` is not a multiple of the number of ranks
            (unequal shares would weigh the ranks' examples unequally).
    """
    _, world_size = rank_and_world_size()
    if batch_size % world_size != 0:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the number of ranks, {world_size}")
    return batch_size // world_size


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s data generator: ``seed`` itself for rank 0 (a single process draws as
    before), and a hash of ``(seed, rank)`` for the others.

    The hash is reduced to 32 bits because a CPU generator (Mersenne Twister) uses only the low 32 bits
    of its seed: ``seed + rank * 2**32`` would give every rank the same stream.
    """
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    if rank == 0:
        return seed
    digest = hashlib.sha256(f"flowdiff data of rank {rank}, seed {seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class _LossOfBatch(nn.Module):
    """The loss as a module, so that all of a step's use of the model (``forward``, ``encode``, …) runs inside
    ``DistributedDataParallel``'s forward, which is what prepares its gradient averaging."""

    def __init__(self, model: nn.Module, loss_fn: LossFunction) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, generator: torch.Generator) -> Tensor:
        return self.loss_fn(self.model, generator)


def data_parallel(model: nn.Module, loss_fn: LossFunction) -> Callable[[torch.Generator], Tensor]:
    """``generator -> loss`` of one step: plain ``loss_fn(model, generator)`` for a single process, and under
    torchrun the same loss inside ``DistributedDataParallel``, whose ``backward()`` averages the ranks' gradients.

    Every parameter must take part in every step's loss (``find_unused_parameters`` is off, as it costs an
    extra pass over the graph per step); the device test of the recipes checks that each shipped recipe's
    step gives every parameter a gradient.
    """
    if rank_and_world_size()[1] == 1:
        return lambda generator: loss_fn(model, generator)
    device = next(model.parameters()).device
    wrapped = DistributedDataParallel(
        _LossOfBatch(model, loss_fn),
        device_ids=[device.index] if device.type == "cuda" else None,
    )
    return wrapped


def mean_over_ranks(value: Tensor) -> Tensor:
    """The mean of a scalar over all ranks (the loss of the combined batch); ``value`` itself for one process."""
    _, world_size = rank_and_world_size()
    if world_size == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world_size
