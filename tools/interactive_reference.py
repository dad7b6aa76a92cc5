"""Reference values of the interactive figures' exact formulas, computed with flowdiff.

The interactive figures compute their exact formulas in the browser with
`_ext/static/flowdiff-exact.js`. This module evaluates the same formulas with
the Python package, in float64, at fixed reference points, and writes inputs
and outputs as JSON. The build writes the file into the site
(`_static/interactive-reference.json`, see `_ext/interactive.py`), and
`tests/test_interactive.py` runs the JavaScript module on those inputs, in
Node.js and in the browser, and asks for agreement to 1e-6.

    python tools/interactive_reference.py OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from flowdiff.coupling import ot_pairing, pairing_cost
from flowdiff.discrete import VarianceExplodingChain, ddim_sample, ddpm_sample, exact_denoiser
from flowdiff.discrete_flows import forward_marginals, step_transition_matrix
from flowdiff.distributions import GaussianMixture
from flowdiff.dynamics import OrnsteinUhlenbeck, OverdampedLangevin, VectorFieldODE
from flowdiff.guidance import exact_conditional_field, guided_vector_field
from flowdiff.labelled_mixtures import LabelledMixture
from flowdiff.paths import CosineScheduler, GaussianPath, LinearScheduler, VPScheduler
from flowdiff.solvers import euler_maruyama_step, simulate, time_grid
from flowdiff.toy_data import UNEVEN_BLOBS

DTYPE = torch.float64
SCHEDULERS = {"linear": LinearScheduler(), "cosine": CosineScheduler(), "vp": VPScheduler(0.1, 20.0)}
TIMES = [0.05, 0.3, 0.5, 0.77, 0.95]
# The 2-D mixture of the figures (unequal weights and widths), and points around and between its components.
MEANS, STDS, WEIGHTS = UNEVEN_BLOBS["means"], UNEVEN_BLOBS["stds"], UNEVEN_BLOBS["weights"]
POINTS = [[0.0, 0.0], [-1.7, 0.2], [2.5, -0.4], [0.4, -1.5], [-3.0, 3.0]]


def tensor(values: Any) -> torch.Tensor:
    return torch.tensor(values, dtype=DTYPE)


def listed(values: torch.Tensor) -> Any:
    return values.detach().cpu().tolist()


def isotropic_mixture(means: list, stds: list, weights: list | None = None) -> GaussianMixture:
    means_t = tensor(means)
    dim = means_t.shape[1]
    covs = torch.stack([std**2 * torch.eye(dim, dtype=DTYPE) for std in stds])
    return GaussianMixture(means_t, covs, None if weights is None else tensor(weights))


def schedulers() -> dict:
    times = tensor(TIMES)
    out = {}
    for name, scheduler in SCHEDULERS.items():
        alpha, beta = scheduler.alpha(times), scheduler.beta(times)
        out[name] = {
            "t": TIMES,
            "alpha": listed(alpha), "beta": listed(beta),
            "alphaDot": listed(scheduler.alpha_dot(times)), "betaDot": listed(scheduler.beta_dot(times)),
            "betaBetaDot": listed(scheduler.beta_beta_dot(times)),
            "logSnr": listed(2 * (alpha.log() - beta.log())),
        }
    return out


def mixture_values() -> dict:
    mixture = isotropic_mixture(MEANS, STDS, WEIGHTS)
    x = tensor(POINTS)
    denoised, score = mixture.noised_posterior(x, 0.6, 0.7)
    return {
        "means": MEANS, "stds": STDS, "weights": WEIGHTS, "points": POINTS,
        "logDensity": listed(mixture.log_density(x)), "score": listed(mixture.score(x)),
        "noised": {"scale": 0.6, "noiseStd": 0.7, "denoised": listed(denoised), "score": listed(score)},
    }


def marginals() -> dict:
    mixture = isotropic_mixture(MEANS, STDS, WEIGHTS)
    x = tensor(POINTS)
    out = {}
    for name, scheduler in SCHEDULERS.items():
        path = GaussianPath(scheduler)
        rows = []
        for t in (0.0, 0.4, 0.9, 1.0):
            times = torch.full((x.shape[0],), t, dtype=DTYPE)
            rows.append({
                "t": t,
                "logDensity": listed(path.marginal(mixture, t).log_density(x)),
                "score": listed(path.marginal_score(mixture, x, times)),
                "field": listed(path.marginal_vector_field(mixture, x, times)),
            })
        out[name] = rows
    return out


def guidance() -> dict:
    means = [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]]
    labels = [0, 0, 1, 1]
    std, y, w, t = 0.5, 1, 2.5, 0.6
    data = LabelledMixture.isotropic(tensor(means), torch.tensor(labels), std)
    field = exact_conditional_field(GaussianPath(LinearScheduler()), data)
    x = tensor(POINTS)
    times = torch.full((x.shape[0],), t, dtype=DTYPE)
    conditional = field(x, times, torch.full((x.shape[0],), y))
    unconditional = field(x, times, torch.full((x.shape[0],), data.num_classes))
    return {"means": means, "labels": labels, "std": std, "label": y, "scale": w, "t": t, "points": POINTS,
            "field": listed(guided_vector_field(conditional, unconditional, w))}


def solvers() -> dict:
    mixture = isotropic_mixture(MEANS, STDS, WEIGHTS)
    path = GaussianPath(LinearScheduler())
    ode = VectorFieldODE(lambda x, t: path.marginal_vector_field(mixture, x, t))
    x0 = tensor(POINTS)
    steps = 7
    final = {method: listed(simulate(ode, x0, time_grid(steps, dtype=DTYPE), method=method))
             for method in ("euler", "heun", "midpoint")}
    # One Euler-Maruyama step of an Ornstein-Uhlenbeck process and of overdamped Langevin dynamics; the noise
    # is the first draw of the step's generator, read back from a twin generator with the same seed.
    x, t, h = tensor(POINTS), torch.full((len(POINTS),), 0.25, dtype=DTYPE), torch.tensor(0.1, dtype=DTYPE)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    ou = OrnsteinUhlenbeck(theta=0.8, sigma=0.6)
    langevin = OverdampedLangevin(mixture, sigma=1.3)
    return {
        "points": POINTS, "steps": steps, "final": final, "noise": listed(noise), "t": 0.25, "h": 0.1,
        "ou": {"theta": 0.8, "sigma": 0.6,
               "next": listed(euler_maruyama_step(ou, x, t, h, generator=torch.Generator().manual_seed(3)))},
        "langevin": {"sigma": 1.3,
                     "next": listed(euler_maruyama_step(langevin, x, t, h, generator=torch.Generator().manual_seed(3)))},
    }


def chain_samplers() -> dict:
    means, stds, weights = [[-1.0], [2.0]], [0.3, 0.5], [0.4, 0.6]
    data = isotropic_mixture(means, stds, weights)
    chain = VarianceExplodingChain(sigma=2.0, steps=10)
    start = tensor([[-3.0], [0.5], [1.0], [4.0]])
    denoiser = exact_denoiser(data, chain)
    seed = 5
    # ddpm_sample draws one standard normal of the batch's shape per noisy step (all but the last).
    twin = torch.Generator().manual_seed(seed)
    noises = [listed(torch.randn(start.shape, generator=twin, dtype=DTYPE)) for _ in range(chain.steps - 1)]
    return {
        "means": means, "stds": stds, "weights": weights, "sigma": 2.0, "steps": 10, "start": listed(start),
        "ddim": listed(ddim_sample(denoiser, chain, start)),
        "ddpm": listed(ddpm_sample(denoiser, chain, start, generator=torch.Generator().manual_seed(seed))),
        "noises": noises,
    }


def couplings() -> dict:
    generator = torch.Generator().manual_seed(11)
    noise = torch.randn(12, 2, generator=generator, dtype=DTYPE)
    data = torch.randn(12, 2, generator=generator, dtype=DTYPE) * 0.5 + tensor([2.0, 1.0])
    permutation = ot_pairing(noise, data)
    return {"noise": listed(noise), "data": listed(data), "permutation": listed(permutation),
            "independentCost": pairing_cost(noise, data), "optimalCost": pairing_cost(noise[permutation], data)}


def markov_chains() -> dict:
    rates = tensor([[-1.5, 1.0, 0.5], [0.2, -0.7, 0.5], [0.9, 0.6, -1.5]])
    p0 = tensor([0.7, 0.2, 0.1])
    t, steps = 0.8, 5
    euler = p0[None, :] @ torch.linalg.matrix_power(step_transition_matrix(rates, t / steps), steps)
    return {"rates": listed(rates), "p0": listed(p0), "t": t, "steps": steps,
            "exact": listed(forward_marginals(p0[None, :], rates, t)[0]), "euler": listed(euler[0])}


def reference() -> dict:
    """Every reference case, as one JSON-ready dictionary."""
    return {
        "schedulers": schedulers(), "mixture": mixture_values(), "marginals": marginals(), "guidance": guidance(),
        "solvers": solvers(), "chains": chain_samplers(), "couplings": couplings(), "markov": markov_chains(),
    }


def write_reference(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reference()) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    write_reference(Path(sys.argv[1]))
