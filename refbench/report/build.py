"""The report of result files: Markdown and one self-contained HTML page.

``write_report(paths, out_dir)`` reads the records (refbench.records.analysis: bad input
is one RefbenchError line), keeps the latest record of each cell on each
machine, and writes ``report.md`` and ``report.html`` into ``out_dir``.
Each section is there only when its records are: the machines and runs;
speed-up of every backend over its device's eager backend (``cpu`` or
``cuda``) per workload with the geomean per backend, as a heat-map and
tables, for each mode and batch size; throughput against batch size; the
raw step times as box plots, unstable cells marked; peak memory and its
ratio to the eager backend; first-step and compile time; energy per sample;
correctness against fp64; convergence curves, time to target and parity;
kernel throughput against the roofline; and every cell that did not give a
measurement, with why.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from refbench.report import figures
from refbench.records import analysis
from refbench.report.doc import Document, Figure, Section, Table, html_page, markdown
from refbench.report.tables import fmt
from refbench.errors import RefbenchError

STATUS_ORDER = ("failed", "error", "oom", "timeout", "missed", "not_run", "skipped")
UNSTABLE_NOTE = (f"† marks an unstable cell: its step time varied by more than {analysis.UNSTABLE_CV:.0%} "
                 f"(coefficient of variation) or the run flagged it as disturbed")


@dataclass
class Written:
    markdown: Path
    html: Path
    summary: list[str]      # the summary's lines
    warnings: list[str]     # corrupt lines skipped, notes on the input


def write_report(result_paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> Written:
    """Build the report of ``result_paths`` and write ``out_dir``/report.md and report.html."""
    out_dir = Path(out_dir)
    check_writable_dir(out_dir)
    loaded = analysis.load(result_paths)
    doc = build(loaded)
    paths = {}
    for name, text in (("report.md", markdown(doc)), ("report.html", html_page(doc))):
        paths[name] = out_dir / name
        _write_atomically(paths[name], text)
    return Written(paths["report.md"], paths["report.html"], doc.glance, [*loaded.skipped, *loaded.notes])


def check_writable_dir(path: str | os.PathLike, flag: str = "-o") -> None:
    """A RefbenchError unless ``path`` is, or can be made, a directory this process can write files into."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise RefbenchError(f"cannot write the report into {path} ({exc.strerror or exc}); "
                            f"choose a writable directory with {flag}") from None


