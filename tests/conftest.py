"""Shared pytest set-up: the `--run-book` switch for the (slow) full build of the book, and opt-in float64."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-book",
        action="store_true",
        help="build the whole book (every cell executed, warnings as errors) and check the HTML",
    )


BUILD_COMMAND = [sys.executable, str(ROOT / "tools" / "build_book.py"), "html"]
BUILD_LIMIT_SECONDS = 3600
_BACKGROUND_BUILD = pytest.StashKey[subprocess.Popen]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under pytest-xdist, start the book build as soon as the run starts, in the background.

    `make test` runs two workers on two cores. The build executes one notebook
    at a time (one core), so the fast package tests run beside it instead of
    after it; the book's tests, sorted last, wait for it in the `build` fixture.
    """
    config = session.config
    if not config.getoption("--run-book") or hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    folder = config._tmp_path_factory.getbasetemp()  # the workers' base folders live inside this one
    with (folder / "book-build.out").open("w") as out, (folder / "book-build.err").open("w") as err:
        # The exit status lands in a file of its own once the build is over: its presence means "done".
        config.stash[_BACKGROUND_BUILD] = subprocess.Popen(
            ["sh", "-c", '"$@"; echo $? > "$0"', str(folder / "book-build.rc"), *BUILD_COMMAND],
            cwd=ROOT, stdout=out, stderr=err, start_new_session=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Reap the background build; stop it first if no test waited for it (a run cut short, or `-k` without the book)."""
    build = session.config.stash.get(_BACKGROUND_BUILD, None)
    if build is None:
        return
    if build.poll() is None:
        os.killpg(build.pid, signal.SIGTERM)  # its own session: the shell, the build and the notebook kernels
    build.wait()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-book"):
        # The book's tests last (a stable sort keeps the order within each group).
        items.sort(key=lambda item: "book" in item.keywords)
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
    try:
        return subprocess.run(BUILD_COMMAND, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_LIMIT_SECONDS)
    except subprocess.TimeoutExpired as timeout:
        output = (timeout.stdout or b"")[-6000:].decode(errors="replace")
        _fail_on_time(output)


def _fail_on_time(output: str) -> None:
    pytest.fail(f"the book build did not finish within {BUILD_LIMIT_SECONDS} s (a notebook hangs or runs far longer "
                f"than it should; the build never trains); its last output:\n{output}")


def _background_build(folder: Path) -> subprocess.CompletedProcess:
    """The build that pytest_sessionstart started in ``folder``, once it has finished."""
    status = folder / "book-build.rc"
    deadline = time.monotonic() + BUILD_LIMIT_SECONDS
    while not status.exists() or not status.read_text().strip():
        if time.monotonic() > deadline:
            _fail_on_time((folder / "book-build.out").read_text()[-6000:])
        time.sleep(2)
    return subprocess.CompletedProcess(BUILD_COMMAND, int(status.read_text()),
                                       (folder / "book-build.out").read_text(), (folder / "book-build.err").read_text())


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> subprocess.CompletedProcess:
    """The book, built once per test session.

    Plain pytest builds it here. Under pytest-xdist (`make test` runs two
    workers) the run's controller started the build in the background when
    the session began (pytest_sessionstart), and every worker waits here for
    it to finish and reads its output.
    """
    if worker_id == "master":
        result = _build_book()
    else:
        result = _background_build(tmp_path_factory.getbasetemp().parent)
    if result.returncode != 0:
        pytest.fail(f"the book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result
