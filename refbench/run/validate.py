"""``refbench validate``: is the figure ``refbench run`` records right, and what does a cell cost besides its steps?

1. Agreement. The median step time ``refbench run`` records for a train cell
   (its own fresh child process, the run's warm-up and settings) is compared
   with the same step timed by torch.utils.benchmark (``Timer.blocked_autorange``)
   and by pyperf, each in fresh processes of their own
   (refbench.run.peer_timing): neither second opinion uses refbench's clock.
   The three take turns, ``repeats`` times, so that a change of the
   machine's load falls on all of them; refbench's figure must be within
   ``TOLERANCE`` of both medians (3% on a GPU, 5% on a CPU).
2. Overhead. The phases of those isolated cells: process start, set-up,
   first step, the fp64 check, warm-up and the timed steps; a fresh
   interpreter's import time is measured too, which is what ``--isolation
   subprocess`` pays per cell. Their spread between runs is the run-to-run CV.
3. CUDA graphs (GPU only). The ``cudagraphs`` backend's replay of a train
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

from refbench.errors import RefbenchError
from refbench.harness.step import prepare, set_threads
from refbench.harness.timing import Measurement, measure
from refbench.run.matrix import plan_cell
from refbench.run.runner import run_cell
from refbench.run.settings import Settings

TOLERANCE = {"cuda": 0.03, "cpu": 0.05}
CUDAGRAPH_GOAL = 0.9
ROOT = Path(__file__).resolve().parents[2]
PYPERF = ["--processes", "2", "--values", "5", "--warmups", "1", "--quiet"]


def agreement(name: str, device: str, batch_size: int, *, repeats: int, settings: Settings) -> dict:
    """``repeats`` rounds of: the cell as ``run`` measures it, Timer's figure, pyperf's; medians in ms."""
    cell = plan_cell(name, device, "train", batch_size)
    records, timer, pyperf = [], [], []
    for _ in range(repeats):
        record = run_cell(cell, settings)
        if record["status"] != "ok":
            raise RefbenchError(f"validation cell {name} on {device} ended {record['status']}: {record['error']}")
        records.append(record)
        timer.append(_peer("timer", name, device, batch_size, settings.threads))
        pyperf.append(_peer("pyperf", name, device, batch_size, settings.threads))
    ours = [r["metrics"]["latency_ms"]["median"] for r in records]
    phases = {key: statistics.median(r["metrics"]["phases_s"].get(key, 0.0) for r in records)
              for key in records[-1]["metrics"]["phases_s"]}
    return {"workload": name, "batch_size": batch_size, "refbench_ms": ours, "torch_benchmark_ms": timer,
            "pyperf_ms": pyperf, "vs_torch_benchmark": statistics.median(ours) / statistics.median(timer) - 1,
            "vs_pyperf": statistics.median(ours) / statistics.median(pyperf) - 1,
            "cv_between_runs": Measurement(ours).cv,
            "cv_within_run": statistics.fmean(r["metrics"]["latency_ms"]["cv"] for r in records), "phases_s": phases}


def _peer(kind: str, name: str, device: str, batch_size: int, threads) -> float:
    """One figure of a second opinion, in milliseconds, from fresh processes (refbench.run.peer_timing)."""
    step = ["--workload", name, "--device", device, "--batch-size", str(batch_size), "--threads", str(threads or 1)]
    with tempfile.TemporaryDirectory(prefix="refbench-validate-") as scratch:
        out = Path(scratch) / "pyperf.json"
        command = [sys.executable, "-m", "refbench.run.peer_timing", kind, *step]
        command += [*PYPERF, "-o", str(out)] if kind == "pyperf" else []
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RefbenchError(f"{kind} could not time {name}: {(done.stderr or done.stdout).strip()[-300:]}")
        if kind == "timer":
            return json.loads(done.stdout.strip().splitlines()[-1])["median_ms"]
        import pyperf

        return pyperf.Benchmark.load(str(out)).median() * 1e3


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


def validate(*, workloads, device: str | None = None, batch_sizes=(128,), repeats: int = 3, iters: int = 20,
             threads: int | None = 1, out: str | None = None) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in TOLERANCE:
        raise RefbenchError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RefbenchError("--device cuda asked for, but this machine has no CUDA device")
    set_threads(threads)
    tolerance = TOLERANCE[device]
    settings = Settings(iters=iters, threads=threads)   # the run's own warm-up and settings otherwise
    agreements = [agreement(name, device, batch_size, repeats=repeats, settings=settings)
                  for name in workloads for batch_size in batch_sizes]
    result = {
        "device": device, "threads": torch.get_num_threads(), "tolerance": tolerance, "repeats": repeats,
        "min_warmup_s": settings.min_warmup_s, "agreement": agreements,
        "agrees": all(abs(a[k]) <= tolerance for a in agreements for k in ("vs_torch_benchmark", "vs_pyperf")),
        "fresh_interpreter_import_s": import_seconds(),
    }
    if device == "cuda":
        result["cudagraphs"] = [cudagraph_comparison(name, batch_size, iters=iters)
                                for name in workloads for batch_size in batch_sizes]
        result["agrees"] = result["agrees"] and all(c["meets_goal"] for c in result["cudagraphs"])
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def print_validation(result: dict) -> None:
    print(f"device {result['device']}, {result['threads']} threads; run's figure against torch.utils.benchmark and "
          f"pyperf, {result['repeats']} fresh processes each, interleaved; tolerance {result['tolerance']:.0%}")
    for a in result["agreement"]:
        verdict = "ok" if max(abs(a["vs_torch_benchmark"]), abs(a["vs_pyperf"])) <= result["tolerance"] else "DISAGREES"
        print(f"  {a['workload']:<12} batch {a['batch_size']:<4} run {statistics.median(a['refbench_ms']):.4f} ms, "
              f"torch.utils.benchmark {statistics.median(a['torch_benchmark_ms']):.4f} ms "
              f"({a['vs_torch_benchmark']:+.1%}), pyperf {statistics.median(a['pyperf_ms']):.4f} ms "
              f"({a['vs_pyperf']:+.1%}) {verdict}; CV between runs {a['cv_between_runs']:.3f}, within a run "
              f"{a['cv_within_run']:.3f}")
        print("      median phases (s): " + ", ".join(f"{k} {v:.3f}" for k, v in a["phases_s"].items()))
    print(f"fresh interpreter importing the harness: {result['fresh_interpreter_import_s']:.2f} s "
          f"(the per-cell cost of --isolation subprocess)")
    for c in result.get("cudagraphs", ()):
        print(f"  {c['workload']:<16} cudagraphs backend {c['backend_ms']:.4f} ms per step, hand-captured graph "
              f"{c['hand_captured_ms']:.4f} ms: {c['speed_vs_hand']:.2f}x of its speed "
              f"({'ok' if c['meets_goal'] else 'BELOW'} the {CUDAGRAPH_GOAL}x goal)")
    print("validate: run's figure agrees with both" if result["agrees"] else
          "DISAGREES: run's figure is off a second opinion by more than the tolerance")
