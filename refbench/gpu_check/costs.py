"""What each cell of gpu-check costs on an H100/H200, from figures measured on such a GPU.

The figures come from the H100 anchors (one H100 80GB HBM3, torch 2.11.0+cu130,
Triton 3.6.0, Python 3.12, measured 2026-11-23 by a standalone script; the
H200 is as fast or faster at all of these), named beside each figure by
file; the rest are marked as estimates, with what they stand on. The plan
(refbench.gpu_check.plan) adds them up to fit each step's share of the window,
and its first GPU run records every step's real time beside its estimate, so
an estimate that was wrong shows there.
"""
from __future__ import annotations

# A step's fresh Python: imports of torch and refbench, the CUDA context, Inductor's first import.
# Estimate: the anchors' script had its first result 0.3 s after its imports; 8 s allows for the
# imports and the context on a cold page cache.
STEP_START_S = 8.0

# --- kernel sweeps (hw_softmax_conv.json) ----------------------------------------------------------
# A do_bench cell (25 ms warm-up, 100 ms of repetitions, L2 flushed) with its inputs and fp64 answer:
# the softmax section ran 219 cells in 73.7 s, 38.6 s of it torch.compile's first calls: 0.16 s a cell;
# 0.2 s with refbench's record and checks.
TIMED_CELL_S = 0.2
# Triton's first compile of a kernel specialisation (triton_row first calls: median 0.08 s, at most 0.37 s).
TRITON_FIRST_CALL_S = 0.3
# torch.compile of one softmax (torch_compile first calls: median 0.85 s); the first in a process also
# imports Inductor (4.0 s).
SOFTMAX_COMPILE_S = 0.85
INDUCTOR_FIRST_S = 3.2
# A cuDNN conv cell: the conv section timed 136 rows of fwd, bwd, dgrad and wgrad in 92.6 s (0.17 s a
# timing); benchmark mode's first call searches algorithms: 0.3 s a cell.
CUDNN_CELL_S = 0.3
# refbench's Triton conv cell: its autotuner compiles the configs the pruner keeps (1.8 a case) and times
# each. Estimate from the static sm_90 check on a 2-core CPU: 1.4 s a compile (median of 22), so 3 s a cell.
TRITON_CONV_CELL_S = 3.0
# torch.compile(mode="max-autotune") of one conv (conv_compile_and_models_ro.json, batch 128): bf16
# 9.1, 10.0, 12.8 and 20.3 s (median 11.4); tf32 34.7 s (one layer, resnet.l1).
MAX_AUTOTUNE_S = {"bf16": 11.4, "tf32": 34.7}

# --- model matrix and convergence (models_eager.json, models_compile.json; batch 128, ms per step) ------
# Train-step ms by backend; "infer" is an inference step in fp32. Keys are refbench's workload names.
STEP_MS = {
    "mlp": {"cuda": 1.25, "tf32": 1.16, "amp-bf16": 1.51, "cudagraphs": 0.13, "compile": 1.39, "infer": 0.17},
    "lenet5": {"cuda": 1.76, "tf32": 1.73, "amp-bf16": 2.50, "cudagraphs": 0.32, "compile": 2.20, "infer": 0.37},
    "cnn_small": {"cuda": 1.81, "tf32": 2.05, "amp-bf16": 2.83, "cudagraphs": 0.48, "compile": 2.35, "infer": 0.39},
    "convnet3": {"cuda": 2.06, "tf32": 2.37, "amp-bf16": 2.90, "cudagraphs": 0.72, "compile": 4.04, "infer": 0.33},
    "vgg16_cifar": {"cuda": 5.79, "tf32": 5.76, "amp-bf16": 6.64, "cudagraphs": 4.84, "compile": 6.78, "infer": 1.70},
    "resnet18_cifar": {"cuda": 16.17, "tf32": 10.03, "amp-bf16": 11.76, "cudagraphs": 15.58, "compile": 17.38,
                       "infer": 4.87},
    "rnn_rows": {"cuda": 2.08, "tf32": 1.77, "amp-bf16": 2.78, "cudagraphs": 0.19, "compile": 2.55, "infer": 0.37},
    "lstm_rows": {"cuda": 1.76, "tf32": 1.72, "amp-bf16": 2.63, "cudagraphs": 0.42, "compile": 2.90, "infer": 0.20},
    "transformer_seq2seq": {"cuda": 28.08, "tf32": 27.41, "amp-bf16": 29.63, "compile": 22.48, "infer": 4.36},
}
# torch.compile's first train step, seconds (models_compile.json, compile_fp32 at batch 128).
COMPILE_S = {"mlp": 7.3, "lenet5": 8.6, "cnn_small": 7.8, "convnet3": 7.4, "vgg16_cifar": 21.5,
             "resnet18_cifar": 21.2, "rnn_rows": 2.4, "lstm_rows": 0.2, "transformer_seq2seq": 5.5}
