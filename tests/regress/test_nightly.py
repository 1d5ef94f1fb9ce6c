"""refbench nightly: the history's layout, change points, the look-back window, the rerun, the page, bad input."""
import json

import numpy as np
import pytest

pytest.importorskip("ruptures", reason="nightly finds change points with ruptures (pip install ruptures); "
                                    "the GPU machine's image has none")

from refbench.regress import history  # noqa: E402
from refbench.regress import nightly  # noqa: E402
from refbench.regress.changepoints import change_points  # noqa: E402
from refbench.cli import main  # noqa: E402
from refbench.records.store import dumps_record  # noqa: E402
from tests.fixtures.timed_records import CPU, timed  # noqa: E402


def night(directory, number, records, commit=None):
    """Store ``records`` as night ``number`` (October 2026) of commit ``c<number>``."""
    env = {**CPU, "git_commit": commit or f"c{number:02d}"}
    for r in records:
        r["env"] = {**env, "env_key": r["env"]["env_key"]}
        r["time"] = f"2026-10-{number + 1:02d}T03:00:00+00:00"
    return history.store(directory, records, date=f"2026-10-{number + 1:02d}")


def steady_history(directory, nights=8, *, ms=10.0, last_ms=None, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(nights):
        level = last_ms if last_ms is not None and i == nights - 1 else ms
        night(directory, i, [timed("mlp", ms=level * (1 + 0.01 * rng.standard_normal()), seed=i),
                             timed("lenet5", ms=20 * (1 + 0.01 * rng.standard_normal()), seed=i + 100)])


def test_the_history_layout_never_replaces_a_night(tmp_path):
    first = night(tmp_path, 0, [timed("mlp"), timed("lenet5", env={**CPU, "env_key": "cpu2"})], commit="abc")
    again = night(tmp_path, 0, [timed("mlp")], commit="abc")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in first + again) == [
        "cpu1/2026-10-01-abc-2.jsonl", "cpu1/2026-10-01-abc.jsonl", "cpu2/2026-10-01-abc.jsonl"]
    assert not list(tmp_path.rglob(".*"))            # no temporary file is left behind
    records = [json.loads(line) for line in (tmp_path / "cpu1/2026-10-01-abc.jsonl").read_text().splitlines()]
    assert [r["workload"] for r in records] == ["mlp"]
    found, notes = history.nights(tmp_path)
    assert [(n.env_key, n.path.name) for n in found] == [
        ("cpu1", "2026-10-01-abc.jsonl"), ("cpu1", "2026-10-01-abc-2.jsonl"), ("cpu2", "2026-10-01-abc.jsonl")]


@pytest.mark.parametrize("seed", range(5))
def test_a_ten_percent_step_at_night_20_of_30_is_the_one_change_point(seed):
    rng = np.random.default_rng(seed)
    values = 100 * (1 + 0.02 * rng.standard_normal(30))
    values[20:] *= 0.9
    changes = change_points(values, threshold=0.05)
    assert len(changes) == 1 and abs(changes[0].index - 20) <= 1
    assert changes[0].ratio == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_noise_alone_has_no_change_point(seed):
    rng = np.random.default_rng(100 + seed)
    assert change_points(100 * (1 + 0.03 * rng.standard_normal(30)), threshold=0.05) == []


def test_a_step_in_the_history_is_an_open_regression_with_its_commits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(30):
        level = 11.0 if i >= 20 else 10.0
        night(tmp_path, i, [timed("mlp", ms=level * (1 + 0.02 * rng.standard_normal()), seed=i)])
    assert main(["nightly", "--history", str(tmp_path), "--no-run"]) == 0   # the latest night is like its window
    verdict = nightly.judge_history(tmp_path)[0][0]
    rows = verdict.open.set_index("metric")
    assert rows.loc["samples_per_s", "first bad night"] == "2026-10-21-c20"
    assert rows.loc["samples_per_s", "commits"] == "c19..c20"
    assert rows.loc["samples_per_s", "magnitude"] == pytest.approx(1 / 1.1, abs=0.03)
    page = (tmp_path / "index.html").read_text()
    assert "Open regressions on cpu1" in page and "c19..c20" in page and page.count("data:image/png;base64") == 3


def test_the_latest_night_against_its_window(tmp_path, capsys):
    steady_history(tmp_path, last_ms=12.0)
    assert main(["nightly", "--history", str(tmp_path), "--no-run"]) == 1
    out = capsys.readouterr().out
    assert "regressed: mlp | cpu | train | bs=16 | synthetic: samples/s 0.84" in out
    assert main(["nightly", "--history", str(tmp_path), "--no-run", "--fail-on", "memory"]) == 0
    quiet = tmp_path / "quiet"
    steady_history(quiet, last_ms=10.2)
    assert main(["nightly", "--history", str(quiet), "--no-run"]) == 0


