r"""Couplings of noise and data for flow matching: independent and minibatch optimal transport (Chapter 14).

Conditional flow matching draws pairs ``(x_0, z)`` from a coupling
``π(x_0, z)`` whose marginals are ``p_0 = N(0, I)`` and ``p_data``. The
independent coupling ``p_0 ⊗ p_data`` pairs at random, so straight lines
between partners cross and the learned marginal field bends. A minibatch
optimal-transport coupling (eq. ``eq-fast-minibatch-ot``) pairs the ``n``
noise points of a batch with its ``n`` data points by the permutation

.. math::
    σ^\star = \arg\min_{σ \in S_n} \sum_{i=1}^n \|x_0^{(σ(i))} - z^{(i)}\|^2,

computed here by the exact network-simplex solver of POT (``ot.emd``); for
uniform weights on two sets of ``n`` points an optimal plan is a
permutation matrix (Birkhoff–von Neumann), so the plan is a pairing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["ot_pairing", "pair_by_optimal_transport", "pairing_cost"]


def _check_sets(noise: Tensor, data: Tensor) -> None:
    for value, name in ((noise, "noise"), (data, "data")):
        if not isinstance(value, Tensor) or value.ndim < 2 or value.shape[0] < 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a batch-first tensor of shape (n, ...), got {shape}")
    if noise.shape != data.shape:
        raise ValueError(f"noise and data must have the same shape, got {tuple(noise.shape)} and {tuple(data.shape)}")


def pairing_cost(noise: Tensor, data: Tensor) -> float:
    r"""The mean squared distance ``(1/n) Σ_i ‖x_0^{(i)} − z^{(i)}‖²`` of row-wise partners (Chapter 14)."""
    _check_sets(noise, data)
    return (noise - data).flatten(1).square().sum(dim=1).mean().item()


def ot_pairing(noise: Tensor, data: Tensor) -> Tensor:
    r"""The optimal permutation ``σ*`` of eq. ``eq-fast-minibatch-ot`` (Chapter 14): ``noise[σ*[i]]`` is the partner of ``data[i]``.

    Args:
        noise: ``n`` points ``x_0``, shape ``(n, ...)``.
        data: ``n`` points ``z``, same shape.

    Returns:
        A long tensor of shape ``(n,)``, a permutation of ``0, …, n − 1``.
    """
    import ot

    _check_sets(noise, data)
    n = noise.shape[0]
    # POT solves on the CPU in float64 (which Apple's mps lacks), so the pairs cross to the CPU here, explicitly.
    cost = torch.cdist(data.detach().flatten(1).cpu().double(), noise.detach().flatten(1).cpu().double()).square().numpy()
    uniform = np.full(n, 1.0 / n)
    plan = ot.emd(uniform, uniform, cost)
    return torch.from_numpy(plan.argmax(axis=1)).long().to(noise.device)


def pair_by_optimal_transport(noise: Tensor, data: Tensor) -> Tensor:
    """``noise`` reordered so that row ``i`` is the optimal-transport partner of ``data[i]`` (Chapter 14, Algorithm ``alg-fast-ot-cfm``)."""
    return noise[ot_pairing(noise, data)]
