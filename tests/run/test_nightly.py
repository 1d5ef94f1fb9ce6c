"""refbench.run.nightly: a night is measured, flagged cells are measured again, and the night is stored."""
import json

import pytest

pytest.importorskip("ruptures", reason="nightly finds change points with ruptures (pip install ruptures); "
                                    "the GPU machine's image has none")

from refbench.run.matrix import Matrix  # noqa: E402
from refbench.run.nightly import run_nightly  # noqa: E402
from refbench.run.settings import Settings  # noqa: E402


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
