"""The ``refbench`` command line: parses arguments and calls library functions.

Every user error is a RefbenchError printed as one line with exit status 2.
Nothing heavy is imported before the arguments are parsed, so ``--help``
answers at once; then ``main`` chooses Triton's mode (bench.triton_mode)
before anything imports Triton.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from bench.settings import Settings, non_negative_int, positive_float, positive_int, threads_option, variant_option


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_csv(text: str) -> list[int]:
    try:
        return [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _writable(path: str) -> str:
    """``path`` if this process can append to it (creating it when absent), else a RefbenchError."""
    from reference_models import RefbenchError

    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError:
        raise RefbenchError(f"cannot write results to {path}: choose a writable file path with --out") from None
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
    from bench.matrix import Matrix
    from bench.runner import parse_shard, run_matrix
    from bench.tables import print_table, record_row

    variants: dict = {}
    for item in args.variants:
        for workload, variant in item.items():
            variants.setdefault(workload, {}).update(variant)
    matrix = Matrix(workloads=args.workloads, backends=args.backends, modes=args.modes,
                    batch_sizes=args.batch_sizes, variants=variants, settings=Settings.from_args(args))
    matrix.validate()
    shard = parse_shard(args.shard) if args.shard else None
    out = _writable(args.out)
    records = run_matrix(matrix, out, resume=args.resume, shard=shard, isolation=args.isolation,
                         time_budget_s=args.time_budget, on_record=lambda r: print(
                             f"{r['workload']} {r['backend']} {r['mode']} bs={r['batch_size']}: {r['status']}"
                             + (f" ({r['error'].splitlines()[0][:120]})" if r["error"] else ""), file=sys.stderr))
    print_table([record_row(r) for r in records],
                ["workload", "backend", "mode", "batch", "status", "samples/s", "median ms", "cv", "peak mem MB"])
    print(f"{len(records)} records appended to {out}")
    if args.report:
        from bench.report import write_report

        print(f"report written to {write_report([out], _writable(args.report))}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def cmd_report(args) -> int:
    from bench.report import write_report
    from reference_models import RefbenchError

    missing = [path for path in args.results if not os.path.isfile(path)]
    if missing:
        raise RefbenchError(f"no result file {missing[0]}; give the JSONL that `refbench run --out` wrote")
    out = _writable(args.out or os.path.splitext(args.results[0])[0] + ".md")
    print(f"report written to {write_report(args.results, out)}")
    return 0


def cmd_validate(args) -> int:
    from bench.validate import print_validation, validate

    out = _writable(args.out) if args.out else None
    result = validate(workloads=args.workloads, device=args.device, batch_size=args.batch_size,
                      repeats=args.repeats, iters=args.iters, threads=args.threads, out=out)
    print_validation(result)
    return 0 if result["agrees"] else 1


def cmd_kernels(args) -> int:
    import torch

    from bench.kernel_runs import run_kernel_sweep
    from bench.tables import print_table

    out = _writable(args.out)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    records = run_kernel_sweep(args.kernel, device=device, quick=args.quick, out=out, dtypes=args.dtypes,
                               log=lambda line: print(line, file=sys.stderr))
    rows = [{"kernel": r["workload"], "backend": r["backend"], "status": r["status"],
             "case": " ".join(f"{k}={v}" for k, v in r["variant"].items() if not isinstance(v, dict)),
             **{k: r["metrics"].get(k) for k in ("time_ms", "gbps", "tflops", "max_abs_err")}}
            for r in records]
    print_table(rows, ["kernel", "case", "backend", "status", "time_ms", "gbps", "tflops", "max_abs_err"])
    print(f"{len(records)} records appended to {out}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def cmd_converge(args) -> int:
    from bench.convergence_runs import SUMMARY_COLUMNS, Convergence, run_convergence, summary_row
    from bench.progress import Progress
    from bench.tables import print_table

    request = Convergence(workloads=args.workloads, backends=args.backends, target=args.target, recipe=args.recipe,
                          seeds=args.seeds, as_written=args.as_written, max_steps=args.max_steps,
                          wall_cap_s=args.wall_cap, threads=args.threads, data_dir=args.data_dir)
    groups = request.groups()   # every bad option fails here, before anything trains
    out = _writable(args.out)
    with Progress(len(groups) * args.seeds) as progress:
        records = run_convergence(request, out=out, resume=args.resume, progress=progress)
    summaries = [r for r in records if "seeds" in r["metrics"]]
    print_table([summary_row(r) for r in summaries], SUMMARY_COLUMNS)
    print(f"{len(records)} records appended to {out}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in summaries) else 1


def cmd_sweep(args) -> int:
    from bench.sweep import check_sweep, sweep

    for name in args.workloads:   # every workload checked before the first search starts
        check_sweep(name, target=args.target, backend=args.backend, data_dir=args.data_dir)
    out = _writable(args.out) if args.out else None
    for name in args.workloads:
        best = sweep(name, budget_s=args.budget, n_trials=args.trials, backend=args.backend, threads=args.threads,
                     data_dir=args.data_dir, out=out, target=args.target, seed=args.seed)
        print(f"{name}: best recipe {best}")
    return 0


class _UsageError(Exception):
    """A malformed command line; its message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (what was wrong, where the help is), not the whole usage."""

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: {message} (`{self.prog} --help` lists the options)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="refbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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

    p = sub.add_parser("run", help="measure throughput, latency, memory and correctness of a matrix of cells")
    p.add_argument("--workloads", type=_csv, required=True, help="names or shell patterns ('lenet*'), or all")
    p.add_argument("--backends", type=_csv, default=["cpu"], help="e.g. cpu,cpu+compile,cuda+amp-bf16")
    p.add_argument("--modes", type=_csv, default=["train", "infer"])
    p.add_argument("--batch-sizes", type=_int_csv, default=[128])
    p.add_argument("--variant", dest="variants", type=variant_option, action="append", default=[],
                   metavar="WORKLOAD:OPTION=VALUE", help="a workload's variant, e.g. lenet5:activation=tanh; repeatable")
    Settings.add_arguments(p)
    p.add_argument("--time-budget", type=positive_float, default=None,
                   help="seconds for the whole run; cells not started by then are recorded as not_run")
    p.add_argument("--resume", action="store_true", help="skip cells already finished in --out")
    p.add_argument("--shard", default=None, help="i/n: run every n-th cell from the i-th (1-based)")
    p.add_argument("--isolation", default="forkserver", choices=["forkserver", "subprocess", "inline"],
                   help="how each cell gets its own process (inline: none, for debugging)")
    p.add_argument("--out", default="results.jsonl", help="JSONL file the records are appended to")
    p.add_argument("--report", default=None, help="also write the Markdown report of --out here")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write the Markdown report of result files")
    p.add_argument("results", nargs="+", help="JSONL files from refbench run")
    p.add_argument("--out", default=None, help="Markdown file (default: the first result file with .md)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("validate", help="check refbench's timings against torch.utils.benchmark; harness overhead")
    p.add_argument("--workloads", type=_csv, default=["mlp", "lenet5"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="isolated runs of one cell, for the run-to-run CV")
    p.add_argument("--iters", type=int, default=50, help="timed iterations per measurement")
    p.add_argument("--threads", type=threads_option, default=1, help="torch CPU threads: N or all (default 1)")
    p.add_argument("--out", default=None, help="JSON file for the figures")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("kernels", help="sweep a Triton kernel against torch and torch.compile")
    p.add_argument("kernel", choices=["softmax", "conv2d"])
    p.add_argument("--quick", action="store_true", help="a few representative shapes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtypes", type=_csv, default=None, help="softmax dtypes (default: fp32,fp16,bf16 on GPU)")
    p.add_argument("--out", default="kernels.jsonl")
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("converge", help="train workloads to an accuracy target on real data, over seeds and backends")
    p.add_argument("--workloads", type=_csv, required=True, help="names or shell patterns ('lenet*'), or all")
    p.add_argument("--backends", type=_csv, default=["cpu"],
                   help="e.g. cpu,cpu+compile,cuda+amp-bf16; each device's fp32 eager base (cpu, cuda) is added "
                        "for parity when not given")
    p.add_argument("--target", default="quick", help="the workloads' target: quick (CPU, CI) or full (GPU)")
    p.add_argument("--recipe", default=None, help="recipe name, e.g. document or fast (default: the target's)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds per backend; the mean decides (default 3)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="optimizer steps (default: the target's budget)")
    p.add_argument("--wall-cap", type=positive_float, default=None,
                   help="seconds after which a run counts as hung (default: the target's, about 5x its measured time)")
    p.add_argument("--as-written", action="store_true",
                   help="also train each workload's as_written=True variant, beside the fixed default")
    p.add_argument("--threads", type=threads_option, default=1, help="torch CPU threads: N or all (default 1)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="results-converge.jsonl",
                   help="JSONL file the records are appended to (one per seed, one summary per group)")
    p.add_argument("--resume", action="store_true", help="skip the seeds already finished in --out")
    p.set_defaults(func=cmd_converge)

    p = sub.add_parser("sweep", help="search a workload's training recipe with Optuna within a time budget")
    p.add_argument("--workloads", type=_csv, required=True)
    p.add_argument("--budget", type=positive_float, required=True, help="seconds per workload")
    p.add_argument("--trials", type=positive_int, default=None, help="stop after this many trials")
    p.add_argument("--target", default="quick", help="the target whose metric and data are searched on")
    p.add_argument("--backend", default="cpu", help="the backend every trial trains on, e.g. cpu or cuda+amp-bf16")
    p.add_argument("--threads", type=threads_option, default=1, help="torch CPU threads: N or all (default 1)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", default=None, help="JSONL file for one record per trial")
    p.set_defaults(func=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        return 2
    from bench.triton_mode import choose_triton_mode

    choose_triton_mode()
    from reference_models import RefbenchError

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
