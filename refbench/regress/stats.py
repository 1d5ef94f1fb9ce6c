"""The statistics compare, nightly and bisect share: the ratio of a metric with its confidence interval, and the
verdict the interval allows.

A change is judged by how sure we are of its size, not by a fixed spread
cut-off. For each metric, ``ratio_interval`` estimates new/base with a
``1 - ALPHA`` confidence interval:

- from the raw samples of one run a side (the step times): the Hodges-Lehmann
  estimate of the shift between the logarithms and its distribution-free
  interval (the Mann-Whitney statistic's, Moses' method), widened by
  ``DRIFT``, the level a fresh process moves by on its own, which the samples
  of one run cannot see, or by ``BUSY_DRIFT`` when either side ran while other
  processes took the cores it left free or the host stole its time (``busy``):
  a busy machine moves a process's level far more than a quiet one does, on
  the CPU clock too, so only a change larger than that is judged;
- from several runs a side (``MIN_RUNS`` or more): each run's median, and
  Welch's t interval on the difference of their mean logarithms, so the drift
  between processes is in the interval itself;
- from the mean, spread and count where a file keeps no samples
  (pytest-benchmark without ``--benchmark-save-data``), by the delta method;
- a metric measured once a run (memory, compile time) has its ratio alone.

``classify`` then says *regressed* when the whole interval lies beyond the
threshold in the worse direction, *improved* likewise in the better one,
*unchanged* when it lies within the threshold on both sides, and
*inconclusive* only when it straddles the threshold: a noisy cell that got
2x slower is flagged, a noisy cell with a 3% change is inconclusive. On a CPU
a step's process CPU time is recorded beside its wall time, and the clock
with the tighter interval judges (``best_clock``). Memory changes smaller
than ``MEMORY_FLOOR_BYTES`` never count (``RSS_FLOOR_BYTES`` for a CPU's
resident-set growth). Which metrics are judged, and which direction is
better, is the metric table's (refbench.records.metrics).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from refbench.records.metrics import Metric
from refbench.regress.gates import ALPHA

MEMORY_FLOOR_BYTES = 1 << 20
RSS_FLOOR_BYTES = 8 << 20
MIN_RUNS = 3           # runs of a cell on each side from which the runs themselves are compared
DRIFT = 0.02           # relative: how far one fresh process's level moves on its own (one run a side)
# Relative: how far it moves when other processes take the free cores. Identical runs of 12 CPU cells on a
# 2-core machine at load 5-6 differed (median of each cell, CPU clock) by 21% at the median, 34% at p75, 66% at p90.
BUSY_DRIFT = 0.5
MAX_PAIRS = 250_000    # pairwise differences for the Hodges-Lehmann interval (larger samples are thinned)
EXACT_PAIRS = 2_500    # up to this many pairs the interval's ranks come from U's exact distribution
FAILING = ("failed", "error", "timeout", "oom")
CHANGES = ("regressed", "improved", "inconclusive", "unchanged")
METHODS = {"samples": "the raw samples' Hodges-Lehmann interval, widened by the drift between processes",
           "busy": "the raw samples' Hodges-Lehmann interval, widened by the drift between processes on a busy "
                   "machine",
           "runs": "Welch's t interval on the runs' log medians",
           "stats": "the delta method from mean, spread and count",
           "window": "the look-back window's night-to-night spread",
           "point": "the ratio alone (one value a side)"}


@dataclass(frozen=True)
class Interval:
    ratio: float           # new / base
    low: float
    high: float
    method: str            # one of METHODS
    clock: str = "wall"    # the clock of the samples: wall, or cpu (a step's process CPU time)

    @property
    def width(self) -> float:
        """The interval's width in log units (0 for a point)."""
        return math.log(self.high / self.low) if self.low > 0 and math.isfinite(self.high) else math.inf


@dataclass(frozen=True)
class Verdict:
    change: str            # one of CHANGES
    interval: Interval

    @property
    def ratio(self) -> float:
        return self.interval.ratio


def _positive(values) -> np.ndarray | None:
    if not isinstance(values, (list, tuple, np.ndarray)):
        return None
    array = np.asarray([v for v in values if number(v) and v > 0], dtype=float)
    return array if len(array) >= 2 else None


def _interval(ratio: float, log_half_width: float, method: str, clock: str = "wall") -> Interval:
    return Interval(ratio, ratio * math.exp(-log_half_width), ratio * math.exp(log_half_width), method, clock)


