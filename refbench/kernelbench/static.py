"""``refbench kernels --static sm_90``: the kernels compiled for a GPU this machine need not have.

Each case (a document conv layer at one precision and direction, a softmax
row-length class at one dtype) runs the kernels' own host code on ``meta``
tensors inside ``refbench.kernels._launch.recorded_launches``, so the launches are
exactly those a GPU run would make. Every autotune config the pruner keeps is
then compiled for the target (Triton's compiler and the ptxas in its wheel,
no GPU needed) and read: registers, spill bytes, shared memory, blocks per
SM, whether the dot lowers to ``wgmma``, the widest global load and the
narrowest load of the main loop, and whether the loop around the dot is
software-pipelined (``refbench.kernelbench.asm``).

The compiling runs in a fresh Python without ``TRITON_INTERPRET`` (under the
interpreter ``@triton.jit`` builds interpreter functions that cannot be
compiled, and refbench.kernels.conv offers only one tile), in a pool of processes, one
compile per distinct specialisation. ``problems`` says what fails the check:
any spill, shared memory over the SM's limit, a dot off the tensor cores
(unless it asked for IEEE fp32), or main-loop loads narrower than the layout
allows.
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from refbench.kernelbench.asm import TARGETS
from refbench.lifeline import die_with, run_group, scratch_dir

# Per-SM limits live in kernel_asm.TARGETS; these are the H100 and H200 SXM parts' SMs and L2.
DEVICES = {"sm_90": {"multiprocessors": 132, "l2_bytes": 50 * 2**20}}
CONV_PRECISIONS = ("fp32", "tf32", "bf16", "bf16-channels-last")
CONV_DIRECTIONS = ("fwd", "grad_input", "grad_weight")
CONV_BATCH = 128
# One row length per softmax code path and load-width class: packed short rows, a row that is a
# multiple of 8 but not 16 (a vocabulary), one row per program, the widest row kernel, the
# long-row kernel on one, four and thirty-two chunks, and an odd vocabulary (50257: scalar
# loads, long-row kernel).
SOFTMAX_ROWS = (128, 1000, 4096, 16384, 32768, 50257, 65536, 262144)
SOFTMAX_DTYPES = ("float32", "bfloat16")
SOFTMAX_M = 8192
# The tensors each kernel reads, by parameter name, with the tile each is loaded in. Each is tiled
# along its dimension 1 (conv: the channels, which the blocked reduction walks; softmax: the row),
# so that is where 16-byte loads can be, when the tile gives every thread 16 bytes. The conv
# kernel's flat reduction gathers single elements through its offset table, by design.
_READS = {
    "_conv_gemm_kernel": {"x_ptr": ("BLOCK_M", "BLOCK_K"), "w_ptr": ("BLOCK_K", "BLOCK_N")},
    "_forward_rows": {"X": ("BLOCK_M", "BLOCK_N")}, "_forward_long": {"X": ("BLOCK_N",)},
    "_backward_rows": {"Y": ("BLOCK_M", "BLOCK_N"), "DY": ("BLOCK_M", "BLOCK_N")},
    "_backward_long": {"Y": ("BLOCK_N",), "DY": ("BLOCK_N",)},
}


@dataclass(frozen=True)
class Case:
    kernel: str  # "conv2d" or "softmax"
    name: str
    spec: dict
    # Launch arguments to replace in every kept config, to check a tile (or a flag) before
    # offering it: e.g. {"BLOCK_M": 256, "num_warps": 8}.
    override: dict = field(default_factory=dict)


def conv_cases(layers: Sequence[dict], *, batch: int = CONV_BATCH, precisions: Sequence[str] = CONV_PRECISIONS,
               directions: Sequence[str] = CONV_DIRECTIONS) -> list[Case]:
    """One case per distinct layer shape, precision and direction."""
    from refbench.kernelbench.conv2d import distinct_layers

    return [Case("conv2d", f"{layer['name']} {precision} {direction}",
                 {"layer": layer, "batch": batch, "precision": precision, "direction": direction})
            for layer in distinct_layers(layers) for precision in precisions for direction in directions]


def softmax_cases(*, rows: Sequence[int] = SOFTMAX_ROWS, dtypes: Sequence[str] = SOFTMAX_DTYPES,
                  ops: Sequence[str] = ("softmax", "log_softmax"), directions: Sequence[str] = ("fwd", "bwd"),
                  m: int = SOFTMAX_M) -> list[Case]:
    return [Case("softmax", f"{op} {direction} M={m} N={n} {dtype}",
                 {"op": op, "direction": direction, "M": m, "N": n, "dtype": dtype})
            for op in ops for direction in directions for dtype in dtypes for n in rows]


def document_cases() -> list[Case]:
    """Every conv layer of the documents' models and every softmax row-length class."""
    from refbench.kernelbench.runs import conv_layers

    return conv_cases(conv_layers()) + softmax_cases()


