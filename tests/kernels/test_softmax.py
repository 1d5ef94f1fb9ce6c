"""refbench.kernels.softmax against fp64 torch: values, edge cases, gradients, module swap.

On a machine without CUDA the root conftest runs Triton's interpreter, so the
shapes stay small; a few long rows exercise the long-row kernel.
"""
import warnings

import pytest
import torch
from torch import nn

from refbench import kernels
from refbench.kernels.softmax import _row_kernel_max_n, softmax_backward

# Rows of -inf make the interpreter's numpy warn about inf - inf; that is the point of those tests.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
OPS = {"softmax": (kernels.softmax, torch.softmax), "log_softmax": (kernels.log_softmax, torch.log_softmax)}
# (atol, rtol) of an output against the fp64 reference; log-softmax values reach
# tens, so the relative part matters there.
TOL = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 4e-3),
    torch.bfloat16: (1e-2, 2e-2),
}
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# Rows this long take the long-row kernel forward and backward.
LONG_N = _row_kernel_max_n(torch.float32, rows_held=1) + 5000
CASES = [  # (shape, dim)
    ((1, 1), -1),
    ((7, 5), -1),
    ((4, 33), 0),
    ((2, 3, 130), 1),
    ((2, 3, 4, 5), -2),
    ((19, 1000), -1),
    ((3, 4096), -1),
]


def _close(actual, expected, dtype):
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected, atol=atol, rtol=rtol, equal_nan=True)


def _check_forward(op, x, dim):
    ours, theirs = OPS[op]
    y = ours(x, dim)
    assert y.dtype == x.dtype and y.shape == x.shape
    _close(y, theirs(x.double(), dim), x.dtype)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,dim", CASES)
def test_forward_matches_fp64(op, dtype, shape, dim):
    _check_forward(op, (3 * torch.randn(shape)).to(DEVICE, dtype), dim)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "view",
    [
        lambda t: t.t(),  # rows along a strided dimension
        lambda t: t[:, ::2],  # strided columns
        lambda t: t[1:, 3:50],  # rows with a stride longer than the row
        lambda t: t.unsqueeze(0).expand(3, -1, -1),  # zero stride
    ],
    ids=["transposed", "step2", "sliced", "expanded"],
)
def test_non_contiguous(op, view):
    _check_forward(op, view(torch.randn(40, 64, device=DEVICE)), -1)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1e30), (torch.float16, 3e4)], ids=["fp32", "fp16"])
def test_huge_logits(op, dtype, scale):
    x = (torch.rand(8, 200, device=DEVICE) * 2 - 1) * scale
    x[:, 7] = scale  # one clear winner per row
    x = x.to(dtype)
    y = OPS[op][0](x)
    assert not y.isnan().any()
    _close(y, OPS[op][1](x.double(), -1), dtype)


def _with_infinities(n):
    x = torch.randn(4, n, device=DEVICE)
    x[0, : n // 2] = -float("inf")  # leading half -inf
    x[1, ::3] = -float("inf")  # scattered -inf
    x[2] = -float("inf")  # the whole row: NaN, like torch
    x[3, 1:] = -float("inf")  # a single finite value
    return x


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("n", [37, LONG_N], ids=["row", "long"])
def test_negative_infinity(op, n):
    x = _with_infinities(n)
    y = OPS[op][0](x)
    assert y[2].isnan().all() and not y[[0, 1, 3]].isnan().any()
    _close(y, OPS[op][1](x.double(), -1), x.dtype)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape,dim", [((5, 1), -1), ((0, 5), -1), ((4, 0), -1), ((3, 0, 2), 0), ((), 0)])
def test_degenerate_shapes(op, shape, dim):
    x = torch.randn(shape, device=DEVICE, requires_grad=True)
    y = OPS[op][0](x, dim)
    _close(y, OPS[op][1](x.detach().double(), dim), x.dtype)
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "dtype,n",
    [(torch.float32, 20000), (torch.float32, LONG_N), (torch.float16, 262144)],
    ids=["fp32-long-backward-only", "fp32-long", "fp16-262144"],
)
def test_long_rows(op, dtype, n):
    x = (4 * torch.randn(2, n, device=DEVICE)).to(dtype)
    _check_forward(op, x, -1)
    y = OPS[op][1](x.double(), -1)
    dy = torch.randn_like(y)
    _close(softmax_backward(dy.to(dtype), y.to(dtype), log=op == "log_softmax"), _backward64(op, y, dy), dtype)


