"""The refbench harness: run matrices of workloads x backends and record what they do."""
from bench.convergence import ConvergenceResult, converge
from bench.results import ResultWriter, make_record, read_results
from bench.runner import Cell, MatrixSpec, run_matrix

__all__ = ["Cell", "ConvergenceResult", "MatrixSpec", "ResultWriter", "converge", "make_record",
           "read_results", "run_matrix"]
