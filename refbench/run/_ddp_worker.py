"""One rank of ``refbench ddp``: the workload's Step under DistributedDataParallel, checked, timed and profiled.

torchrun's elastic agent (refbench.run.ddp) calls ``rank_main`` in every rank with
the environment torch.distributed reads (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT). Each rank

1. arms a watchdog (``faulthandler.dump_traceback_later``: it needs no GIL,
   prints every thread's stack and exits), so a rank that hangs ends within
   ``timeout_s`` and its log says where it was; the agent then stops the rest
   with SIGTERM, on which each prints its stack too (``faulthandler.register``);
2. joins the process group and builds the Step with ``refbench.harness.step.prepare``,
   whose ``wrap_model`` wraps the model in DistributedDataParallel (after
   ``SyncBatchNorm`` conversion when asked);
3. trains on its shard of one global batch: rank r takes rows
   ``[r * b, (r + 1) * b)`` of every tensor, so the ranks together see
   exactly the samples one process would;
4. trains ``check_steps`` steps from the same seed, dropout off, keeping what
   they did to every parameter and a digest of each rank's parameters;
5. times ``warmup`` then ``iters`` blocks of steps, the same count on every
   rank (each step holds collectives that every rank must join, so the ranks
   take the largest of their block sizes), peak memory around them;
6. profiles ``profile_steps`` more steps with torch.profiler for the share of
   the step spent in all-reduce;
7. on rank 0, last (its extra model must not count in its memory): trains the
   plain single-process Step on the whole global batch from the same seed and
   compares the parameter updates (``_verdict``; where one misses the fp32
   tolerance, the same steps in float64 judge, allowing DDP a multiple of the
   error those steps make with fp32's rounding emulated in float64,
   refbench.harness.correctness); every rank's parameters must also be
   bit-identical to rank 0's;
8. gathers every rank's figures on rank 0, which returns them (the others
   return None).
"""
from __future__ import annotations

import contextlib
import datetime
import faulthandler
import hashlib
import importlib
import math
import os
import re
import signal
import socket
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils._pytree import tree_map

from refbench.harness import backends
from refbench.harness.correctness import (ALLOWANCE_MULTIPLE, CHECK_SEED, compare, dropout_off, emulation, fp64_copy,
                                          generator_states, replay_step)
from refbench.harness.rounding import MODELS, Kinks
from refbench.harness.memory import MemoryProbe
from refbench.harness.step import Step, prepare
from refbench.harness.timing import measure
from refbench.models import get_workload
from refbench.lifeline import die_with

# What the profiler calls the all-reduce work: gloo's and NCCL's work items on the host
# ("gloo:all_reduce"), NCCL's kernels on the device ("ncclDevKernel_AllReduce_Sum_f32_RING_LL").
_ALLREDUCE = re.compile(r"all_?reduce", re.IGNORECASE)


def rank_main(spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Measure this rank (module docstring); rank 0 returns every rank's figures."""
    die_with(spec["launcher_pid"], group=False)   # a launcher killed with SIGKILL takes its ranks along
    faulthandler.dump_traceback_later(spec["timeout_s"], exit=True)
    faulthandler.register(signal.SIGTERM, chain=True)   # stopped by the agent: say where, then die as asked
    try:
        for module in spec["imports"]:
            importlib.import_module(module)
        backend = backends.resolve(spec["backend"])
        if backend.device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        # Collectives wait longer than the watchdog, so a hang is reported by the watchdog, where it is.
        dist.init_process_group(spec["dist_backend"], timeout=datetime.timedelta(seconds=spec["timeout_s"] + 60))
        try:
            figures = _measure_rank(spec, backend, dist.get_rank(), dist.get_world_size())
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, figures)
            return gathered if dist.get_rank() == 0 else None
        finally:
            dist.destroy_process_group()
    finally:
        faulthandler.cancel_dump_traceback_later()
        faulthandler.unregister(signal.SIGTERM)


def shard(batch: Any, rank: int, world_size: int) -> Any:
    """Rank ``rank``'s rows of every tensor in ``batch`` (each leads with the global batch size)."""
    def rows(t):
        if not isinstance(t, torch.Tensor):
            return t
        size = t.shape[0] // world_size
        return t[rank * size:(rank + 1) * size]
    return tree_map(rows, batch)


