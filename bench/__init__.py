"""The refbench harness: run matrices of workloads x backends and record what they do."""
import logging
import os

import torch

# Without a GPU, Triton kernels (refbench's own, and the `triton` backend) run in
# Triton's interpreter. The mode is fixed when triton is first imported, which
# torchvision does as a side effect, so it is chosen here, before anything else.
# torch.utils.benchmark's import of cpp_extension also warns, on a CUDA build of torch
# without a GPU, that no CUDA runtime is found: true, and no concern of a CPU run.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

from bench.convergence import ConvergenceResult, converge  # noqa: E402
from bench.results import ResultWriter, make_record, read_results  # noqa: E402
from bench.runner import Cell, MatrixSpec, run_matrix  # noqa: E402

__all__ = ["Cell", "ConvergenceResult", "MatrixSpec", "ResultWriter", "converge", "make_record",
           "read_results", "run_matrix"]
