"""--shard splits a matrix deterministically; --resume measures only what is not finished."""
import pytest

from refbench.records.schema import cell_key, make_record
from refbench.records.store import read_results, ResultWriter
from refbench.run.matrix import Matrix
from refbench.run.runner import parse_shard, run_matrix, select
from refbench.run.settings import Settings
from refbench.errors import RefbenchError

FAULTY = ("tests.fixtures.faulty_workloads",)


def _spec():
    return Matrix(workloads=["test_tiny", "mlp"], backends=["cpu", "cpu+int8"], modes=["train", "infer"],
                  batch_sizes=[2, 4], settings=Settings(iters=2, max_warmup=2, imports=FAULTY))


def test_shards_partition_the_matrix_the_same_way_every_time():
    spec = _spec()
    cells = spec.cells()
    assert len(cells) == 16
    shards = [select(cells, shard=(i, 3)) for i in (1, 2, 3)]
    assert sorted(len(s) for s in shards) == [5, 5, 6]
    assert sorted((c.key() for s in shards for c in s)) == sorted(c.key() for c in cells)
    assert select(spec.cells(), shard=(2, 3)) == shards[1]


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2"])
def test_bad_shards_are_user_errors(text):
    with pytest.raises(RefbenchError, match="--shard"):
        parse_shard(text)


def test_resume_skips_finished_cells_and_retries_those_that_never_finished(tmp_path):
    out = tmp_path / "r.jsonl"
    spec = Matrix(workloads=["test_tiny"], backends=["cpu", "cpu+int8"], modes=["train", "infer"],
                  batch_sizes=[2], settings=Settings(iters=2, max_warmup=2, imports=FAULTY))
    first = run_matrix(spec, out, shard=(1, 2), isolation="inline")
    assert [r["status"] for r in first] == ["ok", "skipped"]          # cpu train, int8 train
    # A cell that timed out earlier is measured again on resume.
    with ResultWriter(out) as writer:
        writer.append(make_record(run_id="x", env={}, workload="test_tiny", backend="cpu", mode="infer",
                                  batch_size=2, status="timeout", error="killed"))
    second = run_matrix(spec, out, resume=True, isolation="inline")
    assert [(r["backend"], r["mode"]) for r in second] == [("cpu", "infer"), ("cpu+int8", "infer")]
    assert run_matrix(spec, out, resume=True, isolation="inline") == []
    assert len({cell_key(r) for r in read_results(out)}) == 4


def test_cells_a_time_budget_never_started_are_not_run_and_resume_runs_them(tmp_path):
    out = tmp_path / "r.jsonl"
    spec = Matrix(workloads=["test_tiny"], backends=["cpu", "cpu+int8"], modes=["train", "infer"],
                  batch_sizes=[2], settings=Settings(iters=2, max_warmup=2, imports=FAULTY))
    first = run_matrix(spec, out, isolation="inline", time_budget_s=1e-9)
    # the cheapest cells of every backend first (inference before training), dealt out a backend at a time
    assert [(r["backend"], r["mode"], r["status"]) for r in first] == [
        ("cpu", "infer", "not_run"), ("cpu+int8", "infer", "not_run"), ("cpu", "train", "not_run"),
        ("cpu+int8", "train", "skipped")]
    assert "time budget of 1e-09 s was used up before this cell started" in first[0]["error"]
    second = run_matrix(spec, out, resume=True, isolation="inline")    # no budget: the matrix's own order
    assert [(r["backend"], r["mode"], r["status"]) for r in second] == [
        ("cpu", "train", "ok"), ("cpu", "infer", "ok"), ("cpu+int8", "infer", "ok")]


def test_bad_time_budget_is_a_user_error(tmp_path):
    with pytest.raises(RefbenchError, match="--time-budget must be positive"):
        run_matrix(_spec(), tmp_path / "r.jsonl", time_budget_s=0)