def _write_atomically(path: Path, text: str) -> None:
    """Write a file next to ``path`` and rename it into place, so a reader never sees half a report."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise RefbenchError(f"cannot write {path} ({exc.strerror or exc}); free space or choose another "
                            f"directory with -o") from None


def build(loaded: analysis.Loaded) -> Document:
    cells = analysis.latest(loaded.frame)
    many = cells["env_key"].nunique() > 1
    context = _Context(cells, loaded.frame, many, figures.palette(cells["backend"]))
    sections = [_environments(loaded.frame)]
    for make in (_speedups, _batch_scaling, _latency, _memory, _first_step, _energy, _correctness,
                 _convergence, _scaling, _kernels, _not_ok):
        sections += make(context)
    header = ["Results: " + ", ".join(f"{path} ({n} records)" for path, n in loaded.files.items()),
              f"{len(loaded.frame)} records; the latest of each cell on each machine: {len(cells)} cells."]
    if loaded.skipped:
        header.append(f"{len(loaded.skipped)} corrupt lines skipped: " + "; ".join(loaded.skipped[:5])
                      + (f"; and {len(loaded.skipped) - 5} more" if len(loaded.skipped) > 5 else ""))
    header += loaded.notes
    return Document("refbench report", header, analysis.summary(cells), [s for s in sections if s.blocks])


@dataclass
class _Context:
    cells: pd.DataFrame   # the latest record of each cell
    records: pd.DataFrame  # every record read
    many_machines: bool
    colours: dict

    def groups(self, rows: pd.DataFrame, by: Sequence[str] = ("env_key", "mode", "batch_size")):
        """(subsection title, rows) per machine, mode and batch size, throughput modes first."""
        order = {mode: i for i, mode in enumerate(("train", "infer"))}
        distinct = rows[list(by)].drop_duplicates().itertuples(index=False, name=None)
        keys = sorted(distinct, key=lambda k: tuple((order.get(v, 9), str(v)) if isinstance(v, str) else (0, v)
                                                     for v in k))
        for key in keys:
            match = pd.Series(True, index=rows.index)
            for column, value in zip(by, key):
                match &= rows[column].isna() if pd.isna(value) else rows[column].eq(value)
            parts = dict(zip(by, key))
            title = ", ".join([p for p in (parts.get("mode"), None if "batch_size" not in parts else
                                           f"batch {parts['batch_size']}") if p])
            if self.many_machines:
                title = f"{title}, {self.machine(parts['env_key'])}" if title else self.machine(parts["env_key"])
            yield title, rows[match]

    def machine(self, env_key: str) -> str:
        row = self.cells[self.cells["env_key"] == env_key].iloc[0]
        threads = row.get("env.threads")
        return f"{row['device']}{'' if pd.isna(threads) else ', ' + _threads(threads)} ({env_key})"


def _threads(n) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _ok_throughput(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["status"].eq("ok") & cells["base_backend"].notna()]


def _grid(rows: pd.DataFrame, text: Callable[[pd.Series], str], mark: Callable[[pd.Series], str] | None = None,
          extra_rows: pd.DataFrame | None = None) -> Table:
    """A workload (rows) by backend (columns) table of ``text(record)``, the base backend first."""
    present = list(dict.fromkeys(rows["backend"]))   # in the order the run measured them
    backends = sorted(present, key=lambda b: (b not in set(rows["base_backend"]), present.index(b)))
    labels = sorted(dict.fromkeys(rows["label"]))
    by_cell = {(r["label"], r["backend"]): r for _, r in rows.iterrows()}
    frame = pd.DataFrame([[label, *(text(by_cell[(label, b)]) if (label, b) in by_cell else "-" for b in backends)]
                          for label in labels], columns=["workload", *backends])
    marks = pd.DataFrame([["", *(mark(by_cell[(label, b)]) if mark and (label, b) in by_cell else "" for b in backends)]
                          for label in labels], columns=frame.columns)
    if extra_rows is not None:
        frame, marks = pd.concat([frame, extra_rows], ignore_index=True), pd.concat(
            [marks, pd.DataFrame([[""] * len(frame.columns)] * len(extra_rows), columns=frame.columns)],
            ignore_index=True)
    return Table(frame, marks)


def _environments(frame: pd.DataFrame) -> Section:
    rows = []
    for env_key, records in frame.groupby("env_key", sort=False):
        def get(name, env=records.iloc[-1]):
            value = env.get(f"env.{name}")
            return None if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)) else value

        software = ", ".join(f"{name} {get(name)}" for name in ("torch", "cuda", "cudnn", "triton", "driver")
                             if get(name) is not None)
        commits = ", ".join(sorted(records["env.git_commit"].dropna().astype(str).unique())) \
            if "env.git_commit" in records else "-"
        device = ", ".join(str(v) for v in (get("gpu"), get("cpu")) if v) or "-"
        rows.append([env_key, device, "-" if get("threads") is None else _threads(get("threads")), software,
                     get("host") or "-", commits or "-", ", ".join(records["run_id"].dropna().unique()),
                     str(len(records)), _time_span(records["time"])])
    table = pd.DataFrame(rows, columns=["machine (env_key)", "device", "threads", "software", "host", "commits",
                                        "runs", "records", "measured (UTC)"])
    return Section("Machines and runs", ["Results from different machines (env_key) are never compared.",
                                         Table(table)])


def _time_span(times: pd.Series) -> str:
    first, last = times.min(), times.max()
    if pd.isna(first):
        return "-"
    end = last.strftime("%H:%M" if last.date() == first.date() else "%Y-%m-%d %H:%M")
    return f"{first:%Y-%m-%d %H:%M} to {end}"


def _speedups(ctx: _Context) -> list[Section]:
    ok = _ok_throughput(ctx.cells)
    if ok.empty:
        return []
    sections = [Section("Speed-up and throughput", [
        "For each mode and batch size: the speed-up of each backend over its device's eager backend (cpu or "
        "cuda) per workload, the ratio of samples per second (higher is better), with the geometric mean over "
        f"the workloads both measured as the last row; then samples per second. {UNSTABLE_NOTE}."])]
    pairs = analysis.versus_base(ok, "samples_per_s")
    means = analysis.geomeans(pairs)
    for title, rows in ctx.groups(ok):
        section = Section(title, level=3)
        group = _same_group(pairs, rows)
        if not group.empty:
            base = group["base_backend"].iloc[0]
            section.blocks += _speedup_blocks(group, _same_group(means, rows), base, title)
        threads = rows["threads"].dropna().unique() if "threads" in rows else []
        section.blocks += [
            *([f"torch CPU threads per cell: {', '.join(str(int(t)) for t in sorted(threads))}."] if len(threads) else []),
            "Samples per second (median step):",
            _grid(rows, lambda r: fmt(r["samples_per_s"], ",.0f") + ("†" if r["unstable"] else ""),
                  lambda r: "warn" if r["unstable"] else "")]
        sections.append(section)
    return sections


def _same_group(frame: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` of the machine, mode and batch size of ``rows``."""
    first = rows.iloc[0]
    return frame[frame["env_key"].eq(first["env_key"]) & frame["mode"].eq(first["mode"])
                 & frame["batch_size"].eq(first["batch_size"])]


