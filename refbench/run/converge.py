"""``refbench converge``: workloads x variants x backends x seeds, a record per seed, a summary per group.

A group is one workload, variant and backend trained to one target with one
recipe and budget; it runs ``seeds`` seeds (0, 1, ...), each one
``refbench.run.convergence.converge`` run whose record is appended as soon as it
ends. When a group's seeds are done its summary record follows
(refbench.run.parity.group_summary): the mean over the seeds decides the target
(status ``ok`` or ``missed``), and every backend other than its device's
fp32 eager base (``cpu``, ``cuda``) gets a parity verdict against that base
on the same seeds. The base is added to the backends when it is not asked
for, and runs first. ``as_written`` trains each workload's ``as_written=True``
variant beside the fixed default, both with the target's recipe and, where
the workload has one and no ``recipe`` is asked for, both again with the
document's own (``document``): its summaries say what the document's bugs
cost under each (``as_written``), each group labelled with its recipe.

Records: a per-seed record has ``metrics.seed``; a summary record has
``metrics.seeds`` (and no ``seed``); a group that cannot run at all is one
summary record with status ``skipped``. ``resume`` skips the seeds that
already have a finished record in the output file (``timeout``, ``error``
and ``not_run`` are run again) and writes the group's summary again from all
its records; the last summary of a group is the current one.
"""
from __future__ import annotations

import functools
import json
import os
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from refbench.harness import backends
from refbench.run.convergence import budget_of, converge, skip_reason, target_of
from refbench.run.executors import Executor, Lost, Needs
from refbench.run.executors.local import LocalExecutor
from refbench.run.parity import group_summary
from refbench.run.progress import Progress
from refbench.run.runner import RETRY_STATUSES
from refbench.records.schema import make_record, new_run_id
from refbench.records.store import ResultWriter, read_results
from refbench.run.settings import threads_option
from refbench.models import Workload, get_workload
from refbench.errors import RefbenchError

AS_WRITTEN = "as_written"   # the variant option that builds a model as its document wrote it
DOCUMENT = "document"       # the recipe that is the document's own


