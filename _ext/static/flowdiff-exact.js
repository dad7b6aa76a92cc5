/*
 * flowdiff-exact.js: the book's exact formulas in the browser, for its interactive figures.
 *
 * Each function mirrors one of the Python package's (named in its comment), on
 * plain arrays of numbers: a point is an array of d numbers, a batch an array of
 * points. tests/test_interactive.py evaluates this file in Node.js at the
 * reference points the build exports (tools/interactive_reference.py, computed
 * with flowdiff) and asks for agreement to 1e-6.
 *
 * Time runs as in the book: noise at t = 0, data at t = 1.
 */
(function (root) {
  "use strict";

  const HALF_PI = 0.5 * Math.PI;

  // --- Schedulers (flowdiff.paths: LinearScheduler, CosineScheduler, VPScheduler; Chapter 4) ------------------

  const linear = {
    name: "linear",
    alpha: (t) => t,
    beta: (t) => 1 - t,
    alphaDot: () => 1,
    betaDot: () => -1,
  };
  linear.betaBetaDot = (t) => linear.beta(t) * linear.betaDot(t);

  const cosine = {
    name: "cosine",
    alpha: (t) => Math.sin(HALF_PI * t),
    beta: (t) => Math.max(Math.cos(HALF_PI * t), 0),
    alphaDot: (t) => HALF_PI * Math.cos(HALF_PI * t),
    betaDot: (t) => -HALF_PI * Math.sin(HALF_PI * t),
  };
  cosine.betaBetaDot = (t) => cosine.beta(t) * cosine.betaDot(t);

  /** The VP schedule with a linear rate beta(s) in diffusion time s = 1 - t (VPScheduler). */
  function vp(betaMin = 0.1, betaMax = 20) {
    const integral = (s) => betaMin * s + 0.5 * (betaMax - betaMin) * s * s;
    const rate = (s) => betaMin + (betaMax - betaMin) * s;
    const alpha = (t) => Math.exp(-0.5 * integral(1 - t));
    const beta = (t) => Math.sqrt(-Math.expm1(-integral(1 - t)));
    const alphaDot = (t) => 0.5 * rate(1 - t) * alpha(t);
    return {
      name: "vp", alpha, beta, alphaDot,
      betaDot: (t) => -alpha(t) * alphaDot(t) / beta(t),
      // From alpha^2 + beta^2 = 1: finite at t = 1, where betaDot is not.
      betaBetaDot: (t) => -alpha(t) * alphaDot(t),
    };
  }

  /** log SNR_t = log(alpha_t^2 / beta_t^2) (Chapter 4). */
  function logSnr(scheduler, t) {
    return 2 * (Math.log(scheduler.alpha(t)) - Math.log(scheduler.beta(t)));
  }

  // --- Gaussian mixtures with isotropic components (flowdiff.distributions.GaussianMixture) --------------------

  function logSumExp(values) {
    const top = Math.max(...values);
    if (!Number.isFinite(top)) return top;
    let sum = 0;
    for (const v of values) sum += Math.exp(v - top);
    return top + Math.log(sum);
  }

  /**
   * A mixture sum_k w_k N(mu_k, std_k^2 I).
   * @param {number[][]} means  k points of dimension d
   * @param {number[]} stds     k standard deviations
   * @param {number[]} [weights] k weights (normalised here), equal when omitted
   */
  function mixture(means, stds, weights) {
    const k = means.length;
    if (k === 0 || stds.length !== k) throw new Error("means and stds must have the same, non-zero length");
    const raw = weights || means.map(() => 1);
    const total = raw.reduce((a, b) => a + b, 0);
    return { means, stds, weights: raw.map((w) => w / total), dim: means[0].length };
  }

  /**
   * The law of scale * X + noiseStd * eps, X from the mixture, at x: [E[X | x], grad log p(x), log p(x)]
   * (GaussianMixture.noised_posterior). Each component's noised variance is scale^2 std_k^2 + noiseStd^2.
   */
  function noisedPosterior(mix, x, scale, noiseStd) {
    const d = mix.dim;
    const logs = [], solved = [];
    for (let k = 0; k < mix.means.length; k++) {
      const variance = scale * scale * mix.stds[k] * mix.stds[k] + noiseStd * noiseStd;
      if (!(variance > 0)) throw new Error("noiseStd must be > 0 where the data has no density");
      const s = new Array(d);
      let squared = 0;
      for (let i = 0; i < d; i++) {
        const centred = x[i] - scale * mix.means[k][i];
        s[i] = centred / variance;
        squared += centred * s[i];
      }
      solved.push(s);
      logs.push(Math.log(mix.weights[k]) - 0.5 * squared - 0.5 * d * Math.log(2 * Math.PI * variance));
    }
    const logDensity = logSumExp(logs);
    const denoised = new Array(d).fill(0), score = new Array(d).fill(0);
    for (let k = 0; k < mix.means.length; k++) {
      const gamma = Math.exp(logs[k] - logDensity);
      const gain = scale * mix.stds[k] * mix.stds[k];
      for (let i = 0; i < d; i++) {
        score[i] -= gamma * solved[k][i];
        denoised[i] += gamma * (mix.means[k][i] + gain * solved[k][i]);
      }
    }
    return { denoised, score, logDensity };
  }

  const logDensity = (mix, x) => noisedPosterior(mix, x, 1, 0).logDensity;
  const score = (mix, x) => noisedPosterior(mix, x, 1, 0).score;

  // --- Marginal fields of a Gaussian path (flowdiff.paths.GaussianPath; Chapter 4) -----------------------------

  /** p_t(x) of the path alpha_t Z + beta_t eps with Z from the mixture, as a log density. */
  function marginalLogDensity(scheduler, mix, x, t) {
    return noisedPosterior(mix, x, scheduler.alpha(t), scheduler.beta(t)).logDensity;
  }

  /** The exact marginal score grad log p_t(x) (GaussianPath.marginal_score). */
  function marginalScore(scheduler, mix, x, t) {
    return noisedPosterior(mix, x, scheduler.alpha(t), scheduler.beta(t)).score;
  }

  /** u_t(x) = alphaDot_t E[Z | x] - beta_t betaDot_t grad log p_t(x) (GaussianPath.marginal_vector_field). */
  function marginalField(scheduler, mix, x, t) {
    const post = noisedPosterior(mix, x, scheduler.alpha(t), scheduler.beta(t));
    const a = scheduler.alphaDot(t), bb = scheduler.betaBetaDot(t);
    return post.denoised.map((m, i) => a * m - bb * post.score[i]);
  }

  /** (1 - w) u(x | empty) + w u(x | y) (flowdiff.guidance.guided_vector_field; Chapter 8). */
  function guidedField(conditional, unconditional, w) {
    return unconditional.map((u, i) => u + w * (conditional[i] - u));
  }

  /**
   * A labelled mixture: one isotropic mixture per class, with prior class weights
   * (flowdiff.labelled_mixtures.LabelledMixture). Returns {classes, whole}.
   */
  function labelledMixture(means, labels, std, prior) {
    const count = Math.max(...labels) + 1;
    const classes = [];
    for (let y = 0; y < count; y++) {
      const own = means.filter((_, i) => labels[i] === y);
      classes.push(mixture(own, own.map(() => std)));
    }
    const classPrior = prior || classes.map(() => 1 / count);
    const wholeMeans = [], wholeWeights = [];
    classes.forEach((c, y) => c.means.forEach((m, i) => { wholeMeans.push(m); wholeWeights.push(classPrior[y] * c.weights[i]); }));
    return { classes, whole: mixture(wholeMeans, wholeMeans.map(() => std), wholeWeights) };
  }

  /** The guided field of class y at scale w for labelled mixture data (exact_conditional_field + guidance). */
  function guidedMixtureField(scheduler, labelled, x, t, y, w) {
    return guidedField(marginalField(scheduler, labelled.classes[y], x, t), marginalField(scheduler, labelled.whole, x, t), w);
  }

  // --- Solvers (flowdiff.solvers; Chapters 2 and 3) --------------------------------------------------------------

  const axpy = (x, h, v) => x.map((xi, i) => xi + h * v[i]);

  /** x + h u_t(x) (euler_step). */
  function eulerStep(field, x, t, h) {
    return axpy(x, h, field(x, t));
  }

  /** x + (h/2)(u_t(x) + u_{t+h}(x + h u_t(x))) (heun_step). */
  function heunStep(field, x, t, h) {
    const v = field(x, t);
    const corrector = field(axpy(x, h, v), t + h);
    return x.map((xi, i) => xi + 0.5 * h * (v[i] + corrector[i]));
  }

  /** x + h u_{t+h/2}(x + (h/2) u_t(x)) (midpoint_step). */
  function midpointStep(field, x, t, h) {
    return axpy(x, h, field(axpy(x, 0.5 * h, field(x, t)), t + 0.5 * h));
  }

  /** x + h f_t(x) + sigma_t(x) sqrt(h) z for a given standard normal z (euler_maruyama_step). */
  function eulerMaruyamaStep(drift, diffusion, x, t, h, z) {
    const f = drift(x, t), sigma = diffusion(x, t), root = Math.sqrt(h);
    return x.map((xi, i) => xi + h * f[i] + sigma * root * z[i]);
  }

  const STEPS = { euler: eulerStep, heun: heunStep, midpoint: midpointStep };

  /**
   * The states of `steps` uniform steps of an ODE solver from t0 to t1 (simulate_trajectory on time_grid),
   * an array of steps + 1 points.
   */
  function trajectory(field, x0, steps, method = "euler", t0 = 0, t1 = 1) {
    const step = STEPS[method];
    if (!step) throw new Error(`method must be one of ${Object.keys(STEPS).join(", ")}, got ${method}`);
    const h = (t1 - t0) / steps, states = [x0];
    let x = x0;
    for (let k = 0; k < steps; k++) {
      x = step(field, x, t0 + k * h, h);
      states.push(x);
    }
    return states;
  }

  // --- DDPM and DDIM on the variance-exploding chain (flowdiff.discrete; Chapter 7) ----------------------------
  // Diffusion time s runs from 1 (noise) to 0 (data) on the grid k/T; x_s = x_0 + sigmaQ sqrt(s) eps.

  /** The step of either sampler from grid time s = k/T, given the denoised E[x_0 | x_s]; z is null for DDIM. */
  function veChainStep(x, denoised, k, steps, sigmaQ, z) {
    const ratio = 1 / k;  // (1/T) / (k/T)
    const mean = x.map((xi, i) => ratio * denoised[i] + (1 - ratio) * xi);
    if (z === null) {
      const now = Math.sqrt(k / steps), before = Math.sqrt((k - 1) / steps);
      const lambda = now / (before + now);
      return x.map((xi, i) => xi + lambda * (mean[i] - xi));
    }
    if (k === 1) return mean;  // Ho et al.'s last step adds no noise.
    const spread = sigmaQ * Math.sqrt(1 / steps);
    return mean.map((m, i) => m + spread * z[i]);
  }

  /**
   * Sample the chain from x at s = 1 down to 0 with an exact denoiser (x, s) -> E[x_0 | x_s]:
   * DDIM when `noises` is null, DDPM with noises[j] the standard normal of the j-th step otherwise
   * (ddim_sample, ddpm_sample). Returns the T + 1 states.
   */
  function veChainSample(denoiser, x, steps, sigmaQ, noises = null) {
    const states = [x];
    for (let k = steps, j = 0; k >= 1; k--, j++) {
      x = veChainStep(x, denoiser(x, k / steps), k, steps, sigmaQ, noises === null ? null : noises[j]);
      states.push(x);
    }
    return states;
  }

  /** E[x_0 | x_0 + sigmaQ sqrt(s) eps = x] for mixture data (discrete.exact_denoiser). */
  function veDenoiser(mix, sigmaQ) {
    return (x, s) => noisedPosterior(mix, x, 1, sigmaQ * Math.sqrt(s)).denoised;
  }

  // --- Couplings (flowdiff.coupling; Chapter 14) ------------------------------------------------------------------

  const squaredDistance = (a, b) => a.reduce((sum, ai, i) => sum + (ai - b[i]) ** 2, 0);

  /**
   * The optimal permutation of ot_pairing: noise[perm[i]] is the partner of data[i], minimising the mean
   * squared distance. The Hungarian algorithm (Kuhn-Munkres with potentials), O(n^3).
   */
  function otPairing(noise, data) {
    const n = data.length;
    if (noise.length !== n) throw new Error("noise and data must have the same number of points");
    const cost = data.map((z) => noise.map((x) => squaredDistance(x, z)));
    const u = new Array(n + 1).fill(0), v = new Array(n + 1).fill(0);
    const owner = new Array(n + 1).fill(0), way = new Array(n + 1).fill(0);
    for (let row = 1; row <= n; row++) {
      owner[0] = row;
      let column = 0;
      const least = new Array(n + 1).fill(Infinity), used = new Array(n + 1).fill(false);
      do {
        used[column] = true;
        const r = owner[column];
        let delta = Infinity, next = 0;
        for (let c = 1; c <= n; c++) {
          if (used[c]) continue;
          const reduced = cost[r - 1][c - 1] - u[r] - v[c];
          if (reduced < least[c]) { least[c] = reduced; way[c] = column; }
          if (least[c] < delta) { delta = least[c]; next = c; }
        }
        for (let c = 0; c <= n; c++) {
          if (used[c]) { u[owner[c]] += delta; v[c] -= delta; } else { least[c] -= delta; }
        }
        column = next;
      } while (owner[column] !== 0);
      do { const previous = way[column]; owner[column] = owner[previous]; column = previous; } while (column !== 0);
    }
    const permutation = new Array(n);
    for (let c = 1; c <= n; c++) permutation[owner[c] - 1] = c - 1;
    return permutation;
  }

  /** (1/n) sum_i |x0_{perm[i]} - z_i|^2 (pairing_cost after the permutation). */
  function pairingCost(noise, data, permutation) {
    return data.reduce((sum, z, i) => sum + squaredDistance(noise[permutation ? permutation[i] : i], z), 0) / data.length;
  }

  // --- Random numbers for the figures (seeded, so a figure looks the same at every visit) ----------------------

  /** A seeded uniform generator on [0, 1) (mulberry32). */
  function uniformGenerator(seed) {
    let state = seed >>> 0;
    return function () {
      state = (state + 0x6d2b79f5) >>> 0;
      let r = Math.imul(state ^ (state >>> 15), 1 | state);
      r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
      return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** A seeded standard normal generator (Box-Muller on uniformGenerator). */
  function normalGenerator(seed) {
    const uniform = uniformGenerator(seed);
    return function () {
      const radius = Math.sqrt(-2 * Math.log(1 - uniform()));
      return radius * Math.cos(2 * Math.PI * uniform());
    };
  }

  /** n draws from the mixture, with a seeded normal generator `normal` and uniform generator `uniform`. */
  function sampleMixture(mix, n, normal, uniform) {
    const points = [];
    for (let j = 0; j < n; j++) {
      let u = uniform(), k = 0;
      while (k < mix.weights.length - 1 && u >= mix.weights[k]) { u -= mix.weights[k]; k++; }
      points.push(mix.means[k].map((m) => m + mix.stds[k] * normal()));
    }
    return points;
  }

  // --- Continuous-time Markov chains (flowdiff.discrete_flows; Chapter 18) --------------------------------------

  /** exp(tQ) of a small rate matrix, by scaling and squaring a Taylor series. */
  function matrixExponential(rates, t) {
    const n = rates.length;
    const norm = Math.max(...rates.map((row) => row.reduce((a, q) => a + Math.abs(q), 0))) * t;
    const squarings = Math.max(0, Math.ceil(Math.log2(norm + 1e-300)) + 4);
    const scaled = rates.map((row) => row.map((q) => (q * t) / 2 ** squarings));
    const multiply = (a, b) => a.map((row) => b[0].map((_, j) => row.reduce((sum, aik, k) => sum + aik * b[k][j], 0)));
    let result = rates.map((row, i) => row.map((_, j) => (i === j ? 1 : 0)));
    let term = result;
    for (let power = 1; power <= 18; power++) {
      term = multiply(term, scaled).map((row) => row.map((v) => v / power));
      result = result.map((row, i) => row.map((v, j) => v + term[i][j]));
    }
    for (let s = 0; s < squarings; s++) result = multiply(result, result);
    return result;
  }

  /** The law after `steps` Euler steps of the chain, p <- p (I + hQ) (step_transition_matrix applied K times). */
  function eulerChainLaw(rates, p0, t, steps) {
    const h = t / steps;
    let p = p0.slice();
    for (let k = 0; k < steps; k++) {
      p = p.map((_, j) => p.reduce((sum, pi, i) => sum + pi * ((i === j ? 1 : 0) + h * rates[i][j]), 0));
    }
    return p;
  }

  const api = {
    schedulers: { linear, cosine, vp }, logSnr,
    mixture, noisedPosterior, logDensity, score,
    marginalLogDensity, marginalScore, marginalField, guidedField, labelledMixture, guidedMixtureField,
    eulerStep, heunStep, midpointStep, eulerMaruyamaStep, trajectory,
    veChainStep, veChainSample, veDenoiser,
    otPairing, pairingCost,
    uniformGenerator, normalGenerator, sampleMixture,
    matrixExponential, eulerChainLaw,
  };
  root.FlowDiffExact = api;
  if (typeof module !== "undefined" && module.exports) module.exports = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
