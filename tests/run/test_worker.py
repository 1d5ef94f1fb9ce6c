"""Each cell in its own process: crashes, hangs, NaN and OOM become records and the matrix goes on."""
import pytest

from refbench.records.store import read_results
from refbench.run.matrix import Matrix
from refbench.run.runner import run_matrix
from refbench.run.settings import Settings

FAULTY = ("tests.fixtures.faulty_workloads",)


def _spec(workloads, **kwargs):
    return Matrix(workloads=list(workloads), backends=["cpu"], modes=["infer"], batch_sizes=[4],
                  settings=Settings(iters=3, max_warmup=3, timeout_s=kwargs.pop("timeout_s", 300), imports=FAULTY,
                                    **kwargs))


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("worker") / "results.jsonl"
    # Only the hanging cell's timeout is short (its subject); a loaded machine may take long over the others.
    records = [*run_matrix(_spec(["test_crash"]), out), *run_matrix(_spec(["test_hang"], timeout_s=8), out),
               *run_matrix(_spec(["test_nan", "test_oom", "test_tiny"]), out)]
    return {r["workload"]: r for r in records}, out


def test_every_cell_gets_a_record_in_order_and_on_disk(faulty_run):
    records, out = faulty_run
    assert list(records) == ["test_crash", "test_hang", "test_nan", "test_oom", "test_tiny"]
    assert [r["workload"] for r in read_results(out)] == list(records)


def test_a_crash_is_an_error_with_the_signal_and_the_last_output(faulty_run):
    record = faulty_run[0]["test_crash"]
    assert record["status"] == "error"
    assert "SIGABRT" in record["error"] and "about to crash" in record["error"]


def test_a_hang_is_killed_at_the_timeout(faulty_run):
    record = faulty_run[0]["test_hang"]
    assert record["status"] == "timeout" and "no result within 8 s" in record["error"]


def test_nan_fails_the_cell(faulty_run):
    record = faulty_run[0]["test_nan"]
    assert record["status"] == "failed" and "NaN/Inf in output[0]" in record["error"]
    assert "samples_per_s" not in record["metrics"]  # a wrong answer is never timed


def test_cuda_out_of_memory_is_oom(faulty_run):
    record = faulty_run[0]["test_oom"]
    assert record["status"] == "oom" and "Tried to allocate 80.00 GiB" in record["error"]


def test_the_healthy_cell_after_them_is_measured(faulty_run):
    record = faulty_run[0]["test_tiny"]
    assert record["status"] == "ok" and record["metrics"]["samples_per_s"] > 0
    assert record["metrics"]["phases_s"]["startup_s"] >= 0
    assert record["metrics"]["correctness"]["compared"] is True


def test_python_m_refbench_worker_runs_a_cell_in_a_fresh_interpreter(tmp_path):
    (record,) = run_matrix(_spec(["test_tiny"]), tmp_path / "r.jsonl", isolation="subprocess")
    assert record["status"] == "ok", record["error"]


def test_a_cell_forked_from_the_fork_server_sees_the_runners_environment_of_the_moment(tmp_path, monkeypatch):
    """A Ray worker is given its CUDA_VISIBLE_DEVICES anew for each task, long after its fork server started."""
    from refbench.run.matrix import plan_cell
    from refbench.run.runner import run_cell

    settings = Settings(iters=2, max_warmup=2, imports=FAULTY)
    settings.validate()     # registers the workload
    cell = plan_cell("test_environ", "cpu", "infer", 2)
    monkeypatch.setenv("REFBENCH_TEST_ECHO", "before")
    assert "REFBENCH_TEST_ECHO=before" in run_cell(cell, settings)["error"]    # the fork server runs by now
    monkeypatch.setenv("REFBENCH_TEST_ECHO", "after")
    assert "REFBENCH_TEST_ECHO=after" in run_cell(cell, settings)["error"]
    monkeypatch.delenv("REFBENCH_TEST_ECHO")
    assert "REFBENCH_TEST_ECHO=None" in run_cell(cell, settings)["error"]