@dataclass
class Convergence:
    """What ``refbench converge`` is asked to train; ``validate`` checks it all before anything trains."""

    workloads: list[str]                  # names or shell patterns; "all" is every registered workload
    backends: list[str] = field(default_factory=lambda: ["cpu"])
    target: str = "quick"
    recipe: str | None = None             # None: each target's own
    seeds: int = 3
    as_written: bool = False
    max_steps: int | None = None          # replaces the targets' step budgets
    wall_cap_s: float | None = None       # replaces the targets' wall caps
    threads: int | str | None = 1
    data_dir: str | None = None

    def validate(self) -> None:
        for name, value, ok in (("--seeds", self.seeds, isinstance(self.seeds, int) and self.seeds >= 1),
                                ("--max-steps", self.max_steps, self.max_steps is None
                                 or (isinstance(self.max_steps, int) and self.max_steps >= 1)),
                                ("--wall-cap", self.wall_cap_s, self.wall_cap_s is None or self.wall_cap_s > 0)):
            if not ok:
                raise RefbenchError(f"{name} must be positive, got {value!r}")
        if self.threads is not None:
            try:
                threads_option(str(self.threads))
            except Exception:
                raise RefbenchError(f"--threads takes a positive integer or all, got {self.threads!r}") from None
        if self.data_dir is not None and not os.path.isdir(self.data_dir):
            raise RefbenchError(f"--data-dir {self.data_dir} is not a directory; give the folder that holds the data sets")
        if not self.backends:
            raise RefbenchError("no backends given; use --backends cpu,cpu+compile,...")
        for name in self.backends:
            backends.resolve(name)
        for name in self.workload_names():
            workload = get_workload(name)
            target_of(workload, self.target)
            if self.recipe is not None:
                workload.recipe(self.recipe)

    def workload_names(self) -> list[str]:
        """The workloads asked for; with ``as_written``, those that have the variant."""
        from refbench.run.matrix import Matrix

        if not self.workloads:
            raise RefbenchError("no workloads given; use --workloads NAME,... or all")
        names = Matrix(workloads=self.workloads, backends=self.backends).workload_names()
        if not self.as_written:
            return names
        plain = [n for n in self.workloads if n != "all" and not any(c in n for c in "*?[")]
        lacking = [n for n in plain if AS_WRITTEN not in get_workload(n).variants]
        having = [n for n in names if AS_WRITTEN in get_workload(n).variants]
        if lacking or not having:
            raise RefbenchError(f"--as-written: {', '.join(lacking) or 'none of these workloads'} "
                                f"{'has' if len(lacking) == 1 else 'have'} no {AS_WRITTEN} variant; workloads "
                                f"with one: {', '.join(n for n in _all_names() if _has_as_written(n)) or 'none yet'}")
        return having

    def backend_order(self) -> list[str]:
        """The backends asked for, each device's fp32 eager base first (added when not asked for)."""
        order: list[str] = []
        for name in self.backends:
            base = backends.resolve(name).device
            if base not in order:
                order.append(base)
        return order + [name for name in self.backends if name not in order]

    def groups(self, *, cuda_available: bool | None = None, where: str = "this machine") -> list["Group"]:
        """Every group, in the order they train (each device's base first); ``cuda_available`` and ``where``: the
        machines that train them (default: this one)."""
        self.validate()
        groups = []
        for name in self.workload_names():
            workload = get_workload(name)
            target = target_of(workload, self.target, max_steps=self.max_steps, wall_cap_s=self.wall_cap_s)
            variants = [{AS_WRITTEN: False}, {AS_WRITTEN: True}] if self.as_written else [{}]
            for recipe in self._recipes(workload, target.recipe):
                for asked in variants:
                    for name_ in self.backend_order():
                        backend = backends.resolve(name_)
                        skip = skip_reason(workload, backend, cuda_available=cuda_available, where=where)
                        asked_variant = {**target.variant, **asked}
                        variant = workload.resolve_variant(**asked_variant) if skip else \
                            backend.variant_for(workload, asked_variant)
                        groups.append(Group(workload=name, asked=asked, variant=variant, backend=name_,
                                            base=None if name_ == backend.device else backend.device,
                                            recipe=recipe, target=self.target, budget=budget_of(target),
                                            skip=skip))
        return groups

    def _recipes(self, workload: Workload, target_recipe: str) -> list[str]:
        """The recipe asked for, else the target's and, for an as-written comparison, the document's too."""
        if self.recipe is not None:
            return [self.recipe]
        if self.as_written and DOCUMENT in workload.recipes and target_recipe != DOCUMENT:
            return [target_recipe, DOCUMENT]
        return [target_recipe]


def _all_names() -> list[str]:
    from refbench.models import list_models

    return list_models()


def _has_as_written(name: str) -> bool:
    return AS_WRITTEN in get_workload(name).variants


@dataclass(frozen=True)
class Group:
    """One workload, variant and backend trained to one target with one recipe and budget."""

    workload: str
    asked: dict[str, Any]        # the variant options asked for (as_written), before defaults
    variant: dict[str, Any]      # the variant built, defaults filled in
    backend: str
    base: str | None             # the parity base; None: this group is a base
    recipe: str
    target: str
    budget: dict[str, Any]
    skip: str | None = None

    def key(self) -> tuple:
        return (self.workload, json.dumps(self.variant, sort_keys=True), self.backend, self.target, self.recipe,
                json.dumps(self.budget, sort_keys=True))

    def label(self) -> str:
        """workload, "as-written" and the recipe when the variant was asked for, backend."""
        written = f" as-written ({self.recipe})" if self.asked.get(AS_WRITTEN) else \
            f" fixed ({self.recipe})" if AS_WRITTEN in self.asked else ""
        return f"{self.workload}{written} {self.backend}"


def record_key(record: dict[str, Any]) -> tuple:
    """The group key of a ``converge`` record (``Group.key``)."""
    metrics = record.get("metrics") or {}
    return (record["workload"], json.dumps(record.get("variant") or {}, sort_keys=True), record["backend"],
            metrics.get("target"), metrics.get("recipe"), json.dumps(metrics.get("budget"), sort_keys=True))


