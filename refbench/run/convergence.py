"""One seed's training run to a target, through the same Step as ``refbench run``.

``converge`` prepares the workload's train step on a backend
(refbench.harness.step.prepare: every backend and composition, ``cpu+compile``,
``cuda+amp-bf16+compile``, ``triton``, ...) and trains it on real data with
the target's recipe for the target's budget: ``max_epochs`` epochs, or
``max_steps`` optimizer steps when that comes first. A target with
``stop_at_target`` (the full ones) ends at the first evaluation that meets
its threshold, so what a run costs is its time to the target; the curve up to
there is kept and the record says it stopped (``stopped_at_target``). Without
it a run trains the whole budget: every backend and seed trains the same
steps, so their final metrics compare (refbench.run.parity). Either way the
mean over seeds of the final metric decides the target.

- The held-out split is evaluated every ``eval_every_steps`` steps, at the end
  of every epoch and after the last step. The training clock stops while it
  is: ``train_s`` and ``time_to_target_s`` (the training time at the first
  evaluation that meets the threshold) count training only, ``eval_s`` the
  evaluations. ``train_s`` includes the first step, which pays for
  compilation (``first_step_s``), and a CUDA graph's capture, whose warm-up
  steps train on the first batch (``capture_s``).
- Evaluation is the workload's own ``evaluate`` on the step's model, in fp32
  without autocast: one judge for every backend. The model keeps what the
  backend did to it (channels-last, Triton kernels).
- The last, partial batch of an epoch is dropped on every backend: a compiled
  step would be recompiled for its shape inside the timed training, and a
  captured CUDA graph replays one shape. Every backend sees the same batches
  (``dropped_batches`` counts them).
- Data lives on the step's device when it fits (the image sets do: all of
  Fashion-MNIST is 220 MB), so a GPU's time to accuracy measures the model,
  not the loader. A training split over ``resident_fraction`` of the free
  device memory stays on the host and a DataLoader pins its batches for the
  copy; the evaluation split is always on the device.
- ``wall_cap_s`` is no budget: checked between steps, it ends a run that hangs
  or crawls, which is then recorded as ``timeout`` with its curve so far.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch.utils._pytree import tree_flatten, tree_map

from refbench.harness import backends
from refbench.harness.step import Step, prepare
from refbench.models import Recipe, Target, Workload, get_workload
from refbench.errors import RefbenchError

RESIDENT_FRACTION = 0.25   # of the device's free memory a training split may take


@dataclass
class EvalPoint:
    epoch: float
    step: int
    train_s: float
    train_loss: float
    metrics: dict[str, float]


@dataclass
class SeedRun:
    """One seed's run: its curve, its final metric and what it cost."""

    workload: str
    task: str
    backend: str
    target: str
    metric: str
    threshold: float
    higher_is_better: bool
    seed: int
    recipe: str
    recipe_settings: dict[str, Any]
    budget: dict[str, Any]
    variant: dict[str, Any]
    dataset: str
    batch_size: int
    curve: list[EvalPoint] = field(default_factory=list)
    steps: int = 0
    dropped_batches: int = 0
    train_s: float = 0.0
    eval_s: float = 0.0
    setup_s: float = 0.0
    wall_s: float = 0.0
    first_step_s: float = 0.0
    capture_s: float = 0.0
    wall_cap_s: float | None = None
    capped: bool = False
    stopped_at_target: bool = False
    data_resident: bool = True
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> float:
        return self.curve[-1].metrics[self.metric] if self.curve else float("nan")

    @property
    def best(self) -> float:
        values = [p.metrics[self.metric] for p in self.curve]
        return (max if self.higher_is_better else min)(values) if values else float("nan")

    @property
    def reached_at(self) -> EvalPoint | None:
        goal = Target(self.metric, self.threshold, higher_is_better=self.higher_is_better)
        return next((p for p in self.curve if goal.reached(p.metrics[self.metric])), None)

    @property
    def reached(self) -> bool:
        return self.reached_at is not None

    @property
    def time_to_target_s(self) -> float | None:
        return self.reached_at.train_s if self.reached_at else None

    @property
    def epochs_to_target(self) -> float | None:
        return self.reached_at.epoch if self.reached_at else None

    @property
    def status(self) -> str:
        return "timeout" if self.capped else "ok"

    @property
    def error(self) -> str | None:
        if not self.capped:
            return None
        return (f"stopped by the wall cap of {self.wall_cap_s:g} s after {self.steps} steps (a guard against "
                f"hangs; the budget is {_describe_budget(self.budget)}); raise it with --wall-cap")

    def metrics(self) -> dict[str, Any]:
        """A ``converge`` record's metrics (one seed)."""
        reached_at = self.reached_at
        return {
            self.metric: _finite(self.final), "final": _finite(self.final), "best": _finite(self.best),
            "target": self.target, "target_metric": self.metric, "threshold": self.threshold,
            "higher_is_better": self.higher_is_better, "task": self.task,
            "reached": reached_at is not None,
            "stopped_at_target": self.stopped_at_target,
            "time_to_target_s": reached_at.train_s if reached_at else None,
            "epochs_to_target": reached_at.epoch if reached_at else None,
            "steps_to_target": reached_at.step if reached_at else None,
            "seed": self.seed, "recipe": self.recipe, "recipe_settings": self.recipe_settings,
            "budget": self.budget, "steps": self.steps, "dropped_batches": self.dropped_batches,
            "train_s": self.train_s, "steady_train_s": self.train_s - self.first_step_s,
            "eval_s": self.eval_s, "setup_s": self.setup_s, "wall_s": self.wall_s,
            "first_step_s": self.first_step_s, "capture_s": self.capture_s, "wall_cap_s": self.wall_cap_s,
            "data_resident": self.data_resident, "threads": torch.get_num_threads(),
            "curve": [asdict(p) for p in self.curve],
            **({"backend_notes": self.notes} if self.notes else {}),
            **({"provenance": self.provenance} if self.provenance else {}),
        }


