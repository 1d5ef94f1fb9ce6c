"""Noise-aware comparison of two result sets: ``refbench compare BASE NEW``.

Cells are matched by refbench.records.analysis.CELL_KEY on the same machine: the same
``env_key`` and, where records name one, the same GPU driver (``env_key``
does not hash the driver). A NEW cell measured on a machine BASE has no
record of is *not comparable*, with what differs (GPU, driver, CUDA, torch),
never a regression.

Each judged metric a cell has on both sides gets its ratio new/base with a
confidence interval and a verdict (refbench.regress.stats): regressed or
improved when the whole interval lies beyond the threshold, unchanged when
it lies within it, inconclusive when it straddles it. With ``MIN_RUNS`` or
more ok records of a cell on each side (runs appended to one file), the
runs themselves are compared, as pyperf compares processes. A busy machine
is information in the row's note, not a veto: the interval already carries
the noise it caused.

A cell's class, first match wins: ``newly failing`` (it ran and now does
not: its status, its correctness check, or a convergence target it reached
and now misses), ``regressed`` (a gated metric's interval lies beyond the
threshold), ``improved``, ``inconclusive`` (a gated metric's interval
straddles the threshold), ``unchanged``; ``not measured`` for a NEW cell
that has no measurement (it failed before, timed out, was never run) or a
BASE cell NEW lacks; ``new`` for a cell BASE lacks. The exit status is
EXIT_GATE when a gating row fires, else EXIT_INCOMPLETE when a cell was not
measured or could not be judged, else EXIT_OK (refbench.errors).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from refbench.errors import EXIT_GATE, EXIT_INCOMPLETE, EXIT_OK, RefbenchError
from refbench.records import analysis, benchmark_json
from refbench.records.metrics import BY_NAME, JUDGED, heading
from refbench.regress.gates import ALPHA, DEFAULT_THRESHOLD, GATES, parse_gates
from refbench.regress.stats import FAILING, METHODS, busy, judge, machine_key, memory_floor, metric_interval, number
from refbench.report.tables import fmt, render as render_table

CLASSES = ("newly failing", "regressed", "improved", "inconclusive", "not measured", "new", "unchanged")
INCOMPLETE = ("inconclusive", "not measured")
# What differs between two machines, in the order a reader cares about.
MACHINE_FIELDS = ("gpu", "driver", "cuda", "cudnn", "torch", "triton", "cpu", "threads")
COLUMNS = ["class", "cell", "machine", "metric", "base", "new", "ratio", "low", "high", "by", "note", "gates"]


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
    def incomplete(self) -> pd.DataFrame:
        """The rows of cells not measured (a newly failing cell that does not gate included), or whose gated
        change could not be judged."""
        rows = self.rows
        return rows[rows["class"].isin(INCOMPLETE) | (rows["class"].eq("newly failing") & ~rows["gates"])]

    @property
    def exit_code(self) -> int:
        if len(self.failing):
            return EXIT_GATE
        return EXIT_INCOMPLETE if len(self.incomplete) or self.not_comparable else EXIT_OK

    def summary_line(self) -> str:
        """One line that counts every class and says what the exit status means."""
        counts = self.rows["class"].value_counts()
        counted = ", ".join(f"{counts.get(c, 0)} {c}" for c in CLASSES)
        if self.not_comparable:
            counted += f", {sum(int(line.split()[0]) for line in self.not_comparable)} not comparable"
        if self.exit_code == EXIT_GATE:
            return f"REGRESSION: {len(self.failing)} cells regressed or newly failing ({counted})"
        if self.exit_code == EXIT_INCOMPLETE:
            return f"INCOMPLETE: no gated regression among the cells judged, but not every cell was ({counted})"
        return f"no regression: every cell measured and judged ({counted})"


def compare_files(base_paths: Sequence[str | os.PathLike], new_paths: Sequence[str | os.PathLike], *,
                  threshold: float = DEFAULT_THRESHOLD, alpha: float = ALPHA,
                  fail_on: Sequence[str] = GATES) -> Comparison:
    """Compare the latest record of each cell in ``new_paths`` with ``base_paths`` (JSONL or pytest-benchmark)."""
    base, new = benchmark_json.load(base_paths), benchmark_json.load(new_paths)
    result = compare_frames(base.frame, new.frame, threshold=threshold, alpha=alpha, fail_on=fail_on)
    result.warnings = [*base.skipped, *new.skipped, *base.notes, *new.notes]
    if result.rows.empty and result.not_comparable:
        raise RefbenchError("nothing is comparable: " + "; ".join(result.not_comparable)
                            + "; compare results measured on the same machine and software")
    return result


def compare_frames(base: pd.DataFrame, new: pd.DataFrame, *, threshold: float = DEFAULT_THRESHOLD,
                   alpha: float = ALPHA, fail_on: Sequence[str] = GATES) -> Comparison:
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
        if side == "_b":
            rows.append(_row("not measured", _side(pair, side), note="in BASE only"))
        elif side == "_n":
            row = _side(pair, side)
            rows.append(_row("new", row, note=None if row["status"] == "ok" else row["status"]))
        else:
            rows.append(_pair(pair, threshold, alpha, fail_on))
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


def _pair(pair: dict, threshold: float, alpha: float, fail_on: tuple[str, ...]) -> dict:
    b, n = _side(pair, "_b"), _side(pair, "_n")
    if b["status"] == "ok" and n["status"] in FAILING:
        return _row("newly failing", n, note=f"{n['status']}: {n.get('reason') or ''}".rstrip(": "),
                    gates="correctness" in fail_on)
    if n["status"] == "skipped":
        return _row("unchanged" if b["status"] == "skipped" else "not measured", n, note=f"skipped: {n.get('reason')}")
    if n["status"] != "ok":
        still = "still " if b["status"] == n["status"] else f"was {b['status']}, now "
        return _row("not measured", n, note=f"{still}{n['status']}: {n.get('reason') or ''}".rstrip(": "))
    if b["status"] != "ok":
        return _row("new", n, note=f"{b['status']} in BASE")
    if b.get("reached") is True and n.get("reached") is False:
        return _row("newly failing", n, note="convergence target no longer reached", gates="accuracy" in fail_on)
    verdicts = {}
    for metric in JUDGED:
        interval = metric_interval(metric, b, n, runs_base=_runs(b, metric), runs_new=_runs(n, metric), alpha=alpha)
        if interval is not None:
            verdicts[metric.name] = judge(metric, interval, threshold=threshold, base=float(b[metric.name]),
                                          new=float(n[metric.name]), memory_floor=memory_floor(b, n))
    if not verdicts:
        return _row("unchanged", n, note="no metric on both sides")
    busy_note = busy(b) or busy(n)
    gated = {name: v for name, v in verdicts.items() if BY_NAME[name].family in fail_on}
    changed = ", ".join(f"{heading(name)} {v.change} {v.ratio:.3g}x" for name, v in verdicts.items()
                        if v.change != "unchanged")
    note = "; ".join(filter(None, [changed, busy_note])) or None
    for change in ("regressed", "improved", "inconclusive"):
        found = [(name, v) for name, v in (gated if change != "improved" else verdicts).items() if v.change == change]
        if found:
            name, verdict = found[0]
            return _row(change, n, b, name, verdict, note=note, gates=change == "regressed")
    name, verdict = next(iter(verdicts.items()))
    return _row("unchanged", n, b, name, verdict, note=note)


def _runs(row: dict, metric) -> list[float]:
    """The metric's value in every ok record of the cell on that side (one per run)."""
    return [float(r[metric.name]) for r in row["_runs"] if number(r.get(metric.name)) and r[metric.name] > 0]


