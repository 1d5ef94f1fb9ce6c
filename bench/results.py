"""The result record and its JSON Lines file.

One record per matrix cell (or kernel shape), appended and flushed as soon as
it exists so an interrupted run loses nothing. ``pandas.read_json(path,
lines=True)`` reads the file directly.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "missed", "timeout", "oom", "skipped", "error", "not_run")
MATRIX_MODES = ("train", "infer")          # the modes of `refbench run`'s matrix
MODES = (*MATRIX_MODES, "converge", "kernel")
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
    """Build one schema-complete record; unknown statuses or modes raise."""
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


class ResultWriter:
    """Appends records to a JSONL file, flushing and fsyncing after each."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True, default=_jsonable) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read records from one or more JSONL files; a truncated last line is skipped."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a run killed mid-write leaves a partial line
    return records


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
