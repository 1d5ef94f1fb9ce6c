"""Train a workload to its accuracy target: curves, time to target, pass or fail.

The budget counts training time only; evaluation pauses the clock, so
time-to-accuracy compares models, not how often they were evaluated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, asdict
from typing import Any, Callable

import torch

from reference_models import RefbenchError, Target, Workload, get_workload


@dataclass
class EvalPoint:
    epoch: float
    step: int
    train_s: float
    train_loss: float
    metrics: dict[str, float]


@dataclass
class ConvergenceResult:
    workload: str
    target: str
    metric: str
    threshold: float
    dataset: str
    recipe: str
    variant: dict[str, Any]
    reached: bool
    best: float
    time_to_target_s: float | None
    epochs_to_target: float | None
    train_s: float
    curve: list[EvalPoint] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """The fields that go into a result record's ``metrics``."""
        return {
            self.metric: self.best, "target_metric": self.metric, "threshold": self.threshold,
            "reached": self.reached, "time_to_target_s": self.time_to_target_s,
            "epochs_to_target": self.epochs_to_target, "train_s": self.train_s,
            "recipe": self.recipe, "curve": [asdict(p) for p in self.curve],
            **({"provenance": self.provenance} if self.provenance else {}),
        }


def converge(workload: Workload, target_name: str, *, device="cpu", data_dir=None, seed: int = 0,
             budget_s: float | None = None, recipe: str | None = None,
             on_eval: Callable[[EvalPoint], None] = lambda p: None) -> ConvergenceResult:
    """Train ``workload`` with its target's recipe until the target is met or the budget ends."""
    if target_name not in workload.targets:
        raise RefbenchError(f"{workload.name} has no target {target_name!r}; targets: {', '.join(workload.targets)}")
    target: Target = workload.targets[target_name]
    recipe_name = recipe or target.recipe
    chosen = workload.recipe(recipe_name)
    budget = budget_s if budget_s is not None else target.budget_s
    device = torch.device(device)

    torch.manual_seed(seed)
    model = workload.make(**target.variant).to(device)
    optimizer = workload.configure_optimizer(model, chosen)
    train = workload.load_data("train", device=device, data_dir=data_dir, dataset=target.dataset)
    evaluation = workload.load_data(target.split, device=device, data_dir=data_dir, dataset=target.dataset)
    generator = torch.Generator().manual_seed(seed)

    curve: list[EvalPoint] = []
    losses: list[torch.Tensor] = []
    clock = {"train_s": 0.0, "since": time.perf_counter()}

    def evaluate(epoch: float, step: int) -> bool:
        """Stop the clock, evaluate, record the point; True once the target is met."""
        clock["train_s"] += time.perf_counter() - clock["since"]
        loss = torch.stack(losses).float().mean().item() if losses else float("nan")
        losses.clear()
        point = EvalPoint(epoch, step, clock["train_s"], loss, workload.evaluate(model, evaluation))
        curve.append(point)
        on_eval(point)
        model.train()
        clock["since"] = time.perf_counter()
        return target.reached(point.metrics[target.metric])

    def out_of_time() -> bool:
        return budget is not None and clock["train_s"] + time.perf_counter() - clock["since"] > budget

    step, done = 0, False
    model.train()
    for epoch in range(target.max_epochs):
        batches = workload.train_batches(train, chosen.batch_size, generator=generator)
        for seen, batch in enumerate(batches, start=1):
            losses.append(workload.train_step(model, batch, optimizer))
            step += 1
            if out_of_time() or (target.eval_every_steps and step % target.eval_every_steps == 0):
                done = evaluate(epoch + min(1.0, seen * chosen.batch_size / len(train)), step) or out_of_time()
                if done:
                    break
        if done:
            break
        if evaluate(epoch + 1, step) or out_of_time():
            break

    values = [p.metrics[target.metric] for p in curve]
    best = (max if target.higher_is_better else min)(values) if values else float("nan")
    reached_at = next((p for p in curve if target.reached(p.metrics[target.metric])), None)
    return ConvergenceResult(
        workload=workload.name, target=target_name, metric=target.metric, threshold=target.threshold,
        dataset=evaluation.dataset, recipe=recipe_name, variant=workload.resolve_variant(**target.variant),
        reached=reached_at is not None, best=best,
        time_to_target_s=reached_at.train_s if reached_at else None,
        epochs_to_target=reached_at.epoch if reached_at else None,
        train_s=clock["train_s"], curve=curve, provenance=workload.provenance(model),
    )


def converge_all(names: list[str], target: str, *, device="cpu", data_dir=None, budget_s=None,
                 recipe=None, out: str | None = None, log=print) -> list[ConvergenceResult]:
    """Converge each workload in turn, print its curve, append a ``converge`` record per workload."""
    from bench.environment import collect_env
    from bench.results import ResultWriter, make_record, new_run_id

    workloads = [get_workload(name) for name in names]  # unknown names fail before any training
    run_id, env = new_run_id(), collect_env()
    writer = ResultWriter(out) if out else None
    results = []
    try:
        for workload in workloads:
            log(f"{workload.name}: training to the {target} target")
            result = converge(workload, target, device=device, data_dir=data_dir, budget_s=budget_s,
                              recipe=recipe, on_eval=lambda p: log(
                                  f"  epoch {p.epoch:5.2f}  step {p.step:6d}  train {p.train_s:7.1f}s  "
                                  f"loss {p.train_loss:.4f}  " + "  ".join(f"{k} {v:.4f}" for k, v in p.metrics.items())))
            goal = f"{result.metric} {'>=' if workload.targets[target].higher_is_better else '<='} {result.threshold}"
            verdict = (f"reached {goal} in {result.time_to_target_s:.1f}s" if result.reached
                       else f"MISSED {goal} (best {result.best:.4f})")
            log(f"{workload.name}: {verdict} on {result.dataset}")
            results.append(result)
            if writer:
                writer.append(make_record(run_id=run_id, env=env, workload=workload.name, variant=result.variant,
                                          backend=str(device), mode="converge", dataset=result.dataset,
                                          batch_size=workload.recipe(result.recipe).batch_size,
                                          status="ok" if result.reached else "failed",
                                          error=None if result.reached else verdict, metrics=result.metrics()))
    finally:
        if writer:
            writer.close()
    return results
