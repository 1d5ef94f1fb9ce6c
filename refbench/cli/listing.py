"""What ``refbench list`` shows about each registered workload: all of it as JSON, a summary as a table."""
from __future__ import annotations

import difflib
import re
import shutil

import torch

from refbench.models import count_parameters, get_workload, list_models
from refbench.errors import RefbenchError


def workload_rows(pattern: str | None = None) -> list[dict]:
    """One row per workload matching ``pattern``; none matching is a user error naming close names."""
    names = list_models(pattern)
    if not names:
        close = difflib.get_close_matches(pattern or "", list_models(), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RefbenchError(f"no registered workload matches {pattern!r}{hint} (`refbench list` shows them all)")
    rows = []
    for name in names:
        workload = get_workload(name)
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            parameters = count_parameters(workload.make())
        rows.append({
            "name": name, "task": workload.task, "dataset": getattr(workload, "dataset", None) or "-",
            "parameters": parameters,
            "variants": ", ".join(f"{k}={'/'.join(map(str, v))}" for k, v in workload.variants.items()),
            "recipes": list(workload.recipes),
            "targets": {k: {"goal": f"{t.metric} {'>=' if t.higher_is_better else '<='} {t.threshold}",
                            "dataset": t.dataset or workload.dataset, "recipe": t.recipe,
                            "stop_at_target": t.stop_at_target, "source": t.source}
                        for k, t in workload.targets.items()},
            "source": workload.source,
        })
    return rows


def summary_lines(rows: list[dict], width: int | None = None) -> list[str]:
    """The table for a terminal ``width`` columns wide (the terminal's, at least 80): long cells are cut with '~'."""
    width = width or max(80, shutil.get_terminal_size((80, 24)).columns)
    table = [("name", "data set", "params", "doc", "options")]
    for row in rows:
        table.append((row["name"], row["dataset"], _count(row["parameters"]), _document(row["source"]),
                      ", ".join(option.split("=")[0] for option in row["variants"].split(", ") if option)))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    room = max(8, width - sum(widths) - 2 * 4)
    return [("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + _cut(r[4], room)).rstrip()
            for r in table]


def _count(n: int) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def _document(source: str) -> str:
    """"document 001 section 4.1: ..." -> "001 §4.1"."""
    match = re.match(r"documents? (\d{3})(?: sections? ([\d.]+))?", source)
    if not match:
        return "-"
    return match.group(1) + (f" §{match.group(2)}" if match.group(2) else "")


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 1] + "~"
