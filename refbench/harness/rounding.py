"""A cell's precision emulated in float64: every result rounded as that precision would round it.

The correctness check's allowance (refbench.harness.correctness) must come
from code that is not the code under test. ``Rounding`` is a
``TorchDispatchMode``: under it, a float64 step runs on float64 kernels, and
every floating-point result of every operator is rounded to the cell's
precision and kept in float64. The difference between that run and the plain
float64 reference is how far this precision's rounding moves this model's
answer (its conditioning), measured without running the model's own float32
path, oneDNN's, cuBLAS's or cuDNN's float32 kernels, or the compiler.

What is rounded, and to what (``MODELS``):

- ``fp32``: every result to float32;
- ``tf32``: the same, and the inputs of matmuls and convolutions to TF32's
  10-bit significand (what tensor cores read);
- ``bf16``, ``fp16``: autocast's rule. Matmuls and convolutions read their
  inputs rounded to the 16-bit format and give results in it; an operator whose
  floating inputs are all in the 16-bit format gives a result in it (type
  promotion); autocast's float32 operators (losses, softmax, norms, exp/log)
  and every other result are float32. float16 keeps float32's exponent range
  here, as the GradScaler keeps gradients in float16's range.

Three things one rounding per operator would miss:

- Accumulation. A matmul, a convolution (forward, input and weight
  gradients) or a sum accumulates in float32 over its reduction (a float32
  matmul over 1,024 terms lands ~10 times further from float64 than one
  rounding of its result). Its reduction is cut into consecutive pieces,
  each piece's partial result computed in float64 and rounded, and the
  running sum rounded after each piece: up to ``PIECES`` over a matmul's or
  a convolution's channels (blocked kernels), up to ``SUM_PIECES`` where
  kernels add one term after another (sums; a convolution's weight and bias
  gradients over the batch and every output position, computed for this as
  the matmul of im2col's columns, ``torch.nn.functional.unfold``).
- Reductions inside fused operators (BatchNorm's statistics and backward,
  LayerNorm, softmax, the losses) run as their decompositions
  (``torch._decomp``), so that each of their sums is one of the above.
- Kinks. Where a ReLU's input lies within rounding of zero, float32 may take
  the other branch, and the gradient of everything before it moves by that
  element's share (a ReLU-heavy network at a small batch does so in most
  seeds). One emulated run may or may not land on the same side, so the
  reference records every ReLU's and LeakyReLU's input (``Kinks``), and the
  emulated run, where the reference lies within ``KINK_MARGIN`` times the RMS
  of its own rounding of that input from zero, takes the branch the reference
  did not: the error that precision's rounding can make there. Max pooling's
  near-ties are not flipped.

Weights and inputs are rounded the same way, because the copies that load
them are operators too. Int8 quantization is not emulated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch._decomp import decomposition_table
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakTensorKeyDictionary

aten = torch.ops.aten

# Significand bits after the binary point; every format keeps float32's exponent range.
SIGNIFICAND_BITS = {"fp32": 23, "tf32": 10, "bf16": 7, "fp16": 10}
PIECES = 64         # matmuls and convolutions over channels: blocked kernels, rounding every few terms
SUM_PIECES = 1024   # sums, and gradients over the batch and positions: kernels that add one term at a time
KINK_MARGIN = 2.0   # covers every ReLU flip float32 made in resnet18_cifar at batch 8 over six seeds
_KINKS = {aten.relu, aten.relu_, aten.leaky_relu}


@dataclass(frozen=True)
class Model:
    """How one precision rounds: ``storage`` for results, ``products`` for what matmuls and convolutions read,
    ``low``: whether their results stay in ``products`` (autocast) rather than in ``storage``."""

    storage: str
    products: str
    low: bool = False


MODELS = {
    "fp32": Model("fp32", "fp32"),
    "tf32": Model("fp32", "tf32"),
    "bf16": Model("fp32", "bf16", low=True),
    "fp16": Model("fp32", "fp16", low=True),
}

# Operators autocast runs in float32 whatever their inputs (its CUDA and CPU float32 lists, as they appear
# below autograd: the underscore and "native_" names of the same operators).
_AUTOCAST_FP32 = frozenset({
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "pow", "softplus", "layer_norm", "group_norm", "norm", "linalg_vector_norm", "cosine_similarity",
    "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "nll_loss2d", "hinge_embedding_loss", "kl_div",
    "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss",
    "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits", "dist",
    "pdist", "cdist", "renorm", "logsumexp", "softmax", "log_softmax", "cumprod", "cumsum", "sum", "prod",
})


def round_to(t: torch.Tensor, precision: str) -> torch.Tensor:
    """``t`` (float64) rounded to nearest, ties to even, to ``precision``'s significand; still float64."""
    return _single(t, precision).to(t.dtype)


