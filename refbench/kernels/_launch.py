"""The one place this package launches a Triton kernel.

Every launch goes through ``launch``, so that inside ``recorded_launches()``
the launches are collected instead of run: their kernel, grid and arguments,
exactly as the host code chose them. That lets a kernel be compiled ahead of
time for a GPU this machine does not have (``refbench.kernelbench.static``): tensors
on the ``meta`` device carry the shapes and strides, and the recording says
how many multiprocessors and how much L2 the target has, for the host code
that sizes grids.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch


@dataclass(frozen=True)
class Launch:
    kernel: Any  # a @triton.jit function or the triton.autotune wrapper around one
    grid: tuple | Callable
    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass
class _Recording:
    multiprocessors: int
    l2_bytes: int
    launches: list[Launch] = field(default_factory=list)


_RECORDING: contextvars.ContextVar[_Recording | None] = contextvars.ContextVar("kernels_recording", default=None)


def launch(kernel, grid, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)``, or its record inside ``recorded_launches()``."""
    recording = _RECORDING.get()
    if recording is None:
        kernel[grid](*args, **kwargs)
    else:
        recording.launches.append(Launch(kernel, grid, args, kwargs))


@contextlib.contextmanager
def recorded_launches(*, multiprocessors: int, l2_bytes: int) -> Iterator[list[Launch]]:
    """Collect the launches made inside the block (none of them run) for a GPU with
    ``multiprocessors`` SMs and ``l2_bytes`` of L2 cache."""
    recording = _Recording(multiprocessors, l2_bytes)
    token = _RECORDING.set(recording)
    try:
        yield recording.launches
    finally:
        _RECORDING.reset(token)


def recording() -> bool:
    return _RECORDING.get() is not None


def device_limits(device: torch.device) -> tuple[int, int]:
    """(SMs, L2 bytes) that launches on ``device`` will have: the recording's, the CUDA
    device's, else one SM and 1 MiB (the interpreter)."""
    recording = _RECORDING.get()
    if recording is not None:
        return recording.multiprocessors, recording.l2_bytes
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return properties.multi_processor_count, properties.L2_cache_size
    return 1, 1 << 20
