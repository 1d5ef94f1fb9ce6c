"""``refbench list``, ``env`` and ``data``: what is registered, what this machine is, where the data is."""
from __future__ import annotations

import difflib
import json
import re

from refbench.cli._options import needs_torch, path_option, print_table, table_options
from refbench.errors import RefbenchError


def register(sub) -> None:
    p = sub.add_parser("list", help="list the registered workloads",
                       description="List the registered workloads: data set, source document, full target, options "
                                   "(--json: everything, parameter counts included).",
                       epilog="examples:\n  refbench list\n  refbench list 'lenet*' --json")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style pattern, e.g. 'lenet*' (default: all)")
    p.add_argument("--json", action="store_true",
                   help="everything about each workload, as JSON, its parameter count included")
    table_options(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("env", help="describe this machine and software",
                       description="Describe this machine and software as a record's env would: torch, CUDA, cuDNN, "
                                   "Triton, GPU, CPU, threads, commit, and the env_key that makes results comparable.",
                       epilog="example:\n  refbench env --json")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("data", help="list data sets, where each was found and its size",
                       description="List the data sets: where each was found, its size, or how to get it.",
                       epilog="example:\n  refbench data --data-dir ~/datasets")
    p.add_argument("--data-dir", type=path_option, default=None, help="a directory of data sets, looked in first "
                                                    "(default: $REFBENCH_DATA, then the usual places)")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(func=cmd_data)


@needs_torch
def cmd_list(args) -> int:
    rows = workload_rows(args.pattern, parameters=args.json)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [{"name": row["name"], "data set": _data_set(row), "doc": _document(row["source"]),
              "full target": row["targets"].get("full", {}).get("goal", "-"),
              "options": ", ".join(option.split("=")[0] for option in row["variants"].split(", ") if option)}
             for row in rows]
    print_table(table, ["name", "data set", "doc", "full target", "options"], args)
    return 0


def workload_rows(pattern: str | None = None, *, parameters: bool = True) -> list[dict]:
    """One row per workload matching ``pattern``; none matching is a user error naming close names.

    ``parameters``: count each default model's parameters (which builds it, on the meta device, and imports
    what it needs: torchvision for the transfer model).
    """
    from refbench.models import get_workload, list_models

    names = list_models(pattern)
    if not names:
        close = difflib.get_close_matches(pattern or "", list_models(), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RefbenchError(f"no registered workload matches {pattern!r}{hint} (`refbench list` shows them all)")
    rows = []
    for name in names:
        workload = get_workload(name)
        rows.append({
            "name": name, "task": workload.task, "dataset": getattr(workload, "dataset", None) or "-",
            **({"parameters": workload.parameter_count()} if parameters else {}),
            "variants": ", ".join(f"{k}={'/'.join(map(str, v))}" for k, v in workload.variants.items()),
            "recipes": list(workload.recipes),
            "targets": {k: {"goal": f"{t.metric} {'>=' if t.higher_is_better else '<='} {t.threshold}",
                            "dataset": t.dataset or workload.dataset, "recipe": t.recipe,
                            "stop_at_target": t.stop_at_target, "source": t.source}
                        for k, t in workload.targets.items()},
            "source": workload.source,
        })
    return rows


def _data_set(row: dict) -> str:
    """The workload's data set, and the one its full target trains on where that stands in for it."""
    trained = row["targets"].get("full", {}).get("dataset")
    return row["dataset"] if trained in (None, row["dataset"]) else f"{trained} (for {row['dataset']})"


def _document(source: str) -> str:
    """"document 001 section 4.1: ..." -> "001 §4.1"."""
    match = re.match(r"documents? (\d{3})(?: sections? ([\d.]+))?", source)
    if not match:
        return "-"
    return match.group(1) + (f" §{match.group(2)}" if match.group(2) else "")


@needs_torch
def cmd_env(args) -> int:
    from refbench.harness.machine import collect_env

    env = collect_env()
    if args.json:
        print(json.dumps(env, indent=2))
    else:
        width = max(map(len, env))
        for key, value in env.items():
            print(f"{key:<{width}}  {value}")
    return 0


@needs_torch
def cmd_data(args) -> int:
    """One line per data set; exit 2 when a data set has a bad file."""
    from refbench.models.data import describe_sources

    rows = describe_sources(args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("\n".join(map(_data_line, rows)))
    return 2 if any(row["status"] == "bad" for row in rows) else 0


def _data_line(row: dict) -> str:
    if row["status"] == "found":
        return f"{row['name']:<20} found    {row['size']}  ({row['found']})"
    if row["status"] == "stand-in":
        return (f"{row['name']:<20} missing  {row['stand_in']} stands in, {row['size']}  ({row['found']}); "
                f"{row['error']}")
    return f"{row['name']:<20} {row['status']:<8} {row['error']}"
