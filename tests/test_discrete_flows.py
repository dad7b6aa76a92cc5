"""flowdiff.discrete_flows (Chapter 18) against references it does not compute itself.

- CTMCs: ``scipy.linalg.expm`` for the law of a constant-rate chain; the
  closed-form one-step laws of the Euler and τ-leaping steps.
- Mixture paths: their marginals written out here from ``κ_t``, and the
  Kolmogorov forward equation checked by central differences in ``t``.
- Posteriors, losses, ELBO and samplers: a toy with a few sequences of length 2
  over a vocabulary of 3, where Bayes' rule over every sequence is a short sum.

Monte Carlo tolerances are stated where they are used: with ``N`` draws a
frequency has standard error at most ``0.5/√N``, and the total variation of ``m``
frequencies has mean about ``0.4 Σ √(p(1−p)/N)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import Tensor

from flowdiff.discrete_flows import (
    bin_centres,
    histogram,
    quantise,
    total_variation as package_total_variation,
    CosineKappa,
    LinearKappa,
    MixturePath,
    PolynomialKappa,
    bits_per_token,
    check_rate_matrix,
    discrete_flow_matching_loss,
    enumerate_sequences,
    euler_jump_step,
    exact_posterior,
    forward_marginals,
    guided_log_probabilities,
    joint_rate_matrix,
    negative_elbo,
    sample_discrete,
    sequence_index,
    simulate_ctmc,
    step_transition_matrix,
    tau_leap_step,
    unmask_step,
)

DTYPES = [torch.float32, torch.float64]


def dtype_id(value: object) -> str | None:
    """Test ids that read ``float32`` rather than ``dtype0``."""
    return str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else None

# A 4-state chain with no symmetry (a transposed Q gives other marginals), rates about 1.
Q4 = torch.tensor(
    [[-1.0, 0.6, 0.3, 0.1], [0.2, -0.9, 0.4, 0.3], [0.5, 0.1, -1.2, 0.6], [0.3, 0.7, 0.2, -1.2]], dtype=torch.float64
)
P0 = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)

# The toy data: sequences of length 2 over V = 3 tokens.
VOCAB, LENGTH = 3, 2
SUPPORT = torch.tensor([[0, 1], [1, 1], [2, 0], [0, 2]])
WEIGHTS = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)

# The schedulers' closed forms, written out independently of the module.
KAPPAS = {
    "linear": (LinearKappa(), lambda t: t, lambda t: torch.ones_like(t)),
    "cubic": (PolynomialKappa(3.0), lambda t: t**3, lambda t: 3 * t**2),
    "cosine": (CosineKappa(), lambda t: 1 - torch.cos(math.pi * t / 2), lambda t: math.pi / 2 * torch.sin(math.pi * t / 2)),
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def total_variation(p: Tensor, q: Tensor) -> float:
    return 0.5 * (p.double() - q.double()).abs().sum().item()


def frequencies(x: Tensor, num_states: int) -> Tensor:
    """Empirical law over all ``num_states^L`` sequences (or over the states, for ``L = 1`` or flattened tokens)."""
    index = sequence_index(x, num_states) if x.ndim == 2 else x
    return torch.bincount(index, minlength=num_states ** (x.shape[1] if x.ndim == 2 else 1)).double() / index.numel()


def full_support_data(seed: int = 0) -> tuple[Tensor, Tensor]:
    """Every sequence of length 2 over 3 tokens, with random positive weights: every state has mass for t in (0, 1)."""
    support = enumerate_sequences(VOCAB, LENGTH)
    weights = torch.rand(len(support), generator=gen(seed), dtype=torch.float64) + 0.2
    return support, weights / weights.sum()


def source_law(path: MixturePath) -> Tensor:
    if path.source == "mask":
        return torch.eye(path.num_states, dtype=torch.float64)[VOCAB]
    return torch.full((VOCAB,), 1 / VOCAB, dtype=torch.float64)


def reference_marginal(path: MixturePath, kappa: float, support: Tensor, weights: Tensor) -> Tensor:
    """``p_t(x) = Σ_k w_k Π_i [κ δ(x_i = a_ki) + (1 − κ) p_0(x_i)]`` over every sequence, written out here."""
    states = enumerate_sequences(path.num_states, LENGTH)
    p0 = source_law(path)
    law = torch.zeros(len(states), dtype=torch.float64)
    for a, w in zip(support, weights):
        token = kappa * (states == a).double() + (1 - kappa) * p0[states]
        law += w * token.prod(dim=1)
    return law


def reference_posterior(path: MixturePath, kappa: float, x: Tensor, support: Tensor, weights: Tensor) -> Tensor:
    """``p(x_1^i = v | x)`` by Bayes' rule over the support, one sequence at a time."""
    p0 = source_law(path)
    out = torch.zeros(len(x), LENGTH, VOCAB, dtype=torch.float64)
    for b, seq in enumerate(x):
        joint = torch.tensor([w * torch.prod(kappa * (seq == a).double() + (1 - kappa) * p0[seq]) for a, w in zip(support, weights)])
        joint = joint / joint.sum()
        for a, p in zip(support, joint):
            out[b, torch.arange(LENGTH), a] += p
    return out


