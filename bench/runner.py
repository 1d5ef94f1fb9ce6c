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

import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from bench import backends
from bench.cell import CellSpec, Outcome
from bench.environment import collect_env
from bench.results import ResultWriter, cell_key, make_record, new_run_id, read_results
from reference_models import RefbenchError, get_workload, list_models

MODES = ("train", "infer")
ISOLATIONS = ("forkserver", "subprocess", "inline")
# Cells a resumed run measures again: those that never got to finish.
RETRY_STATUSES = ("timeout", "error")


@dataclass(frozen=True)
class Cell:
    workload: str
    backend: str
    mode: str
    batch_size: int
    variant: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple:
        return cell_key(dataclasses.asdict(self))


@dataclass
class MatrixSpec:
    workloads: list[str]               # names or shell patterns; "all" is every registered workload
    backends: list[str]
    modes: list[str]
    batch_sizes: list[int]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    iters: int = 20
    max_warmup: int = 50
    max_warmup_s: float = 30.0
    timeout_s: float = 600.0
    check: bool = True
    energy_s: float = 1.0
    threads: int | None = None
    fresh_compile_cache: bool = False
    imports: tuple[str, ...] = ()

    def workload_names(self) -> list[str]:
        """Expand "all" and shell patterns against the registry; plain names must be registered."""
        names: list[str] = []
        for item in self.workloads:
            if item == "all" or any(ch in item for ch in "*?["):
                matched = list_models(None if item == "all" else item)
                if not matched:
                    raise RefbenchError(f"no registered workload matches {item!r} (`refbench list` shows them)")
            else:
                get_workload(item)
                matched = [item]
            names += [n for n in matched if n not in names]
        return names

    def validate(self) -> None:
        import importlib

        for module in self.imports:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise RefbenchError(f"cannot import {module!r}: {exc}") from None
        if not self.workloads:
            raise RefbenchError("no workloads given; use --workloads NAME,... or all")
        self.workload_names()
        if not self.backends:
            raise RefbenchError("no backends given; use --backends cpu,cpu+compile,...")
        for name in self.backends:
            backends.resolve(name)
        bad_modes = [m for m in self.modes if m not in MODES]
        if bad_modes or not self.modes:
            raise RefbenchError(f"unknown mode {', '.join(bad_modes) or '(none)'}; use {' or '.join(MODES)}")
        bad_sizes = [b for b in self.batch_sizes if b < 1]
        if bad_sizes or not self.batch_sizes:
            raise RefbenchError(f"batch sizes must be positive integers, got {bad_sizes or 'none'}")
        if self.iters < 1:
            raise RefbenchError(f"--iters must be at least 1, got {self.iters}")
        if self.threads is not None and self.threads < 1:
            raise RefbenchError(f"--threads must be at least 1, got {self.threads}")
        if self.timeout_s <= 0:
            raise RefbenchError(f"--timeout must be positive, got {self.timeout_s}")

    def cells(self) -> list[Cell]:
        """Every cell, backend-major: with a time budget the costly backends listed last are cut first."""
        names = self.workload_names()
        return [Cell(w, b, m, bs, dict(self.variants.get(w, {})))
                for b in self.backends for w in names for m in self.modes for bs in self.batch_sizes]

    def cell_spec(self, cell: Cell) -> CellSpec:
        return CellSpec(workload=cell.workload, backend=cell.backend, mode=cell.mode, batch_size=cell.batch_size,
                        variant=cell.variant, iters=self.iters, max_warmup=self.max_warmup,
                        max_warmup_s=self.max_warmup_s, check=self.check, energy_s=self.energy_s,
                        threads=self.threads, fresh_compile_cache=self.fresh_compile_cache, imports=tuple(self.imports))


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
    return [c for c in cells if _resolved_key(c) not in finished]


def finished_keys(path: str | os.PathLike) -> set[tuple]:
    """Cell keys with a final record in ``path`` (``RETRY_STATUSES`` are measured again)."""
    if not Path(path).exists():
        return set()
    return {cell_key(r) for r in read_results(path) if r.get("mode") in MODES and r["status"] not in RETRY_STATUSES}


