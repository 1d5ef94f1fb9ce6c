"""The child side of one isolated cell: measure it, write one result, never raise.

``python -m bench.worker CELL.json RESULT.json`` (or ``run_child`` in a
process forked from the runner's fork server, which has torch and the
workloads imported already) reads a cell and its settings (bench.matrix),
measures the cell (bench.throughput) and writes its outcome as JSON. Every failure the child can still see becomes
an outcome: a CUDA out-of-memory is ``oom``, any other exception ``error``
with the tail of its traceback. What it cannot see (a crash, a hang, a
kill) the parent turns into ``error`` or ``timeout`` from the exit status
and this process's stderr (bench.runner).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict

import torch

from bench.matrix import Cell
from bench.settings import Settings
from bench.throughput import Outcome, measure_cell
from reference_models import RefbenchError

ERROR_TAIL_CHARS = 2000


def error_tail(text: str, limit: int = ERROR_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def execute(cell: Cell, settings: Settings) -> Outcome:
    """Measure ``cell`` in this process, mapping every exception to an outcome."""
    try:
        for module in settings.imports:
            importlib.import_module(module)
        if not settings.fresh_compile_cache:
            return _with_cache_note(measure_cell(cell, settings), "shared")
        with tempfile.TemporaryDirectory(prefix="refbench-inductor-") as cache, _environ(
                TORCHINDUCTOR_CACHE_DIR=cache, TRITON_CACHE_DIR=os.path.join(cache, "triton")):
            return _with_cache_note(measure_cell(cell, settings), "fresh")
    except torch.cuda.OutOfMemoryError as exc:
        return Outcome("oom", error_tail(str(exc)))
    except RefbenchError as exc:
        return Outcome("error", str(exc))
    except Exception:  # the cell's own failure, reported with its traceback
        return Outcome("error", error_tail(traceback.format_exc()))


def _with_cache_note(outcome: Outcome, cache: str) -> Outcome:
    """Say whether ``compile_s`` is a cold compile (fresh cache) or may have hit a warm one (shared)."""
    if "compile_s" in outcome.metrics:
        outcome.metrics["compile_cache"] = cache
    return outcome


@contextlib.contextmanager
def _environ(**values: str):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_child(payload: dict, result_path: str, log_path: str | None = None,
              launched_at: float | None = None) -> None:
    """Entry point in the child: own process group (so a timeout kills its helpers too), output to ``log_path``.

    ``launched_at`` (the parent's ``time.time()`` before it started this
    process) gives ``startup_s``: process start and imports, the harness's
    own overhead before the cell begins.
    """
    entered = time.time()
    if os.getpgid(0) != os.getpid():  # started by `python -m bench.worker` it leads its group already
        os.setsid()
    if log_path:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
    outcome = execute(Cell.from_dict(payload["cell"]), Settings.from_dict(payload["settings"]))
    phases = outcome.metrics.get("phases_s")
    if phases is not None and launched_at is not None:
        outcome.metrics["phases_s"] = {"startup_s": entered - launched_at, **phases}
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(outcome), f, default=str)
    os.replace(tmp, result_path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print("usage: python -m bench.worker CELL.json RESULT.json [LAUNCHED_AT]", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        payload = json.load(f)
    run_child(payload, argv[1], launched_at=float(argv[2]) if len(argv) == 3 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
