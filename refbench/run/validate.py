"""``refbench validate``: is refbench's clock right, and what does a cell cost besides its steps?

1. Agreement. On one train step (same model, batch and optimizer, in this
   process) refbench's median step time (refbench.harness.timing.measure) is compared
   with the median of ``torch.utils.benchmark.Timer`` timing the same step
   one call at a time; after refbench's warm-up the two clocks take turns,
   one step each, so that drift of a busy machine hits both alike. They must agree within 3% on a GPU and 5% on a CPU
   (``TOLERANCE``). ``Timer.blocked_autorange``'s median (of blocks of many
   steps, so it follows the mean and takes in the slow tail of a busy
   machine) is reported next to it, as is refbench's mean.
2. Overhead. The same cell run isolated (refbench.run.runner, fork-server
   children) reports its phases: process start, set-up, first step, the fp64
   check, warm-up and the timed steps; a fresh interpreter's import time is
   measured too, which is what ``--isolation subprocess`` pays per cell.
3. Repeatability. The isolated cell runs ``repeats`` times: the CV of its
   median across runs, and the mean CV of the steps within a run.
4. CUDA graphs (GPU only). The ``cudagraphs`` backend's replay of a train
   step against the same step captured by hand, the way the PyTorch docs
   show whole-network capture (capturable optimizer, static inputs, warm-up
   on a side stream): the backend should reach ``CUDAGRAPH_GOAL`` of the
   hand-made graph's speed.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils import benchmark

from refbench.run.matrix import Matrix
from refbench.run.runner import run_matrix
from refbench.run.settings import Settings
from refbench.harness.step import prepare, set_threads
from refbench.harness.timing import Measurement, StepTimer, measure
from refbench.errors import RefbenchError

TOLERANCE = {"cuda": 0.03, "cpu": 0.05}
CUDAGRAPH_GOAL = 0.9


def agreement(name: str, device: str, batch_size: int, *, iters: int = 50, rounds: int = 3) -> dict:
    """refbench's and torch.utils.benchmark's median of the same train step, in milliseconds.

    Timer runs at the thread count the step runs at (its default is one thread).
    """
    step = prepare(name, device, "train", batch_size, keep_reference_state=False)
    ours, single, blocked = [], [], []
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    step_timer = StepTimer(device)
    warm = measure(step, device, iters=5, max_warmup=20, max_warmup_s=10).measurement
    block = warm.block   # refbench times short steps in blocks: Timer gets the same blocks
    for _ in range(rounds):
        for _ in range(iters):
            ours.append(step_timer(step, block))
            single.append(timer.timeit(block).median * 1e3)
        blocked += [t * 1e3 for t in timer.blocked_autorange(min_run_time=0.3).times]
    ours_ms, theirs_ms = statistics.median(ours), statistics.median(single)
    return {"workload": name, "refbench_ms": ours_ms, "refbench_mean_ms": statistics.fmean(ours),
            "torch_benchmark_ms": theirs_ms, "torch_benchmark_blocked_ms": statistics.median(blocked),
            "difference": ours_ms / theirs_ms - 1, "block": block}


def cudagraph_comparison(name: str, batch_size: int, *, iters: int = 50) -> dict:
    """Milliseconds per train step: the ``cudagraphs`` backend's replay and a graph of the same step captured by hand."""
    step = prepare(name, "cudagraphs", "train", batch_size, keep_reference_state=False)
    step()                     # the eager first step, as a cell runs it before capture
    step.capture()
    ours = measure(step, "cuda", iters=iters, max_warmup=20, max_warmup_s=10).measurement.median

    workload = step.workload
    torch.manual_seed(0)
    model = workload.make(**step.variant).cuda().train()
    optimizer = workload.configure_optimizer(model, step.recipe, capturable=True)
    batch = workload.example_batch(batch_size, "cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            workload.train_step(model, batch, optimizer)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        workload.train_step(model, batch, optimizer)
    hand = measure(graph.replay, "cuda", iters=iters, max_warmup=20, max_warmup_s=10).measurement.median
    return {"workload": name, "backend_ms": ours, "hand_captured_ms": hand, "speed_vs_hand": hand / ours,
            "meets_goal": hand / ours >= CUDAGRAPH_GOAL}


def import_seconds() -> float:
    """Wall time of a fresh interpreter that imports the worker (torch, the workloads, the harness)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import refbench.run.worker"], check=True,
                   cwd=Path(__file__).resolve().parents[2], capture_output=True)
    return time.perf_counter() - start


def isolated_runs(name: str, device: str, batch_size: int, *, repeats: int, iters: int, threads: int | None) -> dict:
    """Run one cell ``repeats`` times in its own process: overhead per phase and run-to-run CV."""
    matrix = Matrix(workloads=[name], backends=[device], modes=["train"], batch_sizes=[batch_size],
                    settings=Settings(iters=iters, max_warmup=20, max_warmup_s=10, threads=threads))
    records = []
    with tempfile.TemporaryDirectory(prefix="refbench-validate-") as tmp:
        out = Path(tmp) / "cells.jsonl"
        for _ in range(repeats):
            started = time.perf_counter()
            (record,) = run_matrix(matrix, out)
            record["wall_s"] = time.perf_counter() - started
            records.append(record)
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        raise RefbenchError(f"validation cell {name} on {device} ended {bad[0]['status']}: {bad[0]['error']}")
    medians = [r["metrics"]["latency_ms"]["median"] for r in records]
    phases = {key: statistics.median(r["metrics"]["phases_s"].get(key, 0.0) for r in records)
              for key in records[-1]["metrics"]["phases_s"]}
    # The first run also starts the fork server (imports); later runs show the per-cell cost.
    return {"workload": name, "runs": repeats, "median_ms": medians,
            "cv_between_runs": Measurement(medians).cv,
            "cv_within_run": statistics.fmean(r["metrics"]["latency_ms"]["cv"] for r in records),
            "phases_s": phases, "first_run_wall_s": records[0]["wall_s"],
            "later_run_wall_s": statistics.median(r["wall_s"] for r in records[1:]) if repeats > 1 else None}


def validate(*, workloads, device: str | None = None, batch_size: int = 64, repeats: int = 5, iters: int = 50,
             threads: int | None = None, out: str | None = None) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in TOLERANCE:
        raise RefbenchError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RefbenchError("--device cuda asked for, but this machine has no CUDA device")
    if batch_size < 1 or repeats < 1 or iters < 1:
        raise RefbenchError("--batch-size, --repeats and --iters must be positive")
    set_threads(threads)
    tolerance = TOLERANCE[device]
    agreements = [agreement(name, device, batch_size, iters=iters) for name in workloads]
    result = {
        "device": device, "batch_size": batch_size, "threads": torch.get_num_threads(), "tolerance": tolerance,
        "agreement": agreements,
        "agrees": all(abs(a["difference"]) <= tolerance for a in agreements),
        "fresh_interpreter_import_s": import_seconds(),
        "isolated": [isolated_runs(name, device, batch_size, repeats=repeats, iters=iters, threads=threads)
                     for name in workloads],
    }
    if device == "cuda":
        result["cudagraphs"] = [cudagraph_comparison(name, batch_size, iters=iters) for name in workloads]
        result["agrees"] = result["agrees"] and all(c["meets_goal"] for c in result["cudagraphs"])
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def print_validation(result: dict) -> None:
    print(f"device {result['device']}, batch {result['batch_size']}, {result['threads']} threads; "
          f"agreement tolerance {result['tolerance']:.0%}")
    for a in result["agreement"]:
        verdict = "ok" if abs(a["difference"]) <= result["tolerance"] else "DISAGREES"
        print(f"  {a['workload']:<16} median refbench {a['refbench_ms']:.4f} ms, torch.utils.benchmark "
              f"{a['torch_benchmark_ms']:.4f} ms: difference {a['difference']:+.1%} {verdict}  (refbench mean "
              f"{a['refbench_mean_ms']:.4f} ms, Timer.blocked_autorange {a['torch_benchmark_blocked_ms']:.4f} ms)")
    print(f"fresh interpreter importing the harness: {result['fresh_interpreter_import_s']:.2f} s "
          f"(the per-cell cost of --isolation subprocess)")
    for r in result["isolated"]:
        phases = ", ".join(f"{k} {v:.3f}" for k, v in r["phases_s"].items())
        print(f"  {r['workload']:<16} {r['runs']} isolated runs: CV between runs {r['cv_between_runs']:.3f}, "
              f"within a run {r['cv_within_run']:.3f}; median phases (s): {phases}; wall per cell: first "
              f"{r['first_run_wall_s']:.2f} s, later {r['later_run_wall_s'] or float('nan'):.2f} s "
              f"(the validation's first cell also starts the fork server)")
    for c in result.get("cudagraphs", ()):
        print(f"  {c['workload']:<16} cudagraphs backend {c['backend_ms']:.4f} ms per step, hand-captured graph "
              f"{c['hand_captured_ms']:.4f} ms: {c['speed_vs_hand']:.2f}x of its speed "
              f"({'ok' if c['meets_goal'] else 'BELOW'} the {CUDAGRAPH_GOAL}x goal)")