def target_of(workload: Workload, name: str, **changes: Any) -> Target:
    """``workload``'s target ``name``, with the fields in ``changes`` that are not None replaced."""
    if name not in workload.targets:
        raise RefbenchError(f"{workload.name} has no target {name!r}; targets: {', '.join(workload.targets)}")
    changes = {key: value for key, value in changes.items() if value is not None}
    try:
        return dataclasses.replace(workload.targets[name], **changes)
    except ValueError as exc:
        raise RefbenchError(str(exc)) from None


def budget_of(target: Target) -> dict[str, Any]:
    """What a record says about a target's budget: epochs, steps, and whether it ends at the threshold."""
    return {"max_epochs": target.max_epochs, "max_steps": target.max_steps, "stop_at_target": target.stop_at_target}


def skip_reason(workload: Workload, backend: backends.Backend, *, cuda_available: bool | None = None,
                where: str = "this machine") -> str | None:
    """Why ``backend`` cannot train ``workload`` to a target; None if it can (``cuda_available`` and ``where``:
    the machines that train, as ``Backend.skip_reason``'s).

    A workload with no torch step to time (a scikit-learn search) still
    trains, but only on the plain CPU: no backend has anything to change in it.
    """
    if workload.untimed_reason:
        if backend.device == "cpu" and not backend.modifiers:
            return None
        return f"{workload.name} trains outside torch ({workload.untimed_reason}); it converges on cpu only"
    return backend.skip_reason(workload, "train", cuda_available=cuda_available, where=where)


