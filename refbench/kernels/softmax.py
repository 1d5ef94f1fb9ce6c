"""Row softmax and log-softmax in Triton, forward and backward.

Every call views its input as an (M, N) matrix of rows along ``dim`` and runs
one of two kernel shapes, each shared by softmax and log-softmax through the
``LOG`` flag:

- the row kernel, when a row fits in registers (see ``_row_kernel_max_n``):
  one read and one write per element; short rows are packed several to a
  program so that small N is not bound by the launch grid;
- the long-row kernel, on a persistent grid sized so that the rows in
  flight fit in L2: for each of its rows a first sweep in chunks keeps the
  running statistics (online max and rescaled sum in the forward, sum(dy * y)
  or sum(dy) in the backward), a second sweep writes the result. The second
  sweep walks the chunks backwards so that it starts on the ones the first
  sweep left in L2.

Rows whose length and stride are multiples of 16 bytes' worth of elements
load in 16-byte vectors. The kernels take the row length and strides divided
by that many elements (``VEC``, a constexpr) and multiply them back, so the
compiler knows they are multiples of it: ``tl.multiple_of`` on a scalar
argument is dropped, and Triton's own specialisation only marks multiples of
16, which a 1000-column row is not.

Statistics accumulate in fp32 (fp64 for fp64 inputs); outputs keep the input
dtype. Gradients: softmax ``dx = y * (dy - sum(dy * y))``, log-softmax
``dx = dy - exp(y) * sum(dy)``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import triton
import triton.language as tl
from torch import nn

from refbench.kernels._launch import device_limits, launch

# The row kernel holds a whole row per program in registers: at most 128 KiB
# of fp32 values (32 per thread at 32 warps), one row of them in the
# forward and two (y and dy) in the backward. Longer rows, past 32768
# columns forward and 16384 backward, take the long-row
# kernel, which walks the row in chunks of _LONG_BLOCK_N. Both are starting
# points for tuning on a GPU; the static check (refbench.kernelbench.static) says
# whether a row budget spills.
_ROW_KERNEL_BYTES = 128 * 1024
_LONG_BLOCK_N = 8192
# Row-kernel tiles measured on a GPU, per direction, element size and power of two of N.
TILES_FILE = Path(__file__).with_name("softmax_tiles.json")

_SUPPORTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@triton.jit
def _normalizer(m, s, LOG: tl.constexpr):
    """(shift, scale) of a row with max ``m`` and sum(exp(x - m)) ``s``: computed once per row,
    outside the loop that applies them (log-softmax uses no scale)."""
    if LOG:
        return m + tl.log(s), s
    return m, 1.0 / s


@triton.jit
def _normalize(x, shift, scale, LOG: tl.constexpr):
    """softmax or log-softmax of ``x`` given its row's ``_normalizer``."""
    if LOG:
        return x - shift
    return tl.exp(x - shift) * scale


@triton.jit
def _grad_term(y, dy, LOG: tl.constexpr):
    """The per-element term whose row sum the backward needs."""
    if LOG:
        return dy
    return dy * y


@triton.jit
def _grad(y, dy, total, LOG: tl.constexpr):
    if LOG:
        return dy - tl.exp(y) * total
    return y * (dy - total)


@triton.jit
def _row_offsets(rows, stride_vec, VEC: tl.constexpr):
    """Element offsets of ``rows`` for a row stride of ``stride_vec * VEC`` elements."""
    return tl.cast(rows, tl.int64) * stride_vec * VEC


