"""conv2d as an implicit GEMM in Triton: forward with fused bias and ReLU, and backward.

One kernel computes all three problems. It evaluates the generalised correlation

    y[b, o, u, v] = act(bias[o] + sum_{i, r, s} x[b, i, hi, wi] * w[o, i, r, s])
    hi = (u * str_h - pad_h + r * dil_h) / UP_H     (a tap only where UP_H divides exactly)
    wi = (v * str_w - pad_w + s * dil_w) / UP_W

as a GEMM with rows (b, u, v), columns o and reduction (i, r, s), gathering the
``x`` tile straight from memory (no im2col buffer). The backward problems are
the same kernel on transposed views:

- forward:     x, w as given; ``UP = 1``.
- grad input:  x := dy, w := weight with its two channel axes swapped, taps at
  ``(h + pad - r * dil) / stride``: step 1, padding ``-pad``, dilation ``-dil``,
  ``UP = stride``.
- grad weight: x := input with batch and channel swapped, w := dy likewise, the
  "kernel" is dy's (P, Q) and the output dw with its two channel axes swapped:
  step ``dil``, dilation ``stride``. The reduction runs over N * P * Q, so it is
  split over the grid's second axis, each split adding its fp32 sum into dw.

From 16 channels up the reduction walks (tap, block of channels) in one loop,
on channels-last x and w: NCHW activations are converted per call, weights
once per update (the copy is kept until the weight's version changes), so
every tile loads in 16-byte vectors. Fewer channels (and the weight gradient)
take a flat reduction over (i, r, s) whose offsets come from a small table.
Every tensor is addressed through its strides; outputs keep the input's
memory format.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import nn
from torch.nn.modules.utils import _pair
from torch.utils.weak import WeakIdKeyDictionary

from refbench.kernels._launch import device_limits, launch, recording

ACTIVATIONS = (None, "relu")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


# Tile shapes (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages). The pruner offers a problem those
# whose BLOCK_N is the output channels' power of two up to 64, so at most two are timed per problem.
# None spills on sm_90 for the documents' layers (`refbench kernels --static sm_90`); what did:
# 128x64 tiles on 4 warps (700-900 bytes), every 128-channel-wide tile tried (40-1750 bytes, the
# epilogue's per-element addresses on top of the accumulators), 64x64x64 in the weight gradient.
_TILES = (
    (128, 16, 32, 4, 3),
    (128, 32, 32, 4, 3),
    (128, 64, 32, 8, 4), (64, 64, 32, 4, 4),
)
_WIDEST = 64
_INTERPRETER_TILE = (128, 32, 64, 4, 1)  # one tile: the interpreter would time every candidate
_SHARED_BUDGET = 200 * 1024


def _configs() -> list[triton.Config]:
    tiles = [_INTERPRETER_TILE] if _interpreting() else _TILES
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_warps=warps,
                          num_stages=stages) for m, n, k, warps, stages in tiles]


def _prune(configs, named_args, **kwargs):
    """The tiles that fit the problem: BLOCK_N the output channels' power of two (16 to 64; the
    next narrower one when no such tile fits), BLOCK_K no deeper than one reduction step, BLOCK_M
    no taller than the rows, and the pipeline's buffers within shared memory."""
    args = {**named_args, **kwargs}
    depth = args["I"] if args["CHANNEL_BLOCKS"] else args["K"]
    depth = max(16, triton.next_power_of_2(depth))
    rows = max(64, triton.next_power_of_2(args["B"] * args["U"] * args["V"]))
    itemsize = args["x_ptr"].element_size()

    def fits(c):
        meta = c.kwargs
        shared = (meta["BLOCK_M"] + meta["BLOCK_N"]) * meta["BLOCK_K"] * itemsize * max(c.num_stages, 1)
        return meta["BLOCK_K"] <= depth and meta["BLOCK_M"] <= rows and shared <= _SHARED_BUDGET

    width = min(max(16, triton.next_power_of_2(args["O"])), _WIDEST)
    while width >= 16:
        kept = [c for c in configs if c.kwargs["BLOCK_N"] == width and fits(c)]
        if kept:
            return kept
        width //= 2
    return [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] * c.kwargs["BLOCK_K"])]


@triton.jit
def _tap(hi, wi, H, W, UP_H: tl.constexpr, UP_W: tl.constexpr):
    """The source row and column of taps at (hi, wi) before the / UP, and whether
    each exists: inside the image and, for UP > 1, on the stride grid."""
    ok = (hi >= 0) & (wi >= 0)
    if UP_H > 1:
        ok &= hi % UP_H == 0
        hi = hi // UP_H
    if UP_W > 1:
        ok &= wi % UP_W == 0
        wi = wi // UP_W
    return hi, wi, ok & (hi < H) & (wi < W)


