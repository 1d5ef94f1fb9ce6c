"""refbench: run matrices of workloads x backends and record what they do.

    >>> import refbench
    >>> matrix = refbench.Matrix(workloads=["mlp"], backends=["cpu"], modes=["train"], batch_sizes=[64])
    >>> records = refbench.run_matrix(matrix, "results.jsonl")
    >>> step = refbench.prepare("lenet5", "cpu", "train", 64)   # the one measured step every runner drives

Names are loaded on first use, so ``import refbench`` is cheap and changes
nothing (not even Triton's mode: see refbench.harness.triton_mode).
"""
import importlib

from refbench.version import __version__

_EXPORTS = {
    "Cell": "refbench.run.matrix", "Matrix": "refbench.run.matrix", "plan_cell": "refbench.run.matrix",
    "Settings": "refbench.run.settings",
    "Step": "refbench.harness.step", "prepare": "refbench.harness.step",
    "run_matrix": "refbench.run.runner", "run_cell": "refbench.run.runner",
    "check_step": "refbench.harness.correctness", "measure": "refbench.harness.timing",
    "SeedRun": "refbench.run.convergence", "converge": "refbench.run.convergence",
    "Convergence": "refbench.run.converge", "run_convergence": "refbench.run.converge",
    "ResultWriter": "refbench.records.store", "make_record": "refbench.records.schema",
    "read_results": "refbench.records.store",
    "collect_env": "refbench.harness.machine",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'refbench' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__
