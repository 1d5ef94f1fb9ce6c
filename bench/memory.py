"""Peak memory of a block of work: CUDA allocator peaks, or the process's RSS growth on CPU.

Each figure is relative to what was allocated when the block began, so a
cell measures its own work, not what an earlier cell left behind.
"""
from __future__ import annotations

import resource
from contextlib import contextmanager
from typing import Iterator

import torch


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@contextmanager
def peak_memory(device) -> Iterator[dict[str, int]]:
    """Yield a dict filled, on exit, with ``peak_allocated_bytes`` and ``peak_reserved_bytes``
    (CUDA) or ``peak_rss_delta_bytes`` (CPU: growth of the process's high-water mark)."""
    stats: dict[str, int] = {}
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        base_allocated = torch.cuda.memory_allocated()
        base_reserved = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        yield stats
        torch.cuda.synchronize()
        stats["peak_allocated_bytes"] = torch.cuda.max_memory_allocated() - base_allocated
        stats["peak_reserved_bytes"] = torch.cuda.max_memory_reserved() - base_reserved
    else:
        base = _max_rss_bytes()
        yield stats
        stats["peak_rss_delta_bytes"] = _max_rss_bytes() - base
