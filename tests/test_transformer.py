"""flowdiff.transformer (Chapter 17): patches, positions, attention, adaLN-Zero blocks and the DiT.

Every network here is tiny (a few thousand parameters, at most 49 tokens):
the file runs in a few seconds on one CPU core.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from flowdiff.guidance import sample_with_guidance
from flowdiff.models import UNet
from flowdiff.solvers import time_grid
from flowdiff.transformer import (
    DiT,
    TokenTransformer,
    Attention,
    DiTBlock,
    FinalLayer,
    apply_rotary,
    attention_weights,
    grid_positions,
    multiply_adds,
    naive_attention,
    patchify,
    sincos_position_embedding_2d,
    unpatchify,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randomise(model: nn.Module, seed: int = 0, std: float = 0.2) -> nn.Module:
    """Random weights everywhere: the zero-initialised layers of a fresh DiT would hide every effect."""
    g = gen(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g))
    return model


def tiny(**overrides: object) -> DiT:
    config = dict(image_size=8, channels=1, patch_size=4, width=16, depth=1, heads=2, num_classes=3)
    config.update(overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return DiT(**config)


def inputs(n: int = 3, channels: int = 1, size: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    g = gen(1)
    return torch.randn(n, channels, size, size, generator=g), torch.rand(n, generator=g), torch.tensor([0, 2, 3, 1])[:n]


# --- patches -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "patch_size"), [((2, 1, 28, 28), 2), ((2, 1, 28, 28), 4), ((2, 1, 28, 28), 7),
                                                   ((2, 3, 32, 32), 4), ((2, 3, 8, 12), 4)])
def test_unpatchify_inverts_patchify(shape: tuple[int, ...], patch_size: int) -> None:
    x = torch.randn(*shape, generator=gen(0))
    n, c, h, w = shape
    tokens = patchify(x, patch_size)
    assert tokens.shape == (n, (h // patch_size) * (w // patch_size), patch_size**2 * c)
    assert torch.equal(unpatchify(tokens, patch_size, c, h, w), x)
    assert torch.equal(patchify(unpatchify(tokens, patch_size, c, h, w), patch_size), tokens)


def test_patchify_puts_each_pixel_where_the_formula_says() -> None:
    """A 4 × 6 image in 2 × 2 patches: a grid of 2 rows and 3 columns of patches, numbered row by row."""
    rows, columns = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    x = (10 * rows + columns).float()[None, None]  # pixel (r, c) holds the number "rc"
    tokens = patchify(x, 2)[0]
    assert tokens.shape == (6, 4)
    assert tokens[0].tolist() == [0, 1, 10, 11]
    assert tokens[2].tolist() == [4, 5, 14, 15]  # row 0 of patches, column 2: pixel columns 4 and 5
    assert tokens[4].tolist() == [22, 23, 32, 33]  # row 1 of patches, column 1
    # Two channels: channels last inside a token, pixel by pixel.
    two = torch.cat([x, x + 100], dim=1)
    assert patchify(two, 2)[0, 0].tolist() == [0, 100, 1, 101, 10, 110, 11, 111]


def test_patch_functions_name_their_bad_arguments() -> None:
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match="patch_size 3 must divide"):
        patchify(x, 3)
    with pytest.raises(ValueError, match="patch_size 3 must divide"):
        patchify(torch.zeros(2, 1, 27, 28), 3)  # the height divides, the width does not
    with pytest.raises(ValueError, match="images must"):
        patchify(x[:, 0], 4)
    with pytest.raises(ValueError, match="patch_size must"):
        patchify(x, 0)
    tokens = patchify(x, 4)
    with pytest.raises(ValueError, match="tokens must"):
        unpatchify(tokens[:, :-1], 4, 1, 28, 28)
    with pytest.raises(ValueError, match="tokens must"):
        unpatchify(tokens, 4, 2, 28, 28)
    with pytest.raises(ValueError, match="patch_size 4 must divide height and width"):
        unpatchify(tokens, 4, 1, 28, 30)
    with pytest.raises(ValueError, match="channels must"):
        unpatchify(tokens, 4, 0, 28, 28)


# --- positions -----------------------------------------------------------------------------------


def test_sincos_embedding_equals_the_reference_formula() -> None:
    """The formula of the MAE / DiT reference code, written with numpy, element by element."""
    grid_h, grid_w, dim = 3, 4, 12
    m = dim // 4
    expected = np.zeros((grid_h * grid_w, dim))
    for a in range(grid_h):
        for b in range(grid_w):
            for i in range(m):
                omega = 1.0 / 10000 ** (i / m)
                expected[a * grid_w + b, [i, m + i, 2 * m + i, 3 * m + i]] = [
                    np.sin(b * omega), np.cos(b * omega), np.sin(a * omega), np.cos(a * omega)]
    ours = sincos_position_embedding_2d(grid_h, grid_w, dim)
    assert ours.shape == (12, 12) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="dim must be a multiple of 4"):
        sincos_position_embedding_2d(3, 4, 10)


def test_grid_positions_number_patches_as_patchify_does() -> None:
    assert grid_positions(2, 3).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


def test_rope_keeps_norms_and_scores_depend_on_the_offset_only() -> None:
    g = gen(2)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)

    def score(position_q: list[float], position_k: list[float]) -> float:
        positions = torch.tensor([position_q, position_k])
        rotated_q = apply_rotary(torch.stack([q, q]), positions)[0]
        rotated_k = apply_rotary(torch.stack([k, k]), positions)[1]
        return float(rotated_q @ rotated_k)

    # 1-D: a position per token.
    one_d = lambda a, b: score([a], [b])  # noqa: E731
    assert one_d(3, 1) == pytest.approx(one_d(10, 8), abs=1e-5)
    assert one_d(3, 1) == pytest.approx(one_d(2.5, 0.5), abs=1e-5)
    assert abs(one_d(3, 1) - one_d(3, 3)) > 1e-2
    # 2-D: (row, column); the same offset anywhere in the grid gives the same score.
    assert score([1, 2], [3, 1]) == pytest.approx(score([4, 6], [6, 5]), abs=1e-5)
    assert abs(score([1, 2], [3, 1]) - score([1, 2], [1, 3])) > 1e-2
    assert abs(score([1, 2], [3, 1]) - score([1, 2], [2, 3])) > 1e-2  # rows and columns are told apart
    # Norms are kept.
    x = torch.randn(2, 3, 6, 8, generator=g)
    rotated = apply_rotary(x, grid_positions(2, 3))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    assert not torch.allclose(rotated, x)


def test_rope_rotates_half_a_head_with_the_row_and_half_with_the_column() -> None:
    x = torch.randn(4, 8, generator=gen(3))
    positions = torch.tensor([[0.0, 0.0], [0.0, 2.0], [1.0, 0.0], [1.0, 2.0]])
    rotated = apply_rotary(x, positions)
    assert torch.equal(rotated[0], x[0])
    assert torch.equal(rotated[1, :4], x[1, :4]) and not torch.allclose(rotated[1, 4:], x[1, 4:])  # column moves the second half
    assert torch.equal(rotated[2, 4:], x[2, 4:]) and not torch.allclose(rotated[2, :4], x[2, :4])  # row moves the first half
    with pytest.raises(ValueError, match="positions must"):
        apply_rotary(x, positions[:3])
    with pytest.raises(ValueError, match="multiple of 2"):
        apply_rotary(x[:, :6], positions)


# --- attention -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rope", [False, True])
def test_attention_equals_the_naive_formula(rope: bool) -> None:
    """The module's heads, computed by hand from its weights, head by head, with ``softmax(QKᵀ/√d)V``."""
    width, heads, n, grid = 16, 4, 2, (2, 3)
    torch.manual_seed(0)
    attention = Attention(width, heads)
    x = torch.randn(n, grid[0] * grid[1], width, generator=gen(4))
    positions = grid_positions(*grid) if rope else None
    qkv = x @ attention.qkv.weight.T + attention.qkv.bias
    d = width // heads
    outputs = []
    for h in range(heads):
        q, k, v = (qkv[..., part * width + h * d: part * width + (h + 1) * d] for part in range(3))
        if rope:
            q, k = apply_rotary(q, positions), apply_rotary(k, positions)
        outputs.append(naive_attention(q, k, v))
    expected = torch.cat(outputs, dim=-1) @ attention.output.weight.T + attention.output.bias
    torch.testing.assert_close(attention(x, positions), expected, atol=1e-5, rtol=1e-5)
    if rope:
        assert not torch.allclose(attention(x), expected, atol=1e-3)


