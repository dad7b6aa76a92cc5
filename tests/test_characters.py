"""flowdiff.characters and the binarised digits of flowdiff.data (Chapter 18): tokens from text and from images."""

from __future__ import annotations

import pytest
import torch

from flowdiff.characters import PROSE_ALPHABET, CharacterVocabulary, consecutive_chunks, random_chunks, split_text
from flowdiff.data import binarise, binary_images


def test_the_prose_alphabet_has_49_distinct_characters() -> None:
    assert len(PROSE_ALPHABET) == len(set(PROSE_ALPHABET)) == 49
    assert CharacterVocabulary().size == 49


def test_encoding_follows_the_alphabet_and_decoding_inverts_it() -> None:
    vocabulary = CharacterVocabulary("ab c")
    tokens = vocabulary.encode("a cab")
    assert tokens.tolist() == [0, 2, 3, 0, 1] and tokens.dtype == torch.long
    assert vocabulary.decode(tokens) == "a cab"
    assert vocabulary.decode(torch.stack([tokens, tokens.flip(0)])) == ["a cab", "bac a"]


def test_the_vocabulary_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="outside the alphabet: 'XZ'"):
        CharacterVocabulary("ab").encode("aXbZ")
    with pytest.raises(ValueError, match="alphabet must not repeat"):
        CharacterVocabulary("aba")
    with pytest.raises(ValueError, match="tokens must lie in"):
        CharacterVocabulary("ab").decode(torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="tokens must be a long tensor"):
        CharacterVocabulary("ab").decode(torch.zeros(2))


def test_the_held_out_text_is_the_unseen_tail() -> None:
    tokens = torch.arange(100)
    training, held_out = split_text(tokens, 0.1)
    assert training.tolist() == list(range(90)) and held_out.tolist() == list(range(90, 100))
    with pytest.raises(ValueError, match="held_out"):
        split_text(tokens, 1.0)


def test_random_chunks_are_windows_of_the_text() -> None:
    tokens = torch.arange(50)
    chunks = random_chunks(tokens, 8, 200, torch.Generator().manual_seed(0))
    assert chunks.shape == (200, 8)
    assert torch.equal(chunks - chunks[:, :1], torch.arange(8).expand(200, 8))  # consecutive
    assert chunks.min() == 0 and chunks.max() == 49  # both ends reachable
    with pytest.raises(ValueError, match="length"):
        random_chunks(tokens, 51, 1)


def test_consecutive_chunks_tile_the_text_without_overlap() -> None:
    chunks = consecutive_chunks(torch.arange(23), 5)
    assert chunks.tolist() == [list(range(5 * i, 5 * i + 5)) for i in range(4)]


def test_binarise_thresholds_row_by_row_and_binary_images_invert_it() -> None:
    images = torch.tensor([[[[-1.0, 0.5], [0.0, 0.2]]]])
    tokens = binarise(images)
    assert tokens.tolist() == [[0, 1, 0, 1]] and tokens.dtype == torch.long
    assert binarise(images, threshold=0.3).tolist() == [[0, 1, 0, 0]]
    assert torch.equal(binary_images(tokens, 2, 2), torch.tensor([[[[-1.0, 1.0], [-1.0, 1.0]]]]))
    with pytest.raises(ValueError, match="threshold"):
        binarise(images, threshold=1.0)
    with pytest.raises(ValueError, match="tokens must be binary"):
        binary_images(tokens + 1, 2, 2)
