"""flowdiff.models (U-Net, classifier) and flowdiff.data: shapes, the null label, bad inputs, MNIST."""

from __future__ import annotations

import os

import pytest
import torch

from flowdiff.data import data_root, load_mnist, to_unit_interval
from flowdiff.models import ConditionalMLPVectorField, MNISTClassifier, ResidualLayer, UNet

needs_mnist = pytest.mark.skipif(
    not (data_root() / "MNIST" / "raw").exists(), reason="MNIST not found: set FLOWDIFF_DATA (see README)"
)


def inputs(n: int = 3, size: int = 28) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, size, size, generator=g), torch.rand(n, generator=g), torch.tensor([0, 5, 10])[:n]


@pytest.mark.parametrize("size", [28, 32, 27])
def test_unet_output_has_the_shape_of_its_input(size: int) -> None:
    torch.manual_seed(0)
    model = UNet(channels=(16, 32, 64), layers=1)
    x, t, y = inputs(size=size)
    assert model(x, t, y).shape == x.shape


def test_trace_shapes_follow_the_resolutions() -> None:
    model = UNet(channels=(16, 32, 64), layers=2)
    trace = model.trace_shapes(*inputs())
    shapes = {name: shape for name, shape, _ in trace}
    assert sum(count for _, _, count in trace) == sum(p.numel() for p in model.parameters())
    assert shapes["stem"] == (3, 16, 28, 28)
    assert shapes["encoder 1"] == (3, 32, 14, 14)
    assert shapes["encoder 2"] == (3, 64, 7, 7)
    assert shapes["midcoder layer 2"] == (3, 64, 7, 7)
    assert shapes["decoder 1"] == (3, 32, 14, 14)
    assert shapes["final convolution"] == (3, 1, 28, 28)
    assert shapes["embedding e"] == (3, 64)


def test_the_label_and_the_time_change_the_output() -> None:
    torch.manual_seed(0)
    model = UNet(layers=1)
    for p in model.parameters():  # GroupNorm and the zero-mean init would hide small effects: randomise
        torch.nn.init.normal_(p, std=0.2)
    x, t, _ = inputs(2)
    a = model(x, t, torch.tensor([1, 1]))
    assert not torch.allclose(a, model(x, t, torch.tensor([2, 10])))
    assert not torch.allclose(a, model(x, t.flip(0), torch.tensor([1, 1])))


def test_residual_layer_is_a_residual() -> None:
    """With its last convolution zeroed the layer is the identity, whatever the embedding."""
    layer = ResidualLayer(16, 8)
    torch.nn.init.zeros_(layer.second[-1].weight)
    torch.nn.init.zeros_(layer.second[-1].bias)
    x = torch.randn(2, 16, 7, 7)
    assert torch.equal(layer(x, torch.randn(2, 8)), x)


def test_bad_inputs_name_the_argument() -> None:
    model = UNet(layers=1)
    x, t, y = inputs()
    with pytest.raises(ValueError, match="x must"):
        model(x[:, 0], t, y)
    with pytest.raises(ValueError, match="t must"):
        model(x, t[:2], y)
    with pytest.raises(ValueError, match="labels must"):
        model(x, t, torch.tensor([0, 1, 11]))
    with pytest.raises(ValueError, match="labels must"):
        model(x, t, y.double())
    with pytest.raises(ValueError, match="channels"):
        UNet(channels=(12, 24))
    with pytest.raises(ValueError, match="labels must"):
        ConditionalMLPVectorField(2, 3)(torch.zeros(2, 2), torch.zeros(2), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="x must"):
        MNISTClassifier().features(torch.zeros(2, 3, 28, 28))


def test_classifier_shapes() -> None:
    model = MNISTClassifier(feature_dim=32).eval()
    x = torch.randn(4, 1, 28, 28)
    assert model.features(x).shape == (4, 32)
    assert model(x).shape == (4, 10)


def test_data_root_comes_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWDIFF_DATA", "/somewhere/else")
    assert str(data_root()) == "/somewhere/else"
    monkeypatch.delenv("FLOWDIFF_DATA")
    assert str(data_root()) == "data"


@needs_mnist
def test_mnist_is_scaled_to_the_unit_interval_around_zero() -> None:
    test = load_mnist(train=False)
    assert test.images.shape == (10_000, 1, 28, 28) and test.labels.shape == (10_000,)
    assert test.images.min() == -1 and test.images.max() == 1
    assert torch.bincount(test.labels).tolist()[:3] == [980, 1135, 1032]  # the published class counts
    assert torch.allclose(to_unit_interval(test.images[:5]) * 255, load_mnist(False).images[:5].add(1).mul(127.5))
    images, labels = test.batch(7, torch.Generator().manual_seed(0))
    assert images.shape == (7, 1, 28, 28) and labels.shape == (7,)
    with pytest.raises(ValueError, match="train"):
        load_mnist(train="yes")
