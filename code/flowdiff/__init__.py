"""flowdiff: the library of the course book on flow matching and diffusion models.

Modules, one per idea (the chapter that introduces each is in its docstring):

- :mod:`flowdiff.distributions`: Gaussians, mixtures, point masses and empirical data, with exact posteriors (Chapter 1)
- :mod:`flowdiff.toy_data`: the 2-D toy data sets (Chapter 1)
- :mod:`flowdiff.dynamics`: ODEs and SDEs (Chapters 2, 3 and 6)
- :mod:`flowdiff.solvers`: Euler, Heun, Euler–Maruyama (Chapters 2 and 3), midpoint and adaptive Dormand–Prince (Chapter 14)
- :mod:`flowdiff.paths`: schedulers and Gaussian probability paths (Chapter 4)
- :mod:`flowdiff.losses`: flow matching and denoising score matching (Chapters 5 and 6)
- :mod:`flowdiff.models`: MLP vector fields (Chapters 5 and 8), the U-Net and a digit classifier (Chapters 9 and 10)
- :mod:`flowdiff.training`: one training loop (Chapter 5), with an optimal-transport coupling (Chapter 14)
- :mod:`flowdiff.distributed`: the same loop on several processes or machines, with torchrun (Chapter 10)
- :mod:`flowdiff.metrics`: sliced Wasserstein, MMD, exact optimal transport (Chapter 5),
  classifier accuracy and Fréchet distance (Chapter 10), straightness of paths (Chapter 14)
- :mod:`flowdiff.sweeps`: sample quality against solver, steps (Chapter 5) and guidance scale (Chapter 10)
- :mod:`flowdiff.discrete`: DDPM and DDIM in discrete time (Chapter 7)
- :mod:`flowdiff.labelled_mixtures`: labelled Gaussian-mixture data and its exact classifier (Chapter 8)
- :mod:`flowdiff.guidance`: classifier guidance and classifier-free guidance (Chapter 8)
- :mod:`flowdiff.data`: MNIST as tensors (Chapter 10), binarised as tokens (Chapter 18)
- :mod:`flowdiff.artifacts`: train-or-load of verified checkpoints (Chapter 10)
- :mod:`flowdiff.recipes`: the recipes of the shipped checkpoints, one module per model family;
  ``python -m flowdiff.train`` (Chapters 10, 11, 13, 14, 16, 17 and 18)
- :mod:`flowdiff.vae`: a variational autoencoder, the ELBO and the KL weight (Chapter 11)
- :mod:`flowdiff.latent`: flows on standardised latent codes (Chapter 11)
- :mod:`flowdiff.steering`: gradient steering of a trained flow at inference time (Chapter 12)
- :mod:`flowdiff.strokes`: stroke thickness and slant of digits (Chapters 12 and 13)
- :mod:`flowdiff.text`: captions, a tokenizer and a small text encoder (Chapter 13)
- :mod:`flowdiff.coupling`: minibatch optimal-transport couplings (Chapter 14)
- :mod:`flowdiff.likelihood`: the exact log-likelihood of a flow, Hutchinson's divergence estimator, dequantisation and bits per dimension (Chapter 15)
- :mod:`flowdiff.flowmaps`: flow maps and their average velocity, reflow pairs, consistency and MeanFlow losses, one- and few-step samplers (Chapter 16)
- :mod:`flowdiff.transformer`: patches, position embeddings, attention and the diffusion transformer (DiT) with adaLN-Zero (Chapter 17),
  and the same network on tokens, with logits out (Chapter 18)
- :mod:`flowdiff.discrete_flows`: discrete *state* (not :mod:`flowdiff.discrete`'s discrete time): continuous-time Markov chains,
  Euler and τ-leaping jumps, masking and uniform mixture paths, discrete flow matching, masked diffusion's ELBO and samplers (Chapter 18)
- :mod:`flowdiff.characters`: character-level text as tokens, held-out splits and chunks (Chapter 18)
- :mod:`flowdiff.plotting`: figures and animations shared by the chapters
"""

__version__ = "0.4.0"
