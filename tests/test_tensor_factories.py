"""No tensor is born on the wrong device: an AST scan of the package (issue 14).

A practitioner passes tensors on ``cuda``; a constant or a noise tensor that
the package makes with ``torch.zeros(n)`` or ``torch.randn(shape)`` lands on
the CPU and the next operation fails. This test walks every module of
``code/flowdiff`` and fails on

- a tensor factory (``torch.zeros``, ``ones``, ``full``, ``empty``,
  ``arange``, ``linspace``, ``logspace``, ``eye``, ``tensor``, ``as_tensor``
  and the random ones) called without ``device=<expression>``, where the
  expression is not a literal (``device="cpu"`` or ``device=None`` is the
  CPU in disguise). The ``*_like`` factories and ``x.new_*`` inherit their
  input's device and are fine;
- a random draw (``torch.randn``, ``rand``, ``randint``, ``randperm``,
  ``multinomial``, ``normal``, ``bernoulli``, ``*_like`` draws) anywhere
  but in :mod:`flowdiff._random`, the one helper that says how a generator
  and a device meet.

A few functions make tensors on the CPU on purpose; they are listed in
``ALLOWED`` with the reason. Each offender is reported as ``file:line``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "code" / "flowdiff"

FACTORIES = frozenset(
    {"randn", "rand", "randint", "randperm", "zeros", "ones", "full", "empty", "arange", "linspace", "logspace", "eye", "tensor", "as_tensor"}
)
RANDOM_DRAWS = frozenset(
    {"randn", "rand", "randint", "randperm", "multinomial", "normal", "bernoulli", "poisson", "randn_like", "rand_like", "randint_like"}
)
RANDOM_HELPER = "_random.py"

# (file, function) -> why it may make tensors without a device taken from an input.
ALLOWED: dict[tuple[str, str], str] = {
    ("distributions.py", "_as_tensor"): (
        "turns a user's parameter into a tensor: a tensor keeps its device, a list or number lands on the CPU "
        "as with torch's own constructors; the distribution then lives where its parameters do"
    ),
    ("dynamics.py", "LinearODE.__init__"): (
        "stores the user's matrix as given (a tensor keeps its device); drift and flow move it to x's device"
    ),
    ("latent.py", "LatentFlow.__init__"): (
        "registers buffers in a module constructor, on the CPU like every torch.nn layer's parameters; "
        "module.to(device) moves them"
    ),
    ("text.py", "TextEncoder.__init__"): (
        "creates parameters in a module constructor, on the CPU like every torch.nn layer's; module.to(device) moves them"
    ),
    ("discrete.py", "VarianceExplodingChain.times"): (
        "a property of a chain of Python floats, with no input to take a device from: the float64 grid is "
        "bookkeeping that the sampler moves to its state's device and dtype, and that chapters plot with .numpy()"
    ),
    ("training.py", "TrainingHistory.smoothed"): (
        "smooths the list of Python-float losses for a plot and returns Python floats: CPU bookkeeping, no input tensor"
    ),
    ("paths.py", "GaussianPath.marginal"): (
        "evaluates the scheduler at one Python float to build a closed-form law; the numbers leave as Python floats"
    ),
}


@dataclass(frozen=True)
class Offence:
    file: str
    line: int
    function: str
    call: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: torch.{self.call}(...) in {self.function}: {self.problem}"


def _device_from_input(call: ast.Call) -> bool:
    """True when the call passes ``device=<expression>`` and the expression is not a literal."""
    for keyword in call.keywords:
        if keyword.arg == "device":
            return not isinstance(keyword.value, ast.Constant)
    return False


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str) -> None:
        self.file, self.scope, self.offences = file, [], []

    def _visit_scope(self, node: ast.AST) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_scope

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name) and function.value.id == "torch":
            name = function.attr
            where = ".".join(self.scope) or "<module>"
            if name in RANDOM_DRAWS and self.file != RANDOM_HELPER:
                self.offences.append(Offence(self.file, node.lineno, where, name, "a random draw outside flowdiff._random"))
            elif name in FACTORIES and not _device_from_input(node):
                self.offences.append(Offence(self.file, node.lineno, where, name, "no device= taken from an input"))
        self.generic_visit(node)


def scan_source(source: str, file: str) -> list[Offence]:
    """Every tensor factory without a device, and every random draw outside the helper, in ``source``."""
    scanner = _Scanner(file)
    scanner.visit(ast.parse(source, filename=file))
    return scanner.offences


def _excused(offence: Offence, excuses: dict[tuple[str, str], str]) -> bool:
    return (offence.file, offence.function) in excuses or (offence.file, "*") in excuses


def scan_package() -> list[Offence]:
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        offences += scan_source(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    return offences


def test_every_tensor_factory_takes_its_device_from_an_input() -> None:
    offenders = [o for o in scan_package() if not _excused(o, ALLOWED)]
    assert not offenders, "tensors made without the input's device:\n" + "\n".join(map(str, offenders))


def test_every_allowed_function_still_needs_its_excuse() -> None:
    """An allow-list entry that excuses nothing is stale and would hide a future offender: remove it."""
    used = {(o.file, o.function) for o in scan_package()}
    stale = [entry for entry in ALLOWED if entry not in used]
    assert not stale, f"allow-list entries that excuse nothing: {stale}"


def test_scan_reports_file_and_line_of_a_planted_offender() -> None:
    planted = (
        "import torch\n"
        "def noise(x):\n"
        "    fine = torch.zeros(3, device=x.device)\n"
        "    return torch.randn(x.shape, dtype=x.dtype)\n"
        "class Path:\n"
        "    def grid(self, x):\n"
        "        return torch.linspace(0, 1, 5, device='cpu') + torch.ones_like(x) + x.new_zeros(2)\n"
    )
    offences = scan_source(planted, "planted.py")
    assert [str(o) for o in offences] == [
        "planted.py:4: torch.randn(...) in noise: a random draw outside flowdiff._random",
        "planted.py:7: torch.linspace(...) in Path.grid: no device= taken from an input",
    ]


def test_scan_accepts_a_factory_with_the_inputs_device() -> None:
    good = (
        "import torch\n"
        "def f(x, device):\n"
        "    return torch.arange(4, device=x.device), torch.eye(2, dtype=x.dtype, device=device)\n"
    )
    assert scan_source(good, "good.py") == []
    assert [o.call for o in scan_source("import torch\ntorch.full((2,), 1.0, device=None)\n", "none.py")] == ["full"]
