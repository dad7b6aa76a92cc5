"""Random draws on any device: how a ``torch.Generator`` and a device meet.

Every random number in the package comes from the functions of this module,
so that one rule holds everywhere:

    **The draw is made on the generator's device, then moved to the device
    of the result.** Without a generator, the draw is made directly on the
    result's device, from that device's global generator.

Why this rule: a ``torch.Generator`` lives on one device, and PyTorch
refuses a CPU generator for a draw on ``cuda``. The book seeds its figures
with CPU generators (``torch.Generator().manual_seed(0)``); drawing on the
generator's device means that the same seed gives the *same numbers* on
every device, so a chapter run on a GPU reproduces the CPU figures, and a
test can compare a CUDA run with the CPU run draw for draw. The price is a
copy from host to device per draw, which is small next to a network's
forward pass; a caller who wants draws made on the GPU passes a generator
that lives there (``torch.Generator(device="cuda")``), and the rule then
keeps those draws on the GPU.

The result's device and dtype come from ``like`` (a tensor whose device and
dtype the draw should share), or from ``device`` / ``dtype`` given
explicitly; with neither, from the generator's device (CPU when there is
no generator) and the default dtype.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["randn", "rand", "randint", "multinomial"]

Device = torch.device | str | None


def _placement(
    like: Tensor | None, device: Device, dtype: torch.dtype | None, generator: torch.Generator | None
) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of the result: explicit arguments first, then ``like``, then the generator."""
    if device is None:
        device = like.device if like is not None else (generator.device if generator is not None else "cpu")
    if dtype is None:
        dtype = like.dtype if like is not None else torch.get_default_dtype()
    return torch.device(device), dtype


def _draw_device(result_device: torch.device, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else result_device


def _floating(
    draw: Callable[..., Tensor], shape: Sequence[int], like: Tensor | None, device: Device,
    dtype: torch.dtype | None, generator: torch.Generator | None,
) -> Tensor:
    """A floating-point draw (``torch.randn`` or ``torch.rand``) made under the module's rule."""
    result_device, result_dtype = _placement(like, device, dtype, generator)
    draws = draw(tuple(shape), generator=generator, dtype=result_dtype, device=_draw_device(result_device, generator))
    return draws.to(result_device)


def randn(
    shape: Sequence[int],
    *,
    like: Tensor | None = None,
    device: Device = None,
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Standard normal draws of the given ``shape`` (see the module's rule for the device)."""
    return _floating(torch.randn, shape, like, device, dtype, generator)


def rand(
    shape: Sequence[int],
    *,
    like: Tensor | None = None,
    device: Device = None,
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniform draws on ``[0, 1)`` of the given ``shape`` (see the module's rule for the device)."""
    return _floating(torch.rand, shape, like, device, dtype, generator)


def randint(
    high: int,
    shape: Sequence[int],
    *,
    like: Tensor | None = None,
    device: Device = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Integers uniform on ``{0, …, high − 1}``, dtype ``long``, on ``like``'s device (or ``device``)."""
    result_device, _ = _placement(like, device, torch.long, generator)
    draw_device = _draw_device(result_device, generator)
    draws = torch.randint(high, tuple(shape), generator=generator, device=draw_device)
    return draws.to(result_device)


def multinomial(weights: Tensor, samples: int, *, generator: torch.Generator | None = None) -> Tensor:
    """``samples`` indices drawn with replacement with probabilities ``weights`` (shape ``(k,)``), on ``weights``' device."""
    draw_device = _draw_device(weights.device, generator)
    indices = torch.multinomial(weights.to(draw_device), samples, replacement=True, generator=generator)
    return indices.to(weights.device)
