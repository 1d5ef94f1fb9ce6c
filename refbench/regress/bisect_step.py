"""One step of ``git bisect run`` for ``refbench bisect``: measure the checked-out commit, exit 0 good, 1 bad, 125 skip.

Run by git in the clone's work tree with refbench's own code on the path
(refbench.regress.bisect); the measurement itself runs the checked-out commit's code.
This module imports only numpy and scipy, so a step costs the measurement,
not refbench's imports.
"""
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

GOOD, BAD, SKIP = 0, 1, 125
MIN_RUNS = 2      # measurements of a commit before its verdict (refbench.regress.bisect)
from refbench.regress.gates import ALPHA  # light: no torch


@dataclass(frozen=True)
class CellKey:
    workload: str
    variant: dict
    backend: str
    mode: str
    batch_size: int | None


def measure_checkout(tree: Path, state: dict) -> list[float] | None:
    """One measurement of the cell in ``tree``'s checkout: its step times in ms, or None when the commit cannot
    measure it."""
    key = CellKey(**state["cell"])
    out = Path(state["dir"]) / "measure.jsonl"
    out.unlink(missing_ok=True)
    if state["measure"]:
        command = ["bash", "-c", state["measure"]]
    else:
        command = [sys.executable, "-m", _entry_module(tree), "run", "--workloads", key.workload, "--backends", key.backend,
                   "--modes", key.mode, "--iters", str(state["iters"]), "--threads", str(state["threads"]),
                   "--no-check", "--out", str(out)]
        command += ["--batch-sizes", str(key.batch_size)] if key.batch_size else []
        command += [f"--variant={key.workload}:{k}={json.dumps(v) if not isinstance(v, str) else v}"
                    for k, v in key.variant.items()]
    env = {**os.environ, "PYTHONPATH": str(tree), "REFBENCH_BISECT_OUT": str(out)}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    (Path(state["dir"]) / "last-error.txt").write_text((done.stderr or done.stdout)[-2000:], encoding="utf-8")
    if not out.exists():
        return None
    return _cell_samples(out.read_text(encoding="utf-8", errors="replace"), key)


def _entry_module(tree: Path) -> str:
    """The checkout's command module: ``refbench``, or ``bench`` in commits from before the one package."""
    return "refbench" if (tree / "refbench" / "__main__.py").exists() else "bench"


def _cell_samples(text: str, key: CellKey) -> list[float] | None:
    """The cell's step times from what a measurement wrote: result records, one per line, or a
    pytest-benchmark file (its benchmark named ``key.workload``)."""
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("benchmarks"), list):
        data = [b.get("stats", {}).get("data") for b in document["benchmarks"] if b.get("fullname") == key.workload]
        return [float(t) * 1e3 for t in data[-1]] if data and data[-1] else None
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    match = [r for r in records if isinstance(r, dict) and r.get("status") == "ok" and
             (r.get("workload"), r.get("backend"), r.get("mode")) == (key.workload, key.backend, key.mode)]
    if not match:
        return None
    samples = ((match[-1].get("metrics") or {}).get("latency_ms") or {}).get("samples")
    return [float(t) for t in samples] if isinstance(samples, list) and len(samples) >= 2 else None


def classify(samples: list[float], good: list[float], bad: list[float]) -> int | None:
    """GOOD or BAD when ``samples`` are significantly apart from one reference and closer to the other, else None."""
    centre = math.log(np.median(samples))
    to_good, to_bad = abs(centre - math.log(np.median(good))), abs(centre - math.log(np.median(bad)))
    far_from = lambda ref: len(samples) >= 2 and stats.mannwhitneyu(samples, ref).pvalue < ALPHA  # noqa: E731
    if to_bad < to_good and far_from(good):
        return BAD
    if to_good < to_bad and far_from(bad):
        return GOOD
    return None


def main(state_path: str) -> int:
    state = json.loads(Path(state_path).read_text(encoding="utf-8"))
    tree = Path.cwd()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()
    pooled: list[float] = []
    runs = 0
    for _ in range(max(state["max_repeats"], MIN_RUNS)):
        samples = measure_checkout(tree, state)
        if samples is None:
            _note(state, commit, "skipped: the cell could not be measured there")
            return SKIP
        pooled += samples
        runs += 1
        verdict = None if runs < MIN_RUNS else classify(pooled, state["references"]["good"], state["references"]["bad"])
        if verdict is not None:
            (Path(state["dir"]) / f"{commit}.json").write_text(json.dumps(pooled), encoding="utf-8")
            _note(state, commit, f"{'bad' if verdict == BAD else 'good'}: median {np.median(pooled):.4g} ms "
                                 f"over {len(pooled)} steps")
            return verdict
    _note(state, commit, f"skipped: undecided after {len(pooled)} steps (median {np.median(pooled):.4g} ms)")
    return SKIP


def _note(state: dict, commit: str, line: str) -> None:
    with open(Path(state["dir"]) / "steps.log", "a", encoding="utf-8") as f:
        f.write(f"{commit[:12]} {line}\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
