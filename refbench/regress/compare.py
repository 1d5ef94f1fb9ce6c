"""Noise-aware comparison of two result sets: ``refbench compare BASE NEW``.

Cells are matched by refbench.records.analysis.CELL_KEY on the same machine: the same
``env_key`` and, where records name one, the same GPU driver (``env_key``
does not hash the driver). A NEW cell measured on a machine BASE has no
record of is *not comparable*, with what differs (GPU, driver, CUDA, torch),
never a regression.

Each metric a cell has on both sides gets a verdict (``judge``): it changed
only when the ratio of the two values is beyond ``threshold`` *and* the
change is significant on the raw samples: a two-sided Mann-Whitney U test
(scipy.stats) on the step times, or Welch's t-test from their mean, CV and
count where a file keeps no samples (pytest-benchmark without
``--benchmark-save-data``). A metric measured once per run (memory, compile
time, kernel GB/s) has no samples: its ratio alone decides, and memory
changes smaller than ``MEMORY_FLOOR_BYTES`` never count (``RSS_FLOOR_BYTES`` for
a CPU's resident-set growth, which the allocator's state moves by megabytes
from one run to the next).

A cell's class, first match wins: ``newly failing`` (it ran and now does
not: its status, its correctness check, or a convergence target it reached
and now misses), ``unstable`` (the spread of either side's step times is
above ``max_cv``: reported, never flagged), ``regressed`` and ``improved``
(a gated metric changed), ``unchanged``, and ``new`` / ``missing`` for cells
on one side only.

One run's step times cannot see how much a whole run moves from one process
to the next (on a shared machine, often more than the threshold). When each
side holds ``MIN_RUNS`` or more ok records of a cell (runs appended to one
file), the runs are compared instead, as pyperf compares processes: the
ratio of the medians of the runs' values and Welch's t-test on their
logarithms; the spread is then the spread between runs, and a busy machine
is already in it. A cell is unstable too when either side's record says
other processes took the cores it left free, or a hypervisor stole time,
while it was timed (refbench.harness.noise: pyperf's rule, a busy machine's figures
are not compared; ``judge_busy=True`` compares them anyway). The spread is the robust CV of the raw samples
(1.4826 * MAD / median), so one step preempted on a busy machine does not
make a steady cell unstable; the record's CV where it keeps no samples.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from refbench.records import analysis
from refbench.records import benchmark_json
from refbench.records.metrics import BY_NAME, JUDGED, heading
from refbench.regress.gates import ALPHA, DEFAULT_THRESHOLD, GATES, parse_gates
from refbench.regress.stats import (FAILING, MIN_RUNS, TESTS, busy, judge, judge_runs, machine_key, memory_floor,
                                    number, run_spread, sample_stats, spread)
from refbench.report.tables import fmt, render as render_table
from refbench.errors import RefbenchError


CLASSES = ("newly failing", "regressed", "improved", "unstable", "new", "missing", "unchanged")
# What differs between two machines, in the order a reader cares about.
MACHINE_FIELDS = ("gpu", "driver", "cuda", "cudnn", "torch", "triton", "cpu", "threads")


@dataclass
class Comparison:
    rows: pd.DataFrame                      # one row per cell: see ``COLUMNS``
    not_comparable: list[str]               # one line per NEW machine BASE has no record of
    threshold: float
    fail_on: tuple[str, ...]
    alpha: float = ALPHA
    warnings: list[str] = field(default_factory=list)

    @property
    def failing(self) -> pd.DataFrame:
        """The rows that gate: regressed or newly failing in a family of ``fail_on``."""
        return self.rows[self.rows["gates"]]

    @property
    def exit_code(self) -> int:
        return 1 if len(self.failing) else 0


COLUMNS = ["class", "cell", "machine", "metric", "base", "new", "ratio", "p", "test", "spread", "note", "gates"]


def compare_files(base_paths: Sequence[str | os.PathLike], new_paths: Sequence[str | os.PathLike], *,
            threshold: float = DEFAULT_THRESHOLD, alpha: float = ALPHA, max_cv: float = analysis.UNSTABLE_CV,
            fail_on: Sequence[str] = GATES, judge_busy: bool = False) -> Comparison:
    """Compare the latest record of each cell in ``new_paths`` with ``base_paths`` (JSONL or pytest-benchmark)."""
    base, new = benchmark_json.load(base_paths), benchmark_json.load(new_paths)
    result = compare_frames(base.frame, new.frame, threshold=threshold, alpha=alpha, max_cv=max_cv, fail_on=fail_on,
                            judge_busy=judge_busy)
    result.warnings = [*base.skipped, *new.skipped, *base.notes, *new.notes]
    if result.rows.empty and result.not_comparable:
        raise RefbenchError("nothing is comparable: " + "; ".join(result.not_comparable)
                            + "; compare results measured on the same machine and software")
    return result


def compare_frames(base: pd.DataFrame, new: pd.DataFrame, *, threshold: float = DEFAULT_THRESHOLD,
                   alpha: float = ALPHA, max_cv: float = analysis.UNSTABLE_CV,
                   fail_on: Sequence[str] = GATES, judge_busy: bool = False) -> Comparison:
    """``compare`` of two analysis frames (the latest record of each cell on each side is used)."""
    fail_on = parse_gates(fail_on)
    base, new = _with_runs(base), _with_runs(new)
    known = set(base["_machine"])
    strangers = new[~new["_machine"].isin(known)]
    not_comparable = [_difference(base, group.iloc[0], len(group)) for _, group in strangers.groupby("_machine")]
    key = ["_machine", *analysis.CELL_KEY]
    pairs = base[base["_machine"].isin(set(new["_machine"]))].merge(
        new[new["_machine"].isin(known)], on=key, how="outer", suffixes=("_b", "_n"), indicator=True)
    rows = []
    for pair in pairs.to_dict("records"):
        side = {"left_only": "_b", "right_only": "_n"}.get(pair["_merge"])
        if side:
            row = _side(pair, side)
            status = row["status"]
            rows.append(_row("missing" if side == "_b" else "new", row, note=None if status == "ok" else status))
        else:
            rows.append(_pair(pair, threshold, alpha, max_cv, fail_on, judge_busy))
    order = {name: i for i, name in enumerate(CLASSES)}
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.sort_values(["class", "cell"], key=lambda s: s.map(order) if s.name == "class" else s,
                              kind="stable").reset_index(drop=True)
    return Comparison(frame, not_comparable, threshold, fail_on, alpha)


def _with_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The latest record of each cell, with ``_machine`` and ``_runs``: every ok record of the cell on that side."""
    frame = frame.assign(_machine=machine_key(frame))
    ok = frame[frame["status"].eq("ok")]
    runs = {key: group.to_dict("records") for key, group in ok.groupby(["_machine", *analysis.CELL_KEY], dropna=False)}
    latest = analysis.latest(frame)
    keys = latest[["_machine", *analysis.CELL_KEY]].itertuples(index=False, name=None)
    return latest.assign(_runs=[runs.get(key, []) for key in keys])