# --- rate matrices and the Kolmogorov forward equation -----------------------------------------------


def test_check_rate_matrix_accepts_rate_matrices_and_names_what_is_wrong() -> None:
    check_rate_matrix(Q4)
    check_rate_matrix(torch.stack([Q4, 2 * Q4]).float())  # a batch, in float32
    negative = Q4.clone()
    negative[0, 1], negative[0, 0] = -0.1, 0.0  # rows still sum to zero
    with pytest.raises(ValueError, match="Q must have non-negative off-diagonal"):
        check_rate_matrix(negative)
    unbalanced = Q4.clone()
    unbalanced[2, 2] = -1.0
    with pytest.raises(ValueError, match="generator must have rows that sum to zero"):
        check_rate_matrix(unbalanced, name="generator")
    with pytest.raises(ValueError, match="Q must be square"):
        check_rate_matrix(Q4[:3])
    with pytest.raises(ValueError, match="Q must be a floating-point"):
        check_rate_matrix(torch.zeros(3, 3, dtype=torch.long))


def test_forward_marginals_match_scipy_expm() -> None:
    times = torch.tensor([0.0, 0.3, 1.0, 2.5], dtype=torch.float64)
    reference = np.stack([P0.numpy() @ scipy.linalg.expm(t * Q4.numpy()) for t in times.tolist()])
    torch.testing.assert_close(forward_marginals(P0, Q4, times), torch.from_numpy(reference), rtol=0, atol=1e-12)
    torch.testing.assert_close(forward_marginals(P0, Q4, 0.3), torch.from_numpy(reference[1]), rtol=0, atol=1e-12)
    batch = torch.stack([P0, torch.full((4,), 0.25, dtype=torch.float64)])
    assert forward_marginals(batch, Q4, times).shape == (4, 2, 4)
    # float32 agrees to float32 round-off
    torch.testing.assert_close(forward_marginals(P0.float(), Q4.float(), 1.0), torch.from_numpy(reference[2]).float(), rtol=0, atol=1e-5)


def test_the_euler_jump_sampler_has_the_marginals_of_expm() -> None:
    """100,000 tokens, 100 Euler steps to t = 1: TV to expm below 0.01.

    The scheme's own bias is 0.0011 here (exactly: the 100th power of step_transition_matrix), and the
    Monte Carlo TV of 4 frequencies from 100,000 draws is about 0.002 on average, below 0.006 almost surely.
    """
    x0 = torch.multinomial(P0, 100_000, replacement=True, generator=gen(0)).reshape(-1, 4)
    rates = Q4.float()
    x1 = simulate_ctmc(x0, lambda x, t: rates[x], torch.linspace(0, 1, 101), generator=gen(1))
    reference = torch.from_numpy(P0.numpy() @ scipy.linalg.expm(Q4.numpy()))
    assert total_variation(frequencies(x1.flatten(), 4), reference) < 0.01


@pytest.mark.parametrize("method", ["euler", "tau_leaping"])
@pytest.mark.parametrize("h", [0.3, 1.5])  # 1.5: h λ > 1 for every state, Euler's clamped regime
def test_one_step_has_the_law_of_its_transition_matrix(method: str, h: float) -> None:
    """From every state at once, 30,000 tokens each: TV per row below 0.02 (its Monte Carlo mean is about 0.004)."""
    off = Q4.clone().fill_diagonal_(0)
    total = off.sum(dim=1, keepdim=True)
    if method == "euler":
        expected = h * off / torch.clamp(h * total, min=1.0)  # closed form, with the documented clamp
    else:
        expected = (1 - torch.exp(-h * off)) * torch.exp(-h * (total - off))
    expected = expected + torch.diag(1 - expected.sum(dim=1))
    torch.testing.assert_close(step_transition_matrix(Q4, h, method), expected)
    if method == "euler" and h < 1 / total.max():
        torch.testing.assert_close(expected, torch.eye(4, dtype=torch.float64) + h * Q4)
    x = torch.arange(4).repeat_interleave(30_000).reshape(-1, 1)
    step = euler_jump_step if method == "euler" else tau_leap_step
    # The diagonal of the rates is ignored: a wrong one must not change the law.
    rates = Q4.float()[x] + 5.0 * torch.nn.functional.one_hot(x, 4)
    after = step(x, rates, h, gen(2))
    for state in range(4):
        assert total_variation(frequencies(after[x[:, 0] == state, 0], 4), expected[state]) < 0.02


