"""Step timers and the Measurement that keeps raw samples and knows its statistics.

CUDA work is timed with CUDA events around each step, CPU work with
``perf_counter_ns``. Warm-up runs until the step time is steady (the
coefficient of variation of the last few steps under a threshold) or a cap is
hit; the caller times the first step separately because it includes lazy
initialisation, cuDNN autotuning or compilation.

A step shorter than ``BLOCK_MS`` is timed in blocks of several calls, as
``torch.utils.benchmark``'s ``blocked_autorange`` does, so the clock's own
overhead does not inflate it; each sample is then one block's time per
step, and the summary says how many steps a block held.

On the CPU each sample also keeps the process's CPU time (``cpu_samples``):
time other processes take from the cell lengthens its wall time, not its CPU
time, so on a busy machine the CPU clock is often the steadier one
(refbench.regress.stats judges by whichever clock is tighter). Warm-up lasts
at least ``min_warmup_s`` as well as until the step time is steady: a fresh
process's first steady-looking steps are not yet its level.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

BLOCK_MS = 2.0          # steps shorter than this are timed in blocks at least this long
MAX_BLOCK = 1000

@dataclass
class Measurement:
    """Raw per-step times in milliseconds and their summary statistics."""

    samples_ms: list[float] = field(default_factory=list)
    block: int = 1         # steps per sample: each sample is a block's time divided by this
    cpu_samples_ms: list[float] | None = None   # the process's CPU time per step for each sample (CPU work)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples_ms)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def cv(self) -> float:
        """Coefficient of variation (stdev / mean); 0 for fewer than two samples."""
        if len(self.samples_ms) < 2:
            return 0.0
        return statistics.stdev(self.samples_ms) / self.mean

    def summary(self) -> dict[str, float | list[float]]:
        summary = {
            "median": self.median, "mean": self.mean, "p10": self.quantile(0.1),
            "p90": self.quantile(0.9), "cv": self.cv, "n": len(self.samples_ms), "block": self.block,
            "samples": [round(s, 6) for s in self.samples_ms],
        }
        if self.cpu_samples_ms:
            cpu = Measurement(self.cpu_samples_ms)
            summary.update(cpu_median=cpu.median, cpu_p10=cpu.quantile(0.1), cpu_p90=cpu.quantile(0.9),
                           cpu_cv=cpu.cv, cpu_samples=[round(s, 6) for s in self.cpu_samples_ms])
        return summary


class StepTimer:
    """Times ``repeat`` calls of a step on ``device`` (milliseconds per call), waiting for queued GPU work."""

    def __init__(self, device: torch.device | str):
        self.cuda = torch.device(device).type == "cuda"
        self.output: object = None   # what the last timed step returned
        self.cpu_ms: float | None = None   # the process's CPU time per call of the last timing (CPU work)

    def __call__(self, step: Callable[[], object], repeat: int = 1) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(repeat):
                self.output = step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / repeat
        cpu_begin, begin = time.process_time_ns(), time.perf_counter_ns()
        for _ in range(repeat):
            self.output = step()
        end, cpu_end = time.perf_counter_ns(), time.process_time_ns()
        self.cpu_ms = (cpu_end - cpu_begin) / 1e6 / repeat
        return (end - begin) / 1e6 / repeat


def block_size(step_ms: float) -> int:
    """Steps per timed block: 1 for steps of ``BLOCK_MS`` or more, else enough to fill ``BLOCK_MS``."""
    if step_ms >= BLOCK_MS or step_ms <= 0:
        return 1
    return min(MAX_BLOCK, math.ceil(BLOCK_MS / step_ms))


@dataclass
class TimingResult:
    measurement: Measurement
    warmup_steps: int
    warmup_s: float
    steady: bool          # False when warm-up hit its cap before the time settled
    last_output: object   # what the last timed step returned (checked for NaN)


def measure(step: Callable[[], object], device, *, iters: int = 20, min_warmup: int = 3,
            max_warmup: int = 50, window: int = 5, steady_cv: float = 0.05, max_warmup_s: float = 30.0,
            min_warmup_s: float = 0.0, agree_block: Callable[[int], int] | None = None) -> TimingResult:
    """Warm up until steady (the last ``window`` steps within ``steady_cv``) and ``min_warmup_s`` have passed, or
    a cap (``max_warmup`` steps, once ``min_warmup_s`` have passed; ``max_warmup_s``), then time ``iters`` steps.

    The caller runs and times the first step itself (``StepTimer``): it
    includes compilation, autotuning and lazy initialisation. Processes that
    step together (data-parallel ranks, whose every step is a collective)
    pass ``agree_block`` to settle on one block size, and warm up a fixed
    number of steps (``min_warmup = max_warmup``, ``min_warmup_s=0``,
    ``max_warmup_s=inf``), else a rank that measured faster steps runs more of
    them and the others wait forever.
    """
    timer = StepTimer(device)
    warm: list[float] = []
    started = time.perf_counter()
    min_warmup_s = min(min_warmup_s, max_warmup_s)
    steady = False
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= max_warmup_s or (len(warm) >= max_warmup and elapsed >= min_warmup_s):
            break
        warm.append(timer(step))
        if (len(warm) >= max(min_warmup, window) and Measurement(warm[-window:]).cv <= steady_cv
                and time.perf_counter() - started >= min_warmup_s):
            steady = True
            break
    warmup_s = time.perf_counter() - started
    block = block_size(statistics.median(warm[-window:] or [timer(step)]))
    if agree_block is not None:
        block = agree_block(block)
    wall, cpu = [], []
    for _ in range(iters):
        wall.append(timer(step, block))
        cpu.append(timer.cpu_ms)
    samples = Measurement(wall, block, None if timer.cuda else cpu)
    return TimingResult(samples, len(warm), warmup_s, steady, timer.output)
