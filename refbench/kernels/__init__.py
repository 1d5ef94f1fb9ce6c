"""refbench's Triton kernels: softmax / log-softmax and conv2d with autograd.

Imports nothing else of refbench.
"""
from refbench.kernels.conv import Conv2d, conv2d
from refbench.kernels.patch import patch_model
from refbench.kernels.softmax import LogSoftmax, Softmax, log_softmax, softmax

__all__ = [
    "patch_model",
    "softmax",
    "log_softmax",
    "Softmax",
    "LogSoftmax",
    "conv2d",
    "Conv2d",
]
