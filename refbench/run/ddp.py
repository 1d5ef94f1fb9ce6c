"""``refbench ddp``: how a workload's training step scales under DistributedDataParallel, launched by torchrun.

For each workload, each world size is one launch through torchrun's elastic
agent (``torch.distributed.launcher.api.elastic_launch``): ``nproc`` ranks on
this node, started from a fork server that has imported torch and the
workloads once, each running ``refbench.run._ddp_worker.rank_main`` on the
workload's Step (refbench.harness.step) wrapped in DistributedDataParallel. The world
sizes are 1, 2, 4, ... up to ``nproc`` on this node and, with ``nnodes`` > 1,
``nnodes * nproc`` across the nodes (measured first, so that every node joins
the rendezvous at once; each node then measures its own sizes, and node 0
writes the records). A multi-node run is the same command on every node with
torchrun's static rendezvous: ``--nnodes``, ``--node-rank`` and
``--rdzv-endpoint`` (node 0's address and a free port).

Scaling is weak by default (``batch_size`` samples per rank: the global
batch grows with the world) and strong with ``strong`` (``batch_size``
samples per step in all, split evenly over the ranks). Every launch is one
record: samples/s of the world, scaling efficiency against world size 1 of
the same invocation (``samples_per_s / (world_size * samples_per_s at 1)``),
the world's step time (per step, the slowest rank's), each rank's p50/p90,
the share of the step spent in all-reduce (torch.profiler), peak memory per
rank, and the correctness check of refbench.run._ddp_worker.

What cannot run is decided from what the workload declares, before anything
starts: no step to time (``untimed_reason``), a backend that cannot run its
training step, an optimizer that is not one ``torch.optim.Optimizer`` over
the model (DDP synchronises gradients only through the wrapped model's
forward: a workload whose step drives several optimizers over parts of the
model, such as a GAN's, reaches past it), or a batch whose tensors do not
lead with the batch size (it cannot be split across ranks). Each is a
``skipped`` record with the reason.

A rank that raises ends its launch (the agent stops the other ranks) with an
``error`` record naming the rank and the tail of its error; a rank that hangs
is stopped by its watchdog after ``timeout_s`` (``timeout``, with the stack it
was stuck in). SIGINT and SIGTERM stop every rank and end the run
(``KeyboardInterrupt``); records already written stay.
"""
from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.utils._pytree import tree_leaves

from refbench.harness import backends
from refbench.harness.machine import collect_env
from refbench.records.schema import make_record, new_run_id
from refbench.records.store import ResultWriter
from refbench.run.throughput import Outcome
from refbench.harness.timing import Measurement
from refbench.models import Workload, get_workload
from refbench.errors import RefbenchError
from refbench.lifeline import remove_on_death, scratch_dir

DIST_BACKENDS = ("gloo", "nccl")
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_WATCHDOG_MARK = "Timeout ("                 # how faulthandler's watchdog starts its stack dump
_STACK_MARK = "(most recent call first)"     # the header of each thread in a faulthandler stack dump


