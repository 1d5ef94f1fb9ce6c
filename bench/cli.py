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


_KERNELS_OUT = "kernels.jsonl"


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_csv(text: str) -> list[int]:
    try:
        return [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _writable(path: str) -> str:
    """``path`` if this process can append to it (creating it when absent), else a RefbenchError."""
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


def _spec(args):
    from bench.runner import MatrixSpec

    return MatrixSpec(workloads=args.workloads, backends=args.backends, modes=args.modes,
                      batch_sizes=args.batch_sizes, iters=args.iters, max_warmup=args.max_warmup,
                      max_warmup_s=args.max_warmup_s, timeout_s=args.timeout, check=not args.no_check,
                      threads=args.threads, fresh_compile_cache=args.fresh_compile_cache,
                      imports=tuple(args.imports))


def cmd_run(args) -> int:
    from bench.runner import parse_shard, run_matrix
    from bench.tables import print_table, record_row

    spec = _spec(args)
    spec.validate()
    shard = parse_shard(args.shard) if args.shard else None
    out = _writable(args.out)
    records = run_matrix(spec, out, resume=args.resume, shard=shard, isolation=args.isolation,
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


def _one_line(text: str | None, width: int = 80) -> str | None:
    """The first line of ``text``, cut to ``width`` characters."""
    if not text:
        return None
    line = text.strip().splitlines()[0]
    return line if len(line) <= width else line[: width - 3] + "..."


def cmd_kernels_static(args) -> int:
    from bench.environment import collect_env
    from bench.kernel_static import TABLE_COLUMNS, document_cases, static_check, static_records, table_rows
    from bench.results import ResultWriter, new_run_id
    from bench.tables import print_table

    out = _writable(args.out)
    cases = [case for case in document_cases() if args.kernel in (None, case.kernel)]
    print(f"compiling {len(cases)} cases for {args.static} (every config the pruner keeps)", file=sys.stderr)
    rows = static_check(cases, target=args.static, jobs=args.jobs)
    records = static_records(rows, run_id=new_run_id(), env=collect_env())
    with ResultWriter(out) as writer:
        for record in records:
            writer.append(record)
    print_table(table_rows(rows), TABLE_COLUMNS)
    failed = sum(record["status"] != "ok" for record in records)
    print(f"{len(records)} records appended to {out}; {failed} with problems")
    return 1 if failed else 0


def cmd_kernels_tune_tiles(args) -> int:
    from bench.kernel_tiles import tune_row_tiles
    from bench.tables import print_table

    if args.kernel != "softmax":
        raise RefbenchError("--tune-tiles measures the softmax row kernel's tiles: run `refbench kernels softmax --tune-tiles`")
    if (args.device or "cuda") != "cuda" or not _cuda_available():
        raise RefbenchError("--tune-tiles times tiles on a GPU (CUDA device), and this run has none")
    out = None if args.out == _KERNELS_OUT else _writable(args.out)
    entries = tune_row_tiles(device="cuda", out=out, **({"dtypes": args.dtypes} if args.dtypes else {}))
    print_table(entries, ["direction", "itemsize", "block_n", "block_m", "num_warps", "time_ms", "before_ms", "rows"])
    return 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cmd_kernels(args) -> int:
    import subprocess

    import torch

    from bench.kernel_runs import run_kernel_sweep
    from bench.tables import print_table

    if args.static:
        return cmd_kernels_static(args)
    if args.tune_tiles:
        return cmd_kernels_tune_tiles(args)
    if args.kernel is None:
        raise RefbenchError("name a kernel to sweep (softmax or conv2d), or ask for --static sm_90")
    out = _writable(args.out)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        # Triton picks the interpreter when it is imported, and the workloads' imports (torchvision)
        # have imported it already: run the sweep in a fresh interpreter that has the switch set.
        argv = [sys.executable, "-m", "bench", "kernels", args.kernel, "--device", device, "--out", out,
                *(["--quick"] if args.quick else []), *(["--dtypes", ",".join(args.dtypes)] if args.dtypes else [])]
        return subprocess.run(argv, env={**os.environ, "TRITON_INTERPRET": "1"}).returncode
    shapes = args.shapes or ("quick" if args.quick else "full")
    records = run_kernel_sweep(args.kernel, device=device, shapes=shapes, out=out, dtypes=args.dtypes,
                               log=lambda line: print(line, file=sys.stderr))
    rows = [{"kernel": r["workload"], "backend": r["backend"], "status": r["status"],
             "case": " ".join(f"{k}={v}" for k, v in r["variant"].items() if not isinstance(v, dict)),
             **{k: r["metrics"].get(k) for k in ("time_ms", "gbps", "tflops", "max_abs_err")},
             "reason": _one_line(r["error"]) if r["status"] != "ok" else None}
            for r in records]
    print_table(rows, ["kernel", "case", "backend", "status", "time_ms", "gbps", "tflops", "max_abs_err", "reason"])
    print(f"{len(records)} records appended to {out}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def cmd_converge(args) -> int:
    from bench.convergence import converge_all

    out = _writable(args.out) if args.out else None
    results = converge_all(args.workloads, args.target, device=args.device, data_dir=args.data_dir,
                           budget_s=args.budget, recipe=args.recipe, out=out)
    return 0 if all(r.reached for r in results) else 1


def cmd_sweep(args) -> int:
    from bench.sweep import sweep

    out = _writable(args.out) if args.out else None
    for name in args.workloads:
        best = sweep(name, budget_s=args.budget, n_trials=args.trials, device=args.device,
                     data_dir=args.data_dir, out=out, target=args.target, seed=args.seed)
        print(f"{name}: best recipe {best}")
    return 0


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

    p = sub.add_parser("run", help="measure throughput, latency, memory and correctness of a matrix of cells")
    p.add_argument("--workloads", type=_csv, required=True, help="names or shell patterns ('lenet*'), or all")
    p.add_argument("--backends", type=_csv, default=["cpu"], help="e.g. cpu,cpu+compile,cuda+amp-bf16")
    p.add_argument("--modes", type=_csv, default=["train", "infer"])
    p.add_argument("--batch-sizes", type=_int_csv, default=[128])
    p.add_argument("--iters", type=int, default=20, help="timed iterations per cell")
    p.add_argument("--max-warmup", type=int, default=50, help="most warm-up steps before timing")
    p.add_argument("--max-warmup-s", type=float, default=30.0, help="most warm-up seconds before timing")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a cell may take before it is killed")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds for the whole run; cells not started by then are recorded as timeout")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per cell (default: torch's)")
    p.add_argument("--no-check", action="store_true", help="skip the fp64 correctness check")
    p.add_argument("--fresh-compile-cache", action="store_true",
                   help="give each cell an empty Inductor/Triton cache, so compile_s is a cold compile")
    p.add_argument("--resume", action="store_true", help="skip cells already finished in --out")
    p.add_argument("--shard", default=None, help="i/n: run every n-th cell from the i-th (1-based)")
    p.add_argument("--isolation", default="forkserver", choices=["forkserver", "subprocess", "inline"],
                   help="how each cell gets its own process (inline: none, for debugging)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (it may register more workloads); repeatable")
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
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON file for the figures")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("kernels", help="sweep a Triton kernel against torch and torch.compile")
    p.add_argument("kernel", nargs="?", choices=["softmax", "conv2d"],
                   help="the kernel to sweep (with --static: to compile; default both)")
    p.add_argument("--static", metavar="TARGET", choices=["sm_90"], default=None,
                   help="compile every kept config for TARGET (no GPU needed) and check spills, loads, pipelining")
    p.add_argument("--jobs", type=int, default=None, help="--static: parallel compiles (default: CPU count)")
    p.add_argument("--quick", action="store_true", help="a few representative shapes (--shapes quick)")
    p.add_argument("--shapes", choices=["quick", "full", "gpu-check"], default=None,
                   help="GPU shape set: full (default), quick, or gpu-check (the short GPU check's fixed set)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtypes", type=_csv, default=None, help="softmax dtypes (default: fp32,fp16,bf16 on GPU)")
    p.add_argument("--tune-tiles", action="store_true",
                   help="softmax: time the row kernel's tiles and write kernels/softmax_tiles.json (GPU)")
    p.add_argument("--out", default=_KERNELS_OUT, help="records file (--tune-tiles: the tile table instead)")
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("converge", help="train workloads to an accuracy target on real data")
    p.add_argument("--workloads", type=_csv, required=True)
    p.add_argument("--target", default="quick", help="quick (CPU) or full (GPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--budget", type=float, default=None, help="training seconds (default: the target's)")
    p.add_argument("--recipe", default=None, help="recipe name (default: the target's)")
    p.add_argument("--out", default=None, help="JSONL file for the records")
    p.set_defaults(func=cmd_converge)

    p = sub.add_parser("sweep", help="search a workload's training recipe with Optuna within a time budget")
    p.add_argument("--workloads", type=_csv, required=True)
    p.add_argument("--budget", type=float, required=True, help="seconds per workload")
    p.add_argument("--trials", type=int, default=None, help="stop after this many trials")
    p.add_argument("--target", default="quick", help="the target whose metric and data are searched on")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSONL file for one record per trial")
    p.set_defaults(func=cmd_sweep)
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
