"""Document 001 section 4.3: a RandomForest tuned by GridSearchCV, with scikit-learn.

The workload's "model" is a small ``nn.Module`` holding a scikit-learn
forest, so the harness handles it like any other:

- ``make()`` returns the wrapper, its forest already fitted on the training
  split with scikit-learn's defaults (a usable model, as pretrained weights
  would be); ``forward`` returns class probabilities as a tensor.
- The recipe's ``optimizer`` names how a training step fits: ``grid-search``
  (the document: GridSearchCV over ``PARAM_GRID`` with 5-fold
  cross-validation, the best forest kept) or ``forest`` (one fit with the
  current parameters). A step sees the whole training split as one batch.
- ``refbench converge`` runs the grid search once and evaluates the test
  split, reporting the best parameters and CV score beside the accuracy.
  ``refbench run`` records its cells as ``skipped`` (task "hpo": a search has
  no single step to time).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from reference_models._errors import RefbenchError
from reference_models._registry import register_model
from reference_models._workload import Recipe, Target, Workload
from reference_models.data import TensorSplit, register_source

PARAM_GRID = {"n_estimators": [50, 100, 200], "max_depth": [None, 10, 20], "min_samples_split": [2, 5]}
TEST_SIZE, SEED = 0.2, 42


def wine_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled wine data (178 x 13, 3 cultivars), split 80/20 stratified and fixed."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise RefbenchError(f"unknown split {split!r}; use train or test")
    x, y = load_wine(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)
    return (x_train, y_train) if split == "train" else (x_test, y_test)


class Forest(nn.Module):
    """A fitted RandomForestClassifier behind the nn.Module interface; no torch parameters."""

    def __init__(self, **params: Any):
        super().__init__()
        from sklearn.ensemble import RandomForestClassifier

        self.estimator = RandomForestClassifier(random_state=0, **params)
        self.search = None   # the fitted GridSearchCV, once a grid search has run
        self.fit(*wine_split("train"))

    def fit(self, x, y) -> None:
        self.estimator.fit(_numpy(x), _numpy(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.estimator.predict_proba(_numpy(x)), dtype=torch.float32, device=x.device)


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


@register_model
class RandomForestWineWorkload(Workload):
    name = "hpo_rf_wine"
    source = "document 001 section 4.3: RandomForest + GridSearchCV"
    task = "hpo"
    untimed_reason = "a hyper-parameter search has no single step to time; `refbench converge` measures it"
    dataset = "sklearn-wine"
    input_shape = (13,)
    num_classes = 3
    recipes = {
        "document": Recipe(optimizer="grid-search", batch_size=142, epochs=1,
                           notes="GridSearchCV(RandomForestClassifier, PARAM_GRID, cv=5)"),
        "fast": Recipe(optimizer="forest", batch_size=142, epochs=1, notes="one forest, default parameters"),
    }
    targets = {
        "quick": Target("accuracy", 0.90, recipe="document", max_epochs=1, wall_cap_s=120),
        "full": Target("accuracy", 0.95, recipe="document", max_epochs=1),
    }
    notes = (
        "The document's UCI Wine Quality file is not shipped with any package here; the grid "
        "search runs on scikit-learn's bundled wine data (178 samples, 13 features, 3 classes), "
        "split 80/20 stratified with random_state 42.",
        "The grid (n_estimators 50/100/200, max_depth None/10/20, min_samples_split 2/5) is "
        "searched with 5-fold cross-validation; the metrics report best_max_depth 0 for None "
        "(trees grown until pure).",
        "Learning rate, momentum and batch size mean nothing to a forest; `refbench sweep` refuses "
        "this workload, which is itself a hyper-parameter search.",
    )

    def build(self) -> nn.Module:
        return Forest()

    def example_batch(self, batch_size: int, device="cpu", *, seed: int = 0):
        """``batch_size`` training rows drawn with replacement."""
        x, y = wine_split("train")
        rows = torch.randint(len(y), (batch_size,), generator=torch.Generator().manual_seed(seed))
        return (torch.as_tensor(x, dtype=torch.float32)[rows].to(device),
                torch.as_tensor(y)[rows].to(device))

    def configure_optimizer(self, model: nn.Module, recipe: Recipe, **extra: Any):
        """What fits the forest: a GridSearchCV (``grid-search``) or None (``forest``: fit as it is)."""
        if recipe.optimizer == "forest":
            return None
        if recipe.optimizer == "grid-search":
            from sklearn.base import clone
            from sklearn.model_selection import GridSearchCV

            return GridSearchCV(clone(model.estimator), PARAM_GRID, cv=5, n_jobs=1)
        raise RefbenchError(f"{self.name} fits with 'grid-search' or 'forest', not {recipe.optimizer!r}")

    def train_step(self, model: nn.Module, batch, optimizer, *, scaler=None) -> torch.Tensor:
        """Fit on the batch; returns the misclassification rate on it."""
        x, y = batch
        if optimizer is None:
            model.fit(x, y)
        else:
            optimizer.fit(_numpy(x), _numpy(y))
            model.estimator, model.search = optimizer.best_estimator_, optimizer
        return 1 - (self.forward(model, batch).argmax(1) == y).float().mean()

    def load_data(self, split: str, *, device="cpu", data_dir=None, dataset: str | None = None):
        if (dataset or self.dataset) != self.dataset:
            raise RefbenchError(f"{self.name} runs on {self.dataset}, not {dataset!r}")
        x, y = wine_split(split)
        return TensorSplit(torch.as_tensor(x, dtype=torch.float32).to(device), torch.as_tensor(y).to(device),
                           self.dataset, "sklearn.datasets.load_wine")

    def train_batches(self, split, batch_size: int, *, generator: torch.Generator):
        """The whole training split at once: a grid search cross-validates over all of it."""
        yield split.x, split.y

    def evaluate(self, model: nn.Module, split, *, batch_size: int = 1000) -> dict[str, float]:
        """Test accuracy; after a grid search also its CV score and best parameters."""
        metrics = super().evaluate(model, split, batch_size=batch_size)
        if model.search is not None:
            metrics["cv_accuracy"] = float(model.search.best_score_)
            metrics.update({f"best_{k}": float(v or 0) for k, v in model.search.best_params_.items()})
        return metrics


register_source("sklearn-wine", lambda data_dir: {
    "found": "sklearn.datasets.load_wine", "size": {s: len(wine_split(s)[1]) for s in ("train", "test")}})