@pytest.mark.parametrize("method", ["euler", "tau_leaping"])
def test_the_error_of_a_step_is_first_order(method: str) -> None:
    """Halving h halves the TV between K = 1/h steps and exp(Q): both schemes are first-order accurate."""
    exact = forward_marginals(P0, Q4, 1.0)
    errors = []
    for steps in (25, 50, 100, 200):
        law = P0 @ torch.linalg.matrix_power(step_transition_matrix(Q4, 1 / steps, method), steps)
        errors.append(total_variation(law, exact))
    ratios = [a / b for a, b in zip(errors[:-1], errors[1:])]
    assert all(1.8 < r < 2.2 for r in ratios), ratios


def test_simulate_ctmc_chains_the_steps_and_keeps_the_trajectory() -> None:
    x0 = torch.randint(0, 4, (50, 3), generator=gen(3))
    rates = Q4.float()
    grid = torch.tensor([0.0, 0.2, 0.5, 1.0])
    path = simulate_ctmc(x0, lambda x, t: rates[x], grid, method="tau_leaping", generator=gen(4), trajectory=True)
    by_hand, generator = x0, gen(4)
    for a, b in zip(grid[:-1], grid[1:]):
        by_hand = tau_leap_step(by_hand, rates[by_hand], (b - a).item(), generator)
    assert path.states.shape == (50, 4, 3)
    torch.testing.assert_close(path.final, by_hand)
    torch.testing.assert_close(path.states[:, 0], x0)


