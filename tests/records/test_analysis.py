"""The analysis layer: records to one DataFrame, latest per cell and machine, ratios to the base, bad input."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from refbench.records import analysis
from refbench.records.schema import make_record
from refbench.errors import RefbenchError
from tests.fixtures.report_records import CPU, GPU, conv_kernel, converge, matrix, not_run, softmax_kernel, throughput

COMMITTED = Path(__file__).resolve().parents[2] / "reports" / "cpu" / "bench.jsonl"


def _latest(records):
    return analysis.latest(analysis.to_frame(records))


def test_one_row_per_record_with_the_cell_key_and_flattened_metrics():
    frame = analysis.to_frame(matrix())
    assert len(frame) == len(matrix())
    row = frame.iloc[2]   # mlp cudagraphs
    assert (row["workload"], row["variant"], row["backend"], row["mode"], row["batch_size"], row["dataset"]) == (
        "mlp", "{}", "cudagraphs", "train", 128, "synthetic")
    assert row["cell"] == "mlp | cudagraphs | train | bs=128 | synthetic"
    assert row["env_key"] == "gpu0" and row["device"] == "NVIDIA H100 80GB HBM3" and row["env.cuda"] == "13.0"
    assert row["base_backend"] == "cuda"
    assert row["latency_ms.samples"] == pytest.approx([0.16 * 0.99, 0.16, 0.16 * 1.01])
    assert row["correctness.tolerance"] == 1e-4


def test_memory_has_one_name_whatever_the_device():
    frame = analysis.to_frame([throughput("mlp", "cuda", 1000, peak_mib=3),
                               throughput("mlp", "cpu", 1000, peak_mib=5, env=CPU)])
    assert list(frame["peak_mem_bytes"]) == [3 * 2**20, 5 * 2**20]
    assert list(frame["first_step_peak_mem_bytes"]) == [6 * 2**20, 10 * 2**20]
    assert list(frame["memory_kind"]) == ["allocated", "rss_delta"]
    assert not any("rss" in c or "allocated_bytes" in c for c in frame.columns)


def test_latest_keeps_the_last_record_of_a_cell_per_machine():
    cells = _latest(matrix())
    assert len(cells) == len(matrix()) - 1
    assert cells[(cells["workload"] == "mlp") & (cells["backend"] == "cuda") & (cells["mode"] == "train")][
        "samples_per_s"].tolist() == [100_000]
    # The same cell on two machines is two rows, never one overwriting the other.
    both = _latest([throughput("mlp", "cuda", 1000), throughput("mlp", "cuda", 2000, env={**GPU, "env_key": "gpu1"})])
    assert sorted(both["samples_per_s"]) == [1000, 2000]


def test_latest_orders_by_time_then_by_reading_order():
    early, late = throughput("mlp", "cuda", 1000), throughput("mlp", "cuda", 2000)
    early["time"], late["time"] = "2026-01-02T00:00:00+00:00", "2026-01-01T00:00:00+00:00"
    assert _latest([early, late])["samples_per_s"].tolist() == [1000]


def test_a_resumed_measurement_replaces_the_timeout_that_named_no_dataset():
    cells = _latest([not_run("mlp", "compile", "timeout", "not run: the matrix's time budget of 540 s was used up"),
                     throughput("mlp", "compile", 1000)])
    assert cells["status"].tolist() == ["ok"] and cells["dataset"].tolist() == ["synthetic"]


def test_speedups_geomeans_and_memory_ratios_are_the_known_numbers():
    cells = _latest(matrix())
    pairs = analysis.versus_base(cells, "samples_per_s")
    ratio = {(r.label, r.backend, r.mode): r.ratio for r in pairs.itertuples()}
    assert ratio == pytest.approx({("mlp", "cudagraphs", "train"): 8.0, ("mlp", "compile", "train"): 0.5,
                                   ("rnn_rows", "cudagraphs", "train"): 2.0, ("mlp", "cudagraphs", "infer"): 3.0})
    means = analysis.geomeans(pairs).set_index(["backend", "mode"])
    assert means.loc[("cudagraphs", "train"), "geomean"] == pytest.approx(4.0)
    assert means.loc[("cudagraphs", "train"), "n"] == 2
    assert means.loc[("compile", "train"), "geomean"] == pytest.approx(0.5)
    memory = analysis.versus_base(cells, "peak_mem_bytes")
    assert memory.set_index(["label", "backend", "mode"]).loc[("mlp", "cudagraphs", "train"), "ratio"] == 2.0
    # rnn_rows on cuda has a CV of 20%: its speed-up is marked unstable, mlp's is not.
    unstable = {(r.label, r.backend, r.mode): r.unstable for r in pairs.itertuples()}
    assert unstable[("rnn_rows", "cudagraphs", "train")] and not unstable[("mlp", "cudagraphs", "train")]


def test_a_zero_base_memory_gives_no_ratio_rather_than_infinity():
    cells = _latest([throughput("mlp", "cpu", 1000, env=CPU, peak_mib=0),
                     throughput("mlp", "cpu+int8", 1000, env=CPU, mode="train")])
    assert analysis.versus_base(cells, "peak_mem_bytes")["ratio"].isna().all()


def test_unstable_when_flagged_or_when_the_cv_is_high():
    frame = analysis.to_frame([throughput("a", "cuda", 1, cv=0.01), throughput("b", "cuda", 1, cv=0.11),
                               throughput("c", "cuda", 1, cv=0.01, unstable=True,
                                          noise={"load_average_1m": 3.5, "reasons": ["load average 3.5 on 2 cores"]})])
    assert frame["unstable"].tolist() == [False, True, True]
    assert frame["noise.load_average_1m"].iloc[2] == 3.5 and frame["noise.reasons"].iloc[2] == ["load average 3.5 on 2 cores"]


def test_a_metric_named_like_a_record_field_keeps_both():
    record = throughput("mlp", "cuda", 1)   # another producer's record: refbench's own refuses such a metric
    record["metrics"]["status"] = "weird"
    frame = analysis.to_frame([record])
    assert frame["status"].iloc[0] == "ok" and frame["metrics.status"].iloc[0] == "weird"


def test_reason_is_one_line():
    frame = analysis.to_frame([
        not_run("a", "cuda", "error", "...tail of a traceback\n  File 'x.py', line 3\nRuntimeError: boom"),
        not_run("b", "cuda", "timeout", "no result within 600 s, killed; its last output: warming up\nstep 3"),
        not_run("c", "cuda", "skipped", "int8 dynamic quantization is inference only")])
    assert frame["reason"].tolist() == ["RuntimeError: boom", "no result within 600 s, killed; its last output: "
                                        "warming up … step 3", "int8 dynamic quantization is inference only"]


def test_correctness_pass_rate_and_worst_error_over_tolerance():
    summary = analysis.correctness(_latest(matrix())).set_index("backend")
    cuda = summary.loc["cuda"]
    assert (cuda["checked"], cuda["passed"], cuda["pass_rate"]) == (4, 3, 0.75)
    assert cuda["worst_ratio"] == pytest.approx(20.0) and cuda["worst_tensor"] == "grad:fc.weight"
    assert summary.loc["cudagraphs", "worst_ratio"] == pytest.approx(0.5)


def test_kernel_records_against_their_roofline():
    table = analysis.kernels(analysis.to_frame([softmax_kernel("triton", 300.0), softmax_kernel("torch", 100.0),
                                                conv_kernel("triton", 10.0, roofline_fraction=0.25)]))
    rows = {(r.kernel, r.backend): r for r in table.itertuples()}
    assert rows[("softmax", "triton")].fraction == pytest.approx(0.75) and rows[("softmax", "triton")].unit == "GB/s"
    assert rows[("softmax", "torch")].shape == "M=4096, N=1024" and rows[("softmax", "torch")].precision == "float16"
    conv = rows[("conv2d", "triton")]
    assert (conv.unit, conv.achieved, conv.roofline, conv.precision) == ("TFLOP/s", 10.0, 40.0, "bf16")
    assert conv.shape == "lenet5.features.0 n=128"


def test_final_value_of_a_convergence_record():
    frame = analysis.to_frame([converge("mlp"), converge("lenet5", accuracy=0.93)])
    assert [analysis.converged_value(r) for _, r in frame.iterrows()] == [0.91, 0.93]
    assert frame["base_backend"].isna().all()


def test_summary_names_backends_without_a_measurement_and_judges_by_stable_cells():
    lines = analysis.summary(_latest(matrix() + [converge("mlp"), converge("lenet5", reached=False)]))
    assert lines == [
        "cells: 12 on 1 machine, from 2 runs",
        "status: ok 9, failed 1, skipped 1, timeout 1",
        "no measurement: backend channels-last (1 skipped)",
        "no measurement: backend compile-max-autotune (1 timeout)",
        # cudagraphs' other cell (4.00x over both) is unstable: the headline figure leaves it out
        "best backend: cudagraphs 8.00x over cuda (geomean over 1 workload, train, batch 128)",
        "worst backend: compile 0.50x over cuda (geomean over 1 workload, train, batch 128)",
        "correctness: 7/8 checked cells pass; convergence: 1/2 reached target; unstable: 1 cell"]


def test_one_backend_is_not_both_best_and_worst_and_unstable_figures_say_so():
    only = [r for r in matrix() if r["backend"] in ("cuda", "compile")]
    assert [line for line in analysis.summary(_latest(only)) if "backend besides" in line] == [
        "only backend besides the eager base: compile 0.50x over cuda (geomean over 1 workload, train, batch 128)"]
    for record in only:
        if record["backend"] == "compile":
            record["metrics"]["unstable"] = True
    assert analysis.summary(_latest(only))[2].endswith("† from unstable cells only")


def test_summary_says_what_the_results_hold_none_of():
    only_converge = analysis.summary(_latest([converge("mlp")]))
    assert only_converge[-1] == "correctness: no cell checked; convergence: 1/1 reached target; unstable: 0 cells"
    only_speed = analysis.summary(_latest(matrix()))
    assert "; convergence: none in these results;" in only_speed[-1]


def test_frame_of_a_real_cpu_run(tmp_path):
    """A real run of the matrix (mlp on cpu and cpu+int8, isolation inline) read back through load()."""
    from refbench.cli import main

    out = tmp_path / "r.jsonl"
    main(["run", "--workloads", "mlp", "--backends", "cpu,cpu+int8", "--modes", "train,infer", "--batch-sizes", "8",
          "--iters", "3", "--max-warmup", "2", "--threads", "1", "--isolation", "inline", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    loaded = analysis.load([out])
    frame = loaded.frame
    assert loaded.files == {str(out): 4} and not loaded.skipped and len(frame) == 4
    assert frame["source"].tolist() == [f"{out}:{i}" for i in range(1, 5)]
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == 3 and set(ok["memory_kind"]) == {"rss_delta"} and ok["peak_mem_bytes"].notna().all()
    assert all(len(samples) >= 3 for samples in ok["latency_ms.samples"])
    assert frame.set_index(["backend", "mode"]).loc[("cpu+int8", "train"), "status"] == "skipped"
    speedup = analysis.versus_base(frame, "samples_per_s")
    by_key = {(r["backend"], r["mode"]): r["metrics"].get("samples_per_s") for r in records}
    assert speedup["ratio"].tolist() == pytest.approx([by_key[("cpu+int8", "infer")] / by_key[("cpu", "infer")]])


def test_frame_of_the_committed_cpu_matrix():
    loaded = analysis.load([COMMITTED])
    cells = analysis.latest(loaded.frame)
    records = [json.loads(line) for line in COMMITTED.read_text().splitlines() if line.strip()]
    assert len(loaded.frame) == len(records) and cells["env_key"].nunique() == 1
    assert len(cells) == len({(r["workload"], json.dumps(r["variant"], sort_keys=True), r["backend"], r["mode"],
                               r["batch_size"]) for r in records})
    means = analysis.geomeans(analysis.versus_base(cells, "samples_per_s"))
    assert set(means["backend"]) == {"cpu+compile", "cpu+int8"} and (means["geomean"] > 0).all()
    ratios = analysis.versus_base(cells, "samples_per_s")
    assert all(math.isclose(r, math.exp(sum(map(math.log, group)) / len(group)))
               for r, group in [(means.set_index(["backend", "mode"]).loc[(b, m), "geomean"], g["ratio"].tolist())
                                for (b, m), g in ratios.groupby(["backend", "mode"])])


# Bad input: one clear line each.

def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(RefbenchError, match=r"no result file .*nope.jsonl; give the JSONL"):
        analysis.load([tmp_path / "nope.jsonl"])


def test_an_empty_file_alone_is_an_error_and_beside_others_a_note(tmp_path):
    empty = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(RefbenchError, match="no records in .*empty.jsonl"):
        analysis.load([empty])
    good = _write(tmp_path / "good.jsonl", [json.dumps(throughput("mlp", "cuda", 1))])
    loaded = analysis.load([good, empty])
    assert len(loaded.frame) == 1 and loaded.notes == [f"{empty} has no records"]


def test_corrupt_lines_are_named_by_file_and_line_and_skipped(tmp_path):
    path = _write(tmp_path / "r.jsonl", [json.dumps(throughput("mlp", "cuda", 1)), '{"workload": "mlp", "back',
                                         "[1, 2]", json.dumps({"schema": 1, "workload": "mlp"}),
                                         json.dumps(throughput("mlp", "compile", 2))])
    loaded = analysis.load([path])
    assert len(loaded.frame) == 2
    assert loaded.skipped == [f"{path}:2: not JSON (Unterminated string starting at, column 21), skipped",
                              f"{path}:3: not a JSON object, skipped",
                              f"{path}:4: a record without backend, mode, status, skipped"]


def test_a_file_of_nothing_but_corrupt_lines_is_an_error(tmp_path):
    path = _write(tmp_path / "r.jsonl", ["garbage", "more garbage"])
    with pytest.raises(RefbenchError, match=r"no records in .*r.jsonl \(2 corrupt lines\)"):
        analysis.load([path])


def test_another_schema_is_read_when_compatible_else_one_clear_line(tmp_path):
    newer = {**throughput("mlp", "cuda", 1), "schema": 2, "extra": "field"}
    loaded = analysis.load([_write(tmp_path / "a.jsonl", [json.dumps(newer)])])
    assert len(loaded.frame) == 1 and loaded.notes == [
        "1 records of schema 2 read (this refbench writes schema 1): they have every field the report needs"]
    alien = {"schema": 7, "name": "mlp", "result": {"throughput": 1}}
    with pytest.raises(RefbenchError, match=r"b.jsonl:1: a record of schema 7 without workload, backend, mode, "
                                            r"status; this refbench reads schema 1"):
        analysis.load([_write(tmp_path / "b.jsonl", [json.dumps(alien)])])


def test_frame_columns_exist_even_when_no_record_has_them():
    frame = analysis.to_frame([make_record(run_id="r", env={}, workload="w", backend="cpu", mode="train",
                                           status="skipped", error="no")])
    assert frame["env_key"].tolist() == ["unknown"]
    assert pd.isna(frame["samples_per_s"].iloc[0]) and pd.isna(frame["peak_mem_bytes"].iloc[0])
    assert analysis.versus_base(frame, "samples_per_s").empty and analysis.correctness(frame).empty
