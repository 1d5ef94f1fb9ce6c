"""pytest-benchmark's ``--benchmark-json`` files as result records, and result files of either kind.

A team's own pytest-benchmark suite is tracked by ``compare`` and
``nightly`` like the matrix: each benchmark of a file becomes one record
(mode ``benchmark``, workload its ``fullname``, backend the ``device`` its
``extra_info`` names, else ``pytest-benchmark``) whose ``latency_ms`` holds
the time per call in milliseconds: median, mean, CV and, when the file was
written with ``--benchmark-save-data``, the raw ``samples`` and their p10/p90
(pytest-benchmark's quartiles are not those). ``ops_per_s`` is the calls
per second. The machine is the file's ``machine_info``: the ``env_key`` it
carries (this project's suite records refbench's own, see
tests/benchmarks/conftest.py), else a hash of the processor, the system,
Python and whatever torch, CUDA and GPU fields it names.

``load(paths)`` reads JSONL result files and pytest-benchmark files alike,
with refbench.records.analysis's rules for bad input.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Sequence

from refbench.records import analysis, validate
from refbench.records.schema import make_record
from refbench.errors import RefbenchError

MODE = "benchmark"
# machine_info fields that make two pytest-benchmark files comparable when the file carries no env_key.
_KEY_FIELDS = ("machine", "system", "python_implementation", "python_version", "torch", "cuda", "gpu", "driver",
               "threads")


def is_benchmark_json(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one JSON document with a ``benchmarks`` list (a JSONL result file is not)."""
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and isinstance(document.get("benchmarks"), list)


def records(path: str | os.PathLike) -> tuple[list[dict], list[str], list[str]]:
    """The records of a pytest-benchmark file, their sources (``file:benchmark N``), and the benchmarks left out.

    A benchmark without a name or without numeric ``median``, ``mean``,
    ``stddev`` and ``rounds`` in its stats, or whose record fails
    refbench.records.validate's check, is left out and named
    (``file:benchmark N: why, skipped``); ``min``/``max`` and ``q1``/``q3``
    may be missing or null (they are not read: p10 and p90 come from the raw
    samples alone).
    """
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    machine = _object(document.get("machine_info"))
    commit = _object(document.get("commit_info")).get("id")
    env = _env(machine, commit if isinstance(commit, str) else None)
    when = document.get("datetime") if isinstance(document.get("datetime"), str) else None
    out, sources, skipped = [], [], []
    for number, bench in enumerate(document["benchmarks"], 1):
        where = f"{path}:benchmark {number}"
        bench = _object(bench)
        stats, name = _object(bench.get("stats")), bench.get("fullname") or bench.get("name")
        if not isinstance(name, str) or not all(_number(stats.get(k)) for k in ("median", "mean", "stddev", "rounds")):
            skipped.append(f"{where}: not a pytest-benchmark result (it needs fullname and stats with numeric median, "
                           f"mean, stddev and rounds), skipped")
            continue
        extra = _object(bench.get("extra_info"))
        record = make_record(run_id=f"pytest-benchmark-{when or ''}", time=when, env=env, workload=name,
                             backend=str(extra.get("device") or "pytest-benchmark"), mode=MODE,
                             batch_size=extra.get("batch_size"), status="ok", metrics=_metrics(stats))
        problem = validate.problem(record)
        if problem:
            skipped.append(f"{where}: {problem}, skipped")
            continue
        out.append(record)
        sources.append(where)
    return out, sources, skipped


def _metrics(stats: dict) -> dict:
    to_ms = 1e3
    data = stats.get("data")
    samples = [float(s) * to_ms for s in data] if isinstance(data, list) and data and all(map(_number, data)) else None
    latency = {"median": stats["median"] * to_ms, "mean": stats["mean"] * to_ms, "n": int(stats["rounds"]),
               "cv": stats["stddev"] / stats["mean"] if stats["mean"] > 0 else 0.0}
    if samples:   # pytest-benchmark keeps quartiles, not the 10th and 90th percentiles: those need the samples
        ordered = sorted(samples)
        latency.update(samples=samples, p10=_quantile(ordered, 0.1), p90=_quantile(ordered, 0.9))
    return {"latency_ms": latency, "ops_per_s": 1.0 / stats["mean"] if stats["mean"] > 0 else None}


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def _env(machine: dict, commit: str | None) -> dict:
    cpu = machine.get("cpu")
    cpu = (cpu.get("brand_raw") or cpu.get("brand")) if isinstance(cpu, dict) else cpu or machine.get("processor")
    env = {key: machine.get(key) for key in _KEY_FIELDS if machine.get(key) is not None}
    env.update(cpu=cpu, host=machine.get("node"), git_commit=commit[:12] if commit else None)
    if machine.get("env_key"):
        env["env_key"] = machine["env_key"]
    else:
        source = json.dumps({k: env.get(k) for k in ("cpu", *_KEY_FIELDS)}, sort_keys=True)
        env["env_key"] = "pb-" + hashlib.sha256(source.encode()).hexdigest()[:9]
    return env


def load(paths: Sequence[str | os.PathLike]) -> analysis.Loaded:
    """JSONL result files and pytest-benchmark files as one frame (refbench.records.analysis.load's rules)."""
    found, lines = [], []
    for path in map(str, paths):
        if not os.path.isfile(path):
            raise RefbenchError(f"no result file {path}; give a JSONL that `refbench run --out` wrote or a "
                                f"pytest --benchmark-json file")
        (found if is_benchmark_json(path) else lines).append(path)
    all_records, sources, files, skipped, notes = [], [], {}, [], []
    for path in found:
        got, where, left_out = records(path)
        all_records += got
        sources += where
        skipped += left_out
        files[path] = len(got)
        if not got:
            notes.append(f"{path} has no benchmarks")
    if lines:
        got, where, counts, skipped_jsonl, notes_jsonl = analysis.read(lines)
        all_records += got
        sources += where
        files.update(counts)
        skipped += skipped_jsonl
        notes += notes_jsonl
    if not all_records:
        raise RefbenchError(f"no records in {', '.join(files)}; give the JSONL that `refbench run --out` wrote or "
                            f"a pytest --benchmark-json file")
    return analysis.Loaded(analysis.to_frame(all_records, sources), files, skipped, notes)