def _speedup_blocks(pairs: pd.DataFrame, means: pd.DataFrame, base: str, title: str) -> list:
    """The heat-map and the table of one group's speed-ups, the geomean as the last row."""
    ratios = pairs.pivot_table(index="label", columns="backend", values="ratio", aggfunc="first")
    ratios = ratios[list(dict.fromkeys(pairs["backend"]))]   # in the order the run measured them
    unstable = pairs.pivot_table(index="label", columns="backend", values="unstable", aggfunc="max")
    unstable = unstable.reindex_like(ratios).fillna(False).astype(bool)
    means = means.set_index("backend").reindex(ratios.columns)
    ratios.loc["geomean"], unstable.loc["geomean"] = means["geomean"], False
    columns = ["workload", *(f"{b} / {base}" for b in ratios.columns)]
    text, marks = [], []
    for label in ratios.index:
        cells = zip(ratios.loc[label], unstable.loc[label], means["n"])
        if label == "geomean":
            text.append([label, *(f"{v:.2f}x over {n:.0f}" if pd.notna(v) else "-" for v, _, n in cells)])
        else:
            text.append([label, *(f"{v:.2f}x{'†' if u else ''}" if pd.notna(v) else "-" for v, u, _ in cells)])
        marks.append(["", *("" if pd.isna(v) else "warn" if u else "good" if v >= 1.05 else "bad" if v <= 0.95
                            else "" for v, u in zip(ratios.loc[label], unstable.loc[label]))])
    table = Table(pd.DataFrame(text, columns=columns), pd.DataFrame(marks, columns=columns))
    return [Figure(figures.speedup_heatmap(ratios, unstable, base), f"heat-map of speed-ups over {base}, {title}"),
            table]


def _batch_scaling(ctx: _Context) -> list[Section]:
    ok = _ok_throughput(ctx.cells)
    scaled = ok.groupby(["env_key", "mode", "label"])["batch_size"].transform("nunique") > 1
    section = Section("Throughput against batch size")
    for title, rows in ctx.groups(ok[scaled], by=("env_key", "mode")):
        section.blocks += [f"{title}: samples/s of each workload measured at more than one batch size.",
                           Figure(figures.throughput_vs_batch(rows, ctx.colours), f"samples/s against batch size, {title}")]
    return [section]


def _latency(ctx: _Context) -> list[Section]:
    ok = _ok_throughput(ctx.cells)
    ok = ok[ok["latency_ms.samples"].map(lambda s: isinstance(s, list) and len(s) > 0)]
    section = Section("Latency distributions")
    if ok.empty:
        return []
    section.blocks.append("The raw step times of each cell over their median (box: quartiles, whiskers: 1.5 IQR), "
                          f"the median itself at the right. {UNSTABLE_NOTE}; its label is red.")
    for title, rows in ctx.groups(ok):
        section.blocks += [f"{title}:", Figure(figures.latency_boxes(rows, ctx.colours), f"step times, {title}")]
    unstable = ok[ok["unstable"]]
    if not unstable.empty:
        rows = [[r["label"], r["backend"], r["mode"], fmt(r["batch_size"], ""), fmt(r["latency_ms.median"], ",.3f"),
                 f"{fmt(r['latency_ms.p10'], ',.3f')}-{fmt(r['latency_ms.p90'], ',.3f')}",
                 fmt(r["latency_ms.cv"], ".1%"), _why_unstable(r)] for _, r in unstable.iterrows()]
        section.blocks += [Table(pd.DataFrame(
            rows, columns=["workload", "backend", "mode", "batch", "median ms", "p10-p90 ms", "CV", "why"]),
            folded=f"the {len(unstable)} unstable cells and why")]
    return [section]


