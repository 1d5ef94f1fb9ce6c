"""What gpu-check measures in its window, step by step, each cut to fit its share.

Steps come in the order of what is least known and matters most: the
kernels against their peers (softmax, then conv2d), the model matrix across
backends, convergence, ``validate``, then ``pytest -m gpu``. Each step lists
its cells in its own order of priority with an estimated cost per cell
(refbench.gpu_check.costs) and keeps, in that order, every cell that still
fits its share of the budget; the rest are left out, and the plan says
which. A step that finishes early leaves its time to the next one
(refbench.gpu_check.run).

``device="cpu"`` plans the CPU rehearsal: the same steps with the CPU's
cells (the sweeps' tiny shapes, CPU backends, the quick targets).
"""
from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import asdict, dataclass, field

from refbench.gpu_check import costs

WALL_BUDGET_S = 450
# Shares of the budget, in running order.
SHARES = {"softmax": 0.13, "conv2d": 0.21, "matrix": 0.30, "converge": 0.14, "validate": 0.08, "pytest": 0.14}
TITLES = {
    "softmax": "kernels: softmax against torch, torch.compile, Liger and quack",
    "conv2d": "kernels: conv2d against cuDNN and torch.compile max-autotune",
    "matrix": "model matrix across backends, batch 128, outputs and gradients checked",
    "converge": "convergence to the targets (full on a GPU)",
    "validate": "validate: refbench's clock against torch.utils.benchmark",
    "pytest": "pytest -m gpu",
}
MATRIX_WORKLOADS = ("mlp", "lenet5", "cnn_small", "convnet3", "resnet18_cifar", "transformer_seq2seq")
# In order of priority: the precisions first, then the backends that build (graphs, kernels, compilers).
MATRIX_BACKENDS = {"cuda": ("cuda", "tf32", "amp-bf16", "cudagraphs", "triton", "compile"),
                   "cpu": ("cpu", "cpu+compile")}
MATRIX_SETTINGS = {"iters": 20, "max_warmup": 10, "max_warmup_s": 3.0, "timeout_s": 150.0, "energy_s": 0.3}
CONVERGE = {"cuda": {"target": "full", "backends": ("cuda", "amp-bf16"), "epochs": 20},
            "cpu": {"target": "quick", "backends": ("cpu",), "epochs": 2}}
CONVERGE_WORKLOADS = ("mlp", "lenet5")
VALIDATE_WORKLOADS = ("mlp", "lenet5")
# Test files in order of priority: each file's tests are kept before the next file's.
PYTEST_ORDER = ("tests/kernels/test_softmax.py", "tests/kernels/test_conv.py", "tests/harness/test_gpu_backends.py",
                "tests/run/test_convergence_gpu.py", "tests/run/test_ddp.py")


@dataclass
class Cell:
    label: str
    seconds: float
    spec: dict = field(default_factory=dict)
    group: str = ""          # what the plan's summary counts it under (a backend, a test file)


@dataclass
class Step:
    name: str
    share_s: float
    start_s: float
    cells: list[Cell]                     # in order of priority
    kept: list[Cell] = field(default_factory=list)
    left_out: list[Cell] = field(default_factory=list)
    note: str = ""

    @property
    def title(self) -> str:
        return TITLES[self.name]

    @property
    def estimate_s(self) -> float:
        return self.start_s + sum(cell.seconds for cell in self.kept)

    def fit(self) -> "Step":
        """Keep, in order of priority, every cell that still fits the share."""
        used = self.start_s
        self.kept, self.left_out = [], []
        for cell in self.cells:
            if used + cell.seconds <= self.share_s:
                self.kept.append(cell)
                used += cell.seconds
            else:
                self.left_out.append(cell)
        return self

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "share_s": round(self.share_s, 1),
                "estimate_s": round(self.estimate_s, 1), "note": self.note,
                "kept": [asdict(c) for c in self.kept], "left_out": [c.label for c in self.left_out]}