def run_convergence(request: Convergence, *, out: str | os.PathLike | None = None, resume: bool = False,
                    progress: Progress | None = None, on_summary: Callable[[dict], None] = lambda r: None,
                    executor: Executor | None = None) -> list[dict[str, Any]]:
    """Train every group of ``request`` (module docstring); return the records this call appended.

    ``executor`` (refbench.run.executors; default: this process, a seed at a
    time) trains the seeds, each record carrying the machine that trained it;
    a group's summary follows once its seeds and those of the groups before it
    are in.
    """
    executor = executor or LocalExecutor()
    groups = request.groups(cuda_available=executor.cuda_available(), where=executor.where())
    if resume and out is None:
        raise RefbenchError("--resume needs --out: the file whose finished runs are skipped")
    history = [r for r in read_results(out) if r.get("mode") == "converge"] \
        if resume and out is not None and os.path.exists(out) else []
    session = _Session(request, history, progress or Progress(len(groups) * request.seeds, terminal=False))
    writer = ResultWriter(out) if out is not None else None
    try:
        for record in session.run(groups, executor):
            if writer:
                writer.append(record)
            if "seeds" in record["metrics"]:
                on_summary(record)
    finally:
        if writer:
            writer.close()
        session.progress.close()
    return session.appended


def identity(workload: Workload, group: "Group") -> dict[str, Any]:
    """What every record of the group says, run or not."""
    target = workload.targets[group.target]
    return {"target": group.target, "target_metric": target.metric, "threshold": target.threshold,
            "higher_is_better": target.higher_is_better, "task": workload.task, "recipe": group.recipe,
            "budget": group.budget}


def group_record(workload: Workload, group: "Group", status: str, error: str | None, metrics: dict, *, run_id: str,
                 env: dict, dataset: str | None = None) -> dict:
    return make_record(run_id=run_id, env=env, workload=group.workload, variant=group.variant, backend=group.backend,
                       mode="converge", dataset=dataset, status=status, error=error,
                       batch_size=workload.recipe(group.recipe).batch_size, metrics=metrics)


def train_seed(request: Convergence, group: "Group", seed: int, *, workload: Workload, run_id: str, env: dict,
               on_eval: Callable | None = None) -> dict:
    """Train one seed of ``group`` in this process; its record, whatever happened (a skip, an error, out of
    memory: each a record, and the next seed goes on)."""
    record = functools.partial(group_record, workload, group, run_id=run_id, env=env)
    seeded = {**identity(workload, group), "seed": seed}
    try:
        run = converge(workload, group.target, backend=group.backend, seed=seed, recipe=group.recipe,
                       variant=group.asked, data_dir=request.data_dir, max_steps=request.max_steps,
                       wall_cap_s=request.wall_cap_s, threads=request.threads,
                       on_eval=on_eval or (lambda point: None))
    except backends.SkipCell as exc:
        return record("skipped", str(exc), seeded)
    except RefbenchError as exc:
        return record("error", str(exc), seeded)
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        return record("oom", f"{type(exc).__name__}: {exc}"[:2000], seeded)
    except Exception as exc:  # the run's own failure: a record, and the next run goes on
        from refbench.run.worker import error_tail

        status = "oom" if "can't allocate memory" in str(exc) or "out of memory" in str(exc) else "error"
        return record(status, error_tail(traceback.format_exc()), seeded)
    return make_record(run_id=run_id, env=env, workload=run.workload, variant=run.variant, backend=run.backend,
                       mode="converge", batch_size=run.batch_size, dataset=run.dataset, status=run.status,
                       error=run.error, metrics=run.metrics())


_node_workloads: dict[str, Workload] = {}


def train_on_node(item: tuple["Group", int], *, request: Convergence, run_id: str) -> Iterator[dict]:
    """One seed on the machine a remote executor chose (the executors' protocol: that machine's ``env``, then the
    seed's record); the machine keeps one instance of each workload, as a local call does."""
    from refbench.harness.machine import collect_env
    from refbench.harness.step import set_threads

    group, seed = item
    set_threads(request.threads)
    env = collect_env()
    yield env
    workload = _node_workloads.setdefault(group.workload, get_workload(group.workload))
    yield train_seed(request, group, seed, workload=workload, run_id=run_id, env=env)


