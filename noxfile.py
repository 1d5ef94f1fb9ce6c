"""nox sessions: tests (CI), bench (CPU matrix), bench-gpu (GPU matrix, system torch), kernels, microbench, nightly.

The CPU sessions build a virtual environment with pinned torch wheels; the
GPU sessions reuse the machine's own Python and torch (``venv_backend="none"``)
because a GPU box usually has a matched, preinstalled torch and may have no
internet.
"""
import os
import time
from pathlib import Path

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
    if not session.posargs:   # the whole suite: also rehearse the GPU check, its carry folder filled
        session.run("python", "-m", "refbench.gpu_check", "--fill-carry")
        session.run("python", "-m", "refbench.gpu_check", "--dry-run")


# The default CPU matrix, sized to finish every cell it lists within 10 minutes on 2 busy cores from a
# cold compile cache, one intra-op thread per cell: every workload eager and int8 (inference) in train and
# infer at batch 16, and torch.compile for a few small workloads (a cold compile costs 10-60 s per model
# on 2 cores). Left out, and how to ask for it: compile of the other workloads
# (`nox -s bench -- --backends cpu+compile --workloads all`), int8 compiled (`--backends cpu+int8+compile`),
# larger batches (`--batch-sizes 64,128`). Results go to results/cpu/ (ignored by git); an earlier run's
# file there is kept beside it, renamed by its time. REFBENCH_OUT=DIR writes elsewhere (reports/cpu to
# refresh the committed sample). Extra arguments go to `refbench run`.
CPU_SETTINGS = ["--modes", "train,infer", "--batch-sizes", "16", "--iters", "5", "--max-warmup", "5",
                "--max-warmup-s", "2", "--timeout", "180", "--threads", "1"]
CPU_MATRICES = [
    ["--workloads", "all", "--backends", "cpu,cpu+int8", "--time-budget", "300"],
    ["--workloads", "mlp,lenet5,cnn_small,transformer_seq2seq", "--backends", "cpu+compile", "--time-budget", "300"],
]
# The full GPU matrix takes hours (a cold max-autotune compile can take minutes per cell);
# `-- --shard i/n` splits it over machines and `-- --resume` continues an interrupted run.
GPU_MATRIX = ["--fresh-compile-cache", "--timeout", "1800", "--workloads", "all", "--modes", "train,infer",
              "--batch-sizes", "128,512", "--backends",
              "cuda,tf32,amp-bf16,amp-fp16,compile,compile-max-autotune,cudagraphs,compile+cudagraphs,"
              "channels-last,sdpa,triton"]


def _fresh_output(out: Path, posargs: list[str]) -> None:
    """Keep an earlier run's results beside the new ones (renamed by their time) unless resuming."""
    if out.exists() and "--resume" not in posargs:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(out.stat().st_mtime))
        out.rename(out.with_name(f"{out.stem}-{stamp}{out.suffix}"))


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The default CPU matrix and its report, in results/cpu/ (under 10 minutes on 2 cores)."""
    _install(session)
    folder = Path(os.environ.get("REFBENCH_OUT", "results/cpu"))
    out = folder / "bench.jsonl"
    _fresh_output(out, session.posargs)
    for matrix in CPU_MATRICES:
        session.run("python", "-m", "refbench", "run", *CPU_SETTINGS, *matrix, "--out", str(out), *session.posargs,
                    success_codes=[0, 1])
    session.run("python", "-m", "refbench", "report", str(out), "-o", str(folder))


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
    folder = session.run(python, "-c", "import torch; from refbench.gpu_check.run import gpu_folder_name; "
                         "print(gpu_folder_name(torch.cuda.get_device_name(0)))", silent=True, external=True).strip()
    return f"reports/{folder}/{name}"


@nox.session(name="bench-gpu", venv_backend="none")
def bench_gpu(session: nox.Session) -> None:
    """The full GPU matrix with the machine's own torch (no install, no network); report under reports/<gpu>/."""
    python = _system_gpu(session)
    out = os.environ.get("REFBENCH_OUT") or _gpu_out(session, python, "bench.jsonl")
    session.run(python, "-m", "refbench", "run", *GPU_MATRIX, "--out", out, *session.posargs, external=True,
                success_codes=[0, 1])
    session.run(python, "-m", "refbench", "report", out, "-o", os.path.dirname(out), external=True)
    session.run(python, "-m", "refbench", "validate", "--device", "cuda", "--out",
                out.removesuffix(".jsonl") + "-validate.json", external=True, success_codes=[0, 1])


