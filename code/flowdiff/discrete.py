r"""Diffusion in discrete time: DDPM and DDIM (Chapter 7); for discrete *states* (tokens) see :mod:`flowdiff.discrete_flows`.

**Time convention of this module.** Following DDPM and "Step-by-Step
Diffusion" (Nakkiran et al., 2024), time ``s`` runs the other way from the
rest of the book: data at ``s = 0``, noise at ``s = 1``. Convert with
:func:`book_time` (``t = 1 - s``).

The forward process is the variance-exploding random walk
(Chapter 7, eq. ``eq-dd-forward``)

.. math::
    x_{s + Δs} = x_s + \sigma_q \sqrt{Δs}\, \eta, \qquad\text{so}\qquad
    x_s = x_0 + \sigma_q \sqrt{s}\, \varepsilon,

on the grid ``s_k = k Δs``, ``Δs = 1/T``. Both samplers go backwards
through the grid and use the posterior mean of one step back
(Chapter 7, eq. ``eq-dd-posterior-mean``)

.. math::
    \mu(x_s) = E[x_{s-Δs} \mid x_s] = \frac{Δs}{s} E[x_0 \mid x_s] + \Bigl(1 - \frac{Δs}{s}\Bigr) x_s,

DDPM (Algorithm ``alg-dd-ddpm``) by sampling ``N(μ, σ_q² Δs)`` (except at
the last step, which returns ``μ``, as in Ho et al.), DDIM
(Algorithm ``alg-dd-ddim``) deterministically by
``x_s + λ (μ - x_s)``, ``λ = σ_s / (σ_{s-Δs} + σ_s)``, ``σ_s = σ_q √s``.
A *denoiser* is any callable ``(x, s) -> E[x_0 | x_s]`` with ``x`` of shape
``(n, d)`` and ``s`` of shape ``(n,)``.

**The ᾱ form** (Chapter 7, section ``sec-dd-practice``) is how code writes
DDPM and DDIM: integer levels ``k = 0, …, T - 1`` of a variance-preserving
chain ``x_k = √ᾱ_k x_0 + √(1 - ᾱ_k) ε`` (:class:`AlphaBarSchedule`), a
network that predicts ``ε``, ``x_0`` or ``v``, and the steps
:func:`ddpm_step` and :func:`ddim_step`, checked in the tests against the
schedulers of ``diffusers``.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor

from flowdiff import _random
from flowdiff._checks import check_batch, check_count, check_positive, finite_scalar
from flowdiff.paths import NoisableData, Scheduler
from flowdiff.solvers import Trajectory

__all__ = [
    "Denoiser",
    "standard_normal_like",
    "book_time",
    "VarianceExplodingChain",
    "exact_denoiser",
    "ddpm_sample",
    "ddim_sample",
    "Prediction",
    "AlphaBarNetwork",
    "AlphaBarSchedule",
    "sample_and_noise_from_prediction",
    "prediction_from_sample",
    "velocity_from_denoiser",
    "denoiser_from_velocity",
    "ddpm_step",
    "ddim_step",
    "ddpm_sample_alpha_bar",
    "ddim_sample_alpha_bar",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]


def standard_normal_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A draw of ``N(0, I)`` with the shape, dtype and device of ``x``.

    The draw is made on the generator's device (a CPU generator cannot fill
    a CUDA tensor) and then moved to ``x``'s (:mod:`flowdiff._random`), so
    one seed gives the same numbers whatever device ``x`` lives on.
    """
    return _random.randn(x.shape, like=x, generator=generator)


def book_time(s: Tensor) -> Tensor:
    """The book's time ``t = 1 - s`` (noise at 0, data at 1) of the diffusion time ``s`` (Chapter 7)."""
    if not isinstance(s, Tensor):
        raise ValueError(f"s must be a torch.Tensor, got {type(s).__name__}")
    return 1 - s


