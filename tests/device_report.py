"""A small pytest plugin: a JSON report of the device-parametrised tests, when asked for.

Set ``FLOWDIFF_DEVICE_REPORT=path/to/report.json`` and run
``pytest tests/test_devices.py``: the report records the devices, the
versions, how many of those tests passed, failed and were skipped, and the
timings that ``test_devices.py::test_timings_for_the_report`` measured
(the reproducibility page shows it). Without the variable nothing is written.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from pathlib import Path

import pytest

REPORT_VARIABLE = "FLOWDIFF_DEVICE_REPORT"
MODULE = "test_devices.py"

outcomes: Counter[str] = Counter()
timings: dict[str, dict[str, float]] = {}


def requested_path() -> Path | None:
    """Where to write the report, or ``None`` when it was not asked for."""
    value = os.environ.get(REPORT_VARIABLE)
    return Path(value) if value else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if MODULE not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcomes[report.outcome] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = requested_path()
    if path is None or not outcomes:
        return
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append(f"cuda ({torch.cuda.get_device_name(0)})")
    if torch.backends.mps.is_available():
        devices.append("mps")
    report = {
        "devices": devices,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(),
        },
        "tests": {"passed": outcomes["passed"], "failed": outcomes["failed"], "skipped": outcomes["skipped"]},
        "timings_seconds": timings,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
