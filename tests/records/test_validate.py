"""Every reader checks records where it reads them: a bad field is a named, skipped line, never a traceback.

The malformed records are generated: every field of the schema (the record's
fields, env's, every metric of the table) given every JSON type it must not
have (tests/fixtures/malformed_records.py). They are fed, beside good
records, to report, compare, nightly and ``run --resume`` through the
command line.
"""
import json
import shutil
import warnings
from pathlib import Path

import pytest

from refbench.cli import main
from refbench.records import analysis, benchmark_json, validate
from refbench.records.store import dumps_record, read_results
from tests.fixtures import report_records as rr
from tests.fixtures.malformed_records import malformed

ROOT = Path(__file__).resolve().parents[2]
GOOD = [rr.throughput("mlp", "cuda", 1000.0), rr.throughput("mlp", "cuda+compile", 1500.0), rr.converge("lenet5"),
        rr.softmax_kernel("triton", 300.0), rr.conv_kernel("triton", 100.0, roofline_fraction=0.5)]
OTHER_MODES = (rr.ddp("mlp", 2, 900.0, 0.9, env=rr.GPU), rr.conv_kernel("triton", 90.0, roofline_fraction=0.4))
BAD = [*malformed(rr.throughput("lenet5", "cuda", 800.0)),
       *((what, r) for base in OTHER_MODES for what, r in malformed(base) if what.startswith("variant."))]


def _file(path: Path, records: list, bad: list = BAD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(dumps_record(r) + "\n" for r in records) + "".join(json.dumps(r) + "\n" for _, r in bad))
    return path


