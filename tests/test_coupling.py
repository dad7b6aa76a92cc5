"""flowdiff.coupling: the minibatch optimal-transport pairing against brute force and SciPy, and its effect on learned paths."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from flowdiff.coupling import ot_pairing, pair_by_optimal_transport, pairing_cost
from flowdiff.distributions import GaussianMixture
from flowdiff.dynamics import VectorFieldODE
from flowdiff.metrics import path_straightness
from flowdiff.solvers import simulate_trajectory, time_grid
from flowdiff.training import fit_flow_matching


@pytest.mark.parametrize("seed", range(5))
def test_ot_pairing_is_the_best_permutation_by_brute_force(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    noise, data = torch.randn(6, 2, generator=generator), torch.randn(6, 2, generator=generator) + 1
    order = ot_pairing(noise, data)
    assert sorted(order.tolist()) == list(range(6))
    best = min(pairing_cost(noise[list(p)], data) for p in itertools.permutations(range(6)))
    assert pairing_cost(noise[order], data) == pytest.approx(best, rel=1e-12)


@pytest.mark.usefixtures("float64")  # compares with SciPy's assignment at float64 round-off
def test_ot_pairing_matches_scipy_assignment_on_images() -> None:
    generator = torch.Generator().manual_seed(0)
    noise, data = torch.randn(40, 1, 4, 4, generator=generator), torch.randn(40, 1, 4, 4, generator=generator)
    cost = torch.cdist(data.flatten(1), noise.flatten(1)).square().numpy()
    rows, columns = linear_sum_assignment(cost)
    assert pairing_cost(pair_by_optimal_transport(noise, data), data) == pytest.approx(cost[rows, columns].mean(), rel=1e-10)


def test_in_one_dimension_the_optimal_pairing_is_monotone() -> None:
    generator = torch.Generator().manual_seed(1)
    noise, data = torch.randn(50, 1, generator=generator), torch.randn(50, 1, generator=generator) * 3
    paired = pair_by_optimal_transport(noise, data)
    order = data[:, 0].argsort()
    assert torch.all(paired[order, 0].diff() > 0)
    # Only the pairing changes: the noise points are the same set.
    torch.testing.assert_close(paired[:, 0].sort().values, noise[:, 0].sort().values)


def test_optimal_transport_coupling_straightens_the_learned_paths() -> None:
    """Eight Gaussians from N(0, I): the OT-coupled flow's paths are much straighter (eq-fast-straightness)."""
    data = GaussianMixture.on_circle(8, 4.0, 0.3)
    x0 = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    straightness = {}
    for coupling in ("independent", "optimal-transport"):
        model, _ = fit_flow_matching(data, steps=400, batch_size=256, hidden=64, coupling=coupling, seed=0)
        straightness[coupling] = path_straightness(simulate_trajectory(VectorFieldODE(model), x0, time_grid(100)))
    assert straightness["optimal-transport"] < 0.3 * straightness["independent"]


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: ot_pairing(torch.zeros(3, 2), torch.zeros(4, 2)), "noise and data"),
        (lambda: ot_pairing(torch.zeros(3), torch.zeros(3)), "noise"),
        (lambda: pairing_cost(torch.zeros(3, 2), torch.zeros(3, 3)), "noise and data"),
        (lambda: fit_flow_matching(GaussianMixture.on_circle(2, 1.0, 0.1), steps=1, coupling="sinkhorn"), "coupling"),
    ],
)
def test_bad_input_names_the_argument(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()
