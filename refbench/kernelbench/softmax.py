"""The softmax / log-softmax kernel sweep behind ``refbench kernels softmax``.

Each cell times one kernel (forward or backward) of one backend on one
(M, N, dtype) and becomes a ``kernel`` record: time, GB/s (forward moves
2*M*N*bytes, backward 3*M*N*bytes), the largest error against fp64 on the
same inputs, and the device's copy bandwidth measured in the same run as
the roofline. The backward cells time the backward kernel alone, given the
forward's output and an incoming gradient, so no backend pays for autograd.

The peers run in the same sweep, side by side (as tritonbench does): torch
eager, torch.compile, Liger-Kernel's Triton softmax and quack's softmax.
A peer that is not installed, or has no kernel for the op, gives a
``skipped`` record that says why. Records say how many times the L2 their
tensors are (``bytes_over_l2``): bandwidth claims want 4 or more, and the
full sweep sizes M for that.

On the CPU only the tiny shapes run, the Triton kernels (ours and Liger's)
in the interpreter: that proves the sweep end to end, and its timings mean
nothing.
"""
from __future__ import annotations

from typing import Callable, Collection, Iterable, Sequence

import torch

from refbench.kernelbench.timing import (copy_bandwidth_gbps, first_call, kernel_failure, l2_cache_bytes,
                                 on_gpu, time_ms)
from refbench.records.schema import cell_key, make_record

BACKENDS = ("torch", "compile", "triton", "liger", "quack")
# torch's own kernels: (forward, backward given output and gradient).
_TORCH_OPS = {
    "softmax": (torch.softmax, torch._softmax_backward_data),
    "log_softmax": (torch.log_softmax, torch._log_softmax_backward_data),
}
_BYTES_PER_ELEMENT = {"fwd": 2, "bwd": 3}  # tensors read + written, in units of M*N*itemsize
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64"}

# Full sweep: every power of two from 128 to 262144 plus odd sizes (vocabularies,
# unaligned rows), M large enough that a tensor is 4 times the L2 (at least 4096
# rows, at most 1 GiB), and the short-to-medium rows again at M = 32768.
_FULL_N = sorted([2**k for k in range(7, 19)] + [1000, 3000, 50257])
_TALL_N = [2**k for k in range(7, 14)]
_MAX_TENSOR_BYTES = 1 << 30
_L2_MULTIPLE = 4
# Named shape sets on a GPU; "gpu-check" is the fixed set of the short GPU check.
SHAPE_SETS = ("quick", "full", "gpu-check")
_QUICK_GPU_SHAPES = [(4096, 256), (4096, 4096), (1024, 65536)]
_GPU_CHECK_SHAPES = [(8192, n) for n in (128, 1024, 4096, 16384, 65536)]
# The last one is long enough for the long-row kernel.
_CPU_SHAPES = [(4, 128), (3, 1000), (2, 40000)]


def run_sweep(
    *,
    device: torch.device | str,
    dtypes: Iterable[torch.dtype | str],
    ops: Sequence[str] = ("softmax", "log_softmax"),
    directions: Sequence[str] = ("fwd", "bwd"),
    shapes: str = "full",
    run_id: str,
    env: dict,
    on_record: Callable[[dict], None] | None = None,
    only: Collection[tuple] | None = None,
) -> list[dict]:
    """Time every (op, dtype, shape, direction, backend) cell; return one record per cell.

    ``dtypes`` are torch dtypes or their names ("float16", "bf16", ...).
    ``shapes`` names the GPU shape set (``SHAPE_SETS``); a CPU always runs the
    tiny shapes. ``on_record`` sees each record as soon as it exists (to
    append it to a results file). ``only``, when given, is the set of cell
    keys (``refbench.records.schema.cell_key`` of ``planned_cells``' entries)
    to run; the others are left out without a record. A failing cell becomes
    an ``error`` (or ``oom``) record and the sweep goes on.
    """
    from refbench.kernels.softmax import softmax_backward, softmax_forward

    cases = _cases(device, dtypes, ops, directions, shapes)
    # The Triton kernels behind the same signatures as torch's.
    triton_ops = {
        op: (
            lambda x, dim, log=op == "log_softmax": softmax_forward(x, dim, log=log),
            lambda dy, y, dim, input_dtype, log=op == "log_softmax": softmax_backward(dy, y, dim, log=log),
        )
        for op in _TORCH_OPS
    }
    copy_gbps = copy_bandwidth_gbps(device)
    l2_bytes = l2_cache_bytes(device)
    records = []

    def emit(**fields):
        record = make_record(run_id=run_id, env=env, mode="kernel", **fields)
        records.append(record)
        if on_record is not None:
            on_record(record)

    for op, dtype, m, n, direction in cases:
        variant = _variant(dtype, m, n, direction)
        backends = [b for b in BACKENDS if only is None or _key(op, b, variant) in only]
        if not backends:
            continue
        nbytes = _BYTES_PER_ELEMENT[direction] * m * n * dtype.itemsize
        try:
            inputs, expected = _inputs(op, direction, m, n, dtype, device)
        except Exception as exc:  # noqa: BLE001 - the cell's failure is its record
            for backend in backends:
                emit(workload=op, backend=backend, variant=variant, **kernel_failure(exc))
            continue
        for backend in backends:
            try:
                fn = _kernel(backend, op, direction, triton_ops, device)
            except PeerUnavailable as reason:
                emit(workload=op, backend=backend, variant=variant, status="skipped", error=str(reason))
                continue
            try:
                metrics = _measure(lambda: fn(*inputs), expected, device, nbytes)
            except Exception as exc:  # noqa: BLE001
                emit(workload=op, backend=backend, variant=variant, **kernel_failure(exc))
                continue
            emit(workload=op, backend=backend, variant=variant, status="ok",
                 metrics={**metrics, "copy_gbps": copy_gbps, "bytes_over_l2": m * n * dtype.itemsize / l2_bytes})
    return records