def _measure_rank(spec: dict[str, Any], backend: backends.Backend, rank: int, world_size: int) -> dict[str, Any]:
    workload = get_workload(spec["workload"])
    global_batch = workload.example_batch(spec["global_batch_size"], "cpu", seed=spec["seed"])
    step = prepare(workload, backend, "train", spec["global_batch_size"] // world_size, variant=spec["variant"],
                   batch=shard(global_batch, rank, world_size), seed=spec["seed"], threads=spec["threads"],
                   keep_reference_state=False, wrap_model=lambda model: _wrap(model, spec, backend))
    probe = MemoryProbe(step.device)
    figures: dict[str, Any] = {"rank": rank, "host": socket.gethostname(), "threads": torch.get_num_threads()}
    if spec["check"]:
        updates, _ = _train_checked(step, spec["check_steps"])
        digests = [None] * world_size
        dist.all_gather_object(digests, _digest(step.model.module))
    with probe.window("") as memory:
        timing = measure(step, step.device, iters=spec["iters"], min_warmup=spec["warmup"],
                         max_warmup=spec["warmup"], max_warmup_s=math.inf, min_warmup_s=0,
                         agree_block=lambda block: _largest_block(block, step.device))
    figures["step_ms"] = timing.measurement.samples_ms
    figures["memory"] = memory
    figures.update(_allreduce_share(step, spec["profile_steps"]))
    if spec["check"] and rank == 0:   # last, so that the single-process model costs no rank's figures anything
        figures["correctness"] = _verdict(step, spec, global_batch, updates, digests)
    return figures


def _largest_block(block: int, device: torch.device) -> int:
    """The largest of the ranks' block sizes; every rank then times the same number of steps."""
    agreed = torch.tensor([block], device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    return int(agreed.item())


def _wrap(model: nn.Module, spec: dict[str, Any], backend: backends.Backend) -> DistributedDataParallel:
    if spec["sync_batchnorm"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [torch.cuda.current_device()] if backend.device == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, bucket_cap_mb=spec["bucket_cap_mb"],
                                   static_graph=spec["static_graph"])


def _parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _train_checked(step: Step, steps: int) -> tuple[dict[str, torch.Tensor], bool]:
    """What ``steps`` steps (dropout off, seeded) did to every parameter, and whether they drew random numbers."""
    model = step.model.module if isinstance(step.model, DistributedDataParallel) else step.model
    before = _parameters(model)
    torch.manual_seed(CHECK_SEED)
    generators = generator_states()
    with dropout_off(model):
        for _ in range(steps):
            step()
    after = generator_states()
    random = not torch.equal(generators[0], after[0]) or generators[1:] != after[1:]
    return {name: p - before[name] for name, p in _parameters(model).items()}, random


def _digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _verdict(step: Step, spec: dict[str, Any], global_batch: Any, updates: dict[str, torch.Tensor],
             digests: list[str]) -> dict[str, Any]:
    """The DDP steps' parameter updates against single-process training on the same global batch."""
    steps, against = spec["check_steps"], "single-process training on the same global batch"
    single = prepare(step.workload, step.backend, "train", spec["global_batch_size"], variant=spec["variant"],
                     batch=global_batch, seed=spec["seed"], threads=spec["threads"], keep_reference_state=True)
    reference, random = _train_checked(single, steps)
    batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in single.model.modules())
    note = None
    if len(digests) == 1:
        pass   # one rank's shard is the whole batch, and it draws the same random numbers: compared as it is
    elif random:
        note = "the step draws random numbers, which each rank draws for its own shard: parameters compared across ranks only"
    elif batch_norm and not spec["sync_batchnorm"]:
        note = ("plain BatchNorm normalises each rank's shard by the shard's own statistics, so DDP training differs "
                "from single-process training by design: parameters compared across ranks only (--sync-batchnorm, "
                "on CUDA, gives the single-process answer)")
    if note:
        check = compare(updates, None, step.backend.precision)
    else:
        check = compare(updates, fp64_copy(reference), step.backend.precision)
    if check.problems and not note:
        # An update can differ by more than the tolerance and still be only rounding: Adam divides a gradient that
        # is zero in exact arithmetic (an attention key's bias) by its own size, turning rounding into a step.
        # The same steps in float64 decide: DDP passes where it is within the tolerance of them, or within a
        # multiple of how far the same steps move with the precision's rounding emulated in float64.
        kinks = Kinks()
        exact = _fp64_updates(single, global_batch, steps, kinks)
        precision = step.backend.precision
        check = compare(updates, exact, precision, None if precision not in MODELS else lambda: _fp64_updates(
            single, global_batch, steps, emulation(precision, kinks.inputs, single.device)))
        against = (f"single-process training in float64 (within the tolerance, or within {ALLOWANCE_MULTIPLE:g} "
                   f"times the error of the same steps with {precision} rounding emulated in float64)")
    problems = [f"after {steps} steps the DDP parameters differ from single-process training on the same "
                f"{spec['global_batch_size']} samples (worst: {check.worst}): " + "; ".join(check.problems[:3])
                ] if check.problems else []
    disagree = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
    if disagree:
        problems.append(f"the parameters of rank(s) {', '.join(map(str, disagree))} differ from rank 0's")
    return {**check.metrics(), "steps": steps, "ranks_agree": not disagree, "note": note, "problems": problems,
            "against": against}