@dataclass(frozen=True)
class DDPConfig:
    """What one ``refbench ddp`` invocation measures; the CLI's options, one field each."""

    nproc: int = 2                        # ranks per node (the largest world size on one node)
    backend: str | None = None            # the Step's backend; None: cuda with nccl, else cpu
    dist_backend: str | None = None       # None: nccl for a CUDA backend, gloo for the CPU
    batch_size: int = 64                  # per rank (weak scaling), or per step in all (strong)
    strong: bool = False
    bucket_cap_mb: float | None = None    # None: DDP's default (25 MiB, a small first bucket)
    static_graph: bool = False
    sync_batchnorm: bool = False
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    nnodes: int = 1
    node_rank: int | None = None
    rdzv_endpoint: str | None = None      # HOST:PORT of node 0 (multi-node only)
    rdzv_timeout_s: float = 300.0
    iters: int = 20
    warmup: int = 5
    check: bool = True
    check_steps: int = 3
    profile_steps: int = 3
    timeout_s: float = 600.0
    threads: int = 1
    seed: int = 0
    imports: tuple[str, ...] = ()

    def resolved(self) -> "DDPConfig":
        """The configuration with its defaults chosen (backend and dist backend), validated."""
        dist_backend, backend = self.dist_backend, self.backend
        if backend is None:
            backend = "cuda" if dist_backend == "nccl" else "cpu"
        if dist_backend is None:
            dist_backend = "nccl" if backends.resolve(backend).device == "cuda" else "gloo"
        config = replace(self, backend=backend, dist_backend=dist_backend)
        config.validate()
        return config

    def validate(self) -> None:
        """Every bad argument is a RefbenchError that says what to do."""
        for name in ("nproc", "batch_size", "nnodes", "iters", "check_steps", "threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise RefbenchError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup", "profile_steps", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise RefbenchError(f"--{name.replace('_', '-')} must be a non-negative integer, got {getattr(self, name)!r}")
        for name in ("timeout_s", "rdzv_timeout_s"):
            if getattr(self, name) <= 0:
                raise RefbenchError(f"--{name[:-2].replace('_', '-')} must be positive seconds")
        if self.bucket_cap_mb is not None and self.bucket_cap_mb <= 0:
            raise RefbenchError(f"--bucket-cap-mb must be positive, got {self.bucket_cap_mb:g}")
        if self.dist_backend not in DIST_BACKENDS:
            raise RefbenchError(f"unknown --dist-backend {self.dist_backend!r}; use gloo (CPU) or nccl (CUDA GPUs)")
        device = backends.resolve(self.backend).device
        if device == "cuda":
            self._validate_gpus()
        else:
            self._validate_cpus()
        if self.sync_batchnorm and device != "cuda":
            raise RefbenchError("--sync-batchnorm needs a CUDA backend: torch's SyncBatchNorm runs on GPUs only")
        if self.strong:
            uneven = [n for n in self.world_sizes() if self.batch_size % n]
            if uneven:
                raise RefbenchError(f"--strong --batch-size {self.batch_size} cannot be split evenly over "
                                    f"{uneven[0]} ranks; choose a multiple of {uneven[0]}")
        self._validate_nodes()

    def _validate_gpus(self) -> None:
        if self.dist_backend == "gloo":
            raise RefbenchError("--dist-backend gloo is for CPU backends; use nccl for a CUDA backend")
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus == 0:
            raise RefbenchError("no CUDA device on this machine: use --backend cpu (gloo) instead")
        if self.nproc > gpus:
            raise RefbenchError(f"--nproc {self.nproc} needs {self.nproc} GPUs (one per rank), this node has {gpus}; "
                                f"use --nproc {gpus} or fewer")

    def _validate_cpus(self) -> None:
        if self.dist_backend == "nccl":
            raise RefbenchError("--dist-backend nccl needs a CUDA backend; use gloo on the CPU")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if self.nproc * self.threads > cores:
            raise RefbenchError(f"--nproc {self.nproc} with --threads {self.threads} needs "
                                f"{self.nproc * self.threads} CPU cores, this process may use {cores}; "
                                f"lower --nproc or --threads")

    def _validate_nodes(self) -> None:
        if self.nnodes == 1:
            if self.node_rank is not None or self.rdzv_endpoint is not None:
                raise RefbenchError("--node-rank and --rdzv-endpoint are for multi-node runs; add --nnodes N (N > 1)")
            return
        if self.node_rank is None or not 0 <= self.node_rank < self.nnodes:
            raise RefbenchError(f"--nnodes {self.nnodes} needs --node-rank R with 0 <= R < {self.nnodes} "
                                "(0 on the node that writes the records)")
        if not self.rdzv_endpoint:
            raise RefbenchError(f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT, node 0's address and a "
                                "free port")
        host, _, port = self.rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RefbenchError(f"--rdzv-endpoint {self.rdzv_endpoint!r}: expected HOST:PORT, e.g. node0:29500")
        try:
            socket.getaddrinfo(host.strip("[]"), int(port))
        except socket.gaierror as exc:
            raise RefbenchError(f"--rdzv-endpoint {self.rdzv_endpoint}: cannot resolve {host!r} ({exc.strerror})") from None

    def local_world_sizes(self) -> list[int]:
        """1, 2, 4, ... below ``nproc``, then ``nproc``: the world sizes measured on one node."""
        sizes, n = [], 1
        while n < self.nproc:
            sizes.append(n)
            n *= 2
        return sizes + [self.nproc]

    def world_sizes(self) -> list[int]:
        return self.local_world_sizes() + ([self.nnodes * self.nproc] if self.nnodes > 1 else [])

    def launches(self) -> list[tuple[int, int]]:
        """(nodes, ranks per node) of each launch, in the order they run: across the nodes first."""
        local = [(1, n) for n in self.local_world_sizes()]
        return ([(self.nnodes, self.nproc)] if self.nnodes > 1 else []) + local

    def global_batch_size(self, world_size: int) -> int:
        return self.batch_size if self.strong else self.batch_size * world_size

    @property
    def writes_records(self) -> bool:
        return self.nnodes == 1 or self.node_rank == 0


def skip_reason(workload: Workload, config: DDPConfig) -> str | None:
    """Why ``workload`` cannot be measured under DDP, from what it declares (module docstring); None if it can."""
    reason = backends.resolve(config.backend).skip_reason(workload, "train")
    if reason:
        return reason
    variant = workload.resolve_variant(**config.variants.get(workload.name, {}))
    try:
        with torch.device("meta"):
            optimizer = workload.configure_optimizer(workload.make(**variant),
                                                     workload.recipe(workload.throughput_recipe))
    except RefbenchError:
        raise
    except Exception:   # a model that cannot be built on the meta device: the ranks will say what fails
        optimizer = None
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        return (f"its training step drives {type(optimizer).__name__}, not one torch.optim.Optimizer over the "
                "model: DistributedDataParallel synchronises gradients only through the wrapped model's forward")
    for size in (2, 3):
        leaves = [t for t in tree_leaves(workload.example_batch(size, "cpu")) if isinstance(t, torch.Tensor)]
        if any(t.dim() == 0 or t.shape[0] != size for t in leaves):
            return "its batch has a tensor that does not lead with the batch size, so it cannot be split across ranks"
    return None


def run_ddp(workloads: list[str], config: DDPConfig, out: str | os.PathLike | None = None, *,
            on_record: Callable[[dict], None] = lambda record: None) -> list[dict]:
    """Measure every workload at every world size (module docstring); return the records (appended to ``out``).

    On a node other than 0 of a multi-node run nothing is written and the
    list is empty: node 0 writes the records.
    """
    from refbench.run.matrix import Matrix
    from refbench.run.settings import Settings

    config = config.resolved()
    Settings(imports=config.imports).validate()   # imports the modules (they may register workloads)
    names = Matrix(workloads=workloads, backends=[config.backend]).workload_names()
    for name in config.variants:
        if name not in names:
            raise RefbenchError(f"--variant {name}:...: {name} is not among the workloads measured "
                                f"({', '.join(names)}); add it to --workloads or drop the --variant")
        get_workload(name).resolve_variant(**config.variants[name])
    if config.nnodes > 1 and config.node_rank != 0:
        _reach_rendezvous(config)
    run_id, env = new_run_id(), collect_env(threads=config.threads)   # the ranks' threads, not this process's
    records: list[dict] = []
    writer = ResultWriter(out) if out is not None and config.writes_records else None

    def emit(record: dict) -> None:
        if writer is not None:
            writer.append(record)
        records.append(record)
        on_record(record)

    try:
        for name in names:
            for record in _workload_records(name, config, run_id, env):
                if config.writes_records:
                    emit(record)
    finally:
        if writer is not None:
            writer.close()
    return records


def _reach_rendezvous(config: DDPConfig) -> None:
    """Wait, up to ``rdzv_timeout_s``, until node 0's rendezvous port answers; else one line that says what to do."""
    host, _, port = config.rdzv_endpoint.rpartition(":")
    deadline = time.monotonic() + config.rdzv_timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)),
                                          timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise RefbenchError(
                    f"nothing answered at the rendezvous endpoint {config.rdzv_endpoint} within --rdzv-timeout "
                    f"{config.rdzv_timeout_s:g} s ({exc.strerror or type(exc).__name__}): start node 0 "
                    "(--node-rank 0) with the same command, and check that its address and port are reachable "
                    "from this node") from None
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _workload_records(name: str, config: DDPConfig, run_id: str, env: dict) -> Iterator[dict]:
    """The records of one workload, in world-size order, each as soon as its efficiency can be computed."""
    workload = get_workload(name)
    variant = workload.resolve_variant(**config.variants.get(name, {}))
    reason = skip_reason(workload, config)
    pending: dict[int, tuple[tuple[int, int], Outcome]] = {}
    baseline: Outcome | None = None
    for nodes, nproc in config.launches():
        world_size = nodes * nproc
        outcome = Outcome("skipped", reason) if reason else _launch(name, variant, config, nodes, nproc)
        pending[world_size] = ((nodes, nproc), outcome)
        if world_size == 1:
            baseline = outcome
        if baseline is None:
            continue
        for size in sorted(pending):
            shape, done = pending.pop(size)
            _add_efficiency(done, baseline, size)
            yield _record(name, variant, config, shape, done, run_id, env)


