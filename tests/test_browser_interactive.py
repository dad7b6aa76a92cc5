"""The interactive figures in a real browser (Playwright driving Chromium), in the built site.

For every figure: each control, operated from the keyboard, changes what is
drawn; the page logs no error; the numbers the figure shows agree with
flowdiff's at the state the controls are in; without JavaScript and in
print the static image stands in. Also: the JavaScript module agrees with the
reference values the build exported, the Chinese pages show Chinese
controls, and no page of the site weighs more than 3 MB.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from test_book import HTML, ROOT
from test_browser import browser, open_page, site  # noqa: F401 - fixtures shared with the other browser tests

pytestmark = pytest.mark.book

SOURCE = re.compile(r"```\{interactive-figure\}[^\n]*\n:widget: (?P<widget>[\w-]+)\n(?::payload: [\w-]+\n)?:name: (?P<name>[\w-]+)")
TOLERANCE = 1e-6
PAGE_LIMIT = 3 * 1024 * 1024


def interactive_figures() -> list[tuple[str, str, str]]:
    """(page, figure id, widget) of every interactive figure, read from the chapters' sources."""
    found = []
    for path in sorted((ROOT / "book").glob("*.md")):
        for match in SOURCE.finditer(path.read_text(encoding="utf-8")):
            found.append((f"book/{path.stem}", match["name"], match["widget"]))
    return found


FIGURES = interactive_figures()


def test_the_book_has_twenty_interactive_figures() -> None:
    assert len(FIGURES) >= 20, FIGURES
    assert len({widget for _, _, widget in FIGURES}) == len(FIGURES), "each figure has its own widget"


# --- flowdiff's values at a figure's state ---------------------------------------------------------------------------

def _mixture():
    from flowdiff.toy_data import uneven_blobs

    return uneven_blobs(torch.float64)


def _scheduler(name: str):
    from flowdiff.paths import CosineScheduler, LinearScheduler, VPScheduler

    return {"linear": LinearScheduler(), "cosine": CosineScheduler(), "vp": VPScheduler(0.1, 20.0)}[name]


def _one(values) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float64)


def expected_mixture_samples(state: dict, values: dict) -> dict:
    return {"mean": _mixture().mean.tolist()}


def expected_euler_heun(state: dict, values: dict) -> dict:
    from flowdiff.dynamics import LinearODE
    from flowdiff.solvers import simulate, time_grid

    ode = LinearODE(torch.tensor([[-0.2, -2.0], [2.0, -0.2]], dtype=torch.float64))
    start, grid = _one([1.5, 0.0]), time_grid(state["steps"], end=3.0, dtype=torch.float64)
    return {"euler": simulate(ode, start, grid, method="euler")[0].tolist(),
            "heun": simulate(ode, start, grid, method="heun")[0].tolist(), "exact": ode.flow(start, 3.0)[0].tolist()}


def expected_gaussian_flow(state: dict, values: dict) -> dict:
    from flowdiff.distributions import Gaussian
    from flowdiff.dynamics import AffineGaussianFlow

    flow = AffineGaussianFlow(Gaussian.isotropic(1, 1.0, torch.zeros(1, dtype=torch.float64)),
                              Gaussian.isotropic(1, state["std1"], torch.full((1,), 2.5, dtype=torch.float64)))
    law = flow.marginal(state["t"])
    return {"mean": law.mean[0].item(), "std": math.sqrt(law.cov[0, 0].item())}


def expected_ou_process(state: dict, values: dict) -> dict:
    from flowdiff.dynamics import OrnsteinUhlenbeck

    theta, sigma, steps = state["theta"], state["sigma"], state["steps"]
    h, chain = 5.0 / steps, 0.0
    for _ in range(steps):  # the variance of the Euler-Maruyama chain, step by step
        chain = (1 - theta * h) ** 2 * chain + sigma**2 * h
    return {"variance": OrnsteinUhlenbeck(theta, sigma).variance(5.0), "chainVariance": chain}


def expected_schedules(state: dict, values: dict) -> dict:
    scheduler, t = _scheduler(state["scheduler"]), torch.tensor([state["t"]], dtype=torch.float64)
    alpha, beta = scheduler.alpha(t), scheduler.beta(t)
    return {"alpha": alpha.item(), "beta": beta.item(), "logSnr": (2 * (alpha.log() - beta.log())).item()}


def expected_mixture_path(state: dict, values: dict) -> dict:
    from flowdiff.paths import GaussianPath

    path = GaussianPath(_scheduler(state["scheduler"]))
    t = torch.tensor([min(state["t"], 0.999)], dtype=torch.float64)
    return {"field": path.marginal_vector_field(_mixture(), _one([0.0, 0.0]), t)[0].tolist()}


