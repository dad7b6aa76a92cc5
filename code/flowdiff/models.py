r"""Neural networks: vector fields on vectors (Chapters 5 and 8), the U-Net and a classifier on images (Chapters 9 and 10), flow maps (Chapter 16).

A model of this module maps a batch of points ``x`` of shape ``(n, d)``
and their times ``t`` of shape ``(n,)`` to ``(n, d)``. Time enters through
random Fourier features (Chapter 5, eq. ``eq-fm-time-embedding``)

.. math::
    \gamma(t) = \bigl(\sin(2\pi \omega_1 t), \dots, \sin(2\pi \omega_m t),
                      \cos(2\pi \omega_1 t), \dots, \cos(2\pi \omega_m t)\bigr),

so that a small network can represent fields that change quickly in time
(near the data end, ``t → 1``) as easily as slowly varying ones.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff._checks import check_batch, check_count, check_positive

__all__ = ["perceptron", "FourierTimeEmbedding", "MLPVectorField", "ConditionalMLPVectorField", "ResidualLayer", "Encoder", "Decoder", "UNet", "MNISTClassifier", "MLPFlowMap"]


def perceptron(width_in: int, hidden: int, layers: int, width_out: int) -> nn.Module:
    """``Linear → SiLU → … → Linear``: ``layers`` linear maps, the hidden ones of width ``hidden`` (Chapter 5).

    The body of every MLP vector field of the book (Chapters 5, 8, 11 and 13).
    """
    widths = [width_in] + [hidden] * (layers - 1)
    blocks: list[nn.Module] = []
    for width, next_width in zip(widths[:-1], widths[1:]):
        blocks += [nn.Linear(width, next_width), nn.SiLU()]
    blocks.append(nn.Linear(widths[-1], width_out))
    return nn.Sequential(*blocks)


class FourierTimeEmbedding(nn.Module):
    r"""Random Fourier features of the time, ``(n,) -> (n, features)`` (Chapter 5, eq. ``eq-fm-time-embedding``).

    Frequencies ``ω_j ~ N(0, scale²)`` are drawn once, from a fixed seed,
    and kept as a buffer, so a saved model reloads with the same features.

    The angles are computed in the module's dtype but at least float32, and
    the features returned in the module's dtype: in bfloat16 an angle of 60
    would be off by up to a quarter radian, and times ``1 − 10⁻³`` and ``1``
    would coincide. So pass ``t`` in its own (float32) precision.

    Args:
        features: output width, even.
        scale: standard deviation of the frequencies.
    """

    def __init__(self, features: int = 32, scale: float = 4.0) -> None:
        super().__init__()
        check_count(features, "features")
        check_positive(scale, "scale")
        if features % 2:
            raise ValueError(f"features must be even, got {features}")
        self.scale = scale
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("frequencies", scale * _random.randn((features // 2,), generator=generator))

    def forward(self, t: Tensor) -> Tensor:
        precise = torch.promote_types(self.frequencies.dtype, torch.float32)
        angles = 2 * math.pi * t.to(precise)[:, None] * self.frequencies.to(precise)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).to(self.frequencies.dtype)


class MLPVectorField(nn.Module):
    r"""A multilayer perceptron ``(x, t) -> R^d`` with a Fourier time embedding (Chapter 5).

    ``[x, γ(t)] → Linear → SiLU → … → Linear``: ``layers`` linear maps, the
    hidden ones of width ``hidden``. It serves as a vector field ``u^θ_t``
    (flow matching), a noise predictor ``ε^θ_t`` (denoising score
    matching) or a denoiser ``E[x_0 | x_t]`` (DDPM), depending on the loss
    it is trained with.

    Args:
        dim: dimension ``d`` of the points.
        hidden: width of the hidden layers.
        layers: number of linear layers (at least 2).
        time_features: width of the time embedding.
    """

    def __init__(self, dim: int, hidden: int = 128, layers: int = 4, time_features: int = 32) -> None:
        super().__init__()
        check_count(dim, "dim")
        check_count(hidden, "hidden")
        check_count(layers, "layers")
        if layers < 2:
            raise ValueError(f"layers must be >= 2, got {layers}")
        self.dim = dim
        self.time_embedding = FourierTimeEmbedding(time_features)
        self.network = perceptron(dim + time_features, hidden, layers, dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample, got {shape}")
        features = torch.cat([x, self.time_embedding(t).to(x.dtype)], dim=1)
        return self.network(features)



class ConditionalMLPVectorField(nn.Module):
    r"""An MLP ``(x, t, y) -> R^d`` for labelled low-dimensional data, with a null label (Chapter 8).

    Like :class:`MLPVectorField`, with a learned embedding of the label
    ``y ∈ {0, …, num_classes}`` concatenated to the input; the extra label
    ``num_classes`` is the null label ``∅``, so one network represents the
    conditional fields ``u_t(x | y)`` and the unconditional ``u_t(x | ∅)``
    that classifier-free guidance combines (eq. ``eq-guide-cfg``).

    Args:
        dim: dimension ``d`` of the points.
        num_classes: number of labels, not counting the null label.
        hidden: width of the hidden layers.
        layers: number of linear layers (at least 2).
        time_features: width of the time embedding.
        label_features: width of the label embedding.
    """

    def __init__(
        self, dim: int, num_classes: int, hidden: int = 128, layers: int = 4, time_features: int = 32, label_features: int = 16
    ) -> None:
        super().__init__()
        for value, name in ((dim, "dim"), (num_classes, "num_classes"), (hidden, "hidden"), (layers, "layers"), (label_features, "label_features")):
            check_count(value, name)
        if layers < 2:
            raise ValueError(f"layers must be >= 2, got {layers}")
        self.dim, self.num_classes, self.null_label = dim, num_classes, num_classes
        self.time_embedding = FourierTimeEmbedding(time_features)
        self.label_embedding = nn.Embedding(num_classes + 1, label_features)
        self.network = perceptron(dim + time_features + label_features, hidden, layers, dim)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample, got {shape}")
        _check_labels(labels, x.shape[0], self.num_classes + 1)
        time = self.time_embedding(t).to(x.dtype)
        label = self.label_embedding(labels).to(x.dtype)
        return self.network(torch.cat([x, time, label], dim=1))

# --- images (Chapters 9 and 10) -------------------------------------------------------------


def _check_images(x: Tensor, channels: int, name: str = "x") -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape (n, {channels}, h, w), got {shape}")


def _check_labels(labels: Tensor, n: int, num_labels: int) -> None:
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.dtype != torch.long:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a long tensor of shape ({n},), got {shape}")
    if torch.any(labels < 0) or torch.any(labels >= num_labels):
        raise ValueError(f"labels must lie in [0, {num_labels - 1}], got values in [{labels.min()}, {labels.max()}]")


class ResidualLayer(nn.Module):
    r"""``x + conv(SiLU(norm(conv(SiLU(norm(x))) + W e))))`` (Chapter 9, eq. ``eq-unet-residual``).

    The embedding ``e`` of time and label enters additively, as one bias per
    channel, between the two convolutions; the skip path keeps the layer
    close to the identity at initialisation.
    """

    def __init__(self, channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))
        self.embedding = nn.Sequential(nn.SiLU(), nn.Linear(embedding_dim, channels))
        self.second = nn.Sequential(nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        h = self.first(x) + self.embedding(embedding)[:, :, None, None]
        return x + self.second(h)


class Encoder(nn.Module):
    """Residual layers at one resolution, then a strided convolution that halves it (Chapter 9)."""

    def __init__(self, channels_in: int, channels_out: int, layers: int, embedding_dim: int) -> None:
        super().__init__()
        self.residual = nn.ModuleList(ResidualLayer(channels_in, embedding_dim) for _ in range(layers))
        self.downsample = nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1)

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        for layer in self.residual:
            x = layer(x, embedding)
        return self.downsample(x)


class Decoder(nn.Module):
    """Bilinear upsampling and a convolution, the encoder's skip added, then residual layers (Chapter 9)."""

    def __init__(self, channels_in: int, channels_out: int, layers: int, embedding_dim: int) -> None:
        super().__init__()
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels_in, channels_out, 3, padding=1),
        )
        self.residual = nn.ModuleList(ResidualLayer(channels_out, embedding_dim) for _ in range(layers))

    def forward(self, x: Tensor, skip: Tensor, embedding: Tensor) -> Tensor:
        x = self.upsample(x)
        x = x[:, :, : skip.shape[2], : skip.shape[3]] + skip
        for layer in self.residual:
            x = layer(x, embedding)
        return x