@triton.jit
def _forward_rows(
    X, Y, M, N_VEC, stride_x, stride_y,
    LOG: tl.constexpr, ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, VEC: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < M) & (cols[None, :] < N_VEC * VEC)
    x = tl.load(X + _row_offsets(rows, stride_x, VEC)[:, None] + cols[None, :], mask=mask,
                other=-float("inf")).to(ACC)
    m = tl.max(x, axis=1)[:, None]
    s = tl.sum(tl.exp(x - m), axis=1)[:, None]
    shift, scale = _normalizer(m, s, LOG)
    y = _normalize(x, shift, scale, LOG)
    tl.store(Y + _row_offsets(rows, stride_y, VEC)[:, None] + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _forward_long(
    X, Y, M, N_VEC, stride_x, stride_y,
    LOG: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr, VEC: tl.constexpr,
):
    # Persistent: a grid sized so that the rows in flight fit in L2, each program taking every
    # num_programs-th row, so the second sweep reads what the first left in L2.
    N = N_VEC * VEC
    cols = tl.arange(0, BLOCK_N)
    chunks = tl.cdiv(N, BLOCK_N)
    for row in range(tl.program_id(0), M, tl.num_programs(0)):
        x_row = X + _row_offsets(row, stride_x, VEC)
        y_row = Y + _row_offsets(row, stride_y, VEC)
        # Scalars of dtype ACC: running max and sum(exp(x - max)).
        m = tl.max(tl.full([BLOCK_N], -float("inf"), ACC), axis=0)
        s = tl.sum(tl.zeros([BLOCK_N], ACC), axis=0)
        for start in range(0, N, BLOCK_N):
            x = tl.load(x_row + start + cols, mask=start + cols < N, other=-float("inf")).to(ACC)
            m_new = tl.maximum(m, tl.max(x, axis=0))
            # While every value so far is -inf, shift by 0 so that exp gives 0, not NaN.
            shift = tl.where(m_new == -float("inf"), 0.0, m_new)
            s = s * tl.exp(m - shift) + tl.sum(tl.exp(x - shift), axis=0)
            m = m_new
        shift, scale = _normalizer(m, s, LOG)
        for i in range(chunks):
            start = (chunks - 1 - i) * BLOCK_N
            mask = start + cols < N
            x = tl.load(x_row + start + cols, mask=mask, other=-float("inf")).to(ACC)
            tl.store(y_row + start + cols, _normalize(x, shift, scale, LOG).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _backward_rows(
    Y, DY, DX, M, N_VEC, stride_y, stride_dy, stride_dx,
    LOG: tl.constexpr, ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, VEC: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < M) & (cols[None, :] < N_VEC * VEC)
    y = tl.load(Y + _row_offsets(rows, stride_y, VEC)[:, None] + cols[None, :], mask=mask, other=0.0).to(ACC)
    dy = tl.load(DY + _row_offsets(rows, stride_dy, VEC)[:, None] + cols[None, :], mask=mask, other=0.0).to(ACC)
    total = tl.sum(_grad_term(y, dy, LOG), axis=1)[:, None]
    dx = _grad(y, dy, total, LOG)
    tl.store(DX + _row_offsets(rows, stride_dx, VEC)[:, None] + cols[None, :], dx.to(DX.dtype.element_ty),
             mask=mask)


@triton.jit
def _backward_long(
    Y, DY, DX, M, N_VEC, stride_y, stride_dy, stride_dx,
    LOG: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr, VEC: tl.constexpr,
):
    N = N_VEC * VEC
    cols = tl.arange(0, BLOCK_N)
    chunks = tl.cdiv(N, BLOCK_N)
    for row in range(tl.program_id(0), M, tl.num_programs(0)):
        y_row = Y + _row_offsets(row, stride_y, VEC)
        dy_row = DY + _row_offsets(row, stride_dy, VEC)
        dx_row = DX + _row_offsets(row, stride_dx, VEC)
        total = tl.zeros([BLOCK_N], ACC)
        for start in range(0, N, BLOCK_N):
            mask = start + cols < N
            y = tl.load(y_row + start + cols, mask=mask, other=0.0).to(ACC)
            dy = tl.load(dy_row + start + cols, mask=mask, other=0.0).to(ACC)
            total += _grad_term(y, dy, LOG)
        row_total = tl.sum(total, axis=0)
        for i in range(chunks):
            start = (chunks - 1 - i) * BLOCK_N
            mask = start + cols < N
            y = tl.load(y_row + start + cols, mask=mask, other=0.0).to(ACC)
            dy = tl.load(dy_row + start + cols, mask=mask, other=0.0).to(ACC)
            tl.store(dx_row + start + cols, _grad(y, dy, row_total, LOG).to(DX.dtype.element_ty), mask=mask)


def _row_kernel_max_n(dtype: torch.dtype, rows_held: int) -> int:
    """Longest row the row kernel takes when each program holds ``rows_held`` rows, budgeted at
    the accumulator's size: 16-bit rows at 2 bytes spill on sm_90 (static check: 296 bytes for a
    65536-column forward, 80 for a 32768-column backward), so they get 4 like fp32."""
    return _ROW_KERNEL_BYTES // (max(dtype.itemsize, 4) * rows_held)


def _vector(n: int, strides, dtype: torch.dtype) -> int:
    """Elements per 16-byte access that rows of length ``n`` with these row strides allow."""
    vec = 16 // dtype.itemsize
    while vec > 1 and (n % vec or any(s % vec for s in strides)):
        vec //= 2
    return vec


@functools.cache
def _measured_tiles() -> dict:
    """Row-kernel tiles a GPU sweep measured (``refbench.kernelbench.softmax.tune_row_tiles``), if it wrote any."""
    if not TILES_FILE.exists():
        return {}
    entries = json.loads(TILES_FILE.read_text())["tiles"]
    return {(e["direction"], e["itemsize"], e["block_n"]): (e["block_m"], e["num_warps"]) for e in entries}


def _row_config(m: int, n: int, direction: str, dtype: torch.dtype, tile: tuple[int, int] | None = None) -> dict:
    """Block shape and warps for the row kernel: the measured tile for this row-length class
    (power of two), else the rule.

    The rule: a program covers 4096 elements or one row, whichever is more:
    short rows are packed BLOCK_M to a program, rows of 4096 and more get a
    program each. Warps grow with the tile, 16 elements a thread, from 4 to 32.
    BLOCK_M never exceeds M's power of two. ``tile`` (rows per program, warps)
    replaces both, to time a candidate.
    """
    block_n = triton.next_power_of_2(n)
    block_m = max(4096 // block_n, 1)
    num_warps = min(max(block_m * block_n // 512, 4), 32)
    block_m, num_warps = tile or _measured_tiles().get((direction, dtype.itemsize, block_n), (block_m, num_warps))
    return dict(BLOCK_M=min(block_m, triton.next_power_of_2(m)), BLOCK_N=block_n, num_warps=num_warps)


def _long_launch(m: int, n: int, dtype: torch.dtype, device: torch.device, vec: int) -> tuple[tuple, dict]:
    """Grid and config of a long-row kernel: a persistent grid of at least one program per SM,
    more (up to four per SM) while the rows in flight fill no more than half the L2.

    A chunk gives each of the 512 threads 16 elements; rows that load one element at a time
    (an odd length such as a 50257-word vocabulary) get half that, since 16 scalar loads a
    thread spill in the fp32 forward on sm_90 (static check: 16 bytes at any warp count)."""
    multiprocessors, l2_bytes = device_limits(device)
    programs = max(multiprocessors, min(4 * multiprocessors, l2_bytes // (2 * n * dtype.itemsize)))
    chunk = _LONG_BLOCK_N if vec > 1 else _LONG_BLOCK_N // 2
    return (min(m, programs),), dict(BLOCK_N=min(chunk, triton.next_power_of_2(n)), num_warps=16)


def _acc_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _rows(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` as an (M, N) matrix of rows along ``dim`` with unit column stride (a view when possible)."""
    t = t.reshape(1) if t.ndim == 0 else t.movedim(dim, -1)
    rows = t.reshape(-1, t.shape[-1])
    return rows if rows.stride(1) == 1 else rows.contiguous()


def _unrows(rows: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    """Undo ``_rows``: a tensor shaped like ``like``."""
    if like.ndim == 0:
        return rows.reshape(())
    return rows.reshape(like.movedim(dim, -1).shape).movedim(-1, dim)


def _check(x: torch.Tensor) -> None:
    if x.dtype not in _SUPPORTED:
        raise TypeError(f"softmax kernels take float16, bfloat16, float32 or float64 tensors, not {x.dtype}")


def softmax_forward(x: torch.Tensor, dim: int = -1, *, log: bool = False,
                    tile: tuple[int, int] | None = None) -> torch.Tensor:
    """softmax (or log-softmax with ``log=True``) of ``x`` along ``dim``, without autograd;
    ``tile`` (rows per program, warps) overrides the row kernel's table (``_row_config``)."""
    _check(x)
    if x.numel() == 0:
        return torch.empty_like(x)
    x2 = _rows(x, dim)
    m, n = x2.shape
    y2 = torch.empty((m, n), dtype=x.dtype, device=x.device)
    vec = _vector(n, (x2.stride(0), y2.stride(0)), x.dtype)
    sizes = (m, n // vec, x2.stride(0) // vec, y2.stride(0) // vec)
    flags = dict(LOG=log, ACC=_acc_dtype(x.dtype), VEC=vec)
    if n <= _row_kernel_max_n(x.dtype, rows_held=1):
        config = _row_config(m, n, "fwd", x.dtype, tile)
        launch(_forward_rows, (triton.cdiv(m, config["BLOCK_M"]),), x2, y2, *sizes, **flags, **config)
    else:
        grid, config = _long_launch(m, n, x.dtype, x.device, vec)
        launch(_forward_long, grid, x2, y2, *sizes, **flags, **config)
    return _unrows(y2, x, dim)


def softmax_backward(dy: torch.Tensor, y: torch.Tensor, dim: int = -1, *, log: bool = False,
                     tile: tuple[int, int] | None = None) -> torch.Tensor:
    """Gradient of softmax (or log-softmax) at output ``y`` for incoming gradient ``dy``;
    ``tile`` as in ``softmax_forward``."""
    _check(y)
    if y.numel() == 0:
        return torch.empty_like(y)
    y2, dy2 = _rows(y, dim), _rows(dy.to(y.dtype), dim)
    m, n = y2.shape
    dx2 = torch.empty((m, n), dtype=y.dtype, device=y.device)
    vec = _vector(n, (y2.stride(0), dy2.stride(0), dx2.stride(0)), y.dtype)
    sizes = (m, n // vec, y2.stride(0) // vec, dy2.stride(0) // vec, dx2.stride(0) // vec)
    flags = dict(LOG=log, ACC=_acc_dtype(y.dtype), VEC=vec)
    if n <= _row_kernel_max_n(y.dtype, rows_held=2):
        config = _row_config(m, n, "bwd", y.dtype, tile)
        launch(_backward_rows, (triton.cdiv(m, config["BLOCK_M"]),), y2, dy2, dx2, *sizes, **flags, **config)
    else:
        grid, config = _long_launch(m, n, y.dtype, y.device, vec)
        launch(_backward_long, grid, y2, dy2, dx2, *sizes, **flags, **config)
    return _unrows(dx2, y, dim)


class _SoftmaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
        y = softmax_forward(x, dim, log=log)
        ctx.save_for_backward(y)
        ctx.dim, ctx.log = dim, log
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: torch.Tensor):
        (y,) = ctx.saved_tensors
        return softmax_backward(dy, y, ctx.dim, log=ctx.log), None, None


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.softmax(x, dim)`` computed by the Triton kernels, with autograd."""
    return _SoftmaxFunction.apply(x, dim, False)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.log_softmax(x, dim)`` computed by the Triton kernels, with autograd."""
    return _SoftmaxFunction.apply(x, dim, True)


def _module_dim(dim: int | None, ndim: int) -> int:
    """nn.Softmax's dim, with torch's legacy choice when it was left as None."""
    if dim is not None:
        return dim
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(nn.Softmax):
    """Drop-in for ``nn.Softmax`` (same ``dim``, same state) backed by the Triton kernels."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return softmax(input, _module_dim(self.dim, input.ndim))


class LogSoftmax(nn.LogSoftmax):
    """Drop-in for ``nn.LogSoftmax`` backed by the Triton kernels."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return log_softmax(input, _module_dim(self.dim, input.ndim))


def _replacement(module: nn.Module) -> type[nn.Module] | None:
    """The Triton class for ``module``, or None when it is not a plain (Log)Softmax.

    Subclasses count only when they keep the stock ``forward``; one that
    overrides it (a masked softmax, or the Triton modules themselves) is left alone.
    """
    for base, triton_class in ((nn.Softmax, Softmax), (nn.LogSoftmax, LogSoftmax)):
        if isinstance(module, base) and type(module).forward is base.forward:
            return triton_class
    return None


def _describe(module: nn.Module) -> str:
    cls = type(module)
    name = f"nn.{cls.__name__}" if cls in (nn.Softmax, nn.LogSoftmax) else f"{cls.__module__}.{cls.__qualname__}"
    return f"{name}(dim={module.dim})"


def swap_softmax(model: nn.Module) -> list[str]:
    """Replace every softmax / log-softmax submodule of ``model`` in place; describe each swap.

    Swaps come in module order. The root module itself has no parent to be
    replaced in, so it is never swapped.
    """
    swapped = []
    for path, module in list(model.named_modules(remove_duplicate=False)):
        triton_class = _replacement(module)
        if triton_class is None or not path:
            continue
        parent_path, _, name = path.rpartition(".")
        new = triton_class(module.dim)
        new.train(module.training)
        setattr(model.get_submodule(parent_path), name, new)
        swapped.append(f"{path}: {_describe(module)} -> kernels.{triton_class.__name__}")
    return swapped
