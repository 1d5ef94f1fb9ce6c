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


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or "-" where there is none (None or NaN): every table's number cell."""
    return "-" if value is None or pd.isna(value) else format(value, spec)


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """One result record as a row of the run table."""
    metrics = record.get("metrics") or {}
    latency = metrics.get("latency_ms") or {}
    peak = metrics.get("peak_allocated_bytes", metrics.get("peak_rss_delta_bytes"))
    return {
        "workload": record["workload"] + "".join(f" {k}={v}" for k, v in (record.get("variant") or {}).items()),
        "backend": record["backend"], "mode": record["mode"], "batch": record.get("batch_size"),
        "status": record["status"],
        "samples/s": fmt(metrics.get("samples_per_s"), ",.0f"),
        "median ms": fmt(latency.get("median"), ".3f"),
        "cv": fmt(latency.get("cv"), ".3f"),
        "peak mem MB": fmt(None if peak is None else peak / 2**20, ".1f"),
        "note": "unstable" if metrics.get("unstable") else None,
    }
