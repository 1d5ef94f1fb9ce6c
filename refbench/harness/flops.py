"""FLOPs per step from ``torch.utils.flop_counter``, achieved TFLOP/s and MFU.

The count runs the workload's own step on the meta device (shapes only, no
arithmetic, no memory), so it costs nothing and does not depend on the
backend; a step that needs real data on the host (``pack_padded_sequence``
reads its lengths on the CPU) is counted once on the CPU instead: a cell's FLOPs are those of the fp32 model, and MFU compares the
achieved rate with the device's dense peak for the precision the backend
computes in. A device missing from ``PEAK_TFLOPS`` gets no MFU rather than
a guessed one.
"""
from __future__ import annotations

import re

import torch
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode

# Dense (no sparsity) peak TFLOP/s from NVIDIA's data sheets, by precision.
# Matched against torch.cuda.get_device_name() in order; the first match wins.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    (r"H100.*PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0, "int8": 1513.0}),
    (r"H100.*NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0, "fp16": 835.0, "int8": 1670.0}),
    (r"H100|H200|GH200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "int8": 1978.9}),
    (r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0}),
    (r"L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0, "int8": 733.0}),
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "int8": 242.0}),
    (r"\bA10\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0, "int8": 250.0}),
    (r"V100", {"fp32": 15.7, "fp16": 125.0}),
    (r"\bT4\b", {"fp32": 8.1, "fp16": 65.0, "int8": 130.0}),
]


def peak_tflops(device_name: str | None, precision: str) -> float | None:
    """The dense peak of ``device_name`` for ``precision``, or None when unknown."""
    if not device_name:
        return None
    for pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name):
            return peaks.get(precision)
    return None


class _TotalCounter(FlopCounterMode):
    """FlopCounterMode without its per-module breakdown, of which only the total is wanted here: the module
    tracker's backward hooks break ``autograd.grad(create_graph=True)`` (WGAN-GP's gradient penalty)."""

    def __init__(self):
        super().__init__(display=False)
        self.mod_tracker = _NoModules()


class _NoModules:
    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def step_flops(workload, variant: dict, batch_size: int, mode: str) -> tuple[int, str]:
    """FLOPs of one train step (forward and backward) or one inference step, and the device counted on
    ("meta", or "cpu" for a step that reads data on the host)."""
    try:
        return _count(workload, variant, batch_size, mode, "meta"), "meta"
    except (NotImplementedError, RuntimeError) as exc:
        if "meta" not in str(exc):
            raise
    return _count(workload, variant, batch_size, mode, "cpu"), "cpu"


def _count(workload, variant: dict, batch_size: int, mode: str, device: str) -> int:
    with torch.device(device):
        model = workload.make(**variant)
    batch = tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t,
                     workload.example_batch(batch_size, "cpu"))
    counter = _TotalCounter()
    if mode == "train":
        model.train()
        optimizer = workload.configure_optimizer(model, workload.recipe(workload.throughput_recipe))
        with counter:
            workload.train_step(model, batch, optimizer)
    else:
        model.eval()
        with counter:
            workload.eval_step(model, batch)
    return counter.get_total_flops()


def throughput_metrics(flops: int, step_s: float, device_name: str | None, precision: str,
                       counted_on: str = "meta") -> dict:
    """Achieved TFLOP/s and MFU (None where the device's peak is unknown)."""
    tflops = flops / step_s / 1e12
    peak = peak_tflops(device_name, precision)
    return {"flops_per_step": flops, "flops_counted_on": counted_on, "tflops": tflops, "peak_tflops": peak,
            "mfu": tflops / peak if peak else None}