MICROBENCH = ["tests/benchmarks", "-q", "-p", "no:cacheprovider", "--benchmark-save-data", "--benchmark-max-time", "0.5"]


@nox.session(python="3.11")
def microbench(session: nox.Session) -> None:
    """The pytest-benchmark suite (kernels and train steps; GPU when present) into results/microbench.json."""
    _install(session, "test")
    out = os.environ.get("REFBENCH_OUT", "results/microbench.json")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    session.run("python", "-m", "pytest", *MICROBENCH, f"--benchmark-json={out}", *session.posargs,
                env={"TRITON_INTERPRET": "1"})


# The nightly CPU matrix: eight small workloads in train and infer at batch 16, 20 timed steps each, one thread:
# about 30 s of cells on 2 busy cores, with room under 5 minutes for the reruns of flagged cells and the
# pytest-benchmark suite. REFBENCH_HISTORY=DIR keeps the history elsewhere (a committed folder, as asv's results);
# extra arguments go to `refbench nightly` (e.g. `-- --fail-on throughput,correctness`).
NIGHTLY_MATRIX = ["--workloads", "mlp,lenet5,cnn_small,rnn_rows,lstm_rows,gru_rows,transformer_seq2seq,attention_dot",
                  "--modes", "train,infer", "--batch-sizes", "16", "--iters", "20", "--max-warmup", "20",
                  "--max-warmup-s", "2", "--timeout", "120", "--threads", "1", "--time-budget", "200"]


@nox.session(python="3.11")
def nightly(session: nox.Session) -> None:
    """Tonight's CPU matrix and microbenchmarks into the history, judged against earlier nights; exit 1 on a
    regression; the page is DIR/index.html (under 5 minutes on 2 cores)."""
    _install(session, "test")
    history = os.environ.get("REFBENCH_HISTORY", "results/nightly")
    bench_json = os.path.join(history, f".microbench-{os.getpid()}.json")
    os.makedirs(history, exist_ok=True)
    session.run("python", "-m", "pytest", *MICROBENCH, f"--benchmark-json={bench_json}", env={"TRITON_INTERPRET": "1"})
    try:
        session.run("python", "-m", "refbench", "nightly", "--history", history, *NIGHTLY_MATRIX,
                    "--benchmark-json", bench_json, *session.posargs)
    finally:
        Path(bench_json).unlink(missing_ok=True)


@nox.session(venv_backend="none")
def kernels(session: nox.Session) -> None:
    """The static sm_90 table, then the softmax and conv2d sweeps with their peers, on the machine's own
    torch (quick on CPU: interpreter). Extra arguments go to the sweeps, e.g. `-- --shapes gpu-check`."""
    python = os.environ.get("REFBENCH_PYTHON", "python3")
    out = os.environ.get("REFBENCH_OUT", "reports/kernels.jsonl")
    # A static problem is recorded and printed; it does not keep the sweeps from running.
    session.run(python, "-m", "refbench", "kernels", "--static", "sm_90", "--out", out, external=True,
                success_codes=[0, 1])
    for kernel in ("softmax", "conv2d"):
        session.run(python, "-m", "refbench", "kernels", kernel, "--out", out, *session.posargs, external=True)


@nox.session(name="gpu-check", venv_backend="none")
def gpu_check(session: nox.Session) -> None:
    """Every GPU claim in one ~8-minute run with the machine's own torch; `-- --dry-run` rehearses it on a CPU."""
    python = os.environ.get("REFBENCH_PYTHON", "python3")
    if "--dry-run" not in session.posargs:
        _system_gpu(session)
    session.run(python, "-m", "refbench.gpu_check", *session.posargs, external=True)


@nox.session(name="gpu-carry", python="3.11")
def gpu_carry(session: nox.Session) -> None:
    """Fill .carry/ (ignored, under 64 MiB) with what gpu-check needs on a machine without network."""
    _install(session)
    session.run("python", "-m", "refbench.gpu_check", "--fill-carry")
