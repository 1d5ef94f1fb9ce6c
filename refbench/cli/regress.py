"""``refbench compare``, ``nightly`` and ``bisect``: what got slower, since when, and which commit did it."""
from __future__ import annotations

import contextlib
import sys

from refbench.cli._options import (executor_of, executor_options, judging_options, matrix_of, matrix_options,
                                   needs_torch, path_option, starts_again, table_options, text_option, warn)
from refbench.errors import EXIT_INCOMPLETE, EXIT_OK, RefbenchError
from refbench.run.settings import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare two result sets; exit 1 on a regression",
        description="Compare the cells of NEW with BASE on the same machine: a change counts only when it is "
                    "beyond --threshold and significant on the raw samples. Exit 1 on a regression or a newly "
                    "failing cell.",
        epilog="examples:\n  refbench compare base.jsonl new.jsonl\n"
               "  refbench compare base.jsonl new.jsonl --markdown --fail-on throughput,correctness")
    p.add_argument("base", type=path_option,
                   help="JSONL results (or a pytest --benchmark-json file) to compare against")
    p.add_argument("new", type=path_option, help="JSONL results (or a pytest --benchmark-json file) to judge")
    judging_options(p)
    table_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "nightly", help="measure a night, judge it against earlier nights",
        description="Measure tonight's matrix (and pytest-benchmark files) into a history kept per machine, "
                    "judge the latest night against the nights before it, measure every flagged cell once more, "
                    "find change points, and write DIR/index.html. Exit 1 on a regression.",
        epilog="examples:\n  refbench nightly --history results/nightly --workloads mlp,lenet5 --batch-sizes 16\n"
               "  refbench nightly --history results/nightly --no-run")
    p.add_argument("--history", type=path_option, required=True, metavar="DIR",
                   help="the history: DIR/<env_key>/<date>-<commit>.jsonl")
    matrix_options(p, required=False)
    p.add_argument("--benchmark-json", type=path_option, action="append", default=[], metavar="FILE",
                   help="a pytest --benchmark-json file to add to the night; repeatable")
    p.add_argument("--no-run", action="store_true", help="measure nothing: judge the history and write the page")
    p.add_argument("--window", type=positive_int, default=7, help="earlier nights the latest is judged against")
    p.add_argument("--isolation", default="forkserver", choices=["forkserver", "subprocess", "inline"],
                   help="how each cell gets its own process (inline: none, for debugging)")
    executor_options(p)
    judging_options(p)
    p.set_defaults(func=cmd_nightly, going_on=_night_goes_on)

    p = sub.add_parser(
        "bisect", help="find the commit that made a cell slower",
        description="Find the first commit between --good and --bad where a cell got slower: git bisect run in a "
                    "scratch clone, measuring the cell with each commit's own refbench until each verdict is "
                    "significant. The work tree must be clean.",
        epilog="example:\n  refbench bisect --good v0.1 --bad main --cell 'mlp | cpu | train | bs=16'")
    p.add_argument("--good", required=True, metavar="REV", help="a commit where the cell was fast")
    p.add_argument("--bad", required=True, metavar="REV", help="a later commit where it is slow")
    p.add_argument("--cell", type=text_option, required=True, metavar="KEY", help="the cell as the tables print it, "
                                                                "e.g. 'mlp | cpu | train | bs=16'")
    p.add_argument("--metric", default="samples_per_s", help="the metric judged: samples_per_s, latency_ms.median, ...")
    p.add_argument("--repo", type=path_option, default=".",
                   help="the git repository (default: the current directory's)")
    p.add_argument("--measure", type=text_option, default=None, metavar="CMD",
                   help="measure with CMD run in each checkout: it writes the cell's record to $REFBENCH_BISECT_OUT "
                        "(default: that commit's `python -m refbench run` of the cell)")
    p.add_argument("--iters", type=positive_int, default=20, help="timed steps per measurement")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads of each measurement")
    p.add_argument("--max-repeats", type=positive_int, default=4,
                   help="measurements of a commit, pooled, before it is skipped as undecided")
    p.add_argument("--threshold", default="5%", help="smallest BAD/GOOD change worth bisecting")
    p.set_defaults(func=cmd_bisect, going_on=starts_again("the repository is as it was"))


def _night_goes_on(args, argv) -> str:
    return (f"what this night measured is kept; the next `refbench nightly --history {args.history}` stores it as "
            f"an interrupted night")


def cmd_compare(args) -> int:
    from refbench.regress.compare import compare_files, render
    from refbench.regress.gates import parse_gates, parse_threshold

    _no_longer_needed(args)
    result = compare_files([args.base], [args.new], threshold=parse_threshold(args.threshold),
                           fail_on=parse_gates(args.fail_on))
    for warning in result.warnings:
        warn(warning)
    print(render(result, style=args.style))
    if args.style == "csv":
        print(result.summary_line(), file=sys.stderr)
    return result.exit_code


def _no_longer_needed(args) -> None:
    if args.judge_busy:
        warn("--judge-busy is no longer needed: cells timed on a busy machine are judged by their interval")


def cmd_nightly(args) -> int:
    from refbench.regress.gates import parse_gates, parse_threshold
    from refbench.regress.nightly import judge_and_write, summary_lines

    _no_longer_needed(args)
    options = {"threshold": parse_threshold(args.threshold), "fail_on": parse_gates(args.fail_on),
               "window": args.window}
    measured = [flag for flag, given in (("--workloads", args.workloads), ("--benchmark-json", args.benchmark_json))
                if given]
    if args.no_run and measured:
        raise RefbenchError(f"--no-run measures nothing, but {' and '.join(measured)} asks for a measurement: "
                            f"drop one or the other")
    result = judge_and_write(args.history, **options) if args.no_run else _measure_night(args, options)
    for note in result.notes:
        warn(note)
    print("\n".join(summary_lines(result)))
    return result.exit_code


@needs_torch
def _measure_night(args, options: dict):
    from refbench.run.nightly import run_nightly

    def on_record(r):
        print(f"{r['workload']} {r['backend']} {r['mode']} bs={r['batch_size']}: {r['status']}", file=sys.stderr)

    matrix = matrix_of(args) if args.workloads else None
    with executor_of(args) if matrix else contextlib.nullcontext() as executor:
        return run_nightly(args.history, matrix=matrix, benchmark_files=args.benchmark_json, isolation=args.isolation,
                           time_budget_s=args.time_budget, on_record=on_record, executor=executor, **options)


def cmd_bisect(args) -> int:
    from refbench.regress.bisect import bisect
    from refbench.regress.gates import parse_threshold

    result = bisect(good=args.good, bad=args.bad, cell=args.cell, metric=args.metric, repo=args.repo,
                    measure=args.measure, iters=args.iters, threads=args.threads, max_repeats=args.max_repeats,
                    threshold=parse_threshold(args.threshold), log=lambda line: print(line, file=sys.stderr))
    if result.first_bad is None:
        for commit in result.candidates:
            print(f"  could be {commit[:12]}")
        print(f"INCONCLUSIVE: {result.reason}")
        return EXIT_INCOMPLETE
    there = f"{result.ratio:.3f}x of --good there" if result.ratio is not None else "its figures are in the log"
    print(f"first bad commit: {result.first_bad[:12]} {result.subject}")
    print(f"{args.metric}: {there} (--bad: {result.good_ratio:.3f}x); {result.steps} commits judged in "
          f"{result.wall_s:.0f} s")
    return EXIT_OK
