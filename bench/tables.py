"""Plain-text tables for the terminal."""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(nothing)")
        return
    frame = pd.DataFrame(list(rows)).reindex(columns=list(columns))
    print(frame.to_string(index=False, na_rep="-"))


def _fmt(value: float | None, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """One result record as a row of the run table."""
    metrics = record.get("metrics") or {}
    latency = metrics.get("latency_ms") or {}
    peak = metrics.get("peak_allocated_bytes", metrics.get("peak_rss_delta_bytes"))
    return {
        "workload": record["workload"] + "".join(f" {k}={v}" for k, v in (record.get("variant") or {}).items()),
        "backend": record["backend"], "mode": record["mode"], "batch": record.get("batch_size"),
        "status": record["status"],
        "samples/s": _fmt(metrics.get("samples_per_s"), ",.0f"),
        "median ms": _fmt(latency.get("median"), ".3f"),
        "cv": _fmt(latency.get("cv"), ".3f"),
        "peak mem MB": _fmt(None if peak is None else peak / 2**20, ".1f"),
        "note": "unstable" if metrics.get("unstable") else None,
    }