def test_naive_attention_by_hand() -> None:
    """One query, two keys: weights softmax(q·k/√d), so the output is their mix of the values."""
    q = torch.tensor([[1.0, 1.0]])
    k = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    v = torch.tensor([[1.0], [0.0]])
    weight = math.exp(2 / math.sqrt(2)) / (math.exp(2 / math.sqrt(2)) + 1)
    assert naive_attention(q, k, v).item() == pytest.approx(weight)
    with pytest.raises(ValueError, match="k must"):
        naive_attention(q, k[:, :1], v)


@pytest.mark.parametrize("position", ["sincos", "rope"])
def test_attention_maps_are_the_weights_each_block_uses(position: str) -> None:
    """Rebuild every block's attention output from the returned maps and the values, and compare with the block's own."""
    model = randomise(tiny(depth=2, position=position), std=0.3)
    x, t, y = inputs()
    maps = model.attention_maps(x, t, y)
    length = model.grid[0] * model.grid[1]
    assert maps.shape == (2, 3, 2, length, length)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 3, 2, length))
    seen: list[tuple[Tensor, Tensor]] = []
    for block in model.blocks:
        block.attention.register_forward_hook(lambda module, args, output: seen.append((args, output)))
    with torch.no_grad():
        model(x, t, y)
    for block, weights, (args, output) in zip(model.blocks, maps, seen):
        _, _, v = block.attention.project(*args)
        heads = (weights @ v).transpose(1, 2).reshape(output.shape)
        torch.testing.assert_close(block.attention.output(heads), output, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="k must"):
        attention_weights(torch.ones(2, 3), torch.ones(2, 4))


