"""The child side of one isolated cell: measure it, write one result, never raise.

``python -m refbench.run.worker CELL.json RESULT.json`` (or ``run_child`` in a
process forked from the runner's fork server, which has torch and the
workloads imported already) reads a cell and its settings (refbench.run.matrix),
measures the cell (refbench.run.throughput) and writes its whole result record
as JSON. Every failure the child can still see becomes an outcome: running
out of memory (CUDA or CPU) is ``oom``, any other exception ``error`` with
the tail of its traceback. What it cannot see (a crash, a hang, a kill) the
parent turns into ``error``, ``oom`` or ``timeout`` from the exit status
and this process's output (refbench.run.runner).

The child never outlives its purpose: it leads its own process group (so
killing the group kills the compile workers it started too), and a
watchdog thread kills that group when the runner that launched it is gone
(killed with SIGKILL, say) or when the cell has run past its timeout,
should the runner be unable to.
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

import torch

from refbench.run.matrix import Cell
from refbench.records.store import dumps_record
from refbench.run.settings import Settings
from refbench.run.throughput import Outcome, measure_cell
from refbench.errors import RefbenchError
from refbench.lifeline import die_with

ERROR_TAIL_CHARS = 2000
WATCHDOG_GRACE_S = 10.0     # past the cell's timeout, the child's own watchdog kills it
_CPU_OOM = ("can't allocate memory", "DefaultCPUAllocator: not enough memory")


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
    except MemoryError:
        return Outcome("oom", "CPU out of memory (MemoryError): " + error_tail(traceback.format_exc(), 500))
    except RuntimeError as exc:
        if any(words in str(exc) for words in _CPU_OOM):
            return Outcome("oom", "CPU out of memory: " + error_tail(str(exc), 500))
        return Outcome("error", error_tail(traceback.format_exc()))
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


def run_child(payload: dict, record_path: str, log_path: str | None = None,
              launched_at: float | None = None, environ: dict[str, str | None] | None = None) -> None:
    """Entry point in the child: own process group and watchdog (module docstring), output to ``log_path``.

    ``payload`` holds the cell, its settings, the runner's pid and the
    run's id and environment; the record is written to ``record_path``
    (whole, by a rename). ``launched_at`` (the parent's ``time.time()``
    before it started this process) gives ``startup_s``: process start and
    imports, the harness's own overhead before the cell begins. ``environ``:
    the variables the runner's environment has changed since the fork server
    this child comes from started (None: removed), set before anything else.
    """
    entered = time.time()
    for key, value in (environ or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if os.getpgid(0) != os.getpid():  # started by `python -m refbench.run.worker` it leads its group already
        os.setsid()
    cell, settings = Cell.from_dict(payload["cell"]), Settings.from_dict(payload["settings"])
    die_with(payload["runner_pid"], deadline_s=settings.timeout_s + WATCHDOG_GRACE_S)
    if log_path:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
    outcome = execute(cell, settings)
    phases = outcome.metrics.get("phases_s")
    if phases is not None and launched_at is not None:
        outcome.metrics["phases_s"] = {"startup_s": entered - launched_at, **phases}
    record = cell.record(outcome, run_id=payload["run_id"], env=payload["env"])
    tmp = record_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps_record(record))
    os.replace(tmp, record_path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print("usage: python -m refbench.run.worker PAYLOAD.json RECORD.json [LAUNCHED_AT]", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        payload = json.load(f)
    run_child(payload, argv[1], launched_at=float(argv[2]) if len(argv) == 3 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
