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
    (["run", "--workloads", "mlp", "--shard", ""], "--shard takes i/n"),
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


@pytest.mark.parametrize("argv, message", [
    (["run", "--workloads", "mlp", "--retry", "oom"], "--retry picks which finished cells --resume measures again"),
    (["run", "--workloads", "mlp", "--variant", "lenet5:activation=tanh"],
     "--variant lenet5:...: lenet5 is not among the workloads measured (mlp); add it to --workloads"),
    (["run", "--workloads", "lenet5", "--variant", "lenet5:activation=tanh", "--variant", "lenet5:activation=relu"],
     "--variant lenet5:activation is given twice ('tanh' and 'relu')"),
    (["run", "--workloads", "mlp", "--batch-sizes", "16,16"], "argument --batch-sizes: 16 given twice in '16,16'"),
    (["run", "--workloads", "mlp", "--backends", "cpu,cpu"], "argument --backends: cpu given twice"),
    (["run", "--workloads", "mlp", "--timeout", "inf"], "argument --timeout: expected a positive number, got 'inf'"),
    (["run", "--workloads", "mlp", "--import", ""], "--import needs a module name"),
    (["run", "--workloads", "mlp", "--out", ""], "argument --out: expected a path, got an empty string"),
    (["run", "--workloads", "mlp", "--report", "/proc/rep"], "choose a writable directory with --report"),
    (["kernels", "conv2d", "--dtypes", "fp16"], "--dtypes picks the softmax sweep's dtypes"),
    (["kernels", "--static", "sm_90", "--quick"], "--static compiles every kept configuration for sm_90; --quick do"),
    (["kernels", "softmax", "--jobs", "2"], "--jobs is the number of parallel compiles of --static"),
    (["kernels", "softmax", "--quick", "--shapes", "full"], "--quick means --shapes quick"),
    (["data", "--data-dir", ""], "argument --data-dir: expected a path, got an empty string"),
    (["report", "r.jsonl", "-o", ""], "argument -o/--out: expected a path, got an empty string"),
    (["compare", "a.jsonl", "b.jsonl", "--threshold", "1e9%"], "--threshold must be above 0% and below 1000%"),
    (["compare", "a.jsonl", "b.jsonl", "--threshold", "-5%"], "must be above 0% and below 1000%, got '-5%'"),
    (["compare", "a.jsonl", "b.jsonl", "--fail-on", "memory,memory"], "argument --fail-on: memory given twice"),
    (["nightly", "--history", "h", "--no-run", "--workloads", "mlp"], "--no-run measures nothing, but --workloads"),
    (["nightly", "--history", ""], "argument --history: expected a path, got an empty string"),
    (["converge", "--workloads", "mlp", "--backends", "cpu,cpu"], "argument --backends: cpu given twice"),
    (["ddp", "--workloads", "mlp", "--nproc", "1", "--variant", "lenet5:activation=tanh"],
     "lenet5 is not among the workloads measured (mlp)"),
])
def test_nonsense_is_refused_in_one_line_that_says_what_to_do(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refbench: error: ") and message in err and "\n" not in err


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path, capsys):
    named = tmp_path / "data.tar"
    named.write_text("")
    assert main(["data", "--data-dir", str(named)]) == 2
    assert f"data directory {named} (given by --data-dir) is a file, not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["def broken(:\n", "raise RuntimeError('no GPU here')\n"], ids=["syntax", "raises"])
def test_a_plugin_that_fails_to_import_is_one_line(tmp_path, monkeypatch, capsys, source):
    (tmp_path / "my_plugin.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "--workloads", "mlp", "--import", "my_plugin"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refbench: error: --import my_plugin: importing it raised ") and "\n" not in err
    assert err.endswith("fix the module")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("argv, target, says", [
    (["run", "--workloads", "mlp", "--out", "{tmp}/r.jsonl"], "refbench.run.runner.run_matrix",
     "the records written so far are kept; `refbench run --workloads mlp --out {tmp}/r.jsonl --resume` goes on "
     "from there"),
    (["converge", "--workloads", "mlp", "--out", "{tmp}/c.jsonl", "--resume"], "refbench.run.converge.run_convergence",
     "the records written so far are kept; `refbench converge --workloads mlp --out {tmp}/c.jsonl --resume` goes on "
     "from there"),
    (["ddp", "--workloads", "mlp", "--nproc", "1", "--out", "{tmp}/d.jsonl"], "refbench.run.ddp.run_ddp",
     "the records written so far are kept; `refbench ddp --workloads mlp --nproc 1 --out {tmp}/d.jsonl` starts it "
     "again"),
    (["nightly", "--history", "{tmp}/h", "--workloads", "mlp"], "refbench.run.nightly.run_nightly",
     "what this night measured is kept; the next `refbench nightly --history {tmp}/h` stores it as an interrupted "
     "night"),
    (["bisect", "--good", "a", "--bad", "b", "--cell", "mlp | cpu | train | bs=16"], "refbench.regress.bisect.bisect",
     "the repository is as it was; `refbench bisect --good a --bad b --cell 'mlp | cpu | train | bs=16'` starts it "
     "again"),
])
def test_an_interrupted_command_says_how_to_go_on(tmp_path, monkeypatch, capsys, argv, target, says):
    monkeypatch.setattr(target, _interrupt)
    assert main([a.format(tmp=tmp_path) for a in argv]) == 130
    assert capsys.readouterr().err.strip() == f"refbench: interrupted; {says.format(tmp=tmp_path)}"
