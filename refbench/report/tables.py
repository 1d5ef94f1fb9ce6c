"""Tables for the terminal: one row per record, shaped by the record's mode, fit to the terminal's width.

``render(rows, columns, style)`` prints text that fits ``width`` columns
(on a terminal its width, at least 80; into a pipe or a file, the whole
table): the widest text cells are cut with "~" first, then columns are left
out from the right, and a last line names what was left out;
``style="markdown"`` or ``"csv"`` gives the whole table. The row
builders (``run_row``, ``converge_row``, ``ddp_row``, ``kernel_row``) are how
a record of each mode reads in a table, with the metric table's headings.
"""
from __future__ import annotations

import csv
import io
import re
import shutil
import sys
from typing import Any, Sequence

import pandas as pd

from refbench.records.metrics import heading

STYLES = ("text", "markdown", "csv")
_MIN_CUT = 12          # a text column is never cut narrower than this
_NUMBER = re.compile(r"^(-|[+-]?[\d,]*\.?\d+(e[+-]?\d+)?(%|x|[kMG])?)$")


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or "-" where there is none (None or NaN): every table's number cell."""
    return "-" if value is None or pd.isna(value) else format(value, spec)


def terminal_width() -> int | None:
    """The terminal's width (at least 80), or None when the output is not a terminal."""
    return max(80, shutil.get_terminal_size((80, 24)).columns) if sys.stdout.isatty() else None


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, style: str = "text",
           width: int | None = None) -> str:
    """The rows as a table in ``style`` (module docstring); "(nothing)" when there are none."""
    if not rows:
        return "(nothing)"
    cells = [[_text(row.get(column)) for column in columns] for row in rows]
    if style == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        return out.getvalue().rstrip("\n")
    if style == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells])
    return _fit([list(columns), *cells], width or terminal_width() or sys.maxsize)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return " ".join(str(value).split())


def _fit(table: list[list[str]], width: int) -> str:
    """Columns two spaces apart (numbers right-aligned, text left), cut and then trimmed to ``width``."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    numeric = [all(_NUMBER.match(row[i]) for row in table[1:]) for i in range(len(widths))]

    def total(ws):
        return sum(ws) + 2 * (len(ws) - 1)

    while total(widths) > width:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= _MIN_CUT:
            break
        widths[widest] = max(_MIN_CUT, widths[widest] - (total(widths) - width))
    left_out = []
    while total(widths) > width and len(widths) > 1:
        left_out.insert(0, table[0][len(widths) - 1])
        widths.pop()
    lines = ["  ".join(_cut(row[i], w).rjust(w) if numeric[i] else _cut(row[i], w).ljust(w)
                       for i, w in enumerate(widths)).rstrip() for row in table]
    if left_out or any(len(row[i]) > w for row in table for i, w in enumerate(widths)):
        lines.append(f"(fit to {width} columns: " + (f"left out {', '.join(left_out)}; " if left_out else "")
                     + "--csv or --markdown print the whole table)")
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _label(record: dict[str, Any]) -> str:
    variant = record.get("variant") or {}
    return record["workload"] + "".join(f" {k}={v}" for k, v in variant.items() if not isinstance(v, dict))


RUN_COLUMNS = ["workload", "backend", "mode", "batch", "status", heading("samples_per_s"), heading("latency_ms.median"),
               "cv", "peak mem MB", "note"]


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    """A ``train``/``infer`` record as a row of ``refbench run``'s table."""
    metrics = record.get("metrics") or {}
    latency = metrics.get("latency_ms") or {}
    peak = metrics.get("peak_allocated_bytes", metrics.get("peak_rss_delta_bytes"))
    return {
        "workload": _label(record), "backend": record["backend"], "mode": record["mode"],
        "batch": record.get("batch_size"), "status": record["status"],
        heading("samples_per_s"): fmt(metrics.get("samples_per_s"), ",.0f"),
        heading("latency_ms.median"): fmt(latency.get("median"), ".3f"),
        "cv": fmt(latency.get("cv"), ".3f"),
        "peak mem MB": fmt(None if peak is None else peak / 2**20, ".1f"),
        "note": "unstable" if metrics.get("unstable") else None,
    }


CONVERGE_COLUMNS = ["workload", "backend", "recipe", "status", "seeds", "metric", "target", "mean", "std", "min",
                    "to target s", "steps", "train s", "parity", "vs fixed"]


def converge_row(record: dict[str, Any]) -> dict[str, Any]:
    """A convergence group's summary record as a row of ``refbench converge``'s table."""
    m = record["metrics"]
    seeds, parity, written = m.get("seeds") or {}, m.get("parity") or {}, m.get("as_written") or {}
    return {
        "workload": record["workload"] + (" as-written" if (record.get("variant") or {}).get("as_written") else ""),
        "backend": record["backend"], "recipe": m.get("recipe"), "status": record["status"],
        "seeds": fmt(seeds.get("n"), "d"), "metric": m.get("target_metric"), "target": m.get("threshold"),
        "mean": fmt(seeds.get("mean"), ".4f"), "std": fmt(seeds.get("std"), ".4f"),
        "min": fmt(seeds.get("min"), ".4f"),
        "to target s": fmt(m.get("time_to_target_s"), ".1f"), "steps": fmt(m.get("steps_to_target"), ".0f"),
        "train s": fmt(m.get("train_s"), ".1f"),
        "parity": "-" if parity.get("ok") is None else (
            f"{parity['delta']:+.4f} {'ok' if parity['ok'] else 'MISS'}" + (" FLAG" if parity.get("flag") else "")),
        "vs fixed": fmt(written.get("delta"), "+.4f"),
    }


DDP_COLUMNS = ["workload", "world", "scaling", "status", "samples/s", "efficiency", "p50 ms", "p90 ms", "all-reduce",
               "peak MB/rank"]


def ddp_row(record: dict[str, Any]) -> dict[str, Any]:
    """A ``ddp`` record (one world size) as a row of ``refbench ddp``'s table."""
    metrics, variant = record.get("metrics") or {}, record.get("variant") or {}
    step, peaks = metrics.get("step_ms") or {}, metrics.get("peak_mem_bytes_per_rank")
    return {"workload": record["workload"], "world": variant.get("world_size"), "scaling": variant.get("scaling"),
            "status": record["status"], "samples/s": fmt(metrics.get("samples_per_s"), ",.0f"),
            "efficiency": fmt(metrics.get("scaling_efficiency"), ".2f"), "p50 ms": fmt(step.get("median"), ".2f"),
            "p90 ms": fmt(step.get("p90"), ".2f"), "all-reduce": fmt(metrics.get("allreduce_share"), ".0%"),
            "peak MB/rank": " ".join(f"{p / 2**20:.0f}" for p in peaks) if peaks else None}


KERNEL_COLUMNS = ["kernel", "case", "backend", "status", "time_ms", "gbps", "tflops", "max_abs_err", "reason"]


def kernel_row(record: dict[str, Any]) -> dict[str, Any]:
    """A kernel sweep's record as a row of ``refbench kernels``' table."""
    metrics = record.get("metrics") or {}
    error = (record.get("error") or "").strip().splitlines()
    return {"kernel": record["workload"], "backend": record["backend"], "status": record["status"],
            "case": " ".join(f"{k}={v}" for k, v in (record.get("variant") or {}).items() if not isinstance(v, dict)),
            **{k: fmt(metrics.get(k), ".4g") for k in ("time_ms", "gbps", "tflops", "max_abs_err")},
            "reason": error[0] if error and record["status"] != "ok" else None}
