"""Seeds and parity: what the per-seed ``converge`` records of a group add up to.

Everything here is a function of recorded runs (their curves), so a
summary or a parity verdict can be recomputed from a results file.

- ``seed_summary``: a target is met only when the mean over the seeds of the
  final metric (the last point of each curve: at the end of the same budget,
  or where a target that stops at its threshold stopped) meets it, as
  MLPerf's multiple runs and airbench's mean over n runs ask; the summary
  gives n, mean, std (sample), min and max.
- ``parity``: a backend's mean against the fp32 eager base of the same
  device (``cpu`` on CPU, ``cuda`` on GPU) on the seeds both ran, within the
  margin ``MARGINS`` states for the metric. A backend whose steady training
  is faster than the base's but misses parity is flagged.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from refbench.errors import RefbenchError


@dataclass(frozen=True)
class Margin:
    """How far a backend's mean may fall behind the base's: ``size`` in the metric's units, or times the base's mean."""

    relative: bool
    size: float

    def of(self, base_mean: float) -> float:
        return self.size * abs(base_mean) if self.relative else self.size

    def describe(self) -> str:
        return f"{self.size:.1%} of the base" if self.relative else f"{self.size * 100:g} points"


# The one table of parity margins: (task, target metric) -> margin; task None matches any task.
MARGINS: dict[tuple[str | None, str], Margin] = {
    (None, "accuracy"): Margin(relative=False, size=0.005),               # classifiers: 0.5 points
    ("token-classification", "accuracy"): Margin(relative=True, size=0.005),  # token accuracy
    (None, "token_accuracy"): Margin(relative=True, size=0.005),
    (None, "sequence_accuracy"): Margin(relative=True, size=0.02),       # exact match: all or nothing per sequence
    (None, "fid_fmnist_ratio"): Margin(relative=True, size=0.10),        # a Frechet distance of 10,000 samples
}


def margin_for(task: str | None, metric: str) -> Margin:
    margin = MARGINS.get((task, metric)) or MARGINS.get((None, metric))
    if margin is None:
        raise RefbenchError(f"no parity margin for the metric {metric!r} (task {task}); add one to refbench.run.parity.MARGINS")
    return margin


def seed_final(record: dict[str, Any]) -> float:
    """A per-seed record's final metric: the last point of its curve (NaN when it has none or diverged)."""
    metrics = record["metrics"]
    curve = metrics.get("curve") or []
    value = curve[-1]["metrics"].get(metrics["target_metric"]) if curve else None
    return float("nan") if value is None else float(value)


