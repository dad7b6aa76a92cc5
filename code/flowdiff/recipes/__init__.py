r"""The recipes of the checkpoints the book ships (Chapters 10, 11, 13, 14, 16, 17 and 18).

- ``mnist-classifier``: :class:`~flowdiff.models.MNISTClassifier`, the judge
  of generated digits (its test accuracy is in the manifest).
- ``mnist-cfg-unet``: a class-conditional :class:`~flowdiff.models.UNet`
  trained by conditional flow matching on the linear path with label
  dropout ``η`` (Chapter 8, eq. ``eq-guide-dropout``), ready for
  classifier-free guidance.
- ``mnist-vae`` and its KL-weight sweep ``mnist-vae-beta-0.1``,
  ``mnist-vae-beta-10``: :class:`~flowdiff.vae.VAE` (Chapter 11).
- ``mnist-latent-cfg``: a class-conditional flow on the VAE's codes (Chapter 11).
- ``mnist-latent-independent`` and ``mnist-latent-ot``: unconditional flows
  on the codes with the independent and the minibatch optimal-transport
  coupling (Chapter 14).
- ``mnist-latent-prompts``: a text-prompted flow on the codes with its
  text encoder (Chapter 13).
- ``toy-flowmaps``, ``mnist-latent-reflow``, ``mnist-latent-consistency`` and
  ``mnist-latent-meanflow``: one- and few-step samplers on 2-D toys and
  on the codes (Chapter 16).
- ``mnist-cfg-dit``: a class-conditional :class:`~flowdiff.transformer.DiT`
  trained exactly as ``mnist-cfg-unet`` (Chapter 17).
- ``toy-grid-dfm``, ``text-masked-diffusion`` and ``mnist-binary-cfg``:
  discrete flows (masked diffusion) on a quantised 2-D toy, on the
  characters of the book's prose and on binarised digits (Chapter 18).

One module per model family: :mod:`~flowdiff.recipes.classifier`,
:mod:`~flowdiff.recipes.unet`, :mod:`~flowdiff.recipes.dit`, :mod:`~flowdiff.recipes.vae`,
:mod:`~flowdiff.recipes.latent` (which explains how a latent recipe pins
its autoencoder), :mod:`~flowdiff.recipes.prompted`, :mod:`~flowdiff.recipes.flowmaps` and :mod:`~flowdiff.recipes.discrete_flows`; what their
evaluators share is in :mod:`~flowdiff.recipes.evaluation`. This package
holds the registry :data:`RECIPES` and the public names.

``python -m flowdiff.train NAME`` retrains any of them from its configuration,
and ``torchrun --nproc_per_node=N -m flowdiff.train NAME`` on ``N`` processes:
each training loop draws its share of every batch (:func:`~flowdiff.distributed.per_rank_batch`).
Random draws are made on the CPU generator that :func:`~flowdiff.training.train`
hands over, then moved to the training device (:mod:`flowdiff._random`), so a batch is the same on every device.
"""


from __future__ import annotations

from flowdiff.artifacts import Recipe
from flowdiff.recipes.classifier import CLASSIFIER
from flowdiff.recipes.dit import CFG_DIT
from flowdiff.recipes.discrete_flows import GRID_DFM, MNIST_BINARY, TEXT_MDM
from flowdiff.recipes.evaluation import mnist_test_features
from flowdiff.recipes.flowmaps import LATENT_CONSISTENCY, LATENT_MEANFLOW, LATENT_REFLOW, TOY_FLOWMAPS
from flowdiff.recipes.latent import LATENT_CFG, LATENT_INDEPENDENT, LATENT_OT
from flowdiff.recipes.prompted import PROMPTED, prompt_following, training_captions
from flowdiff.recipes.unet import CFG_UNET
from flowdiff.recipes.vae import VAE_KL_SWEEP, VAE_RECIPE

__all__ = [
    "CLASSIFIER",
    "CFG_UNET",
    "CFG_DIT",
    "GRID_DFM",
    "TEXT_MDM",
    "MNIST_BINARY",
    "VAE_RECIPE",
    "VAE_KL_SWEEP",
    "LATENT_CFG",
    "LATENT_INDEPENDENT",
    "LATENT_OT",
    "PROMPTED",
    "TOY_FLOWMAPS",
    "LATENT_REFLOW",
    "LATENT_CONSISTENCY",
    "LATENT_MEANFLOW",
    "RECIPES",
    "mnist_test_features",
    "training_captions",
    "prompt_following",
]


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (CLASSIFIER, CFG_UNET, *VAE_KL_SWEEP, LATENT_CFG, LATENT_INDEPENDENT, LATENT_OT, PROMPTED, TOY_FLOWMAPS, LATENT_REFLOW, LATENT_CONSISTENCY, LATENT_MEANFLOW, CFG_DIT, GRID_DFM, TEXT_MDM, MNIST_BINARY)
}
