r"""Diffusion transformers: a vector field on images made of patches and attention (Chapter 17).

A diffusion transformer (DiT, Peebles & Xie 2023) replaces the U-Net of
Chapter 9 by a transformer acting on image patches. It is the same kind
of network as :class:`~flowdiff.models.UNet`, ``u^θ_t(x | y)`` with
``x`` of shape ``(n, c, h, w)``, times ``t`` of shape ``(n,)`` and labels
``y`` in ``{0, …, num_classes}`` (the last one the null label ``∅``), so
the samplers and classifier-free guidance of :mod:`flowdiff.guidance` use
it unchanged. Its forward pass:

1. **Patchify** (eq. ``eq-dit-patchify``): cut the image into ``L = (h/p)(w/p)``
   patches of ``p × p`` pixels, each flattened to a token of ``p² c``
   numbers, and map every token linearly to the width ``D``.
2. **Positions**: attention treats its tokens as a set, so where a patch
   sits must be told: either a fixed 2-D sine-cosine embedding added to
   the tokens (eq. ``eq-dit-posemb``), or rotary embeddings that rotate
   queries and keys by angles proportional to the row and the column
   (eq. ``eq-dit-rope``), so that attention scores depend on relative offsets.
3. **Blocks**: ``depth`` transformer blocks, each multi-head self-attention
   (eq. ``eq-dit-attention``) and an MLP, conditioned on the embedding
   ``e = MLP(γ(t)) + E[y]`` of time and label (as the U-Net's
   eq. ``eq-unet-embedding``) through adaptive layer norm with zero-initialised
   gates, *adaLN-Zero* (eq. ``eq-dit-adaln``), or, for the ablation, by adding a
   projection of ``e`` to every token.
4. **Final layer and unpatchify**: an adaLN-modulated, zero-initialised
   linear map back to ``p² c`` numbers per token, reassembled into an image.

At initialisation every adaLN-Zero block is the identity and the final
layer outputs zeros, so the untrained network is the zero field.

:class:`TokenTransformer` is the same network on *tokens* instead of pixels
(Chapter 18): its input is a grid of discrete states, one-hot encoded, and
its output a vector of logits per token, the posterior over the clean token
that discrete flow matching learns.

Every function works on the device and dtype of its inputs; the angles of
the position embeddings are computed in at least float32.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowdiff._checks import check_count, check_positive, check_unit_time
from flowdiff.models import FourierTimeEmbedding, _check_labels

__all__ = [
    "patchify",
    "unpatchify",
    "sincos_position_embedding_2d",
    "grid_positions",
    "apply_rotary",
    "naive_attention",
    "attention_weights",
    "Attention",
    "DiTBlock",
    "FinalLayer",
    "DiT",
    "TokenTransformer",
    "multiply_adds",
]

POSITIONS = ("sincos", "rope", "none")
CONDITIONINGS = ("adaln-zero", "additive")
Device = torch.device | str | None


# --- patches (eq. eq-dit-patchify) ------------------------------------------------------------


def patchify(images: Tensor, patch_size: int) -> Tensor:
    r"""Cut images into flattened patches, ``(n, c, h, w) -> (n, L, p² c)`` (Chapter 17, eq. ``eq-dit-patchify``).

    With ``p = patch_size`` the image is a grid of ``(h/p) × (w/p)`` patches,
    numbered row by row: patch ``j = a (w/p) + b`` covers rows ``p a … p a + p − 1``
    and columns ``p b … p b + p − 1``. Inside a token the numbers are stored
    pixel by pixel, channels last:

    .. math::
        \mathrm{tokens}[i, j, (r p + s) c + k] = x[i, k, p a + r, p b + s],
        \qquad 0 \le r, s < p,\ 0 \le k < c,

    the order of the DiT and MAE reference code. :func:`unpatchify` is its inverse.

    Args:
        images: a batch of shape ``(n, c, h, w)`` whose ``h`` and ``w`` are multiples of ``patch_size``.
        patch_size: the side ``p`` of a patch, in pixels.

    Returns:
        Tokens of shape ``(n, L, p² c)`` with ``L = (h/p)(w/p)``.
    """
    check_count(patch_size, "patch_size")
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (n, c, h, w), got {shape}")
    n, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the height and width of images, got {h} × {w}")
    p = patch_size
    grid = images.reshape(n, c, h // p, p, w // p, p)  # (n, k, a, r, b, s)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: Tensor, patch_size: int, channels: int, height: int, width: int) -> Tensor:
    r"""Reassemble patches into images, ``(n, L, p² c) -> (n, c, h, w)`` (Chapter 17, eq. ``eq-dit-patchify``).

    The inverse of :func:`patchify`: ``unpatchify(patchify(x, p), p, c, h, w) == x``.

    Args:
        tokens: shape ``(n, L, p² c)`` with ``L = (h/p)(w/p)``, patches numbered row by row.
        patch_size: the side ``p`` of a patch.
        channels: ``c``.
        height, width: ``h`` and ``w`` of the images, multiples of ``patch_size``.
    """
    for value, name in ((patch_size, "patch_size"), (channels, "channels"), (height, "height"), (width, "width")):
        check_count(value, name)
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"patch_size {p} must divide height and width, got {height} × {width}")
    rows, columns = height // p, width // p
    if not isinstance(tokens, Tensor) or tokens.ndim != 3 or tokens.shape[1:] != (rows * columns, p * p * channels):
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(
            f"tokens must have shape (n, {rows * columns}, {p * p * channels}) for {channels}-channel "
            f"{height} × {width} images in {p} × {p} patches, got {shape}"
        )
    n = tokens.shape[0]
    grid = tokens.reshape(n, rows, columns, p, p, channels)  # (n, a, b, r, s, k)
    return grid.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, height, width)


# --- positions (eqs. eq-dit-posemb and eq-dit-rope) -----------------------------------------


def _precise(dtype: torch.dtype) -> torch.dtype:
    """The dtype angles are computed in: ``dtype``, but at least float32."""
    return torch.promote_types(dtype, torch.float32)


def grid_positions(grid_h: int, grid_w: int, device: Device = None, dtype: torch.dtype | None = None) -> Tensor:
    """The (row, column) of every patch of a ``grid_h × grid_w`` grid, shape ``(L, 2)``, row by row as :func:`patchify` numbers them (Chapter 17).

    Token ``j`` sits at ``(j // grid_w, j % grid_w)``. Made on ``device`` in
    ``dtype`` (default: the CPU and the default dtype, as torch's own constructors).
    """
    check_count(grid_h, "grid_h")
    check_count(grid_w, "grid_w")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    rows = torch.arange(grid_h, device=device).repeat_interleave(grid_w)
    columns = torch.arange(grid_w, device=device).repeat(grid_h)
    return torch.stack([rows, columns], dim=1).to(dtype)


def sincos_position_embedding_2d(
    grid_h: int, grid_w: int, dim: int, base: float = 10000.0, device: Device = None, dtype: torch.dtype | None = None
) -> Tensor:
    r"""The fixed 2-D sine-cosine position embedding of DiT and MAE, shape ``(grid_h · grid_w, dim)`` (Chapter 17, eq. ``eq-dit-posemb``).

    With ``m = dim / 4`` frequencies ``ω_i = base^{−i/m}``, ``i = 0, …, m − 1``,
    the patch in row ``a`` and column ``b`` gets

    .. math::
        \mathrm{PE}(a, b) = \bigl(\sin(b ω), \cos(b ω), \sin(a ω), \cos(a ω)\bigr) \in \mathbb R^{4m},

    the column in the first half and the row in the second (the order of the
    reference code). Rows are numbered as :func:`patchify` numbers patches.

    Args:
        grid_h, grid_w: patches per column and per row.
        dim: the width ``D``, a multiple of 4.
        base: the longest wavelength is just under ``2π base``.
        device, dtype: where the embedding is made (default: the CPU and the default dtype).
    """
    check_count(dim, "dim")
    check_positive(base, "base")
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for a 2-D sine-cosine embedding, got {dim}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    precise = _precise(dtype)
    positions = grid_positions(grid_h, grid_w, device=device, dtype=precise)
    m = dim // 4
    frequencies = base ** (-torch.arange(m, device=device, dtype=precise) / m)
    halves = []
    for axis in (1, 0):  # column first, then row
        angles = positions[:, axis, None] * frequencies
        halves += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(halves, dim=1).to(dtype)


def apply_rotary(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    r"""Rotary position embedding (RoPE) of queries or keys, in one or several axes (Chapter 17, eq. ``eq-dit-rope``).

    ``positions`` gives each of the ``L`` tokens ``k`` coordinates (``k = 2``
    for the (row, column) of a patch, :func:`grid_positions`). The last
    dimension ``d`` of ``x`` is split into ``k`` consecutive chunks of
    ``m = d / k``; chunk ``a`` rotates with coordinate ``a``: each pair
    ``(x_{2i}, x_{2i+1})`` of the chunk turns by the angle ``π_a θ_i``, with
    ``θ_i = base^{−2i/m}``,

    .. math::
        \begin{pmatrix} x'_{2i} \\ x'_{2i+1} \end{pmatrix}
        = \begin{pmatrix} \cos π_a θ_i & −\sin π_a θ_i \\ \sin π_a θ_i & \cos π_a θ_i \end{pmatrix}
          \begin{pmatrix} x_{2i} \\ x_{2i+1} \end{pmatrix}.

    Rotations keep norms, and ``R(π)^T R(π') = R(π' − π)``: the score
    ``⟨R(π) q, R(π') k⟩`` depends on the positions only through the offset ``π' − π``.
    In 2-D the first half of a head rotates with the row, the second half with the column.

    Args:
        x: queries or keys, shape ``(..., L, d)``, ``d`` a multiple of ``2k``.
        positions: shape ``(L,)`` (one axis) or ``(L, k)``; any real numbers.
        base: sets the slowest rotation.

    Returns:
        The rotated tensor, shape and dtype of ``x`` (the rotation is computed in at least float32).
    """
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor of shape (..., L, d)")
    if not isinstance(positions, Tensor) or positions.ndim not in (1, 2) or positions.shape[0] != x.shape[-2]:
        shape = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must have shape ({x.shape[-2]},) or ({x.shape[-2]}, k), one row per token of x, got {shape}")
    check_positive(base, "base")
    precise = _precise(x.dtype)
    positions = positions.to(device=x.device, dtype=precise)
    positions = positions[:, None] if positions.ndim == 1 else positions
    axes, d = positions.shape[1], x.shape[-1]
    if d % (2 * axes):
        raise ValueError(f"the last dimension of x ({d}) must be a multiple of 2 × {axes}, two per rotation and axis")
    m = d // axes
    theta = base ** (-torch.arange(0, m, 2, device=x.device, dtype=precise) / m)  # (m/2,)
    angles = (positions[:, :, None] * theta).reshape(positions.shape[0], d // 2)  # (L, d/2): axis by axis
    cos, sin = torch.cos(angles), torch.sin(angles)
    pairs = x.to(precise).reshape(*x.shape[:-1], d // 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.reshape(x.shape).to(x.dtype)


# --- attention (eq. eq-dit-attention) ---------------------------------------------------------


def naive_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    r"""``softmax(Q Kᵀ / √d) V``, written out (Chapter 17, eq. ``eq-dit-attention``): the reference for :class:`Attention`.

    Args:
        q: queries, shape ``(..., L, d)``.
        k: keys, shape ``(..., S, d)``.
        v: values, shape ``(..., S, d_v)``.

    Returns:
        Shape ``(..., L, d_v)``: row ``i`` is the average of the values weighted by ``softmax_j(q_i · k_j / √d)``.
    """
    for value, name in ((q, "q"), (k, "k"), (v, "v")):
        if not isinstance(value, Tensor) or value.ndim < 2:
            raise ValueError(f"{name} must be a tensor of shape (..., length, features)")
    if k.shape[-1] != q.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k must have q's features and v's length: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    return attention_weights(q, k) @ v


def attention_weights(q: Tensor, k: Tensor) -> Tensor:
    r"""The attention weights ``A = softmax(Q Kᵀ / √d)``, row by row (Chapter 17, eq. ``eq-dit-attention``).

    Args:
        q: queries, shape ``(..., L, d)``.
        k: keys, shape ``(..., S, d)``.

    Returns:
        Shape ``(..., L, S)``; row ``i`` is a probability vector over the ``S`` keys, how much query ``i`` reads from each.
    """
    for value, name in ((q, "q"), (k, "k")):
        if not isinstance(value, Tensor) or value.ndim < 2:
            raise ValueError(f"{name} must be a tensor of shape (..., length, features)")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k must have q's number of features: q {tuple(q.shape)}, k {tuple(k.shape)}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1)


class Attention(nn.Module):
    r"""Multi-head self-attention on tokens ``(n, L, D)``, with optional rotary positions (Chapter 17, eq. ``eq-dit-attention``).

    One linear map gives queries, keys and values; each of the ``heads``
    heads of width ``d_h = D / heads`` computes ``softmax(Q Kᵀ / √d_h) V``
    (with :func:`torch.nn.functional.scaled_dot_product_attention`, which
    :func:`naive_attention` writes out); the heads are concatenated and
    mapped linearly back to ``D``. Given ``positions``, queries and keys
    are rotated by :func:`apply_rotary` first (eq. ``eq-dit-rope``).

    Args:
        width: the token width ``D``.
        heads: number of heads; divides ``width``.
        rope_base: the ``base`` of :func:`apply_rotary`.
    """

    def __init__(self, width: int, heads: int, rope_base: float = 10000.0) -> None:
        super().__init__()
        check_count(width, "width")
        check_count(heads, "heads")
        check_positive(rope_base, "rope_base")
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        self.width, self.heads, self.rope_base = width, heads, rope_base
        self.qkv = nn.Linear(width, 3 * width)
        self.output = nn.Linear(width, width)

    def project(self, x: Tensor, positions: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values, each ``(n, heads, L, d_h)``; queries and keys rotated when ``positions`` (``(L, k)``) is given."""
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[2] != self.width:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (n, L, {self.width}), got {shape}")
        n, length, _ = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, self.width // self.heads).permute(2, 0, 3, 1, 4)
        if positions is not None:
            q, k = apply_rotary(q, positions, self.rope_base), apply_rotary(k, positions, self.rope_base)
        return q, k, v

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        q, k, v = self.project(x, positions)
        heads = F.scaled_dot_product_attention(q, k, v)  # (n, heads, L, d_h)
        return self.output(heads.transpose(1, 2).reshape(x.shape))


# --- blocks (eq. eq-dit-adaln) ------------------------------------------------------------------


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x ⊙ (1 + γ) + β``, one ``γ`` and ``β`` per sample broadcast over the tokens."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def _xavier(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every linear layer, as in the DiT reference code."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class DiTBlock(nn.Module):
    r"""A transformer block conditioned on a vector ``e``, by adaLN-Zero or by addition (Chapter 17, eq. ``eq-dit-adaln``).

    ``conditioning="adaln-zero"``: a linear map of ``SiLU(e)`` gives, per
    sample, shifts ``β``, scales ``γ`` and gates ``α`` for the attention and
    the MLP branch,

    .. math::
        x \leftarrow x + α_1 ⊙ \mathrm{Attn}\bigl(\mathrm{LN}(x) ⊙ (1 + γ_1) + β_1\bigr), \qquad
        x \leftarrow x + α_2 ⊙ \mathrm{MLP}\bigl(\mathrm{LN}(x) ⊙ (1 + γ_2) + β_2\bigr),

    with layer norms without parameters of their own. That map is
    initialised to zero, so ``α = 0`` and the block is exactly the identity
    at initialisation.

    ``conditioning="additive"``, the ablation: ``x ← x + W SiLU(e)`` on every
    token, then a plain pre-norm block ``x ← x + Attn(LN(x))``,
    ``x ← x + MLP(LN(x))`` with learned layer norms; not the identity at initialisation.

    Args:
        width: token width ``D`` (and width of ``e``).
        heads: attention heads.
        conditioning: ``"adaln-zero"`` or ``"additive"``.
        mlp_ratio: hidden width of the MLP over ``D``.
    """

    def __init__(self, width: int, heads: int, conditioning: str = "adaln-zero", mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        check_positive(mlp_ratio, "mlp_ratio")
        self.conditioning = conditioning
        self.attention = Attention(width, heads)
        hidden = max(1, round(width * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        adaptive = conditioning == "adaln-zero"
        self.norm1 = nn.LayerNorm(width, elementwise_affine=not adaptive, eps=1e-6)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=not adaptive, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, (6 if adaptive else 1) * width))
        _xavier(self)
        if adaptive:
            nn.init.zeros_(self.modulation[-1].weight)
            nn.init.zeros_(self.modulation[-1].bias)

    def forward(self, x: Tensor, e: Tensor, positions: Tensor | None = None) -> Tensor:
        """Tokens ``x`` ``(n, L, D)`` and conditioning ``e`` ``(n, D)`` to ``(n, L, D)``; ``positions`` ``(L, k)`` turns on RoPE."""
        if not isinstance(e, Tensor) or e.shape != (x.shape[0], self.attention.width):
            shape = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
            raise ValueError(f"e must have shape ({x.shape[0]}, {self.attention.width}), got {shape}")
        if self.conditioning == "additive":
            x = x + self.modulation(e)[:, None, :]
            x = x + self.attention(self.norm1(x), positions)
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(e).chunk(6, dim=1)
        x = x + gate1[:, None, :] * self.attention(_modulate(self.norm1(x), shift1, scale1), positions)
        return x + gate2[:, None, :] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    r"""``Linear(LN(x) ⊙ (1 + γ) + β)`` from width ``D`` to ``out_features``, zero-initialised (Chapter 17, eq. ``eq-dit-adaln``).

    ``β`` and ``γ`` come from ``SiLU(e)`` through a linear map; both that map
    and the output layer start at zero, so the layer outputs zeros at initialisation.
    """

    def __init__(self, width: int, out_features: int) -> None:
        super().__init__()
        check_count(width, "width")
        check_count(out_features, "out_features")
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_features)
        for layer in (self.modulation[-1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """Tokens ``(n, L, D)`` and ``e`` ``(n, D)`` to ``(n, L, out_features)``."""
        shift, scale = self.modulation(e).chunk(2, dim=1)
        return self.linear(_modulate(self.norm(x), shift, scale))


# --- the network ------------------------------------------------------------------------------


Recorder = Callable[[str, Tensor], None]


def _check_token_settings(width: int, heads: int, position: str) -> None:
    """The settings a :class:`DiT` and a :class:`TokenTransformer` share: heads that divide the width, and positions that fit it."""
    if width % heads:
        raise ValueError(f"heads ({heads}) must divide width ({width})")
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    if position == "sincos" and width % 4:
        raise ValueError(f"width must be a multiple of 4 for position='sincos', got {width}")
    if position == "rope" and (width // heads) % 4:
        raise ValueError(f"width / heads must be a multiple of 4 for position='rope', got {width} / {heads}")


def _time_embedding(time_features: int, width: int) -> nn.Sequential:
    """``MLP(γ(t))``: Fourier features of the time, then a two-layer MLP to the width (eq. ``eq-unet-embedding``)."""
    return nn.Sequential(FourierTimeEmbedding(time_features), nn.Linear(time_features, width), nn.SiLU(), nn.Linear(width, width))


def _initialise_embeddings(time_embedding: nn.Sequential, label_embedding: nn.Embedding | None) -> None:
    """The initialisation of the DiT reference code for the embeddings: ``N(0, 0.02²)`` weights, zero biases."""
    if label_embedding is not None:
        nn.init.normal_(label_embedding.weight, std=0.02)
    for layer in time_embedding:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)


def _register_positions(module: nn.Module, position: str, grid: tuple[int, int], width: int) -> None:
    """The fixed positions of a ``grid`` of tokens as buffers: the sine-cosine embedding, or the coordinates RoPE rotates by."""
    if position == "sincos":
        module.register_buffer("position_embedding", sincos_position_embedding_2d(*grid, width), persistent=False)
    elif position == "rope":
        module.register_buffer("positions", grid_positions(*grid), persistent=False)


def _with_positions(module: nn.Module, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
    """Tokens with the sine-cosine embedding added, and the coordinates to hand to the attention for RoPE (else ``None``)."""
    if module.position == "sincos":
        return tokens + module.position_embedding.to(tokens.dtype), None
    if module.position == "rope":
        return tokens, module.positions
    return tokens, None


class DiT(nn.Module):
    r"""A class-conditional diffusion transformer ``u^θ_t(x | y)`` on images (Chapter 17), a drop-in for :class:`~flowdiff.models.UNet`.

    ``forward(x, t, labels)``: ``x`` of shape ``(n, c, h, w)`` with
    ``(h, w) = image_size``, times ``t`` of shape ``(n,)`` in ``[0, 1]`` and
    labels of shape ``(n,)`` in ``{0, …, num_classes}``, where
    ``num_classes`` (:attr:`null_label`) is the null label ``∅`` of
    classifier-free guidance. The output has the shape of ``x``.

    The embedding ``e = MLP(γ(t)) + E[y]`` (Fourier features of
    :class:`~flowdiff.models.FourierTimeEmbedding`, then an MLP, plus a label
    table; as the U-Net's eq. ``eq-unet-embedding``, of width ``D``) conditions
    every block. The image becomes ``L = (h/p)(w/p)`` tokens of width ``D``
    (:func:`patchify` and a linear map, eq. ``eq-dit-patchify``), goes through
    ``depth`` blocks (:class:`DiTBlock`) and a :class:`FinalLayer`, and is
    reassembled by :func:`unpatchify`.

    Args:
        image_size: ``h`` (square images) or ``(h, w)``.
        channels: ``c``.
        patch_size: the side ``p`` of a patch; divides ``h`` and ``w``.
        width: token width ``D``.
        depth: number of blocks.
        heads: attention heads; divide ``width``.
        num_classes: number of labels, not counting the null label.
        position: ``"sincos"`` (added to the tokens, eq. ``eq-dit-posemb``),
            ``"rope"`` (rotary, in every attention, eq. ``eq-dit-rope``; needs
            ``width / heads`` a multiple of 4) or ``"none"`` (the network then
            cannot tell where a patch is).
        conditioning: ``"adaln-zero"`` or ``"additive"`` (see :class:`DiTBlock`);
            the final layer is adaLN-modulated in both.
        mlp_ratio: hidden width of the blocks' MLPs over ``D``.
        time_features: width of the Fourier features of the time.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 28,
        channels: int = 1,
        patch_size: int = 4,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        num_classes: int = 10,
        position: str = "sincos",
        conditioning: str = "adaln-zero",
        mlp_ratio: float = 4.0,
        time_features: int = 32,
    ) -> None:
        super().__init__()
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
            raise ValueError(f"image_size must be an int or a pair (h, w), got {image_size!r}")
        height, image_width = image_size
        for value, name in ((height, "image_size"), (image_width, "image_size"), (channels, "channels"),
                            (patch_size, "patch_size"), (width, "width"), (depth, "depth"), (heads, "heads"),
                            (num_classes, "num_classes"), (time_features, "time_features")):
            check_count(value, name)
        if height % patch_size or image_width % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide image_size {height} × {image_width}")
        _check_token_settings(width, heads, position)
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        self.image_size, self.channels, self.patch_size = (height, image_width), channels, patch_size
        self.width, self.num_classes, self.null_label = width, num_classes, num_classes
        self.position, self.conditioning = position, conditioning
        self.grid = (height // patch_size, image_width // patch_size)

        self.time_embedding = _time_embedding(time_features, width)
        self.label_embedding = nn.Embedding(num_classes + 1, width)
        self.patch_embedding = nn.Linear(patch_size * patch_size * channels, width)
        self.blocks = nn.ModuleList(DiTBlock(width, heads, conditioning, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(width, patch_size * patch_size * channels)
        _register_positions(self, position, self.grid, width)

        # The initialisation of the DiT reference code: Xavier for the patch embedding, N(0, 0.02²) for the embeddings.
        _xavier(self.patch_embedding)
        _initialise_embeddings(self.time_embedding, self.label_embedding)

    def embed(self, t: Tensor, labels: Tensor) -> Tensor:
        """The conditioning ``e = MLP(γ(t)) + E[y]``, shape ``(n, width)``."""
        return self.time_embedding(t) + self.label_embedding(labels)

    def _check(self, x: Tensor, t: Tensor, labels: Tensor) -> None:
        expected = (self.channels, *self.image_size)
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != expected or x.shape[0] < 1:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (n, {', '.join(map(str, expected))}), got {shape}")
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample, got {shape}")
        check_unit_time(t)
        _check_labels(labels, x.shape[0], self.num_classes + 1)

    def process_tokens(self, tokens: Tensor, e: Tensor) -> Tensor:
        """The token-level part of :meth:`forward`: positions, blocks and final layer, ``(n, L, D) -> (n, L, p² c)``.

        ``tokens`` are the patch embeddings, before any position embedding;
        ``e`` is the conditioning ``(n, D)`` of :meth:`embed`. With
        ``position="none"`` this map is equivariant under permutations of the tokens.
        """
        return self._process_tokens(tokens, e, lambda name, value: None)

    def _process_tokens(self, tokens: Tensor, e: Tensor, record: Recorder) -> Tensor:
        length = self.grid[0] * self.grid[1]
        if not isinstance(tokens, Tensor) or tokens.ndim != 3 or tokens.shape[1:] != (length, self.width):
            shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must have shape (n, {length}, {self.width}), got {shape}")
        tokens, positions = _with_positions(self, tokens)
        record("patch embedding", tokens)
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, e, positions)
            record(f"block {i + 1}", tokens)
        output = self.final_layer(tokens, e)
        record("final layer", output)
        return output

    def _run(self, x: Tensor, t: Tensor, labels: Tensor, record: Recorder | None = None) -> Tensor:
        self._check(x, t, labels)
        record = record or (lambda name, value: None)
        e = self.embed(t, labels)
        record("embedding e", e)
        patches = patchify(x, self.patch_size)
        record("patchify", patches)
        output = self._process_tokens(self.patch_embedding(patches), e, record)
        images = unpatchify(output, self.patch_size, self.channels, *self.image_size)
        record("unpatchify", images)
        return images

    def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        return self._run(x, t, labels)

    def stages(self) -> list[tuple[str, list[nn.Module]]]:
        """The stages of :meth:`forward` in order, each with the modules it owns (Chapter 17), as :meth:`UNet.stages <flowdiff.models.UNet.stages>`.

        ``patchify`` and ``unpatchify`` own no parameters; the fixed
        positions are buffers, not parameters, and the tokens of stage
        ``patch embedding`` are those after the sine-cosine embedding is added.
        The parameter counts of the stages add up to the network's.
        """
        stages: list[tuple[str, list[nn.Module]]] = [
            ("embedding e", [self.time_embedding, self.label_embedding]),
            ("patchify", []),
            ("patch embedding", [self.patch_embedding]),
        ]
        stages += [(f"block {i + 1}", [block]) for i, block in enumerate(self.blocks)]
        stages += [("final layer", [self.final_layer]), ("unpatchify", [])]
        return stages

    def trace_shapes(self, x: Tensor, t: Tensor, labels: Tensor) -> list[tuple[str, tuple[int, ...], int]]:
        """Name, output shape and parameter count of every stage of :meth:`forward` (Chapter 17), as :meth:`UNet.trace_shapes <flowdiff.models.UNet.trace_shapes>`.

        Runs the same computation as :meth:`forward` and records the tensor
        after each stage of :meth:`stages`; the first row is the input.
        """
        shapes: dict[str, tuple[int, ...]] = {}

        def record(name: str, value: Tensor) -> None:
            shapes[name] = tuple(value.shape)

        with torch.no_grad():
            self._run(x, t, labels, record)
        rows = [("input x", tuple(x.shape), 0)]
        for name, modules in self.stages():
            rows.append((name, shapes[name], sum(p.numel() for module in modules for p in module.parameters())))
        return rows

    @torch.no_grad()
    def attention_maps(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """The attention weights of every block and head in one evaluation (Chapter 17), shape ``(depth, n, heads, L, L)``.

        Entry ``[b, i, h, q, k]`` is how much token ``q`` reads from token
        ``k`` in head ``h`` of block ``b`` for sample ``i`` (rows sum to one);
        tokens are numbered row by row over the ``h/p × w/p`` grid of patches,
        as :func:`patchify` orders them. With RoPE the rotated queries and keys are used, as in :meth:`forward`.
        """
        maps: list[Tensor] = []

        def keep(module: Attention, inputs: tuple) -> None:
            q, k, _ = module.project(*inputs)
            maps.append(attention_weights(q, k))

        handles = [block.attention.register_forward_pre_hook(keep) for block in self.blocks]
        try:
            self._run(x, t, labels)
        finally:
            for handle in handles:
                handle.remove()
        return torch.stack(maps)


class TokenTransformer(nn.Module):
    r"""A DiT on a grid of discrete tokens that returns logits per token: the posterior network of discrete flows (Chapter 18).

    ``forward(x, t, labels)``: tokens ``x`` of shape ``(n, L)``, long, with
    values in ``{0, …, num_states − 1}`` (for masked diffusion ``num_states =
    V + 1``, the last state the mask), times ``t`` of shape ``(n,)`` and, for a
    class-conditional network, labels of shape ``(n,)`` in ``{0, …, num_classes}``
    (:attr:`null_label` ``= num_classes`` is ``∅``). It returns logits of shape
    ``(n, L, V)``, ``V = vocab_size``: the network's ``p^θ_{1|t}(x_1^i = · | x_t)``
    after a softmax (Chapter 18, eq. ``eq-dflow-marginal-rate``).

    The ``L = h w`` tokens lie on a grid ``(h, w)`` (a text is ``(1, L)``, a
    binarised image ``(28, 28)``), read row by row. Each token becomes its
    one-hot vector of ``num_states`` entries; ``p × p`` blocks of tokens are
    grouped into one transformer token by :func:`patchify` and a linear map
    (with ``p = 1`` this is an embedding table), go through the blocks of
    :class:`DiT` with the conditioning ``e = MLP(γ(t)) [+ E[y]]``, and a
    zero-initialised :class:`FinalLayer` returns ``p² V`` logits per patch, which
    :func:`unpatchify` puts back in place. The untrained network therefore
    predicts the uniform posterior.

    Args:
        vocab_size: ``V``, the values a clean token can take (the logits' last dimension).
        num_states: the values an input token can take, ``>= vocab_size`` (``V + 1`` with a mask).
        grid: ``(h, w)`` of the token grid, or ``L`` for a sequence ``(1, L)``.
        patch_size: ``p``, tokens per patch side; divides ``h`` and ``w``.
        width, depth, heads, position, mlp_ratio, time_features: as in :class:`DiT`.
        num_classes: number of labels, not counting ``∅``; ``0`` for an unconditional network (labels must then be ``None``).
    """

    def __init__(
        self,
        vocab_size: int,
        num_states: int,
        grid: int | tuple[int, int],
        patch_size: int = 1,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        num_classes: int = 0,
        position: str = "sincos",
        mlp_ratio: float = 4.0,
        time_features: int = 32,
    ) -> None:
        super().__init__()
        if isinstance(grid, int) and not isinstance(grid, bool):
            grid = (1, grid)
        if not isinstance(grid, (tuple, list)) or len(grid) != 2:
            raise ValueError(f"grid must be an int L or a pair (h, w), got {grid!r}")
        height, grid_width = grid
        for value, name in ((vocab_size, "vocab_size"), (num_states, "num_states"), (height, "grid"), (grid_width, "grid"),
                            (patch_size, "patch_size"), (width, "width"), (depth, "depth"), (heads, "heads"),
                            (time_features, "time_features")):
            check_count(value, name)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
        if num_states < vocab_size:
            raise ValueError(f"num_states ({num_states}) must be at least vocab_size ({vocab_size})")
        if height % patch_size or grid_width % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide grid {height} × {grid_width}")
        _check_token_settings(width, heads, position)
        self.vocab_size, self.num_states, self.grid, self.patch_size = vocab_size, num_states, (height, grid_width), patch_size
        self.length = height * grid_width
        self.width, self.num_classes, self.position = width, num_classes, position
        self.null_label = num_classes if num_classes > 0 else None
        self.patches = (height // patch_size, grid_width // patch_size)

        self.time_embedding = _time_embedding(time_features, width)
        self.label_embedding = nn.Embedding(num_classes + 1, width) if num_classes > 0 else None
        self.token_embedding = nn.Linear(patch_size * patch_size * num_states, width)
        self.blocks = nn.ModuleList(DiTBlock(width, heads, "adaln-zero", mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(width, patch_size * patch_size * vocab_size)
        _register_positions(self, position, self.patches, width)
        _xavier(self.token_embedding)
        _initialise_embeddings(self.time_embedding, self.label_embedding)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dtype != torch.long or x.shape[1:] != (self.length,) or x.ndim != 2 or x.shape[0] < 1:
            shape = (tuple(x.shape), x.dtype) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a long tensor of shape (n, {self.length}), got {shape}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_states):
            raise ValueError(f"x must hold states in {{0, …, {self.num_states - 1}}}")
        n = x.shape[0]
        if not isinstance(t, Tensor) or t.shape != (n,):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must have shape ({n},), one time per sample, got {shape}")
        check_unit_time(t)
        e = self.time_embedding(t)
        if self.label_embedding is None:
            if labels is not None:
                raise ValueError("labels must be None for an unconditional network (num_classes = 0)")
        else:
            _check_labels(labels, n, self.num_classes + 1)
            e = e + self.label_embedding(labels)
        one_hot = F.one_hot(x, self.num_states).to(e.dtype)  # (n, L, S)
        images = one_hot.transpose(1, 2).reshape(n, self.num_states, *self.grid)
        tokens, positions = _with_positions(self, self.token_embedding(patchify(images, self.patch_size)))
        for block in self.blocks:
            tokens = block(tokens, e, positions)
        logits = unpatchify(self.final_layer(tokens, e), self.patch_size, self.vocab_size, *self.grid)
        return logits.reshape(n, self.vocab_size, self.length).transpose(1, 2)


# --- cost --------------------------------------------------------------------------------------


def multiply_adds(model: nn.Module, x: Tensor, t: Tensor, labels: Tensor) -> int:
    r"""Multiply-adds of one evaluation ``model(x, t, labels)``, per image (Chapter 17).

    Counts the matrix products, which dominate the cost: a linear layer
    ``D_in → D_out`` costs ``D_in D_out`` per token (or per sample); a
    convolution ``C_in → C_out`` with a ``k × k`` kernel costs
    ``k² C_in C_out / groups`` per output pixel; an :class:`Attention` over
    ``L`` tokens of width ``D`` adds ``2 L² D`` for ``Q Kᵀ`` and for the
    weighted sum of the values, on top of its two linear layers (``4 L D²``).
    Normalisations, activations, embeddings and the Fourier features are not
    counted. The batch is run once, without gradients, and the total divided by ``n``.

    Works for any network called as ``model(x, t, labels)``: a :class:`DiT` or a
    :class:`~flowdiff.models.UNet` (whose upsampling is not counted).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] < 1:
        raise ValueError("x must be a tensor holding at least one sample")
    total = 0

    def count(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            total += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, Attention):
            n, length, width = inputs[0].shape
            total += 2 * n * length * length * width

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, Attention))]
    try:
        with torch.no_grad():
            model(x, t, labels)
    finally:
        for handle in handles:
            handle.remove()
    return total // x.shape[0]
