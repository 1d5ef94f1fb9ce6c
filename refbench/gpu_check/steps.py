"""One gpu-check step in its own process: ``python -m refbench.gpu_check.steps NAME FOLDER --limit S``.

Each step reads its cells from ``FOLDER/plan.json`` (refbench.gpu_check.plan),
leaves out those the folder's results already hold (so a second call
resumes where the first stopped) and measures the rest through the library
(never through the CLI), appending one record per cell as it ends. What a
step writes in one piece (validate's figures) is written to a temporary
name and renamed, so a step killed at its limit leaves whole files only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# What each step imports on the GPU machine (the dry run imports them all, held to the device image).
STEP_MODULES = {
    "softmax": ("refbench.kernelbench.runs", "refbench.kernelbench.softmax", "refbench.kernels.softmax",
                "liger_kernel.ops.softmax"),
    "conv2d": ("refbench.kernelbench.runs", "refbench.kernelbench.conv2d", "refbench.kernels.conv"),
    "matrix": ("refbench.run.runner", "refbench.run.worker", "refbench.run.matrix", "refbench.harness.backends",
               "refbench.harness.power", "refbench.kernels.patch", "refbench.models", "pynvml"),
    "converge": ("refbench.run.converge", "refbench.run.convergence", "refbench.models.data"),
    "validate": ("refbench.run.validate",),
    "pytest": ("pytest",),
}
RESULT_FILES = {"softmax": "kernels.jsonl", "conv2d": "kernels.jsonl", "matrix": "results.jsonl",
                "converge": "converge.jsonl", "validate": "validate.json", "pytest": "pytest.xml"}


def write_atomic(path: Path, text: str) -> None:
    """``path`` holds ``text`` or what it held before, never a part of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def load_plan(folder: Path) -> dict:
    return json.loads((folder / "plan.json").read_text(encoding="utf-8"))


def _recorded(path: Path) -> set[tuple]:
    from refbench.records.schema import cell_key
    from refbench.records.store import read_results

    return {cell_key(r) for r in read_results(path)} if path.exists() else set()


def _kernels(kernel: str, step: dict, folder: Path, device: str, limit_s: float) -> int:
    from refbench.kernelbench.runs import run_kernel_sweep
    from refbench.records.schema import cell_key

    out = folder / RESULT_FILES[kernel]
    todo = {cell_key(cell["spec"]) for cell in step["kept"]} - _recorded(out)
    print(f"{kernel}: {len(todo)} of {len(step['kept'])} planned cells to measure", flush=True)
    records = run_kernel_sweep(kernel, device=device, shapes="gpu-check", out=out, only=todo,
                               on_record=lambda r: print(f"{r['workload']} {r['backend']} "
                                                         f"{r['variant'].get('direction')}: {r['status']}",
                                                         flush=True)) if todo else []
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def _matrix(step: dict, folder: Path, device: str, limit_s: float) -> int:
    from refbench.gpu_check.plan import MATRIX_SETTINGS
    from refbench.run.matrix import Matrix, plan_cell
    from refbench.run.runner import run_matrix
    from refbench.run.settings import Settings

    specs = [cell["spec"] for cell in step["kept"]]
    if not specs:
        return 0
    only = {plan_cell(s["workload"], s["backend"], s["mode"], s["batch_size"]).key() for s in specs}
    matrix = Matrix(workloads=sorted({s["workload"] for s in specs}), backends=sorted({s["backend"] for s in specs}),
                    modes=sorted({s["mode"] for s in specs}), batch_sizes=sorted({s["batch_size"] for s in specs}),
                    settings=Settings(**MATRIX_SETTINGS))
    records = run_matrix(matrix, folder / RESULT_FILES["matrix"], resume=True, only=only,
                         on_record=lambda r: print(f"{r['workload']} {r['backend']} {r['mode']}: {r['status']}",
                                                   flush=True))
    return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1


def _converge(step: dict, folder: Path, device: str, limit_s: float) -> int:
    from refbench.run.converge import Convergence, run_convergence

    failed = False
    for cell in step["kept"]:
        spec = cell["spec"]
        request = Convergence(workloads=[spec["workload"]], backends=[spec["backend"]], target=spec["target"],
                              seeds=1, data_dir=os.environ.get("REFBENCH_DATA"))
        records = run_convergence(request, out=folder / RESULT_FILES["converge"], resume=True)
        for record in records:
            if "seeds" in record["metrics"]:
                print(f"{spec['workload']} {spec['backend']}: {record['status']}", flush=True)
                failed |= record["status"] not in ("ok", "skipped")
    return 1 if failed else 0


def _validate(step: dict, folder: Path, device: str, limit_s: float) -> int:
    from refbench.run.validate import print_validation, validate

    out = folder / RESULT_FILES["validate"]
    workloads = [cell["spec"]["workload"] for cell in step["kept"]]
    if out.exists() or not workloads:
        return 0
    result = validate(workloads=workloads, device=device, batch_size=128, repeats=2, iters=20)
    write_atomic(out, json.dumps(result, indent=2))
    print_validation(result)
    return 0 if result["agrees"] else 1


def _pytest(step: dict, folder: Path, device: str, limit_s: float) -> int:
    import pytest

    from refbench.gpu_check import costs
    from refbench.gpu_check.plan import Step, gpu_test_cells

    junit = folder / RESULT_FILES["pytest"]
    if junit.exists():
        return 0

    class Fit:
        """Keeps the collected GPU tests that fit the step's time, in the plan's order; says what it left out."""

        @pytest.hookimpl(trylast=True)   # after `-m gpu` has deselected the others
        def pytest_collection_modifyitems(self, config, items):
            fitted = Step("pytest", limit_s, costs.PYTEST_START_S, gpu_test_cells([i.nodeid for i in items])).fit()
            kept = {cell.label for cell in fitted.kept}
            print(f"pytest: {len(kept)} of {len(items)} GPU tests fit {limit_s:.0f} s; left out: "
                  + ("; ".join(c.label for c in fitted.left_out) or "none"), flush=True)
            config.hook.pytest_deselected(items=[i for i in items if i.nodeid not in kept])
            items[:] = [i for i in items if i.nodeid in kept]

    partial = junit.with_name(f".{junit.name}.partial")
    code = pytest.main(["-m", "gpu", "-v", "-p", "no:cacheprovider", f"--junitxml={partial}", "tests"],
                       plugins=[Fit()])
    if partial.exists():
        os.replace(partial, junit)
    return 0 if code in (0, 5) else 1


STEPS = {"softmax": lambda *a: _kernels("softmax", *a), "conv2d": lambda *a: _kernels("conv2d", *a),
         "matrix": _matrix, "converge": _converge, "validate": _validate, "pytest": _pytest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refbench.gpu_check.steps")
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=float, required=True, help="seconds this step may take")
    args = parser.parse_args(argv)
    plan = load_plan(args.folder)
    (step,) = [s for s in plan["steps"] if s["name"] == args.step]
    started = time.perf_counter()
    code = STEPS[args.step](step, args.folder, plan["device"], args.limit)
    print(f"{args.step}: done in {time.perf_counter() - started:.1f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
