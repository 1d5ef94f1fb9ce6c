"""Run a matrix of cells (workload x variant x backend x mode x batch size).

Timing follows timm's benchmark runners: one routine per mode (train,
infer) sharing warm-up, timing and the result dict.
"""
from __future__ import annotations

import itertools
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from bench import backends
from bench.environment import collect_env
from bench.memory import peak_memory
from bench.results import ResultWriter, make_record, new_run_id
from bench.timing import measure
from reference_models import RefbenchError, get_model

MODES = ("train", "infer")


@dataclass(frozen=True)
class Cell:
    workload: str
    backend: str
    mode: str
    batch_size: int
    variant: dict[str, Any] = field(default_factory=dict)


@dataclass
class MatrixSpec:
    workloads: list[str]
    backends: list[str]
    modes: list[str]
    batch_sizes: list[int]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    iters: int = 20

    def validate(self) -> None:
        for name in self.workloads:
            get_model(name)
        for name in self.backends:
            backends.resolve(name)
        bad_modes = [m for m in self.modes if m not in MODES]
        if bad_modes:
            raise RefbenchError(f"unknown mode {', '.join(bad_modes)}; use {' or '.join(MODES)}")
        bad_sizes = [b for b in self.batch_sizes if b < 1]
        if bad_sizes:
            raise RefbenchError(f"batch sizes must be positive integers, got {bad_sizes}")
        if self.iters < 1:
            raise RefbenchError(f"--iters must be at least 1, got {self.iters}")

    def cells(self) -> Iterable[Cell]:
        for w, b, m, bs in itertools.product(self.workloads, self.backends, self.modes, self.batch_sizes):
            yield Cell(w, b, m, bs, self.variants.get(w, {}))


def measure_cell(cell: Cell, *, iters: int = 20) -> tuple[str, dict[str, Any], str | None]:
    """Measure one cell in this process: (dataset label, metrics, skip reason)."""
    workload = get_model(cell.workload)
    backend = backends.resolve(cell.backend)
    reason = backend.skip_reason()
    if reason:
        return "synthetic", {}, reason
    device = torch.device(backend.device)
    torch.manual_seed(0)
    model = workload.make(**cell.variant).to(device)
    batch = workload.example_batch(cell.batch_size, device)
    if cell.mode == "train":
        model.train()
        optimizer = workload.configure_optimizer(model, workload.recipe("fast"))
        step: Callable[[], object] = lambda: workload.train_step(model, batch, optimizer)
    else:
        model.eval()
        step = lambda: workload.eval_step(model, batch)
    with peak_memory(device) as memory:
        timing = measure(step, device, iters=iters)
    median_s = timing.measurement.median / 1e3
    metrics = {
        "samples_per_s": cell.batch_size / median_s,
        "latency_ms": timing.measurement.summary(),
        "first_step_ms": timing.first_step_ms,
        "warmup_steps": timing.warmup_steps,
        "steady": timing.steady,
        **memory,
    }
    return "synthetic", metrics, None


def run_matrix(spec: MatrixSpec, out: str, *, on_record: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Run every cell, appending each record to ``out`` as it ends; a failing cell is recorded, not raised."""
    spec.validate()
    run_id, env = new_run_id(), collect_env()
    records = []
    with ResultWriter(out) as writer:
        for cell in spec.cells():
            try:
                dataset, metrics, skip = measure_cell(cell, iters=spec.iters)
                status, error = ("skipped", skip) if skip else ("ok", None)
            except Exception as exc:  # one broken cell must not stop the matrix
                dataset, metrics, status = None, {}, "error"
                error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            record = make_record(run_id=run_id, env=env, workload=cell.workload, variant=cell.variant,
                                 backend=cell.backend, mode=cell.mode, batch_size=cell.batch_size,
                                 dataset=dataset, status=status, error=error, metrics=metrics)
            writer.append(record)
            records.append(record)
            on_record(record)
    return records
