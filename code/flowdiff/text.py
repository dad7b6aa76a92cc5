r"""Text prompts for digits: captions from measured properties, a tokenizer, a small text encoder (Chapter 13).

A caption names the digit and, when they are pronounced, its stroke
thickness and slant (terciles of :func:`~flowdiff.strokes.stroke_thickness`
and :func:`~flowdiff.strokes.slant` over the training set). Sentences are
drawn from a few templates with synonyms, and each property is left out
at random, so one image has many captions and the encoder must learn
words, not sentences.

The encoder (eq. ``eq-prompt-encoder``) embeds tokens, adds learned
positions, runs a small Transformer encoder and averages over the words:
``e(c) = W · mean_i h_i``. The empty prompt (all padding) maps to a learned
vector ``e(∅)``, the null condition of classifier-free guidance, so padding
doubles as the null label.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from flowdiff import _random
from flowdiff._checks import check_batch, check_count
from flowdiff.models import FourierTimeEmbedding, perceptron
from flowdiff.strokes import slant, stroke_thickness

__all__ = [
    "DIGIT_WORDS",
    "THICKNESS_WORDS",
    "SLANT_WORDS",
    "CaptionScheme",
    "caption_scheme",
    "stroke_classes",
    "caption",
    "Vocabulary",
    "TextEncoder",
    "PromptedMLPVectorField",
]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
THICKNESS_WORDS: dict[int, tuple[str, ...]] = {0: ("thin", "light", "fine"), 2: ("thick", "bold", "heavy")}
SLANT_WORDS: dict[int, tuple[str, ...]] = {
    0: ("leaning left", "slanted left", "tilted left"),
    1: ("upright", "standing straight", "not slanted"),
    2: ("leaning right", "slanted right", "tilted right"),
}
THICKNESS_NAMES = ("thin", "medium", "thick")
SLANT_NAMES = ("left", "upright", "right")


@dataclass(frozen=True)
class CaptionScheme:
    """Tercile boundaries of thickness and slant, and the (digit, thickness, slant) classes whose full captions training never shows."""

    thickness_bounds: tuple[float, float]
    slant_bounds: tuple[float, float]
    held_out: tuple[tuple[int, int, int], ...]


def caption_scheme(images: Tensor) -> CaptionScheme:
    """Terciles of the training images' thickness and slant, and one held-out (thickness, slant) pair per digit (Chapter 13).

    The held-out pairs cycle through the four corners thin/thick × left/right,
    so every corner is held out for some digits and seen for others.
    """
    thickness = stroke_thickness(images).double()
    slants = slant(images).double()
    levels = torch.tensor([1 / 3, 2 / 3], dtype=torch.float64, device=thickness.device)
    corners = [(0, 0), (2, 2), (0, 2), (2, 0)]
    held_out = tuple((digit, *corners[digit % 4]) for digit in range(10))
    return CaptionScheme(
        tuple(round(v, 4) for v in thickness.quantile(levels).tolist()),
        tuple(round(v, 4) for v in slants.quantile(levels).tolist()),
        held_out,
    )


def stroke_classes(images: Tensor, scheme: CaptionScheme) -> tuple[Tensor, Tensor]:
    """Thickness class (0 thin, 1 medium, 2 thick) and slant class (0 left, 1 upright, 2 right) of each image, shapes ``(n,)``."""
    thickness, slants = stroke_thickness(images).double(), slant(images).double()
    thickness_bounds = torch.tensor(scheme.thickness_bounds, dtype=torch.float64, device=images.device)
    slant_bounds = torch.tensor(scheme.slant_bounds, dtype=torch.float64, device=images.device)
    return torch.bucketize(thickness, thickness_bounds), torch.bucketize(slants, slant_bounds)


def caption(digit: int, thickness: int | None, slant_class: int | None, variant: int = 0) -> str:
    """One caption of a digit with the properties to mention (``None`` leaves one out; medium thickness has no word).

    ``variant`` picks the template, the digit's spelling (word or numeral)
    and the synonyms, so that ``variant`` in ``range(12)`` enumerates the sentences.
    """
    if digit not in range(10):
        raise ValueError(f"digit must be in 0..9, got {digit}")
    if thickness not in (None, 0, 1, 2):
        raise ValueError(f"thickness must be None, 0, 1 or 2, got {thickness}")
    if slant_class not in (None, 0, 1, 2):
        raise ValueError(f"slant_class must be None, 0, 1 or 2, got {slant_class}")
    template, spelling, synonym = variant % 2, (variant // 2) % 2, (variant // 4) % 3
    name = DIGIT_WORDS[digit] if spelling == 0 else str(digit)
    thick = THICKNESS_WORDS[thickness][synonym] if thickness in THICKNESS_WORDS else None
    lean = SLANT_WORDS[slant_class][synonym] if slant_class is not None else None
    if template == 0:
        words = ["a", thick, name, lean]
    else:
        properties = [p for p in (thick, lean) if p is not None]
        words = ["the", "digit", name] + ([" and ".join(properties)] if properties else [])
    return " ".join(w for w in words if w is not None)


class Vocabulary:
    """Words to token ids; id ``0`` is padding (and the empty prompt).

    Args:
        words: the known words; any other word in a caption raises ``ValueError``.
    """

    PAD = 0

    def __init__(self, words: Sequence[str]) -> None:
        self.words = ("<pad>", *sorted(set(words)))
        self.index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def of_captions(cls) -> "Vocabulary":
        """The vocabulary of every sentence :func:`caption` can write."""
        words = ["a", "the", "digit", "and", *DIGIT_WORDS, *map(str, range(10))]
        for phrase in itertools.chain(*THICKNESS_WORDS.values(), *SLANT_WORDS.values()):
            words += phrase.split()
        return cls(words)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, captions: Sequence[str], length: int = 12, device: torch.device | str | None = None) -> Tensor:
        """Token ids of each caption, padded to ``length``, shape ``(n, length)``, on ``device`` (default CPU)."""
        check_count(length, "length")
        rows = []
        for text in captions:
            tokens = text.lower().replace(",", " ").split()
            unknown = [t for t in tokens if t not in self.index]
            if unknown:
                raise ValueError(f"captions contain words outside the vocabulary: {unknown}")
            if len(tokens) > length:
                raise ValueError(f"caption {text!r} has {len(tokens)} words, more than length={length}")
            rows.append([self.index[t] for t in tokens] + [self.PAD] * (length - len(tokens)))
        return torch.tensor(rows, dtype=torch.long, device=device).reshape(len(rows), length)


class TextEncoder(nn.Module):
    r"""Token ids ``(n, L)`` to a prompt embedding ``(n, features)`` (Chapter 13, eq. ``eq-prompt-encoder``).

    Token and position embeddings, a Transformer encoder that ignores
    padding, the mean over the words, a linear map. A row of padding only
    (the empty prompt ``∅``) gets the learned embedding ``e(∅)``.

    Args:
        vocabulary_size: number of token ids, padding included.
        features: width of the embeddings.
        heads, layers: of the Transformer encoder.
        length: the longest prompt.
    """

    def __init__(self, vocabulary_size: int, features: int = 64, heads: int = 4, layers: int = 2, length: int = 12) -> None:
        super().__init__()
        for value, name in ((vocabulary_size, "vocabulary_size"), (features, "features"), (heads, "heads"), (layers, "layers"), (length, "length")):
            check_count(value, name)
        if features % heads:
            raise ValueError(f"features ({features}) must be divisible by heads ({heads})")
        self.length = length
        self.tokens = nn.Embedding(vocabulary_size, features, padding_idx=Vocabulary.PAD)
        self.positions = nn.Parameter(0.02 * _random.randn((length, features)))
        layer = nn.TransformerEncoderLayer(features, heads, dim_feedforward=2 * features, dropout=0.0, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.output = nn.Linear(features, features)
        self.null = nn.Parameter(torch.zeros(features))

    def forward(self, tokens: Tensor) -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.dtype != torch.long or tokens.shape[1] > self.length:
            raise ValueError(f"tokens must be a long tensor of shape (n, L) with L <= {self.length}")
        words = tokens != Vocabulary.PAD
        empty = ~words.any(dim=1)
        padding = ~words & ~empty[:, None]  # an empty prompt attends to its padding, then is replaced by e(∅)
        hidden = self.transformer(self.tokens(tokens) + self.positions[: tokens.shape[1]], src_key_padding_mask=padding)
        weights = words.to(hidden.dtype)[:, :, None]
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)
        return torch.where(empty[:, None], self.null.to(hidden.dtype), self.output(pooled))


class PromptedMLPVectorField(nn.Module):
    r"""An MLP ``(x, t, tokens) -> R^d`` conditioned on a text prompt through a :class:`TextEncoder` (Chapter 13).

    ``[x, γ(t), e(c)] → Linear → SiLU → … → Linear``; the encoder is trained
    with the field. ``null_label = 0``: a prompt of padding only is ``∅``,
    so :class:`~flowdiff.guidance.ClassifierFreeGuidance` works unchanged.

    Args:
        dim: dimension of the points (latent codes).
        vocabulary_size: of the :class:`Vocabulary`.
        hidden, layers: of the MLP.
        text_features: width of the prompt embedding.
        length: the longest prompt.
    """

    null_label = Vocabulary.PAD

    def __init__(self, dim: int, vocabulary_size: int, hidden: int = 256, layers: int = 4, text_features: int = 64, length: int = 12) -> None:
        super().__init__()
        for value, name in ((dim, "dim"), (hidden, "hidden"), (layers, "layers")):
            check_count(value, name)
        if layers < 2:
            raise ValueError(f"layers must be >= 2, got {layers}")
        self.dim = dim
        self.time_embedding = FourierTimeEmbedding(32)
        self.text_encoder = TextEncoder(vocabulary_size, text_features, length=length)
        self.network = perceptron(dim + 32 + text_features, hidden, layers, dim)

    def forward(self, x: Tensor, t: Tensor, tokens: Tensor) -> Tensor:
        check_batch(x, "x", self.dim)
        if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample")
        if not isinstance(tokens, Tensor) or tokens.shape[0] != x.shape[0]:
            raise ValueError(f"tokens must hold one prompt per sample ({x.shape[0]})")
        time = self.time_embedding(t).to(x.dtype)
        text = self.text_encoder(tokens).to(x.dtype)
        return self.network(torch.cat([x, time, text], dim=1))
