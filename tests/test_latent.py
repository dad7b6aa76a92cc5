"""flowdiff.latent: standardised codes, decoding, and latent flows sampled with classifier-free guidance."""

from __future__ import annotations

import pytest
import torch

from flowdiff.guidance import sample_with_guidance
from flowdiff.latent import LatentFlow, LatentSpace, encode_dataset
from flowdiff.models import ConditionalMLPVectorField, MLPVectorField
from flowdiff.vae import VAE


def images(n: int = 50) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_encoded_dataset_is_standardised() -> None:
    torch.manual_seed(0)
    vae = VAE(latent_dim=6, channels=(4, 8))
    codes, mean, std = encode_dataset(vae, images(), batch_size=7)
    torch.testing.assert_close(codes.mean(0), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(codes.std(0), torch.ones(6))
    torch.testing.assert_close(mean + std * codes, vae.encode(images())[0].detach())


def test_decoding_the_codes_is_reconstructing_from_the_posterior_mean() -> None:
    torch.manual_seed(0)
    vae = VAE(latent_dim=6, channels=(4, 8))
    _, mean, std = encode_dataset(vae, images())
    space = LatentSpace(vae, mean, std)
    with torch.no_grad():
        torch.testing.assert_close(space.decode(space.encode(images())), vae(images()))
    assert space.dim == 6


def test_latent_flow_keeps_its_standardisation_and_samples_with_guidance() -> None:
    torch.manual_seed(0)
    flow = LatentFlow(ConditionalMLPVectorField(6, 3, hidden=16, layers=2), 6)
    assert flow.null_label == 3
    assert set(flow.state_dict()) >= {"latent_mean", "latent_std"}
    labels = torch.tensor([0, 1, 2, 1])
    codes = sample_with_guidance(flow, labels, 2.0, 5, (6,), generator=torch.Generator().manual_seed(0))
    # The same five Euler steps written out: x += h ((1 - w) u(x, t | null) + w u(x, t | y)) with w = 2.
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    null = torch.full_like(labels, 3)
    with torch.no_grad():
        for step in range(5):
            t = torch.full((4,), step / 5)
            x = x + 0.2 * (-flow.field(x, t, null) + 2 * flow.field(x, t, labels))
    torch.testing.assert_close(codes, x)
    # The standardisation travels with the weights and reaches the decoder: D(m + s z).
    flow.latent_mean.fill_(0.5)
    flow.latent_std.fill_(2.0)
    restored = LatentFlow(ConditionalMLPVectorField(6, 3, hidden=16, layers=2), 6)
    restored.load_state_dict(flow.state_dict())
    vae = VAE(latent_dim=6, channels=(4, 8))
    with torch.no_grad():
        torch.testing.assert_close(restored.space(vae).decode(codes), vae.decode(0.5 + 2.0 * codes))
    unconditional = LatentFlow(MLPVectorField(6, hidden=16, layers=2), 6)
    assert not hasattr(unconditional, "null_label")
    assert unconditional(torch.zeros(2, 6), torch.zeros(2)).shape == (2, 6)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: LatentSpace(VAE(latent_dim=4), torch.zeros(3), torch.ones(4)), "mean"),
        (lambda: LatentSpace(VAE(latent_dim=4), torch.zeros(4), torch.zeros(4)), "std"),
        (lambda: LatentSpace(torch.nn.Linear(2, 2), torch.zeros(4), torch.ones(4)), "vae"),
        (lambda: LatentSpace(VAE(latent_dim=4), torch.zeros(4), torch.ones(4)).decode(torch.zeros(2, 5)), "codes"),
        (lambda: LatentFlow(torch.nn.Linear(2, 2), 0), "latent_dim"),
        (lambda: LatentFlow(lambda x: x, 2), "field"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()
