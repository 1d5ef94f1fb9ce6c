"""Result records as one pandas DataFrame: what report, compare and nightly read.

``load(paths)`` reads JSONL result files (bad input handled: see ``read``)
and ``to_frame(records)`` makes one row per record with these columns:

- where it came from: ``source`` ("file:line"), ``schema``, ``run_id``, ``time`` (UTC);
- the machine: ``env_key`` (what makes two results comparable; ``"unknown"``
  when a record has none), ``device`` (the GPU's name, else the CPU's) and
  ``env.<field>`` for every field of the record's ``env``;
- the cell: ``CELL_KEY`` = workload, variant (canonical JSON text), backend,
  mode, batch_size, dataset; ``label`` (the workload with its variant as
  ``k=v``) and ``cell`` (the whole key as one readable string). A record of
  a cell that never ran names no data set: it takes the one the cell's other
  records name, so a resumed run's measurement replaces the earlier timeout;
- the outcome: ``status``, ``error`` and ``reason`` (the error in one line);
- every metric, flattened: a nested dict becomes ``parent.child``
  (``latency_ms.median``, ``latency_ms.samples`` with the raw samples,
  ``correctness.max_rel_err``, ``parity.ok``, ``noise.load_average_1m``); lists
  (``curve``) stay lists. Memory has one name whatever the device:
  ``peak_mem_bytes`` and ``first_step_peak_mem_bytes`` are CUDA's peak
  allocated bytes or the CPU's resident-set growth, ``memory_kind`` says which;
- derived: ``base_backend`` (the eager backend of a throughput cell's device,
  ``cpu`` or ``cuda``; empty for kernel and convergence records) and
  ``unstable`` (the record says so, or its latency CV is above ``UNSTABLE_CV``).

Several machines stay apart: every grouping here includes ``env_key``, and
``latest`` keeps the last record of each cell on each machine.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from refbench.records import metrics as metric_table, validate
from refbench.records.schema import BASES, SCHEMA_VERSION, UNSTABLE_CV
from refbench.errors import RefbenchError

CELL_KEY = ("workload", "variant", "backend", "mode", "batch_size", "dataset")
# Modes measured by the matrix of one step per cell, whose backends are compared with their device's eager one.
NOT_THROUGHPUT_MODES = ("converge", "kernel", "ddp")
_MEMORY = {"peak_allocated_bytes": "allocated", "peak_rss_delta_bytes": "rss_delta"}
# Columns every frame has, so a report of records that lack a metric still reads it (as missing): every metric of
# the table but the device-specific memory names (one name here: peak_mem_bytes), and which memory that is.
_ALWAYS = (*(name for name in metric_table.columns() if not name.endswith(tuple(_MEMORY))), "memory_kind")


@dataclass
class Loaded:
    """What ``load`` read: the frame, how many records each file gave, and what it skipped or noted."""

    frame: pd.DataFrame
    files: dict[str, int]
    skipped: list[str] = field(default_factory=list)   # "file:line: why" for every corrupt line
    notes: list[str] = field(default_factory=list)     # empty files, records of another schema


def load(paths: Sequence[str | os.PathLike]) -> Loaded:
    records, sources, files, skipped, notes = read(paths)
    return Loaded(to_frame(records, sources), files, skipped, notes)


def read(paths: Sequence[str | os.PathLike]) -> tuple[list[dict], list[str], dict[str, int], list[str], list[str]]:
    """Records of JSONL files, with their ``file:line``, and what could not be read.

    A missing file is a RefbenchError; so is a set of files with no record at
    all. A line that is not a record every reader can use
    (refbench.records.validate: the schema's fields with their types) is
    skipped and named (a run killed mid-write leaves a partial last line); a
    status this refbench does not know is a RefbenchError naming the line. A
    record of another schema version is read when it passes the check (and
    noted), and is a RefbenchError when it lacks a field the readers need: it
    cannot be understood.
    """
    records, sources, skipped, notes = [], [], [], []
    files: dict[str, int] = {}
    other_schemas: Counter = Counter()
    for path in map(str, paths):
        if not os.path.isfile(path):
            raise RefbenchError(f"no result file {path}; give the JSONL that `refbench run --out` wrote")
        files[path] = 0
        for where, record, problem in validate.lines(path):
            if isinstance(record, dict) and record.get("schema") != SCHEMA_VERSION:
                missing = [name for name in validate.REQUIRED if name not in record]
                if missing:
                    raise RefbenchError(
                        f"{where}: a record of schema {record.get('schema')!r} without {', '.join(missing)}; "
                        f"this refbench reads schema {SCHEMA_VERSION}: report it with the refbench that wrote it")
                if problem is None:
                    other_schemas[record.get("schema")] += 1
            if problem:
                skipped.append(f"{where}: {problem}, skipped")
                continue
            validate.check_status(record, where)
            records.append(record)
            sources.append(where)
            files[path] += 1
        if not files[path]:
            notes.append(f"{path} has no records")
    notes += [f"{n} records of schema {s!r} read (this refbench writes schema {SCHEMA_VERSION}): "
              f"they have every field the report needs" for s, n in sorted(other_schemas.items(), key=str)]
    if not records:
        why = f" ({len(skipped)} corrupt lines)" if skipped else ""
        raise RefbenchError(f"no records in {', '.join(files)}{why}; give the JSONL that `refbench run --out` wrote")
    return records, sources, files, skipped, notes


def to_frame(records: Iterable[dict], sources: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per record (the module docstring lists the columns)."""
    records = list(records)
    sources = list(sources) if sources is not None else [None] * len(records)
    frame = pd.DataFrame([_row(record, source) for record, source in zip(records, sources)])
    always = ("source", "schema", "run_id", "time", "env_key", "device", *CELL_KEY, "label", "status", "error",
              "reason", *_ALWAYS)
    frame = frame.reindex(columns=[*frame.columns, *(c for c in dict.fromkeys(always) if c not in frame)])
    frame["time"] = pd.to_datetime(frame["time"], utc=True, errors="coerce", format="ISO8601")
    frame["batch_size"] = pd.array(frame["batch_size"], dtype="Int64")
    by_cell = frame.groupby([c for c in CELL_KEY if c != "dataset"] + ["env_key"], dropna=False, sort=False)
    frame["dataset"] = frame["dataset"].fillna(by_cell["dataset"].transform("last"))
    frame["cell"] = [f"{label} | {backend} | {mode} | bs={_text(batch)} | {_text(dataset)}"
                     for label, backend, mode, batch, dataset in
                     zip(frame["label"], frame["backend"], frame["mode"], frame["batch_size"], frame["dataset"])]
    frame["unstable"] = (frame["unstable"].eq(True) | pd.to_numeric(frame["latency_ms.cv"]).gt(UNSTABLE_CV))
    throughput = ~frame["mode"].isin(NOT_THROUGHPUT_MODES)
    frame["base_backend"] = [_base(backend) if keep else None for backend, keep in zip(frame["backend"], throughput)]
    return frame


def _row(record: dict, source: str | None) -> dict[str, Any]:
    env = record.get("env") or {}
    variant = record.get("variant") or {}
    error = record.get("error")
    row: dict[str, Any] = {
        "source": source, "schema": record.get("schema"), "run_id": record.get("run_id"),
        "time": record.get("time"), "env_key": env.get("env_key") or "unknown",
        "device": env.get("gpu") or env.get("cpu"), **{f"env.{k}": v for k, v in env.items()},
        "workload": record["workload"], "variant": json.dumps(variant, sort_keys=True),
        "label": record["workload"] + "".join(f" {k}={v}" for k, v in variant.items() if not isinstance(v, dict)),
        "backend": record["backend"], "mode": record["mode"], "batch_size": record.get("batch_size"),
        "dataset": record.get("dataset"), "status": record["status"], "error": error, "reason": _one_line(error),
    }
    for name, value in metric_table.flatten(record.get("metrics") or {}).items():
        for device_name, kind in _MEMORY.items():
            if name.endswith(device_name):
                name = name.removesuffix(device_name) + "peak_mem_bytes"
                row["memory_kind"] = kind
        row["metrics." + name if name in row else name] = value
    return row


def _one_line(error: str | None) -> str | None:
    """An error in one line: a traceback (or its tail) by its last line, the exception; a message
    followed by output (a killed worker's last words) by its first and last lines."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else None
    return lines[-1] if lines[0].startswith(("Traceback", "...")) else f"{lines[0]} … {lines[-1]}"


def _text(value) -> str:
    return "-" if value is None or pd.isna(value) else str(value)


def _base(backend: str) -> str:
    """The eager backend of a backend's device: its base when it names one, else ``cuda``."""
    first = backend.split("+")[0]
    return first if first in BASES else "cuda"


def latest(frame: pd.DataFrame) -> pd.DataFrame:
    """The last record of each cell on each machine (by time, then by the order read), in the order read; a
    convergence cell trained under two recipes is two cells."""
    ordered = frame.assign(_read=np.arange(len(frame))).sort_values(["time", "_read"], kind="stable",
                                                                    na_position="first")
    recipe = ["recipe"] if "recipe" in frame.columns else []
    kept = ordered.drop_duplicates(["env_key", *CELL_KEY, *recipe], keep="last")
    return kept.sort_values("_read").drop(columns="_read")


GROUP = ["env_key", "mode", "batch_size"]
_MATCH = ["env_key", "workload", "variant", "mode", "batch_size", "dataset"]


def versus_base(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` of every ok throughput cell beside its base backend's on the same machine and cell.

    One row per (cell, backend other than the base) that both measured:
    env_key, mode, batch_size, workload, variant, label, dataset, backend,
    base_backend, ``value``, ``base_value``, ``ratio`` (value / base value;
    missing where the base value is not positive) and ``unstable`` (either
    side). For ``samples_per_s`` the ratio is the speed-up; for
    ``peak_mem_bytes`` the memory ratio.
    """
    ok = frame[frame["status"].eq("ok") & frame["base_backend"].notna() & frame[metric].notna()]
    base = ok[ok["backend"] == ok["base_backend"]][[*_MATCH, "backend", metric, "unstable"]]
    base = base.rename(columns={"backend": "base_backend", metric: "base_value", "unstable": "base_unstable"})
    others = ok[ok["backend"] != ok["base_backend"]]
    pairs = others[[*_MATCH, "label", "backend", "base_backend", metric, "unstable"]].merge(
        base, on=[*_MATCH, "base_backend"], how="inner").rename(columns={metric: "value"})
    values, bases = pd.to_numeric(pairs["value"]), pd.to_numeric(pairs["base_value"])
    pairs["ratio"] = (values / bases).where(bases > 0)
    pairs["unstable"] = pairs["unstable"] | pairs.pop("base_unstable")
    return pairs


def geomeans(pairs: pd.DataFrame) -> pd.DataFrame:
    """Geometric mean of ``versus_base``'s ratios per machine, mode, batch size and backend, and over how many cells."""
    valid = pairs[pairs["ratio"] > 0]
    grouped = valid.groupby([*GROUP, "backend", "base_backend"], dropna=False, sort=False)["ratio"]
    return grouped.agg(geomean=lambda r: float(np.exp(np.log(r).mean())), n="count").reset_index()


def correctness(frame: pd.DataFrame) -> pd.DataFrame:
    """Per machine and backend: cells checked against fp64, passed, pass rate, and the worst error over tolerance.

    A cell is checked when it carries a correctness verdict; it passes unless
    its status is ``failed`` (a wrong answer, or NaN/Inf in the timed steps).
    ``nan_only`` counts cells whose random step could be checked for NaN/Inf only.
    """
    checked = frame[frame["correctness.tolerance"].notna()].copy()
    checked["passed"] = checked["status"].ne("failed")
    checked["nan_only"] = checked["correctness.compared"].eq(False)
    errors = pd.to_numeric(checked["correctness.max_rel_err"]).where(~checked["nan_only"])
    checked["error_ratio"] = errors / pd.to_numeric(checked["correctness.tolerance"])
    rows = []
    for (env_key, backend), cells in checked.groupby(["env_key", "backend"], sort=False):
        worst = cells.loc[cells["error_ratio"].idxmax()] if cells["error_ratio"].notna().any() else None
        rows.append({"env_key": env_key, "backend": backend, "checked": len(cells), "passed": int(cells["passed"].sum()),
                     "pass_rate": cells["passed"].mean(), "nan_only": int(cells["nan_only"].sum()),
                     "worst_ratio": None if worst is None else worst["error_ratio"],
                     "worst_cell": None if worst is None else f"{worst['label']} {worst['mode']}",
                     "worst_tensor": None if worst is None else worst["correctness.worst"]})
    return pd.DataFrame(rows, columns=["env_key", "backend", "checked", "passed", "pass_rate", "nan_only",
                                       "worst_ratio", "worst_cell", "worst_tensor"])


def kernels(frame: pd.DataFrame) -> pd.DataFrame:
    """Ok kernel records as achieved figures against their roofline, one row each.

    A record with ``tflops`` and ``roofline_fraction`` (conv2d) is measured
    in TFLOP/s against the roofline its fraction implies; one with ``gbps``
    (softmax) in GB/s against the device's copy bandwidth. Columns: env_key,
    kernel (``conv2d`` for a record that names its layer, else the
    workload), direction, precision, shape, backend, unit, achieved, roofline,
    fraction, time_ms.
    """
    rows = []
    for record in frame[frame["mode"].eq("kernel") & frame["status"].eq("ok")].to_dict("records"):
        variant = json.loads(record["variant"])
        layer = variant.get("layer") if isinstance(variant.get("layer"), dict) else None
        if pd.notna(record["tflops"]) and pd.notna(record["roofline_fraction"]) and record["roofline_fraction"] > 0:
            unit, achieved, roof = "TFLOP/s", record["tflops"], record["tflops"] / record["roofline_fraction"]
        elif pd.notna(record["gbps"]):
            unit, achieved, roof = "GB/s", record["gbps"], record["copy_gbps"]
        else:
            continue
        shape = ", ".join(f"{k}={v}" for k, v in variant.items() if k not in ("direction", "dtype", "precision", "layer"))
        if layer is not None:
            shape = f"{record['workload']} n={record['batch_size']}" + (f", {shape}" if shape else "")
        rows.append({"env_key": record["env_key"], "kernel": "conv2d" if layer is not None else record["workload"],
                     "direction": variant.get("direction"), "precision": variant.get("dtype") or variant.get("precision"),
                     "shape": shape, "backend": record["backend"], "unit": unit, "achieved": achieved,
                     "roofline": roof, "fraction": achieved / roof if roof else None, "time_ms": record["time_ms"]})
    return pd.DataFrame(rows, columns=["env_key", "kernel", "direction", "precision", "shape", "backend", "unit",
                                       "achieved", "roofline", "fraction", "time_ms"])


def converged_value(record: dict | pd.Series) -> float | None:
    """A convergence record's final value of its target metric: a seed group's mean over its seeds, else the
    metric itself, else the curve's last point."""
    mean = record.get("seeds.mean")
    if mean is not None and not pd.isna(mean):
        return mean
    target = record.get("target_metric")
    value = record.get(target) if isinstance(target, str) else None
    if value is None or pd.isna(value):
        curve = record.get("curve")
        points = [p for p in curve if (p.get("metrics") or {}).get(target) is not None] if isinstance(curve, list) else []
        value = points[-1]["metrics"][target] if points else None
    return value


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    return dict(sorted(Counter(frame["status"]).items(), key=lambda item: (item[0] != "ok", item[0])))


def summary(frame: pd.DataFrame) -> list[str]:
    """The report's summary: cells, status counts, every backend without a measurement, the best and worst
    backend by geomean speed-up over stable cells, and what needs a look.

    ``frame`` is ``latest``'s: one row per cell and machine.
    """
    machines = frame["env_key"].nunique()
    lines = [f"cells: {len(frame)} on {_count(machines, 'machine')}, from {_count(frame['run_id'].nunique(), 'run')}",
             "status: " + ", ".join(f"{status} {n}" for status, n in status_counts(frame).items())]
    throughput = frame[frame["base_backend"].notna()]
    measured = set(throughput.loc[throughput["status"].eq("ok"), "backend"])
    for backend, cells in throughput.groupby("backend", sort=False):
        if backend not in measured:
            why = ", ".join(f"{n} {s}" for s, n in cells["status"].value_counts().items())
            lines.append(f"no measurement: backend {backend} ({why})")
    lines += _extremes(versus_base(frame, "samples_per_s"), machines)
    checks = correctness(frame)
    converge = frame[frame["mode"].eq("converge")]
    checked = (f"{checks['passed'].sum()}/{checks['checked'].sum()} checked cells pass" if checks["checked"].sum()
               else "no cell checked")
    reached = (f"{int(converge['reached'].eq(True).sum())}/{len(converge)} reached target" if len(converge)
               else "none in these results")
    lines.append(f"correctness: {checked}; convergence: {reached}; "
                 f"unstable: {_count(int(frame['unstable'].sum()), 'cell')}")
    return lines


def _extremes(pairs: pd.DataFrame, machines: int) -> list[str]:
    """The best and the worst backend by geomean speed-up over their stable cells (one line when one backend is
    both); from unstable cells, marked so, only where a backend has no stable cell."""
    stable = geomeans(pairs[~pairs["unstable"].astype(bool)])
    shaky = geomeans(pairs).merge(stable[[*GROUP, "backend"]], how="left", indicator=True)
    means = pd.concat([stable.assign(mark=""), shaky[shaky["_merge"].eq("left_only")].drop(columns="_merge")
                       .assign(mark=" † from unstable cells only")], ignore_index=True)
    if means.empty:
        return ["speed-up: no backend besides the eager base measured"]

    def line(word: str, row) -> str:
        return (f"{word}: {row['backend']} {row['geomean']:.2f}x over {row['base_backend']} (geomean over "
                f"{_count(row['n'], 'workload')}, {row['mode']}, batch {row['batch_size']}"
                + (f", machine {row['env_key']}" if machines > 1 else "") + f"){row['mark']}")

    best, worst = means.loc[means["geomean"].idxmax()], means.loc[means["geomean"].idxmin()]
    if best.name == worst.name:
        return [line("only backend besides the eager base", best)]
    return [line("best backend", best), line("worst backend", worst)]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
