"""The softmax / log-softmax kernel sweep behind ``refbench kernels softmax``.

Each cell times one kernel (forward or backward) of one backend on one
(M, N, dtype) and becomes a ``kernel`` record: time, GB/s (forward moves
2*M*N*bytes, backward 3*M*N*bytes), the largest error against fp64 on the
same inputs, and the device's copy bandwidth measured in the same run as
the roofline. The backward cells time the backward kernel alone, given the
forward's output and an incoming gradient, so no backend pays for autograd.

On the CPU only the tiny shapes run, the Triton kernels in the interpreter:
that proves the sweep end to end, and its timings mean nothing.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Sequence

import torch

from bench.kernel_timing import copy_bandwidth_gbps, on_gpu, time_ms
from bench.results import make_record

BACKENDS = ("torch", "compile", "triton")
# torch's own kernels: (forward, backward given output and gradient).
_TORCH_OPS = {
    "softmax": (torch.softmax, torch._softmax_backward_data),
    "log_softmax": (torch.log_softmax, torch._log_softmax_backward_data),
}
_BYTES_PER_ELEMENT = {"fwd": 2, "bwd": 3}  # tensors read + written, in units of M*N*itemsize
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}

# Full sweep: every power of two from 128 to 262144 plus odd sizes (vocabularies,
# unaligned rows) at M = 4096, and the short-to-medium rows again at M = 32768.
# M shrinks where one tensor would pass 1 GiB.
_FULL_N = sorted([2**k for k in range(7, 19)] + [1000, 3000, 50257])
_TALL_N = [2**k for k in range(7, 14)]
_MAX_TENSOR_BYTES = 1 << 30
_QUICK_GPU_SHAPES = [(4096, 256), (4096, 4096), (1024, 65536)]
# The last one is long enough for the long-row kernel.
_CPU_SHAPES = [(4, 128), (3, 1000), (2, 40000)]


def run_sweep(
    *,
    device: torch.device | str,
    dtypes: Iterable[torch.dtype | str],
    ops: Sequence[str] = ("softmax", "log_softmax"),
    directions: Sequence[str] = ("fwd", "bwd"),
    quick: bool,
    run_id: str,
    env: dict,
    on_record: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Time every (op, dtype, shape, direction, backend) cell; return one record per cell.

    ``dtypes`` are torch dtypes or their names ("float16", "bf16", ...).
    ``quick`` runs three representative shapes instead of the full sweep on a
    GPU; a CPU always runs the tiny shapes. ``on_record`` sees each record
    as soon as it exists (to append it to a results file). A failing cell
    becomes an ``error`` (or ``oom``) record and the sweep goes on.
    """
    unknown = (set(ops) - set(_TORCH_OPS)) | (set(directions) - set(_BYTES_PER_ELEMENT))
    if unknown:
        raise ValueError(f"unknown op or direction {sorted(unknown)}")
    if not on_gpu(device):
        # Triton decides between compiling and interpreting when a kernel is defined.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from kernels.softmax import softmax_backward, softmax_forward

    # The Triton kernels behind the same signatures as torch's.
    triton_ops = {
        op: (
            lambda x, dim, log=op == "log_softmax": softmax_forward(x, dim, log=log),
            lambda dy, y, dim, input_dtype, log=op == "log_softmax": softmax_backward(dy, y, dim, log=log),
        )
        for op in _TORCH_OPS
    }
    copy_gbps = copy_bandwidth_gbps(device)
    records = []

    def emit(**fields):
        record = make_record(run_id=run_id, env=env, mode="kernel", **fields)
        records.append(record)
        if on_record is not None:
            on_record(record)

    for op in ops:
        for dtype in map(_as_dtype, dtypes):
            for m, n in _shapes(device, quick, dtype):
                for direction in directions:
                    variant = {"M": m, "N": n, "dtype": str(dtype).removeprefix("torch."), "direction": direction}
                    nbytes = _BYTES_PER_ELEMENT[direction] * m * n * dtype.itemsize
                    try:
                        inputs, expected = _inputs(op, direction, m, n, dtype, device)
                    except Exception as exc:  # noqa: BLE001 - the cell's failure is its record
                        for backend in BACKENDS:
                            emit(workload=op, backend=backend, variant=variant, **_failure(exc))
                        continue
                    for backend in BACKENDS:
                        if backend == "compile" and not on_gpu(device):
                            emit(workload=op, backend=backend, variant=variant, status="skipped",
                                 error="torch.compile is timed on GPU only; on CPU its build would dominate")
                            continue
                        try:
                            fn = _kernel(backend, op, direction, triton_ops)
                            metrics = _measure(lambda: fn(*inputs), expected, device, nbytes)
                        except Exception as exc:  # noqa: BLE001
                            emit(workload=op, backend=backend, variant=variant, **_failure(exc))
                            continue
                        emit(workload=op, backend=backend, variant=variant, status="ok",
                             metrics={**metrics, "copy_gbps": copy_gbps})
    return records


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, _DTYPE_ALIASES.get(dtype, dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return value


def _shapes(device, quick: bool, dtype: torch.dtype) -> list[tuple[int, int]]:
    if not on_gpu(device):
        return _CPU_SHAPES
    if quick:
        return _QUICK_GPU_SHAPES
    wide = [(min(4096, _MAX_TENSOR_BYTES // (n * dtype.itemsize)), n) for n in _FULL_N]
    return wide + [(32768, n) for n in _TALL_N]


def _inputs(op, direction, m, n, dtype, device):
    """The kernel's arguments and its fp64 answer on exactly those arguments."""
    forward, backward = _TORCH_OPS[op]
    x = torch.randn(m, n, device=device, dtype=dtype)
    if direction == "fwd":
        return (x,), forward(x.double(), -1)
    y = forward(x, -1)
    dy = torch.randn_like(y)
    return (dy, y), backward(dy.double(), y.double(), -1, torch.float64)


def _kernel(backend, op, direction, triton_ops) -> Callable:
    forward, backward = triton_ops[op] if backend == "triton" else _TORCH_OPS[op]
    if direction == "fwd":
        def fn(x):
            return forward(x, -1)
    else:
        def fn(dy, y):
            return backward(dy, y, -1, y.dtype)
    if backend == "compile":
        torch.compiler.reset()  # a fresh, shape-specialised graph per cell, never a recompile-limit fallback
        fn = torch.compile(fn, dynamic=False)
    return fn


def _measure(fn: Callable, expected: torch.Tensor, device, nbytes: int) -> dict:
    start = time.perf_counter()
    out = fn()  # the first call compiles (torch.compile, Triton)
    first_call_s = time.perf_counter() - start
    ms = time_ms(fn, device)
    return {
        "time_ms": ms,
        "gbps": nbytes / (ms * 1e-3) / 1e9,
        "max_abs_err": (out.double() - expected).abs().max().item(),
        "first_call_s": first_call_s,
    }


def _failure(exc: Exception) -> dict:
    status = "oom" if isinstance(exc, torch.cuda.OutOfMemoryError) else "error"
    return {"status": status, "error": f"{type(exc).__name__}: {exc}"[-2000:]}
