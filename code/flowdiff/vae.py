r"""A variational autoencoder for MNIST, the compressor of latent diffusion (Chapter 11).

An encoder ``q_φ(z | x) = N(μ_φ(x), diag σ²_φ(x))`` and a decoder mean
``D_θ(z)`` with a Gaussian likelihood ``p_θ(x | z) = N(D_θ(z), s² I)``. The
training loss is the β-weighted negative ELBO (eq. ``eq-latent-beta``)

.. math::
    L_β(x) = \mathbb{E}_{q_φ(z|x)} \|x - D_θ(z)\|^2 + β\, \mathrm{KL}\bigl(q_φ(z|x) \,\|\, N(0, I)\bigr),

which is ``2 s²`` times the negative ELBO (up to a constant) when ``β = 2 s²``.
The KL of a diagonal Gaussian to the standard normal is in closed form
(eq. ``eq-latent-kl``) and ``z`` is drawn by reparameterisation
``z = μ + σ ⊙ ε`` (eq. ``eq-latent-reparameterisation``), so the loss is
differentiable in ``φ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff._checks import check_batch, check_count, check_positive

__all__ = ["VAE", "VAELoss", "gaussian_kl", "reparameterise", "vae_loss", "gaussian_elbo"]


def _check_gaussian(mean: Tensor, log_var: Tensor) -> None:
    check_batch(mean, "mean")
    if not isinstance(log_var, Tensor) or log_var.shape != mean.shape:
        shape = tuple(log_var.shape) if isinstance(log_var, Tensor) else type(log_var).__name__
        raise ValueError(f"log_var must have the shape of mean {tuple(mean.shape)}, got {shape}")


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    r"""``KL(N(μ, diag e^{v}) ‖ N(0, I)) = ½ Σ_j (μ_j² + e^{v_j} − 1 − v_j)`` per sample (Chapter 11, eq. ``eq-latent-kl``).

    Args:
        mean: ``μ``, shape ``(n, k)``.
        log_var: ``v = log σ²``, shape ``(n, k)``.

    Returns:
        The KL divergence in nats, shape ``(n,)``.
    """
    _check_gaussian(mean, log_var)
    return 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(dim=1)


def reparameterise(mean: Tensor, log_var: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""A draw ``z = μ + e^{v/2} ⊙ ε``, ``ε ~ N(0, I)``, differentiable in ``μ`` and ``v`` (Chapter 11, eq. ``eq-latent-reparameterisation``)."""
    _check_gaussian(mean, log_var)
    noise = _random.randn(mean.shape, like=mean, generator=generator)
    return mean + (0.5 * log_var).exp() * noise


def gaussian_elbo(images: Tensor, decoded: Tensor, decoder_std: float, mean: Tensor, log_var: Tensor) -> Tensor:
    r"""A one-sample estimate of the ELBO ``log N(x; D(z), s² I) − KL(q(z|x) ‖ N(0, I))`` in nats (Chapter 11, eq. ``eq-latent-elbo``).

    Args:
        images: ``x``, shape ``(n, ...)``.
        decoded: ``D(z)`` for one ``z ~ q(z | x)`` per image, shape of ``images``.
        decoder_std: ``s > 0``, the standard deviation of the Gaussian likelihood.
        mean, log_var: the encoder's ``q(z | x)``, shapes ``(n, k)``.

    Returns:
        Shape ``(n,)``; its expectation over ``z`` is the ELBO, a lower bound of ``log p(x)``.
    """
    check_positive(decoder_std, "decoder_std")
    if not isinstance(decoded, Tensor) or decoded.shape != images.shape:
        raise ValueError(f"decoded must have the shape of images {tuple(images.shape)}")
    pixels = images[0].numel()
    squared = (images - decoded).flatten(1).square().sum(dim=1)
    log_likelihood = -squared / (2 * decoder_std**2) - pixels * math.log(decoder_std * math.sqrt(2 * math.pi))
    return log_likelihood - gaussian_kl(mean, log_var)


class VAE(nn.Module):
    r"""A convolutional VAE for ``(n, 1, 28, 28)`` images in ``[-1, 1]`` (Chapter 11).

    Encoder: two stride-2 convolutions ``28 → 14 → 7`` and a linear map to
    ``(μ, log σ²)`` in ``R^k × R^k``. Decoder: the mirror image, with
    transposed convolutions, and ``tanh`` so that ``D(z) ∈ [-1, 1]``.

    Args:
        latent_dim: ``k``, the dimension of the latent space.
        channels: widths of the two convolutional stages.
    """

    def __init__(self, latent_dim: int = 16, channels: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        check_count(latent_dim, "latent_dim")
        if len(channels) != 2:
            raise ValueError(f"channels must hold two widths, got {channels}")
        for width in channels:
            check_count(width, "channels")
        first, second = channels
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, first, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(first, second, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(), nn.Linear(second * 49, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, second * 49), nn.SiLU(), nn.Unflatten(1, (second, 7, 7)),
            nn.ConvTranspose2d(second, first, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(first, 1, 4, stride=2, padding=1), nn.Tanh(),
        )

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, log σ²)`` of ``q(z | x)``, each of shape ``(n, k)``."""
        if not isinstance(images, Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must have shape (n, 1, 28, 28), got {shape}")
        mean, log_var = self.encoder(images).chunk(2, dim=1)
        return mean, log_var

    def decode(self, latents: Tensor) -> Tensor:
        """The decoder mean ``D(z)``, ``(n, k) -> (n, 1, 28, 28)``."""
        check_batch(latents, "latents", self.latent_dim)
        return self.decoder(latents)

    def forward(self, images: Tensor) -> Tensor:
        """The reconstruction from the posterior mean, ``D(μ(x))`` (deterministic)."""
        return self.decode(self.encode(images)[0])


@dataclass(frozen=True)
class VAELoss:
    """The β-weighted loss and its two terms, each averaged over the batch."""

    loss: Tensor
    reconstruction: Tensor
    kl: Tensor


def vae_loss(vae: VAE, images: Tensor, kl_weight: float, generator: torch.Generator | None = None) -> VAELoss:
    r"""``E‖x − D(z)‖² + β KL(q(z|x) ‖ N(0, I))`` with one reparameterised ``z`` per image (Chapter 11, eq. ``eq-latent-beta``).

    Args:
        vae: the model.
        images: a batch ``(n, 1, 28, 28)``.
        kl_weight: ``β >= 0``; ``β = 2 s²`` makes the loss the negative ELBO of a likelihood with standard deviation ``s``.
        generator: seeds ``ε``.
    """
    check_positive(kl_weight, "kl_weight", allow_zero=True)
    mean, log_var = vae.encode(images)
    decoded = vae.decode(reparameterise(mean, log_var, generator))
    reconstruction = (images - decoded).flatten(1).square().sum(dim=1).mean()
    kl = gaussian_kl(mean, log_var).mean()
    return VAELoss(reconstruction + kl_weight * kl, reconstruction, kl)