class VarianceExplodingChain:
    r"""The discrete forward process ``x_s = x_0 + σ_q √s ε`` on ``T`` steps (Chapter 7, eq. ``eq-dd-forward``).

    Args:
        sigma: the noise scale ``σ_q``; at ``s = 1`` the data is buried under ``N(0, σ_q² I)``.
        steps: the number of steps ``T`` (``Δs = 1/T``).
    """

    def __init__(self, sigma: float, steps: int) -> None:
        check_positive(sigma, "sigma")
        check_count(steps, "steps")
        self.sigma = float(sigma)
        self.steps = steps

    @property
    def step_size(self) -> float:
        """``Δs = 1/T``."""
        return 1.0 / self.steps

    @property
    def times(self) -> Tensor:
        """The grid ``s_k = k/T``, ``k = 0, …, T``, shape ``(T + 1,)``, in float64."""
        return torch.arange(self.steps + 1, dtype=torch.float64) / self.steps

    def noise_std(self, s: Tensor) -> Tensor:
        """``σ_s = σ_q √s``, the standard deviation of ``x_s - x_0``."""
        if not isinstance(s, Tensor) or torch.any(s < 0):
            raise ValueError("s must be a tensor of times >= 0")
        return self.sigma * torch.sqrt(s)

    def noised(self, x0: Tensor, s: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A draw of ``x_s = x_0 + σ_q √s ε``; ``x0`` of shape ``(n, d)``, ``s`` of shape ``(n,)``."""
        check_batch(x0, "x0")
        _check_times(s, x0)
        noise = standard_normal_like(x0, generator)
        return x0 + self.noise_std(s.to(x0.dtype))[:, None] * noise

    def posterior_mean(self, x: Tensor, denoised: Tensor, s: Tensor) -> Tensor:
        r"""``E[x_{s-Δs} | x_s] = (Δs/s) E[x_0 | x_s] + (1 - Δs/s) x_s`` (Chapter 7, eq. ``eq-dd-posterior-mean``).

        ``s`` (shape ``(n,)``) must be a grid time ``>= Δs``.
        """
        check_batch(x, "x")
        check_batch(denoised, "denoised", x.shape[1])
        _check_times(s, x)
        if torch.any(s < self.step_size - 1e-12):
            raise ValueError(f"s must be >= the step size {self.step_size} (there is no step back from s = 0)")
        ratio = (self.step_size / s.to(x.dtype))[:, None]
        return ratio * denoised + (1 - ratio) * x


def _check_times(s: Tensor, x: Tensor) -> None:
    if not isinstance(s, Tensor) or s.shape != (x.shape[0],):
        shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"s must have shape ({x.shape[0]},), one time per sample, got {shape}")
    if torch.any(s < 0) or torch.any(s > 1):
        raise ValueError("s must lie in [0, 1]")


def exact_denoiser(data: NoisableData, chain: VarianceExplodingChain) -> Denoiser:
    r"""The exact ``E[x_0 | x_s]`` when the data is a Gaussian mixture or a set of points (Chapter 7).

    ``x_s = x_0 + σ_q √s ε`` is the data noised with scale 1 and noise
    ``σ_q √s``, so this is ``data.posterior_mean(x, 1, σ_q √s)``: for points
    ``a_k``, the average of the points weighted by their exact posterior
    probabilities.
    """
    if not hasattr(data, "posterior_mean"):
        raise ValueError("data must be a GaussianMixture or PointMasses (with posterior_mean)")
    if not isinstance(chain, VarianceExplodingChain):
        raise ValueError(f"chain must be a VarianceExplodingChain, got {type(chain).__name__}")

    def denoiser(x: Tensor, s: Tensor) -> Tensor:
        _check_times(s, x)
        return data.posterior_mean(x, 1.0, chain.noise_std(s.to(x.dtype)))

    return denoiser


def _sample(
    denoiser: Denoiser,
    chain: VarianceExplodingChain,
    x_start: Tensor,
    generator: torch.Generator | None,
    trajectory: bool,
    stochastic: bool,
) -> Tensor | Trajectory:
    if not callable(denoiser):
        raise ValueError("denoiser must be callable as denoiser(x, s)")
    if not isinstance(chain, VarianceExplodingChain):
        raise ValueError(f"chain must be a VarianceExplodingChain, got {type(chain).__name__}")
    check_batch(x_start, "x_start")
    times = chain.times.to(device=x_start.device, dtype=x_start.dtype)
    x = x_start
    states = [x] if trajectory else []
    for k in range(chain.steps, 0, -1):
        s = times[k].expand(x.shape[0])
        mean = chain.posterior_mean(x, denoiser(x, s), s)
        if stochastic and k > 1:
            x = mean + chain.sigma * math.sqrt(chain.step_size) * standard_normal_like(x, generator)
        elif stochastic:
            # Ho et al.'s last step adds no noise: the bridge variance σ_q² Δs (1 - Δs/s) is 0 at s = Δs.
            x = mean
        else:
            sigma_now, sigma_before = math.sqrt(times[k].item()), math.sqrt(times[k - 1].item())
            x = x + sigma_now / (sigma_before + sigma_now) * (mean - x)
        if trajectory:
            states.append(x)
    if trajectory:
        return Trajectory(times=times.flip(0), states=torch.stack(states, dim=1))
    return x


@torch.no_grad()
def ddpm_sample(
    denoiser: Denoiser,
    chain: VarianceExplodingChain,
    x_start: Tensor,
    generator: torch.Generator | None = None,
    trajectory: bool = False,
) -> Tensor | Trajectory:
    r"""DDPM sampling (Chapter 7, Algorithm ``alg-dd-ddpm``): ``x_{s-Δs} ~ N(μ(x_s), σ_q² Δs I)`` from ``s = 1`` to 0.

    As in Ho et al.'s sampler, the last step (``s = Δs``) returns the mean
    ``μ(x_{Δs})`` and adds no noise: given ``x_0``, that step has the bridge
    variance ``σ_q² Δs (1 - Δs/s) = 0`` (proof of Proposition ``prop-dd-reverse``).

    Args:
        denoiser: ``(x, s) -> E[x_0 | x_s]``.
        chain: the forward process (``σ_q``, ``T``).
        x_start: samples at ``s = 1``, usually ``N(0, σ_q² I)``, shape ``(n, d)``.
        generator: seeds the noise of each step.
        trajectory: return a :class:`~flowdiff.solvers.Trajectory` whose
            ``times`` are the diffusion times ``s`` in the order visited (1 down to 0).
    """
    return _sample(denoiser, chain, x_start, generator, trajectory, stochastic=True)


@torch.no_grad()
def ddim_sample(
    denoiser: Denoiser,
    chain: VarianceExplodingChain,
    x_start: Tensor,
    trajectory: bool = False,
) -> Tensor | Trajectory:
    r"""DDIM sampling (Chapter 7, Algorithm ``alg-dd-ddim``): deterministic, ``x ← x + λ (μ(x) - x)``.

    ``λ = σ_s / (σ_{s-Δs} + σ_s)`` with ``σ_s = σ_q √s``; equivalently
    ``x_{s-Δs} = \hat x_0 + (σ_{s-Δs}/σ_s)(x_s - \hat x_0)`` with
    ``\hat x_0 = E[x_0 | x_s]``. No noise is added: the same start always gives the same sample.
    """
    return _sample(denoiser, chain, x_start, None, trajectory, stochastic=False)


# --- DDPM and DDIM as practitioners meet them: the ᾱ form (Chapter 7, section ``sec-dd-practice``) ---------
#
# Codebases (Ho et al., DDIM, diffusers) index the noise levels by an integer
# k = 0, …, T - 1, with ᾱ_k = ∏_{j ≤ k} (1 - β_j) decreasing in k, the data at
# "k = -1" (ᾱ = 1) and x_k = √ᾱ_k x_0 + √(1 - ᾱ_k) ε. In the book's terms this is
# the Gaussian path with α_t = √ᾱ_k, β_t = √(1 - ᾱ_k) at t_k = 1 - (k + 1)/T.

Prediction = Literal["epsilon", "sample", "v_prediction"]
"""What a network predicts: the noise ``ε``, the clean sample ``x_0``, or ``v = √ᾱ ε - √(1-ᾱ) x_0`` (diffusers' names)."""

AlphaBarNetwork = Callable[[Tensor, Tensor], Tensor]
"""A network ``(x, k) -> output`` with ``x`` of shape ``(n, d)`` and integer steps ``k`` of shape ``(n,)``."""

_PREDICTIONS = ("epsilon", "sample", "v_prediction")


def _check_alpha_bar(value: float, name: str, upper_inclusive: bool) -> float:
    value = finite_scalar(value, name)
    if value < 0 or value > 1 or (value == 1 and not upper_inclusive):
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"{name} must lie in {bound}, got {value}")
    return float(value)


def _check_prediction(prediction: str) -> None:
    if prediction not in _PREDICTIONS:
        raise ValueError(f"prediction must be one of {_PREDICTIONS}, got {prediction!r}")


class AlphaBarSchedule:
    r"""A variance-preserving noise schedule ``ᾱ_0 > ᾱ_1 > … > ᾱ_{T-1}`` (Chapter 7, eq. ``eq-dd-vp``).

    ``x_k = √ᾱ_k x_0 + √(1 - ᾱ_k) ε`` for ``k = 0, …, T - 1``; the data sit
    at ``k = -1``, where ``ᾱ_{-1} = 1``. In the book's convention this is the
    Gaussian path with ``α_t = √ᾱ_k``, ``β_t = √(1 - ᾱ_k)`` at
    ``t_k = 1 - (k + 1)/T`` (table ``tab-dd-practice``).

    Args:
        alpha_bar: the values ``ᾱ_k``, shape ``(T,)``, strictly decreasing, in ``(0, 1)``.
    """

    def __init__(self, alpha_bar: Tensor) -> None:
        if not isinstance(alpha_bar, Tensor) or alpha_bar.ndim != 1 or alpha_bar.numel() < 1:
            raise ValueError("alpha_bar must be a 1-D tensor of at least one value")
        if torch.any(alpha_bar <= 0) or torch.any(alpha_bar >= 1) or torch.any(alpha_bar[1:] >= alpha_bar[:-1]):
            raise ValueError("alpha_bar must be strictly decreasing and lie in (0, 1)")
        self.alpha_bar = alpha_bar.to(torch.float64)

    @classmethod
    def linear(
        cls, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, device: torch.device | str | None = None
    ) -> AlphaBarSchedule:
        r"""Ho et al.'s schedule: ``β_k`` linear from ``beta_start`` to ``beta_end``, ``ᾱ_k = ∏_{j≤k}(1 - β_j)``.

        The table lives on ``device`` (the CPU when ``None``, as with torch's
        own constructors); the samplers read it as Python floats, so it need
        not follow the samples.
        """
        check_count(steps, "steps")
        check_positive(beta_start, "beta_start")
        if not beta_start <= beta_end < 1:
            raise ValueError(f"beta_end must lie in [beta_start, 1), got {beta_end}")
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64, device=device)
        return cls(torch.cumprod(1 - betas, dim=0))

    @classmethod
    def cosine(
        cls, steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999, device: torch.device | str | None = None
    ) -> AlphaBarSchedule:
        r"""Nichol & Dhariwal's schedule ``ᾱ_k = f((k+1)/T) / f(0)``, ``f(u) = cos²(π/2 · (u + offset)/(1 + offset))``.

        As in their code, each ``β_k = 1 - ᾱ_k/ᾱ_{k-1}`` is capped at
        ``max_beta``, which only changes the last steps, where ``f`` reaches 0.
        The table lives on ``device``, as in :meth:`linear`.
        """
        check_count(steps, "steps")
        check_positive(offset, "offset")
        if not 0 < max_beta < 1:
            raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")
        u = torch.arange(steps + 1, dtype=torch.float64, device=device) / steps
        f = torch.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(torch.cumprod(1 - betas, dim=0))

    @property
    def steps(self) -> int:
        """The number ``T`` of noise levels."""
        return self.alpha_bar.numel()

    def at(self, k: int) -> float:
        """``ᾱ_k``, with ``ᾱ_{-1} = 1`` (the data)."""
        if isinstance(k, bool) or not isinstance(k, int) or not -1 <= k < self.steps:
            raise ValueError(f"k must be an int in [-1, {self.steps - 1}], got {k!r}")
        return 1.0 if k < 0 else self.alpha_bar[k].item()

    def book_time(self) -> Tensor:
        """The book's time ``t_k = 1 - (k + 1)/T`` of each level, shape ``(T,)``: ``t = 1`` is the data."""
        return 1 - torch.arange(1, self.steps + 1, dtype=torch.float64, device=self.alpha_bar.device) / self.steps

    def noise_level(self) -> Tensor:
        r"""``σ_k = √((1 - ᾱ_k)/ᾱ_k)``, the variance-exploding noise level of eq. ``eq-dd-rescale``, shape ``(T,)``."""
        return torch.sqrt((1 - self.alpha_bar) / self.alpha_bar)

    def timesteps(self, sampling_steps: int | None = None) -> list[int]:
        """The levels a sampler visits, from noisiest to cleanest: all ``T``, or ``sampling_steps`` of them
        spaced by ``T // sampling_steps`` from ``k = 0`` up (diffusers' "leading" spacing)."""
        if sampling_steps is None:
            return list(range(self.steps - 1, -1, -1))
        check_count(sampling_steps, "sampling_steps")
        if sampling_steps > self.steps:
            raise ValueError(f"sampling_steps must be <= T = {self.steps}, got {sampling_steps}")
        stride = self.steps // sampling_steps
        return [i * stride for i in range(sampling_steps - 1, -1, -1)]

    def noised(self, x0: Tensor, k: int, noise: Tensor) -> Tensor:
        r"""``x_k = √ᾱ_k x_0 + √(1 - ᾱ_k) ε`` (eq. ``eq-dd-vp``), shape of ``x0``."""
        _check_pair_shapes(x0, noise, "x0", "noise")
        alpha_bar = self.at(k)
        return math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * noise