def _single(t: torch.Tensor, precision: str) -> torch.Tensor:
    """``t`` rounded to ``precision``, as float32 (which holds every format here exactly)."""
    single = t.to(torch.float32)
    drop = 23 - SIGNIFICAND_BITS[precision]
    if drop:
        bits = single.view(torch.int32)
        half = (1 << (drop - 1)) - 1
        bits = (bits + half + ((bits >> drop) & 1)) & ~((1 << drop) - 1)
        single = torch.where(torch.isfinite(single), bits.view(torch.float32), single)
    return single


def _base_name(func) -> str:
    name = func.__name__.split(".")[0].lstrip("_")
    return name.removeprefix("native_").removesuffix("_forward").removesuffix("_")


def _floats(values) -> list[torch.Tensor]:
    return [v for v in tree_flatten(values)[0] if isinstance(v, torch.Tensor) and v.dtype == torch.float64]


class Kinks(TorchDispatchMode):
    """Records, in order, the input of every ReLU and LeakyReLU a float64 step passes (for ``Rounding``)."""

    def __init__(self):
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in _KINKS:
            self.inputs.append(args[0].detach().clone())
        return func(*args, **(kwargs or {}))


class Rounding(TorchDispatchMode):
    """Round every float64 result to ``precision`` as described in the module docstring."""

    def __init__(self, precision: str, kinks: list[torch.Tensor] | None = None):
        super().__init__()
        if precision not in MODELS:
            raise ValueError(f"no rounding model for precision {precision!r}; known: {', '.join(MODELS)}")
        self.model = MODELS[precision]
        self._low = WeakTensorKeyDictionary()    # tensors autocast would hold in the 16-bit format
        self._kinks = list(kinks or [])[::-1]    # the reference's kink inputs, next one last
        self._flipped = WeakTensorKeyDictionary()   # LeakyReLU inputs: where the backward takes the other branch

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        floats = _floats((args, kwargs))
        if not floats:
            return func(*args, **kwargs)
        packet = func.overloadpacket
        if packet in _KINKS:
            result, low = self._kink(func, args, kwargs), self._low_result(func, floats)
        elif packet is aten.leaky_relu_backward and args[1] in self._flipped:
            result, low = self._leaky_backward(func, args, kwargs), self._low_result(func, floats)
        elif packet in _PRODUCTS:
            result, low = _PRODUCTS[packet](self._product_input, self._accumulate, *args, **kwargs), self.model.low
        elif func in _FUSED:
            result, low = self._fused(func, args, kwargs)
        elif func in _SUMS:
            result, low = _SUMS[func](self._accumulate, *args, **kwargs), False
        else:
            result, low = func(*args, **kwargs), self._low_result(func, floats)
        self._hold_results(func, args, kwargs, result, low, first_only=func in _FUSED)
        return result

    # ----- what each tensor is held in -----

    def _is_low(self, t: torch.Tensor) -> bool:
        return self.model.low and t in self._low

    def _hold(self, t: torch.Tensor, low: bool) -> None:
        """Round ``t`` in place to the format it is now held in."""
        if low:
            self._low[t] = True
        elif t in self._low:
            del self._low[t]
        t.copy_(_single(t, self.model.products if low else self.model.storage))

    def _low_result(self, func, floats: list[torch.Tensor]) -> bool:
        """Type promotion under autocast: a result is in the 16-bit format when its floating inputs all are."""
        if not self.model.low or _base_name(func) in _AUTOCAST_FP32:
            return False
        inputs = [t for t in floats if t.dim() > 0] or floats
        return all(self._is_low(t) for t in inputs)

    def _hold_results(self, func, args, kwargs, result, low: bool, first_only: bool = False) -> None:
        """Round what ``func`` wrote and returned; ``low`` results in the 16-bit format (with ``first_only``, the
        first result alone: a fused operator's saved statistics are float32)."""
        schema = func._schema
        written = [value for argument, value in zip(schema.arguments, args)
                   if argument.alias_info is not None and argument.alias_info.is_write]
        written += [kwargs[a.name] for a in schema.arguments
                    if a.name in kwargs and a.alias_info is not None and a.alias_info.is_write]
        for t in _floats(written):   # what an in-place or out= operator wrote stays in its format
            self._hold(t, self._is_low(t))
        returns = result if isinstance(result, (tuple, list)) else (result,)
        for i, (ret, value) in enumerate(zip(schema.returns, returns)):
            low = low and not (first_only and i > 0)
            if ret.alias_info is None:   # a new tensor (views and the written tensors are held already)
                for t in _floats(value):
                    self._hold(t, low)
            elif not ret.alias_info.is_write and low:
                for t in _floats(value):
                    self._low[t] = True

    # ----- kinks: where the precision may take the other branch -----

    def _kink(self, func, args, kwargs):
        """ReLU or LeakyReLU where the reference's input is nearer the kink than this run's rounding moved it
        (``KINK_MARGIN`` times its RMS) takes the branch the reference did not (module docstring)."""
        x = args[0]
        before = x.clone() if func.overloadpacket is aten.relu_ else x
        result = func(*args, **kwargs)
        reference = self._kinks.pop() if self._kinks else None
        if reference is None or reference.shape != x.shape or reference.device != x.device:
            self._kinks.clear()   # the runs went apart: no more pairing
            return result
        moved = before - reference
        reach = KINK_MARGIN * moved.norm() / max(moved.numel(), 1) ** 0.5
        near = (reference.abs() <= reach) & (moved != 0)
        if not near.any():
            return result
        passes = reference > 0
        if func.overloadpacket is aten.leaky_relu:   # its backward reads the input: flip there
            self._flipped[x] = near & ((before > 0) == passes)
            return result
        other = torch.where(passes, torch.zeros_like(before), before.abs().clamp_min(reach.item()))
        result.copy_(torch.where(near, other, result))
        return result

    def _leaky_backward(self, func, args, kwargs):
        grad, x, slope = args[:3]
        other = torch.where(x > 0, grad * slope, grad)
        return torch.where(self._flipped[x], other, func(*args, **kwargs))

    # ----- operators that are more than one rounding -----

    def _fused(self, func, args, kwargs):
        """A fused operator (a normalisation, softmax, a loss) as the operators it is made of, each rounded,
        computing in float32 inside; its result is in its first input's format unless autocast makes it float32."""
        first = _floats(args)[0] if _floats(args) else None
        low = (self.model.low and first is not None and self._is_low(first)
               and _base_name(func) not in _AUTOCAST_FP32)
        if self.model.low:   # the inside computes in float32: untagged copies of 16-bit inputs
            args, kwargs = tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) and self._is_low(t) else t,
                                    (args, kwargs))
        with self:
            return _FUSED[func](*args, **kwargs), low

    def _product_input(self, t: Any) -> Any:
        """What a matmul or convolution reads: a copy of ``t`` rounded to ``products``."""
        if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
            return round_to(t, self.model.products)
        return t

    @staticmethod
    def _accumulate(partials: list[Callable[[], torch.Tensor | None]]) -> torch.Tensor | None:
        """The sum of ``partials`` (each computed when called) in a float32 accumulator: each partial result
        rounded to float32, then added in float32 (one rounding of the exact sum, as float64 would then round)."""
        total = None
        for partial in partials:
            value = partial()
            if value is None:
                continue
            total = value.to(torch.float32) if total is None else total.add_(value.to(torch.float32))
        return None if total is None else total.to(torch.float64)


