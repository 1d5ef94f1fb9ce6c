"""The Markdown report: throughput, speed-ups with their geomean, latency, memory, what did not run."""
from bench.report import geomean, render
from bench.results import make_record


def _ok(workload, backend, samples_per_s, mode="train", batch_size=128):
    latency = 1e3 * batch_size / samples_per_s
    return make_record(run_id="r1", env={"env_key": "k", "gpu": "NVIDIA H100 80GB HBM3"}, workload=workload,
                       backend=backend, mode=mode, batch_size=batch_size, status="ok", metrics={
                           "samples_per_s": samples_per_s, "peak_allocated_bytes": 3 * 2**20,
                           "first_step_peak_allocated_bytes": 5 * 2**20, "mfu": 0.25,
                           "latency_ms": {"median": latency, "p10": latency, "p90": latency, "cv": 0.01},
                           "correctness": {"max_rel_err": 1e-6, "compared": True}})


RECORDS = [
    _ok("mlp", "cuda", 100_000), _ok("mlp", "cudagraphs", 1_000_000),
    _ok("rnn_rows", "cuda", 60_000), _ok("rnn_rows", "cudagraphs", 600_000 / 4),
    _ok("mlp", "cuda", 50_000),   # an earlier record of the same cell is replaced by this later one
    make_record(run_id="r1", env={}, workload="rnn_rows", backend="channels-last", mode="train", batch_size=128,
                status="skipped", error="channels-last changes nothing in a model without Conv2d layers"),
    make_record(run_id="r1", env={}, workload="mlp", backend="compile", mode="train", batch_size=128,
                status="timeout", error="no result within 600 s, killed"),
]


def test_geomean():
    assert geomean([2.0, 8.0]) == 4.0 and geomean([]) is None


def test_report_tables():
    text = render(RECORDS)
    assert "## train, batch size 128" in text
    assert "| mlp | 50,000 | 1,000,000 |" in text                     # samples/s, the later mlp/cuda record
    assert "| workload | cudagraphs / cuda |" in text
    assert "| mlp | 20.00 |" in text and "| rnn_rows | 2.50 |" in text
    assert "| **geomean** | 7.07 |" in text                            # sqrt(20 * 2.5)
    assert "| mlp | 3.0 / 5.0 | 3.0 / 5.0 |" in text                  # peak MiB timed / first step
    assert "25.0%" in text                                              # MFU


def test_cells_that_did_not_run_are_listed_with_why():
    text = render(RECORDS)
    assert "Status counts: ok 4, skipped 1, timeout 1" in text
    assert "| rnn_rows | channels-last | train | 128 | skipped | channels-last changes nothing" in text
    assert "| mlp | compile | train | 128 | timeout | no result within 600 s, killed |" in text