def _exact_flow():
    from flowdiff.dynamics import VectorFieldODE
    from flowdiff.paths import GaussianPath, LinearScheduler

    path, mixture = GaussianPath(LinearScheduler()), _mixture()
    return VectorFieldODE(lambda x, t: path.marginal_vector_field(mixture, x, t))


def _mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).norm(dim=1).mean().item()


def expected_steps_quality(state: dict, values: dict) -> dict:
    from flowdiff.solvers import simulate, time_grid

    ode, starts = _exact_flow(), torch.tensor(values["starts"], dtype=torch.float64)
    ends = simulate(ode, starts, time_grid(state["steps"], dtype=torch.float64), method=state["method"])
    reference = simulate(ode, starts, time_grid(200, dtype=torch.float64), method="heun")
    return {"evaluations": state["steps"] * (1 if state["method"] == "euler" else 2), "error": _mean_distance(ends, reference)}


def expected_solver_budget(state: dict, values: dict) -> dict:
    from flowdiff.solvers import simulate, time_grid

    ode, starts = _exact_flow(), torch.tensor(values["starts"], dtype=torch.float64)
    reference = simulate(ode, starts, time_grid(200, dtype=torch.float64), method="heun")
    budget = state["evaluations"]
    return {method: _mean_distance(simulate(ode, starts, time_grid(steps, dtype=torch.float64), method=method), reference)
            for method, steps in (("euler", budget), ("heun", budget // 2), ("midpoint", budget // 2))}


def expected_flow_map(state: dict, values: dict) -> dict:
    from flowdiff.solvers import simulate, time_grid

    ode, s = _exact_flow(), state["s"]
    t = min(1.0, s + state["jump"])
    starts = torch.tensor(values["origins"], dtype=torch.float64)
    if s > 0:  # the points on the path at time s
        starts = simulate(ode, starts, time_grid(max(1, round(100 * s)), end=s, dtype=torch.float64), method="heun")
    exact = simulate(ode, starts, time_grid(100, start=s, end=t, dtype=torch.float64), method="heun")
    euler = starts + (t - s) * ode.drift(starts, torch.full((len(starts),), s, dtype=torch.float64))
    return {"error": _mean_distance(euler, exact)}


def expected_tweedie(state: dict, values: dict) -> dict:
    denoised, score = _mixture().noised_posterior(_one([1.0, -1.0]), 1.0, state["noise"])
    return {"denoised": denoised[0].tolist(), "score": score[0].tolist()}


def expected_ddpm_ddim(state: dict, values: dict) -> dict:
    from flowdiff.discrete import VarianceExplodingChain, ddim_sample, exact_denoiser
    from flowdiff.distributions import GaussianMixture

    data = GaussianMixture(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[[0.25]]], dtype=torch.float64))
    chain = VarianceExplodingChain(3.0, state["steps"])
    return {"ddimFromTwo": ddim_sample(exact_denoiser(data, chain), chain, _one([2.0])).item()}


def expected_guidance(state: dict, values: dict) -> dict:
    from flowdiff.guidance import exact_conditional_field, guided_vector_field
    from flowdiff.labelled_mixtures import LabelledMixture
    from flowdiff.paths import GaussianPath, LinearScheduler

    data = LabelledMixture.isotropic(torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64),
                                     torch.tensor([0, 0, 1, 1]), 0.5)
    field = exact_conditional_field(GaussianPath(LinearScheduler()), data)
    x, t = _one([1.0, 1.0]), torch.tensor([0.6], dtype=torch.float64)
    conditional = field(x, t, torch.tensor([int(state["label"])]))
    unconditional = field(x, t, torch.tensor([data.num_classes]))
    return {"field": guided_vector_field(conditional, unconditional, state["w"])[0].tolist()}


def expected_coupling(state: dict, values: dict) -> dict:
    from flowdiff.coupling import ot_pairing, pairing_cost

    noise = torch.tensor(values["noise"], dtype=torch.float64)
    data = torch.tensor(values["data"], dtype=torch.float64)
    permutation = ot_pairing(noise, data) if state["coupling"] == "ot" else torch.arange(len(data))
    # The browser's permutation may differ from POT's where there are ties; their costs may not.
    return {"cost": pairing_cost(noise[permutation], data)}


def expected_density_flow(state: dict, values: dict) -> dict:
    from flowdiff.distributions import GaussianMixture
    from flowdiff.paths import GaussianPath, LinearScheduler

    mixture = GaussianMixture(torch.tensor([[-1.5], [1.2]], dtype=torch.float64),
                              torch.tensor([[[0.35**2]], [[0.5**2]]], dtype=torch.float64),
                              torch.tensor([0.4, 0.6], dtype=torch.float64))
    return {"exact": GaussianPath(LinearScheduler()).marginal(mixture, 1.0).log_density(_one([state["x"]])).item()}


