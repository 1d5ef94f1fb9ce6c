"""The ``run`` runner: one matrix cell's Step, checked, then timed, in this process.

The order is the same for every backend:

1. ``prepare`` the Step (refbench.harness.step);
2. run the first step alone, timed and with its own memory window (it pays
   for compilation, cuDNN autotuning, lazy initialisation), and check its
   outputs and gradients against the fp64 reference (refbench.harness.correctness); a
   wrong answer ends the cell as ``failed``;
3. capture the step in a CUDA graph (``cudagraphs``), warm up until the
   step time is steady, then time ``iters`` steps (refbench.harness.timing) inside a
   second memory window;
4. on CUDA, count kernel launches (torch.profiler) and energy (NVML);
   FLOPs come from a count on the meta device (refbench.harness.flops).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from refbench.harness import backends
from refbench.harness.correctness import CHECK_SEED, check_step, compare, dropout_off, step_tensors
from refbench.harness.flops import step_flops, throughput_metrics
from refbench.run.matrix import Cell
from refbench.harness.memory import MemoryProbe
from refbench.harness.noise import LoadProbe, is_unstable
from refbench.run.settings import Settings
from refbench.harness.step import Step, prepare
from refbench.harness.timing import StepTimer, measure


@dataclass
class Outcome:
    """What measuring a cell gave; the record adds the cell and the run's context."""

    status: str
    error: str | None = None
    dataset: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def measure_cell(cell: Cell, settings: Settings) -> Outcome:
    """Measure one cell; a backend that finds it cannot run it gives ``skipped`` with the reason.

    Exceptions other than SkipCell propagate: the worker maps them to
    ``error`` or ``oom``.
    """
    if cell.skip:
        return Outcome("skipped", cell.skip)
    clock = _Clock()
    try:
        step = prepare(cell.workload, cell.backend, cell.mode, cell.batch_size, variant=cell.variant,
                       threads=settings.threads, keep_reference_state=settings.check)
        clock.lap("setup_s")
        return _measure(step, settings, clock)
    except backends.SkipCell as exc:
        return Outcome("skipped", str(exc))


def _measure(step: Step, settings: Settings, clock: "_Clock") -> Outcome:
    probe = MemoryProbe(step.device)
    timer = StepTimer(step.device)
    torch.manual_seed(CHECK_SEED)
    with probe.window("first_step_") as first_memory, dropout_off(step.model):
        first_ms = timer(step)
    clock.lap("first_step_s")
    check = check_step(step, timer.output) if settings.check else compare(
        step_tensors(timer.output, step.model if step.train else None), None, step.backend.precision)
    clock.lap("check_s")
    metrics: dict[str, Any] = {"first_step_ms": first_ms, **first_memory, "correctness": check.metrics(),
                               "max_abs_err": check.max_abs_err, "threads": torch.get_num_threads(),
                               "phases_s": clock.phases}
    if step.notes:
        metrics["backend_notes"] = step.notes
    if step.provenance:
        metrics["provenance"] = step.provenance
    if settings.check and not check.compared:
        metrics["correctness"]["note"] = "the step draws random numbers: checked for NaN/Inf only"
    if step.backend.compiled:
        metrics["compile_s"] = first_ms / 1e3
    if not check.ok:
        return Outcome("failed", "wrong answer: " + "; ".join(check.problems[:3]), "synthetic", metrics)

    captured_s = step.capture()
    if captured_s:
        metrics["capture_s"] = clock.lap("capture_s")
    load = LoadProbe().start()
    with probe.window("") as memory:
        timing = measure(step, step.device, iters=settings.iters, max_warmup=settings.max_warmup,
                         max_warmup_s=settings.max_warmup_s, min_warmup_s=settings.min_warmup_s)
    noise = load.stop(timing.measurement.cv, torch.get_num_threads())
    clock.phases["warmup_s"] = timing.warmup_s
    clock.lap("timed_s")
    clock.phases["timed_s"] -= timing.warmup_s
    median_s = timing.measurement.median / 1e3
    metrics.update({
        "samples_per_s": step.batch_size / median_s,
        "latency_ms": timing.measurement.summary(),
        "warmup_steps": timing.warmup_steps,
        "steady": timing.steady,
        "noise": noise,
        "unstable": is_unstable(noise),
        **memory,
    })
    last = compare(step_tensors(timing.last_output, None), None, step.backend.precision)
    if not last.ok:
        return Outcome("failed", "during the timed steps: " + "; ".join(last.problems[:3]), "synthetic", metrics)
    metrics.update(_extras(step, settings, median_s))
    clock.lap("extras_s")
    return Outcome("ok", None, "synthetic", metrics)


def _extras(step: Step, settings: Settings, median_s: float) -> dict[str, Any]:
    """FLOPs and MFU everywhere; kernel launches and energy on CUDA. A figure that cannot be had says why."""
    from refbench.harness.machine import collect_env

    extras: dict[str, Any] = {}
    try:
        flops, counted_on = step_flops(step.workload, step.variant, step.batch_size, step.mode)
        gpu = collect_env().get("gpu") if step.device.type == "cuda" else None
        extras.update(throughput_metrics(flops, median_s, gpu, step.backend.precision, counted_on))
    except Exception as exc:  # a model that cannot be counted on the meta device
        extras["flops_skipped"] = f"{type(exc).__name__}: {exc}"
    if step.device.type == "cuda":
        from refbench.harness.launches import kernel_launches
        from refbench.harness.power import energy

        extras.update(kernel_launches(step))
        extras.update(energy(step, step.device, step.batch_size, min_seconds=settings.energy_s))
    return extras


class _Clock:
    """Seconds spent in each phase of a cell."""

    def __init__(self):
        self.phases: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.phases[name] = now - self.last
        self.last = now
        return self.phases[name]
