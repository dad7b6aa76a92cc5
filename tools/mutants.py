"""Mutation check of the package's formulas: do the fast tests notice a planted bug?

For every function of the modules in ``MODULES`` the script plants, one at a
time, the three slips a formula most often suffers:

- **factor 2**: an operand of an arithmetic operation doubled (``a + b`` → ``2 * (a) + b``);
- **sign flip**: ``+`` ↔ ``-``, a unary minus dropped, a returned expression negated;
- **wrong time**: a time handed to a call replaced by ``1 - t``, its increment
  dropped (``t + h`` → ``t``), or ``t`` swapped with the step's other time.

Each mutant lives in a temporary copy of ``code/flowdiff`` (the real files are
never touched) placed first on the import path, and the test files that mirror
its module run against it (``-x -q``, one thread, a time limit per mutant).
A mutant is *killed* when a test fails (or the run times out), *survives*
when every test passes, and is *equivalent* when it is listed in
``EQUIVALENT`` below with the reason it cannot change behaviour.

To save the import of torch and SciPy per mutant, the script imports them once
and forks a child per mutant, which imports the mutated package afresh.

Usage: ``python tools/mutants.py [--modules solvers paths ...] [--jobs N] [--timeout S]``
(``make mutants``). Writes ``_build/mutants/report.md`` and ``report.json``.
Not part of ``make test`` or CI: it takes tens of minutes.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "code" / "flowdiff"
REPORT = ROOT / "_build" / "mutants"

# Module -> the fast test files that mirror it.
MODULES: dict[str, list[str]] = {
    "solvers": ["tests/test_solvers.py"],
    "paths": ["tests/test_paths.py"],
    "losses": ["tests/test_losses_training.py"],
    "guidance": ["tests/test_guidance.py"],
    "steering": ["tests/test_steering.py"],
    "discrete": ["tests/test_discrete.py"],
    "flowmaps": ["tests/test_flowmaps.py"],
}

# Names that hold a time: a call that receives one of them can be handed the wrong time.
TIME_NAMES = {"t", "s", "time", "times", "t_next", "s_next"}
# Pairs of times within one step, swapped by the "wrong time" operator.
TIME_SWAPS = {"t": "t_next", "t_next": "t", "s": "s_next", "s_next": "s"}
# Attributes that describe shapes, not formulas: arithmetic on them is bookkeeping.
SHAPE_ATTRIBUTES = {"ndim", "shape", "numel", "dim"}
# Methods whose arguments are shapes or dimensions, not values.
SHAPE_METHODS = {"reshape", "view", "expand", "repeat", "unsqueeze", "squeeze", "chunk", "split", "flatten", "permute"}

# Calls that read an argument's type, container, shape or dtype, not its values.
TYPE_TESTS = {"isinstance", "type", "tuple", "len", "getattr", "hasattr", "callable", "ones_like", "zeros_like", "empty_like"}

FIRST_STEP = "a positive first step is only a hint to the adaptive step-size control"

# Mutants that cannot change behaviour, by identifier (see Mutant.identifier), each with its reason.
EQUIVALENT: dict[str, str] = {
    # solve_adaptive: the first step only seeds the step-size control of Dormand-Prince; the error estimate
    # accepts or shrinks it and picks every later step, so any positive first step gives the solution within
    # the tolerance. (A first step that is zero or negative does change behaviour: `end - 2 * start` is killed
    # by the test on [0.6, 1].)
    "solvers.solve_adaptive: factor-2 `(end - start) / 100` -> `2 * (end - start) / 100`": FIRST_STEP,
    "solvers.solve_adaptive: factor-2 `(end - start) / 100` -> `(end - start) / (2 * 100)`": FIRST_STEP,
    "solvers.solve_adaptive: factor-2 `end - start` -> `2 * end - start`": FIRST_STEP,
    "solvers.solve_adaptive: sign flip `end - start` -> `end + start`": FIRST_STEP,
    # The cosine schedule uses f only through the ratios f(u_k) / f(u_{k-1}): a constant factor cancels.
    "discrete.AlphaBarSchedule.cosine: factor-2 `torch.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2` -> "
    "`(2 * torch.cos((u + offset) / (1 + offset) * math.pi / 2)) ** 2`": "f enters only through ratios of its values",
    # _posterior calls _column only to check the shape of t; its value is discarded.
    "paths.GaussianPath._posterior: wrong time `t` -> `1 - t` @ _column(t, x)": "the call only checks the shape of t",
}

TEST_ARGUMENTS = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", "--tb=line"]


@dataclass
class Mutant:
    module: str
    function: str
    line: int
    operator: str
    original: str
    mutated: str
    # Character offsets of the replaced segment in the module's source.
    start: int
    end: int
    statement: str = ""  # the source line, which tells apart equal mutants of one function
    status: str = "pending"
    seconds: float = 0.0
    failure: str = ""

    @property
    def identifier(self) -> str:
        return f"{self.module}.{self.function}: {self.operator} `{self.original}` -> `{self.mutated}`"


def _offsets(source: str) -> list[int]:
    """Character offset of the start of each line (1-based lines)."""
    offsets, total = [0, 0], 0
    for line in source.splitlines(keepends=True):
        total += len(line)
        offsets.append(total)
    return offsets


def _is_time(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in TIME_NAMES


def _mentions_shape(node: ast.AST) -> bool:
    """Bookkeeping arithmetic: on shapes, lengths, lists or strings, not on values."""
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute) and child.attr in SHAPE_ATTRIBUTES:
            return True
        if isinstance(child, (ast.List, ast.JoinedStr)) or (isinstance(child, ast.Constant) and isinstance(child.value, str)):
            return True
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id in {"len", "range", "int"}:
            return True
    return False


class _Planter(ast.NodeVisitor):
    """Collects the mutants of one module's source."""

    def __init__(self, module: str, source: str) -> None:
        self.module, self.source, self.offsets = module, source, _offsets(source)
        self.functions: list[str] = []
        self.scopes: list[set[str]] = []  # names used in each enclosing function
        self.mutants: list[Mutant] = []

    # --- where formulas are -------------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node.name)
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
        self.scopes.append(names | (self.scopes[-1] if self.scopes else set()))
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()
        self.functions.pop()

    def visit_Raise(self, node: ast.Raise) -> None:  # error messages are not formulas
        return

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_If(self, node: ast.If) -> None:  # conditions choose a branch; the branches hold the formulas
        for statement in node.body + node.orelse:
            self.visit(statement)

    def visit_For(self, node: ast.For) -> None:
        for statement in node.body + node.orelse:
            self.visit(statement)

    def visit_Subscript(self, node: ast.Subscript) -> None:  # indices and slices are bookkeeping
        self.visit(node.value)

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        constructor = isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id[:1].isupper()
        if self._inside_function() and isinstance(value, (ast.BinOp, ast.UnaryOp, ast.Call, ast.Name)) and not constructor:
            if not (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub)) and not _mentions_shape(value):
                self._add(value, "sign flip", ast.UnaryOp(ast.USub(), value))
        self.generic_visit(node)

    # --- the operators ------------------------------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp) -> None:
        if self._inside_function() and not _mentions_shape(node):
            op = node.op
            if isinstance(op, (ast.Add, ast.Sub)):
                self._add(node, "factor-2", ast.BinOp(_double(node.left), op, node.right))
                self._add(node, "factor-2", ast.BinOp(node.left, op, _double(node.right)))
                flipped = ast.Sub() if isinstance(op, ast.Add) else ast.Add()
                self._add(node, "sign flip", ast.BinOp(node.left, flipped, node.right))
            elif isinstance(op, (ast.Mult, ast.Pow)):
                self._add(node, "factor-2", ast.BinOp(_double(node.left), op, node.right))
            elif isinstance(op, ast.Div):
                self._add(node, "factor-2", ast.BinOp(_double(node.left), op, node.right))
                self._add(node, "factor-2", ast.BinOp(node.left, op, _double(node.right)))
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if self._inside_function() and isinstance(node.op, ast.USub) and not _mentions_shape(node):
            self._add(node, "sign flip", node.operand)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in SHAPE_METHODS or name in TYPE_TESTS or name.startswith(("check_", "_check")):  # shapes, types, checks
            self.visit(node.func)
            return
        if self._inside_function():
            arguments = list(node.args) + [k.value for k in node.keywords]
            for argument in arguments:
                if _is_time(argument):
                    self._add(argument, "wrong time", ast.BinOp(ast.Constant(1), ast.Sub(), argument))
                    if TIME_SWAPS.get(argument.id) in self.scopes[-1]:
                        self._add(argument, "wrong time", ast.Name(TIME_SWAPS[argument.id], ast.Load()))
                elif isinstance(argument, ast.BinOp) and isinstance(argument.op, (ast.Add, ast.Sub)) and _is_time(argument.left):
                    self._add(argument, "wrong time", argument.left)
        self.generic_visit(node)

    # --- helpers ------------------------------------------------------------------------------
    def _inside_function(self) -> bool:
        return bool(self.functions)

    def _add(self, node: ast.expr, operator: str, replacement: ast.expr) -> None:
        start = self.offsets[node.lineno] + node.col_offset
        end = self.offsets[node.end_lineno] + node.end_col_offset
        original = self.source[start:end]
        mutated = ast.unparse(replacement)
        if mutated == ast.unparse(node):
            return
        function = ".".join(self.functions)
        statement = self.source.splitlines()[node.lineno - 1].strip()
        self.mutants.append(Mutant(self.module, function, node.lineno, operator, original, mutated, start, end, statement))


