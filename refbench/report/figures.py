"""The report's matplotlib figures, each returned as PNG bytes.

Each backend keeps one colour in every figure (``palette``). Figures are
at most 11 inches wide (about 1,000 pixels), small multiples of one panel
per workload where there are many, so the page fits a laptop screen.
"""
from __future__ import annotations

import io
import math
import textwrap
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

WIDTH_IN = 11.0
DPI = 90
_STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 8,
          "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False}


def palette(backends: Iterable[str]) -> dict[str, tuple]:
    names = list(dict.fromkeys(backends))
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    return {name: colours[i % len(colours)] for i, name in enumerate(names)}


def _png(fig, *, tight: bool = False) -> bytes:
    """PNG bytes of ``fig``; ``tight`` crops to what is drawn (costly with many panels, so small multiples
    are laid out by ``_grid`` instead)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight" if tight else None, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _grid(n: int, ncols: int, panel_h: float, *, top: float = 0.55, bottom: float = 0.4, left: float = 0.55,
          hspace: float = 0.5):
    """A figure of ``n`` panels in rows of ``ncols``, ``panel_h`` inches tall each, margins in inches;
    fewer panels than ``ncols`` make a narrower figure, not wider panels."""
    used = max(1, min(ncols, n))
    nrows = math.ceil(n / used)
    width = max(4.0, WIDTH_IN * used / ncols)
    height = top + bottom + panel_h * nrows
    fig, axes = plt.subplots(nrows, used, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=left / width, right=1 - 0.15 / width, top=1 - top / height, bottom=bottom / height,
                        wspace=0.45, hspace=hspace)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _title(ax, text: str, **kwargs) -> None:
    """A small panel's title, wrapped, and few ticks on its y axis (every tick label costs drawing time)."""
    ax.set_title(textwrap.fill(text, 30), **kwargs)
    if ax.get_yscale() == "linear":
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))


def _legend(fig, colours: dict[str, tuple], extra: Sequence = ()) -> None:
    handles = [plt.Line2D([], [], color=c, marker="s", linestyle="", markersize=7) for c in colours.values()]
    fig.legend([*handles, *extra], [*colours, *(h.get_label() for h in extra)], loc="upper left",
               ncol=min(6, len(colours) + len(extra)), frameon=False, bbox_to_anchor=(0.0, 1.0))


def speedup_heatmap(ratios: pd.DataFrame, unstable: pd.DataFrame, base: str) -> bytes:
    """Workloads (rows) by backends (columns) of speed-ups over ``base``; green faster, red slower, log scale."""
    with plt.rc_context(_STYLE):
        rows, cols = ratios.shape
        fig, ax = plt.subplots(figsize=(min(WIDTH_IN, 3.2 + 1.3 * cols), 0.9 + 0.26 * rows))
        logs = np.log2(ratios.to_numpy(dtype=float))
        bound = max(0.5, float(np.nanmax(np.abs(logs)))) if np.isfinite(logs).any() else 1.0
        image = ax.imshow(logs, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
        for i in range(rows):
            for j in range(cols):
                value = ratios.iat[i, j]
                if pd.notna(value):
                    mark = "†" if unstable.iat[i, j] else ""
                    ax.text(j, i, f"{value:.2f}x{mark}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(cols), [f"{c}\n/ {base}" for c in ratios.columns])
        ax.set_yticks(range(rows), ratios.index)
        ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False, length=0)
        ax.axhline(rows - 1.5, color="black", linewidth=1)   # the last row is the geomean
        ticks = np.linspace(-bound, bound, 5)
        bar = fig.colorbar(image, ax=ax, ticks=ticks, fraction=0.05, pad=0.02)
        bar.ax.set_yticklabels([f"{2 ** t:.2g}x" for t in ticks])
        for spine in ax.spines.values():
            spine.set_visible(False)
        return _png(fig, tight=True)


def throughput_vs_batch(frame: pd.DataFrame, colours: dict[str, tuple]) -> bytes:
    """One panel per workload: samples/s against batch size (log scale), a line per backend."""
    labels = list(dict.fromkeys(frame["label"]))
    with plt.rc_context(_STYLE):
        fig, axes = _grid(len(labels), 4, 2.1, bottom=0.5, left=0.8, hspace=0.65)
        for ax, label in zip(axes, labels):
            for backend, cells in frame[frame["label"] == label].groupby("backend", sort=False):
                cells = cells.sort_values("batch_size")
                ax.plot(cells["batch_size"].astype(float), cells["samples_per_s"].astype(float), marker="o",
                        color=colours[backend], markersize=3)
            sizes = sorted(set(frame.loc[frame["label"] == label, "batch_size"].astype(int)))
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(size) for size in sizes])
            ax.minorticks_off()
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            _title(ax, label)
            ax.set_xlabel("batch size")
        axes[0].set_ylabel("samples/s")
        _legend(fig, {b: colours[b] for b in dict.fromkeys(frame["backend"])})
        return _png(fig)


