"""``refbench nightly``: tonight's matrix measured into the history, judged against earlier nights.

A night: the matrix is measured into a scratch file in the history directory
(``.night-<pid>.jsonl``: nothing measured is lost if the run dies),
pytest-benchmark files given with it are added, and the night is judged
(refbench.regress.nightly) against the nights before it on the same machine.
Every matrix cell flagged (regressed or newly failing) is measured once more
in the same run; the night's value of a cell is its last record, so a flag
stays only when the rerun agrees. Then the night is stored
(``DIR/<env_key>/<date>-<commit>.jsonl``), judged again from the history, and
``DIR/index.html`` rewritten.

A night that was interrupted (its run killed, even with SIGKILL) left its
scratch file behind: the next night stores those records as a night of the
date they were measured, once (none stored twice, should the kill have come
between storing and removing the scratch), or removes a scratch that holds
none, and says which in its notes.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Callable, Sequence

from refbench.errors import RefbenchError
from refbench.lifeline import alive
from refbench.records import analysis, benchmark_json
from refbench.records.schema import MATRIX_MODES
from refbench.records.store import read_results
from refbench.regress import history
from refbench.regress.nightly import NightlyResult, judge_history, judge_machine, write_index
from refbench.run.executors import Executor
from refbench.run.matrix import Matrix
from refbench.run.runner import append_leftovers, run_matrix


def run_nightly(directory: str | os.PathLike, *, matrix=None, benchmark_files: Sequence[str] = (),
                isolation: str = "forkserver", time_budget_s: float | None = None,
                on_record: Callable[[dict], None] = lambda r: None, executor: Executor | None = None,
                **options) -> NightlyResult:
    """Measure, store and judge a night (module docstring); ``executor`` (default: this machine) runs its cells,
    each record filed under the machine that measured it."""
    directory = history.check_dir(directory)
    interrupted = _store_interrupted_nights(directory)
    earlier, notes = history.nights(directory)     # a history that cannot be read fails before anything runs
    for path in benchmark_files:
        if not os.path.isfile(path) or not benchmark_json.is_benchmark_json(path):
            raise RefbenchError(f"{path} is not a pytest-benchmark file; give one `pytest --benchmark-json` wrote")
    if matrix is None and not benchmark_files:
        raise RefbenchError("a night needs something to measure: --workloads (a matrix) or --benchmark-json FILE")
    scratch = directory / f".night-{os.getpid()}.jsonl"
    records = []
    if matrix is not None:
        records += run_matrix(matrix, scratch, isolation=isolation, time_budget_s=time_budget_s, on_record=on_record,
                              executor=executor)
    for path in benchmark_files:
        got, _, left_out = benchmark_json.records(path)
        records += got
        interrupted += left_out
    reruns = _flagged_matrix_cells(earlier, records, options)
    for cell in reruns:
        records += _rerun(cell, matrix, scratch, isolation, on_record, executor)
    if scratch.exists():
        records = [*read_results(scratch), *[r for r in records if r.get("mode") == benchmark_json.MODE]]
    stored = history.store(directory, records)
    scratch.unlink(missing_ok=True)
    tonight = sorted({p.parent.name for p in stored})
    machines, notes = judge_history(directory, env_keys=tonight, **options)
    return NightlyResult(stored, write_index(directory, *judge_history(directory, **options)), machines,
                         len(reruns), [*interrupted, *notes])


def _store_interrupted_nights(directory: Path) -> list[str]:
    """Store the records of nights whose runs are gone (module docstring); one note for each."""
    notes = []
    for path in history.remove_stale_partials(directory):
        notes.append(f"removed {path}, a night an interrupted run was writing (its records are in its scratch)")
    for scratch in sorted(directory.glob(".night-*.jsonl")):
        pid = scratch.name.removeprefix(".night-").removesuffix(".jsonl")
        if not pid.isdigit() or int(pid) == os.getpid() or alive(int(pid)):
            continue
        append_leftovers(scratch)
        records = read_results(scratch)
        if not records:
            notes.append(f"removed {scratch}, left by an interrupted night that had measured nothing")
        elif history.holds_run(directory, records[0]["run_id"]):
            notes.append(f"removed {scratch}: a stored night holds its {_records(len(records))} already (its run "
                         f"was killed after storing them)")
        else:
            stored = history.store(directory, records, date=_date(records))
            notes.append(f"{_records(len(records))} of an interrupted night ({scratch}) stored as "
                         f"{', '.join(map(str, stored))}")
        scratch.unlink()
    return notes


def _records(n: int) -> str:
    return f"{n} record{'' if n == 1 else 's'}"


def _date(records: list[dict]) -> str | None:
    """The UTC date the records were measured on (None: unknown, today's is used)."""
    try:
        return _dt.datetime.fromisoformat(records[0]["time"]).astimezone(_dt.timezone.utc).strftime("%Y-%m-%d")
    except (TypeError, ValueError):
        return None


def _flagged_matrix_cells(earlier: list[history.Night], records: list[dict], options: dict) -> list[dict]:
    """Tonight's matrix records whose cells the first look flags (regressed or newly failing, gated)."""
    tonight = analysis.to_frame(records)
    flagged = []
    for env_key, frame in tonight.groupby("env_key"):
        nights = [n for n in earlier if n.env_key == env_key]
        if not nights:
            continue
        provisional = history.Night(Path("tonight"), env_key, "", "", frame)
        cells = set(judge_machine([*nights, provisional], **options).failing["cell"])
        flagged += [r for r, c in zip(records, tonight["cell"]) if c in cells and r.get("mode") in MATRIX_MODES]
    return flagged


def _rerun(record: dict, matrix, scratch: Path, isolation: str, on_record, executor: Executor | None) -> list[dict]:
    again = Matrix(workloads=[record["workload"]], backends=[record["backend"]], modes=[record["mode"]],
                   batch_sizes=[record["batch_size"]], variants={record["workload"]: record.get("variant") or {}},
                   settings=matrix.settings)
    return run_matrix(again, scratch, isolation=isolation, on_record=on_record, executor=executor)


