"""One step of ``git bisect run`` for ``refbench bisect``: judge the checked-out commit, exit 0 good, 1 bad, 125 skip.

Run by git in the clone's work tree with refbench's own code on the path
(refbench.regress.bisect); each measurement runs a checkout's own code. The
candidate is measured between GOOD and BAD, in one stretch (GOOD, candidate,
BAD, then BAD, candidate, GOOD, ...), so that a change of the machine's load
falls on the three alike, and each round is judged on its own: where the
candidate's median step time lies between GOOD's (0) and BAD's (1) in that
round, on a log scale. After ``MIN_RUNS`` rounds, and after each round from
then on, the rounds' positions get a t interval: bad when the whole interval
lies above the midpoint (0.5), good when it lies below, and measured again
while it straddles it, so that a round whose load changed halfway widens
the interval instead of deciding. A candidate still undecided after
``max_repeats`` rounds, or that cannot be measured, is skipped (125), never
guessed.
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

from refbench.records.metrics import BY_NAME
from refbench.regress.gates import ALPHA
from refbench.regress.stats import Interval, classify, samples_interval

GOOD, BAD, SKIP, ABORT = 0, 1, 125, 128
MIN_RUNS = 2                              # rounds before a candidate's first verdict
STEP_TIME = BY_NAME["latency_ms.median"]  # what a stretch compares: step times, worse when longer
ORDERS = (("good", "candidate", "bad"), ("bad", "candidate", "good"))


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


def paired_interval(base_runs: list[list[float]], new_runs: list[list[float]], *,
                    alpha: float = ALPHA) -> Interval:
    """new/base of step times, run against run (the runs of one round measured in one stretch): the t interval
    of the rounds' log ratios of medians; one round alone, the two runs' samples."""
    if len(base_runs) < 2:
        return samples_interval(base_runs[0], new_runs[0], alpha=alpha)
    logs = np.log([np.median(n) / np.median(b) for b, n in zip(base_runs, new_runs)])
    half = float(stats.t.ppf(1 - alpha / 2, len(logs) - 1) * np.std(logs, ddof=1) / math.sqrt(len(logs)))
    centre = float(np.mean(logs))
    return Interval(math.exp(centre), math.exp(centre - half), math.exp(centre + half), "runs")


def verdict(runs: dict[str, list[list[float]]], threshold: float, *, alpha: float = ALPHA) -> tuple[int | None, str]:
    """GOOD or BAD for the candidate of these rounds, or None while its interval straddles the midpoint (or
    GOOD and BAD themselves cannot be told apart in this stretch)."""
    spread = paired_interval(runs["good"], runs["bad"], alpha=alpha)
    if classify(STEP_TIME, spread, threshold=threshold) != "regressed":
        return None, f"BAD/GOOD {spread.ratio:.3f} ({spread.low:.3f}-{spread.high:.3f}) not apart in this stretch"
    positions = [math.log(np.median(c) / np.median(g)) / math.log(np.median(b) / np.median(g))
                 for g, c, b in zip(runs["good"], runs["candidate"], runs["bad"])]
    centre = float(np.mean(positions))
    half = float(stats.t.ppf(1 - alpha / 2, len(positions) - 1) * np.std(positions, ddof=1)
                 / math.sqrt(len(positions)))
    what = (f"between GOOD (0) and BAD (1): {centre:.2f} ({centre - half:.2f} to {centre + half:.2f}) over "
            f"{len(positions)} rounds; BAD/GOOD {spread.ratio:.3f}")
    if centre - half > 0.5:
        return BAD, what
    if centre + half < 0.5:
        return GOOD, what
    return None, what


def main(state_path: str) -> int:
    state = json.loads(Path(state_path).read_text(encoding="utf-8"))
    trees = {"good": Path(state["trees"]["good"]), "bad": Path(state["trees"]["bad"]), "candidate": Path.cwd()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    runs: dict[str, list[list[float]]] = {"good": [], "candidate": [], "bad": []}
    what = ""
    for round_ in range(max(state["max_repeats"], MIN_RUNS)):
        for side in ORDERS[round_ % 2]:
            samples = measure_checkout(trees[side], state)
            if samples is None:
                if side == "candidate":
                    _note(state, commit, "skipped: the cell could not be measured there")
                    return SKIP
                _note(state, commit, f"aborted: {side.upper()} could not be measured again")
                return ABORT
            runs[side].append(samples)
        if round_ + 1 >= MIN_RUNS:
            found, what = verdict(runs, state["threshold"])
            if found is not None:
                (Path(state["dir"]) / f"{commit}.json").write_text(json.dumps(runs), encoding="utf-8")
                _note(state, commit, f"{'bad' if found == BAD else 'good'} after {round_ + 1} rounds: {what}")
                return found
    _note(state, commit, f"skipped: undecided after {len(runs['candidate'])} rounds: {what}")
    return SKIP


def _note(state: dict, commit: str, line: str) -> None:
    with open(Path(state["dir"]) / "steps.log", "a", encoding="utf-8") as f:
        f.write(f"{commit[:12]} {line}\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