def plan(budget_s: float = WALL_BUDGET_S, *, device: str = "cuda", tests: list[str] | None = None) -> list[Step]:
    """Every step, fitted to its share of ``budget_s``. ``tests``: the ids ``pytest -m gpu`` collects
    (None: the pytest step chooses among them when it starts, by the same rule)."""
    builders = {"softmax": _softmax, "conv2d": _conv2d, "matrix": _matrix, "converge": _converge,
                "validate": _validate, "pytest": lambda device: _pytest(tests)}
    steps, spare = [], 0.0
    for name, share in SHARES.items():
        start_s, cells, note = builders[name](device)
        step = Step(name, share * budget_s + spare, start_s, cells, note=note).fit()
        spare = step.share_s - step.estimate_s   # what a step leaves, the next one may use
        steps.append(step)
    return steps


# The softmax sweep's peers and the packages they come in.
_PEER_PACKAGES = {"liger": "liger_kernel", "quack": "quack"}


def _softmax(device: str):
    from refbench.kernelbench.runs import default_dtypes
    from refbench.kernelbench.softmax import planned_cells

    missing = {peer for peer, package in _PEER_PACKAGES.items() if importlib.util.find_spec(package) is None}
    cells = []
    for cell in planned_cells(device=device, dtypes=default_dtypes(device, "gpu-check"), shapes="gpu-check"):
        v = cell["variant"]
        label = f"{cell['workload']} {v['direction']} {v['M']}x{v['N']} {v['dtype']} {cell['backend']}"
        if cell["backend"] in missing:   # recorded as skipped, with the reason, at no cost
            cells.append(Cell(label, 0.0, cell, f"{cell['backend']} (not installed: skipped)"))
            continue
        seconds = costs.TIMED_CELL_S + {"compile": costs.SOFTMAX_COMPILE_S, "triton": costs.TRITON_FIRST_CALL_S,
                                        "liger": costs.TRITON_FIRST_CALL_S}.get(cell["backend"], 0.0)
        cells.append(Cell(label, seconds, cell, cell["backend"]))
    # Every peer on one (op, direction) before the next: softmax forward, backward, then log-softmax.
    cells.sort(key=lambda c: (c.spec["workload"] != "softmax", c.spec["variant"]["direction"] != "fwd"))
    return costs.STEP_START_S + costs.INDUCTOR_FIRST_S, cells, ""


# conv2d in tiers: cuDNN and refbench's kernel on the bf16 forward, max-autotune on the two largest
# bf16 forward layers, then the bf16 gradients, TF32, and the other max-autotune builds (10 to 35 s each).
_CONV_BUILDS_FIRST = 2


def _conv2d(device: str):
    from refbench.kernelbench.conv2d import _rough_flops, planned_cells
    from refbench.kernelbench.runs import conv_layers

    cells = []
    for cell in planned_cells(device=device, layers=conv_layers(), shapes="gpu-check"):
        v = cell["variant"]
        label = f"{cell['workload']} {v['precision']} {v['direction']} bs={cell['batch_size']} {cell['backend']}"
        if cell["backend"] == "compile-max-autotune":
            seconds = costs.MAX_AUTOTUNE_S.get(v["precision"], max(costs.MAX_AUTOTUNE_S.values())) + costs.TIMED_CELL_S
        else:
            seconds = costs.TRITON_CONV_CELL_S if cell["backend"] == "triton" else costs.CUDNN_CELL_S
        cells.append(Cell(label, seconds, cell, cell["backend"]))

    def tier(c):
        v, built = c.spec["variant"], c.spec["backend"] == "compile-max-autotune"
        return (v["precision"] != "bf16", v["direction"] != "fwd", built, -_rough_flops(v["layer"]))

    cells.sort(key=tier)
    builds = [c for c in cells if c.spec["backend"] == "compile-max-autotune"]
    fast = [c for c in cells if c.spec["backend"] != "compile-max-autotune"]
    bf16_forward = [c for c in fast if c.spec["variant"]["precision"] == "bf16" and c.spec["variant"]["direction"] == "fwd"]
    first = builds[:_CONV_BUILDS_FIRST]
    return (costs.STEP_START_S + costs.INDUCTOR_FIRST_S,
            bf16_forward + first + fast[len(bf16_forward):] + builds[_CONV_BUILDS_FIRST:], "")


