"""The ``refbench`` command line: parses arguments and calls library functions.

Every user error is a RefbenchError printed as one line with exit status 2.
Nothing heavy is imported before the arguments are parsed, so ``--help``
answers at once; then ``main`` chooses Triton's mode (refbench.harness.triton_mode)
before anything imports Triton.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Sequence

from refbench.regress.gates import GATES
from refbench.run.settings import (Settings, non_negative_int, positive_float, positive_int, threads_option,
                            variant_option)


_KERNELS_OUT = "results/kernels.jsonl"


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int_csv(text: str) -> list[int]:
    try:
        return [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _merged_variants(items: list[dict]) -> dict[str, dict]:
    """Repeated ``--variant W:K=V`` options as one variant per workload."""
    variants: dict[str, dict] = {}
    for item in items:
        for workload, variant in item.items():
            variants.setdefault(workload, {}).update(variant)
    return variants


_DTYPES = ("fp32", "fp16", "bf16", "fp64", "float32", "float16", "bfloat16", "float64")


def _dtypes(text: str) -> list[str]:
    names = _csv(text)
    bad = [name for name in names if name not in _DTYPES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown dtype {', '.join(bad) or '(none)'}; use fp32, fp16, bf16 or fp64")
    return names


def _writable(path: str) -> str:
    """``path`` if this process can append to it (creating it when absent), else a RefbenchError."""
    from refbench.errors import RefbenchError

    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError:
        raise RefbenchError(f"cannot write results to {path}: choose a writable file path with --out") from None
    return path


def cmd_list(args) -> int:
    from refbench.cli.listing import summary_lines, workload_rows

    rows = workload_rows(args.pattern)
    print(json.dumps(rows, indent=2) if args.json else "\n".join(summary_lines(rows)))
    return 0


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


def _data_line(row: dict) -> str:
    if row["status"] == "found":
        return f"{row['name']:<20} found    {row['size']}  ({row['found']})"
    if row["status"] == "stand-in":
        return (f"{row['name']:<20} missing  {row['stand_in']} stands in, {row['size']}  ({row['found']}); "
                f"{row['error']}")
    return f"{row['name']:<20} {row['status']:<8} {row['error']}"


def cmd_data(args) -> int:
    """One line per data set; exit 2 when a data set has a bad file."""
    from refbench.models.data import describe_sources

    rows = describe_sources(args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("\n".join(map(_data_line, rows)))
    return 2 if any(row["status"] == "bad" for row in rows) else 0


def _matrix(args):
    """The validated Matrix of ``run``'s matrix options (also ``nightly``'s)."""
    from refbench.run.matrix import Matrix

    variants = _merged_variants(args.variants)
    matrix = Matrix(workloads=args.workloads, backends=args.backends, modes=args.modes,
                    batch_sizes=args.batch_sizes, variants=variants, settings=Settings.from_args(args))
    matrix.validate()
    return matrix


def cmd_run(args) -> int:
    from refbench.run.runner import parse_shard, run_matrix
    from refbench.harness.noise import busy_warning
    from refbench.run.progress import Progress
    from refbench.report.tables import print_table, record_row

    matrix = _matrix(args)
    shard = parse_shard(args.shard) if args.shard else None
    out = _writable(args.out)
    if args.report:
        from refbench.report.build import check_writable_dir

        check_writable_dir(args.report)
    progress: list[Progress] = []

    def on_record(r):
        label = f"{r['workload']} {r['backend']} {r['mode']} bs={r['batch_size']}"
        status = r["status"] + (f" ({r['error'].splitlines()[0][:100]})" if r["error"] else "")
        if progress:
            progress[0].done(f"{label}: {status}")
        else:
            print(f"{label}: {status}, finished by an earlier run that was stopped: appended", file=sys.stderr)

    try:
        records = run_matrix(matrix, out, resume=args.resume, retry=args.retry, shard=shard,
                             isolation=args.isolation, time_budget_s=args.time_budget, on_record=on_record,
                             on_start=lambda n: progress.append(Progress(n, unit="cell")))
    finally:
        for bar in progress:
            bar.close()
    print_table([record_row(r) for r in records],
                ["workload", "backend", "mode", "batch", "status", "samples/s", "median ms", "cv", "peak mem MB",
                 "note"])
    print(f"{len(records)} records appended to {out}")
    warning = busy_warning(records)
    if warning:
        print(warning, file=sys.stderr)
    if args.report:
        from refbench.report.build import write_report

        _print_report(write_report([out], args.report))
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def _print_report(written) -> None:
    for warning in written.warnings:
        print(f"refbench: warning: {warning}", file=sys.stderr)
    print(f"report written to {written.markdown} and {written.html}")
    print("\n".join(written.summary))


def cmd_report(args) -> int:
    from refbench.report.build import write_report

    _print_report(write_report(args.results, args.out or os.path.dirname(os.path.abspath(args.results[0]))))
    return 0


def cmd_validate(args) -> int:
    from refbench.run.validate import print_validation, validate

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
    from refbench.harness.machine import collect_env
    from refbench.kernelbench.static import TABLE_COLUMNS, document_cases, static_check, static_records, table_rows
    from refbench.records.schema import new_run_id
    from refbench.records.store import ResultWriter
    from refbench.report.tables import print_table

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
    from refbench.kernelbench.tiles import tune_row_tiles
    from refbench.report.tables import print_table
    from refbench.errors import RefbenchError

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
    import torch

    from refbench.kernelbench.runs import run_kernel_sweep
    from refbench.run.progress import Progress
    from refbench.report.tables import print_table
    from refbench.errors import RefbenchError

    if args.static:
        return cmd_kernels_static(args)
    if args.tune_tiles:
        return cmd_kernels_tune_tiles(args)
    if args.kernel is None:
        raise RefbenchError("name a kernel to sweep (softmax or conv2d), or ask for --static sm_90")
    out = _writable(args.out)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shapes = args.shapes or ("quick" if args.quick else "full")
    with Progress(None, unit="case") as progress:
        records = run_kernel_sweep(args.kernel, device=device, shapes=shapes, out=out, dtypes=args.dtypes,
                                   log=lambda line: print(line, file=sys.stderr), on_record=lambda r: progress.done(
                                       f"{r['workload']} {r['backend']}: {r['status']}"))
    rows = [{"kernel": r["workload"], "backend": r["backend"], "status": r["status"],
             "case": " ".join(f"{k}={v}" for k, v in r["variant"].items() if not isinstance(v, dict)),
             **{k: r["metrics"].get(k) for k in ("time_ms", "gbps", "tflops", "max_abs_err")},
             "reason": _one_line(r["error"]) if r["status"] != "ok" else None}
            for r in records]
    print_table(rows, ["kernel", "case", "backend", "status", "time_ms", "gbps", "tflops", "max_abs_err", "reason"])
    print(f"{len(records)} records appended to {out}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def cmd_converge(args) -> int:
    from refbench.run.converge import SUMMARY_COLUMNS, Convergence, run_convergence, summary_row
    from refbench.run.progress import Progress
    from refbench.report.tables import print_table

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
    from refbench.run.sweep import check_sweep, sweep

    for name in args.workloads:   # every workload checked before the first search starts
        check_sweep(name, target=args.target, backend=args.backend, data_dir=args.data_dir)
    out = _writable(args.out) if args.out else None
    for name in args.workloads:
        best = sweep(name, budget_s=args.budget, n_trials=args.trials, backend=args.backend, threads=args.threads,
                     data_dir=args.data_dir, out=out, target=args.target, seed=args.seed)
        print(f"{name}: best recipe {best}")
    return 0


def cmd_ddp(args) -> int:
    from refbench.run.ddp import DDPConfig, run_ddp, scaling_row
    from refbench.report.tables import print_table

    variants = _merged_variants(args.variants)
    config = DDPConfig(nproc=args.nproc, backend=args.backend, dist_backend=args.dist_backend,
                       batch_size=args.batch_size, strong=args.strong, bucket_cap_mb=args.bucket_cap_mb,
                       static_graph=args.static_graph, sync_batchnorm=args.sync_batchnorm, variants=variants,
                       nnodes=args.nnodes, node_rank=args.node_rank, rdzv_endpoint=args.rdzv_endpoint,
                       rdzv_timeout_s=args.rdzv_timeout, iters=args.iters, warmup=args.warmup, check=args.check,
                       check_steps=args.check_steps, profile_steps=args.profile_steps, timeout_s=args.timeout,
                       threads=args.threads, seed=args.seed, imports=tuple(args.imports)).resolved()
    out = _writable(args.out) if config.writes_records else None
    records = run_ddp(args.workloads, config, out, on_record=lambda r: print(
        f"{r['workload']} world size {r['variant']['world_size']}: {r['status']}"
        + (f" ({r['error'].splitlines()[0][:160]})" if r["error"] else ""), file=sys.stderr))
    if not config.writes_records:
        print(f"node {config.node_rank} done; node 0 writes the records")
        return 0
    print_table([scaling_row(r) for r in records],
                ["workload", "world", "scaling", "status", "samples/s", "efficiency", "p50 ms", "p90 ms",
                 "all-reduce", "peak MB/rank"])
    print(f"{len(records)} records appended to {out}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def cmd_compare(args) -> int:
    from refbench.regress.compare import compare_files, render
    from refbench.regress.gates import parse_gates, parse_threshold

    result = compare_files([args.base], [args.new], threshold=parse_threshold(args.threshold),
                     fail_on=parse_gates(args.fail_on), judge_busy=args.judge_busy)
    for warning in result.warnings:
        print(f"refbench: warning: {warning}", file=sys.stderr)
    print(render(result, markdown=args.markdown))
    return result.exit_code


def cmd_nightly(args) -> int:
    from refbench.regress.gates import parse_gates, parse_threshold
    from refbench.run.nightly import run_nightly

    options = {"threshold": parse_threshold(args.threshold), "fail_on": parse_gates(args.fail_on),
               "window": args.window, "judge_busy": args.judge_busy}
    matrix = _matrix(args) if args.workloads and not args.no_run else None

    def on_record(r):
        print(f"{r['workload']} {r['backend']} {r['mode']} bs={r['batch_size']}: {r['status']}", file=sys.stderr)

    result = run_nightly(args.history, matrix=matrix, benchmark_files=args.benchmark_json, run=not args.no_run,
                         isolation=args.isolation, time_budget_s=args.time_budget, on_record=on_record, **options)
    for note in result.notes:
        print(f"refbench: warning: {note}", file=sys.stderr)
    from refbench.regress.nightly import summary_lines

    print("\n".join(summary_lines(result)))
    return result.exit_code


def cmd_bisect(args) -> int:
    from refbench.regress.bisect import bisect
    from refbench.regress.gates import parse_threshold

    result = bisect(good=args.good, bad=args.bad, cell=args.cell, metric=args.metric, repo=args.repo,
                    measure=args.measure, iters=args.iters, threads=args.threads, max_repeats=args.max_repeats,
                    threshold=parse_threshold(args.threshold), log=lambda line: print(line, file=sys.stderr))
    print(f"first bad commit: {result.first_bad[:12]} {result.subject}")
    print(f"{args.metric}: {result.ratio:.3f}x of --good there (--bad: {result.good_ratio:.3f}x); "
          f"{result.steps} commits measured in {result.wall_s:.0f} s")
    return 0


def _terminate(signum, frame):
    """SIGTERM ends a run as Ctrl-C does: the current cell's processes are killed, written records kept."""
    raise KeyboardInterrupt


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
    _matrix_options(p, required=True)
    p.add_argument("--resume", action="store_true", help="skip cells already finished in --out")
    p.add_argument("--retry", type=_csv, default=[], metavar="STATUS,...",
                   help="with --resume, measure cells with these statuses again too (e.g. oom,failed); "
                        "timeout, error and not_run always are")
    p.add_argument("--shard", default=None, help="i/n: run every n-th cell from the i-th (1-based)")
    p.add_argument("--isolation", default="forkserver", choices=["forkserver", "subprocess", "inline"],
                   help="how each cell gets its own process (inline: none, for debugging)")
    p.add_argument("--out", default="results/results.jsonl", help="JSONL file the records are appended to")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write the report of --out into DIR (report.md and report.html)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write the Markdown and self-contained HTML report of result files")
    p.add_argument("results", nargs="+", help="JSONL files from refbench run, converge or kernels")
    p.add_argument("-o", "--out", default=None, metavar="DIR",
                   help="directory for report.md and report.html (default: the first result file's)")
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
    p.add_argument("kernel", nargs="?", choices=["softmax", "conv2d"],
                   help="the kernel to sweep (with --static: to compile; default both)")
    p.add_argument("--static", metavar="TARGET", choices=["sm_90"], default=None,
                   help="compile every kept config for TARGET (no GPU needed) and check spills, loads, pipelining")
    p.add_argument("--jobs", type=positive_int, default=None, help="--static: parallel compiles (default: CPU count)")
    p.add_argument("--quick", action="store_true", help="a few representative shapes (--shapes quick)")
    p.add_argument("--shapes", choices=["quick", "full", "gpu-check"], default=None,
                   help="GPU shape set: full (default), quick, or gpu-check (the short GPU check's fixed set)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtypes", type=_dtypes, default=None, help="softmax dtypes (default: fp32,fp16,bf16 on GPU)")
    p.add_argument("--tune-tiles", action="store_true",
                   help="softmax: time the row kernel's tiles and write kernels/softmax_tiles.json (GPU)")
    p.add_argument("--out", default=_KERNELS_OUT, help="records file (--tune-tiles: the tile table instead)")
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
    p.add_argument("--out", default="results/converge.jsonl",
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

    p = sub.add_parser("ddp", help="data-parallel scaling under DistributedDataParallel, launched by torchrun")
    p.add_argument("--workloads", type=_csv, required=True, help="names or shell patterns ('lenet*'), or all")
    p.add_argument("--nproc", type=positive_int, required=True,
                   help="ranks per node; world sizes 1, 2, 4, ... up to it are measured")
    p.add_argument("--dist-backend", choices=["gloo", "nccl"], default=None,
                   help="torch.distributed backend (default: nccl for a CUDA backend, gloo on the CPU)")
    p.add_argument("--backend", default=None, help="the step's backend, e.g. cpu, cuda, cuda+amp-bf16 "
                   "(default: cuda with nccl, else cpu)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="samples per rank (weak scaling), or per step in all with --strong")
    p.add_argument("--strong", action="store_true", help="strong scaling: the global batch stays --batch-size")
    p.add_argument("--bucket-cap-mb", type=positive_float, default=None,
                   help="DDP's gradient bucket size in MiB (default: DDP's, 25)")
    p.add_argument("--static-graph", action="store_true", help="DDP's static_graph=True")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="convert BatchNorm to SyncBatchNorm (CUDA): statistics over the global batch")
    p.add_argument("--variant", dest="variants", type=variant_option, action="append", default=[],
                   metavar="WORKLOAD:OPTION=VALUE", help="a workload's variant; repeatable")
    p.add_argument("--nnodes", type=positive_int, default=1, help="nodes (run the same command on each)")
    p.add_argument("--node-rank", type=non_negative_int, default=None, help="this node's rank, 0 to nnodes-1")
    p.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                   help="node 0's address and a free port (torchrun's static rendezvous)")
    p.add_argument("--rdzv-timeout", type=positive_float, default=300.0,
                   help="seconds to wait for the other nodes")
    p.add_argument("--iters", type=positive_int, default=20, help="timed steps per world size")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed steps before them")
    p.add_argument("--check-steps", type=positive_int, default=3,
                   help="steps compared with single-process training")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the comparison")
    p.add_argument("--profile-steps", type=non_negative_int, default=3,
                   help="steps profiled for the all-reduce share (0: none)")
    p.add_argument("--timeout", type=positive_float, default=600.0,
                   help="seconds a rank may take before its watchdog stops the launch")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads per rank")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first, in every rank too (it may register workloads); repeatable")
    p.add_argument("--out", default="results/ddp.jsonl", help="JSONL file the records are appended to")
    p.set_defaults(func=cmd_ddp)

    p = sub.add_parser("compare", help="compare two result sets; exit 1 on a regression or a newly failing cell")
    p.add_argument("base", help="JSONL results (or a pytest --benchmark-json file) to compare against")
    p.add_argument("new", help="JSONL results (or a pytest --benchmark-json file) to judge")
    _judging_options(p)
    p.add_argument("--markdown", action="store_true", help="print a Markdown table fit for a CI comment")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("nightly", help="measure a night into a history, judge it against earlier nights, "
                                       "write DIR/index.html; exit 1 on a regression")
    p.add_argument("--history", required=True, metavar="DIR", help="the history: DIR/<env_key>/<date>-<commit>.jsonl")
    _matrix_options(p, required=False)
    p.add_argument("--benchmark-json", action="append", default=[], metavar="FILE",
                   help="a pytest --benchmark-json file to add to the night; repeatable")
    p.add_argument("--no-run", action="store_true", help="measure nothing: judge the history and write the page")
    p.add_argument("--window", type=positive_int, default=7, help="earlier nights the latest is judged against")
    p.add_argument("--isolation", default="forkserver", choices=["forkserver", "subprocess", "inline"])
    _judging_options(p)
    p.set_defaults(func=cmd_nightly)

    p = sub.add_parser("bisect", help="find the commit that made a cell slower (git bisect run in a clone)")
    p.add_argument("--good", required=True, metavar="REV", help="a commit where the cell was fast")
    p.add_argument("--bad", required=True, metavar="REV", help="a later commit where it is slow")
    p.add_argument("--cell", required=True, metavar="KEY", help="the cell as the tables print it, "
                                                                "e.g. 'mlp | cpu | train | bs=16'")
    p.add_argument("--metric", default="samples_per_s", help="samples_per_s (default), latency_ms.median, ...")
    p.add_argument("--repo", default=".", help="the git repository (default: the current directory's)")
    p.add_argument("--measure", default=None, metavar="CMD",
                   help="measure with CMD run in each checkout: it writes the cell's record to $REFBENCH_BISECT_OUT "
                        "(default: that commit's `python -m refbench run` of the cell)")
    p.add_argument("--iters", type=positive_int, default=20, help="timed steps per measurement")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--max-repeats", type=positive_int, default=4,
                   help="measurements of a commit, pooled, before it is skipped as undecided")
    p.add_argument("--threshold", default="5%", help="smallest BAD/GOOD change worth bisecting")
    p.set_defaults(func=cmd_bisect)
    return parser


