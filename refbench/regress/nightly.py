"""A nightly history judged: the latest night against the nights before it, change points, DIR/index.html.

refbench.run.nightly measures a night and stores it (refbench.regress.history);
this module judges the nights of each machine (``judge_machine``).

Judging the latest night, per cell: ``newly failing`` when the previous
night that measured it was ok and it now fails (status: correctness gate;
a convergence target no longer reached: accuracy gate); ``not measured``
when it has no measurement tonight; else each judged metric gets tonight's
ratio to its level with an interval (refbench.regress.stats) and the same
verdict as in ``compare``: against the look-back window, the ``window``
nights before, when three or more of them measured it (the window's median,
and the night-to-night spread of its values as the uncertainty: conbench's
look-back rule, made robust), else against the previous night, on the two
nights' samples. A busy machine is a note, not a veto.

Over the whole history, each (cell, metric) series gets its change points
(refbench.regress.changepoints); a regression step is *open* while the series' latest
level is still worse than the level before the step by more than the
threshold. The index lists open regressions (first bad night, magnitude,
commit range) and draws one small trend per series with its change points
and their commits.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from refbench.records import analysis
from refbench.regress import history
from refbench.regress.changepoints import MIN_SEGMENT, change_points
from refbench.records.metrics import JUDGED, Metric, heading
from refbench.regress.stats import (FAILING, busy, judge, machine_key, memory_floor, metric_interval, number,
                                    window_interval)
from refbench.regress.gates import DEFAULT_THRESHOLD, GATES, parse_gates
from refbench.errors import EXIT_GATE, EXIT_INCOMPLETE, EXIT_OK, RefbenchError

WINDOW = 7
CLASSES = ("newly failing", "regressed", "improved", "inconclusive", "not measured", "failing", "new", "unchanged")
INCOMPLETE = ("inconclusive", "not measured", "failing")
LATEST = ["class", "cell", "metric", "value", "baseline", "ratio", "low", "high", "by", "note", "gates", "records"]
OPEN = ["cell", "metric", "first bad night", "magnitude", "commits", "nights since"]


@dataclass
class Series:
    cell: str
    metric: Metric
    nights: list[int]        # indices into the machine's nights
    values: list[float]


@dataclass
class MachineVerdict:
    """One machine's history judged: its nights, series, change points, the latest night and open regressions."""

    env_key: str
    nights: list[history.Night]
    series: list[Series]
    changes: dict[tuple[str, str], list] = field(default_factory=dict)
    latest: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LATEST))
    open: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=OPEN))
    notes: list[str] = field(default_factory=list)

    @property
    def failing(self) -> pd.DataFrame:
        return self.latest[self.latest["gates"]]


def judge_machine(nights: Sequence[history.Night], *, threshold: float = DEFAULT_THRESHOLD, window: int = WINDOW,
                  fail_on: Sequence[str] = GATES) -> MachineVerdict:
    """Judge one machine's nights, oldest first (module docstring)."""
    fail_on = parse_gates(fail_on)
    frames = [analysis.latest(n.frame) for n in nights]
    latest_machine = set(machine_key(frames[-1]))
    keep = [i for i, f in enumerate(frames) if set(machine_key(f)) & latest_machine]
    notes = [f"{len(nights) - len(keep)} earlier nights of {nights[-1].env_key} have another GPU driver: not compared"
             ] if len(keep) < len(nights) else []
    nights, frames = [nights[i] for i in keep], [frames[i] for i in keep]
    by_cell = [f.set_index("cell", drop=False) for f in frames]
    verdict = MachineVerdict(nights[-1].env_key, list(nights), _series(by_cell), notes=notes)
    for s in verdict.series:
        verdict.changes[(s.cell, s.metric.name)] = change_points(s.values, threshold=threshold)
    rows = [_judge_cell(row, by_cell, nights[-1].frame, threshold, window, fail_on)
            for row in by_cell[-1].to_dict("records")]
    verdict.latest = pd.DataFrame([r for r in rows if r], columns=LATEST)
    verdict.open = _open(verdict, threshold)
    return verdict