def static_check(cases: Sequence[Case], *, target: str = "sm_90", jobs: int | None = None,
                 timeout_s: float = 1800) -> list[dict]:
    """Compile every kept config of every case for ``target``; one row per (case, config).

    Rows carry the case, the config, the compiled kernel's figures and its
    ``problems``; configs that compile to the same code share one compile.
    """
    from refbench.errors import RefbenchError

    if target not in TARGETS:
        raise RefbenchError(f"unknown static target {target!r}; choose from {', '.join(TARGETS)}")
    spec = {"target": target, "jobs": jobs or os.cpu_count() or 1, "cases": [asdict(case) for case in cases]}
    root = str(Path(__file__).resolve().parents[2])
    # "0", not unset: refbench's entry point picks the interpreter on a machine without a GPU unless told otherwise.
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    with scratch_dir("refbench-static-") as scratch:   # the compilers' temporary files go with a killed command
        env["TMPDIR"] = str(scratch)
        done = run_group([sys.executable, "-m", "refbench.kernelbench.static"], input=json.dumps(spec), text=True,
                         capture_output=True, env=env, timeout=timeout_s)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RefbenchError(f"compiling the kernels for {target} failed: {tail[0]}")
    rows = json.loads(done.stdout)
    for row in rows:
        row["problems"] = problems(row)
    return rows


def problems(row: dict) -> list[str]:
    """What is wrong with one compiled config: the reasons the static check fails."""
    if row.get("error"):
        return [f"does not compile: {row['error']}"]
    found = []
    if row["spill_bytes"]:
        found.append(f"spills {row['spill_bytes']} bytes")
    limit = TARGETS[row["target"]]["shared_per_block"]
    if row["shared_bytes"] > limit:
        found.append(f"needs {row['shared_bytes']} bytes of shared memory, more than the {limit} a block may have")
    if row["has_dot"] and not row["wgmma"] and row["dot_precision"] != "ieee":  # ieee fp32: FMA, by request
        found.append("the dot does not lower to wgmma")
    narrowest, allowed = row["narrowest_main_load_bytes"], row["vector_bytes"]
    if narrowest is not None and narrowest < allowed:
        found.append(f"{narrowest}-byte loads in the main loop where the layout allows {allowed}-byte ones")
    return found


TABLE_COLUMNS = ["function", "config", "cases", "example case", "regs", "spill B", "smem KB", "blocks/SM",
                 "wgmma", "loads B", "layout B", "pipelined", "problems"]


def table_rows(rows: Sequence[dict]) -> list[dict]:
    """One line per compiled kernel (the cases that share a compile together), for the console.

    ``loads B`` is the widest load and the narrowest main-loop load in bytes;
    ``layout B`` the widest the layout allows along the tiled dimension.
    """
    groups: dict[int, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["compile"], []).append(row)
    lines = []
    for group in groups.values():
        first = group[0]
        problems_seen = list(dict.fromkeys(p for row in group for p in row["problems"]))
        line = {"function": first["function"], "config": first["config"], "cases": len(group),
                "example case": first["case"], "layout B": min(row["vector_bytes"] for row in group),
                "problems": "; ".join(problems_seen) or "-"}
        if not first.get("error"):
            line.update({
                "regs": first["registers"], "spill B": first["spill_bytes"],
                "smem KB": round(first["shared_bytes"] / 1024, 1), "blocks/SM": first["blocks_per_sm"],
                "wgmma": ("yes" if first["wgmma"] else "no") if first["has_dot"] else "-",
                "loads B": f"{first['widest_load_bytes']}/{first['narrowest_main_load_bytes']}",
                "pipelined": first["pipelined"],
            })
        lines.append(line)
    return lines


def static_records(rows: Sequence[dict], *, run_id: str, env: dict) -> list[dict]:
    """One ``kernel`` record per (case, config): ``failed`` with the problems as its error when there are any."""
    from refbench.records.schema import make_record

    records = []
    for row in rows:
        figures = {k: v for k, v in row.items() if k not in ("kernel", "case", "spec", "problems", "error")}
        status = "error" if row.get("error") else "failed" if row["problems"] else "ok"
        records.append(make_record(
            run_id=run_id, env=env, workload=row["kernel"], backend="triton", mode="kernel", status=status,
            variant={"static": row["target"], "case": row["case"], "config": row["config"], **row["spec"]},
            error="; ".join(row["problems"]) or None, metrics=figures))
    return records


