"""The 2-D toy data sets of the book's experiments (Chapter 1): moons, circles, spiral, checkerboard, annulus, Swiss roll,
and a small Gaussian mixture with modes of different scales (:func:`uneven_blobs`).

Each is a :class:`~flowdiff.distributions.Sampleable` defined only through
its sampler. They are scaled to lie roughly in ``[-3, 3]^2``, the region
where a standard Gaussian puts almost all its mass, so that a flow from
``N(0, I)`` to any of them has comparable work to do.

Devices: the toy sets have no parameters: they sample on ``device``
(default: the generator's device, else the CPU). Every draw goes through
:mod:`flowdiff._random`, so a CPU generator gives the same samples on every
device.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_count, check_positive
from flowdiff.distributions import GaussianMixture, Sampleable

__all__ = ["Moons", "Circles", "Spiral", "Checkerboard", "Annulus", "SwissRoll", "TOY_DATASETS", "toy_dataset", "uneven_blobs"]

UNEVEN_BLOBS = {"means": [[-2.0, 0.5], [1.5, 1.0], [0.3, -1.8]], "stds": [0.4, 0.7, 0.25], "weights": [0.5, 0.3, 0.2]}


def uneven_blobs(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> GaussianMixture:
    """Three isotropic Gaussians in 2-D of unequal weights (0.5, 0.3, 0.2) and widths (0.4, 0.7, 0.25) (Chapter 1).

    Unlike the sets above it has an exact density, score and, under any
    Gaussian path, exact marginal field (Chapter 4), and its modes differ in
    scale, which makes solver and sampler errors visible. The interactive
    figures compute with the same mixture in the browser.
    """
    means = torch.tensor(UNEVEN_BLOBS["means"], dtype=dtype, device=device)
    covs = torch.stack([std**2 * torch.eye(2, dtype=dtype, device=device) for std in UNEVEN_BLOBS["stds"]])
    return GaussianMixture(means, covs, torch.tensor(UNEVEN_BLOBS["weights"], dtype=dtype, device=device))


class _Toy2D(Sampleable):
    """A 2-D toy data set, defined only through its sampler."""

    dim = 2

    def __init__(self, noise: float) -> None:
        check_positive(noise, "noise", allow_zero=True)
        self.noise = noise

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """``n`` points, shape ``(n, 2)``, in the default dtype, on ``device`` (default: the generator's device, else the CPU)."""
        check_count(n, "n")
        if device is None:
            device = generator.device if generator is not None else "cpu"
        uniform = _Uniform(generator, torch.device(device))
        clean = self._sample_clean(n, uniform)
        return clean + self.noise * _random.randn((n, 2), device=uniform.device, generator=generator)

    @abstractmethod
    def _sample_clean(self, n: int, uniform: "_Uniform") -> Tensor:
        """Points on the noise-free shape, shape ``(n, 2)``, from the uniform draws of ``uniform``."""


class _Uniform:
    """Uniform draws of a toy set on one device from one generator (see :mod:`flowdiff._random`)."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.generator, self.device = generator, device

    def __call__(self, *shape: int) -> Tensor:
        """Draws uniform on ``[0, 1)`` of the given shape, in the default dtype."""
        return _random.rand(shape, device=self.device, generator=self.generator)

    def integers(self, high: int, n: int) -> Tensor:
        """``n`` integers uniform on ``{0, …, high − 1}``."""
        return _random.randint(high, (n,), device=self.device, generator=self.generator)


class Moons(_Toy2D):
    """Two interleaving half circles (the 'moons' of scikit-learn), centred and scaled by 2."""

    def __init__(self, noise: float = 0.05) -> None:
        super().__init__(noise)

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        angle = math.pi * uniform(n)
        upper = uniform(n) < 0.5
        x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
        y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
        return 2 * (torch.stack([x, y], dim=1) - x.new_tensor([0.5, 0.25]))


class Circles(_Toy2D):
    """Two concentric circles of radii 2 and ``2 * factor``, each chosen with probability 1/2."""

    def __init__(self, noise: float = 0.05, factor: float = 0.5) -> None:
        super().__init__(noise)
        check_positive(factor, "factor")
        self.factor = factor

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        angle = 2 * math.pi * uniform(n)
        inner = uniform(n) < 0.5
        radius = torch.where(inner, 2 * self.factor, 2.0)
        return radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


class Spiral(_Toy2D):
    """An Archimedean spiral ``r ∝ θ`` with ``turns`` windings, reaching radius 2.5."""

    def __init__(self, noise: float = 0.05, turns: float = 1.5) -> None:
        super().__init__(noise)
        check_positive(turns, "turns")
        self.turns = turns

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        # sqrt makes the points uniform along the arc rather than in angle.
        fraction = torch.sqrt(uniform(n))
        angle = 2 * math.pi * self.turns * fraction
        radius = 2.5 * fraction
        return radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


class Checkerboard(_Toy2D):
    """Uniform on the dark squares of a ``squares x squares`` board covering ``[-2, 2]^2``."""

    def __init__(self, squares: int = 4, noise: float = 0.0) -> None:
        super().__init__(noise)
        check_count(squares, "squares")
        if squares < 2:
            raise ValueError(f"squares must be >= 2, got {squares}")
        self.squares = squares

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        side = 4.0 / self.squares
        cells = self.squares**2
        dark = torch.tensor([c for c in range(cells) if (c // self.squares + c % self.squares) % 2 == 0], device=uniform.device)
        cell = dark[uniform.integers(len(dark), n)]
        offset = uniform(n, 2)
        corner = torch.stack([cell % self.squares, cell // self.squares], dim=1).to(offset.dtype)
        return -2.0 + side * (corner + offset)


class Annulus(_Toy2D):
    """Uniform on the ring ``inner <= |x| <= outer``: a non-Gaussian *source* (Chapter 5)."""

    def __init__(self, inner: float = 1.0, outer: float = 1.5, noise: float = 0.0) -> None:
        super().__init__(noise)
        check_positive(inner, "inner", allow_zero=True)
        check_positive(outer, "outer")
        if outer <= inner:
            raise ValueError(f"outer must exceed inner, got inner={inner}, outer={outer}")
        self.inner, self.outer = inner, outer

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        # Uniform in area: r^2 is uniform between the squared radii.
        u = uniform(n)
        radius = torch.sqrt(self.inner**2 + u * (self.outer**2 - self.inner**2))
        angle = 2 * math.pi * uniform(n)
        return radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


class SwissRoll(_Toy2D):
    """The 2-D Swiss roll ``(s cos s, s sin s)`` for ``s`` in ``[1.5π, 4.5π]``, scaled by 1/5."""

    def __init__(self, noise: float = 0.1) -> None:
        super().__init__(noise)

    def _sample_clean(self, n: int, uniform: _Uniform) -> Tensor:
        s = 1.5 * math.pi * (1 + 2 * uniform(n))
        return torch.stack([s * torch.cos(s), s * torch.sin(s)], dim=1) / 5


TOY_DATASETS: dict[str, type[_Toy2D]] = {
    "moons": Moons,
    "circles": Circles,
    "spiral": Spiral,
    "checkerboard": Checkerboard,
    "annulus": Annulus,
    "swiss_roll": SwissRoll,
}


def toy_dataset(name: str, **kwargs: float) -> Sampleable:
    """The 2-D toy set called ``name`` (a key of ``TOY_DATASETS``), built with ``kwargs``."""
    if name not in TOY_DATASETS:
        raise ValueError(f"name must be one of {sorted(TOY_DATASETS)}, got {name!r}")
    return TOY_DATASETS[name](**kwargs)