def _backward64(op, y, dy):
    """fp64 gradient at output ``y`` along the last dim, by torch's own backward."""
    if op == "log_softmax":
        return torch._log_softmax_backward_data(dy, y, -1, y.dtype)
    return torch._softmax_backward_data(dy, y, -1, y.dtype)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("shape,dim", [((7, 5), -1), ((4, 33), 0), ((2, 3, 130), 1), ((19, 1000), -1)])
def test_gradient_matches_autograd(op, dtype, shape, dim):
    ours, theirs = OPS[op]
    x = torch.randn(shape, device=DEVICE).to(dtype).requires_grad_()
    # a column-major incoming gradient, as a transposed consumer hands back
    dy = torch.randn(shape, device=DEVICE).to(dtype).transpose(0, -1).contiguous().transpose(0, -1)
    (dx,) = torch.autograd.grad(ours(x, dim), x, dy)
    x64 = x.detach().double().requires_grad_()
    (expected,) = torch.autograd.grad(theirs(x64, dim), x64, dy.double())
    assert dx.dtype == dtype
    _close(dx, expected, dtype)


@pytest.mark.parametrize("op", OPS)
def test_gradcheck(op):
    x = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: OPS[op][0](t, 1), (x,))


def test_rejects_integer_tensors():
    with pytest.raises(TypeError, match="float"):
        kernels.softmax(torch.arange(6, device=DEVICE).reshape(2, 3))


@pytest.mark.parametrize("ours,theirs", [(kernels.Softmax, nn.Softmax), (kernels.LogSoftmax, nn.LogSoftmax)])
@pytest.mark.parametrize("dim", [1, -1, None])
def test_modules_are_drop_ins(ours, theirs, dim):
    x = torch.randn(2, 3, 9, device=DEVICE)  # with dim=None, torch picks dim 0 for 3-d input
    assert isinstance(ours(dim), theirs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of dim=None
        expected = theirs(dim)(x)
    _close(ours(dim)(x), expected.double(), x.dtype)


class _MaskedSoftmax(nn.Softmax):
    """A subclass with its own forward: not a plain softmax, so never swapped."""

    def forward(self, x):
        return super().forward(x.masked_fill(x < -1, -float("inf")))


class _Attention(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.softmax = nn.Softmax(dim=-1)
        self.masked = _MaskedSoftmax(dim=-1)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        return self.softmax(scores) @ v + self.masked(scores) @ v


def _model():
    return nn.Sequential(_Attention(16), nn.Flatten(), nn.Linear(5 * 16, 4), nn.LogSoftmax(dim=1)).to(DEVICE)


def test_swap_softmax_keeps_outputs_and_names_swaps():
    model = _model().eval()
    x = torch.randn(3, 5, 16, device=DEVICE)
    before = model(x)
    swapped = kernels.patch_model(model, ops=("softmax",))
    assert swapped == [
        "0.softmax: nn.Softmax(dim=-1) -> kernels.Softmax",
        "3: nn.LogSoftmax(dim=1) -> kernels.LogSoftmax",
    ]
    assert type(model[0].softmax) is kernels.Softmax and type(model[3]) is kernels.LogSoftmax
    assert type(model[0].masked) is _MaskedSoftmax and not model[3].training
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)
    assert kernels.patch_model(model, ops=("softmax",)) == []


def test_swapped_model_trains():
    model = _model()
    x = torch.randn(3, 5, 16, device=DEVICE)
    reference = _model()
    reference.load_state_dict(model.state_dict())
    kernels.patch_model(model, ops=("softmax",))
    for net in (model, reference):
        net(x)[:, 0].sum().backward()
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("m,n", [(4096, 128), (4096, 3000), (1024, 32768), (64, 262144)])
def test_gpu_forward_backward(op, dtype, m, n):
    x = torch.randn(m, n, device="cuda", dtype=dtype)
    _check_forward(op, x, -1)
    y = OPS[op][1](x.double(), -1)
    dy = torch.randn_like(y)
    _close(softmax_backward(dy.to(dtype), y.to(dtype), log=op == "log_softmax"), _backward64(op, y, dy), dtype)
