"""``python3 -m refbench.gpu_check``: the GPU check, its dry run, and the carry folder.

    python3 -m refbench.gpu_check --dry-run       # any machine: plan, imports held to the device image, carry
    python3 -m refbench.gpu_check --fill-carry    # a machine with a network: fill .carry/
    python3 -m refbench.gpu_check                 # the GPU machine: run the plan into reports/<gpu>/gpu-check/
    python3 -m refbench.gpu_check --resume        # again, measuring only what the folder lacks
    python3 -m refbench.gpu_check --rehearse --budget 120 --copy-to DIR   # the whole run on a CPU, scaled down

Exit status: 0 when every step ended ok (the dry run: ready), 1 otherwise, 2 on bad use.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from refbench.gpu_check import carry
from refbench.gpu_check.image import ROOT
from refbench.gpu_check.plan import WALL_BUDGET_S
from refbench.gpu_check.run import dry_run, gpu_folder_name, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m refbench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="rehearse on any machine: plan, imports, carry")
    parser.add_argument("--fill-carry", action="store_true", help="fill .carry/ for a machine without network")
    parser.add_argument("--rehearse", action="store_true", help="run the plan on this CPU (budgets scaled down)")
    parser.add_argument("--budget", type=float, default=WALL_BUDGET_S, help="wall seconds for all steps")
    parser.add_argument("--resume", action="store_true", help="keep the folder's results; measure what they lack")
    parser.add_argument("--copy-to", default=os.environ.get("OUT"),
                        help="the folder the results are packed into (default: $OUT)")
    parser.add_argument("--folder", default=None, help="where the results go (default: reports/<gpu>/gpu-check)")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error("--budget must be positive")

    if args.fill_carry:
        carry.fill()
        return 0
    if args.dry_run:
        problems = dry_run(args.budget)
        for problem in problems:
            print(f"gpu-check: problem: {problem}", file=sys.stderr)
        print("gpu-check dry run: " + ("ready" if not problems else f"{len(problems)} problems, not ready"))
        return 1 if problems else 0

    import torch

    if args.rehearse:
        device, name = "cpu", "cpu-rehearsal"
    elif torch.cuda.is_available():
        device, name = "cuda", gpu_folder_name(torch.cuda.get_device_name(0))
    else:
        print("gpu-check: error: needs a CUDA GPU (--dry-run or --rehearse run without one)", file=sys.stderr)
        return 2
    folder = Path(args.folder) if args.folder else ROOT / ("results" if args.rehearse else "reports") / name / "gpu-check"
    out = Path(args.copy_to) if args.copy_to else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for problem in carry.problems() if device == "cuda" else []:
        print(f"gpu-check: warning: {problem}", file=sys.stderr)
    outcomes = run(folder, budget_s=args.budget, device=device, out=out, resume=args.resume)
    failed = [o["step"] for o in outcomes if o["status"] != "ok"]
    left_out = sum(o["left_out_cells"] for o in outcomes)
    print(f"gpu-check: {len(outcomes) - len(failed)} of {len(outcomes)} steps ok"
          + (f"; not ok: {', '.join(failed)}" if failed else "")
          + (f"; {left_out} cells left out to fit the budget (plan.txt)" if left_out else "")
          + f"; results in {folder}" + (f", packed into {out}" if out else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
