import optuna
import pytest
import torch
from torch import nn

from bench.results import read_results
from bench.sweep import sweep
from reference_models import Recipe, RefbenchError, Target, Workload, register_model, unregister_model
from reference_models.data import TensorSplit


class TwoBlobs(Workload):
    """Two Gaussian blobs in 2-D: a linear layer separates them in a few steps."""

    name = "test_two_blobs"
    source = "test"
    input_shape = (2,)
    num_classes = 2
    recipes = {"fast": Recipe(lr=0.1, batch_size=32)}
    targets = {"quick": Target("accuracy", 0.99, max_epochs=2, budget_s=5)}

    def build(self):
        return nn.Linear(2, 2)

    def load_data(self, split, *, device="cpu", data_dir=None, dataset=None):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        y = torch.randint(2, (512,), generator=g)
        x = torch.randn(512, 2, generator=g) + 3 * (2 * y[:, None] - 1)
        return TensorSplit(x.to(device), y.to(device), "two-blobs", "generated")


@pytest.fixture
def blobs():
    register_model(TwoBlobs)
    yield TwoBlobs.name
    unregister_model(TwoBlobs.name)


def test_every_trial_is_a_record_and_the_best_recipe_comes_back(blobs, tmp_path):
    out = tmp_path / "sweep.jsonl"
    lines = []
    best = sweep(blobs, budget_s=60, n_trials=4, out=str(out), log=lines.append)
    records = read_results(out)
    assert len(records) == 4 and {r["mode"] for r in records} == {"converge"}
    assert [r["metrics"]["trial"] for r in records] == [0, 1, 2, 3]
    assert all(r["dataset"] == "two-blobs" and r["workload"] == blobs for r in records)
    finished = [r for r in records if r["status"] == "ok"]
    top = max(finished, key=lambda r: r["metrics"]["accuracy"])
    assert isinstance(best, Recipe) and best.optimizer == top["metrics"]["params"]["optimizer"]
    assert best.lr == top["metrics"]["params"]["lr"] and best.batch_size == top["metrics"]["recipe"]["batch_size"]
    assert lines[-1].startswith("best recipe (accuracy")
    assert TwoBlobs.recipes == {"fast": Recipe(lr=0.1, batch_size=32)}   # the class is left as it was


def test_pruned_trials_are_recorded_with_the_reason(blobs, tmp_path):
    out = tmp_path / "sweep.jsonl"
    never_good_enough = optuna.pruners.ThresholdPruner(lower=2.0)   # accuracy never reaches 2: prune at once
    with pytest.raises(RefbenchError, match="no sweep trial of test_two_blobs finished"):
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


@pytest.mark.slow
def test_lenet5_sweep_on_fashion_mnist_within_two_minutes(real_data, tmp_path):
    """What `refbench sweep --workloads lenet5 --budget 120` runs."""
    out = tmp_path / "sweep.jsonl"
    best = real_data(sweep, "lenet5", budget_s=120, out=str(out), log=lambda line: None)
    records = read_results(out)
    assert records and all(r["dataset"] in ("mnist", "fashion-mnist (stand-in for mnist)") for r in records)
    assert max(r["metrics"]["accuracy"] or 0 for r in records) > 0.8
    assert best.optimizer in ("sgd", "adam", "adamw")
