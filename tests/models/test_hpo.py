import dataclasses

import pytest
import torch

from refbench.run.convergence import converge
from refbench.harness import backends
from refbench.models import Recipe, get_workload
from refbench.errors import RefbenchError
from refbench.models import hpo


def test_make_gives_a_fitted_forest_that_returns_probabilities():
    workload = get_workload("hpo_rf_wine")
    model = workload.make()
    x, y = workload.example_batch(16)
    probabilities = workload.eval_step(model, (x, y))
    assert probabilities.shape == (16, 3) and torch.allclose(probabilities.sum(1), torch.ones(16))
    assert (probabilities.argmax(1) == y).float().mean() > 0.9   # training rows, fitted forest
    assert sum(p.numel() for p in model.parameters()) == 0


def test_wine_split_is_fixed_and_stratified():
    (x_train, _), (x_test, y_test) = hpo.wine_split("train"), hpo.wine_split("test")
    assert x_train.shape == (142, 13) and x_test.shape == (36, 13)
    assert sorted(set(y_test)) == [0, 1, 2]
    assert (hpo.wine_split("test")[0] == x_test).all()


def small_grid(workload, grid, *, as_written: bool = False):
    """``workload`` with a quick grid as its 'reference' recipe, the quick target on the given variant."""
    workload.recipes = {**workload.recipes, "reference": hpo.GridSearch(grid=grid, source="test")}
    workload.targets = {**workload.targets,
                        "quick": dataclasses.replace(workload.targets["quick"], variant={"as_written": as_written})}
    return workload


def test_grid_search_reports_best_parameters_and_cv_score():
    workload = small_grid(get_workload("hpo_rf_wine"), {"n_estimators": [5, 20], "max_depth": [None, 2]})
    result = converge(workload, "quick")
    (point,) = result.curve
    assert result.reached and result.dataset == "sklearn-wine"
    assert 0.8 < point.metrics["cv_accuracy"] <= 1
    assert point.metrics["best_n_estimators"] in (5, 20) and point.metrics["best_max_depth"] in (0, 2)


def test_as_written_is_a_regressor_scored_by_r2():
    """The document's RandomForestRegressor: one prediction per row, searched by R^2, rounded for accuracy."""
    from sklearn.ensemble import RandomForestRegressor

    workload = get_workload("hpo_rf_wine")
    model = workload.make(as_written=True)
    assert isinstance(model.estimator, RandomForestRegressor)
    x, y = workload.example_batch(16)
    assert workload.eval_step(model, (x, y)).shape == (16,)
    small_grid(workload, {"n_estimators": [5, 10], "min_samples_leaf": [2, 8]}, as_written=True)
    (point,) = converge(workload, "quick").curve
    assert 0.5 < point.metrics["cv_r2"] <= 1 and 0.5 < point.metrics["r2"] <= 1
    assert "cv_accuracy" not in point.metrics and 0.8 < point.metrics["accuracy"] <= 1
    assert point.metrics["best_min_samples_leaf"] in (2, 8)


def test_document_recipe_is_the_documents_grid():
    recipe = get_workload("hpo_rf_wine").recipe("document")
    assert recipe.grid == {"n_estimators": [10, 50, 100], "min_samples_leaf": [2, 4, 8],
                           "min_samples_split": [2, 4, 8], "random_state": [0]}
    assert (recipe.optimizer, recipe.cv) == ("grid-search", 5)


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
    with pytest.raises(RefbenchError, match=r"fits with 'grid-search' \(a GridSearch recipe\) or 'forest', not 'adam'"):
        workload.configure_optimizer(workload.make(), hpo.GridSearch(optimizer="adam"))
    with pytest.raises(RefbenchError, match="not 'grid-search'"):   # a grid search needs a grid
        workload.configure_optimizer(workload.make(), Recipe(optimizer="grid-search"))


@pytest.mark.convergence
def test_the_reference_grid_search_reaches_its_quick_target():
    result = converge(get_workload("hpo_rf_wine"), "quick")
    (point,) = result.curve
    assert result.reached and point.metrics["cv_accuracy"] > 0.9