def converge(workload: Workload | str, target: str = "quick", *, backend: backends.Backend | str = "cpu",
             seed: int = 0, recipe: str | Recipe | None = None, variant: dict[str, Any] | None = None,
             data_dir=None, max_epochs: int | None = None, max_steps: int | None = None,
             eval_every_steps: int | None = None, wall_cap_s: float | None = None,
             threads: int | str | None = 1, resident_fraction: float = RESIDENT_FRACTION,
             on_eval: Callable[[EvalPoint], None] = lambda point: None) -> SeedRun:
    """Train ``workload`` to ``target`` on ``backend`` with ``seed`` (module docstring).

    ``recipe`` (a name or a Recipe; default: the target's) and the budget
    arguments replace the target's own when given; ``variant`` is merged over
    the target's. A backend that cannot run it raises ``backends.SkipCell``.
    """
    workload = get_workload(workload) if isinstance(workload, str) else workload
    backend = backends.resolve(backend) if isinstance(backend, str) else backend
    goal = target_of(workload, target, max_epochs=max_epochs, max_steps=max_steps,
                     eval_every_steps=eval_every_steps, wall_cap_s=wall_cap_s)
    recipe = recipe or goal.recipe
    chosen = recipe if isinstance(recipe, Recipe) else workload.recipe(recipe)
    reason = skip_reason(workload, backend)
    if reason:
        raise backends.SkipCell(reason)

    started = time.perf_counter()
    device = torch.device(backend.device)
    inputs = recipe_inputs(chosen)
    train = workload.load_data("train", device="cpu", data_dir=data_dir, dataset=goal.dataset, **inputs)
    resident = fits(train, device, resident_fraction)
    if resident:
        train = train.to(device) if device.type != "cpu" else train
    evaluation = workload.load_data(goal.split, device=device, data_dir=data_dir, dataset=goal.dataset, **inputs)
    run = SeedRun(
        workload=workload.name, task=workload.task, backend=backend.name, target=target, metric=goal.metric,
        threshold=goal.threshold, higher_is_better=goal.higher_is_better, seed=seed,
        recipe=recipe if isinstance(recipe, str) else _recipe_name(workload, chosen), recipe_settings=asdict(chosen),
        budget=budget_of(goal), variant={},
        dataset=train.dataset, batch_size=chosen.batch_size, wall_cap_s=goal.wall_cap_s, data_resident=resident)
    generator = torch.Generator().manual_seed(seed)
    batches = _training_batches(workload, train, chosen, generator, device, resident,
                                goal.max_epochs, run)
    trainer = None
    for epoch, seen, batch, end_of_epoch in batches:
        if trainer is None:
            step = prepare(workload, backend, "train", chosen.batch_size, variant={**goal.variant, **(variant or {})},
                           batch=batch, recipe=chosen, seed=seed, threads=threads, keep_reference_state=False)
            run.variant, run.notes, run.provenance = step.variant, step.notes, step.provenance
            run.setup_s = time.perf_counter() - started
            trainer = _Trainer(step, workload, evaluation, goal, run, on_eval)
        else:
            trainer.step.feed(batch)
        trainer.train_one(first=run.steps == 0)
        run.capped = goal.wall_cap_s is not None and time.perf_counter() - started > goal.wall_cap_s
        last = run.capped or (goal.max_steps is not None and run.steps >= goal.max_steps)
        every = goal.eval_every_steps and run.steps % goal.eval_every_steps == 0
        if last or end_of_epoch or every:
            trainer.evaluate(epoch + (1.0 if end_of_epoch else seen * chosen.batch_size / len(train)))
            run.stopped_at_target = goal.stop_at_target and goal.reached(run.curve[-1].metrics[goal.metric])
        if last or run.stopped_at_target:
            break
    if trainer is None:
        raise RefbenchError(f"{workload.name}: no full batch of {chosen.batch_size} in the training split "
                            f"of {train.dataset}; use a recipe with a smaller batch")
    run.wall_s = time.perf_counter() - started
    return run


