/*
 * interactive-figures.js: the book's interactive figures, one FlowDiffFigures.define per widget, in the
 * order of the chapters. Exact formulas come from flowdiff-exact.js (FlowDiffExact); learned models come
 * as frames the build rendered from the shipped checkpoints (the figure's payload).
 * Every reader-visible text is written tr(...) so that the build can translate it (see interactive.js).
 */
(function () {
  "use strict";
  const FD = window.FlowDiffExact;
  const { define, tr, panels, sprite, PALETTE } = window.FlowDiffFigures;
  const [BLUE, ORANGE, GREEN, PINK, YELLOW, SKY] = PALETTE;
  const fixed = (digits) => (value) => value.toFixed(digits);
  const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));

  // A 2-D mixture shared by several figures: three components of unequal weight and width
  // (the reference mixture of tools/interactive_reference.py).
  const MIXTURE = FD.mixture([[-2.0, 0.5], [1.5, 1.0], [0.3, -1.8]], [0.4, 0.7, 0.25], [0.5, 0.3, 0.2]);
  const BOX = { x: [-4, 4], y: [-4, 4] };

  /** n seeded standard normal points in d dimensions. */
  function gaussianPoints(n, seed, d = 2) {
    const normal = FD.normalGenerator(seed);
    return range(n, () => range(d, () => normal()));
  }

  /** f() computed once, on first use (a reference solution that no control changes). */
  function once(f) {
    let value = null;
    return () => (value === null ? (value = f()) : value);
  }

  /** The exact marginal field of the mixture's path under a scheduler, as an ODE field (x, t) -> u. */
  const mixtureField = (scheduler, mix) => (x, t) => FD.marginalField(scheduler, mix, x, t);

  // --- Chapter 1: a distribution and its samples ------------------------------------------------------------------

  define("mixture-samples", {
    aspect: 0.62,
    controls: [
      { key: "n", label: tr("Samples"), min: 10, max: 2000, step: 10, value: 200 },
      { key: "spread", label: tr("Width factor"), min: 0.5, max: 2, step: 0.05, value: 1, format: fixed(2) },
    ],
    draw(canvas, state) {
      const mix = FD.mixture(MIXTURE.means, MIXTURE.stds.map((s) => s * state.spread), MIXTURE.weights);
      const [left, right] = panels(canvas, [
        { ...BOX, title: tr("density p(x)"), xLabel: "x₁", yLabel: "x₂" },
        { ...BOX, title: tr("samples x ~ p"), xLabel: "x₁" },
      ]);
      left.heat((x, y) => Math.exp(FD.logDensity(mix, [x, y])), 90);
      left.axes();
      const points = FD.sampleMixture(mix, state.n, FD.normalGenerator(1), FD.uniformGenerator(2));
      right.dots(points, BLUE, 1.6, 0.6);
      right.axes();
      const mean = [0, 1].map((i) => points.reduce((s, p) => s + p[i], 0) / points.length);
      const exact = [0, 1].map((i) => mix.means.reduce((s, m, k) => s + mix.weights[k] * m[i], 0));
      return {
        text: `${tr("sample mean")} (${mean.map(fixed(2)).join(", ")}) · ${tr("exact mean")} (${exact.map(fixed(2)).join(", ")})`,
        values: { mean: exact, sampleMean: mean },
      };
    },
  });

  // --- Chapter 2: Euler against Heun on a linear ODE with a known solution --------------------------------------

  // u(x) = A x with A = [[-0.2, -2], [2, -0.2]]: a decaying rotation, solved by exp(tA) in closed form.
  const SPIN = [[-0.2, -2.0], [2.0, -0.2]];
  const spinField = (x) => [SPIN[0][0] * x[0] + SPIN[0][1] * x[1], SPIN[1][0] * x[0] + SPIN[1][1] * x[1]];
  const spinExact = (x0, t) => {
    const decay = Math.exp(-0.2 * t), c = Math.cos(2 * t), s = Math.sin(2 * t);
    return [decay * (c * x0[0] - s * x0[1]), decay * (s * x0[0] + c * x0[1])];
  };

  define("euler-heun", {
    aspect: 0.6,
    controls: [{ key: "steps", label: tr("Steps"), min: 2, max: 64, step: 1, value: 12 }],
    draw(canvas, state) {
      const x0 = [1.5, 0], [plot] = panels(canvas, [{ x: [-3.2, 3.2], y: [-2.2, 2.2], xLabel: "x₁", yLabel: "x₂" }]);
      const exact = range(201, (i) => spinExact(x0, (3 * i) / 200));
      plot.line(exact, "#888", 2);
      const euler = FD.trajectory((x) => spinField(x), x0, state.steps, "euler", 0, 3);
      const heun = FD.trajectory((x) => spinField(x), x0, state.steps, "heun", 0, 3);
      plot.line(euler, ORANGE, 1.5); plot.dots(euler, ORANGE, 2.5);
      plot.line(heun, BLUE, 1.5); plot.dots(heun, BLUE, 2.5);
      plot.axes();
      plot.legend([[tr("exact"), "#888"], [tr("Euler"), ORANGE], [tr("Heun"), BLUE]]);
      const end = spinExact(x0, 3);
      const errorEuler = Math.hypot(euler.at(-1)[0] - end[0], euler.at(-1)[1] - end[1]);
      const errorHeun = Math.hypot(heun.at(-1)[0] - end[0], heun.at(-1)[1] - end[1]);
      return {
        text: `${tr("error at t = 3")}: ${tr("Euler")} ${errorEuler.toExponential(2)} · ${tr("Heun")} ${errorHeun.toExponential(2)}`,
        values: { euler: euler.at(-1), heun: heun.at(-1), exact: end, errorEuler, errorHeun },
      };
    },
  });

  // --- Chapter 2: the flow between two Gaussians, N(0, 1) -> N(m, s^2), one particle at a time --------------------

  define("gaussian-flow", {
    aspect: 0.55,
    controls: [
      { key: "t", label: "t", min: 0, max: 1, step: 0.01, value: 0.5, format: fixed(2) },
      { key: "std1", label: tr("Final width"), min: 0.2, max: 2, step: 0.05, value: 0.5, format: fixed(2) },
    ],
    draw(canvas, state) {
      const mean1 = 2.5, std = (t) => 1 - t + t * state.std1;
      const [plot] = panels(canvas, [{ x: [-3.5, 5], y: [0, 1], xLabel: "x", yLabel: "t", }]);
      const starts = range(25, (i) => -2.4 + (4.8 * i) / 24);
      // Each particle's trajectory psi_t(x0) = t m + std_t x0 (a straight line in (x, t)).
      for (const x0 of starts) {
        plot.line([[x0, 0], [mean1 + state.std1 * x0, 1]], "#aaa", 0.8);
      }
      const now = starts.map((x0) => [state.t * mean1 + std(state.t) * x0, state.t]);
      plot.dots(now, ORANGE, 3);
      const density = range(200, (i) => {
        const x = -3.5 + (8.5 * i) / 199, s = std(state.t), m = state.t * mean1;
        return [x, state.t + 0.25 * Math.exp(-0.5 * ((x - m) / s) ** 2) / (s * Math.sqrt(2 * Math.PI))];
      });
      plot.line(density, BLUE, 1.5);
      plot.axes();
      return {
        text: `${tr("mean")} ${(state.t * mean1).toFixed(2)} · ${tr("standard deviation")} ${std(state.t).toFixed(3)}`,
        values: { mean: state.t * mean1, std: std(state.t) },
      };
    },
  });

  // --- Chapter 3: Euler-Maruyama on the Ornstein-Uhlenbeck process ---------------------------------------------

  define("ou-process", {
    aspect: 0.55,
    controls: [
      { key: "theta", label: "θ", min: 0.2, max: 4, step: 0.1, value: 1, format: fixed(1) },
      { key: "sigma", label: "σ", min: 0.1, max: 2, step: 0.05, value: 0.8, format: fixed(2) },
      { key: "steps", label: tr("Steps"), min: 5, max: 400, step: 5, value: 100 },
    ],
    draw(canvas, state) {
      const { theta, sigma, steps } = state, horizon = 5, h = horizon / steps;
      const [paths, histogram] = panels(canvas, [
        { x: [0, horizon], y: [-3, 3], xLabel: "t", yLabel: "X_t" },
        { x: [0, 1.2], y: [-3, 3], xLabel: tr("density"), hideYTicks: true },
      ]);
      const normal = FD.normalGenerator(7), ends = [];
      for (let path = 0; path < 300; path++) {
        let x = [2.5];
        const points = [[0, 2.5]];
        for (let k = 0; k < steps; k++) {
          x = FD.eulerMaruyamaStep((y) => [-theta * y[0]], () => sigma, x, k * h, h, [normal()]);
          points.push([(k + 1) * h, x[0]]);
        }
        if (path < 12) paths.line(points, path % 2 ? BLUE : SKY, 0.8);
        ends.push(x[0]);
      }
      paths.axes();
      const variance = (sigma * sigma * (1 - Math.exp(-2 * theta * horizon))) / (2 * theta);
      const mean = 2.5 * Math.exp(-theta * horizon);
      const bins = 30, counts = new Array(bins).fill(0);
      for (const x of ends) { const b = Math.floor(((x + 3) / 6) * bins); if (b >= 0 && b < bins) counts[b]++; }
      const width = 6 / bins;
      counts.forEach((count, b) => {
        const y = -3 + b * width, density = count / ends.length / width;
        histogram.line([[0, y], [density, y], [density, y + width], [0, y + width]], ORANGE, 1);
      });
      histogram.line(range(120, (i) => {
        const y = -3 + (6 * i) / 119;
        return [Math.exp(-0.5 * (y - mean) ** 2 / variance) / Math.sqrt(2 * Math.PI * variance), y];
      }), BLUE, 2);
      histogram.axes();
      // The variance of the Euler-Maruyama chain itself: v <- (1 - theta h)^2 v + sigma^2 h.
      let chainVariance = 0;
      for (let k = 0; k < steps; k++) chainVariance = (1 - theta * h) ** 2 * chainVariance + sigma * sigma * h;
      return {
        text: `${tr("variance at t = 5")}: ${tr("exact")} ${variance.toFixed(4)} · ${tr("Euler–Maruyama chain")} ${chainVariance.toFixed(4)}`,
        values: { variance, chainVariance },
      };
    },
  });

  // --- Chapter 3: Langevin dynamics on a 2-D mixture -------------------------------------------------------------

  define("langevin", {
    aspect: 0.62,
    controls: [
      { key: "h", label: tr("Step size h"), min: 0.005, max: 0.2, step: 0.005, value: 0.05, format: fixed(3) },
      { key: "sigma", label: "σ", min: 0.2, max: 2, step: 0.05, value: 1, format: fixed(2) },
      { key: "steps", label: tr("Steps"), min: 0, max: 500, step: 10, value: 100 },
    ],
    draw(canvas, state) {
      const [plot] = panels(canvas, [{ ...BOX, xLabel: "x₁", yLabel: "x₂" }]);
      plot.heat((x, y) => Math.exp(FD.logDensity(MIXTURE, [x, y])), 90);
      const normal = FD.normalGenerator(3);
      const drift = (x) => FD.score(MIXTURE, x).map((s) => 0.5 * state.sigma ** 2 * s);
      // A step too large for the narrow component makes particles diverge: each one that leaves the disc of
      // radius 20 is counted and left where it left.
      let points = gaussianPoints(300, 4).map((p) => [3 * p[0], 3 * p[1]]);
      const escaped = (x) => !(Math.hypot(x[0], x[1]) <= 20);
      for (let k = 0; k < state.steps; k++) {
        points = points.map((x) => {
          const z = [normal(), normal()];
          return escaped(x) ? x : FD.eulerMaruyamaStep(drift, () => state.sigma, x, 0, state.h, z);
        });
      }
      const kept = points.filter((x) => !escaped(x));
      plot.dots(kept, ORANGE, 2, 0.8);
      plot.axes();
      const meanLog = kept.reduce((s, x) => s + FD.logDensity(MIXTURE, x), 0) / Math.max(1, kept.length);
      const diverged = points.length - kept.length;
      return {
        text: `${tr("mean log-density of the particles")} ${Number.isFinite(meanLog) ? meanLog.toFixed(2) : "−∞"} · ${tr("time σ²h·steps/2")} ${(0.5 * state.sigma ** 2 * state.h * state.steps).toFixed(2)}${diverged ? ` · ${diverged} ${tr("particles escaped")}` : ""}`,
        values: { meanLog },
      };
    },
  });

  // --- Chapter 4: the noise-schedule explorer ---------------------------------------------------------------

  const SCHEDULERS = { linear: FD.schedulers.linear, cosine: FD.schedulers.cosine, vp: FD.schedulers.vp(0.1, 20) };
  const SCHEDULER_OPTIONS = [["linear", tr("linear")], ["cosine", tr("cosine")], ["vp", tr("VP (β from 0.1 to 20)")]];

  define("schedules", {
    aspect: 0.5,
    controls: [
      { key: "scheduler", label: tr("Schedule"), options: SCHEDULER_OPTIONS, value: "cosine" },
      { key: "t", label: "t", min: 0.01, max: 0.99, step: 0.01, value: 0.5, format: fixed(2) },
    ],
    draw(canvas, state) {
      const s = SCHEDULERS[state.scheduler];
      const [coefficients, snr] = panels(canvas, [
        { x: [0, 1], y: [0, 1.05], xLabel: "t", title: tr("coefficients") },
        { x: [0, 1], y: [-12, 12], xLabel: "t", title: "log SNR = log(α²/β²)" },
      ]);
      const grid = range(201, (i) => 0.0025 + (0.995 * i) / 200);
      for (const [name, other] of Object.entries(SCHEDULERS)) {
        if (name === state.scheduler) continue;
        coefficients.line(grid.map((t) => [t, other.alpha(t)]), "#bbb", 1);
        snr.line(grid.map((t) => [t, FD.logSnr(other, t)]), "#bbb", 1);
      }
      coefficients.line(grid.map((t) => [t, s.alpha(t)]), BLUE, 2);
      coefficients.line(grid.map((t) => [t, s.beta(t)]), ORANGE, 2);
      snr.line(grid.map((t) => [t, FD.logSnr(s, t)]), GREEN, 2);
      for (const panel of [coefficients, snr]) panel.line([[state.t, -100], [state.t, 100]], "#888", 1, [4, 3]);
      coefficients.dots([[state.t, s.alpha(state.t)], [state.t, s.beta(state.t)]], "#444", 3);
      coefficients.axes(); snr.axes();
      coefficients.legend([["α_t", BLUE], ["β_t", ORANGE], [tr("other schedules"), "#bbb"]]);
      const values = { alpha: s.alpha(state.t), beta: s.beta(state.t), logSnr: FD.logSnr(s, state.t) };
      // "+ 0" turns a rounded -0.000 into 0.000.
      const shown = (v, digits) => (+v.toFixed(digits) + 0).toFixed(digits);
      return { text: `α_t = ${shown(values.alpha, 4)} · β_t = ${shown(values.beta, 4)} · log SNR = ${shown(values.logSnr, 3)}`, values };
    },
  });

  // --- Chapter 4: the exact marginal path and field of a Gaussian mixture ---------------------------------------

  define("mixture-path", {
    aspect: 0.62,
    controls: [
      { key: "scheduler", label: tr("Schedule"), options: SCHEDULER_OPTIONS, value: "linear" },
      { key: "t", label: "t", min: 0, max: 1, step: 0.01, value: 0.5, format: fixed(2) },
    ],
    draw(canvas, state) {
      const s = SCHEDULERS[state.scheduler], field = mixtureField(s, MIXTURE);
      const [plot] = panels(canvas, [{ ...BOX, xLabel: "x₁", yLabel: "x₂" }]);
      plot.heat((x, y) => Math.exp(FD.marginalLogDensity(s, MIXTURE, [x, y], state.t)), 80);
      plot.arrows((x) => field(x, Math.min(state.t, 0.999)), 15, "#555");
      // Particles start as N(0, β_0² I), the noise part of p_0 (the VP path's α_0 is about 0.007), and follow
      // the ODE up to t (Heun, 100 steps per unit time).
      const steps = Math.max(1, Math.round(100 * state.t));
      const starts = gaussianPoints(150, 9).map((p) => p.map((v) => v * s.beta(0)));
      const particles = state.t === 0 ? starts : starts.map((x0) => FD.trajectory(field, x0, steps, "heun", 0, Math.min(state.t, 0.999)).at(-1));
      plot.dots(particles, ORANGE, 2.2);
      plot.axes();
      const probe = [0, 0], u = field(probe, Math.min(state.t, 0.999));
      return {
        text: `u_t(0, 0) = (${u.map(fixed(3)).join(", ")})`,
        values: { probe, field: u, t: Math.min(state.t, 0.999) },
      };
    },
  });

  // --- Chapter 5: samples from the exact field against the number of steps ---------------------------------------

  const STEPS_STARTS = gaussianPoints(300, 5);
  const stepsReference = once(() => STEPS_STARTS.map((x0) => FD.trajectory(mixtureField(FD.schedulers.linear, MIXTURE), x0, 200, "heun").at(-1)));

  define("steps-quality", {
    aspect: 0.62,
    controls: [
      { key: "method", label: tr("Solver"), options: [["euler", tr("Euler")], ["heun", tr("Heun")], ["midpoint", tr("midpoint")]], value: "euler" },
      { key: "steps", label: tr("Steps"), min: 1, max: 50, step: 1, value: 4 },
    ],
    draw(canvas, state) {
      const field = mixtureField(FD.schedulers.linear, MIXTURE);
      const [plot] = panels(canvas, [{ ...BOX, xLabel: "x₁", yLabel: "x₂" }]);
      plot.heat((x, y) => Math.exp(FD.logDensity(MIXTURE, [x, y])), 90);
      const starts = STEPS_STARTS, reference = stepsReference();
      const ends = starts.map((x0) => FD.trajectory(field, x0, state.steps, state.method).at(-1));
      plot.dots(ends, ORANGE, 2);
      plot.axes();
      const error = ends.reduce((s, x, i) => s + Math.hypot(x[0] - reference[i][0], x[1] - reference[i][1]), 0) / ends.length;
      const evaluations = state.steps * (state.method === "euler" ? 1 : 2);
      return {
        text: `${tr("evaluations")} ${evaluations} · ${tr("mean distance to the exact flow's endpoint")} ${error.toFixed(4)}`,
        values: { error, evaluations, starts },
      };
    },
  });

  // --- Chapter 6: Tweedie's denoiser on the noised mixture ------------------------------------------------------

  define("tweedie", {
    aspect: 0.62,
    controls: [{ key: "noise", label: tr("Noise level σ"), min: 0.05, max: 3, step: 0.05, value: 0.8, format: fixed(2) }],
    draw(canvas, state) {
      const [plot] = panels(canvas, [{ ...BOX, xLabel: "x₁", yLabel: "x₂" }]);
      plot.heat((x, y) => Math.exp(FD.noisedPosterior(MIXTURE, [x, y], 1, state.noise).logDensity), 80);
      const grid = [];
      for (let i = 0; i < 9; i++) for (let j = 0; j < 9; j++) grid.push([-3.6 + 0.9 * i, -3.6 + 0.9 * j]);
      for (const x of grid) {
        const z = FD.noisedPosterior(MIXTURE, x, 1, state.noise).denoised;
        plot.line([x, z], "#777", 1);
        plot.dots([z], ORANGE, 2.2);
      }
      plot.dots(grid, "#444", 1.5);
      plot.axes();
      const probe = [1, -1], post = FD.noisedPosterior(MIXTURE, probe, 1, state.noise);
      return {
        text: `E[Z | x = (1, −1)] = (${post.denoised.map(fixed(3)).join(", ")}) · ∇log p(1, −1) = (${post.score.map(fixed(3)).join(", ")})`,
        values: { probe, denoised: post.denoised, score: post.score },
      };
    },
  });

  // --- Chapter 6: sampling with the marginal-preserving SDE for any diffusion level -----------------------------

  define("sde-sampling", {
    aspect: 0.62,
    controls: [
      { key: "level", label: tr("Diffusion σ"), min: 0, max: 2, step: 0.1, value: 0.5, format: fixed(1) },
      { key: "steps", label: tr("Steps"), min: 10, max: 400, step: 10, value: 100 },
    ],
    draw(canvas, state) {
      const s = FD.schedulers.linear, level = state.level;
      const [plot] = panels(canvas, [{ ...BOX, xLabel: "x₁", yLabel: "x₂" }]);
      plot.heat((x, y) => Math.exp(FD.logDensity(MIXTURE, [x, y])), 90);
      // dX = [u_t(X) + (σ²/2) ∇log p_t(X)] dt + σ dW keeps every marginal p_t (Chapter 6); stop at t = 0.999.
      const drift = (x, t) => {
        const u = FD.marginalField(s, MIXTURE, x, t), score = FD.marginalScore(s, MIXTURE, x, t);
        return u.map((v, i) => v + 0.5 * level * level * score[i]);
      };
      const normal = FD.normalGenerator(12), h = 0.999 / state.steps;
      const ends = gaussianPoints(250, 6).map((x0) => {
        let x = x0;
        for (let k = 0; k < state.steps; k++) x = FD.eulerMaruyamaStep(drift, () => level, x, k * h, h, [normal(), normal()]);
        return x;
      });
      plot.dots(ends, ORANGE, 2);
      plot.axes();
      const meanLog = ends.reduce((acc, x) => acc + FD.logDensity(MIXTURE, x), 0) / ends.length;
      return { text: `${tr("mean log-density of the samples")} ${meanLog.toFixed(3)}`, values: { meanLog } };
    },
  });

  // --- Chapter 7: DDPM against DDIM on 1-D Gaussian data with the exact denoiser ---------------------------------

  define("ddpm-ddim", {
    aspect: 0.5,
    controls: [
      { key: "sampler", label: tr("Sampler"), options: [["ddpm", "DDPM"], ["ddim", "DDIM"]], value: "ddim" },
      { key: "steps", label: tr("Steps T"), min: 1, max: 200, step: 1, value: 10 },
    ],
    draw(canvas, state) {
      // Data N(1, 0.5^2); chain x_s = x_0 + sigma_q sqrt(s) eps with sigma_q = 3, sampled from s = 1 down to 0.
      const data = FD.mixture([[1]], [0.5]), sigmaQ = 3, steps = state.steps;
      const denoiser = FD.veDenoiser(data, sigmaQ), normal = FD.normalGenerator(21);
      const starts = range(2000, () => [sigmaQ * normal()]);
      const samples = starts.map((x) => {
        const noises = state.sampler === "ddpm" ? range(steps - 1, () => [normal()]) : null;
        return FD.veChainSample(denoiser, x, steps, sigmaQ, noises).at(-1)[0];
      });
      const bins = 48, width = 6 / bins, counts = new Array(bins).fill(0);
      for (const x of samples) { const b = Math.floor((x + 2) / width); if (b >= 0 && b < bins) counts[b]++; }
      const tallest = Math.max(...counts) / samples.length / width;
      const [plot] = panels(canvas, [{ x: [-2, 4], y: [0, Math.max(1, 1.1 * tallest)], xLabel: "x", yLabel: tr("density") }]);
      counts.forEach((count, b) => {
        const x = -2 + b * width, d = count / samples.length / width;
        plot.line([[x, 0], [x, d], [x + width, d], [x + width, 0]], ORANGE, 1);
      });
      plot.line(range(200, (i) => { const x = -2 + (6 * i) / 199; return [x, Math.exp(-2 * (x - 1) ** 2) / (0.5 * Math.sqrt(2 * Math.PI))]; }), BLUE, 2);
      plot.axes();
      plot.legend([[tr("data density"), BLUE], [tr("samples"), ORANGE]]);
      const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
      const std = Math.sqrt(samples.reduce((a, b) => a + (b - mean) ** 2, 0) / samples.length);
      const probe = FD.veChainSample(denoiser, [2], steps, sigmaQ).at(-1)[0];
      return {
        text: `${tr("sample mean")} ${mean.toFixed(3)} · ${tr("sample standard deviation")} ${std.toFixed(3)} (${tr("data")}: 1, 0.5) · ${tr("DDIM from x = 2 lands at")} ${probe.toFixed(4)}`,
        values: { mean, std, ddimFromTwo: probe },
      };
    },
  });

  // --- Chapter 8: classifier-free guidance on an exact labelled mixture --------------------------------------------

  // Two classes of two components each: class 0 left and right, class 1 top and bottom (tools/interactive_reference.py).
  const LABELLED = FD.labelledMixture([[-2, 0], [2, 0], [0, 2], [0, -2]], [0, 0, 1, 1], 0.5);

  define("guidance", {
    aspect: 0.62,
    controls: [
      { key: "label", label: tr("Class y"), options: [[0, tr("0 (left and right)")], [1, tr("1 (top and bottom)")]], value: 1 },
      { key: "w", label: tr("Guidance scale w"), min: 0, max: 6, step: 0.1, value: 1, format: fixed(1) },
    ],
    draw(canvas, state) {
      const s = FD.schedulers.linear;
      const field = (x, t) => FD.guidedMixtureField(s, LABELLED, x, t, state.label, state.w);
      const [plot] = panels(canvas, [{ ...BOX, xLabel: "x₁", yLabel: "x₂" }]);
      plot.heat((x, y) => Math.exp(FD.logDensity(LABELLED.classes[state.label], [x, y])), 80, [0, 158, 115]);
      const ends = gaussianPoints(250, 8).map((x0) => FD.trajectory(field, x0, 40, "heun", 0, 0.999).at(-1));
      plot.dots(ends, ORANGE, 2);
      plot.axes();
      const probe = [1, 1], u = field(probe, 0.6);
      const spread = Math.sqrt(ends.reduce((a, x) => a + x[0] ** 2 + x[1] ** 2, 0) / ends.length);
      return {
        text: `${tr("guided field at (1, 1), t = 0.6")}: (${u.map(fixed(3)).join(", ")}) · ${tr("root mean square radius of the samples")} ${spread.toFixed(2)}`,
        values: { probe, t: 0.6, field: u },
      };
    },
  });

  // --- Chapters 9 and 10: precomputed frames of the MNIST models -----------------------------------------------

  /**
   * A widget that shows one tile of the payload's sprite sheet: the payload holds the sheet (a data URI),
   * the values of its rows and of its columns, and their names; one slider per axis with more than one value.
   */
  function spriteWidget(describe) {
    return {
      aspect: (payload) => payload.tileAspect,
      controls(payload) {
        return [["row", payload.rowLabel, payload.rows], ["column", payload.columnLabel, payload.columns]]
          .filter(([, , values]) => values.length > 1)
          .map(([key, label, values]) => ({
            key, label: tr(label), min: 0, max: values.length - 1, step: 1,
            value: Math.min(values.length - 1, payload.start ? payload.start[key] : 0), format: (i) => String(values[i]),
          }));
      },
      setup(figure) {
        const p = figure.payload;
        figure.sheet = sprite(p.sprite, p.rows.length, p.columns.length, figure.redraw);
      },
      draw(canvas, state, figure) {
        const p = figure.payload, row = state.row || 0, column = state.column || 0;
        if (figure.sheet.image.complete && figure.sheet.image.naturalWidth) figure.sheet.draw(canvas, row, column);
        return describe(p.rows[row], p.columns[column]);
      },
    };
  }

  // Rows: guidance scales; columns: numbers of Euler steps (Chapter 10's checkpoint, same noise in every tile).
  define("digits-guidance", spriteWidget((w, steps) => ({
    text: `w = ${w} · ${tr("Euler steps")}: ${steps}`, values: { w, steps },
  })));
  // One row; columns: times along the same trajectories.
  define("digits-trajectory", spriteWidget((_, t) => ({ text: `t = ${t}`, values: { t } })));

  // The label names of the sprite payloads (written by the chapters' cells), for the catalogues.
  void [tr("Guidance scale w"), tr("Steps"), tr("Time t")];

  // --- Chapter 14: independent against optimal-transport pairs ---------------------------------------------------

  define("coupling", {
    aspect: 0.62,
    controls: [
      { key: "coupling", label: tr("Pairs"), options: [["independent", tr("independent")], ["ot", tr("optimal transport")]], value: "ot" },
      { key: "n", label: tr("Batch size"), min: 2, max: 128, step: 1, value: 32 },
    ],
    draw(canvas, state) {
      const noise = gaussianPoints(state.n, 31);
      const data = FD.sampleMixture(MIXTURE, state.n, FD.normalGenerator(32), FD.uniformGenerator(33));
      const permutation = state.coupling === "ot" ? FD.otPairing(noise, data) : range(state.n, (i) => i);
      const [plot] = panels(canvas, [{ ...BOX, xLabel: "x₁", yLabel: "x₂" }]);
      data.forEach((z, i) => plot.line([noise[permutation[i]], z], "#999", 0.8));
      plot.dots(noise, BLUE, 2.5);
      plot.dots(data, ORANGE, 2.5);
      plot.axes();
      plot.legend([[tr("noise x₀"), BLUE], [tr("data z"), ORANGE]]);
      const cost = FD.pairingCost(noise, data, permutation);
      return {
        text: `${tr("mean squared distance of the pairs")} ${cost.toFixed(3)}`,
        values: { cost, noise, data, permutation },
      };
    },
  });

  // --- Chapter 14: solvers at an equal number of evaluations -----------------------------------------------------

  const BUDGET_STARTS = gaussianPoints(120, 41);
  const budgetReference = once(() => BUDGET_STARTS.map((x0) => FD.trajectory(mixtureField(FD.schedulers.linear, MIXTURE), x0, 200, "heun").at(-1)));

  define("solver-budget", {
    aspect: 0.5,
    controls: [{ key: "evaluations", label: tr("Evaluations"), min: 2, max: 40, step: 2, value: 8 }],
    draw(canvas, state) {
      const field = mixtureField(FD.schedulers.linear, MIXTURE);
      const starts = BUDGET_STARTS, reference = budgetReference();
      const solvers = [["euler", tr("Euler"), ORANGE, state.evaluations], ["heun", tr("Heun"), BLUE, state.evaluations / 2],
        ["midpoint", tr("midpoint"), GREEN, state.evaluations / 2]];
      const layout = solvers.map(([, label]) => ({ ...BOX, title: label, hideYTicks: true, hideXTicks: true }));
      const plots = panels(canvas, layout);
      const errors = {};
      solvers.forEach(([method, , colour, steps], i) => {
        const ends = starts.map((x0) => FD.trajectory(field, x0, steps, method).at(-1));
        plots[i].heat((x, y) => Math.exp(FD.logDensity(MIXTURE, [x, y])), 60);
        plots[i].dots(ends, colour, 1.8);
        plots[i].axes();
        errors[method] = ends.reduce((acc, x, j) => acc + Math.hypot(x[0] - reference[j][0], x[1] - reference[j][1]), 0) / ends.length;
      });
      return {
        text: `${tr("mean distance to the exact endpoint")}: ${tr("Euler")} ${errors.euler.toFixed(3)} · ${tr("Heun")} ${errors.heun.toFixed(3)} · ${tr("midpoint")} ${errors.midpoint.toFixed(3)}`,
        values: { ...errors, starts },
      };
    },
  });

  // --- Chapter 15: the density along a 1-D flow, and the change of variables -------------------------------------

  const LINE_MIXTURE = FD.mixture([[-1.5], [1.2]], [0.35, 0.5], [0.4, 0.6]);

  define("density-flow", {
    aspect: 0.55,
    controls: [
      { key: "t", label: "t", min: 0, max: 1, step: 0.01, value: 0.6, format: fixed(2) },
      { key: "x", label: tr("Point x₁"), min: -2.5, max: 2.5, step: 0.05, value: 1.2, format: fixed(2) },
    ],
    draw(canvas, state) {
      const s = FD.schedulers.linear, field = mixtureField(s, LINE_MIXTURE);
      const [plot] = panels(canvas, [{ x: [-3.5, 3.5], y: [0, 0.9], xLabel: "x", yLabel: tr("density") }]);
      const density = (x, t) => Math.exp(FD.marginalLogDensity(s, LINE_MIXTURE, [x], t));
      plot.line(range(240, (i) => { const x = -3.5 + (7 * i) / 239; return [x, density(x, 1)]; }), "#bbb", 1.5);
      plot.line(range(240, (i) => { const x = -3.5 + (7 * i) / 239; return [x, density(x, state.t)]; }), BLUE, 2);
      // Back from x1 at t = 1 to x0 at t = 0 (Heun, 200 steps of -h), accumulating the divergence of u by the
      // trapezoidal rule: log p_1(x1) = log p_0(x0) - \int_0^1 div u_t(x_t) dt (Chapter 15).
      const steps = 200, h = 1 / steps, e = 1e-4;
      const divergence = (x, t) => (field([x[0] + e], t)[0] - field([x[0] - e], t)[0]) / (2 * e);
      let x = [state.x], integral = 0;
      for (let k = steps; k > 0; k--) {
        const before = divergence(x, k * h);
        x = FD.heunStep(field, x, k * h, -h);
        integral += 0.5 * h * (before + divergence(x, (k - 1) * h));
      }
      const logStart = -0.5 * x[0] * x[0] - 0.5 * Math.log(2 * Math.PI);
      const estimate = logStart - integral, exact = Math.log(density(state.x, 1));
      // The same particle at time t.
      const here = state.t > 0 ? FD.trajectory(field, x, Math.max(1, Math.round(steps * state.t)), "heun", 0, state.t).at(-1)[0] : x[0];
      plot.dots([[here, density(here, state.t)]], ORANGE, 4);
      plot.axes();
      plot.legend([[`p_t`, BLUE], [`p_1`, "#bbb"]]);
      return {
        text: `log p₁(${state.x.toFixed(2)}): ${tr("exact")} ${exact.toFixed(4)} · ${tr("from the flow")} ${estimate.toFixed(4)} (x₀ = ${x[0].toFixed(3)})`,
        values: { exact, estimate, x0: x[0] },
      };
    },
  });

  // --- Chapter 16: one jump of the flow map against one Euler step -----------------------------------------------

  define("flow-map", {
    aspect: 0.62,
    controls: [
      { key: "s", label: tr("Start s"), min: 0, max: 0.9, step: 0.05, value: 0, format: fixed(2) },
      { key: "jump", label: tr("Jump t − s"), min: 0.05, max: 1, step: 0.05, value: 1, format: fixed(2) },
    ],
    draw(canvas, state) {
      const field = mixtureField(FD.schedulers.linear, MIXTURE);
      const s = state.s, t = Math.min(1, s + state.jump);
      const [plot] = panels(canvas, [{ ...BOX, xLabel: "x₁", yLabel: "x₂" }]);
      plot.heat((x, y) => Math.exp(FD.marginalLogDensity(FD.schedulers.linear, MIXTURE, [x, y], t)), 80);
      const origins = gaussianPoints(60, 51);
      const starts = origins.map((x0) => (s > 0 ? FD.trajectory(field, x0, Math.max(1, Math.round(100 * s)), "heun", 0, s).at(-1) : x0));
      let error = 0;
      for (const x of starts) {
        const exact = FD.trajectory(field, x, 100, "heun", s, t);
        const euler = FD.eulerStep(field, x, s, t - s);
        plot.line(exact, "#777", 1);
        plot.line([x, euler], ORANGE, 1, [3, 2]);
        plot.dots([exact.at(-1)], BLUE, 2.4);
        plot.dots([euler], ORANGE, 2.4);
        error += Math.hypot(euler[0] - exact.at(-1)[0], euler[1] - exact.at(-1)[1]) / starts.length;
      }
      plot.axes();
      plot.legend([[tr("flow map X_{s,t}"), BLUE], [tr("one Euler step"), ORANGE]]);
      return { text: `${tr("mean distance between the two")} ${error.toFixed(3)} (s = ${s.toFixed(2)}, t = ${t.toFixed(2)})`, values: { error, origins } };
    },
  });

  // --- Chapter 17: patches of a digit, and what their number costs -----------------------------------------------

  define("patchify", {
    aspect: 0.55,
    controls: [{ key: "p", label: tr("Patch size p"), options: [[1, "1"], [2, "2"], [4, "4"], [7, "7"], [14, "14"]], value: 4 }],
    draw(canvas, state, figure) {
      const pixels = figure.payload.pixels, p = state.p, side = 28, tokens = (side / p) ** 2, width = figure.payload.width;
      const [image, cost] = panels(canvas, [
        { x: [0, side], y: [0, side], hideXTicks: true, hideYTicks: true, title: `L = ${tokens} · ${tr("patches of")} ${p} × ${p}` },
        { x: [0, 5], y: [4, 10], xLabel: tr("patch size p"), yLabel: tr("log₁₀ multiply-adds"), xTicks: [], title: tr("cost of one block") },
      ]);
      const c = image.context;
      for (let i = 0; i < side; i++) for (let j = 0; j < side; j++) {
        const v = Math.round(255 * (1 - pixels[i][j]));
        c.fillStyle = `rgb(${v},${v},${v})`;
        c.fillRect(image.px(j), image.py(side - i), image.px(1) - image.px(0) + 0.5, image.py(0) - image.py(1) + 0.5);
      }
      for (let k = 0; k <= side; k += p) {
        image.line([[k, 0], [k, side]], ORANGE, 1);
        image.line([[0, k], [side, k]], ORANGE, 1);
      }
      image.axes();
      // One block's multiply-adds, 12 L D^2 + 2 L^2 D + 6 D^2 (Chapter 17, eq-dit-cost).
      const blockCost = (size) => { const L = (side / size) ** 2; return 12 * L * width * width + 2 * L * L * width + 6 * width * width; };
      const sizes = [1, 2, 4, 7, 14];
      cost.line(sizes.map((size, i) => [i + 0.5, Math.log10(blockCost(size))]), BLUE, 2);
      sizes.forEach((size, i) => {
        cost.dots([[i + 0.5, Math.log10(blockCost(size))]], size === p ? ORANGE : BLUE, size === p ? 5 : 3);
        cost.text(`p=${size}`, i + 0.5, 4.4, undefined, "center");
      });
      cost.axes();
      return {
        text: `L = ${tokens} ${tr("tokens")} · ${tr("multiply-adds per block at width")} ${width}: ${blockCost(p).toLocaleString("en")}`,
        values: { tokens, blockCost: blockCost(p) },
      };
    },
  });

  // --- Chapter 18: a continuous-time Markov chain, Euler steps against the exact law -------------------------------

  const RATES = [[-1.5, 1.0, 0.5], [0.2, -0.7, 0.5], [0.9, 0.6, -1.5]];

  define("ctmc", {
    aspect: 0.5,
    controls: [
      { key: "t", label: "t", min: 0.05, max: 3, step: 0.05, value: 0.8, format: fixed(2) },
      { key: "steps", label: tr("Euler steps"), min: 1, max: 64, step: 1, value: 5 },
    ],
    draw(canvas, state) {
      const p0 = [0.7, 0.2, 0.1];
      const kernel = FD.matrixExponential(RATES, state.t);
      const exact = p0.map((_, j) => p0.reduce((sum, p, i) => sum + p * kernel[i][j], 0));
      const euler = FD.eulerChainLaw(RATES, p0, state.t, state.steps);
      const [plot] = panels(canvas, [{ x: [0, 3], y: [0, 0.8], xLabel: tr("state"), yLabel: tr("probability"), xTicks: [] }]);
      exact.forEach((p, j) => {
        plot.line([[j + 0.12, 0], [j + 0.12, p], [j + 0.48, p], [j + 0.48, 0]], BLUE, 2);
        plot.line([[j + 0.52, 0], [j + 0.52, euler[j]], [j + 0.88, euler[j]], [j + 0.88, 0]], ORANGE, 2);
        plot.text(String(j + 1), j + 0.5, -0.04, undefined, "center");  // the state's number, under its bars
      });
      plot.axes();
      plot.legend([[tr("exact law p₀ exp(tQ)"), BLUE], [tr("law after the Euler steps"), ORANGE]], "right");
      const tv = 0.5 * exact.reduce((sum, p, j) => sum + Math.abs(p - euler[j]), 0);
      return { text: `${tr("total variation between the two")} ${tv.toExponential(2)}`, values: { exact, euler, tv } };
    },
  });

  // --- Chapter 18: the masking path on a sentence --------------------------------------------------------------

  const SENTENCE = "a flow transports noise into data, one small step at a time.";

  define("masking-path", {
    aspect: 0.28,
    controls: [{ key: "t", label: "t", min: 0, max: 1, step: 0.01, value: 0.5, format: fixed(2) }],
    draw(canvas, state) {
      // With kappa_t = t each character is revealed independently with probability t; one uniform per
      // character, drawn once, so a character once revealed stays revealed as t grows.
      const uniform = FD.uniformGenerator(61), thresholds = Array.from(SENTENCE, () => uniform());
      const shown = Array.from(SENTENCE, (ch, i) => (thresholds[i] < state.t ? ch : "■"));
      const [plot] = panels(canvas, [{ x: [0, SENTENCE.length], y: [0, 1], hideXTicks: true, hideYTicks: true }]);
      const c = plot.context;
      c.save(); c.font = "16px monospace"; c.textAlign = "center"; c.textBaseline = "middle";
      shown.forEach((ch, i) => { c.fillStyle = ch === "■" ? "#999" : plot.ink; c.fillText(ch, plot.px(i + 0.5), plot.py(0.5)); });
      c.restore();
      const revealed = shown.filter((ch) => ch !== "■").length;
      return { text: `${revealed} / ${SENTENCE.length} ${tr("characters revealed")} (${tr("expected")} ${(state.t * SENTENCE.length).toFixed(1)})`, values: { revealed } };
    },
  });
})();
