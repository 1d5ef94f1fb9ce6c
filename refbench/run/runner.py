"""Run a matrix of cells (workload x variant x backend x mode x batch size), one process per cell.

Each cell runs in a child process with a timeout (refbench.run.worker); what the
child cannot report itself becomes a record too: a hang is ``timeout``, a
crash ``error`` (``oom`` when the dying words say out of memory), each with
the tail of the child's output, and the matrix goes on; a child killed by
SIGKILL is ``oom`` only when the kernel's out-of-memory killer killed
meanwhile, else an ``error`` that ``--resume`` measures again. Records are
appended and flushed as each cell ends; ``resume`` skips cells already in
the output file, ``shard=(i, n)`` keeps every n-th cell starting at the
i-th (1-based), so n machines split a matrix without talking to each other.

Children come from a fork server that has imported torch and the workloads
once (``isolation="forkserver"``, the default): a fresh interpreter per cell
(``"subprocess"``, ``python -m refbench.run.worker``) costs seconds of imports per
cell on a small CPU. The fork server never initialises CUDA, so every
child starts with its own CUDA context. ``"inline"`` measures in this process
(for debugging and for ``refbench validate``'s comparison).

Which machine measures a cell is an executor's choice (refbench.run.executors):
by default this one, a cell after another; a remote executor (a Ray cluster)
runs ``measure_on_node`` on the node it picks, which measures the cell with
``run_cell`` there, and this process appends the records as they come back.
"""
from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator

from refbench.harness import backends
from refbench.harness.machine import collect_env
from refbench.run.matrix import Cell, Matrix, cheapest_first
from refbench.records.schema import MATRIX_MODES, STATUSES, cell_key, new_run_id
from refbench.records.store import ResultWriter, dumps_record, read_results
from refbench.run.settings import Settings
from refbench.run.throughput import Outcome
from refbench.errors import EXIT_GATE, EXIT_INCOMPLETE, EXIT_OK, RefbenchError
from refbench.lifeline import alive, remove_on_death, scratch_dir
from refbench.run.executors import Executor, Needs
from refbench.run.executors.local import LocalExecutor

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


def finished_keys(path: str | os.PathLike, retry: Iterable[str] = ()) -> set[tuple]:
    """Cell keys with a final record in ``path`` (``RETRY_STATUSES`` and ``retry`` are measured again)."""
    if not Path(path).exists():
        return set()
    again = {*RETRY_STATUSES, *retry}
    return {cell_key(r) for r in read_results(path) if r.get("mode") in MATRIX_MODES and r["status"] not in again}


