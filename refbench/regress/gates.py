"""What can gate ``compare`` and ``nightly`` (``--fail-on``) and how big a change must be (``--threshold``).

Imports nothing heavy: the CLI builds its parser from it before pandas or torch is imported.
"""
from __future__ import annotations

from typing import Iterable

GATES = ("throughput", "latency", "memory", "correctness", "accuracy")
DEFAULT_THRESHOLD = 0.05


def parse_threshold(text: str) -> float:
    """``5%``, ``0.05`` and ``5`` all mean five percent."""
    from refbench.errors import RefbenchError

    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise RefbenchError(f"--threshold takes a percentage such as 5% or a fraction such as 0.05, "
                            f"got {text!r}") from None
    value = value / 100 if text.strip().endswith("%") or value >= 1 else value
    if not 0 < value < 10:
        raise RefbenchError(f"--threshold must be above 0% and below 1000%, got {text!r}; e.g. 5%")
    return value


def parse_gates(items: Iterable[str]) -> tuple[str, ...]:
    from refbench.errors import RefbenchError

    items = tuple(items)
    bad = [g for g in items if g not in GATES]
    if bad or not items:
        raise RefbenchError(f"--fail-on {','.join(bad) or '(nothing)'}: choose among {','.join(GATES)}")
    return items
ALPHA = 0.10             # 1 - the confidence of the intervals every verdict of compare, nightly and bisect is judged by
