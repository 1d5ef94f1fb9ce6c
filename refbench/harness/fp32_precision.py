"""Which arithmetic float32 matmuls and convolutions use: set it, read it, switch TF32 off for a while.

PyTorch has two switches for the same thing, and reading one after setting
only the other raises ("mix of the legacy and new APIs"):

- the legacy flags: ``torch.set_float32_matmul_precision`` (cuBLAS, and
  oneDNN's matmuls at "high"/"medium"), ``torch.backends.cudnn.allow_tf32``;
- the ``fp32_precision`` settings (torch >= 2.9) per backend and operator:
  ``torch.backends.{cuda.matmul,cudnn.conv,cudnn.rnn,mkldnn.matmul,
  mkldnn.conv,mkldnn.rnn}.fp32_precision``, each "ieee", "tf32", "bf16"
  (oneDNN) or "none" (inherit from ``torch.backends.fp32_precision``).

``set_tf32`` sets both, legacy first, so that both read back the same and
code that reads either (Inductor reads the legacy flag) sees what is in
force; every per-operator setting is set explicitly, so none inherits from
the generic one. oneDNN's float32 operators are always set to "ieee": TF32
here is a CUDA mode, and oneDNN's "bf16" or "tf32" would make a CPU float32
cell compute in another precision. ``in_force`` reads what the step's
operators will use, from the ``fp32_precision`` settings, which resolve
"none" through their parents.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

# (backend, operator) as torch._C names them, and the torch.backends object that holds each setting.
_SETTINGS = {
    ("generic", "all"): lambda: torch.backends,
    ("cuda", "matmul"): lambda: torch.backends.cuda.matmul,
    ("cuda", "conv"): lambda: torch.backends.cudnn.conv,
    ("cuda", "rnn"): lambda: torch.backends.cudnn.rnn,
    ("mkldnn", "matmul"): lambda: torch.backends.mkldnn.matmul,
    ("mkldnn", "conv"): lambda: torch.backends.mkldnn.conv,
    ("mkldnn", "rnn"): lambda: torch.backends.mkldnn.rnn,
}


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA float32 matmuls, convolutions and RNNs on or off, through both APIs; oneDNN in IEEE."""
    mode = "tf32" if enabled else "ieee"
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled
    for (backend, _), setting in _SETTINGS.items():
        setting().fp32_precision = mode if backend == "cuda" else "ieee"   # generic: what "none" would inherit


def in_force(device: torch.device | str) -> dict[str, str]:
    """The precision float32 matmuls and convolutions on ``device`` use now: "ieee", "tf32" or "bf16"."""
    backend = "cuda" if torch.device(device).type == "cuda" else "mkldnn"
    return {f"{op}_precision": _resolved(backend, op) for op in ("matmul", "conv")}


def _resolved(backend: str, op: str) -> str:
    precision = _SETTINGS[backend, op]().fp32_precision
    return "ieee" if precision == "none" else precision


@contextlib.contextmanager
def plain_fp32() -> Iterator[None]:
    """TF32 off for the block (both APIs), then every setting as it was.

    Only the ``fp32_precision`` settings are read (the legacy getters raise
    after the new API alone was used); the legacy flags are set back to what
    matches them.
    """
    saved = {key: setting().fp32_precision for key, setting in _SETTINGS.items()}
    set_tf32(False)
    try:
        yield
    finally:
        cpu, cuda = saved["mkldnn", "matmul"], saved["cuda", "matmul"]
        torch.set_float32_matmul_precision("medium" if cpu == "bf16" else "high" if "tf32" in (cpu, cuda)
                                           else "highest")
        torch.backends.cudnn.allow_tf32 = saved["cuda", "conv"] == "tf32"
        for key, setting in _SETTINGS.items():
            setting().fp32_precision = saved[key]
