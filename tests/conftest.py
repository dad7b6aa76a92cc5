"""Shared pytest set-up: the `--run-book` switch for the (slow) full build of the book, and opt-in float64."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-book",
        action="store_true",
        help="build the whole book (every cell executed, warnings as errors) and check the HTML",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-book"):
        return
    skip = pytest.mark.skip(reason="builds the whole book: run `make test` or `pytest --run-book`")
    for item in items:
        if "book" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def float64():
    """Opt-in float64, for the few tests that compare with SciPy or a closed form at float64 round-off.

    Everything else runs in float32, as the book does. Request it with
    ``@pytest.mark.usefixtures("float64")`` so that it applies before the test's own fixtures.
    """
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _build_book() -> subprocess.CompletedProcess:
    """Both editions of the book, built as `make book` builds them (warnings are errors)."""
    command, limit = [sys.executable, str(ROOT / "tools" / "build_book.py"), "html"], 3600
    try:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as timeout:
        output = (timeout.stdout or b"")[-6000:].decode(errors="replace")
        pytest.fail(f"the book build did not finish within {limit} s (a notebook hangs or runs far longer than "
                    f"it should; the build never trains); its last output:\n{output}")


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> subprocess.CompletedProcess:
    """The book, built once per test session.

    `make test` runs the suite on two pytest-xdist workers, and each worker has
    its own session fixtures: the first worker to need the book builds it
    while holding a lock, and records the build's output in the run's shared
    temporary folder; the other worker waits for the lock and reads that
    record instead of building the book a second time.
    """
    if worker_id == "master":  # plain pytest, no workers
        result = _build_book()
    else:
        from filelock import FileLock

        shared = tmp_path_factory.getbasetemp().parent  # one folder per run, shared by its workers
        record = shared / "book-build.json"
        with FileLock(str(shared / "book-build.lock")):
            if not record.exists():
                done = _build_book()
                record.write_text(json.dumps({"args": done.args, "returncode": done.returncode,
                                              "stdout": done.stdout, "stderr": done.stderr}))
        result = subprocess.CompletedProcess(**json.loads(record.read_text()))
    if result.returncode != 0:
        pytest.fail(f"the book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result