def seed_summary(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """n, mean, std, min, max of the final metric over the seeds' records, and their times to target."""
    records = sorted(records, key=lambda r: r["metrics"]["seed"])
    values = [seed_final(r) for r in records]
    times = [r["metrics"].get("time_to_target_s") for r in records]
    reached = [t for t in times if t is not None]
    finite = all(math.isfinite(v) for v in values)
    return {
        "n": len(values), "seeds": [r["metrics"]["seed"] for r in records],
        "values": [v if math.isfinite(v) else None for v in values],
        "mean": statistics.fmean(values) if finite and values else None,
        "std": (statistics.stdev(values) if len(values) > 1 else 0.0) if finite and values else None,
        "min": min(values) if finite and values else None,
        "max": max(values) if finite and values else None,
        "reached": len(reached),
        "time_to_target_s": times,
    }


def _mean(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r["metrics"].get(key) for r in records]
    return statistics.fmean(values) if values and None not in values else None


def parity(records: list[dict[str, Any]], base_records: list[dict[str, Any]], *, base: str) -> dict[str, Any]:
    """This group's seeds against the base's on the seeds both ran (module docstring)."""
    first = records[0]["metrics"]
    margin = margin_for(first.get("task"), first["target_metric"])
    mine = {r["metrics"]["seed"]: r for r in records}
    theirs = {r["metrics"]["seed"]: r for r in base_records}
    common = sorted(set(mine) & set(theirs))
    verdict: dict[str, Any] = {"base": base, "seeds": common, "margin_rule": margin.describe()}
    if not common:
        return {**verdict, "ok": None, "note": f"{base} has no finished run on these seeds"}
    ours, base_runs = [mine[s] for s in common], [theirs[s] for s in common]
    mean, base_mean = seed_summary(ours)["mean"], seed_summary(base_runs)["mean"]
    steady, base_steady = _mean(ours, "steady_train_s"), _mean(base_runs, "steady_train_s")
    speedup = base_steady / steady if steady and base_steady else None
    verdict.update(mean=mean, base_mean=base_mean, speedup=speedup, faster=bool(speedup and speedup > 1))
    if mean is None or base_mean is None:
        return {**verdict, "ok": False if base_mean is not None else None, "delta": None, "margin": None,
                "flag": None, "note": "a run diverged (NaN)"}
    sign = 1 if first.get("higher_is_better", True) else -1
    delta = sign * (mean - base_mean)           # positive: better than the base
    allowed = margin.of(base_mean)
    ok = delta >= -allowed
    flag = f"faster than {base} ({speedup:.2f}x) but misses parity" if verdict["faster"] and not ok else None
    return {**verdict, "delta": delta, "margin": allowed, "ok": ok, "flag": flag}


def versus_fixed(records: list[dict[str, Any]], fixed_records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the document's bugs cost: the as-written group's mean and time to target beside the fixed one's."""
    mine, fixed = seed_summary(records), seed_summary(fixed_records)
    sign = 1 if records[0]["metrics"].get("higher_is_better", True) else -1

    def time_to_target(summary):
        times = summary["time_to_target_s"]
        return statistics.fmean(times) if times and None not in times else None

    return {
        "mean": mine["mean"], "fixed_mean": fixed["mean"],
        "delta": None if None in (mine["mean"], fixed["mean"]) else sign * (mine["mean"] - fixed["mean"]),
        "time_to_target_s": time_to_target(mine), "fixed_time_to_target_s": time_to_target(fixed),
        "reached": mine["reached"], "fixed_reached": fixed["reached"], "seeds": mine["seeds"],
    }


def group_summary(records: list[dict[str, Any]], *, base: str | None = None,
                  base_records: list[dict[str, Any]] = (),
                  fixed_records: list[dict[str, Any]] | None = None) -> tuple[str, str | None, dict[str, Any]]:
    """(status, error, metrics) of the summary record of one group's per-seed records.

    The status is ``ok`` when the mean over the seeds meets the target and
    ``missed`` when it does not; a seed that did not finish its budget (its
    status is not ok) gives the group that seed's status and error. ``base``
    names the parity base (None: this group is the base); ``fixed_records``
    are the fixed variant's, for an as-written group.
    """
    records = sorted(records, key=lambda r: r["metrics"]["seed"])
    first = records[0]["metrics"]
    finished = [r for r in records if r["status"] == "ok"]
    summary = seed_summary(finished)
    metrics: dict[str, Any] = {key: first.get(key) for key in (
        "target", "target_metric", "threshold", "higher_is_better", "task", "recipe", "budget")}
    if isinstance(first.get("recipe_settings"), dict):   # a seed that failed before training has none
        metrics["recipe_settings"] = first["recipe_settings"]
    metrics["seeds"] = {**summary, "asked": [r["metrics"]["seed"] for r in records]}
    for key in ("train_s", "steady_train_s", "eval_s", "wall_s", "first_step_s"):
        metrics[key] = _mean(finished, key)
    times = [t for t in summary["time_to_target_s"] if t is not None]
    metrics["time_to_target_s"] = statistics.fmean(times) if times else None
    steps = [r["metrics"].get("steps_to_target") for r in finished if r["metrics"].get("steps_to_target") is not None]
    metrics["steps_to_target"] = statistics.fmean(steps) if steps else None   # what load cannot change
    mean, threshold = summary["mean"], first.get("threshold")
    met = mean is not None and (mean >= threshold if first.get("higher_is_better", True) else mean <= threshold)
    metrics["reached"] = met
    if finished and base is not None:
        metrics["parity"] = parity(finished, [r for r in base_records if r["status"] == "ok"], base=base)
    if finished and fixed_records:
        metrics["as_written"] = versus_fixed(finished, [r for r in fixed_records if r["status"] == "ok"])
    unfinished = [r for r in records if r["status"] != "ok"]
    if unfinished:
        worst = unfinished[0]
        return worst["status"], f"seed {worst['metrics']['seed']}: {worst['error']}", metrics
    if met:
        return "ok", None, metrics
    goal = f"{first['target_metric']} {'>=' if first.get('higher_is_better', True) else '<='} {threshold}"
    said = "a seed diverged" if mean is None else f"the mean over {summary['n']} seeds is {mean:.4f}"
    return "missed", f"missed {goal}: {said} ({summary['reached']} of {summary['n']} seeds crossed it)", metrics
