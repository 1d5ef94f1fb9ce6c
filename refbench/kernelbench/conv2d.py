"""The conv2d kernel sweep behind ``refbench kernels conv2d``.

Every conv layer of the measured models, at each batch size, precision and
direction (forward, forward with ReLU, grad input, grad weight), for cuDNN
(``F.conv2d`` and ``aten.convolution_backward``), the same under
``torch.compile(mode="max-autotune")``, and refbench's Triton kernels. Each
cell is one ``kernel`` record: time, TFLOP/s, the largest error against fp64
on the same inputs, and the roofline max(FLOPs / matmul peak, bytes / copy
bandwidth) with both peaks measured in the same run. The gradient cells time
the gradient kernel alone, given the output gradient, so no backend pays for
autograd.

On the CPU the two smallest layers run at batch 2 in fp32, the Triton kernels
in the interpreter ("cudnn" is then torch's CPU convolution): that proves the
sweep end to end, and its timings mean nothing.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Callable, Collection, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from refbench.kernelbench.timing import (copy_bandwidth_gbps, first_call, kernel_failure, matmul_peak_tflops,
                                 on_gpu, time_ms)
from refbench.records.schema import cell_key, make_record
from refbench.models import eval_mode

BACKENDS = ("cudnn", "compile-max-autotune", "triton")
_PASSES = (("cudnn", "triton"), ("compile-max-autotune",))  # the slow builds last
SHAPE_SETS = ("quick", "full", "gpu-check")
PRECISIONS = {  # name: (dtype, channels-last, TF32 allowed)
    "fp32": (torch.float32, False, False),
    "tf32": (torch.float32, False, True),
    "bf16": (torch.bfloat16, False, False),
    "bf16-channels-last": (torch.bfloat16, True, False),
}
DIRECTIONS = ("fwd", "fwd_relu", "grad_input", "grad_weight")
_CPU_BATCH = 2


def conv_layers_of(model: nn.Module, input_shape: Sequence[int], name_prefix: str) -> list[dict]:
    """Every ``nn.Conv2d`` of ``model`` as a layer dict, in call order, with the
    input height and width it sees on an input of ``input_shape`` ((C, H, W) or
    (N, C, H, W))."""
    layers, seen = [], set()

    def hook_for(name):
        def record(conv, inputs, output):
            if name in seen:
                return
            seen.add(name)
            layers.append({
                "name": f"{name_prefix}.{name}",
                "in_channels": conv.in_channels, "out_channels": conv.out_channels,
                "kernel_size": _scalar(conv.kernel_size), "stride": _scalar(conv.stride),
                "padding": _scalar(conv.padding), "dilation": _scalar(conv.dilation),
                "groups": conv.groups, "height": inputs[0].shape[-2], "width": inputs[0].shape[-1],
            })
        return record

    hooks = [m.register_forward_hook(hook_for(name))
             for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    parameter = next(model.parameters())
    shape = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(shape, device=parameter.device, dtype=parameter.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return layers


def run_sweep(
    *,
    device: torch.device | str,
    layers: Sequence[dict],
    batch_sizes: Sequence[int] = (128, 1024),
    precisions: Sequence[str] = ("tf32", "bf16", "bf16-channels-last"),
    directions: Sequence[str] = ("fwd", "grad_input", "grad_weight"),
    shapes: str = "full",
    run_id: str,
    env: dict,
    on_record: Callable[[dict], None] | None = None,
    only: Collection[tuple] | None = None,
) -> list[dict]:
    """Time every (layer, batch size, precision, direction, backend) cell; one record each.

    Layers with the same shape are measured once, under the first one's name,
    the others listed in the layer's ``same_as``. ``shapes`` on a GPU: "full"
    as given, "quick" the first batch size only, "gpu-check" batch 128 in tf32
    and bf16 (the short GPU check's fixed set); a CPU always runs its tiny
    case (module docstring). The compiled peer's cells come after all the
    others, since its builds take the longest. ``on_record`` sees each record
    as soon as it exists. ``only``, when given, is the set of cell keys
    (``refbench.records.schema.cell_key`` of ``planned_cells``' entries) to
    run; the others are left out without a record. A failing cell becomes an
    ``error`` (or ``oom``) record and the sweep goes on.
    """
    layers, batch_sizes, precisions, directions = _grid(device, layers, batch_sizes, precisions, directions, shapes)
    copy_gbps = copy_bandwidth_gbps(device)
    records = []

    def emit(layer, **fields):
        record = make_record(run_id=run_id, env=env, workload=layer["name"], mode="kernel", **fields)
        records.append(record)
        if on_record is not None:
            on_record(record)

    def wanted(layer, batch_size, variant, backends):
        return [b for b in backends if only is None or _key(layer, b, batch_size, variant) in only]

    peaks = {}
    for backends in _PASSES:
        for precision in precisions:
            dtype, channels_last, tf32 = PRECISIONS[precision]
            with _precision_flags(device, tf32):
                for layer, batch_size in itertools.product(layers, batch_sizes):
                    todo = {direction: wanted(layer, batch_size, _variant(precision, direction, layer), backends)
                            for direction in directions}
                    if not any(todo.values()):
                        continue
                    if precision not in peaks:
                        peaks[precision] = {"matmul_peak_tflops": matmul_peak_tflops(device, dtype),
                                            "copy_gbps": copy_gbps}
                    try:
                        problem = _Problem(layer, batch_size, dtype, channels_last, device)
                    except Exception as exc:  # noqa: BLE001 - the cell's failure is its record
                        problem, failure = None, kernel_failure(exc)
                    for direction, chosen in todo.items():
                        if not chosen:
                            continue
                        cells = (_cells(problem, direction, device, peaks[precision], chosen) if problem
                                 else ((backend, failure) for backend in chosen))
                        for backend, fields in cells:
                            emit(layer, backend=backend, batch_size=batch_size,
                                 variant=_variant(precision, direction, layer), **fields)
    return records


def planned_cells(*, device: torch.device | str, layers: Sequence[dict], batch_sizes: Sequence[int] = (128, 1024),
                  precisions: Sequence[str] = ("tf32", "bf16", "bf16-channels-last"),
                  directions: Sequence[str] = ("fwd", "grad_input", "grad_weight"), shapes: str = "full") -> list[dict]:
    """The cells ``run_sweep`` would time with these arguments, in its order, as record fields
    (workload, backend, mode, variant, batch_size); no GPU needed."""
    layers, batch_sizes, precisions, directions = _grid(device, layers, batch_sizes, precisions, directions, shapes)
    return [{"workload": layer["name"], "backend": backend, "mode": "kernel", "batch_size": batch_size,
             "variant": _variant(precision, direction, layer)}
            for backends in _PASSES for precision in precisions
            for layer, batch_size in itertools.product(layers, batch_sizes)
            for direction in directions for backend in backends]


def _grid(device, layers, batch_sizes, precisions, directions, shapes) -> tuple:
    """The layers, batch sizes, precisions and directions a sweep covers, the arguments checked."""
    if shapes not in SHAPE_SETS:
        raise ValueError(f"unknown shape set {shapes!r}; choose from {', '.join(SHAPE_SETS)}")
    unknown = (set(precisions) - set(PRECISIONS)) | (set(directions) - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"unknown precision or direction {sorted(unknown)}; "
                         f"choose from {list(PRECISIONS)} and {list(DIRECTIONS)}")
    layers = distinct_layers(layers)
    if not on_gpu(device):
        return sorted(layers, key=_rough_flops)[:2], (_CPU_BATCH,), ("fp32",), tuple(directions)
    if shapes == "quick":
        return layers, tuple(batch_sizes[:1]), tuple(precisions), tuple(directions)
    if shapes == "gpu-check":
        return layers, (128,), ("tf32", "bf16"), tuple(directions)
    return layers, tuple(batch_sizes), tuple(precisions), tuple(directions)


def _variant(precision: str, direction: str, layer: dict) -> dict:
    return {"precision": precision, "direction": direction, "layer": layer}


def _key(layer: dict, backend: str, batch_size: int, variant: dict) -> tuple:
    return cell_key({"workload": layer["name"], "backend": backend, "mode": "kernel", "variant": variant,
                     "batch_size": batch_size})


def _cells(problem: "_Problem", direction: str, device, peaks: dict, backends: Sequence[str]):
    """(backend, record fields) for one direction of one problem."""
    try:
        expected = problem.reference(direction)
    except Exception as exc:  # noqa: BLE001
        yield from ((backend, kernel_failure(exc)) for backend in backends)
        return
    roofline_ms = 1e3 * max(problem.flops / (peaks["matmul_peak_tflops"] * 1e12),
                            problem.bytes / (peaks["copy_gbps"] * 1e9))
    for backend in backends:
        if backend == "compile-max-autotune" and not on_gpu(device):
            yield backend, {"status": "skipped",
                            "error": "torch.compile is timed on GPU only; on CPU its build would dominate"}
            continue
        try:
            metrics = _measure(problem.kernel(backend, direction), expected, device)
        except Exception as exc:  # noqa: BLE001
            yield backend, kernel_failure(exc)
            continue
        metrics.update(peaks, tflops=problem.flops / (metrics["time_ms"] * 1e-3) / 1e12,
                       roofline_ms=roofline_ms, roofline_fraction=roofline_ms / metrics["time_ms"])
        yield backend, {"status": "ok", "metrics": metrics}


class _Problem:
    """One layer at one batch size and precision: its tensors, reference and kernels."""

    def __init__(self, layer: dict, batch_size: int, dtype, channels_last: bool, device):
        if layer.get("groups", 1) != 1:
            raise NotImplementedError(f"grouped convolution (groups={layer['groups']}) is not in the sweep")
        self.stride, self.padding, self.dilation = (_pair(layer[k]) for k in ("stride", "padding", "dilation"))
        kh, kw = _pair(layer["kernel_size"])
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        shape = (batch_size, layer["in_channels"], layer["height"], layer["width"])
        self.x = torch.randn(shape, device=device).to(dtype=dtype, memory_format=fmt)
        self.w = torch.randn(layer["out_channels"], layer["in_channels"], kh, kw, device=device)
        self.w = (self.w / (layer["in_channels"] * kh * kw) ** 0.5).to(dtype=dtype, memory_format=fmt)
        self.b = torch.randn(layer["out_channels"], device=device).to(dtype)
        y = self._conv(self.x, self.w, self.b)
        self.dy = torch.randn_like(y)
        n, k, p, q = y.shape
        self.flops = 2 * n * k * p * q * layer["in_channels"] * kh * kw

    def _conv(self, x, w, b):
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation)

    @property
    def bytes(self) -> int:
        """Bytes a perfect kernel moves: every direction reads two of x, w and
        the output (gradient) and writes the third."""
        return sum(t.numel() * t.element_size() for t in (self.x, self.w, self.dy))

    def reference(self, direction: str) -> torch.Tensor:
        """The fp64 answer on exactly these (rounded) inputs."""
        x, w, b = (t.double().requires_grad_() for t in (self.x, self.w, self.b))
        y = self._conv(x, w, b)
        if direction.startswith("fwd"):
            return (y.relu() if direction == "fwd_relu" else y).detach()
        (grad,) = torch.autograd.grad(y, x if direction == "grad_input" else w, self.dy.double())
        return grad

    def kernel(self, backend: str, direction: str) -> Callable[[], torch.Tensor]:
        geometry = (self.stride, self.padding, self.dilation)
        if backend == "triton":
            from refbench.kernels import conv

            fn = {
                "fwd": lambda x, w, b, dy: conv.conv2d(x, w, b, *geometry),
                "fwd_relu": lambda x, w, b, dy: conv.conv2d(x, w, b, *geometry, activation="relu"),
                "grad_input": lambda x, w, b, dy: conv.conv2d_input_grad(dy, w, x.shape, *geometry),
                "grad_weight": lambda x, w, b, dy: conv.conv2d_weight_grad(dy, x, w.shape, *geometry),
            }[direction]
        else:
            backward = torch.ops.aten.convolution_backward
            fn = {
                "fwd": lambda x, w, b, dy: self._conv(x, w, b),
                "fwd_relu": lambda x, w, b, dy: F.relu(self._conv(x, w, b)),
                "grad_input": lambda x, w, b, dy: backward(
                    dy, x, w, None, *geometry, False, [0, 0], 1, [True, False, False])[0],
                "grad_weight": lambda x, w, b, dy: backward(
                    dy, x, w, None, *geometry, False, [0, 0], 1, [False, True, False])[1],
            }[direction]
            if backend == "compile-max-autotune":
                torch.compiler.reset()  # a fresh, shape-specialised graph per cell
                fn = torch.compile(fn, mode="max-autotune", dynamic=False)
        return lambda: fn(self.x, self.w, self.b, self.dy)


def _measure(fn: Callable[[], torch.Tensor], expected: torch.Tensor, device) -> dict:
    with torch.no_grad():
        out, first_call_s = first_call(fn, device)  # the first call compiles and autotunes
        ms = time_ms(fn, device)
    return {"time_ms": ms, "max_abs_err": (out.double() - expected).abs().max().item(),
            "first_call_s": first_call_s}


@contextlib.contextmanager
def _precision_flags(device, tf32: bool):
    """TF32 on or off for cuDNN convolutions, matmuls and Inductor's conv templates alike; cuDNN in
    benchmark mode on a GPU.

    Set through torch's fp32_precision settings: Inductor's max-autotune conv template reads
    ``torch.backends.cudnn.fp32_precision``, which the legacy ``allow_tf32`` flags leave at
    "none", so a "tf32" cell set only through them compiles in full fp32."""
    precision = "tf32" if tf32 else "ieee"
    settings = (torch.backends.cudnn, torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [s.fp32_precision for s in settings]
    with torch.backends.cudnn.flags(enabled=True, benchmark=on_gpu(device), deterministic=False, allow_tf32=None):
        try:
            for setting in settings:
                setting.fp32_precision = precision
            yield
        finally:
            for setting, value in zip(settings, saved):
                setting.fp32_precision = value


def distinct_layers(layers: Sequence[dict]) -> list[dict]:
    """The layers with distinct shapes, each naming the later ones that share it."""
    first: dict[tuple, dict] = {}
    for layer in layers:
        shape = tuple(sorted((k, str(v)) for k, v in layer.items() if k != "name"))
        if shape in first:
            first[shape].setdefault("same_as", []).append(layer["name"])
        else:
            first[shape] = dict(layer)
    return list(first.values())


def _rough_flops(layer: dict) -> int:
    """A layer's work per sample, up to its stride and padding (enough to order layers)."""
    kh, kw = _pair(layer["kernel_size"])
    return layer["out_channels"] * layer["height"] * layer["width"] * layer["in_channels"] * kh * kw


def _scalar(pair):
    """(3, 3) -> 3; asymmetric pairs and strings as they are."""
    return pair[0] if isinstance(pair, tuple) and len(set(pair)) == 1 else pair


