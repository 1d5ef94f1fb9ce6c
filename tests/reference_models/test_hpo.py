import pytest
import torch

from bench.convergence import converge
from bench import backends
from reference_models import RefbenchError, get_workload, hpo


def test_make_gives_a_fitted_forest_that_returns_probabilities():
    workload = get_workload("hpo_rf_wine")
    model = workload.make()
    x, y = workload.example_batch(16)
    probabilities = workload.eval_step(model, (x, y))
    assert probabilities.shape == (16, 3) and torch.allclose(probabilities.sum(1), torch.ones(16))
    assert (probabilities.argmax(1) == y).float().mean() > 0.9   # training rows, fitted forest
    assert sum(p.numel() for p in model.parameters()) == 0


def test_wine_split_is_fixed_and_stratified():
    (x_train, y_train), (x_test, y_test) = hpo.wine_split("train"), hpo.wine_split("test")
    assert x_train.shape == (142, 13) and x_test.shape == (36, 13)
    assert sorted(set(y_test)) == [0, 1, 2]
    assert (hpo.wine_split("test")[0] == x_test).all()


def test_grid_search_reports_best_parameters_and_cv_score(monkeypatch):
    monkeypatch.setattr(hpo, "PARAM_GRID", {"n_estimators": [5, 20], "max_depth": [None, 2]})
    result = converge(get_workload("hpo_rf_wine"), "quick")
    (point,) = result.curve
    assert result.reached and result.dataset == "sklearn-wine"
    assert 0.8 < point.metrics["cv_accuracy"] <= 1
    assert point.metrics["best_n_estimators"] in (5, 20) and point.metrics["best_max_depth"] in (0, 2)


def test_throughput_backends_skip_it_with_a_reason():
    reason = backends.resolve("cpu").skip_reason(get_workload("hpo_rf_wine"), "train")
    assert reason and "refbench converge" in reason


def test_a_forest_step_fits_the_batch():
    workload = get_workload("hpo_rf_wine")
    model = workload.make()
    x, y = workload.example_batch(32, seed=3)
    assert workload.configure_optimizer(model, workload.recipe("fast")) is None
    assert workload.train_step(model, (x, y), None).item() == 0   # a forest fits its own training rows


def test_unknown_fitting_method_is_a_clear_error():
    workload = get_workload("hpo_rf_wine")
    with pytest.raises(RefbenchError, match="fits with 'grid-search' or 'forest', not 'adam'"):
        workload.configure_optimizer(workload.make(), workload.recipes["document"].__class__(optimizer="adam"))


@pytest.mark.convergence
def test_the_documents_grid_search_reaches_its_quick_target():
    result = converge(get_workload("hpo_rf_wine"), "quick")
    (point,) = result.curve
    assert result.reached and point.metrics["cv_accuracy"] > 0.9
