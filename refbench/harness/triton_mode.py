"""Where Triton's kernels run: compiled on a GPU, or in Triton's interpreter on a machine without one.

Triton fixes the mode when it is first imported (and torchvision imports it
as a side effect), so the choice is made once, by the program's entry point
(``refbench``'s ``main``, the test suite's conftest), before anything
imports Triton. Importing ``refbench`` changes nothing.
"""
from __future__ import annotations

import logging
import os
import sys


def choose_triton_mode() -> str:
    """Set ``TRITON_INTERPRET=1`` when there is no CUDA device and the user has not chosen; return the mode."""
    import torch

    if not torch.cuda.is_available():
        if "TRITON_INTERPRET" not in os.environ and "triton" not in sys.modules:
            os.environ["TRITON_INTERPRET"] = "1"
        # torch.utils.benchmark's import of cpp_extension warns, on a CUDA build of torch without a
        # GPU, that no CUDA runtime is found: true, and no concern of a CPU run.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return "interpreter" if interpreting() else "compiled"


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")