def _why_unstable(record: pd.Series) -> str:
    """The run's own reasons when it gives them; else the CV over the bound, else "flagged by the run"."""
    reasons = record["noise.reasons"]
    if isinstance(reasons, list) and reasons:
        return "; ".join(map(str, reasons))
    if pd.notna(record["latency_ms.cv"]) and record["latency_ms.cv"] > analysis.UNSTABLE_CV:
        return f"CV {record['latency_ms.cv']:.0%} > {analysis.UNSTABLE_CV:.0%}"
    return "flagged by the run"


def _memory(ctx: _Context) -> list[Section]:
    ok = _ok_throughput(ctx.cells)
    ok = ok[ok["peak_mem_bytes"].notna()]
    if ok.empty:
        return []
    ratio = analysis.versus_base(ok, "peak_mem_bytes").set_index(["env_key", "mode", "batch_size", "label", "backend"])
    kinds = {"allocated": "CUDA: peak allocated", "rss_delta": "CPU: growth of the resident set"}
    used = ", ".join(kinds[k] for k in dict.fromkeys(ok["memory_kind"].dropna()) if k in kinds)
    section = Section("Peak memory", [f"Peak MiB during the timed steps / during the first step ({used}), and in "
                                      "brackets the timed peak's ratio to the eager backend's (lower is leaner)."])

    def text(r):
        key = (r["env_key"], r["mode"], r["batch_size"], r["label"], r["backend"])
        share = f" ({ratio.at[key, 'ratio']:.2f}x)" if key in ratio.index and pd.notna(ratio.at[key, "ratio"]) else ""
        return f"{r['peak_mem_bytes'] / 2**20:,.1f} / {fmt(r['first_step_peak_mem_bytes'] / 2**20, ',.1f')}{share}"

    for title, rows in ctx.groups(ok):
        section.blocks += [f"{title}:", _grid(rows, text)]
    return [section]


def _first_step(ctx: _Context) -> list[Section]:
    ok = _ok_throughput(ctx.cells)
    ok = ok[ok["first_step_ms"].notna()]
    if ok.empty:
        return []
    section = Section("Compile time and first step", [
        "The first step (it pays for compilation, autotuning and lazy initialisation); \"(compile)\" where that "
        "step is the backend's compile, and the compile time beside it where it was measured apart."])
    for title, rows in ctx.groups(ok):
        section.blocks += [f"{title}:", _grid(rows, _first_step_text)]
    return [section]


def _first_step_text(record: pd.Series) -> str:
    first, compile_s = record["first_step_ms"], record["compile_s"]
    text = f"{first / 1e3:,.1f} s" if first >= 1000 else f"{first:,.1f} ms"
    if pd.isna(compile_s):
        return text
    return text + (" (compile)" if abs(compile_s * 1e3 - first) <= 0.01 * first else f" (compile {compile_s:.1f} s)")


def _energy(ctx: _Context) -> list[Section]:
    ok = _ok_throughput(ctx.cells)
    ok = ok[ok["joules_per_sample"].notna()]
    section = Section("Energy per sample", ["Joules per sample from NVML's energy counter, and the mean power in W."])
    for title, rows in ctx.groups(ok):
        section.blocks += [f"{title}:", _grid(rows, lambda r: f"{r['joules_per_sample']:.3g} J ({fmt(r['mean_watts'], '.0f')} W)")]
    return [section] if not ok.empty else []


def _correctness(ctx: _Context) -> list[Section]:
    summary = analysis.correctness(ctx.cells)
    if summary.empty:
        return []
    rows = [[*([ctx.machine(r["env_key"])] if ctx.many_machines else []), r["backend"], str(r["checked"]),
             str(r["passed"]), f"{r['pass_rate']:.0%}", str(r["nan_only"]), fmt(r["worst_ratio"], ".3g"),
             f"{r['worst_cell']}: {r['worst_tensor']}" if r["worst_cell"] else "-"] for _, r in summary.iterrows()]
    columns = [*(["machine"] if ctx.many_machines else []), "backend", "checked", "passed", "pass rate",
               "NaN/Inf only", "worst error / tolerance", "worst cell: tensor"]
    marks = pd.DataFrame([["bad" if c == "pass rate" and r["passed"] < r["checked"] else "" for c in columns]
                          for _, r in summary.iterrows()], columns=columns)
    blocks = ["Each cell's first step against the same step in fp64 on the cell's device (relative RMS error per "
              "tensor, against the tolerance of its precision); a random step is checked for NaN/Inf only. A worst "
              "error above its tolerance in a cell that passed was within the allowance the cell's record states "
              "(metrics.correctness.allowed): a multiple of how far the same step moves in fp64 with the cell's "
              "precision's rounding emulated, as BatchNorm's backward at a small batch needs. Agreement with plain "
              "eager fp32 (metrics.correctness.eager) is reported beside and never decides a cell.",
              Table(pd.DataFrame(rows, columns=columns), marks)]
    failed = ctx.cells[ctx.cells["status"].eq("failed") & ctx.cells["correctness.tolerance"].notna()]
    if not failed.empty:
        blocks += ["Cells with a wrong answer:", Table(pd.DataFrame(
            [[r["label"], r["backend"], r["mode"], fmt(r["batch_size"], ""), r["reason"]] for _, r in failed.iterrows()],
            columns=["workload", "backend", "mode", "batch", "what was wrong"]))]
    return [Section("Correctness", blocks)]