# --- schedulers and the mixture paths ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(KAPPAS))
def test_schedulers_run_from_zero_to_one_with_their_derivative_and_inverse(name: str) -> None:
    scheduler, value, derivative = KAPPAS[name]
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    kappa = scheduler(t)
    torch.testing.assert_close(kappa.value, value(t))
    torch.testing.assert_close(kappa.derivative, derivative(t))
    assert kappa.value[0] == 0 and kappa.value[-1] == 1
    assert torch.all(kappa.value[1:] > kappa.value[:-1])
    torch.testing.assert_close(scheduler.inverse(kappa.value), t)
    inner, delta = t[1:-1], 1e-6
    difference = (scheduler(inner + delta).value - scheduler(inner - delta).value) / (2 * delta)
    torch.testing.assert_close(difference, scheduler(inner).derivative, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_the_path_samples_have_the_closed_form_marginals(source: str, dtype: torch.dtype) -> None:
    """x1 drawn from the toy data, 200,000 pairs at each of three times; per-token frequencies within 0.006 of

    κ_t q_i(v) + (1 − κ_t) p_0(v) (standard error at most 0.5/√200,000 = 0.0011).
    """
    path = MixturePath(VOCAB, source, CosineKappa())
    n = 200_000
    x1 = SUPPORT[torch.multinomial(WEIGHTS, n, replacement=True, generator=gen(5))]
    q = torch.stack([torch.bincount(SUPPORT[:, i], weights=WEIGHTS, minlength=VOCAB) for i in range(LENGTH)])  # (L, V)
    for time in (0.2, 0.5, 0.9):
        t = torch.full((n,), time, dtype=dtype)
        xt = path.sample(x1, t, gen(6))
        kappa = 1 - math.cos(math.pi * time / 2)
        p0 = source_law(path)
        expected = kappa * torch.nn.functional.pad(q, (0, path.num_states - VOCAB)) + (1 - kappa) * p0
        for i in range(LENGTH):
            seen = torch.bincount(xt[:, i], minlength=path.num_states).double() / n
            torch.testing.assert_close(seen, expected[i], rtol=0, atol=0.006)
        closed = path.marginal_probabilities(q.to(dtype).expand(n, -1, -1), t)
        assert closed.dtype == dtype
        torch.testing.assert_close(closed[0].double(), expected, rtol=0, atol=1e-6)
        conditional = path.conditional_probabilities(x1[:3], t[:3])
        torch.testing.assert_close(conditional.sum(-1), torch.ones(3, LENGTH, dtype=dtype))
        torch.testing.assert_close(conditional.gather(-1, x1[:3, :, None])[..., 0].double(),
                                   torch.full((3, LENGTH), kappa + (1 - kappa) * (1 / VOCAB if source == "uniform" else 0),
                                              dtype=torch.float64), rtol=0, atol=1e-6)


def test_the_masking_path_reveals_tokens_and_never_invents_them() -> None:
    path = MixturePath(VOCAB, "mask")
    x1 = SUPPORT.repeat(1000, 1)
    xt = path.sample(x1, torch.full((len(x1),), 0.5), gen(7))
    assert torch.all((xt == x1) | (xt == VOCAB))
    assert torch.all(path.sample(x1, torch.zeros(len(x1)), gen(8)) == VOCAB)
    assert torch.all(path.sample(x1, torch.ones(len(x1)), gen(9)) == x1)


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_the_conditional_rates_generate_the_conditional_path(source: str) -> None:
    """d/dt p_t(· | x_1) = p_t(· | x_1) U_t, token by token, with U_t[x, y] the conditional rate (central differences)."""
    path = MixturePath(VOCAB, source, PolynomialKappa(2.0))
    states = torch.arange(path.num_states)[:, None]
    for target in range(VOCAB):
        x1 = torch.full_like(states, target)
        for time in (0.1, 0.45, 0.8):
            t = torch.full((path.num_states,), time, dtype=torch.float64)
            U = path.conditional_rates(states, x1, t)[:, 0, :]
            check_rate_matrix(U)
            delta = 1e-6
            law = lambda s: path.conditional_probabilities(x1[:1], torch.tensor([s], dtype=torch.float64))[0, 0]  # noqa: E731
            derivative = (law(time + delta) - law(time - delta)) / (2 * delta)
            torch.testing.assert_close(derivative, law(time) @ U, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kappa", ["linear", "cosine"])
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_the_marginal_rates_of_the_exact_posterior_solve_the_kolmogorov_equation(source: str, kappa: str) -> None:
    """The discrete marginalisation trick: on all S^L sequences, d/dt p_t = p_t Q_t with Q_t assembled from the

    per-token marginal rates; p_t is written out here from the data's law, and differentiated by central differences.
    """
    path = MixturePath(VOCAB, source, KAPPAS[kappa][0])
    support, weights = full_support_data()
    posterior = exact_posterior(path, support, weights)
    states = enumerate_sequences(path.num_states, LENGTH)
    for time in (0.15, 0.5, 0.85):
        t = torch.full((len(states),), time, dtype=torch.float64)
        rates = path.marginal_rates(states, posterior(states, t).exp(), t)
        Q = joint_rate_matrix(rates)
        check_rate_matrix(Q)
        k = lambda s: KAPPAS[kappa][1](torch.tensor(s, dtype=torch.float64)).item()  # noqa: E731
        delta = 1e-6
        derivative = (reference_marginal(path, k(time + delta), support, weights)
                      - reference_marginal(path, k(time - delta), support, weights)) / (2 * delta)
        torch.testing.assert_close(reference_marginal(path, k(time), support, weights) @ Q, derivative, rtol=0, atol=1e-7)


def test_joint_rate_matrix_moves_one_token_at_a_time() -> None:
    """Built by hand for L = 2, S = 2: from (a, b) token 0 jumps at rates[.., 0, :] and token 1 at rates[.., 1, :]."""
    rates = torch.rand(4, 2, 2, generator=gen(10), dtype=torch.float64)
    Q = joint_rate_matrix(rates)
    expected = torch.zeros(4, 4, dtype=torch.float64)
    for m, (a, b) in enumerate(enumerate_sequences(2, 2).tolist()):
        expected[m, 2 * (1 - a) + b] = rates[m, 0, 1 - a]
        expected[m, 2 * a + (1 - b)] = rates[m, 1, 1 - b]
        expected[m, m] = -expected[m].sum()
    torch.testing.assert_close(Q, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_the_exact_posterior_is_bayes_rule(source: str, dtype: torch.dtype) -> None:
    path = MixturePath(VOCAB, source, CosineKappa())
    states = enumerate_sequences(path.num_states, LENGTH)
    kappa = 1 - math.cos(math.pi * 0.4 / 2)
    possible = reference_marginal(path, kappa, SUPPORT, WEIGHTS) > 0
    x = states[possible]
    log_post = exact_posterior(path, SUPPORT, WEIGHTS.to(dtype))(x, torch.full((len(x),), 0.4, dtype=dtype))
    assert log_post.dtype == dtype
    tolerance = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(log_post.exp().double(), reference_posterior(path, kappa, x, SUPPORT, WEIGHTS), rtol=0, atol=tolerance)


def test_the_masking_rates_leave_revealed_tokens_alone() -> None:
    path = MixturePath(VOCAB, "mask")
    x = torch.tensor([[0, VOCAB], [2, 1]])
    posterior = torch.full((2, 2, VOCAB), 1 / VOCAB)  # a poor model: mass on other values at revealed tokens
    rates = path.marginal_rates(x, posterior, torch.tensor([0.3, 0.6]))
    assert torch.all(rates[0, 0] == 0) and torch.all(rates[1] == 0)
    torch.testing.assert_close(rates[0, 1], torch.tensor([1, 1, 1, -3]) / 3 / 0.7)


# --- training ---------------------------------------------------------------------------------------


class Table(torch.nn.Module):
    """A free table of logits per (time, sequence): the loss's minimiser is whatever it pins down."""

    def __init__(self, times: Tensor, num_states: int) -> None:
        super().__init__()
        self.times, self.num_states = times, num_states
        self.logits = torch.nn.Parameter(torch.zeros(len(times), num_states**LENGTH, LENGTH, VOCAB))

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        which = (t[:, None] == self.times[None]).long().argmax(dim=1)
        return self.logits[which, sequence_index(x, self.num_states)]


@pytest.mark.parametrize(("source", "weighting"), [("mask", "none"), ("mask", "elbo"), ("uniform", "none")])
def test_minimising_the_loss_recovers_the_exact_posterior(source: str, weighting: str) -> None:
    """300 Adam steps on batches of 4096 at t in {0.3, 0.7}: the table's softmax is within 0.05 of Bayes' posterior

    at every sequence of probability >= 0.02 under p_t (compared on masked tokens for the ELBO weighting, which
    ignores revealed ones). The residual is the batches' sampling noise.
    """
    torch.manual_seed(0)
    path = MixturePath(VOCAB, source)
    times = torch.tensor([0.3, 0.7])
    model = Table(times, path.num_states)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, 300)
    generator = gen(11)
    for _ in range(300):
        x1 = SUPPORT[torch.multinomial(WEIGHTS, 4096, replacement=True, generator=generator)]
        t = times[torch.randint(0, 2, (4096,), generator=generator)]
        loss = discrete_flow_matching_loss(model, path, x1, t, weighting=weighting, generator=generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
    states = enumerate_sequences(path.num_states, LENGTH)
    for k, time in enumerate(times.tolist()):
        likely = reference_marginal(path, time, SUPPORT, WEIGHTS) >= 0.02
        learned = torch.softmax(model.logits[k].detach(), dim=-1)[likely].double()
        exact = reference_posterior(path, time, states[likely], SUPPORT, WEIGHTS)
        if weighting == "elbo":
            masked = states[likely] == VOCAB
            learned, exact = learned[masked], exact[masked]
        assert (learned - exact).abs().max() < 0.05


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_the_elbo_weighted_loss_of_the_exact_posterior_integrates_to_the_entropy(dtype: torch.dtype) -> None:
    """∫_0^1 E[loss | t] dt = E_q[−log q(x_1)] / L: the bound is tight at the exact posterior.

    Midpoint rule on 40 times (the integrand κ̇ E[CE | masked] is smooth and bounded), 20,000 sequences each:
    the Monte Carlo error is about 0.005 nats, the quadrature error smaller; tolerance 0.02.
    """
    path = MixturePath(VOCAB, "mask", PolynomialKappa(2.0))
    model = exact_posterior(path, SUPPORT, WEIGHTS.to(dtype))
    generator, n, nodes = gen(12), 20_000, 40
    total = 0.0
    for j in range(nodes):
        x1 = SUPPORT[torch.multinomial(WEIGHTS, n, replacement=True, generator=generator)]
        t = torch.full((n,), (j + 0.5) / nodes, dtype=dtype)
        loss = discrete_flow_matching_loss(model, path, x1, t, weighting="elbo", generator=generator)
        assert loss.dtype == dtype
        total += loss.item() / nodes
    entropy = -(WEIGHTS * WEIGHTS.log()).sum().item()
    assert total == pytest.approx(entropy / LENGTH, abs=0.02)


def test_the_negative_elbo_of_the_exact_posterior_is_the_negative_log_likelihood() -> None:
    """Per sequence, 4,000 samples (1,000 copies, 4 samples each): the terms are bounded by L max CE ≈ 5, so the

    standard error is below 0.04 (0.01 to 0.02 in fact); tolerance 0.06.
    """
    path = MixturePath(VOCAB, "mask", CosineKappa())
    model = exact_posterior(path, SUPPORT, WEIGHTS)
    copies = SUPPORT.repeat_interleave(1000, dim=0)
    estimate = negative_elbo(model, path, copies, samples=4, generator=gen(13), dtype=torch.float64)
    torch.testing.assert_close(estimate.reshape(len(SUPPORT), -1).mean(1), -WEIGHTS.log(), rtol=0, atol=0.06)
    bits = bits_per_token(model, path, SUPPORT, samples=200, generator=gen(14))
    again = negative_elbo(model, path, SUPPORT, samples=200, generator=gen(14))
    torch.testing.assert_close(bits, again.sum() / (SUPPORT.numel() * math.log(2)))


def test_the_negative_elbo_matches_its_time_integral_for_a_model_that_sees_time_and_masks() -> None:
    """The estimator's change of variables (k masks, u ~ Beta(L − k + 1, k), t = κ^{-1}(u)) against the integral.

    On x_1 = (0, 0, 0, 0) a model with logits (5t − m/2, 0, 0), m the number of masks, costs
    c(t, m) = log(1 + 2 e^{m/2 − 5t}) per masked token, so the bound is
    ∫ κ̇_t/(1 − κ_t) Σ_m Binomial(m; L, 1 − κ_t) m c(t, m) dt, here by the trapezoid rule on 20,001 times.
    8,000 copies × 8 samples: the terms (at most L c(0, L) ≈ 10.8) have a standard deviation of 2.3, so the
    standard error is 0.009; tolerance 0.04. Drawing u from the k-th order statistic instead gives 1.28 against 1.97.
    """
    path = MixturePath(VOCAB, "mask", CosineKappa())
    length = 4

    def model(x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        logits = torch.zeros(*x.shape, VOCAB, dtype=t.dtype)
        logits[..., 0] = 5 * t[:, None] - 0.5 * (x == VOCAB).sum(dim=1, keepdim=True)
        return logits

    grid = torch.linspace(0, 1, 20_001, dtype=torch.float64)
    kappa = path.scheduler(grid)
    integrand = torch.zeros_like(grid)
    for m in range(1, length + 1):
        # κ̇/(1 − κ) · C(L, m) (1 − κ)^m κ^(L − m) · m · c(t, m), with the (1 − κ) cancelled
        integrand += (kappa.derivative * math.comb(length, m) * (1 - kappa.value) ** (m - 1) * kappa.value ** (length - m)
                      * m * torch.log1p(2 * torch.exp(0.5 * m - 5 * grid)))
    integral = torch.trapezoid(integrand, grid).item()
    x1 = torch.zeros(8000, length, dtype=torch.long)
    estimate = negative_elbo(model, path, x1, samples=8, generator=gen(24), dtype=torch.float64).mean().item()
    assert estimate == pytest.approx(integral, abs=0.04)


def test_the_negative_elbo_of_a_uniform_model_is_exactly_l_log_v() -> None:
    """Every masked token costs log V nats whichever k and σ are drawn, and (L/k)·k·log V = L log V."""
    path = MixturePath(VOCAB, "mask")
    uniform = lambda x, t, labels=None: torch.zeros(*x.shape, VOCAB)  # noqa: E731
    estimate = negative_elbo(uniform, path, SUPPORT, samples=20, generator=gen(15))
    torch.testing.assert_close(estimate, torch.full((len(SUPPORT),), LENGTH * math.log(VOCAB)))


# --- sampling ---------------------------------------------------------------------------------------


def data_law() -> Tensor:
    law = torch.zeros(VOCAB**LENGTH, dtype=torch.float64)
    law[sequence_index(SUPPORT, VOCAB)] = WEIGHTS
    return law


@pytest.mark.parametrize(("source", "method", "kappa", "dtype"), [
    ("mask", "unmask", "linear", torch.float32), ("mask", "unmask", "linear", torch.float64),
    ("mask", "unmask", "cosine", torch.float32), ("mask", "euler", "cubic", torch.float32),
    ("uniform", "euler", "linear", torch.float32), ("uniform", "tau_leaping", "linear", torch.float32),
], ids=dtype_id)
def test_the_sampler_with_the_exact_posterior_reproduces_the_data(source: str, method: str, kappa: str, dtype: torch.dtype) -> None:
    """10,000 samples, 100 steps: TV to the data within 0.03.

    The Monte Carlo TV is about 0.007 on 4 states; the rest is the steps' bias, measured at 0.004 to 0.008
    with 100,000 samples (tokens revealed in the same step are drawn independently; Euler is first order).
    """
    path = MixturePath(VOCAB, source, KAPPAS[kappa][0])
    model = exact_posterior(path, SUPPORT, WEIGHTS.to(dtype))
    samples = sample_discrete(model, path, 10_000, LENGTH, 100, method=method, generator=gen(16), dtype=dtype)
    assert samples.dtype == torch.long and samples.shape == (10_000, LENGTH)
    assert torch.all((samples >= 0) & (samples < VOCAB))
    assert total_variation(frequencies(samples, VOCAB), data_law()) < 0.03


def test_one_unmasking_step_draws_the_tokens_independently() -> None:
    """With one step every token is revealed at once from the t = 0 posterior: the product of the data's per-token laws."""
    path = MixturePath(VOCAB, "mask")
    samples = sample_discrete(exact_posterior(path, SUPPORT, WEIGHTS), path, 40_000, LENGTH, 1, generator=gen(17))
    q = [torch.bincount(SUPPORT[:, i], weights=WEIGHTS, minlength=VOCAB) for i in range(LENGTH)]
    product = (q[0][:, None] * q[1][None, :]).flatten()
    assert total_variation(frequencies(samples, VOCAB), product) < 0.015


def test_unmask_step_reveals_with_the_right_probability() -> None:
    """From all masks at t = 0.2 to 0.5 with κ = t: each token is revealed with probability 0.3/0.8 = 0.375."""
    path = MixturePath(VOCAB, "mask")
    x = torch.full((50_000, 2), VOCAB)
    posterior = torch.tensor([0.2, 0.5, 0.3]).expand(50_000, 2, VOCAB)
    after = unmask_step(x, posterior, path, torch.full((50_000,), 0.2), torch.full((50_000,), 0.5), gen(18))
    revealed = after != VOCAB
    assert revealed.double().mean().item() == pytest.approx(0.375, abs=0.006)  # standard error 0.0015
    torch.testing.assert_close(torch.bincount(after[revealed], minlength=VOCAB).double() / revealed.sum(),
                               torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), rtol=0, atol=0.01)


def test_the_sampler_keeps_its_trajectory() -> None:
    path = MixturePath(VOCAB, "mask")
    run = sample_discrete(exact_posterior(path, SUPPORT, WEIGHTS), path, 20, LENGTH, 5, generator=gen(19), trajectory=True)
    assert run.states.shape == (20, 6, LENGTH)
    assert torch.all(run.states[:, 0] == VOCAB) and torch.all(run.final < VOCAB)
    masked = (run.states == VOCAB).sum(dim=2)
    assert torch.all(masked[:, 1:] <= masked[:, :-1])  # revealed tokens stay revealed


# --- classifier-free guidance -------------------------------------------------------------------------


def test_guided_log_probabilities_mix_the_two_posteriors() -> None:
    conditional, unconditional = torch.randn(2, 5, 4, VOCAB, generator=gen(20), dtype=torch.float64)
    log_c, log_u = conditional.log_softmax(-1), unconditional.log_softmax(-1)
    torch.testing.assert_close(guided_log_probabilities(conditional, unconditional, 1.0), log_c)
    torch.testing.assert_close(guided_log_probabilities(conditional, unconditional, 0.0), log_u)
    guided = guided_log_probabilities(conditional, unconditional, 2.5)
    torch.testing.assert_close(guided, (2.5 * log_c - 1.5 * log_u).log_softmax(-1))
    torch.testing.assert_close(guided.exp().sum(-1), torch.ones(5, 4, dtype=torch.float64))
    ruled_out = conditional.clone()
    ruled_out[..., 0] = -torch.inf
    unconditional_too = unconditional.clone()
    unconditional_too[..., 0] = -torch.inf
    assert torch.all(torch.isneginf(guided_log_probabilities(ruled_out, unconditional_too, 2.5)[..., 0]))


CLASS_WEIGHTS = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.1, 0.5, 0.4]], dtype=torch.float64)


