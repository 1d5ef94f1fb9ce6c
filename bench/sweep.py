"""Hyper-parameter search over a workload's recipe with Optuna, within a time budget.

Each trial trains the workload towards its target (``bench.convergence``)
with a recipe Optuna proposes: optimizer, learning rate, batch size, epochs
(and momentum for SGD). Intermediate evaluations are reported to Optuna,
whose median pruner stops unpromising trials early. Every trial, finished,
pruned or broken, is appended as a ``converge`` result record; the best
recipe is returned.

Trials are scored on the target's own evaluation split (the test split:
the workloads have no separate validation split), so the best score is an
optimistic estimate; retrain the best recipe with ``refbench converge`` to
measure it.
"""
from __future__ import annotations

import dataclasses
import math
import time
import traceback
from typing import Callable

from bench.convergence import EvalPoint, converge
from bench.environment import collect_env
from bench.results import ResultWriter, make_record, new_run_id
from reference_models import Recipe, RefbenchError, get_workload

OPTIMIZERS = ("sgd", "adam", "adamw")
BATCH_SIZES = (32, 64, 128, 256)
EVALS_PER_EPOCH = 4   # intermediate values Optuna can prune on


def suggest_recipe(trial, *, max_epochs: int) -> Recipe:
    """The search space: one recipe per trial."""
    optimizer = trial.suggest_categorical("optimizer", OPTIMIZERS)
    return Recipe(
        optimizer=optimizer,
        lr=trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        batch_size=trial.suggest_categorical("batch_size", BATCH_SIZES),
        epochs=trial.suggest_int("epochs", 1, max(1, max_epochs)),
        momentum=trial.suggest_float("momentum", 0.0, 0.99) if optimizer == "sgd" else 0.0,
        notes=f"sweep trial {trial.number}",
    )


def sweep(workload_name: str, *, budget_s: float, n_trials: int | None = None, device="cpu", data_dir=None,
          out: str | None = None, target: str = "quick", seed: int = 0, pruner=None,
          log: Callable[[str], None] = print) -> Recipe:
    """Search ``workload_name``'s recipe for ``budget_s`` seconds (or ``n_trials`` trials); return the best.

    Trials start while time is left; each trial's training budget is the time
    left, so the sweep ends within about ``budget_s`` plus evaluation time.
    ``pruner`` replaces Optuna's median pruner.
    """
    import optuna

    workload = get_workload(workload_name)
    foreign = sorted({r.optimizer for r in workload.recipes.values()} - set(OPTIMIZERS))
    if foreign:
        raise RefbenchError(f"{workload_name} trains with {', '.join(foreign)}, not a torch optimizer the sweep "
                            f"can choose ({', '.join(OPTIMIZERS)}); sweep a workload trained by gradient descent")
    if target not in workload.targets:
        raise RefbenchError(f"{workload_name} has no target {target!r}; targets: {', '.join(workload.targets)}")
    if budget_s <= 0 or (n_trials is not None and n_trials < 1):
        raise RefbenchError("a sweep needs a positive --budget and, if given, at least one trial")
    base = workload.targets[target]
    train = workload.load_data("train", device="cpu", data_dir=data_dir, dataset=base.dataset)  # fails early

    run_id, env = new_run_id(), collect_env()
    writer = ResultWriter(out) if out else None
    deadline = time.perf_counter() + budget_s   # Optuna's timeout stops new trials; this bounds the last one
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if base.higher_is_better else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))

    def objective(trial) -> float:
        recipe = suggest_recipe(trial, max_epochs=base.max_epochs)
        name = f"sweep-{trial.number}"
        # This trial's recipe and target live on the workload instance, not on its class.
        workload.recipes = {**type(workload).recipes, name: recipe}
        workload.targets = {**type(workload).targets, name: dataclasses.replace(
            base, recipe=name, max_epochs=recipe.epochs,
            eval_every_steps=max(1, len(train) // recipe.batch_size // EVALS_PER_EPOCH))}
        curve: list[EvalPoint] = []

        def report(point: EvalPoint) -> None:
            curve.append(point)
            trial.report(point.metrics[base.metric], step=len(curve))
            if trial.should_prune():
                raise optuna.TrialPruned(f"{base.metric} {point.metrics[base.metric]:.4f} after {point.train_s:.1f}s")

        status, error, metrics = "ok", None, {}
        try:
            result = converge(workload, name, device=device, data_dir=data_dir, seed=seed,
                              budget_s=max(deadline - time.perf_counter(), 1.0), on_eval=report)
            metrics = result.metrics()
            if math.isnan(result.best):
                status, error = "error", f"diverged: {base.metric} is NaN"
            return result.best   # Optuna marks a NaN trial failed
        except optuna.TrialPruned as pruned:
            status, error = "skipped", f"pruned by Optuna: {pruned}"
            raise
        except Exception as exc:  # recorded here; Optuna marks the trial failed and the search goes on
            status, error = "error", "".join(traceback.format_exception_only(type(exc), exc)).strip()
            raise
        finally:
            values = [p.metrics[base.metric] for p in curve]
            metrics = metrics or {base.metric: max(values) if values else None,
                                  "curve": [dataclasses.asdict(p) for p in curve]}
            metrics.update(trial=trial.number, params=dict(trial.params), recipe=dataclasses.asdict(recipe))
            if writer:
                writer.append(make_record(run_id=run_id, env=env, workload=workload.name,
                                          variant=workload.resolve_variant(**base.variant), backend=str(device),
                                          mode="converge", batch_size=recipe.batch_size, dataset=train.dataset,
                                          status=status, error=error, metrics=metrics))
            value = metrics.get(base.metric)
            log(f"trial {trial.number}: {_describe(recipe)} -> {status}"
                + (f" ({error})" if error else f", {base.metric} {value:.4f}"))

    try:
        study.optimize(objective, n_trials=n_trials, timeout=budget_s, catch=(Exception,))
    finally:
        if writer:
            writer.close()
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise RefbenchError(f"no sweep trial of {workload_name} finished within {budget_s:g}s; raise --budget")
    best = study.best_trial
    recipe = dataclasses.replace(suggest_recipe(optuna.trial.FixedTrial(best.params), max_epochs=base.max_epochs),
                                 notes=f"best of {len(study.trials)} sweep trials: {base.metric} {best.value:.4f}")
    log(f"best recipe ({base.metric} {best.value:.4f}, trial {best.number}): {_describe(recipe)}")
    return recipe


def _describe(recipe: Recipe) -> str:
    momentum = f" momentum {recipe.momentum:.2f}" if recipe.optimizer == "sgd" else ""
    return (f"{recipe.optimizer} lr {recipe.lr:.2e}{momentum} batch {recipe.batch_size} "
            f"epochs {recipe.epochs}")