def _series(by_cell: list[pd.DataFrame]) -> list[Series]:
    found: dict[tuple[str, str], Series] = {}
    for i, frame in enumerate(by_cell):
        for row in frame[frame["status"].eq("ok")].to_dict("records"):
            for metric in JUDGED:
                value = row.get(metric.name)
                if _positive(value):
                    s = found.setdefault((row["cell"], metric.name), Series(row["cell"], metric, [], []))
                    s.nights.append(i)
                    s.values.append(float(value))
    return list(found.values())


def _judge_cell(row: dict, by_cell: list[pd.DataFrame], night: pd.DataFrame, threshold: float, window: int,
                fail_on: tuple[str, ...]) -> dict:
    cell = row["cell"]
    records = int(night["cell"].eq(cell).sum())
    earlier = [f.loc[cell] for f in by_cell[:-1] if cell in f.index]
    before = earlier[-1] if earlier else None

    def out(kind, metric=None, value=None, baseline=None, interval=None, note=None, gates=False):
        return {"class": kind, "cell": cell, "metric": metric, "value": value, "baseline": baseline,
                "ratio": interval and interval.ratio, "low": interval and interval.low,
                "high": interval and interval.high, "by": interval and interval.method, "note": note,
                "gates": gates, "records": records}

    if before is None:
        return out("new") if row["status"] in ("ok", "skipped") else out(
            "failing" if row["status"] in FAILING else "not measured", note=row.get("reason"))
    if before["status"] == "ok" and row["status"] in FAILING:
        return out("newly failing", note=f"{row['status']}: {row.get('reason') or ''}".rstrip(": "),
                   gates="correctness" in fail_on)
    if row["status"] == "skipped":
        return out("unchanged", note=f"skipped: {row.get('reason')}")
    if row["status"] != "ok":
        return out("failing" if row["status"] in FAILING else "not measured", note=row.get("reason"))
    if before.get("reached") is True and row.get("reached") is False:
        return out("newly failing", note="convergence target no longer reached", gates="accuracy" in fail_on)
    ok = [r for r in earlier[-window:] if r["status"] == "ok"]
    found = []
    for metric in JUDGED:
        value = row.get(metric.name)
        values = [float(r[metric.name]) for r in ok if _positive(r.get(metric.name))]
        if not _positive(value) or not values:
            continue
        if len(values) >= 3:
            interval, baseline = window_interval(float(value), values), float(np.median(values))
        else:
            interval, baseline = metric_interval(metric, dict(ok[-1]), row), float(ok[-1][metric.name])
        verdict = judge(metric, interval, threshold=threshold, base=baseline, new=float(value),
                        memory_floor=memory_floor(row))
        found.append((metric, verdict, float(value), baseline))
    note = ", ".join(f"{heading(m.name)} {v.change} {v.ratio:.3g}x" for m, v, _, _ in found
                     if v.change != "unchanged") or None
    note = "; ".join(filter(None, [note, busy(row)])) or None
    for change in ("regressed", "improved", "inconclusive"):
        picked = [f for f in found if f[1].change == change and (change == "improved" or f[0].family in fail_on)]
        if picked:
            metric, verdict, value, baseline = picked[0]
            return out(change, metric.name, value, baseline, verdict.interval, note, gates=change == "regressed")
    if not found:
        return out("unchanged", note="no metric measured on earlier nights")
    metric, verdict, value, baseline = found[0]
    return out("unchanged", metric.name, value, baseline, verdict.interval, note)


def _positive(value) -> bool:
    return number(value) and value > 0


def _open(verdict: MachineVerdict, threshold: float) -> pd.DataFrame:
    rows = []
    nights = verdict.nights
    for s in verdict.series:
        values = np.asarray(s.values)
        current = float(np.median(values[-MIN_SEGMENT:]))
        for change in verdict.changes[(s.cell, s.metric.name)]:
            before = float(np.median(values[max(0, change.index - MIN_SEGMENT * 2):change.index]))
            worse = (before / current) if s.metric.higher_is_better else (current / before)
            stepped_worse = (change.ratio < 1) == s.metric.higher_is_better
            if stepped_worse and worse > 1 + threshold:
                first, last_good = nights[s.nights[change.index]], nights[s.nights[change.index - 1]]
                rows.append({"cell": s.cell, "metric": s.metric.name, "first bad night": first.path.stem,
                             "magnitude": change.ratio, "commits": f"{last_good.commit}..{first.commit}",
                             "nights since": len(nights) - 1 - s.nights[change.index]})
    covered = {(r["cell"], r["metric"]) for r in rows}
    if len(nights) >= 2:
        for flag in verdict.latest[verdict.latest["class"].eq("regressed")].to_dict("records"):
            if (flag["cell"], flag["metric"]) not in covered:
                rows.append({"cell": flag["cell"], "metric": flag["metric"], "first bad night": nights[-1].path.stem,
                             "magnitude": flag["ratio"], "commits": f"{nights[-2].commit}..{nights[-1].commit}",
                             "nights since": 0})
    return pd.DataFrame(rows, columns=OPEN)


