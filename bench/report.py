"""The Markdown report of result files: the matrix at a glance.

For every mode and batch size: samples/s of each workload on each backend,
the speed-up of each backend over its base device (``cpu+compile`` over
``cpu``, ``cuda+amp-bf16`` over ``cuda``) with the geometric mean over the
workloads both ran, median step latency, peak memory, and the further
figures a cell has (first step, compile time, TFLOP/s, MFU, energy, kernel
launches, correctness error); then every cell that did not run, with why.
When a cell appears more than once (a resumed run), its last record counts.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.results import cell_key, read_results

MATRIX_MODES = ("train", "infer")


def _label(record: dict) -> str:
    variant = record.get("variant") or {}
    return record["workload"] + "".join(f" {k}={v}" for k, v in variant.items())


def _base(backend: str) -> str:
    first = backend.split("+")[0]
    return first if first in ("cpu", "cuda") else "cuda"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("-" if v is None else str(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _num(value: float | None, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def geomean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def latest(records: Iterable[dict]) -> list[dict]:
    """One record per matrix cell, the last one seen."""
    cells: dict[tuple, dict] = {}
    for record in records:
        if record.get("mode") in MATRIX_MODES:
            cells[cell_key(record)] = record
    return list(cells.values())


def _environment(records: list[dict]) -> list[str]:
    envs = {r["env"].get("env_key"): r["env"] for r in records if r.get("env")}
    lines = []
    for env in envs.values():
        device = env.get("gpu") or env.get("cpu")
        lines.append(f"- {device}; torch {env.get('torch')}, CUDA {env.get('cuda')}, triton {env.get('triton')}, "
                     f"{env.get('threads')} CPU threads, host {env.get('host')}, commit {env.get('git_commit')}")
    return lines + [""]


def _section(records: list[dict], mode: str, batch_size: int) -> list[str]:
    cells = [r for r in records if r["mode"] == mode and r.get("batch_size") == batch_size]
    ok = {(_label(r), r["backend"]): r for r in cells if r["status"] == "ok"}
    if not ok:
        return []
    workloads = sorted({_label(r) for r in cells})
    backends = list(dict.fromkeys(r["backend"] for r in cells if r["status"] == "ok"))
    metric = lambda w, b, key: (ok[(w, b)]["metrics"].get(key) if (w, b) in ok else None)  # noqa: E731
    out = [f"## {mode}, batch size {batch_size}", "", "Samples per second (higher is better):", ""]
    out += _table(["workload", *backends],
                  [[w, *(_num(metric(w, b, "samples_per_s"), ",.0f") for b in backends)] for w in workloads])

    others = [b for b in backends if b != _base(b)]
    if others:
        rows, ratios = [], {b: [] for b in others}
        for w in workloads:
            row = [w]
            for b in others:
                mine, base = metric(w, b, "samples_per_s"), metric(w, _base(b), "samples_per_s")
                ratio = mine / base if mine and base else None
                if ratio:
                    ratios[b].append(ratio)
                row.append(_num(ratio, ".2f"))
            rows.append(row)
        rows.append(["**geomean**", *(_num(geomean(ratios[b]), ".2f") for b in others)])
        out += ["Speed-up over the base device (cpu or cuda eager):", ""]
        out += _table(["workload", *(f"{b} / {_base(b)}" for b in others)], rows)

    latency = lambda w, b: (ok[(w, b)]["metrics"].get("latency_ms") or {}) if (w, b) in ok else {}  # noqa: E731
    out += ["Median step latency in microseconds (p10-p90):", ""]
    out += _table(["workload", *backends], [[w, *(
        f"{latency(w, b)['median'] * 1e3:,.0f} ({latency(w, b)['p10'] * 1e3:,.0f}-{latency(w, b)['p90'] * 1e3:,.0f})"
        if latency(w, b) else None for b in backends)] for w in workloads])

    def memory(w, b, prefix=""):
        m = ok[(w, b)]["metrics"] if (w, b) in ok else {}
        value = m.get(f"{prefix}peak_allocated_bytes", m.get(f"{prefix}peak_rss_delta_bytes"))
        return None if value is None else value / 2**20

    out += ["Peak memory in MiB during the timed steps / the first step (CUDA: allocated; CPU: RSS growth):", ""]
    out += _table(["workload", *backends], [[w, *(
        f"{memory(w, b):,.1f} / {memory(w, b, 'first_step_'):,.1f}" if memory(w, b) is not None else None
        for b in backends)] for w in workloads])
    return out + _details(sorted(ok.values(), key=lambda r: (_label(r), backends.index(r["backend"]))))


def _details(records: list[dict]) -> list[str]:
    rows = []
    for r in records:
        m = r["metrics"]
        correctness = m.get("correctness") or {}
        rows.append([_label(r), r["backend"], _num(m.get("first_step_ms"), ",.1f"), _num(m.get("compile_s"), ".1f"),
                     _num(m.get("tflops"), ".3f"), _num(m.get("mfu"), ".1%"),
                     _num(m.get("joules_per_sample"), ".2e"), _num(m.get("kernels_per_step"), ".0f"),
                     _num((m.get("latency_ms") or {}).get("cv"), ".3f"),
                     _num(correctness.get("max_rel_err"), ".1e") + ("" if correctness.get("compared", True) else " (finite only)")
                     if correctness else None])
    return ["Details:", ""] + _table(
        ["workload", "backend", "first step ms", "compile s", "TFLOP/s", "MFU", "J/sample", "kernels/step",
         "CV", "rel. error vs fp64"], rows)


def _not_run(records: list[dict]) -> list[str]:
    bad = [r for r in records if r["status"] != "ok"]
    if not bad:
        return []
    counts = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    out = ["## Cells that did not give a measurement", "",
           "Status counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), ""]
    rows = []
    for r in sorted(bad, key=lambda r: (r["status"], _label(r), r["backend"], r["mode"])):
        reason = (r.get("error") or "").strip().splitlines()
        reason = reason[0] if r["status"] == "skipped" or len(reason) == 1 else " ".join(reason[-2:])
        rows.append([_label(r), r["backend"], r["mode"], r.get("batch_size"), r["status"],
                     reason[:200].replace("|", "/")])
    return out + _table(["workload", "backend", "mode", "batch", "status", "reason"], rows)


def render(records: Iterable[dict], *, title: str = "refbench results") -> str:
    records = latest(records)
    lines = [f"# {title}", ""]
    if not records:
        return "\n".join(lines + ["No matrix records (train/infer) in these files.", ""])
    lines += [f"{len(records)} cells from run(s) {', '.join(sorted({r['run_id'] for r in records}))}.", ""]
    lines += _environment(records)
    for mode in MATRIX_MODES:
        for batch_size in sorted({r["batch_size"] for r in records if r["mode"] == mode}):
            lines += _section(records, mode, batch_size)
    lines += _not_run(records)
    return "\n".join(lines)


def write_report(result_paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Render the records of ``result_paths`` as Markdown into ``out``; return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = ", ".join(Path(p).name for p in result_paths)
    out.write_text(render(read_results(list(result_paths)), title=f"refbench results: {names}"), encoding="utf-8")
    return out
