"""User errors are one line on stderr and exit status 2."""
import os
import sys

import pytest

from refbench.cli import main

RUN = ["run", "--workloads", "mlp", "--modes", "infer", "--batch-sizes", "2", "--iters", "1", "--isolation", "inline"]


@pytest.mark.parametrize("argv, message", [
    (["run", "--workloads", "lenet6"], "unknown workload 'lenet6'; did you mean lenet5?"),
    (["run", "--workloads", "mlp", "--backends", "gpu"], "unknown backend 'gpu'"),
    (["run", "--workloads", "mlp", "--modes", "fly"], "unknown mode fly"),
    (["run", "--workloads", "mlp", "--batch-sizes", "0"], "batch sizes must be positive"),
    (["run", "--workloads", "mlp", "--iters", "0"], "argument --iters: expected a positive integer, got '0'"),
    (["run", "--workloads", "mlp", "--max-warmup", "-1"], "argument --max-warmup: expected a non-negative integer"),
    (["run", "--workloads", "mlp", "--time-budget", "-1"], "argument --time-budget: expected a positive number"),
    (["run", "--workloads", "mlp", "--threads", "two"], "argument --threads: expected a positive integer"),
    (["run", "--workloads", "mlp", "--variant", "lenet5"], "expected WORKLOAD:OPTION=VALUE"),
    (["run", "--workloads", "lenet5", "--variant", "lenet5:activation=elu"], "activation='elu' is not one of"),
    (["kernels", "gelu"], "argument kernel: invalid choice: 'gelu'"),
    (["run"], "the following arguments are required: --workloads"),
    (["run", "--workloads", "mlp", "--batch-sizes", "x"], "expected comma-separated integers"),
    (["run", "--workloads", "mlp", "--shard", "3/2"], "--shard 3/2"),
    (["run", "--workloads", "mlp", "--out", "/proc/bench.jsonl"], "cannot write results to /proc/bench.jsonl"),
    (["run", "--workloads", "mlp", "--import", "no_such_module_here"], "cannot import 'no_such_module_here'"),
    (["report", "/nonexistent/r.jsonl"], "no result file /nonexistent/r.jsonl"),
    (["validate", "--device", "tpu"], "--device must be cpu or cuda"),
    (["sweep", "--workloads", "lenet5", "--budget", "0"], "argument --budget: expected a positive number"),
    (["sweep", "--workloads", "hpo_rf_wine", "--budget", "10"], "hpo_rf_wine trains with forest, grid-search"),
    (["converge", "--workloads", "mlp", "--target", "nightly"], "mlp has no target 'nightly'"),
    (["list", "lenet"], "no registered workload matches 'lenet'; did you mean lenet5"),
])
def test_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refbench: error: ") and message in err and "\n" not in err


def test_an_out_path_that_is_a_directory_is_refused(tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path)]) == 2
    assert "choose a writable file path" in capsys.readouterr().err


def test_help_still_prints_the_usage_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0 and "--time-budget" in capsys.readouterr().out


def test_run_then_report(tmp_path, capsys):
    out, report = tmp_path / "r.jsonl", tmp_path / "rep"
    assert main([*RUN, "--backends", "cpu,cuda", "--out", str(out), "--report", str(report)]) == 0
    assert "2 records appended" in capsys.readouterr().out
    text = (report / "report.md").read_text()
    assert "| mlp as_written=False |" in text and "no CUDA device on this machine" in text
    assert main(["report", str(out)]) == 0 and os.path.exists(tmp_path / "report.html")


def test_list_fits_an_80_column_terminal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "data", "set", "doc", "full", "target", "options"]
    assert len(lines) > 15 and max(map(len, lines)) <= 80
    assert any(line.startswith("vgg16_cifar") and "001 §4.1" in line for line in lines)
