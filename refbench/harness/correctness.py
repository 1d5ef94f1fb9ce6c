"""Correctness of a cell against a float64 reference on the same weights and inputs.

Before a cell is timed, its first step's outputs (the loss and every
parameter's gradient in train mode, the outputs in infer mode) are compared
with the same step run in float64 from a copy of the same weights and the
same batch, on the cell's device (a GPU runs it in float64 in milliseconds;
a CPU cell's reference runs on the CPU). A whole network accumulates
rounding, so each tensor is judged by its relative RMS error,
``||x - ref|| / ||ref||``, against one tolerance per arithmetic precision
(``TOLERANCES``). Two refinements keep well-conditioned answers from failing:

- a tensor that is almost zero (the gradient of a bias in front of a
  BatchNorm is zero in exact arithmetic) is measured against ``FLOOR`` times
  the largest RMS among the step's tensors of its kind, not its own norm;
- a tensor that misses its tolerance passes when its error is within
  ``ALLOWANCE_MULTIPLE`` times the error of the same step run in float64
  with the cell's precision emulated: every result rounded to float32 (TF32,
  bfloat16, float16) as it is made (refbench.harness.rounding). That run
  measures how far this precision's rounding moves this model's answer (the
  ill-conditioned backward of BatchNorm at a small batch, Adam's update of a
  gradient that is zero in exact arithmetic) with float64 kernels only, so
  it never runs the code under test: a float32 path of the model that is
  wrong, a float32 kernel that lost accuracy, a matmul running in TF32
  behind the flags all fail on every backend, ``cpu`` and ``cuda`` included.
  It is run only when some tensor misses the tolerance, and the record names
  every tensor it let pass (``Check.allowed``).

Agreement with plain eager float32 on the cell's device (a fresh model,
TF32 off: the dynamo benchmark runner's yardstick) is reported beside the
verdict (``Check.eager``): useful for telling a backend's own error from the
model's, never part of the verdict. The record also says which precision
float32 matmuls and convolutions ran in (refbench.harness.fp32_precision).

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

from refbench.harness import fp32_precision
from refbench.harness.rounding import MODELS, Kinks, Rounding

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
# Real float32 over emulated float32 error, for every tensor past the fp32 tolerance of every workload's
# cpu and cpu+channels-last cells (3 seeds, batch 8): at most 2.4. 5 leaves a factor 2 for kernels that
# accumulate differently (GPUs, Inductor).
ALLOWANCE_MULTIPLE = 5.0
EAGER_MULTIPLIER = 3.0   # the dynamo runner's: a backend agrees with eager within 3 times eager's own error
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
CHECK_SEED = 1234


@dataclass
class Check:
    """The verdict on one step: ``ok`` unless a tensor is non-finite or off by more than its tolerance and allowance."""

    precision: str
    tolerance: float
    compared: bool = True                 # False: only NaN/Inf was checked (random step)
    worst: str | None = None              # name of the tensor with the largest relative error
    max_rel_err: float = 0.0
    max_abs_err: float = 0.0
    problems: list[str] = field(default_factory=list)
    emulated: str | None = None           # the precision the allowance emulated, when one was needed
    allowed: list[dict[str, Any]] = field(default_factory=list)   # tensors passed by the allowance
    precisions: dict[str, str] = field(default_factory=dict)      # matmul_precision, conv_precision in force
    eager: dict[str, Any] | None = None   # agreement with plain eager fp32, beside the verdict

    @property
    def ok(self) -> bool:
        return not self.problems

    def metrics(self) -> dict[str, Any]:
        metrics = {"precision": self.precision, "tolerance": self.tolerance, "compared": self.compared,
                   "max_rel_err": self.max_rel_err, "max_abs_err": self.max_abs_err, "worst": self.worst,
                   **self.precisions}
        if self.emulated:
            metrics.update(emulated=self.emulated, allowance_multiple=ALLOWANCE_MULTIPLE, allowed=self.allowed)
        if self.eager is not None:
            metrics["eager"] = self.eager
        return metrics


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


class _Scale:
    """The norm each tensor's error is relative to: its own, or ``FLOOR`` times the step's scale (docstring)."""

    def __init__(self, reference: Tensors):
        self.rms: dict[str, float] = {}
        for name, expected in reference.items():
            if expected.is_floating_point() and expected.numel():
                rms = expected.norm().item() / expected.numel() ** 0.5
                self.rms[_kind(name)] = max(self.rms.get(_kind(name), 0.0), rms)

    def relative(self, name: str, value: torch.Tensor, expected: torch.Tensor) -> float:
        error = (_cpu64(value) - expected).norm().item()
        norm = max(expected.norm().item(), FLOOR * self.rms.get(_kind(name), 0.0) * expected.numel() ** 0.5)
        return error / norm if norm > 0 else error


def compare(actual: Tensors, reference: Tensors | None, precision: str,
            emulated: Tensors | Callable[[], Tensors | None] | None = None) -> Check:
    """Compare named tensors with their fp64 reference (None: check only that they are finite).

    ``emulated`` holds the same tensors from the float64 run with
    ``precision``'s rounding emulated (or makes them when called, only if a
    tensor misses the tolerance); a tensor within ``ALLOWANCE_MULTIPLE``
    times that run's error passes, and is listed in ``Check.allowed``.
    """
    check = Check(precision, tolerance(precision), compared=reference is not None)
    if reference is not None:
        missing, extra = sorted(set(reference) - set(actual)), sorted(set(actual) - set(reference))
        if missing:
            check.problems.append(f"missing in the run under test, present in the reference: {', '.join(missing)}")
        if extra:
            check.problems.append(f"present in the run under test, absent from the reference: {', '.join(extra)}")
    scale = _Scale(reference or {})
    made: list[Tensors | None] = []

    def emulated_tensors() -> Tensors | None:
        if emulated is None or isinstance(emulated, dict):
            return emulated
        if not made:
            made.append(emulated())
        return made[0]

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
        expected = _cpu64(expected)
        if expected.shape != value.shape:
            check.problems.append(f"{name}: shape {tuple(value.shape)}, the reference's {tuple(expected.shape)}")
            continue
        if not value.is_floating_point():
            if not torch.equal(value, expected):
                check.problems.append(f"{name}: integer outputs differ from the reference")
            continue
        rel_err = scale.relative(name, value, expected)
        check.max_abs_err = max(check.max_abs_err, (value - expected).abs().max().item() if value.numel() else 0.0)
        if rel_err >= check.max_rel_err:
            check.max_rel_err, check.worst = rel_err, name
        if rel_err <= check.tolerance:
            continue
        rounded = emulated_tensors()
        if rounded is not None and name in rounded:
            check.emulated = precision
            emulated_err = scale.relative(name, rounded[name], expected)
            if rel_err <= ALLOWANCE_MULTIPLE * emulated_err:
                check.allowed.append({"tensor": name, "rel_err": rel_err, "tolerance": check.tolerance,
                                      "emulated_rel_err": emulated_err, "multiple": ALLOWANCE_MULTIPLE})
                continue
            check.problems.append(f"{name}: relative error {rel_err:.2e} > {check.tolerance:.0e} ({precision}) and "
                                  f"> {ALLOWANCE_MULTIPLE:g} x {emulated_err:.2e} ({precision} emulated in float64)")
            continue
        check.problems.append(f"{name}: relative error {rel_err:.2e} > {check.tolerance:.0e} ({precision})")
    return check


def eager_agreement(actual: Tensors, reference: Tensors, eager: Tensors, precision: str) -> dict[str, Any]:
    """How the run under test stands against plain eager fp32 (the dynamo runner's check), for the record only.

    ``max_rel_diff`` and ``worst``: the largest relative difference from
    eager fp32 and where; ``max_rel_err``: eager fp32's own largest error
    against float64; ``agrees``: every tensor is within the tolerance of eager
    fp32, or no further from float64 than ``EAGER_MULTIPLIER`` times eager's
    own error.
    """
    scale, limit = _Scale(reference), tolerance(precision)
    figures: dict[str, Any] = {"max_rel_diff": 0.0, "worst": None, "max_rel_err": 0.0, "agrees": True,
                               "multiple": EAGER_MULTIPLIER}
    for name, value in actual.items():
        plain, expected = eager.get(name), reference.get(name)
        if plain is None or expected is None or not plain.is_floating_point() or plain.shape != value.shape:
            continue
        expected, plain = _cpu64(expected), _cpu64(plain)
        diff = scale.relative(name, value, plain)
        eager_err = scale.relative(name, plain, expected)
        if diff >= figures["max_rel_diff"]:
            figures.update(max_rel_diff=diff, worst=name)
        figures["max_rel_err"] = max(figures["max_rel_err"], eager_err)
        if diff > limit and scale.relative(name, value, expected) > EAGER_MULTIPLIER * eager_err:
            figures["agrees"] = False
    return figures


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


def generator_states(device: torch.device | str = "cpu") -> tuple:
    """The state of every global generator a step could draw from (the CPU's, and ``device``'s when it is a GPU)."""
    import pickle
    import random

    import numpy as np

    states = [torch.get_rng_state(), pickle.dumps(random.getstate()), pickle.dumps(np.random.get_state())]
    if torch.device(device).type == "cuda":
        states.append(torch.cuda.get_rng_state(torch.device(device)))
    return tuple(states)


def _drew(before: tuple, after: tuple) -> bool:
    return any(not torch.equal(a, b) if isinstance(a, torch.Tensor) else a != b for a, b in zip(before, after))


def emulation(precision: str, kinks: list[torch.Tensor], device: torch.device | str) -> contextlib.ExitStack:
    """The float64 run with ``precision``'s rounding (refbench.harness.rounding), paired with the reference's
    ``kinks``; on a GPU with cuDNN off, so that an RNN runs step by step, each step's results rounded, rather
    than in one fused cuDNN call."""
    stack = contextlib.ExitStack()
    if torch.device(device).type == "cuda":
        stack.enter_context(torch.backends.cudnn.flags(enabled=False))
    stack.enter_context(Rounding(precision, kinks))
    return stack


def replay_step(build: Callable[[], nn.Module], state: dict[str, torch.Tensor], batch: Any,
                run: Callable[[nn.Module, Any], Any], *, train: bool, device="cpu",
                dtype=torch.float64, mode: contextlib.AbstractContextManager | None = None,
                ) -> tuple[dict[str, torch.Tensor], bool]:
    """Run one step of a fresh model holding ``state``, in ``dtype`` on ``device``, dropout off.

    ``build`` makes a fresh model of the cell's variant, ``state`` is the
    cell's weights as ``fp64_copy`` made them, ``run(model, batch)`` is the
    step. ``mode`` is entered around the step, the loading of the weights and
    the batch included (``emulation``, or ``Kinks`` recording). Returns
    the step's tensors and whether it drew from a global generator.
    """
    with _default_dtype(dtype):
        model = build().to(device, dtype)
    with mode or contextlib.nullcontext(), _default_dtype(dtype):
        batch = tree_map(lambda t: t.detach().to(device, dtype if t.is_floating_point() else t.dtype)
                         .contiguous() if isinstance(t, torch.Tensor) else t, batch)
        model.load_state_dict(state)
        model.train(train)
        torch.manual_seed(CHECK_SEED)
        before = generator_states(device)
        with dropout_off(model):
            output = run(model, batch)
        random = _drew(before, generator_states(device))
        tensors = {k: v.detach().clone() for k, v in step_tensors(output, model if train else None).items()}
    return tensors, random


def reference_step(build: Callable[[], nn.Module], state: dict[str, torch.Tensor], batch: Any,
                   run: Callable[[nn.Module, Any], Any], *, train: bool, device="cpu",
                   mode: contextlib.AbstractContextManager | None = None) -> dict[str, torch.Tensor] | None:
    """The fp64 reference of one step on ``device`` (under ``mode``, if given), or None when the step is
    random (module docstring)."""
    tensors, random = replay_step(build, state, batch, run, train=train, device=device, mode=mode)
    return None if random else tensors


def check_step(step: "Step", output: Any) -> Check:
    """Judge the first step of ``step`` (which returned ``output``, run with ``CHECK_SEED`` and ``dropout_off``).

    The reference is the same step in float64 on the step's device from
    ``step.initial_state``; the allowance comes from the same step in
    float64 with the cell's precision emulated; agreement with plain eager
    fp32 is reported beside (module docstring). A step that draws random
    numbers is checked for NaN/Inf only.
    """
    precisions = fp32_precision.in_force(step.device)   # what the step just ran with
    model = step.model if step.train else None
    live = step_tensors(output, model)
    precision = step.backend.precision
    reference, kinks = None, Kinks()
    if step.initial_state is not None:
        reference = reference_step(step.fresh_model, step.initial_state, step.batch, step.reference_run,
                                   train=step.train, device=step.device, mode=kinks)
    if reference is None:
        check = compare(live, None, precision)
    else:
        check = compare(live, reference, precision, None if precision not in MODELS else lambda: reference_step(
            step.fresh_model, step.initial_state, step.batch, step.reference_run, train=step.train,
            device=step.device, mode=emulation(precision, kinks.inputs, step.device)))
        check.eager = eager_agreement(live, reference, _eager_fp32(step), precision)
    check.precisions = precisions
    return check


def _eager_fp32(step: "Step") -> Tensors:
    """The checked step in plain eager fp32 (TF32 off) on the step's device, on a fresh model."""
    with fp32_precision.plain_fp32():
        return replay_step(step.fresh_model, step.initial_state, step.batch, step.reference_run, train=step.train,
                           device=step.device, dtype=torch.float32)[0]