def _resolved_variant(workload: str, variant: dict[str, Any]) -> dict[str, Any]:
    """The variant with the workload's defaults filled in, as records carry it."""
    try:
        return get_workload(workload).resolve_variant(**variant)
    except RefbenchError:
        return dict(variant)


def _resolved_key(cell: Cell) -> tuple:
    return dataclasses.replace(cell, variant=_resolved_variant(cell.workload, cell.variant)).key()


def run_matrix(spec: MatrixSpec, out: str | os.PathLike, *, resume: bool = False,
               shard: tuple[int, int] | None = None, isolation: str = "forkserver",
               time_budget_s: float | None = None, on_record: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Run the cells of ``spec`` (module docstring); return the records appended to ``out``."""
    spec.validate()
    if isolation not in ISOLATIONS:
        raise RefbenchError(f"unknown isolation {isolation!r}; use one of {', '.join(ISOLATIONS)}")
    cells = select(spec.cells(), shard=shard, done=finished_keys(out) if resume else ())
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)  # so the environment records the threads the cells use
    run_id, env = new_run_id(), collect_env()
    launcher = _Launcher(isolation, spec.timeout_s)
    started = time.perf_counter()
    records = []
    with ResultWriter(out) as writer:
        for cell in cells:
            if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                outcome = Outcome("timeout", _resolved_variant(cell.workload, cell.variant),
                                  error=f"not run: the matrix's time budget of {time_budget_s:.0f} s was used up")
            else:
                outcome = _static_skip(cell, spec) or launcher.run(spec.cell_spec(cell))
            record = make_record(run_id=run_id, env=env, workload=cell.workload, variant=outcome.variant,
                                 backend=cell.backend, mode=cell.mode, batch_size=cell.batch_size,
                                 dataset=outcome.dataset, status=outcome.status, error=outcome.error,
                                 metrics=outcome.metrics)
            writer.append(record)
            records.append(record)
            on_record(record)
    return records


def _static_skip(cell: Cell, spec: MatrixSpec) -> Outcome | None:
    """A skip decided without building anything costs no process."""
    workload = get_workload(cell.workload)
    reason = backends.resolve(cell.backend).skip_reason(workload, cell.mode)
    if reason is None:
        return None
    return Outcome("skipped", _resolved_variant(cell.workload, cell.variant), error=reason)


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

    def run(self, spec: CellSpec) -> Outcome:
        if self.isolation == "inline":
            from bench.worker import execute

            return execute(spec)
        with tempfile.TemporaryDirectory(prefix="refbench-cell-") as tmp:
            result, log = os.path.join(tmp, "result.json"), os.path.join(tmp, "log.txt")
            exitcode, timed_out = self._start(spec, result, log, tmp)
            if os.path.exists(result):
                with open(result, encoding="utf-8") as f:
                    data = json.load(f)
                return Outcome(**data)
            return self._failure(spec, exitcode, timed_out, Path(log).read_text(errors="replace")
                                 if os.path.exists(log) else "")

    def _start(self, spec: CellSpec, result: str, log: str, tmp: str) -> tuple[int | None, bool]:
        launched_at = time.time()
        if self.isolation == "forkserver":
            from bench.worker import run_child

            process = self.context.Process(target=run_child, args=(spec.to_dict(), result, log, launched_at),
                                           daemon=True)
            process.start()
            process.join(self.timeout_s)
            timed_out = process.is_alive()
            if timed_out:
                _kill_group(process.pid)
                process.kill()
                process.join()
            return process.exitcode, timed_out
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(spec.to_dict(), f)
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

    def _failure(self, spec: CellSpec, exitcode: int | None, timed_out: bool, log: str) -> Outcome:
        from bench.worker import error_tail

        tail = error_tail(log)
        said = f"; its last output: {tail}" if tail else ""
        variant = _resolved_variant(spec.workload, spec.variant)
        if timed_out:
            return Outcome("timeout", variant, error=f"no result within {self.timeout_s:g} s, killed{said}")
        how = (f"killed by {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0
               else f"exit status {exitcode}")
        status = "oom" if "out of memory" in log.lower() else "error"
        return Outcome(status, variant, error=f"the worker died ({how}) without a result{said}")


def _kill_group(pid: int) -> None:
    """Kill the child's process group (it called setsid), so compile workers it started die with it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
