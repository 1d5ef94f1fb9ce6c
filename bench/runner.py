"""Run a matrix of cells (workload x variant x backend x mode x batch size), one process per cell.

Each cell runs in a child process with a timeout (bench.worker); what the
child cannot report itself becomes a record too: a hang is ``timeout``, a
crash ``error`` (``oom`` when the dying words say out of memory), each with
the tail of the child's output, and the matrix goes on. Records are
appended and flushed as each cell ends; ``resume`` skips cells already in
the output file, ``shard=(i, n)`` keeps every n-th cell starting at the
i-th (1-based), so n machines split a matrix without talking to each other.

Children come from a fork server that has imported torch and the workloads
once (``isolation="forkserver"``, the default): a fresh interpreter per cell
(``"subprocess"``, ``python -m bench.worker``) costs seconds of imports per
cell on a small CPU. The fork server never initialises CUDA, so every
child starts with its own CUDA context. ``"inline"`` measures in this process
(for debugging and for ``refbench validate``'s comparison).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from bench.environment import collect_env
from bench.matrix import Cell, Matrix
from bench.results import MATRIX_MODES, ResultWriter, cell_key, make_record, new_run_id, read_results
from bench.settings import Settings
from bench.throughput import Outcome
from reference_models import RefbenchError

ISOLATIONS = ("forkserver", "subprocess", "inline")
# Cells a resumed run measures again: those that never got to finish.
RETRY_STATUSES = ("timeout", "error", "not_run")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4); the index is 1-based."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise RefbenchError(f"--shard takes i/n such as 1/4, got {text!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise RefbenchError(f"--shard {text}: need 1 <= i <= n")
    return index, count


def select(cells: list[Cell], *, shard: tuple[int, int] | None = None,
           done: Iterable[tuple] = ()) -> list[Cell]:
    """The cells this run measures: its shard's, less those already done."""
    if shard is not None:
        index, count = shard
        cells = cells[index - 1::count]
    finished = set(done)
    return [c for c in cells if c.key() not in finished]


def finished_keys(path: str | os.PathLike) -> set[tuple]:
    """Cell keys with a final record in ``path`` (``RETRY_STATUSES`` are measured again)."""
    if not Path(path).exists():
        return set()
    return {cell_key(r) for r in read_results(path)
            if r.get("mode") in MATRIX_MODES and r["status"] not in RETRY_STATUSES}


def cell_record(cell: Cell, outcome: Outcome, *, run_id: str, env: dict) -> dict:
    """The result record of ``cell``."""
    return make_record(run_id=run_id, env=env, workload=cell.workload, variant=cell.variant, backend=cell.backend,
                       mode=cell.mode, batch_size=cell.batch_size, dataset=outcome.dataset, status=outcome.status,
                       error=outcome.error, metrics=outcome.metrics)


def run_matrix(matrix: Matrix, out: str | os.PathLike, *, resume: bool = False,
               shard: tuple[int, int] | None = None, isolation: str = "forkserver",
               time_budget_s: float | None = None, on_record: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Run the cells of ``matrix`` (module docstring); return the records appended to ``out``."""
    if isolation not in ISOLATIONS:
        raise RefbenchError(f"unknown isolation {isolation!r}; use one of {', '.join(ISOLATIONS)}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise RefbenchError(f"--time-budget must be positive, got {time_budget_s:g}")
    cells = select(matrix.cells(), shard=shard, done=finished_keys(out) if resume else ())
    settings = matrix.settings
    from bench.step import set_threads

    set_threads(settings.threads)  # so the environment records the threads the cells use
    run_id, env = new_run_id(), collect_env()
    launcher = _Launcher(isolation, settings.timeout_s)
    started = time.perf_counter()
    records = []
    with ResultWriter(out) as writer:
        for cell in cells:
            if cell.skip:
                outcome = Outcome("skipped", cell.skip)
            elif time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                outcome = Outcome("not_run", f"the matrix's time budget of {time_budget_s:g} s was used up "
                                             "before this cell started; `--resume` runs it")
            else:
                outcome = launcher.run(cell, settings)
            record = cell_record(cell, outcome, run_id=run_id, env=env)
            writer.append(record)
            records.append(record)
            on_record(record)
    return records


def run_cell(cell: Cell, settings: Settings | None = None, *, isolation: str = "forkserver") -> dict:
    """Measure one cell (``bench.matrix.plan_cell`` makes one) and return its record, written nowhere."""
    settings = settings or Settings()
    settings.validate()
    outcome = Outcome("skipped", cell.skip) if cell.skip else _Launcher(isolation, settings.timeout_s).run(cell, settings)
    return cell_record(cell, outcome, run_id=new_run_id(), env=collect_env())


class _Launcher:
    """Starts one child per cell and turns whatever happens to it into an Outcome."""

    def __init__(self, isolation: str, timeout_s: float):
        self.isolation, self.timeout_s = isolation, timeout_s
        if isolation == "forkserver":
            # The fork server inherits this environment when it starts. Asking NVML, not the CUDA
            # driver, whether there is a GPU (bench/__init__ asks) keeps the server free of CUDA
            # state, which a forked child could not use.
            os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
            self.context = multiprocessing.get_context("forkserver")
            self.context.set_forkserver_preload(["bench.worker"])

    def run(self, cell: Cell, settings: Settings) -> Outcome:
        if self.isolation == "inline":
            from bench.worker import execute

            return execute(cell, settings)
        payload = {"cell": cell.to_dict(), "settings": settings.to_dict()}
        with tempfile.TemporaryDirectory(prefix="refbench-cell-") as tmp:
            result, log = os.path.join(tmp, "result.json"), os.path.join(tmp, "log.txt")
            exitcode, timed_out = self._start(payload, result, log, tmp)
            if os.path.exists(result):
                with open(result, encoding="utf-8") as f:
                    return Outcome(**json.load(f))
            return self._failure(exitcode, timed_out, Path(log).read_text(errors="replace")
                                 if os.path.exists(log) else "")

    def _start(self, payload: dict, result: str, log: str, tmp: str) -> tuple[int | None, bool]:
        launched_at = time.time()
        if self.isolation == "forkserver":
            from bench.worker import run_child

            process = self.context.Process(target=run_child, args=(payload, result, log, launched_at),
                                           daemon=True)
            process.start()
            process.join(self.timeout_s)
            timed_out = process.is_alive()
            if timed_out:
                _kill_group(process.pid)
                process.kill()
                process.join()
            return process.exitcode, timed_out
        spec_path = os.path.join(tmp, "cell.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(payload, f)
        with open(log, "wb") as log_file:
            child = subprocess.Popen([sys.executable, "-m", "bench.worker", spec_path, result, repr(launched_at)],
                                     stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=Path(__file__).resolve().parent.parent)
            try:
                return child.wait(self.timeout_s), False
            except subprocess.TimeoutExpired:
                _kill_group(child.pid)
                child.kill()
                return child.wait(), True

    def _failure(self, exitcode: int | None, timed_out: bool, log: str) -> Outcome:
        from bench.worker import error_tail

        tail = error_tail(log)
        said = f"; its last output: {tail}" if tail else ""
        if timed_out:
            return Outcome("timeout", f"no result within {self.timeout_s:g} s, killed{said}")
        how = (f"killed by {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0
               else f"exit status {exitcode}")
        status = "oom" if "out of memory" in log.lower() else "error"
        return Outcome(status, f"the worker died ({how}) without a result{said}")


def _kill_group(pid: int) -> None:
    """Kill the child's process group (it called setsid), so compile workers it started die with it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