# ---------------------------------------------------------------------------------------------
# The compiling process (python -m refbench.kernelbench.static, reading its spec on stdin).

_JOBS: list = []  # (jit function, args, kwargs) per distinct compile, inherited by the forked pool


def _plan(case: dict, target: str) -> list:
    """The launches the kernels' host code makes for one case, recorded on meta tensors."""
    from refbench.kernels._launch import recorded_launches

    with recorded_launches(**DEVICES[target]) as launches:
        if case["kernel"] == "conv2d":
            _run_conv(**case["spec"])
        else:
            _run_softmax(**case["spec"])
    return launches


def _run_conv(layer: dict, batch: int, precision: str, direction: str) -> None:
    import torch
    import torch.nn.functional as F
    from torch.nn.modules.utils import _pair

    from refbench.kernelbench.conv2d import PRECISIONS
    from refbench.kernels import conv

    dtype, channels_last, tf32 = PRECISIONS[precision]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    kh, kw = _pair(layer["kernel_size"])
    geometry = tuple(_pair(layer[k]) for k in ("stride", "padding", "dilation"))
    x = torch.empty(batch, layer["in_channels"], layer["height"], layer["width"], device="meta", dtype=dtype)
    w = torch.empty(layer["out_channels"], layer["in_channels"], kh, kw, device="meta", dtype=dtype)
    x, w = x.to(memory_format=fmt), w.to(memory_format=fmt)
    b = torch.empty(layer["out_channels"], device="meta", dtype=dtype)
    dy = torch.empty_like(F.conv2d(x, w, b, *geometry), memory_format=fmt)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=tf32):
        if direction in ("fwd", "fwd_relu"):
            conv.conv2d(x, w, b, *geometry, activation="relu" if direction == "fwd_relu" else None)
        elif direction == "grad_input":
            conv.conv2d_input_grad(dy, w, x.shape, *geometry)
        else:
            conv.conv2d_weight_grad(dy, x, w.shape, *geometry)


def _run_softmax(op: str, direction: str, M: int, N: int, dtype: str) -> None:
    import importlib

    import torch

    softmax = importlib.import_module("refbench.kernels.softmax")
    x = torch.empty(M, N, device="meta", dtype=getattr(torch, dtype))
    if direction == "fwd":
        softmax.softmax_forward(x, -1, log=op == "log_softmax")
    else:
        softmax.softmax_backward(torch.empty_like(x), x, -1, log=op == "log_softmax")


def _variants(launch, override: dict) -> list[tuple]:
    """(jit function, kwargs, config text) for each config a launch may run: every one the
    pruner keeps, with ``override`` applied; equal configs once."""
    from triton.runtime.autotuner import Autotuner

    kernel, variants = launch.kernel, {}
    if isinstance(kernel, Autotuner):
        kernel.nargs = dict(zip(kernel.arg_names, launch.args))
        try:
            configs = [config.all_kwargs() for config in kernel.prune_configs(dict(launch.kwargs))]
        finally:
            kernel.nargs = None
        kernel = kernel.fn
    else:
        configs = [{}]
    for config in configs:
        kwargs = {**launch.kwargs, **config, **override}
        variants.setdefault(_describe(kwargs), (kernel, kwargs))
    return [(fn, kwargs, text) for text, (fn, kwargs) in variants.items()]


