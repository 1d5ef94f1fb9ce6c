"""refbench compare: a change counts only when its whole interval is beyond the threshold; classes, the
not-comparable rule, exit codes."""
import json

import pytest

from refbench.regress import compare as cmp
from refbench.cli import main
from refbench.records.schema import make_record
from refbench.records.store import dumps_record
from tests.fixtures.timed_records import CPU, samples, timed


def write(path, records):
    path.write_text("".join(dumps_record(r) + "\n" for r in records))
    return str(path)


def classes(base, new, **kwargs):
    result = cmp.compare_frames(_frame(base), _frame(new), **kwargs)
    return dict(zip(result.rows["cell"].str.split(" ").str[0], result.rows["class"])), result


def _frame(records):
    from refbench.records.analysis import to_frame

    return to_frame(records)


@pytest.mark.parametrize("cv, factor, expected", [
    (0.01, 1.10, "regressed"), (0.02, 1.30, "regressed"), (0.05, 1.30, "regressed"),
    (0.20, 2.00, "regressed"),                          # a noisy cell that got 2x slower is flagged
    (0.01, 1.00, "unchanged"), (0.01, 1.02, "unchanged"),
    (0.20, 1.03, "inconclusive"), (0.05, 1.05, "inconclusive"),   # noise or a change at the threshold: not judged
])
def test_a_change_counts_when_its_whole_interval_is_beyond_the_threshold(cv, factor, expected):
    base = timed(step_times=samples(10.0, cv, seed=1))
    new = timed(step_times=[t * factor for t in samples(10.0, cv, seed=2)])
    found, result = classes([base], [new])
    assert found["mlp"] == expected
    assert result.exit_code == {"regressed": 1, "unchanged": 0, "inconclusive": 3}[expected]
    assert result.summary_line().startswith({"regressed": "REGRESSION", "unchanged": "no regression",
                                              "inconclusive": "INCOMPLETE"}[expected])


def test_two_samples_cannot_bound_a_change_so_it_is_inconclusive():
    """The 90% interval of a shift needs more than two samples a side, whatever the ratio."""
    base = timed(step_times=[10.0, 10.1])
    new = timed(step_times=[12.0, 12.1])
    found, result = classes([base], [new])
    assert found["mlp"] == "inconclusive" and result.exit_code == 3


@pytest.mark.parametrize("factor, expected", [(2.0, "regressed"), (1.3, "inconclusive"), (1.0, "inconclusive")])
def test_a_busy_machine_widens_the_interval_but_does_not_veto(factor, expected):
    """Other processes on the free cores move a process's level by tens of percent between identical runs: a
    2x slowdown still stands out, a 30% one or none at all cannot be told apart from that, and says so."""
    busy = {"reasons": ["other processes kept 1.2 cores busy"], "kinds": ["busy"]}
    base = timed(step_times=samples(10.0, 0.05, seed=1))
    new = timed(step_times=[t * factor for t in samples(10.0, 0.05, seed=2)], noise=busy)
    found, result = classes([base], [new])
    assert found["mlp"] == expected and "machine busy" in result.rows.loc[0, "note"]
    assert result.rows.loc[0, "by"] == "busy"


def test_on_a_busy_cpu_the_tighter_cpu_clock_judges():
    """Wall times spread by another process's load; the process's CPU time per step does not."""
    wall_b, wall_n = samples(10.0, 0.30, seed=1), samples(13.0, 0.30, seed=2)
    base = timed(step_times=wall_b)
    new = timed(step_times=wall_n)
    base["metrics"]["latency_ms"]["cpu_samples"] = samples(9.0, 0.01, seed=3)
    new["metrics"]["latency_ms"]["cpu_samples"] = samples(11.7, 0.01, seed=4)
    found, result = classes([base], [new])
    assert found["mlp"] == "regressed" and result.rows.loc[0, "by"].endswith("cpu clock")


def test_a_speed_up_is_improved_and_exits_0():
    found, result = classes([timed(ms=10.0, seed=1)], [timed(ms=8.0, seed=2)])
    assert found["mlp"] == "improved" and result.exit_code == 0
    assert result.rows.loc[0, "ratio"] == pytest.approx(1.25, rel=0.03)   # samples/s new over base


def test_one_preempted_step_does_not_make_a_steady_cell_unstable():
    steady = samples(10.0, 0.01, seed=3)
    base, new = timed(step_times=steady[:-1] + [60.0]), timed(step_times=[t * 1.2 for t in samples(10.0, 0.01)])
    assert classes([base], [new])[0]["mlp"] == "regressed"


