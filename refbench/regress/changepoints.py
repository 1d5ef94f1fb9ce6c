"""Change points of a nightly series: where its level stepped, found with ruptures' PELT.

A series is one (cell, metric) value per night. Its logarithm, divided by
the night-to-night noise (a robust estimate from the first differences,
which a step barely moves: 1.4826 * MAD / sqrt(2)), goes to
``ruptures.Pelt`` with a least-squares cost and a penalty of
``PENALTY * log(n)`` per change, the BIC's order for unit noise. Each change
PELT proposes must then stand on its own, as a change of ``compare`` must:
the medians of the segments on either side differ by more than the
threshold, and a Mann-Whitney U test between their nights is significant;
the weakest change that fails is dropped and the segments re-joined until
all stand. Why ruptures: it needs only numpy and scipy (the other
E-Divisive implementations pin numpy and scipy versions this project's
torch cannot use), and PELT is exact for its penalised cost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import ruptures
from scipy import stats

PENALTY = 4.0
ALPHA = 0.002
MIN_SEGMENT = 2          # nights: one odd night is noise, not a level
NOISE_FLOOR = 0.002      # relative: a series steadier than this is treated as this noisy


@dataclass(frozen=True)
class Change:
    index: int           # the first night of the new level
    ratio: float         # median of the new level over the old
    p_value: float


def change_points(values: Sequence[float], *, threshold: float) -> list[Change]:
    """The steps of ``values`` (positive numbers, oldest first), each larger than ``threshold``."""
    x = np.log(np.asarray(values, dtype=float))
    if len(x) < 2 * MIN_SEGMENT or not np.isfinite(x).all():
        return []
    noise = max(1.4826 * float(np.median(np.abs(np.diff(x)))) / math.sqrt(2), NOISE_FLOOR)
    z = (x - np.median(x)) / noise
    bounds = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(z.reshape(-1, 1)).predict(
        pen=PENALTY * math.log(len(x)))
    starts = list(bounds[:-1])
    while True:
        changes = [_test(x, starts, i, threshold) for i in range(len(starts))]
        weak = [i for i, c in enumerate(changes)
                if c.p_value >= ALPHA or abs(math.log(c.ratio)) <= math.log1p(threshold)]
        if not weak:
            return changes
        # the weakest goes first: the least significant, then the smallest
        starts.pop(max(weak, key=lambda i: (changes[i].p_value, -abs(math.log(changes[i].ratio)))))


def _test(x: np.ndarray, starts: list[int], i: int, threshold: float) -> Change:
    edges = [0, *starts, len(x)]
    before, after = x[edges[i]:edges[i + 1]], x[edges[i + 1]:edges[i + 2]]
    ratio = float(np.exp(np.median(after) - np.median(before)))
    p_value = float(stats.mannwhitneyu(before, after, alternative="two-sided").pvalue)
    return Change(starts[i], ratio, p_value)
