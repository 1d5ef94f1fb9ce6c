"""``refbench bisect``: the commit that made one cell slower, found with ``git bisect run``.

The repository is cloned (``git clone --shared``: the user's repository,
work tree and refs are never touched, and the clone is removed at the end,
or by refbench.lifeline's watcher, with every process bisect started, when
bisect is killed)
and every measurement runs in the clone's checkout of the commit under
test, with that commit's own refbench (``python -m refbench run`` of the one
cell, or ``--measure CMD``: a command run in the checkout that writes the
cell's result record, or a pytest-benchmark file, to ``$REFBENCH_BISECT_OUT``).

GOOD and BAD are checked out once more, beside the clone, and measured
``REFERENCE_RUNS`` times, taking turns: BAD must be worse than GOOD with its
whole interval beyond the threshold (refbench.regress.stats), or there is
nothing to bisect and the result says why. Then ``git bisect run`` calls
refbench.regress.bisect_step at each commit, which measures the commit
between GOOD and BAD in one stretch, again and again, until the commit's
interval lies on one side of the midpoint between them; one that stays
undecided is skipped, never guessed. When the skipped commits leave more
than one candidate, the result names them all and no first bad commit: the
verdict is inconclusive (refbench.errors.EXIT_INCOMPLETE), not a confident
wrong answer, as a commit measured alone while the machine's load rose
would give.
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

from refbench.errors import RefbenchError
from refbench.lifeline import new_scratch_dir, remove_scratch_dir
from refbench.records.metrics import BY_NAME
from refbench.regress.bisect_step import STEP_TIME, CellKey, measure_checkout, paired_interval
from refbench.regress.gates import DEFAULT_THRESHOLD
from refbench.regress.stats import classify

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
    first_bad: str | None   # full hash; None when no single commit could be named (``reason`` says why)
    subject: str
    ratio: float | None     # the metric at the first bad commit over GOOD's
    good_ratio: float       # BAD over GOOD, measured first
    steps: int
    wall_s: float
    log: str                # git bisect's own log
    reason: str = ""        # why no commit is named
    candidates: tuple[str, ...] = ()   # the commits it could be, when skips left several


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
        trees = {"good": scratch / "good", "bad": scratch / "bad"}
        for name, rev in (("good", good_hash), ("bad", bad_hash)):
            _git(tree, "worktree", "add", "--quiet", "--detach", str(trees[name]), rev)
        state["trees"] = {name: str(path) for name, path in trees.items()}
        references: dict[str, list[list[float]]] = {"good": [], "bad": []}
        for round_ in range(REFERENCE_RUNS):     # taking turns, so a busy spell of the machine falls on both
            for name in ("good", "bad") if round_ % 2 == 0 else ("bad", "good"):
                measured = measure_checkout(trees[name], state)
                if measured is None:
                    raise RefbenchError(f"--{name} {(good_hash, bad_hash)[name == 'bad'][:12]}: the cell {cell!r} "
                                        f"could not be measured there ({_last_error(scratch)})")
                references[name].append(measured)
        for name, rev in (("good", good_hash), ("bad", bad_hash)):
            pooled = [t for run in references[name] for t in run]
            log(f"{name} {rev[:12]}: median step {np.median(pooled):.4g} ms over {len(pooled)} steps of "
                f"{REFERENCE_RUNS} runs")
        spread = paired_interval(references["good"], references["bad"])
        base_ratio = _as_metric(metric, spread.ratio)
        if classify(STEP_TIME, spread, threshold=threshold) != "regressed":
            return BisectResult(None, "", None, base_ratio, 0, time.perf_counter() - started, "", reason=(
                f"--bad {bad} is not worse than --good {good} beyond {threshold:.0%} for {cell!r} with its whole "
                f"interval: step time BAD/GOOD {spread.ratio:.3f} ({spread.low:.3f}-{spread.high:.3f}); nothing to "
                f"bisect (more --iters, or a quieter machine, narrows the interval)"))
        (scratch / "state.json").write_text(json.dumps(state), encoding="utf-8")
        _git(tree, "bisect", "start", bad_hash, good_hash)
        env = dict(os.environ)
        # The step is this refbench's, not the checkout's (``-m`` would import the checkout's own refbench first).
        step = (f"import sys; sys.path.insert(0, {str(REFBENCH_ROOT)!r}); "
                f"from refbench.regress.bisect_step import main; sys.exit(main({str(scratch / 'state.json')!r}))")
        run = _bisect_run(["git", "-C", str(tree), "bisect", "run", sys.executable, "-c", step], env)
        steps_log = scratch / "steps.log"
        for line in steps_log.read_text().splitlines() if steps_log.exists() else []:
            log(line)
        first = _git(tree, "rev-parse", "--verify", "--quiet", "refs/bisect/bad", check=False).stdout.strip()
        found = "is the first bad commit" in run.stdout
        history = _git(tree, "bisect", "log", check=False).stdout
        _git(tree, "bisect", "reset", "--quiet", check=False)
        steps = sum(1 for line in history.splitlines() if line.startswith(("git bisect good", "git bisect bad",
                                                                            "git bisect skip")))
        if not found:
            candidates = tuple(dict.fromkeys(_commits_named(run.stdout + run.stderr)))
            tail = (run.stdout + run.stderr).strip().splitlines()[-1:] or ["no output"]
            return BisectResult(None, "", None, base_ratio, steps, time.perf_counter() - started, history,
                                reason=f"no single first bad commit: the commits it skipped could not be told "
                                       f"apart ({tail[0][:160]}); more --max-repeats or --iters, or a quieter "
                                       f"machine, may decide them", candidates=candidates)
        stretch = scratch / f"{first}.json"
        ratio = None
        if stretch.exists():
            runs = json.loads(stretch.read_text())
            ratio = _as_metric(metric, paired_interval(runs["good"], runs["candidate"]).ratio)
        subject = _git(root, "log", "-1", "--format=%s", first).stdout.strip()
        return BisectResult(first, subject, ratio, base_ratio, steps, time.perf_counter() - started, history)
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


def _as_metric(metric: str, time_ratio: float) -> float:
    """A ratio of step times as the ratio of ``metric`` (samples/s is their inverse, latency the same)."""
    return 1 / time_ratio if BY_NAME[metric].higher_is_better else time_ratio


def _commits_named(text: str) -> list[str]:
    """The full commit hashes git bisect lists when it cannot name one."""
    return [word for line in text.splitlines() for word in line.split()
            if len(word) == 40 and all(c in "0123456789abcdef" for c in word)]


def _last_error(scratch: Path) -> str:
    path = scratch / "last-error.txt"
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1][:200] if lines else "it wrote no record"
