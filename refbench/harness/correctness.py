"""Correctness of a cell against an fp64 CPU reference on the same weights and inputs.

Before a cell is timed, its first step's outputs (the loss and every
parameter's gradient in train mode, the outputs in infer mode) are compared
with the same step run in float64 on the CPU from a copy of the same weights
and the same batch. A whole network accumulates rounding, so each tensor is
judged by its relative RMS error, ``||x - ref|| / ||ref||``, against one
tolerance per arithmetic precision (``TOLERANCES``). Two refinements keep
well-conditioned answers from failing, as in the dynamo benchmark runner's
accuracy check:

- a tensor that is almost zero (the gradient of a bias in front of a
  BatchNorm is zero in exact arithmetic) is measured against ``FLOOR`` times
  the largest RMS among the step's tensors of its kind, not its own norm;
- a tensor whose error is within ``EAGER_MULTIPLIER`` times the error of
  plain eager fp32 on the same device (BatchNorm's backward at a small batch
  amplifies rounding in every precision) passes: the backend is as right as
  PyTorch itself there. That yardstick is always an independent run: a
  fresh model built from the same weights and stepped plainly in fp32
  (``check_step``), never the run under test, so a plain ``cpu`` or
  ``cuda`` cell can fail too. It is computed only when some tensor misses
  the tolerance.

NaN or Inf anywhere fails the cell, and so does a difference in which
tensors exist: every parameter with a gradient in the reference must have
one in the run under test, and the reverse (a layer cut from the graph
leaves its parameters without gradients).

Randomness inside a step cannot be reproduced across devices and dtypes:
dropout modules are switched off for the checked step (``dropout_off``), and
a step that still draws random numbers (noise inside a GAN step, functional
dropout, Python's or NumPy's generator) is detected by the reference step
changing a generator's state; such a cell is checked only for NaN/Inf and
says so.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map

if TYPE_CHECKING:
    from refbench.harness.step import Step

# Relative RMS error allowed per precision. fp32 is tight (a whole network in
# fp32 lands within ~1e-6 of fp64); TF32 and 16-bit formats lose 10-13
# mantissa bits per matmul, int8 quantizes every Linear layer's inputs.
TOLERANCES = {
    "fp64": 1e-9,
    "fp32": 1e-4,
    "tf32": 1e-2,
    "fp16": 1e-2,
    "bf16": 5e-2,
    "int8": 1e-1,
}
FLOOR = 1e-3
EAGER_MULTIPLIER = 3.0
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
CHECK_SEED = 1234


@dataclass
class Check:
    """The verdict on one step: ``ok`` unless a tensor is non-finite or off by more than ``tolerance``."""

    precision: str
    tolerance: float
    compared: bool = True                 # False: only NaN/Inf was checked (random step)
    worst: str | None = None              # name of the tensor with the largest relative error
    max_rel_err: float = 0.0
    max_abs_err: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def metrics(self) -> dict[str, Any]:
        return {"precision": self.precision, "tolerance": self.tolerance, "compared": self.compared,
                "max_rel_err": self.max_rel_err, "max_abs_err": self.max_abs_err, "worst": self.worst}


def tolerance(precision: str) -> float:
    try:
        return TOLERANCES[precision]
    except KeyError:
        raise ValueError(f"no tolerance for precision {precision!r}; known: {', '.join(TOLERANCES)}") from None


def _kind(name: str) -> str:
    return "grad" if name.startswith("grad:") else "output"


def _cpu64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64) if t.is_floating_point() else t.detach().cpu()


Tensors = dict[str, torch.Tensor]


def compare(actual: Tensors, reference: Tensors | None, precision: str,
            eager: Tensors | Callable[[], Tensors] | None = None) -> Check:
    """Compare named tensors with their fp64 reference (None: check only that they are finite).

    ``eager`` holds the same tensors from an independent plain eager fp32
    run on the cell's device (or makes them when called, only if a tensor
    misses the tolerance); its own error sets the ``EAGER_MULTIPLIER``
    allowance.
    """
    check = Check(precision, tolerance(precision), compared=reference is not None)
    scale: dict[str, float] = {}
    for name, expected in (reference or {}).items():
        if expected.is_floating_point() and expected.numel():
            rms = expected.norm().item() / expected.numel() ** 0.5
            scale[_kind(name)] = max(scale.get(_kind(name), 0.0), rms)
    if reference is not None:
        missing, extra = sorted(set(reference) - set(actual)), sorted(set(actual) - set(reference))
        if missing:
            check.problems.append(f"missing in the run under test, present in the reference: {', '.join(missing)}")
        if extra:
            check.problems.append(f"present in the run under test, absent from the reference: {', '.join(extra)}")
    yardstick: list[Tensors] = []

    def eager_tensors() -> Tensors | None:
        if eager is None or isinstance(eager, dict):
            return eager
        if not yardstick:
            yardstick.append(eager())
        return yardstick[0]

    for name, value in actual.items():
        value = _cpu64(value)
        if value.is_floating_point() and not torch.isfinite(value).all():
            check.problems.append(f"NaN/Inf in {name}")
            continue
        if reference is None:
            continue
        expected = reference.get(name)
        if expected is None:
            continue   # named above
        if expected.shape != value.shape:
            check.problems.append(f"{name}: shape {tuple(value.shape)}, the reference's {tuple(expected.shape)}")
            continue
        if not value.is_floating_point():
            if not torch.equal(value, expected):
                check.problems.append(f"{name}: integer outputs differ from the reference")
            continue
        error = (value - expected).norm().item()
        norm = max(expected.norm().item(), FLOOR * scale.get(_kind(name), 0.0) * value.numel() ** 0.5)
        rel_err = error / norm if norm > 0 else error
        check.max_abs_err = max(check.max_abs_err, (value - expected).abs().max().item() if value.numel() else 0.0)
        if rel_err >= check.max_rel_err:
            check.max_rel_err, check.worst = rel_err, name
        if rel_err <= check.tolerance:
            continue
        plain = eager_tensors()
        if plain is not None and name in plain:
            eager_error = (_cpu64(plain[name]) - expected).norm().item()
            if error <= EAGER_MULTIPLIER * eager_error:
                continue
        check.problems.append(f"{name}: relative error {rel_err:.2e} > {check.tolerance:.0e} ({precision})")
    return check


def step_tensors(output: Any, model: nn.Module | None) -> dict[str, torch.Tensor]:
    """What a step produced, by name: its outputs and, when ``model`` is given, the gradients its parameters have."""
    leaves, _ = tree_flatten(output)
    tensors = {f"output[{i}]": t for i, t in enumerate(leaves) if isinstance(t, torch.Tensor)}
    if model is not None:
        tensors.update({f"grad:{name}": p.grad for name, p in model.named_parameters() if p.grad is not None})
    return tensors


def fp64_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CPU float64 copy of a state dict (integer buffers keep their dtype)."""
    return {k: v.detach().to("cpu", torch.float64 if v.is_floating_point() else v.dtype).clone()
            for k, v in state.items()}


