"""``nox -s gpu-check``: every GPU claim of the project checked in one prepared run of about eight minutes.

GPU time comes in short, rare windows (one H100 or H200, its own torch, no
network, at most 64 MiB carried in), so this one command turns such a
window into a committed report. It runs its steps in order, each a
subprocess with its own share of the wall budget, and records each step's
status, time and output tail; a step that fails or runs out of time is
recorded and the next one starts:

1. ``pytest -m gpu``: kernels and backends on the machine's torch and Triton;
2. the kernels: the static sm_90 table, then the softmax and conv2d sweeps
   on the gpu-check shapes, with the peers that are present;
3. the model matrix at batch 128 (``MATRIX_*``), correctness on;
4. ``refbench validate --device cuda``;
5. ``refbench converge --target full`` for lenet5 and mlp on cuda and amp-bf16;
6. the report of everything above.

Everything lands in ``reports/<gpu>/gpu-check/``; with ``--copy-to DIR``
(the device machine's ``$OUT``) a tarball of that folder is written there
too. What the run needs from outside travels in ``.carry/`` (``nox -s
gpu-carry`` fills it on a CPU machine): Fashion-MNIST's four files and
wheels of pure-Python extras (``CARRY_PACKAGES``); on the GPU machine,
``pip install --no-index --no-deps --target DIR .carry/wheels/*.whl`` and
``PYTHONPATH=DIR`` make them importable. ``--dry-run`` rehearses all of it on a CPU:
it lists every step with its budget, checks the carry folder, imports every
module a step needs and parses every ``refbench`` step's command line,
and exits 1 if anything is missing.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".carry"
CARRY_DATA = CARRY / "data"
CARRY_WHEELS = CARRY / "wheels"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# Pure-Python extras the GPU machine's image lacks, as wheels for its Python (3.12): nox and what it needs,
# and Liger-Kernel (a softmax peer of the kernel sweep).
CARRY_PACKAGES = ("nox", "argcomplete", "colorlog", "dependency-groups", "virtualenv", "distlib", "platformdirs",
                  "liger-kernel")
WALL_BUDGET_S = 480

MATRIX_WORKLOADS = "mlp,lenet5,cnn_small,convnet3,resnet18_cifar,transformer_seq2seq"
# Backend-major: the compiled cells, the costliest (a cold compile each), come last and are cut first.
MATRIX_BACKENDS = "cuda,tf32,amp-bf16,cudagraphs,triton,compile"


@dataclass
class Check:
    """One step: its command (``refbench`` arguments, or a full argv), its share of the budget, what it imports."""

    name: str
    argv: list[str]
    share: float
    imports: tuple[str, ...] = ()
    refbench: bool = True
    result: dict = field(default_factory=dict)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "refbench", *self.argv] if self.refbench else [sys.executable, *self.argv]


def plan(folder: Path, budget_s: float) -> list[Check]:
    """The steps, writing into ``folder``; step budgets are shares of ``budget_s``."""
    results = str(folder / "results.jsonl")
    kernels = str(folder / "kernels.jsonl")
    matrix_budget = int(0.30 * budget_s * 0.9)
    return [
        Check("pytest -m gpu", ["-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"], 0.12,
              ("pytest",), refbench=False),
        Check("kernels: static sm_90 table", ["kernels", "softmax", "--static", "sm_90", "--out", kernels], 0.04,
              ("kernels",)),
        Check("kernels: softmax sweep", ["kernels", "softmax", "--shapes", "gpu-check", "--dtypes", "fp32,bf16",
                                         "--out", kernels], 0.12, ("kernels", "triton.testing")),
        Check("kernels: conv2d sweep", ["kernels", "conv2d", "--shapes", "gpu-check", "--out", kernels], 0.14,
              ("kernels", "triton.testing")),
        Check("model matrix", ["run", "--workloads", MATRIX_WORKLOADS, "--backends", MATRIX_BACKENDS,
                               "--modes", "train,infer", "--batch-sizes", "128", "--iters", "20", "--timeout", "120",
                               "--energy-s", "0.3", "--time-budget", str(matrix_budget), "--out", results], 0.30,
              ("pynvml",)),
        Check("validate", ["validate", "--device", "cuda", "--repeats", "2", "--iters", "20", "--batch-size", "128",
                           "--out", str(folder / "validate.json")], 0.10, ("torch.utils.benchmark",)),
        Check("converge --target full", ["converge", "--workloads", "lenet5,mlp", "--backends", "cuda,amp-bf16",
                                         "--target", "full", "--seeds", "1", "--out", results], 0.14),
        Check("report", ["report", results, kernels, "-o", str(folder)], 0.04, ("matplotlib",)),
    ]


def gpu_folder_name(device_name: str) -> str:
    """``NVIDIA H200`` -> ``nvidia-h200``: the reports/ folder of a GPU model."""
    return re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-").lower()


def carry_problems() -> list[str]:
    """What the carry folder lacks for a run without network."""
    problems = [f"{CARRY_DATA / 'fashion-mnist' / name} is missing (run `nox -s gpu-carry`)"
                for name in FASHION_FILES if not (CARRY_DATA / "fashion-mnist" / name).is_file()]
    problems += [f"no wheel of {name} in {CARRY_WHEELS} (run `nox -s gpu-carry`)" for name in CARRY_PACKAGES
                 if not list(CARRY_WHEELS.glob(f"{name.replace('-', '_')}-*.whl"))]
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file()) if CARRY.is_dir() else 0
    if size > 64 * 2**20:
        problems.append(f"{CARRY} holds {size / 2**20:.1f} MiB, over the 64 MiB a device call carries")
    return problems


def fill_carry() -> None:
    """Put Fashion-MNIST (found and checked by refbench's data layer, gzipped) and the wheels into ``.carry/``."""
    import gzip
    import shutil

    from refbench.models.data._images import locate

    found = locate("fashion-mnist")
    for split in ("train", "test"):
        found.read(split)   # every file checked before it travels
    data = CARRY_DATA / "fashion-mnist"
    data.mkdir(parents=True, exist_ok=True)
    for name, path in found.files.items():
        target = data / f"{name}.gz"
        if path.suffix == ".gz":
            shutil.copyfile(path, target)
        else:
            with open(path, "rb") as src, gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    CARRY_WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux2014_x86_64", "--platform", "any", "-d", str(CARRY_WHEELS),
                    *CARRY_PACKAGES], check=True)
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"{CARRY}: Fashion-MNIST from {found.where} and {len(list(CARRY_WHEELS.glob('*.whl')))} wheels, "
          f"{size / 2**20:.1f} MiB")