def latency_boxes(frame: pd.DataFrame, colours: dict[str, tuple]) -> bytes:
    """A row per cell: a box of its raw step times over their median (the spread that makes a cell unstable),
    coloured by backend; unstable cells are labelled in red; each row's median in ms at its right."""
    cells = frame.sort_values("label", kind="stable")
    medians = [float(np.median(s)) for s in cells["latency_ms.samples"]]
    relative = [np.asarray(s, dtype=float) / m if m > 0 else np.asarray(s, dtype=float)
                for s, m in zip(cells["latency_ms.samples"], medians)]
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 0.7 + 0.17 * len(cells)))
        boxes = ax.boxplot(relative, orientation="horizontal", widths=0.65, patch_artist=True,
                           flierprops={"markersize": 2}, medianprops={"color": "black"})
        for patch, backend in zip(boxes["boxes"], cells["backend"]):
            patch.set_facecolor(colours[backend])
        ax.set_yticks(range(1, len(cells) + 1), [f"{label} · {backend}" for label, backend in
                                                 zip(cells["label"], cells["backend"])])
        for tick, unstable in zip(ax.get_yticklabels(), cells["unstable"]):
            tick.set_color("red" if unstable else "black")
        for row, median in enumerate(medians, 1):
            ax.text(1.01, row, f"{median:,.0f} ms" if median >= 100 else f"{median:.3g} ms", transform=ax.get_yaxis_transform(), va="center", fontsize=7)
        ax.axvline(1.0, color="grey", linewidth=0.6)
        ax.set_ylim(len(cells) + 0.6, 0.4)
        ax.set_xlabel("step time / the cell's median step time")
        return _png(fig, tight=True)


def convergence_curves(frame: pd.DataFrame, colours: dict[str, tuple]) -> bytes:
    """One panel per workload: its target metric against training seconds, a line per backend (and seed),
    the threshold dashed, the time it was reached marked."""
    labels = list(dict.fromkeys(frame["label"]))
    with plt.rc_context(_STYLE):
        fig, axes = _grid(len(labels), 5, 2.1, bottom=0.5, hspace=0.7)
        for ax, label in zip(axes, labels):
            cells = frame[frame["label"] == label]
            target = cells["target_metric"].iloc[0]
            for record in cells.to_dict("records"):
                points = [p for p in record["curve"] if (p.get("metrics") or {}).get(target) is not None]
                xs = [p["train_s"] for p in points]
                ax.plot(xs, [p["metrics"][target] for p in points], marker="o", markersize=3,
                        color=colours[record["backend"]])
                if record["reached"] is True and pd.notna(record["time_to_target_s"]):
                    ax.axvline(record["time_to_target_s"], color=colours[record["backend"]], linewidth=0.6, alpha=0.6)
            if pd.notna(cells["threshold"].iloc[0]):
                ax.axhline(cells["threshold"].iloc[0], color="black", linestyle="--", linewidth=0.8)
            _title(ax, f"{label}: {target}")
            ax.set_xlabel("training s")
            ax.set_xlim(left=0)
        _legend(fig, {b: colours[b] for b in dict.fromkeys(frame["backend"])},
                [plt.Line2D([], [], color="black", linestyle="--", label="target")])
        return _png(fig)


def scaling_efficiency(frame: pd.DataFrame) -> bytes:
    """Scaling efficiency against world size, a line per workload, backend and scaling mode (within a run)."""
    with plt.rc_context(_STYLE):
        fig, axes = _grid(1, 1, 2.6, bottom=0.6, left=0.8)
        ax = axes[0]
        for (series, _), rows in frame.groupby(["series", "run_id"], sort=False):
            rows = rows.sort_values("world_size")
            ax.plot(rows["world_size"].astype(float), rows["scaling_efficiency"].astype(float), marker="o",
                    markersize=3, label=series)
        sizes = sorted(set(frame["world_size"].astype(int)))
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(size) for size in sizes])
        ax.minorticks_off()
        ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("world size")
        ax.set_ylabel("scaling efficiency")
        ax.legend(fontsize=7, loc="lower left")
        return _png(fig)


def roofline(table: pd.DataFrame, colours: dict[str, tuple], title: str) -> bytes:
    """One panel per precision: each backend's achieved figure per shape, and the roofline (black bars)."""
    precisions = list(dict.fromkeys(table["precision"]))
    unit = table["unit"].iloc[0]
    with plt.rc_context(_STYLE):
        fig, axes = _grid(len(precisions), 2, 3.2, bottom=0.2, left=0.7, hspace=0.9)
        for ax, precision in zip(axes, precisions):
            cells = table[table["precision"] == precision]
            shapes = list(dict.fromkeys(cells["shape"]))
            x = {shape: i for i, shape in enumerate(shapes)}
            roof = cells.drop_duplicates("shape")
            ax.scatter([x[s] for s in roof["shape"]], roof["roofline"], marker="_", s=400, color="black", zorder=3)
            for backend, rows in cells.groupby("backend", sort=False):
                ax.plot([x[s] for s in rows["shape"]], rows["achieved"], marker="o", markersize=4, linestyle="-",
                        linewidth=0.8, color=colours[backend])
            ax.set_yscale("log")
            ax.set_xticks(range(len(shapes)), shapes, rotation=60, ha="right")
            _title(ax, f"{title}, {precision}")
            ax.set_ylabel(unit)
        _legend(fig, {b: colours[b] for b in dict.fromkeys(table["backend"])},
                [plt.Line2D([], [], color="black", marker="_", markersize=12, linestyle="", label="roofline")])
        return _png(fig, tight=True)
