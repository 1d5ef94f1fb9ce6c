"""Timing and rooflines for kernel sweeps (``refbench kernels``).

On a GPU, times come from ``triton.testing.do_bench`` (CUDA events, L2 flushed
between repetitions) and the roofline from a device-to-device copy and a
matmul measured in the same run. On the CPU the Triton interpreter runs the
kernels: times are taken with ``perf_counter`` only so the sweep runs end to
end, and mean nothing about the kernels' speed.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def kernel_failure(exc: Exception) -> dict:
    """The status and error fields of a kernel case that raised: ``oom`` for CUDA out-of-memory, else ``error``."""
    status = "oom" if isinstance(exc, torch.cuda.OutOfMemoryError) else "error"
    return {"status": status, "error": f"{type(exc).__name__}: {exc}"[-2000:]}


def on_gpu(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def time_ms(fn: Callable[[], object], device: torch.device | str, *, reps: int = 3) -> float:
    """Median milliseconds of one call of ``fn``."""
    if on_gpu(device):
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
    fn()  # warm-up: first interpreter call pays for tracing
    samples = []
    for _ in range(reps):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def first_call(fn: Callable[[], object], device: torch.device | str) -> tuple[object, float]:
    """``fn()`` and its seconds, the device synchronized before the clock stops."""
    start = time.perf_counter()
    out = fn()
    if on_gpu(device):
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def l2_cache_bytes(device: torch.device | str) -> int:
    """The device's L2 cache; on the CPU, 1 MiB (the figure only scales ``bytes_over_l2``)."""
    if on_gpu(device):
        return torch.cuda.get_device_properties(device).L2_cache_size
    return 1 << 20


def copy_bandwidth_gbps(device: torch.device | str, nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + bytes written)."""
    if not on_gpu(device):
        nbytes = 1 << 26
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def matmul_peak_tflops(device: torch.device | str, dtype: torch.dtype, n: int = 8192) -> float:
    """Achieved dense matmul TFLOP/s for ``dtype`` (TF32 follows torch's current setting)."""
    if not on_gpu(device):
        n = 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = time_ms(lambda: a @ b, device)
    return 2 * n**3 / (ms * 1e-3) / 1e12
