"""``refbench converge`` and ``refbench sweep``: training to a target on real data, and searching its recipe."""
from __future__ import annotations

from refbench.cli._options import (csv_list, executor_of, executor_options, goes_on_with_resume, needs_torch,
                                   path_option, print_table, starts_again, table_options, writable)
from refbench.run.settings import non_negative_int, positive_float, positive_int, threads_option


def register(sub) -> None:
    p = sub.add_parser(
        "converge", help="train workloads to a target on real data, over seeds",
        description="Train each workload to its target on real data, over seeds and backends: one record per "
                    "seed (curve, final metric, time to target) and one summary per group, whose mean over the "
                    "seeds decides; each backend's mean is held to its device's fp32 eager base (parity).",
        epilog="examples:\n  refbench converge --workloads lenet5,mlp --backends cpu,cpu+compile --seeds 3\n"
               "  refbench converge --workloads mlp --as-written --recipe document")
    p.add_argument("--workloads", type=csv_list, required=True, help="names or shell patterns ('lenet*'), or all")
    p.add_argument("--backends", type=csv_list, default=["cpu"],
                   help="e.g. cpu,cpu+compile,cuda+amp-bf16; each device's fp32 eager base (cpu, cuda) is added "
                        "for parity when not given")
    p.add_argument("--target", default="quick", help="the workloads' target: quick (CPU, CI) or full (GPU)")
    p.add_argument("--recipe", default=None, help="recipe name, e.g. document or fast (default: the target's)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds per backend; the mean decides")
    p.add_argument("--max-steps", type=positive_int, default=None, help="optimizer steps (default: the target's budget)")
    p.add_argument("--wall-cap", type=positive_float, default=None,
                   help="seconds after which a run counts as hung (default: the target's, about 5x its measured time)")
    p.add_argument("--as-written", action="store_true",
                   help="also train each workload's as_written=True variant, beside the fixed default")
    p.add_argument("--threads", type=threads_option, default=1, help="torch CPU threads: N or all")
    p.add_argument("--data-dir", type=path_option, default=None, help="a directory of data sets, looked in first "
                                                    "(default: $REFBENCH_DATA, then the usual places)")
    p.add_argument("--out", type=path_option, default="results/converge.jsonl",
                   help="JSONL file the records are appended to (one per seed, one summary per group)")
    p.add_argument("--resume", action="store_true", help="skip the seeds already finished in --out")
    executor_options(p)
    table_options(p)
    p.set_defaults(func=cmd_converge, going_on=goes_on_with_resume)

    p = sub.add_parser(
        "sweep", help="search a workload's training recipe with Optuna",
        description="Search a workload's training recipe (optimizer, learning rate, batch size, ...) with Optuna "
                    "within a time budget, pruning trials that fall behind; the best recipe is printed.",
        epilog="example:\n  refbench sweep --workloads lenet5 --budget 120")
    p.add_argument("--workloads", type=csv_list, required=True, help="workloads to search, one after another")
    p.add_argument("--budget", type=positive_float, required=True, help="seconds per workload")
    p.add_argument("--trials", type=positive_int, default=None, help="stop after this many trials (default: the budget)")
    p.add_argument("--target", default="quick", help="the target whose metric and data are searched on")
    p.add_argument("--backend", default="cpu", help="the backend every trial trains on, e.g. cpu or cuda+amp-bf16")
    p.add_argument("--threads", type=threads_option, default=1, help="torch CPU threads: N or all")
    p.add_argument("--data-dir", type=path_option, default=None, help="a directory of data sets, looked in first "
                                                    "(default: $REFBENCH_DATA, then the usual places)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="the search's seed")
    p.add_argument("--out", type=path_option, default=None, help="JSONL file for one record per trial (default: none)")
    p.set_defaults(func=cmd_sweep, going_on=starts_again("the trials written so far are kept"))


@needs_torch
def cmd_converge(args) -> int:
    from refbench.report.tables import CONVERGE_COLUMNS, converge_row
    from refbench.run.converge import Convergence, run_convergence
    from refbench.run.progress import Progress
    from refbench.run.runner import exit_code, summary_line

    request = Convergence(workloads=args.workloads, backends=args.backends, target=args.target, recipe=args.recipe,
                          seeds=args.seeds, as_written=args.as_written, max_steps=args.max_steps,
                          wall_cap_s=args.wall_cap, threads=args.threads, data_dir=args.data_dir)
    groups = request.groups()   # every bad option fails here, before anything trains
    out = writable(args.out)
    with executor_of(args) as executor, Progress(len(groups) * args.seeds) as progress:
        records = run_convergence(request, out=out, resume=args.resume, progress=progress, executor=executor)
    summaries = [r for r in records if "seeds" in r["metrics"]]
    print_table([converge_row(r) for r in summaries], CONVERGE_COLUMNS, args)
    print(f"{len(records)} records appended to {out}")
    print(summary_line(summaries, "rerun the same command with --resume"))
    return exit_code(summaries)


@needs_torch
def cmd_sweep(args) -> int:
    from refbench.run.sweep import check_sweep, sweep

    for name in args.workloads:   # every workload checked before the first search starts
        check_sweep(name, target=args.target, backend=args.backend, data_dir=args.data_dir)
    out = writable(args.out) if args.out else None
    for name in args.workloads:
        best = sweep(name, budget_s=args.budget, n_trials=args.trials, backend=args.backend, threads=args.threads,
                     data_dir=args.data_dir, out=out, target=args.target, seed=args.seed)
        print(f"{name}: best recipe {best}")
    return 0
