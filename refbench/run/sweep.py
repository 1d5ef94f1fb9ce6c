"""Hyper-parameter search over a workload's recipe with Optuna, within a time budget.

Each trial trains the workload towards its target (``refbench.run.convergence``,
through the same Step as every runner, on the backend given) with a recipe
Optuna proposes: optimizer, learning rate, batch size, epochs (and momentum
for SGD). Intermediate evaluations are reported to Optuna, whose median
pruner stops unpromising trials early; a finished trial's value is its final
metric. Every trial, finished, pruned or broken, is appended as a
``converge`` result record; the best recipe is returned.

Trials start while time is left; the last one is stopped when the budget
runs out (its record says so, status ``timeout``, and its value is its last
evaluation), so a sweep ends within about ``budget_s`` plus one evaluation.

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

from refbench.harness import backends
from refbench.run.convergence import EvalPoint, converge, skip_reason, target_of
from refbench.harness.machine import collect_env
from refbench.run.progress import Progress
from refbench.records.schema import make_record, new_run_id
from refbench.records.store import ResultWriter
from refbench.models import Recipe, Workload, get_workload
from refbench.errors import RefbenchError

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


def check_sweep(workload_name: str, *, target: str = "quick", backend: str = "cpu", data_dir=None) -> Workload:
    """The workload, if it can be swept to ``target`` on ``backend``; else a RefbenchError saying why not."""
    workload = get_workload(workload_name)
    foreign = sorted({r.optimizer for r in workload.recipes.values()} - set(OPTIMIZERS))
    if foreign:
        raise RefbenchError(f"{workload_name} trains with {', '.join(foreign)}, not a torch optimizer the sweep "
                            f"can choose ({', '.join(OPTIMIZERS)}); sweep a workload trained by gradient descent")
    target_of(workload, target)
    reason = skip_reason(workload, backends.resolve(backend))
    if reason:
        raise RefbenchError(f"cannot sweep {workload_name} on {backend}: {reason}")
    return workload


def sweep(workload_name: str, *, budget_s: float, n_trials: int | None = None, backend: str = "cpu",
          threads: int | str | None = 1, data_dir=None, out: str | None = None, target: str = "quick",
          seed: int = 0, pruner=None, progress: Progress | None = None,
          log: Callable[[str], None] | None = None) -> Recipe:
    """Search ``workload_name``'s recipe for ``budget_s`` seconds (or ``n_trials`` trials); return the best.

    ``pruner`` replaces Optuna's median pruner. Each trial's line, and the
    best recipe's, go to ``log`` when given, else each trial's to the
    progress display.
    """
    import optuna

    if budget_s <= 0 or (n_trials is not None and n_trials < 1):
        raise RefbenchError("a sweep needs a positive --budget and, if given, at least one trial")
    workload = check_sweep(workload_name, target=target, backend=backend, data_dir=data_dir)
    base = workload.targets[target]
    train = workload.load_data("train", device="cpu", data_dir=data_dir, dataset=base.dataset)  # fails early

    run_id, env = new_run_id(), collect_env()
    writer = ResultWriter(out) if out else None
    progress = progress or Progress(n_trials or budget_s, unit="trial" if n_trials else "s",
                                    terminal=False if log else None)
    started = time.perf_counter()
    deadline = started + budget_s   # Optuna's timeout stops new trials; this bounds the last one
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if base.higher_is_better else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))

    def objective(trial) -> float:
        recipe = suggest_recipe(trial, max_epochs=base.max_epochs)
        curve: list[EvalPoint] = []

        def report(point: EvalPoint) -> None:
            curve.append(point)
            progress.note(f"trial {trial.number}: step {point.step}, {base.metric} {point.metrics[base.metric]:.4f}")
            trial.report(point.metrics[base.metric], step=len(curve))
            if trial.should_prune():
                raise optuna.TrialPruned(f"{base.metric} {point.metrics[base.metric]:.4f} after {point.train_s:.1f}s")

        status, error, metrics = "ok", None, {}
        try:
            result = converge(workload, target, backend=backend, seed=seed, recipe=recipe, data_dir=data_dir,
                              threads=threads, max_epochs=recipe.epochs,
                              max_steps=max(1, recipe.epochs * (len(train) // recipe.batch_size)),  # epochs decide
                              eval_every_steps=max(1, len(train) // recipe.batch_size // EVALS_PER_EPOCH),
                              wall_cap_s=max(deadline - time.perf_counter(), 1.0), on_eval=report)
            metrics = result.metrics()
            if result.capped:
                status, error = "timeout", (f"the sweep's --budget of {budget_s:g} s ran out during this trial, "
                                            f"after {result.steps} steps")
            if math.isnan(result.final):
                status, error = "error", f"diverged: {base.metric} is NaN"
            return result.final   # Optuna marks a NaN trial failed
        except optuna.TrialPruned as pruned:
            status, error = "skipped", f"pruned by Optuna: {pruned}"
            raise
        except Exception as exc:  # recorded here; Optuna marks the trial failed and the search goes on
            status, error = "error", "".join(traceback.format_exception_only(type(exc), exc)).strip()
            raise
        finally:
            values = [p.metrics[base.metric] for p in curve]
            metrics = metrics or {base.metric: values[-1] if values else None,
                                  "curve": [dataclasses.asdict(p) for p in curve]}
            metrics.update(trial=trial.number, params=dict(trial.params), recipe=f"sweep-{trial.number}",
                           recipe_settings=dataclasses.asdict(recipe))
            if writer:
                writer.append(make_record(run_id=run_id, env=env, workload=workload.name,
                                          variant=workload.resolve_variant(**base.variant), backend=backend,
                                          mode="converge", batch_size=recipe.batch_size, dataset=train.dataset,
                                          status=status, error=error, metrics=metrics))
            value = metrics.get(base.metric)
            line = (f"trial {trial.number}: {_describe(recipe)} -> {status}"
                    + (f" ({error})" if error else f", {base.metric} {value:.4f}"))
            if log:
                log(line)
            else:
                progress.done(line, units=1 if n_trials else time.perf_counter() - started - progress.count)

    try:
        study.optimize(objective, n_trials=n_trials, timeout=budget_s, catch=(Exception,))
    finally:
        if writer:
            writer.close()
        progress.close()
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise RefbenchError(f"no sweep trial of {workload_name} finished within {budget_s:g}s; raise --budget")
    best = study.best_trial
    recipe = dataclasses.replace(suggest_recipe(optuna.trial.FixedTrial(best.params), max_epochs=base.max_epochs),
                                 notes=f"best of {len(study.trials)} sweep trials: {base.metric} {best.value:.4f}")
    if log:
        log(f"best recipe ({base.metric} {best.value:.4f}, trial {best.number}): {_describe(recipe)}")
    return recipe


def _describe(recipe: Recipe) -> str:
    momentum = f" momentum {recipe.momentum:.2f}" if recipe.optimizer == "sgd" else ""
    return (f"{recipe.optimizer} lr {recipe.lr:.2e}{momentum} batch {recipe.batch_size} "
            f"epochs {recipe.epochs}")