class UNet(nn.Module):
    r"""A class-conditional U-Net vector field ``u^θ_t(x | y)`` on images (Chapter 9, Figure ``fig-unet-diagram``).

    ``x`` of shape ``(n, c, h, w)``, times ``t`` of shape ``(n,)`` and labels
    ``y`` of shape ``(n,)`` in ``{0, …, num_classes}``, where the extra label
    ``num_classes`` is the null label ``∅`` of classifier-free guidance
    (Chapter 8). The embedding ``e = MLP(γ(t)) + E[y]`` (eq. ``eq-unet-embedding``)
    is added in every residual layer. Encoders halve the resolution while
    the channels go through ``channels``; the midcoder works at the
    coarsest resolution; decoders upsample bilinearly and add the skip of
    the encoder at the same resolution; a final convolution maps back to
    ``c`` channels. The output has the shape of ``x``.

    Args:
        image_channels: channels ``c`` of the images (1 for MNIST).
        channels: channel widths, one per resolution, e.g. ``(16, 32, 64)``.
        layers: residual layers per encoder, decoder and the midcoder.
        num_classes: number of labels, not counting the null label.
        embedding_dim: width of the time and label embedding.
    """

    def __init__(
        self,
        image_channels: int = 1,
        channels: tuple[int, ...] = (16, 32, 64),
        layers: int = 2,
        num_classes: int = 10,
        embedding_dim: int = 64,
    ) -> None:
        super().__init__()
        check_count(image_channels, "image_channels")
        check_count(layers, "layers")
        check_count(num_classes, "num_classes")
        check_count(embedding_dim, "embedding_dim")
        channels = tuple(channels)
        if len(channels) < 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 8 or c % 8 for c in channels):
            raise ValueError(f"channels must hold at least two multiples of 8, got {channels}")
        self.image_channels = image_channels
        self.num_classes = num_classes
        self.null_label = num_classes
        self.time_embedding = nn.Sequential(
            FourierTimeEmbedding(32), nn.Linear(32, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim)
        )
        self.label_embedding = nn.Embedding(num_classes + 1, embedding_dim)
        self.stem = nn.Conv2d(image_channels, channels[0], 3, padding=1)
        pairs = list(zip(channels[:-1], channels[1:]))
        self.encoders = nn.ModuleList(Encoder(a, b, layers, embedding_dim) for a, b in pairs)
        self.midcoder = nn.ModuleList(ResidualLayer(channels[-1], embedding_dim) for _ in range(layers))
        self.decoders = nn.ModuleList(Decoder(b, a, layers, embedding_dim) for a, b in reversed(pairs))
        self.head = nn.Sequential(
            nn.GroupNorm(8, channels[0]), nn.SiLU(), nn.Conv2d(channels[0], image_channels, 3, padding=1)
        )

    def embed(self, t: Tensor, labels: Tensor) -> Tensor:
        """The embedding ``e = MLP(γ(t)) + E[y]`` of eq. ``eq-unet-embedding``, shape ``(n, embedding_dim)``."""
        return self.time_embedding(t) + self.label_embedding(labels)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        _check_images(x, self.image_channels)
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample, got {shape}")
        _check_labels(labels, x.shape[0], self.num_classes + 1)
        embedding = self.embed(t, labels)
        h = self.stem(x)
        skips = []
        for encoder in self.encoders:
            skips.append(h)
            h = encoder(h, embedding)
        for layer in self.midcoder:
            h = layer(h, embedding)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            h = decoder(h, skip, embedding)
        return self.head(h)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        """The stages of :meth:`forward` in order, each with the modules it owns (Chapter 9, Table ``tab-unet-shapes``).

        The embedding is listed as one stage owning the time and label embeddings.
        """
        stages = [("embedding e", [self.time_embedding, self.label_embedding]), ("stem", [self.stem])]
        stages += [(f"encoder {i + 1}", [encoder]) for i, encoder in enumerate(self.encoders)]
        stages += [(f"midcoder layer {i + 1}", [layer]) for i, layer in enumerate(self.midcoder)]
        stages += [(f"decoder {i + 1}", [decoder]) for i, decoder in enumerate(self.decoders)]
        stages += [("final convolution", [self.head])]
        return stages

    def trace_shapes(self, x: Tensor, t: Tensor, labels: Tensor) -> list[tuple[str, tuple[int, ...], int]]:
        """Name, output shape and parameter count of every stage of :meth:`forward` (Chapter 9, Table ``tab-unet-shapes``).

        Runs the same computation as :meth:`forward` and records the tensor
        after each stage of :meth:`stages`; the first row is the input.
        """
        shapes: dict[str, tuple[int, ...]] = {"embedding e": (x.shape[0], self.label_embedding.embedding_dim)}

        def recorder(name: str) -> Callable[..., None]:
            def record(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
                shapes[name] = tuple(output.shape)

            return record

        handles = [modules[-1].register_forward_hook(recorder(name)) for name, modules in self.stages()[1:]]
        try:
            with torch.no_grad():
                self(x, t, labels)
        finally:
            for handle in handles:
                handle.remove()
        rows = [("input x", tuple(x.shape), 0)]
        for name, modules in self.stages():
            rows.append((name, shapes[name], sum(p.numel() for module in modules for p in module.parameters())))
        return rows


class MNISTClassifier(nn.Module):
    r"""A small convolutional classifier of 28×28 digits (Chapter 10), used as the judge of samples.

    ``(n, 1, 28, 28) → logits (n, 10)``. Its penultimate activations,
    :meth:`features` of width ``feature_dim``, play the role Inception
    features play in FID: the Fréchet distance of Chapter 10 is computed
    in this space.
    """

    def __init__(self, feature_dim: int = 128) -> None:
        super().__init__()
        check_count(feature_dim, "feature_dim")
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, feature_dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(feature_dim, 10))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations, shape ``(n, feature_dim)``."""
        _check_images(x, 1)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# --- flow maps (Chapter 16) ------------------------------------------------------------------


class MLPFlowMap(nn.Module):
    r"""An MLP ``(x, s, t[, y]) -> R^d``: the average velocity ``ū(x, s, t)`` of a flow map (Chapter 16, eq. ``eq-onestep-average``).

    The flow map it represents is ``X_{s→t}(x) = x + (t − s) ū(x, s, t)``
    (:func:`~flowdiff.flowmaps.flow_map`). The start time ``s`` and the
    length ``t − s`` of the jump are embedded separately: the network
    must know how far it jumps, and at ``t = s`` it is an ordinary
    vector field. With ``num_classes`` it takes a label as
    :class:`ConditionalMLPVectorField` does, the last label being the null label ``∅``.

    Args:
        dim: dimension ``d`` of the points.
        hidden: width of the hidden layers.
        layers: number of linear layers (at least 2).
        num_classes: number of labels, not counting the null label; ``None`` for an unconditional map.
        time_features: width of each of the two time embeddings.
        label_features: width of the label embedding.
    """

    def __init__(
        self, dim: int, hidden: int = 128, layers: int = 4, num_classes: int | None = None, time_features: int = 32, label_features: int = 16
    ) -> None:
        super().__init__()
        for value, name in ((dim, "dim"), (hidden, "hidden"), (layers, "layers")):
            check_count(value, name)
        if layers < 2:
            raise ValueError(f"layers must be >= 2, got {layers}")
        if num_classes is not None:
            check_count(num_classes, "num_classes")
            check_count(label_features, "label_features")
        self.dim, self.num_classes = dim, num_classes
        self.start_embedding = FourierTimeEmbedding(time_features)
        self.length_embedding = FourierTimeEmbedding(time_features)
        labels = 0 if num_classes is None else label_features
        self.label_embedding = None if num_classes is None else nn.Embedding(num_classes + 1, label_features)
        self.network = perceptron(dim + 2 * time_features + labels, hidden, layers, dim)

    @property
    def null_label(self) -> int:
        if self.num_classes is None:
            raise AttributeError("an unconditional flow map has no null label")
        return self.num_classes

    def forward(self, x: Tensor, s: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        check_batch(x, "x", self.dim)
        for value, name in ((s, "s"), (t, "t")):
            if not isinstance(value, Tensor) or value.shape != (x.shape[0],):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{name} must have shape ({x.shape[0]},), one time per sample, got {shape}")
        features = [x, self.start_embedding(s).to(x.dtype), self.length_embedding(t - s).to(x.dtype)]
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("labels must be given to a conditional flow map (the null label for none)")
            _check_labels(labels, x.shape[0], self.num_classes + 1)
            features.append(self.label_embedding(labels).to(x.dtype))
        elif labels is not None:
            raise ValueError("labels were given to an unconditional flow map")
        return self.network(torch.cat(features, dim=1))
