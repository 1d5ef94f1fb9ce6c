"""Swap a model's modules for the project's Triton versions.

Each op names a function ``swap(model) -> list[str]`` living next to its
kernel; it replaces the supported modules in place and describes each swap.
"""
from __future__ import annotations

import importlib

from torch import nn

_SWAPPERS = {
    "softmax": ("refbench.kernels.softmax", "swap_softmax"),
    "conv2d": ("refbench.kernels.conv", "swap_conv2d"),
}


def patch_model(model: nn.Module, ops: tuple[str, ...] = ("softmax", "conv2d")) -> list[str]:
    """Replace the modules behind ``ops`` in ``model``; return what was swapped."""
    unknown = [op for op in ops if op not in _SWAPPERS]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; choose from {sorted(_SWAPPERS)}")
    swapped: list[str] = []
    for op in ops:
        module_name, function_name = _SWAPPERS[op]
        swap = getattr(importlib.import_module(module_name), function_name)
        swapped.extend(swap(model))
    return swapped
