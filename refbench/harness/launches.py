"""Kernel launches per step on CUDA, counted with torch.profiler.

Small models are launch-bound on a GPU: their step time is the number of
kernels times a few microseconds of launch latency. Counting the kernels a
step runs, and the host-side launch calls it makes (one ``cudaGraphLaunch``
for a whole captured step), explains such results.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

_LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                 "cudaGraphLaunch", "cudaMemcpyAsync", "cudaMemsetAsync")


def kernel_launches(step: Callable[[], object], *, steps: int = 3) -> dict[str, float]:
    """GPU kernels (memcpy/memset included) and host launch calls per step, averaged over ``steps``."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels = sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)
    calls = sum(1 for e in prof.events() if e.device_type == DeviceType.CPU and e.name in _LAUNCH_CALLS)
    return {"kernels_per_step": kernels / steps, "launch_calls_per_step": calls / steps}
