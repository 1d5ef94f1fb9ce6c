"""The ``refbench`` command line: parses arguments and calls library functions.

Every user error is a RefbenchError printed as one line with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from reference_models import RefbenchError


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_csv(text: str) -> list[int]:
    try:
        return [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _writable(path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(directory) or not os.access(directory, os.W_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        raise RefbenchError(f"cannot write results to {path}: choose a writable file path with --out")
    return path


def cmd_list(args) -> int:
    from bench.listing import workload_rows
    from bench.tables import print_table

    rows = workload_rows(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["name", "task", "dataset", "parameters", "variants", "source"])
    return 0


def cmd_env(args) -> int:
    from bench.environment import collect_env

    env = collect_env()
    if args.json:
        print(json.dumps(env, indent=2))
    else:
        width = max(map(len, env))
        for key, value in env.items():
            print(f"{key:<{width}}  {value}")
    return 0


def cmd_data(args) -> int:
    from reference_models.data import describe_sources

    rows = describe_sources(args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if row["status"] == "found":
            print(f"{row['name']:<20} found   {row['size']}  ({row['found']})")
        else:
            print(f"{row['name']:<20} missing {row['error']}")
    return 0


def cmd_run(args) -> int:
    from bench.runner import MatrixSpec, run_matrix
    from bench.tables import print_table, record_row

    spec = MatrixSpec(workloads=args.workloads, backends=args.backends, modes=args.modes,
                      batch_sizes=args.batch_sizes, iters=args.iters)
    spec.validate()
    out = _writable(args.out)
    records = run_matrix(spec, out, on_record=lambda r: print(
        f"{r['workload']} {r['backend']} {r['mode']} bs={r['batch_size']}: {r['status']}", file=sys.stderr))
    print_table([record_row(r) for r in records],
                ["workload", "backend", "mode", "batch", "status", "samples/s", "median ms", "cv", "peak mem MB"])
    print(f"{len(records)} records appended to {out}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def cmd_converge(args) -> int:
    from bench.convergence import converge_all

    out = _writable(args.out) if args.out else None
    results = converge_all(args.workloads, args.target, device=args.device, data_dir=args.data_dir,
                           budget_s=args.budget, recipe=args.recipe, out=out)
    return 0 if all(r.reached for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered workloads")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style pattern, e.g. 'lenet*'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("env", help="describe this machine and software")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("data", help="list data sets, where each was found and its size")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("run", help="measure throughput and latency of a matrix of cells")
    p.add_argument("--workloads", type=_csv, required=True, help="comma-separated names")
    p.add_argument("--backends", type=_csv, default=["cpu"])
    p.add_argument("--modes", type=_csv, default=["train", "infer"])
    p.add_argument("--batch-sizes", type=_int_csv, default=[128])
    p.add_argument("--iters", type=int, default=20, help="timed iterations per cell")
    p.add_argument("--out", default="results.jsonl", help="JSONL file the records are appended to")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("converge", help="train workloads to an accuracy target on real data")
    p.add_argument("--workloads", type=_csv, required=True)
    p.add_argument("--target", default="quick", help="quick (CPU) or full (GPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--budget", type=float, default=None, help="training seconds (default: the target's)")
    p.add_argument("--recipe", default=None, help="recipe name (default: the target's)")
    p.add_argument("--out", default=None, help="JSONL file for the records")
    p.set_defaults(func=cmd_converge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RefbenchError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("refbench: interrupted; records written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
