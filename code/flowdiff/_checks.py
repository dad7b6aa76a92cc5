"""Input validation shared by the package.

Every public function checks its arguments with these helpers so that bad
input fails early, with a ``ValueError`` that names the offending argument,
instead of deep inside a matrix product with a shape error.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_batch(x: Tensor, name: str, dim: int | None = None) -> None:
    """Require ``x`` to be a batch of vectors, shape ``(n, dim)`` with ``n >= 1``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns, got shape {tuple(x.shape)}")


def finite_scalar(value: float | Tensor, name: str) -> float:
    """``value`` as a Python number, when it is a finite number or a one-element tensor holding one."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def check_positive(value: float, name: str, allow_zero: bool = False) -> None:
    """Require a finite scalar ``value > 0`` (or ``>= 0`` with ``allow_zero``)."""
    value = finite_scalar(value, name)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")


def check_count(value: int, name: str) -> None:
    """Require a positive integer (a sample size or a number of steps)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_unit_time(t: Tensor, name: str = "t") -> None:
    """Require every entry of ``t`` to lie in ``[0, 1]`` (noise at 0, data at 1)."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.numel() and (torch.any(t < 0) or torch.any(t > 1) or not torch.all(torch.isfinite(t))):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{t.min().item():g}, {t.max().item():g}]"
        )


def check_time_grid(times: Tensor, name: str = "times") -> None:
    """Require a 1-D, finite, strictly increasing grid of at least two times."""
    if not isinstance(times, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(times).__name__}")
    if times.ndim != 1 or times.numel() < 2:
        raise ValueError(f"{name} must be 1-D with at least two entries, got shape {tuple(times.shape)}")
    if not torch.all(torch.isfinite(times)):
        raise ValueError(f"{name} must be finite")
    if not torch.all(times[1:] > times[:-1]):
        raise ValueError(f"{name} must be strictly increasing")