def planned_cells(*, device: torch.device | str, dtypes: Iterable[torch.dtype | str],
                  ops: Sequence[str] = ("softmax", "log_softmax"), directions: Sequence[str] = ("fwd", "bwd"),
                  shapes: str = "full") -> list[dict]:
    """The cells ``run_sweep`` would time with these arguments, in its order, as record fields
    (workload, backend, mode, variant, batch_size); no GPU needed for the "quick" and "gpu-check" sets."""
    return [{"workload": op, "backend": backend, "mode": "kernel", "variant": _variant(dtype, m, n, direction),
             "batch_size": None}
            for op, dtype, m, n, direction in _cases(device, dtypes, ops, directions, shapes) for backend in BACKENDS]


def _cases(device, dtypes, ops, directions, shapes) -> list[tuple]:
    """(op, dtype, M, N, direction) in sweep order, the arguments checked."""
    unknown = (set(ops) - set(_TORCH_OPS)) | (set(directions) - set(_BYTES_PER_ELEMENT))
    if unknown:
        raise ValueError(f"unknown op or direction {sorted(unknown)}")
    if shapes not in SHAPE_SETS:
        raise ValueError(f"unknown shape set {shapes!r}; choose from {', '.join(SHAPE_SETS)}")
    l2_bytes = l2_cache_bytes(device) if shapes == "full" and on_gpu(device) else 0
    return [(op, dtype, m, n, direction)
            for op in ops for dtype in map(_as_dtype, dtypes)
            for m, n in _shapes(device, shapes, dtype, l2_bytes) for direction in directions]


def _variant(dtype: torch.dtype, m: int, n: int, direction: str) -> dict:
    return {"M": m, "N": n, "dtype": str(dtype).removeprefix("torch."), "direction": direction}


def _key(op: str, backend: str, variant: dict) -> tuple:
    return cell_key({"workload": op, "backend": backend, "mode": "kernel", "variant": variant, "batch_size": None})


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, _DTYPE_ALIASES.get(dtype, dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return value


def _shapes(device, shapes: str, dtype: torch.dtype, l2_bytes: int) -> list[tuple[int, int]]:
    if not on_gpu(device):
        return _CPU_SHAPES
    if shapes == "quick":
        return _QUICK_GPU_SHAPES
    if shapes == "gpu-check":
        return _GPU_CHECK_SHAPES
    rows = [max(4096, -(-_L2_MULTIPLE * l2_bytes // (n * dtype.itemsize))) for n in _FULL_N]
    wide = [(min(m, _MAX_TENSOR_BYTES // (n * dtype.itemsize)), n) for m, n in zip(rows, _FULL_N)]
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


class PeerUnavailable(Exception):
    """A backend that cannot run a cell here; its message is the skipped record's reason."""


def _liger_ops(op: str):
    if op != "softmax":
        raise PeerUnavailable("Liger-Kernel has no log-softmax kernel")
    try:
        from liger_kernel.ops import softmax as liger
        from liger_kernel.ops.utils import calculate_settings
    except ImportError as exc:
        raise PeerUnavailable(f"liger-kernel is not installed (pip install 'refbench[peers]'): {exc}") from None

    def backward(dy, y, dim, input_dtype):
        block, warps = calculate_settings(y.shape[-1])
        return liger._softmax_backward(dy, y, block, warps, y.shape[-1] > block)

    return lambda x, dim: liger.LigerSoftmaxFunction.apply(x), backward


def _quack_ops(op: str, device):
    if not on_gpu(device):
        raise PeerUnavailable("quack's kernels (CuTe DSL) run on CUDA only")
    if op != "softmax":
        raise PeerUnavailable("quack has no log-softmax kernel")
    try:
        from quack import softmax as quack

        forward, backward = quack.softmax_fwd, quack.softmax_bwd
    except (ImportError, AttributeError) as exc:
        raise PeerUnavailable(f"quack-kernels is not usable here ({type(exc).__name__}: {exc})") from None
    return lambda x, dim: forward(x), lambda dy, y, dim, input_dtype: backward(dy, y)


def _kernel(backend, op, direction, triton_ops, device) -> Callable:
    """The callable one cell times, or PeerUnavailable."""
    if backend == "compile" and not on_gpu(device):
        raise PeerUnavailable("torch.compile is timed on GPU only; on CPU its build would dominate")
    if backend == "liger":
        forward, backward = _liger_ops(op)
    elif backend == "quack":
        forward, backward = _quack_ops(op, device)
    else:
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
    out, first_call_s = first_call(fn, device)  # the first call compiles (torch.compile, Triton)
    ms = time_ms(fn, device)
    return {
        "time_ms": ms,
        "gbps": nbytes / (ms * 1e-3) / 1e9,
        "max_abs_err": (out.double() - expected).abs().max().item(),
        "first_call_s": first_call_s,
    }


