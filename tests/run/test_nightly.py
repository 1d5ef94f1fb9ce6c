"""refbench.run.nightly: a night is measured, flagged cells are measured again, and the night is stored."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ruptures", reason="nightly finds change points with ruptures (pip install ruptures); "
                                    "the GPU machine's image has none")

from refbench.records.store import dumps_record  # noqa: E402
from refbench.regress.history import store as history_store  # noqa: E402
from refbench.run.matrix import Matrix  # noqa: E402
from refbench.run.nightly import run_nightly  # noqa: E402
from refbench.run.settings import Settings  # noqa: E402
from tests.fixtures.timed_records import CPU, timed  # noqa: E402


def _paced_night(directory, paces, pace_file, monkeypatch):
    pace_file.write_text("\n".join(map(str, paces)) + "\n")
    monkeypatch.setenv("REFBENCH_TEST_PACE_FILE", str(pace_file))
    matrix = Matrix(workloads=["test_paced"], backends=["cpu"], modes=["infer"], batch_sizes=[2],
                    settings=Settings(iters=10, max_warmup=3, imports=("tests.fixtures.paced_workload",)))
    return run_nightly(directory, matrix=matrix, isolation="inline")


def test_a_flag_stays_only_when_the_rerun_agrees(tmp_path, monkeypatch):
    pace = tmp_path / "pace.txt"
    # A loaded machine may leave a night inconclusive (exit 3); what matters here is that nothing gates (exit 1).
    for _ in range(3):
        assert _paced_night(tmp_path / "h", [20], pace, monkeypatch).exit_code != 1
    # steps of tens of milliseconds, so that timer slack on a busy machine is a small part of them
    once = _paced_night(tmp_path / "h", [60, 20], pace, monkeypatch)    # slow once, fast when measured again
    assert once.reruns == 1 and once.exit_code != 1 and once.machines[0].failing.empty
    stored = [json.loads(line) for line in once.stored[0].read_text().splitlines()]
    assert len(stored) == 2                                               # both measurements are kept
    twice = _paced_night(tmp_path / "h", [60, 60], pace, monkeypatch)
    assert twice.reruns == 1 and twice.exit_code == 1
    assert twice.machines[0].failing.iloc[0]["records"] == 2
    assert not list((tmp_path / "h").glob(".night-*"))


# ----- a night that was interrupted -----

def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _tiny_night(history):
    matrix = Matrix(workloads=["test_tiny"], backends=["cpu"], modes=["infer"], batch_sizes=[2],
                    settings=Settings(iters=2, max_warmup=1, imports=("tests.fixtures.faulty_workloads",)))
    return run_nightly(history, matrix=matrix, isolation="inline")


def _interrupted(history: Path, records: list[dict]) -> Path:
    scratch = history / f".night-{_dead_pid()}.jsonl"
    scratch.write_text("".join(dumps_record(r) + "\n" for r in records))
    return scratch


def test_an_interrupted_nights_records_are_stored_once_as_its_night(tmp_path):
    history = tmp_path / "h"
    history.mkdir()
    measured = timed("mlp", env=CPU)
    scratch = _interrupted(history, [measured])
    result = _tiny_night(history)
    assert not scratch.exists()
    kept = [path for path in history.glob("cpu1/*.jsonl")]
    assert len(kept) == 1 and kept[0].name.startswith(measured["time"][:10])
    assert [json.loads(line) for line in kept[0].read_text().splitlines()] == [measured]
    assert f"1 record of an interrupted night ({scratch}) stored as {kept[0]}" in result.notes


def test_a_night_stored_before_its_run_was_killed_is_not_stored_again(tmp_path):
    history = tmp_path / "h"
    measured = timed("mlp", env=CPU)
    stored = history_store(history, [measured])
    scratch = _interrupted(history, [measured])
    result = _tiny_night(history)
    assert not scratch.exists() and list(history.glob("cpu1/*.jsonl")) == stored
    assert (f"removed {scratch}: a stored night holds its 1 record already (its run was killed after storing them)"
            in result.notes)


def test_an_interrupted_night_that_measured_nothing_is_removed_with_a_note(tmp_path):
    history = tmp_path / "h"
    history.mkdir()
    scratch = _interrupted(history, [])
    partial = history / "cpu1" / f".2024-01-01-abc.{_dead_pid()}.partial"
    partial.parent.mkdir()
    partial.write_text("half a night")
    result = _tiny_night(history)
    assert not scratch.exists() and not partial.exists()
    assert f"removed {scratch}, left by an interrupted night that had measured nothing" in result.notes
    assert any(note.startswith(f"removed {partial}, a night an interrupted run was writing") for note in result.notes)


def test_a_night_being_measured_by_a_live_run_is_left_alone(tmp_path):
    history = tmp_path / "h"
    history.mkdir()
    scratch = history / f".night-{os.getppid()}.jsonl"
    scratch.write_text(dumps_record(timed("mlp", env=CPU)) + "\n")
    _tiny_night(history)
    assert scratch.exists() and not list(history.glob("cpu1/*"))