def _fp64_updates(single: Step, batch: Any, steps: int,
                  mode: contextlib.AbstractContextManager) -> dict[str, torch.Tensor]:
    """What ``steps`` steps of one process do to every parameter in float64, from the same initial weights,
    under ``mode`` (recording the kinks, or emulating a precision's rounding)."""
    final: dict[str, torch.Tensor] = {}

    def train(model: nn.Module, batch: Any) -> None:
        optimizer = single.workload.configure_optimizer(model, single.recipe)
        for _ in range(steps):
            single.workload.train_step(model, batch, optimizer)
        final.update(_parameters(model))

    replay_step(single.fresh_model, single.initial_state, batch, train, train=True, device=single.device, mode=mode)
    return {name: p.cpu() - single.initial_state[name] for name, p in final.items()}


def _allreduce_share(step: Step, steps: int) -> dict[str, Any]:
    """The fraction of ``steps`` steps' wall time spent inside all-reduce work, from torch.profiler.

    The time inside all-reduce includes waiting for the slowest rank, and it
    may overlap the backward pass (DDP starts a bucket's all-reduce as soon as
    its gradients are ready): the share says how much of the step the
    communication spans, not what removing it would save.
    """
    if steps == 0:
        return {"allreduce_share": None, "allreduce_note": "not profiled (--profile-steps 0)"}
    activities = [torch.profiler.ProfilerActivity.CPU]
    cuda = step.device.type == "cuda"
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with torch.profiler.profile(activities=activities) as profile:
        with torch.profiler.record_function("refbench_ddp_steps"):
            for _ in range(steps):
                step()
            if cuda:
                torch.cuda.synchronize()
    events = profile.events()
    window = next(e for e in events if e.name == "refbench_ddp_steps")
    wall_us = window.time_range.end - window.time_range.start
    device_side = [e for e in events if _ALLREDUCE.search(e.name) and e.device_type == torch.autograd.DeviceType.CUDA]
    # On the host, the work items (gloo:all_reduce, nccl:all_reduce), not c10d::allreduce_, which only queues them.
    host_side = [e for e in events if _ALLREDUCE.search(e.name) and ":" in e.name and not e.name.startswith("c10d::")
                 and e.device_type == torch.autograd.DeviceType.CPU]
    chosen = device_side or host_side
    if not chosen or wall_us <= 0:
        return {"allreduce_share": None, "allreduce_note": "the profiler recorded no all-reduce work"}
    busy_us = _union([(e.time_range.start, e.time_range.end) for e in chosen])
    return {"allreduce_share": min(1.0, busy_us / wall_us), "allreduce_ms_per_step": busy_us / 1e3 / steps,
            "allreduce_source": "device kernels" if device_side else "host work items",
            "allreduce_events": sorted({e.name for e in chosen})}


def _union(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by ``intervals`` (overlapping ones counted once)."""
    total, end = 0.0, -math.inf
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total