class _Session:
    """The records of one ``converge`` call, earlier ones included when resuming."""

    def __init__(self, request: Convergence, history: list[dict], progress: Progress):
        from refbench.harness.machine import collect_env
        from refbench.harness.step import set_threads

        self.request, self.records, self.progress = request, list(history), progress
        self.appended: list[dict] = []
        set_threads(request.threads)   # so the environment records the threads the runs use
        self.run_id, self.env = new_run_id(), collect_env()
        self.workloads: dict[str, Workload] = {}

    def _workload(self, name: str) -> Workload:
        """One instance per workload for the whole call (a GAN caches its untrained generator's FID)."""
        if name not in self.workloads:
            self.workloads[name] = get_workload(name)
        return self.workloads[name]

    def run(self, groups: list[Group], executor: Executor) -> Iterator[dict]:
        """Yield the new records: each seed's as it ends, each group's summary once the groups up to it are done."""
        seeds = list(range(self.request.seeds))
        skips: dict[tuple, str] = {}       # group key -> why the group cannot train
        counted: Counter = Counter()       # progress units given, by group key
        new: Counter = Counter()           # seeds trained by this call, by group key
        runs = []
        for group in groups:
            skip = group.skip or next((r["error"] for r in self._group_records(group, summaries=True)
                                       if r["status"] == "skipped"), None)
            if skip:
                skips[group.key()] = skip
                continue
            for seed in seeds:
                if self._finished(group, seed):
                    self.progress.done(f"{group.label()} seed {seed}: finished earlier (resumed)")
                    counted[group.key()] += 1
                else:
                    runs.append((group, seed))
        remaining = Counter(group.key() for group, _ in runs)
        waiting = list(groups)             # groups whose summary is still to come, in order

        def summaries() -> Iterator[dict]:
            while waiting and not remaining[waiting[0].key()]:
                group = waiting.pop(0)
                key = group.key()
                yield from self._close(group, groups, seeds, skips.get(key), len(seeds) - counted[key], new[key])

        yield from summaries()
        if executor.remote:
            train = functools.partial(train_on_node, request=self.request, run_id=self.run_id)
        else:
            train = functools.partial(self._train_here, skips=skips)
        threads = self.request.threads
        for (group, seed), record in executor.map(
                train, runs, lost=lambda run, lost: self._lost(*run, lost),
                needs=lambda run: Needs(cpus=threads if isinstance(threads, int) else None,
                                        gpus=1 if backends.resolve(run[0].backend).device == "cuda" else 0)):
            key = group.key()
            remaining[key] -= 1
            if record["status"] == "skipped":
                skips.setdefault(key, record["error"])
            else:
                new[key] += 1
                counted[key] += 1
                yield self._keep(record)
                self.progress.done(_seed_line(group, record))
            yield from summaries()

    def _train_here(self, run: tuple[Group, int], *, skips: dict[tuple, str]) -> Iterator[dict]:
        """A seed in this process (the executors' protocol); a group found skipped trains no further seed."""
        group, seed = run
        yield self.env
        workload = self._workload(group.workload)
        if group.key() in skips:
            yield self._record(group, "skipped", skips[group.key()], {**identity(workload, group), "seed": seed})
            return
        yield train_seed(self.request, group, seed, workload=workload, run_id=self.run_id, env=self.env,
                         on_eval=lambda p: self.progress.note(
                             f"{group.label()} seed {seed}: step {p.step}, "
                             + ", ".join(f"{k} {v:.4f}" for k, v in list(p.metrics.items())[:1])))

    def _lost(self, group: Group, seed: int, lost: Lost) -> dict:
        """The record of a seed a remote executor lost (its worker killed, its node lost)."""
        return group_record(self._workload(group.workload), group, lost.status, lost.error,
                            {**identity(self._workload(group.workload), group), "seed": seed}, run_id=self.run_id,
                            env=lost.env or self.env)

    def _close(self, group: Group, groups: list[Group], seeds: list[int], skip: str | None, left: int,
               new: int) -> Iterator[dict]:
        """The group's summary: a skipped one (once) when it cannot train, else its verdict when this call trained
        a seed of it or none was written before."""
        if skip:
            self.progress.done(f"{group.label()}: skipped ({skip})", units=left)
            if not any(r["status"] == "skipped" for r in self._group_records(group, summaries=True)):
                yield self._keep(self._record(group, "skipped", skip, {**identity(self._workload(group.workload),
                                                                                  group), "seeds": {"asked": seeds}}))
            return
        if new or not self._group_records(group, summaries=True):
            yield self._keep(self._summary(group, groups, seeds))

    # ----- the group's summary -----

    def _summary(self, group: Group, groups: list[Group], seeds: list[int]) -> dict:
        runs = self._seed_records(group, seeds)
        base = next((g for g in groups if g.base is None and g.workload == group.workload
                     and g.asked == group.asked and g.recipe == group.recipe and g.backend == group.base), None)
        fixed = next((g for g in groups if g.workload == group.workload and g.backend == group.backend
                      and g.recipe == group.recipe and g.asked.get(AS_WRITTEN) is False), None) \
            if group.asked.get(AS_WRITTEN) else None
        status, error, metrics = group_summary(
            runs, base=group.base, base_records=self._seed_records(base, seeds) if base else [],
            fixed_records=self._seed_records(fixed, seeds) if fixed else None)
        dataset = next((r["dataset"] for r in runs if r["dataset"]), None)
        machines = {r["env"].get("env_key"): r["env"] for r in runs}
        env = next(iter(machines.values())) if len(machines) == 1 else self.env
        record = self._record(group, status, error, metrics, dataset=dataset, env=env)
        self.progress.done(_summary_line(group, record), units=0)
        return record

    def _seed_records(self, group: Group, seeds: list[int]) -> list[dict]:
        """The latest record of each seed of ``group``."""
        latest = {r["metrics"]["seed"]: r for r in self._group_records(group) if r["metrics"]["seed"] in seeds}
        return [latest[s] for s in sorted(latest)]

    def _group_records(self, group: Group, *, summaries: bool = False) -> list[dict]:
        key = group.key()
        return [r for r in self.records if record_key(r) == key and ("seeds" in r["metrics"]) == summaries]

    def _finished(self, group: Group, seed: int) -> bool:
        return any(r["metrics"]["seed"] == seed and r["status"] not in RETRY_STATUSES
                   for r in self._group_records(group))

    def _record(self, group: Group, status: str, error: str | None, metrics: dict, *, dataset=None,
                env: dict | None = None) -> dict:
        return group_record(self._workload(group.workload), group, status, error, metrics, run_id=self.run_id,
                            env=env or self.env, dataset=dataset)

    def _keep(self, record: dict) -> dict:
        self.records.append(record)
        self.appended.append(record)
        return record


