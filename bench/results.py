"""The result record and its JSON Lines file.

One record per matrix cell (or kernel shape), appended and flushed as soon as
it exists so an interrupted run loses nothing. ``pandas.read_json(path,
lines=True)`` reads the file directly.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "missed", "timeout", "oom", "skipped", "error", "not_run")
MATRIX_MODES = ("train", "infer")          # the modes of `refbench run`'s matrix
MODES = (*MATRIX_MODES, "converge", "kernel", "ddp")
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
    """Appends records to a JSONL file: one ``write`` per whole line, fsynced, so a line is there or it is not.

    Opening cuts off a partial last line that an interrupted run left
    (``repaired_bytes`` says how much), so the next record starts on a line
    of its own. A write that fails (a full disk) removes what it wrote of its
    line and raises one RefbenchError; every complete record stays.
    """

    def __init__(self, path: str | os.PathLike):
        from reference_models import RefbenchError

        self.path = Path(path)
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.repaired_bytes = self._cut_partial_line()
        except OSError as exc:
            raise RefbenchError(f"cannot write results to {self.path}: {exc.strerror}; "
                                "choose a writable file path with --out") from None

    def _cut_partial_line(self) -> int:
        """Truncate the file after its last newline; return the bytes removed."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as f:
            end = size
            while end > 0:
                f.seek(max(0, end - 65536))
                chunk = f.read(end - max(0, end - 65536))
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = end - len(chunk) + newline + 1
                    break
                end -= len(chunk)
            else:
                keep = 0
        if keep < size:
            os.truncate(self.path, keep)
        return size - keep

    def append(self, record: dict[str, Any]) -> None:
        from reference_models import RefbenchError

        line = (dumps_record(record) + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(self._fd)
        except OSError as exc:
            try:
                self._cut_partial_line()
            except OSError:
                pass
            raise RefbenchError(
                f"cannot write results to {self.path}: {exc.strerror or exc}; the {self.written} records written "
                "before are complete and kept: free space (or choose another --out) and rerun with --resume") from None
        self.written += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def dumps_record(record: dict[str, Any]) -> str:
    """One record as one line of JSON."""
    return json.dumps(record, sort_keys=True, default=_jsonable)


def record_of(cell, outcome, *, run_id: str, env: dict[str, Any]) -> dict[str, Any]:
    """The record of a matrix cell (bench.matrix.Cell) and what measuring it gave (an Outcome)."""
    return make_record(run_id=run_id, env=env, workload=cell.workload, variant=cell.variant, backend=cell.backend,
                       mode=cell.mode, batch_size=cell.batch_size, dataset=outcome.dataset, status=outcome.status,
                       error=outcome.error, metrics=outcome.metrics)


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