@contextlib.contextmanager
def dropout_off(model: nn.Module) -> Iterator[None]:
    """Put dropout modules (and attention's internal dropout) in eval mode for one step."""
    switched = [m for m in model.modules() if isinstance(m, (*_DROPOUT, nn.MultiheadAttention)) and m.training]
    for m in switched:
        m.train(False)
    try:
        yield
    finally:
        for m in switched:
            m.train(True)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def generator_states() -> tuple:
    """The state of every global generator a step could draw from on the CPU."""
    import pickle
    import random

    import numpy as np

    return torch.get_rng_state(), pickle.dumps(random.getstate()), pickle.dumps(np.random.get_state())


def replay_step(build: Callable[[], nn.Module], state: dict[str, torch.Tensor], batch: Any,
                run: Callable[[nn.Module, Any], Any], *, train: bool, device="cpu",
                dtype=torch.float64) -> tuple[dict[str, torch.Tensor], bool]:
    """Run one step of a fresh model holding ``state``, in ``dtype`` on ``device``, dropout off.

    ``build`` makes a fresh model of the cell's variant, ``state`` is the
    cell's weights as ``fp64_copy`` made them, ``run(model, batch)`` is the
    step. Returns the step's tensors and whether it drew from a CPU generator.
    """
    batch = tree_map(lambda t: t.detach().to(device, dtype if t.is_floating_point() else t.dtype)
                     .contiguous() if isinstance(t, torch.Tensor) else t, batch)
    with _default_dtype(dtype):
        model = build().to(device, dtype)
        model.load_state_dict(state)
        model.train(train)
        torch.manual_seed(CHECK_SEED)
        before = generator_states()
        with dropout_off(model):
            output = run(model, batch)
        after = generator_states()
        random = not torch.equal(before[0], after[0]) or before[1:] != after[1:]
    return {k: v.detach().clone() for k, v in step_tensors(output, model if train else None).items()}, random


def reference_step(build: Callable[[], nn.Module], state: dict[str, torch.Tensor], batch: Any,
                   run: Callable[[nn.Module, Any], Any], *, train: bool) -> dict[str, torch.Tensor] | None:
    """The fp64 CPU reference of one step, or None when the step is random (module docstring)."""
    tensors, random = replay_step(build, state, batch, run, train=train)
    return None if random else tensors


def check_step(step: "Step", output: Any) -> Check:
    """Judge the first step of ``step`` (which returned ``output``, run with ``CHECK_SEED`` and ``dropout_off``).

    The reference is the same step in float64 on the CPU from
    ``step.initial_state``; the eager allowance comes from an independent
    fresh fp32 run on the step's device (module docstring). A step that
    draws random numbers is checked for NaN/Inf only.
    """
    model = step.model if step.train else None
    live = step_tensors(output, model)
    if step.initial_state is None:
        return compare(live, None, step.backend.precision)
    reference = reference_step(step.fresh_model, step.initial_state, step.batch, step.reference_run, train=step.train)
    if reference is None:
        return compare(live, None, step.backend.precision)
    return compare(live, reference, step.backend.precision, lambda: _eager_fp32(step))


def _eager_fp32(step: "Step") -> Tensors:
    """The checked step in plain eager fp32 (TF32 off) on the step's device, on a fresh model."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return replay_step(step.fresh_model, step.initial_state, step.batch, step.reference_run, train=step.train,
                           device=step.device, dtype=torch.float32)[0]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
