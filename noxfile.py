"""nox sessions: tests (CI), bench (CPU matrix), bench-gpu (GPU matrix, system torch), kernels, microbench, nightly,
gpu-check, gpu-carry and device-env (the GPU machine's software rebuilt, and gpu-check's dry run in it).

The CPU sessions build a virtual environment with pinned torch wheels; the
GPU sessions reuse the machine's own Python and torch (``venv_backend="none"``)
because a GPU box usually has a matched, preinstalled torch and may have no
internet.
"""
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))   # refbench.errors alone: nox's Python has no torch
from refbench.errors import EXIT_GATE, EXIT_INCOMPLETE, EXIT_OK  # noqa: E402

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
# refresh the committed sample). Extra arguments go to `refbench run`. The session fails when a cell gave a
# wrong answer or has no measurement, and says how to finish (`nox -s bench -- --resume`); the time budgets are
# a safety net for a machine far slower than this one, not part of the plan.
CPU_SETTINGS = ["--modes", "train,infer", "--batch-sizes", "16", "--iters", "10", "--max-warmup", "20",
                "--max-warmup-s", "3", "--timeout", "300", "--threads", "1"]
CPU_MATRICES = [
    ["--workloads", "all", "--backends", "cpu,cpu+int8", "--time-budget", "1800"],
    ["--workloads", "mlp,lenet5,cnn_small,transformer_seq2seq", "--backends", "cpu+compile", "--time-budget", "900"],
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
    python = os.path.join(session.bin, "python")
    codes = []
    for matrix in CPU_MATRICES:
        command = [python, "-m", "refbench", "run", *CPU_SETTINGS, *matrix, "--out", str(out), *session.posargs]
        session.log(" ".join(command[1:]))
        codes.append(subprocess.run(command).returncode)
    session.run("python", "-m", "refbench", "report", str(out), "-o", str(folder))
    if any(code not in (EXIT_OK, EXIT_GATE, EXIT_INCOMPLETE) for code in codes):
        session.error(f"a matrix ended with exit status {codes}: see its last line above")
    if EXIT_GATE in codes:
        session.error("cells gave a wrong answer (status failed): the report's Correctness section names them")
    if EXIT_INCOMPLETE in codes:
        session.error(f"the matrix is incomplete: cells in {out} have no measurement; "
                      "`nox -s bench -- --resume` measures the rest")


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
    """gpu-check with the machine's own torch (on the lent GPU machine itself, where nox is not installed, run
    `python3 -m refbench.gpu_check`: README, GPU check); `-- --dry-run` rehearses it on any machine."""
    python = os.environ.get("REFBENCH_PYTHON", "python3")
    if not {"--dry-run", "--rehearse", "--fill-carry"} & set(session.posargs):
        _system_gpu(session)
    session.run(python, "-m", "refbench.gpu_check", *session.posargs, external=True)


@nox.session(name="gpu-carry", python="3.11")
def gpu_carry(session: nox.Session) -> None:
    """Fill .carry/ (ignored, under 64 MiB) with what gpu-check needs on a machine without network."""
    _install(session)
    session.run("python", "-m", "refbench.gpu_check", "--fill-carry")


DEVICE_IMAGE = Path("refbench/gpu_check/device-image.txt")
# The packages whose versions the GPU machine's image fixes and this session must match exactly; the
# image's other packages are taken at the newest version the index has (some of the image's are newer).
DEVICE_PINNED = ("torch", "torchvision", "triton")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _device_image() -> dict[str, str | None]:
    lines = (line.split("#", 1)[0].strip() for line in DEVICE_IMAGE.read_text().splitlines())
    return {_normalize(name): version or None
            for name, _, version in (line.partition("==") for line in lines if line)}


def _refbench_requirements() -> list[str]:
    """refbench's dependencies and its test extra's, as distribution names."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["test"]
    return [_normalize(re.split(r"[\s;<>=!~\[]", spec, maxsplit=1)[0]) for spec in specs]


@nox.session(name="device-env", python="3.12")
def device_env(session: nox.Session) -> None:
    """The lent GPU machine's software rebuilt here, and gpu-check's dry run in it.

    Python 3.12 (with pyenv: `PYENV_VERSION=3.11.7:3.12.1 nox -s device-env`), torch, torchvision and Triton
    at the image's versions, refbench's other dependencies only where the image has them, and the wheels
    gpu-check carries; refbench itself is not installed, as on the machine, where it runs from the checkout.
    Names what pip brought in that the image's listing lacks (requirements of newer releases than the
    image's); the dry run refuses those to refbench's own imports. A few GB of wheels the first time: not
    part of CI.
    """
    image = _device_image()
    python = image.pop("python")
    if not session.python or not python.startswith(str(session.python)):
        session.error(f"the GPU machine runs Python {python}")
    wanted = [name for name in dict.fromkeys(_refbench_requirements()) if name in image]
    session.install(*[f"{name}=={image[name]}" if name in DEVICE_PINNED else name for name in wanted])
    session.run("python", "-m", "refbench.gpu_check", "--fill-carry")
    session.install("--no-index", "--no-deps", *map(str, Path(".carry/wheels").glob("*.whl")))
    listed = json.loads(session.run("python", "-m", "pip", "list", "--format", "json", silent=True))
    carried = {_normalize(path.name.split("-")[0]) for path in Path(".carry/wheels").glob("*.whl")}
    extra = sorted(f"{p['name']} {p['version']}" for p in listed
                   if _normalize(p["name"]) not in image and _normalize(p["name"]) not in carried)
    if extra:   # newer releases here than there; the dry run refuses them to refbench's own imports
        session.log(f"installed as requirements of the image's packages, absent from its listing: {', '.join(extra)}")
    versions = {_normalize(p["name"]): p["version"] for p in listed}
    session.log("device environment: " + ", ".join(f"{name} {versions[name]}" for name in DEVICE_PINNED))
    session.run("python", "-m", "refbench.gpu_check", "--dry-run")
