"""One matrix cell measured in this process: build, check, time, count.

The order matters and is the same for every backend:

1. build the model of the cell's variant (seed 0) and apply the backend's
   transformations; copy the weights to fp64 for the reference;
2. run the first step alone, timed and with its own memory window (it pays
   for compilation, cuDNN autotuning, lazy initialisation), and check its
   outputs and gradients against the fp64 CPU reference (bench.correctness);
   a wrong answer ends the cell as ``failed``;
3. capture the whole step in a CUDA graph (``cudagraphs``), warm up until
   the step time is steady, then time ``iters`` steps (bench.timing) inside
   a second memory window;
4. on CUDA, count kernel launches (torch.profiler) and energy (NVML);
   FLOPs come from a count on the meta device (bench.flops).

For ``cudagraphs`` the checked step is the eager step before capture: the
captured graph replays that same sequence of kernels.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench import backends
from bench.correctness import (CHECK_SEED, compare, dropout_off, fp64_copy, reference_step, replay_step,
                               step_tensors)
from bench.flops import step_flops, throughput_metrics
from bench.memory import MemoryProbe
from bench.timing import StepTimer, measure
from reference_models import get_workload


@dataclass(frozen=True)
class CellSpec:
    """Everything a worker needs to measure one cell (JSON-serialisable)."""

    workload: str
    backend: str
    mode: str
    batch_size: int
    variant: dict[str, Any] = field(default_factory=dict)
    iters: int = 20
    max_warmup: int = 50
    max_warmup_s: float = 30.0
    check: bool = True
    energy_s: float = 1.0
    threads: int | None = None       # CPU threads for torch (None: torch's default)
    fresh_compile_cache: bool = False  # an empty Inductor/Triton cache, so compile_s is a cold compile
    imports: tuple[str, ...] = ()    # modules that register extra workloads (tests, plug-ins)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "imports": list(self.imports)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CellSpec":
        return cls(**{**data, "imports": tuple(data.get("imports", ()))})


@dataclass
class Outcome:
    status: str
    variant: dict[str, Any]
    dataset: str | None = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def measure_cell(spec: CellSpec) -> Outcome:
    """Measure one cell; a backend that cannot run it gives a ``skipped`` outcome with the reason.

    Exceptions other than SkipCell propagate: the worker maps them to
    ``error`` or ``oom``.
    """
    workload = get_workload(spec.workload)
    backend = backends.resolve(spec.backend)
    variant = workload.resolve_variant(**spec.variant)
    reason = backend.skip_reason(workload, spec.mode)
    if reason:
        return Outcome("skipped", variant, error=reason)
    try:
        variant = backend.variant_for(workload, spec.variant)
        return _measure(spec, workload, backend, variant)
    except backends.SkipCell as exc:
        return Outcome("skipped", variant, error=str(exc))


def _measure(spec: CellSpec, workload, backend: backends.Backend, variant: dict[str, Any]) -> Outcome:
    phases: dict[str, float] = {}
    clock = _Clock(phases)
    train = spec.mode == "train"
    if spec.threads:
        torch.set_num_threads(spec.threads)
    backend.configure()
    device = torch.device(backend.device)
    probe = MemoryProbe(device)

    torch.manual_seed(0)
    model = workload.make(**variant).to(device)
    provenance = workload.provenance(model)
    model, notes = backend.transform_model(model)
    model.train(train)
    batch = backend.transform_batch(workload.example_batch(spec.batch_size, device))
    state = fp64_copy(model.state_dict()) if spec.check else None
    model = backend.quantize(model)
    if train:
        optimizer = _optimizer(workload, model, backend)
        scaler = backend.grad_scaler(spec.mode)
        step = backend.make_step(lambda: workload.train_step(model, batch, optimizer, scaler=scaler))
    else:
        step = backend.make_step(lambda: workload.eval_step(model, batch))
    clock.lap("setup_s")

    timer = StepTimer(device)
    torch.manual_seed(CHECK_SEED)
    with probe.window("first_step_") as first_memory, dropout_off(model):
        first_ms = timer(step)
    clock.lap("first_step_s")
    live = step_tensors(timer.output, model if train else None)
    reference = eager = None
    if spec.check:
        def run(m, b):
            if train:
                return workload.train_step(m, b, workload.configure_optimizer(m, workload.recipe(workload.throughput_recipe)))
            return workload.eval_step(m, b)

        def build():
            return workload.make(**variant)

        reference = reference_step(build, state, batch, run, train=train)
        if reference is not None:
            eager = live if not backend.modifiers else _eager_fp32(build, state, batch, run, train, device)
    check = compare(live, reference, backend.precision, eager)
    clock.lap("check_s")
    metrics: dict[str, Any] = {"first_step_ms": first_ms, **first_memory, "correctness": check.metrics(),
                               "max_abs_err": check.max_abs_err, "phases_s": phases}
    if notes:
        metrics["backend_notes"] = notes
    if provenance:
        metrics["provenance"] = provenance
    if spec.check and reference is None:
        metrics["correctness"]["note"] = "the step draws random numbers: checked for NaN/Inf only"
    if backend.compiled:
        metrics["compile_s"] = first_ms / 1e3
    if not check.ok:
        return Outcome("failed", variant, "synthetic", "wrong answer: " + "; ".join(check.problems[:3]), metrics)

    if backend.capturable_optimizer:
        step = backend.capture(step)
        metrics["capture_s"] = clock.lap("capture_s")
    with probe.window("") as memory:
        timing = measure(step, device, iters=spec.iters, max_warmup=spec.max_warmup,
                         max_warmup_s=spec.max_warmup_s)
    phases["warmup_s"] = timing.warmup_s
    clock.lap("timed_s")
    phases["timed_s"] -= timing.warmup_s
    median_s = timing.measurement.median / 1e3
    metrics.update({
        "samples_per_s": spec.batch_size / median_s,
        "latency_ms": timing.measurement.summary(),
        "warmup_steps": timing.warmup_steps,
        "steady": timing.steady,
        **memory,
    })
    last = compare(step_tensors(timing.last_output, None), None, backend.precision)
    if not last.ok:
        return Outcome("failed", variant, "synthetic", "during the timed steps: " + "; ".join(last.problems[:3]),
                       metrics)

    metrics.update(_extras(spec, workload, backend, variant, step, median_s, device))
    clock.lap("extras_s")
    return Outcome("ok", variant, "synthetic", None, metrics)


def _eager_fp32(build, state, batch, run, train: bool, device) -> dict[str, torch.Tensor]:
    """The checked step in plain eager fp32 (TF32 off) on the cell's device: the yardstick of rounding."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return replay_step(build, state, batch, run, train=train, device=device, dtype=torch.float32)[0]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def _optimizer(workload, model, backend: backends.Backend):
    recipe = workload.recipe(workload.throughput_recipe)
    if backend.capturable_optimizer:
        with contextlib.suppress(TypeError):  # optimizers without the option (SGD) are capturable as they are
            return workload.configure_optimizer(model, recipe, capturable=True)
    return workload.configure_optimizer(model, recipe)


def _extras(spec, workload, backend, variant, step, median_s: float, device) -> dict[str, Any]:
    """FLOPs and MFU everywhere; kernel launches and energy on CUDA. A figure that cannot be had says why."""
    from bench.environment import collect_env

    extras: dict[str, Any] = {}
    try:
        flops = step_flops(workload, variant, spec.batch_size, spec.mode)
        extras.update(throughput_metrics(flops, median_s, collect_env().get("gpu") if device.type == "cuda" else None,
                                         backend.precision))
    except Exception as exc:  # a model that cannot be built on the meta device
        extras["flops_skipped"] = f"{type(exc).__name__}: {exc}"
    if device.type == "cuda":
        from bench.launches import kernel_launches
        from bench.power import energy

        extras.update(kernel_launches(step))
        extras.update(energy(step, device, spec.batch_size, min_seconds=spec.energy_s))
    return extras


class _Clock:
    """Seconds spent in each phase of a cell, written into ``phases``."""

    def __init__(self, phases: dict[str, float]):
        self.phases, self.last = phases, time.perf_counter()

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.phases[name] = now - self.last
        self.last = now
        return self.phases[name]