def samples_interval(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA, drift: float = DRIFT,
                     clock: str = "wall", method: str = "samples") -> Interval | None:
    """new/base of two sets of samples (module docstring), or None when a side has fewer than two."""
    b, n = _positive(base), _positive(new)
    if b is None or n is None:
        return None
    lb, ln = np.log(_thin(b, len(n))), np.log(_thin(n, len(b)))
    differences = np.sort((ln[None, :] - lb[:, None]).ravel())
    centre = float(np.median(differences))
    cut = _moses_cut(len(lb), len(ln), alpha)
    if cut == 0:    # too few samples for an interval of this confidence: it is unbounded
        return Interval(math.exp(centre), 0.0, math.inf, method, clock)
    low, high = differences[cut - 1], differences[len(differences) - cut]
    spread = math.log1p(drift)
    return Interval(math.exp(centre), math.exp(low - spread), math.exp(high + spread), method, clock)


def _moses_cut(m: int, n: int, alpha: float) -> int:
    """How many of the m*n ordered differences the ``1 - alpha`` interval leaves out at each end: the largest k
    with P(U < k) <= alpha / 2 for the Mann-Whitney statistic U of samples of m and n under no shift (exact up to
    ``EXACT_PAIRS`` pairs, the normal approximation beyond)."""
    if m * n > EXACT_PAIRS:
        z = stats.norm.ppf(1 - alpha / 2)
        return max(0, int(math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12))))
    # U's null distribution: the coefficients of the Gaussian binomial [m + n choose m] in q
    counts = np.zeros(m * n + 1)
    counts[0] = 1.0
    for i in range(1, m + 1):
        counts[n + i:] -= counts[: m * n + 1 - (n + i)].copy()      # times (1 - q^(n+i))
        for k in range(i, m * n + 1):                                 # over (1 - q^i)
            counts[k] += counts[k - i]
    below = np.cumsum(counts) / counts.sum()                          # below[k] = P(U <= k)
    return int(np.searchsorted(below, alpha / 2, side="right"))


