"""nox sessions: tests (CI), bench (CPU matrix), bench-gpu (GPU matrix, system torch), kernels.

The CPU sessions build a virtual environment with pinned torch wheels; the
GPU sessions reuse the machine's own Python and torch (``venv_backend="none"``)
because a GPU box usually has a matched, preinstalled torch and may have no
internet.
"""
import os

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


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The default CPU matrix and its report (under 10 minutes on 2 cores)."""
    _install(session)
    out = os.environ.get("REFBENCH_OUT", "reports/cpu/results.jsonl")
    session.run("python", "-m", "bench", "run", "--workloads", "all", "--backends", "cpu",
                "--modes", "train,infer", "--batch-sizes", "64", "--out", out, *session.posargs)