def _row(kind: str, row: dict, base: dict | None = None, metric: str | None = None, verdict=None, *,
         note: str | None = None, gates: bool = False) -> dict:
    interval = verdict.interval if verdict is not None else None
    return {"class": kind, "cell": row["cell"], "machine": row["_machine"], "metric": metric and heading(metric),
            "base": None if base is None or metric is None else float(base[metric]),
            "new": None if metric is None else float(row[metric]),
            "ratio": None if interval is None else interval.ratio,
            "low": None if interval is None else interval.low, "high": None if interval is None else interval.high,
            "by": None if interval is None else interval.method + ("" if interval.clock == "wall" else ", cpu clock"),
            "note": note, "gates": gates}


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
    """The comparison: its rule, a table fit to the terminal (or Markdown fit for a CI comment, unchanged cells
    folded, or CSV), then the one summary line."""
    rows = comparison.rows
    methods = [METHODS[name] for name in METHODS if any(str(by).startswith(name) for by in rows["by"].dropna())]
    rule = (f"threshold {comparison.threshold:.0%}; {1 - comparison.alpha:.0%} intervals from "
            + ("; ".join(methods) or "no metric on both sides") + f"; gates: {','.join(comparison.fail_on)}")
    shown = _display(rows)
    if style == "csv":
        return render_table(shown.to_dict("records"), list(shown.columns), style="csv")
    if style != "markdown":
        table = render_table(shown.to_dict("records"), list(shown.columns)) if len(shown) else "(no cells)"
        return "\n".join([rule, *comparison.not_comparable, "", table, "", comparison.summary_line()])
    changed, unchanged = shown[rows["class"] != "unchanged"], shown[rows["class"] == "unchanged"]
    out = [f"**refbench compare**: {comparison.summary_line()}", "", rule, ""]
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
        "ratio": [fmt(v, ".3f") for v in rows["ratio"]],
        "interval": ["-" if pd.isna(lo) else f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(rows["low"], rows["high"])],
        "by": rows["by"].fillna("-"), "note": rows["note"].fillna("")}, index=rows.index)


def _markdown(frame: pd.DataFrame) -> list[str]:
    return render_table(frame.to_dict("records"), list(frame.columns), style="markdown").splitlines() if len(frame) \
        else ["(none)"]
