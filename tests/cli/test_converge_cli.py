"""`refbench converge` and `refbench sweep` from the command line: records, exit codes, resume, bad input."""
import io
import json

import pytest
import torch

from refbench.cli import main
from refbench.run.progress import Progress
from refbench.records.store import read_results
from tests.fixtures.convergence_workloads import AsWrittenBlobs, Blobs, registered, scripted  # noqa: F401  (a fixture)


def summaries(records):
    return [r for r in records if "seeds" in r["metrics"]]


def seeds_of(records):
    return [r["metrics"]["seed"] for r in records if "seed" in r["metrics"]]


@pytest.mark.parametrize("argv, message", [
    (["converge", "--workloads", "mlp", "--seeds", "0"], "argument --seeds: expected a positive integer, got '0'"),
    (["converge", "--workloads", "mlp", "--max-steps", "-5"], "argument --max-steps: expected a positive integer"),
    (["converge", "--workloads", "mlp", "--wall-cap", "0"], "argument --wall-cap: expected a positive number"),
    (["converge", "--workloads", "mlp", "--wall-cap", "-5"], "argument --wall-cap: expected a positive number"),
    (["converge", "--workloads", "mlp", "--budget", "0"], "unrecognized arguments: --budget 0"),
    (["converge", "--workloads", "mlp", "--device", "nosuch"], "unrecognized arguments: --device nosuch"),
    (["converge", "--workloads", "mlp", "--backends", "nosuch"], "unknown backend 'nosuch'"),
    (["converge", "--workloads", "mlp", "--backends", ""], "no backends given"),
    (["converge", "--workloads", "mlp", "--threads", "two"], "argument --threads: expected a positive integer"),
    (["converge", "--workloads", "mlp", "--target", "nightly"], "mlp has no target 'nightly'"),
    (["converge", "--workloads", "mlp", "--recipe", "nosuch"], "mlp has no recipe 'nosuch'"),
    (["converge", "--workloads", "lenet6"], "unknown workload 'lenet6'; did you mean lenet5?"),
    (["converge", "--workloads", "nosuch*"], "no registered workload matches 'nosuch*'"),
    (["converge", "--workloads", "mlp", "--data-dir", "/no/such/dir"], "--data-dir /no/such/dir is not a directory"),
    (["converge", "--workloads", "attention_dot", "--as-written"],
     "--as-written: attention_dot has no as_written variant"),
    (["converge", "--workloads", "mlp", "--out", "/proc/c.jsonl"], "cannot write results to /proc/c.jsonl"),
    (["sweep", "--workloads", "lenet5", "--budget", "0"], "argument --budget: expected a positive number, got '0'"),
    (["sweep", "--workloads", "lenet5", "--budget", "-5"], "argument --budget: expected a positive number"),
    (["sweep", "--workloads", "lenet5", "--budget", "9", "--trials", "0"], "argument --trials: expected a positive"),
    (["sweep", "--workloads", "lenet5", "--budget", "9", "--seed", "-1"], "argument --seed: expected a non-negative"),
    (["sweep", "--workloads", "lenet5", "--budget", "9", "--threads", "0"], "argument --threads: expected a positive"),
    (["sweep", "--workloads", "lenet5", "--budget", "9", "--backend", "nosuch"], "unknown backend 'nosuch'"),
    (["sweep", "--workloads", "lenet5", "--budget", "9", "--backend", "int8"], "cannot sweep lenet5 on int8: "),
    (["sweep", "--workloads", "lenet5", "--budget", "9", "--target", "nightly"], "lenet5 has no target 'nightly'"),
    (["sweep", "--workloads", "lenet5,lenet6", "--budget", "9"], "unknown workload 'lenet6'"),
    (["sweep", "--workloads", "hpo_rf_wine", "--budget", "9"], "hpo_rf_wine trains with forest, grid-search"),
    (["sweep", "--workloads", "lenet5", "--budget", "9", "--device", "cuda"], "unrecognized arguments: --device"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refbench: error: ") and message in err and "\n" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_a_gpu_backend_without_a_gpu_is_a_skipped_record_not_a_traceback(tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    assert main(["converge", "--workloads", "mlp", "--backends", "cuda", "--out", str(out)]) == 0
    (record,) = read_results(out)
    assert record["status"] == "skipped" and record["error"] == "no CUDA device on this machine"
    assert record["metrics"]["seeds"] == {"asked": [0, 1, 2]}
    assert "skipped" in capsys.readouterr().out


def test_a_backend_the_workload_cannot_use_is_skipped_with_the_reason(tmp_path):
    out = tmp_path / "c.jsonl"
    assert main(["converge", "--workloads", "mlp", "--backends", "cpu+sdpa,int8", "--seeds", "1",
                 "--max-steps", "1", "--out", str(out)]) == 1      # one step of mlp misses its target
    skipped = {r["backend"]: r["error"] for r in read_results(out) if r["status"] == "skipped"}
    assert skipped == {"cpu+sdpa": "mlp has no attention=sdpa variant",
                       "int8": "int8 dynamic quantization is inference only"}


def test_a_missed_mean_is_exit_1_and_a_missed_summary(scripted, tmp_path, capsys):
    """Seed 0 ends at 0.99, seed 1 crosses 0.95 at step 5 but ends at 0.90: the mean, 0.945, misses."""
    scripted.script = [0.5, 0.99, 0.96, 0.90]
    out = tmp_path / "c.jsonl"
    assert main(["converge", "--workloads", "test_scripted", "--seeds", "2", "--out", str(out)]) == 1
    records = read_results(out)
    assert [r["status"] for r in records] == ["ok", "ok", "missed"] and seeds_of(records) == [0, 1]
    (summary,) = summaries(records)
    assert summary["metrics"]["seeds"]["mean"] == pytest.approx(0.945) and summary["metrics"]["seeds"]["reached"] == 2
    assert summary["error"].startswith("missed accuracy >= 0.95: the mean over 2 seeds is 0.9450")
    assert "parity" not in summary["metrics"]     # the cpu base has no parity of its own
    assert "missed" in capsys.readouterr().out


def test_every_backend_gets_parity_against_the_base_it_adds(tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    with registered(Blobs):
        assert main(["converge", "--workloads", "test_blobs", "--backends", "cpu+amp-bf16", "--seeds", "2",
                     "--out", str(out)]) == 0
    records = read_results(out)
    assert [(r["backend"], r["metrics"].get("seed")) for r in records] == [
        ("cpu", 0), ("cpu", 1), ("cpu", None), ("cpu+amp-bf16", 0), ("cpu+amp-bf16", 1), ("cpu+amp-bf16", None)]
    parity = summaries(records)[1]["metrics"]["parity"]
    assert parity["base"] == "cpu" and parity["seeds"] == [0, 1] and parity["ok"] is True
    assert parity["base_mean"] == summaries(records)[0]["metrics"]["seeds"]["mean"]


def test_resume_trains_only_the_seeds_left_and_writes_the_summary_again(tmp_path):
    out = tmp_path / "c.jsonl"
    argv = ["converge", "--workloads", "test_blobs", "--seeds", "3", "--out", str(out)]
    with registered(Blobs):
        assert main(argv) == 0
        first = read_results(out)
        # as if killed while seed 2 trained, after seed 1 had failed
        lines = out.read_text().splitlines()[:2]
        broken = json.loads(lines[1])
        broken.update(status="error", error="killed")
        out.write_text(lines[0] + "\n" + json.dumps(broken) + "\n")
        assert main([*argv, "--resume"]) == 0
    records = read_results(out)
    assert seeds_of(records) == [0, 1, 1, 2] and len(summaries(records)) == 1
    assert summaries(records)[0]["metrics"]["seeds"]["values"] == summaries(first)[0]["metrics"]["seeds"]["values"]
    with registered(Blobs):
        assert main([*argv, "--resume"]) == 0
    assert len(read_results(out)) == len(records)    # nothing left to do, nothing appended


def test_as_written_trains_both_variants_and_records_the_cost(tmp_path):
    out = tmp_path / "c.jsonl"
    with registered(AsWrittenBlobs):
        main(["converge", "--workloads", "test_as_written_blobs", "--as-written", "--seeds", "2", "--out", str(out)])
    fixed, written = summaries(read_results(out))
    assert fixed["variant"] == {"as_written": False} and written["variant"] == {"as_written": True}
    cost = written["metrics"]["as_written"]
    assert cost["fixed_mean"] == fixed["metrics"]["seeds"]["mean"] and cost["mean"] == written["metrics"]["seeds"]["mean"]
    assert cost["delta"] == pytest.approx(cost["mean"] - cost["fixed_mean"])
    assert "as_written" not in fixed["metrics"]


def test_as_written_with_a_pattern_keeps_the_workloads_that_have_the_variant(tmp_path, capsys):
    with registered(AsWrittenBlobs, Blobs):
        assert main(["converge", "--workloads", "test_*", "--as-written", "--seeds", "1", "--max-steps", "2",
                     "--out", str(tmp_path / "c.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "test_as_written_blobs as-written" in out and "test_blobs " not in out


def test_progress_is_plain_lines_with_counts_and_eta_off_a_terminal():
    stream = io.StringIO()
    with Progress(3, stream=stream) as progress:
        progress.note("invisible")
        progress.done("first: ok")
        progress.done("second: missed")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/3] first: ok  (ETA ") and lines[1].startswith("[2/3] second: missed  (ETA ")
    assert "invisible" not in stream.getvalue()


def test_progress_on_a_terminal_is_a_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with Progress(2, stream=stream) as progress:
        progress.done("first: ok")
    text = stream.getvalue()
    assert "first: ok" in text and "1/2" in text and "run" in text


def test_a_data_set_missing_from_the_data_dir_is_an_error_record_and_exit_3(tmp_path, capsys):
    """Every seed fails before training (no data): each is a record naming the missing data set, and so is the
    group's summary, whose recipe settings no seed ever had."""
    out = tmp_path / "c.jsonl"
    (tmp_path / "data").mkdir()
    assert main(["converge", "--workloads", "mlp", "--seeds", "1", "--data-dir", str(tmp_path / "data"),
                 "--out", str(out)]) == 3
    records = read_results(out)
    assert [r["status"] for r in records] == ["error", "error"]
    assert all("data set fashion-mnist is not in" in r["error"] for r in records)
    assert "Traceback" not in capsys.readouterr().err
