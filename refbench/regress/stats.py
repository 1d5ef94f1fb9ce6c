"""The statistics compare, nightly and bisect share: one verdict on one metric's change, and what disturbs it.

``judge`` decides whether one metric changed between two measurements: the
ratio of the values must be beyond the threshold *and* the change
significant on the raw samples (a two-sided Mann-Whitney U test on the step
times; Welch's t-test from mean, CV and count where a file keeps no
samples). A metric measured once per run (memory, compile time) has no
samples: its ratio alone decides, and memory changes smaller than
``MEMORY_FLOOR_BYTES`` never count (``RSS_FLOOR_BYTES`` for a CPU's
resident-set growth). ``judge_runs`` compares several runs a side, as pyperf
compares processes: the ratio of the runs' medians and Welch's t-test on
their logarithms. ``TESTS`` names each test, so a verdict can say which one
decided it. Which metrics are judged, and in which direction, is the metric
table's (refbench.records.metrics).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from refbench.records.metrics import Metric
from refbench.regress.gates import ALPHA

MEMORY_FLOOR_BYTES = 1 << 20
RSS_FLOOR_BYTES = 8 << 20
MIN_RUNS = 3     # records of a cell on each side from which the runs themselves are compared
FAILING = ("failed", "error", "timeout", "oom")
TESTS = {"mann-whitney": "Mann-Whitney U on the raw samples", "welch-stats": "Welch's t-test from mean, CV and n",
         "welch-runs": "Welch's t-test on the runs' log values", "ratio": "the ratio alone (one value a side)"}


@dataclass
class Verdict:
    change: str                 # "improved", "regressed" or "unchanged"
    ratio: float                # new / base
    p_value: float | None       # None: no samples to test on
    test: str = "ratio"         # which of TESTS decided


def judge(metric: Metric, base: float, new: float, *, threshold: float, base_samples=None, new_samples=None,
          base_stats=None, new_stats=None, alpha: float = ALPHA, memory_floor: float = MEMORY_FLOOR_BYTES) -> Verdict:
    """The change of one metric between two measurements (module docstring for the rule).

    ``*_samples`` are raw step times (any monotone measure of the metric:
    the test is on ranks); ``*_stats`` are (mean, stdev, n) of the step
    times when there are no samples.
    """
    ratio = new / base if base else math.inf
    worse = 1 / ratio if metric.higher_is_better else ratio
    p_value, test = None, "ratio"
    if _has(base_samples) and _has(new_samples):
        p_value = float(stats.mannwhitneyu(base_samples, new_samples, alternative="two-sided").pvalue)
        test = "mann-whitney"
    elif base_stats is not None and new_stats is not None and min(base_stats[2], new_stats[2]) >= 2:
        test = "welch-stats"
        if base_stats[1] == 0 and new_stats[1] == 0:
            p_value = 0.0 if base_stats[0] != new_stats[0] else 1.0
        else:
            p_value = float(stats.ttest_ind_from_stats(*base_stats, *new_stats, equal_var=False).pvalue)
    significant = p_value is None or p_value < alpha
    if metric.family == "memory" and abs(new - base) < memory_floor:
        significant = False
    if significant and worse > 1 + threshold:
        return Verdict("regressed", ratio, p_value, test)
    if significant and worse < 1 / (1 + threshold):
        return Verdict("improved", ratio, p_value, test)
    return Verdict("unchanged", ratio, p_value, test)


def _has(samples) -> bool:
    return isinstance(samples, (list, tuple, np.ndarray)) and len(samples) >= 2


def spread(row: pd.Series | dict) -> float:
    """Robust CV of a cell's raw step times (1.4826 MAD / median), else its recorded CV, else 0."""
    samples = row.get("latency_ms.samples")
    if _has(samples):
        values = np.asarray(samples, dtype=float)
        median = float(np.median(values))
        return float(1.4826 * np.median(np.abs(values - median)) / median) if median > 0 else 0.0
    cv = row.get("latency_ms.cv")
    return float(cv) if cv is not None and pd.notna(cv) else 0.0


def machine_key(frame: pd.DataFrame) -> pd.Series:
    """What makes two records comparable: the env_key and, where a record names one, its GPU driver."""
    driver = frame["env.driver"] if "env.driver" in frame else pd.Series(None, index=frame.index)
    return frame["env_key"].astype(str) + driver.map(lambda d: f"+driver {d}" if isinstance(d, str) and d else "")


def judge_runs(metric: Metric, base: Sequence[float], new: Sequence[float], *, threshold: float,
               alpha: float = ALPHA, memory_floor: float = MEMORY_FLOOR_BYTES) -> Verdict:
    """A metric's change between sides of ``MIN_RUNS`` runs or more each: the ratio of the runs' medians, and
    Welch's t-test on their logarithms, so the spread between runs (which the samples of one run cannot see)
    decides what is significant."""
    ratio = float(np.median(new) / np.median(base))
    logs_b, logs_n = np.log(base), np.log(new)
    if np.ptp(logs_b) == 0 and np.ptp(logs_n) == 0:     # every run alike on each side (memory, often)
        p_value = 0.0 if ratio != 1 else 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # nearly alike: the test says so by its p-value
            p_value = float(stats.ttest_ind(logs_b, logs_n, equal_var=False).pvalue)
        p_value = p_value if math.isfinite(p_value) else 1.0
    worse = 1 / ratio if metric.higher_is_better else ratio
    change = ("regressed" if worse > 1 + threshold else "improved" if worse < 1 / (1 + threshold) else "unchanged")
    if metric.family == "memory" and abs(float(np.median(new) - np.median(base))) < memory_floor:
        change = "unchanged"
    return Verdict(change if p_value < alpha else "unchanged", ratio, p_value, "welch-runs")


def run_spread(runs: Sequence[float]) -> float:
    """The spread between runs: the standard deviation of the logarithms of their values (about their CV)."""
    return float(np.std(np.log(runs), ddof=1)) if len(runs) >= 2 else 0.0


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
