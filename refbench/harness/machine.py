"""What machine and software a result was measured on, and its comparability key."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

from refbench.version import __version__

# What must match for two results to be comparable (compare.py, nightly).
_KEY_FIELDS = ("gpu", "cuda", "cudnn", "torch", "triton", "cpu", "threads")


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _triton_version() -> str | None:
    """Triton's version without importing it: an import now would fix its mode
    before ``TRITON_INTERPRET`` can be set for a CPU kernel run."""
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpu() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"gpu": None, "gpu_count": 0, "driver": None}
    info = {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_count": torch.cuda.device_count(),
        "driver": None,
        "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory,
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except Exception:  # NVML is optional: no driver library, no permission
        pass
    return info


@functools.lru_cache(maxsize=1)
def collect_env(threads: int | None = None) -> dict[str, Any]:
    """Describe this process's environment; ``env_key`` hashes what makes results comparable.

    ``threads``: the torch threads of the processes that measure, where they
    are not this one (data-parallel ranks); by default this process's.
    """
    env: dict[str, Any] = {
        "refbench": __version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "triton": _triton_version(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "host": socket.gethostname(),
        "git_commit": _git_commit(),
        **_gpu(),
    }
    key_source = json.dumps({k: env.get(k) for k in _KEY_FIELDS}, sort_keys=True)
    env["env_key"] = hashlib.sha256(key_source.encode()).hexdigest()[:12]
    return env
