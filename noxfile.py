"""nox sessions: tests (CI), bench (CPU matrix), bench-gpu (GPU matrix, system torch), kernels.

The CPU sessions build a virtual environment with pinned torch wheels; the
GPU sessions reuse the machine's own Python and torch (``venv_backend="none"``)
because a GPU box usually has a matched, preinstalled torch and may have no
internet.
"""
import os
import re

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = ["torch==2.14.1", "torchvision==0.29.1"]


def _install(session: nox.Session, *extras: str) -> None:
    session.install(*TORCH)
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """CPU test suite: unit tests, Triton kernels in the interpreter, quick convergence on real data."""
    _install(session, "test")
    # Exit 5 means pytest collected nothing (e.g. a -k filter matched no test): not a failure.
    session.run("python", "-m", "pytest", "-m", "not gpu and not slow", "-q", *session.posargs,
                env={"TRITON_INTERPRET": "1"}, success_codes=[0, 5])


# The default CPU matrix: every registered workload, eager, int8 and compiled, both modes, sized to
# finish within 10 minutes on 2 cores (cells still waiting when the budget is used up are recorded
# as timeout and listed in the report). torch.compile's cache is shared between cells and runs: a
# cold compile takes 10-60 s per model on 2 cores, a warm one a few seconds, so a second run gets
# further. Extra arguments go to `refbench run`, e.g. `-- --threads 1`.
CPU_MATRIX = ["--workloads", "all", "--backends", "cpu,cpu+int8,cpu+compile", "--modes", "train,infer",
              "--batch-sizes", "16", "--iters", "5", "--max-warmup", "5", "--max-warmup-s", "2",
              "--timeout", "120", "--time-budget", "450"]
# The full GPU matrix takes hours (a cold max-autotune compile can take minutes per cell);
# `-- --shard i/n` splits it over machines and `-- --resume` continues an interrupted run.
GPU_MATRIX = ["--fresh-compile-cache", "--timeout", "1800", "--workloads", "all", "--modes", "train,infer",
              "--batch-sizes", "128,512", "--backends",
              "cuda,tf32,amp-bf16,amp-fp16,compile,compile-max-autotune,cudagraphs,compile+cudagraphs,"
              "channels-last,sdpa,triton"]


def _run_matrix(session: nox.Session, out: str, matrix: list[str]) -> None:
    """`refbench run` the matrix into ``out`` and write the report next to it; failed cells do not fail the session."""
    session.run("python", "-m", "bench", "run", *matrix, "--out", out, "--report", out.removesuffix(".jsonl") + ".md",
                *session.posargs, success_codes=[0, 1])


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The default CPU matrix and its Markdown report (under 10 minutes on 2 cores)."""
    _install(session)
    _run_matrix(session, os.environ.get("REFBENCH_OUT", "reports/cpu/bench.jsonl"), CPU_MATRIX)


_GPU_PROBE = """
try:
    import torch
except ImportError:
    print("no-torch")
else:
    version = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    print("old-torch" if version < (2, 11) else "ok" if torch.cuda.is_available() else "no-gpu")
"""


def _system_gpu(session: nox.Session) -> str:
    """The machine's own python with its preinstalled torch (>= 2.11) and a CUDA device, or a one-line error."""
    python = os.environ.get("REFBENCH_PYTHON", "python3")
    verdict = (session.run(python, "-c", _GPU_PROBE, silent=True, external=True) or "").strip().splitlines()[-1:]
    problems = {
        "no-torch": f"{python} cannot import torch; bench-gpu uses the machine's own torch (set REFBENCH_PYTHON)",
        "old-torch": "bench-gpu needs torch 2.11 or newer in the machine's python",
        "no-gpu": "bench-gpu needs a CUDA GPU, and torch.cuda.is_available() is False on this machine",
    }
    if verdict != ["ok"]:
        session.error(problems.get(verdict[0] if verdict else "", f"probing {python} for torch and a GPU failed"))
    return python


def _gpu_out(session: nox.Session, python: str, name: str) -> str:
    gpu = session.run(python, "-c", "import torch; print(torch.cuda.get_device_name(0))", silent=True,
                      external=True).strip()
    return f"reports/{re.sub(r'[^A-Za-z0-9]+', '-', gpu).strip('-').lower()}/{name}"


@nox.session(name="bench-gpu", venv_backend="none")
def bench_gpu(session: nox.Session) -> None:
    """The full GPU matrix with the machine's own torch (no install, no network); report under reports/<gpu>/."""
    python = _system_gpu(session)
    out = os.environ.get("REFBENCH_OUT") or _gpu_out(session, python, "bench.jsonl")
    session.run(python, "-m", "bench", "run", *GPU_MATRIX, "--out", out, "--report", out.removesuffix(".jsonl") + ".md",
                *session.posargs, external=True, success_codes=[0, 1])
    session.run(python, "-m", "bench", "validate", "--device", "cuda", "--out",
                out.removesuffix(".jsonl") + "-validate.json", external=True, success_codes=[0, 1])


@nox.session(venv_backend="none")
def kernels(session: nox.Session) -> None:
    """The static sm_90 table, then the softmax and conv2d sweeps with their peers, on the machine's own
    torch (quick on CPU: interpreter). Extra arguments go to the sweeps, e.g. `-- --shapes gpu-check`."""
    python = os.environ.get("REFBENCH_PYTHON", "python3")
    out = os.environ.get("REFBENCH_OUT", "reports/kernels.jsonl")
    # A static problem is recorded and printed; it does not keep the sweeps from running.
    session.run(python, "-m", "bench", "kernels", "--static", "sm_90", "--out", out, external=True,
                success_codes=[0, 1])
    for kernel in ("softmax", "conv2d"):
        session.run(python, "-m", "bench", "kernels", kernel, "--out", out, *session.posargs, external=True)
