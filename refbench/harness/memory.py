"""Peak memory of windows of work: CUDA allocator peaks, or resident-set growth on CPU.

A ``MemoryProbe`` notes what was in use when a cell began; each ``window``
resets the peak and reports the peak inside it relative to that baseline,
so a cell's first step (cuDNN autotuning, compilation) and its timed steps
are measured separately, and neither counts what existed before the cell.
On Linux the CPU peak is the process's VmHWM, which writing 5 to
/proc/self/clear_refs resets; elsewhere it is ``ru_maxrss``, a peak for the
whole process that cannot be reset.
"""
from __future__ import annotations

import resource
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_bytes() -> int:
    hwm = _status_kib("VmHWM")
    return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class MemoryProbe:
    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        if self.cuda:
            torch.cuda.synchronize()
            self.base_allocated = torch.cuda.memory_allocated()
            self.base_reserved = torch.cuda.memory_reserved()
        else:
            rss = _status_kib("VmRSS")
            self.base_rss = rss * 1024 if rss is not None else _rss_peak_bytes()

    @contextmanager
    def window(self, prefix: str) -> Iterator[dict[str, int]]:
        """Yield a dict filled on exit with ``{prefix}peak_allocated_bytes`` and ``{prefix}peak_reserved_bytes``
        (CUDA) or ``{prefix}peak_rss_delta_bytes`` (CPU)."""
        stats: dict[str, int] = {}
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            yield stats
            torch.cuda.synchronize()
            stats[f"{prefix}peak_allocated_bytes"] = torch.cuda.max_memory_allocated() - self.base_allocated
            stats[f"{prefix}peak_reserved_bytes"] = torch.cuda.max_memory_reserved() - self.base_reserved
        else:
            _reset_rss_peak()
            yield stats
            stats[f"{prefix}peak_rss_delta_bytes"] = max(0, _rss_peak_bytes() - self.base_rss)