def _side(pair: dict, suffix: str) -> dict:
    return {k.removesuffix(suffix): v for k, v in pair.items() if not k.endswith("_b" if suffix == "_n" else "_n")}


def _pair(pair: dict, threshold: float, alpha: float, max_cv: float, fail_on: tuple[str, ...],
          judge_busy: bool) -> dict:
    b, n = _side(pair, "_b"), _side(pair, "_n")
    if b["status"] == "ok" and n["status"] in FAILING:
        gate = "correctness"
        return _row("newly failing", n, note=f"{n['status']}: {n.get('reason') or ''}".rstrip(": "),
                    gates=gate in fail_on)
    if n["status"] != "ok":
        still = "still " if b["status"] == n["status"] else f"was {b['status']}, now "
        return _row("unchanged" if b["status"] != "ok" else "missing", n, note=f"{still}{n['status']}")
    if b["status"] != "ok":
        return _row("new", n, note=f"{b['status']} in BASE")
    if b.get("reached") is True and n.get("reached") is False:
        return _row("newly failing", n, note="convergence target no longer reached", gates="accuracy" in fail_on)
    verdicts = {}
    between = []
    for metric in JUDGED:
        runs_b = [float(r[metric.name]) for r in b["_runs"] if number(r.get(metric.name)) and r[metric.name] > 0]
        runs_n = [float(r[metric.name]) for r in n["_runs"] if number(r.get(metric.name)) and r[metric.name] > 0]
        if min(len(runs_b), len(runs_n)) >= MIN_RUNS:
            verdicts[metric.name] = judge_runs(metric, runs_b, runs_n, threshold=threshold, alpha=alpha,
                                               memory_floor=memory_floor(b, n))
            between += [run_spread(runs_b), run_spread(runs_n)] if metric.timed else []
        elif number(b.get(metric.name)) and number(n.get(metric.name)):
            timed = metric.timed
            verdicts[metric.name] = judge(
                metric, float(b[metric.name]), float(n[metric.name]), threshold=threshold, alpha=alpha,
                base_samples=b.get("latency_ms.samples") if timed else None,
                new_samples=n.get("latency_ms.samples") if timed else None,
                base_stats=sample_stats(b) if timed else None, new_stats=sample_stats(n) if timed else None,
                memory_floor=memory_floor(b, n))
    if not verdicts:
        return _row("unchanged", n, note="no metric on both sides")
    worst_spread = max(between) if between else max(spread(b), spread(n))
    disturbed = "" if judge_busy or between else busy(b) or busy(n)
    headline = next(iter(verdicts))
    changed = [(name, v) for name, v in verdicts.items() if v.change != "unchanged"]
    gated = [(name, v) for name, v in changed if BY_NAME[name].family in fail_on]
    note_changed = ", ".join(f"{heading(name)} {v.change} {v.ratio:.3g}x" for name, v in changed)
    if worst_spread > max_cv or disturbed:
        why = disturbed or f"spread {worst_spread:.0%} > {max_cv:.0%}"
        return _row("unstable", n, b, headline, verdicts[headline], worst_spread,
                    note=why + (f"; {note_changed}" if note_changed else ""))
    regressed = [(name, v) for name, v in gated if v.change == "regressed"]
    if regressed:
        name, verdict = regressed[0]
        return _row("regressed", n, b, name, verdict, worst_spread, note=note_changed, gates=True)
    improved = [(name, v) for name, v in changed if v.change == "improved"]
    if improved:
        name, verdict = improved[0]
        return _row("improved", n, b, name, verdict, worst_spread, note=note_changed)
    return _row("unchanged", n, b, headline, verdicts[headline], worst_spread, note=note_changed or None)