def test_with_few_nights_the_previous_nights_samples_decide(tmp_path):
    night(tmp_path, 0, [timed("mlp", ms=10.0, seed=1)])
    night(tmp_path, 1, [timed("mlp", ms=11.5, seed=2)])
    verdict = nightly.judge_history(tmp_path)[0][0]
    row = verdict.latest.iloc[0]
    assert row["class"] == "regressed" and row["by"] == "samples" and row["high"] < 1 / 1.05   # samples/s fell


def test_a_newly_failing_cell_gates_correctness(tmp_path):
    steady_history(tmp_path, nights=3)
    failed = timed("mlp", status="failed")
    failed["error"] = "wrong answer: grad:fc.weight relative error 1e-2"
    night(tmp_path, 3, [failed, timed("lenet5", ms=20)])
    latest = nightly.judge_history(tmp_path)[0][0].latest.set_index("class")
    assert "wrong answer" in latest.loc["newly failing", "note"]
    assert nightly.judge_history(tmp_path, fail_on=("throughput",))[0][0].failing.empty


def _benchmark_file(path, mean_s, seed):
    rng = np.random.default_rng(seed)
    times = list(mean_s * (1 + 0.02 * rng.standard_normal(30)))
    stats = {"min": min(times), "max": max(times), "mean": float(np.mean(times)), "median": float(np.median(times)),
             "stddev": float(np.std(times)), "rounds": 30, "q1": 0, "q3": 0, "ops": 1 / mean_s, "data": times}
    path.write_text(json.dumps({"machine_info": {"node": "vm", "env_key": "pbkey", "cpu": {"brand_raw": "AMD"}},
                                "commit_info": {"id": f"{seed:040d}"}, "datetime": f"2026-10-0{seed}T01:00:00+00:00",
                                "benchmarks": [{"name": "test_softmax", "fullname": "t.py::test_softmax",
                                                "extra_info": {"device": "cpu"}, "stats": stats}]}))
    return str(path)


def test_pytest_benchmark_files_are_nights_too(tmp_path, capsys):
    directory = tmp_path / "h"
    assert main(["nightly", "--history", str(directory), "--benchmark-json",
                 _benchmark_file(tmp_path / "a.json", 0.010, 1)]) == 0
    assert main(["nightly", "--history", str(directory), "--benchmark-json",
                 _benchmark_file(tmp_path / "b.json", 0.013, 2)]) == 1
    assert "regressed: t.py::test_softmax | cpu | benchmark | bs=- | -: ops/s 0.7" in capsys.readouterr().out
    assert sorted(p.parent.name for p in directory.rglob("*.jsonl")) == ["pbkey", "pbkey"]


@pytest.mark.parametrize("setup, argv, message", [
    (lambda d: d.write_text("x"), ["--no-run"], "cannot write the history into"),
    (lambda d: d.mkdir(), ["--no-run"], "nothing to judge"),
    (lambda d: d.mkdir(), [], "a night needs something to measure"),
    (lambda d: d.mkdir(), ["--benchmark-json", "/nonexistent.json"], "/nonexistent.json is not a pytest-benchmark"),
    (lambda d: d.mkdir(), ["--no-run", "--fail-on", "speed"], "--fail-on speed"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, setup, argv, message):
    directory = tmp_path / "h"
    setup(directory)
    assert main(["nightly", "--history", str(directory), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_an_unreadable_night_is_noted_and_kept(tmp_path, capsys):
    steady_history(tmp_path, nights=3)
    broken = tmp_path / "cpu1" / "2026-10-09-bad.jsonl"
    broken.write_text("{truncated\n")
    other = tmp_path / "cpu1" / "2026-10-10-old.jsonl"
    other.write_text(json.dumps({"schema": 0, "workload": "mlp"}) + "\n")
    partial = tmp_path / "cpu1" / "2026-10-11-c11.jsonl"
    partial.write_text(dumps_record(timed("mlp", env={**CPU, "git_commit": "c11"})) + "\n{\"sche")
    assert main(["nightly", "--history", str(tmp_path), "--no-run"]) == 0
    err = capsys.readouterr().err
    assert f"{broken}: no records" in err and f"{other}:1: a record of schema 0" in err
    assert f"{partial}:2: not JSON" in err
    assert broken.read_text() == "{truncated\n" and other.exists()


def test_a_busy_night_is_judged_by_its_interval_and_the_busy_machine_is_a_note(tmp_path):
    steady_history(tmp_path, nights=4)
    slow = timed("mlp", ms=13.0, noise={"reasons": ["7% of the CPU time was stolen"], "kinds": ["stolen"]})
    night(tmp_path, 4, [slow, timed("lenet5", ms=20)])
    latest = nightly.judge_history(tmp_path)[0][0].latest.set_index("cell")
    row = latest.loc["mlp | cpu | train | bs=16 | synthetic"]
    assert row["class"] == "regressed" and "machine busy: 7% of the CPU time was stolen" in row["note"]