def test_new_missing_and_newly_failing_cells():
    base = [timed("mlp"), timed("lenet5"), timed("cnn_small"), timed("rnn_rows"),
            make_record(run_id="r", env=CPU, workload="lstm_rows", backend="cpu", mode="converge", batch_size=16,
                        dataset="fashion-mnist", status="ok", metrics={"reached": True, "target_metric": "accuracy"})]
    new = [timed("mlp", seed=5), timed("gru_rows"),
           make_record(run_id="r", env=CPU, workload="lenet5", backend="cpu", mode="train", batch_size=16,
                       dataset="synthetic", status="failed", error="wrong answer: grad:fc relative error 1e-2"),
           make_record(run_id="r", env=CPU, workload="cnn_small", backend="cpu", mode="train", batch_size=16,
                       dataset="synthetic", status="timeout", error="no result within 60 s"),
           make_record(run_id="r", env=CPU, workload="lstm_rows", backend="cpu", mode="converge", batch_size=16,
                       dataset="fashion-mnist", status="ok", metrics={"reached": False, "target_metric": "accuracy"})]
    found, result = classes(base, new)
    assert found == {"lenet5": "newly failing", "cnn_small": "newly failing", "lstm_rows": "newly failing",
                     "gru_rows": "new", "rnn_rows": "not measured", "mlp": "unchanged"}
    assert result.exit_code == 1
    only_speed = cmp.compare_frames(_frame(base), _frame(new), fail_on=("throughput",))
    assert only_speed.failing.empty   # what gates is the user's choice ...
    assert only_speed.exit_code == 3  # ... and cells without a measurement still leave the comparison incomplete
    accuracy = cmp.compare_frames(_frame(base), _frame(new), fail_on=("accuracy",))
    assert list(accuracy.failing["cell"].str.split(" ").str[0]) == ["lstm_rows"]


def test_another_torch_or_driver_is_not_comparable_never_a_regression():
    other_torch = {**CPU, "env_key": "cpu2", "torch": "2.15.0"}
    base = [timed("mlp"), timed("lenet5")]
    new = [timed("mlp", seed=3), timed("lenet5", ms=20.0, env=other_torch)]
    found, result = classes(base, new)
    assert found == {"mlp": "unchanged", "lenet5": "not measured"} and result.exit_code == 3
    assert result.not_comparable == ["1 cells of machine cpu2 not comparable (torch 2.14.1 -> 2.15.0)"]
    gpu = {**CPU, "env_key": "gpu1", "gpu": "H100", "driver": "580.1"}
    newer_driver = {**gpu, "driver": "590.2"}
    _, result = classes([timed("mlp", env=gpu)], [timed("mlp", ms=20.0, env=newer_driver)])
    assert result.rows.empty and "driver 580.1 -> 590.2" in result.not_comparable[0]


def test_memory_counts_beyond_the_threshold_and_its_floor():
    base = timed(peak_bytes=100 << 20, seed=1)
    assert classes([base], [timed(peak_bytes=130 << 20, seed=2)])[1].rows.loc[0, "note"] == "memory regressed 1.3x"
    assert classes([base], [timed(peak_bytes=130 << 20, seed=2)])[0]["mlp"] == "regressed"
    assert classes([base], [timed(peak_bytes=106 << 20, seed=2)])[0]["mlp"] == "unchanged"   # CPU RSS: 8 MiB floor
    small = timed(peak_bytes=1 << 20, seed=1)
    assert classes([small], [timed(peak_bytes=(1 << 20) + 900_000, seed=2)])[0]["mlp"] == "unchanged"
    assert classes([base], [timed(peak_bytes=130 << 20, seed=2)], fail_on=("throughput",))[0]["mlp"] == "unchanged"


def _benchmark_json(path, means, *, data=True, machine=None):
    benchmarks = []
    for name, mean in means.items():
        times = samples(mean, 0.02, n=30, seed=len(name))
        stats = {"min": min(times), "max": max(times), "mean": sum(times) / len(times), "median": sorted(times)[15],
                 "stddev": 0.02 * mean, "rounds": len(times), "q1": sorted(times)[7], "q3": sorted(times)[22],
                 "ops": 1 / mean, "iterations": 1}
        if data:
            stats["data"] = times
        benchmarks.append({"group": None, "name": name, "fullname": f"tests/benchmarks/test_x.py::{name}",
                           "params": None, "param": None, "extra_info": {"device": "cpu"}, "stats": stats})
    document = {"machine_info": machine or {"node": "vm", "processor": "x86_64", "machine": "x86_64",
                                            "python_implementation": "CPython", "python_version": "3.11.7",
                                            "system": "Linux", "cpu": {"brand_raw": "AMD EPYC"}},
                "commit_info": {"id": "0123456789abcdef", "dirty": False}, "benchmarks": benchmarks,
                "datetime": "2026-11-23T10:00:00.000000+00:00", "version": "5.3.1"}
    path.write_text(json.dumps(document, indent=2))
    return str(path)