def _matrix(device: str):
    s = MATRIX_SETTINGS
    # Workload-major, so that every backend is measured on the small models before any on the large ones.
    cells = [Cell(f"{workload} {backend} {mode}",
                  costs.matrix_cell_s(workload, _gpu_twin(backend), mode, warmup=s["max_warmup"], iters=s["iters"],
                                      energy_s=s["energy_s"]),
                  {"workload": workload, "backend": backend, "mode": mode, "batch_size": 128}, backend)
             for workload in MATRIX_WORKLOADS for backend in MATRIX_BACKENDS[device] for mode in ("train", "infer")]
    return costs.STEP_START_S, cells, ""


def _gpu_twin(backend: str) -> str:
    """The GPU backend whose costs a rehearsal's CPU backend borrows: cpu -> cuda, cpu+compile -> compile."""
    return "cuda" if backend == "cpu" else backend.removeprefix("cpu+")


def _converge(device: str):
    setup = CONVERGE[device]
    cells = [Cell(f"{workload} {backend} to the {setup['target']} target",
                  costs.converge_run_s(workload, _gpu_twin(backend), epochs=setup["epochs"]),
                  {"workload": workload, "backend": backend, "target": setup["target"]})
             for backend in setup["backends"] for workload in CONVERGE_WORKLOADS]
    return costs.STEP_START_S, cells, ""


def _validate(device: str):
    cells = [Cell(workload, costs.VALIDATE_WORKLOAD_S, {"workload": workload}) for workload in VALIDATE_WORKLOADS]
    return costs.STEP_START_S + costs.VALIDATE_ONCE_S, cells, ""


def _pytest(tests: list[str] | None):
    if tests is None:
        return costs.PYTEST_START_S, [], "tests chosen when the step starts, by file in this order: " + ", ".join(
            PYTEST_ORDER)
    return costs.PYTEST_START_S, gpu_test_cells(tests), ""


def gpu_test_cells(tests: list[str]) -> list[Cell]:
    """The collected GPU tests as cells, the files of ``PYTEST_ORDER`` first, in that order."""
    def rank(nodeid: str) -> int:
        path = nodeid.split("::")[0]
        return PYTEST_ORDER.index(path) if path in PYTEST_ORDER else len(PYTEST_ORDER)

    return [Cell(nodeid, costs.pytest_test_s(nodeid), {"nodeid": nodeid}, nodeid.split("::")[0])
            for nodeid in sorted(tests, key=rank)]


def describe(steps: list[Step], budget_s: float) -> list[str]:
    """The plan as lines of text: per step its share, its estimate, what it measures and what it leaves out."""
    lines = [f"gpu-check plan: {len(steps)} steps in {budget_s:.0f} s "
             f"(estimated {sum(step.estimate_s for step in steps):.0f} s)"]
    for number, step in enumerate(steps, 1):
        lines.append(f"{number}. {step.title}: {len(step.kept)} of {len(step.cells)} cells, estimated "
                     f"{step.estimate_s:.0f} s of a {step.share_s:.0f} s share")
        if step.note:
            lines.append(f"   {step.note}")
        if step.kept:
            lines.append(f"   measures: {_summary(step.kept)}")
        if step.left_out:
            lines.append(f"   leaves out {len(step.left_out)} ({sum(c.seconds for c in step.left_out):.0f} s): "
                         + "; ".join(c.label for c in step.left_out))
    return lines


def _summary(cells: list[Cell]) -> str:
    """The cells counted by group, or listed when they have none."""
    if not all(c.group for c in cells):
        return "; ".join(c.label for c in cells)
    return ", ".join(f"{count} {name}" for name, count in Counter(c.group for c in cells).items())