class _Trainer:
    """Steps and evaluations of one run, with the training clock that evaluations stop."""

    def __init__(self, step: Step, workload: Workload, evaluation, goal: Target, run: SeedRun,
                 on_eval: Callable[[EvalPoint], None]):
        self.step, self.workload, self.evaluation, self.goal, self.run, self.on_eval = \
            step, workload, evaluation, goal, run, on_eval
        self.loss_sum, self.losses = None, 0
        self.since = time.perf_counter()

    def train_one(self, *, first: bool) -> None:
        if first:
            self.run.capture_s = self.step.capture()
        loss = self.step()
        if first:
            _synchronize(self.step.device)
            self.run.first_step_s = time.perf_counter() - self.since - self.run.capture_s
        if isinstance(loss, torch.Tensor):   # summed on the device: no host sync per step
            loss = loss.detach().float()      # a captured graph's output: the same tensor every step
            self.loss_sum = loss.clone() if self.loss_sum is None else self.loss_sum.add_(loss)
            self.losses += 1
        self.run.steps += 1

    def evaluate(self, epoch: float) -> None:
        _synchronize(self.step.device)
        paused = time.perf_counter()
        self.run.train_s += paused - self.since
        loss = self.loss_sum.item() / self.losses if self.losses else float("nan")
        self.loss_sum, self.losses = None, 0
        metrics = self.workload.evaluate(self.step.model, self.evaluation)
        point = EvalPoint(epoch, self.run.steps, self.run.train_s, loss, metrics)
        self.run.curve.append(point)
        self.on_eval(point)
        self.since = time.perf_counter()
        self.run.eval_s += self.since - paused


def fits(split, device: torch.device, fraction: float) -> bool:
    """Whether ``split``'s tensors take at most ``fraction`` of ``device``'s free memory.

    On the CPU a split is where it was loaded, resident for any positive
    ``fraction``; 0 sends it through the host loader (what tests use).
    """
    if device.type == "cpu":
        return fraction > 0
    size = sum(t.numel() * t.element_size() for t in tree_flatten(vars(split))[0] if isinstance(t, torch.Tensor))
    free, _ = torch.cuda.mem_get_info(device)
    return size <= fraction * free


def recipe_inputs(recipe: Recipe) -> dict[str, Any]:
    """What a recipe says about its inputs (normalisation), for ``load_data``; nothing when it says nothing."""
    return {} if recipe.normalize is None else {"normalize": recipe.normalize}


def _training_batches(workload: Workload, split, recipe: Recipe, generator: torch.Generator,
                      device: torch.device, resident: bool, epochs: int, run: SeedRun
                      ) -> Iterator[tuple[int, int, Any, bool]]:
    """(epoch, batches seen in it, batch, last of its epoch) for ``epochs`` epochs, partial batches dropped;
    the recipe's augmentation applied where it names one."""
    batch_size = recipe.batch_size
    augment = {} if recipe.augment is None else {"augment": recipe.augment}
    for epoch in range(epochs):
        source = workload.train_batches(split, batch_size, generator=generator, **augment)
        if not resident:
            source = _host_loader(source, device)
        pending, seen = None, 0
        for batch in source:
            if _rows(batch) < batch_size:
                run.dropped_batches += 1
                continue
            if pending is not None:
                yield epoch, seen, pending, False
            pending, seen = batch, seen + 1
        if pending is not None:
            yield epoch, seen, pending, True


def _rows(batch: Any) -> int:
    """The batch's sample count: the leading size of its first tensor."""
    tensors = [t for t in tree_flatten(batch)[0] if isinstance(t, torch.Tensor)]
    return len(tensors[0]) if tensors and tensors[0].dim() else 0


def _host_loader(source: Iterator[Any], device: torch.device) -> Iterator[Any]:
    """Batches of a host-resident split through a DataLoader that pins them, copied to ``device``."""
    from torch.utils.data import DataLoader, IterableDataset

    class Batches(IterableDataset):
        def __iter__(self):
            return source

    loader = DataLoader(Batches(), batch_size=None, pin_memory=device.type == "cuda")
    for batch in loader:
        yield tree_map(lambda t: t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t, batch)


def _recipe_name(workload: Workload, recipe: Recipe) -> str:
    return next((name for name, known in workload.recipes.items() if known == recipe), "custom")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _finite(value: float) -> float | None:
    """JSON has no NaN: a diverged metric is None."""
    return value if value == value and abs(value) != float("inf") else None


def _describe_budget(budget: dict[str, Any]) -> str:
    epochs = f"{budget['max_epochs']} epoch{'s' if budget['max_epochs'] != 1 else ''}"
    return epochs if budget.get("max_steps") is None else f"{budget['max_steps']} steps or {epochs}"