def _seed_line(group: Group, record: dict) -> str:
    m = record["metrics"]
    if record["status"] not in ("ok", "timeout"):
        return f"{group.label()} seed {m['seed']}: {record['status']} ({(record['error'] or '').splitlines()[0][:160]})"
    reached = (f"target reached after {m['time_to_target_s']:.1f} s of training" if m["reached"]
               else "target not reached")
    final = "NaN" if m["final"] is None else f"{m['final']:.4f}"
    line = (f"{group.label()} seed {m['seed']}: {m['target_metric']} {final} after {m['steps']} steps, {reached}; "
            f"train {m['train_s']:.1f} s (first step {m['first_step_s']:.1f} s), eval {m['eval_s']:.1f} s")
    return line + (f"; {record['status']}: {record['error']}" if record["status"] != "ok" else "")


def _summary_line(group: Group, record: dict) -> str:
    m = record["metrics"]
    seeds = m["seeds"]
    if seeds.get("mean") is None:
        text = f"{group.label()}: {record['status']}"
    else:
        text = (f"{group.label()}: {m['target_metric']} mean {seeds['mean']:.4f} ± {seeds['std']:.4f} "
                f"(min {seeds['min']:.4f}) over {seeds['n']} seeds -> {record['status']}")
    parity = m.get("parity")
    if parity and parity.get("ok") is not None:
        text += (f"; parity with {parity['base']}: {parity['delta']:+.4f} (margin {parity['margin']:.4f}) "
                 f"{'ok' if parity['ok'] else 'MISSED'}" + (f", FLAG: {parity['flag']}" if parity.get("flag") else ""))
    if record["error"] and record["status"] != "missed":
        text += f" ({record['error'].splitlines()[0][:160]})"
    return text
