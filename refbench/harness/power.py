"""GPU energy from NVML's cumulative energy counter (nvidia-ml-py).

The counter (millijoules since the driver loaded) updates every few tens of
milliseconds, too coarse for a timed window of a few milliseconds, so the
energy window repeats the timed step for at least ``min_seconds`` right
after timing. Without NVML (no GPU, no driver library, a GPU older than
Volta) the figures are left empty and ``energy_skipped`` says why.
"""
from __future__ import annotations

import time
from typing import Callable

import torch


def _handle(device_index: int):
    import pynvml

    pynvml.nvmlInit()
    uuid = getattr(torch.cuda.get_device_properties(device_index), "uuid", None)
    if uuid is not None:
        text = str(uuid)
        return pynvml.nvmlDeviceGetHandleByUUID(text if text.startswith("GPU-") else f"GPU-{text}")
    return pynvml.nvmlDeviceGetHandleByIndex(device_index)


def energy(step: Callable[[], object], device, samples_per_step: int, *, min_seconds: float = 1.0) -> dict:
    """Run ``step`` for at least ``min_seconds``; return joules per sample and mean watts, or the reason there are none."""
    device = torch.device(device)
    if device.type != "cuda":
        return {"energy_skipped": "NVML measures GPU energy only"}
    try:
        import pynvml

        handle = _handle(device.index or 0)
        read = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # noqa: E731  millijoules
        read()
    except Exception as exc:  # no library, no permission, unsupported GPU
        return {"energy_skipped": f"NVML energy counter unavailable: {type(exc).__name__}: {exc}"}
    torch.cuda.synchronize(device)
    start_mj, start_s, steps = read(), time.perf_counter(), 0
    while steps == 0 or time.perf_counter() - start_s < min_seconds:
        step()
        steps += 1
        if steps % 10 == 0:
            torch.cuda.synchronize(device)
    torch.cuda.synchronize(device)
    joules, seconds = (read() - start_mj) / 1e3, time.perf_counter() - start_s
    return {"joules_per_sample": joules / (steps * samples_per_step), "mean_watts": joules / seconds,
            "energy_window_s": seconds}
