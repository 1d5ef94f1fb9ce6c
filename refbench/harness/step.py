"""``prepare(...) -> Step``: the one step that ``run``, ``converge``, ``ddp`` and ``nightly`` all drive.

``prepare`` builds a workload's model and applies a backend to it, in this
order, the same for every runner:

1. CPU threads and the backend's process-wide flags (TF32);
2. the model of the variant, seeded, on the backend's device; what it was
   built from (``provenance``);
3. the model transformations (channels-last, Triton kernels), then train or
   eval mode; a float64 CPU copy of the weights here, before quantization,
   for the fp64 reference (``initial_state``);
4. int8 quantization (inference), or the runner's own wrapper (``wrap_model``:
   DistributedDataParallel for ``ddp``);
5. the optimizer (capturable for CUDA graphs) and GradScaler (``amp-fp16``);
6. the step function of a batch: the workload's ``train_step`` or
   ``eval_step`` under autocast, ``torch.compile`` d with a compile modifier.

CUDA graph capture (``Step.capture``) is a separate call: the correctness
check runs on the eager step first, and the captured graph replays that same
sequence of kernels. ``Step.feed`` gives the step a new batch (copied into
the captured graph's static inputs once captured). Checking
(``refbench.harness.correctness.check_step``) and timing (``refbench.harness.timing.measure``)
are functions of a Step; none of them knows which runner called it.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

from refbench.harness import backends
from refbench.harness.correctness import fp64_copy
from refbench.models import Recipe, Workload, get_workload


@dataclass
class Step:
    """A prepared step: call it to run one step on its current batch."""

    workload: Workload
    backend: backends.Backend
    mode: str
    batch_size: int
    variant: dict[str, Any]
    device: torch.device
    model: nn.Module
    recipe: Recipe
    optimizer: Any
    scaler: torch.amp.GradScaler | None
    batch: Any
    initial_state: dict[str, torch.Tensor] | None
    run: Callable[[Any], Any]            # the step function of a batch, as the backend runs it
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    captured: bool = False

    @property
    def train(self) -> bool:
        return self.mode == "train"

    def __call__(self) -> Any:
        return self.run(self.batch)

    def feed(self, batch: Any) -> None:
        """Make ``batch`` the next step's input (into the graph's static inputs once captured)."""
        batch = self.backend.transform_batch(batch)
        if not self.captured:
            self.batch = batch
            return
        statics, news = tree_flatten(self.batch)[0], tree_flatten(batch)[0]
        shapes = [tuple(t.shape) for t in statics if isinstance(t, torch.Tensor)]
        new_shapes = [tuple(t.shape) for t in news if isinstance(t, torch.Tensor)]
        if shapes != new_shapes:  # copy_ would broadcast some, fail on others
            raise backends.SkipCell(f"a captured CUDA graph replays one batch shape; this batch has "
                                    f"{new_shapes}, the captured one {shapes}")
        for static, new in zip(statics, news):
            if isinstance(static, torch.Tensor):
                static.copy_(new)

    def capture(self) -> float:
        """Capture the step in one CUDA graph where the backend asks for it (``cudagraphs`` without compile).

        Returns the seconds it took (0 when nothing was captured). An
        impossible capture raises ``backends.SkipCell``.
        """
        if not self.backend.capturable_optimizer or self.captured:
            return 0.0
        import time

        started = time.perf_counter()
        replay = self.backend.capture(lambda: self.run(self.batch))
        self.run = lambda batch: replay()
        self.captured = True
        return time.perf_counter() - started

    def reference_run(self, model: nn.Module, batch: Any) -> Any:
        """The same step, plainly: what the fp64 reference and the eager fp32 yardstick run on a fresh model."""
        if self.train:
            return self.workload.train_step(model, batch, self.workload.configure_optimizer(model, self.recipe))
        return self.workload.eval_step(model, batch)

    def fresh_model(self) -> nn.Module:
        """A new, untransformed model of the step's variant (the reference's)."""
        return self.workload.make(**self.variant)


def physical_cores() -> int:
    """Physical CPU cores (Linux /proc/cpuinfo), else the logical count."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.cpu_count() or 1
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or os.cpu_count() or 1


def set_threads(threads: int | str | None) -> int:
    """Apply ``--threads`` (N, "all" or None for torch's default); return the threads torch uses."""
    if threads == "all":
        threads = physical_cores()
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def prepare(workload: Workload | str, backend: backends.Backend | str, mode: str, batch_size: int, *,
            variant: dict[str, Any] | None = None, batch: Any = None, recipe: str | Recipe | None = None,
            seed: int = 0, threads: int | str | None = None, keep_reference_state: bool = True,
            wrap_model: Callable[[nn.Module], nn.Module] | None = None) -> Step:
    """Build ``workload``'s step on ``backend`` (module docstring for the order).

    ``variant`` is completed with the workload's defaults (and
    ``attention=sdpa`` for the sdpa backend); ``batch`` defaults to the
    workload's synthetic ``example_batch``; ``recipe`` (a name or a
    ``Recipe``) to its ``throughput_recipe``. A compiled step starts from an
    empty Dynamo cache, so a process that prepares many (``converge``) never
    reaches Dynamo's recompile limit, past which it runs eager without
    saying so. A backend that cannot run the step raises
    ``backends.SkipCell``. ``wrap_model`` wraps the transformed model before
    the optimizer is made (the reference state is taken before it).
    """
    workload = get_workload(workload) if isinstance(workload, str) else workload
    backend = backends.resolve(backend) if isinstance(backend, str) else backend
    set_threads(threads)
    backend.configure()
    device = torch.device(backend.device)
    variant = backend.variant_for(workload, dict(variant or {}))
    chosen = recipe if isinstance(recipe, Recipe) else workload.recipe(recipe or workload.throughput_recipe)
    if backend.compiled:
        torch._dynamo.reset()

    torch.manual_seed(seed)
    model = workload.make(**variant).to(device)
    provenance = workload.provenance(model)
    model, notes = backend.transform_model(model)
    model.train(mode == "train")
    initial_state = fp64_copy(model.state_dict()) if keep_reference_state else None
    model = backend.quantize(model)
    if wrap_model is not None:
        model = wrap_model(model)
    optimizer = scaler = None
    if mode == "train":
        optimizer = _optimizer(workload, model, chosen, backend)
        scaler = backend.grad_scaler(mode)

        def step_fn(b):
            return workload.train_step(model, b, optimizer, scaler=scaler)
    else:
        def step_fn(b):
            return workload.eval_step(model, b)

    if batch is None:
        batch = workload.example_batch(batch_size, device, seed=seed)
    batch = backend.transform_batch(tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, batch))
    return Step(workload=workload, backend=backend, mode=mode, batch_size=batch_size, variant=variant,
                device=device, model=model, recipe=chosen, optimizer=optimizer, scaler=scaler, batch=batch,
                initial_state=initial_state, run=backend.make_step(step_fn), notes=notes, provenance=provenance)


def _optimizer(workload: Workload, model: nn.Module, recipe: Recipe, backend: backends.Backend):
    if backend.capturable_optimizer:
        with contextlib.suppress(TypeError):  # optimizers without the option (SGD) are capturable as they are
            return workload.configure_optimizer(model, recipe, capturable=True)
    return workload.configure_optimizer(model, recipe)