def _check_pair_shapes(x: Tensor, y: Tensor, x_name: str, y_name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise ValueError(f"{x_name} must be a batch-first tensor of shape (n, ...)")
    if not isinstance(y, Tensor) or y.shape != x.shape:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"{y_name} must have the shape {tuple(x.shape)} of {x_name}, got {shape}")


def sample_and_noise_from_prediction(
    output: Tensor, x: Tensor, alpha_bar: float, prediction: Prediction
) -> tuple[Tensor, Tensor]:
    r"""The estimates ``(x̂_0, ε̂)`` behind a network output at level ``ᾱ`` (Chapter 7, table ``tab-dd-practice``).

    With ``x = √ᾱ x̂_0 + √(1-ᾱ) ε̂`` (the two estimates are tied by ``x``):

    - ``"epsilon"``: ``ε̂ = output``, ``x̂_0 = (x - √(1-ᾱ) ε̂)/√ᾱ`` (needs ``ᾱ > 0``);
    - ``"sample"``: ``x̂_0 = output``, ``ε̂ = (x - √ᾱ x̂_0)/√(1-ᾱ)``;
    - ``"v_prediction"``: ``x̂_0 = √ᾱ x - √(1-ᾱ) v̂``, ``ε̂ = √(1-ᾱ) x + √ᾱ v̂``.

    ``x̂_0`` is the book's denoiser ``E[z | x_t = x]``. ``output`` and ``x``
    share their shape ``(n, ...)``; ``alpha_bar`` is in ``[0, 1)``.
    """
    _check_pair_shapes(x, output, "x", "output")
    _check_prediction(prediction)
    alpha_bar = _check_alpha_bar(alpha_bar, "alpha_bar", upper_inclusive=False)
    signal, noise = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    if prediction == "epsilon":
        if alpha_bar == 0:
            raise ValueError("alpha_bar must be > 0 for an epsilon prediction (x_0 is not visible at alpha_bar = 0)")
        return (x - noise * output) / signal, output
    if prediction == "sample":
        return output, (x - signal * output) / noise
    return signal * x - noise * output, noise * x + signal * output


