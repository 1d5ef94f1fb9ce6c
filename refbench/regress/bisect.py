"""``refbench bisect``: the commit that made one cell slower, found with ``git bisect run``.

The repository is cloned (``git clone --shared``: the user's repository,
work tree and refs are never touched, and the clone is removed at the end,
or by refbench.lifeline's watcher, with every process bisect started, when
bisect is killed)
and every measurement runs in the clone's checkout of the commit under
test, with that commit's own refbench (``python -m refbench run`` of the one
cell, or ``--measure CMD``: a command run in the checkout that writes the
cell's result record, or a pytest-benchmark file, to ``$REFBENCH_BISECT_OUT``).

First GOOD and BAD are measured; they must differ beyond the threshold and
significantly (Mann-Whitney U on the step times, refbench.regress.compare), or there is
nothing to bisect. Then ``git bisect run`` calls refbench.regress.bisect_step at each
commit: it measures the cell, and again (the samples pooled) until the
commit is significantly different from one reference and closer to the
other: bad (exit 1) when it is closer to BAD, good (0) when closer to GOOD;
a commit that cannot be measured or stays undecided after ``max_repeats``
measurements is skipped (125). Each commit is measured at least
``MIN_RUNS`` times and GOOD and BAD ``REFERENCE_RUNS`` times, interleaved:
on a shared machine one run's median can be twice another's, and a verdict
from one run would follow the machine's load, not the commit.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import stats

from refbench.regress.bisect_step import CellKey, measure_checkout
from refbench.records.metrics import BY_NAME
from refbench.regress.gates import ALPHA
from refbench.regress.gates import DEFAULT_THRESHOLD
from refbench.errors import RefbenchError
from refbench.lifeline import new_scratch_dir, remove_scratch_dir

REFERENCE_RUNS = 3        # measurements of GOOD and of BAD, pooled
REFBENCH_ROOT = Path(__file__).resolve().parents[2]


def parse_cell(text: str) -> CellKey:
    """``"lenet5 activation=tanh | cpu | train | bs=16"`` (a cell as compare and nightly print it; ``/`` as in
    their Markdown also separates; a trailing data set is ignored)."""
    parts = [p.strip() for p in text.replace(" / ", " | ").split("|")]
    if len(parts) < 4 or not parts[3].startswith("bs=") or not parts[0]:
        raise RefbenchError(f"--cell {text!r}: give it as the tables print it, e.g. 'mlp | cpu | train | bs=16'")
    label = parts[0].split()
    variant = {}
    for item in label[1:]:
        key, _, value = item.partition("=")
        try:
            variant[key] = json.loads(value)
        except json.JSONDecodeError:
            variant[key] = value
    batch = parts[3].removeprefix("bs=")
    if batch not in ("", "-") and not (batch.isdigit() and int(batch) > 0):
        raise RefbenchError(f"--cell {text!r}: the batch size bs={batch} is not a positive integer; give it as the "
                            f"tables print it, e.g. 'mlp | cpu | train | bs=16'")
    return CellKey(label[0], variant, parts[1], parts[2], None if batch in ("", "-") else int(batch))


@dataclass
class BisectResult:
    first_bad: str          # full hash
    subject: str
    ratio: float            # the metric at the first bad commit over GOOD's
    good_ratio: float       # BAD over GOOD, measured first
    steps: int
    wall_s: float
    log: str                # git bisect's own log


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RefbenchError(f"git {' '.join(args)} failed in {repo}: {(done.stderr or done.stdout).strip()[:200]}")
    return done


def _resolve(repo: Path, rev: str, flag: str) -> str:
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if done.returncode != 0:
        raise RefbenchError(f"{flag} {rev}: no such revision in {repo}; give a commit, tag or branch that exists")
    return done.stdout.strip()


def bisect(*, good: str, bad: str, cell: str, metric: str = "samples_per_s", repo: str | os.PathLike = ".",
           measure: str | None = None, iters: int = 20, threads: int = 1, max_repeats: int = 4,
           threshold: float = DEFAULT_THRESHOLD, log: Callable[[str], None] = lambda line: None) -> BisectResult:
    """Find the first commit between ``good`` and ``bad`` where ``cell``'s ``metric`` got worse."""
    started = time.perf_counter()
    timed = [name for name, m in BY_NAME.items() if m.timed]
    if metric not in timed:
        raise RefbenchError(f"--metric {metric}: bisect judges metrics its step times measure: {', '.join(timed)}")
    key = parse_cell(cell)
    top = _git(Path(repo), "rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0:
        raise RefbenchError(f"{repo} is not a git repository; run bisect inside the repository to search")
    root = Path(top.stdout.strip())
    if _git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise RefbenchError(f"the work tree of {root} has uncommitted changes; commit or stash them first "
                            f"(bisect measures commits, never the work tree)")
    good_hash, bad_hash = _resolve(root, good, "--good"), _resolve(root, bad, "--bad")
    scratch = new_scratch_dir(prefix="refbench-bisect-")   # removed even if bisect is killed
    try:
        tree = scratch / "tree"
        _git(root, "clone", "--quiet", "--shared", "--no-checkout", str(root), str(tree))
        state = {"cell": key.__dict__, "metric": metric, "measure": measure, "iters": iters, "threads": threads,
                 "max_repeats": max_repeats, "threshold": threshold, "dir": str(scratch)}
        references: dict[str, list[float]] = {"good": [], "bad": []}
        for _ in range(REFERENCE_RUNS):     # interleaved, so a busy spell of the machine falls on both
            for name, rev in (("good", good_hash), ("bad", bad_hash)):
                _git(tree, "checkout", "--quiet", "--detach", rev)
                measured = measure_checkout(tree, state)
                if measured is None:
                    raise RefbenchError(f"--{name} {rev[:12]}: the cell {cell!r} could not be measured there "
                                        f"({_last_error(scratch)})")
                references[name] += measured
        for name, rev in (("good", good_hash), ("bad", bad_hash)):
            log(f"{name} {rev[:12]}: median {np.median(references[name]):.4g} over {len(references[name])} "
                f"values of {REFERENCE_RUNS} runs")
        state["references"] = references
        base_ratio = value_ratio(metric, references["bad"], references["good"])
        p_value = float(stats.mannwhitneyu(references["good"], references["bad"]).pvalue)
        metric_info = BY_NAME[metric]
        worse = 1 / base_ratio if metric_info.higher_is_better else base_ratio
        if worse <= 1 + threshold or p_value >= ALPHA:
            raise RefbenchError(f"--bad {bad} is not significantly worse than --good {good} for {cell!r} "
                                f"({metric} ratio {base_ratio:.3f}, p {p_value:.2g}); nothing to bisect")
        (scratch / "state.json").write_text(json.dumps(state), encoding="utf-8")
        _git(tree, "bisect", "start", bad_hash, good_hash)
        env = dict(os.environ)
        # The step is this refbench's, not the checkout's (``-m`` would import the checkout's own refbench first).
        step = (f"import sys; sys.path.insert(0, {str(REFBENCH_ROOT)!r}); from refbench.regress.bisect_step import main; "
                f"sys.exit(main({str(scratch / 'state.json')!r}))")
        run = _bisect_run(["git", "-C", str(tree), "bisect", "run", sys.executable, "-c", step], env)
        steps_log = scratch / "steps.log"
        for line in steps_log.read_text().splitlines() if steps_log.exists() else []:
            log(line)
        first = _git(tree, "rev-parse", "--verify", "--quiet", "refs/bisect/bad", check=False).stdout.strip()
        found = "is the first bad commit" in run.stdout
        history = _git(tree, "bisect", "log", check=False).stdout
        _git(tree, "bisect", "reset", "--quiet", check=False)
        if not found:
            tail = (run.stdout + run.stderr).strip().splitlines()[-1:] or ["no output"]
            raise RefbenchError(f"git bisect run found no single first bad commit ({tail[0][:160]}); "
                                f"the commits it skipped could not be told apart: try more --iters")
        steps = sum(1 for line in history.splitlines() if line.startswith("git bisect good")
                    or line.startswith("git bisect bad") or line.startswith("git bisect skip"))
        measured = json.loads((scratch / f"{first}.json").read_text()) if (scratch / f"{first}.json").exists() \
            else references["bad"]
        subject = _git(root, "log", "-1", "--format=%s", first).stdout.strip()
        return BisectResult(first, subject, value_ratio(metric, measured, references["good"]), base_ratio,
                            max(steps, 0), time.perf_counter() - started, history)
    finally:
        remove_scratch_dir(scratch)


def _bisect_run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    """``git bisect run`` in its own process group, killed whole (the measurement too) if bisect is interrupted."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        out, err = process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def value_ratio(metric: str, samples: list[float], reference: list[float]) -> float:
    """``metric`` of step times ``samples`` over that of ``reference`` (samples/s is the inverse of the median
    step time, latency the median itself)."""
    ratio = float(np.median(samples) / np.median(reference))
    return 1 / ratio if BY_NAME[metric].higher_is_better else ratio


def _last_error(scratch: Path) -> str:
    path = scratch / "last-error.txt"
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1][:200] if lines else "it wrote no record"