def _describe(kwargs: dict) -> str:
    """A config as text: BLOCK_M x BLOCK_N (x BLOCK_K), warps, stages and any VEC, e.g. ``128x64x32 w4 s4``."""
    blocks = "x".join(str(kwargs[k]) for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K") if k in kwargs)
    vec = f" vec{kwargs['VEC']}" if "VEC" in kwargs else ""
    return f"{blocks} w{kwargs.get('num_warps', 4)} s{kwargs.get('num_stages', 3)}{vec}"


def _expected_bytes(reads: dict, named: dict, kwargs: dict) -> int:
    """The load width the check asks of one config: the narrowest that any read tensor's layout
    and tile allow (0, no demand, for the flat conv reduction)."""
    if kwargs.get("CHANNEL_BLOCKS") is False:
        return 0
    threads = 32 * kwargs.get("num_warps", 4)
    widths = []
    for arg, tile in reads.items():
        elements = 1
        for block in tile:
            elements *= kwargs[block]
        per_thread = max(1, elements // threads) * named[arg].element_size()
        widths.append(min(_vector_bytes(named[arg]), per_thread))
    return min(widths)


def _vector_bytes(tensor) -> int:
    """The widest access, up to 16 bytes, that ``tensor``'s layout allows along dimension 1."""
    size = tensor.element_size()
    if tensor.dim() < 2 or tensor.stride(1) != 1:
        return size
    for width in (16, 8, 4, 2):
        elements = width // size
        if elements < 1 or width % size:
            continue
        strides_ok = all(s % elements == 0 for d, s in enumerate(tensor.stride()) if d != 1 and tensor.shape[d] > 1)
        if tensor.shape[1] % elements == 0 and strides_ok and tensor.data_ptr() % width == 0:
            return width
    return size


def _specialise(fn, args, kwargs, backend):
    """What Triton's launcher would compile for these arguments: (source, options), via its own binder."""
    from triton.compiler import ASTSource
    from triton.runtime.jit import create_function_from_signature

    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    return ASTSource(fn, signature, constexprs, attrs), options


def _compile(index: int) -> dict:
    import triton
    from triton import knobs

    from refbench.kernelbench import asm as kernel_asm

    fn, args, kwargs, target = _JOBS[index]
    try:
        backend, gpu = _backend(target)
        source, options = _specialise(fn, args, kwargs, backend)
        knobs.nvidia.dump_ptxas_log = True  # ptxas -v, printed: the only place spills are reported
        knobs.compilation.always_compile = True  # a cached kernel would come without that report
        log, start = io.StringIO(), time.perf_counter()
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(source, target=gpu, options=options.__dict__)
        figures = kernel_asm.ptxas_resources(log.getvalue())
        figures["compile_s"] = round(time.perf_counter() - start, 2)
        ptx, ttgir = compiled.asm["ptx"], compiled.asm["ttgir"]
        shared = compiled.metadata.shared
        figures.update(kernel_asm.load_widths(ptx), shared_bytes=shared, wgmma=kernel_asm.uses_wgmma(ptx),
                       pipelined=kernel_asm.pipelining(ttgir), has_dot=kernel_asm.pipelining(ttgir) != "-",
                       blocks_per_sm=kernel_asm.blocks_per_sm(target, registers=figures["registers"],
                                                               shared_bytes=shared, num_warps=options.num_warps))
        return figures
    except Exception as exc:  # noqa: BLE001 - one config's failure is its row
        return {"error": f"{type(exc).__name__}: {exc}"[-1000:]}


def _backend(target: str):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    gpu = GPUTarget("cuda", TARGETS[target]["capability"], 32)
    return make_backend(gpu), gpu


def _worker(spec: dict) -> list[dict]:
    from triton import knobs

    if knobs.runtime.interpret:
        raise RuntimeError("TRITON_INTERPRET is on in the compiling process; its kernels could not be compiled")
    target = spec["target"]
    backend, _ = _backend(target)
    rows, keys = [], {}
    for case in spec["cases"]:
        for number, launch in enumerate(_plan(case, target)):
            name = _function_name(launch.kernel)
            if name not in _READS:
                raise KeyError(f"the static check does not know which tensors {name} reads (add it to _READS)")
            named = dict(zip(launch.kernel.arg_names, launch.args))
            for fn, kwargs, config in _variants(launch, case["override"]):
                vector = _expected_bytes(_READS[name], named, kwargs)
                source, options = _specialise(fn, launch.args, kwargs, backend)
                key = (source.hash(), options.hash())
                if key not in keys:
                    keys[key] = len(_JOBS)
                    _JOBS.append((fn, launch.args, kwargs, target))
                rows.append({"kernel": case["kernel"], "case": case["name"], "spec": case["spec"],
                             "launch": number, "function": name, "config": config, "target": target,
                             "vector_bytes": vector, "dot_precision": kwargs.get("PRECISION"),
                             "compile": keys[key]})
    with multiprocessing.get_context("fork").Pool(max(1, min(spec["jobs"], len(_JOBS)))) as pool:
        compiled = pool.map(_compile, range(len(_JOBS)), chunksize=1)
    return [{**row, **compiled[row["compile"]]} for row in rows]


def _function_name(kernel) -> str:
    """The Python function under a kernel's autotune and jit wrappers."""
    while hasattr(kernel, "fn"):
        kernel = kernel.fn
    return kernel.__name__


if __name__ == "__main__":
    die_with(os.getppid())   # its compilers die with the command that asked for them, however it ends
    json.dump(_worker(json.load(sys.stdin)), sys.stdout)