@pytest.mark.parametrize("data", [True, False], ids=["raw samples", "summary statistics only"])
def test_pytest_benchmark_json_is_compared_like_results(tmp_path, capsys, data):
    base = _benchmark_json(tmp_path / "base.json", {"test_softmax": 0.010, "test_conv": 0.020}, data=data)
    new = _benchmark_json(tmp_path / "new.json", {"test_softmax": 0.012, "test_conv": 0.020}, data=data)
    assert main(["compare", base, new]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: 1 cells regressed" in out and "test_x.py::test_softmax | cpu | benchmark" in out
    result = cmp.compare_files([base], [new])
    row = result.rows.set_index("class").loc["regressed"]
    assert row["metric"] == "ops/s" and row["ratio"] == pytest.approx(1 / 1.2, rel=0.02)
    assert main(["compare", base, base]) == 0


def test_a_pytest_benchmark_file_of_another_machine_is_not_comparable(tmp_path, capsys):
    base = _benchmark_json(tmp_path / "base.json", {"test_softmax": 0.010})
    other = {"node": "box", "machine": "x86_64", "system": "Linux", "python_implementation": "CPython",
             "python_version": "3.12.1", "cpu": {"brand_raw": "Intel Xeon"}}
    new = _benchmark_json(tmp_path / "new.json", {"test_softmax": 0.02}, machine=other)
    assert main(["compare", base, new]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing is comparable" in err and "cpu AMD EPYC -> Intel Xeon" in err and "\n" not in err


def test_exit_codes_and_markdown(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [timed("mlp", seed=1), timed("lenet5", seed=1)])
    slower = write(tmp_path / "new.jsonl", [timed("mlp", ms=12.0, seed=2), timed("lenet5", seed=2)])
    assert main(["compare", base, slower, "--markdown"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("**refbench compare**: REGRESSION: 1 cells regressed or newly failing")
    assert "| regressed | mlp / cpu / train / bs=16 / synthetic | samples/s |" in out
    assert "<details><summary>1 unchanged cells</summary>" in out
    assert main(["compare", base, slower, "--threshold", "25%"]) == 0
    assert main(["compare", base, base]) == 0


@pytest.mark.parametrize("setup, message", [
    (lambda p: p.write_text(""), "no records in"),
    (lambda p: p.write_text("{not json\n"), "(1 corrupt lines)"),
    (lambda p: p.write_text('{"schema": 9, "workload": "mlp"}\n'), "a record of schema 9 without backend"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, setup, message):
    good = write(tmp_path / "good.jsonl", [timed()])
    bad = tmp_path / "bad.jsonl"
    setup(bad)
    assert main(["compare", good, str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_corrupt_lines_are_skipped_named_and_the_rest_compared(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", [timed(seed=1)])
    new = tmp_path / "new.jsonl"
    new.write_text(dumps_record(timed(seed=2)) + "\n" + '{"schema": 1, "work')
    assert main(["compare", base, str(new)]) == 0
    captured = capsys.readouterr()
    assert f"{new}:2: not JSON" in captured.err and "1 unchanged" in captured.out


@pytest.mark.parametrize("argv, message", [
    (["--threshold=-3%"], "--threshold must be above 0%"),
    (["--fail-on", "speed"], "--fail-on speed: choose among throughput,latency,memory,correctness,accuracy"),
])
def test_bad_options_are_one_line(tmp_path, capsys, argv, message):
    base = write(tmp_path / "base.jsonl", [timed()])
    assert main(["compare", base, base, *argv]) == 2
    assert message in capsys.readouterr().err


def test_identical_reruns_are_never_regressions():
    """Three runs of twenty cells drawn from one distribution at CV 2-5%: no pair compares as a regression (a
    noisy cell may be inconclusive: its interval reaches the threshold), and the steady ones are unchanged."""
    runs = [[timed(f"w{i}", ms=5.0 + i, cv=0.02 + 0.0015 * i, seed=100 * run + i) for i in range(20)]
            for run in range(3)]
    for a, b in [(0, 1), (0, 2), (1, 2), (1, 0)]:
        found, result = classes(runs[a], runs[b])
        assert set(found.values()) <= {"unchanged", "inconclusive"} and result.exit_code != 1
        assert {found[f"w{i}"] for i in range(5)} == {"unchanged"}


def test_with_several_runs_a_side_the_runs_are_compared():
    """Each run is steady (CV 1%) but the runs move by 10% from one process to the next: one run against one
    looks like a change, five against five cannot tell an 8% change from that drift; a real 30% slowdown of every
    run still is one."""
    levels = [10.0, 11.0, 9.5, 10.4, 9.8]
    base = [timed(ms=ms, cv=0.01, seed=i) for i, ms in enumerate(levels)]
    new = [timed(ms=ms * 1.08, cv=0.01, seed=10 + i) for i, ms in enumerate(reversed(levels))]
    assert classes(base[-1:], new[-1:])[0]["mlp"] == "regressed"       # one run each: drift looks like a change
    found, result = classes(base, new)
    assert found["mlp"] == "inconclusive" and result.rows.loc[0, "by"] == "runs"   # the drift is in the interval
    slower = [timed(ms=ms * 1.3, cv=0.01, seed=20 + i) for i, ms in enumerate(levels)]
    assert classes(base, slower)[0]["mlp"] == "regressed"