@triton.jit
def _mma(a, b, acc, PRECISION: tl.constexpr, DOT_FP32: tl.constexpr):
    if DOT_FP32:  # the interpreter's dot multiplies bfloat16 bit patterns (triton-lang/triton#11584)
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc=acc, input_precision="ieee")
    return tl.dot(a, b, acc=acc, input_precision=PRECISION)


@triton.autotune(
    configs=_configs(),
    # The problem's shape and geometry; sxi and swi (the channel strides) tell the layouts apart.
    key=["B", "I", "H", "W", "O", "U", "V", "R", "S", "str_h", "str_w", "pad_h", "pad_w", "dil_h", "dil_w",
         "sxi", "swi", "UP_H", "UP_W", "CHANNEL_BLOCKS", "ACCUMULATE", "PRECISION"],
    prune_configs_by={"early_config_prune": _prune},
    reset_to_zero=["y_ptr"],  # the weight gradient adds into y: every timed candidate starts from zeros
)
# Sizes and geometry are not specialised on: a compile per combination of their values and
# divisibilities would buy no wider load. Strides and channel counts are (16-byte accesses).
@triton.jit(do_not_specialize=["B", "H", "W", "U", "V", "R", "S", "K", "str_h", "str_w", "pad_h", "pad_w",
                               "dil_h", "dil_w"])
