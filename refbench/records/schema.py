"""The result record: its fields, statuses and modes, and the one function that builds it.

One record per matrix cell (or kernel shape, convergence seed, data-parallel
world size). Every producer builds its records with ``make_record``, which
refuses a status, a mode or a metric the schema does not know
(refbench.records.metrics is the table of metrics); refbench.records.store
writes and reads them as JSON Lines.
"""
from __future__ import annotations

import datetime as _dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from refbench.records import metrics as metric_table

SCHEMA_VERSION = 1
STATUSES = {
    "ok": "measured, and the answer was right",
    "failed": "a wrong answer (correctness check, NaN/Inf), or a static check's problem",
    "missed": "a convergence group whose mean missed its target",
    "timeout": "no result within the cell's timeout; the cell was killed",
    "oom": "out of memory",
    "skipped": "the backend cannot run this cell; the error says why",
    "error": "the cell raised or its process died; the error holds the tail of its output",
    "not_run": "the run's time budget was used up before the cell started",
}
MATRIX_MODES = ("train", "infer")          # the modes of `refbench run`'s matrix
MODES = (*MATRIX_MODES, "converge", "kernel", "ddp", "benchmark")
# The eager backend of each device: a throughput cell's speed-up is against its device's base.
BASES = ("cpu", "cuda")
# Above this coefficient of variation of its step times a cell is "unstable" (pyperf warns at 10%).
UNSTABLE_CV = 0.10


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[type, ...]      # the JSON types it may have (NoneType where it may be null)
    description: str


_NONE = type(None)
RECORD_FIELDS = (
    Field("schema", (int,), "the record schema's version (this one: 1)"),
    Field("run_id", (str,), "the invocation that wrote it: UTC time and a random suffix"),
    Field("time", (str,), "when it was written, ISO 8601 UTC"),
    Field("env", (dict,), "the machine and software it was measured on (ENV_FIELDS)"),
    Field("workload", (str,), "the registered workload (or kernel, or pytest-benchmark's test name)"),
    Field("variant", (dict,), "the workload's options, resolved (defaults filled in)"),
    Field("backend", (str,), "the backend: names joined with '+', e.g. cpu+compile, cuda+amp-bf16"),
    Field("mode", (str,), "what was measured: " + ", ".join(MODES)),
    Field("batch_size", (int, _NONE), "samples per step"),
    Field("dataset", (str, _NONE), "the data set the cell really used (synthetic for throughput cells)"),
    Field("status", (str,), "the outcome: " + ", ".join(STATUSES)),
    Field("error", (str, _NONE), "why it is not ok, in words (a traceback's tail for an error)"),
    Field("metrics", (dict,), "the figures, each named in refbench.records.metrics (docs/records.md)"),
)
FIELDS = tuple(f.name for f in RECORD_FIELDS)
# The fields of ``variant`` that readers use, by mode (the rest of a variant is the workload's own options).
VARIANT_FIELDS = {
    "ddp": (Field("world_size", (int,), "ranks in the world"), Field("scaling", (str,), "weak or strong")),
    "kernel": (Field("direction", (str, _NONE), "fwd or bwd"), Field("dtype", (str, _NONE), "the softmax's dtype"),
               Field("precision", (str, _NONE), "the conv2d's precision"),
               Field("layer", (dict, _NONE), "the conv2d layer's shape")),
}
ENV_FIELDS = {
    "refbench": "refbench's version", "git_commit": "the commit of the refbench that measured (12 hex digits)",
    "torch": "torch's version", "cuda": "CUDA's version (GPU)", "cudnn": "cuDNN's version (GPU)",
    "triton": "Triton's version", "python": "Python's version", "cpu": "the CPU's model name",
    "cpu_count": "logical CPUs", "threads": "torch CPU threads of the processes that measured",
    "host": "the host's name", "gpu": "the GPU's name", "gpu_count": "GPUs", "driver": "the GPU driver's version",
    "gpu_memory_bytes": "the GPU's memory", "compute_capability": "the GPU's compute capability",
    "env_key": "a hash of what makes two results comparable: gpu, cuda, cudnn, torch, triton, cpu, threads",
}


def new_run_id() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def make_record(
    *,
    run_id: str,
    env: dict[str, Any],
    workload: str,
    backend: str,
    mode: str,
    status: str,
    variant: dict[str, Any] | None = None,
    batch_size: int | None = None,
    dataset: str | None = None,
    error: str | None = None,
    metrics: dict[str, Any] | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    """Build one schema-complete record; an unknown status, mode or metric raises ValueError.

    ``time`` is now unless the measurement happened earlier (a pytest-benchmark file's own date).
    """
    unknown = metric_table.unknown(metrics or {})
    if unknown:
        raise ValueError(f"metrics {', '.join(unknown)} are not in refbench.records.metrics.METRICS; add them there")
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "time": time or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "env": env,
        "workload": workload,
        "variant": dict(variant or {}),
        "backend": backend,
        "mode": mode,
        "batch_size": batch_size,
        "dataset": dataset,
        "status": status,
        "error": error,
        "metrics": dict(metrics or {}),
    }


def cell_key(record: dict[str, Any]) -> tuple:
    """What identifies a matrix cell across runs (used by --resume and compare)."""
    variant = json.dumps(record.get("variant") or {}, sort_keys=True)
    return (record["workload"], variant, record["backend"], record["mode"], record.get("batch_size"))
