r"""Flows in the latent space of an autoencoder: latent diffusion (Chapter 11).

A latent model learns the distribution of codes ``z̃ = (μ_φ(x) − m) / σ_code``,
the encoder's posterior means standardised per coordinate (``m`` and ``σ_code``
are their mean and standard deviation over the training set, eq.
``eq-latent-standardise``), and generates by integrating its field from
``N(0, I)`` and decoding, ``x = D_θ(m + σ_code ⊙ z̃_1)``.

The standardisation is the latent model's own (kept as buffers in its
checkpoint), so that a flow trained for one autoencoder cannot be decoded
with another by accident: the recipe records the autoencoder's
configuration hash.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowdiff._checks import check_batch, check_count
from flowdiff.vae import VAE

__all__ = ["LatentFlow", "LatentSpace", "encode_dataset"]


class LatentSpace:
    """The autoencoder seen through the standardisation: ``encode`` images to codes ``z̃``, ``decode`` codes to images (Chapter 11).

    Args:
        vae: the autoencoder.
        mean, std: ``m`` and ``σ_code``, shape ``(k,)``.
    """

    def __init__(self, vae: VAE, mean: Tensor, std: Tensor) -> None:
        if not isinstance(vae, VAE):
            raise ValueError(f"vae must be a flowdiff.vae.VAE, got {type(vae).__name__}")
        for value, name in ((mean, "mean"), (std, "std")):
            if not isinstance(value, Tensor) or value.shape != (vae.latent_dim,):
                raise ValueError(f"{name} must have shape ({vae.latent_dim},)")
        if not bool((std > 0).all()):
            raise ValueError("std must be positive")
        self.vae, self.mean, self.std = vae, mean, std

    @property
    def dim(self) -> int:
        """``k``, the dimension of a code."""
        return self.vae.latent_dim

    @torch.no_grad()
    def encode(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Standardised posterior means ``(μ_φ(x) − m) / σ_code``, ``(n, 1, 28, 28) -> (n, k)``."""
        check_count(batch_size, "batch_size")
        means = torch.cat([self.vae.encode(chunk)[0] for chunk in images.split(batch_size)])
        return (means - self.mean) / self.std

    def decode(self, codes: Tensor) -> Tensor:
        """``D_θ(m + σ_code ⊙ z̃)``, ``(n, k) -> (n, 1, 28, 28)``; differentiable, for steering through the decoder (Chapter 12)."""
        check_batch(codes, "codes", self.dim)
        return self.vae.decode(self.mean + self.std * codes)


@torch.no_grad()
def encode_dataset(vae: VAE, images: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor, Tensor]:
    """The posterior means of a data set and their per-coordinate mean and standard deviation (Chapter 11, eq. ``eq-latent-standardise``).

    Returns:
        ``(codes, mean, std)``: the standardised codes ``(n, k)``, ``m`` and ``σ_code`` of shape ``(k,)``.
    """
    check_count(batch_size, "batch_size")
    means = torch.cat([vae.encode(chunk)[0] for chunk in images.split(batch_size)])
    mean, std = means.mean(dim=0), means.std(dim=0)
    return (means - mean) / std, mean, std


class LatentFlow(nn.Module):
    """A vector field on standardised codes together with its standardisation ``(m, σ_code)`` (Chapter 11).

    ``forward(x, t, *condition)`` is the wrapped field's; ``null_label`` is
    forwarded, so :func:`~flowdiff.guidance.sample_with_guidance` samples a
    conditional latent flow with classifier-free guidance.

    Args:
        field: the network, e.g. :class:`~flowdiff.models.ConditionalMLPVectorField`.
        latent_dim: ``k``.
    """

    def __init__(self, field: nn.Module, latent_dim: int) -> None:
        super().__init__()
        check_count(latent_dim, "latent_dim")
        if not isinstance(field, nn.Module):
            raise ValueError(f"field must be a torch.nn.Module, got {type(field).__name__}")
        self.field = field
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    @property
    def null_label(self) -> int:
        if not hasattr(self.field, "null_label"):
            raise AttributeError("the wrapped field has no null label")
        return self.field.null_label

    def forward(self, x: Tensor, t: Tensor, *condition: Tensor) -> Tensor:
        return self.field(x, t, *condition)

    def space(self, vae: VAE) -> LatentSpace:
        """The :class:`LatentSpace` of ``vae`` with this model's standardisation."""
        return LatentSpace(vae, self.latent_mean, self.latent_std)
