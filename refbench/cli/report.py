"""``refbench report``: the Markdown and self-contained HTML report of result files."""
from __future__ import annotations

import os

from refbench.cli._options import path_option, warn


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="write the Markdown and HTML report of result files",
        description="Write report.md and one self-contained report.html (figures embedded) of result files: "
                    "speed-ups over eager, memory, latency spread, correctness, convergence, kernels, scaling, "
                    "and every cell that did not measure, with why.",
        epilog="example:\n  refbench report results/cpu/bench.jsonl -o results/cpu")
    p.add_argument("results", type=path_option, nargs="+",
                   help="JSONL files from refbench run, converge, ddp or kernels")
    p.add_argument("-o", "--out", type=path_option, default=None, metavar="DIR",
                   help="directory for report.md and report.html (default: the first result file's)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from refbench.report.build import write_report

    print_report(write_report(args.results, args.out or os.path.dirname(os.path.abspath(args.results[0]))))
    return 0


def print_report(written) -> None:
    for warning in written.warnings:
        warn(warning)
    print(f"report written to {written.markdown} and {written.html}")
    print("\n".join(written.summary))