# --- blocks --------------------------------------------------------------------------------------


def test_an_adaln_zero_block_is_the_identity_at_initialisation_and_an_additive_block_is_not() -> None:
    torch.manual_seed(0)
    x, c = torch.randn(2, 6, 16, generator=gen(5)), torch.randn(2, 16, generator=gen(6))
    block = DiTBlock(16, 2, "adaln-zero")
    assert torch.equal(block(x, c), x)
    assert torch.equal(block(x, c, grid_positions(2, 3)), x)
    additive = DiTBlock(16, 2, "additive")
    assert not torch.allclose(additive(x, c), x, atol=1e-2)
    assert torch.equal(FinalLayer(16, 5)(x, c), torch.zeros(2, 6, 5))
    with pytest.raises(ValueError, match="conditioning must"):
        DiTBlock(16, 2, "adaln")
    with pytest.raises(ValueError, match="e must"):
        block(x, c[:1])


def test_a_trained_adaln_block_depends_on_the_conditioning() -> None:
    block = randomise(DiTBlock(16, 2, "adaln-zero"))
    x = torch.randn(2, 6, 16, generator=gen(7))
    c = torch.randn(1, 16, generator=gen(8))
    assert not torch.allclose(block(x, c.expand(2, 16)), block(x, torch.zeros(2, 16)), atol=1e-3)


