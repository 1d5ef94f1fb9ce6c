"""Running the plan in the window, and rehearsing it without a GPU.

``run`` writes the plan into the folder, then runs each step as its own
process (refbench.gpu_check.steps) until the end of its share, counted from
where the plan expected it to start (so time that earlier steps saved is
its too), never past the budget's end; a step that
overruns is killed and the next one starts. Each step's outcome is a line of
``steps.jsonl``; the folder is packed into the returned folder after every
step and every 10 s between (refbench.gpu_check.pack), so whatever ends the
call, what was measured comes back. ``resume`` keeps the folder's results,
and every step measures only what they lack.

``dry_run`` answers, without a GPU, whether the window would be used well:
it prints the plan, imports every module a step imports and collects
``pytest -m gpu``, both in a process where only the device image's and
the carry's packages can be imported (refbench.gpu_check.image), checks the
carry folder and that the plan ends inside the device call's time limit.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from refbench.gpu_check import carry, plan as planning
from refbench.gpu_check.image import ROOT, check_imports, collect_gpu_tests
from refbench.gpu_check.pack import Packer
from refbench.gpu_check.steps import STEP_MODULES, write_atomic

CALL_TIMEOUT_S = 540        # the device call's time limit (README), under the 600 s a call may last
START_MARGIN_S = 60         # the call's own start-up, imports and last pack, inside its time limit
MIN_STEP_S = 5.0            # a step left less than this is recorded as not run


def gpu_folder_name(device_name: str) -> str:
    """``NVIDIA H200`` -> ``nvidia-h200``: the reports/ folder of a GPU model."""
    return re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-").lower()


def run(folder: Path, *, budget_s: float, device: str, out: Path | None, resume: bool = False,
        log=print) -> list[dict]:
    """Run every step into ``folder`` within ``budget_s``; one outcome per step (also in ``steps.jsonl``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not resume:
        for old in folder.iterdir():
            if old.is_file():
                old.unlink()
    started = time.monotonic()
    steps = planning.plan(budget_s, device=device)
    plan_text = "\n".join(planning.describe(steps, budget_s))
    write_atomic(folder / "plan.json", json.dumps({"device": device, "budget_s": budget_s,
                                                   "steps": [s.to_dict() for s in steps]}, indent=1))
    write_atomic(folder / "plan.txt", plan_text + "\n")
    log(plan_text)
    outcomes: list[dict] = []

    def summary() -> str:
        lines = [f"{o['step']}: {o['status']} in {o['seconds']} s of {o['limit_s']} s" for o in outcomes]
        return plan_text + "\n\nsteps:\n" + ("\n".join(lines) or "(none finished yet)") + "\n"

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if (carry.CARRY_DATA / "fashion-mnist").is_dir():
        env["REFBENCH_DATA"] = str(carry.CARRY_DATA)
    env.setdefault("TRITON_INTERPRET", "1" if device == "cpu" else "0")
    deadline, planned_start = started + budget_s, 0.0
    with Packer(folder, out, ROOT, summary) as packer:
        for step in steps:
            # The step may run to the end of its share counted from where the plan expected it to start:
            # time earlier steps saved is its too.
            limit = min(started + planned_start + step.share_s, deadline) - time.monotonic()
            planned_start += step.estimate_s
            outcome = _run_step(step, folder, limit, env, log)
            outcomes.append(outcome)
            with open(folder / "steps.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(outcome) + "\n")
            packer.pack()
    return outcomes


def _run_step(step: planning.Step, folder: Path, limit: float, env: dict, log) -> dict:
    outcome = {"step": step.name, "title": step.title, "planned_cells": len(step.kept),
               "left_out_cells": len(step.left_out), "estimate_s": round(step.estimate_s, 1),
               "limit_s": round(max(limit, 0.0), 1)}
    if limit < MIN_STEP_S or (not step.kept and step.cells):
        why = f"{max(limit, 0):.0f} s of the budget left" if step.kept else "none of its cells fits its share"
        log(f"gpu-check: {step.name}: not run, {why}")
        return {**outcome, "status": "not_run", "reason": why, "exit_code": None, "seconds": 0.0}
    log(f"gpu-check: {step.title} (up to {limit:.0f} s, estimated {step.estimate_s:.0f} s)")
    began = time.monotonic()
    with open(folder / f"{step.name}.log", "ab") as step_log:
        process = subprocess.Popen([sys.executable, "-m", "refbench.gpu_check.steps", step.name, str(folder),
                                    "--limit", f"{limit:.0f}"], cwd=ROOT, env=env, stdout=step_log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(limit)
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code, status = None, "timeout"
    seconds = round(time.monotonic() - began, 1)
    log(f"gpu-check: {step.name}: {status} in {seconds} s")
    return {**outcome, "status": status, "exit_code": code, "seconds": seconds}


def dry_run(budget_s: float, *, timeout_s: float = CALL_TIMEOUT_S, log=print) -> list[str]:
    """Rehearse the GPU run on this machine; the problems found (none: ready)."""
    problems = []
    if budget_s + START_MARGIN_S > timeout_s:
        problems.append(f"a budget of {budget_s:.0f} s and {START_MARGIN_S} s of start and packing do not fit "
                        f"a device call of {timeout_s:.0f} s")
    tests, errors = collect_gpu_tests()
    problems += [f"pytest -m gpu cannot collect {error}" for error in errors]
    if not tests and not errors:
        problems.append("pytest -m gpu collects no test")
    steps = planning.plan(budget_s, device="cuda", tests=tests)
    for line in planning.describe(steps, budget_s):
        log(line)
    modules = sorted({m for step in steps for m in STEP_MODULES[step.name]} | {"refbench.gpu_check.steps"})
    problems += [f"cannot import on the GPU machine: {failure}" for failure in check_imports(modules)]
    problems += carry.problems()
    log(f"pytest -m gpu collects {len(tests)} tests; {len(modules)} modules of the GPU path import with only "
        f"the device image's packages" + (" (see the problems)" if problems else ""))
    return problems