# A matrix cell besides its steps: the fork, the CUDA context, the model and data, FLOP counting, memory
# probes and the fp64 check (on the GPU: milliseconds). Estimate: 4 s.
MATRIX_CELL_S = 4.0
# CUDA graphs: capture after a few eager steps. Estimate: 1 s.
CAPTURE_S = 1.0
# Distinct conv layer shapes of each workload, which the triton backend's autotuner meets once per
# direction (forward, grad input, grad weight in training); counted from the workloads' Conv2d layers.
CONV_SHAPES = {"lenet5": 2, "cnn_small": 2, "convnet3": 3, "vgg16_cifar": 9, "resnet18_cifar": 11}
# Fashion-MNIST's training split, 60,000 images: steps per epoch at the recipes' batch of 128.
STEPS_PER_EPOCH = 469
# A convergence run besides its steps: data to the GPU, the model, one evaluation per epoch (10,000 test
# images, inference steps). Estimate: 6 s.
CONVERGE_RUN_S = 6.0
# refbench validate, per workload: refbench's and torch.utils.benchmark's clocks, the isolated cell twice.
# Estimate: 15 s; once for all: a fresh interpreter's imports and the hand-captured CUDA graph, 12 s.
VALIDATE_WORKLOAD_S = 15.0
VALIDATE_ONCE_S = 12.0
# pytest -m gpu, per test, by file. Estimates: Triton compiles per case, autotuning per conv shape,
# training runs to a quick target, a torchrun launch.
PYTEST_START_S = 12.0
PYTEST_TEST_S = {
    "tests/kernels/test_softmax.py": 1.5,
    "tests/kernels/test_conv.py": 15.0,
    "tests/harness/test_gpu_backends.py": 8.0,
    "tests/run/test_convergence_gpu.py": 40.0,
    "tests/run/test_ddp.py": 30.0,
}
PYTEST_OTHER_TEST_S = 10.0


def matrix_cell_s(workload: str, backend: str, mode: str, *, warmup: int, iters: int, energy_s: float) -> float:
    """Estimated seconds of one model-matrix cell."""
    steps = STEP_MS.get(workload, STEP_MS["resnet18_cifar"])
    ms = steps["infer"] if mode == "infer" else steps.get(backend, steps["cuda"])
    seconds = MATRIX_CELL_S + (warmup + iters) * ms / 1e3 + energy_s
    if backend == "compile":
        seconds += COMPILE_S.get(workload, max(COMPILE_S.values())) * (0.5 if mode == "infer" else 1.0)
    elif backend == "cudagraphs":
        seconds += CAPTURE_S
    elif backend == "triton":
        seconds += TRITON_CONV_CELL_S * CONV_SHAPES.get(workload, 0) * (1 if mode == "infer" else 3)
    return seconds


def converge_run_s(workload: str, backend: str, *, epochs: int) -> float:
    """Estimated seconds of one convergence run of ``epochs`` epochs at batch 128."""
    steps = STEP_MS.get(workload, STEP_MS["resnet18_cifar"])
    return CONVERGE_RUN_S + epochs * STEPS_PER_EPOCH * steps.get(backend, steps["cuda"]) / 1e3


def pytest_test_s(nodeid: str) -> float:
    return PYTEST_TEST_S.get(nodeid.split("::")[0], PYTEST_OTHER_TEST_S)
