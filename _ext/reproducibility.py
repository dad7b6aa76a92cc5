"""The reproducibility report: what the book was built with, written at build time.

The ``{reproducibility-report}`` directive leaves a placeholder that is
filled once every page has been read (and its notebook run), with

* the environment: Python, the platform, the processor count, the device
  PyTorch computes on, and the versions of the libraries the book uses;
* each notebook's execution time and date, from the execution cache;
* the manifest of every checkpoint shipped in ``assets/`` (configuration
  hash, SHA-256, how it was trained and what it scored);
* every report of the device-parametrised tests kept in
  ``assets/benchmarks/device-tests-*.json`` (written by
  ``FLOWDIFF_DEVICE_REPORT=... pytest tests/test_devices.py`` on a machine
  with that device): which devices ran, the versions, the pass count and
  a few timings.

A page holding the directive is read again on every build, so the report
never describes an older build.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

LIBRARIES = ["flowdiff", "torch", "numpy", "scipy", "matplotlib", "jupyter-book", "sphinx", "myst-nb",
             "sphinx-proof", "sphinx-book-theme", "jupyter-cache"]


class report_placeholder(nodes.General, nodes.Element):
    """Where the report goes, once all notebooks have run."""


class ReproducibilityReport(Directive):
    has_content = False

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        env.reproducibility_pages = getattr(env, "reproducibility_pages", set()) | {env.docname}
        return [report_placeholder()]


def _table(header: list[str], rows: list[list[str]], literal_columns: frozenset[int] = frozenset()) -> nodes.table:
    """A table of ``rows`` under ``header``; the cells of ``literal_columns`` are set as code (data, not prose)."""
    table = nodes.table(classes=["reproducibility"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)
    head, body = nodes.thead(), nodes.tbody()
    for container, cells in [(head, header), *[(body, row) for row in rows]]:
        row_node = nodes.row()
        for column, cell in enumerate(cells):
            text = str(cell)
            literal = container is body and column in literal_columns
            row_node += nodes.entry("", nodes.paragraph("", "", nodes.literal(text, text)) if literal
                                    else nodes.paragraph(text=text))
        container += row_node
    group += head
    group += body
    return table


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_rows() -> list[list[str]]:
    import torch

    device = f"CUDA ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU"
    rows = [
        ["Python", platform.python_version()],
        ["platform", f"{platform.system()} {platform.release()} ({platform.machine()})"],
        ["processors", str(os.cpu_count())],
        ["PyTorch device", device],
    ]
    return rows + [[name, _version(name)] for name in LIBRARIES]


def execution_rows(app: Sphinx) -> list[list[str]]:
    from jupyter_cache import get_cache

    path = Path(app.config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache")
    if not path.exists():
        return []
    newest = {}
    for record in get_cache(path).list_cache_records():
        if record.uri not in newest or record.created > newest[record.uri].created:
            newest[record.uri] = record
    rows = []
    for uri, record in sorted(newest.items()):
        seconds = record.data.get("execution_seconds")
        when = record.created.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        rows.append([Path(uri).relative_to(app.srcdir).as_posix(), f"{seconds:.1f}" if seconds else "-", when])
    return rows


def _quality_text(quality: dict) -> str:
    """The manifest's quality figures in one line: scalars as ``name value``, a sweep as one item per setting."""
    parts = []
    for key, value in quality.items():
        if key == "by_guidance_scale":
            for r in value:
                if "accuracy" in r:
                    parts.append(f"w = {r['guidance_scale']:g}: accuracy {100 * r['accuracy']:.1f} %, Fréchet {r['frechet']:.2f}")
                else:  # prompt following: agreement rates of held-out and seen prompts
                    rates = ", ".join(f"{group} {prop} {100 * rate:.0f} %" for group in ("held_out", "seen")
                                      for prop, rate in r.get(group, {}).items())
                    parts.append(f"w = {r['guidance_scale']:g}: {rates}")
        elif key == "by_steps":
            for r in value:
                if "frechet" in r:
                    parts.append(f"{r['steps']} steps: Fréchet {r['frechet']:.2f}")
                else:  # discrete flows: total variation, or the share of known words (their example texts are left out)
                    figures = ", ".join(f"{name.replace('_', ' ')} {figure:g}" for name, figure in r.items()
                                        if name != "steps" and isinstance(figure, (int, float)))
                    parts.append(f"{r['steps']} steps: {figures}")
        elif isinstance(value, (int, float, str)):
            parts.append(f"{key} {value}")
    return "; ".join(parts)