def _convergence(ctx: _Context) -> list[Section]:
    runs = ctx.cells[ctx.cells["mode"].eq("converge")]
    if runs.empty:
        return []
    section = Section("Convergence", ["Training to each workload's target on real data: the target metric "
                                      "against training seconds (dashed: the threshold; a thin line: when it was "
                                      "reached), then time to target and, where measured, the parity verdict."])
    curves = _curves(runs, ctx.records)
    for title, rows in ctx.groups(curves, by=("env_key",)):
        section.blocks += [*([f"{title}:"] if title else []),
                           Figure(figures.convergence_curves(rows, ctx.colours),
                                  "convergence curves" + (f", {title}" if title else ""))]
    rows, marks = [], []
    for _, r in runs.sort_values(["label", "backend"]).iterrows():
        reached = r["reached"] is True
        rows.append([r["label"], r["backend"], r.get("recipe") or "-", r["dataset"] or "-", fmt(r["batch_size"], ""),
                     f"{r['target_metric']} {fmt(r['threshold'], '.3g')}", fmt(analysis.converged_value(r), ".4g"),
                     "yes" if reached else "no", fmt(r["time_to_target_s"], ",.1f"), fmt(r.get("train_s"), ",.1f"),
                     _seeds(r), _parity(r)])
        marks.append(["", "", "", "", "", "", "", "good" if reached else "bad", "", "", "",
                      "bad" if r.get("parity.ok") is False else ""])
    columns = ["workload", "backend", "recipe", "dataset", "batch", "target", "final", "reached",
               "time to target s", "trained s", "seed(s)", "parity"]
    section.blocks.append(Table(pd.DataFrame(rows, columns=columns), pd.DataFrame(marks, columns=columns)))
    return [section]


