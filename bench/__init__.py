"""The refbench harness: run matrices of workloads x backends and record what they do.

    >>> import bench
    >>> matrix = bench.Matrix(workloads=["mlp"], backends=["cpu"], modes=["train"], batch_sizes=[64])
    >>> records = bench.run_matrix(matrix, "results.jsonl")
    >>> step = bench.prepare("lenet5", "cpu", "train", 64)   # the one measured step every runner drives

Names are loaded on first use, so ``import bench`` is cheap and changes
nothing (not even Triton's mode: see bench.triton_mode).
"""
import importlib

_EXPORTS = {
    "Cell": "bench.matrix", "Matrix": "bench.matrix", "plan_cell": "bench.matrix",
    "Settings": "bench.settings",
    "Step": "bench.step", "prepare": "bench.step",
    "run_matrix": "bench.runner", "run_cell": "bench.runner",
    "check_step": "bench.correctness", "measure": "bench.timing",
    "SeedRun": "bench.convergence", "converge": "bench.convergence",
    "Convergence": "bench.convergence_runs", "run_convergence": "bench.convergence_runs",
    "ResultWriter": "bench.results", "make_record": "bench.results", "read_results": "bench.results",
    "collect_env": "bench.environment",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__