@pytest.mark.parametrize("conditioning", ["adaln-zero", "additive"])
def test_without_positions_the_tokens_are_a_set(conditioning: str) -> None:
    """With position="none" permuting the input tokens permutes the output tokens; with positions it does not."""
    tokens = torch.randn(2, 4, 16, generator=gen(9))
    c = torch.randn(2, 16, generator=gen(10))
    permutation = torch.tensor([2, 0, 3, 1])
    for position in ("none", "sincos", "rope"):
        model = randomise(tiny(depth=2, position=position, conditioning=conditioning), std=0.5)
        with torch.no_grad():
            permuted_first = model.process_tokens(tokens[:, permutation], c)
            permuted_after = model.process_tokens(tokens, c)[:, permutation]
        if position == "none":
            torch.testing.assert_close(permuted_first, permuted_after, atol=1e-5, rtol=1e-5)
        else:
            assert (permuted_first - permuted_after).abs().max() > 1e-2, position


# --- the network ---------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["sincos", "rope", "none"])
@pytest.mark.parametrize("conditioning", ["adaln-zero", "additive"])
def test_an_untrained_dit_is_the_zero_field(position: str, conditioning: str) -> None:
    model = tiny(image_size=28, patch_size=7, position=position, conditioning=conditioning)
    x, t, y = inputs(size=28)
    assert torch.equal(model(x, t, y), torch.zeros_like(x))


