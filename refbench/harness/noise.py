"""How busy the machine was while a cell was timed, and whether its figures can be trusted.

As pyperf does, a measurement says when it may be wrong: ``LoadProbe``
reads the system's CPU accounting (Linux ``/proc/stat``) and this
process's own CPU time around the timed steps, and reports the load
average, the cores that *other* processes kept busy, and the share of time
stolen by a hypervisor. A cell is ``unstable`` when its steps vary too much
(CV above ``UNSTABLE_CV``) or when other work took more than the cores the cell
left free; the reasons are recorded with it. On a busy 2-core machine, two
intra-op threads can run a step 100x slower than one: that is what this
catches, and why CPU cells run with one thread by default.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from refbench.records.schema import UNSTABLE_CV

SPARE_MARGIN = 0.25     # of a core: other processes may use the free cores less this much before it is contention
MAX_STEAL = 0.05
# What made a cell unstable, as the run's closing warning counts them.
KINDS = {"varying": "had varying step times", "busy": "ran while other processes took the free cores",
         "stolen": "lost CPU time to the hypervisor"}


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, steal) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)          # idle + iowait
    steal = values[7] if len(values) > 7 else 0
    busy = sum(values[:8]) - idle - steal                             # guest time is counted in user already
    return busy, steal


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LoadProbe:
    """``start()`` before the timed steps, ``stop(cv, threads)`` after; ``stop`` returns the record's figures."""

    def start(self) -> "LoadProbe":
        self._jiffies, self._own, self._wall = _cpu_jiffies(), _own_cpu_s(), time.perf_counter()
        return self

    def stop(self, cv: float, threads: int) -> dict:
        wall = max(time.perf_counter() - self._wall, 1e-9)
        cores = os.cpu_count() or 1
        figures: dict = {"load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                         "cpu_count": cores, "threads": threads, "cv": cv}
        reasons, kinds = [], []
        if cv > UNSTABLE_CV:
            reasons.append(f"step times vary (CV {cv:.2f} > {UNSTABLE_CV})")
            kinds.append("varying")
        now = _cpu_jiffies()
        if now is not None and self._jiffies is not None:
            tick = os.sysconf("SC_CLK_TCK")
            busy_s = (now[0] - self._jiffies[0]) / tick
            other = max(0.0, busy_s - (_own_cpu_s() - self._own)) / wall
            steal = (now[1] - self._jiffies[1]) / tick / (wall * cores)
            figures.update(other_processes_cores=round(other, 3), steal_share=round(steal, 4))
            spare = max(cores - threads, 0)
            if other > spare - SPARE_MARGIN and other > SPARE_MARGIN:
                reasons.append(f"other processes kept {other:.2f} cores busy and the cell left {spare} free")
                kinds.append("busy")
            if steal > MAX_STEAL:
                reasons.append(f"{steal:.0%} of the CPU time was stolen by the hypervisor")
                kinds.append("stolen")
        figures.update(reasons=reasons, kinds=kinds)
        return figures


def is_unstable(noise: dict) -> bool:
    return bool(noise.get("reasons"))


def busy_warning(records: list[dict]) -> str | None:
    """One line saying how many cells are unstable and why, or None when none is."""
    unstable = [r for r in records if (r.get("metrics") or {}).get("unstable")]
    if not unstable:
        return None
    counts = {kind: sum(kind in r["metrics"]["noise"].get("kinds", ()) for r in unstable) for kind in KINDS}
    why = ", ".join(f"{n} {KINDS[kind]}" for kind, n in counts.items() if n)
    return (f"warning: {len(unstable)} of {len(records)} cells are marked unstable ({why}): the machine was busy "
            "or the steps varied, so their figures may be off; rerun on an idle machine before trusting ratios")
