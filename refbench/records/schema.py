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
from typing import Any

from refbench.records import metrics as metric_table

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "missed", "timeout", "oom", "skipped", "error", "not_run")
MATRIX_MODES = ("train", "infer")          # the modes of `refbench run`'s matrix
MODES = (*MATRIX_MODES, "converge", "kernel", "ddp")
# The eager backend of each device: a throughput cell's speed-up is against its device's base.
BASES = ("cpu", "cuda")
# Above this coefficient of variation of its step times a cell is "unstable" (pyperf warns at 10%).
UNSTABLE_CV = 0.10
FIELDS = (
    "schema", "run_id", "time", "env", "workload", "variant", "backend", "mode",
    "batch_size", "dataset", "status", "error", "metrics",
)


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
) -> dict[str, Any]:
    """Build one schema-complete record; an unknown status, mode or metric raises ValueError."""
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
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
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