def prediction_from_sample(denoised: Tensor, x: Tensor, alpha_bar: float, prediction: Prediction) -> Tensor:
    r"""The network output of each kind that corresponds to the denoiser ``x̂_0 = E[x_0 | x]`` (inverse of
    :func:`sample_and_noise_from_prediction`; Chapter 7, table ``tab-dd-practice``):
    ``ε̂ = (x - √ᾱ x̂_0)/√(1-ᾱ)``, ``x̂_0`` itself, or ``v̂ = √ᾱ ε̂ - √(1-ᾱ) x̂_0``."""
    _check_pair_shapes(x, denoised, "x", "denoised")
    _check_prediction(prediction)
    alpha_bar = _check_alpha_bar(alpha_bar, "alpha_bar", upper_inclusive=False)
    if prediction == "sample":
        return denoised
    signal, noise = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    epsilon = (x - signal * denoised) / noise
    return epsilon if prediction == "epsilon" else signal * epsilon - noise * denoised


def velocity_from_denoiser(denoised: Tensor, x: Tensor, scheduler: Scheduler, t: Tensor) -> Tensor:
    r"""The book's vector field from a denoiser (Chapter 7, table ``tab-dd-practice``):

    .. math::
        u_t(x) = \dot\alpha_t\, \hat x_0 + \dot\beta_t\, \hat\varepsilon,
        \qquad \hat\varepsilon = \frac{x - \alpha_t \hat x_0}{\beta_t},

    for the Gaussian path of ``scheduler``; ``x`` and ``denoised`` of shape
    ``(n, d)``, ``t`` of shape ``(n,)`` in ``[0, 1)`` (``β_1 = 0``).
    """
    check_batch(x, "x")
    check_batch(denoised, "denoised", x.shape[1])
    _check_times_below_one(t, x)
    t = t.to(device=x.device, dtype=x.dtype)[:, None]
    alpha, beta = scheduler.alpha(t), scheduler.beta(t)
    return scheduler.alpha_dot(t) * denoised + scheduler.beta_dot(t) * (x - alpha * denoised) / beta


