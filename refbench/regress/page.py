"""DIR/index.html of a nightly history: open regressions, the latest night, and a trend per series.

One page for every machine in the history (refbench.report.doc renders it:
self-contained, figures embedded). Per machine: the open regressions (first
bad night, magnitude, commit range), the latest night's cells that are not
unchanged, and small multiples of every (cell, metric) series, one figure
per metric, each panel marking its change points with the commit of the
first night of each new level and the latest night in red when it gates.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from refbench.report import figures
from refbench.report.doc import Document, Figure, Section, Table, html_page
from refbench.records.metrics import heading
from refbench.errors import RefbenchError

PANELS_PER_ROW = 4


def write(directory: Path, machines: list, notes: list[str]) -> Path:
    doc = build(directory, machines, notes)
    path = Path(directory) / "index.html"
    partial = path.with_name(f".index.html.{os.getpid()}.partial")
    try:
        partial.write_text(html_page(doc), encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise RefbenchError(f"cannot write {path} ({exc.strerror or exc}); the night itself is stored: "
                            f"`refbench nightly --history {directory} --no-run` writes the page again") from None
    return path


def build(directory: Path, machines: list, notes: list[str]) -> Document:
    header = [f"History: {directory} ({sum(len(m.nights) for m in machines)} nights on "
              f"{len(machines)} machine{'s' if len(machines) != 1 else ''})", *notes[:10]]
    glance = []
    sections = []
    for m in machines:
        last = m.nights[-1]
        env = last.frame.iloc[0]
        what = env.get("env.gpu") if isinstance(env.get("env.gpu"), str) else env.get("env.cpu")
        glance.append(f"{m.env_key} ({what}): latest night {last.path.stem}, {len(m.failing)} gating, "
                      f"{len(m.open)} open regressions, {len(m.nights)} nights")
        sections.append(Section(f"Machine {m.env_key}", [f"{what}; torch {env.get('env.torch')}; "
                                                         f"latest night {last.path.name}", *m.notes]))
        sections.append(Section(f"Open regressions on {m.env_key}", [_open_table(m)], level=3))
        sections.append(Section(f"Latest night on {m.env_key}", [_latest_table(m)], level=3))
        for metric in dict.fromkeys(s.metric.name for s in m.series):
            series = [s for s in m.series if s.metric.name == metric]
            figure = Figure(_trends(m, series), f"{heading(metric)} per night, change points marked")
            sections.append(Section(f"Trends of {heading(metric)} on {m.env_key}", [figure], level=3))
    return Document("refbench nightly", header, glance, sections)


def _open_table(m) -> Table | str:
    if m.open.empty:
        return "No open regression."
    frame = m.open.assign(magnitude=[f"{v:.3f}x" for v in m.open["magnitude"]],
                          metric=m.open["metric"].map(heading))
    return Table(frame.astype(str))


def _latest_table(m) -> Table | str:
    rows = m.latest[m.latest["class"].ne("unchanged")]
    if rows.empty:
        return f"All {len(m.latest)} cells unchanged."
    fmt = lambda v, spec: "-" if v is None or pd.isna(v) else format(v, spec)  # noqa: E731
    frame = pd.DataFrame({
        "class": rows["class"], "cell": rows["cell"],
        "metric": rows["metric"].map(lambda n: heading(n) if isinstance(n, str) else "-"),
        "value": [fmt(v, ".4g") for v in rows["value"]], "level": [fmt(v, ".4g") for v in rows["baseline"]],
        "ratio": [fmt(v, ".3f") for v in rows["ratio"]],
        "interval": ["-" if pd.isna(lo) else f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(rows["low"], rows["high"])],
        "gates": ["yes" if g else "" for g in rows["gates"]],
        "measured": [f"{n}x" + (" (rerun agrees)" if n > 1 and g else "")
                     for n, g in zip(rows["records"], rows["gates"])],
        "note": rows["note"].fillna("")})
    marks = pd.DataFrame("", index=frame.index, columns=frame.columns)
    marks.loc[rows["gates"].to_numpy(), "class"] = "bad"
    return Table(frame.reset_index(drop=True), marks.reset_index(drop=True))


def _trends(m, series: list) -> bytes:
    gating = set(m.failing["cell"])
    with plt.rc_context(figures._STYLE):
        fig, axes = figures._grid(len(series), PANELS_PER_ROW, 1.7, bottom=0.45, hspace=0.9)
        for ax, s in zip(axes, series):
            ax.plot(s.nights, s.values, marker="o", markersize=2, linewidth=0.8, color="#1f5fbf")
            for change in m.changes[(s.cell, s.metric.name)]:
                x = s.nights[change.index]
                ax.axvline(x - 0.5, color="#c0392b", linestyle="--", linewidth=0.8)
                ax.annotate(m.nights[x].commit[:7], (x - 0.5, 1.0), xycoords=("data", "axes fraction"), fontsize=6,
                            rotation=90, va="top", ha="right", color="#c0392b")
            if s.nights and s.nights[-1] == len(m.nights) - 1 and s.cell in gating:
                ax.plot([s.nights[-1]], [s.values[-1]], marker="o", color="#c0392b", markersize=5)
            ax.set_xlim(-0.5, max(len(m.nights) - 0.5, 1))
            ax.set_xlabel("night")
            figures._title(ax, s.cell.rsplit(" | ", 1)[0])
        return figures._png(fig)