# ----- the reductions, cut into pieces -----

def _pieces(size: int, pieces: int | None = None) -> list[slice]:
    count = max(1, min(size, pieces or PIECES))
    bounds = [round(i * size / count) for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a] or [slice(0, 0)]


def _mm(rounded, accumulate, a, b, *, pieces=None):
    a, b = rounded(a), rounded(b)
    return accumulate([lambda s=s: torch.mm(a[:, s], b[s]) for s in _pieces(a.shape[1], pieces)])


def _addmm(rounded, accumulate, bias, a, b, *, beta=1, alpha=1):
    a, b = rounded(a), rounded(b)
    products = [lambda s=s: alpha * torch.mm(a[:, s], b[s]) for s in _pieces(a.shape[1])]
    return accumulate([lambda: (beta * bias).expand(a.shape[0], b.shape[1]).contiguous(), *products])


def _bmm(rounded, accumulate, a, b):
    a, b = rounded(a), rounded(b)
    return accumulate([lambda s=s: torch.bmm(a[:, :, s], b[:, s]) for s in _pieces(a.shape[2])])


def _baddbmm(rounded, accumulate, bias, a, b, *, beta=1, alpha=1):
    a, b = rounded(a), rounded(b)
    products = [lambda s=s: alpha * torch.bmm(a[:, :, s], b[:, s]) for s in _pieces(a.shape[2])]
    return accumulate([lambda: (beta * bias).expand(a.shape[0], a.shape[1], b.shape[2]).contiguous(), *products])


def _in_channels(weight: torch.Tensor, transposed: bool, s: slice) -> torch.Tensor:
    return weight[s] if transposed else weight[:, s]


def _out_channels(weight: torch.Tensor, transposed: bool, s: slice) -> torch.Tensor:
    return weight[:, s] if transposed else weight[s]


