"""``refbench kernels``: the Triton kernels swept against their peers, or compiled for a GPU and read."""
from __future__ import annotations

import sys

from refbench.cli._options import (dtype_list, needs_torch, path_option, print_table, starts_again, table_options,
                                   writable)
from refbench.errors import RefbenchError
from refbench.run.settings import positive_int

KERNELS_OUT = "results/kernels.jsonl"


def register(sub) -> None:
    p = sub.add_parser(
        "kernels", help="sweep the Triton kernels against their peers",
        description="Time refbench's Triton softmax or conv2d against torch, torch.compile, cuDNN and public "
                    "kernels over a shape set (on a CPU: tiny shapes in Triton's interpreter), or compile every "
                    "kept configuration for a GPU this machine need not have and check registers, spills, load "
                    "widths and pipelining (--static).",
        epilog="examples:\n  refbench kernels softmax --shapes quick\n  refbench kernels --static sm_90")
    p.add_argument("kernel", nargs="?", choices=["softmax", "conv2d"],
                   help="the kernel to sweep (with --static: to compile; default both)")
    p.add_argument("--static", metavar="TARGET", choices=["sm_90"], default=None,
                   help="compile every kept config for TARGET (no GPU needed) and check spills, loads, pipelining")
    p.add_argument("--jobs", type=positive_int, default=None, help="--static: parallel compiles (default: CPU count)")
    p.add_argument("--quick", action="store_true", help="a few representative shapes (--shapes quick)")
    p.add_argument("--shapes", choices=["quick", "full", "gpu-check"], default=None,
                   help="GPU shape set: full (default), quick, or gpu-check (the short GPU check's fixed set)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtypes", type=dtype_list, default=None, help="softmax dtypes (default: fp32,fp16,bf16 on GPU)")
    p.add_argument("--tune-tiles", action="store_true",
                   help="softmax: time the row kernel's tiles and write kernels/softmax_tiles.json (GPU)")
    p.add_argument("--out", type=path_option, default=KERNELS_OUT,
                   help="records file (--tune-tiles: the tile table instead)")
    table_options(p)
    p.set_defaults(func=cmd_kernels, going_on=starts_again("the records written so far are kept"))


@needs_torch
def cmd_kernels(args) -> int:
    import torch

    from refbench.kernelbench.runs import run_kernel_sweep
    from refbench.report.tables import KERNEL_COLUMNS, kernel_row
    from refbench.run.progress import Progress
    from refbench.run.runner import exit_code, summary_line

    _check_options(args)
    if args.static:
        return _static(args)
    if args.tune_tiles:
        return _tune_tiles(args)
    if args.kernel is None:
        raise RefbenchError("name a kernel to sweep (softmax or conv2d), or ask for --static sm_90")
    out = writable(args.out)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shapes = args.shapes or ("quick" if args.quick else "full")
    with Progress(None, unit="case") as progress:
        records = run_kernel_sweep(args.kernel, device=device, shapes=shapes, out=out, dtypes=args.dtypes,
                                   log=lambda line: print(line, file=sys.stderr), on_record=lambda r: progress.done(
                                       f"{r['workload']} {r['backend']}: {r['status']}"))
    print_table([kernel_row(r) for r in records], KERNEL_COLUMNS, args)
    print(f"{len(records)} records appended to {out}")
    print(summary_line(records, "run the same command again"))
    return exit_code(records)


def _check_options(args) -> None:
    """Options that do not apply to what was asked are refused, not ignored."""
    if args.static:
        unused = [flag for flag, given in (("--quick", args.quick), ("--shapes", args.shapes),
                                           ("--device", args.device), ("--dtypes", args.dtypes),
                                           ("--tune-tiles", args.tune_tiles)) if given]
        if unused:
            raise RefbenchError(f"--static compiles every kept configuration for {args.static}; "
                                f"{', '.join(unused)} do not apply to it: drop them")
    elif args.jobs is not None:
        raise RefbenchError("--jobs is the number of parallel compiles of --static; a sweep times one case at a time")
    if args.kernel == "conv2d" and args.dtypes:
        raise RefbenchError("--dtypes picks the softmax sweep's dtypes; the conv2d sweep times its own precisions "
                            "(tf32, bf16 and bf16 channels-last on a GPU, fp32 on a CPU): drop --dtypes")
    if args.quick and args.shapes not in (None, "quick"):
        raise RefbenchError(f"--quick means --shapes quick, and --shapes {args.shapes} was given too: give one")


def _static(args) -> int:
    from refbench.harness.machine import collect_env
    from refbench.kernelbench.static import TABLE_COLUMNS, document_cases, static_check, static_records, table_rows
    from refbench.records.schema import new_run_id
    from refbench.records.store import ResultWriter

    out = writable(args.out)
    cases = [case for case in document_cases() if args.kernel in (None, case.kernel)]
    print(f"compiling {len(cases)} cases for {args.static} (every config the pruner keeps)", file=sys.stderr)
    rows = static_check(cases, target=args.static, jobs=args.jobs)
    records = static_records(rows, run_id=new_run_id(), env=collect_env())
    with ResultWriter(out) as writer:
        for record in records:
            writer.append(record)
    print_table(table_rows(rows), TABLE_COLUMNS, args)
    failed = sum(record["status"] != "ok" for record in records)
    print(f"{len(records)} records appended to {out}; {failed} with problems")
    return 1 if failed else 0


def _tune_tiles(args) -> int:
    import torch

    from refbench.kernelbench.tiles import tune_row_tiles

    if args.kernel != "softmax":
        raise RefbenchError("--tune-tiles measures the softmax row kernel's tiles: "
                            "run `refbench kernels softmax --tune-tiles`")
    if (args.device or "cuda") != "cuda" or not torch.cuda.is_available():
        raise RefbenchError("--tune-tiles times tiles on a GPU (CUDA device), and this run has none")
    out = None if args.out == KERNELS_OUT else writable(args.out)
    entries = tune_row_tiles(device="cuda", out=out, **({"dtypes": args.dtypes} if args.dtypes else {}))
    print_table(entries, ["direction", "itemsize", "block_n", "block_m", "num_warps", "time_ms", "before_ms", "rows"],
                args)
    return 0