def _add_efficiency(outcome: Outcome, baseline: Outcome, world_size: int) -> None:
    if outcome.status != "ok" or "samples_per_s" not in outcome.metrics:   # no figures on this node
        return
    base = baseline.metrics.get("samples_per_s") if baseline.status == "ok" else None
    outcome.metrics["baseline_samples_per_s"] = base
    if base:
        outcome.metrics["scaling_efficiency"] = outcome.metrics["samples_per_s"] / (world_size * base)
    else:
        outcome.metrics["scaling_efficiency"] = None
        outcome.metrics["scaling_efficiency_note"] = f"world size 1 gave no figure ({baseline.status})"


def _record(name: str, variant: dict, config: DDPConfig, shape: tuple[int, int], outcome: Outcome,
            run_id: str, env: dict) -> dict:
    nodes, nproc = shape
    world_size = nodes * nproc
    ddp_variant = {**variant, "world_size": world_size, "nnodes": nodes, "nproc_per_node": nproc,
                   "scaling": "strong" if config.strong else "weak", "dist_backend": config.dist_backend,
                   "bucket_cap_mb": config.bucket_cap_mb, "static_graph": config.static_graph,
                   "sync_batchnorm": config.sync_batchnorm}
    metrics = {"per_rank_batch_size": config.global_batch_size(world_size) // world_size, **outcome.metrics}
    return make_record(run_id=run_id, env=env, workload=name, variant=ddp_variant, backend=config.backend,
                       mode="ddp", batch_size=config.global_batch_size(world_size), dataset=outcome.dataset,
                       status=outcome.status, error=outcome.error, metrics=metrics)


# ----- one launch -----

def _launch(name: str, variant: dict, config: DDPConfig, nodes: int, nproc: int) -> Outcome:
    """One world: ``nodes * nproc`` ranks through torchrun's elastic agent, their figures as an Outcome."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from refbench.run._ddp_worker import rank_main

    world_size = nodes * nproc
    spec = {"workload": name, "variant": variant, "backend": config.backend, "dist_backend": config.dist_backend,
            "global_batch_size": config.global_batch_size(world_size), "seed": config.seed,
            "threads": config.threads, "iters": config.iters, "warmup": config.warmup, "check": config.check,
            "check_steps": config.check_steps, "profile_steps": config.profile_steps,
            "bucket_cap_mb": config.bucket_cap_mb, "static_graph": config.static_graph,
            "sync_batchnorm": config.sync_batchnorm, "timeout_s": config.timeout_s,
            "imports": list(config.imports), "launcher_pid": os.getpid()}
    if nodes > 1:   # torchrun's static rendezvous at node 0; the run id must be the same on every node
        rendezvous = {"rdzv_backend": "static", "rdzv_endpoint": config.rdzv_endpoint,
                      "rdzv_configs": {"rank": config.node_rank, "timeout": int(config.rdzv_timeout_s)},
                      "run_id": f"refbench-ddp-{name}-{nodes}x{nproc}"}
    else:           # what `torchrun --standalone` does
        rendezvous = {"rdzv_backend": "c10d", "rdzv_endpoint": "localhost:0",
                      "rdzv_configs": {"timeout": int(config.rdzv_timeout_s)}, "run_id": uuid.uuid4().hex}
    _prepare_fork_server()
    with scratch_dir(prefix="refbench-ddp-") as logs, _own_signal_handlers(), _quiet_agent():
        launch = LaunchConfig(min_nodes=nodes, max_nodes=nodes, nproc_per_node=nproc, max_restarts=0,
                              start_method="forkserver", monitor_interval=0.1,
                              logs_specs=DefaultLogsSpecs(log_dir=logs, redirects=Std.ALL), **rendezvous)
        try:
            results = elastic_launch(launch, rank_main)(spec)
        except ChildFailedError as exc:
            return _failure(exc, Path(logs), config.timeout_s, config.node_rank * nproc if nodes > 1 else 0)
        except SignalException as exc:
            raise KeyboardInterrupt(f"stopped by {exc.sigval.name}; every rank was stopped") from None
        except Exception as exc:   # the rendezvous or the agent itself: nothing was measured anywhere
            raise RefbenchError(_rendezvous_message(exc, config, nodes)) from None
    figures = results.get(0)
    if figures is None:            # rank 0 is on another node, which writes the record
        return Outcome("ok", None, "synthetic", {"recorded_by": "node 0"})
    return _outcome(figures, spec["global_batch_size"])


def _prepare_fork_server() -> None:
    """Ranks fork from a server that imported the ranks' module once (seconds of imports per rank saved).

    The server must not initialise CUDA, or no rank forked from it could use
    it: torch asks NVML, not the driver, whether there is a GPU.
    """
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    multiprocessing.get_context("forkserver").set_forkserver_preload(["refbench.run._ddp_worker"])
    remove_on_death(multiprocessing.util.get_temp_dir())   # the fork server's socket, should the launcher die


@contextlib.contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """The agent installs its own SIGINT/SIGTERM handlers while it runs; restore ours afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _quiet_agent() -> Iterator[None]:
    """The agent logs each launch, and each failure with its traceback; the record says what matters instead."""
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def _rendezvous_message(exc: Exception, config: DDPConfig, nodes: int) -> str:
    what = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if nodes > 1:
        return (f"the rendezvous at {config.rdzv_endpoint} failed ({what}) within --rdzv-timeout "
                f"{config.rdzv_timeout_s:g} s: start node 0 (--node-rank 0) with the same command, and check that "
                "its address and port are reachable from this node")
    return f"torchrun could not start the ranks on this node ({what})"


def _failure(exc, logs: Path, timeout_s: float, first_rank: int) -> Outcome:
    """The record of a launch that a rank ended: which rank failed first, how, and where every rank was.

    The agent's own report names only one failed process, often a rank that
    died of another's death ("Connection closed by peer"), or a rank whose
    watchdog fired while it waited for a rank that hung; every rank's torchrun
    log says what really happened: the error file that ``record`` writes for
    a rank that raised (its time gives the order), the watchdog's stack dump,
    or the stack a rank dumps when the agent stops it (SIGTERM, after the
    first failure).
    """
    from refbench.run.worker import error_tail

    reports = {}   # rank -> (kind, when, how, what it said)
    for rank_dir in logs.glob("**/attempt_*/*"):
        if not rank_dir.name.isdigit():
            continue
        rank, stderr, error_file = first_rank + int(rank_dir.name), rank_dir / "stderr.log", rank_dir / "error.json"
        output = "\n".join(p.read_text(errors="replace") for p in (stderr, rank_dir / "stdout.log") if p.exists())
        if _WATCHDOG_MARK in output:
            reports[rank] = ("hung", 0.0, f"no result within {timeout_s:g} s, stopped by its watchdog",
                             _stack(output, _WATCHDOG_MARK))
        elif error_file.exists():
            message = json.loads(error_file.read_text()).get("message", {})
            said = message.get("extraInfo", {}).get("py_callstack") or message.get("message", "")
            reports[rank] = ("raised", error_file.stat().st_mtime, "raised", error_tail(said, 1200))
        elif _STACK_MARK in output:
            reports[rank] = ("stopped", 0.0, "was stopped when the launch ended; it was at",
                             _stack(output, _STACK_MARK))
    for rank, failure in exc.failures.items():
        if rank not in reports:   # died without a word (a signal, os._exit)
            how = f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit status {failure.exitcode}"
            reports[rank] = ("raised", float(failure.timestamp), how,
                             error_tail(_rank_output(logs, failure.local_rank), 1200) or "(no output)")
    # Ranks that failed by themselves, in the order they did (the first is the cause, later ones may have died of
    # it), then those whose watchdogs fired, then those the agent stopped: each stack says where its rank was.
    order = sorted(reports, key=lambda rank: (("raised", "hung", "stopped").index(reports[rank][0]),
                                              reports[rank][1], rank))
    raised = [rank for rank in order if reports[rank][0] == "raised"]
    lines = [f"rank {rank} {reports[rank][2]}{' first' if raised[:1] == [rank] and len(order) > 1 else ''}: "
             f"{reports[rank][3]}" for rank in order]
    hung = [rank for rank in order if reports[rank][0] == "hung"]
    said = " ".join(reports[rank][3] for rank in raised).lower()
    status = "timeout" if hung else ("oom" if "out of memory" in said else "error")
    return Outcome(status, "\n".join(lines), "synthetic",
                   {"failed_ranks": [rank for rank in order if reports[rank][0] != "stopped"], "hung_ranks": hung,
                    "stopped_ranks": [rank for rank in order if reports[rank][0] == "stopped"]})


def _stack(output: str, mark: str) -> str:
    """The stack dump in ``output`` from the line holding ``mark``, innermost frame first (faulthandler's order)."""
    start = output.rfind("\n", 0, output.index(mark)) + 1
    return output[start:start + 1200].strip()


def _rank_output(logs: Path, local_rank: int) -> str:
    return "\n".join(p.read_text(errors="replace") for stream in ("stderr.log", "stdout.log")
                     for p in logs.glob(f"**/attempt_*/{local_rank}/{stream}"))


def _outcome(figures: list[dict], global_batch_size: int) -> Outcome:
    """The world's figures from every rank's (refbench.run._ddp_worker)."""
    check = figures[0].get("correctness")
    metrics: dict[str, Any] = {"threads": figures[0]["threads"], "hosts": sorted({f["host"] for f in figures})}
    if check is not None:
        metrics["correctness"] = {k: v for k, v in check.items() if k != "problems"}
    # A step ends on every rank when its last all-reduce does: the world's step time is the slowest rank's.
    world = Measurement([max(times) for times in zip(*(f["step_ms"] for f in figures))])
    ranks = [Measurement(f["step_ms"]) for f in figures]
    memory_kind = next(iter(figures[0]["memory"]))
    shares = [f["allreduce_share"] for f in figures]
    metrics.update({
        "samples_per_s": global_batch_size / (world.median / 1e3),
        "step_ms": world.summary(),
        "rank_step_ms": [{"rank": f["rank"], "p50": m.median, "p90": m.quantile(0.9)} for f, m in zip(figures, ranks)],
        "peak_mem_bytes_per_rank": [f["memory"][memory_kind] for f in figures],
        "peak_mem_bytes": max(f["memory"][memory_kind] for f in figures),
        "peak_mem_kind": memory_kind,
        "allreduce_share_per_rank": shares,
        "allreduce_share": sum(shares) / len(shares) if None not in shares else None,
    })
    for key in ("allreduce_ms_per_step", "allreduce_source", "allreduce_note"):
        if key in figures[0]:
            metrics[key] = figures[0][key]
    if check is not None and check["problems"]:   # measured all the same: a wrong answer's speed is still its speed
        return Outcome("failed", "wrong answer: " + "; ".join(check["problems"]), "synthetic", metrics)
    return Outcome("ok", None, "synthetic", metrics)
