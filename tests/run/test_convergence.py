"""One seed's run: the time-to-target bookkeeping, the budget, the batches, the data path."""
import pytest

from refbench.harness import backends
from refbench.run.convergence import converge
from refbench.models import Target, get_workload
from refbench.errors import RefbenchError
from tests.fixtures.convergence_workloads import AsWrittenBlobs, Blobs, registered, scripted  # noqa: F401  (a fixture)


def test_time_to_target_counts_training_only(scripted):
    """Steps take 1 s, evaluations 100 s: the curve's clock and time-to-target see only the steps."""
    scripted.script = [0.5, 0.96]
    run = converge("test_scripted", "quick")
    assert [(p.step, p.train_s) for p in run.curve] == [(5, 5.0), (10, 10.0)]
    assert run.reached and run.time_to_target_s == 10.0
    assert run.metrics()["steps_to_target"] == 10
    assert run.train_s == 10.0 and run.eval_s == 200.0 and run.wall_s == 210.0
    assert run.final == 0.96 and run.metrics()["accuracy"] == 0.96


def test_the_budget_is_trained_to_the_end_and_the_final_point_decides(scripted):
    """Crossing the threshold early does not stop the run; the final metric is the last point's."""
    scripted.script = [0.97, 0.90]
    run = converge("test_scripted", "quick")
    assert run.steps == 10 and run.reached and run.time_to_target_s == 5.0
    assert run.final == 0.90 and run.best == 0.97


def test_a_target_that_stops_at_its_threshold_ends_there_and_says_so(scripted):
    """The cost of such a run is its time to the target; its curve up to there is kept."""
    scripted.script = [0.5, 0.96, 0.99]
    run = converge("test_scripted", "full")
    assert run.steps == 10 and [p.step for p in run.curve] == [5, 10] and run.train_s == 10.0
    assert run.final == 0.96 and run.time_to_target_s == 10.0
    metrics = run.metrics()
    assert metrics["stopped_at_target"] is True and metrics["budget"]["stop_at_target"] is True


def test_a_stopping_target_missed_trains_its_whole_budget(scripted):
    scripted.script = [0.5, 0.6, 0.7]
    run = converge("test_scripted", "full")
    assert run.steps == 15 and not run.reached and run.metrics()["stopped_at_target"] is False


def test_the_wall_cap_ends_a_crawling_run_as_a_timeout(scripted):
    scripted.script = [0.5, 0.6]
    run = converge("test_scripted", "quick", wall_cap_s=103, max_steps=1000)
    assert run.capped and run.status == "timeout" and run.steps == 6   # 5 steps + 100 s of evaluation + 1 step
    assert "wall cap of 103 s after 6 steps" in run.error and "1000 steps" in run.error
    assert [p.step for p in run.curve] == [5, 6]


def test_same_seed_same_curve_and_another_seed_another():
    with registered(Blobs):
        def curve(seed):
            return [(p.step, p.train_loss, p.metrics) for p in converge("test_blobs", seed=seed).curve]
        assert curve(0) == curve(0)
        assert curve(0) != curve(1)


def test_partial_batches_are_dropped_and_epochs_still_end():
    with registered(Blobs):
        run = converge("test_blobs")
    assert run.dropped_batches == 2 and run.steps == 20          # 512 = 10 x 48 + 32, two epochs
    assert [p.step for p in run.curve] == [5, 10, 15, 20] and [p.epoch for p in run.curve][1::2] == [1.0, 2.0]


def test_the_host_loader_path_trains_the_same_curve():
    """A split that does not fit the device goes through a DataLoader; the batches are the same."""
    with registered(Blobs):
        resident = converge("test_blobs")
        loaded = converge("test_blobs", resident_fraction=0)
    assert resident.data_resident and not loaded.data_resident
    assert [p.metrics for p in loaded.curve] == [p.metrics for p in resident.curve]
    assert [p.train_loss for p in loaded.curve] == [p.train_loss for p in resident.curve]


def test_a_run_through_a_backend_records_what_it_used():
    with registered(AsWrittenBlobs):
        run = converge("test_as_written_blobs", backend="cpu+amp-bf16", seed=3, variant={"as_written": True})
    metrics = run.metrics()
    assert run.backend == "cpu+amp-bf16" and run.variant == {"as_written": True} and run.dataset == "two-blobs"
    assert metrics["seed"] == 3 and metrics["recipe"] == "fast" and metrics["recipe_settings"]["lr"] == 0.05
    assert metrics["budget"] == {"max_epochs": 2, "max_steps": None, "stop_at_target": False}
    assert metrics["threads"] == 1 and metrics["stopped_at_target"] is False
    assert set(metrics["curve"][0]) == {"epoch", "step", "train_s", "train_loss", "metrics"}


def test_backends_that_cannot_train_it_skip_with_the_reason():
    with pytest.raises(backends.SkipCell, match="no CUDA device"):
        converge("mlp", backend="cuda")
    with pytest.raises(backends.SkipCell, match="inference only"):
        converge("mlp", backend="int8")
    with pytest.raises(backends.SkipCell, match="converges on cpu only"):
        converge("hpo_rf_wine", backend="cpu+compile")


def test_a_captured_graph_refuses_a_batch_of_another_shape():
    """Step.feed into a captured graph: a different shape would be broadcast or fail inside copy_."""
    from refbench.harness.step import prepare

    step = prepare("mlp", "cpu", "train", 4, keep_reference_state=False)
    step.captured = True
    with pytest.raises(backends.SkipCell, match="replays one batch shape"):
        step.feed(get_workload("mlp").example_batch(3))


def test_resume_needs_a_file_to_resume_from():
    from refbench.run.converge import Convergence, run_convergence

    with pytest.raises(RefbenchError, match="--resume needs --out"):
        run_convergence(Convergence(workloads=["mlp"]), resume=True)


def test_unknown_target_and_bad_budgets_are_clear_errors():
    with pytest.raises(RefbenchError, match="has no target 'nightly'"):
        converge("mlp", "nightly")
    with pytest.raises(RefbenchError, match="max_steps must be a positive integer"):
        converge("mlp", max_steps=0)
    with pytest.raises(ValueError, match="wall_cap_s must be positive"):
        Target("accuracy", 0.5, wall_cap_s=-5)


@pytest.mark.parametrize("recipe, expected", [("document", {"normalize": "half"}), ("fast", {})])
def test_a_recipe_s_normalisation_reaches_the_data(recipe, expected, real_data, monkeypatch):
    """mlp's document recipe is Normalize((0.5,), (0.5,)) on both splits; refbench's own says nothing."""
    workload, seen = get_workload("mlp"), []
    original = type(workload).load_data

    def load_data(self, split, **kwargs):
        seen.append(({k: v for k, v in kwargs.items() if k == "normalize"}))
        return original(self, split, **kwargs)

    monkeypatch.setattr(type(workload), "load_data", load_data)
    real_data(converge, workload, "quick", recipe=recipe, max_steps=1)
    assert seen == [expected, expected]