def checkpoint_rows(app: Sphinx) -> list[list[str]]:
    rows = []
    for manifest in sorted(Path(app.srcdir, "assets").glob("**/manifest*.json")):
        for name, entry in json.loads(manifest.read_text()).items():
            training = entry.get("training", {})
            rows.append([name, entry.get("config_hash", "")[:12], entry.get("sha256", "")[:12],
                         training.get("device", ""), str(training.get("seconds", "")),
                         _quality_text(entry.get("quality", {}))])
    return rows


# The report is filled after the i18n transform has run, so the Chinese edition's words for it live here.
CHINESE = {
    "Environment": "环境",
    "Notebook execution": "笔记本执行",
    "Checkpoints": "检查点",
    "Device tests": "设备测试",
    "No report of the device tests is shipped yet.": "尚未随书附上设备测试的报告。",
}


def _words(app: Sphinx, english: str) -> str:
    return CHINESE.get(english, english) if (app.config.language or "").startswith("zh") else english


def device_test_rows(app: Sphinx) -> list[list[str]]:
    """One row per shipped report of tests/test_devices.py: devices, versions, outcomes and timings."""
    rows = []
    for path in sorted(Path(app.srcdir, "assets", "benchmarks").glob("device-tests-*.json")):
        report = json.loads(path.read_text())
        versions, tests = report.get("versions", {}), report.get("tests", {})
        timings = "; ".join(f"{device}: " + ", ".join(f"{name} {seconds:.3g} s" for name, seconds in values.items())
                            for device, values in report.get("timings_seconds", {}).items())
        devices = report.get("devices", [])
        # torch.version.cuda names the toolkit torch was built with, even where no GPU ran: show it only for a GPU.
        cuda = f", CUDA {versions.get('cuda')}" if any(d.startswith("cuda") for d in devices) else ""
        rows.append([", ".join(devices), f"torch {versions.get('torch', '?')}{cuda}, {versions.get('cpu_threads', '?')} CPU threads",
                     f"{tests.get('passed', 0)} / {tests.get('failed', 0)} / {tests.get('skipped', 0)}",
                     timings or "-"])
    return rows


def fill_report(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for placeholder in list(doctree.findall(report_placeholder)):
        content: list[nodes.Node] = [
            nodes.rubric(text=_words(app, "Environment")),
            _table(["component", "version"], environment_rows()),
            nodes.rubric(text=_words(app, "Notebook execution")),
        ]
        executions = execution_rows(app)
        content.append(_table(["notebook", "seconds", "executed"], executions) if executions
                       else nodes.paragraph(text="No notebook has been executed by this build."))
        content.append(nodes.rubric(text=_words(app, "Checkpoints")))
        checkpoints = checkpoint_rows(app)
        content.append(
            # Hashes and the manifest's quality record are quoted as they are stored, in every edition.
            _table(["checkpoint", "config hash", "SHA-256", "device", "wall time (s)", "quality"], checkpoints,
                   literal_columns=frozenset({1, 2, 5}))
            if checkpoints else nodes.paragraph(text="The chapters built so far train no model heavy enough "
                                                     "to ship as a checkpoint, so assets/ holds none.")
        )
        content.append(nodes.rubric(text=_words(app, "Device tests")))
        devices = device_test_rows(app)
        content.append(
            _table(["devices", "versions", "passed / failed / skipped", "timings"], devices, literal_columns=frozenset({3}))
            if devices else nodes.paragraph(text=_words(app, "No report of the device tests is shipped yet.")))
        placeholder.replace_self(content)


def always_outdated(app: Sphinx, env: BuildEnvironment, added: set, changed: set, removed: set) -> list[str]:
    return sorted(getattr(env, "reproducibility_pages", set()) - removed)


def merge(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    env.reproducibility_pages = getattr(env, "reproducibility_pages", set()) | getattr(other, "reproducibility_pages", set())


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_node(report_placeholder)
    app.add_directive("reproducibility-report", ReproducibilityReport)
    app.connect("env-get-outdated", always_outdated)
    app.connect("env-merge-info", merge)
    app.connect("doctree-resolved", fill_report)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