def test_the_dit_samples_with_classifier_free_guidance_unchanged() -> None:
    labels = torch.tensor([0, 1, 3])  # 3 is the null label
    # The zero field leaves the noise where it is.
    noise = torch.randn(3, 1, 8, 8, generator=gen(11))
    samples = sample_with_guidance(tiny(), labels, 2.0, 2, (1, 8, 8), generator=gen(11))
    assert torch.equal(samples, noise)
    # A random network: two Euler steps of (1 − w) u(x | ∅) + w u(x | y), written out.
    model = randomise(tiny(position="rope")).eval()
    samples = sample_with_guidance(model, labels, 2.0, 2, (1, 8, 8), generator=gen(11))
    x, null = noise.clone(), torch.full_like(labels, model.null_label)
    times = time_grid(2)
    with torch.no_grad():
        for start, end in zip(times[:-1], times[1:]):
            t = start.expand(3)
            field = -model(x, t, null) + 2.0 * model(x, t, labels)
            x = x + (end - start) * field
    torch.testing.assert_close(samples, x, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(samples, noise, atol=1e-2)


def test_the_label_and_the_time_change_the_output() -> None:
    model = randomise(tiny())
    x, t, _ = inputs(2)
    a = model(x, t, torch.tensor([1, 1]))
    assert not torch.allclose(a, model(x, t, torch.tensor([2, 3])), atol=1e-3)
    assert not torch.allclose(a, model(x, t.flip(0), torch.tensor([1, 1])), atol=1e-3)


def test_bad_inputs_name_the_argument() -> None:
    model = tiny()
    x, t, y = inputs()
    assert model.null_label == 3
    model(x, t, torch.tensor([3, 3, 3]))  # the null label is a label
    with pytest.raises(ValueError, match="labels must"):
        model(x, t, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="labels must"):
        model(x, t, torch.tensor([0, 1, -1]))
    with pytest.raises(ValueError, match="labels must"):
        model(x, t, y.double())
    with pytest.raises(ValueError, match=r"x must have shape \(n, 1, 8, 8\)"):
        model(torch.zeros(3, 1, 12, 12), t, y)
    with pytest.raises(ValueError, match="x must"):
        model(torch.zeros(3, 2, 8, 8), t, y)
    with pytest.raises(ValueError, match="x must"):
        model(x[:, 0], t, y)
    with pytest.raises(ValueError, match="t must have shape"):
        model(x, t[:2], y)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        model(x, t + 1, y)
    with pytest.raises(ValueError, match="tokens must"):
        model.process_tokens(torch.zeros(3, 5, 16), torch.zeros(3, 16))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"patch_size": 3}, "patch_size 3 must divide image_size"),
    ({"heads": 3}, r"heads \(3\) must divide width"),
    ({"position": "learned"}, "position must be one of"),
    ({"conditioning": "cross-attention"}, "conditioning must be one of"),
    ({"position": "rope", "width": 12, "heads": 2}, "multiple of 4 for position='rope'"),
    ({"width": 18, "heads": 2}, "multiple of 4 for position='sincos'"),
    ({"depth": 0}, "depth must"),
    ({"num_classes": 0}, "num_classes must"),
    ({"image_size": (8, 8, 8)}, "image_size must be an int or a pair"),
])
def test_bad_configurations_name_the_argument(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny(**overrides)


def test_trace_shapes_and_stages_account_for_every_parameter() -> None:
    model = tiny(image_size=(8, 12), channels=3, depth=2, width=16)
    x = torch.randn(2, 3, 8, 12, generator=gen(12))
    t, y = torch.tensor([0.2, 0.9]), torch.tensor([0, 3])
    trace = model.trace_shapes(x, t, y)
    assert [name for name, _, _ in trace] == ["input x", "embedding e", "patchify", "patch embedding",
                                              "block 1", "block 2", "final layer", "unpatchify"]
    shapes = {name: shape for name, shape, _ in trace}
    assert shapes["input x"] == shapes["unpatchify"] == (2, 3, 8, 12)
    assert shapes["embedding e"] == (2, 16)
    assert shapes["patchify"] == shapes["final layer"] == (2, 6, 48)  # 2 × 3 patches of 4 × 4 × 3 numbers
    assert shapes["patch embedding"] == shapes["block 2"] == (2, 6, 16)
    counts = {name: count for name, _, count in trace}
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert counts["patch embedding"] == 48 * 16 + 16 and counts["patchify"] == counts["unpatchify"] == 0
    assert counts["block 1"] == counts["block 2"] == sum(p.numel() for p in model.blocks[0].parameters())
    assert [name for name, _ in model.stages()] == [name for name, _, _ in trace[1:]]
    assert all(isinstance(m, nn.Module) for _, modules in model.stages() for m in modules)


def test_multiply_adds_against_a_hand_count() -> None:
    model = tiny(width=8, heads=2, num_classes=3, position="none", time_features=4)
    tokens, patch, width, hidden = 4, 16, 8, 32  # 2 × 2 patches of 4 × 4 pixels, MLP of width 4 D
    time_mlp = 4 * width + width * width
    patch_embedding = tokens * patch * width
    block = (width * 6 * width  # adaLN modulation, once per sample
             + tokens * width * 3 * width + 2 * tokens * tokens * width + tokens * width * width  # attention
             + 2 * tokens * width * hidden)  # MLP
    final = width * 2 * width + tokens * width * patch
    x, t, y = inputs(3)
    assert multiply_adds(model, x, t, y) == time_mlp + patch_embedding + block + final == 4960
    assert multiply_adds(model, x[:1], t[:1], y[:1]) == 4960  # per image

    class Convolution(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)

        def forward(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
            return self.conv(x)

    assert multiply_adds(Convolution(), torch.zeros(2, 2, 5, 5), t[:2], y[:2]) == 25 * 4 * 2 * 9
    assert multiply_adds(UNet(channels=(8, 16), layers=1, num_classes=3, embedding_dim=16), *inputs(size=8)) > 0


# --- the token transformer (Chapter 18) ------------------------------------------------------------


def tiny_tokens(**overrides: object) -> TokenTransformer:
    config = dict(vocab_size=3, num_states=4, grid=(4, 6), patch_size=2, width=16, depth=1, heads=2, num_classes=0)
    config.update(overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TokenTransformer(**config)


def test_an_untrained_token_transformer_predicts_the_uniform_posterior() -> None:
    model = tiny_tokens()
    x = torch.randint(0, 4, (5, 24), generator=gen(0))
    logits = model(x, torch.rand(5, generator=gen(1)))
    assert logits.shape == (5, 24, 3)
    assert torch.equal(logits, torch.zeros_like(logits))


@pytest.mark.parametrize("grid", [(4, 6), (1, 12)])
def test_token_logits_sit_where_their_tokens_sit(grid: tuple[int, int]) -> None:
    """With identity blocks (adaLN-Zero at initialisation) nothing mixes patches: changing one token moves the
    logits of exactly the tokens of its own p × p patch. A wrong reshape or transpose between the grid, the patches
    and the (n, L, V) logits moves other tokens' logits."""
    patch_size = 2 if grid[0] % 2 == 0 else 1
    model = tiny_tokens(grid=grid, patch_size=patch_size)
    with torch.no_grad():
        model.final_layer.linear.weight.copy_(torch.randn(model.final_layer.linear.weight.shape, generator=gen(2)))
    height, width = grid
    x = torch.randint(0, 4, (1, height * width), generator=gen(3))
    t = torch.full((1,), 0.5)
    base = model(x, t)
    for k in range(height * width):
        changed = x.clone()
        changed[0, k] = (changed[0, k] + 1) % 4
        moved = (model(changed, t) - base).abs().amax(dim=-1)[0] > 1e-6
        row, column = divmod(k, width)
        same_patch = torch.tensor([(i // width) // patch_size == row // patch_size and (i % width) // patch_size == column // patch_size
                                   for i in range(height * width)])
        assert torch.equal(moved, same_patch), k


def test_a_token_transformer_mixes_tokens_through_attention_and_reads_labels_and_time() -> None:
    model = randomise(tiny_tokens(num_classes=2), std=0.3)
    x = torch.randint(0, 4, (2, 24), generator=gen(4))
    t, labels = torch.tensor([0.2, 0.7]), torch.tensor([0, 2])
    base = model(x, t, labels)
    changed = x.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 4
    assert (model(changed, t, labels) - base)[:, -1].abs().max() > 1e-4  # the last token reads the first
    assert (model(x, t, torch.tensor([1, 1])) - base).abs().max() > 1e-4
    assert (model(x, torch.tensor([0.9, 0.1]), labels) - base).abs().max() > 1e-4
    assert model.null_label == 2 and tiny_tokens().null_label is None


def test_a_token_transformer_trains_and_samples_with_the_discrete_flow_functions() -> None:
    from flowdiff.discrete_flows import MixturePath, discrete_flow_matching_loss, sample_discrete

    model = tiny_tokens(num_classes=2)
    path = MixturePath(3, "mask")
    x1 = torch.randint(0, 3, (6, 24), generator=gen(5))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = discrete_flow_matching_loss(model, path, x1, labels=labels, generator=gen(6))
    loss.backward()
    assert math.isclose(loss.item(), math.log(3), rel_tol=1e-5)  # the uniform posterior of the zero network
    samples = sample_discrete(model, path, 6, 24, 4, labels=labels, guidance_scale=2.0, generator=gen(7))
    assert samples.shape == (6, 24) and samples.max() < 3


@pytest.mark.parametrize(("overrides", "message"), [
    ({"grid": (4, 5)}, "patch_size"), ({"num_states": 2}, "num_states"), ({"num_classes": -1}, "num_classes"),
    ({"grid": "ab"}, "grid"), ({"heads": 3}, "heads"), ({"vocab_size": 0}, "vocab_size"),
])
def test_bad_token_transformer_configurations_name_the_argument(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_tokens(**overrides)


def test_bad_token_inputs_name_the_argument() -> None:
    model, conditional = tiny_tokens(), tiny_tokens(num_classes=2)
    x, t = torch.zeros(2, 24, dtype=torch.long), torch.rand(2)
    with pytest.raises(ValueError, match="x must be a long tensor of shape"):
        model(x.float(), t)
    with pytest.raises(ValueError, match="x must be a long tensor of shape"):
        model(x[:, :5], t)
    with pytest.raises(ValueError, match="x must hold states in"):
        model(x + 4, t)
    with pytest.raises(ValueError, match="t must have shape"):
        model(x, t[:1])
    with pytest.raises(ValueError, match="labels must be None"):
        model(x, t, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must"):
        conditional(x, t, None)