def _row(kind: str, row: dict, base: dict | None = None, metric: str | None = None, verdict=None,
         worst_spread: float | None = None, *, note: str | None = None, gates: bool = False) -> dict:
    return {"class": kind, "cell": row["cell"], "machine": row["_machine"], "metric": metric and heading(metric),
            "base": None if base is None or metric is None else float(base[metric]),
            "new": None if metric is None else float(row[metric]),
            "ratio": None if verdict is None else verdict.ratio, "p": None if verdict is None else verdict.p_value,
            "test": None if verdict is None else verdict.test, "spread": worst_spread, "note": note, "gates": gates}


def _difference(base: pd.DataFrame, record: pd.Series, count: int) -> str:
    """Why the ``count`` NEW cells measured on ``record``'s machine are not comparable with BASE."""
    if base["_machine"].nunique() == 1:
        other = base.iloc[0]
        diffs = [f"{name} {_value(other.get('env.' + name))} -> {_value(record.get('env.' + name))}"
                 for name in MACHINE_FIELDS if _value(other.get("env." + name)) != _value(record.get("env." + name))]
        why = ", ".join(diffs) or f"machine {other['_machine']} -> {record['_machine']}"
    else:
        why = f"BASE has no record of machine {record['_machine']}"
    return f"{count} cells of machine {record['_machine']} not comparable ({why})"


def _value(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def render(comparison: Comparison, *, style: str = "text") -> str:
    """The comparison: a verdict line, then a table fit to the terminal, or Markdown fit for a CI comment
    (unchanged cells folded), or CSV."""
    rows = comparison.rows
    counts = rows["class"].value_counts()
    tests = [TESTS[name] for name in TESTS if name in set(rows["test"].dropna())]
    significance = (f"significance p < {comparison.alpha:g} by {', '.join(tests)}" if tests
                    else "no metric was tested")
    summary = (", ".join(f"{counts[c]} {c}" for c in CLASSES if c in counts) or "no cells") + (
        f"; threshold {comparison.threshold:.0%}, {significance}; gates: {','.join(comparison.fail_on)}")
    verdict = (f"{len(comparison.failing)} cells regressed or newly failing" if comparison.exit_code
               else "no regression")
    shown = _display(rows)
    if style == "csv":
        return render_table(shown.to_dict("records"), list(shown.columns), style="csv")
    if style != "markdown":
        table = render_table(shown.to_dict("records"), list(shown.columns)) if len(shown) else "(no cells)"
        return "\n".join([f"{verdict}: {summary}", *comparison.not_comparable, "", table])
    changed, unchanged = shown[rows["class"] != "unchanged"], shown[rows["class"] == "unchanged"]
    out = [f"**refbench compare**: {verdict}", "", summary, ""]
    out += [f"- not comparable: {line}" for line in comparison.not_comparable]
    out += ([""] if comparison.not_comparable else []) + _markdown(changed)
    if len(unchanged):
        out += ["", f"<details><summary>{len(unchanged)} unchanged cells</summary>", "", *_markdown(unchanged),
                "", "</details>"]
    return "\n".join(out)


def _display(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "class": rows["class"], "cell": rows["cell"], "metric": rows["metric"].fillna("-"),
        "base": [fmt(v, ".4g") for v in rows["base"]], "new": [fmt(v, ".4g") for v in rows["new"]],
        "ratio": [fmt(v, ".3f") for v in rows["ratio"]], "p": [fmt(v, ".2g") for v in rows["p"]],
        "spread": [fmt(v, ".1%") for v in rows["spread"]], "note": rows["note"].fillna("")}, index=rows.index)


def _markdown(frame: pd.DataFrame) -> list[str]:
    return render_table(frame.to_dict("records"), list(frame.columns), style="markdown").splitlines() if len(frame) \
        else ["(none)"]
