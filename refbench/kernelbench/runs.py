"""``refbench kernels softmax|conv2d``: run a kernel sweep and append its records to a file.

The conv2d sweep takes its layers from the registered workloads that declare
``kernel_sweep_layers``.
"""
from __future__ import annotations

import os
from typing import Callable, Collection

import torch

from refbench.harness.machine import collect_env
from refbench.records.schema import new_run_id
from refbench.records.store import ResultWriter
from refbench.harness.triton_mode import interpreting
from refbench.models import get_workload, list_models
from refbench.errors import RefbenchError

KERNELS = ("softmax", "conv2d")
GPU_DTYPES = ("float32", "float16", "bfloat16")
GPU_CHECK_DTYPES = ("float32", "bfloat16")
CPU_NOTE = ("on CPU the Triton kernels run in the interpreter: this proves the sweep end to end, "
            "and its timings mean nothing")


def conv_layers() -> list[dict]:
    """The Conv2d layers of every workload that declares ``kernel_sweep_layers``, each named ``workload.module``."""
    from refbench.kernelbench.conv2d import conv_layers_of

    layers = []
    for name in list_models():
        workload = get_workload(name)
        if workload.kernel_sweep_layers:
            layers += conv_layers_of(workload.make(), workload.input_shape, name)
    return layers


def default_dtypes(device: str, shapes: str) -> tuple[str, ...]:
    """The softmax sweep's dtypes when none are asked for."""
    if torch.device(device).type != "cuda":
        return ("float32",)
    return GPU_CHECK_DTYPES if shapes == "gpu-check" else GPU_DTYPES


def run_kernel_sweep(kernel: str, *, device: str | None = None, shapes: str = "full", out: str | os.PathLike,
                     dtypes=None, log: Callable[[str], None] = print,
                     on_record: Callable[[dict], None] = lambda record: None,
                     only: Collection[tuple] | None = None) -> list[dict]:
    """Run one kernel's sweep (``shapes``: "full", "quick" or "gpu-check") and append its records to ``out``;
    ``on_record`` sees each record once it is written; ``only`` limits it to those cell keys (the sweep's
    ``planned_cells``)."""
    if kernel not in KERNELS:
        raise RefbenchError(f"unknown kernel {kernel!r}; choose from {', '.join(KERNELS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise RefbenchError("--device cuda asked for, but this machine has no CUDA device")
    if torch.device(device).type == "cpu":
        if not interpreting():
            raise RefbenchError("on a CPU the Triton kernels run only in Triton's interpreter: set TRITON_INTERPRET=1 "
                                "before triton is imported (the refbench command does so on a machine without a GPU)")
        log(f"note: {CPU_NOTE}")
    run_id, env = new_run_id(), collect_env()
    with ResultWriter(out) as writer:
        def record(r: dict) -> None:
            writer.append(r)
            on_record(r)

        if kernel == "softmax":
            from refbench.kernelbench.softmax import run_sweep

            return run_sweep(device=device, dtypes=list(dtypes or default_dtypes(device, shapes)), shapes=shapes,
                             run_id=run_id, env=env, on_record=record, only=only)
        from refbench.kernelbench.conv2d import run_sweep

        return run_sweep(device=device, layers=conv_layers(), shapes=shapes, run_id=run_id, env=env,
                         on_record=record, only=only)
