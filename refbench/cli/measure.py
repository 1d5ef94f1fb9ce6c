"""``refbench run`` and ``refbench validate``: a matrix of cells measured, and the clock that measures them."""
from __future__ import annotations

import sys

from refbench.cli._options import (csv_list, executor_of, executor_options, goes_on_with_resume, int_list, matrix_of,
                                   matrix_options, needs_torch, path_option, print_table, starts_again, table_options,
                                   writable)
from refbench.errors import EXIT_GATE, EXIT_OK
from refbench.run.settings import positive_int, threads_option


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="measure speed, memory and correctness of a matrix of cells",
        description="Measure a matrix of cells (workloads x backends x modes x batch sizes), each in its own "
                    "process: first step, check against float64, warm-up, timed steps, memory, FLOPs, energy. "
                    "One JSON record per cell is appended to --out.",
        epilog="examples:\n"
               "  refbench run --workloads lenet5,mlp --backends cpu,cpu+compile --batch-sizes 16,64\n"
               "  refbench run --workloads all --backends cuda,amp-bf16,compile --report rep\n"
               "  refbench run ... --resume            # finish a run that was stopped\n"
               "  refbench run ... --executor ray --address HEAD:6379 --node-label ray.io/accelerator-type=H100")
    matrix_options(p, required=True)
    executor_options(p)
    p.add_argument("--resume", action="store_true", help="skip cells already finished in --out")
    p.add_argument("--retry", type=csv_list, default=[], metavar="STATUS,...",
                   help="with --resume, measure cells with these statuses again too (e.g. oom,failed); "
                        "timeout, error and not_run always are")
    p.add_argument("--shard", default=None, help="i/n: run every n-th cell from the i-th (1-based)")
    p.add_argument("--isolation", default="forkserver", choices=["forkserver", "subprocess", "inline"],
                   help="how each cell gets its own process (inline: none, for debugging)")
    p.add_argument("--out", type=path_option, default="results/results.jsonl",
                   help="JSONL file the records are appended to")
    p.add_argument("--report", type=path_option, default=None, metavar="DIR",
                   help="also write the report of --out into DIR (report.md and report.html)")
    table_options(p)
    p.set_defaults(func=cmd_run, going_on=goes_on_with_resume)

    p = sub.add_parser(
        "validate", help="check run's figures against torch.utils.benchmark and pyperf",
        description="Check the step time `refbench run` records (its own fresh process, the run's warm-up) against "
                    "the same step timed by torch.utils.benchmark and by pyperf in fresh processes of their own, "
                    "taking turns; and show what a cell costs besides its steps (start-up, set-up, check, warm-up).",
        epilog="example:\n  refbench validate --workloads mlp,lenet5,cnn_small --batch-sizes 16,128")
    p.add_argument("--workloads", type=csv_list, default=["mlp", "lenet5", "cnn_small"], help="workloads to time")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-sizes", type=int_list, default=[128], help="samples per step, comma-separated "
                                                                      "(default: run's, 128)")
    p.add_argument("--repeats", type=positive_int, default=3, help="fresh processes of each clock, taking turns")
    p.add_argument("--iters", type=positive_int, default=20, help="timed iterations of run's cell")
    p.add_argument("--threads", type=threads_option, default=1, help="torch CPU threads: N or all")
    p.add_argument("--out", type=path_option, default=None, help="JSON file for the figures (default: none)")
    p.set_defaults(func=cmd_validate, going_on=starts_again("nothing was written"))


@needs_torch
def cmd_run(args) -> int:
    from refbench.harness.noise import busy_warning
    from refbench.report.tables import RUN_COLUMNS, run_row
    from refbench.run.progress import Progress
    from refbench.run.runner import exit_code, parse_shard, run_matrix, summary_line

    matrix = matrix_of(args)
    shard = parse_shard(args.shard) if args.shard is not None else None
    out = writable(args.out)
    if args.report:
        from refbench.report.build import check_writable_dir

        check_writable_dir(args.report, "--report")
    progress: list[Progress] = []

    def on_record(r):
        label = f"{r['workload']} {r['backend']} {r['mode']} bs={r['batch_size']}"
        status = r["status"] + (f" ({r['error'].splitlines()[0][:100]})" if r["error"] else "")
        if progress:
            progress[0].done(f"{label}: {status}")
        else:
            print(f"{label}: {status}, finished by an earlier run that was stopped: appended", file=sys.stderr)

    try:
        with executor_of(args) as executor:
            records = run_matrix(matrix, out, resume=args.resume, retry=args.retry, shard=shard,
                                 isolation=args.isolation, time_budget_s=args.time_budget, on_record=on_record,
                                 on_start=lambda n: progress.append(Progress(n, unit="cell")), executor=executor)
    finally:
        for bar in progress:
            bar.close()
    print_table([run_row(r) for r in records], RUN_COLUMNS, args)
    print(f"{len(records)} records appended to {out}")
    warning = busy_warning(records)
    if warning:
        print(warning, file=sys.stderr)
    if args.report:
        from refbench.cli.report import print_report
        from refbench.report.build import write_report

        print_report(write_report([out], args.report))
    print(summary_line(records))
    return exit_code(records)


@needs_torch
def cmd_validate(args) -> int:
    from refbench.run.validate import print_validation, validate

    out = writable(args.out) if args.out else None
    result = validate(workloads=args.workloads, device=args.device, batch_sizes=args.batch_sizes,
                      repeats=args.repeats, iters=args.iters, threads=args.threads, out=out)
    print_validation(result)
    return EXIT_OK if result["agrees"] else EXIT_GATE
