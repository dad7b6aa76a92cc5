"""flowdiff.text and the captions of flowdiff.recipes: the grammar, the tokenizer, the encoder's masking, held-out sentences, CFG on prompts."""

from __future__ import annotations

import pytest
import torch

from flowdiff.guidance import ClassifierFreeGuidance, drop_labels
from flowdiff.recipes import training_captions
from flowdiff.text import (
    DIGIT_WORDS,
    SLANT_WORDS,
    THICKNESS_WORDS,
    CaptionScheme,
    PromptedMLPVectorField,
    TextEncoder,
    Vocabulary,
    caption,
    caption_scheme,
    stroke_classes,
)


def test_captions_name_what_they_are_given() -> None:
    sentences = {caption(7, 2, 0, v) for v in range(12)}
    assert len(sentences) == 12
    for text in sentences:
        assert ("seven" in text.split()) != ("7" in text.split())
        assert any(word in text for word in THICKNESS_WORDS[2]) and any(phrase in text for phrase in SLANT_WORDS[0])
    assert caption(3, 1, None) == "a three"  # medium thickness has no word
    assert caption(3, None, 1, variant=1) == "the digit three upright"


def test_the_vocabulary_covers_every_caption_and_round_trips() -> None:
    vocabulary = Vocabulary.of_captions()
    texts = [caption(d, th, sl, v) for d in range(10) for th in (None, 0, 1, 2) for sl in (None, 0, 1, 2) for v in range(12)]
    tokens = vocabulary.encode(texts)
    assert tokens.shape == (len(texts), 12) and vocabulary.words[0] == "<pad>"
    decoded = [" ".join(vocabulary.words[i] for i in row if i != Vocabulary.PAD) for row in tokens.tolist()]
    assert decoded == texts
    assert torch.all(vocabulary.encode([""]) == 0)


def test_unknown_words_and_long_captions_are_refused() -> None:
    with pytest.raises(ValueError, match="purple"):
        Vocabulary.of_captions().encode(["a purple seven"])
    with pytest.raises(ValueError, match="length"):
        Vocabulary.of_captions().encode(["a thick seven leaning right"], length=3)


def test_encoder_ignores_padding_and_maps_the_empty_prompt_to_its_null_vector() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(len(Vocabulary.of_captions()), features=16, heads=2, length=12).eval()
    vocabulary = Vocabulary.of_captions()
    short, long = vocabulary.encode(["a thick seven"], length=6), vocabulary.encode(["a thick seven"], length=12)
    torch.testing.assert_close(encoder(short), encoder(long))
    empty = encoder(vocabulary.encode(["", "a one"]))
    torch.testing.assert_close(empty[0], encoder.null)
    reordered = encoder(vocabulary.encode(["seven thick a"]))
    assert (reordered - encoder(long)).abs().max() > 1e-4  # positions matter


def uniform_scheme() -> CaptionScheme:
    return CaptionScheme((1.0, 2.0), (-0.1, 0.1), ((7, 2, 2), (1, 0, 0)))


def test_training_never_shows_a_full_sentence_of_a_held_out_class() -> None:
    n = 4000
    generator = torch.Generator().manual_seed(0)
    digits = torch.tensor([7, 1, 3]).repeat(n // 3 + 1)[:n]
    thickness = torch.tensor([2, 0, 2]).repeat(n // 3 + 1)[:n]
    slants = torch.tensor([2, 0, 2]).repeat(n // 3 + 1)[:n]
    texts = training_captions(digits, thickness, slants, uniform_scheme(), 0.25, generator)
    forbidden = {caption(*triple, v) for triple in uniform_scheme().held_out for v in range(12)}
    assert not forbidden & set(texts)
    # The same properties of a class that is not held out do appear in full.
    assert {caption(3, 2, 2, v) for v in range(12)} & set(texts)
    # Partial captions of held-out classes do appear: the model sees their images.
    assert any(t in texts for t in (caption(7, 2, None, v) for v in range(12)))


def test_caption_scheme_splits_data_into_terciles() -> None:
    images = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    images = images * torch.linspace(0.2, 1.0, 300)[:, None, None, None]
    scheme = caption_scheme(images)
    thickness, slants = stroke_classes(images, scheme)
    for classes in (thickness, slants):
        counts = torch.bincount(classes, minlength=3)
        assert counts.tolist() == pytest.approx([100, 100, 100], abs=2)
    assert len(scheme.held_out) == 10 and {d for d, _, _ in scheme.held_out} == set(range(10))


def test_classifier_free_guidance_works_on_prompts() -> None:
    torch.manual_seed(0)
    vocabulary = Vocabulary.of_captions()
    model = PromptedMLPVectorField(4, len(vocabulary), hidden=16, layers=2, text_features=8).eval()
    tokens = vocabulary.encode(["a thick seven", "the digit 2 upright"])
    x, t = torch.randn(2, 4), torch.full((2,), 0.3)
    with torch.no_grad():
        conditional, unconditional = model(x, t, tokens), model(x, t, torch.zeros_like(tokens))
        torch.testing.assert_close(ClassifierFreeGuidance(model, tokens, model.null_label, 1.0).drift(x, t), conditional)
        torch.testing.assert_close(ClassifierFreeGuidance(model, tokens, model.null_label, 3.0).drift(x, t), unconditional + 3 * (conditional - unconditional))
    dropped = drop_labels(vocabulary.encode(["a one"] * 2000), 0.3, 0, torch.Generator().manual_seed(0))
    rows_dropped = (dropped == 0).all(dim=1)
    assert rows_dropped.double().mean().item() == pytest.approx(0.3, abs=0.03)  # 3 standard errors
    assert torch.all((dropped[~rows_dropped] != 0).sum(dim=1) == 2)  # a row is dropped whole or kept whole


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: caption(10, None, None), "digit"),
        (lambda: caption(1, 3, None), "thickness"),
        (lambda: caption(1, None, -1), "slant_class"),
        (lambda: TextEncoder(10, features=10, heads=4), "features"),
        (lambda: TextEncoder(0), "vocabulary_size"),
        (lambda: TextEncoder(10, features=8, heads=2)(torch.zeros(2, 13, dtype=torch.long)), "tokens"),
        (lambda: PromptedMLPVectorField(4, 10, layers=1), "layers"),
        (lambda: PromptedMLPVectorField(4, 10)(torch.zeros(2, 4), torch.zeros(2), torch.zeros(3, 5, dtype=torch.long)), "tokens"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()


def test_every_caption_names_its_own_digit_and_no_other() -> None:
    english = "zero one two three four five six seven eight nine".split()
    assert list(DIGIT_WORDS) == english
    names = set(english) | {str(d) for d in range(10)}
    for digit in range(10):
        assert caption(digit, None, None, variant=0) == f"a {english[digit]}"
        assert caption(digit, None, None, variant=2) == f"a {digit}"
        for variant in range(12):
            named = names & set(caption(digit, 0, 2, variant).split())
            assert named in ({english[digit]}, {str(digit)})