def _convolution(rounded, accumulate, x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """A convolution reduces over its input channels (and the kernel window): pieces of input channels."""
    x, weight = rounded(x), rounded(weight)
    conv = aten.convolution.default
    if groups != 1:
        return conv(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups)   # one piece
    pieces = [lambda s=s: conv(x[:, s], _in_channels(weight, transposed, s), None, stride, padding, dilation,
                               transposed, output_padding, 1) for s in _pieces(x.shape[1])]
    if bias is not None:
        pieces.append(lambda: bias.view(1, -1, *[1] * (x.dim() - 2)))
    return accumulate(pieces)


def _convolution_backward(rounded, accumulate, grad, x, weight, bias_sizes, stride, padding, dilation, transposed,
                          output_padding, groups, output_mask):
    """The input's gradient reduces over output channels, the weight's and bias's over the batch."""
    grad, x, weight = rounded(grad), rounded(x), rounded(weight)
    backward = aten.convolution_backward.default

    def part(g, xs, w, mask):
        return backward(g, xs, w, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, mask)

    if groups != 1 or x.dim() not in (3, 4):
        return part(grad, x, weight, output_mask)   # one piece
    grad_input = grad_weight = grad_bias = None
    if output_mask[0]:
        grad_input = accumulate([lambda s=s: part(grad[:, s], x, _out_channels(weight, transposed, s),
                                                  [True, False, False])[0] for s in _pieces(grad.shape[1])])
    if output_mask[1]:
        grad_weight = _weight_gradient(accumulate, grad, x, weight, stride, padding, dilation, transposed)
    if output_mask[2]:
        rows = grad.transpose(0, 1).reshape(grad.shape[1], -1)   # (out channels, batch x positions)
        grad_bias = accumulate([lambda s=s: rows[:, s].sum(1) for s in _pieces(rows.shape[1], SUM_PIECES)])
    return grad_input, grad_weight, grad_bias


def _weight_gradient(accumulate, grad, x, weight, stride, padding, dilation, transposed):
    """A weight's gradient is one matmul over the batch and every output position (im2col), which kernels
    accumulate one position after another: ``SUM_PIECES`` pieces of those.

    A transposed convolution is the adjoint of a convolution with the same
    weight, so its weight's gradient is that convolution's with the roles of
    input and output gradient swapped.
    """
    if transposed:
        x, grad = grad, x
    if x.dim() == 3:   # a 1-d convolution is a 2-d one of height 1
        x, grad = x.unsqueeze(2), grad.unsqueeze(2)
        stride, padding, dilation = (1, *stride), (0, *padding), (1, *dilation)
    kernel = weight.shape[2:] if weight.dim() == 4 else (1, *weight.shape[2:])
    columns = torch.nn.functional.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    n, c_out = grad.shape[:2]
    rows = grad.reshape(n, c_out, -1).transpose(0, 1).reshape(c_out, -1)   # (out channels, batch x positions)
    columns = columns.transpose(1, 2).reshape(rows.shape[1], -1)           # (batch x positions, in channels x kernel)
    return _mm(lambda t: t, accumulate, rows, columns, pieces=SUM_PIECES).view(weight.shape)


def _sum(accumulate, x, dim=None, keepdim=False, *, dtype=None):
    """A sum reduces over the summed dimensions: pieces of them, all flattened into one."""
    if dtype not in (None, torch.float64):
        return aten.sum.dim_IntList(x, dim, keepdim, dtype=dtype)
    dims = sorted(d % x.dim() for d in dim) if dim else list(range(x.dim()))
    kept = [d for d in range(x.dim()) if d not in dims]
    flat = x.permute(*kept, *dims).reshape(*[x.shape[d] for d in kept], -1)
    total = accumulate([lambda s=s: flat[..., s].sum(-1) for s in _pieces(flat.shape[-1], SUM_PIECES)])
    if keepdim:
        total = total.reshape([1 if d in dims else x.shape[d] for d in range(x.dim())])
    return total


_SUMS = {aten.sum.default: lambda accumulate, x, *, dtype=None: _sum(accumulate, x, dtype=dtype),
         aten.sum.dim_IntList: _sum}

# Fused operators with reductions inside, run as their decompositions (torch._decomp).
_FUSED = {op: decomposition_table[op] for op in (
    aten.native_batch_norm.default, aten.native_batch_norm_backward.default,
    aten.native_layer_norm.default, aten.native_layer_norm_backward.default,
    aten._softmax.default, aten._softmax_backward_data.default,
    aten._log_softmax.default, aten._log_softmax_backward_data.default,
    aten.mean.dim, aten.mean.default, aten.var_mean.correction, aten.var.correction,
    aten.nll_loss_forward.default, aten.nll_loss_backward.default,
    aten.binary_cross_entropy_with_logits.default, aten.mse_loss.default, aten.linalg_vector_norm.default,
)}

_PRODUCTS = {
    aten.mm: _mm, aten.addmm: _addmm, aten.bmm: _bmm, aten.baddbmm: _baddbmm,
    aten.convolution: _convolution, aten.convolution_backward: _convolution_backward,
}
