"""The interactive figures' JavaScript formulas against flowdiff (Node.js; no build needed).

`_ext/static/flowdiff-exact.js` computes the exact formulas of the
interactive figures in the browser. Here it runs in Node.js on the inputs
that `tools/interactive_reference.py` exports with their flowdiff values,
and every number must agree to 1e-6.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "_ext" / "static" / "flowdiff-exact.js"
RUNNER = ROOT / "tests" / "interactive_exact.js"
TOLERANCE = 1e-6

sys.path.insert(0, str(ROOT / "tools"))
from interactive_reference import write_reference  # noqa: E402


def differences(expected, actual, where: str = "") -> list[str]:
    """Every place where two JSON trees differ by more than TOLERANCE (or in structure)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            return [f"{where}: keys {sorted(expected)} against {actual if not isinstance(actual, dict) else sorted(actual)}"]
        return [d for key in expected for d in differences(expected[key], actual[key], f"{where}.{key}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return [f"{where}: length {len(expected)} against {actual!r:.80}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{where}[{i}]")]
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        if not isinstance(actual, (int, float)) or abs(expected - actual) > TOLERANCE:
            return [f"{where}: flowdiff {expected!r}, JavaScript {actual!r}"]
        return []
    return [] if expected == actual else [f"{where}: {expected!r} against {actual!r}"]


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("interactive") / "reference.json"
    write_reference(path)
    return path


@pytest.fixture(scope="module")
def computed(reference_file: Path) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed to test the interactive figures' JavaScript (the build needs it for npm already)")
    result = subprocess.run([node, str(RUNNER), str(MODULE), str(reference_file)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


CASES = ["schedulers", "mixture", "marginals", "guidance", "solvers", "chains", "couplings", "markov"]


@pytest.mark.parametrize("case", CASES)
def test_javascript_agrees_with_flowdiff(case: str, reference_file: Path, computed: dict) -> None:
    expected = json.loads(reference_file.read_text())[case]
    found = differences(expected, computed[case], case)
    assert not found, "\n".join(found[:20])


def test_every_reference_case_is_checked(reference_file: Path) -> None:
    assert sorted(json.loads(reference_file.read_text())) == sorted(CASES)


def test_differences_sees_a_small_error() -> None:
    assert differences({"a": [1.0, 2.0]}, {"a": [1.0, 2.0 + 2e-6]}) == [".a[1]: flowdiff 2.0, JavaScript 2.000002"]
    assert differences({"a": [1.0]}, {"a": [1.0, 2.0]})


def test_the_figures_use_flowdiffs_mixture() -> None:
    """The widgets' MIXTURE constant is flowdiff.toy_data.uneven_blobs, whose values the reference exports."""
    from flowdiff.toy_data import UNEVEN_BLOBS

    script = (ROOT / "_ext" / "static" / "interactive-figures.js").read_text()
    declared = re.search(r"const MIXTURE = FD\.mixture\((.*)\);", script).group(1)
    assert json.loads(f"[{declared}]") == [UNEVEN_BLOBS["means"], UNEVEN_BLOBS["stds"], UNEVEN_BLOBS["weights"]]