def test_guidance_scale_one_samples_the_conditional_law_and_zero_the_unconditional() -> None:
    path = MixturePath(VOCAB, "mask")
    model = exact_posterior(path, SUPPORT, CLASS_WEIGHTS)  # labels 0, 1; the null label is 2
    calls: list[Tensor] = []

    def counted(x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        calls.append(labels)
        return model(x, t, labels)

    labels = torch.zeros(10_000, dtype=torch.long)
    guided = sample_discrete(counted, path, 10_000, LENGTH, 50, labels=labels, guidance_scale=1.0, null_label=2, generator=gen(21))
    assert all(torch.all(c == 0) for c in calls)  # w = 1: the conditional model only
    plain = sample_discrete(model, path, 10_000, LENGTH, 50, labels=labels, generator=gen(21))
    torch.testing.assert_close(guided, plain)
    class_law = torch.zeros(VOCAB**LENGTH, dtype=torch.float64)
    class_law[sequence_index(SUPPORT, VOCAB)] = CLASS_WEIGHTS[0]
    assert total_variation(frequencies(guided, VOCAB), class_law) < 0.03
    unguided = sample_discrete(model, path, 10_000, LENGTH, 50, labels=labels, guidance_scale=0.0, null_label=2, generator=gen(22))
    mixture = torch.zeros(VOCAB**LENGTH, dtype=torch.float64)
    mixture[sequence_index(SUPPORT, VOCAB)] = CLASS_WEIGHTS.mean(0)
    assert total_variation(frequencies(unguided, VOCAB), mixture) < 0.03


def test_strong_guidance_concentrates_on_the_label() -> None:
    """w = 3 sharpens class 1 toward the sequences class 0 lacks: sequence (0, 1), shared with class 0, loses mass."""
    path = MixturePath(VOCAB, "mask")
    model = exact_posterior(path, SUPPORT, CLASS_WEIGHTS)
    labels = torch.ones(10_000, dtype=torch.long)
    guided = sample_discrete(model, path, 10_000, LENGTH, 50, labels=labels, guidance_scale=3.0, null_label=2, generator=gen(23))
    shared = sequence_index(SUPPORT[1:2], VOCAB).item()
    assert frequencies(guided, VOCAB)[shared] < 0.5 * CLASS_WEIGHTS[1, 1]


# --- inputs ---------------------------------------------------------------------------------------------


def _bad_calls() -> list:
    path, uniform = MixturePath(VOCAB, "mask"), MixturePath(VOCAB, "uniform")
    x = torch.zeros(4, 2, dtype=torch.long)
    t = torch.full((4,), 0.5)
    rates = torch.ones(4, 2, VOCAB + 1)
    model = exact_posterior(path, SUPPORT, WEIGHTS)
    return [
        ("vocab_size", lambda: MixturePath(0)),
        ("source", lambda: MixturePath(3, "gaussian")),
        ("scheduler", lambda: MixturePath(3, scheduler=lambda t: t)),
        ("power", lambda: PolynomialKappa(-1.0)),
        ("x1", lambda: path.sample(x.float(), t)),
        ("x1", lambda: path.sample(x + VOCAB, t)),
        ("t", lambda: path.sample(x, torch.full((3,), 0.5))),
        ("t", lambda: path.sample(x, torch.full((4,), 1.5))),
        ("t", lambda: path.conditional_rates(x, x, torch.ones(4))),
        ("posterior", lambda: path.marginal_rates(x, torch.ones(4, 2, VOCAB + 1), t)),
        ("data_probabilities", lambda: path.marginal_probabilities(torch.ones(4, 2, 5), t)),
        ("rates", lambda: euler_jump_step(x, torch.ones(4, 3, 4), 0.1)),
        ("rates", lambda: euler_jump_step(x, -rates, 0.1)),
        ("h", lambda: euler_jump_step(x, rates, -0.1)),
        ("x", lambda: tau_leap_step(x + 9, rates, 0.1)),
        ("p0", lambda: forward_marginals(torch.ones(3), Q4, 1.0)),
        ("t", lambda: forward_marginals(P0, Q4, -1.0)),
        ("times", lambda: simulate_ctmc(x, lambda x, t: rates, torch.tensor([0.0, 0.5, 0.4]))),
        ("method", lambda: step_transition_matrix(Q4, 0.1, "heun")),
        ("weights", lambda: exact_posterior(path, SUPPORT, -WEIGHTS)),
        ("support", lambda: exact_posterior(path, SUPPORT + VOCAB, WEIGHTS)),
        ("labels", lambda: exact_posterior(path, SUPPORT, CLASS_WEIGHTS)(x, t, None)),
        ("weighting", lambda: discrete_flow_matching_loss(model, path, x, weighting="kl")),
        ("weighting='elbo'", lambda: discrete_flow_matching_loss(model, uniform, x, weighting="elbo")),
        ("model must return logits", lambda: discrete_flow_matching_loss(lambda x, t, y: torch.zeros(4, 2, 9), path, x)),
        ("samples", lambda: negative_elbo(model, path, x, samples=0)),
        ("path", lambda: negative_elbo(model, uniform, x)),
        ("guidance_scale", lambda: guided_log_probabilities(torch.zeros(3), torch.zeros(3), -1.0)),
        ("unconditional_logits", lambda: guided_log_probabilities(torch.zeros(3), torch.zeros(4), 1.0)),
        ("steps", lambda: sample_discrete(model, path, 4, 2, 0)),
        ("method", lambda: sample_discrete(model, uniform, 4, 2, 3, method="unmask")),
        ("labels", lambda: sample_discrete(model, path, 4, 2, 3, guidance_scale=2.0)),
        ("null_label", lambda: sample_discrete(model, path, 4, 2, 3, labels=torch.zeros(4, dtype=torch.long), guidance_scale=2.0)),
        ("t_next", lambda: unmask_step(x + VOCAB, torch.ones(4, 2, VOCAB) / VOCAB, path, t, t)),
    ]


@pytest.mark.parametrize(("name", "call"), _bad_calls(), ids=[f"{i}-{name}" for i, (name, _) in enumerate(_bad_calls())])
def test_bad_inputs_raise_value_errors_that_name_the_argument(name: str, call) -> None:
    with pytest.raises(ValueError, match=name.replace("(", r"\(")):
        call()


# --- points on a grid, histograms ----------------------------------------------------------------


def test_quantise_puts_points_in_their_bins_and_bin_centres_return_within_half_a_bin() -> None:
    points = torch.tensor([[-1.0, 0.99], [0.0, -0.5], [-5.0, 7.0]])
    tokens = quantise(points, 4, -1.0, 1.0)
    assert tokens.tolist() == [[0, 3], [2, 1], [0, 3]]  # bins [-1,-.5) [-.5,0) [0,.5) [.5,1); outside: clamped
    inside = torch.rand(1000, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    error = (bin_centres(quantise(inside, 8, -1.0, 1.0), 8, -1.0, 1.0) - inside).abs().max()
    assert error <= 0.125 + 1e-6


def test_histogram_counts_each_sequence_at_its_index() -> None:
    x = torch.tensor([[0, 1], [2, 2], [0, 1], [1, 0]])
    p = histogram(x, 3)
    expected = torch.zeros(9, dtype=torch.float64)
    for a, b in x.tolist():  # index written out: first token most significant
        expected[3 * a + b] += 0.25
    assert torch.equal(p, expected)


def test_total_variation_by_hand() -> None:
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.25, 0.25, 0.5])
    assert package_total_variation(p, q).item() == pytest.approx(0.5)
    assert package_total_variation(p, p).item() == 0
    assert package_total_variation(torch.stack([p, q]), torch.stack([q, q])).tolist() == [0.5, 0.0]  # over the last axis


def test_guidance_beyond_one_puts_the_mass_on_tokens_only_the_unconditional_model_rules_out() -> None:
    """p_c^w p_∅^(1−w) is infinite where p_∅ = 0 < p_c and w > 1: the limit of the guided law, not NaN."""
    conditional = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    unconditional = torch.log(torch.tensor([[0.0, 0.5, 0.5]]))
    guided = guided_log_probabilities(conditional, unconditional, 2.0).exp()
    assert torch.allclose(guided, torch.tensor([[1.0, 0.0, 0.0]]))
    below_one = guided_log_probabilities(conditional, unconditional, 0.5).exp()  # (1 − w) > 0: the token is ruled out
    assert below_one[0, 0] == 0 and torch.isfinite(below_one).all()

