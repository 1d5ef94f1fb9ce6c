import io

import pytest

optuna = pytest.importorskip("optuna", reason="refbench sweep searches with Optuna (pip install optuna); "
                                               "the GPU machine's image has none")

from refbench.run.progress import Progress
from refbench.records.store import read_results
from refbench.run.sweep import sweep
from refbench.models import Recipe
from refbench.errors import RefbenchError
from tests.fixtures.convergence_workloads import Blobs, registered


@pytest.fixture
def blobs():
    with registered(Blobs):
        yield Blobs.name


def test_every_trial_is_a_record_and_the_best_recipe_comes_back(blobs, tmp_path):
    out = tmp_path / "sweep.jsonl"
    lines = []
    best = sweep(blobs, budget_s=60, n_trials=4, out=str(out), log=lines.append)
    records = read_results(out)
    assert len(records) == 4 and {r["mode"] for r in records} == {"converge"}
    assert [r["metrics"]["trial"] for r in records] == [0, 1, 2, 3]
    assert all(r["dataset"] == "two-blobs" and r["workload"] == blobs and r["backend"] == "cpu" for r in records)
    finished = [r for r in records if r["status"] == "ok"]
    top = max(finished, key=lambda r: r["metrics"]["accuracy"])
    assert isinstance(best, Recipe) and best.optimizer == top["metrics"]["params"]["optimizer"]
    assert best.lr == top["metrics"]["params"]["lr"] and best.batch_size == top["metrics"]["recipe_settings"]["batch_size"]
    assert lines[-1].startswith("best recipe (accuracy")
    assert Blobs.recipes == {"fast": Recipe(lr=0.05, batch_size=48)}   # the class is left as it was


def test_pruned_trials_are_recorded_with_the_reason(blobs, tmp_path):
    out = tmp_path / "sweep.jsonl"
    never_good_enough = optuna.pruners.ThresholdPruner(lower=2.0)   # accuracy never reaches 2: prune at once
    with pytest.raises(RefbenchError, match="no sweep trial of test_blobs finished"):
        sweep(blobs, budget_s=30, n_trials=2, out=str(out), pruner=never_good_enough, log=lambda line: None)
    records = read_results(out)
    assert [r["status"] for r in records] == ["skipped", "skipped"]
    assert all(r["error"].startswith("pruned by Optuna: accuracy") for r in records)
    assert all(len(r["metrics"]["curve"]) == 1 for r in records)


def test_a_search_workload_and_bad_arguments_are_refused(blobs):
    with pytest.raises(RefbenchError, match="hpo_rf_wine trains with forest, grid-search, not a torch optimizer"):
        sweep("hpo_rf_wine", budget_s=10)
    with pytest.raises(RefbenchError, match="no target 'nightly'"):
        sweep(blobs, budget_s=10, target="nightly")
    with pytest.raises(RefbenchError, match="positive --budget"):
        sweep(blobs, budget_s=0)
    with pytest.raises(RefbenchError, match="cannot sweep test_blobs on int8: int8 dynamic quantization is inference"):
        sweep(blobs, budget_s=10, backend="int8")


def test_trials_train_through_the_backend_and_show_progress(blobs, tmp_path):
    out, stream = tmp_path / "sweep.jsonl", io.StringIO()
    sweep(blobs, budget_s=60, n_trials=2, backend="cpu+amp-bf16", out=str(out),
          progress=Progress(2, unit="trial", stream=stream))
    records = read_results(out)
    assert [r["backend"] for r in records] == ["cpu+amp-bf16"] * 2
    assert all(r["metrics"]["curve"] and r["metrics"]["recipe"].startswith("sweep-") for r in records)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2] trial 0: ") and lines[1].startswith("[2/2] trial 1: ")


def test_the_last_trial_stops_when_the_budget_runs_out(blobs, tmp_path, monkeypatch):
    """A trial that would outlast the sweep is stopped at the budget; its last evaluation is its value."""
    out = tmp_path / "sweep.jsonl"
    monkeypatch.setattr("refbench.run.sweep.suggest_recipe", lambda trial, max_epochs: Recipe(
        lr=0.05, batch_size=32, epochs=1000, notes=f"trial {trial.number}"))
    sweep(blobs, budget_s=3, n_trials=1, out=str(out), log=lambda line: None)
    (record,) = read_results(out)
    assert record["status"] == "timeout" and "--budget of 3 s ran out during this trial" in record["error"]
    assert record["metrics"]["curve"] and record["metrics"]["steps"] < 1000 * 16


@pytest.mark.slow
def test_lenet5_sweep_on_fashion_mnist_within_two_minutes(real_data, tmp_path):
    """What `refbench sweep --workloads lenet5 --budget 120` runs."""
    out = tmp_path / "sweep.jsonl"
    best = real_data(sweep, "lenet5", budget_s=120, out=str(out), log=lambda line: None)
    records = read_results(out)
    assert records and all(r["dataset"] == "fashion-mnist" for r in records)   # the quick target's data set
    assert max(r["metrics"]["accuracy"] or 0 for r in records) > 0.8
    assert best.optimizer in ("sgd", "adam", "adamw")