@dataclass
class NightlyResult:
    stored: list[Path]
    index: Path
    machines: list[MachineVerdict]
    reruns: int = 0
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = {name: 0 for name in CLASSES}
        for m in self.machines:
            for name, count in m.latest["class"].value_counts().items():
                found[name] += int(count)
        return found

    @property
    def exit_code(self) -> int:
        if any(len(m.failing) for m in self.machines):
            return EXIT_GATE
        counts = self.counts()
        return EXIT_INCOMPLETE if any(counts[name] for name in INCOMPLETE) else EXIT_OK

    def summary_line(self) -> str:
        counts = ", ".join(f"{n} {name}" for name, n in self.counts().items())
        failing = sum(len(m.failing) for m in self.machines)
        if self.exit_code == EXIT_GATE:
            return f"REGRESSION: {failing} cells regressed or newly failing ({counts})"
        if self.exit_code == EXIT_INCOMPLETE:
            return f"INCOMPLETE: no gated regression among the cells judged, but not every cell was ({counts})"
        return f"no regression: every cell measured and judged ({counts})"


def judge_history(directory: str | os.PathLike, *, env_keys: Sequence[str] | None = None,
                  **options) -> tuple[list[MachineVerdict], list[str]]:
    """Every machine's history under ``directory`` judged (``env_keys``: only those machines)."""
    found, notes = history.nights(directory)
    verdicts = []
    for env_key in dict.fromkeys(n.env_key for n in found):
        if env_keys is None or env_key in env_keys:
            verdicts.append(judge_machine([n for n in found if n.env_key == env_key], **options))
    return verdicts, notes


def judge_and_write(directory: str | os.PathLike, **options) -> NightlyResult:
    """Judge the history as it is (nothing measured) and write its page."""
    directory = history.check_dir(directory)
    if not history.nights(directory)[0]:
        raise RefbenchError(f"nothing to judge: {directory} holds no nights; run `refbench nightly --history "
                            f"{directory} --workloads ...` first")
    machines, notes = judge_history(directory, **options)
    return NightlyResult([], write_index(directory, machines, notes), machines, notes=notes)


def write_index(directory: Path, machines: list[MachineVerdict], notes: list[str]) -> Path:
    from refbench.regress import page

    return page.write(directory, machines, notes)


def summary_lines(result: NightlyResult) -> list[str]:
    """What a night says in the terminal: where it went, each machine's verdict, and every gating cell."""
    lines = [f"stored {', '.join(map(str, result.stored))}" if result.stored else "measured nothing (--no-run)"]
    if result.reruns:
        lines.append(f"{result.reruns} flagged cells measured once more; a flag stays only when the rerun agrees")
    for m in result.machines:
        counts = m.latest["class"].value_counts()
        lines.append(f"{m.env_key}: night {m.nights[-1].path.stem} of {len(m.nights)}: "
                     + ", ".join(f"{n} {c}" for c, n in counts.items()) + f"; {len(m.open)} open regressions")
        for row in m.failing.to_dict("records"):
            what = (f"{heading(row['metric'])} {row['ratio']:.3f}x ({row['low']:.3f}-{row['high']:.3f}) of its level"
                    if row["metric"] else row["note"])
            again = " (measured twice: the rerun agrees)" if row["records"] > 1 else ""
            lines.append(f"  {row['class']}: {row['cell']}: {what}{again}")
    lines += [f"page: {result.index}", result.summary_line()]
    return lines