def _conv_gemm_kernel(
    x_ptr, w_ptr, y_ptr, bias_ptr, table_ptr,
    B, I, H, W, O, U, V, R, S, K,
    str_h, str_w, pad_h, pad_w, dil_h, dil_w,
    sxb, sxi, sxh, sxw,
    swo, swi, swr, sws,
    syb, syo, syu, syv,
    UP_H: tl.constexpr, UP_W: tl.constexpr, CHANNEL_BLOCKS: tl.constexpr,
    HAS_BIAS: tl.constexpr, RELU: tl.constexpr, ACCUMULATE: tl.constexpr, PRECISION: tl.constexpr,
    DOT_FP32: tl.constexpr, WIDE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    M = B * U * V
    # Grouped tile order (as in the Triton matmul tutorial) for L2 reuse of w.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(O, BLOCK_N)
    group = GROUP_M * num_pid_n
    first_m = (pid // group) * GROUP_M
    group_size = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % group) % group_size
    pid_n = (pid % group) // group_size

    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    b = rm // (U * V)
    u = (rm // V) % U
    v = rm % V
    if WIDE:  # offsets past 2**31 elements
        b = b.to(tl.int64)
    x_row = b * sxb
    h_base = u * str_h - pad_h
    w_base = v * str_w - pad_w
    row_ok = rm < M
    col_ok = rn < O
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)

    if CHANNEL_BLOCKS:
        # One loop over (tap, block of channels), the tap derived per step, so that the
        # pipeliner keeps loads in flight across taps. Channels are the contiguous axis of
        # x and w here (channels-last), so both tiles load in 16-byte vectors. With UP = 1 a
        # tap only shifts every row by the same amount: one row vector of offsets and the
        # rows' first tap position serve all taps (rows past M start far outside the image).
        x_base = x_row + h_base * sxh + w_base * sxw
        h_base = tl.where(row_ok, h_base, -(1 << 30))
        blocks = tl.cdiv(I, BLOCK_K)
        for step in range(0, R * S * blocks):
            rs = step // blocks
            c = (step - rs * blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
            r = rs // S
            s = rs - r * S
            if UP_H == 1 and UP_W == 1:
                dh = r * dil_h
                dw = s * dil_w
                tap = (h_base >= -dh) & (h_base < H - dh) & (w_base >= -dw) & (w_base < W - dw)
                x_at = x_base + dh * sxh + dw * sxw
            else:
                hi, wi, tap = _tap(h_base + r * dil_h, w_base + s * dil_w, H, W, UP_H, UP_W)
                x_at = x_row + hi * sxh + wi * sxw
            c_ok = c < I
            a = tl.load(x_ptr + x_at[:, None] + (c * sxi)[None, :], mask=tap[:, None] & c_ok[None, :], other=0.0)
            bt = tl.load(w_ptr + (r * swr + s * sws + c * swi)[:, None] + (rn * swo)[None, :],
                         mask=c_ok[:, None] & col_ok[None, :], other=0.0)
            acc = _mma(a, bt, acc, PRECISION, DOT_FP32)
    else:
        # One flat reduction index k over (i, r, s), kernel columns fastest: no work lost to
        # padding few channels (C = 1, 3, 6) up to a block. Its offsets come from a table
        # (rows: x offset, w offset, tap row, tap column), so a step does no division. The
        # reduction may be split over the grid's second axis, each split adding into y.
        k_per_split = tl.cdiv(tl.cdiv(K, tl.num_programs(1)), BLOCK_K) * BLOCK_K
        k_lo = tl.program_id(1) * k_per_split
        k_hi = tl.minimum(k_lo + k_per_split, K)
        if UP_H == 1 and UP_W == 1:
            x_row += h_base * sxh + w_base * sxw  # the table's x offsets hold the tap's part
        for k0 in range(k_lo, k_hi, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            k_ok = rk < k_hi
            x_off = tl.load(table_ptr + rk, mask=k_ok, other=0)
            w_off = tl.load(table_ptr + K + rk, mask=k_ok, other=0)
            hi, wi, tap = _tap(h_base[:, None] + tl.load(table_ptr + 2 * K + rk, mask=k_ok, other=0)[None, :],
                               w_base[:, None] + tl.load(table_ptr + 3 * K + rk, mask=k_ok, other=0)[None, :],
                               H, W, UP_H, UP_W)
            x_at = x_row[:, None] + x_off[None, :]
            if UP_H > 1 or UP_W > 1:
                x_at += hi * sxh + wi * sxw
            a = tl.load(x_ptr + x_at, mask=tap & row_ok[:, None] & k_ok[None, :], other=0.0)
            bt = tl.load(w_ptr + w_off[:, None] + (rn * swo)[None, :], mask=k_ok[:, None] & col_ok[None, :],
                         other=0.0)
            acc = _mma(a, bt, acc, PRECISION, DOT_FP32)

    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    y_at = y_ptr + (b * syb + u * syu + v * syv)[:, None] + (rn * syo)[None, :]
    y_ok = row_ok[:, None] & col_ok[None, :]
    if ACCUMULATE:
        tl.atomic_add(y_at, acc, mask=y_ok, sem="relaxed")
    else:
        tl.store(y_at, acc.to(y_ptr.dtype.element_ty), mask=y_ok)


def _precision(dtype: torch.dtype, device: torch.device) -> str:
    """fp32 in TF32 only where cuDNN's convolutions would use it too (never on the CPU); 16-bit inputs
    ignore the setting. Read from the precision setting that both of torch's TF32 APIs set (reading
    the legacy ``allow_tf32`` raises once the newer API has set cuDNN to "ieee")."""
    if dtype != torch.float32:
        return "tf32"
    return "tf32" if device.type != "cpu" and torch.backends.cudnn.conv.fp32_precision == "tf32" else "ieee"


def _reach(t: torch.Tensor) -> int:
    """The largest element offset ``t`` addresses."""
    return sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()) if n > 0)


@functools.lru_cache(maxsize=64)
def _k_table(I, R, S, x_strides, w_strides, dil, up, device, dtype) -> torch.Tensor:
    """The flat reduction's offsets for k = (i, r, s): x offset (with the tap's part when
    up == (1, 1)), w offset, tap row and tap column, one row each."""
    i, r, s = torch.meshgrid(*(torch.arange(n, device=device, dtype=torch.int64) for n in (I, R, S)),
                             indexing="ij")
    dh, dw = r * dil[0], s * dil[1]
    x_off = i * x_strides[1] + (dh * x_strides[2] + dw * x_strides[3] if up == (1, 1) else 0)
    w_off = i * w_strides[1] + r * w_strides[2] + s * w_strides[3]
    return torch.stack([t.reshape(-1) for t in (x_off, w_off, dh, dw)]).to(dtype)


def _correlate(x, w, y, bias, *, out_hw, kernel_hw, step, pad, dil, up=(1, 1), relu=False, accumulate=False,
               split_k=None, flat=False, precision: str) -> None:
    """Run the generalised correlation (module docstring) on 4-D views x, w, y.

    ``x`` is (B, I, H, W), ``w`` is (O, I, R, S), ``y`` is (B, O, U, V). Blocks
    of channels fill the reduction from 16 channels up, unless ``flat`` asks
    for the flat reduction (the weight gradient, whose "channels" are the
    strided batch). ``accumulate`` adds into a zeroed fp32 ``y``, the reduction
    split ``split_k`` ways (default: enough to fill the GPU with the chosen tile).
    """
    B, I, H, W = x.shape
    O = w.shape[0]
    U, V = out_hw
    R, S = kernel_hw
    wide = max(_reach(t) for t in (x, w, y)) >= 2**31
    blocks = not flat and I >= 16
    K = I * R * S
    table = x if blocks else _k_table(I, R, S, x.stride(), w.stride(), tuple(dil), tuple(up), x.device,
                                       torch.int64 if wide else torch.int32)

    def grid(meta):
        tiles = triton.cdiv(B * U * V, meta["BLOCK_M"]) * triton.cdiv(O, meta["BLOCK_N"])
        splits = 1 if not accumulate else split_k or _split_k(tiles, K, x.device)
        return tiles, splits

    launch(
        _conv_gemm_kernel, grid,
        x, w, y, x if bias is None else bias, table,
        B, I, H, W, O, U, V, R, S, K,
        step[0], step[1], pad[0], pad[1], dil[0], dil[1],
        *_strides(x), *_strides(w), *_strides(y),
        UP_H=up[0], UP_W=up[1], CHANNEL_BLOCKS=blocks, HAS_BIAS=bias is not None, RELU=relu,
        ACCUMULATE=accumulate, PRECISION=precision, DOT_FP32=_interpreting() and x.dtype == torch.bfloat16,
        WIDE=wide,
    )


def _strides(t: torch.Tensor) -> list[int]:
    """``t``'s strides, 0 along dimensions of size 1 (whose index is always 0): a stride there
    tells the compiler nothing, and an odd one (1 for a 1x1 kernel's taps) would hide that the
    other offsets are 16-byte aligned."""
    return [0 if n == 1 else stride for n, stride in zip(t.shape, t.stride())]


def _split_k(tiles: int, reduction: int, device: torch.device) -> int:
    """Enough splits to give every SM two tiles, each split at least 1024 deep; one split
    when deterministic algorithms are asked for (the splits add up in any order)."""
    if torch.are_deterministic_algorithms_enabled():
        return 1
    return max(1, min(triton.cdiv(2 * device_limits(device)[0], tiles), reduction // 1024))


_channels_last_copies = WeakIdKeyDictionary()


def _channels_last(t: torch.Tensor, *, cache: bool = False) -> torch.Tensor:
    """``t`` with its dimension 1 innermost (channels-last), copied only when it is not.

    ``cache`` keeps the copy of a weight until the weight changes (its version
    counter moves), so a training step converts each weight once per update.
    """
    if t.is_contiguous(memory_format=torch.channels_last) and (t.shape[1] == 1 or t.stride(1) == 1):
        return t
    if not cache:
        return t.contiguous(memory_format=torch.channels_last)
    key = t if t._base is None else t._base
    view = (tuple(t.shape), tuple(t.stride()), t.storage_offset())
    entry = _channels_last_copies.get(key, {}).get(view)
    if entry is None or entry[0] != key._version:
        entry = (key._version, t.contiguous(memory_format=torch.channels_last))
        _channels_last_copies.setdefault(key, {})[view] = entry
    return entry[1]


@dataclass(frozen=True)
class _Geometry:
    stride: tuple[int, int]
    padding: tuple[int, int]  # top, left
    dilation: tuple[int, int]
    padding_end: tuple[int, int] | None = None  # bottom, right; None: as padding

    def output_hw(self, input_hw, kernel_hw) -> list[int]:
        end = self.padding_end or self.padding
        return [(n + p + e - d * (k - 1) - 1) // s + 1
                for n, p, e, d, k, s in zip(input_hw, self.padding, end, self.dilation, kernel_hw, self.stride)]


def _output_like(x: torch.Tensor, shape) -> torch.Tensor:
    """A new tensor in x's memory format (channels-last in, channels-last out)."""
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def _blocked(t: torch.Tensor, flat: bool = False) -> bool:
    """Whether a correlation over ``t``'s channels takes the blocked reduction (see ``_correlate``)."""
    return not flat and t.shape[1] >= 16


def _forward(x, weight, bias, g: _Geometry, relu: bool) -> torch.Tensor:
    P, Q = g.output_hw(x.shape[2:], weight.shape[2:])
    y = _output_like(x, (x.shape[0], weight.shape[0], P, Q))
    if _blocked(x):
        x, weight = _channels_last(x), _channels_last(weight, cache=True)
    _correlate(x, weight, y, bias, out_hw=(P, Q), kernel_hw=weight.shape[2:], step=g.stride, pad=g.padding,
               dil=g.dilation, relu=relu, precision=_precision(x.dtype, x.device))
    return y


def _input_grad(dy, weight, input_shape, g: _Geometry) -> torch.Tensor:
    _, _, H, W = input_shape
    dx = _output_like(dy, input_shape)
    weight_t = weight.transpose(0, 1)
    if _blocked(dy):
        dy, weight_t = _channels_last(dy), _channels_last(weight_t, cache=True)
    _correlate(dy, weight_t, dx, None, out_hw=(H, W), kernel_hw=weight.shape[2:],
               step=(1, 1), pad=(-g.padding[0], -g.padding[1]), dil=(-g.dilation[0], -g.dilation[1]),
               up=g.stride, precision=_precision(dy.dtype, dy.device))
    return dx


def _weight_grad(dy, x, weight_shape, g: _Geometry, split_k: int | None = None) -> torch.Tensor:
    R, S = weight_shape[2:]
    dw = torch.zeros(weight_shape, dtype=torch.float32, device=dy.device)
    _correlate(x.transpose(0, 1), dy.transpose(0, 1), dw.transpose(0, 1), None, out_hw=(R, S),
               kernel_hw=dy.shape[2:], step=g.dilation, pad=g.padding, dil=g.stride, accumulate=True,
               split_k=split_k, flat=True, precision=_precision(dy.dtype, dy.device))
    return dw.to(dy.dtype)


class _Conv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, g: _Geometry, relu: bool):
        y = _forward(x, weight, bias, g, relu)
        ctx.save_for_backward(x, weight, y if relu else None)
        ctx.geometry = g
        ctx.relu = relu
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, weight, y = ctx.saved_tensors
        if ctx.relu:
            dy = dy.masked_fill(y <= 0, 0)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _input_grad(dy, weight, x.shape, ctx.geometry)
        if ctx.needs_input_grad[1]:
            dw = _weight_grad(dy, x, weight.shape, ctx.geometry)
        if ctx.needs_input_grad[2]:
            db = dy.sum((0, 2, 3), dtype=torch.float32).to(dy.dtype)
        return dx, dw, db, None, None


def _unsupported(message: str) -> NotImplementedError:
    return NotImplementedError(
        f"refbench.kernels.conv2d: {message}; supported: 4-D (or 3-D unbatched) float32/float16/bfloat16 "
        "input on CUDA (or CPU under TRITON_INTERPRET=1), groups=1, zero padding, activation None or 'relu'"
    )


def _geometry(stride, padding, dilation, kernel_hw) -> _Geometry:
    stride, dilation = tuple(_pair(stride)), tuple(_pair(dilation))
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"refbench.kernels.conv2d: stride {stride} and dilation {dilation} must be positive")
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        if stride != (1, 1):
            raise ValueError("refbench.kernels.conv2d: padding='same' needs stride 1")
        total = [d * (k - 1) for d, k in zip(dilation, kernel_hw)]
        # An odd total puts the extra row/column at the bottom/right, as torch does.
        return _Geometry(stride, tuple(t // 2 for t in total), dilation, tuple(t - t // 2 for t in total))
    else:
        padding = _pair(padding)
        if isinstance(padding[0], str) or min(padding) < 0:
            raise ValueError(f"refbench.kernels.conv2d: padding must be 'valid', 'same' or ints >= 0, got {padding}")
    return _Geometry(stride, tuple(padding), dilation)


def _autocast(*tensors):
    """Under CUDA autocast, conv runs in the autocast dtype, as F.conv2d does."""
    if tensors[0].is_cuda and torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        return tuple(None if t is None else t.to(dtype) for t in tensors)
    return tensors


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """``F.conv2d`` (then ``activation``) computed by the Triton implicit-GEMM kernels."""
    if groups != 1:
        raise _unsupported(f"groups={groups}")
    if activation not in ACTIVATIONS:
        raise _unsupported(f"activation={activation!r}")
    if x.dim() == 3:
        return conv2d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups, activation).squeeze(0)
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"refbench.kernels.conv2d: expected input (N, C, H, W) and weight (K, C, R, S), "
                         f"got {tuple(x.shape)} and {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"refbench.kernels.conv2d: input has {x.shape[1]} channels, weight expects {weight.shape[1]}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"refbench.kernels.conv2d: bias shape {tuple(bias.shape)} != ({weight.shape[0]},)")
    x, weight, bias = _autocast(x, weight, bias)
    if x.dtype not in DTYPES or any(t is not None and t.dtype != x.dtype for t in (weight, bias)):
        raise _unsupported(f"dtypes {x.dtype}, {weight.dtype}" + (f", {bias.dtype}" if bias is not None else ""))
    if not (x.is_cuda or _interpreting() or recording()):
        raise _unsupported(f"device {x.device}")
    g = _geometry(stride, padding, dilation, weight.shape[2:])
    if min(g.output_hw(x.shape[2:], weight.shape[2:])) < 1:
        raise ValueError(f"refbench.kernels.conv2d: input {tuple(x.shape[2:])} is smaller than the dilated kernel")
    return _Conv2dFunction.apply(x, weight, bias, g, activation == "relu")


def conv2d_input_grad(dy, weight, input_shape, stride=1, padding=0, dilation=1) -> torch.Tensor:
    """The gradient of ``conv2d`` with respect to its input, given the output's ``dy``
    (``torch.nn.grad.conv2d_input`` on these kernels)."""
    return _input_grad(dy, weight, tuple(input_shape), _geometry(stride, padding, dilation, weight.shape[2:]))


def conv2d_weight_grad(dy, x, weight_shape, stride=1, padding=0, dilation=1, *, split_k=None) -> torch.Tensor:
    """The gradient of ``conv2d`` with respect to its weight, given the output's ``dy``;
    ``split_k`` overrides how many ways the N * P * Q reduction is split."""
    g = _geometry(stride, padding, dilation, weight_shape[2:])
    return _weight_grad(dy, x, tuple(weight_shape), g, split_k)


class Conv2d(nn.Conv2d):
    """Drop-in ``nn.Conv2d`` (same parameters and state_dict keys) run by the Triton
    kernels, with an optional fused activation."""

    def __init__(self, *args, activation: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        reason = unsupported_reason(self)
        if reason:
            raise _unsupported(reason)
        if activation not in ACTIVATIONS:
            raise _unsupported(f"activation={activation!r}")
        self.activation = activation

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, activation: str | None = None) -> "Conv2d":
        """A Conv2d sharing ``conv``'s weight and bias Parameters."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  device="meta", dtype=conv.weight.dtype, activation=activation)
        new.weight = conv.weight
        new.bias = conv.bias
        return new.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups, self.activation)

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        return extra + f", activation={self.activation!r}" if self.activation else extra


def unsupported_reason(conv: nn.Conv2d) -> str | None:
    """Why ``conv`` cannot run on these kernels, or None."""
    if conv.groups != 1:
        return f"groups={conv.groups}"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r}"
    return None


def swap_conv2d(model: nn.Module) -> list[str]:
    """Replace every supported ``nn.Conv2d`` in ``model`` by a weight-sharing ``Conv2d``.

    An ``nn.ReLU`` right after the conv in an ``nn.Sequential`` is fused into it
    and replaced by ``nn.Identity`` (the Sequential passes the conv's output to
    nothing else). Returns one line per conv: what was done, or why it was kept.
    """
    if type(model) is nn.Conv2d:
        return ["(model): kept nn.Conv2d (a model cannot replace itself; use kernels.Conv2d.from_conv)"]
    actions = []
    for parent_name, parent in list(model.named_modules()):
        children = list(parent.named_children())
        for index, (name, child) in enumerate(children):
            if not isinstance(child, nn.Conv2d) or isinstance(child, Conv2d):
                continue
            path = f"{parent_name}.{name}" if parent_name else name
            described = f"{type(child).__name__}({child.extra_repr()})"
            if type(child) is not nn.Conv2d:
                actions.append(f"{path}: kept {described} (a subclass of nn.Conv2d: its forward may differ)")
                continue
            reason = unsupported_reason(child)
            if reason:
                actions.append(f"{path}: kept {described} ({reason} is not supported)")
                continue
            relu = None
            if isinstance(parent, nn.Sequential) and index + 1 < len(children):
                relu = children[index + 1] if type(children[index + 1][1]) is nn.ReLU else None
            setattr(parent, name, Conv2d.from_conv(child, activation="relu" if relu else None))
            line = f"{path}: {described} -> kernels.Conv2d"
            if relu:
                setattr(parent, relu[0], nn.Identity())
                relu_path = f"{parent_name}.{relu[0]}" if parent_name else relu[0]
                line += f" with ReLU fused ({relu_path} -> Identity)"
            actions.append(line)
    return actions
