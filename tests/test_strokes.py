"""flowdiff.strokes: thickness and slant of drawn bars with known width and shear, against hand counts and NumPy's weighted moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowdiff.strokes import ink, slant, stroke_thickness


def bar(width: int, top: int = 4, bottom: int = 24, left: int = 10) -> torch.Tensor:
    image = -torch.ones(1, 1, 28, 28)
    image[0, 0, top:bottom, left : left + width] = 1
    return image


@pytest.mark.parametrize("width", [1, 2, 3, 5])
def test_thickness_of_a_bar_is_two_area_over_perimeter(width: int) -> None:
    """A w × ℓ bar: area wℓ; forward differences see 2ℓ + 2w edge pixels, one of which (the corner at the
    bottom right) has both differences, counted √2 instead of 2."""
    length = 20
    perimeter = 2 * length + 2 * width - 2 + math.sqrt(2)
    expected = 2 * width * length / perimeter
    assert stroke_thickness(bar(width)).item() == pytest.approx(expected, rel=2e-3)


def test_thickness_is_translation_invariant_and_grows_with_width() -> None:
    values = [stroke_thickness(bar(w)).item() for w in range(1, 7)]
    assert all(a < b for a, b in zip(values, values[1:]))
    moved = torch.roll(bar(3), shifts=(2, -3), dims=(2, 3))
    assert stroke_thickness(moved).item() == pytest.approx(stroke_thickness(bar(3)).item(), rel=1e-6)


def sheared_bar(shear: float) -> torch.Tensor:
    image = -torch.ones(1, 1, 28, 28)
    for row in range(4, 24):
        centre = 13.5 + shear * (13.5 - row)  # columns move right as rows go up
        for column in range(28):
            overlap = max(0.0, min(column + 1, centre + 1.5) - max(column, centre - 1.5))
            image[0, 0, row, column] = 2 * overlap - 1
    return image


@pytest.mark.parametrize("shear", [-0.4, 0.0, 0.3])
def test_slant_of_a_sheared_bar_is_its_shear(shear: float) -> None:
    assert slant(sheared_bar(shear)).item() == pytest.approx(shear, abs=0.01)
    mirrored = torch.flip(sheared_bar(shear), dims=(3,))
    # Mirroring reorders the float32 sums of the moments: round-off of a few 1e-8.
    assert slant(mirrored).item() == pytest.approx(-slant(sheared_bar(shear)).item(), abs=1e-6)


@pytest.mark.usefixtures("float64")  # compares with NumPy's weighted covariance at float64 round-off
def test_slant_matches_numpy_weighted_moments() -> None:
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rows, columns = np.mgrid[0:28, 0:28]
    for image, value in zip(images, slant(images)):
        weights = ink(image[None])[0, 0].numpy().ravel()
        cov = np.cov(np.stack([columns.ravel(), rows.ravel()]), aweights=weights, bias=True)
        assert value.item() == pytest.approx(-cov[0, 1] / cov[1, 1], rel=1e-9)


def test_measures_are_differentiable() -> None:
    image = sheared_bar(0.2).requires_grad_(True)
    (stroke_thickness(image) + slant(image)).sum().backward()
    assert torch.all(torch.isfinite(image.grad)) and image.grad.abs().sum() > 0


def test_bad_images_are_named() -> None:
    for measure in (ink, stroke_thickness, slant):
        with pytest.raises(ValueError, match="images"):
            measure(torch.zeros(2, 28, 28))
