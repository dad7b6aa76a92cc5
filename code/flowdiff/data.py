r"""MNIST as tensors (Chapter 10).

The root folder comes from the ``FLOWDIFF_DATA`` environment variable,
and is ``data/`` (relative to the working directory) otherwise.
torchvision looks for ``<root>/MNIST/raw/`` and downloads the four files
only where they are missing.

Images are scaled from bytes ``{0, …, 255}`` to ``[-1, 1]``
(eq. ``eq-digits-scaling``), so that the data and the noise ``N(0, I)``
a flow starts from have comparable scales.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from flowdiff import _random

__all__ = ["ImageDataset", "data_root", "load_mnist", "to_unit_interval", "binarise", "binary_images"]


@dataclass(frozen=True)
class ImageDataset:
    """Images of shape ``(n, 1, 28, 28)`` in ``[-1, 1]`` and their labels, a long tensor of shape ``(n,)``."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A uniformly drawn minibatch ``(images, labels)`` of ``size`` samples (with replacement)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        index = _random.randint(len(self), (size,), like=self.labels, generator=generator)
        return self.images[index], self.labels[index]


def data_root() -> Path:
    """The folder that holds (or receives) ``MNIST/raw/``: ``$FLOWDIFF_DATA`` or ``data/``."""
    return Path(os.environ.get("FLOWDIFF_DATA", "data"))


def to_unit_interval(images: Tensor) -> Tensor:
    """Map images from ``[-1, 1]`` back to ``[0, 1]`` for display, clamping what a sampler overshoots."""
    return ((images + 1) / 2).clamp(0, 1)


@lru_cache(maxsize=2)
def _load(root: str, train: bool) -> ImageDataset:
    from torchvision.datasets import MNIST

    dataset = MNIST(root=root, train=train, download=True)
    images = dataset.data.to(torch.float32)[:, None] / 127.5 - 1
    return ImageDataset(images=images, labels=dataset.targets.to(torch.long))


def load_mnist(train: bool = True) -> ImageDataset:
    """The MNIST training set (60,000 images) or test set (10,000), scaled to ``[-1, 1]`` (eq. ``eq-digits-scaling``)."""
    if not isinstance(train, bool):
        raise ValueError(f"train must be a bool, got {type(train).__name__}")
    return _load(str(data_root()), train)


def binarise(images: Tensor, threshold: float = 0.0) -> Tensor:
    """Images ``(n, c, h, w)`` in ``[-1, 1]`` as binary tokens ``(n, c h w)``: 1 where a pixel exceeds ``threshold`` (Chapter 18).

    Pixels are read row by row; ``threshold = 0`` is mid-grey. Returns a long tensor on the images' device.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError("images must be a floating-point tensor of shape (n, c, h, w)")
    if not -1 <= threshold < 1:
        raise ValueError(f"threshold must lie in [-1, 1), got {threshold}")
    return (images > threshold).flatten(1).long()


def binary_images(tokens: Tensor, height: int = 28, width: int = 28) -> Tensor:
    """Binary tokens ``(n, h w)`` back to one-channel images ``(n, 1, h, w)`` with values ``±1``, in float32 (Chapter 18)."""
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.shape[1] != height * width:
        raise ValueError(f"tokens must have shape (n, {height * width})")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > 1):
        raise ValueError("tokens must be binary (0 or 1)")
    return (2.0 * tokens.float() - 1.0).reshape(-1, 1, height, width)

