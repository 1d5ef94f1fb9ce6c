"""Named backends: where and how a workload's step runs, composable with "+".

A name is an optional base device (``cpu`` or ``cuda``) followed by
modifiers: ``cuda+amp-bf16+compile``, ``cpu+compile``, ``tf32``. Left out,
the device is ``cuda``, except for modifiers whose kernels run only on the
CPU (``int8``: ``int8`` alone is ``cpu+int8``). ``resolve`` rejects unknown or repeated parts (a user error).
A well-formed name that cannot run a given workload and mode (no GPU, int8
training, a workload without an sdpa variant, two AMP modes at once) is not
an error: ``skip_reason`` says why, and the cell is recorded as ``skipped``.

The transformations themselves are applied by ``refbench.harness.step.prepare``, in
this order, each by the method named after it: device and precision flags
(``configure``), the variant (``variant_for``), the model
(``transform_model``: channels-last, Triton kernels), the batch
(``transform_batch``), inference quantization (``quantize``), the step
(``make_step``: autocast, GradScaler, ``torch.compile``) and, last,
whole-step CUDA graph capture (``capture``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._pytree import tree_map

from refbench.errors import RefbenchError
from refbench.harness import fp32_precision
from refbench.records.schema import BASES

MODIFIERS = {
    "tf32": "TF32 matmuls and convolutions",
    "amp-bf16": "autocast to bfloat16",
    "amp-fp16": "autocast to float16, GradScaler in training",
    "compile": "torch.compile of the whole step (Inductor, default mode)",
    "compile-max-autotune": "torch.compile of the whole step, mode max-autotune",
    "cudagraphs": "the whole step (optimizer included) replayed from one CUDA graph",
    "channels-last": "NHWC memory format for the model and 4-D inputs",
    "int8": "dynamic int8 quantization of Linear layers with torchao (inference)",
    "sdpa": "the workload's scaled_dot_product_attention variant",
    "triton": "the project's Triton softmax and conv2d kernels swapped in",
}
_CUDA_ONLY = {
    "tf32": "TF32 is a CUDA tensor-core mode",
    "amp-fp16": "float16 autocast with GradScaler is measured on CUDA only",
    "cudagraphs": "CUDA graphs need a CUDA device",
    "triton": "the Triton kernels need a CUDA device (on CPU they run in the interpreter, whose timings mean nothing)",
}
# Modifiers that choose the CPU when a name gives no device: int8 is the CPU's fast path.
_CPU_DEFAULT = {"int8"}
_EXCLUSIVE = (("amp-bf16", "amp-fp16"), ("compile", "compile-max-autotune"),
              ("int8", "amp-bf16"), ("int8", "amp-fp16"), ("int8", "channels-last"))


class SkipCell(Exception):
    """Raised while preparing a cell that this backend cannot run; the message is the reason."""


@dataclass(frozen=True)
class Backend:
    name: str
    device: str
    modifiers: tuple[str, ...]

    def has(self, modifier: str) -> bool:
        return modifier in self.modifiers

    @property
    def compiled(self) -> bool:
        return self.has("compile") or self.has("compile-max-autotune")

    @property
    def precision(self) -> str:
        """The arithmetic the step really uses, which picks the correctness tolerance and the peak for MFU."""
        for modifier, precision in (("int8", "int8"), ("amp-fp16", "fp16"), ("amp-bf16", "bf16"), ("tf32", "tf32")):
            if self.has(modifier):
                return precision
        return "fp32"

    def skip_reason(self, workload, mode: str, *, cuda_available: bool | None = None,
                    where: str = "this machine") -> str | None:
        """Why this backend cannot run ``workload`` in ``mode``, found without building anything; None if it may.
        ``cuda_available`` (default: this machine's) says whether ``where`` the cells run has a CUDA device."""
        if workload.untimed_reason:
            return workload.untimed_reason
        if cuda_available is None:
            cuda_available = torch.cuda.is_available()
        if self.device == "cuda" and not cuda_available:
            return f"no CUDA device on {where}"
        for a, b in _EXCLUSIVE:
            if self.has(a) and self.has(b):
                return f"{a} and {b} cannot be combined"
        if self.device == "cpu":
            for modifier in self.modifiers:
                if modifier in _CUDA_ONLY:
                    return _CUDA_ONLY[modifier]
        if self.has("int8") and mode == "train":
            return "int8 dynamic quantization is inference only"
        if self.has("sdpa") and "sdpa" not in workload.variants.get("attention", ()):
            return f"{workload.name} has no attention=sdpa variant"
        if self.has("cudagraphs") and self.has("amp-fp16") and mode == "train" and not self.compiled:
            return "GradScaler checks the gradients for inf on the host every step, which one CUDA graph cannot capture"
        return None

    # ----- the transformations, in the order a cell applies them -----

    def configure(self) -> None:
        """Process-wide precision flags: TF32 only with the ``tf32`` modifier, through both of torch's switches
        (refbench.harness.fp32_precision)."""
        fp32_precision.set_tf32(self.has("tf32"))

    def variant_for(self, workload, variant: dict[str, Any]) -> dict[str, Any]:
        """The variant the cell builds: the workload's defaults, and ``attention=sdpa`` for ``sdpa``."""
        if self.has("sdpa"):
            variant = {**variant, "attention": "sdpa"}
        return workload.resolve_variant(**variant)

    def transform_model(self, model: nn.Module) -> tuple[nn.Module, list[str]]:
        """Memory format and kernel swaps; returns the model and notes on what was changed."""
        notes: list[str] = []
        if self.has("channels-last"):
            if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
                raise SkipCell("channels-last changes nothing in a model without Conv2d layers")
            model = model.to(memory_format=torch.channels_last)
        if self.has("triton"):
            try:
                from refbench.kernels import patch_model

                swapped = patch_model(model, ops=("softmax", "conv2d"))
            except Exception as exc:  # a kernel module that fails to import: say why
                raise SkipCell(f"the Triton kernels could not be used: {type(exc).__name__}: {exc}") from exc
            swapped = [line for line in swapped if "->" in line]
            if not swapped:
                raise SkipCell("the model has no softmax or Conv2d the Triton kernels support")
            notes += swapped
        return model, notes

    def transform_batch(self, batch: Any) -> Any:
        if not self.has("channels-last"):
            return batch
        return tree_map(lambda t: t.contiguous(memory_format=torch.channels_last)
                        if isinstance(t, torch.Tensor) and t.dim() == 4 else t, batch)

    def quantize(self, model: nn.Module) -> nn.Module:
        """int8 dynamic quantization of every Linear (int8 weights, activations quantized per step) by torchao,
        PyTorch's maintained quantization library; fastest under ``compile``, which fuses its int8 matmuls."""
        if not self.has("int8"):
            return model
        if not any(isinstance(m, nn.Linear) for m in model.modules()):
            raise SkipCell("int8 dynamic quantization changes nothing in a model without Linear layers")
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError as exc:
            raise SkipCell(f"int8 needs torchao (`pip install torchao`): {exc}") from exc
        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        return model

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = {"amp-bf16": torch.bfloat16, "amp-fp16": torch.float16}
        for modifier, amp_dtype in dtype.items():
            if self.has(modifier):
                return torch.autocast(self.device, dtype=amp_dtype)
        return contextlib.nullcontext()

    def grad_scaler(self, mode: str) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device) if self.has("amp-fp16") and mode == "train" else None

    @property
    def capturable_optimizer(self) -> bool:
        """Whole-step capture by hand needs optimizers whose step count lives on the device."""
        return self.has("cudagraphs") and not self.compiled

    def make_step(self, step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Wrap one step of a batch in autocast and, with a compile modifier, ``torch.compile`` the whole of it
        (forward, backward, optimizer); ``cudagraphs`` with compile selects Inductor's graph capture."""
        autocast = self.autocast

        def run(batch):
            with autocast():
                return step(batch)

        if not self.compiled:
            return run
        if self.has("compile-max-autotune"):
            mode = "max-autotune" if self.has("cudagraphs") else "max-autotune-no-cudagraphs"
        else:
            mode = "reduce-overhead" if self.has("cudagraphs") else "default"
        return torch.compile(run, mode=mode)

    def capture(self, step: Callable[[], Any], *, warmup: int = 3) -> Callable[[], Any]:
        """Capture ``step`` in one CUDA graph (``cudagraphs`` without compile); return its replay.

        Warm-up runs on a side stream, as CUDA graph capture requires; an
        impossible capture (host syncs, data-dependent shapes) is a SkipCell.
        """
        if not self.capturable_optimizer:
            return step
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                static_output = step()
        except Exception as exc:
            raise SkipCell(f"the step cannot be captured in a CUDA graph: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc

        def replay():
            graph.replay()
            return static_output

        return replay


def resolve(name: str) -> Backend:
    """Parse ``cpu``, ``cuda+amp-bf16+compile`` or ``tf32`` (= ``cuda+tf32``); bad names raise RefbenchError."""
    parts = [part.strip() for part in name.split("+")]
    if any(not part for part in parts):
        raise RefbenchError(f"backend {name!r} has an empty part; write e.g. cuda+amp-bf16+compile")
    if parts[0] in BASES:
        device, modifiers = parts[0], parts[1:]
    else:
        device, modifiers = ("cpu" if _CPU_DEFAULT & set(parts) else "cuda"), parts
    unknown = [part for part in modifiers if part not in MODIFIERS]
    if unknown:
        raise RefbenchError(f"unknown backend {unknown[0]!r} in {name!r}; known: "
                            f"{', '.join(BASES)}, {', '.join(MODIFIERS)} (join with '+')")
    if len(set(modifiers)) != len(modifiers):
        raise RefbenchError(f"backend {name!r} names a part twice")
    return Backend(name=name, device=device, modifiers=tuple(modifiers))