def run_matrix(matrix: Matrix, out: str | os.PathLike, *, resume: bool = False, retry: Iterable[str] = (),
               shard: tuple[int, int] | None = None, isolation: str = "forkserver",
               time_budget_s: float | None = None, on_record: Callable[[dict], None] = lambda r: None,
               on_start: Callable[[int], None] = lambda n: None, only: Collection[tuple] | None = None,
               executor: Executor | None = None) -> list[dict]:
    """Run the cells of ``matrix`` (module docstring); return the records appended to ``out``.

    Records a killed earlier run finished but never appended (left in the
    cells' scratch folder next to ``out``) are appended first. ``on_start``
    hears how many cells this run will measure. ``only``, when given, keeps
    the cells whose ``Cell.key()`` it holds (a plan that chose them one by one).
    ``executor`` (refbench.run.executors; default: this machine, a cell at a
    time) runs the cells; whatever runs them, each is measured by ``run_cell``'s
    launcher in a child process on the machine that runs it, its record carries that
    machine's ``env``, and this process appends it.
    """
    if isolation not in ISOLATIONS:
        raise RefbenchError(f"unknown isolation {isolation!r}; use one of {', '.join(ISOLATIONS)}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise RefbenchError(f"--time-budget must be positive, got {time_budget_s:g}")
    bad_retry = sorted(set(retry) - set(STATUSES))
    if bad_retry:
        raise RefbenchError(f"--retry {', '.join(bad_retry)}: not a status; statuses: {', '.join(STATUSES)}")
    if retry and not resume:
        raise RefbenchError("--retry picks which finished cells --resume measures again: add --resume, or drop --retry")
    executor = executor or LocalExecutor()
    cells = matrix.cells(cuda_available=executor.cuda_available(), where=executor.where())
    settings = matrix.settings
    from refbench.harness.step import set_threads

    set_threads(settings.threads)  # so the environment records the threads the cells use
    run_id, env = new_run_id(), collect_env()
    records = []
    with ResultWriter(out) as writer:
        for record in leftover_records(out):
            writer.append(record)
            records.append(record)
            on_record(record)
        cells = select([c for c in cells if only is None or c.key() in only], shard=shard,
                       done=finished_keys(out, retry) if resume else ())
        if time_budget_s is not None:
            cells = cheapest_first(cells)
        on_start(len(cells))
        deadline = None if time_budget_s is None else time.time() + time_budget_s
        launcher = None if executor.remote else _Launcher(isolation, settings.timeout_s, _scratch(out))
        if launcher is None:
            measure = functools.partial(measure_on_node, settings=settings, run_id=run_id, isolation=isolation,
                                        deadline=deadline, budget_s=time_budget_s)
        else:
            measure = functools.partial(_measure_here, launcher=launcher, settings=settings, run_id=run_id, env=env,
                                        deadline=deadline, budget_s=time_budget_s)
        needs = functools.partial(cell_needs, threads=settings.threads)
        for _, record in executor.map(measure, cells, needs=needs, lost=lambda cell, lost: cell.record(
                Outcome(lost.status, lost.error), run_id=run_id, env=lost.env or env)):
            writer.append(record)
            if launcher is not None:
                launcher.done(record)
            records.append(record)
            on_record(record)
    return records


def cell_needs(cell: Cell, *, threads: int | str | None) -> Needs | None:
    """What a cell needs of the machine that measures it: a CPU per thread (every CPU of a node for ``all``) and a
    GPU for a CUDA backend; nothing for a skipped cell, which is recorded where the run is."""
    if cell.skip:
        return None
    return Needs(cpus=threads if isinstance(threads, int) else None,
                 gpus=1 if backends.resolve(cell.backend).device == "cuda" else 0)


def _unmeasured(cell: Cell, deadline: float | None, budget_s: float | None) -> Outcome | None:
    """Why the cell is not measured (skipped; its run's time budget used up before it started), None if it is."""
    if cell.skip:
        return Outcome("skipped", cell.skip)
    if deadline is not None and time.time() > deadline:
        return Outcome("not_run", f"the matrix's time budget of {budget_s:g} s was used up before this cell "
                                  f"started; `--resume` runs it")
    return None


def _measure_here(cell: Cell, *, launcher: "_Launcher", settings: Settings, run_id: str, env: dict,
                  deadline: float | None, budget_s: float | None) -> Iterator[dict]:
    """A cell of a run on this machine (the executors' protocol: the machine, then the record)."""
    yield env
    outcome = _unmeasured(cell, deadline, budget_s)
    yield cell.record(outcome, run_id=run_id, env=env) if outcome else launcher.run(cell, settings, run_id=run_id,
                                                                                     env=env)


def measure_on_node(cell: Cell, *, settings: Settings, run_id: str, isolation: str, deadline: float | None,
                    budget_s: float | None) -> Iterator[dict]:
    """A cell of a run on the machine a remote executor chose: that machine's ``env``, then the cell's record,
    measured by ``run_cell`` (a child process, in a scratch folder of this machine's own)."""
    from refbench.harness.step import set_threads

    set_threads(settings.threads)
    env = collect_env()
    yield env
    outcome = _unmeasured(cell, deadline, budget_s)
    yield cell.record(outcome, run_id=run_id, env=env) if outcome else run_cell(
        cell, settings, isolation=isolation, run_id=run_id, env=env)


NOT_MEASURED = ("not_run", "timeout", "error", "oom")


def exit_code(records: list[dict]) -> int:
    """EXIT_GATE when a cell gave a wrong answer or missed its target, else EXIT_INCOMPLETE when a cell asked
    for has no measurement, else EXIT_OK (skipped cells are the backends' stated limits, not gaps)."""
    statuses = {r["status"] for r in records}
    if statuses & {"failed", "missed"}:
        return EXIT_GATE
    return EXIT_INCOMPLETE if statuses & set(NOT_MEASURED) else EXIT_OK


def summary_line(records: list[dict], resume_hint: str = "rerun the same command with --resume") -> str:
    """One line: how many cells were measured, wrong, skipped and not measured, and how to finish."""
    counts = {status: sum(r["status"] == status for r in records) for status in STATUSES}
    unstable = sum(bool((r.get("metrics") or {}).get("unstable")) for r in records)
    missing = sum(counts[s] for s in NOT_MEASURED)
    parts = [f"{counts['ok']} ok" + (f" ({unstable} unstable)" if unstable else ""), f"{counts['failed']} failed",
             f"{counts['skipped']} skipped", f"{missing} not measured"
             + (" (" + ", ".join(f"{counts[s]} {s}" for s in NOT_MEASURED if counts[s]) + ")" if missing else "")]
    counted = f"{len(records)} cells: " + ", ".join(parts)
    if counts["missed"]:
        counted += f", {counts['missed']} missed their target"
    if exit_code(records) == EXIT_GATE:
        return (f"GATE: {counts['failed']} cells gave a wrong answer and {counts['missed']} missed their target "
                f"({counted})")
    if missing:
        return f"INCOMPLETE: {missing} of {len(records)} cells have no measurement; {resume_hint} ({counted})"
    return f"complete: every cell measured ({counted})"


def run_cell(cell: Cell, settings: Settings | None = None, *, isolation: str = "forkserver",
             run_id: str | None = None, env: dict | None = None) -> dict:
    """Measure one cell (``refbench.run.matrix.plan_cell`` makes one) and return its record, written nowhere.

    ``run_id`` and ``env`` default to a new run's and this machine's."""
    settings = settings or Settings()
    settings.validate()
    run_id, env = run_id or new_run_id(), env or collect_env()
    if cell.skip:
        return cell.record(Outcome("skipped", cell.skip), run_id=run_id, env=env)
    with scratch_dir("refbench-cells-") as scratch:
        return _Launcher(isolation, settings.timeout_s, scratch).run(cell, settings, run_id=run_id, env=env)


def leftover_records(out: str | os.PathLike) -> list[dict]:
    """The records that cells of killed runs writing ``out`` finished but never appended (their folders removed)."""
    return _Launcher("inline", 0.0, _scratch(out)).leftovers(Path(out))


def append_leftovers(out: str | os.PathLike) -> list[dict]:
    """Append ``leftover_records(out)`` to ``out``; return them."""
    records = leftover_records(out)
    if records:
        with ResultWriter(out) as writer:
            for record in records:
                writer.append(record)
    return records


def _scratch(out: str | os.PathLike) -> Path:
    """Where the cells of a run writing ``out`` keep their record and log until the record is appended."""
    out = Path(out)
    return out.parent / f".{out.name}.cells"


class _Launcher:
    """Starts one child per cell and turns whatever happens to it into a record.

    Each child works in its own folder of the scratch folder, named after
    this runner's pid; the child writes its whole record there, and the
    folder is removed once the record is in the results file (``done``).
    """

    def __init__(self, isolation: str, timeout_s: float, scratch: Path):
        self.isolation, self.timeout_s, self.scratch = isolation, timeout_s, scratch
        self._count = 0
        self._current: Path | None = None
        if isolation == "forkserver":
            # The fork server inherits this environment when it starts. Asking NVML, not the CUDA
            # driver, whether there is a GPU keeps the server free of CUDA state, which a forked
            # child could not use.
            os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
            self.context = multiprocessing.get_context("forkserver")
            self.context.set_forkserver_preload(["refbench.run.worker", *filter(None, [_main_module()])])
            remove_on_death(multiprocessing.util.get_temp_dir())   # the fork server's socket, should this die

    def leftovers(self, out: Path) -> list[dict]:
        """Records that cells of runs no longer alive finished but did not append to ``out``; their folders are
        removed. A record already in ``out`` (the run was killed after appending it, before removing its
        folder) is not appended again."""
        records = []
        for folder in sorted(self.scratch.glob("cell-*")) if self.scratch.is_dir() else []:
            try:
                pid = int(folder.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid() or alive(pid):
                continue   # another run writing to the same file is still at work
            record = folder / "record.json"
            if record.exists():
                with contextlib.suppress(ValueError, OSError):
                    records.append(json.loads(record.read_text(encoding="utf-8")))
            shutil.rmtree(folder, ignore_errors=True)
        self._remove_scratch_if_empty()
        if records and Path(out).exists():
            with open(out, encoding="utf-8", errors="replace") as f:
                appended = {line.rstrip("\n") for line in f}
            records = [r for r in records if dumps_record(r) not in appended]
        return records

    def run(self, cell: Cell, settings: Settings, *, run_id: str, env: dict) -> dict:
        if self.isolation == "inline":
            from refbench.run.worker import execute

            return cell.record(execute(cell, settings), run_id=run_id, env=env)
        self._count += 1
        folder = self.scratch / f"cell-{os.getpid()}-{self._count}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RefbenchError(f"cannot create {folder}: {exc.strerror}; free space or choose another --out") from None
        self._current = folder
        payload = {"cell": cell.to_dict(), "settings": settings.to_dict(), "runner_pid": os.getpid(),
                   "run_id": run_id, "env": env}
        record, log = folder / "record.json", folder / "log.txt"
        oom_kills = _oom_kills()
        exitcode, timed_out = self._start(payload, str(record), str(log), folder)
        if record.exists():
            with contextlib.suppress(ValueError, OSError):
                return json.loads(record.read_text(encoding="utf-8"))
        oom_kills_after = _oom_kills()
        oom_killed = None if oom_kills is None or oom_kills_after is None else oom_kills_after > oom_kills
        output = log.read_text(errors="replace") if log.exists() else ""
        outcome = self._failure(exitcode, timed_out, output, oom_killed)
        return cell.record(outcome, run_id=run_id, env=env)

    def done(self, record: dict) -> None:
        """The last cell's record is in the results file: its folder can go."""
        if self._current is not None:
            shutil.rmtree(self._current, ignore_errors=True)
            self._current = None
            self._remove_scratch_if_empty()

    def _remove_scratch_if_empty(self) -> None:
        with contextlib.suppress(OSError):
            self.scratch.rmdir()

    def _start(self, payload: dict, record: str, log: str, folder: Path) -> tuple[int | None, bool]:
        """Run the child to its end or its timeout; any interruption (Ctrl-C, SIGTERM) kills its group first."""
        launched_at = time.time()
        if self.isolation == "forkserver":
            from refbench.run.worker import run_child

            environ = _since_forkserver_start()
            process = self.context.Process(target=run_child, args=(payload, record, log, launched_at, environ),
                                           daemon=True)
            process.start()
            try:
                process.join(self.timeout_s)
                timed_out = process.is_alive()
            finally:
                if process.is_alive():
                    _kill_group(process.pid)
                    process.kill()
                    process.join()
            return process.exitcode, timed_out
        payload_path = folder / "payload.json"
        payload_path.write_text(json.dumps(payload, default=str), encoding="utf-8")
        with open(log, "wb") as log_file:
            child = subprocess.Popen([sys.executable, "-m", "refbench.run.worker", str(payload_path), record,
                                      repr(launched_at)], stdout=log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=Path(__file__).resolve().parents[2])
            try:
                return child.wait(self.timeout_s), False
            except subprocess.TimeoutExpired:
                return None, True
            finally:
                if child.poll() is None:
                    _kill_group(child.pid)
                    child.kill()
                    child.wait()

    def _failure(self, exitcode: int | None, timed_out: bool, log: str, oom_killed: bool | None) -> Outcome:
        """The outcome of a child that left no record. ``oom_killed``: whether the kernel's out-of-memory killer
        killed a process while it ran (None where the kernel does not say)."""
        from refbench.run.worker import error_tail

        tail = error_tail(log)
        said = f"; its last output: {tail}" if tail else ""
        if timed_out:
            return Outcome("timeout", f"no result within {self.timeout_s:g} s, killed{said}")
        how = (f"killed by {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0
               else f"exit status {exitcode}")
        if "out of memory" in log.lower():
            return Outcome("oom", f"the worker died ({how}) out of memory{said}")
        if exitcode == -signal.SIGKILL and oom_killed:
            return Outcome("oom", f"the worker was killed by SIGKILL while the kernel's out-of-memory killer killed "
                                  f"a process (/proc/vmstat oom_kill){said}")
        if exitcode == -signal.SIGKILL:
            source = ("from outside refbench (the kernel's out-of-memory killer killed nothing meanwhile)"
                      if oom_killed is False else "by the kernel's out-of-memory killer or from outside refbench "
                                                  "(this machine does not say which)")
            return Outcome("error", f"the worker was killed by SIGKILL {source}, without a result; `--resume` "
                                    f"measures it again{said}")
        return Outcome("error", f"the worker died ({how}) without a result{said}")


def _main_module() -> str | None:
    """This process's main module by its import name, where it was started as a file of an installed package (a Ray
    worker's ``ray/_private/workers/default_worker.py``); None otherwise (a user's script is never imported here).

    A child forked from the fork server runs such a main file again before its work, as multiprocessing does
    with a main module it knows only by path (the fork server would import it once, but ensure_running
    drops the path), and a Ray worker's main imports Ray: a second or more of every cell. Imported into the
    fork server by name, its imports are there already for each child."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is not None or not path:
        return None
    path = Path(path).resolve().with_suffix("")
    for entry in sys.path:
        try:
            parts = path.relative_to(Path(entry or os.curdir).resolve()).parts
        except ValueError:
            continue
        if parts and all(part.isidentifier() for part in parts) and Path(entry).name in ("site-packages",
                                                                                        "dist-packages"):
            return ".".join(parts)
    return None


# The environment each process's fork server started with, by the process's pid.
_forkserver_environ: dict[int, dict[str, str]] = {}


def _since_forkserver_start() -> dict[str, str | None]:
    """What this process's environment changed since its fork server started (None: a variable removed), which
    each child takes on: a Ray worker, say, is given its own CUDA_VISIBLE_DEVICES for each task it runs. The fork
    server is started here, on the first call, with the environment of the moment."""
    started = _forkserver_environ.get(os.getpid())
    if started is None:
        started = _forkserver_environ[os.getpid()] = dict(os.environ)
        multiprocessing.forkserver.ensure_running()
        return {}
    changed: dict[str, str | None] = {k: v for k, v in os.environ.items() if started.get(k) != v}
    return {**changed, **{k: None for k in started if k not in os.environ}}


def _oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed since boot; None where it does not say."""
    try:
        with open("/proc/vmstat", encoding="ascii") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _kill_group(pid: int) -> None:
    """Kill the child's process group (it called setsid), so compile workers it started die with it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
