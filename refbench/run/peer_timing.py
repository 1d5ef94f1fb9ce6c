"""A train step timed by torch.utils.benchmark or by pyperf, in processes of their own: ``refbench validate``'s
second opinions of the figure ``refbench run`` records.

Neither uses refbench's clock (refbench.harness.timing), which is what they
judge; both time the same Step (refbench.harness.step), which is what is
measured::

    python -m refbench.run.peer_timing timer --workload mlp --device cpu --batch-size 128 --threads 1
    python -m refbench.run.peer_timing pyperf --workload mlp ... -o out.json   # pyperf spawns its workers

The ``timer`` form prints ``{"median_ms": ...}``: ``Timer.blocked_autorange``'s
median over blocks of at least ``MIN_RUN_S``, after its own warm-up. pyperf
calibrates its loops, warms up and takes values in worker processes of its
own (``--processes``); its JSON goes where ``-o`` says.
"""
from __future__ import annotations

import argparse
import json
import sys

MIN_RUN_S = 1.0


def _add_step_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)


def _step(args):
    from refbench.harness.step import prepare, set_threads
    from refbench.harness.triton_mode import choose_triton_mode

    choose_triton_mode()
    set_threads(args.threads)
    return prepare(args.workload, args.device, "train", args.batch_size, keep_reference_state=False)


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def timer_median_ms(args) -> float:
    import torch
    from torch.utils import benchmark

    step, sync = _step(args), _sync(args.device)
    timer = benchmark.Timer(stmt="step(); sync()", globals={"step": step, "sync": sync},
                            num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=MIN_RUN_S).median * 1e3


def run_pyperf() -> None:
    import pyperf

    def pass_on(cmd, args):
        cmd += ["--workload", args.workload, "--device", args.device, "--batch-size", str(args.batch_size),
                "--threads", str(args.threads)]

    runner = pyperf.Runner(add_cmdline_args=pass_on, program_args=("-m", "refbench.run.peer_timing", "pyperf"))
    _add_step_options(runner.argparser)
    args = runner.parse_args(sys.argv[2:])
    if args.worker:
        step, sync = _step(args), _sync(args.device)

        def loops_of_steps(loops: int) -> float:
            started = pyperf.perf_counter()
            for _ in range(loops):
                step()
            sync()
            return pyperf.perf_counter() - started

        runner.bench_time_func(f"{args.workload}-train-{args.batch_size}", loops_of_steps)
    else:
        runner.bench_time_func(f"{args.workload}-train-{args.batch_size}", lambda loops: 0.0)


def main() -> int:
    if sys.argv[1:2] == ["pyperf"]:
        run_pyperf()
        return 0
    parser = argparse.ArgumentParser(prog="python -m refbench.run.peer_timing timer")
    parser.add_argument("mode", choices=["timer"])
    _add_step_options(parser)
    print(json.dumps({"median_ms": timer_median_ms(parser.parse_args())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
