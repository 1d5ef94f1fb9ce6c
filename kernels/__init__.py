"""refbench's Triton kernels: softmax / log-softmax and conv2d with autograd.

Imports neither ``bench`` nor ``reference_models``.
"""
from kernels.conv import Conv2d, conv2d
from kernels.patch import patch_model
from kernels.softmax import LogSoftmax, Softmax, log_softmax, softmax

__all__ = [
    "patch_model",
    "softmax",
    "log_softmax",
    "Softmax",
    "LogSoftmax",
    "conv2d",
    "Conv2d",
]
