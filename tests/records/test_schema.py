"""Records keep DESIGN.md's schema, and pandas reads the file directly."""
import pandas as pd
import pytest

from refbench.records.schema import FIELDS, SCHEMA_VERSION, STATUSES, make_record
from refbench.records.store import read_results
from refbench.run.matrix import Matrix
from refbench.run.runner import run_matrix
from refbench.run.settings import Settings


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "r.jsonl"
    spec = Matrix(workloads=["test_tiny"], backends=["cpu", "cuda"], modes=["train"], batch_sizes=[3],
                  settings=Settings(iters=3, max_warmup=2, imports=("tests.fixtures.faulty_workloads",)))
    run_matrix(spec, out, isolation="inline")
    return out, read_results(out)


def test_every_record_has_exactly_the_schema_fields(records):
    _, rows = records
    assert [r["status"] for r in rows] == ["ok", "skipped"]
    for r in rows:
        assert tuple(sorted(r)) == tuple(sorted(FIELDS)) and r["schema"] == SCHEMA_VERSION
        assert r["status"] in STATUSES and r["env"]["env_key"]
    assert rows[1]["error"] == "no CUDA device on this machine" and rows[1]["metrics"] == {}


def test_an_ok_record_carries_the_measurements(records):
    metrics = records[1][0]["metrics"]
    assert metrics["latency_ms"]["n"] == 3 and len(metrics["latency_ms"]["samples"]) == 3
    for key in ("samples_per_s", "first_step_ms", "peak_rss_delta_bytes", "first_step_peak_rss_delta_bytes",
                "flops_per_step", "tflops", "max_abs_err", "correctness", "phases_s", "warmup_steps"):
        assert key in metrics, key
    assert metrics["flops_per_step"] == 3 * 2 * (3 * (8 * 16 + 16 * 4) - 8 * 16)
    assert metrics["mfu"] is None and metrics["peak_tflops"] is None  # a CPU has no peak in the table


def test_pandas_reads_the_file(records):
    frame = pd.read_json(records[0], lines=True)
    assert list(frame["status"]) == ["ok", "skipped"] and set(FIELDS) <= set(frame.columns)


def test_make_record_rejects_unknown_status_and_mode():
    with pytest.raises(ValueError, match="status"):
        make_record(run_id="r", env={}, workload="w", backend="cpu", mode="train", status="fine")
    with pytest.raises(ValueError, match="mode"):
        make_record(run_id="r", env={}, workload="w", backend="cpu", mode="walk", status="ok")