def expected_patchify(state: dict, values: dict) -> dict:
    return {"tokens": (28 // state["p"]) ** 2}


def expected_ctmc(state: dict, values: dict) -> dict:
    from flowdiff.discrete_flows import forward_marginals, step_transition_matrix

    rates = torch.tensor([[-1.5, 1.0, 0.5], [0.2, -0.7, 0.5], [0.9, 0.6, -1.5]], dtype=torch.float64)
    start = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    t, steps = state["t"], state["steps"]
    euler = start @ torch.linalg.matrix_power(step_transition_matrix(rates, t / steps), steps)
    return {"exact": forward_marginals(start, rates, t).tolist(), "euler": euler.tolist()}


# Widgets whose numbers depend on the browser's own random draws (Langevin and SDE samples, the masking path, the
# sample mean of mixture-samples, the DDPM histogram) are checked there for their response to the controls only.
EXPECTED = {
    "mixture-samples": expected_mixture_samples, "euler-heun": expected_euler_heun,
    "gaussian-flow": expected_gaussian_flow, "ou-process": expected_ou_process, "schedules": expected_schedules,
    "mixture-path": expected_mixture_path, "steps-quality": expected_steps_quality, "tweedie": expected_tweedie,
    "solver-budget": expected_solver_budget, "flow-map": expected_flow_map,
    "ddpm-ddim": expected_ddpm_ddim, "guidance": expected_guidance, "coupling": expected_coupling,
    "density-flow": expected_density_flow, "patchify": expected_patchify, "ctmc": expected_ctmc,
}


def mismatches(expected, shown, where: str = "") -> list[str]:
    if isinstance(expected, dict):
        return [m for key, value in expected.items() for m in mismatches(value, shown.get(key), f"{where}.{key}")]
    if isinstance(expected, list):
        if not isinstance(shown, list) or len(shown) != len(expected):
            return [f"{where}: flowdiff {expected}, figure {shown}"]
        return [m for i, (e, s) in enumerate(zip(expected, shown)) for m in mismatches(e, s, f"{where}[{i}]")]
    if shown is None or not math.isclose(expected, shown, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
        return [f"{where}: flowdiff {expected!r}, figure {shown!r}"]
    return []


def test_mismatches_sees_a_small_error() -> None:
    assert mismatches({"a": [1.0, 2.0]}, {"a": [1.0, 2.00001]}) == [".a[1]: flowdiff 2.0, figure 2.00001"]
    assert mismatches({"a": 1.0}, {}) == [".a: flowdiff 1.0, figure None"]


# --- the figures in the browser -------------------------------------------------------------------------------------

@pytest.fixture()
def tab(browser):  # noqa: F811 - the fixture imported above
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    yield page
    context.close()


def snapshot(figure) -> tuple[str, str, dict, dict]:
    """What the figure draws and shows: the canvas's pixels, the read-out, and its state and values."""
    live = figure.locator(".fd-live")
    pixels = figure.locator("canvas").evaluate("canvas => canvas.toDataURL()")
    return (pixels, figure.locator(".fd-readout").inner_text(),
            json.loads(live.get_attribute("data-state")), json.loads(live.get_attribute("data-values")))


def check_values(widget: str, state: dict, values: dict) -> None:
    if widget in EXPECTED:
        found = mismatches(EXPECTED[widget](state, values), values)
        assert not found, f"{widget} at {state}: " + "; ".join(found)


@pytest.mark.parametrize(("chapter", "name", "widget"), FIGURES, ids=[widget for _, _, widget in FIGURES])
def test_every_control_changes_the_figure_by_keyboard(site, tab, chapter: str, name: str, widget: str) -> None:  # noqa: F811
    open_page(tab, f"{site}/{chapter}.html")
    figure = tab.locator(f"figure#{name}")
    tab.wait_for_function("id => document.querySelector(`#${id} .fd-live`).dataset.ready === 'true'", arg=name)
    assert figure.locator(".fd-fallback").is_hidden(), "the static image still shows beside the live figure"
    assert figure.locator("canvas").get_attribute("aria-label"), "the canvas has no text alternative"
    before = snapshot(figure)
    check_values(widget, before[2], before[3])
    controls = figure.locator(".fd-controls input, .fd-controls select")
    assert controls.count() >= 1
    for index in range(controls.count()):
        control = controls.nth(index)
        label = figure.locator(f"label[for='{control.get_attribute('id')}']")
        assert label.inner_text().strip(), f"control {index} of {widget} has no label"
        previous = snapshot(figure)
        control.focus()
        if control.evaluate("c => c.tagName") == "SELECT":
            last = control.evaluate("c => c.selectedIndex === c.options.length - 1")
            tab.keyboard.press("ArrowUp" if last else "ArrowDown")
        else:
            at_end = control.evaluate("c => Number(c.value) >= Number(c.max)")
            tab.keyboard.press("Home" if at_end else "End")
        tab.wait_for_timeout(50)
        after = snapshot(figure)
        assert after[2] != previous[2], f"{widget}: the keyboard did not move control {index}"
        assert after[0] != previous[0], f"{widget}: control {index} did not change the drawing"
        check_values(widget, after[2], after[3])
    assert tab.errors == [], tab.errors


def _pages_with_figures() -> list[str]:
    return sorted({chapter for chapter, _, _ in FIGURES})


CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@pytest.mark.parametrize("edition", ["", "zh/"], ids=["en", "zh"])
@pytest.mark.parametrize("chapter", _pages_with_figures())
def test_static_image_without_javascript_and_in_print_and_chinese_controls(site, browser, chapter: str, edition: str) -> None:  # noqa: F811
    """Without JavaScript and in print the static image stands in; on a Chinese page every control label
    with a word in it is in Chinese."""
    names = [name for page, name, _ in FIGURES if page == chapter]
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{site}/{edition}{chapter}.html", wait_until="load")
    for name in names:
        figure = page.locator(f"figure#{name}")
        assert figure.locator(".fd-live").is_hidden()
        image = figure.locator(".fd-fallback img")
        assert image.is_visible() and image.evaluate("i => i.complete && i.naturalWidth > 0"), f"{name}: no static image"
    context.close()
    context = browser.new_context()
    page = context.new_page()
    open_page(page, f"{site}/{edition}{chapter}.html")
    page.wait_for_function("() => [...document.querySelectorAll('.fd-live')].every(l => l.dataset.ready === 'true')")
    if edition:
        labels = page.locator(".fd-controls label").all_inner_texts()
        english = [label for label in labels if LATIN_WORD.search(label) and not CJK.search(label)]
        assert not english, english
    page.emulate_media(media="print")
    for name in names:
        figure = page.locator(f"figure#{name}")
        assert figure.locator(".fd-live").is_hidden(), f"{name}: the live figure would print"
        assert figure.locator(".fd-fallback img").is_visible(), f"{name}: no static image in print"
    context.close()


def test_the_module_agrees_with_the_exported_reference_in_the_browser(site, tab) -> None:  # noqa: F811
    """flowdiff-exact.js, as the site serves it, at the reference points the build wrote (to 1e-6)."""
    from test_interactive import differences

    chapter = FIGURES[0][0]
    open_page(tab, f"{site}/{chapter}.html")
    tab.add_script_tag(path=str(ROOT / "tests" / "interactive_exact.js"))
    reference = tab.evaluate("site => fetch(`${site}/_static/interactive-reference.json`).then(r => r.json())", site)
    computed = tab.evaluate("reference => computeAll(window.FlowDiffExact, reference)", reference)
    found = differences(reference, computed)
    assert not found, "\n".join(found[:20])


class _Resources(HTMLParser):
    """The local files a page loads: scripts, style sheets and images."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        address = found.get("src") if tag in ("script", "img") else found.get("href") if tag == "link" and found.get("rel") == "stylesheet" else None
        if address and "://" not in address and not address.startswith("data:"):
            self.files.append(address.split("?")[0].split("#")[0])


COMPRESSED = {".html", ".js", ".css", ".json", ".svg", ".txt"}


@functools.cache
def transferred(path: Path) -> int:
    """The bytes a reader downloads for one file: text as a web server sends it, gzip-compressed (GitHub
    Pages does), and images, already compressed, as they are."""
    data = path.read_bytes()
    return len(gzip.compress(data, 6)) if path.suffix in COMPRESSED else len(data)


def page_weight(page: Path) -> int:
    """The bytes of a page and of every local script, style sheet and image it references, as transferred
    (the fonts, loaded on demand, are counted by the caller)."""
    parser = _Resources()
    parser.feed(page.read_text(encoding="utf-8"))
    total = transferred(page)
    for address in set(parser.files):
        target = (page.parent / address).resolve()
        if target.is_file():
            total += transferred(target)
    return total


def test_every_page_weighs_under_three_megabytes() -> None:
    # Fonts load from the style sheets and MathJax, on demand: all of them are counted, on every page.
    fonts = sum(f.stat().st_size for folder in ("mathjax", "vendor") for f in (HTML / "_static" / folder).rglob("*.woff*"))
    weights = {str(page.relative_to(HTML)): page_weight(page) + fonts
               for page in HTML.rglob("*.html") if "_static" not in page.parts}
    heavy = {page: f"{size / 2**20:.2f} MiB" for page, size in weights.items() if size > PAGE_LIMIT}
    assert not heavy, heavy