def _thin(values: np.ndarray, other: int) -> np.ndarray:
    """Evenly chosen values, so that len(values) * other stays under MAX_PAIRS."""
    keep = max(2, MAX_PAIRS // max(other, 1))
    return values if len(values) <= keep else np.sort(values)[np.linspace(0, len(values) - 1, keep).astype(int)]


def runs_interval(base: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA) -> Interval:
    """new/base from ``MIN_RUNS`` or more runs a side: Welch's interval on the mean log values."""
    lb, ln = np.log(np.asarray(base, dtype=float)), np.log(np.asarray(new, dtype=float))
    ratio = math.exp(float(np.median(ln) - np.median(lb)))
    vb, vn = np.var(lb, ddof=1) / len(lb), np.var(ln, ddof=1) / len(ln)
    se = math.sqrt(vb + vn)
    if se == 0:
        return Interval(ratio, ratio, ratio, "runs")
    dof = (vb + vn) ** 2 / ((vb ** 2 / (len(lb) - 1) if vb else 0) + (vn ** 2 / (len(ln) - 1) if vn else 0))
    return _interval(ratio, float(stats.t.ppf(1 - alpha / 2, dof)) * se, "runs")


def stats_interval(base: tuple[float, float, int], new: tuple[float, float, int], *,
                   alpha: float = ALPHA, drift: float = DRIFT) -> Interval | None:
    """new/base of two means from (mean, stdev, n) each: var(log mean) ~ (stdev / mean)^2 / n."""
    (mb, sb, nb), (mn, sn, nn) = base, new
    if min(nb, nn) < 2 or mb <= 0 or mn <= 0:
        return None
    se = math.sqrt((sb / mb) ** 2 / nb + (sn / mn) ** 2 / nn)
    half = float(stats.norm.ppf(1 - alpha / 2)) * se + math.log1p(drift)
    return _interval(mn / mb, half, "stats")


def window_interval(value: float, window: Sequence[float], *, alpha: float = ALPHA, floor: float = 0.01) -> Interval:
    """Tonight's ``value`` over the window's level (the median of its nights), with the interval one night's
    value has around that level: the window's robust night-to-night spread (at least ``floor``)."""
    logs = np.log(np.asarray(window, dtype=float))
    centre = float(np.median(logs))
    spread = max(1.4826 * float(np.median(np.abs(logs - centre))), floor)
    half = float(stats.t.ppf(1 - alpha / 2, len(logs) - 1)) * spread * math.sqrt(1 + 1 / len(logs))
    return _interval(value / math.exp(centre), half, "window")


def point_interval(base: float, new: float) -> Interval:
    ratio = new / base if base else math.inf
    return Interval(ratio, ratio, ratio, "point")


def classify(metric: Metric, interval: Interval, *, threshold: float) -> str:
    """regressed, improved, unchanged or inconclusive (module docstring); ``metric`` says which way is worse."""
    low, high = interval.low, interval.high
    worse_low, worse_high = (_reciprocal(high), _reciprocal(low)) if metric.higher_is_better else (low, high)
    if worse_low > 1 + threshold:
        return "regressed"
    if worse_high < 1 / (1 + threshold):
        return "improved"
    return "inconclusive" if worse_high > 1 + threshold else "unchanged"


def judge(metric: Metric, interval: Interval, *, threshold: float, base: float | None = None,
          new: float | None = None, memory_floor: float = MEMORY_FLOOR_BYTES) -> Verdict:
    """The verdict on one metric's interval; a memory change under ``memory_floor`` bytes is unchanged."""
    if metric.family == "memory" and base is not None and new is not None and abs(new - base) < memory_floor:
        return Verdict("unchanged", interval)
    return Verdict(classify(metric, interval, threshold=threshold), interval)


def metric_interval(metric: Metric, base: dict, new: dict, *, runs_base: Sequence[float] = (),
                    runs_new: Sequence[float] = (), alpha: float = ALPHA) -> Interval | None:
    """``metric``'s new/base with its interval, from the best evidence the two records and their runs hold:
    the runs (``MIN_RUNS`` or more a side), else the step times on the tighter clock, else the samples'
    mean and spread, else the two values alone. None when a side has no value."""
    if min(len(runs_base), len(runs_new)) >= MIN_RUNS:
        return runs_interval(runs_base, runs_new, alpha=alpha)
    value_b, value_n = base.get(metric.name), new.get(metric.name)
    if not (number(value_b) and number(value_n) and value_b > 0 and value_n > 0):
        return None
    if metric.timed:
        drift = {"drift": BUSY_DRIFT, "method": "busy"} if busy(base) or busy(new) else {}
        times = best_clock([samples_interval(base.get("latency_ms.samples"), new.get("latency_ms.samples"),
                                             alpha=alpha, **drift),
                            samples_interval(base.get("latency_ms.cpu_samples"), new.get("latency_ms.cpu_samples"),
                                             alpha=alpha, clock="cpu", **drift)])
        if times is None and sample_stats(base) and sample_stats(new):
            times = stats_interval(sample_stats(base), sample_stats(new), alpha=alpha)
        if times is not None:   # step times: a rate's ratio is their inverse
            return _inverse(times) if metric.higher_is_better else times
    return point_interval(float(value_b), float(value_n))


def _reciprocal(x: float) -> float:
    return math.inf if x == 0 else 1 / x


def _inverse(interval: Interval) -> Interval:
    return Interval(_reciprocal(interval.ratio), _reciprocal(interval.high), _reciprocal(interval.low),
                    interval.method, interval.clock)


def best_clock(intervals: Sequence[Interval | None]) -> Interval | None:
    """Of the intervals one metric has on several clocks, the tightest (the first when they tie)."""
    found = [i for i in intervals if i is not None]
    return min(found, key=lambda i: i.width) if found else None


def spread(row: pd.Series | dict) -> float:
    """Robust CV of a cell's raw step times (1.4826 MAD / median), else its recorded CV, else 0."""
    samples = _positive(row.get("latency_ms.samples"))
    if samples is not None:
        median = float(np.median(samples))
        return float(1.4826 * np.median(np.abs(samples - median)) / median)
    cv = row.get("latency_ms.cv")
    return float(cv) if number(cv) else 0.0


def machine_key(frame: pd.DataFrame) -> pd.Series:
    """What makes two records comparable: the env_key and, where a record names one, its GPU driver."""
    driver = frame["env.driver"] if "env.driver" in frame else pd.Series(None, index=frame.index)
    return frame["env_key"].astype(str) + driver.map(lambda d: f"+driver {d}" if isinstance(d, str) and d else "")


def busy(row: dict) -> str:
    """Why the machine disturbed a record's timing (its noise check's busy or stolen reason), else ''."""
    reasons = row.get("noise.reasons")
    kinds = row.get("noise.kinds")
    if not isinstance(kinds, list) or not isinstance(reasons, list):
        return ""
    named = [r for r, k in zip(reasons, kinds) if k in ("busy", "stolen")] if len(reasons) == len(kinds) else []
    return f"machine busy: {named[0]}" if named else ("machine busy" if {"busy", "stolen"} & set(kinds) else "")


def memory_floor(*rows: dict) -> float:
    """The smallest memory change that counts between records: larger for a CPU's resident-set growth."""
    return RSS_FLOOR_BYTES if any(r.get("memory_kind") == "rss_delta" for r in rows) else MEMORY_FLOOR_BYTES


def sample_stats(row: dict) -> tuple[float, float, int] | None:
    mean, cv, count = row.get("latency_ms.mean"), row.get("latency_ms.cv"), row.get("latency_ms.n")
    if not all(number(v) for v in (mean, cv, count)):
        return None
    return float(mean), float(mean) * float(cv), int(count)


def number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