def _double(node: ast.expr) -> ast.expr:
    return ast.BinOp(ast.Constant(2), ast.Mult(), node)


def plant(module: str) -> tuple[str, list[Mutant]]:
    """The module's source and its mutants, in source order."""
    source = (PACKAGE / f"{module}.py").read_text()
    planter = _Planter(module, source)
    planter.visit(ast.parse(source))
    mutants = sorted(planter.mutants, key=lambda m: (m.start, m.end, m.operator, m.mutated))
    for mutant in mutants:
        if equivalence(mutant):
            mutant.status = "equivalent"
    return source, mutants


def equivalence(mutant: Mutant) -> str | None:
    """Why the mutant is equivalent, if it is listed: by identifier, or by identifier and source line."""
    return EQUIVALENT.get(f"{mutant.identifier} @ {mutant.statement}") or EQUIVALENT.get(mutant.identifier)


def mutated_source(source: str, mutant: Mutant) -> str:
    return source[: mutant.start] + f"({mutant.mutated})" + source[mutant.end :]


# --- running the tests -----------------------------------------------------------------------


def _preload() -> None:
    """Import once, in the parent, what every test run needs (the children inherit it by fork)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import scipy.integrate  # noqa: F401
    import scipy.linalg  # noqa: F401
    import scipy.optimize  # noqa: F401
    import scipy.stats  # noqa: F401
    import torch  # noqa: F401

    assert "flowdiff" not in sys.modules, "the parent must not import flowdiff: each child imports its own copy"


def _child(copy: Path, tests: list[str], log: Path, extra: list[str]) -> None:
    """In the forked child: import the copy of the package and run the tests; never returns."""
    try:
        descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        sys.dont_write_bytecode = True
        sys.path.insert(0, str(copy))
        os.chdir(ROOT)
        import flowdiff

        if not Path(flowdiff.__file__).resolve().is_relative_to(copy.resolve()):
            print(f"imported the wrong flowdiff: {flowdiff.__file__}")
            os._exit(3)
        import pytest

        code = pytest.main([*tests, *TEST_ARGUMENTS, *extra])
        sys.stdout.flush()
        os._exit(int(code))
    except BaseException as error:  # noqa: BLE001 - the child must exit, whatever happens
        print(f"child failed: {error!r}")
        sys.stdout.flush()
        os._exit(4)


@dataclass
class _Running:
    pid: int
    mutant: Mutant | None
    module: str
    started: float
    log: Path
    copy: Path


def _last_failure(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    interesting = [line for line in lines if "Error" in line or line.startswith(("E ", "FAILED", "/"))]
    return (interesting or lines or [""])[-1][:300]


def _fastest_first(junit: Path) -> list[str]:
    """The node ids of a baseline run, quickest test first: with -x a mutant then dies on its cheapest witness."""
    cases = []
    for case in ElementTree.parse(junit).iter("testcase"):
        path = case.get("classname", "").split(".")
        file = "/".join(path[: path.index(next(p for p in path if p.startswith("test_"))) + 1]) + ".py"
        cases.append((float(case.get("time", 0)), f"{file}::{case.get('name')}"))
    return [node for _, node in sorted(cases)]


def run(mutants: list[Mutant], sources: dict[str, str], jobs: int, timeout: float) -> dict[str, float]:
    """Run every pending mutant; return the baseline seconds of each module's tests."""
    _preload()
    work = Path(tempfile.mkdtemp(prefix="flowdiff-mutants-"))
    slots = []
    for index in range(jobs):
        copy = work / f"slot{index}"
        shutil.copytree(PACKAGE, copy / "flowdiff", ignore=shutil.ignore_patterns("__pycache__"))
        slots.append(copy)
    baseline: dict[str, float] = {}
    ordered: dict[str, list[str]] = {}  # module -> its tests' node ids, fastest first
    # The baseline of each module first: the unmutated package must pass its tests.
    queue: list[tuple[str, Mutant | None]] = [(module, None) for module in sources
                                              if any(m.module == module and m.status == "pending" for m in mutants)]
    queue += [(m.module, m) for m in mutants if m.status == "pending"]
    running: list[_Running] = []
    free = list(slots)
    done = 0
    try:
        while queue or running:
            while free:
                # A mutant waits for its module's baseline, which orders the tests.
                ready = [i for i, (module, mutant) in enumerate(queue) if mutant is None or module in ordered]
                if not ready:
                    break
                module, mutant = queue.pop(ready[0])
                copy = free.pop()
                target = copy / "flowdiff" / f"{module}.py"
                target.write_text(sources[module] if mutant is None else mutated_source(sources[module], mutant))
                log = work / f"{copy.name}.log"
                if mutant is None:
                    tests, extra = MODULES[module], [f"--junitxml={work / module}.xml"]
                else:
                    tests, extra = ordered[module], []
                pid = os.fork()
                if pid == 0:
                    _child(copy, tests, log, extra)
                running.append(_Running(pid, mutant, module, time.perf_counter(), log, copy))
            time.sleep(0.05)
            for job in list(running):
                finished, status = os.waitpid(job.pid, os.WNOHANG)
                elapsed = time.perf_counter() - job.started
                if finished == 0 and elapsed < timeout:
                    continue
                if finished == 0:
                    os.kill(job.pid, signal.SIGKILL)
                    os.waitpid(job.pid, 0)
                    code = None
                else:
                    code = os.waitstatus_to_exitcode(status)
                (job.copy / "flowdiff" / f"{job.module}.py").write_text(sources[job.module])
                running.remove(job)
                free.append(job.copy)
                if job.mutant is None:
                    baseline[job.module] = elapsed
                    if code != 0:  # the module's mutants cannot be judged: report them as errors
                        print(f"the unmutated package fails {MODULES[job.module]}:\n{job.log.read_text()[-3000:]}", flush=True)
                        for m in mutants:
                            if m.module == job.module and m.status == "pending":
                                m.status, m.failure = "error", "the unmutated package fails these tests"
                        queue = [(module, m) for module, m in queue if module != job.module]
                    else:
                        ordered[job.module] = _fastest_first(work / f"{job.module}.xml")
                        print(f"baseline {job.module}: {elapsed:.1f} s, {len(ordered[job.module])} tests", flush=True)
                    continue
                mutant = job.mutant
                mutant.seconds = round(elapsed, 2)
                if code is None:
                    mutant.status, mutant.failure = "killed", f"timed out after {timeout:.0f} s"
                elif code == 0:
                    mutant.status = "survived"
                elif code == 1:
                    mutant.status, mutant.failure = "killed", _last_failure(job.log)
                else:
                    mutant.status, mutant.failure = "error", f"pytest exit code {code}: {_last_failure(job.log)}"
                done += 1
                print(f"[{done}] {mutant.status:8s} {mutant.module}.py:{mutant.line} {mutant.operator}: "
                      f"{mutant.original} -> {mutant.mutated} ({elapsed:.1f} s)", flush=True)
    finally:
        for job in running:
            os.kill(job.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    return baseline


# --- the report --------------------------------------------------------------------------------


def write_report(mutants: list[Mutant], modules: list[str], baseline: dict[str, float], seconds: float) -> None:
    REPORT.mkdir(parents=True, exist_ok=True)
    counts = {
        module: {status: sum(m.module == module and m.status == status for m in mutants)
                 for status in ("killed", "survived", "equivalent", "error")}
        for module in modules
    }
    (REPORT / "report.json").write_text(json.dumps({
        "seconds": round(seconds, 1),
        "baseline_seconds": {k: round(v, 1) for k, v in baseline.items()},
        "tests": {module: MODULES[module] for module in modules},
        "counts": counts,
        "mutants": [asdict(m) | {"identifier": m.identifier} for m in mutants],
    }, indent=1, ensure_ascii=False))
    lines = [
        "# Mutation report",
        "",
        f"{len(mutants)} mutants of `code/flowdiff` in {seconds / 60:.1f} min (`make mutants`, tools/mutants.py).",
        "",
        "| module | tests | killed | survived | equivalent | error |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for module in modules:
        c = counts[module]
        lines.append(f"| {module} | {', '.join(MODULES[module])} | {c['killed']} | {c['survived']} | {c['equivalent']} | {c['error']} |")
    for title, status in (("Surviving mutants", "survived"), ("Errors", "error"), ("Equivalent mutants", "equivalent")):
        chosen = [m for m in mutants if m.status == status]
        lines += ["", f"## {title} ({len(chosen)})", ""]
        for m in chosen:
            reason = f": {equivalence(m)}" if status == "equivalent" else (f": {m.failure}" if m.failure else "")
            lines.append(f"- `code/flowdiff/{m.module}.py:{m.line}` ({m.function}, {m.operator}) "
                         f"`{m.original}` → `{m.mutated}`{reason}")
    lines += ["", "## Killed mutants", ""]
    for m in mutants:
        if m.status == "killed":
            lines.append(f"- `code/flowdiff/{m.module}.py:{m.line}` ({m.function}, {m.operator}) `{m.original}` → `{m.mutated}`")
    (REPORT / "report.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", default=list(MODULES), choices=list(MODULES))
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant before it counts as killed")
    parser.add_argument("--list", action="store_true", help="only list the mutants")
    parser.add_argument("--match", help="only the mutants whose identifier contains this text")
    parser.add_argument("--rerun", action="store_true",
                        help="test again only the mutants that survived (or erred) in the last report, and update it")
    arguments = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"

    sources, mutants = {}, []
    for module in arguments.modules:
        sources[module], planted = plant(module)
        mutants += planted
    if arguments.match:
        mutants = [m for m in mutants if arguments.match in m.identifier]
    previous: dict[str, dict] = {}
    if arguments.rerun:
        # The package is unchanged between runs, so identifier and line name a mutant.
        previous = {(m["identifier"], m["line"]): m for m in json.loads((REPORT / "report.json").read_text())["mutants"]}
        for m in mutants:
            old = previous.get((m.identifier, m.line))
            if m.status == "pending" and old is not None and old["status"] == "killed":
                m.status, m.seconds, m.failure = "killed", old["seconds"], old["failure"]
    if arguments.list:
        for m in mutants:
            print(f"{m.module}.py:{m.line} [{m.status}] {m.identifier}")
        print(f"{len(mutants)} mutants")
        return
    start = time.perf_counter()
    baseline = run(mutants, sources, arguments.jobs, arguments.timeout)
    seconds = time.perf_counter() - start
    if arguments.rerun:
        seconds += json.loads((REPORT / "report.json").read_text())["seconds"]
    write_report(mutants, arguments.modules, baseline, seconds)
    survivors = [m for m in mutants if m.status == "survived"]
    print(f"{len(mutants)} mutants, {len(survivors)} survived, {seconds / 60:.1f} min: {REPORT / 'report.md'}")


if __name__ == "__main__":
    main()