def rehearse(steps: list[Check]) -> list[str]:
    """The dry run's checks: modules importable, refbench command lines valid, carry folder complete."""
    from refbench.cli import build_parser

    problems = carry_problems()
    parser = build_parser()
    for step in steps:
        for module in step.imports:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                problems.append(f"{step.name}: cannot import {module}: {exc}")
        if step.refbench:
            try:
                parser.parse_args(step.argv)
            except (Exception, SystemExit) as exc:
                problems.append(f"{step.name}: `refbench {' '.join(step.argv)}` does not parse: {exc}")
    return problems


def run_steps(steps: list[Check], budget_s: float, folder: Path, env: dict[str, str],
              log=print) -> list[dict]:
    """Run each step within its share of ``budget_s``; one record per step in ``folder/steps.jsonl``."""
    outcomes = []
    for step in steps:
        limit = max(10.0, step.share * budget_s)
        log(f"gpu-check: {step.name} (up to {limit:.0f} s)")
        started = time.perf_counter()
        log_path = folder / f"step-{len(outcomes) + 1}.log"
        with open(log_path, "wb") as out:
            process = subprocess.Popen(step.command(), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            try:
                code = process.wait(limit)
                status = "ok" if code == 0 else "failed"
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
                code, status = None, "timeout"
        tail = log_path.read_text(errors="replace")[-1500:]
        outcome = {"step": step.name, "command": " ".join(step.command()[1:]), "status": status, "exit_code": code,
                   "seconds": round(time.perf_counter() - started, 1), "budget_s": round(limit), "tail": tail}
        outcomes.append(outcome)
        with open(folder / "steps.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(outcome) + "\n")
        log(f"gpu-check: {step.name}: {status} in {outcome['seconds']} s")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="rehearse on any machine: list, import, parse")
    parser.add_argument("--fill-carry", action="store_true", help="fill .carry/ for a machine without network")
    parser.add_argument("--budget", type=float, default=WALL_BUDGET_S, help="wall seconds for all steps")
    parser.add_argument("--copy-to", default=os.environ.get("OUT"), help="also write a tarball of the report here")
    args = parser.parse_args(argv)

    if args.fill_carry:
        fill_carry()
        return 0
    if args.dry_run:
        folder = ROOT / "reports" / "<gpu>" / "gpu-check"
        steps = plan(folder, args.budget)
        for step in steps:
            print(f"{step.share * args.budget:5.0f} s  {step.name}: {' '.join(step.command()[1:])}")
        problems = rehearse(steps)
        for problem in problems:
            print(f"gpu-check: missing: {problem}", file=sys.stderr)
        print(f"gpu-check dry run: {len(steps)} steps in {args.budget:.0f} s; "
              + ("ready" if not problems else f"{len(problems)} problems"))
        return 1 if problems else 0

    import torch

    if not torch.cuda.is_available():
        print("gpu-check: error: needs a CUDA GPU (use --dry-run to rehearse without one)", file=sys.stderr)
        return 2
    folder = ROOT / "reports" / gpu_folder_name(torch.cuda.get_device_name(0)) / "gpu-check"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("steps.jsonl", "results.jsonl", "kernels.jsonl"):
        (folder / stale).unlink(missing_ok=True)
    problems = carry_problems()
    for problem in problems:
        print(f"gpu-check: warning: {problem}", file=sys.stderr)
    env = {**os.environ, "REFBENCH_DATA": str(CARRY_DATA), "PYTHONUNBUFFERED": "1"}
    outcomes = run_steps(plan(folder, args.budget), args.budget, folder, env)
    if args.copy_to:
        with tarfile.open(Path(args.copy_to) / "gpu-check.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=str(folder.relative_to(ROOT)))
    failed = [o["step"] for o in outcomes if o["status"] != "ok"]
    print(f"gpu-check: {len(outcomes) - len(failed)} of {len(outcomes)} steps ok"
          + (f"; not ok: {', '.join(failed)}" if failed else "") + f"; report in {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