def _matrix_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--workloads", type=_csv, required=required, help="names or shell patterns ('lenet*'), or all")
    p.add_argument("--backends", type=_csv, default=["cpu"], help="e.g. cpu,cpu+compile,cuda+amp-bf16")
    p.add_argument("--modes", type=_csv, default=["train", "infer"])
    p.add_argument("--batch-sizes", type=_int_csv, default=[128])
    p.add_argument("--variant", dest="variants", type=variant_option, action="append", default=[],
                   metavar="WORKLOAD:OPTION=VALUE", help="a workload's variant, e.g. lenet5:activation=tanh; repeatable")
    Settings.add_arguments(p)
    p.add_argument("--time-budget", type=positive_float, default=None,
                   help="seconds for the whole run; cells not started by then are recorded as not_run")


def _judging_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", default="5%", help="smallest change that counts, e.g. 5%% (and it must be "
                                                     "significant on the raw samples)")
    p.add_argument("--fail-on", type=_csv, default=list(GATES), metavar=",".join(GATES),
                   help="what makes the exit status 1 (default: all)")
    p.add_argument("--judge-busy", action="store_true",
                   help="judge cells timed while other processes took the free cores (by default: unstable)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        return 2
    from refbench.harness.triton_mode import choose_triton_mode

    choose_triton_mode()
    signal.signal(signal.SIGTERM, _terminate)
    from refbench.errors import RefbenchError

    try:
        return args.func(args)
    except RefbenchError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("refbench: interrupted; records written so far are kept (`--resume` goes on)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
