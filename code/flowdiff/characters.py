r"""Character-level text as tokens: an alphabet, encoding and decoding, held-out splits and chunks (Chapter 18).

A character model sees a text as a sequence of token indices
``x ∈ {0, …, V − 1}^L``, one per character, with ``V`` the size of the
alphabet. Its quality is measured in *bits per character*: the average of
``−log₂ p(x^i | …)``, an upper bound for a masked-diffusion model through
its ELBO (:func:`flowdiff.discrete_flows.bits_per_token`). For scale, a
uniform guess over ``V`` characters costs ``log₂ V`` bits, and English has
been estimated at about one bit per character (Shannon, 1951).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_count

__all__ = ["PROSE_ALPHABET", "CharacterVocabulary", "split_text", "random_chunks", "consecutive_chunks"]

PROSE_ALPHABET = " " + string.ascii_lowercase + string.digits + ".,;:'\"()-?!\n"
"""Lower-case letters, digits, space, newline and eleven punctuation marks: 49 characters."""


@dataclass(frozen=True)
class CharacterVocabulary:
    """A bijection between the characters of ``alphabet`` and ``{0, …, V − 1}`` (Chapter 18).

    Attributes:
        alphabet: the characters, each once, in the order of their indices.
    """

    alphabet: str = PROSE_ALPHABET

    def __post_init__(self) -> None:
        if not isinstance(self.alphabet, str) or not self.alphabet:
            raise ValueError("alphabet must be a non-empty string")
        if len(set(self.alphabet)) != len(self.alphabet):
            raise ValueError("alphabet must not repeat a character")

    @property
    def size(self) -> int:
        """``V``, the number of characters."""
        return len(self.alphabet)

    def encode(self, text: str, device: torch.device | str | None = None) -> Tensor:
        """The indices of ``text``'s characters, long ``(len(text),)``; a character outside the alphabet is an error."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        index = {c: i for i, c in enumerate(self.alphabet)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise ValueError(f"text holds characters outside the alphabet: {''.join(unknown)!r}")
        return torch.tensor([index[c] for c in text], dtype=torch.long, device=device)

    def decode(self, tokens: Tensor) -> str | list[str]:
        """The text of ``(L,)`` tokens, or the list of texts of ``(n, L)`` tokens."""
        if not isinstance(tokens, Tensor) or tokens.ndim not in (1, 2) or tokens.dtype != torch.long:
            raise ValueError("tokens must be a long tensor of shape (L,) or (n, L)")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.size):
            raise ValueError(f"tokens must lie in {{0, …, {self.size - 1}}}")
        rows = tokens.detach().cpu().tolist()
        if tokens.ndim == 1:
            return "".join(self.alphabet[i] for i in rows)
        return ["".join(self.alphabet[i] for i in row) for row in rows]

    @classmethod
    def read(cls, path: str | Path, alphabet: str = PROSE_ALPHABET) -> tuple["CharacterVocabulary", Tensor]:
        """The vocabulary and the encoded text of a UTF-8 file."""
        vocabulary = cls(alphabet)
        return vocabulary, vocabulary.encode(Path(path).read_text(encoding="utf-8"))


def split_text(tokens: Tensor, held_out: float = 0.1) -> tuple[Tensor, Tensor]:
    """The first ``1 − held_out`` of a text for training and the rest, unseen, for evaluation (Chapter 18).

    A contiguous tail, not random chunks: chunks drawn at random from one text
    overlap the training chunks and would flatter the held-out score.
    """
    if not isinstance(tokens, Tensor) or tokens.ndim != 1:
        raise ValueError("tokens must be a tensor of shape (N,)")
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must lie in (0, 1), got {held_out}")
    cut = round(len(tokens) * (1 - held_out))
    return tokens[:cut], tokens[cut:]


def random_chunks(tokens: Tensor, length: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` windows of ``length`` consecutive tokens at uniform offsets, long ``(n, length)`` on ``tokens``' device (Chapter 18)."""
    if not isinstance(tokens, Tensor) or tokens.ndim != 1:
        raise ValueError("tokens must be a tensor of shape (N,)")
    check_count(length, "length")
    check_count(n, "n")
    if len(tokens) < length:
        raise ValueError(f"length ({length}) exceeds the text ({len(tokens)} tokens)")
    starts = _random.randint(len(tokens) - length + 1, (n,), device=tokens.device, generator=generator)
    return tokens[starts[:, None] + torch.arange(length, device=tokens.device)]


def consecutive_chunks(tokens: Tensor, length: int) -> Tensor:
    """The text cut into ``⌊N / length⌋`` windows that do not overlap, long ``(⌊N / length⌋, length)`` (Chapter 18)."""
    if not isinstance(tokens, Tensor) or tokens.ndim != 1:
        raise ValueError("tokens must be a tensor of shape (N,)")
    check_count(length, "length")
    count = len(tokens) // length
    if count == 0:
        raise ValueError(f"length ({length}) exceeds the text ({len(tokens)} tokens)")
    return tokens[: count * length].reshape(count, length)