def _no_traceback(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_every_field_given_every_wrong_type_is_generated():
    fields = {what.split(" as ")[0] for what, _ in BAD}
    assert {"schema", "env", "batch_size", "status", "metrics", "env.env_key", "env.threads",
            "metrics.latency_ms.samples", "metrics.samples_per_s", "metrics.correctness.compared", "metrics.curve",
            "metrics.phases_s.*", "variant.world_size", "variant.layer"} <= fields
    assert {"batch_size as string", "env as string", "workload as number", "metrics as list",
            "metrics.latency_ms.samples as a list with a string"} <= {what for what, _ in BAD}


@pytest.mark.parametrize("what, record", BAD, ids=[what for what, _ in BAD])
def test_the_check_names_the_wrong_field(what, record):
    field = what.split(" as ")[0].removesuffix(".*")
    assert field in validate.problem(record)


def test_the_good_records_and_those_refbench_writes_pass():
    committed = [r for path in ROOT.glob("reports/**/*.jsonl") for r in read_results(path)]
    assert committed
    for record in [*GOOD, *committed, rr.ddp("mlp", 2, 900.0, 0.9)]:
        assert validate.problem(record) is None, (record["workload"], validate.problem(record))


def test_analysis_skips_and_names_each_bad_line(tmp_path):
    path = _file(tmp_path / "r.jsonl", GOOD)
    loaded = analysis.load([path])
    assert len(loaded.frame) == len(GOOD) and len(loaded.skipped) == len(BAD)
    assert loaded.skipped[0].startswith(f"{path}:{len(GOOD) + 1}: ") and loaded.skipped[0].endswith(", skipped")
    assert any(f"{path}:" in line and "batch_size is a string, expected an integer or null" in line
               for line in loaded.skipped)


def test_report_reads_past_every_bad_line(tmp_path, capsys):
    path = _file(tmp_path / "r.jsonl", GOOD)
    assert main(["report", str(path), "-o", str(tmp_path / "rep")]) == 0
    assert _no_traceback(capsys).count(", skipped") == len(BAD)


def test_compare_reads_past_every_bad_line(tmp_path, capsys):
    path = _file(tmp_path / "r.jsonl", GOOD)
    assert main(["compare", str(path), str(path)]) == 0
    assert _no_traceback(capsys).count(", skipped") == 2 * len(BAD)


def test_nightly_reads_past_every_bad_line(tmp_path, capsys):
    night = _file(tmp_path / "h" / "gpu0" / "2024-01-01-abc.jsonl", GOOD)
    shutil.copy(night, night.with_name("2024-01-02-abc.jsonl"))
    machine_bad = [(w, r) for w, r in BAD if not w.startswith("env.env_key")]   # those would be another machine's
    _file(night, GOOD, machine_bad)
    _file(night.with_name("2024-01-02-abc.jsonl"), GOOD, machine_bad)
    assert main(["nightly", "--history", str(tmp_path / "h"), "--no-run"]) == 0
    assert _no_traceback(capsys).count(", skipped") == 2 * len(machine_bad)


def test_resume_reads_past_every_bad_line(tmp_path, capsys):
    out = _file(tmp_path / "r.jsonl", GOOD)
    argv = ["run", "--workloads", "mlp", "--modes", "infer", "--batch-sizes", "2", "--iters", "1", "--no-check",
            "--isolation", "inline", "--out", str(out), "--resume"]
    assert main(argv) == 0
    err = _no_traceback(capsys)
    assert err.count(", skipped") == len(BAD) and f"{out}:{len(GOOD) + 1}: " in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_results(out)[-1]["workload"] == "mlp"       # the bad lines stay as they were, the cell is added


def test_read_results_warns_for_each_bad_line(tmp_path):
    path = _file(tmp_path / "r.jsonl", GOOD, BAD[:3])
    with pytest.warns(validate.SkippedLine) as seen:
        assert len(read_results(path)) == len(GOOD)
    assert [str(w.message).split(": ")[0] for w in seen] == [f"{path}:{n}" for n in range(6, 9)]


@pytest.mark.parametrize("argv", [["report", "{path}", "-o", "{dir}"], ["compare", "{path}", "{path}"],
                                  ["nightly", "--history", "{history}", "--no-run"],
                                  ["run", "--workloads", "mlp", "--modes", "infer", "--batch-sizes", "2",
                                   "--isolation", "inline", "--out", "{path}", "--resume"]])
def test_an_unknown_status_is_an_error_naming_its_line(tmp_path, capsys, argv):
    night = tmp_path / "h" / "gpu0" / "2024-01-01-abc.jsonl"
    path = _file(night, [*GOOD[:2], {**GOOD[0], "status": "flaky"}], [])
    argv = [a.format(path=path, dir=tmp_path / "rep", history=tmp_path / "h") for a in argv]
    assert main(argv) == 2
    err = _no_traceback(capsys).strip()
    assert err == (f"refbench: error: {path}:3: status 'flaky' is not one this refbench knows (ok, failed, missed, "
                   f"timeout, oom, skipped, error, not_run); report these records with the refbench that wrote "
                   f"them, or correct the line")


def test_two_machines_in_one_night_are_an_error(tmp_path, capsys):
    night = _file(tmp_path / "h" / "gpu0" / "2024-01-01-abc.jsonl", [GOOD[0], rr.throughput("mlp", "cpu", 10.0,
                                                                                         env=rr.CPU)], [])
    assert main(["nightly", "--history", str(tmp_path / "h"), "--no-run"]) == 2
    err = _no_traceback(capsys).strip()
    assert err.startswith(f"refbench: error: {night} holds records of cpu0, gpu0, but a night is one machine's")
    assert "\n" not in err


# ----- pytest-benchmark files with gaps -----

def _benchmark_file(path: Path, stats: list[dict]) -> Path:
    path.write_text(json.dumps({
        "machine_info": {"node": "box", "processor": "x86_64", "system": "Linux", "python_version": "3.11.7"},
        "commit_info": {"id": "abcdef1234567890"}, "datetime": "2024-01-01T00:00:00",
        "benchmarks": [{"fullname": f"tests/test_x.py::test_{n}", "stats": s} for n, s in enumerate(stats)]}))
    return path


SAMPLES = [0.001 + 1e-7 * i for i in range(20)]   # steady enough that the same file against itself is judged
STATS = {"median": 0.001, "mean": 0.001, "stddev": 6e-7, "rounds": 20, "data": SAMPLES}


@pytest.mark.parametrize("gap", [{"q1": None, "q3": None}, {"min": None, "max": None}, {}],
                         ids=["q1-null", "min-max-null", "no-quartiles-no-min-max"])
def test_a_benchmark_without_quartiles_or_min_max_reads_with_unknown_spread(tmp_path, capsys, gap):
    stats = {**STATS, **gap}
    path = _benchmark_file(tmp_path / "b.json", [stats])
    (record,), _, skipped = benchmark_json.records(path)
    assert not skipped and record["metrics"]["latency_ms"]["median"] == pytest.approx(1.0)
    latency = record["metrics"]["latency_ms"]   # p10 and p90 come from the raw samples, never from quartiles
    assert latency["p10"] == pytest.approx(1.00019) and latency["p90"] == pytest.approx(1.00171)
    assert main(["compare", str(path), str(path)]) == 0
    _no_traceback(capsys)


@pytest.mark.parametrize("bad", [{"median": "1ms"}, {"rounds": None}, {"mean": [1]}, {"data": ["x", 1]}],
                         ids=["median-text", "rounds-null", "mean-list", "samples-text"])
def test_a_benchmark_with_wrong_types_is_left_out_and_named(tmp_path, capsys, bad):
    path = _benchmark_file(tmp_path / "b.json", [STATS, {**STATS, **bad}])
    got, _, skipped = benchmark_json.records(path)
    if "data" in bad:          # raw samples that are not numbers: the statistics still hold, the samples are dropped
        assert len(got) == 2 and "samples" not in got[1]["metrics"]["latency_ms"] and not skipped
    else:
        assert len(got) == 1 and skipped == [f"{path}:benchmark 2: not a pytest-benchmark result (it needs fullname "
                                             f"and stats with numeric median, mean, stddev and rounds), skipped"]
    assert main(["compare", str(path), str(path)]) == 0
    err = _no_traceback(capsys)
    assert err.count(f"{path}:benchmark 2") == (0 if "data" in bad else 2)
    history = tmp_path / "h"
    assert main(["nightly", "--history", str(history), "--benchmark-json", str(path)]) == 0
    assert _no_traceback(capsys).count(f"{path}:benchmark 2") == (0 if "data" in bad else 1)
