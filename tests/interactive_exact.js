// Evaluates _ext/static/flowdiff-exact.js on the inputs of a reference file (tools/interactive_reference.py)
// and prints the values it computes, in the reference's layout, as JSON. Run in Node.js by
// tests/test_interactive.py, and in the browser by tests/test_browser_interactive.py (as `computeAll`).
"use strict";

function computeAll(FD, ref) {
  const out = {};
  out.schedulers = {};
  for (const [name, expected] of Object.entries(ref.schedulers)) {
    const s = name === "vp" ? FD.schedulers.vp(0.1, 20) : FD.schedulers[name];
    const at = (f) => expected.t.map(f);
    out.schedulers[name] = {
      t: expected.t,
      alpha: at(s.alpha), beta: at(s.beta), alphaDot: at(s.alphaDot), betaDot: at(s.betaDot),
      betaBetaDot: at(s.betaBetaDot), logSnr: at((t) => FD.logSnr(s, t)),
    };
  }
  const m = ref.mixture;
  const mix = FD.mixture(m.means, m.stds, m.weights);
  out.mixture = {
    means: m.means, stds: m.stds, weights: m.weights, points: m.points,
    logDensity: m.points.map((x) => FD.logDensity(mix, x)),
    score: m.points.map((x) => FD.score(mix, x)),
    noised: {
      scale: m.noised.scale, noiseStd: m.noised.noiseStd,
      denoised: m.points.map((x) => FD.noisedPosterior(mix, x, m.noised.scale, m.noised.noiseStd).denoised),
      score: m.points.map((x) => FD.noisedPosterior(mix, x, m.noised.scale, m.noised.noiseStd).score),
    },
  };
  out.marginals = {};
  for (const [name, rows] of Object.entries(ref.marginals)) {
    const s = name === "vp" ? FD.schedulers.vp(0.1, 20) : FD.schedulers[name];
    out.marginals[name] = rows.map((row) => ({
      t: row.t,
      logDensity: m.points.map((x) => FD.marginalLogDensity(s, mix, x, row.t)),
      score: m.points.map((x) => FD.marginalScore(s, mix, x, row.t)),
      field: m.points.map((x) => FD.marginalField(s, mix, x, row.t)),
    }));
  }
  const g = ref.guidance;
  const labelled = FD.labelledMixture(g.means, g.labels, g.std);
  out.guidance = Object.assign({}, g, {
    field: g.points.map((x) => FD.guidedMixtureField(FD.schedulers.linear, labelled, x, g.t, g.label, g.scale)),
  });
  const sv = ref.solvers;
  const field = (x, t) => FD.marginalField(FD.schedulers.linear, mix, x, t);
  const final = {};
  for (const method of Object.keys(sv.final)) {
    final[method] = sv.points.map((x) => FD.trajectory(field, x, sv.steps, method).at(-1));
  }
  const ouDrift = (x) => x.map((xi) => -sv.ou.theta * xi);
  const langevinDrift = (x) => FD.score(mix, x).map((v) => 0.5 * sv.langevin.sigma ** 2 * v);
  out.solvers = Object.assign({}, sv, {
    final,
    ou: Object.assign({}, sv.ou, {
      next: sv.points.map((x, i) => FD.eulerMaruyamaStep(ouDrift, () => sv.ou.sigma, x, sv.t, sv.h, sv.noise[i])),
    }),
    langevin: Object.assign({}, sv.langevin, {
      next: sv.points.map((x, i) => FD.eulerMaruyamaStep(langevinDrift, () => sv.langevin.sigma, x, sv.t, sv.h, sv.noise[i])),
    }),
  });
  const c = ref.chains;
  const data = FD.mixture(c.means, c.stds, c.weights);
  const denoiser = FD.veDenoiser(data, c.sigma);
  out.chains = Object.assign({}, c, {
    ddim: c.start.map((x) => FD.veChainSample(denoiser, x, c.steps, c.sigma).at(-1)),
    ddpm: c.start.map((x, i) => FD.veChainSample(denoiser, x, c.steps, c.sigma, c.noises.map((z) => z[i])).at(-1)),
  });
  const cp = ref.couplings;
  const permutation = FD.otPairing(cp.noise, cp.data);
  out.couplings = Object.assign({}, cp, {
    permutation,
    independentCost: FD.pairingCost(cp.noise, cp.data),
    optimalCost: FD.pairingCost(cp.noise, cp.data, permutation),
  });
  const mk = ref.markov;
  const kernel = FD.matrixExponential(mk.rates, mk.t);
  out.markov = Object.assign({}, mk, {
    exact: mk.p0.map((_, j) => mk.p0.reduce((sum, p, i) => sum + p * kernel[i][j], 0)),
    euler: FD.eulerChainLaw(mk.rates, mk.p0, mk.t, mk.steps),
  });
  return out;
}

if (typeof module !== "undefined" && require.main === module) {
  const fs = require("fs");
  const FD = require(process.argv[2]);
  const ref = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
  process.stdout.write(JSON.stringify(computeAll(FD, ref)));
}