def _curves(cells: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """The training curves behind the latest convergence cells: a single run's own, a seed group's seeds' (the
    records of the group's run, which carry ``seed``)."""
    key = ["env_key", *analysis.CELL_KEY, "run_id"]
    runs = records.merge(cells[key].drop_duplicates(), on=key)
    return runs[runs["curve"].map(lambda c: isinstance(c, list) and len(c) > 0)]


def _seeds(record: pd.Series) -> str:
    n = record.get("seeds.n")
    if n is None or pd.isna(n):
        return fmt(record.get("seed"), ".0f")
    return f"{int(n)}, std {fmt(record.get('seeds.std'), '.2g')}"


def _parity(record: pd.Series) -> str:
    ok = record.get("parity.ok")
    if ok is None or (not isinstance(ok, bool) and pd.isna(ok)):
        return "-"
    detail = ", ".join(f"{name} {fmt(record.get(f'parity.{name}'), '.3g')}" for name in ("delta", "margin")
                       if pd.notna(record.get(f"parity.{name}")))
    return f"{'ok' if ok else 'differs'} vs {record.get('parity.base')}" + (f" ({detail})" if detail else "")


def _scaling(ctx: _Context) -> list[Section]:
    """Data-parallel scaling (``refbench ddp``): efficiency against world size, within each run."""
    runs = ctx.cells[ctx.cells["mode"].eq("ddp") & ctx.cells["status"].eq("ok")].copy()
    if runs.empty:
        return []
    variant = runs["variant"].map(json.loads)
    runs["world_size"] = variant.map(lambda v: v.get("world_size"))
    runs["series"] = runs["workload"] + " " + runs["backend"] + " " + variant.map(lambda v: v.get("scaling", ""))
    section = Section("Data-parallel scaling", [
        "refbench ddp: samples/s of each world size, and its scaling efficiency (samples/s over world size times "
        "world size 1's, measured in the same invocation)."])
    section.blocks.append(Figure(figures.scaling_efficiency(runs), "scaling efficiency against world size"))
    rows = [[r["series"], fmt(r["world_size"], ".0f"), fmt(r["samples_per_s"], ",.0f"),
             fmt(r.get("scaling_efficiency"), ".2f"), fmt(r.get("allreduce_share"), ".0%"), r["run_id"]]
            for _, r in runs.sort_values(["series", "world_size"]).iterrows()]
    section.blocks.append(Table(pd.DataFrame(rows, columns=["workload, backend, scaling", "world size", "samples/s",
                                                            "efficiency", "all-reduce share", "run"])))
    return [section]


def _kernels(ctx: _Context) -> list[Section]:
    table = analysis.kernels(ctx.cells)
    if table.empty:
        return []
    section = Section("Kernels", ["Each kernel's achieved throughput per shape against the roofline of the device "
                                  "measured in the same run (softmax: GB/s against the copy bandwidth; conv2d: "
                                  "TFLOP/s against max(FLOPs / matmul peak, bytes / copy bandwidth))."])
    for env_key, rows in table.groupby("env_key", sort=False):
        if ctx.cells.loc[ctx.cells["env_key"] == env_key, "env.gpu"].isna().all():
            section.blocks.append(f"{ctx.machine(env_key)} has no GPU: its Triton kernels ran in the interpreter, "
                                  "so these timings prove the sweep runs and mean nothing about speed.")
        for (kernel, direction), cells in rows.groupby(["kernel", "direction"], sort=False):
            title = f"{kernel} {direction}" + (f", {ctx.machine(env_key)}" if ctx.many_machines else "")
            section.blocks += [f"{title}:", Figure(figures.roofline(cells, ctx.colours, f"{kernel} {direction}"),
                                                     f"roofline of {title}")]
            pivot = cells.pivot_table(index=["precision", "shape"], columns="backend", values="fraction",
                                      aggfunc="first", sort=False)
            achieved = cells.pivot_table(index=["precision", "shape"], columns="backend", values="achieved",
                                         aggfunc="first", sort=False)
            text = achieved.apply(lambda col: col.map(lambda v: fmt(v, ".3g"))) + pivot.apply(
                lambda col: col.map(lambda v: f" ({v:.0%})" if pd.notna(v) else ""))
            unit = cells["unit"].iloc[0]
            section.blocks.append(Table(text.reset_index(), folded=f"{title}: {unit} per shape (share of roofline)"))
    return [section]


def _not_ok(ctx: _Context) -> list[Section]:
    bad = ctx.cells[ctx.cells["status"].ne("ok")]
    if bad.empty:
        return []
    rank = {status: i for i, status in enumerate(STATUS_ORDER)}
    bad = bad.assign(_rank=bad["status"].map(lambda s: rank.get(s, -1))).sort_values(["_rank", "label", "backend"])
    counts = ", ".join(f"{s} {n}" for s, n in analysis.status_counts(ctx.cells).items())
    section = Section("Cells that did not give a measurement",
                      [f"Status counts: {counts}. Hover a reason for the whole error."])
    broken, skipped = bad[bad["status"].ne("skipped")], bad[bad["status"].eq("skipped")]
    if not broken.empty:
        section.blocks.append(_cell_table(ctx, broken, mark="bad"))
    if not skipped.empty:
        section.blocks.append(_cell_table(ctx, skipped, folded=f"{len(skipped)} cells skipped by design, and why"))
    return [section]


def _cell_table(ctx: _Context, cells: pd.DataFrame, *, mark: str = "", folded: str | None = None) -> Table:
    columns = [*(["machine"] if ctx.many_machines else []), "workload", "backend", "mode", "batch", "status", "reason"]
    frame = pd.DataFrame([[*([r["env_key"]] if ctx.many_machines else []), r["label"], r["backend"], r["mode"],
                           fmt(r["batch_size"], ""), r["status"], (r["reason"] or "-")[:300]]
                          for _, r in cells.iterrows()], columns=columns)
    tips = pd.DataFrame([[""] * (len(columns) - 1) + [r["error"] or ""] for _, r in cells.iterrows()], columns=columns)
    marks = pd.DataFrame([[mark if c == "status" else "" for c in columns] for _ in range(len(cells))], columns=columns)
    return Table(frame, marks, tips, folded)