def denoiser_from_velocity(velocity: Tensor, x: Tensor, scheduler: Scheduler, t: Tensor) -> Tensor:
    r"""The inverse of :func:`velocity_from_denoiser`:
    ``x̂_0 = (β_t u_t(x) - β̇_t x) / (α̇_t β_t - α_t β̇_t)``; ``t`` of shape ``(n,)`` in ``[0, 1)``."""
    check_batch(x, "x")
    check_batch(velocity, "velocity", x.shape[1])
    _check_times_below_one(t, x)
    t = t.to(device=x.device, dtype=x.dtype)[:, None]
    alpha, beta = scheduler.alpha(t), scheduler.beta(t)
    alpha_dot, beta_dot = scheduler.alpha_dot(t), scheduler.beta_dot(t)
    return (beta * velocity - beta_dot * x) / (alpha_dot * beta - alpha * beta_dot)


def _check_times_below_one(t: Tensor, x: Tensor) -> None:
    if not isinstance(t, Tensor) or t.shape != (x.shape[0],):
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"t must have shape ({x.shape[0]},), one time per sample, got {shape}")
    if torch.any(t < 0) or torch.any(t >= 1):
        raise ValueError("t must lie in [0, 1): at t = 1 the noise is gone and ε̂ is undefined")


def ddpm_step(
    output: Tensor,
    x: Tensor,
    alpha_bar: float,
    alpha_bar_prev: float,
    prediction: Prediction = "epsilon",
    variance: Literal["posterior", "beta"] = "posterior",
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""One DDPM step from level ``ᾱ = ᾱ_k`` to ``ᾱ' = ᾱ_{k'}`` (Chapter 7, eq. ``eq-dd-ddpm-alpha-bar``):

    .. math::
        x_{k'} = \frac{\sqrt{\bar\alpha'}\,\beta}{1 - \bar\alpha}\,\hat x_0
               + \frac{\sqrt{a}\,(1 - \bar\alpha')}{1 - \bar\alpha}\,x_k + \sigma z,
        \qquad a = \bar\alpha/\bar\alpha',\ \beta = 1 - a,

    the mean of ``q(x_{k'} | x_k, x_0 = x̂_0)``, plus noise of variance
    ``σ² = β (1 - ᾱ')/(1 - ᾱ)`` (``variance="posterior"``, Ho et al.'s
    ``β̃``; diffusers' ``"fixed_small"``) or ``σ² = β`` (``"beta"``;
    ``"fixed_large"``). The step to the data (``ᾱ' = 1``) adds no noise, as in
    Ho et al.'s Algorithm 2.

    Args:
        output: the network's output at ``x``, shape ``(n, ...)``, of kind ``prediction``.
        x: the current sample ``x_k``, same shape.
        alpha_bar: ``ᾱ_k`` in ``[0, 1)``.
        alpha_bar_prev: ``ᾱ_{k'}`` in ``[ᾱ_k, 1]``; 1 for the step to the data.
        noise: the standard normal ``z`` (drawn with ``generator`` when omitted).
    """
    alpha_bar = _check_alpha_bar(alpha_bar, "alpha_bar", upper_inclusive=False)
    alpha_bar_prev = _check_alpha_bar(alpha_bar_prev, "alpha_bar_prev", upper_inclusive=True)
    if alpha_bar_prev < alpha_bar:
        raise ValueError(f"alpha_bar_prev must be >= alpha_bar = {alpha_bar} (a step removes noise), got {alpha_bar_prev}")
    if variance not in ("posterior", "beta"):
        raise ValueError(f"variance must be 'posterior' or 'beta', got {variance!r}")
    denoised, _ = sample_and_noise_from_prediction(output, x, alpha_bar, prediction)
    step_alpha = alpha_bar / alpha_bar_prev
    step_beta = 1 - step_alpha
    mean = (math.sqrt(alpha_bar_prev) * step_beta * denoised + math.sqrt(step_alpha) * (1 - alpha_bar_prev) * x) / (
        1 - alpha_bar
    )
    if alpha_bar_prev == 1:
        return mean
    std = math.sqrt(step_beta * ((1 - alpha_bar_prev) / (1 - alpha_bar) if variance == "posterior" else 1.0))
    return mean + std * _noise_for(x, noise, generator)


def ddim_step(
    output: Tensor,
    x: Tensor,
    alpha_bar: float,
    alpha_bar_prev: float,
    prediction: Prediction = "epsilon",
    eta: float = 0.0,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""One DDIM step from level ``ᾱ`` to ``ᾱ'`` (Chapter 7, eq. ``eq-dd-ddim-alpha-bar``):

    .. math::
        x_{k'} = \sqrt{\bar\alpha'}\,\hat x_0 + \sqrt{1 - \bar\alpha' - \sigma^2}\,\hat\varepsilon + \sigma z,
        \qquad \sigma = \eta \sqrt{\frac{1 - \bar\alpha'}{1 - \bar\alpha}\Bigl(1 - \frac{\bar\alpha}{\bar\alpha'}\Bigr)} .

    With ``eta = 0`` no random number is used: the step is an Euler step of
    the probability-flow ODE in the noise level (Proposition
    ``prop-dd-ddim-euler``). ``eta = 1`` gives the variance of DDPM's
    ``"posterior"`` choice. Arguments as in :func:`ddpm_step`; ``eta >= 0``.
    """
    alpha_bar = _check_alpha_bar(alpha_bar, "alpha_bar", upper_inclusive=False)
    alpha_bar_prev = _check_alpha_bar(alpha_bar_prev, "alpha_bar_prev", upper_inclusive=True)
    if alpha_bar_prev < alpha_bar:
        raise ValueError(f"alpha_bar_prev must be >= alpha_bar = {alpha_bar} (a step removes noise), got {alpha_bar_prev}")
    check_positive(eta, "eta", allow_zero=True)
    denoised, epsilon = sample_and_noise_from_prediction(output, x, alpha_bar, prediction)
    std = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))
    # max(·, 0) only guards round-off when eta = 1 at the last step, where both terms vanish.
    x_prev = math.sqrt(alpha_bar_prev) * denoised + math.sqrt(max(1 - alpha_bar_prev - std**2, 0.0)) * epsilon
    if std == 0:
        return x_prev
    return x_prev + std * _noise_for(x, noise, generator)


def _noise_for(x: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if noise is None:
        return standard_normal_like(x, generator)
    _check_pair_shapes(x, noise, "x", "noise")
    return noise


def _alpha_bar_loop(
    network: AlphaBarNetwork,
    schedule: AlphaBarSchedule,
    x_start: Tensor,
    sampling_steps: int | None,
    step: Callable[[Tensor, Tensor, float, float], Tensor],
) -> Tensor:
    if not callable(network):
        raise ValueError("network must be callable as network(x, k)")
    if not isinstance(schedule, AlphaBarSchedule):
        raise ValueError(f"schedule must be an AlphaBarSchedule, got {type(schedule).__name__}")
    if not isinstance(x_start, Tensor) or x_start.ndim < 2:
        raise ValueError("x_start must be a batch-first tensor of shape (n, ...)")
    levels = schedule.timesteps(sampling_steps)
    x = x_start
    for k, k_prev in zip(levels, levels[1:] + [-1]):
        steps = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
        x = step(network(x, steps), x, schedule.at(k), schedule.at(k_prev))
    return x


@torch.no_grad()
def ddpm_sample_alpha_bar(
    network: AlphaBarNetwork,
    schedule: AlphaBarSchedule,
    x_start: Tensor,
    prediction: Prediction = "epsilon",
    sampling_steps: int | None = None,
    variance: Literal["posterior", "beta"] = "posterior",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Ho et al.'s DDPM sampler in the ᾱ form (Chapter 7, eq. ``eq-dd-ddpm-alpha-bar``): :func:`ddpm_step`
    from ``k = T - 1`` (or the ``sampling_steps`` levels of :meth:`AlphaBarSchedule.timesteps`) to the data.

    Args:
        network: ``(x, k) -> output`` of kind ``prediction``.
        schedule: the levels ``ᾱ_k``.
        x_start: the start at the noisiest level, usually ``N(0, I)``, shape ``(n, ...)``.
        generator: seeds the noise of each step (drawn on its device, then moved to ``x_start``'s).
    """
    return _alpha_bar_loop(
        network, schedule, x_start, sampling_steps,
        lambda output, x, a, a_prev: ddpm_step(output, x, a, a_prev, prediction, variance, generator=generator),
    )


@torch.no_grad()
def ddim_sample_alpha_bar(
    network: AlphaBarNetwork,
    schedule: AlphaBarSchedule,
    x_start: Tensor,
    prediction: Prediction = "epsilon",
    sampling_steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The DDIM sampler in the ᾱ form (Chapter 7, eq. ``eq-dd-ddim-alpha-bar``): :func:`ddim_step`
    from the noisiest visited level to the data; deterministic when ``eta = 0``. Arguments as in
    :func:`ddpm_sample_alpha_bar`."""
    return _alpha_bar_loop(
        network, schedule, x_start, sampling_steps,
        lambda output, x, a, a_prev: ddim_step(output, x, a, a_prev, prediction, eta, generator=generator),
    )
